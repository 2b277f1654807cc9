//! HTTP/1 connections to a plain-http upstream, each kept by the app
//! connection that used it last.
//!
//! hyper-util's pooled client runs every upstream connection as a task of its
//! own: a request crosses to that task through a channel, its answer and every
//! body chunk cross back, and for each answer with a body the client spawns one
//! more task that returns the connection to the pool (whose key it hashes at
//! each checkout and return): wake-ups between tasks, often on two threads,
//! for every exchange. Keeping the connection in the app connection's task,
//! as below, does without them (the measurement: benches/HISTORY.md).
//!
//! Here an app connection keeps its upstream connection in an
//! [`UpstreamSlot`], and the app connection's own task drives it: the request
//! future polls it until the answer's head arrives, the answer's body polls it
//! until its end, and between requests [`DriveSlot`] polls it from the app
//! connection's task whenever it has something to do (its waker is the
//! slot's, which wakes that task). So an upstream that closes it, or a request
//! body still being sent, is seen to at once, and it is closed after
//! `proxy.pool_idle_timeout` without use. The next request on the same app
//! connection finds it in the slot. No lock is shared between app connections
//! on that path and no task is spawned. When the app connection closes, its
//! upstream connection is parked in the pool shared by all app connections,
//! where a task of its own watches it until the next app connection takes it
//! back (an app that opens a new connection for every request still reuses
//! upstream connections). Parked connections are bounded by
//! `proxy.pool_max_idle_per_host` and closed after `proxy.pool_idle_timeout`,
//! like hyper-util's; with `pool_max_idle_per_host = 0` none is kept at all.
//!
//! hyper offers the pieces (`client::conn::http1`); the keeping is written here
//! because no crate ties an upstream connection to the task of a downstream one.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, TrySendError};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::body::{self, Body, BoxError};
use crate::metrics::Metrics;
use crate::progress::Progress;
use crate::sync::lock;

mod slot;

pub(crate) use slot::{within, Within};
pub use slot::{DriveSlot, UpstreamSlot, UpstreamSlots};

type Connection = http1::Connection<TokioIo<TcpStream>, Body>;

/// Why a request could not be exchanged on an upstream connection.
#[derive(Debug)]
pub(crate) enum PoolError {
    /// No connection could be opened.
    Connect(BoxError),
    /// The connection broke, or the upstream answered something that is not HTTP.
    Exchange(hyper::Error),
}

/// An upstream connection, held by the task that drives it.
struct Conn {
    sender: http1::SendRequest<Body>,
    /// `None` once it has ended.
    connection: Option<Pin<Box<Connection>>>,
    pool: Arc<H1Pool>,
}

/// An upstream connection between two requests.
struct Idle {
    conn: Conn,
    since: Instant,
    /// Seen ready while polled with its slot's waker: until that waker fires
    /// it is still ready, and nothing needs to poll it.
    watched: bool,
}

/// A connection parked in the pool, running as a task of its own until an
/// app connection takes it back to drive it itself.
struct Parked {
    sender: http1::SendRequest<Body>,
    /// Asks the task for the connection; dropped, it lets the task end the
    /// connection (hyper closes it once its sender is gone).
    reclaim: oneshot::Sender<oneshot::Sender<Pin<Box<Connection>>>>,
}

/// The upstream connections of one plain-http upstream.
pub(crate) struct H1Pool {
    connector: HttpConnector,
    builder: http1::Builder,
    /// `http://host:port`, what the connector resolves and connects to.
    target: Uri,
    parked: Mutex<Vec<Parked>>,
    max_parked: usize,
    idle_timeout: Duration,
    /// `proxy.upstream_body_timeout`, and where its cuts are counted.
    body_timeout: Duration,
    metrics: Option<Metrics>,
}

impl H1Pool {
    pub(crate) fn new(
        connector: HttpConnector,
        builder: http1::Builder,
        target: Uri,
        max_parked: usize,
        idle_timeout: Duration,
        body_timeout: Duration,
        metrics: Option<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            connector,
            builder,
            target,
            parked: Mutex::new(Vec::new()),
            max_parked,
            idle_timeout,
            body_timeout,
            metrics,
        })
    }

    /// Sends `req` (origin-form URI, Host set) on a parked connection, else
    /// on a new one: for a request [`H1Pool::send_held`] found no ready
    /// connection in `slot` for. A request that a reused
    /// connection closed under before sending it is sent once more on a new
    /// connection. The answer's body drives the connection to its end and
    /// then puts it back in `slot`.
    pub(crate) async fn send(
        self: &Arc<Self>,
        slot: Option<Arc<UpstreamSlot>>,
        req: Request<Body>,
    ) -> Result<Response<Body>, PoolError> {
        let lease = match self.unpark().await {
            Some(lease) => lease,
            None => self.connect().await?,
        };
        Exchange::new(lease, req, slot).await
    }

    /// `send` at once, without waiting: on the ready connection `slot` holds
    /// for this pool. The request comes back when there is none. This is how
    /// most requests go, and the future it returns is small and needs no
    /// allocation of its own, where `send`'s is an `async fn` of some
    /// kilobytes.
    // The request comes back by value, as in hyper's `TrySendError`: boxing
    // it would cost an allocation on the path this exists to make cheap.
    #[allow(clippy::result_large_err)]
    pub(crate) fn send_held(
        self: &Arc<Self>,
        slot: &Arc<UpstreamSlot>,
        req: Request<Body>,
        now: Instant,
    ) -> Result<Exchange, Request<Body>> {
        match self.take_held(slot, now) {
            Some(lease) => Ok(Exchange::new(lease, req, Some(slot.clone()))),
            None => Err(req),
        }
    }

    /// The ready connection `slot` holds for this pool, if it holds one and
    /// it has not been idle too long at `now`.
    fn take_held(self: &Arc<Self>, slot: &UpstreamSlot, now: Instant) -> Option<Lease> {
        let mut idle = {
            let mut held = lock(&slot.held);
            let mine = held
                .iter()
                .position(|idle| Arc::ptr_eq(&idle.conn.pool, self))?;
            held.swap_remove(mine)
        };
        // Still as its slot's last poll left it: ready.
        let quiet = idle.watched && !slot.waker.fired();
        let readiness = if quiet && idle.conn.sender.is_ready() {
            Readiness::Ready
        } else {
            // With the slot's waker: one that stays behind (busy) must
            // wake the app connection's task, not this request's.
            let waker = Waker::from(slot.waker.clone());
            idle.conn.poll_readiness(&mut Context::from_waker(&waker))
        };
        match readiness {
            Readiness::Ready if idle.due() > now => return Some(idle.lease()),
            // Another request of this app connection (HTTP/2) is still
            // sending its body on it: it stays, and this one goes on
            // another connection.
            Readiness::Busy => {
                idle.watched = false;
                lock(&slot.held).push(idle);
            }
            _ => {}
        }
        None
    }

    /// A ready connection from the parked ones, if there is one.
    async fn unpark(self: &Arc<Self>) -> Option<Lease> {
        loop {
            let parked = {
                let mut parked = lock(&self.parked);
                // Those idle too long have had their task end them.
                parked.retain(|p| !p.sender.is_closed());
                // The newest that its task has brought to rest.
                let ready = parked.iter().rposition(|p| p.sender.is_ready())?;
                parked.swap_remove(ready)
            };
            // Back from its task, so this app connection's task drives it.
            let (back, connection) = oneshot::channel();
            if parked.reclaim.send(back).is_err() {
                continue; // it ended meanwhile
            }
            let Ok(connection) = connection.await else {
                continue;
            };
            let mut conn = Conn {
                sender: parked.sender,
                connection: Some(connection),
                pool: self.clone(),
            };
            if let Readiness::Ready = poll_fn(|cx| Poll::Ready(conn.poll_readiness(cx))).await {
                return Some(Lease { conn, reused: true });
            }
        }
    }

    async fn connect(self: &Arc<Self>) -> Result<Lease, PoolError> {
        let io = self
            .connector
            .clone()
            .oneshot(self.target.clone())
            .await
            .map_err(|e| PoolError::Connect(Box::new(e)))?;
        let (sender, connection) = self
            .builder
            .handshake(io)
            .await
            .map_err(PoolError::Exchange)?;
        tracing::debug!(upstream = %self.target, "new upstream connection");
        Ok(Lease {
            conn: Conn {
                sender,
                connection: Some(Box::pin(connection)),
                pool: self.clone(),
            },
            reused: false,
        })
    }

    /// Keeps `idle` for any app connection: its connection gets a task of its
    /// own until one takes it back. Dropped instead when it has ended, when the
    /// pool is full or when there is no runtime to run it on.
    fn park(self: Arc<Self>, idle: Idle) {
        if idle.conn.sender.is_closed() {
            return;
        }
        let mut parked = lock(&self.parked);
        if parked.len() >= self.max_parked {
            parked.retain(|p| !p.sender.is_closed());
            if parked.len() >= self.max_parked {
                return;
            }
        }
        let due = idle.due();
        let Some(mut connection) = idle.conn.connection else {
            return; // it has ended
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (reclaim, reclaimed) = oneshot::channel::<oneshot::Sender<Pin<Box<Connection>>>>();
        // Its task also closes it once it has been idle for the timeout (the
        // sender then reads closed, and the next look at `parked` drops it).
        runtime.spawn(async move {
            tokio::select! {
                ended = &mut connection => {
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "parked upstream connection ended");
                    }
                }
                Ok(back) = reclaimed => {
                    let _ = back.send(connection);
                }
                () = tokio::time::sleep_until(due) => {}
            }
        });
        parked.push(Parked {
            sender: idle.conn.sender,
            reclaim,
        });
    }
}

/// Whether an idle connection can take a request.
enum Readiness {
    Ready,
    /// Still finishing the last exchange (sending its request body).
    Busy,
    Ended,
}

impl Idle {
    /// When it has been unused for its pool's idle timeout.
    fn due(&self) -> Instant {
        self.since + self.conn.pool.idle_timeout
    }

    fn lease(self) -> Lease {
        Lease {
            conn: self.conn,
            reused: true,
        }
    }
}

impl Conn {
    /// Polls the connection with `cx`'s task; true once it has ended (the
    /// upstream closed it, or it failed), when the exchange on it ends too.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(connection) = self.connection.as_mut() {
            if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "upstream connection ended");
                }
                self.connection = None;
            }
        }
        self.connection.is_none()
    }

    /// Polls the connection (with `cx`'s task) so that a close by the
    /// upstream shows, then asks its sender.
    fn poll_readiness(&mut self, cx: &mut Context<'_>) -> Readiness {
        // A few turns: finishing the last answer and becoming ready may take
        // more than one poll of the connection.
        for _ in 0..3 {
            if self.drive(cx) {
                return Readiness::Ended;
            }
            match self.sender.poll_ready(cx) {
                Poll::Ready(Ok(())) => return Readiness::Ready,
                Poll::Ready(Err(_)) => return Readiness::Ended,
                Poll::Pending => {}
            }
        }
        Readiness::Busy
    }
}

/// An upstream connection taken for one exchange.
struct Lease {
    conn: Conn,
    reused: bool,
}

/// hyper's answer to a request sent on a connection; boxed, because its type
/// cannot be named.
type Answer =
    Pin<Box<dyn Future<Output = Result<Response<Incoming>, TrySendError<Request<Body>>>> + Send>>;

/// A request on its way over an upstream connection: polls the connection
/// (with the request's task) until the answer's head comes. A request that a
/// reused connection closed under before sending it is sent once more on a
/// new connection. The answer's body drives the connection to its end and
/// then puts it back in `slot`.
pub(crate) struct Exchange {
    slot: Option<Arc<UpstreamSlot>>,
    state: Sending,
}

enum Sending {
    On {
        lease: Option<Lease>,
        answer: Answer,
    },
    /// Sent again on a new connection.
    Again(Pin<Box<dyn Future<Output = Result<Response<Body>, PoolError>> + Send>>),
}

impl Exchange {
    fn new(mut lease: Lease, req: Request<Body>, slot: Option<Arc<UpstreamSlot>>) -> Self {
        let answer = Box::pin(lease.conn.sender.try_send_request(req));
        Self {
            slot,
            state: Sending::On {
                lease: Some(lease),
                answer,
            },
        }
    }
}

impl Future for Exchange {
    type Output = Result<Response<Body>, PoolError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (lease, answer) = match &mut this.state {
            Sending::Again(again) => return again.as_mut().poll(cx),
            Sending::On { lease, answer } => (lease, answer),
        };
        lease
            .as_mut()
            .expect("polled after it answered")
            .conn
            .drive(cx);
        let result = std::task::ready!(answer.as_mut().poll(cx));
        let lease = lease.take().expect("polled after it answered");
        match result {
            Ok(response) => Poll::Ready(Ok(response.map(|incoming| {
                body::boxed(LeasedBody {
                    inner: incoming,
                    progress: Progress::new(lease.conn.pool.body_timeout),
                    lease: Some((lease, this.slot.take())),
                })
            }))),
            Err(mut e) => match e.take_message() {
                // Only a reused connection gives a request back, so this
                // happens once at most.
                Some(req) if lease.reused => {
                    let pool = lease.conn.pool.clone();
                    tracing::debug!(upstream = %pool.target, "reused upstream connection closed; sending on a new one");
                    let slot = this.slot.take();
                    let mut again = Box::pin(async move {
                        let lease = pool.connect().await?;
                        Exchange::new(lease, req, slot).await
                    });
                    let polled = again.as_mut().poll(cx);
                    this.state = Sending::Again(again);
                    polled
                }
                _ => Poll::Ready(Err(PoolError::Exchange(e.into_error()))),
            },
        }
    }
}

impl Lease {
    /// Back in `slot` for the app connection's next request (where the app
    /// connection's task drives it until then), or parked when the slot is gone
    /// or already holds one for this upstream (HTTP/2 app connections run
    /// several requests at once). `proxy.pool_max_idle_per_host = 0` keeps
    /// none.
    ///
    /// `by` is the task releasing it, when known: unless that is the app
    /// connection's own task (which drives the slot when it next waits), the
    /// slot's waker is woken, so that the app connection's task polls it: an
    /// HTTP/2 stream runs in a task of its own, and an answer's body may be
    /// dropped after that task last woke the app connection's.
    fn release(self, slot: Option<Arc<UpstreamSlot>>, by: Option<&Waker>) {
        if self.conn.sender.is_closed() || self.conn.pool.max_parked == 0 {
            return;
        }
        let idle = Idle {
            conn: self.conn,
            since: Instant::now(),
            watched: false,
        };
        if let Some(slot) = slot {
            let mut held = lock(&slot.held);
            if !held
                .iter()
                .any(|other| Arc::ptr_eq(&other.conn.pool, &idle.conn.pool))
            {
                held.push(idle);
                drop(held);
                let own = by.is_some_and(|by| slot.waker.wakes(by));
                if !own {
                    slot.waker.wake_by_ref();
                }
                return;
            }
        }
        let pool = idle.conn.pool.clone();
        pool.park(idle);
    }
}

/// An answer's body, driving its connection until the end and releasing it
/// then; dropped before its end, it closes the connection (what is left of the
/// answer cannot be skipped). One that sends nothing for its pool's
/// `body_timeout` is cut, and its connection closed (`super::stall`).
struct LeasedBody {
    inner: Incoming,
    progress: Progress,
    lease: Option<(Lease, Option<Arc<UpstreamSlot>>)>,
}

impl http_body::Body for LeasedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending() {
            if let Some((lease, slot)) = this.lease.as_mut() {
                if lease.conn.connection.is_some() {
                    // The body asked for more; the connection reads it.
                    lease.conn.drive(cx);
                    polled = Pin::new(&mut this.inner).poll_frame(cx);
                }
                // The app connection's timer, lent while the body waits
                // and given back with the connection: a timer set per
                // answer would weigh on every small exchange.
                let lend = || slot.as_ref().and_then(|slot| slot.lend_timer());
                if polled.is_pending() && this.progress.stalled(cx, lend) {
                    let pool = lease.conn.pool.clone();
                    this.give_back_timer();
                    // Closes the connection.
                    this.lease = None;
                    let limit = this.progress.limit();
                    let e = super::stall::cut(limit, pool.metrics.as_ref(), &pool.target);
                    return Poll::Ready(Some(Err(e)));
                }
            }
        } else {
            this.progress.moved();
        }
        let finished = match &polled {
            Poll::Ready(None) => true,
            // hyper polls no further once trailers came.
            Poll::Ready(Some(Ok(frame))) => frame.is_trailers() || this.inner.is_end_stream(),
            Poll::Ready(Some(Err(_))) => {
                this.give_back_timer();
                this.lease = None;
                false
            }
            Poll::Pending => false,
        };
        if finished {
            this.give_back_timer();
            if let Some((lease, slot)) = this.lease.take() {
                lease.release(slot, Some(cx.waker()));
            }
        }
        polled.map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl LeasedBody {
    /// The timer its body timeout borrowed, back to the app connection.
    fn give_back_timer(&mut self) {
        if let (Some(timer), Some((_, Some(slot)))) = (self.progress.take_timer(), &self.lease) {
            slot.give_back_timer(timer);
        }
    }
}

impl Drop for LeasedBody {
    fn drop(&mut self) {
        self.give_back_timer();
        // hyper does not poll a body that says it has ended (an empty answer).
        if let Some((lease, slot)) = self.lease.take() {
            if http_body::Body::is_end_stream(&self.inner) {
                lease.release(slot, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Reads one request head from `conn` and answers `body`.
    async fn answer(conn: &mut TcpStream, body: &str) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.ends_with(b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request came");
            head.extend_from_slice(&buf[..n]);
        }
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(reply.as_bytes()).await.unwrap();
    }

    fn get() -> Request<Body> {
        Request::get("/")
            .header("host", "t")
            .body(body::empty())
            .unwrap()
    }

    async fn text(response: Response<Body>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_request_a_kept_connection_never_sent_goes_again_on_a_new_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (close, closing) = oneshot::channel::<()>();
        let (closed, was_closed) = oneshot::channel();
        let upstream = tokio::spawn(async move {
            // The first connection answers once, then closes without saying
            // so, once that answer is over.
            let (mut first, _) = listener.accept().await.unwrap();
            answer(&mut first, "first").await;
            let _ = closing.await;
            drop(first);
            let _ = closed.send(());
            let (mut second, _) = listener.accept().await.unwrap();
            answer(&mut second, "again").await;
            second
        });
        let pool = H1Pool::new(
            HttpConnector::new(),
            http1::Builder::new(),
            format!("http://{addr}/").parse().unwrap(),
            4,
            Duration::from_secs(30),
            Duration::from_secs(60),
            None,
        );
        let slot = Arc::new(UpstreamSlot::default());
        let first = pool.send(Some(slot.clone()), get()).await.unwrap();
        assert_eq!(text(first).await, "first");
        assert_eq!(lock(&slot.held).len(), 1, "back in its slot");
        close.send(()).unwrap();
        was_closed.await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // As if the slot's last poll had seen it ready and nothing had woken
        // it since: the close is found only once the request is on its way.
        lock(&slot.held)[0].watched = true;
        slot.waker.take();
        let Ok(exchange) = pool.send_held(&slot, get(), Instant::now()) else {
            panic!("the slot holds the connection");
        };
        let again = tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .expect("answered")
            .expect("sent again on a new connection");
        assert_eq!(text(again).await, "again");
        upstream.await.unwrap();
    }
}
