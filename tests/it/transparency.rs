//! Through the proxy, an exchange looks the same as directly: status, end-to-end
//! headers, body, and what the origin received.

use http::{HeaderMap, Method, Request};

use crate::support::{self, get, h1_client, h2_client, send, streamed, Observed, Origin, Proxy};
use leanproxy::body;

struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: BodyKind,
    h2: bool,
}

#[derive(Clone, Copy)]
enum BodyKind {
    None,
    Fixed(&'static str),
    Chunked(u64),
}

fn case(name: &'static str, method: Method, path: &'static str) -> Case {
    Case {
        name,
        method,
        path,
        headers: &[],
        body: BodyKind::None,
        h2: false,
    }
}

impl Case {
    fn headers(mut self, headers: &'static [(&'static str, &'static str)]) -> Self {
        self.headers = headers;
        self
    }
    fn body(mut self, body: BodyKind) -> Self {
        self.body = body;
        self
    }
    fn h2(mut self) -> Self {
        self.h2 = true;
        self
    }
}

fn cases() -> Vec<Case> {
    use BodyKind::*;
    vec![
        case("get", Method::GET, "/echo"),
        case(
            "query string",
            Method::GET,
            "/echo?a=1&b=two%20words&empty=&a=2",
        ),
        case("head fixed", Method::HEAD, "/fixed?len=100"),
        case("post json", Method::POST, "/echo")
            .headers(&[("content-type", "application/json")])
            .body(Fixed(r#"{"entity_id":"e-1","async":false}"#)),
        case("put chunked", Method::PUT, "/echo").body(Chunked(300_000)),
        case("patch", Method::PATCH, "/echo").body(Fixed("patch")),
        case("delete", Method::DELETE, "/echo?reason=USER_REQUESTED"),
        case("options", Method::OPTIONS, "/echo"),
        case("204 no content", Method::GET, "/status/204"),
        case("304 not modified", Method::GET, "/etag").headers(&[("if-none-match", "\"v1\"")]),
        case("200 with etag", Method::GET, "/etag"),
        case("301 redirect not followed", Method::GET, "/status/301"),
        case("404 passed through", Method::GET, "/status/404"),
        case("500 passed through", Method::GET, "/status/500"),
        case("503 passed through", Method::POST, "/status/503").body(Fixed("x")),
        case(
            "chunked response",
            Method::GET,
            "/chunked?chunks=7&size=1000",
        ),
        case("fixed 200 KiB response", Method::GET, "/fixed?len=204800"),
        case("large headers both ways", Method::GET, "/big-headers").headers(&[
            ("x-large", LARGE),
            ("x-multi", "1"),
            ("cookie", "a=1; b=2"),
        ]),
        case("lean correlation headers", Method::GET, "/lean"),
        case("app headers reach origin", Method::GET, "/echo").headers(&[
            ("user-agent", "my-app/1.0"),
            ("accept", "application/json"),
            ("x-custom", "kept"),
        ]),
        case("h2 get", Method::GET, "/echo?x=1").h2(),
        case("h2 post", Method::POST, "/echo")
            .body(Fixed("h2 body"))
            .h2(),
        case("h2 chunked upload", Method::PUT, "/echo")
            .body(Chunked(100_000))
            .h2(),
        case("h2 204", Method::GET, "/status/204").h2(),
        case("h2 large response", Method::GET, "/fixed?len=300000").h2(),
    ]
}

const LARGE: &str = concat!(
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
);

async fn run(case: &Case, base: &str) -> Observed {
    let mut builder = Request::builder()
        .method(case.method.clone())
        .uri(format!("{base}{}", case.path));
    for (k, v) in case.headers {
        builder = builder.header(*k, *v);
    }
    let body = match case.body {
        BodyKind::None => body::empty(),
        BodyKind::Fixed(text) => body::full(text),
        BodyKind::Chunked(n) => streamed(n, 16 * 1024),
    };
    let client = if case.h2 { h2_client() } else { h1_client() };
    send(&client, builder.body(body).unwrap()).await
}

/// Headers a proxy changes by design: connection management, the date, and the
/// request id it adds.
fn end_to_end(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut v: Vec<_> = headers
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "date" | "connection" | "keep-alive" | "transfer-encoding" | "x-request-id"
            )
        })
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn proxied_exchanges_match_direct_ones() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    let table = cases();
    assert!(table.len() >= 15);
    for case in &table {
        let direct = run(case, &origin.url()).await;
        let proxied = run(case, &format!("http://{}", proxy.addr)).await;
        assert_eq!(proxied.status, direct.status, "{}: status", case.name);
        assert_eq!(
            end_to_end(&proxied.headers),
            end_to_end(&direct.headers),
            "{}: headers",
            case.name
        );
        assert_eq!(proxied.body, direct.body, "{}: body", case.name);
        assert!(
            proxied.header("x-request-id").is_some(),
            "{}: request id echoed",
            case.name
        );
    }
}

#[tokio::test]
async fn upstream_sees_forwarded_headers_and_its_own_host() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    let r = send(
        &h1_client(),
        Request::get(proxy.url("/inspect"))
            .header("x-request-id", "app-req-42")
            .header("connection", "x-drop-me")
            .header("x-drop-me", "secret hop")
            .header("proxy-authorization", "Basic Zm9vOmJhcg==")
            .body(body::empty())
            .unwrap(),
    )
    .await;
    let seen = r.json();
    assert_eq!(seen["host"], origin.addr.to_string());
    assert_eq!(seen["forwarded_for"], "127.0.0.1");
    assert_eq!(seen["forwarded_proto"], "http");
    assert_eq!(seen["forwarded_host"], proxy.addr.to_string());
    assert_eq!(seen["request_id"], "app-req-42");
    assert_eq!(r.header("x-request-id"), Some("app-req-42"));
    let headers = seen["headers"].as_object().unwrap();
    assert!(
        !headers.contains_key("x-drop-me"),
        "header named in Connection is removed"
    );
    assert!(!headers.contains_key("proxy-authorization"));
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_in_both_directions() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    let r = get(&h1_client(), &proxy.url("/hop")).await;
    assert_eq!(r.header("x-end-to-end"), Some("kept"));
    for name in ["x-hop-secret", "keep-alive", "proxy-authenticate"] {
        assert!(r.header(name).is_none(), "response carried {name}");
    }
    let seen = send(
        &h1_client(),
        Request::get(proxy.url("/inspect"))
            .header("connection", "x-drop-me")
            .header("x-drop-me", "1")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("proxy-connection", "keep-alive")
            .header("x-end-to-end", "kept")
            .body(body::empty())
            .unwrap(),
    )
    .await
    .json();
    let names: Vec<&str> = seen["all_headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(names.contains(&"x-end-to-end"));
    for name in [
        "x-drop-me",
        "keep-alive",
        "te",
        "proxy-connection",
        "transfer-encoding",
    ] {
        assert!(
            !names.contains(&name),
            "upstream received {name}: {names:?}"
        );
    }
}

#[tokio::test]
async fn asterisk_form_target_is_refused_clearly() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"OPTIONS * HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("INVALID_URL"), "{answer}");
    assert_eq!(
        origin
            .stats
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test]
async fn upstream_path_prefix_is_kept() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&format!("{}/status", origin.url()), "").await;
    let r = get(&h1_client(), &proxy.url("/204")).await;
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn generated_request_id_reaches_upstream_and_app() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    let r = get(&h1_client(), &proxy.url("/inspect")).await;
    let id = r.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 36);
    assert_eq!(r.json()["request_id"], id);
}

#[tokio::test]
async fn thousand_sequential_requests_reuse_a_handful_of_connections() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    let client = h1_client();
    for _ in 0..1000 {
        let r = get(&client, &proxy.url("/fixed?len=64")).await;
        assert_eq!(r.status, 200);
    }
    let opened = origin.connections();
    assert!(
        opened <= 4,
        "1000 requests opened {opened} upstream connections"
    );
}

#[test]
fn harness_pattern_is_deterministic() {
    assert_eq!(support::pattern(250, 3).as_ref(), &[250, 0, 1]);
}
