//! The request log, journal, metrics and live events: every exchange is seen,
//! nothing secret or personal leaks into any output channel, HAR and metrics are
//! well-formed and add up.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::Request;
use leanproxy::body;
use leanproxy::config::Secret;
use leanproxy::mockbank::{Clock, Mockbank, MockbankSettings};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::support::{
    get, h1_client, link_entity, post_json, send, Binary, HttpClient, Origin, Proxy,
};

const APP_TOKEN: &str = "apptok-7f3c91d2e8a44b6f";
const APPS_OWN_TOKEN: &str = "ownapptok-19c0d7e2";
const BEARER: &str = "bearer-5be1f0c3a9d24e71";
const COOKIE: &str = "cookie-2d6e8f1a3b5c";
const SET_COOKIE: &str = "setcookie-9a8b7c6d5e4f";
const CLIENT_SECRET: &str = "clientsecret-0e1f2a3b4c5d";
const WEBHOOK_SECRET: &str = "whsecret-77aa88bb99cc";

/// A Mockbank with distinctive credentials, served in-process behind a wrapper
/// that adds a `Set-Cookie` to every answer.
async fn upstream() -> (std::net::SocketAddr, Mockbank, tokio::task::JoinHandle<()>) {
    let mockbank = Mockbank::new(
        MockbankSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            region: Default::default(),
            seed: 11,
            inactivity: Duration::from_secs(600),
            corporate_session: Duration::from_secs(300),
            time_scale: 1.0,
            app_token: Secret::new(APP_TOKEN),
            client_id: "client-1".into(),
            client_secret: Secret::new(CLIENT_SECRET),
            webhook_url: None,
            webhook_secret: Secret::new(WEBHOOK_SECRET),
            async_delay: Duration::from_secs(2),
            refresh_duration: Duration::from_secs(10),
            link_origins: Vec::new(),
        },
        Clock::system(),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service =
        tower::ServiceExt::map_response(mockbank.clone(), |mut r: http::Response<body::Body>| {
            r.headers_mut().insert(
                "set-cookie",
                format!("session={SET_COOKIE}; HttpOnly").parse().unwrap(),
            );
            r
        });
    let task = tokio::spawn(leanproxy::server::serve(
        listener,
        service,
        std::future::pending(),
        leanproxy::server::Timeouts {
            grace: Duration::from_secs(1),
            idle: Duration::from_secs(60),
            client_write: Duration::from_secs(60),
        },
    ));
    (addr, mockbank, task)
}

/// Everything an app might send that must not be kept.
async fn traffic(
    client: &HttpClient,
    proxy: &str,
    webhooks: std::net::SocketAddr,
    mockbank: &Mockbank,
) -> Vec<String> {
    let post = |path: &str, body: Value| {
        Request::post(format!("{proxy}{path}"))
            .header("content-type", "application/json")
            .header("lean-app-token", APPS_OWN_TOKEN)
            .header("authorization", format!("Bearer {BEARER}"))
            .header("cookie", format!("sid={COOKIE}"))
            .body(body::full(body.to_string()))
            .unwrap()
    };
    let token = send(
        client,
        Request::post(format!("{proxy}/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body::full(format!("client_id=client-1&client_secret={CLIENT_SECRET}&grant_type=client_credentials&scope=api")))
            .unwrap(),
    )
    .await;
    assert_eq!(token.status, 200, "{:?}", token.body);
    let app_user = format!("observer-{}", uuid::Uuid::new_v4());
    let customer = send(
        client,
        post("/customers/v1/", json!({"app_user_id": app_user})),
    )
    .await
    .json();
    let user = &mockbank.users()[1];
    let entity = send(
        client,
        post("/_mockbank/link/connect", json!({"customer_id": customer["customer_id"], "username": user.username, "password": user.password})),
    )
    .await
    .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let accounts = send(
        client,
        post("/data/v1/accounts", json!({"entity_id": entity})),
    )
    .await;
    assert_eq!(accounts.json()["status"], "OK");
    let account = &user.accounts[0];
    for path in [
        format!("/data/v2/accounts?entity_id={entity}"),
        format!("/data/v2/identity?entity_id={entity}"),
        format!(
            "/data/v2/accounts/{}/identities?entity_id={entity}",
            account.id
        ),
        format!(
            "/data/v2/accounts/{}/transactions?entity_id={entity}&size=5",
            account.id
        ),
    ] {
        let r = send(
            client,
            Request::get(format!("{proxy}{path}"))
                .header("authorization", format!("Bearer {BEARER}"))
                .header("cookie", format!("sid={COOKIE}"))
                .body(body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    send(
        client,
        post("/data/v1/identity", json!({"entity_id": entity})),
    )
    .await;
    // A signed webhook at the catcher.
    let hook = serde_json::to_vec(
        &json!({"type": "entity.created", "payload": {"id": entity}, "event_id": "ev-obs"}),
    )
    .unwrap();
    let signature = leanproxy::lean::webhook_signature(WEBHOOK_SECRET.as_bytes(), &hook);
    send(
        client,
        Request::post(format!("http://{webhooks}/hooks"))
            .header("lean-signature", signature.clone())
            .body(body::full(hook))
            .unwrap(),
    )
    .await;

    let id = &user.identity;
    let mut secrets = vec![
        APP_TOKEN.to_string(),
        APPS_OWN_TOKEN.into(),
        BEARER.into(),
        COOKIE.into(),
        SET_COOKIE.into(),
        CLIENT_SECRET.into(),
        signature.trim_start_matches("sha512=").to_string(),
        user.password.clone(),
        id.full_name.clone(),
        id.short_name.clone(),
        id.national_id.clone(),
        id.national_id.replace('-', ""),
        id.mobile.clone(),
        id.email.clone(),
        id.address.line.clone(),
    ];
    for a in &user.accounts {
        secrets.push(a.iban.clone());
        secrets.push(a.number.clone());
    }
    secrets
}

/// Reads server-sent events until `n` exchange events arrived (bounded).
async fn events(
    admin: std::net::SocketAddr,
    n: usize,
) -> (
    tokio::task::JoinHandle<String>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let handle = tokio::spawn(async move {
        use http_body_util::BodyExt;
        let response = h1_client()
            .get(format!("http://{admin}/api/events").parse().unwrap())
            .await
            .unwrap();
        let mut body = response.into_body();
        let mut text = String::new();
        let mut ready_tx = Some(ready_tx);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while text.matches("event: exchange").count() < n {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        text.push_str(&String::from_utf8_lossy(&data));
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                }
                _ => break,
            }
        }
        text
    });
    (handle, ready)
}

#[tokio::test]
async fn no_secret_or_personal_value_reaches_any_output_channel() {
    let (upstream, mockbank, _task) = upstream().await;
    for format in ["pretty", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.jsonl");
        let config = dir.path().join("lp.toml");
        std::fs::write(
            &config,
            format!(
                "[log]\njournal = \"{}\"\n[webhooks]\nsecret = \"{WEBHOOK_SECRET}\"\nverify = \"enforce\"\n",
                journal.display()
            ),
        )
        .unwrap();
        let mut bin = Binary::spawn(
            &[
                "--upstream",
                &format!("http://{upstream}"),
                "--log-format",
                format,
                "--config",
                config.to_str().unwrap(),
            ],
            &[("LEAN_APP_TOKEN", APP_TOKEN), ("RUST_LOG", "trace")],
        );
        let (sse, ready) = events(bin.admin, 9).await;
        ready.await.unwrap();
        let client = h1_client();
        let secrets = traffic(
            &client,
            &format!("http://{}", bin.proxy),
            bin.webhooks,
            &mockbank,
        )
        .await;
        let sse = sse.await.unwrap();
        assert!(sse.matches("event: exchange").count() >= 9, "{sse}");

        let admin = |path: &str| format!("http://{}{path}", bin.admin);
        let mut channels: Vec<(String, String)> = vec![("events".into(), sse)];
        let list = get(&client, &admin("/api/requests")).await;
        let ids: Vec<String> = list.json()["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        assert!(ids.len() >= 9);
        channels.push((
            "/api/requests".into(),
            String::from_utf8_lossy(&list.body).into_owned(),
        ));
        for id in &ids {
            let one = get(&client, &admin(&format!("/api/requests/{id}"))).await;
            channels.push((
                format!("/api/requests/{id}"),
                String::from_utf8_lossy(&one.body).into_owned(),
            ));
        }
        for path in [
            "/api/requests.har",
            "/metrics",
            "/api/webhooks",
            "/api/reconnects",
        ] {
            let r = get(&client, &admin(path)).await;
            assert_eq!(r.status, 200, "{path}");
            channels.push((path.into(), String::from_utf8_lossy(&r.body).into_owned()));
        }
        // The identity answer really carried personal data, so the check can fail.
        let one_identity = ids
            .iter()
            .map(|id| {
                channels
                    .iter()
                    .find(|(c, _)| c == &format!("/api/requests/{id}"))
                    .unwrap()
                    .1
                    .clone()
            })
            .find(|t| t.contains("\"/data/v2/identity\""))
            .expect("identity exchange kept");
        assert!(one_identity.contains("[redacted]"), "{one_identity}");

        bin.terminate();
        assert_eq!(bin.wait_exit(Duration::from_secs(10)).await, Some(0));
        channels.push(("stdout+stderr".into(), bin.output()));
        for file in leanproxy::log::journal_files(&journal) {
            channels.push((
                file.display().to_string(),
                std::fs::read_to_string(&file).unwrap(),
            ));
        }
        assert!(
            channels.last().unwrap().1.lines().count() >= 9,
            "the journal has the exchanges"
        );
        for (channel, text) in &channels {
            for secret in &secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "{format}: `{secret}` leaked into {channel}"
                );
            }
        }
    }
}

/// The proxy's metrics: the text, and its samples parsed.
async fn scrape(client: &HttpClient, proxy: &Proxy) -> (String, HashMap<String, f64>) {
    let body = get(client, &proxy.admin_url("/metrics")).await.body;
    let text = String::from_utf8(body.to_vec()).unwrap();
    let samples = parse_prometheus(&text);
    (text, samples)
}

fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            assert!(
                line.is_empty()
                    || line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("# UNIT ")
                    || line == "# EOF",
                "bad comment: {line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().enumerate().all(|(i, c)| c == '_'
                || c == ':'
                || c.is_ascii_alphabetic()
                || (i > 0 && c.is_ascii_digit())),
            "bad metric name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(
                    labels.starts_with('{') && labels.ends_with('}'),
                    "bad labels: {line}"
                );
                for pair in labels[1..labels.len() - 1]
                    .split(',')
                    .filter(|p| !p.is_empty())
                {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("bad label: {line}"));
                    assert!(
                        !k.is_empty() && v.starts_with('"') && v.ends_with('"'),
                        "bad label: {line}"
                    );
                }
            }
        }
        samples.insert(series.to_string(), value);
    }
    assert!(text.ends_with("# EOF\n"));
    samples
}

#[tokio::test]
async fn metrics_parse_and_count_the_exchanges_sent() {
    let proxy = Proxy::start("").await;
    let client = h1_client();
    let mut sent = 0;
    for _ in 0..7 {
        assert_eq!(get(&client, &proxy.url("/banks/v1/")).await.status, 200);
        sent += 1;
    }
    for _ in 0..3 {
        assert_eq!(
            get(
                &client,
                &proxy.url("/data/v2/accounts?entity_id=not-a-uuid")
            )
            .await
            .status,
            400
        );
        sent += 1;
    }
    let (text, samples) = scrape(&client, &proxy).await;
    let requests: f64 = samples
        .iter()
        .filter(|(k, _)| k.starts_with("leanproxy_requests_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(requests, sent as f64, "{text}");
    assert_eq!(
        samples[r#"leanproxy_requests_total{method="GET",status="400",lean_status="INVALID_PARAMETERS"}"#],
        3.0
    );
    assert_eq!(
        samples[r#"leanproxy_requests_total{method="GET",status="200",lean_status=""}"#],
        7.0
    );
    assert_eq!(
        samples["leanproxy_request_duration_seconds_count"],
        sent as f64
    );
    assert!(samples["leanproxy_response_bytes_total"] > 0.0);
    assert_eq!(samples["leanproxy_reconnects_pending"], 0.0);
}

#[tokio::test]
async fn har_is_valid_har_1_2_with_the_expected_entries() {
    let proxy = Proxy::start("").await;
    let client = h1_client();
    let paths = [
        "/banks/v1/",
        "/data/v2/accounts?entity_id=not-a-uuid",
        "/_mockbank/users",
    ];
    for p in paths {
        get(&client, &proxy.url(p)).await;
    }
    let har = get(&client, &proxy.admin_url("/api/requests.har"))
        .await
        .json();
    let log = &har["log"];
    assert_eq!(log["version"], "1.2");
    assert_eq!(log["creator"]["name"], "leanproxy");
    assert!(log["creator"]["version"].is_string());
    let entries = log["entries"].as_array().unwrap();
    assert_eq!(entries.len(), paths.len());
    for (entry, path) in entries.iter().zip(paths) {
        for key in [
            "startedDateTime",
            "time",
            "request",
            "response",
            "cache",
            "timings",
        ] {
            assert!(!entry[key].is_null(), "entry.{key}");
        }
        chrono::DateTime::parse_from_rfc3339(entry["startedDateTime"].as_str().unwrap()).unwrap();
        let req = &entry["request"];
        for key in [
            "method",
            "url",
            "httpVersion",
            "cookies",
            "headers",
            "queryString",
            "headersSize",
            "bodySize",
        ] {
            assert!(!req[key].is_null(), "request.{key}");
        }
        assert!(
            req["url"].as_str().unwrap().ends_with(path),
            "{} vs {path}",
            req["url"]
        );
        assert!(req["headers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["name"].is_string() && h["value"].is_string()));
        let res = &entry["response"];
        for key in [
            "status",
            "statusText",
            "httpVersion",
            "cookies",
            "headers",
            "content",
            "redirectURL",
            "headersSize",
            "bodySize",
        ] {
            assert!(!res[key].is_null(), "response.{key}");
        }
        assert!(res["content"]["size"].is_number() && res["content"]["mimeType"].is_string());
        for key in ["send", "wait", "receive"] {
            assert!(entry["timings"][key].as_f64().unwrap() >= 0.0);
        }
    }
    assert_eq!(entries[1]["response"]["status"], 400);
    assert_eq!(
        entries[1]["request"]["queryString"][0],
        json!({"name": "entity_id", "value": "not-a-uuid"})
    );
}

#[tokio::test]
async fn request_log_filters_and_journal_rotates_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j.jsonl");
    let proxy = Proxy::start(&format!(
        "[log]\njournal = \"{}\"\njournal_max_bytes = 4096\njournal_files = 2\n",
        journal.display()
    ))
    .await;
    let client = h1_client();
    for _ in 0..20 {
        get(&client, &proxy.url("/banks/v1/")).await;
    }
    get(
        &client,
        &proxy.url("/data/v2/accounts?entity_id=not-a-uuid"),
    )
    .await;
    let bad = get(
        &client,
        &proxy.admin_url("/api/requests?lean_status=INVALID_PARAMETERS"),
    )
    .await
    .json();
    assert_eq!(bad["requests"].as_array().unwrap().len(), 1);
    let banks = get(
        &client,
        &proxy.admin_url("/api/requests?path=/banks&limit=5"),
    )
    .await
    .json();
    assert_eq!(banks["requests"].as_array().unwrap().len(), 5);
    let upstream_ms = &banks["requests"][0]["upstream_ms"];
    assert!(
        upstream_ms.as_f64().is_some_and(|ms| ms >= 0.0),
        "the time to the upstream's head is recorded: {upstream_ms}"
    );
    let (_, samples) = scrape(&client, &proxy).await;
    let timed = samples.get("leanproxy_upstream_duration_seconds_count");
    assert!(
        timed.is_some_and(|n| *n >= 21.0),
        "every exchange is timed: {timed:?}"
    );
    // The journal writes and rotates on its own thread; wait (bounded) until
    // it has written and its files stay the same between two looks, so none
    // is renamed while it is read.
    let files = {
        let mut files = Vec::new();
        let mut last = Vec::new();
        for _ in 0..100 {
            files = leanproxy::log::journal_files(&journal);
            let sizes: Vec<_> = files
                .iter()
                .map(|f| std::fs::metadata(f).map(|m| m.len()).ok())
                .collect();
            let written = sizes.iter().flatten().sum::<u64>() > 0;
            if files.len() == 3 && written && sizes.iter().all(Option::is_some) {
                if sizes == last {
                    break;
                }
                last = sizes;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        files
    };
    assert_eq!(files.len(), 3, "journal + 2 rotated files: {files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.len() <= 4096 + 2048,
            "{} is {} bytes",
            f.display(),
            text.len()
        );
        // The writer may be appending to the newest file as it is read: a last
        // line without its newline is not finished yet.
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            serde_json::from_str::<Value>(line).expect("each journal line is JSON");
        }
    }
}

#[tokio::test]
async fn unwritable_journal_is_reported_and_the_proxy_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"file").unwrap();
    let config = dir.path().join("lp.toml");
    std::fs::write(
        &config,
        format!("[log]\njournal = \"{}/journal.jsonl\"\n", blocker.display()),
    )
    .unwrap();
    let mut bin = Binary::spawn(&["--config", config.to_str().unwrap()], &[]);
    let client = h1_client();
    for _ in 0..5 {
        assert_eq!(get(&client, &bin.url("/banks/v1/")).await.status, 200);
    }
    bin.terminate();
    bin.wait_exit(Duration::from_secs(10)).await;
    let output = bin.output();
    assert_eq!(
        output.matches("cannot open the journal").count(),
        1,
        "reported once:\n{output}"
    );
}

#[tokio::test]
async fn exchange_lines_beyond_the_rate_are_counted_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lp.toml");
    std::fs::write(&config, "[log]\nlines_per_second = 5\n").unwrap();
    let mut bin = Binary::spawn(&["--config", config.to_str().unwrap()], &[]);
    let client = h1_client();
    const SENT: usize = 60;
    for _ in 0..SENT {
        assert_eq!(get(&client, &bin.url("/banks/v1/")).await.status, 200);
    }
    // Every exchange is still in the request log.
    let kept = get(
        &client,
        &format!("http://{}/api/requests?limit=1000", bin.admin),
    )
    .await
    .json();
    let kept = kept["requests"].as_array().map_or(0, |r| r.len());
    assert!(kept >= SENT, "{kept} records");
    bin.terminate();
    bin.wait_exit(Duration::from_secs(10)).await;
    let output = bin.output();
    let lines = output
        .lines()
        .filter(|l| l.contains("leanproxy::exchange") && l.contains("path=/banks/v1/"))
        .count();
    // Held-back counts come in lines like "55 more exchanges than ...".
    let held: usize = output
        .lines()
        .filter_map(|l| l.split_once(" more exchanges than log.lines_per_second = 5"))
        .filter_map(|(head, _)| head.rsplit(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(lines < SENT, "some lines held back:\n{output}");
    assert!(held > 0, "a held-back count is printed:\n{output}");
    // The Mockbank's own startup calls may add exchanges; none goes missing.
    assert!(
        lines + held >= SENT,
        "{lines} lines + {held} held:\n{output}"
    );
}

#[tokio::test]
async fn tail_prints_exchanges_and_reconnects_live() {
    let bin = Binary::spawn(&[], &[]);
    let admin = format!("http://{}", bin.admin);
    let mut tail = std::process::Command::new(env!("CARGO_BIN_EXE_leanproxy"))
        .args(["tail", "--admin", &admin])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = tail.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // Wait until tail is connected: it prints each exchange, so send until one shows.
    let client = h1_client();
    let mut lines = Vec::new();
    for _ in 0..50 {
        get(&client, &bin.url("/banks/v1/")).await;
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(line);
            break;
        }
    }
    assert!(!lines.is_empty(), "tail printed nothing");
    let users = get(&client, &bin.url("/_mockbank/users")).await.json();
    let password = users["users"][0]["password"].as_str().unwrap().to_string();
    let post = |path: &str, body: Value| post_json(bin.url(path), body);
    let entity = link_entity(
        &client,
        &bin.url(""),
        "tail",
        "otp_user",
        &password,
        Some("1111"),
    )
    .await;
    send(
        &client,
        post(&format!("/_mockbank/entities/{entity}/expire"), json!({})),
    )
    .await;
    send(
        &client,
        post("/data/v1/accounts", json!({"entity_id": entity})),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // The Mockbank posts its webhooks on its own time: wait for those too.
    let seen = |lines: &[String]| {
        lines.iter().any(|l| l.contains("RECONNECT "))
            && lines.iter().any(|l| l.contains("RECONNECT_REQUIRED"))
            && lines.iter().any(|l| l.contains("WEBHOOK entity.created"))
    };
    while !seen(&lines) && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(line);
        }
    }
    let _ = tail.kill();
    let _ = tail.wait();
    let text = lines.join("\n");
    assert!(
        text.contains("/banks/v1/") && text.contains("200"),
        "{text}"
    );
    assert!(text.contains("RECONNECT_REQUIRED"), "{text}");
    assert!(
        text.contains(&format!("RECONNECT entity={entity}")),
        "{text}"
    );
    assert!(text.contains("WEBHOOK entity.created"), "{text}");
    assert!(!text.contains('\u{1b}'), "no colors when not on a terminal");
}

/// The HAR export renders off the runtime's thread (one by default, and the
/// test's own here): an exchange sent while a large export is being made is
/// answered before the export is.
#[tokio::test]
async fn exchanges_are_answered_while_a_har_export_renders() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    let client = h1_client();
    // A full ring of JSON bodies, shown in the HAR: megabytes to render.
    let text = serde_json::json!({"data": "leanproxy ".repeat(1_400)}).to_string();
    for _ in 0..600 {
        let upload = Request::post(proxy.url("/sink"))
            .header("content-type", "application/json")
            .body(body::full(text.clone()))
            .unwrap();
        assert_eq!(send(&client, upload).await.status, 200);
    }
    let started = Instant::now();
    let export = tokio::spawn({
        let client = h1_client();
        let url = proxy.admin_url("/api/requests.har");
        async move {
            let r = get(&client, &url).await;
            (r.status, r.body.len(), started.elapsed())
        }
    });
    // Sent once the export is under way. Both times count from the export's
    // start: a render on this thread would hold up this sleep too.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(get(&client, &proxy.url("/fixed?len=10")).await.status, 200);
    let exchange = started.elapsed();
    let (status, size, export) = export.await.unwrap();
    assert_eq!(status, 200);
    assert!(size > 4 << 20, "a HAR of {size} bytes");
    assert!(
        exchange < export / 2,
        "the exchange was answered {exchange:?} after the export began, the export {export:?}"
    );
}

/// An upstream that is not Lean: it answers free text, sets its own token
/// header, writes personal keys in other spellings and echoes the app token
/// in an error.
async fn foreign_upstream(
    app_token: &'static str,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                    let (content_type, text) = match req.uri().path() {
                        "/text" => (
                            "text/plain",
                            "hello Angelika Jacobs, AE270200712989310470056".to_string(),
                        ),
                        "/json" => (
                            "application/json",
                            json!({"IBAN": "AE270200712989310470056", "first_name": "Angelika",
                                   "last_name": "Jacobs", "holderName": "Angelika Jacobs",
                                   "account_name": "Angelika Jacobs CURRENT_ACCOUNT Account",
                                   "status": "OK"})
                            .to_string(),
                        ),
                        _ => (
                            "application/json",
                            json!({"status": "UNAUTHORIZED",
                                   "message": format!("app token {app_token} is not valid")})
                            .to_string(),
                        ),
                    };
                    let response = http::Response::builder()
                        .status(if req.uri().path() == "/error" {
                            401
                        } else {
                            200
                        })
                        .header("content-type", content_type)
                        .header("x-upstream-session", "sess-0123456789")
                        .header("x-echo", app_token)
                        .body(body::full(text))
                        .unwrap();
                    Ok::<_, std::convert::Infallible>(response)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_foreign_upstreams_bodies_and_headers_are_redacted_by_default_deny() {
    const TOKEN: &str = "app-token-ECHOED-0123456789";
    let (upstream, _task) = foreign_upstream(TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.jsonl");
    let config = dir.path().join("lp.toml");
    std::fs::write(
        &config,
        format!("[log]\njournal = \"{}\"\n", journal.display()),
    )
    .unwrap();
    let mut bin = Binary::spawn(
        &[
            "--upstream",
            &format!("http://{upstream}"),
            "--config",
            config.to_str().unwrap(),
        ],
        &[("LEAN_APP_TOKEN", TOKEN)],
    );
    let client = h1_client();
    for path in ["/text", "/json", "/error"] {
        let r = get(&client, &bin.url(path)).await;
        assert!(r.status == 200 || r.status == 401, "{path}");
    }
    // A form with secrets under names no list has.
    let form = Request::post(bin.url("/form"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body::full(
            "grant_type=x&my_api_secret=form-SECRET-1&PIN=86420975&holderName=Angelika+Jacobs",
        ))
        .unwrap();
    send(&client, form).await;

    let admin = |path: &str| format!("http://{}{path}", bin.admin);
    let mut channels: Vec<(String, String)> = Vec::new();
    let list = get(&client, &admin("/api/requests")).await.json();
    for r in list["requests"].as_array().unwrap() {
        let id = r["id"].as_str().unwrap();
        let one = get(&client, &admin(&format!("/api/requests/{id}"))).await;
        channels.push((
            id.to_string(),
            String::from_utf8_lossy(&one.body).into_owned(),
        ));
    }
    assert_eq!(channels.len(), 4);
    let har = get(&client, &admin("/api/requests.har")).await;
    channels.push((
        "har".into(),
        String::from_utf8_lossy(&har.body).into_owned(),
    ));
    bin.terminate();
    bin.wait_exit(Duration::from_secs(10)).await;
    channels.push(("output".into(), bin.output()));
    for file in leanproxy::log::journal_files(&journal) {
        channels.push((
            file.display().to_string(),
            std::fs::read_to_string(&file).unwrap(),
        ));
    }
    let all: String = channels.iter().map(|(_, t)| t.as_str()).collect();
    assert!(
        all.contains("bytes of text/plain, not shown"),
        "the text is accounted for"
    );
    assert!(all.contains("[redacted]"));
    for (channel, text) in &channels {
        for leak in [
            TOKEN,
            "Angelika",
            "Jacobs",
            "AE2702007129893",
            "sess-0123456789",
            "form-SECRET-1",
            "86420975",
        ] {
            assert!(
                !text.contains(leak),
                "`{leak}` leaked into {channel}: {text}"
            );
        }
    }
}
