//! Account-on-File payments through the proxy: payments on an authorised
//! consent within its limits, its consumption counters, the per-period limits,
//! the consent going `CONSUMED` when its limits are used up, the idempotency
//! key, and the consent's balance. Also payouts that wait for the app's
//! manual authorisation.

use std::time::Duration;

use http::Request;
use serde_json::{json, Value};

use crate::support::{h1_client, send, HttpClient, Observed, Proxy, Receiver};
use leanproxy::body;

struct Flow {
    proxy: Proxy,
    client: HttpClient,
    receiver: Receiver,
}

impl Flow {
    async fn start() -> Flow {
        let receiver = Receiver::start(0).await;
        let proxy = Proxy::start(&format!(
            "[mockbank]\nwebhook_url = \"{}\"\n",
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

    async fn post_with(&self, path: &str, body: Value, key: Option<&str>) -> Observed {
        let mut req =
            Request::post(self.proxy.url(path)).header("content-type", "application/json");
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        send(
            &self.client,
            req.body(body::full(body.to_string())).unwrap(),
        )
        .await
    }

    async fn post(&self, path: &str, body: Value) -> Observed {
        self.post_with(path, body, None).await
    }

    async fn get(&self, path: &str) -> Value {
        crate::support::get(&self.client, &self.proxy.url(path))
            .await
            .json()
    }

    /// A consent of a new customer with `controls`, authorised by
    /// `no_otp_user` for their second account; its id and that account's IBAN.
    async fn authorised_consent(&self, controls: Value) -> (String, String) {
        let customer = self
            .post(
                "/customers/v1/",
                json!({"app_user_id": uuid::Uuid::new_v4().to_string()}),
            )
            .await
            .json()["customer_id"]
            .as_str()
            .unwrap()
            .to_string();
        let created = self
            .post(
                "/consents/account-on-file",
                json!({"customer_id": customer, "reference": "AOF-1", "control_parameters": controls}),
            )
            .await
            .json();
        let id = created["id"].as_str().unwrap().to_string();
        let users = self.proxy.mockbank.as_ref().unwrap().users();
        let user = users.iter().find(|u| u.username == "no_otp_user").unwrap();
        let authorised = self
            .post(
                &format!("/_mockbank/consents/{id}/authorise"),
                json!({"username": user.username, "password": user.password, "account_id": user.accounts[1].id}),
            )
            .await;
        assert_eq!(authorised.status, 200, "{:?}", authorised.json());
        (id, user.accounts[1].iban.clone())
    }

    async fn pay(&self, consent: &str, amount: &str) -> Observed {
        self.post(
            "/payments/account-on-file",
            json!({"consent_id": consent, "amount": amount, "reference": "IP-7", "creditor_reference": "CR-7", "risk_details": {"channel": "MOBILE"}}),
        )
        .await
    }
}

#[tokio::test]
async fn payments_on_a_consent_count_until_its_limits_are_used_up() {
    let flow = Flow::start().await;
    let (id, iban) = flow
        .authorised_consent(json!({"period_type": "Month", "max_individual_amount": "100", "max_cumulative_amount": "250", "max_cumulative_amount_per_period": "1000", "max_cumulative_number_of_payments": "5"}))
        .await;

    let paid = flow.pay(&id, "100").await;
    assert_eq!(paid.status, 200, "{:?}", paid.json());
    let payment = paid.json();
    assert_eq!(payment["status"], "PENDING_WITH_BANK");
    assert_eq!(payment["consent_id"], id.as_str());
    assert_eq!(payment["sender_details"]["iban"], iban.as_str());
    assert_eq!(payment["amount"], 100.0);
    let created = flow.receiver.wait_for("payment.created", 1).await;
    assert_eq!(created[0].json()["payload"]["id"], payment["id"]);
    flow.proxy
        .mockbank
        .as_ref()
        .unwrap()
        .clock()
        .advance(Duration::from_secs(60));
    flow.receiver.wait_for("payment.updated", 1).await;
    let settled = flow
        .get(&format!("/payments/v1/{}", payment["id"].as_str().unwrap()))
        .await;
    assert_eq!(settled["status"], "ACCEPTED_BY_BANK");

    // Over the individual limit: refused, nothing counted.
    let over = flow.pay(&id, "100.01").await;
    assert_eq!(over.status, 400);
    assert_eq!(over.json()["status"], "CONSENT_LIMIT_EXCEEDED");
    assert!(over.json()["message"]
        .as_str()
        .unwrap()
        .contains("max_individual_amount"));
    // A payment the bank rejects (amount ends in .13) does not count.
    let rejected = flow.pay(&id, "50.13").await;
    assert_eq!(rejected.status, 200);
    let details = flow.get(&format!("/consents/{id}")).await;
    let used = &details["payment_consumption"];
    assert_eq!(used["cumulative_number_of_payments"], 1, "{details}");
    assert_eq!(used["cumulative_value_of_payments"], 100.0);
    assert_eq!(details["status"], "AUTHORISED");

    // 100 + 100 + 50 = 250: the cumulative amount is used up.
    assert_eq!(flow.pay(&id, "100").await.status, 200);
    let past = flow.pay(&id, "60").await;
    assert_eq!(past.status, 400);
    assert!(past.json()["message"]
        .as_str()
        .unwrap()
        .contains("max_cumulative_amount"));
    assert_eq!(flow.pay(&id, "50").await.status, 200);
    let details = flow.get(&format!("/consents/{id}")).await;
    assert_eq!(details["status"], "CONSUMED", "{details}");
    assert_eq!(
        details["payment_consumption"]["cumulative_value_of_payments"],
        250.0
    );
    assert_eq!(
        details["payment_consumption"]["cumulative_number_of_payments"],
        3
    );
    let consumed = flow.pay(&id, "1").await;
    assert_eq!(consumed.status, 409);
    assert!(consumed.json()["message"]
        .as_str()
        .unwrap()
        .contains("CONSUMED"));
    let history = flow.get(&format!("/consents/{id}/history")).await;
    let kinds: Vec<&str> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["CONSENT_CREATED", "CONSENT_AUTHORISED", "CONSENT_CONSUMED"]
    );
}

#[tokio::test]
async fn the_per_period_limits_renew_and_the_count_limit_consumes() {
    let flow = Flow::start().await;
    let (id, _) = flow
        .authorised_consent(json!({"period_type": "Day", "max_individual_amount": "10", "max_cumulative_amount_per_period": "100", "max_cumulative_number_of_payments_per_period": "2", "max_cumulative_number_of_payments": "3"}))
        .await;
    assert_eq!(flow.pay(&id, "10").await.status, 200);
    assert_eq!(flow.pay(&id, "10").await.status, 200);
    let third = flow.pay(&id, "10").await;
    assert_eq!(third.status, 400);
    assert!(third.json()["message"]
        .as_str()
        .unwrap()
        .contains("max_cumulative_number_of_payments_per_period"));
    // The next day the period's count starts again; the third payment in all
    // uses the consent up.
    flow.proxy
        .mockbank
        .as_ref()
        .unwrap()
        .clock()
        .advance(Duration::from_secs(24 * 3600));
    assert_eq!(flow.pay(&id, "10").await.status, 200);
    let details = flow.get(&format!("/consents/{id}")).await;
    assert_eq!(details["status"], "CONSUMED", "{details}");
    let used = &details["payment_consumption"];
    assert_eq!(used["cumulative_number_of_payments"], 3);
    assert_eq!(used["cumulative_number_of_payments_in_current_period"], 1);
    assert_eq!(used["cumulative_value_of_payments_in_current_period"], 10.0);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_payment_and_the_balance_needs_authorisation() {
    let flow = Flow::start().await;
    let (id, iban) = flow
        .authorised_consent(json!({"max_individual_amount": "500"}))
        .await;
    let body = json!({"consent_id": id, "amount": 20, "reference": "IP-8"});
    let first = flow
        .post_with("/payments/account-on-file", body.clone(), Some("key-1"))
        .await
        .json();
    let again = flow
        .post_with("/payments/account-on-file", body, Some("key-1"))
        .await
        .json();
    assert_eq!(first["id"], again["id"]);
    let details = flow.get(&format!("/consents/{id}")).await;
    assert_eq!(
        details["payment_consumption"]["cumulative_number_of_payments"],
        1
    );

    // A refused request leaves its key free for the corrected one.
    let over = flow
        .post_with(
            "/payments/account-on-file",
            json!({"consent_id": id, "amount": 600}),
            Some("key-2"),
        )
        .await;
    assert_eq!(over.status, 400);
    let fixed = flow
        .post_with(
            "/payments/account-on-file",
            json!({"consent_id": id, "amount": 60}),
            Some("key-2"),
        )
        .await;
    assert_eq!(fixed.status, 200);
    assert_ne!(fixed.json()["id"], first["id"]);

    let balance = flow.get(&format!("/consents/{id}/balance")).await;
    assert_eq!(balance["iban"], iban.as_str(), "{balance}");
    assert!(balance["balance"].is_number(), "{balance}");

    // A consent awaiting authorisation pays nothing and shows no balance.
    let customer = details["customer_id"].as_str().unwrap();
    let waiting = flow
        .post(
            "/consents/account-on-file",
            json!({"customer_id": customer, "control_parameters": {"max_individual_amount": "5"}}),
        )
        .await
        .json();
    let waiting = waiting["id"].as_str().unwrap();
    let refused = flow.pay(waiting, "1").await;
    assert_eq!(refused.status, 409);
    assert_eq!(refused.json()["status"], "INVALID_CONSENT_STATUS");
    let no_balance = crate::support::get(
        &flow.client,
        &flow.proxy.url(&format!("/consents/{waiting}/balance")),
    )
    .await;
    assert_eq!(no_balance.status, 409);
    let unknown = flow.pay(&uuid::Uuid::new_v4().to_string(), "1").await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn a_payout_without_authorize_payment_waits_for_the_apps_authorisation() {
    let flow = Flow::start().await;
    let customer = flow
        .post("/customers/v1/", json!({"app_user_id": "manual-payout"}))
        .await
        .json()["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let users = flow.proxy.mockbank.as_ref().unwrap().users();
    let user = users.iter().find(|u| u.username == "no_otp_user").unwrap();
    let source = flow
        .post(
            "/_mockbank/payment-sources",
            json!({"customer_id": customer, "username": user.username, "password": user.password}),
        )
        .await
        .json();
    let account = source["accounts"][0]["account_id"].as_str().unwrap();
    let destination = flow
        .post(
            "/payouts/v1/payment/destinations",
            json!([{"name": "Supplier LLC", "iban": "AE680030012312312312123"}]),
        )
        .await
        .json()[0]["destination_id"]
        .as_str()
        .unwrap()
        .to_string();
    let payout = |target: Value| {
        let flow = &flow;
        let account = account.to_string();
        async move {
            let made = flow
                .post(
                    "/payouts/v1/payment",
                    json!({"payment_details": [{"account_id": account, "currency": "AED", "destination_details": [target]}]}),
                )
                .await;
            assert_eq!(made.status, 200, "{:?}", made.json());
            made.json()["payouts_payment_details"][0].clone()
        }
    };
    // Lean's default is false: without authorize_payment it waits.
    let waiting = payout(json!({"payment_destination_id": destination, "amount": 30})).await;
    assert_eq!(
        waiting["destination_details"]["payment_status"],
        "AWAITING_AUTHORIZATION"
    );
    let intent = waiting["payment_intent_id"].as_str().unwrap().to_string();
    let listed = flow.get("/payouts/v1/payments").await;
    assert_eq!(listed["content"][0]["pending_manual_authorization"], true);
    assert_eq!(listed["content"][0]["auto_authorized"], false);
    assert_eq!(listed["content"][0]["status"], "AWAITING_AUTHORIZATION");
    assert!(flow.get(&format!("/payouts/v1/intents/{intent}")).await["payment"].is_null());
    assert!(!flow
        .receiver
        .received()
        .iter()
        .any(|r| r.json()["type"] == "payment.created"));
    // Nor can a test user pay it while it waits.
    let paid = flow
        .post(
            "/_mockbank/payments",
            json!({"payment_intent_id": intent, "username": user.username, "password": user.password}),
        )
        .await;
    assert_eq!(paid.status, 409, "{:?}", paid.json());
    assert_eq!(paid.json()["status"], "PAYOUT_NOT_AUTHORIZED");

    // Authorised, it is paid, with its webhooks; not twice.
    let authorised = flow
        .post(&format!("/_mockbank/payouts/{intent}/authorise"), json!({}))
        .await;
    assert_eq!(authorised.status, 200, "{:?}", authorised.json());
    assert_eq!(authorised.json()["status"], "PENDING_WITH_BANK");
    let created = flow.receiver.wait_for("payment.created", 1).await;
    assert_eq!(created[0].json()["payload"]["intent_id"], intent.as_str());
    let again = flow
        .post(&format!("/_mockbank/payouts/{intent}/authorise"), json!({}))
        .await;
    assert_eq!(again.status, 409);
    let listed = flow.get("/payouts/v1/payments").await;
    assert_eq!(listed["content"][0]["pending_manual_authorization"], false);
    assert_eq!(listed["content"][0]["status"], "PENDING_WITH_BANK");

    // Another, rejected: never paid.
    let rejected = payout(
        json!({"authorize_payment": false, "payment_destination_id": destination, "amount": 12}),
    )
    .await;
    let rejected = rejected["payment_intent_id"].as_str().unwrap();
    let answer = flow
        .post(&format!("/_mockbank/payouts/{rejected}/reject"), json!({}))
        .await;
    assert_eq!(answer.status, 200);
    let listed = flow.get("/payouts/v1/payments").await;
    assert_eq!(listed["content"][0]["status"], "REJECTED");
    assert!(flow.get(&format!("/payouts/v1/intents/{rejected}")).await["payment"].is_null());
    // authorize_payment must be a boolean.
    let bad = flow
        .post(
            "/payouts/v1/payment",
            json!({"payment_details": [{"account_id": account, "currency": "AED", "destination_details": [{"authorize_payment": "yes", "payment_destination_id": destination, "amount": 1}]}]}),
        )
        .await;
    assert_eq!(bad.status, 400);
}
