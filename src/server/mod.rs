//! Serving a bound listener: HTTP/1.1 and HTTP/2 (h2c prior knowledge) on each
//! connection, the stack cloned per connection and called in place, quiet
//! connections closed, apps that stop reading cut, graceful shutdown.

mod conn;
mod graceful;
mod watched;

use std::any::Any;
use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower::Service;

use crate::body::Body;
use crate::metrics::{ListenerMetrics, Metrics};
use conn::{Activity, ConnService};
use graceful::{graceful, Quiet};

/// Put in a response's extensions, it makes the server drop the connection
/// without answering (the `reset` and `timeout` faults).
#[derive(Debug, Clone, Copy)]
pub struct ResetConnection;

/// The error hyper sees for a [`ResetConnection`] answer.
#[derive(Debug, thiserror::Error)]
#[error("connection reset by an injected fault")]
pub struct ResetRequested;

/// The most an app's HTTP/1 connection buffers: a request head must fit, and
/// at most this much of an answer waits for the socket. hyper's default
/// (about 400 KiB) let every connection queue that much of a large answer,
/// tens of MiB over 64 connections (benches/HISTORY.md).
const CONNECTION_BUFFER: usize = 64 * 1024;

/// The client's address, put in every request's extensions by the server,
/// with what the listener's [`ConnectionHook`] gave the client's connection.
///
/// Its text forms are rendered once per connection: formatting an address for
/// every exchange showed in profiles. Cloning it is one reference count, and
/// what the connection carries travels in it rather than in an extension of
/// its own (each extension is an allocation per request).
#[derive(Debug, Clone)]
pub struct ClientAddr(Arc<Peer>);

#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    /// The listener's address this connection came in on, when known.
    local: Option<SocketAddr>,
    text: Arc<str>,
    ip: HeaderValue,
    /// What the listener's hook gave this connection.
    carried: Option<Arc<dyn Any + Send + Sync>>,
}

impl ClientAddr {
    /// Renders `addr`'s text forms.
    pub fn new(addr: SocketAddr) -> Self {
        Self::accepted(addr, None)
    }

    /// A client at `addr` connected to the listener's address `local`.
    pub fn accepted(addr: SocketAddr, local: Option<SocketAddr>) -> Self {
        Self::carrying(addr, local, None)
    }

    /// [`ClientAddr::accepted`], with what the connection carries.
    fn carrying(
        addr: SocketAddr,
        local: Option<SocketAddr>,
        carried: Option<Arc<dyn Any + Send + Sync>>,
    ) -> Self {
        let ip = addr.ip().to_string();
        Self(Arc::new(Peer {
            addr,
            local,
            text: addr.to_string().into(),
            // An IP address is always a valid header value.
            ip: HeaderValue::try_from(ip).unwrap_or(HeaderValue::from_static("unknown")),
            carried,
        }))
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// The address this connection reached the listener on (its own
    /// ip:port; for a listener on `0.0.0.0`, the interface's), when known.
    pub fn local(&self) -> Option<SocketAddr> {
        self.0.local
    }

    /// `ip:port`.
    pub fn text(&self) -> &str {
        &self.0.text
    }

    /// `ip:port`, shared (the request log keeps it without a copy).
    pub(crate) fn shared_text(&self) -> &Arc<str> {
        &self.0.text
    }

    /// The IP, as `X-Forwarded-For` carries it.
    pub fn ip_header(&self) -> &HeaderValue {
        &self.0.ip
    }

    /// What the listener's [`ConnectionHook`] gave this connection, when it
    /// is a `T`: one reference count.
    pub fn carried<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.0.carried.clone()?.downcast().ok()
    }
}

/// What a listener does with each connection it accepts, besides serving it.
///
/// axum's `serve` hands each accepted stream (`IncomingStream`) to a factory
/// that makes that connection's service. Here every connection of a listener
/// gets a copy of the same stack, and the hook adds what belongs to one
/// connection: a value made when it is accepted, which its requests' layers
/// find in their [`ClientAddr`] ([`ClientAddr::carried`]), and a wrapper
/// around the connection's future, polled in the connection's task. The
/// proxy listener's hook keeps the app connection's upstream connections
/// (`proxy::UpstreamSlots`); the other listeners have none ([`serve`]).
pub trait ConnectionHook: Send + Sync + 'static {
    /// What one connection carries.
    type Carried: Send + Sync + 'static;
    /// A connection's future, wrapped.
    type Driven<F: Future + Send>: Future<Output = F::Output> + Send;

    /// Called once for each accepted connection, before its first request.
    fn open(&self) -> Arc<Self::Carried>;

    /// What the connection's task polls instead of `conn`.
    fn drive<F: Future + Send>(conn: F, carried: Arc<Self::Carried>) -> Self::Driven<F>;
}

/// The hook of a listener that has none ([`serve`]): it has no value, so its
/// connections carry nothing and are polled as they are.
#[derive(Debug, Clone, Copy)]
pub enum NoHook {}

impl ConnectionHook for NoHook {
    type Carried = Infallible;
    type Driven<F: Future + Send> = F;

    fn open(&self) -> Arc<Infallible> {
        match *self {}
    }

    fn drive<F: Future + Send>(_: F, carried: Arc<Infallible>) -> F {
        match *carried {}
    }
}

/// How long a listener's connections may last.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// How long open exchanges may run on once shutdown begins
    /// (`proxy.shutdown_grace`).
    pub grace: Duration,
    /// How long a connection may go without an exchange
    /// (`proxy.client_idle_timeout`): none in progress (from a request's head
    /// read to the end of its answer's body) and none started or ended. It is
    /// then shut down gracefully (within half as long again), and closed if
    /// still open half as long after that: a request head not finished by
    /// then (sent slowly, or not at all) is not waited for.
    pub idle: Duration,
    /// How long writing to a connection may make no progress
    /// (`proxy.client_write_timeout`): the app has stopped reading. The
    /// connection is then reset, which ends the exchange and so closes the
    /// upstream connection its answer came on.
    pub client_write: Duration,
}

/// How a listener serves: its [`Timeouts`], how many connections it keeps
/// open at most, and where it counts them.
#[derive(Debug, Clone)]
pub struct Serving {
    /// The connections' timeouts.
    pub timeouts: Timeouts,
    /// Most connections open at once (`proxy.max_connections`). With that
    /// many open the listener stops accepting until one closes: new ones wait
    /// in the kernel's listen backlog (and past it, are refused by the
    /// kernel), not accepted and dropped.
    pub max_connections: usize,
    /// The listener's name in the metrics (`proxy`, `admin`, …).
    pub name: &'static str,
    /// Where open connections, a full listener and connections cut for a
    /// stalled app are counted.
    pub metrics: Option<Metrics>,
}

impl From<Timeouts> for Serving {
    /// No cap on connections; nothing counted.
    fn from(timeouts: Timeouts) -> Self {
        Self {
            timeouts,
            max_connections: Semaphore::MAX_PERMITS,
            name: "http",
            metrics: None,
        }
    }
}

/// A connection's place under the listener's cap, given back when its task
/// ends (or is aborted at the end of the grace period).
struct Place {
    _permit: OwnedSemaphorePermit,
    metrics: Option<ListenerMetrics>,
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(metrics) = &self.metrics {
            metrics.closed();
        }
    }
}

/// Serves `listener` with `service` until `shutdown` completes, then stops
/// accepting and lets open exchanges finish for at most `timeouts.grace`.
/// Connections quiet for `timeouts.idle` are closed meanwhile, and those
/// whose app takes no bytes for `timeouts.client_write` are cut.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
    serving: impl Into<Serving>,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    run(listener, service, None::<&NoHook>, shutdown, serving.into()).await;
}

/// [`serve`], with `hook` called for each connection (see [`ConnectionHook`]).
pub async fn serve_with<S, H>(
    listener: TcpListener,
    service: S,
    hook: H,
    shutdown: impl Future<Output = ()>,
    serving: impl Into<Serving>,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    H: ConnectionHook,
{
    run(listener, service, Some(&hook), shutdown, serving.into()).await;
}

async fn run<S, H>(
    listener: TcpListener,
    service: S,
    hook: Option<&H>,
    shutdown: impl Future<Output = ()>,
    serving: Serving,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    H: ConnectionHook,
{
    let Serving {
        timeouts,
        max_connections,
        name,
        metrics,
    } = serving;
    let counted = metrics.as_ref().map(|m| m.listener(name));
    let max_connections = max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let places = Arc::new(Semaphore::new(max_connections));
    let mut told_full = false;
    let builder = connection_builder();
    // Tells every connection to shut down gracefully.
    let (stop, _) = watch::channel(());
    let local = listener.local_addr().ok();
    // Owned here so that the drain can wait for them, and connections still
    // open after the grace period can be closed, not left running behind the
    // caller's back.
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        let permit = match places.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if let Some(counted) = &counted {
                    counted.limit_reached();
                }
                // Once per listener: under a steady overload it would be a
                // line per connection; the metric counts every time.
                if !told_full {
                    told_full = true;
                    tracing::warn!(listener = name, max_connections, "connection limit reached (proxy.max_connections): new connections wait until one closes; counted in leanproxy_connection_limit_reached_total");
                }
                tokio::select! {
                    permit = places.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break, // never closed
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // The admin and Mockbank control endpoints compare the Host header
        // with it. A listener on an unspecified address learns the interface
        // from each connection.
        let own = match local {
            Some(addr) if !addr.ip().is_unspecified() => Some(addr),
            _ => stream.local_addr().ok(),
        };
        let activity = Arc::new(Activity::default());
        let carried = hook.map(H::open);
        let conn_service = ConnService {
            inner: RefCell::new(service.clone()),
            peer: ClientAddr::carrying(
                peer,
                own,
                carried.clone().map(|c| -> Arc<dyn Any + Send + Sync> { c }),
            ),
            activity: activity.clone(),
        };
        let builder = builder.clone();
        let signal = stop.subscribe();
        while connections.try_join_next().is_some() {}
        let io = watched::Watched::new(stream, timeouts.client_write, peer, metrics.clone());
        if let Some(counted) = &counted {
            counted.opened();
        }
        let place = Place {
            _permit: permit,
            metrics: counted.clone(),
        };
        connections.spawn(async move {
            let _place = place;
            let conn = builder.serve_connection(TokioIo::new(io), conn_service);
            let conn = graceful(conn, signal, Quiet::new(activity, timeouts.idle));
            let ended = match carried {
                Some(carried) => H::drive(conn, carried).await,
                None => conn.await,
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }

    drop(listener);
    drain(connections, &stop, timeouts.grace, local).await;
}

/// hyper's connection settings, the same for every listener.
fn connection_builder() -> Arc<auto::Builder<TokioExecutor>> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(CONNECTION_BUFFER)
        // Quiet connections are closed by `Graceful`, with one timer per
        // connection: hyper's header timer is a boxed timer set and dropped
        // for every request head.
        .header_read_timeout(None);
    builder.http2().timer(TokioTimer::new());
    Arc::new(builder)
}

/// Tells the open connections to shut down gracefully (`stop`), waits for
/// them for at most `grace`, then closes those still open.
async fn drain(
    mut connections: JoinSet<()>,
    stop: &watch::Sender<()>,
    grace: Duration,
    local: Option<SocketAddr>,
) {
    while connections.try_join_next().is_some() {}
    let open = connections.len();
    if open > 0 {
        tracing::info!(listener = ?local, open, grace = %humantime::format_duration(grace), "draining connections");
    }
    let _ = stop.send(());
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(listener = ?local, open = connections.len(), "grace period over; closing the remaining connections");
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Busy at its first polls (waking its caller each time), then ready.
    #[derive(Clone)]
    struct BusyAtFirst {
        busy_polls: Arc<AtomicUsize>,
    }

    impl Service<Request<Body>> for BusyAtFirst {
        type Response = Response<Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            let left = self.busy_polls.load(Ordering::Relaxed);
            if left == 0 {
                return Poll::Ready(Ok(()));
            }
            self.busy_polls.store(left - 1, Ordering::Relaxed);
            cx.waker().wake_by_ref();
            Poll::Pending
        }

        fn call(&mut self, _req: Request<Body>) -> Self::Future {
            std::future::ready(Ok(Response::new(body::full("ready at last"))))
        }
    }

    #[tokio::test]
    async fn a_service_that_is_not_ready_at_once_is_driven_to_readiness() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let busy_polls = Arc::new(AtomicUsize::new(3));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            BusyAtFirst {
                busy_polls: busy_polls.clone(),
            },
            async {
                let _ = stopped.await;
            },
            Timeouts {
                grace: Duration::from_secs(1),
                idle: Duration::from_secs(60),
                client_write: Duration::from_secs(60),
            },
        ));
        let mut app = tokio::net::TcpStream::connect(addr).await.unwrap();
        app.write_all(b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), app.read_to_string(&mut answer))
            .await
            .expect("answered")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ready at last"), "{answer}");
        assert_eq!(busy_polls.load(Ordering::Relaxed), 0, "it was busy first");
        let _ = stop.send(());
        server.await.unwrap();
    }
}
