//! The Mockbank's data handlers in-process, no sockets: a linked stable test
//! user's v2 accounts, a page of 50 v2 transactions, a v1 balance and an
//! account's v1 transactions (all of them), each a
//! whole request through the Mockbank service to the end of its JSON answer.
//! Run with `cargo bench --bench mockbank`.

use bytes::Bytes;
use criterion::{criterion_main, Criterion};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use leanproxy::body;
use leanproxy::config::{self, Settings};
use leanproxy::mockbank::{Clock, Mockbank};
use serde_json::{json, Value};
use tower::ServiceExt;

struct Linked {
    mockbank: Mockbank,
    host: String,
    token: String,
    entity: String,
    account: String,
}

/// One call, its answer read to the end; panics unless it is a 200.
async fn call(m: &Linked, method: &str, path: &str, body: Option<Value>) -> Bytes {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", &m.host)
        .header("lean-app-token", &m.token)
        .header("content-type", "application/json")
        .body(match body {
            Some(b) => body::full(b.to_string()),
            None => body::empty(),
        })
        .expect("a valid request");
    let answer = m.mockbank.clone().oneshot(req).await.expect("infallible");
    let status = answer.status();
    let bytes = answer
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    assert_eq!(status, StatusCode::OK, "{method} {path}: {bytes:?}");
    bytes
}

/// `call`'s answer as JSON (set-up only: parsing is not what is measured).
async fn call_json(m: &Linked, method: &str, path: &str, body: Option<Value>) -> Value {
    serde_json::from_slice(&call(m, method, path, body).await).expect("JSON")
}

/// The default Mockbank with `no_otp_user` linked by a new customer.
async fn linked() -> Linked {
    let settings = Settings::from_raw(config::parse("").expect("empty config"), &|_| None)
        .expect("the defaults are valid");
    let s = settings.mockbank;
    let mockbank = Mockbank::new(s.clone(), Clock::system()).expect("a Mockbank");
    let user = mockbank
        .users()
        .iter()
        .find(|u| u.username == "no_otp_user")
        .expect("the stable user")
        .clone();
    let mut m = Linked {
        mockbank,
        host: s.listen.to_string(),
        token: s.app_token.expose().to_owned(),
        entity: String::new(),
        account: String::new(),
    };
    let customer = call_json(
        &m,
        "POST",
        "/customers/v1/",
        Some(json!({"app_user_id": "bench"})),
    )
    .await;
    let connect = json!({
        "customer_id": customer["customer_id"],
        "username": user.username,
        "password": user.password,
    });
    let entity = call_json(&m, "POST", "/_mockbank/link/connect", Some(connect)).await;
    m.entity = entity["id"].as_str().expect("an entity id").to_owned();
    let accounts = call_json(
        &m,
        "GET",
        &format!("/data/v2/accounts?entity_id={}", m.entity),
        None,
    )
    .await;
    m.account = accounts["data"]["accounts"][0]["account_id"]
        .as_str()
        .expect("an account id")
        .to_owned();
    m
}

fn handlers(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let m = runtime.block_on(linked());
    let accounts = format!("/data/v2/accounts?entity_id={}", m.entity);
    let transactions = format!(
        "/data/v2/accounts/{}/transactions?entity_id={}&page=0&size=50",
        m.account, m.entity
    );
    let balance = json!({"entity_id": m.entity, "account_id": m.account});
    let mut g = c.benchmark_group("mockbank");
    g.bench_function("v2_accounts", |b| {
        b.iter(|| runtime.block_on(call(&m, "GET", &accounts, None)))
    });
    g.bench_function("v2_transactions_page_50", |b| {
        b.iter(|| runtime.block_on(call(&m, "GET", &transactions, None)))
    });
    g.bench_function("v1_balance", |b| {
        b.iter(|| runtime.block_on(call(&m, "POST", "/data/v1/balance", Some(balance.clone()))))
    });
    // Every transaction of the account, newest first: v1 has no pages.
    g.bench_function("v1_transactions", |b| {
        b.iter(|| {
            runtime.block_on(call(
                &m,
                "POST",
                "/data/v1/transactions",
                Some(balance.clone()),
            ))
        })
    });
    g.finish();
}

#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::handlers);
}
criterion_main!(group::benches);
