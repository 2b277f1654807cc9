//! Hot-path benches: the proxy's layers over an in-memory service, and header
//! hygiene. Run with `cargo bench --bench stack`.

use std::convert::Infallible;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use leanproxy::auth::{AppTokenLayer, AppTokenValue, TokenPolicy};
use leanproxy::body::{self, Body};
use leanproxy::log::{RequestLogLayer, Telemetry};
use leanproxy::reconnect::{ReconnectLayer, DEFAULT_INSPECT_LIMIT};
use tower::{service_fn, Layer, ServiceExt};

/// A 1 KiB Lean-shaped accounts answer.
fn lean_answer() -> Bytes {
    let account = r#"{"account_id":"3d586d40-1b0e-4c4b-9d1a-5c1f0f0e8a11","name":"Mockbank1 Checkings Account","currency_code":"AED","type":"CURRENT","iban":"AE070331234567890123456"}"#;
    let accounts = [account; 5].join(",");
    Bytes::from(format!(
        r#"{{"status":"OK","payload":{{"accounts":[{accounts}]}},"results_id":"2ab8c57a-6f0e-4b7e-9a55-0d3c8f1e2b77","message":"Data successfully retrieved","timestamp":"2026-05-13T19:42:30.487549603Z"}}"#
    ))
}

fn request() -> Request<Body> {
    Request::post("/data/v1/accounts")
        .header("content-type", "application/json")
        .header("user-agent", "bench/1.0")
        .header("accept", "application/json")
        .body(body::full(r#"{"entity_id":"e-1"}"#))
        .expect("static request is valid")
}

fn stack(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let answer = lean_answer();
    let origin = service_fn(move |req: Request<Body>| {
        let answer = answer.clone();
        async move {
            // Read the request as an upstream would.
            let _ = req.into_body().collect().await;
            let mut r = Response::new(body::full(answer));
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            Ok::<_, Infallible>(r)
        }
    });
    let token = AppTokenLayer::new(
        AppTokenValue::new("2c9a80897169b1dd01716a0339e30003").expect("a header value"),
        TokenPolicy::Override,
    );
    let (reconnect, _registry) = ReconnectLayer::pair(DEFAULT_INSPECT_LIMIT);
    let bare = reconnect.layer(token.layer(origin.clone()));
    let logged = RequestLogLayer::new(Telemetry::default()).layer(
        ReconnectLayer::pair(DEFAULT_INSPECT_LIMIT)
            .0
            .layer(token.layer(origin)),
    );

    let mut group = c.benchmark_group("stack");
    for (name, svc) in [
        ("reconnect+token, no request log", bare.boxed_clone()),
        (
            "log+reconnect+token (ring, metrics, events)",
            logged.boxed_clone(),
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let response = svc.clone().oneshot(request()).await.expect("infallible");
                    response
                        .into_body()
                        .collect()
                        .await
                        .expect("body")
                        .to_bytes()
                })
            })
        });
    }
    group.finish();
}

fn headers(c: &mut Criterion) {
    let mut template = HeaderMap::new();
    for (k, v) in [
        ("host", "127.0.0.1:7070"),
        ("user-agent", "my-app/1.0"),
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("content-length", "19"),
        ("connection", "keep-alive"),
        ("lean-app-token", "2c9a80897169b1dd01716a0339e30003"),
    ] {
        template.insert(k, HeaderValue::from_static(v));
    }
    c.bench_function("headers/remove_hop_by_hop + forwarded", |b| {
        b.iter(|| {
            let mut h = template.clone();
            leanproxy::proxy::remove_hop_by_hop(&mut h);
            leanproxy::proxy::add_forwarded(
                &mut h,
                Some(&HeaderValue::from_static("127.0.0.1")),
                Some(HeaderValue::from_static("127.0.0.1:7070")),
            );
            h
        })
    });
}

// The macros generate undocumented items.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, stack, headers);
}
criterion_main!(group::benches);
