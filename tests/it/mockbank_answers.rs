//! The Mockbank's data answers byte for byte. The conformance tests compare
//! shapes only (keys and value types); apps parse the bytes, so the key order,
//! the formatting of amounts (`1234.5`, `0.0`) and of timestamps must not move
//! when the way the answers are written changes. A linked user's v2 accounts
//! (a current, a savings and a credit card account), a page of transactions,
//! each account's v2 resources, the v1 balance, the card's v1 transactions
//! (all of them), accounts and identity, in both regions, on a clock standing
//! at a fixed time, are compared with `fixtures/mockbank-answers.txt`. The ids that are random (customer, entity,
//! results) are replaced by placeholders first.
//!
//! In-process (`tower::ServiceExt::oneshot`, as `benches/mockbank.rs`): the
//! clock must be fixed before the Mockbank makes its users, which a proxy
//! started from a config cannot do. After a deliberate change of an answer,
//! write the file anew with `LEANPROXY_BLESS=1`.

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use leanproxy::body;
use leanproxy::mockbank::{Clock, Mockbank, OTP};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::support::settings;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/fixtures/mockbank-answers.txt"
);

struct Bank {
    mockbank: Mockbank,
    host: String,
    token: String,
}

impl Bank {
    async fn new(toml: &str) -> Bank {
        let s = settings(toml).mockbank;
        let start = Utc.with_ymd_and_hms(2026, 5, 13, 19, 42, 30).unwrap()
            + chrono::Duration::nanoseconds(487_549_603);
        Bank {
            mockbank: Mockbank::new(s.clone(), Clock::paused_at(start)).unwrap(),
            host: s.listen.to_string(),
            token: s.app_token.expose().to_owned(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Bytes {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("lean-app-token", &self.token)
            .header("content-type", "application/json")
            .body(body.map_or_else(body::empty, |b| body::full(b.to_string())))
            .unwrap();
        let answer = self.mockbank.clone().oneshot(req).await.unwrap();
        let status = answer.status();
        let bytes = answer.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, StatusCode::OK, "{method} {path}: {bytes:?}");
        bytes
    }

    async fn json(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        serde_json::from_slice(&self.call(method, path, body).await).unwrap()
    }
}

/// Each answer as `## <request>` and its bytes, the random ids replaced.
async fn answers(region: &str, transactions: &str) -> String {
    let bank = Bank::new(&format!("[mockbank]\nregion = \"{region}\"\n")).await;
    let customer = bank
        .json(
            "POST",
            "/customers/v1/",
            Some(json!({"app_user_id": "bytes"})),
        )
        .await;
    let customer = customer["customer_id"].as_str().unwrap().to_owned();
    let users = bank.mockbank.users();
    let user = users
        .iter()
        .find(|u| u.username == "multi_account_user")
        .unwrap();
    let connect = json!({"customer_id": customer, "username": user.username, "password": user.password, "otp": OTP});
    let entity = bank
        .json("POST", "/_mockbank/link/connect", Some(connect))
        .await;
    let entity = entity["id"].as_str().unwrap().to_owned();
    let q = format!("entity_id={entity}");
    let accounts = bank
        .json("GET", &format!("/data/v2/accounts?{q}"), None)
        .await;
    let ids: Vec<String> = accounts["data"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3, "{accounts}");

    let mut gets = vec![
        format!("/data/v2/accounts?{q}"),
        format!("/data/v2/identity?{q}"),
        format!(
            "/data/v2/accounts/{}/transactions?{q}&{transactions}",
            ids[0]
        ),
    ];
    for id in &ids {
        for resource in [
            "balances",
            "identities",
            "beneficiaries",
            "direct-debits",
            "scheduled-payments",
            "standing-orders",
        ] {
            gets.push(format!("/data/v2/accounts/{id}/{resource}?{q}"));
        }
    }
    let mut posts: Vec<(&str, Value)> = ids
        .iter()
        .map(|id| {
            (
                "/data/v1/balance",
                json!({"entity_id": entity, "account_id": id}),
            )
        })
        .collect();
    // Every transaction of an account (v1 has no pages): the card's, whose
    // running balance is owed (negative).
    posts.push((
        "/data/v1/transactions",
        json!({"entity_id": entity, "account_id": ids[ids.len() - 1]}),
    ));
    posts.push(("/data/v1/accounts", json!({"entity_id": entity})));
    posts.push(("/data/v1/identity", json!({"entity_id": entity})));

    let mut out = String::new();
    let mut add = |request: String, bytes: Bytes| {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let answer: Value = serde_json::from_str(&text).unwrap();
        let results = answer["results_id"].as_str().unwrap();
        let text = text
            .replace(results, "RESULTS_ID")
            .replace(&entity, "ENTITY_ID")
            .replace(&customer, "CUSTOMER_ID");
        let request = request.replace(&entity, "ENTITY_ID");
        out.push_str(&format!("## {request}\n{text}\n"));
    };
    for path in gets {
        let bytes = bank.call("GET", &path, None).await;
        add(format!("GET {path}"), bytes);
    }
    for (path, body) in posts {
        let bytes = bank.call("POST", path, Some(body.clone())).await;
        add(format!("POST {path} {body}"), bytes);
    }
    out
}

#[tokio::test]
async fn data_answers_keep_their_bytes_key_order_and_number_formatting() {
    let mut got = answers("uae", "page=1&size=15").await;
    got.push_str(&answers("ksa", "page=0&size=5").await);
    if std::env::var("LEANPROXY_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(FIXTURE, &got).unwrap();
    }
    let want = std::fs::read_to_string(FIXTURE).unwrap();
    let mut request = "";
    for (got, want) in got.lines().zip(want.lines()) {
        if let Some(r) = want.strip_prefix("## ") {
            request = r;
        }
        if got != want {
            let at = got
                .bytes()
                .zip(want.bytes())
                .take_while(|(g, w)| g == w)
                .count();
            let near = |s: &str| {
                let b = s.as_bytes();
                String::from_utf8_lossy(&b[at.saturating_sub(120)..(at + 60).min(b.len())])
                    .into_owned()
            };
            panic!(
                "{request}: the answer's bytes differ from byte {at}:\n got …{}\nwant …{}",
                near(got),
                near(want)
            );
        }
    }
    assert_eq!(
        got.lines().count(),
        want.lines().count(),
        "answers missing or added"
    );
}
