//! Reconnect inspection on Lean-shaped answers: 1 KiB and 512 KiB, with and
//! without RECONNECT_REQUIRED, through the real layer (answer streamed in 16 KiB
//! frames, drained to the end, scanned there), plus the scan alone.
//! Run with `cargo bench --bench inspect`.

use std::convert::Infallible;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use leanproxy::body::{self, Body};
use leanproxy::reconnect::{scan, ReconnectLayer, DEFAULT_INSPECT_LIMIT};
use tower::{service_fn, Layer, ServiceExt};

/// A Lean v2 accounts answer padded with transactions-like filler to `size`
/// bytes; with `marker`, a v2 RECONNECT_REQUIRED answer padded the same way.
fn answer(size: usize, marker: bool) -> Bytes {
    let head = if marker {
        r#"{"status":"RECONNECT_REQUIRED","data":null,"results_id":"7a16ac21-e09c-4d5f-b56a-ff68b26202cc","message":"User input is required to reconnect with the bank","meta":null,"timestamp":"2023-08-15T05:26:17.765780126Z","status_detail":null,"filler":["#
    } else {
        r#"{"status":"OK","results_id":"2ab8c57a-011b-418f-9419-968155e600dd","message":"Data successfully retrieved","meta":null,"timestamp":"2026-05-13T19:42:30.487549603Z","status_detail":null,"type":"accounts","data":{"accounts":["#
    };
    let item = r#"{"transaction_id":"e7323898-c6c8-4493-80b0-2db1a41b7470","transaction_information":"CARREFOUR 1647 DUBAI ARE","amount":{"currency":"AED","amount":439.85}},"#;
    let mut s = String::with_capacity(size + item.len());
    s.push_str(head);
    while s.len() + item.len() + 4 < size {
        s.push_str(item);
    }
    s.push_str(r#"{}]"#);
    if !marker {
        s.push('}');
    }
    s.push('}');
    Bytes::from(s)
}

fn chunked(bytes: Bytes) -> Body {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = bytes
        .chunks(16 * 1024)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    body::boxed(StreamBody::new(futures_util_stream(frames)))
}

/// An iterator as a stream, without pulling in futures-util.
fn futures_util_stream<T: Unpin>(items: Vec<T>) -> impl futures_core::Stream<Item = T> {
    struct Iter<T>(std::vec::IntoIter<T>);
    impl<T: Unpin> futures_core::Stream for Iter<T> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(items.into_iter())
}

fn inspection(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("inspect");
    for size in [1024usize, 512 * 1024] {
        for marker in [false, true] {
            let bytes = answer(size, marker);
            assert_eq!(
                scan(&bytes).clone() != leanproxy::reconnect::Scan::Clear,
                marker
            );
            group.throughput(Throughput::Bytes(bytes.len() as u64));
            let label = format!(
                "{}KiB/{}",
                size / 1024,
                if marker { "reconnect" } else { "ok" }
            );
            group.bench_with_input(BenchmarkId::new("scan", &label), &bytes, |b, bytes| {
                b.iter(|| scan(bytes))
            });
            let (layer, _registry) = ReconnectLayer::pair(DEFAULT_INSPECT_LIMIT);
            let origin = service_fn(move |_req: Request<Body>| {
                let bytes = bytes.clone();
                async move {
                    let mut r = Response::new(chunked(bytes));
                    r.headers_mut()
                        .insert("content-type", "application/json".parse().expect("static"));
                    Ok::<_, Infallible>(r)
                }
            });
            let svc = layer.layer(origin);
            group.bench_function(BenchmarkId::new("layer", &label), |b| {
                b.iter(|| {
                    runtime.block_on(async {
                        let req = Request::get("/data/v2/accounts?entity_id=e-1")
                            .body(body::empty())
                            .expect("static request");
                        let response = svc.clone().oneshot(req).await.expect("infallible");
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
    }
    group.finish();
}

// The macros generate undocumented items.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, inspection);
}
criterion_main!(group::benches);
