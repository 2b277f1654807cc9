//! Upstream connections of a plain-http upstream: each app connection keeps
//! the one it used last, and hands it to the shared pool when it closes
//! (`src/proxy/pool/`).

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

use crate::support::{
    content_length, fill, get, h1_client, h2_client, read_head, send, HttpClient, Origin, Proxy,
};

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
async fn an_app_that_drops_an_answer_midway_gets_its_next_answer_whole() {
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

/// A raw HTTP/1.1 origin: answers `{"ok":true}` to each request, with
/// keep-alive. With `close_after`, it closes each connection that long after
/// its first answer, without saying so in the answer. With `early`, it answers
/// a request with a body `413` at once, before reading the body, then reads and
/// discards the body and goes on. Reports how many connections it accepted and
/// when it saw the proxy close one.
struct RawOrigin {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed_by_peer: mpsc::UnboundedReceiver<Instant>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Copy, Default)]
struct RawMode {
    close_after: Option<Duration>,
    early: bool,
}

impl RawOrigin {
    async fn start(mode: RawMode) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (tx, closed_by_peer) = mpsc::unbounded_channel();
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_raw(stream, mode, tx.clone()));
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

    /// Waits (bounded) for the proxy to close a connection, which must come
    /// one 300 ms idle timeout after `since`, give or take the timer's slack.
    async fn closed_idle_since(&mut self, since: Instant) {
        let closed = tokio::time::timeout(Duration::from_secs(5), self.closed_by_peer.recv())
            .await
            .expect("the proxy closes the idle upstream connection")
            .unwrap();
        let idle = closed - since;
        assert!(
            idle >= Duration::from_millis(250) && idle < Duration::from_millis(1500),
            "closed after {idle:?}"
        );
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The size of `/big`'s answer: enough frames to use up a task's budget.
const BIG: usize = 4 << 20;

async fn serve_raw(
    mut stream: TcpStream,
    mode: RawMode,
    closed_by_peer: mpsc::UnboundedSender<Instant>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_head(&mut stream, &mut buf).await else {
            let _ = closed_by_peer.send(Instant::now());
            return;
        };
        let length = content_length(&buf[..end]);
        let target = String::from_utf8_lossy(&buf[..end])
            .split(' ')
            .nth(1)
            .unwrap_or("/")
            .to_string();
        buf.drain(..end);
        let big;
        let answer: &[u8] = if mode.early && length > 0 {
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n"
        } else if target == "/empty" {
            b"HTTP/1.1 204 No Content\r\n\r\n"
        } else if target == "/big" {
            let mut answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {BIG}\r\n\r\n"
            )
            .into_bytes();
            answer.resize(answer.len() + BIG, b'b');
            big = answer;
            &big
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"
        };
        if mode.early && stream.write_all(answer).await.is_err() {
            return;
        }
        if !fill(&mut stream, &mut buf, length).await {
            return;
        }
        buf.drain(..length);
        if !mode.early && stream.write_all(answer).await.is_err() {
            return;
        }
        if let Some(after) = mode.close_after {
            tokio::time::sleep(after).await;
            return; // dropped: closed without a word
        }
    }
}

/// Waits (bounded) until no socket to `port` is left half-closed, starting
/// well after the origin's close.
async fn no_close_wait_to(port: u16) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while close_wait_to(port) > 0 {
        assert!(
            Instant::now() < deadline,
            "a socket to the origin stays half-closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sockets of this process's network namespace connected to `port` and left
/// half-closed (CLOSE_WAIT: the peer closed, this side did not).
fn close_wait_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields[2].rsplit(':').next().unwrap();
            u16::from_str_radix(remote_port, 16).ok() == Some(port) && fields[3] == "08"
        })
        .count()
}

#[tokio::test]
async fn an_upstream_that_closes_idle_connections_costs_no_request() {
    let origin = RawOrigin::start(RawMode {
        close_after: Some(Duration::from_millis(20)),
        ..RawMode::default()
    })
    .await;
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
    let mut origin = RawOrigin::start(RawMode::default()).await;
    let proxy = Proxy::in_front_of(&origin.url(), "pool_idle_timeout = \"300ms\"\n").await;
    {
        // One app connection, closed when the client is dropped: its upstream
        // connection is parked in the pool.
        let r = get(&h1_client(), &proxy.url("/ok")).await;
        assert_eq!(r.status, 200);
    }
    let parked = Instant::now();
    origin.closed_idle_since(parked).await;
    // And a new request still finds its way.
    assert_eq!(get(&h1_client(), &proxy.url("/ok")).await.status, 200);
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 2);
}

/// Over one app connection that stays open: an upstream connection the
/// upstream closes after answering `path` is closed here too, and the next
/// request goes on a new one.
async fn closed_by_the_upstream_after(client: &HttpClient, path: &str, status: u16) {
    let origin = RawOrigin::start(RawMode {
        close_after: Some(Duration::from_millis(20)),
        ..RawMode::default()
    })
    .await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    assert_eq!(get(client, &proxy.url(path)).await.status, status);
    no_close_wait_to(origin.addr.port()).await;
    assert_eq!(get(client, &proxy.url("/ok")).await.status, 200);
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 2);
}

/// Over one app connection that stays open: the upstream connection that
/// answered `path` is closed once unused for the idle timeout.
async fn let_go_when_idle_after(client: &HttpClient, path: &str, status: u16) {
    let mut origin = RawOrigin::start(RawMode::default()).await;
    let proxy = Proxy::in_front_of(&origin.url(), "pool_idle_timeout = \"300ms\"\n").await;
    let r = get(client, &proxy.url(path)).await;
    assert_eq!(r.status, status);
    origin.closed_idle_since(Instant::now()).await;
    assert_eq!(get(client, &proxy.url("/ok")).await.status, 200);
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_upstream_connection_closed_by_the_upstream_is_closed_here_too() {
    closed_by_the_upstream_after(&h1_client(), "/ok", 200).await;
}

#[tokio::test]
async fn an_idle_app_connection_lets_its_upstream_connection_go_after_the_idle_timeout() {
    let_go_when_idle_after(&h1_client(), "/ok", 200).await;
}

#[tokio::test]
async fn an_answer_before_the_upload_ends_leaves_the_app_connection_usable() {
    let origin = RawOrigin::start(RawMode {
        early: true,
        ..RawMode::default()
    })
    .await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    // One app connection, spoken to by hand: a 1 MiB upload the upstream
    // answers 413 before reading it, then a GET on the same connection.
    let mut app = TcpStream::connect(proxy.addr).await.unwrap();
    let size = 1 << 20;
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: app\r\ncontent-type: application/json\r\ncontent-length: {size}\r\n\r\n"
    );
    let exchange = async {
        app.write_all(head.as_bytes()).await.unwrap();
        app.write_all(&vec![b' '; size]).await.unwrap();
        app.write_all(b"GET /ok HTTP/1.1\r\nhost: app\r\n\r\n")
            .await
            .unwrap();
        let mut answers = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&answers).contains("{\"ok\":true}") {
            let n = app.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answers));
            answers.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&answers).into_owned()
    };
    let answers = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("both answers on the same app connection");
    assert!(answers.starts_with("HTTP/1.1 413"), "{answers}");
    assert!(answers.contains("HTTP/1.1 200"), "{answers}");
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn pool_max_idle_per_host_zero_keeps_no_connection() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "pool_max_idle_per_host = 0\n").await;
    let client = h1_client();
    for _ in 0..5 {
        assert_eq!(get(&client, &proxy.url("/fixed?len=10")).await.status, 200);
    }
    assert_eq!(origin.connections(), 5);
}

#[tokio::test]
async fn one_app_connection_keeps_a_connection_per_route() {
    let (default, uae) = (Origin::start().await, Origin::start().await);
    let proxy = Proxy::in_front_of(
        &default.url(),
        &format!(
            "[[routes]]\nname = \"uae\"\nprefix = \"/uae\"\nupstream = \"{}\"\n",
            uae.url()
        ),
    )
    .await;
    let client = h1_client();
    for _ in 0..20 {
        assert_eq!(get(&client, &proxy.url("/fixed?len=10")).await.status, 200);
        assert_eq!(
            get(&client, &proxy.url("/uae/fixed?len=10")).await.status,
            200
        );
    }
    assert_eq!((default.connections(), uae.connections()), (1, 1));
}

#[tokio::test]
async fn the_idle_timeout_holds_after_a_large_answer() {
    // 4 MiB use up the task's budget in the turn where the answer ends.
    let_go_when_idle_after(&h1_client(), "/big", 200).await;
}

#[tokio::test]
async fn h2_app_connections_let_closed_and_idle_upstream_connections_go() {
    // An empty answer's body is dropped unread, from the stream's task.
    closed_by_the_upstream_after(&h2_client(), "/empty", 204).await;
    let_go_when_idle_after(&h2_client(), "/empty", 204).await;
}
