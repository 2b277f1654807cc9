//! The two shared structures every request touches: the fault rule table and the
//! reconnect registry.
//!
//! - `faults`: evaluating a request against 0 and 100 installed rules, when no
//!   rule matches (all 100 are tried) and when the last one does.
//! - `registry`: the reconnect registry under contention. 1, 2 and 4 threads
//!   each run the proxy's per-request mix on 1,000 entities: mostly
//!   `observe_call` (100 of them pending), plus one RECONNECT_REQUIRED
//!   sighting in 16 calls. Time is per operation. Flat across thread counts
//!   means no contention; the box has 2 cores, so 4 threads also shows
//!   oversubscription.
//!
//! Run with `cargo bench --bench engine`.

use std::time::{Duration, Instant};

use criterion::{criterion_main, BenchmarkId, Criterion};
use http::{HeaderMap, Method};
use leanproxy::fault::{parse_spec, FaultRules, RequestFacts};
use leanproxy::reconnect::{Api, ReconnectRegistry, Sighting, Source};

/// The outcome of an evaluation against the in-memory quotas, which is known
/// at the first poll: no runtime, no waker needed.
fn at_once<F: std::future::Future>(future: F) -> F::Output {
    let future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("in-memory quotas answer at once"),
    }
}

fn faults(c: &mut Criterion) {
    let mut group = c.benchmark_group("faults");
    let headers = HeaderMap::new();
    let method = Method::GET;
    let facts = |path: &'static str| RequestFacts {
        method: &method,
        path,
        query: Some("entity_id=6d7e1e3c-5a0b-4a0e-9f3b-3f9d3c1d2e4f"),
        headers: &headers,
        entity_id: Some("6d7e1e3c-5a0b-4a0e-9f3b-3f9d3c1d2e4f"),
    };
    for installed in [0usize, 100] {
        let rules = FaultRules::new(Some(7));
        for i in 0..installed {
            // Realistic rules: a path glob, a method, sometimes a header.
            let spec = match i % 3 {
                0 => format!("lean_error=RATE_LIMIT_EXCEEDED path=/data/v2/route{i}/* id=r{i}"),
                1 => format!("reconnect method=POST path=/data/v1/*/{i} id=r{i}"),
                _ => format!("status=503 path=/payments/** header.x-case=c{i} id=r{i}"),
            };
            rules
                .add(parse_spec(&spec).expect("valid spec"))
                .expect("unique id");
        }
        let miss = facts("/data/v2/accounts");
        group.bench_function(BenchmarkId::new("miss", installed), |b| {
            b.iter(|| at_once(rules.evaluate(&miss)))
        });
    }
    let rules = FaultRules::new(Some(7));
    for i in 0..99 {
        let spec = format!("lean_error=RATE_LIMIT_EXCEEDED path=/data/v2/route{i}/* id=r{i}");
        rules
            .add(parse_spec(&spec).expect("valid spec"))
            .expect("unique id");
    }
    rules
        .add(parse_spec("reconnect path=/data/v2/accounts id=last").expect("valid spec"))
        .expect("unique id");
    let hit = facts("/data/v2/accounts");
    group.bench_function(BenchmarkId::new("hit_last", 100), |b| {
        b.iter(|| at_once(rules.evaluate(&hit)).expect("the last rule matches"))
    });
    group.finish();
}

const ENTITIES: usize = 1_000;

fn entity(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// Runs `ops` operations of the per-request mix on each of `threads` threads
/// and returns the wall time.
fn contend(registry: &ReconnectRegistry, ids: &[String], threads: usize, ops: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for n in 0..ops {
                    let i = (n as usize * 7919 + t * 104_729) % ENTITIES;
                    if n % 16 == 0 {
                        registry
                            .observe_reconnect(Sighting {
                                entity_id: Some(ids[i].clone()),
                                reconnect_id: format!("rc-{i}"),
                                results_id: None,
                                api: Api::V2,
                                path: "/data/v2/accounts".into(),
                                source: Source::Upstream,
                            })
                            .detach();
                    } else {
                        registry.observe_call(&ids[i]).detach();
                    }
                }
            });
        }
    });
    start.elapsed()
}

fn registry(c: &mut Criterion) {
    let mut group = c.benchmark_group("registry");
    let ids: Vec<String> = (0..ENTITIES).map(entity).collect();
    for threads in [1usize, 2, 4] {
        let registry = ReconnectRegistry::in_memory(1_000);
        for id in ids.iter().take(100) {
            registry
                .observe_reconnect(Sighting {
                    entity_id: Some(id.clone()),
                    reconnect_id: format!("rc-{id}"),
                    results_id: None,
                    api: Api::V2,
                    path: "/data/v2/accounts".into(),
                    source: Source::Upstream,
                })
                .detach();
        }
        group.bench_function(BenchmarkId::new("mix_per_op", threads), |b| {
            b.iter_custom(|iters| {
                // `iters` operations in all, shared out between the threads.
                let per_thread = (iters / threads as u64).max(1);
                contend(&registry, &ids, threads, per_thread)
            })
        });
    }
    group.finish();
}

#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::faults, super::registry);
}
criterion_main!(group::benches);
