//! Upstream connections of a plain-http upstream: each app connection keeps
//! the one it used last, and hands it to the shared pool when it closes
//! (`src/proxy/pool.rs`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use leanproxy::body;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::support::{get, h1_client, h2_client, send, Origin, Proxy};

#[tokio::test]
async fn an_app_connection_keeps_one_upstream_connection() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    let client = h1_client();
    for i in 0..200 {
        let r = if i % 2 == 0 {
            get(&client, &proxy.url("/fixed?len=3000")).await
        } else {
            let req = Request::post(proxy.url("/echo"))
                .body(body::full(vec![b'x'; 5000]))
                .unwrap();
            send(&client, req).await
        };
        assert_eq!(r.status, 200);
    }
    assert_eq!(origin.connections(), 1);
}

#[tokio::test]
async fn app_connections_that_close_leave_their_upstream_connection_to_the_next() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    for _ in 0..50 {
        // A new client each time: a new app connection, closed when dropped.
        let req = Request::get(proxy.url("/fixed?len=64"))
            .header("connection", "close")
            .body(body::empty())
            .unwrap();
        assert_eq!(send(&h1_client(), req).await.status, 200);
    }
    let opened = origin.connections();
    // The next app connection may arrive before the last one's task has ended
    // and parked its upstream connection; then one more is opened.
    assert!(
        opened <= 5,
        "50 app connections opened {opened} upstream ones"
    );
}

#[tokio::test]
async fn concurrent_requests_on_one_h2_app_connection_each_get_a_connection() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    let client = h2_client();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = client.clone();
        let url = proxy.url("/slow?ms=300");
        tasks.spawn(async move { get(&client, &url).await.status });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "8 x 300 ms took {took:?}"
    );
    assert!(origin.connections() >= 8, "{}", origin.connections());
    // Once done, they serve the same app connection again without new ones.
    let opened = origin.connections();
    for _ in 0..20 {
        assert_eq!(get(&client, &proxy.url("/fixed?len=10")).await.status, 200);
    }
    assert_eq!(origin.connections(), opened);
}

#[tokio::test]
async fn an_answer_dropped_midway_closes_its_upstream_connection() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    let client = h1_client();
    let response = client
        .request(
            Request::get(proxy.url("/stream?bytes=33554432"))
                .body(body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut answer = response.into_body();
    let first = answer.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(answer);
    // The rest of that answer cannot be skipped: the next request goes on a
    // new upstream connection and gets its own answer, not the old one's bytes.
    let r = get(&client, &proxy.url("/fixed?len=5")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, crate::support::pattern(0, 5));
    assert_eq!(origin.connections(), 2);
}

/// A raw HTTP/1.1 origin: answers `n` bytes of `x` to each request, with
/// keep-alive, and closes each connection `close_after` after its first
/// answer, without saying so in the answer. Reports each connection's
/// number of requests and when it saw the proxy close it.
struct RawOrigin {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed_by_peer: mpsc::UnboundedReceiver<Instant>,
    task: tokio::task::JoinHandle<()>,
}

impl RawOrigin {
    async fn start(close_after: Option<Duration>) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (tx, closed_by_peer) = mpsc::unbounded_channel();
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_raw(stream, close_after, tx.clone()));
            }
        });
        RawOrigin {
            addr,
            accepted,
            closed_by_peer,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_raw(
    mut stream: TcpStream,
    close_after: Option<Duration>,
    closed_by_peer: mpsc::UnboundedSender<Instant>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // One request head (the tests send no request bodies).
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    let _ = closed_by_peer.send(Instant::now());
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        buf.drain(..end);
        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";
        if stream.write_all(answer).await.is_err() {
            return;
        }
        if let Some(after) = close_after {
            tokio::time::sleep(after).await;
            return; // dropped: closed without a word
        }
    }
}

#[tokio::test]
async fn an_upstream_that_closes_idle_connections_costs_no_request() {
    let origin = RawOrigin::start(Some(Duration::from_millis(20))).await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    let client = h1_client();
    for round in 0..5 {
        let r = get(&client, &proxy.url("/ok")).await;
        assert_eq!(r.status, 200, "round {round}: {:?}", r.body);
        assert_eq!(r.body, Bytes::from_static(b"{\"ok\":true}"));
        // Past the origin's idle close.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn parked_connections_are_closed_after_the_idle_timeout() {
    let mut origin = RawOrigin::start(None).await;
    let proxy = Proxy::in_front_of(&origin.url(), "pool_idle_timeout = \"300ms\"\n").await;
    {
        // One app connection, closed when the client is dropped: its upstream
        // connection is parked in the pool.
        let r = get(&h1_client(), &proxy.url("/ok")).await;
        assert_eq!(r.status, 200);
    }
    let parked = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), origin.closed_by_peer.recv())
        .await
        .expect("the proxy closes the idle upstream connection")
        .unwrap();
    let idle = closed - parked;
    assert!(
        idle >= Duration::from_millis(250) && idle < Duration::from_millis(1500),
        "closed after {idle:?}"
    );
    // And a new request still finds its way.
    assert_eq!(get(&h1_client(), &proxy.url("/ok")).await.status, 200);
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 2);
}
