//! The embedded Mockbank through the proxy: linking, the reconnect flow (by
//! inactivity, "Expire session", wrong OTP), signed webhooks, async results,
//! refreshes, OAuth, and each test user's behaviour. The Mockbank clock is paused
//! and advanced; nothing waits for real minutes.

use std::time::Duration;

use http::Request;
use serde_json::{json, Value};

use crate::support::{h1_client, send, HttpClient, Observed, Proxy, Receiver};
use leanproxy::body;
use leanproxy::mockbank::{Mockbank, Region};

const SECRET: &str = "mockbank-webhook-secret";
const MINUTE: Duration = Duration::from_secs(60);

struct Flow {
    proxy: Proxy,
    client: HttpClient,
    receiver: Receiver,
}

impl Flow {
    async fn start(extra: &str) -> Flow {
        Flow::start_with(Receiver::start(0).await, extra).await
    }

    /// A Mockbank emulating `region`'s sandbox.
    async fn start_in(region: Region) -> Flow {
        Flow::start(&format!("region = \"{}\"\n", region.name())).await
    }

    async fn start_with(receiver: Receiver, extra: &str) -> Flow {
        let proxy = Proxy::start(&format!(
            "[mockbank]\nwebhook_url = \"{}\"\n{extra}",
            receiver.url()
        ))
        .await;
        proxy.mockbank.as_ref().unwrap().clock().pause();
        Flow {
            proxy,
            client: h1_client(),
            receiver,
        }
    }

    fn mockbank(&self) -> &Mockbank {
        self.proxy.mockbank.as_ref().unwrap()
    }

    fn advance(&self, by: Duration) {
        self.mockbank().clock().advance(by);
    }

    async fn post(&self, path: &str, body: Value) -> Observed {
        let req = Request::post(self.proxy.url(path))
            .header("content-type", "application/json")
            .body(body::full(body.to_string()))
            .unwrap();
        send(&self.client, req).await
    }

    async fn get(&self, path: &str) -> Observed {
        crate::support::get(&self.client, &self.proxy.url(path)).await
    }

    fn password(&self, username: &str) -> String {
        self.mockbank()
            .users()
            .iter()
            .find(|u| u.username == username)
            .unwrap()
            .password
            .clone()
    }

    /// Creates a customer and links `username` with `otp`; returns the entity id.
    async fn link(&self, username: &str) -> String {
        let customer = self
            .post(
                "/customers/v1/",
                json!({"app_user_id": format!("app-{username}")}),
            )
            .await;
        assert_eq!(customer.status, 200, "{:?}", customer.json());
        let customer_id = customer.json()["customer_id"].as_str().unwrap().to_string();
        let entity = self
            .post(
                "/_mockbank/link/connect",
                json!({"customer_id": customer_id, "username": username, "password": self.password(username), "otp": "1111"}),
            )
            .await;
        assert_eq!(entity.status, 200, "{:?}", entity.json());
        entity.json()["id"].as_str().unwrap().to_string()
    }

    /// Links `username` again for the customer `link` made; the entity id.
    async fn link_again(&self, username: &str) -> String {
        let entity = self
            .post(
                "/_mockbank/link/connect",
                json!({"app_user_id": format!("app-{username}"), "username": username, "password": self.password(username), "otp": "1111"}),
            )
            .await;
        assert_eq!(entity.status, 200, "{:?}", entity.json());
        entity.json()["id"].as_str().unwrap().to_string()
    }

    async fn v1_accounts(&self, entity: &str) -> Observed {
        self.post("/data/v1/accounts", json!({"entity_id": entity}))
            .await
    }

    async fn v2_accounts(&self, entity: &str) -> Observed {
        self.get(&format!(
            "/data/v2/accounts?entity_id={entity}&page=0&size=50"
        ))
        .await
    }

    async fn reconnect(&self, reconnect_id: &str, otp: &str) -> Observed {
        self.post(
            "/_mockbank/link/reconnect",
            json!({"reconnect_id": reconnect_id, "otp": otp}),
        )
        .await
    }
}

fn assert_signed(webhook: &crate::support::Received) {
    let header = webhook.headers["lean-signature"].to_str().unwrap();
    assert_eq!(
        header,
        leanproxy::lean::webhook_signature(SECRET.as_bytes(), &webhook.body)
    );
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[tokio::test]
async fn inactivity_reconnect_flow_v1_and_v2_with_signed_webhooks() {
    let flow = Flow::start("").await;
    let entity = flow.link("otp_user").await;
    let created = flow.receiver.wait_for("entity.created", 1).await;
    assert_signed(&created[0]);
    assert_eq!(created[0].json()["payload"]["id"], entity);

    let ok1 = flow.v1_accounts(&entity).await;
    assert_eq!(ok1.json()["status"], "OK");
    assert!(ok1.header("lean-correlation-id").is_some() && ok1.header("lean-trace-id").is_some());
    let ok2 = flow.v2_accounts(&entity).await;
    assert_eq!(ok2.json()["status"], "OK");
    assert_eq!(ok2.json()["data"]["accounts"][0]["entity_id"], entity);

    // Ten minutes of inactivity are allowed; past them the bank wants the user.
    flow.advance(10 * MINUTE);
    assert_eq!(flow.v1_accounts(&entity).await.json()["status"], "OK");
    flow.advance(10 * MINUTE + Duration::from_secs(1));
    let r = flow.v1_accounts(&entity).await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["status"], "RECONNECT_REQUIRED");
    assert_eq!(body["payload"]["type"], "reconnect");
    assert_eq!(
        body["message"],
        "User input is required to reconnect with the bank"
    );
    assert_eq!(
        keys(&body),
        ["message", "payload", "results_id", "status", "timestamp"]
    );
    let reconnect_id = body["payload"]["reconnect_id"]
        .as_str()
        .unwrap()
        .to_string();
    let results_id = body["results_id"].as_str().unwrap().to_string();

    // Repeated calls before reconnecting: the same id.
    let again = flow.v1_accounts(&entity).await.json();
    assert_eq!(again["payload"]["reconnect_id"], reconnect_id);
    let v2 = flow.v2_accounts(&entity).await.json();
    assert_eq!(v2["status"], "RECONNECT_REQUIRED");
    assert_eq!(v2["data"], Value::Null);
    assert_eq!(
        v2["results_id"], results_id,
        "v2 shows the pending results id"
    );
    assert_eq!(
        keys(&v2),
        [
            "data",
            "message",
            "meta",
            "results_id",
            "status",
            "status_detail",
            "timestamp"
        ]
    );

    let done = flow.reconnect(&reconnect_id, "1111").await;
    assert_eq!(done.status, 200, "{:?}", done.json());
    let reconnected = flow.receiver.wait_for("entity.reconnected", 1).await;
    let ready = flow.receiver.wait_for("results.ready", 1).await;
    assert_signed(&reconnected[0]);
    assert_signed(&ready[0]);
    assert_eq!(
        reconnected[0].json()["payload"],
        json!({"id": entity, "reconnect_id": reconnect_id})
    );
    assert_eq!(ready[0].json()["payload"]["id"], results_id);
    for w in [&reconnected[0], &ready[0]] {
        assert_eq!(
            keys(&w.json()),
            ["event_id", "message", "payload", "timestamp", "type"]
        );
    }
    let order: Vec<Value> = flow
        .receiver
        .received()
        .iter()
        .map(|r| r.json()["type"].clone())
        .collect();
    assert_eq!(
        order,
        ["entity.created", "entity.reconnected", "results.ready"]
    );

    assert_eq!(flow.v1_accounts(&entity).await.json()["status"], "OK");
    assert_eq!(flow.v2_accounts(&entity).await.json()["status"], "OK");
    // The original request's results are ready at the results endpoint.
    let results = flow.get(&format!("/v1/results/{results_id}")).await.json();
    assert_eq!(results["status"], "OK");
    assert!(results["payload"]["accounts"].is_array());
}

#[tokio::test]
async fn v2_app_reconnects_with_the_results_id() {
    let flow = Flow::start("").await;
    let entity = flow.link("otp_user").await;
    flow.advance(11 * MINUTE);
    let v2 = flow.v2_accounts(&entity).await.json();
    assert_eq!(v2["status"], "RECONNECT_REQUIRED");
    let reconnect_id = v2["results_id"].as_str().unwrap();
    assert_eq!(flow.reconnect(reconnect_id, "1111").await.status, 200);
    let reconnected = flow.receiver.wait_for("entity.reconnected", 1).await;
    assert_eq!(
        reconnected[0].json()["payload"]["reconnect_id"],
        reconnect_id
    );
    let results = flow
        .get(&format!("/data/v2/results/{reconnect_id}"))
        .await
        .json();
    assert_eq!(results["status"], "OK");
    assert_eq!(results["type"], "accounts");
}

#[tokio::test]
async fn expire_session_then_reconnect() {
    let flow = Flow::start("").await;
    let entity = flow.link("multi_account_user").await;
    assert_eq!(flow.v2_accounts(&entity).await.json()["status"], "OK");
    let expired = flow
        .post(&format!("/_mockbank/entities/{entity}/expire"), json!({}))
        .await;
    assert_eq!(expired.status, 200);
    let r = flow.v1_accounts(&entity).await.json();
    assert_eq!(r["status"], "RECONNECT_REQUIRED");
    let reconnect_id = r["payload"]["reconnect_id"].as_str().unwrap();
    assert_eq!(flow.reconnect(reconnect_id, "1111").await.status, 200);
    flow.receiver.wait_for("results.ready", 1).await;
    assert_eq!(flow.v1_accounts(&entity).await.json()["status"], "OK");
}

#[tokio::test]
async fn wrong_otp_is_refused_and_the_entity_stays_disconnected() {
    let flow = Flow::start("").await;
    let entity = flow.link("otp_user").await;
    flow.post(&format!("/_mockbank/entities/{entity}/expire"), json!({}))
        .await;
    let r = flow.v1_accounts(&entity).await.json();
    let reconnect_id = r["payload"]["reconnect_id"].as_str().unwrap();

    let refused = flow.reconnect(reconnect_id, "1234").await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["status"], "INVALID_OTP");
    let still = flow.v1_accounts(&entity).await.json();
    assert_eq!(still["status"], "RECONNECT_REQUIRED");
    assert_eq!(still["payload"]["reconnect_id"], reconnect_id);
    assert!(flow
        .receiver
        .received()
        .iter()
        .all(|w| w.json()["type"] != "entity.reconnected"));
}

#[tokio::test]
async fn linking_needs_the_right_password_and_otp() {
    let flow = Flow::start("").await;
    let customer = flow
        .post("/customers/v1/", json!({"app_user_id": "someone"}))
        .await
        .json();
    let cid = customer["customer_id"].as_str().unwrap();
    let password = flow.password("otp_user");
    let wrong_otp = flow
        .post("/_mockbank/link/connect", json!({"customer_id": cid, "username": "otp_user", "password": password, "otp": "0000"}))
        .await;
    assert_eq!(
        (
            wrong_otp.status.as_u16(),
            wrong_otp.json()["status"].clone()
        ),
        (401, json!("INVALID_OTP"))
    );
    let wrong_password = flow
        .post(
            "/_mockbank/link/connect",
            json!({"customer_id": cid, "username": "otp_user", "password": "nope", "otp": "1111"}),
        )
        .await;
    assert_eq!(wrong_password.json()["status"], "INVALID_CREDENTIALS");
    // The no-OTP user links without one.
    let password = flow.password("no_otp_user");
    let ok = flow
        .post(
            "/_mockbank/link/connect",
            json!({"customer_id": cid, "username": "no_otp_user", "password": password}),
        )
        .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn each_test_user_behaves_as_described() {
    users_behave_in(Region::Uae).await;
}

#[tokio::test]
async fn each_ksa_test_user_behaves_as_the_uae_one_does() {
    users_behave_in(Region::Ksa).await;
}

async fn users_behave_in(region: Region) {
    let flow = Flow::start_in(region).await;
    let users = flow.get("/_mockbank/users").await.json();
    assert_eq!(users["users"].as_array().unwrap().len(), 5);
    assert_eq!(users["otp"], "1111");
    assert_eq!(users["region"], region.name());

    let no_otp = flow.link("no_otp_user").await;
    let corporate = flow.link("corporate_user").await;
    let maintenance = flow.link("maintenance_user").await;
    let multi = flow.link("multi_account_user").await;

    let accounts = flow.v2_accounts(&multi).await.json();
    let kinds: Vec<&str> = accounts["data"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_sub_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["CURRENT", "SAVINGS", "CREDIT"]);

    let failed = flow.v2_accounts(&maintenance).await;
    assert_eq!(failed.status, 200);
    assert_eq!(failed.json()["status"], "FAILED");
    assert_eq!(
        failed.json()["status_detail"]["granular_status_code"],
        "BANK_MAINTENANCE"
    );
    let failed_v1 = flow.v1_accounts(&maintenance).await.json();
    assert_eq!(
        failed_v1["status_detail"]["granular_status_code"],
        "BANK_MAINTENANCE"
    );

    // Corporate sessions end after five minutes even while in use.
    for _ in 0..5 {
        flow.advance(MINUTE);
        assert_eq!(flow.v1_accounts(&corporate).await.json()["status"], "OK");
    }
    flow.advance(MINUTE);
    assert_eq!(
        flow.v1_accounts(&corporate).await.json()["status"],
        "RECONNECT_REQUIRED"
    );

    // The no-OTP user is never de-authenticated.
    flow.advance(24 * 60 * MINUTE);
    assert_eq!(flow.v1_accounts(&no_otp).await.json()["status"], "OK");
}

#[tokio::test]
async fn transactions_balances_and_identity_add_up() {
    let flow = Flow::start("").await;
    let entity = flow.link("multi_account_user").await;
    let user = flow.mockbank().users()[2].clone();
    for account in &user.accounts {
        let txns = flow
            .get(&format!(
                "/data/v2/accounts/{}/transactions?entity_id={entity}&size=1000",
                account.id
            ))
            .await
            .json();
        let list = txns["data"]["transactions"].as_array().unwrap();
        assert_eq!(list.len(), account.transactions.len());
        // Newest first: each running balance is the next (older) one plus this amount.
        for pair in list.windows(2) {
            let signed = |t: &Value| {
                let a = t["amount"]["amount"].as_f64().unwrap();
                if t["credit_debit_indicator"] == "CREDIT" {
                    a
                } else {
                    -a
                }
            };
            let balance = |t: &Value| {
                let a = t["balance"]["amount"]["amount"].as_f64().unwrap();
                if t["balance"]["credit_debit_indicator"] == "CREDIT" {
                    a
                } else {
                    -a
                }
            };
            let expected = balance(&pair[1]) + signed(&pair[0]);
            assert!(
                (balance(&pair[0]) - expected).abs() < 0.005,
                "{} vs {}",
                balance(&pair[0]),
                expected
            );
        }
        let balances = flow
            .get(&format!(
                "/data/v2/accounts/{}/balances?entity_id={entity}",
                account.id
            ))
            .await
            .json();
        let booked = balances["data"]["balances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "CLOSING_BOOKED")
            .unwrap()
            .clone();
        let newest = &list[0]["balance"];
        assert_eq!(booked["amount"], newest["amount"]);
        assert_eq!(
            booked["credit_debit_indicator"],
            newest["credit_debit_indicator"]
        );
    }
    let page = flow
        .get(&format!(
            "/data/v2/accounts/{}/transactions?entity_id={entity}&page=1&size=5",
            user.accounts[0].id
        ))
        .await
        .json();
    assert_eq!(page["data"]["page"]["number"], 1);
    assert_eq!(page["data"]["transactions"].as_array().unwrap().len(), 5);
    assert_eq!(page["data"]["transactions"][0]["index"], 5);

    let identity = flow
        .get(&format!("/data/v2/identity?entity_id={entity}"))
        .await
        .json();
    assert_eq!(
        identity["data"]["identities"][0]["full_legal_name"],
        user.identity.full_name.as_str()
    );
}

#[tokio::test]
async fn async_calls_answer_pending_then_results_ready() {
    let flow = Flow::start("").await;
    let entity = flow.link("no_otp_user").await;
    let pending = flow
        .post(
            "/data/v1/accounts",
            json!({"entity_id": entity, "async": true}),
        )
        .await
        .json();
    assert_eq!(pending["status"], "PENDING");
    let results_id = pending["results_id"].as_str().unwrap().to_string();
    assert_eq!(
        flow.get(&format!("/v1/results/{results_id}")).await.json()["status"],
        "PENDING"
    );
    flow.advance(Duration::from_secs(2));
    let ready = flow.receiver.wait_for("results.ready", 1).await;
    assert_eq!(ready[0].json()["payload"]["id"], results_id);
    let results = flow.get(&format!("/v1/results/{results_id}")).await.json();
    assert_eq!(results["status"], "OK");

    // v2, and a synchronous call's results id is unknown to the results endpoint.
    let v2 = flow
        .get(&format!("/data/v2/accounts?entity_id={entity}&async=true"))
        .await
        .json();
    assert_eq!(v2["status"], "PENDING");
    let sync = flow.v2_accounts(&entity).await.json();
    let unknown = flow
        .get(&format!(
            "/data/v2/results/{}",
            sync["results_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["status"], "UNKNOWN_RESULTS_ID");
}

#[tokio::test]
async fn failed_webhooks_are_retried_on_leans_schedule() {
    let flow = Flow::start_with(Receiver::start(2).await, "").await;
    flow.link("no_otp_user").await;
    // First attempt fails at once; retries come 1 and 2 minutes after it.
    flow.receiver.wait_attempts(1).await;
    assert_eq!(flow.receiver.attempts(), 1);
    assert!(flow.receiver.received().is_empty());
    flow.advance(MINUTE);
    flow.advance(MINUTE);
    let delivered = flow.receiver.wait_for("entity.created", 1).await;
    assert_eq!(delivered.len(), 1, "delivered once");
    assert_eq!(flow.receiver.attempts(), 3);
    assert_signed(&delivered[0]);
}

#[tokio::test]
async fn refreshes_are_pending_then_finished_and_not_duplicated() {
    let flow = Flow::start("").await;
    let entity = flow.link("no_otp_user").await;
    let started = flow
        .post("/data/v2/refreshes", json!({"entity_id": entity}))
        .await;
    assert_eq!(started.json()["status"], "OK");
    let refresh_id = started.json()["refresh_id"].as_str().unwrap().to_string();
    let duplicate = flow
        .post("/data/v2/refreshes", json!({"entity_id": entity}))
        .await;
    assert_eq!(duplicate.status, 429);
    assert_eq!(duplicate.json()["status"], "DUPLICATED_REQUEST");
    assert_eq!(
        flow.get(&format!("/data/v2/refreshes/{refresh_id}"))
            .await
            .json()["status"],
        "PENDING"
    );
    flow.advance(Duration::from_secs(10));
    assert_eq!(
        flow.get(&format!("/data/v2/refreshes/{refresh_id}"))
            .await
            .json()["status"],
        "FINISHED"
    );
    let updates = flow
        .receiver
        .wait_for("entity.data.refresh.updated", 2)
        .await;
    assert_eq!(updates[1].json()["payload"]["status"], "FINISHED");
    let list = flow
        .get(&format!("/data/v2/refreshes?entity_id={entity}"))
        .await
        .json();
    assert_eq!(list["content"][0]["refresh_id"], refresh_id);
}

#[tokio::test]
async fn credentials_are_checked_and_the_proxy_supplies_them() {
    let flow = Flow::start("").await;
    let direct = format!("http://{}", flow.proxy.mockbank_addr.unwrap());
    let client = h1_client();
    // Straight to the Mockbank without credentials: 401 in Lean's shape.
    let bare = crate::support::get(&client, &format!("{direct}/banks/v1/")).await;
    assert_eq!(bare.status, 401);
    assert_eq!(
        keys(&bare.json()),
        ["message", "metadata", "status", "timestamp"]
    );
    // Through the proxy the token is injected.
    assert_eq!(flow.get("/banks/v1/").await.status, 200);

    let token = |secret: &'static str, scope: &'static str| {
        let client = client.clone();
        let url = format!("{direct}/oauth2/token");
        async move {
            let form = format!("client_id=mockbank-client-id&client_secret={secret}&grant_type=client_credentials&scope={scope}");
            send(
                &client,
                Request::post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body::full(form))
                    .unwrap(),
            )
            .await
        }
    };
    let issued = token("mockbank-client-secret", "api").await;
    assert_eq!(issued.status, 200);
    let issued = issued.json();
    assert_eq!(
        keys(&issued),
        ["access_token", "expires_in", "scope", "token_type"]
    );
    assert_eq!(issued["expires_in"], 3599);
    assert_eq!(issued["token_type"], "Bearer");
    let bearer = format!("Bearer {}", issued["access_token"].as_str().unwrap());
    let with_bearer = |bearer: String| {
        let client = client.clone();
        let url = format!("{direct}/banks/v1/");
        async move {
            send(
                &client,
                Request::get(url)
                    .header("authorization", bearer)
                    .body(body::empty())
                    .unwrap(),
            )
            .await
        }
    };
    assert_eq!(with_bearer(bearer.clone()).await.status, 200);
    flow.advance(60 * MINUTE);
    assert_eq!(
        with_bearer(bearer).await.status,
        401,
        "expired after an hour"
    );
    assert_eq!(with_bearer("Bearer forged".into()).await.status, 401);

    let refused = token("wrong-secret", "api").await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["error"], "invalid_client");

    let customer = flow
        .post("/customers/v1/", json!({"app_user_id": "sdk-user"}))
        .await
        .json();
    let scope: &'static str = Box::leak(
        format!("customer.{}", customer["customer_id"].as_str().unwrap()).into_boxed_str(),
    );
    let customer_token = token("mockbank-client-secret", scope).await.json();
    assert_eq!(customer_token["scope"], scope);
    let forbidden = with_bearer(format!(
        "Bearer {}",
        customer_token["access_token"].as_str().unwrap()
    ))
    .await;
    assert_eq!(forbidden.status, 403, "customer tokens are for the LinkSDK");
}

#[tokio::test]
async fn lean_errors_match_the_recorded_ones() {
    let flow = Flow::start("").await;
    let entity = flow.link("no_otp_user").await;
    let cases = [
        (
            flow.get("/data/v2/accounts").await,
            400,
            "MISSING_PARAMETERS",
        ),
        (
            flow.get("/data/v2/accounts?entity_id=not-a-uuid").await,
            400,
            "INVALID_PARAMETERS",
        ),
        (
            flow.get(&format!(
                "/data/v2/accounts?entity_id={}",
                uuid::Uuid::new_v4()
            ))
            .await,
            404,
            "UNKNOWN_ENTITY",
        ),
        (
            flow.get(&format!(
                "/data/v2/accounts/{}/balances?entity_id={entity}",
                uuid::Uuid::new_v4()
            ))
            .await,
            404,
            "UNKNOWN_ACCOUNT",
        ),
        (flow.get("/data/v2/nothing-here").await, 404, "INVALID_URL"),
        (
            flow.post("/data/v2/accounts", json!({})).await,
            405,
            "INVALID_HTTP_METHOD",
        ),
    ];
    for (answer, status, code) in cases {
        assert_eq!(answer.status, status, "{code}");
        assert_eq!(answer.json()["status"], code);
    }
    let first = flow
        .post("/customers/v1/", json!({"app_user_id": "twice"}))
        .await;
    assert_eq!(first.status, 200);
    let second = flow
        .post("/customers/v1/", json!({"app_user_id": "twice"}))
        .await;
    assert_eq!(second.status, 409);
    assert_eq!(second.json()["status"], "CUSTOMER_ALREADY_EXISTS");
    assert_eq!(
        keys(&second.json()),
        ["message", "metadata", "status", "timestamp"]
    );
}

#[tokio::test]
async fn linking_grants_the_chosen_permissions_and_accounts_only() {
    let flow = Flow::start("").await;
    let customer = flow
        .post("/customers/v1/", json!({"app_user_id": "chooser"}))
        .await
        .json()["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let user = flow
        .mockbank()
        .users()
        .iter()
        .find(|u| u.username == "multi_account_user")
        .unwrap()
        .clone();
    let link = |extra: Value| {
        let mut body = json!({"customer_id": customer, "username": user.username, "password": user.password, "otp": "1111"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        flow.post("/_mockbank/link/connect", body)
    };
    let refused = link(json!({"permissions": ["identity", "everything"]})).await;
    assert_eq!(refused.status, 400);
    assert!(refused.json()["message"]
        .as_str()
        .unwrap()
        .contains("permissions"));
    let refused = link(json!({"account_ids": [uuid::Uuid::new_v4()]})).await;
    assert_eq!(refused.status, 400);
    assert!(refused.json()["message"]
        .as_str()
        .unwrap()
        .contains("account_ids"));

    let chosen = user.accounts[1].id.to_string();
    let entity =
        link(json!({"permissions": ["identity", "accounts"], "account_ids": [chosen]})).await;
    assert_eq!(entity.status, 200, "{:?}", entity.json());
    let entity = entity.json();
    assert_eq!(entity["permissions"]["identity"], true);
    assert_eq!(entity["permissions"]["transactions"], false);
    let id = entity["id"].as_str().unwrap();
    let accounts = flow.v2_accounts(id).await.json();
    let listed = accounts["data"]["accounts"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{accounts}");
    assert_eq!(listed[0]["account_id"], chosen.as_str());
    // Another account of the user's is not shared.
    let other = user.accounts[0].id;
    let balance = flow
        .post(
            "/data/v1/balance",
            json!({"entity_id": id, "account_id": other}),
        )
        .await;
    assert_ne!(balance.json()["status"], "OK", "{:?}", balance.json());
    flow.receiver.wait_for("entity.created", 1).await;
    let created = flow
        .receiver
        .received()
        .into_iter()
        .find(|w| w.json()["type"] == "entity.created")
        .unwrap();
    assert_eq!(
        created.json()["payload"]["permissions"],
        json!(["identity", "accounts"])
    );
}

#[tokio::test]
async fn an_expired_consent_answers_consent_expired_until_the_user_links_again() {
    consent_expiry_in(Region::Uae).await;
}

#[tokio::test]
async fn an_expired_consent_answers_consent_expired_in_ksa_too() {
    consent_expiry_in(Region::Ksa).await;
}

async fn consent_expiry_in(region: Region) {
    let flow = Flow::start_in(region).await;
    let entity = flow.link("no_otp_user").await;
    let expired = flow
        .post(
            &format!("/_mockbank/entities/{entity}/consent/expire"),
            json!({}),
        )
        .await;
    assert_eq!(expired.status, 200, "{:?}", expired.json());
    for answer in [
        flow.v1_accounts(&entity).await,
        flow.v2_accounts(&entity).await,
        flow.post("/data/v2/refreshes", json!({"entity_id": entity}))
            .await,
    ] {
        assert_eq!(answer.status, 403);
        assert_eq!(
            answer.json()["status"],
            "CONSENT_EXPIRED",
            "{:?}",
            answer.json()
        );
    }
    // Linking again gives a new consent: the same entity, updated.
    let again = flow.link_again("no_otp_user").await;
    assert_eq!(again, entity);
    flow.receiver.wait_for("entity.updated", 1).await;
    let accounts = flow.v2_accounts(&entity).await.json();
    assert_eq!(accounts["status"], "OK");
    assert_eq!(
        accounts["data"]["accounts"][0]["currency"],
        region.currency()
    );
}

#[tokio::test]
async fn a_bank_taken_down_answers_maintenance_and_says_so_by_webhook() {
    bank_maintenance_in(Region::Uae).await;
}

#[tokio::test]
async fn a_ksa_bank_taken_down_answers_maintenance_and_says_so_by_webhook() {
    bank_maintenance_in(Region::Ksa).await;
}

async fn bank_maintenance_in(region: Region) {
    let flow = Flow::start_in(region).await;
    let mock = region.mock_bank().identifier;
    let maintenance = region
        .banks()
        .iter()
        .find(|b| !b.data_available)
        .unwrap()
        .identifier;
    let entity = flow.link("otp_user").await;
    let banks = flow.get("/banks/v1/").await.json();
    let active = |banks: &Value, id: &str| {
        banks
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["identifier"] == id)
            .unwrap()["availability"]["active"]["data"]
            .clone()
    };
    // The maintenance user's bank starts under maintenance.
    assert_eq!(active(&banks, maintenance), false);
    assert_eq!(active(&banks, mock), true);

    let down = flow
        .post(&format!("/_mockbank/banks/{mock}/down"), json!({}))
        .await;
    assert_eq!(down.status, 200, "{:?}", down.json());
    let answer = flow.v2_accounts(&entity).await.json();
    assert_eq!(answer["status"], "FAILED", "{answer}");
    assert_eq!(active(&flow.get("/banks/v1/").await.json(), mock), false);
    let hooks = flow.receiver.wait_for("bank.availability.updated", 1).await;
    let hook = hooks[0].json();
    assert_eq!(hook["payload"]["identifier"], mock);
    assert_eq!(
        hook["payload"]["availability"]["active"],
        json!({"payments": false, "data": false})
    );
    assert_eq!(hook["message"], "The bank status has been updated.");
    assert_signed(&hooks[0]);

    // Taking it down again changes nothing and says nothing.
    flow.post(&format!("/_mockbank/banks/{mock}/down"), json!({}))
        .await;
    flow.post(&format!("/_mockbank/banks/{mock}/up"), json!({}))
        .await;
    let hooks = flow.receiver.wait_for("bank.availability.updated", 2).await;
    assert_eq!(hooks.len(), 2);
    assert_eq!(
        hooks[1].json()["payload"]["availability"]["active"]["data"],
        true
    );
    assert_eq!(flow.v2_accounts(&entity).await.json()["status"], "OK");

    // The maintenance bank comes back too.
    let maintained = flow.link("maintenance_user").await;
    assert_eq!(
        flow.v2_accounts(&maintained).await.json()["status"],
        "FAILED"
    );
    flow.post(&format!("/_mockbank/banks/{maintenance}/up"), json!({}))
        .await;
    assert_eq!(flow.v2_accounts(&maintained).await.json()["status"], "OK");
    let unknown = flow
        .post("/_mockbank/banks/NO_SUCH_BANK/down", json!({}))
        .await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.json()["message"].as_str().unwrap().contains(mock));
}

#[tokio::test]
async fn the_refresh_webhook_counts_the_complete_months_of_transactions() {
    let flow = Flow::start("").await;
    let entity = flow.link("no_otp_user").await;
    let started = flow
        .post("/data/v2/refreshes", json!({"entity_id": entity}))
        .await;
    assert_eq!(started.status, 200, "{:?}", started.json());
    flow.advance(Duration::from_secs(60));
    let hooks = flow
        .receiver
        .wait_for("entity.data.refresh.updated", 1)
        .await;
    let done = hooks
        .iter()
        .map(|h| h.json())
        .find(|h| h["payload"]["data_status"]["account_data"].is_array())
        .expect("a refresh webhook with its data status");
    for account in done["payload"]["data_status"]["account_data"]
        .as_array()
        .unwrap()
    {
        let availability = &account["transaction_availability"];
        let months = availability["complete_months"].as_u64().unwrap();
        let start =
            chrono::NaiveDate::parse_from_str(availability["start"].as_str().unwrap(), "%Y-%m-%d")
                .unwrap();
        let end =
            chrono::NaiveDate::parse_from_str(availability["end"].as_str().unwrap(), "%Y-%m-%d")
                .unwrap();
        let span = (end - start).num_days() as u64;
        assert!(
            months * 28 <= span && span < (months + 2) * 31,
            "{availability}"
        );
    }
}

/// `leanproxy mockbank …` against the proxy's embedded Mockbank.
async fn cli(flow: &Flow, args: &[&str]) -> (i32, String, String) {
    let url = format!("http://{}", flow.proxy.mockbank_addr.unwrap());
    let mut all: Vec<String> = vec!["mockbank".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    all.extend(["--mockbank".to_string(), url]);
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        crate::support::run_binary(&refs)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_mockbank_cli_controls_a_running_mockbank() {
    let flow = Flow::start("").await;
    let entity = flow.link("otp_user").await;

    let (code, out, err) = cli(&flow, &["users"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("OTP 1111") && out.contains("multi_account_user"),
        "{out}"
    );
    let (code, out, _) = cli(&flow, &["entities"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(&entity) && out.contains("active"), "{out}");

    let before = flow.mockbank().clock().elapsed();
    let (code, out, err) = cli(&flow, &["clock", "advance", "11m"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("now: "), "{out}");
    assert!(flow.mockbank().clock().elapsed() >= before + Duration::from_secs(660));
    assert_eq!(
        flow.v2_accounts(&entity).await.json()["status"],
        "RECONNECT_REQUIRED"
    );
    let (code, out, _) = cli(&flow, &["clock", "resume"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("paused: false"), "{out}");

    let other = flow.link("no_otp_user").await;
    let (code, _, err) = cli(&flow, &["consent", "expire", &other]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        flow.v2_accounts(&other).await.json()["status"],
        "CONSENT_EXPIRED"
    );
    let (code, _, err) = cli(&flow, &["bank", "down", "LEAN_OF_RETAIL_UAE"]).await;
    assert_eq!(code, 0, "{err}");
    flow.receiver.wait_for("bank.availability.updated", 1).await;
    let (code, _, _) = cli(&flow, &["expire", &other]).await;
    assert_eq!(code, 0);

    // Clear errors: an unknown entity, a bad duration, nothing listening.
    let (code, _, err) = cli(&flow, &["expire", &uuid::Uuid::new_v4().to_string()]).await;
    assert_ne!(code, 0);
    assert!(err.contains("leanproxy mockbank:"), "{err}");
    let (code, _, err) = cli(&flow, &["clock", "advance", "soon"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("duration"), "{err}");
    let closed = crate::support::closed_port().await;
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        crate::support::run_binary(&[
            "mockbank",
            "users",
            "--mockbank",
            &format!("http://{closed}"),
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach the Mockbank"), "{err}");
}

#[tokio::test]
async fn a_payment_intent_paid_by_a_test_user_settles_by_its_amount_with_signed_webhooks() {
    payment_flow_in(Region::Uae).await;
}

#[tokio::test]
async fn a_ksa_payment_intent_settles_in_sar_with_signed_webhooks() {
    payment_flow_in(Region::Ksa).await;
}

async fn payment_flow_in(region: Region) {
    let flow = Flow::start_in(region).await;
    let currency = region.currency();
    let customer = flow
        .post("/customers/v1/", json!({"app_user_id": "payer"}))
        .await
        .json()["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let user = flow
        .mockbank()
        .users()
        .iter()
        .find(|u| u.username == "no_otp_user")
        .unwrap()
        .clone();
    // Wrong input names the field.
    let bad = flow
        .post(
            "/payments/v1/intents",
            json!({"amount": 1.005, "currency": currency, "customer_id": customer}),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.json()["message"].as_str().unwrap().contains("amount"));

    let pay = |amount: f64| {
        let (flow, customer, user) = (&flow, customer.clone(), user.clone());
        async move {
            let intent = flow
                .post(
                    "/payments/v1/intents",
                    json!({"amount": amount, "currency": currency, "customer_id": customer, "description": "order 7"}),
                )
                .await;
            assert_eq!(intent.status, 200, "{:?}", intent.json());
            let intent_id = intent.json()["payment_intent_id"]
                .as_str()
                .unwrap()
                .to_string();
            let paid = flow
                .post(
                    "/_mockbank/payments",
                    json!({"payment_intent_id": intent_id, "username": user.username, "password": user.password}),
                )
                .await;
            assert_eq!(paid.status, 200, "{:?}", paid.json());
            (intent_id, paid.json())
        }
    };
    let (intent, payment) = pay(40.0).await;
    assert_eq!(payment["status"], "PENDING_WITH_BANK");
    assert_eq!(
        payment["sender_details"]["iban"],
        user.accounts[0].iban.as_str()
    );
    let id = payment["id"].as_str().unwrap().to_string();
    flow.receiver.wait_for("payment_intent.created", 1).await;
    let created = flow.receiver.wait_for("payment.created", 1).await;
    assert_signed(&created[0]);
    // Paying twice is refused while the first is pending or accepted.
    let again = flow
        .post(
            "/_mockbank/payments",
            json!({"payment_intent_id": intent, "username": user.username, "password": user.password}),
        )
        .await;
    assert_eq!(again.status, 409);

    flow.advance(Duration::from_secs(5));
    let updated = flow.receiver.wait_for("payment.updated", 1).await;
    assert_signed(&updated[0]);
    assert_eq!(updated[0].json()["payload"]["status"], "ACCEPTED_BY_BANK");
    assert_eq!(updated[0].json()["payload"]["currency"], currency);
    // Another region's currency is refused.
    let other = if region == Region::Ksa { "AED" } else { "SAR" };
    let foreign = flow
        .post(
            "/payments/v1/intents",
            json!({"amount": 5.0, "currency": other, "customer_id": customer}),
        )
        .await;
    assert_eq!(foreign.status, 400, "{:?}", foreign.json());
    assert_eq!(updated[0].json()["payload"]["id"], id.as_str());
    let by_api = flow.get(&format!("/payments/v1/{id}")).await.json();
    assert_eq!(by_api["status"], "ACCEPTED_BY_BANK");
    let by_intent = flow
        .get(&format!("/payments/v1/intents/{intent}"))
        .await
        .json();
    assert_eq!(by_intent["payments"][0]["status"], "ACCEPTED_BY_BANK");

    // .13 is rejected by the bank; a bank that is down fails it at once.
    let (_, rejected) = pay(10.13).await;
    flow.advance(Duration::from_secs(5));
    let rejected_id = rejected["id"].as_str().unwrap();
    assert_eq!(
        flow.get(&format!("/payments/v1/{rejected_id}"))
            .await
            .json()["status"],
        "REJECTED_BY_BANK"
    );
    flow.post(
        &format!("/_mockbank/banks/{}/down", user.bank.identifier),
        json!({}),
    )
    .await;
    let (_, failed) = pay(12.0).await;
    assert_eq!(failed["status"], "FAILED");
    let listed = flow.get("/payments/v1/intents").await.json();
    assert_eq!(listed["page"]["total_elements"], 3);
}

#[tokio::test]
async fn payment_sources_wait_out_the_corporate_banks_cool_off_and_can_be_deleted() {
    let flow = Flow::start("").await;
    let customer = flow
        .post("/customers/v1/", json!({"app_user_id": "corp"}))
        .await
        .json()["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let source = |username: &'static str| {
        let (flow, customer) = (&flow, customer.clone());
        async move {
            let s = flow
                .post(
                    "/_mockbank/payment-sources",
                    json!({"customer_id": customer, "username": username, "password": flow.password(username), "otp": "1111"}),
                )
                .await;
            assert_eq!(s.status, 200, "{:?}", s.json());
            s.json()
        }
    };
    let retail = source("no_otp_user").await;
    assert_eq!(retail["status"], "ACTIVE");
    let corporate = source("corporate_user").await;
    assert_eq!(corporate["status"], "AWAITING_BENEFICIARY_COOL_OFF");
    let created = flow
        .receiver
        .wait_for("payment_source.beneficiary.created", 2)
        .await;
    assert_signed(&created[1]);
    flow.receiver.wait_for("payment_source.created", 2).await;

    flow.advance(Duration::from_secs(601));
    let updated = flow
        .receiver
        .wait_for("payment_source.beneficiary.updated", 1)
        .await;
    assert_eq!(updated[0].json()["payload"]["status"], "ACTIVE");
    let id = corporate["id"].as_str().unwrap();
    let path = format!("/customers/v1/{customer}/payment-sources/{id}");
    assert_eq!(flow.get(&path).await.json()["status"], "ACTIVE");
    let listed = flow
        .get(&format!("/customers/v1/{customer}/payment-sources"))
        .await
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(listed[0]["accounts"][0]["balance"].is_number());

    let req = Request::delete(flow.proxy.url(&path))
        .header("content-type", "application/json")
        .body(body::full(r#"{"reason":"USER_REQUESTED"}"#))
        .unwrap();
    assert_eq!(send(&flow.client, req).await.status, 200);
    assert_eq!(flow.get(&path).await.status, 404);
}

#[tokio::test]
async fn an_account_on_file_consent_is_authorised_then_revoked_with_its_history() {
    let flow = Flow::start("").await;
    let customer = flow
        .post("/customers/v1/", json!({"app_user_id": "aof"}))
        .await
        .json()["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let bad = flow
        .post(
            "/consents/account-on-file",
            json!({"customer_id": customer, "control_parameters": {"max_individual_amount": "lots"}}),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.json()["message"]
        .as_str()
        .unwrap()
        .contains("control_parameters.max_individual_amount"));
    let created = flow
        .post(
            "/consents/account-on-file",
            json!({"customer_id": customer, "reference": "IP-1", "control_parameters": {"period_type": "Month", "max_individual_amount": "500"}}),
        )
        .await
        .json();
    assert_eq!(created["status"], "AWAITING_AUTHORISATION");
    let id = created["id"].as_str().unwrap().to_string();
    let user = flow
        .mockbank()
        .users()
        .iter()
        .find(|u| u.username == "multi_account_user")
        .unwrap()
        .clone();
    let authorised = flow
        .post(
            &format!("/_mockbank/consents/{id}/authorise"),
            json!({"username": user.username, "password": user.password, "otp": "1111", "account_id": user.accounts[2].id}),
        )
        .await;
    assert_eq!(authorised.status, 200, "{:?}", authorised.json());
    let details = flow.get(&format!("/consents/{id}")).await.json();
    assert_eq!(details["status"], "AUTHORISED");
    assert_eq!(
        details["consented_account"]["iban"],
        user.accounts[2].iban.as_str()
    );
    assert_eq!(details["bank_identifier"], user.bank.identifier);
    assert_eq!(
        details["control_parameters"]["max_individual_amount"],
        500.0
    );
    // Rejecting an authorised consent is refused; revoking it is not.
    let reject = flow
        .post(&format!("/_mockbank/consents/{id}/reject"), json!({}))
        .await;
    assert_eq!(reject.status, 409);
    flow.post(&format!("/_mockbank/consents/{id}/revoke"), json!({}))
        .await;
    let history = flow.get(&format!("/consents/{id}/history")).await.json();
    let kinds: Vec<&str> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["CONSENT_CREATED", "CONSENT_AUTHORISED", "CONSENT_REVOKED"]
    );
    let listed = flow
        .get("/consents/v1?page_number=0&page_size=100")
        .await
        .json();
    assert_eq!(listed["data"][0]["status"], "REVOKED");
}

#[tokio::test]
async fn an_accepted_payment_is_refunded_within_its_amount_once_approved() {
    let flow = Flow::start("").await;
    let customer = flow
        .post("/customers/v1/", json!({"app_user_id": "refunded"}))
        .await
        .json()["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let intent = flow
        .post(
            "/payments/v1/intents",
            json!({"amount": 30, "currency": "AED", "customer_id": customer}),
        )
        .await
        .json()["payment_intent_id"]
        .as_str()
        .unwrap()
        .to_string();
    let payment = flow
        .post(
            "/_mockbank/payments",
            json!({"payment_intent_id": intent, "username": "no_otp_user", "password": flow.password("no_otp_user")}),
        )
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let refund = |amount: f64| {
        let (flow, payment) = (&flow, payment.clone());
        async move {
            flow.post(
                "/payouts/refunds",
                json!([{"payment_id": payment, "amount": amount, "currency": "AED", "reason_code": "ORDER_CANCELLED"}]),
            )
            .await
        }
    };
    // Not before the bank accepted it.
    assert_eq!(refund(10.0).await.status, 409);
    flow.advance(Duration::from_secs(5));
    let made = refund(20.0).await;
    assert_eq!(made.status, 201, "{:?}", made.json());
    let id = made.json()[0]["refund_id"].as_str().unwrap().to_string();
    let too_much = refund(15.0).await;
    assert_eq!(too_much.status, 400);
    assert!(too_much.json()["message"]
        .as_str()
        .unwrap()
        .contains("amount"));

    let req = Request::put(flow.proxy.url("/payouts/refunds"))
        .header("content-type", "application/json")
        .body(body::full(
            json!([{"refund_id": id, "status": "APPROVED"}]).to_string(),
        ))
        .unwrap();
    let processed = send(&flow.client, req).await;
    assert_eq!(processed.status, 200, "{:?}", processed.json());
    let listed = flow
        .get("/payouts/refunds?size=50&status=APPROVED")
        .await
        .json();
    assert_eq!(listed["content"].as_array().unwrap().len(), 1);
    assert_eq!(listed["content"][0]["amount"], 20.0);
    assert!(listed["content"][0]["beneficiary"]["account_id"].is_string());
}

#[tokio::test]
async fn a_payout_goes_from_a_payment_source_account_to_a_payout_destination() {
    let flow = Flow::start("").await;
    let customer = flow
        .post("/customers/v1/", json!({"app_user_id": "payout"}))
        .await
        .json()["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let source = flow
        .post(
            "/_mockbank/payment-sources",
            json!({"customer_id": customer, "username": "no_otp_user", "password": flow.password("no_otp_user")}),
        )
        .await
        .json();
    let account = source["accounts"][0]["account_id"]
        .as_str()
        .unwrap()
        .to_string();
    let destination = flow
        .post(
            "/payouts/v1/payment/destinations",
            json!([{"name": "Supplier LLC", "iban": "AE680030012312312312123", "postal_code": "00000"}]),
        )
        .await
        .json()[0]["destination_id"]
        .as_str()
        .unwrap()
        .to_string();
    let payout = |amount: f64, account: &str| {
        let (flow, destination, account) = (&flow, destination.clone(), account.to_string());
        async move {
            flow.post(
                "/payouts/v1/payment",
                json!({"payment_details": [{"account_id": account, "currency": "AED", "destination_details": [{"authorize_payment": true, "payment_destination_id": destination, "amount": amount, "description": "invoice 9"}]}]}),
            )
            .await
        }
    };
    let unknown = payout(5.0, &uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.json()["message"]
        .as_str()
        .unwrap()
        .contains("account_id"));
    let made = payout(16.0, &account).await;
    assert_eq!(made.status, 200, "{:?}", made.json());
    let made = made.json();
    assert_eq!(made["end_user_id"], source["id"]);
    let intent = made["payouts_payment_details"][0]["payment_intent_id"]
        .as_str()
        .unwrap()
        .to_string();
    flow.advance(Duration::from_secs(5));
    let updated = flow.receiver.wait_for("payment.updated", 1).await;
    assert_eq!(updated[0].json()["payload"]["intent_id"], intent.as_str());
    let by_intent = flow
        .get(&format!("/payouts/v1/intents/{intent}"))
        .await
        .json();
    assert_eq!(by_intent["payment"]["status"], "ACCEPTED_BY_BANK");
    assert_eq!(by_intent["payment"]["post_initiation_status"], "PROCESSED");
    let id = by_intent["payment"]["id"].as_str().unwrap();
    let history = flow
        .get(&format!("/payouts/v1/payments/{id}/history"))
        .await
        .json();
    assert_eq!(history["content"][0]["events"].as_array().unwrap().len(), 2);
    let listed = flow.get("/payouts/v1/payments").await.json();
    assert_eq!(listed["page"]["total_elements"], 1);
    // Payouts are not the customer's payment intents.
    assert_eq!(
        flow.get("/payments/v1/intents").await.json()["page"]["total_elements"],
        0
    );
}
