use super::super::state_file::Persisted;
use super::super::store::MemoryRegistry;
use super::*;
use crate::backend::AtOnce;
use crate::exchange::Api;

fn sighting(entity: Option<&str>, id: &str) -> Sighting {
    Sighting {
        entity_id: entity.map(str::to_string),
        reconnect_id: id.into(),
        results_id: Some(format!("results-{id}")),
        api: Api::V1,
        path: "/data/v1/accounts".into(),
        source: Source::Upstream,
    }
}

#[test]
fn repeats_count_hits_and_new_ids_replace() {
    let reg = ReconnectRegistry::in_memory(10);
    assert_eq!(
        reg.observe_reconnect(sighting(Some("e1"), "r1")).at_once(),
        SightingOutcome::New
    );
    assert_eq!(
        reg.observe_reconnect(sighting(Some("e1"), "r1")).at_once(),
        SightingOutcome::Repeat
    );
    assert_eq!(
        reg.observe_reconnect(sighting(Some("e1"), "r2")).at_once(),
        SightingOutcome::Replaced
    );
    let r = reg.get("e1").at_once().unwrap();
    assert_eq!((r.hits, r.replaced, r.reconnect_id.as_str()), (3, 1, "r2"));
    assert_eq!(r.expires_at - r.first_seen, chrono::Duration::days(30));
    assert_eq!(reg.stats().total, 1);
}

#[test]
fn unknown_entity_is_keyed_by_reconnect_id() {
    let reg = ReconnectRegistry::in_memory(10);
    reg.observe_reconnect(sighting(None, "r9")).at_once();
    assert!(reg.get("reconnect:r9").at_once().is_some());
    assert!(reg
        .resolve_reconnect_id("r9", None, ResolvedBy::Webhook)
        .at_once()
        .is_some());
}

#[test]
fn a_webhook_names_the_entity_a_request_did_not() {
    let reg = ReconnectRegistry::in_memory(10);
    reg.observe_reconnect(sighting(None, "r9")).at_once();
    let r = reg
        .resolve_reconnect_id("r9", Some("e-9"), ResolvedBy::Webhook)
        .at_once()
        .unwrap();
    assert_eq!(r.entity_id.as_deref(), Some("e-9"));
    // Found by entity afterwards, as `reconnects show <entity>` asks.
    assert_eq!(reg.get("e-9").at_once().unwrap().reconnect_id, "r9");
}

#[test]
fn calls_while_pending_are_counted_until_resolved() {
    let reg = ReconnectRegistry::in_memory(10);
    reg.observe_reconnect(sighting(Some("e1"), "r1")).at_once();
    reg.observe_call("e1").at_once();
    reg.observe_call("e1").at_once();
    let resolved = reg
        .resolve_entity("e1", ResolvedBy::OkResponse)
        .at_once()
        .unwrap();
    assert_eq!(resolved.calls_while_pending, 2);
    reg.observe_call("e1").at_once();
    assert_eq!(reg.get("e1").at_once().unwrap().calls_while_pending, 2);
    assert!(
        reg.resolve_entity("e1", ResolvedBy::Admin)
            .at_once()
            .is_none(),
        "already resolved"
    );
}

#[test]
fn v1_and_v2_sightings_of_one_reconnect_are_repeats() {
    let reg = ReconnectRegistry::in_memory(10);
    reg.observe_reconnect(sighting(Some("e1"), "r1")).at_once();
    let v2 = Sighting {
        reconnect_id: "results-r1".into(),
        results_id: Some("results-r1".into()),
        api: Api::V2,
        ..sighting(Some("e1"), "r1")
    };
    for _ in 0..3 {
        assert_eq!(
            reg.observe_reconnect(v2.clone()).at_once(),
            SightingOutcome::Repeat
        );
        assert_eq!(
            reg.observe_reconnect(sighting(Some("e1"), "r1")).at_once(),
            SightingOutcome::Repeat
        );
    }
    let r = reg.get("e1").at_once().unwrap();
    assert_eq!((r.replaced, r.hits, r.reconnect_id.as_str()), (0, 7, "r1"));
}

#[test]
fn resolve_by_results_id_works_for_v2() {
    let reg = ReconnectRegistry::in_memory(10);
    reg.observe_reconnect(sighting(Some("e1"), "r1")).at_once();
    let r = reg
        .resolve_reconnect_id("results-r1", None, ResolvedBy::Webhook)
        .at_once()
        .unwrap();
    assert_eq!(r.resolved_by, Some(ResolvedBy::Webhook));
}

#[test]
fn reflagging_a_resolved_entity_keeps_the_old_record_in_bounded_history() {
    let memory = MemoryRegistry::new(2);
    let reg = ReconnectRegistry::with_store(memory.clone());
    for i in 0..4 {
        reg.observe_reconnect(sighting(Some("e1"), &format!("r{i}")))
            .at_once();
        reg.resolve_entity("e1", ResolvedBy::Webhook).at_once();
    }
    let history = reg.history().at_once();
    assert_eq!(history.len(), 2, "bounded");
    assert_eq!(history[1].reconnect_id, "r3");
    assert_eq!(reg.get("e1").at_once().unwrap().hits, 1);
    assert_eq!(reg.pending_count().at_once(), 0);
    assert_eq!(
        memory.live_count(),
        0,
        "resolved records leave the live map"
    );
    assert_eq!(reg.stats().total, 4);
}

#[tokio::test]
async fn resolved_records_stay_resolved_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reconnects.json");
    let reg = ReconnectRegistry::open(&path, 10).unwrap();
    reg.observe_reconnect(sighting(Some("e1"), "r1")).at_once();
    reg.resolve_entity("e1", ResolvedBy::Webhook)
        .at_once()
        .unwrap();
    reg.observe_reconnect(sighting(Some("e2"), "r2")).at_once();
    reg.flush().await.unwrap();
    let saved: Persisted = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let live: Vec<_> = saved
        .records
        .iter()
        .map(|r| r.reconnect_id.as_str())
        .collect();
    assert_eq!(live, ["r2"], "only pending records are saved as live");
    let check = |memory: std::sync::Arc<MemoryRegistry>| {
        let again = ReconnectRegistry::with_store(memory.clone());
        assert_eq!(again.pending_count().at_once(), 1);
        assert_eq!(memory.live_count(), 1, "only e2 is live");
        let listed: Vec<_> = again
            .list()
            .at_once()
            .iter()
            .map(|r| r.reconnect_id.clone())
            .collect();
        assert_eq!(listed, ["r2", "r1"], "each record once");
        assert_eq!(again.get("e1").at_once().unwrap().state, State::Resolved);
        // A new reconnect for e1 is pending again, not a repeat of r1.
        again
            .observe_reconnect(sighting(Some("e1"), "r3"))
            .at_once();
        assert_eq!(again.get("e1").at_once().unwrap().state, State::Pending);
        assert_eq!(again.get("e1").at_once().unwrap().reconnect_id, "r3");
    };
    check(MemoryRegistry::open(&path, 10).unwrap());

    // Files written before the fix listed resolved records among the live ones.
    let old = Persisted {
        version: 1,
        records: reg.list().at_once(),
        history: reg.history().at_once(),
    };
    std::fs::write(&path, serde_json::to_vec(&old).unwrap()).unwrap();
    check(MemoryRegistry::open(&path, 10).unwrap());

    // Older still: resolved records kept among the live ones only.
    let older = Persisted {
        version: 1,
        records: reg.list().at_once(),
        history: Vec::new(),
    };
    std::fs::write(&path, serde_json::to_vec(&older).unwrap()).unwrap();
    check(MemoryRegistry::open(&path, 10).unwrap());
}

#[tokio::test]
async fn state_file_round_trips_and_corrupt_files_are_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/reconnects.json");
    let reg = ReconnectRegistry::open(&path, 10).unwrap();
    reg.observe_reconnect(sighting(Some("e1"), "r1")).at_once();
    reg.flush().await.unwrap();
    let again = ReconnectRegistry::open(&path, 10).unwrap();
    assert_eq!(again.get("e1").at_once(), reg.get("e1").at_once());

    std::fs::write(&path, b"{\"version\":1,\"records\":[{\"entity_id\"").unwrap();
    let fresh = ReconnectRegistry::open(&path, 10).unwrap();
    assert!(fresh.list().at_once().is_empty());
    let aside: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("reconnects.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "the corrupt file is kept aside");
}

#[test]
fn a_snapshot_holds_each_record_once_while_records_resolve() {
    let memory = MemoryRegistry::new(100);
    let reg = ReconnectRegistry::with_store(memory.clone());
    let writer = {
        let reg = reg.clone();
        std::thread::spawn(move || {
            for i in 0..5_000 {
                let entity = format!("e{}", i % 20);
                reg.observe_reconnect(sighting(Some(&entity), &format!("r{i}")))
                    .at_once();
                reg.resolve_entity(&entity, ResolvedBy::Webhook).at_once();
            }
        })
    };
    let mut snapshots = 0;
    while !writer.is_finished() {
        let s = memory.snapshot();
        for live in &s.records {
            assert!(
                !s.history
                    .iter()
                    .any(|h| h.reconnect_id == live.reconnect_id),
                "{} is both live and resolved (snapshot {snapshots})",
                live.reconnect_id
            );
        }
        snapshots += 1;
    }
    writer.join().unwrap();
    assert!(snapshots > 0);
}
