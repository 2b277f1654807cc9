//! The webhook catcher: verification under each policy, Lean's recorded samples,
//! dedup, the durable relay (late receiver, crash and restart), inspection and
//! replay.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use leanproxy::body;
use leanproxy::lean::webhook_signature;
use serde_json::{json, Value};

use crate::support::{closed_port, get, h1_client, send, Binary, Observed, Proxy, Receiver};

const SECRET: &str = "whsec-test-1";

fn upstream_config(extra: &str) -> String {
    // An upstream is configured, so the catcher uses only what it is told.
    format!(
        "[proxy]\nupstream = \"http://127.0.0.1:9\"\n[webhooks]\nsecret = \"{SECRET}\"\n{extra}"
    )
}

async fn deliver(addr: std::net::SocketAddr, body: &[u8], signature: Option<String>) -> Observed {
    let mut req = Request::post(format!("http://{addr}/hooks/lean"))
        .header("content-type", "application/json");
    if let Some(sig) = signature {
        req = req.header("lean-signature", sig);
    }
    send(
        &h1_client(),
        req.body(body::full(Bytes::copy_from_slice(body))).unwrap(),
    )
    .await
}

fn event(kind: &str, event_id: &str, payload: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": kind, "payload": payload, "message": "m",
        "timestamp": "2026-05-12T14:34:40.391243281Z", "event_id": event_id,
    }))
    .unwrap()
}

#[tokio::test]
async fn verdicts_under_each_policy() {
    let body = event("entity.created", "ev-1", json!({"id": "e-1"}));
    let good = Some(webhook_signature(SECRET.as_bytes(), &body));
    let mut tampered = body.clone();
    *tampered.last_mut().unwrap() = b' ';

    let enforce = Proxy::start(&upstream_config("verify = \"enforce\"\n")).await;
    assert_eq!(
        deliver(enforce.webhooks_addr, &body, good.clone())
            .await
            .status,
        200
    );
    let refused = deliver(enforce.webhooks_addr, &tampered, good.clone()).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["status"], "INVALID_SIGNATURE");
    assert_eq!(
        deliver(enforce.webhooks_addr, &body, None).await.status,
        401
    );
    let outcomes: Vec<(String, String)> = enforce
        .webhooks
        .records()
        .iter()
        .map(|r| {
            (
                r.signature.name().to_string(),
                serde_json::to_value(r.outcome)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("valid".into(), "accepted".into()),
            ("invalid".into(), "rejected".into()),
            ("missing".into(), "rejected".into())
        ]
    );

    let report = Proxy::start(&upstream_config("verify = \"report\"\n")).await;
    assert_eq!(
        deliver(report.webhooks_addr, &tampered, good.clone())
            .await
            .status,
        200
    );
    assert_eq!(report.webhooks.records()[0].signature.name(), "invalid");

    let off = Proxy::start(&upstream_config("verify = \"off\"\n")).await;
    assert_eq!(
        deliver(off.webhooks_addr, &tampered, None).await.status,
        200
    );
    assert_eq!(off.webhooks.records()[0].signature.name(), "unchecked");
}

#[tokio::test]
async fn leans_recorded_samples_are_accepted_and_parsed() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/lean-postman/webhooks"
    );
    let Ok(entries) = std::fs::read_dir(dir) else {
        eprintln!("SKIPPED: {dir} is absent");
        return;
    };
    let proxy = Proxy::start(&upstream_config("verify = \"enforce\"\n")).await;
    let mut seen = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let raw = std::fs::read(&path).unwrap();
        let sample: Value = serde_json::from_slice(&raw).unwrap();
        let answer = deliver(
            proxy.webhooks_addr,
            &raw,
            Some(webhook_signature(SECRET.as_bytes(), &raw)),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", path.display());
        let record = proxy
            .webhooks
            .record(answer.json()["id"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            record.kind.as_deref(),
            sample["type"].as_str(),
            "{}",
            path.display()
        );
        assert_eq!(record.event_id.as_deref(), sample["event_id"].as_str());
        assert_eq!(record.signature.name(), "valid");
        assert_eq!(record.body_bytes, raw.len());
        let kind = sample["type"].as_str().unwrap();
        if kind.starts_with("entity.") {
            let expected = sample["payload"]["entity_id"]
                .as_str()
                .or(sample["payload"]["id"].as_str());
            assert_eq!(record.entity_id.as_deref(), expected, "{}", path.display());
        }
        seen += 1;
    }
    assert!(seen >= 5, "read {seen} samples");
}

#[tokio::test]
async fn repeated_event_ids_are_duplicates_and_relayed_once() {
    let app = Receiver::start(0).await;
    let proxy = Proxy::start(&upstream_config(&format!(
        "relay = [\"{}\"]\nretry_initial = \"50ms\"\n",
        app.url()
    )))
    .await;
    let body = event("results.ready", "ev-dup", json!({"id": "res-1"}));
    let sig = Some(webhook_signature(SECRET.as_bytes(), &body));
    for _ in 0..3 {
        assert_eq!(
            deliver(proxy.webhooks_addr, &body, sig.clone())
                .await
                .status,
            200,
            "Lean gets 200 every time"
        );
    }
    app.wait_for("results.ready", 1).await;
    let outcomes: Vec<Value> = proxy
        .webhooks
        .records()
        .iter()
        .map(|r| serde_json::to_value(r.outcome).unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [json!("accepted"), json!("duplicate"), json!("duplicate")]
    );
    // A later delivery would have arrived by now if the duplicates were relayed.
    let other = event("results.ready", "ev-other", json!({"id": "res-2"}));
    deliver(
        proxy.webhooks_addr,
        &other,
        Some(webhook_signature(SECRET.as_bytes(), &other)),
    )
    .await;
    app.wait_for("results.ready", 2).await;
    assert_eq!(app.received().len(), 2);
}

#[tokio::test]
async fn relay_waits_for_a_late_app_and_delivers_once_byte_identical() {
    let port = closed_port().await;
    let proxy = Proxy::start(&upstream_config(&format!(
        "relay = [\"http://{port}/webhooks/lean\"]\nretry_initial = \"50ms\"\nretry_max = \"200ms\"\n"
    )))
    .await;
    let body = event(
        "entity.reconnected",
        "ev-late",
        json!({"id": "e-9", "reconnect_id": "r-9"}),
    );
    let sig = webhook_signature(SECRET.as_bytes(), &body);
    let answer = deliver(proxy.webhooks_addr, &body, Some(sig.clone())).await;
    let id = answer.json()["id"].as_str().unwrap().to_string();
    // The app is down: the relay keeps trying.
    for _ in 0..100 {
        if proxy.webhooks.record(&id).unwrap().relay[0].attempts >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pending = proxy.webhooks.record(&id).unwrap().relay[0].clone();
    assert_eq!(pending.state, "queued");
    assert!(pending.last_error.is_some());

    let app = Receiver::start_on(port, 0).await;
    let got = app.wait_for("entity.reconnected", 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], &body[..], "byte-identical");
    assert_eq!(got[0].headers["lean-signature"].to_str().unwrap(), sig);
    assert_eq!(got[0].headers["content-type"], "application/json");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.received().len(), 1, "delivered once");
    assert_eq!(
        proxy.webhooks.record(&id).unwrap().relay[0].state,
        "delivered"
    );
}

#[tokio::test]
async fn queued_webhooks_survive_a_crash_and_are_relayed_after_restart() {
    let port = closed_port().await;
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("lp.toml");
    std::fs::write(
        &config,
        upstream_config(&format!("relay = [\"http://{port}/webhooks/lean\"]\nretry_initial = \"100ms\"\nretry_max = \"200ms\"\n")),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let mut first = Binary::spawn_in(&args, &[], data.path());
    let body = event(
        "entity.reconnected",
        "ev-crash",
        json!({"id": "e-1", "reconnect_id": "r-1"}),
    );
    let sig = webhook_signature(SECRET.as_bytes(), &body);
    assert_eq!(
        deliver(first.webhooks, &body, Some(sig.clone()))
            .await
            .status,
        200
    );
    // Killed without a chance to clean up.
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let app = Receiver::start_on(port, 0).await;
    let _second = Binary::spawn_in(&args, &[], data.path());
    let got = app.wait_for("entity.reconnected", 1).await;
    assert_eq!(&got[0].body[..], &body[..]);
    assert_eq!(got[0].headers["lean-signature"].to_str().unwrap(), sig);
}

#[tokio::test]
async fn admin_lists_filters_shows_and_replays() {
    let app = Receiver::start(0).await;
    let proxy = Proxy::start(&upstream_config(&format!(
        "relay = [\"{}\"]\nretry_initial = \"50ms\"\n",
        app.url()
    )))
    .await;
    let a = event("entity.created", "ev-a", json!({"id": "e-a"}));
    let b = event("results.ready", "ev-b", json!({"id": "res-b"}));
    deliver(
        proxy.webhooks_addr,
        &a,
        Some(webhook_signature(SECRET.as_bytes(), &a)),
    )
    .await;
    deliver(proxy.webhooks_addr, &b, Some("sha256=00".into())).await;
    let client = h1_client();
    let all = get(&client, &proxy.admin_url("/api/webhooks")).await.json();
    assert_eq!(all["webhooks"].as_array().unwrap().len(), 2);
    let ready = get(
        &client,
        &proxy.admin_url("/api/webhooks?type=results.ready"),
    )
    .await
    .json();
    assert_eq!(ready["webhooks"][0]["event_id"], "ev-b");
    let invalid = get(&client, &proxy.admin_url("/api/webhooks?verdict=invalid"))
        .await
        .json();
    assert_eq!(invalid["webhooks"].as_array().unwrap().len(), 1);
    let id = all["webhooks"][0]["id"].as_str().unwrap().to_string();
    let one = get(&client, &proxy.admin_url(&format!("/api/webhooks/{id}")))
        .await
        .json();
    assert_eq!(one["type"], "entity.created");
    let headers = one["headers"].as_array().unwrap();
    assert!(headers
        .iter()
        .any(|h| h[0] == "lean-signature" && h[1] == "[redacted]"));

    app.wait_for("entity.created", 1).await;
    let replay = send(
        &client,
        Request::post(proxy.admin_url(&format!("/api/webhooks/{id}/replay")))
            .body(body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(replay.status, 202);
    let twice = app.wait_for("entity.created", 2).await;
    assert_eq!(twice[0].body, twice[1].body);
    assert_eq!(
        get(&client, &proxy.admin_url("/api/webhooks/nope"))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn a_forged_webhook_changes_nothing_and_does_not_block_the_real_one() {
    let proxy = Proxy::start(&upstream_config("verify = \"report\"\n")).await;
    proxy
        .registry
        .observe_reconnect(leanproxy::reconnect::Sighting {
            entity_id: Some("e-1".into()),
            reconnect_id: "r-1".into(),
            results_id: None,
            api: leanproxy::reconnect::Api::V1,
            path: "/data/v1/accounts".into(),
            source: leanproxy::reconnect::Source::Upstream,
        })
        .await;
    let body = event(
        "entity.reconnected",
        "ev-real",
        json!({"id": "e-1", "reconnect_id": "r-1"}),
    );
    let forged = deliver(proxy.webhooks_addr, &body, Some("sha512=00".into())).await;
    assert_eq!(forged.status, 200, "report mode accepts it");
    assert!(
        proxy.registry.is_pending("e-1").await,
        "but an invalid signature resolves nothing"
    );
    let real = deliver(
        proxy.webhooks_addr,
        &body,
        Some(webhook_signature(SECRET.as_bytes(), &body)),
    )
    .await;
    assert_eq!(real.status, 200);
    let outcomes: Vec<Value> = proxy
        .webhooks
        .records()
        .iter()
        .map(|r| serde_json::to_value(r.outcome).unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [json!("accepted"), json!("accepted")],
        "the real one is not a duplicate"
    );
    assert!(
        !proxy.registry.is_pending("e-1").await,
        "the real one resolves it"
    );
}

#[tokio::test]
async fn a_full_relay_queue_answers_503_so_lean_retries() {
    let port = closed_port().await;
    let proxy = Proxy::start(&upstream_config(&format!(
        "relay = [\"http://{port}/hooks\"]\nqueue_limit = 1\nretry_initial = \"10s\"\n"
    )))
    .await;
    let first = event("results.ready", "ev-1", json!({"id": "res-1"}));
    let second = event("results.ready", "ev-2", json!({"id": "res-2"}));
    let sign = |b: &[u8]| Some(webhook_signature(SECRET.as_bytes(), b));
    assert_eq!(
        deliver(proxy.webhooks_addr, &first, sign(&first))
            .await
            .status,
        200
    );
    let full = deliver(proxy.webhooks_addr, &second, sign(&second)).await;
    assert_eq!(full.status, 503);
    assert_eq!(full.json()["status"], "RELAY_QUEUE_FULL");
    // Lean's retry of the same event is not a "duplicate": it was never taken.
    let retry = deliver(proxy.webhooks_addr, &second, sign(&second)).await;
    assert_eq!(retry.status, 503);
}

/// The relay queue's write is made to hang: its temporary file is a FIFO that
/// no one reads yet, so opening it waits (a slow disk's `fsync`, made
/// certain). The proxy's one runtime thread must go on serving meanwhile, and
/// a copy of the webhook must not be acknowledged while the original may
/// still be lost.
#[tokio::test]
async fn a_slow_relay_queue_write_holds_neither_the_proxy_nor_a_duplicate() {
    let app = Receiver::start(0).await;
    let data = tempfile::tempdir().unwrap();
    let queue = data.path().join("webhook-relay");
    std::fs::create_dir_all(&queue).unwrap();
    // A delivery left from an earlier run (`{"type":"left.over"}`) fixes the
    // next sequence number.
    let seq: u64 = 9_000_000_000_000_000_000;
    let leftover = json!({
        "seq": seq, "webhook_id": "left", "target": app.url(),
        "headers": [], "body_base64": "eyJ0eXBlIjoibGVmdC5vdmVyIn0=", "attempts": 0,
    });
    std::fs::write(queue.join(format!("{seq:020}.json")), leftover.to_string()).unwrap();
    let fifo = queue.join(format!("{:020}.tmp", seq + 1));
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success(), "mkfifo");
    let config = data.path().join("lp.toml");
    std::fs::write(
        &config,
        upstream_config(&format!(
            "relay = [\"{}\"]\nretry_initial = \"50ms\"\n",
            app.url()
        )),
    )
    .unwrap();
    let bin = Binary::spawn_in(&["--config", config.to_str().unwrap()], &[], data.path());

    let body = event("results.ready", "ev-slow", json!({"id": "res-slow"}));
    let sig = Some(webhook_signature(SECRET.as_bytes(), &body));
    let send_one = || {
        let (addr, body, sig) = (bin.webhooks, body.clone(), sig.clone());
        tokio::spawn(async move { deliver(addr, &body, sig).await })
    };
    let first = send_one();
    let client = h1_client();
    let listed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let seen = get(&client, &format!("http://{}/api/webhooks", bin.admin)).await;
            if String::from_utf8_lossy(&seen.body).contains("ev-slow") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert!(
        listed.await.is_ok(),
        "the admin API answers while the write hangs"
    );
    let url = bin.url("/banks/v1/");
    let proxied = tokio::time::timeout(Duration::from_secs(2), get(&client, &url));
    assert_eq!(proxied.await.expect("proxied meanwhile").status, 502);

    let copy = send_one();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!first.is_finished(), "the write still hangs");
    assert!(!copy.is_finished(), "the copy waits for the original");

    // Read the FIFO: the open and the write go through, the `fsync` fails (a
    // FIFO cannot be synced), so the original is not queued.
    let drained = std::thread::spawn(move || {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::open(&fifo).unwrap(), &mut text).unwrap();
        text
    });
    let wait = |task| tokio::time::timeout(Duration::from_secs(5), task);
    let first = wait(first).await.expect("answered").unwrap();
    assert_eq!(first.status, 503);
    assert_eq!(first.json()["status"], "RELAY_QUEUE_FULL");
    assert!(!drained.join().unwrap().is_empty());
    // The copy then is the first delivery kept, and relayed.
    let copy = wait(copy).await.expect("answered").unwrap();
    assert_eq!(copy.status, 200, "{}", copy.json());
    let got = app.wait_for("results.ready", 1).await;
    assert_eq!(&got[0].body[..], &body[..]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let relayed = app
        .received()
        .iter()
        .filter(|r| r.body[..] == body[..])
        .count();
    assert_eq!(relayed, 1, "relayed once");
}

/// With several targets, a webhook goes to all of them or to none: one that
/// cannot be queued for one target is refused, and Lean's retry must not
/// reach the others twice.
#[tokio::test]
async fn a_webhook_one_target_cannot_take_is_queued_for_none() {
    let (a, b) = (closed_port().await, closed_port().await);
    let data = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_in(
        &upstream_config(&format!(
            "relay = [\"http://{a}/hooks\", \"http://{b}/hooks\"]\nqueue_limit = 3\nretry_initial = \"10s\"\n"
        )),
        data.path(),
    )
    .await;
    let queued = || {
        std::fs::read_dir(data.path().join("webhook-relay"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "json")
            })
            .count()
    };
    let sign = |b: &[u8]| Some(webhook_signature(SECRET.as_bytes(), b));
    let first = event("results.ready", "ev-1", json!({"id": "res-1"}));
    assert_eq!(
        deliver(proxy.webhooks_addr, &first, sign(&first))
            .await
            .status,
        200
    );
    assert_eq!(queued(), 2, "one delivery per target");
    // Room for one more delivery only: the first target's is taken back.
    let second = event("results.ready", "ev-2", json!({"id": "res-2"}));
    let refused = deliver(proxy.webhooks_addr, &second, sign(&second)).await;
    assert_eq!(refused.status, 503);
    assert_eq!(queued(), 2, "nothing of the refused webhook stays queued");
    let record = proxy
        .webhooks
        .records()
        .into_iter()
        .find(|r| r.event_id.as_deref() == Some("ev-2"))
        .unwrap();
    let states: Vec<&str> = record.relay.iter().map(|s| s.state).collect();
    assert_eq!(states, ["dropped", "dropped"]);
    assert!(record.relay[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("another target"));
    assert!(record.relay[1]
        .last_error
        .as_deref()
        .unwrap()
        .contains("full"));
    // Lean's retry is taken as new, and refused the same way.
    assert_eq!(
        deliver(proxy.webhooks_addr, &second, sign(&second))
            .await
            .status,
        503
    );
    assert_eq!(queued(), 2);
    // So is a replay that does not fit, and the admin says so.
    let first_id = &proxy.webhooks.records()[0].id;
    let replay = Request::post(proxy.admin_url(&format!("/api/webhooks/{first_id}/replay")))
        .body(body::empty())
        .unwrap();
    let refused = send(&h1_client(), replay).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.json()["status"], "RELAY_QUEUE_FULL");
    assert!(
        refused.json()["message"].as_str().unwrap().contains("full"),
        "{}",
        refused.json()
    );
    assert_eq!(queued(), 2);
}

/// The webhook listener faces the internet: forged deliveries, all refused
/// under `enforce`, keep only a prefix of their bodies, the store stays within
/// `webhooks.history_bytes`, and the list is a bounded page without bodies.
/// Through the real binary, whose memory is measured.
#[tokio::test]
async fn forged_webhooks_keep_a_prefix_within_the_byte_bound() {
    const MIB: u64 = 1 << 20;
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("lp.toml");
    std::fs::write(
        &config,
        upstream_config("verify = \"enforce\"\nhistory_bytes = 1048576\n"),
    )
    .unwrap();
    let bin = Binary::spawn_in(&["--config", config.to_str().unwrap()], &[], data.path());
    let client = h1_client();
    let admin = |path: &str| format!("http://{}{path}", bin.admin);
    let big = |event_id: &str| {
        let filler = "x".repeat(256 * 1024 - 200);
        let mut body = event("entity.reconnected", event_id, json!({"filler": filler}));
        body.resize(256 * 1024, b' ');
        body
    };
    let forged = big("ev-forged");
    let before = bin.peak_rss();
    for _ in 0..200 {
        let answer = deliver(bin.webhooks, &forged, Some("sha512=00".into())).await;
        assert_eq!(answer.status, 401);
    }
    let grown = bin.peak_rss().saturating_sub(before);

    let list = get(&client, &admin("/api/webhooks")).await;
    assert_eq!(list.status, 200);
    assert!(list.body.len() < 256 * 1024, "{} bytes", list.body.len());
    let list = list.json();
    assert_eq!(list["kept"], 200);
    let kept_bytes = list["kept_bytes"].as_u64().unwrap();
    assert!(kept_bytes <= 200 * 2048, "{kept_bytes} bytes kept");
    assert_eq!(list["history_bytes"], 1048576);
    let page = list["webhooks"].as_array().unwrap();
    assert_eq!(page.len(), 100, "a page of the default size");
    for w in page {
        assert!(w.get("body").is_none(), "no bodies in the list: {w}");
        assert_eq!(
            (w["body_bytes"].as_u64(), w["body_truncated"].as_bool()),
            (Some(256 * 1024), Some(true))
        );
    }
    let id = page[0]["id"].as_str().unwrap();
    let one = get(&client, &admin(&format!("/api/webhooks/{id}")))
        .await
        .json();
    // A 1 KiB prefix is kept; it cannot be redacted, so it is described.
    assert!(one["body"].is_null(), "{one}");
    assert!(
        one["body_note"]
            .as_str()
            .unwrap()
            .starts_with("the first 1024 of 262144 bytes are kept"),
        "{one}"
    );
    let replay = Request::post(admin(&format!("/api/webhooks/{id}/replay")))
        .body(body::empty())
        .unwrap();
    assert_eq!(send(&client, replay).await.status, 409);
    let older = format!(
        "/api/webhooks?before={}",
        list["next_before"].as_str().unwrap()
    );
    let older = get(&client, &admin(&older)).await.json();
    assert_eq!(older["webhooks"].as_array().unwrap().len(), 100);
    assert_eq!(older["next_before"], Value::Null, "the last page");
    assert_eq!(
        get(&client, &admin("/api/webhooks?limit=1001"))
            .await
            .status,
        400
    );

    // Accepted deliveries are kept whole, the oldest evicted to stay within
    // the bound.
    let mut ids = Vec::new();
    for i in 0..8 {
        let body = big(&format!("ev-{i}"));
        let answer = deliver(
            bin.webhooks,
            &body,
            Some(webhook_signature(SECRET.as_bytes(), &body)),
        )
        .await;
        assert_eq!(answer.status, 200);
        ids.push(answer.json()["id"].as_str().unwrap().to_string());
    }
    let list = get(&client, &admin("/api/webhooks?outcome=accepted&limit=1000"))
        .await
        .json();
    assert!(
        list["kept_bytes"].as_u64().unwrap() <= MIB,
        "{}",
        list["kept_bytes"]
    );
    let listed: Vec<&str> = list["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids[5..], "the newest three of 256 KiB fit in 1 MiB");
    let last = get(&client, &admin(&format!("/api/webhooks/{}", ids[7])))
        .await
        .json();
    assert_eq!(
        (
            last["body_note"]
                .as_str()
                .unwrap()
                .starts_with("262144 bytes; not shown"),
            last["body_truncated"].as_bool()
        ),
        (true, Some(false)),
        "{last}"
    );
    assert_eq!(
        get(&client, &admin(&format!("/api/webhooks/{}", ids[0])))
            .await
            .status,
        404
    );

    // Measured last, so a failure above says what was kept. Keeping the
    // bodies took 77 MiB here (200 × 256 KiB, and their 64 KiB texts).
    eprintln!("peak RSS grew by {} MiB", grown / MIB);
    assert!(grown < 40 * MIB, "peak RSS grew by {} MiB", grown / MIB);
}

/// Event ids of what the app received, in order.
fn event_ids(app: &Receiver) -> Vec<String> {
    app.received()
        .iter()
        .map(|r| {
            r.json()["event_id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// A webhook the app refuses for good (400) is set aside at once, kept on
/// disk with the reason, and the ones after it are delivered in order; once
/// the app is fixed, the dead letter is replayed from the admin API.
#[tokio::test]
async fn a_webhook_the_app_refuses_is_dead_lettered_and_the_next_go_on() {
    let app = Receiver::refusing("ev-bad", 400).await;
    let data = tempfile::tempdir().unwrap();
    // The default backoff up to a minute: retrying the refused one would hold
    // the others for far longer than the wait below.
    let proxy = Proxy::start_in(
        &upstream_config(&format!(
            "relay = [\"{}\"]\nretry_initial = \"50ms\"\n",
            app.url()
        )),
        data.path(),
    )
    .await;
    let sign = |b: &[u8]| Some(webhook_signature(SECRET.as_bytes(), b));
    let mut bad_id = String::new();
    for name in ["ev-1", "ev-bad", "ev-2", "ev-3", "ev-4", "ev-5"] {
        let body = event("results.ready", name, json!({"id": format!("res-{name}")}));
        let answer = deliver(proxy.webhooks_addr, &body, sign(&body)).await;
        assert_eq!(answer.status, 200);
        if name == "ev-bad" {
            bad_id = answer.json()["id"].as_str().unwrap().to_string();
        }
    }
    app.wait_for("results.ready", 5).await;
    assert_eq!(event_ids(&app), ["ev-1", "ev-2", "ev-3", "ev-4", "ev-5"]);
    assert_eq!(app.attempts(), 6, "the refused one was tried once");

    let client = h1_client();
    let dead = get(&client, &proxy.admin_url("/api/webhooks/dead")).await;
    assert_eq!(dead.status, 200);
    let dead = dead.json()["dead"].as_array().unwrap().clone();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["webhook_id"], bad_id.as_str());
    assert_eq!(dead[0]["target"], app.url());
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("400"),
        "{}",
        dead[0]
    );
    let status = proxy.webhooks.record(&bad_id).unwrap().relay[0].clone();
    assert_eq!((status.state, status.attempts), ("dead", 1));
    let on_disk = std::fs::read_dir(data.path().join("webhook-relay/dead"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(on_disk.len(), 1);
    assert!(on_disk[0].contains("answered 400"), "{}", on_disk[0]);

    app.accept_all();
    let id = dead[0]["id"].as_str().unwrap();
    let replay = Request::post(proxy.admin_url(&format!("/api/webhooks/dead/{id}/replay")))
        .body(body::empty())
        .unwrap();
    let replay = send(&client, replay).await;
    assert_eq!(replay.status, 202, "{}", replay.json());
    app.wait_for("results.ready", 6).await;
    assert_eq!(event_ids(&app)[5], "ev-bad");
    let dead = get(&client, &proxy.admin_url("/api/webhooks/dead")).await;
    assert_eq!(dead.json()["dead"], json!([]));
    let again = Request::post(proxy.admin_url(&format!("/api/webhooks/dead/{id}/replay")))
        .body(body::empty())
        .unwrap();
    assert_eq!(send(&client, again).await.status, 404);
}

/// A queue entry left damaged on disk (its body is not base64) is set aside
/// at once, and the intact entries after it are delivered.
#[tokio::test]
async fn a_damaged_queue_entry_is_dead_lettered_and_the_next_go_on() {
    use base64::Engine;
    let app = Receiver::start(0).await;
    let data = tempfile::tempdir().unwrap();
    let queue = data.path().join("webhook-relay");
    std::fs::create_dir_all(&queue).unwrap();
    let entry = |seq: u64, body_base64: &str| {
        let job = json!({
            "seq": seq, "webhook_id": format!("left-{seq}"), "target": app.url(),
            "headers": [["content-type", "application/json"]],
            "body_base64": body_base64, "attempts": 0,
        });
        std::fs::write(queue.join(format!("{seq:020}.json")), job.to_string()).unwrap();
    };
    entry(1, "not base64 at all!");
    for seq in 2..5 {
        let body = json!({"type": "left.over", "event_id": format!("ev-{seq}")}).to_string();
        entry(seq, &base64::engine::general_purpose::STANDARD.encode(body));
    }
    let proxy = Proxy::start_in(
        &upstream_config(&format!(
            "relay = [\"{}\"]\nretry_initial = \"50ms\"\n",
            app.url()
        )),
        data.path(),
    )
    .await;
    app.wait_for("left.over", 3).await;
    assert_eq!(event_ids(&app), ["ev-2", "ev-3", "ev-4"]);
    let dead = get(&h1_client(), &proxy.admin_url("/api/webhooks/dead"))
        .await
        .json();
    let dead = dead["dead"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (dead[0]["id"].as_str(), dead[0]["webhook_id"].as_str()),
        (Some("1"), Some("left-1"))
    );
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("damaged"),
        "{}",
        dead[0]
    );
    assert!(
        !queue.join(format!("{:020}.json", 1)).exists(),
        "moved out of the queue"
    );
    assert!(queue.join("dead").join(format!("{:020}.json", 1)).exists());
}

#[tokio::test]
async fn a_webhooks_personal_data_is_redacted_wherever_it_is_shown() {
    let proxy = Proxy::start(&upstream_config("")).await;
    let body = event(
        "payment_source.beneficiary.created",
        "ev-personal",
        json!({"account_holder_name": "Angelika Jacobs", "Iban": "AE270200712989310470056",
               "customer_id": "c-1", "email": "angelika@example.ae"}),
    );
    let kept = deliver(
        proxy.webhooks_addr,
        &body,
        Some(webhook_signature(SECRET.as_bytes(), &body)),
    )
    .await;
    assert_eq!(kept.status, 200);
    let client = h1_client();
    let list = get(&client, &proxy.admin_url("/api/webhooks")).await;
    let id = list.json()["webhooks"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let one = get(&client, &proxy.admin_url(&format!("/api/webhooks/{id}"))).await;
    for shown in [&list, &one] {
        let text = String::from_utf8_lossy(&shown.body);
        for leak in ["Angelika", "Jacobs", "AE2702007129893", "example.ae"] {
            assert!(!text.contains(leak), "`{leak}` in {text}");
        }
    }
    let detail: Value = serde_json::from_str(one.json()["body"].as_str().unwrap()).unwrap();
    assert_eq!(detail["payload"]["Iban"], "************0056");
    assert_eq!(detail["payload"]["customer_id"], "c-1", "ids stay");
}

#[tokio::test]
async fn a_delivery_lean_retries_after_a_restart_is_still_a_duplicate() {
    let app = Receiver::start(0).await;
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("lp.toml");
    std::fs::write(
        &config,
        upstream_config(&format!("relay = [\"{}\"]\n", app.url())),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let body = event("results.ready", "ev-across", json!({"id": "res-1"}));
    let sig = webhook_signature(SECRET.as_bytes(), &body);
    let mut first = Binary::spawn_in(&args, &[], data.path());
    assert_eq!(
        deliver(first.webhooks, &body, Some(sig.clone()))
            .await
            .status,
        200
    );
    app.wait_for("results.ready", 1).await;
    // Once the relay has settled it (its queue entry is gone, or a restart
    // would send it again: the queue is at-least-once), killed as a crash
    // would.
    let client = h1_client();
    for _ in 0..200 {
        let list = get(&client, &format!("http://{}/api/webhooks", first.admin))
            .await
            .json();
        if list["webhooks"][0]["relay"][0]["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let second = Binary::spawn_in(&args, &[], data.path());
    assert_eq!(deliver(second.webhooks, &body, Some(sig)).await.status, 200);
    let list = get(
        &h1_client(),
        &format!("http://{}/api/webhooks", second.admin),
    )
    .await
    .json();
    assert_eq!(list["webhooks"][0]["outcome"], "duplicate", "{list}");
    assert_eq!(app.received().len(), 1, "relayed once, before the restart");
}
