//! Several replicas on one Redis (`[state] backend = "redis"`), against a
//! real `redis-server` of each test's own: a reconnect seen by one replica
//! is known to all, fault quotas are exact across them, a webhook is first
//! on one replica only, a killed replica's deliveries reach the app through
//! the survivors, the fleet's live events reach each replica's listeners,
//! and losing Redis fails no proxied request.
//!
//! Every load is bounded in count and time and stays on loopback.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::BodyExt;
use leanproxy::body;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::support::{get, h1_client, metric, missing, post_json, send, Binary, Proxy, Receiver};

#[path = "../../src/state/test_server.rs"]
mod test_server;

use test_server::RedisServer;

/// Held by each test here: they start several replicas and load them, and
/// the machines have two cores shared with the other tests' timings.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A Redis of the test's own, or `None` (SKIPPED; a failure under CI=true).
fn redis_server() -> Option<RedisServer> {
    let server = RedisServer::start();
    if server.is_none() {
        missing("redis-server (Debian's redis-server package; scripts/test installs it)");
    }
    server
}

/// An upstream answering every call `{"status":"OK"}`, as Lean answers a data
/// call; counts the calls.
async fn lean_ok() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let service = tower::service_fn(move |_req: Request<body::Body>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async {
            let mut r = Response::new(body::full(r#"{"status":"OK","payload":{}}"#));
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            Ok::<_, Infallible>(r)
        }
    });
    tokio::spawn(leanproxy::server::serve(
        listener,
        service,
        std::future::pending(),
        leanproxy::server::Timeouts {
            grace: Duration::from_secs(1),
            idle: Duration::from_secs(60),
            client_write: Duration::from_secs(60),
        },
    ));
    (url, calls)
}

/// Runs `futures` at once, each in a task of its own; their outcomes.
async fn all<T: Send + 'static>(
    futures: impl Iterator<Item = impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

/// The `[state]` lines of a replica named `name` on `server`. Its timeout
/// is generous: the tests share two cores, and a call that times out is
/// (rightly) a rule that cannot count; the outage test sets its own.
fn state(server: &RedisServer, prefix: &str, name: &str, extra: &str) -> String {
    let timeout = if extra.contains("timeout") {
        ""
    } else {
        "timeout = \"5s\"\n"
    };
    format!(
        "[state]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"{prefix}\"\nreplica = \"{name}\"\n{timeout}{extra}",
        server.url()
    )
}

/// A replica in front of `upstream`, on `server` under `prefix`.
async fn replica(
    server: &RedisServer,
    prefix: &str,
    name: &str,
    upstream: &str,
    extra: &str,
) -> Proxy {
    Proxy::start(&format!(
        "[proxy]\nupstream = \"{upstream}\"\n{}",
        state(server, prefix, name, extra)
    ))
    .await
}

/// Adds the rule written `spec` through `proxy`'s admin API.
async fn add_rule(proxy: &Proxy, spec: &str) {
    let r = send(
        &h1_client(),
        post_json(proxy.admin_url("/api/faults"), json!({ "spec": spec })),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

/// Waits (bounded by `limit`) until `check` holds; how long it took.
async fn within<F: std::future::Future<Output = bool>>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> Duration {
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn admin_json(proxy: &Proxy, path: &str) -> Value {
    get(&h1_client(), &proxy.admin_url(path)).await.json()
}

#[tokio::test]
async fn a_reconnect_through_one_replica_is_listed_by_another_and_resolved_through_a_third() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(server) = redis_server() else { return };
    let (upstream, _) = lean_ok().await;
    let a = replica(&server, "t:", "a", &upstream, "").await;
    let b = replica(&server, "t:", "b", &upstream, "").await;
    let c = replica(&server, "t:", "c", &upstream, "").await;
    add_rule(&a, "reconnect entity_id=e-1 count=1").await;

    let client = h1_client();
    let first = get(&client, &a.url("/data/v2/accounts?entity_id=e-1")).await;
    assert_eq!(first.json()["status"], "RECONNECT_REQUIRED");
    within(Duration::from_secs(5), "B lists the reconnect", || async {
        let listed = admin_json(&b, "/api/reconnects").await;
        listed.to_string().contains("\"e-1\"") && listed.to_string().contains("pending")
    })
    .await;
    let record = admin_json(&b, "/api/reconnects/e-1").await;
    assert_eq!(
        (record["state"].as_str(), record["source"].as_str()),
        (Some("pending"), Some("fault"))
    );

    // Its one fault taken, the rule lets C's calls through to the upstream's
    // OK; C knows of the reconnect within a second (at once, told on Redis).
    within(
        Duration::from_secs(5),
        "an OK answer through C resolves it",
        || async {
            let ok = get(&client, &c.url("/data/v2/accounts?entity_id=e-1")).await;
            assert_eq!(ok.json()["status"], "OK");
            admin_json(&a, "/api/reconnects/e-1").await["state"] == "resolved"
        },
    )
    .await;
    let record = admin_json(&a, "/api/reconnects/e-1").await;
    assert_eq!(record["resolved_by"], "ok_response");
    assert_eq!(record["hits"], 1);
}

#[tokio::test]
async fn a_sticky_reconnect_fault_holds_on_every_replica_until_resolved() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(server) = redis_server() else { return };
    let (upstream, _) = lean_ok().await;
    let a = replica(&server, "t:", "a", &upstream, "").await;
    let b = replica(&server, "t:", "b", &upstream, "").await;
    add_rule(&a, "reconnect_required sticky entity_id=e-s count=1").await;
    let client = h1_client();
    let url = |p: &Proxy| p.url("/data/v2/accounts?entity_id=e-s");
    let first = get(&client, &url(&a)).await.json();
    assert_eq!(first["status"], "RECONNECT_REQUIRED");
    assert!(first["results_id"].is_string(), "{first}");
    // Its one application used up on A, the rule holds the entity for the
    // fleet: B answers the same reconnect, with the same id.
    within(Duration::from_secs(5), "B holds it too", || async {
        get(&client, &url(&b)).await.json()["results_id"] == first["results_id"]
    })
    .await;
    for _ in 0..5 {
        let again = get(&client, &url(&b)).await.json();
        assert_eq!(again["results_id"], first["results_id"]);
    }
    // Resolved through A's admin API, B lets the entity go.
    let resolved = send(
        &client,
        Request::delete(a.admin_url("/api/reconnects/e-s"))
            .body(body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(resolved.status.as_u16(), 200);
    within(Duration::from_secs(5), "B lets it go", || async {
        get(&client, &url(&b)).await.json()["status"] == "OK"
    })
    .await;
}

#[tokio::test]
async fn a_count_rule_added_on_one_replica_faults_exactly_its_count_over_three() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(server) = redis_server() else { return };
    let (upstream, calls) = lean_ok().await;
    let fleet = [
        replica(&server, "t:", "a", &upstream, "").await,
        replica(&server, "t:", "b", &upstream, "").await,
        replica(&server, "t:", "c", &upstream, "").await,
    ];
    add_rule(&fleet[0], "status=503 path=/data/* count=10 id=ten").await;
    for other in &fleet[1..] {
        let took = within(
            Duration::from_secs(2),
            "the rule reaches every replica",
            || async { admin_json(other, "/api/faults").await["faults"][0]["id"] == "ten" },
        )
        .await;
        assert!(took < Duration::from_secs(1), "it took {took:?}");
    }

    let client = h1_client();
    let requests = (0..200).map(|i| {
        let url = fleet[i % 3].url("/data/v2/accounts?entity_id=e-9");
        let client = client.clone();
        async move { get(&client, &url).await }
    });
    let answers = tokio::time::timeout(Duration::from_secs(60), all(requests))
        .await
        .expect("200 requests within a minute");
    let faulted = answers
        .iter()
        .filter(|r| r.status.as_u16() == 503 && r.header("x-leanproxy-injected") == Some("ten"))
        .count();
    let ok = answers.iter().filter(|r| r.status.as_u16() == 200).count();
    assert_eq!((faulted, ok), (10, 190));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        190,
        "the rest reached the upstream"
    );
    for replica in &fleet {
        let rule = &admin_json(replica, "/api/faults").await["faults"][0];
        assert_eq!(
            (rule["applied"].as_u64(), rule["remaining"].as_u64()),
            (Some(10), Some(0))
        );
        assert_eq!(rule["retired"], true);
    }
}

#[tokio::test]
async fn a_rate_limit_lets_exactly_its_limit_through_the_fleet() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(server) = redis_server() else { return };
    let (upstream, _) = lean_ok().await;
    let fleet = [
        replica(&server, "t:", "a", &upstream, "").await,
        replica(&server, "t:", "b", &upstream, "").await,
        replica(&server, "t:", "c", &upstream, "").await,
    ];
    add_rule(&fleet[1], "rate_limit=20/1m id=twenty").await;
    for other in [&fleet[0], &fleet[2]] {
        within(
            Duration::from_secs(2),
            "the rule reaches every replica",
            || async { admin_json(other, "/api/faults").await["faults"][0]["id"] == "twenty" },
        )
        .await;
    }
    let client = h1_client();
    let requests = (0..90).map(|i| {
        let url = fleet[i % 3].url("/data/v1/accounts");
        let client = client.clone();
        async move { get(&client, &url).await }
    });
    let answers = tokio::time::timeout(Duration::from_secs(30), all(requests))
        .await
        .expect("90 requests within 30 s");
    let passed = answers.iter().filter(|r| r.status.as_u16() == 200).count();
    let limited = answers.iter().filter(|r| r.status.as_u16() == 429).count();
    assert_eq!((passed, limited), (20, 70));
}

fn webhook(event_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "entity.created", "payload": {"id": "e-5"}, "message": "m",
        "timestamp": "2026-05-12T14:34:40.391243281Z", "event_id": event_id,
    }))
    .unwrap()
}

async fn deliver(addr: std::net::SocketAddr, body: Vec<u8>) -> u16 {
    let req = Request::post(format!("http://{addr}/webhooks/lean"))
        .header("content-type", "application/json")
        .body(body::full(body))
        .unwrap();
    send(&h1_client(), req).await.status.as_u16()
}

#[tokio::test]
async fn the_same_webhook_at_two_replicas_fifty_times_is_first_once_and_relayed_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(server) = redis_server() else { return };
    let app = Receiver::start(0).await;
    let relay = format!("[webhooks]\nrelay = [\"{}\"]\n", app.url());
    let a = replica(&server, "t:", "a", "http://127.0.0.1:9", &relay).await;
    let b = replica(&server, "t:", "b", "http://127.0.0.1:9", &relay).await;
    let posts = (0..50).map(|i| {
        let addr = if i % 2 == 0 {
            a.webhooks_addr
        } else {
            b.webhooks_addr
        };
        deliver(addr, webhook("ev-once"))
    });
    let statuses = tokio::time::timeout(Duration::from_secs(30), all(posts))
        .await
        .expect("50 deliveries within 30 s");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let outcomes: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|p| p.webhooks.records())
        .map(|r| {
            serde_json::to_value(r.outcome)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let first = outcomes.iter().filter(|o| *o == "accepted").count();
    let duplicates = outcomes.iter().filter(|o| *o == "duplicate").count();
    assert_eq!((first, duplicates), (1, 49), "{outcomes:?}");
    app.wait_for("entity.created", 1).await;
    // The one delivery leaves the shared queue once the app took it.
    let redis = redis::Client::open(server.url()).unwrap();
    let redis = redis.get_multiplexed_async_connection().await.unwrap();
    within(Duration::from_secs(5), "the queue is empty", || {
        let mut redis = redis.clone();
        async move {
            let taken: Option<u64> = redis::cmd("GET")
                .arg("t:relay:taken")
                .query_async(&mut redis)
                .await
                .unwrap();
            taken == Some(0)
        }
    })
    .await;
    assert_eq!(app.received().len(), 1, "the app gets it once");
}

#[tokio::test]
async fn every_replica_sees_the_fleets_live_events_with_their_names() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(server) = redis_server() else { return };
    let (upstream, _) = lean_ok().await;
    let a = replica(&server, "t:", "a", &upstream, "").await;
    let b = replica(&server, "t:", "b", &upstream, "").await;
    let response = h1_client()
        .get(a.admin_url("/api/events").parse().unwrap())
        .await
        .unwrap();
    let mut events = response.into_body();
    let mut text = String::new();
    let client = h1_client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // B's exchanges reach A's listener once B knows someone listens (about a
    // second); each is marked with B's name.
    while !text.contains("\"replica\":\"b\"") {
        let _ = get(&client, &b.url("/data/v1/accounts")).await;
        while let Ok(Some(Ok(frame))) =
            tokio::time::timeout(Duration::from_millis(100), events.frame()).await
        {
            if let Ok(data) = frame.into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no event of B on A: {text}"
        );
    }
    let _ = get(&client, &a.url("/data/v1/accounts")).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !text.contains("\"replica\":\"a\"") {
        match tokio::time::timeout_at(deadline, events.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    text.push_str(&String::from_utf8_lossy(&data));
                }
            }
            _ => panic!("no event of A's own: {text}"),
        }
    }
    // The request log stays per replica, with its name on each record.
    let records = admin_json(&b, "/api/requests").await;
    assert!(
        records.to_string().contains("\"replica\":\"b\""),
        "{records}"
    );
    assert!(!records.to_string().contains("\"replica\":\"a\""));
}

#[tokio::test]
async fn healthz_and_metrics_show_the_backend_and_its_errors() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(mut server) = redis_server() else {
        return;
    };
    let (upstream, _) = lean_ok().await;
    let a = replica(&server, "t:", "a", &upstream, "").await;
    let health = admin_json(&a, "/healthz").await;
    assert_eq!(health["status"], "ok");
    assert_eq!(
        (
            health["state"]["backend"].as_str(),
            health["state"]["replica"].as_str()
        ),
        (Some("redis"), Some("a"))
    );
    within(Duration::from_secs(3), "a ping measured", || async {
        admin_json(&a, "/healthz").await["state"]["latency_ms"].is_number()
    })
    .await;
    assert_eq!(
        metric(a.admin, "leanproxy_state_backend{backend=\"redis\"}").await,
        1.0
    );
    assert_eq!(metric(a.admin, "leanproxy_state_up").await, 1.0);
    server.stop();
    within(Duration::from_secs(5), "Redis is seen gone", || async {
        metric(a.admin, "leanproxy_state_up").await == 0.0
    })
    .await;
    let health = admin_json(&a, "/healthz").await;
    assert_eq!(health["status"], "ok", "a replica serves on without Redis");
    assert_eq!(health["state"]["up"], false);
    within(Duration::from_secs(5), "failed pings counted", || async {
        metric(a.admin, "leanproxy_state_errors_total{op=\"ping\"}").await >= 1.0
    })
    .await;
    let memory = Proxy::start(&format!("[proxy]\nupstream = \"{upstream}\"\n")).await;
    assert_eq!(
        admin_json(&memory, "/healthz").await["state"]["backend"],
        "memory"
    );
}

#[tokio::test]
async fn losing_redis_under_load_fails_no_request_and_the_registry_catches_up() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(mut server) = redis_server() else {
        return;
    };
    let (upstream, calls) = lean_ok().await;
    let a = replica(&server, "t:", "a", &upstream, "timeout = \"250ms\"\n").await;
    let b = replica(&server, "t:", "b", &upstream, "timeout = \"250ms\"\n").await;
    // Rules that need no counter keep working without Redis; one with a
    // count cannot be counted, and lets requests through.
    add_rule(&a, "reconnect entity_id=e-down id=down").await;
    add_rule(&a, "status=503 entity_id=e-counted count=1000 id=counted").await;
    within(Duration::from_secs(2), "B has both rules", || async {
        admin_json(&b, "/api/faults").await["faults"]
            .as_array()
            .is_some_and(|f| f.len() == 2)
    })
    .await;

    let client = h1_client();
    let load = |from: usize, to: usize| {
        let (client, a, b) = (client.clone(), a.url(""), b.url(""));
        async move {
            let mut slowest = Duration::ZERO;
            let mut failed = Vec::new();
            for i in from..to {
                let base = if i % 2 == 0 { &a } else { &b };
                let started = Instant::now();
                let r = get(
                    &client,
                    &format!("{base}/data/v2/accounts?entity_id=e-{}", i % 7),
                )
                .await;
                slowest = slowest.max(started.elapsed());
                if r.status.as_u16() != 200 {
                    failed.push(r.status.as_u16());
                }
            }
            (slowest, failed)
        }
    };
    let (_, failed) = load(0, 50).await;
    assert!(failed.is_empty(), "{failed:?}");
    server.stop();
    let (slowest, failed) = tokio::time::timeout(Duration::from_secs(60), load(50, 250))
        .await
        .expect("200 requests within a minute without Redis");
    assert!(
        failed.is_empty(),
        "no request fails for want of Redis: {failed:?}"
    );
    assert!(
        slowest < Duration::from_millis(1500),
        "no request waits on Redis much past state.timeout: {slowest:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 250);
    // The counted rule could not count: it faulted nothing.
    let counted = get(&client, &a.url("/data/v2/accounts?entity_id=e-counted")).await;
    assert_eq!(counted.status, 200);
    // The uncounted reconnect rule still answers; the registry keeps it for later.
    let down = get(&client, &b.url("/data/v2/accounts?entity_id=e-down")).await;
    assert_eq!(down.json()["status"], "RECONNECT_REQUIRED");
    assert!(
        metric(
            b.admin,
            "leanproxy_state_errors_total{op=\"registry_sighting\"}"
        )
        .await
            >= 1.0
    );
    let listed = get(&client, &a.admin_url("/api/reconnects")).await;
    assert_eq!(listed.status.as_u16(), 200, "inspection answers");
    assert!(listed.json()["reconnects"].is_array());

    server.restart();
    within(
        Duration::from_secs(10),
        "the registry catches up",
        || async { admin_json(&a, "/api/reconnects/e-down").await["state"] == "pending" },
    )
    .await;
    // The fleet's rules come back from the replicas that kept them.
    within(
        Duration::from_secs(5),
        "the rules are back on Redis",
        || async {
            admin_json(&a, "/api/faults").await["faults"]
                .as_array()
                .is_some_and(|f| f.len() == 2)
        },
    )
    .await;
}

#[tokio::test]
async fn a_redis_that_stops_answering_holds_no_request_past_its_timeout() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(server) = redis_server() else { return };
    let (upstream, _) = lean_ok().await;
    let a = replica(&server, "t:", "a", &upstream, "timeout = \"300ms\"\n").await;
    add_rule(&a, "status=503 entity_id=e-hang count=100 id=counted").await;
    let client = h1_client();
    let url = a.url("/data/v2/accounts?entity_id=e-hang");
    assert_eq!(
        get(&client, &url).await.status.as_u16(),
        503,
        "counted while Redis answers"
    );
    server.freeze();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let r = get(&client, &url).await;
        slowest = slowest.max(started.elapsed());
        // The rule cannot count: it lets the request through.
        assert_eq!(r.status.as_u16(), 200);
    }
    server.thaw();
    eprintln!("Redis frozen: the slowest of 20 requests took {slowest:?}");
    // One wait of 300 ms finds Redis gone; the calls after it fail at once
    // for a second, then one waits again. Margin for a busy machine.
    assert!(slowest < Duration::from_millis(1000), "slowest {slowest:?}");
    assert!(metric(a.admin, "leanproxy_state_errors_total{op=\"fault_count\"}").await >= 1.0);
    within(
        Duration::from_secs(5),
        "counting again once Redis answers",
        || async { get(&client, &url).await.status.as_u16() == 503 },
    )
    .await;
}

#[tokio::test]
async fn redis_down_at_start_is_refused_naming_state_url_unless_not_required() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(mut server) = redis_server() else {
        return;
    };
    let url = server.url();
    server.stop();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("leanproxy.toml");
    std::fs::write(
        &config,
        format!("[state]\nbackend = \"redis\"\nurl = \"{url}\"\nreplica = \"r\"\n"),
    )
    .unwrap();
    let mut refused = Binary::command(
        &[
            "--upstream",
            "http://127.0.0.1:9",
            "--config",
            config.to_str().unwrap(),
        ],
        &[("LEANPROXY_REDIS_PASSWORD", "hunter2-never-shown")],
        dir.path(),
    )
    .spawn()
    .unwrap();
    let status = crate::support::wait_bounded(&mut refused, Duration::from_secs(20));
    let mut err = String::new();
    std::io::Read::read_to_string(refused.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(
        err.contains("state.url") && err.contains("state.require"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "the password is never shown: {err}"
    );

    std::fs::write(
        &config,
        format!(
            "[state]\nbackend = \"redis\"\nurl = \"{url}\"\nreplica = \"r\"\nrequire = false\n"
        ),
    )
    .unwrap();
    let degraded = Binary::spawn(
        &[
            "--upstream",
            "http://127.0.0.1:9",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    let health = get(&h1_client(), &format!("http://{}/healthz", degraded.admin)).await;
    assert_eq!(health.json()["state"]["up"], false);
}

/// A webhook listener's address that nothing listens on yet.
async fn free_addr() -> std::net::SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn a_killed_replicas_pending_deliveries_reach_the_app_through_the_survivor() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(server) = redis_server() else { return };
    let target = free_addr().await;
    let dir = tempfile::tempdir().unwrap();
    let config = |name: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[webhooks]\nrelay = [\"http://{target}/webhooks/lean\"]\nretry_initial = \"100ms\"\nretry_max = \"200ms\"\nmax_attempts = 1000\n{}",
                state(&server, "k:", name, "")
            ),
        )
        .unwrap();
        path
    };
    let (config_a, config_b) = (config("a"), config("b"));
    let up = ["--upstream", "http://127.0.0.1:9", "--config"];
    let mut a = Binary::spawn(&[&up[..], &[config_a.to_str().unwrap()]].concat(), &[]);
    // Every delivery accepted by A is queued on Redis; A holds the target's
    // lease and keeps failing the first one while the app is down.
    for i in 0..20 {
        assert_eq!(deliver(a.webhooks, webhook(&format!("ev-{i}"))).await, 200);
    }
    let client = redis::Client::open(server.url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let lease = format!("k:relay:lease:http://{target}/webhooks/lean");
    let holder: Option<String> = redis::cmd("GET")
        .arg(&lease)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(holder.as_deref(), Some("a"));
    let b = Binary::spawn(&[&up[..], &[config_b.to_str().unwrap()]].concat(), &[]);
    // B takes some deliveries of its own meanwhile.
    for i in 20..25 {
        assert_eq!(deliver(b.webhooks, webhook(&format!("ev-{i}"))).await, 200);
    }
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &a.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    a.wait_exit(Duration::from_secs(10)).await;

    let app = Receiver::start_on(target, 0).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen: HashMap<String, usize> = HashMap::new();
    while seen.len() < 25 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 25 delivered: {:?}",
            seen.len(),
            seen.keys()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen.clear();
        for r in app.received() {
            *seen
                .entry(r.json()["event_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    let order: Vec<String> = app
        .received()
        .iter()
        .map(|r| r.json()["event_id"].as_str().unwrap().to_string())
        .collect();
    // Delivered by B, in the order they were accepted (A's first, as they
    // were queued first), each once: the app was down, so nothing had been
    // delivered unacknowledged when A died.
    let expected: Vec<String> = (0..25).map(|i| format!("ev-{i}")).collect();
    assert_eq!(order, expected);
    let holder: Option<String> = redis::cmd("GET")
        .arg(&lease)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(holder.as_deref(), Some("b"));
    drop(b);
}
