//! Reconnect awareness through the proxy: RECONNECT_REQUIRED answers from the
//! Mockbank become registry records (v1 and v2), repeats count, webhooks and OK
//! answers resolve them, the registry survives restarts, large answers pass
//! uninspected, and inspection never holds back the first byte.

use std::time::Duration;

use http::Request;
use http_body_util::BodyExt;
use leanproxy::body;
use leanproxy::reconnect::{
    Api, ReconnectRegistry, Record, ResolvedBy, Sighting, SightingOutcome, Source, State,
};
use serde_json::{json, Value};

use crate::support::{
    gated_first_chunk, get, h1_client, link_entity, post_json, send, Binary, Fnv, HttpClient,
    Observed, Origin, Proxy,
};

/// A proxy in front of its Mockbank, with a linked OTP user.
struct Setup {
    proxy: Proxy,
    client: HttpClient,
    entity: String,
}

impl Setup {
    async fn start(extra: &str) -> Setup {
        Setup::start_proxy(Proxy::start(extra).await).await
    }

    async fn start_proxy(proxy: Proxy) -> Setup {
        let mockbank = proxy.mockbank.as_ref().unwrap();
        mockbank.clock().pause();
        let password = mockbank.users()[0].password.clone();
        let client = h1_client();
        let entity = link_entity(
            &client,
            &proxy.url(""),
            "app-1",
            "otp_user",
            &password,
            Some("1111"),
        )
        .await;
        Setup {
            proxy,
            client,
            entity,
        }
    }

    async fn v1(&self) -> Observed {
        let req = Request::post(self.proxy.url("/data/v1/accounts"))
            .header("content-type", "application/json")
            .body(body::full(json!({"entity_id": self.entity}).to_string()))
            .unwrap();
        send(&self.client, req).await
    }

    async fn v2(&self) -> Observed {
        get(
            &self.client,
            &self
                .proxy
                .url(&format!("/data/v2/accounts?entity_id={}", self.entity)),
        )
        .await
    }

    fn expire_by_inactivity(&self) {
        self.proxy
            .mockbank
            .as_ref()
            .unwrap()
            .clock()
            .advance(Duration::from_secs(11 * 60));
    }

    fn record(&self) -> Record {
        self.proxy
            .registry
            .get(&self.entity)
            .now()
            .expect("the memory registry answers at once")
            .expect("a record for the entity")
    }

    async fn reconnect(&self, id: &str) {
        let req = Request::post(self.proxy.url("/_mockbank/link/reconnect"))
            .header("content-type", "application/json")
            .body(body::full(
                json!({"reconnect_id": id, "otp": "1111"}).to_string(),
            ))
            .unwrap();
        assert_eq!(send(&self.client, req).await.status, 200);
    }
}

#[tokio::test]
async fn v1_reconnect_is_recorded_with_its_ids_and_repeats_count() {
    let s = Setup::start("").await;
    assert_eq!(s.v1().await.json()["status"], "OK");
    assert!(s.proxy.registry.get(&s.entity).await.is_none());
    s.expire_by_inactivity();
    let answer = s.v1().await.json();
    assert_eq!(answer["status"], "RECONNECT_REQUIRED");
    let r = s.record();
    assert_eq!(r.state, State::Pending);
    assert_eq!(r.reconnect_id, answer["payload"]["reconnect_id"]);
    assert_eq!(r.results_id.as_deref(), answer["results_id"].as_str());
    assert_eq!((r.api, r.source, r.hits), (Api::V1, Source::Upstream, 1));
    assert_eq!(r.path, "/data/v1/accounts");
    assert_eq!(r.expires_at - r.first_seen, chrono::Duration::days(30));

    for _ in 0..3 {
        s.v1().await;
    }
    let r = s.record();
    assert_eq!(r.hits, 4);
    assert_eq!(r.reconnect_id, answer["payload"]["reconnect_id"], "same id");
    assert_eq!(
        r.calls_while_pending, 3,
        "the app kept calling instead of reconnecting"
    );
    assert_eq!(s.proxy.registry.pending_count().await, 1);

    // The admin API shows it.
    let admin = get(
        &s.client,
        &s.proxy.admin_url("/api/reconnects?state=pending"),
    )
    .await
    .json();
    assert_eq!(admin["pending"], 1);
    assert_eq!(admin["reconnects"][0]["entity_id"], s.entity);
    assert_eq!(admin["reconnects"][0]["hits"], 4);
}

#[tokio::test]
async fn a_json_body_sent_as_a_form_still_names_the_entity() {
    // `curl -d '{"entity_id":…}'` says application/x-www-form-urlencoded; the
    // Mockbank (like Lean) answers it as JSON, and the record has its entity.
    let s = Setup::start("").await;
    s.expire_by_inactivity();
    let req = Request::post(s.proxy.url("/data/v1/accounts"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body::full(json!({"entity_id": s.entity}).to_string()))
        .unwrap();
    let answer = send(&s.client, req).await.json();
    assert_eq!(answer["status"], "RECONNECT_REQUIRED");
    let r = s.record();
    assert_eq!(r.entity_id.as_deref(), Some(s.entity.as_str()));
    assert_eq!(r.reconnect_id, answer["payload"]["reconnect_id"]);
    // A body that is no JSON object is not copied, and names nothing.
    let req = Request::post(s.proxy.url("/data/v1/accounts"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body::full("entity_id=x"))
        .unwrap();
    send(&s.client, req).await;
    assert_eq!(s.proxy.registry.list().await.len(), 1);
}

#[tokio::test]
async fn an_entity_reconnected_webhook_names_the_entity_a_request_did_not() {
    let s = Setup::start("").await;
    // A reconnect whose request named no entity (a body the proxy could not
    // read) is recorded under its id.
    s.proxy
        .registry
        .observe_reconnect(Sighting {
            entity_id: None,
            reconnect_id: "r-unknown".into(),
            results_id: None,
            api: Api::V1,
            path: "/data/v1/accounts".into(),
            source: Source::Upstream,
        })
        .await;
    assert!(s.proxy.registry.get("reconnect:r-unknown").await.is_some());
    let webhook = json!({
        "type": "entity.reconnected",
        "payload": {"id": "e-from-webhook", "customer_id": "c", "reconnect_id": "r-unknown"},
        "message": "An entity was reconnected.",
        "timestamp": "2026-12-06T00:00:00Z",
        "event_id": "ev-entity-named"
    });
    let body = webhook.to_string();
    let req = Request::post(format!("http://{}/webhooks/lean", s.proxy.webhooks_addr))
        .header("content-type", "application/json")
        .header(
            "lean-signature",
            leanproxy::lean::webhook_signature(b"mockbank-webhook-secret", body.as_bytes()),
        )
        .body(body::full(body))
        .unwrap();
    assert_eq!(send(&s.client, req).await.status, 200);
    let r = s
        .proxy
        .registry
        .get("e-from-webhook")
        .await
        .expect("found by the entity the webhook named");
    assert_eq!(
        (r.state, r.reconnect_id.as_str()),
        (State::Resolved, "r-unknown")
    );
}

#[tokio::test]
async fn v2_reconnect_uses_the_results_id_and_an_ok_answer_resolves_it() {
    // The Mockbank's webhooks go elsewhere, so only the OK answer can tell.
    let elsewhere = crate::support::Receiver::start(0).await;
    let s = Setup::start(&format!(
        "[mockbank]\nwebhook_url = \"{}\"\n",
        elsewhere.url()
    ))
    .await;
    s.expire_by_inactivity();
    let answer = s.v2().await.json();
    assert_eq!(answer["status"], "RECONNECT_REQUIRED");
    let r = s.record();
    assert_eq!(r.api, Api::V2);
    assert_eq!(r.reconnect_id, answer["results_id"]);

    s.reconnect(&r.reconnect_id).await;
    elsewhere.wait_for("entity.reconnected", 1).await;
    assert_eq!(
        s.record().state,
        State::Pending,
        "nothing told the proxy yet"
    );
    assert_eq!(s.v2().await.json()["status"], "OK");
    let r = s.record();
    assert_eq!(r.state, State::Resolved);
    assert_eq!(r.resolved_by, Some(ResolvedBy::OkResponse));
}

#[tokio::test]
async fn reconnect_at_the_mockbank_is_resolved_by_webhook_and_relayed_to_the_app() {
    // No configuration but the app's relay target: the embedded Mockbank posts
    // to leanproxy's own catcher, which resolves the record and relays.
    let app = crate::support::Receiver::start(0).await;
    let s = Setup::start(&format!(
        "[webhooks]\nrelay = [\"{}\"]\nretry_initial = \"50ms\"\n",
        app.url()
    ))
    .await;
    s.expire_by_inactivity();
    let reconnect_id = s.v1().await.json()["payload"]["reconnect_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.record().state, State::Pending);
    let started = std::time::Instant::now();
    s.reconnect(&reconnect_id).await;
    let reconnected = app.wait_for("entity.reconnected", 1).await;
    let ready = app.wait_for("results.ready", 1).await;
    // Resolution happens when the catcher accepts the webhook, before the relay.
    let r = s.record();
    assert_eq!(r.state, State::Resolved);
    assert_eq!(r.resolved_by, Some(ResolvedBy::Webhook));
    assert!(
        r.results_ready_at.is_some(),
        "results.ready linked to the results id"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "resolved within a second"
    );
    // The app got both, signed as the Mockbank signed them.
    for w in [&reconnected[0], &ready[0]] {
        let sig = w.headers["lean-signature"].to_str().unwrap();
        assert_eq!(
            sig,
            leanproxy::lean::webhook_signature(b"mockbank-webhook-secret", &w.body)
        );
    }
    let records = s.proxy.webhooks.records();
    let kinds: Vec<_> = records.iter().map(|r| r.kind.clone().unwrap()).collect();
    assert_eq!(
        kinds,
        ["entity.created", "entity.reconnected", "results.ready"]
    );
    assert!(records
        .iter()
        .all(|r| r.signature == leanproxy::webhooks::Verdict::Valid));
}

#[tokio::test]
async fn admin_delete_resolves_and_reconnect_header_is_added_when_asked() {
    let s = Setup::start("[reconnect]\nreconnect_header = true\n").await;
    s.expire_by_inactivity();
    let answer = s.v1().await;
    let id = answer.json()["payload"]["reconnect_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(answer.header("x-leanproxy-reconnect-id"), Some(id.as_str()));
    let ok_header = s.proxy.registry.get(&s.entity).await.unwrap();
    assert_eq!(ok_header.reconnect_id, id);

    let req = Request::delete(s.proxy.admin_url(&format!("/api/reconnects/{}", s.entity)))
        .body(body::empty())
        .unwrap();
    let deleted = send(&s.client, req).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(s.record().resolved_by, Some(ResolvedBy::Admin));
}

#[tokio::test]
async fn pending_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start_proxy(Proxy::start_in("", dir.path()).await).await;
    s.expire_by_inactivity();
    s.v1().await;
    let before = s.record();
    s.proxy.shutdown().await;

    let again = Proxy::start_in("", dir.path()).await;
    let after = again
        .registry
        .get(&before.entity_id.clone().unwrap())
        .await
        .expect("kept across restart");
    assert_eq!(after, before);
    assert_eq!(again.registry.pending_count().await, 1);
}

#[tokio::test]
async fn corrupt_state_file_is_moved_aside_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("reconnects.json"),
        b"{\"version\":1,\"records\":[{\"entity_",
    )
    .unwrap();
    let origin = Origin::start().await;
    let mut bin = Binary::spawn_in(&["--upstream", &origin.url()], &[], dir.path());
    let r = get(&h1_client(), &bin.url("/fixed?len=1")).await;
    assert_eq!(r.status, 200, "the proxy serves after the warning");
    bin.terminate();
    bin.wait_exit(Duration::from_secs(10)).await;
    let output = bin.output();
    assert!(
        output.contains("corrupt") && output.contains("moved aside"),
        "{output}"
    );
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("reconnects.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(
        output.contains(&aside[0]),
        "the warning names the moved file"
    );
}

#[tokio::test]
async fn a_state_file_damaged_in_one_record_keeps_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reconnects.json");
    let registry = ReconnectRegistry::open(&path, 100).unwrap();
    for i in 0..198 {
        registry
            .observe_reconnect(Sighting {
                entity_id: Some(format!("e-{i}")),
                reconnect_id: format!("r-{i}"),
                results_id: None,
                api: Api::V1,
                path: "/data/v1/accounts".into(),
                source: Source::Upstream,
            })
            .await;
    }
    registry.flush().await.unwrap();
    let mut file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    file["records"][17]["hits"] = json!("abc");
    std::fs::write(&path, file.to_string()).unwrap();

    let origin = Origin::start().await;
    let mut bin = Binary::spawn_in(&["--upstream", &origin.url()], &[], dir.path());
    let listed = get(
        &h1_client(),
        &format!("http://{}/api/reconnects?state=pending", bin.admin),
    )
    .await
    .json();
    assert_eq!(listed["pending"], 197, "every record that parses is kept");
    bin.terminate();
    bin.wait_exit(Duration::from_secs(10)).await;
    let output = bin.output();
    assert!(output.contains("kept 197 records, set 1 aside"), "{output}");
    let copies: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("reconnects.json.corrupt-"))
        .collect();
    assert_eq!(copies.len(), 1, "the original is kept beside: {copies:?}");
    assert!(output.contains(&copies[0]), "the warning names the copy");
}

#[tokio::test]
async fn large_answer_passes_byte_for_byte_and_uninspected() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    let size = 10 << 20;
    let direct = get(
        &h1_client(),
        &format!("{}/bigjson?bytes={size}", origin.url()),
    )
    .await;
    let through = get(
        &h1_client(),
        &proxy.url(&format!("/bigjson?bytes={size}&entity_id=e-big")),
    )
    .await;
    assert_eq!(through.body.len(), size);
    let hash = |b: &[u8]| {
        let mut f = Fnv::default();
        f.update(b);
        f.0
    };
    assert_eq!(hash(&through.body), hash(&direct.body));
    assert!(
        proxy.registry.list().await.is_empty(),
        "past the inspect limit: not parsed"
    );
    assert_eq!(proxy.registry.stats().uninspected, 1);

    // Under the limit, the same kind of answer is seen.
    let small = get(
        &h1_client(),
        &proxy.url("/bigjson?bytes=4096&entity_id=e-small"),
    )
    .await;
    assert_eq!(small.status, 200);
    assert_eq!(
        proxy.registry.get("e-small").await.unwrap().reconnect_id,
        "r-big"
    );
}

#[tokio::test]
async fn first_byte_is_not_held_back_by_inspection() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    // The origin holds the rest of the answer until the gate opens: the first
    // chunk must arrive before that.
    let (first, body) = gated_first_chunk(&h1_client(), &proxy.url("/gated?entity_id=e-1")).await;
    assert!(first.starts_with(br#"{"status":"OK""#));
    origin.stats.gate.add_permits(1);
    let rest = body.collect().await.unwrap().to_bytes();
    let mut whole = first.to_vec();
    whole.extend_from_slice(&rest);
    serde_json::from_slice::<Value>(&whole).expect("the whole answer arrives");
    assert_eq!(proxy.registry.stats().inspected, 1);
}

#[tokio::test]
async fn cli_lists_shows_and_resolves_a_running_instances_reconnects() {
    let bin = Binary::spawn(&[], &[]);
    let client = h1_client();
    let post = |path: &str, body: Value| post_json(bin.url(path), body);
    let users = get(&client, &bin.url("/_mockbank/users")).await.json();
    let password = users["users"][0]["password"].as_str().unwrap().to_string();
    let entity = link_entity(
        &client,
        &bin.url(""),
        "cli",
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
    let answer = send(
        &client,
        post("/data/v1/accounts", json!({"entity_id": entity})),
    )
    .await
    .json();
    let reconnect_id = answer["payload"]["reconnect_id"]
        .as_str()
        .unwrap()
        .to_string();

    let admin = format!("http://{}", bin.admin);
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crate::support::run_binary(&args)
        })
    };
    let (code, list, err) = run(vec![
        "reconnects".into(),
        "--admin".into(),
        admin.clone(),
        "list".into(),
    ])
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(
        list.contains(&entity) && list.contains(&reconnect_id) && list.contains("pending"),
        "{list}"
    );
    let (code, shown, _) = run(vec![
        "reconnects".into(),
        "--admin".into(),
        admin.clone(),
        "show".into(),
        entity.clone(),
    ])
    .await
    .unwrap();
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&shown).unwrap()["reconnect_id"],
        reconnect_id
    );
    let (code, resolved, _) = run(vec![
        "reconnects".into(),
        "--admin".into(),
        admin.clone(),
        "resolve".into(),
        entity.clone(),
    ])
    .await
    .unwrap();
    assert_eq!(code, 0);
    assert!(resolved.contains("resolved"), "{resolved}");
    let (code, _, err) = run(vec![
        "reconnects".into(),
        "--admin".into(),
        admin,
        "show".into(),
        "nobody".into(),
    ])
    .await
    .unwrap();
    assert_eq!(code, 3, "{err}");
    let (code, _, err) = run(vec![
        "reconnects".into(),
        "--admin".into(),
        "http://127.0.0.1:1".into(),
    ])
    .await
    .unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("is leanproxy running"), "{err}");
}

/// Per-entity event sequences, as a model and as a concurrent run must apply them.
fn events(entity: usize) -> Vec<Option<u32>> {
    // Some(n): RECONNECT_REQUIRED with reconnect id n; None: an OK answer.
    let mut x = (entity as u64).wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..12)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 5 {
                0 | 1 => None,
                2 => Some(1),
                3 => Some(1),
                _ => Some(2),
            }
        })
        .collect()
}

fn apply(registry: &ReconnectRegistry, entity: usize, event: Option<u32>) {
    let key = format!("entity-{entity}");
    match event {
        Some(id) => {
            let outcome = registry.observe_reconnect(Sighting {
                entity_id: Some(key.clone()),
                reconnect_id: format!("r-{entity}-{id}"),
                results_id: None,
                api: Api::V2,
                path: "/data/v2/accounts".into(),
                source: Source::Upstream,
            });
            let _: SightingOutcome = outcome.now().expect("in memory: at once");
        }
        None => {
            registry.observe_call(&key).detach();
            registry
                .resolve_entity(&key, ResolvedBy::OkResponse)
                .detach();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_match_a_sequential_model() {
    const ENTITIES: usize = 1000;
    const TASKS: usize = 64;
    let concurrent = ReconnectRegistry::in_memory(100_000);
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let registry = concurrent.clone();
        handles.push(tokio::spawn(async move {
            // Each task owns the entities congruent to it; their events are
            // interleaved with every other task's on the shared map.
            let mine: Vec<usize> = (task..ENTITIES).step_by(TASKS).collect();
            let mut streams: Vec<_> = mine.iter().map(|e| events(*e).into_iter()).collect();
            loop {
                let mut applied = false;
                for (entity, stream) in mine.iter().zip(streams.iter_mut()) {
                    if let Some(event) = stream.next() {
                        apply(&registry, *entity, event);
                        applied = true;
                    }
                }
                if !applied {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }

    let sequential = ReconnectRegistry::in_memory(100_000);
    for entity in 0..ENTITIES {
        for event in events(entity) {
            apply(&sequential, entity, event);
        }
    }
    let strip = |r: Record| {
        (
            r.entity_id,
            r.reconnect_id,
            r.state,
            r.hits,
            r.replaced,
            r.calls_while_pending,
            r.resolved_by,
        )
    };
    let mut a: Vec<_> = concurrent.list().await.into_iter().map(strip).collect();
    let mut b: Vec<_> = sequential.list().await.into_iter().map(strip).collect();
    a.sort_by(|x, y| x.0.cmp(&y.0));
    b.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(a.len(), b.len());
    assert!(a.len() > ENTITIES / 2, "most entities saw a reconnect");
    assert_eq!(a, b);
    assert_eq!(concurrent.stats().total, sequential.stats().total);
    assert_eq!(
        concurrent.history().await.len(),
        sequential.history().await.len()
    );
    assert_eq!(
        concurrent.pending_count().await,
        sequential.pending_count().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_on_the_same_entities_lose_no_update() {
    // Every entity is flagged first; then every task sees every entity: the same
    // reconnect twice and three calls. Whatever the interleaving, each entity
    // ends with 1 + 64 × 2 hits, one record, and 64 × 3 calls while pending.
    const ENTITIES: usize = 1000;
    const TASKS: usize = 64;
    let registry = ReconnectRegistry::in_memory(10);
    let sighting = |e: usize| Sighting {
        entity_id: Some(format!("shared-{e}")),
        reconnect_id: format!("r-{e}"),
        results_id: None,
        api: Api::V1,
        path: "/data/v1/accounts".into(),
        source: Source::Upstream,
    };
    for e in 0..ENTITIES {
        registry.observe_reconnect(sighting(e)).await;
    }
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let registry = registry.clone();
        handles.push(tokio::spawn(async move {
            for e in 0..ENTITIES {
                let key = format!("shared-{e}");
                for _ in 0..2 {
                    registry.observe_call(&key).await;
                    registry
                        .observe_reconnect(Sighting {
                            entity_id: Some(key.clone()),
                            reconnect_id: format!("r-{e}"),
                            results_id: None,
                            api: Api::V1,
                            path: "/data/v1/accounts".into(),
                            source: Source::Upstream,
                        })
                        .await;
                }
                registry.observe_call(&key).await;
                if e % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(
        registry.stats().total,
        ENTITIES as u64,
        "one new record per entity"
    );
    assert_eq!(registry.pending_count().await, ENTITIES);
    for e in 0..ENTITIES {
        let r = registry.get(&format!("shared-{e}")).await.unwrap();
        assert_eq!(r.hits, (1 + TASKS * 2) as u64, "entity {e}");
        assert_eq!(r.replaced, 0);
        assert_eq!(r.calls_while_pending, (TASKS * 3) as u64, "entity {e}");
    }
}
