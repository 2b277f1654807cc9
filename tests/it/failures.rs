//! Upstream failures become 502/504 in Lean's error envelope; the proxy keeps
//! serving.

use crate::support::{closed_port, get, h1_client, raw_get, Observed, Origin, Proxy};

fn assert_lean_error(r: &Observed, status: u16, code: &str, cause: &str) {
    assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    let obj = body.as_object().unwrap();
    for key in ["status", "message", "timestamp", "metadata"] {
        assert!(obj.contains_key(key), "Lean envelope has `{key}`: {body}");
    }
    assert_eq!(body["status"], code);
    assert_eq!(body["metadata"]["cause"], cause);
    assert_eq!(body["metadata"]["source"], "leanproxy");
    let ts = body["timestamp"].as_str().unwrap();
    assert!(ts.ends_with('Z') && ts.contains('T'), "{ts}");
}

#[tokio::test]
async fn refused_upstream_is_a_502_and_the_proxy_keeps_serving() {
    let down = closed_port().await;
    let proxy = Proxy::in_front_of(&format!("http://{down}"), "").await;
    let client = h1_client();
    let r = get(&client, &proxy.url("/data/v1/accounts")).await;
    assert_lean_error(&r, 502, "BAD_GATEWAY", "connect_refused");
    let message = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(&down.to_string()),
        "names the upstream: {message}"
    );
    assert!(message.contains("refused"), "says what failed: {message}");

    // The upstream comes up on the same port: the next request works.
    let _origin = crate::support::OriginBuilder::default()
        .bind(down)
        .start()
        .await;
    let again = get(&client, &proxy.url("/fixed?len=5")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body.len(), 5);
}

#[tokio::test]
async fn upstream_that_never_accepts_is_a_504_connect_timeout() {
    // A listener with a zero backlog that never accepts: once its queue is full,
    // SYNs are dropped and connecting hangs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let proxy = Proxy::in_front_of(
        &format!("http://{addr}"),
        "connect_timeout = \"300ms\"\nresponse_timeout = \"10s\"\n",
    )
    .await;
    let started = std::time::Instant::now();
    let r = get(&h1_client(), &proxy.url("/")).await;
    assert_lean_error(&r, 504, "GATEWAY_TIMEOUT", "connect_timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    drop(listener);
}

#[tokio::test]
async fn slow_upstream_is_a_504_and_the_next_request_works() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "response_timeout = \"200ms\"\n").await;
    let client = h1_client();
    let r = get(&client, &proxy.url("/slow?ms=3000")).await;
    assert_lean_error(&r, 504, "GATEWAY_TIMEOUT", "response_timeout");
    assert!(r.json()["message"].as_str().unwrap().contains("200ms"));

    let ok = get(&client, &proxy.url("/fixed?len=10")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body.len(), 10);
}

/// Sends `path` on `app` (kept alive) and returns the status and how long
/// the answer took.
async fn timed_get(app: &mut tokio::net::TcpStream, path: &str) -> (u16, std::time::Duration) {
    let started = std::time::Instant::now();
    let (status, _) = raw_get(app, path)
        .await
        .expect("an answer on the open connection");
    (status, started.elapsed())
}

/// The response timeout counts from each request's own start, also when the
/// app connection's earlier request left its timer due sooner.
#[tokio::test]
async fn response_timeout_counts_from_each_requests_start_on_a_kept_connection() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "response_timeout = \"600ms\"\n").await;
    let mut app = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(timed_get(&mut app, "/fixed?len=10").await.0, 200);
    // The first request's due time passes 100 ms into this one, which takes
    // 400 ms: within its own 600 ms.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (status, took) = timed_get(&mut app, "/slow?ms=400").await;
    assert_eq!(status, 200, "answered within its own timeout ({took:?})");
    let (status, took) = timed_get(&mut app, "/slow?ms=3000").await;
    assert_eq!(status, 504);
    assert!(
        took >= std::time::Duration::from_millis(550)
            && took < std::time::Duration::from_millis(2500),
        "timed out after its own 600 ms, not another request's: {took:?}"
    );
    assert_eq!(
        timed_get(&mut app, "/fixed?len=10").await.0,
        200,
        "and it keeps serving"
    );
}

#[tokio::test]
async fn unresolvable_host_is_a_502_naming_dns() {
    let proxy = Proxy::in_front_of("http://no-such-host.invalid", "").await;
    let r = get(&h1_client(), &proxy.url("/")).await;
    assert_lean_error(&r, 502, "BAD_GATEWAY", "dns");
}

#[tokio::test]
async fn upstream_errors_are_passed_through_untouched() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    let r = get(&h1_client(), &proxy.url("/status/502")).await;
    assert_eq!(r.status, 502);
    assert_eq!(
        &r.body[..],
        b"status 502",
        "an upstream's own 502 is not rewritten"
    );
}

/// Heads may be up to 64 KiB each way: larger request heads get 431 from the
/// proxy, larger answer heads a 502, and the proxy keeps serving.
#[tokio::test]
async fn heads_up_to_64_kib_pass_and_larger_ones_are_refused() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    let client = h1_client();
    let send_with_header = |kib: usize| {
        let request = http::Request::get(proxy.url("/echo"))
            .header("x-app-data", "a".repeat(kib * 1024))
            .body(leanproxy::body::empty())
            .unwrap();
        crate::support::send(&client, request)
    };
    let r = send_with_header(48).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["headers"]["x-app-data"][0].as_str().map(str::len),
        Some(48 * 1024)
    );
    let before = origin
        .stats
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(send_with_header(70).await.status, 431);
    let after = origin
        .stats
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        before, after,
        "the oversized request never reached the origin"
    );

    let r = get(&client, &proxy.url("/big-headers?kib=48")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-big").map(str::len), Some(48 * 1024));
    let r = get(&client, &proxy.url("/big-headers?kib=80")).await;
    assert_eq!(r.status, 502, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["metadata"]["source"], "leanproxy");
    assert_eq!(get(&client, &proxy.url("/echo")).await.status, 200);
}
