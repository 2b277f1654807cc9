//! Fault injection through the real proxy: every action, counts and `after`,
//! seeded probabilities, sticky reconnects closed by the registry, runtime rule
//! changes under load, refused rules, header faults, the production guard, CLI.

use std::time::{Duration, Instant};

use http::Request;
use http_body_util::BodyExt;
use leanproxy::body;
use serde_json::{json, Value};

use crate::support::{
    get, h1_client, link_entity, post_json, run_binary, send, Binary, HttpClient, Observed, Origin,
    Proxy,
};

/// A proxy in front of a test origin, honouring `x-leanproxy-fault`; `fault`
/// adds lines to `[fault]`, `extra` whole sections.
async fn proxy_with(origin: &Origin, fault: &str, extra: &str) -> Proxy {
    Proxy::start(&format!(
        "[proxy]\nupstream = \"{}\"\n[fault]\nallow_header_faults = true\n{fault}{extra}",
        origin.url()
    ))
    .await
}

async fn proxy(origin: &Origin, extra: &str) -> Proxy {
    proxy_with(origin, "", extra).await
}

async fn with_fault(
    client: &HttpClient,
    url: &str,
    spec: &str,
) -> Result<Observed, hyper_util::client::legacy::Error> {
    let req = Request::get(url)
        .header("x-leanproxy-fault", spec)
        .body(body::empty())
        .unwrap();
    let response = client.request(req).await?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Ok(Observed {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

async fn add_rule(proxy: &Proxy, rule: Value) -> Observed {
    let req = Request::post(proxy.admin_url("/api/faults"))
        .header("content-type", "application/json")
        .body(body::full(rule.to_string()))
        .unwrap();
    send(&h1_client(), req).await
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn answering_actions_produce_leans_shapes() {
    let origin = Origin::start().await;
    let p = proxy(&origin, "").await;
    let c = h1_client();
    let url = |path: &str| p.url(path);

    let status = with_fault(
        &c,
        &url("/fixed?len=5"),
        r#"status=503 body="down for maintenance""#,
    )
    .await
    .unwrap();
    assert_eq!(
        (status.status.as_u16(), &status.body[..]),
        (503, &b"down for maintenance"[..])
    );
    assert_eq!(status.header("x-leanproxy-injected"), Some("header"));

    // Lean's recorded error envelopes: same keys, statuses and texts.
    let ise = with_fault(
        &c,
        &url("/data/v2/accounts?entity_id=e"),
        "lean_error=INTERNAL_SERVER_ERROR",
    )
    .await
    .unwrap();
    assert_eq!(ise.status, 500);
    assert_eq!(
        keys(&ise.json()),
        ["message", "metadata", "results_id", "status", "timestamp"]
    );
    assert_eq!(ise.json()["message"], "Something has gone wrong. If you continue to see this error, please get in touch with Lean.");
    let rate = with_fault(&c, &url("/x"), "lean_error=RATE_LIMIT_EXCEEDED")
        .await
        .unwrap();
    assert_eq!(
        (rate.status.as_u16(), rate.json()["status"].clone()),
        (429, json!("RATE_LIMIT_EXCEEDED"))
    );
    let consent = with_fault(&c, &url("/data/v2/refreshes"), "lean_error=CONSENT_EXPIRED")
        .await
        .unwrap();
    assert_eq!(consent.status, 403);
    assert_eq!(
        keys(&consent.json()),
        ["message", "metadata", "status", "timestamp"],
        "no results_id, as recorded"
    );

    let v1 = with_fault(&c, &url("/data/v1/accounts"), "reconnect")
        .await
        .unwrap();
    assert_eq!(v1.status, 200);
    assert_eq!(
        keys(&v1.json()),
        ["message", "payload", "results_id", "status", "timestamp"]
    );
    assert_eq!(v1.json()["payload"]["type"], "reconnect");
    let v2 = with_fault(&c, &url("/data/v2/accounts?entity_id=e"), "reconnect")
        .await
        .unwrap();
    assert_eq!(v2.json()["status"], "RECONNECT_REQUIRED");
    assert_eq!(v2.json()["data"], Value::Null);
    let failed = with_fault(
        &c,
        &url("/data/v2/accounts?entity_id=e"),
        "failed=LOGGED_IN_ELSEWHERE",
    )
    .await
    .unwrap();
    assert_eq!(
        (
            failed.status.as_u16(),
            failed.json()["status_detail"]["granular_status_code"].clone()
        ),
        (200, json!("LOGGED_IN_ELSEWHERE"))
    );
    let pending = with_fault(&c, &url("/data/v1/balance"), "pending")
        .await
        .unwrap();
    assert_eq!(pending.json()["status"], "PENDING");
    assert!(pending.json()["results_id"].is_string());

    let corrupt = with_fault(&c, &url("/lean"), "corrupt").await.unwrap();
    assert_eq!(corrupt.status, 200);
    assert_eq!(
        corrupt.header("lean-correlation-id"),
        Some("iAqmKreCTvfWKaEu"),
        "real headers kept"
    );
    assert!(serde_json::from_slice::<Value>(&corrupt.body).is_err());
    assert_eq!(corrupt.header("x-leanproxy-injected"), Some("header"));
    assert_eq!(
        origin
            .stats
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only corrupt forwarded"
    );
}

#[tokio::test]
async fn network_actions_reset_hold_truncate_and_throttle_on_the_wire() {
    let origin = Origin::start().await;
    let p = proxy(&origin, "").await;
    let c = h1_client();

    let reset = with_fault(&c, &p.url("/fixed?len=5"), "reset").await;
    assert!(
        reset.is_err(),
        "the client sees the connection closed: {reset:?}"
    );

    let started = Instant::now();
    let held = with_fault(&c, &p.url("/fixed?len=5"), "timeout=300ms").await;
    assert!(held.is_err());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // Truncate: the real answer's first 100 bytes, then the connection ends.
    let req = Request::get(p.url("/fixed?len=1000"))
        .header("x-leanproxy-fault", "truncate=100")
        .body(body::empty())
        .unwrap();
    let response = c.request(req).await.unwrap();
    assert_eq!(response.headers()["x-leanproxy-injected"], "header");
    let mut body = response.into_body();
    let mut received = 0;
    let mut failed = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => received += f.into_data().map(|d| d.len()).unwrap_or(0),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert_eq!(received, 100);
    assert!(failed, "the app sees an incomplete body");

    // Throttle: 10,000 bytes at 20,000 B/s take about half a second.
    let started = Instant::now();
    let slow = with_fault(&c, &p.url("/fixed?len=10000"), "throttle=20000")
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(slow.body.len(), 10_000);
    assert_eq!(
        &slow.body[..],
        &crate::support::pattern(0, 10_000)[..],
        "same bytes, only slower"
    );
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "{took:?}"
    );

    let started = Instant::now();
    let delayed = with_fault(&c, &p.url("/fixed?len=5"), "delay=250ms")
        .await
        .unwrap();
    assert_eq!(delayed.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_past_the_quota() {
    let origin = Origin::start().await;
    let p = proxy(
        &origin,
        "[[faults]]\nid = \"quota\"\naction = \"rate_limit\"\nlimit = 3\nwindow = \"1m\"\n",
    )
    .await;
    let c = h1_client();
    let mut statuses = Vec::new();
    let mut retry = None;
    for _ in 0..5 {
        let r = get(&c, &p.url("/fixed?len=1")).await;
        if r.status == 429 {
            retry = r.header("retry-after").map(str::to_string);
            assert_eq!(r.json()["status"], "RATE_LIMIT_EXCEEDED");
        }
        statuses.push(r.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let retry: u64 = retry.unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
}

#[tokio::test]
async fn succeed_twice_fail_three_times_then_succeed() {
    let origin = Origin::start().await;
    let p = proxy(&origin, "").await;
    let added = add_rule(&p, json!({"id": "flaky", "action": "status", "status": 503, "after": 2, "count": 3, "match": {"path": "/fixed"}})).await;
    assert_eq!(added.status, 201, "{:?}", added.json());
    let c = h1_client();
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(get(&c, &p.url("/fixed?len=1")).await.status.as_u16());
    }
    assert_eq!(seen, [200, 200, 503, 503, 503, 200]);
    let listed = get(&c, &p.admin_url("/api/faults")).await.json();
    assert_eq!(listed["faults"][0]["applied"], 3);
    assert_eq!(listed["faults"][0]["retired"], true);
}

async fn seeded_run(origin: &Origin) -> Vec<bool> {
    let p = proxy_with(
        origin,
        "seed = 42\n",
        "[[faults]]\naction = \"status\"\nstatus = 503\nprobability = 0.3\n",
    )
    .await;
    let c = h1_client();
    let mut hits = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        hits.push(get(&c, &p.url("/fixed?len=1")).await.status == 503);
    }
    hits
}

#[tokio::test]
async fn seeded_probability_is_right_and_reproducible() {
    let origin = Origin::start().await;
    let first = seeded_run(&origin).await;
    let faults = first.iter().filter(|h| **h).count() as f64;
    let sigma = (10_000.0f64 * 0.3 * 0.7).sqrt();
    assert!(
        (faults - 3000.0).abs() <= 3.0 * sigma,
        "{faults} faults out of 10,000"
    );
    let second = seeded_run(&origin).await;
    assert_eq!(first, second, "same seed, same requests, same faults");
}

#[tokio::test]
async fn sticky_reconnect_holds_until_the_registry_resolves_it() {
    let p = Proxy::start("").await;
    let mockbank = p.mockbank.clone().unwrap();
    let c = h1_client();
    let post = |path: &str, body: Value| post_json(p.url(path), body);
    let user = &mockbank.users()[1];
    let entity = link_entity(
        &c,
        &p.url(""),
        "sticky",
        &user.username,
        &user.password,
        None,
    )
    .await;
    let added = add_rule(&p, json!({"id": "hold", "action": "reconnect_required", "sticky": true, "count": 1, "match": {"path": "/data/*"}})).await;
    assert_eq!(added.status, 201);

    let accounts = format!("/data/v2/accounts?entity_id={entity}");
    let first = get(&c, &p.url(&accounts)).await;
    assert_eq!(first.json()["status"], "RECONNECT_REQUIRED");
    assert_eq!(first.header("x-leanproxy-injected"), Some("hold"));
    let id = first.json()["results_id"].clone();
    let record = p.registry.get(&entity).await.unwrap();
    assert_eq!(record.source, leanproxy::reconnect::Source::Fault);
    assert_eq!(record.state, leanproxy::reconnect::State::Pending);
    // The rule retired after one, but the entity stays held with the same id,
    // v1 calls included.
    for _ in 0..3 {
        let again = get(&c, &p.url(&accounts)).await.json();
        assert_eq!(again["results_id"], id);
    }
    let v1 = send(&c, post("/data/v1/accounts", json!({"entity_id": entity})))
        .await
        .json();
    assert_eq!(v1["status"], "RECONNECT_REQUIRED");
    assert_eq!(p.registry.get(&entity).await.unwrap().hits, 5);

    let resolve = send(
        &c,
        Request::delete(p.admin_url(&format!("/api/reconnects/{entity}")))
            .body(body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(resolve.status, 200);
    let after = get(&c, &p.url(&accounts)).await;
    assert_eq!(
        after.json()["status"],
        "OK",
        "the fault ended with the resolution"
    );
    assert!(after.header("x-leanproxy-injected").is_none());
}

#[tokio::test]
async fn rules_change_under_load_without_losing_requests() {
    let origin = Origin::start().await;
    let p = proxy(&origin, "").await;
    let c = h1_client();
    let mut requests = Vec::new();
    for i in 0..1000 {
        let c = c.clone();
        let url = p.url(&format!("/slow?ms={}", 50 + i % 100));
        requests.push(tokio::spawn(
            async move { c.get(url.parse().unwrap()).await },
        ));
    }
    // Swap rule sets while the requests are in flight.
    for generation in 0..40 {
        let clear = Request::delete(p.admin_url("/api/faults"))
            .body(body::empty())
            .unwrap();
        send(&c, clear).await;
        let id = format!("gen-{generation}");
        add_rule(
            &p,
            json!({"id": id, "action": "status", "status": 503, "body": id, "probability": 0.5}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut faulted = 0;
    for r in requests {
        let response = r.await.unwrap().expect("no request is lost");
        let status = response.status();
        let rule = response
            .headers()
            .get("x-leanproxy-injected")
            .map(|v| v.to_str().unwrap().to_string());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        if status == 503 {
            faulted += 1;
            assert_eq!(
                rule.as_deref(),
                Some(std::str::from_utf8(&body).unwrap()),
                "a whole rule applied"
            );
        } else {
            assert_eq!((status.as_u16(), &body[..]), (200, &b"slow answer"[..]));
        }
    }
    assert!(faulted > 0);
}

#[tokio::test]
async fn bad_rules_are_refused_naming_the_field_and_nothing_changes() {
    let origin = Origin::start().await;
    let p = proxy(&origin, "").await;
    add_rule(&p, json!({"id": "keep", "action": "delay", "delay": "1ms"})).await;
    for (rule, field) in [
        (json!({"action": "explode"}), "action"),
        (
            json!({"action": "status", "status": 503, "probability": 1.5}),
            "probability",
        ),
        (
            json!({"action": "status", "status": 503, "count": -1}),
            "count",
        ),
        (json!({"action": "delay", "delay": "soon"}), "delay"),
        (json!({"action": "reset", "colour": "red"}), "colour"),
        (json!({"id": "keep", "action": "reset"}), "id"),
    ] {
        let r = add_rule(&p, rule.clone()).await;
        assert!(r.status == 400 || r.status == 409, "{rule}: {}", r.status);
        let message = r.json()["message"].as_str().unwrap().to_string();
        assert!(message.starts_with(field), "{rule}: {message}");
    }
    let c = h1_client();
    let spec = with_fault(&c, &p.url("/fixed?len=1"), "status=99")
        .await
        .unwrap();
    assert_eq!(spec.status, 400);
    assert!(
        spec.json()["message"].as_str().unwrap().contains("status"),
        "{:?}",
        spec.json()
    );
    let listed = get(&c, &p.admin_url("/api/faults")).await.json();
    assert_eq!(listed["faults"].as_array().unwrap().len(), 1);
    assert_eq!(listed["faults"][0]["id"], "keep");
}

#[tokio::test]
async fn fault_header_is_stripped_and_honoured_only_when_allowed() {
    let origin = Origin::start().await;
    let off = Proxy::in_front_of(&origin.url(), "").await;
    let c = h1_client();
    let seen = with_fault(&c, &off.url("/inspect"), "status=418")
        .await
        .unwrap();
    assert_eq!(
        seen.status, 200,
        "ignored: the upstream is neither Mockbank nor a sandbox"
    );
    let names = seen.json()["all_headers"].clone();
    assert!(
        !names
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "x-leanproxy-fault"),
        "stripped: {names}"
    );
    let on = proxy(&origin, "").await;
    let teapot = with_fault(&c, &on.url("/inspect"), "status=418")
        .await
        .unwrap();
    assert_eq!(teapot.status, 418);
}

#[tokio::test]
async fn faults_are_refused_against_production() {
    let p = Proxy::in_front_of("https://api2.leantech.me", "").await;
    let r = add_rule(&p, json!({"action": "reset"})).await;
    assert_eq!(r.status, 403);
    assert!(r.json()["message"].as_str().unwrap().contains("production"));
    let settings = leanproxy::config::parse(
        "[proxy]\nupstream = \"https://api.leantech.me\"\n[[faults]]\naction = \"reset\"\n",
    )
    .unwrap();
    let err = leanproxy::config::Settings::from_raw(settings, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("faults:") && err.contains("allow_faults_in_production"),
        "{err}"
    );
}

#[tokio::test]
async fn cli_adds_lists_and_removes_rules() {
    let origin = Origin::start().await;
    let bin = Binary::spawn(&["--upstream", &origin.url()], &[]);
    let admin = format!("http://{}", bin.admin);
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_binary(&args)
        })
    };
    let a = |words: &[&str]| {
        let mut v = vec!["faults".to_string(), "--admin".into(), admin.clone()];
        v.extend(words.iter().map(|w| w.to_string()));
        v
    };
    let (code, out, err) = run(a(&[
        "add",
        "lean_error=RATE_LIMIT_EXCEEDED",
        "p=1",
        "id=limits",
        "path=/fixed",
    ]))
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("added limits"), "{out}");
    let r = get(&h1_client(), &bin.url("/fixed?len=1")).await;
    assert_eq!(r.status, 429);
    let (_, list, _) = run(a(&["list"])).await.unwrap();
    assert!(
        list.contains("limits") && list.contains("lean_error") && list.contains("1 rules"),
        "{list}"
    );
    let (code, _, err) = run(a(&["add", "status=700"])).await.unwrap();
    assert_eq!(code, 2);
    assert!(err.contains("status"), "{err}");
    let (code, out, _) = run(a(&["rm", "limits"])).await.unwrap();
    assert_eq!((code, out.trim()), (0, "removed limits"));
    assert_eq!(
        get(&h1_client(), &bin.url("/fixed?len=1")).await.status,
        200
    );
    let (code, _, _) = run(a(&["rm", "limits"])).await.unwrap();
    assert_eq!(code, 3);
}

#[tokio::test]
async fn rules_fall_through_declined_rolls_and_are_placed_paused_and_kept_by_the_cli() {
    let origin = Origin::start().await;
    let bin = Binary::spawn(&["--upstream", &origin.url()], &[]);
    let admin = format!("http://{}", bin.admin);
    // `--admin` after the subcommand's own arguments, as clap tools allow.
    let run = |words: &[&str]| {
        let mut args: Vec<String> = vec!["faults".into()];
        args.extend(words.iter().map(|w| w.to_string()));
        args.extend(["--admin".to_string(), admin.clone()]);
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_binary(&args)
        })
    };
    let c = h1_client();
    let status = || async { get(&c, &bin.url("/fixed?len=1")).await.status.as_u16() };
    for spec in [
        "lean_error=RATE_LIMIT_EXCEEDED p=0 id=never",
        "lean_error=CONSENT_EXPIRED id=consent",
    ] {
        let (code, _, err) = run(&["add", spec]).await.unwrap();
        assert_eq!(code, 0, "{err}");
    }
    // The roll of `never` always declines: the request goes on to `consent`.
    assert_eq!(status().await, 403);
    let (code, _, err) = run(&["add", "status=418 id=tea", "--position", "0"])
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(status().await, 418);
    let (code, out, _) = run(&["pause", "tea"]).await.unwrap();
    assert_eq!((code, out.trim()), (0, "paused tea"));
    assert_eq!(status().await, 403);
    let (_, list, _) = run(&["list"]).await.unwrap();
    assert!(list.contains("(paused)"), "{list}");
    run(&["resume", "tea"]).await.unwrap();
    assert_eq!(status().await, 418);
    let (code, _, err) = run(&["add", "status=503 id=first", "--before", "tea"])
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(status().await, 503);
    let ids: Vec<Value> = get(&c, &format!("{admin}/api/faults")).await.json()["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, ["first", "tea", "never", "consent"]);
    // An empty id is an error, and removes nothing.
    let (code, _, err) = run(&["rm", ""]).await.unwrap();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("a rule id is required"), "{err}");
    let req = Request::delete(format!("{admin}/api/faults/"))
        .body(body::empty())
        .unwrap();
    assert_eq!(send(&c, req).await.status, 400);
    let listed = get(&c, &format!("{admin}/api/faults")).await.json();
    assert_eq!(listed["faults"].as_array().unwrap().len(), 4);
    let (code, _, err) = run(&["add", "reset", "--before", "nope"]).await.unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("no fault rule `nope`"), "{err}");
}

#[tokio::test]
async fn every_action_and_option_is_in_the_help_and_the_readme() {
    let (code, help, _) = tokio::task::spawn_blocking(|| run_binary(&["faults", "add", "--help"]))
        .await
        .unwrap();
    assert_eq!(code, 0);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let options = [
        "id=",
        "p=",
        "count=",
        "ttl=",
        "after=",
        "sticky",
        "method=",
        "path=",
        "entity_id=",
        "header.",
        "query.",
        "body=",
        "content_type=",
    ];
    for word in leanproxy::fault::ACTION_NAMES.iter().chain(options.iter()) {
        assert!(help.contains(word), "`faults add --help` lacks {word}");
        assert!(readme.contains(word), "the README lacks {word}");
    }
    for example in [
        "rate_limit=10/1m",
        "truncate=100",
        "throttle=1024",
        "delay=100ms..300ms",
    ] {
        assert!(help.contains(example), "{example}");
        assert!(readme.contains(example), "the README lacks {example}");
    }
}

#[tokio::test]
async fn a_rate_limit_header_lets_its_quota_through_first() {
    let origin = Origin::start().await;
    let p = proxy(&origin, "").await;
    let c = h1_client();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let r = with_fault(&c, &p.url("/fixed?len=1"), "rate_limit=2/1m")
            .await
            .unwrap();
        seen.push(r.status.as_u16());
    }
    assert_eq!(seen, [200, 200, 429]);
}

#[tokio::test]
async fn a_real_answer_a_fault_only_delayed_is_still_the_upstreams() {
    let p = Proxy::start("").await;
    let mockbank = p.mockbank.clone().unwrap();
    let c = h1_client();
    let post = |path: &str, body: Value| post_json(p.url(path), body);
    let user = &mockbank.users()[0];
    let entity = link_entity(
        &c,
        &p.url(""),
        "delayed",
        &user.username,
        &user.password,
        Some("1111"),
    )
    .await;
    send(
        &c,
        post(&format!("/_mockbank/entities/{entity}/expire"), json!({})),
    )
    .await;
    let r = with_fault(
        &c,
        &p.url(&format!("/data/v2/accounts?entity_id={entity}")),
        "delay=1ms",
    )
    .await
    .unwrap();
    assert_eq!(r.json()["status"], "RECONNECT_REQUIRED");
    assert_eq!(r.header("x-leanproxy-injected"), Some("header"));
    assert_eq!(
        p.registry.get(&entity).await.unwrap().source,
        leanproxy::reconnect::Source::Upstream
    );
}

#[tokio::test]
async fn a_reset_is_logged_as_no_answer() {
    let origin = Origin::start().await;
    let p = proxy(&origin, "").await;
    let c = h1_client();
    assert!(with_fault(&c, &p.url("/fixed?len=1"), "reset")
        .await
        .is_err());
    let logged = get(&c, &p.admin_url("/api/requests?limit=1")).await.json();
    assert_eq!(logged["requests"][0]["status"], 0);
    assert_eq!(logged["requests"][0]["completed"], false);
}

#[tokio::test]
async fn the_mockbank_accepts_the_configured_app_token() {
    let p = Proxy::start("[auth]\napp_token = \"my-own-app-token\"\n").await;
    assert_eq!(get(&h1_client(), &p.url("/banks/v1/")).await.status, 200);
}
