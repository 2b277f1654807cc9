//! The admin listener and the Mockbank's control endpoints refuse what a web
//! page could make a browser send them: foreign `Host` names (DNS rebinding)
//! and state changes from other sites. curl-like clients and the proxied
//! Mockbank flow keep working.

use std::time::Duration;

use http::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use leanproxy::body::{self, Body};
use serde_json::{json, Value};

use crate::support::{get, h1_client, link_entity, send, Observed, Proxy};

fn rule() -> String {
    json!({"id": "web-page", "action": "status", "status": 500, "match": {"path": "/nowhere"}})
        .to_string()
}

fn request(method: Method, url: String, headers: &[(&str, &str)], body: Body) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(body).unwrap()
}

async fn fault_ids(p: &Proxy) -> Vec<String> {
    let listed = get(&h1_client(), &p.admin_url("/api/faults")).await;
    assert_eq!(listed.status, 200);
    listed.json()["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

/// A refusal in Lean's envelope, without CORS headers.
fn assert_refused(answer: &Observed, status: u16, words: &[&str]) -> Value {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    let envelope = answer.json();
    assert!(envelope["timestamp"].is_string(), "{envelope}");
    let message = envelope["message"].as_str().unwrap();
    for word in words {
        assert!(message.contains(word), "`{word}` not in {message}");
    }
    assert!(
        answer
            .headers
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "{:?}",
        answer.headers
    );
    envelope
}

#[tokio::test]
async fn a_cross_site_text_plain_post_installs_no_fault_rule() {
    let p = Proxy::start("").await;
    let c = h1_client();
    let refused = send(
        &c,
        request(
            Method::POST,
            p.admin_url("/api/faults"),
            &[
                ("content-type", "text/plain"),
                ("origin", "http://evil.example"),
            ],
            body::full(rule()),
        ),
    )
    .await;
    let envelope = assert_refused(&refused, 403, &["http://evil.example", "admin listener"]);
    assert_eq!(envelope["status"], "FORBIDDEN");
    assert_eq!(envelope["metadata"]["cause"], "cross_site");
    assert_eq!(fault_ids(&p).await, Vec::<String>::new());

    // Nor may another site clear the rules the developer added.
    let added = send(
        &c,
        request(
            Method::POST,
            p.admin_url("/api/faults"),
            &[("content-type", "application/json")],
            body::full(rule()),
        ),
    )
    .await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    for headers in [
        &[("origin", "http://evil.example")][..],
        &[("sec-fetch-site", "cross-site")][..],
    ] {
        let cleared = send(
            &c,
            request(
                Method::DELETE,
                p.admin_url("/api/faults"),
                headers,
                body::empty(),
            ),
        )
        .await;
        assert_refused(&cleared, 403, &["another site"]);
    }
    assert_eq!(fault_ids(&p).await, ["web-page"]);
}

#[tokio::test]
async fn a_same_origin_json_post_adds_a_rule() {
    let p = Proxy::start("").await;
    let origin = format!("http://{}", p.admin);
    let added = send(
        &h1_client(),
        request(
            Method::POST,
            p.admin_url("/api/faults"),
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("origin", &origin),
                ("sec-fetch-site", "same-origin"),
            ],
            body::full(rule()),
        ),
    )
    .await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    assert_eq!(fault_ids(&p).await, ["web-page"]);
}

#[tokio::test]
async fn json_endpoints_refuse_other_content_types_with_415() {
    let p = Proxy::start("").await;
    let c = h1_client();
    for (path, content_type) in [
        ("/api/faults", Some("text/plain")),
        ("/api/faults", None),
        (
            "/api/tokens/customer",
            Some("application/x-www-form-urlencoded"),
        ),
    ] {
        let headers: Vec<(&str, &str)> = content_type
            .map(|t| ("content-type", t))
            .into_iter()
            .collect();
        let answer = send(
            &c,
            request(
                Method::POST,
                p.admin_url(path),
                &headers,
                body::full(rule()),
            ),
        )
        .await;
        let envelope = assert_refused(&answer, 415, &["application/json"]);
        assert_eq!(envelope["status"], "UNSUPPORTED_MEDIA_TYPE", "{path}");
    }
    assert_eq!(fault_ids(&p).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_foreign_host_cannot_read_the_request_log() {
    let p = Proxy::start("").await;
    let c = h1_client();
    for path in ["/api/requests", "/api/requests.har", "/metrics"] {
        let refused = send(
            &c,
            request(
                Method::GET,
                p.admin_url(path),
                &[("host", "evil.example")],
                body::empty(),
            ),
        )
        .await;
        let envelope = assert_refused(&refused, 403, &["`evil.example`", "admin.allowed_hosts"]);
        assert_eq!(envelope["metadata"]["cause"], "foreign_host");
    }
    let port = p.admin.port();
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let answer = send(
            &c,
            request(
                Method::GET,
                p.admin_url("/api/requests"),
                &[("host", &host)],
                body::empty(),
            ),
        )
        .await;
        assert_eq!(answer.status, 200, "{host}");
    }
    // Another port of this machine is another origin.
    let other = send(
        &c,
        request(
            Method::GET,
            p.admin_url("/api/requests"),
            &[("host", &format!("localhost:{}", port + 1))],
            body::empty(),
        ),
    )
    .await;
    assert_eq!(other.status, 403);
}

#[tokio::test]
async fn a_name_in_allowed_hosts_is_answered() {
    let p = Proxy::start("[admin]\nallowed_hosts = [\"leanproxy.local\"]\n").await;
    let host = format!("leanproxy.local:{}", p.admin.port());
    let answer = send(
        &h1_client(),
        request(
            Method::GET,
            p.admin_url("/api/requests"),
            &[("host", &host)],
            body::empty(),
        ),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
}

#[tokio::test]
async fn over_h2_the_authority_is_the_host() {
    let p = Proxy::start("").await;
    let stream = tokio::net::TcpStream::connect(p.admin).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for (authority, status) in [
        ("evil.example", StatusCode::FORBIDDEN),
        (&*p.admin.to_string(), StatusCode::OK),
    ] {
        let req = Request::get(format!("http://{authority}/api/requests"))
            .body(body::empty())
            .unwrap();
        let answer = sender.send_request(req).await.unwrap();
        assert_eq!(answer.status(), status, "{authority}");
    }
}

#[tokio::test]
async fn the_mockbank_controls_refuse_other_sites_but_its_api_does_not() {
    let p = Proxy::start("").await;
    let mockbank = p.mockbank.clone().unwrap();
    let direct = format!("http://{}", p.mockbank_addr.unwrap());
    let c = h1_client();
    let day = json!({"seconds": 86400}).to_string();
    for (url, headers) in [
        (
            format!("{direct}/_mockbank/clock/advance"),
            &[("sec-fetch-site", "cross-site")][..],
        ),
        (
            format!("{direct}/_mockbank/clock/advance"),
            &[
                ("content-type", "text/plain"),
                ("origin", "http://evil.example"),
            ][..],
        ),
        // Through the proxy, the page's Origin goes along.
        (
            p.url("/_mockbank/clock/advance"),
            &[("origin", "http://evil.example")][..],
        ),
    ] {
        let refused = send(
            &c,
            request(Method::POST, url.clone(), headers, body::full(day.clone())),
        )
        .await;
        let envelope = assert_refused(&refused, 403, &["Mockbank"]);
        assert_eq!(envelope["metadata"]["cause"], "cross_site", "{url}");
    }
    assert!(
        mockbank.clock().elapsed() < Duration::from_secs(3600),
        "the clock was not advanced"
    );

    let rebound = send(
        &c,
        request(
            Method::GET,
            format!("{direct}/_mockbank/users"),
            &[("host", "evil.example")],
            body::empty(),
        ),
    )
    .await;
    assert_refused(&rebound, 403, &["`evil.example`", "admin.allowed_hosts"]);
    // Lean's API answers apps under any name (here: no token, so 401).
    let api = send(
        &c,
        request(
            Method::GET,
            format!("{direct}/banks/v1/"),
            &[("host", "evil.example")],
            body::empty(),
        ),
    )
    .await;
    assert_eq!(api.status, 401, "{:?}", api.body);
}

#[tokio::test]
async fn mockbank_controls_through_the_proxy_keep_working() {
    let p = Proxy::start("").await;
    let c = h1_client();
    let entity = link_entity(
        &c,
        &p.url(""),
        "guard-user",
        "otp_user",
        "mb-111127",
        Some("1111"),
    )
    .await;
    assert!(!entity.is_empty());
    let advanced = send(
        &c,
        request(
            Method::POST,
            p.url("/_mockbank/clock/advance"),
            &[],
            body::full(json!({"seconds": 60}).to_string()),
        ),
    )
    .await;
    assert_eq!(advanced.status, 200, "{:?}", advanced.body);
}
