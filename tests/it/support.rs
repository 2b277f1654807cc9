//! The harness: an origin server, the proxy started through the library's entry
//! point (or the real binary), and clients.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use leanproxy::body::{self, Body};
use leanproxy::config::{self, Settings};
use leanproxy::{App, Listeners};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

// ---------------------------------------------------------------- skips

/// A test that cannot run here for want of `what` (a tool, a fixture): under
/// `CI=true` it fails; elsewhere the skip is written straight to the
/// terminal's stderr, which `cargo test` does not capture, so it shows in the
/// normal output. The caller returns after this.
pub fn missing(what: &str) {
    missing_under(std::env::var("CI").is_ok_and(|v| v == "true"), what);
}

fn missing_under(ci: bool, what: &str) {
    use std::io::Write;
    if ci {
        panic!("{what}: required under CI=true (.ci/run provides it)");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED (not run, not passed): {what}");
}

#[test]
fn a_missing_tool_or_fixture_fails_under_ci() {
    assert!(std::panic::catch_unwind(|| missing_under(true, "a fixture")).is_err());
}

// ---------------------------------------------------------------- origin

/// Request headers the origin leaves out of its echo: the ones a proxy adds or
/// rewrites by design.
const NOT_ECHOED: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

/// Builds an [`Origin`].
#[derive(Default)]
pub struct OriginBuilder {
    tls: Option<Arc<rustls::ServerConfig>>,
    addr: Option<SocketAddr>,
}

impl OriginBuilder {
    /// Serve HTTPS with this config (ALPN h2 + http/1.1 is added).
    pub fn tls(mut self, mut config: rustls::ServerConfig) -> Self {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        self.tls = Some(Arc::new(config));
        self
    }

    /// Listen on this address instead of an ephemeral port.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = Some(addr);
        self
    }

    /// Binds (`127.0.0.1:0` unless told otherwise) and serves until dropped.
    pub async fn start(self) -> Origin {
        let addr = self
            .addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let acceptor = self.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let task = {
            let stats = stats.clone();
            tokio::spawn(async move {
                let mut conns = JoinSet::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    stats.connections.fetch_add(1, Ordering::SeqCst);
                    stats.open.fetch_add(1, Ordering::SeqCst);
                    let stats = stats.clone();
                    let acceptor = acceptor.clone();
                    conns.spawn(async move {
                        let _open = Open(stats.clone());
                        let svc = service_fn(move |req| {
                            let stats = stats.clone();
                            async move { Ok::<_, Infallible>(route(req, &stats).await) }
                        });
                        let mut builder = auto::Builder::new(TokioExecutor::new());
                        builder.http1().timer(TokioTimer::new());
                        match acceptor {
                            Some(acceptor) => {
                                if let Ok(tls) = acceptor.accept(stream).await {
                                    let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                                }
                            }
                            None => {
                                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                    });
                }
            })
        };
        Origin {
            addr,
            tls: self.tls.is_some(),
            stats,
            task,
        }
    }
}

pub struct Stats {
    pub connections: AtomicUsize,
    /// Connections accepted and not yet ended.
    pub open: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub requests: AtomicUsize,
    /// `/gated` sends its first chunk, then waits for a permit here.
    pub gate: tokio::sync::Semaphore,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
        }
    }
}

/// A test origin on loopback. Stops (with all its connections) when dropped.
pub struct Origin {
    pub addr: SocketAddr,
    tls: bool,
    pub stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl Origin {
    pub async fn start() -> Origin {
        OriginBuilder::default().start().await
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// Connections open now (accepted, not yet ended).
    pub fn open(&self) -> usize {
        self.stats.open.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.stats.in_flight.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `n` requests are being handled.
    pub async fn wait_in_flight(&self, n: usize) {
        for _ in 0..500 {
            if self.in_flight() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("origin never had {n} requests in flight");
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn query(req: &Request<Incoming>) -> BTreeMap<String, String> {
    req.uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn num(q: &BTreeMap<String, String>, key: &str, default: u64) -> u64 {
    q.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// FNV-1a, to compare large bodies without keeping them.
#[derive(Clone, Copy)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf29ce484222325)
    }
}

impl Fnv {
    pub fn update(&mut self, data: &[u8]) {
        for b in data {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
    }
}

/// Deterministic content for generated bodies: byte `i` is `i % 251`.
pub fn pattern(offset: u64, len: usize) -> Bytes {
    (0..len as u64)
        .map(|i| ((offset + i) % 251) as u8)
        .collect::<Vec<_>>()
        .into()
}

/// A streamed body of `total` pattern bytes in `chunk`-sized frames.
pub fn streamed(total: u64, chunk: usize) -> Body {
    let frames = futures_stream(total, chunk);
    body::boxed(StreamBody::new(frames))
}

fn futures_stream(
    total: u64,
    chunk: usize,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    let mut sent = 0u64;
    PollFnStream(move || {
        if sent >= total {
            return None;
        }
        let n = (total - sent).min(chunk as u64) as usize;
        let data = pattern(sent, n);
        sent += n as u64;
        Some(Ok(Frame::data(data)))
    })
}

/// A stream from a closure (avoids a dependency on futures-util for one helper).
struct PollFnStream<F>(F);

impl<F, T> futures_core::Stream for PollFnStream<F>
where
    F: FnMut() -> Option<T> + Unpin,
{
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        std::task::Poll::Ready((self.0)())
    }
}

/// An mpsc receiver as a stream.
struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// An origin connection, counted in [`Stats::open`] until its task ends.
struct Open(Arc<Stats>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

struct InFlight(Arc<Stats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn route(req: Request<Incoming>, stats: &Arc<Stats>) -> Response<Body> {
    stats.requests.fetch_add(1, Ordering::SeqCst);
    stats.in_flight.fetch_add(1, Ordering::SeqCst);
    let _guard = InFlight(stats.clone());
    let q = query(&req);
    let path = req.uri().path().to_string();
    let mut response = match path.as_str() {
        "/echo" | "/sink" => echo(req, false).await,
        "/inspect" => echo(req, true).await,
        "/fixed" => Response::new(body::full(pattern(0, num(&q, "len", 100) as usize))),
        "/chunked" => Response::new(streamed(
            num(&q, "chunks", 4) * num(&q, "size", 1000),
            num(&q, "size", 1000) as usize,
        )),
        "/stream" => Response::new(streamed(num(&q, "bytes", 1 << 20), 64 * 1024)),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(num(&q, "ms", 500))).await;
            Response::new(body::full("slow answer"))
        }
        "/etag" => {
            let fresh = req
                .headers()
                .get("if-none-match")
                .is_some_and(|v| v == "\"v1\"");
            let mut r = if fresh {
                let mut r = Response::new(body::empty());
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                r
            } else {
                Response::new(body::full("versioned"))
            };
            r.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
            r
        }
        "/bigjson" => {
            // `{"status":"RECONNECT_REQUIRED",...,"filler":"xxx..."}` of `bytes`
            // bytes, streamed without a length.
            let total = num(&q, "bytes", 10 << 20) as usize;
            let head = br#"{"status":"RECONNECT_REQUIRED","payload":{"reconnect_id":"r-big","type":"reconnect"},"filler":""#;
            let tail = b"\"}";
            let mut body = Vec::with_capacity(total);
            body.extend_from_slice(head);
            body.resize(total - tail.len(), b'x');
            body.extend_from_slice(tail);
            let body = Bytes::from(body);
            let chunks: Vec<Bytes> = body.chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
            let mut iter = chunks.into_iter();
            let stream =
                PollFnStream(move || iter.next().map(|c| Ok::<_, Infallible>(Frame::data(c))));
            let mut r = Response::new(body::boxed(StreamBody::new(stream)));
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r
        }
        "/gated" => {
            // A JSON answer whose first chunk comes at once and the rest only
            // when the test adds a permit to `gate`.
            let stats = stats.clone();
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
            tokio::spawn(async move {
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from_static(
                        br#"{"status":"OK","payload":{"accounts":[],"pad":""#,
                    ))))
                    .await;
                if let Ok(permit) = stats.gate.acquire().await {
                    permit.forget();
                }
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from(format!(
                        "{}\"}}}}",
                        "p".repeat(1000)
                    )))))
                    .await;
            });
            let stream = ReceiverStream(rx);
            let mut r = Response::new(body::boxed(StreamBody::new(stream)));
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r
        }
        "/hop" => {
            let mut r = Response::new(body::full("hop"));
            let h = r.headers_mut();
            h.insert("connection", "x-hop-secret".parse().unwrap());
            h.insert("x-hop-secret", "must not reach the client".parse().unwrap());
            h.insert("keep-alive", "timeout=5".parse().unwrap());
            h.insert("proxy-authenticate", "Basic".parse().unwrap());
            h.insert("x-end-to-end", "kept".parse().unwrap());
            r
        }
        "/big-headers" => {
            let mut r = Response::new(body::full("big"));
            let kib = num(&q, "kib", 8) as usize;
            r.headers_mut()
                .insert("x-big", "b".repeat(kib * 1024).parse().unwrap());
            r
        }
        "/lean" => {
            let mut r = Response::new(body::full(r#"{"status":"OK","payload":{}}"#));
            let h = r.headers_mut();
            h.insert("content-type", "application/json".parse().unwrap());
            h.insert("lean-correlation-id", "iAqmKreCTvfWKaEu".parse().unwrap());
            h.insert(
                "lean-trace-id",
                "0af7651916cd43dd8448eb211c80319c".parse().unwrap(),
            );
            r
        }
        p if p.starts_with("/status/") => {
            let code: u16 = p["/status/".len()..].parse().unwrap_or(500);
            let status = StatusCode::from_u16(code).unwrap();
            let body = if matches!(code, 204 | 304) {
                body::empty()
            } else {
                body::full(format!("status {code}"))
            };
            let mut r = Response::new(body);
            *r.status_mut() = status;
            if (300..400).contains(&code) {
                r.headers_mut()
                    .insert("location", "/elsewhere".parse().unwrap());
            }
            r
        }
        _ => {
            let mut r = Response::new(body::full("no such route"));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    };
    response
        .headers_mut()
        .insert("x-origin", "test".parse().unwrap());
    response
}

/// Answers with what arrived: method, path, query, headers (those a proxy may not
/// change), body length and checksum; with `inspect`, also what a proxy adds
/// (host, forwarded headers, request id, version). The body is consumed as it
/// streams, never kept.
async fn echo(req: Request<Incoming>, inspect: bool) -> Response<Body> {
    let (parts, mut incoming) = req.into_parts();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        if !NOT_ECHOED.contains(&name.as_str()) {
            headers
                .entry(name.to_string())
                .or_default()
                .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
    }
    let mut len = 0u64;
    let mut sum = Fnv::default();
    while let Some(frame) = incoming.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            len += data.len() as u64;
            sum.update(data);
        }
    }
    let mut view = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_len": len,
        "body_fnv": sum.0,
    });
    if inspect {
        let text = |name: &str| {
            parts
                .headers
                .get(name)
                .map(|h| h.to_str().unwrap().to_string())
        };
        let extra = json!({
            "version": format!("{:?}", parts.version),
            "host": text("host"),
            "forwarded_for": text("x-forwarded-for"),
            "forwarded_proto": text("x-forwarded-proto"),
            "forwarded_host": text("x-forwarded-host"),
            "request_id": text("x-request-id"),
            "all_headers": parts.headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        });
        view.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
    }
    let mut r = Response::new(body::full(view.to_string()));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

// ---------------------------------------------------------------- proxy

/// The proxy, served in-process through [`App::serve`], as the binary does.
pub struct Proxy {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The embedded Mockbank, when no upstream was configured.
    pub mockbank: Option<leanproxy::mockbank::Mockbank>,
    pub mockbank_addr: Option<SocketAddr>,
    /// The reconnect registry the proxy records into.
    pub registry: leanproxy::reconnect::ReconnectRegistry,
    /// The webhook catcher.
    pub webhooks: leanproxy::webhooks::Webhooks,
    pub webhooks_addr: SocketAddr,
    data: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy configured by `toml` (no environment is read), keeping its
    /// state in a fresh temporary directory.
    pub async fn start(toml: &str) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let mut proxy = Proxy::start_in(toml, dir.path()).await;
        proxy.data = Some(dir);
        proxy
    }

    /// Starts a proxy keeping its state in `data_dir` (unless `toml` says where).
    pub async fn start_in(toml: &str, data_dir: &std::path::Path) -> Proxy {
        let mut settings = settings(toml);
        if !toml.contains("state_file") && !toml.contains("data_dir") {
            settings.proxy.data_dir = data_dir.to_owned();
            settings.reconnect.state_file = data_dir.join("reconnects.json");
        }
        let app = App::open(&settings).await.expect("proxy builds");
        let listeners = Listeners {
            proxy: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            admin: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            mockbank: match app.mockbank() {
                Some(_) => Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
                None => None,
            },
            webhooks: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let webhooks_addr = listeners.webhooks.local_addr().unwrap();
        let webhooks = app.webhooks().clone();
        let mockbank = app.mockbank().cloned();
        let registry = app.registry().clone();
        let mockbank_addr = listeners.mockbank.as_ref().map(|l| l.local_addr().unwrap());
        let addr = listeners.proxy.local_addr().unwrap();
        let admin = listeners.admin.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.serve(listeners, async {
                let _ = stopped.await;
            })
            .await
            .expect("proxy serves");
        });
        Proxy {
            addr,
            admin,
            mockbank,
            mockbank_addr,
            registry,
            webhooks,
            webhooks_addr,
            data: None,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A proxy in front of `upstream` with `extra` config lines.
    pub async fn in_front_of(upstream: &str, extra: &str) -> Proxy {
        Proxy::start(&format!("[proxy]\nupstream = \"{upstream}\"\n{extra}")).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Triggers shutdown and waits for the server to finish draining.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// Triggers shutdown without waiting.
    pub fn begin_shutdown(&mut self) -> JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().expect("not shut down yet")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The value of one series of the admin listener at `admin`'s `/metrics`
/// (`name{labels}` exactly as exposed); 0 when absent.
pub async fn metric(admin: SocketAddr, series: &str) -> f64 {
    let text = get(&h1_client(), &format!("http://{admin}/metrics"))
        .await
        .body;
    let text = String::from_utf8_lossy(&text);
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// Settings from TOML text with an empty environment.
pub fn settings(toml: &str) -> Settings {
    let raw = config::parse(toml).expect("test config parses");
    Settings::from_raw(raw, &|_| None).expect("test config is valid")
}

// ---------------------------------------------------------------- clients

pub type HttpClient = Client<HttpConnector, Body>;

pub fn h1_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// What a client observes of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Observed {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn send(client: &HttpClient, req: Request<Body>) -> Observed {
    let response = client.request(req).await.expect("request goes through");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body arrives").to_bytes();
    Observed {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(client: &HttpClient, url: &str) -> Observed {
    send(client, Request::get(url).body(body::empty()).unwrap()).await
}

/// An address on loopback where nothing listens.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

// ---------------------------------------------------------------- binary

/// The real `leanproxy` binary, killed when dropped.
pub struct Binary {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub mockbank: Option<SocketAddr>,
    pub webhooks: SocketAddr,
    pub output: Arc<Mutex<String>>,
    /// The threads copying stdout and stderr; joined when the process exits.
    readers: Vec<std::thread::JoinHandle<()>>,
    data: Option<tempfile::TempDir>,
}

impl Binary {
    /// Runs `leanproxy serve` with ephemeral listeners and `args`; waits until
    /// it prints its addresses.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Binary {
        let dir = tempfile::tempdir().unwrap();
        let mut bin = Binary::spawn_in(args, env, dir.path());
        bin.data = Some(dir);
        bin
    }

    /// The `leanproxy serve` command [`Binary::spawn_in`] runs: ephemeral
    /// loopback listeners, no credentials from the environment, piped output.
    pub fn command(args: &[&str], env: &[(&str, &str)], data_dir: &std::path::Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_leanproxy"));
        cmd.arg("serve")
            .args(["--data-dir", data_dir.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--mockbank-listen", "127.0.0.1:0"])
            .args(["--webhooks-listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("LEAN_APP_TOKEN")
            .env_remove("LEANPROXY_CONFIG")
            .env_remove("LEANPROXY_ADMIN_TOKEN")
            .env_remove("LEANPROXY_ADMIN")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Like [`Binary::spawn`], keeping state in `data_dir`.
    pub fn spawn_in(args: &[&str], env: &[(&str, &str)], data_dir: &std::path::Path) -> Binary {
        let mut child = Binary::command(args, env, data_dir)
            .spawn()
            .expect("binary starts");
        let output = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = output.clone();
        let err_reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = output.clone();
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let mut proxy = None;
        let mut admin = None;
        let mut mockbank = None;
        let mut webhooks = None;
        // The proxy line says when the embedded Mockbank runs.
        let mut wants_mockbank = false;
        while proxy.is_none()
            || admin.is_none()
            || webhooks.is_none()
            || (wants_mockbank && mockbank.is_none())
        {
            let line = match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => line,
                Err(_) => {
                    // Never leave the process behind when giving up on it.
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("binary did not start: {}", output.lock().unwrap());
                }
            };
            let addr = |prefix: &str| {
                line.strip_prefix(prefix)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|a| a.parse::<SocketAddr>().ok())
            };
            if line.starts_with("leanproxy proxy listening") && line.contains("(embedded Mockbank)")
            {
                wants_mockbank = true;
            }
            proxy = proxy.or(addr("leanproxy proxy listening on http://"));
            admin = admin.or(addr("leanproxy admin listening on http://"));
            mockbank = mockbank.or(addr("leanproxy mockbank listening on http://"));
            webhooks = webhooks.or(addr("leanproxy webhooks listening on http://"));
        }
        Binary {
            child,
            proxy: proxy.unwrap(),
            admin: admin.unwrap(),
            mockbank,
            webhooks: webhooks.unwrap(),
            output,
            readers: vec![err_reader, out_reader],
            data: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit and returns its code. Async, so
    /// the test's own client connections keep being driven meanwhile.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The pipes close with the process; let the readers finish copying.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("binary did not exit within {limit:?}");
    }

    /// Peak resident set size (VmHWM) in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status");
        kb * 1024
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion with `args` (bounded: killed after 30 s) and
/// returns (code, stdout, stderr).
/// Waits (blocking, bounded) for `child` to exit; kills it and fails past `limit`.
pub fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("leanproxy did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn run_binary(args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_leanproxy"))
        .args(args)
        .env_remove("LEAN_APP_TOKEN")
        .env_remove("LEANPROXY_CONFIG")
        .env_remove("LEANPROXY_ADMIN_TOKEN")
        .env_remove("LEANPROXY_ADMIN")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_bounded(&mut child, Duration::from_secs(30));
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------- webhooks

/// One webhook delivery as a receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An app's webhook endpoint on loopback: records every POST and answers 200,
/// or 500 for the first `fail_first` attempts, or a chosen status to bodies
/// containing a chosen text ([`Receiver::refusing`]).
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    attempts: Arc<AtomicUsize>,
    arrived: Arc<tokio::sync::Notify>,
    refuse: Arc<Mutex<Option<(String, StatusCode)>>>,
    task: JoinHandle<()>,
}

impl Receiver {
    pub async fn start(fail_first: usize) -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().unwrap(), fail_first).await
    }

    /// A receiver answering `status` (not recorded) to every body containing
    /// `needle`, until [`Receiver::accept_all`].
    pub async fn refusing(needle: &str, status: u16) -> Receiver {
        let receiver = Receiver::start(0).await;
        let status = StatusCode::from_u16(status).unwrap();
        *receiver.refuse.lock().unwrap() = Some((needle.to_string(), status));
        receiver
    }

    /// Stops refusing: every later attempt is answered 200.
    pub fn accept_all(&self) {
        *self.refuse.lock().unwrap() = None;
    }

    /// A receiver on a given address (e.g. one an app was "down" on).
    pub async fn start_on(addr: SocketAddr, fail_first: usize) -> Receiver {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(AtomicUsize::new(0));
        let arrived = Arc::new(tokio::sync::Notify::new());
        let refuse: Arc<Mutex<Option<(String, StatusCode)>>> = Arc::default();
        let (r, a, n, f) = (
            received.clone(),
            attempts.clone(),
            arrived.clone(),
            refuse.clone(),
        );
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (r, a, n, f) = (r.clone(), a.clone(), n.clone(), f.clone());
                conns.spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (r, a, n, f) = (r.clone(), a.clone(), n.clone(), f.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            let attempt = a.fetch_add(1, Ordering::SeqCst);
                            let mut response = Response::new(body::empty());
                            let refused = f.lock().unwrap().as_ref().and_then(|(needle, s)| {
                                let text = String::from_utf8_lossy(&body);
                                text.contains(needle.as_str()).then_some(*s)
                            });
                            if attempt < fail_first {
                                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                            } else if let Some(status) = refused {
                                *response.status_mut() = status;
                            } else {
                                r.lock().unwrap().push(Received {
                                    headers: parts.headers,
                                    body,
                                });
                            }
                            n.notify_waiters();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            received,
            attempts,
            arrived,
            refuse,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/webhooks/lean", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    /// Waits (bounded, woken by each attempt) until `n` attempts arrived.
    pub async fn wait_attempts(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.attempts() >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "no {n} webhook attempts within 10 s; got {}",
                    self.attempts()
                );
            }
        }
    }

    /// The deliveries of `kind` once there are at least `n` of them (bounded wait,
    /// woken by each arrival).
    pub async fn wait_for(&self, kind: &str, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let matching: Vec<Received> = self
                .received()
                .into_iter()
                .filter(|r| r.json()["type"] == kind)
                .collect();
            if matching.len() >= n {
                return matching;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "no {n} `{kind}` webhooks within 10 s; got {:?}",
                    self.received()
                        .iter()
                        .map(|r| r.json()["type"].clone())
                        .collect::<Vec<_>>()
                );
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A JSON POST to `url`.
pub fn post_json(url: String, body: serde_json::Value) -> Request<Body> {
    Request::post(url)
        .header("content-type", "application/json")
        .body(body::full(body.to_string()))
        .unwrap()
}

/// Creates the customer `app_user_id` and links the Mockbank user `username`
/// (with `otp` when given) through `base` (`http://host:port`, the proxy or
/// the Mockbank); returns the new entity's id.
pub async fn link_entity(
    client: &HttpClient,
    base: &str,
    app_user_id: &str,
    username: &str,
    password: &str,
    otp: Option<&str>,
) -> String {
    let customer = send(
        client,
        post_json(
            format!("{base}/customers/v1/"),
            serde_json::json!({"app_user_id": app_user_id}),
        ),
    )
    .await
    .json();
    let mut link = serde_json::json!({
        "customer_id": customer["customer_id"],
        "username": username,
        "password": password,
    });
    if let Some(otp) = otp {
        link["otp"] = otp.into();
    }
    let linked = send(
        client,
        post_json(format!("{base}/_mockbank/link/connect"), link),
    )
    .await;
    linked.json()["id"]
        .as_str()
        .unwrap_or_else(|| panic!("linked: {:?}", String::from_utf8_lossy(&linked.body)))
        .to_string()
}

/// Reads until `buf` holds `n` bytes; false at the end of the stream.
pub async fn fill(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, n: usize) -> bool {
    let mut chunk = [0u8; 16384];
    while buf.len() < n {
        match tokio::io::AsyncReadExt::read(stream, &mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(read) => buf.extend_from_slice(&chunk[..read]),
        }
    }
    true
}

/// Where a message's head ends (after its blank line), when it has.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// A head's `content-length` (0 when it has none).
pub fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// Reads from `stream` into `buf` until `buf` holds a whole message head:
/// where the head ends. `None` when the stream ends first.
pub async fn read_head(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(end) = head_end(buf) {
            return Some(end);
        }
        let more = buf.len() + 1;
        if !fill(stream, buf, more).await {
            return None;
        }
    }
}

/// Reads one answer with a `content-length` from `stream` (kept open): its
/// status and body. `None` when the stream ends first.
pub async fn read_answer(stream: &mut tokio::net::TcpStream) -> Option<(u16, Vec<u8>)> {
    let mut buf = Vec::new();
    let end = read_head(stream, &mut buf).await?;
    let length = content_length(&buf[..end]);
    if !fill(stream, &mut buf, end + length).await {
        return None;
    }
    let status = String::from_utf8_lossy(buf.get(9..12)?).parse().ok()?;
    Some((status, buf[end..end + length].to_vec()))
}

/// Sends `GET path` on `stream` (kept open) and reads its answer: status and
/// body. `None` when the stream ends first.
pub async fn raw_get(stream: &mut tokio::net::TcpStream, path: &str) -> Option<(u16, Vec<u8>)> {
    let head = format!("GET {path} HTTP/1.1\r\nhost: app\r\n\r\n");
    tokio::io::AsyncWriteExt::write_all(stream, head.as_bytes())
        .await
        .ok()?;
    read_answer(stream).await
}

/// Starts `/gated` through `url` with `client` and waits (at most 5 s) for the
/// first chunk, which the origin sends before its gate opens; the body is left
/// to read the rest.
pub async fn gated_first_chunk(client: &HttpClient, url: &str) -> (Bytes, Incoming) {
    let response = client.get(url.parse().unwrap()).await.unwrap();
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the first chunk came before the origin's gate opened")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    (first, body)
}
