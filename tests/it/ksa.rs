//! The Mockbank as Lean's KSA sandbox (`mockbank.region = "ksa"`): Saudi
//! identities and accounts, the KSA banks, the webhooks in the shapes of Lean's
//! KSA samples (`../shared/lean-postman/webhooks/KSA-*.json`) and the KSA-only
//! insights in the shapes of Lean's KSA collection (the recorded examples'
//! shapes are in `fixtures/ksa-recorded.json`, which says where they came
//! from). The flows UAE and KSA share (payments, maintenance, consent expiry,
//! insights adding up) run in both regions in `mockbank.rs` and
//! `mockbank_insights.rs`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::conformance::shape_diff;
use crate::support::{h1_client, link_entity, post_json, send, HttpClient, Proxy, Receiver};
use leanproxy::mockbank::Region;

struct Ksa {
    proxy: Proxy,
    client: HttpClient,
    receiver: Receiver,
}

impl Ksa {
    async fn start(upstream: &str) -> Ksa {
        let receiver = Receiver::start(0).await;
        let proxy = Proxy::start(&format!(
            "[proxy]\nupstream = \"{upstream}\"\n[mockbank]\nwebhook_url = \"{}\"\n",
            receiver.url()
        ))
        .await;
        proxy.mockbank.as_ref().unwrap().clock().pause();
        Ksa {
            proxy,
            client: h1_client(),
            receiver,
        }
    }

    async fn link(&self, username: &str) -> String {
        let mockbank = self.proxy.mockbank.as_ref().unwrap();
        let user = mockbank.users().iter().find(|u| u.username == username);
        link_entity(
            &self.client,
            &self.proxy.url(""),
            &format!("app-{username}"),
            username,
            &user.unwrap().password,
            Some("1111"),
        )
        .await
    }

    async fn ok(&self, path: &str) -> Value {
        let answer = crate::support::get(&self.client, &self.proxy.url(path)).await;
        assert_eq!(answer.status, 200, "{path}: {:?}", answer.json());
        answer.json()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let answer = send(&self.client, post_json(self.proxy.url(path), body)).await;
        assert_eq!(answer.status, 200, "{path}: {:?}", answer.json());
        answer.json()
    }
}

/// ISO 13616: the IBAN's check digits are right.
fn iban_valid(iban: &str) -> bool {
    let moved = format!("{}{}", &iban[4..], &iban[..4]);
    moved.chars().fold(0u32, |acc, c| {
        let v = c.to_digit(36).unwrap();
        if v >= 10 {
            (acc * 100 + v) % 97
        } else {
            (acc * 10 + v) % 97
        }
    }) == 1
}

/// The Luhn check of Saudi national ids and iqamas.
fn luhn(id: &str) -> bool {
    let sum: u32 = id
        .chars()
        .rev()
        .map(|c| c.to_digit(10).unwrap())
        .enumerate()
        .map(|(i, d)| match (i % 2, d * 2) {
            (1, x) if x > 9 => x - 9,
            (1, x) => x,
            _ => d,
        })
        .sum();
    sum.is_multiple_of(10)
}

#[tokio::test]
async fn the_named_target_serves_saudi_users_banks_and_accounts_in_sar() {
    // `upstream = "mockbank-ksa"`: the embedded Mockbank stands in for
    // Lean's KSA sandbox.
    let ksa = Ksa::start("mockbank-ksa").await;
    assert_eq!(ksa.proxy.mockbank.as_ref().unwrap().region(), Region::Ksa);
    let banks = ksa.ok("/banks/v1/").await;
    let ids: Vec<&str> = banks
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["identifier"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], "LEA1_SAMAOB_SAU");
    assert!(ids.contains(&"LEANMB1"), "{ids:?}");
    assert!(!ids.iter().any(|id| id.ends_with("_UAE")));
    assert_eq!(banks[0]["country_code"], "SAU");
    assert_eq!(banks[0]["transfer_limits"][0]["currency"], "SAR");

    let entity = ksa.link("multi_account_user").await;
    let accounts = ksa
        .ok(&format!("/data/v2/accounts?entity_id={entity}"))
        .await;
    for account in accounts["data"]["accounts"].as_array().unwrap() {
        assert_eq!(account["currency"], "SAR");
        let iban = account["account"][0]["identification"].as_str().unwrap();
        assert_eq!(iban.len(), 24, "{iban}");
        assert!(iban.starts_with("SA") && &iban[4..6] == "80", "{iban}");
        assert!(iban_valid(iban), "{iban}");
    }
    let identity = ksa
        .ok(&format!("/data/v2/identity?entity_id={entity}"))
        .await;
    let person = &identity["data"]["identities"][0];
    // Lean's KSA identity carries the id in `party_number` (`national_id` is
    // null there); v1's `national_identity_number` is the same.
    let national_id = person["party_number"].as_str().unwrap();
    let v1 = ksa
        .post("/data/v1/identity", json!({"entity_id": entity}))
        .await;
    assert_eq!(v1["payload"]["national_identity_number"], national_id);
    assert_eq!(national_id.len(), 10, "{national_id}");
    assert!(matches!(&national_id[..1], "1" | "2"), "{national_id}");
    assert!(luhn(national_id), "{national_id}");
    assert!(person["mobile_number"]
        .as_str()
        .unwrap()
        .starts_with("9665"));
    assert_eq!(person["address"]["country"], "Saudi Arabia");
    assert!(person["address"]["post_code"].as_str().unwrap().len() == 5);
    assert!(person["address"]["address_line"]
        .as_str()
        .unwrap()
        .ends_with("Saudi Arabia"));

    let txns = ksa
        .ok(&format!(
            "/data/v2/accounts/{}/transactions?entity_id={entity}",
            accounts["data"]["accounts"][0]["account_id"]
                .as_str()
                .unwrap()
        ))
        .await;
    let first = &txns["data"]["transactions"][0];
    assert_eq!(first["amount"]["currency"], "SAR");
    assert_eq!(first["local_time_zone"], "UTC+03:00");
}

#[tokio::test]
async fn ksa_webhooks_have_the_shapes_of_leans_ksa_samples() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/lean-postman/webhooks"
    );
    let sample = |name: &str| -> Option<Value> {
        let text = std::fs::read(format!("{dir}/KSA-{name}.json")).ok()?;
        Some(serde_json::from_slice(&text).unwrap())
    };
    let Some(created_sample) = sample("entity.created") else {
        eprintln!("SKIPPED: {dir} is absent");
        return;
    };
    let ksa = Ksa::start("mockbank-ksa").await;
    let entity = ksa.link("otp_user").await;
    let created = ksa.receiver.wait_for("entity.created", 1).await[0].json();
    assert_eq!(shape_diff(&created_sample, &created), Vec::<String>::new());
    // Lean's KSA mock bank, exactly as the sample shows it.
    assert_eq!(
        created["payload"]["bank_details"],
        created_sample["payload"]["bank_details"]
    );
    assert_eq!(
        created["payload"]["permissions"].as_array().unwrap().len(),
        created_sample["payload"]["permissions"]
            .as_array()
            .unwrap()
            .len()
    );

    ksa.post("/data/v2/refreshes", json!({"entity_id": entity}))
        .await;
    ksa.proxy
        .mockbank
        .as_ref()
        .unwrap()
        .clock()
        .advance(Duration::from_secs(60));
    let refreshes = ksa
        .receiver
        .wait_for("entity.data.refresh.updated", 2)
        .await;
    let finished = refreshes
        .iter()
        .map(|r| r.json())
        .find(|r| r["payload"]["status"] == "FINISHED")
        .unwrap();
    let refresh_sample = sample("entity.data.refresh.updated").unwrap();
    assert_eq!(shape_diff(&refresh_sample, &finished), Vec::<String>::new());

    for (path, name, data) in [
        ("down", "bank.availability.updated-disabled", false),
        ("up", "bank.availability.updated-enabled", true),
    ] {
        ksa.post(
            &format!("/_mockbank/banks/LEA1_SAMAOB_SAU/{path}"),
            json!({}),
        )
        .await;
        let n = if data { 2 } else { 1 };
        let sent = ksa.receiver.wait_for("bank.availability.updated", n).await[n - 1].json();
        let recorded = sample(name).unwrap();
        assert_eq!(shape_diff(&recorded, &sent), Vec::<String>::new());
        assert_eq!(sent["payload"], recorded["payload"], "{name}");
        assert_eq!(sent["message"], recorded["message"]);
    }
}

/// Where a recorded null may be a value in the Mockbank's answer, and why.
const RECORDED_NULLS: &str =
    "the recorded credit obligations are of a user without loans or cards (Lean answers null there); \
     the Mockbank's multi_account_user has both";

fn recorded() -> Value {
    serde_json::from_str(include_str!("fixtures/ksa-recorded.json")).unwrap()
}

#[tokio::test]
async fn ksa_insights_have_the_shapes_of_leans_ksa_collection() {
    let fixtures = recorded();
    let ksa = Ksa::start("mockbank-ksa").await;
    let entity = ksa.link("multi_account_user").await;
    let examples = fixtures["insights"].as_object().unwrap();
    assert_eq!(examples.len(), 4);
    for (path, recorded) in examples {
        let answer = ksa
            .ok(&format!(
                "/insights/v2/{path}?entity_id={entity}&async=false"
            ))
            .await;
        let mut diff = shape_diff(recorded, &answer);
        if path == "liabilities/credit-obligations" {
            // RECORDED_NULLS says why.
            diff.retain(|d| !d.contains(": recorded null, got "));
        }
        assert_eq!(diff, Vec::<String>::new(), "{path} ({RECORDED_NULLS})");
        assert_eq!(answer["type"], recorded["type"], "{path}");
    }
}

#[tokio::test]
async fn ksa_data_answers_have_the_shapes_of_leans_ksa_collection() {
    let fixtures = recorded();
    let ksa = Ksa::start("mockbank-ksa").await;
    let entity = ksa.link("no_otp_user").await;
    let accounts = ksa
        .ok(&format!("/data/v2/accounts?entity_id={entity}"))
        .await;
    let account = accounts["data"]["accounts"][0]["account_id"]
        .as_str()
        .unwrap();
    let examples = fixtures["data"].as_object().unwrap();
    assert_eq!(examples.len(), 6);
    let mut problems = Vec::new();
    for (path, recorded) in examples {
        let path = path.replace("{account_id}", account);
        let answer = ksa.ok(&format!("/{path}?entity_id={entity}")).await;
        problems.extend(
            shape_diff(recorded, &answer)
                .into_iter()
                .map(|d| format!("{path}: {d}")),
        );
    }
    assert_eq!(problems, Vec::<String>::new());
}

#[test]
fn an_unknown_region_is_refused_naming_the_key_or_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qatar.toml");
    std::fs::write(&path, "[mockbank]\nregion = \"qatar\"\n").unwrap();
    let (code, _, stderr) =
        crate::support::run_binary(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("mockbank.region"), "{stderr}");
    assert!(stderr.contains("\"uae\", \"ksa\""), "{stderr}");
    let (code, _, stderr) = crate::support::run_binary(&["mockbank", "--region", "qatar"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--region"), "{stderr}");
}

/// Opens a `connect` session from `region`'s scripts on `mockbank`'s Link
/// page: the bank identifiers it lists, or the refusal's status and text.
async fn session_banks(mockbank: &Ksa, region: &str) -> Result<Vec<String>, (u16, String)> {
    let base = format!("http://{}", mockbank.proxy.mockbank_addr.unwrap());
    let client = &mockbank.client;
    let customer = send(
        client,
        post_json(format!("{base}/_mockbank/link/customer"), json!({})),
    )
    .await
    .json();
    let opened = send(
        client,
        post_json(
            format!("{base}/link/v1/sessions"),
            json!({
                "generation": "v2", "region": region, "method": "connect",
                "app_token": "mockbank-app-token",
                "customer_id": customer["customer_id"],
                "access_token": customer["access_token"],
                "permissions": ["identity", "accounts", "balance", "transactions"],
            }),
        ),
    )
    .await;
    if opened.status != 201 {
        return Err((opened.status.as_u16(), opened.text()));
    }
    let id = opened.json()["session_id"].as_str().unwrap().to_string();
    let view = crate::support::get(client, &format!("{base}/link/v1/sessions/{id}")).await;
    assert_eq!(view.status, 200, "{:?}", view.json());
    Ok(view.json()["banks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["identifier"].as_str().unwrap().to_string())
        .collect())
}

#[tokio::test]
async fn link_sessions_follow_the_mockbanks_region_and_the_other_regions_scripts_are_refused() {
    let ksa = Ksa::start("mockbank-ksa").await;
    let expected: Vec<String> = Region::Ksa
        .banks()
        .iter()
        .map(|b| b.identifier.to_string())
        .collect();
    let sa = session_banks(&ksa, "sa")
        .await
        .expect("a KSA session opens");
    assert_eq!(sa, expected);
    assert_eq!(sa[0], "LEA1_SAMAOB_SAU");
    let (status, why) = session_banks(&ksa, "ae").await.expect_err("refused");
    assert_eq!(status, 400, "{why}");
    for needle in ["region", r#"mockbank.region = \"ksa\""#, "/sa/"] {
        assert!(why.contains(needle), "{needle} in {why}");
    }

    let uae = Ksa::start("mockbank").await;
    let ae = session_banks(&uae, "ae")
        .await
        .expect("a UAE session opens");
    assert!(ae.iter().all(|b| b.ends_with("_UAE")), "{ae:?}");
    let (status, why) = session_banks(&uae, "sa").await.expect_err("refused");
    assert_eq!(status, 400, "{why}");
    assert!(why.contains("/ae/"), "{why}");

    // Each boilerplate page offers its own region's scripts only.
    for (mockbank, own, other) in [(&ksa, "/sa/", "/ae/"), (&uae, "/ae/", "/sa/")] {
        let base = format!("http://{}", mockbank.proxy.mockbank_addr.unwrap());
        let page = crate::support::get(&mockbank.client, &format!("{base}/")).await;
        assert!(page.text().contains(own), "{own}");
        assert!(!page.text().contains(other), "no {other} script offered");
    }
}

#[tokio::test]
async fn a_ksa_mockbanks_pages_start_on_ksa_and_its_permissions_are_the_nine_of_data() {
    let ksa = Ksa::start("mockbank-ksa").await;
    let base = format!("http://{}", ksa.proxy.mockbank_addr.unwrap());
    let page = crate::support::get(&ksa.client, &format!("{base}/")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text()
            .contains(r#"value="/link/loader/prod/sa/latest/lean-link-loader.min.js" selected"#),
        "the boilerplate page starts on the KSA loader"
    );
    let customer = send(
        &ksa.client,
        post_json(format!("{base}/_mockbank/link/customer"), json!({})),
    )
    .await
    .json();
    let open = |permissions: Value| {
        let (client, base, customer) = (&ksa.client, base.clone(), customer.clone());
        async move {
            send(
                client,
                post_json(
                    format!("{base}/link/v1/sessions"),
                    json!({
                        "generation": "v2", "region": "sa", "method": "connect",
                        "app_token": "mockbank-app-token",
                        "customer_id": customer["customer_id"],
                        "access_token": customer["access_token"],
                        "permissions": permissions,
                    }),
                ),
            )
            .await
        }
    };
    let refused = open(json!(["identity", "payments"])).await;
    assert_eq!(refused.status, 400, "{:?}", refused.json());
    assert!(refused.text().contains("payments"), "{}", refused.text());
    let opened = open(json!(["identity", "accounts", "beneficiaries"])).await;
    assert_eq!(opened.status, 201, "{:?}", opened.json());
    let id = opened.json()["session_id"].as_str().unwrap().to_string();
    let app = crate::support::get(&ksa.client, &format!("{base}/link/app?session={id}")).await;
    assert_eq!(app.status, 200);
    assert!(app.text().contains(r#"data-region="sa""#), "{}", app.text());
    let unknown = crate::support::get(&ksa.client, &format!("{base}/link/app")).await;
    assert!(unknown.text().contains(r#"data-region="ae""#));
}
