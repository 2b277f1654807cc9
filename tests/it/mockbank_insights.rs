//! The Mockbank's insights and verifications through the proxy: income,
//! expenses and cash flows (and in KSA obligations, employment and cash
//! balances) add up against the transactions the data API shows, in both
//! regions, async and after a reconnect like data calls; account and name
//! verifications agree with the accounts and identity the data API shows, and
//! mismatch when they should.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    h1_client, link_entity, post_json, send, HttpClient, Observed, Proxy, Receiver,
};
use leanproxy::mockbank::Region;

struct Flow {
    proxy: Proxy,
    client: HttpClient,
    receiver: Receiver,
}

impl Flow {
    async fn start() -> Flow {
        Flow::start_in(Region::Uae).await
    }

    async fn start_in(region: Region) -> Flow {
        let receiver = Receiver::start(0).await;
        let proxy = Proxy::start(&format!(
            "[mockbank]\nwebhook_url = \"{}\"\nregion = \"{}\"\n",
            receiver.url(),
            region.name()
        ))
        .await;
        proxy.mockbank.as_ref().unwrap().clock().pause();
        Flow {
            proxy,
            client: h1_client(),
            receiver,
        }
    }

    fn advance(&self, by: Duration) {
        self.proxy.mockbank.as_ref().unwrap().clock().advance(by);
    }

    fn user(&self, username: &str) -> leanproxy::mockbank::TestUser {
        let users = self.proxy.mockbank.as_ref().unwrap().users();
        users
            .iter()
            .find(|u| u.username == username)
            .unwrap()
            .clone()
    }

    async fn link(&self, username: &str) -> String {
        let password = self.user(username).password;
        link_entity(
            &self.client,
            &self.proxy.url(""),
            &format!("app-{username}"),
            username,
            &password,
            Some("1111"),
        )
        .await
    }

    async fn get(&self, path: &str) -> Observed {
        crate::support::get(&self.client, &self.proxy.url(path)).await
    }

    async fn post(&self, path: &str, body: Value) -> Observed {
        send(&self.client, post_json(self.proxy.url(path), body)).await
    }

    async fn ok(&self, path: &str) -> Value {
        let answer = self.get(path).await;
        assert_eq!(answer.status, 200, "{path}: {:?}", answer.json());
        answer.json()
    }
}

/// An amount as fils, so sums are exact.
fn fils(v: &Value) -> i64 {
    (v.as_f64().unwrap_or_else(|| panic!("an amount: {v}")) * 100.0).round() as i64
}

/// A sum and a count.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    fils: i64,
    count: usize,
}

impl Tally {
    fn add(&mut self, fils: i64) {
        self.fils += fils;
        self.count += 1;
    }

    fn of(total: &Value) -> Tally {
        Tally {
            fils: fils(&total["amount"]),
            count: total["count"].as_u64().unwrap() as usize,
        }
    }

    /// A total whose `amount` is `{currency, amount}` (the KSA insights').
    fn priced(total: &Value) -> Tally {
        Tally::of(&json!({"amount": total["amount"]["amount"], "count": total["count"]}))
    }
}

/// What the data API's transactions add up to, by the rules the README gives.
#[derive(Debug, Default)]
struct Sums {
    salary: Tally,
    non_salary: Tally,
    income_ids: BTreeSet<String>,
    expenses: Tally,
    expenses_by_month: BTreeMap<String, Tally>,
    inflow: Tally,
    outflow: Tally,
    /// Debits of `transaction_type: LOAN_REPAYMENT`.
    loans: Tally,
    /// Debits and credits of credit cards.
    card_spending: Tally,
    card_repayments: Tally,
    /// Debits of current and savings accounts other than loans and transfers,
    /// by merchant: (month, fils) each.
    by_merchant: BTreeMap<String, Vec<(String, i64)>>,
    /// The closing balance of the current and savings accounts.
    asset_closing: i64,
    /// The salary credits' booking days, oldest first.
    salary_days: Vec<String>,
}

impl Sums {
    /// The debits to merchants met in two months or more, as KSA's
    /// non-credit obligations count them.
    fn recurring(&self) -> Tally {
        let mut tally = Tally::default();
        for entries in self.by_merchant.values() {
            let months: BTreeSet<&String> = entries.iter().map(|(m, _)| m).collect();
            if months.len() >= 2 {
                entries.iter().for_each(|(_, fils)| tally.add(*fils));
            }
        }
        tally
    }
}

/// Reads every transaction of the entity's accounts from the data API.
async fn sums(flow: &Flow, entity: &str) -> Sums {
    let accounts = flow
        .ok(&format!("/data/v2/accounts?entity_id={entity}"))
        .await;
    let mut sums = Sums::default();
    for account in accounts["data"]["accounts"].as_array().unwrap() {
        let card = account["account_sub_type"] == "CREDIT";
        let id = account["account_id"].as_str().unwrap();
        let list = flow
            .ok(&format!(
                "/data/v2/accounts/{id}/transactions?entity_id={entity}&size=1000"
            ))
            .await;
        let transactions = list["data"]["transactions"].as_array().unwrap();
        if let (false, Some(newest)) = (card, transactions.iter().find(|t| t["index"] == 0)) {
            let sign = if newest["balance"]["credit_debit_indicator"] == "DEBIT" {
                -1
            } else {
                1
            };
            sums.asset_closing += sign * fils(&newest["balance"]["amount"]["amount"]);
        }
        for t in transactions {
            let amount = fils(&t["amount"]["amount"]);
            let day = t["booking_date_time"].as_str().unwrap()[..10].to_string();
            let month = day[..7].to_string();
            let kind = t["transaction_type"].as_str().unwrap();
            let debit = t["credit_debit_indicator"] == "DEBIT";
            match (card, debit, kind) {
                (true, true, _) => sums.card_spending.add(amount),
                (true, false, _) => sums.card_repayments.add(amount),
                (false, true, "LOAN_REPAYMENT") => sums.loans.add(amount),
                (false, true, "TRANSFER") => {}
                (false, true, _) => sums
                    .by_merchant
                    .entry(
                        t["merchant_details"]["merchant_name"]
                            .as_str()
                            .unwrap()
                            .to_string(),
                    )
                    .or_default()
                    .push((month.clone(), amount)),
                (false, false, "SALARY") => sums.salary_days.push(day),
                _ => {}
            }
            if t["credit_debit_indicator"] == "CREDIT" {
                if !card {
                    sums.inflow.add(amount);
                    match kind {
                        "SALARY" => sums.salary.add(amount),
                        "TRANSFER" => continue,
                        _ => sums.non_salary.add(amount),
                    }
                    sums.income_ids
                        .insert(t["transaction_id"].as_str().unwrap().to_string());
                }
            } else {
                sums.expenses.add(amount);
                sums.expenses_by_month.entry(month).or_default().add(amount);
                if !card {
                    sums.outflow.add(amount);
                }
            }
        }
    }
    sums.salary_days.sort();
    sums
}

fn month_key(m: &Value) -> String {
    format!("{}-{:02}", m["year"], m["month"].as_u64().unwrap())
}

#[tokio::test]
async fn insights_add_up_against_the_transactions() {
    insights_add_up_in(Region::Uae).await;
}

#[tokio::test]
async fn insights_add_up_against_the_transactions_in_ksa() {
    insights_add_up_in(Region::Ksa).await;
}

async fn insights_add_up_in(region: Region) {
    let flow = Flow::start_in(region).await;
    let entity = flow.link("multi_account_user").await;
    let sums = sums(&flow, &entity).await;
    assert!(sums.salary.count > 0 && sums.non_salary.count > 0 && sums.expenses.count > 0);

    let income = flow
        .post(
            "/insights/v2/income",
            json!({"entity_id": entity, "income_type": "ALL"}),
        )
        .await
        .json();
    assert_eq!(income["status"], "OK");
    assert_eq!(income["type"], "income");
    let mut listed = BTreeSet::new();
    for (key, expected) in [("salary", sums.salary), ("non_salary", sums.non_salary)] {
        let group = &income["insights"][key];
        assert_eq!(Tally::of(&group["total"]), expected, "{key}");
        let monthly: i64 = group["monthly_totals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| fils(&m["amount"]))
            .sum();
        assert_eq!(monthly, expected.fils, "{key}: the months add up");
        for t in group["transactions"].as_array().unwrap() {
            listed.insert(t["transaction_id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        listed, sums.income_ids,
        "income lists the income transactions"
    );

    let expenses = flow
        .ok(&format!(
            "/insights/v2/expenses?entity_id={entity}&async=false"
        ))
        .await;
    let total = &expenses["insights"]["total"];
    assert_eq!(Tally::of(total), sums.expenses);
    let by_category: i64 = total["breakdown"][0]["breakdowns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| fils(&c["amount"]))
        .sum();
    assert_eq!(by_category, sums.expenses.fils, "the categories add up");
    let by_month: BTreeMap<String, Tally> = expenses["insights"]["monthly_totals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["count"] != 0)
        .map(|m| (month_key(m), Tally::of(m)))
        .collect();
    assert_eq!(by_month, sums.expenses_by_month);

    let flows = flow
        .ok(&format!(
            "/insights/v2/assets/cashflows?entity_id={entity}&async=false"
        ))
        .await;
    let total = &flows["insights"]["total"];
    let side = |key: &str| Tally {
        fils: fils(&total[key][0]["amount"]["amount"]),
        count: total[key][0]["count"].as_u64().unwrap() as usize,
    };
    assert_eq!(side("inwards"), sums.inflow);
    assert_eq!(side("outwards"), sums.outflow);
    assert_eq!(
        fils(&total["net"]["overall_amount"]["amount"]),
        sums.inflow.fils - sums.outflow.fils
    );

    // Async, as data calls: PENDING, `results.ready`, then the same numbers.
    let pending = flow
        .ok(&format!(
            "/insights/v2/expenses?entity_id={entity}&async=true"
        ))
        .await;
    assert_eq!(pending["status"], "PENDING");
    let results_id = pending["results_id"].as_str().unwrap().to_string();
    flow.advance(Duration::from_secs(2));
    let ready = flow.receiver.wait_for("results.ready", 1).await;
    assert_eq!(ready[0].json()["payload"]["id"], results_id);
    let results = flow.ok(&format!("/data/v2/results/{results_id}")).await;
    assert_eq!(results["type"], "expenses");
    assert_eq!(results["insights"], expenses["insights"]);
    assert_eq!(
        expenses["insights"]["currency"],
        region.currency(),
        "amounts in the region's currency"
    );
    ksa_only_insights(&flow, region, &entity, &sums).await;
}

/// The KSA-only insights add up against the same transactions; a UAE
/// Mockbank does not serve them, as Lean's UAE sandbox does not.
async fn ksa_only_insights(flow: &Flow, region: Region, entity: &str, sums: &Sums) {
    let path = |p: &str| format!("/insights/v2/{p}?entity_id={entity}&async=false");
    if region == Region::Uae {
        let absent = flow.get(&path("liabilities/credit-obligations")).await;
        assert_eq!(absent.status, 404);
        assert_eq!(absent.json()["status"], "INVALID_URL");
        return;
    }
    assert!(sums.loans.count > 0 && sums.card_spending.count > 0);
    let credit = flow.ok(&path("liabilities/credit-obligations")).await;
    assert_eq!(credit["type"], "credits-obligations");
    let total = &credit["insights"]["total"];
    assert_eq!(Tally::priced(&total["loan_repayments"]), sums.loans);
    assert_eq!(
        Tally::priced(&total["credit_cards_spending"]),
        sums.card_spending
    );
    assert_eq!(
        Tally::priced(&total["credit_cards_repayments"]),
        sums.card_repayments
    );
    assert_eq!(total["loan_repayments"]["amount"]["currency"], "SAR");

    let other = flow.ok(&path("liabilities/non-credit-obligations")).await;
    assert_eq!(other["type"], "non-credits-obligations");
    let total = &other["insights"]["total"];
    let recurring = sums.recurring();
    assert!(recurring.count > 0);
    assert_eq!(Tally::priced(total), recurring);
    let parts: i64 = total["breakdown"][0]["breakdowns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| fils(&p["amount"]["amount"]))
        .sum();
    assert_eq!(parts, recurring.fils, "the merchants add up");

    let employment = flow.ok(&path("income/employment")).await;
    let details = &employment["insights"]["employment_details"];
    assert_eq!(details.as_array().unwrap().len(), 1, "{employment}");
    assert_eq!(
        details[0]["first_salary_date"],
        format!("{}T00:00:00Z", sums.salary_days[0])
    );

    let balances = flow.ok(&path("assets/balances")).await;
    let total = &balances["insights"]["total"];
    assert_eq!(
        fils(&total["current_balance"]["amount"]),
        sums.asset_closing
    );
    let contributed: i64 = balances["insights"]["monthly_totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| fils(&m["contribution_amount"]["amount"]))
        .sum();
    assert_eq!(
        contributed, sums.inflow.fils,
        "a month's contribution is its credits"
    );
}

#[tokio::test]
async fn an_insight_waits_for_the_reconnect_like_a_data_call() {
    let flow = Flow::start().await;
    let entity = flow.link("otp_user").await;
    flow.advance(Duration::from_secs(11 * 60));
    let body = json!({"entity_id": entity});
    let expired = flow.post("/insights/v2/income", body.clone()).await.json();
    assert_eq!(expired["status"], "RECONNECT_REQUIRED");
    let reconnect_id = expired["results_id"].as_str().unwrap().to_string();
    let reconnected = flow
        .post(
            "/_mockbank/link/reconnect",
            json!({"reconnect_id": reconnect_id, "otp": "1111"}),
        )
        .await;
    assert_eq!(reconnected.status, 200, "{:?}", reconnected.json());
    flow.receiver.wait_for("results.ready", 1).await;
    let results = flow.ok(&format!("/data/v2/results/{reconnect_id}")).await;
    assert_eq!(results["type"], "income");
    let now = flow.post("/insights/v2/income", body).await.json();
    assert_eq!(results["insights"], now["insights"]);
}

#[tokio::test]
async fn verifications_agree_with_the_data_api_and_mismatch_when_they_should() {
    verifications_in(Region::Uae).await;
}

#[tokio::test]
async fn ksa_verifications_agree_with_the_data_api_and_mismatch_when_they_should() {
    verifications_in(Region::Ksa).await;
}

async fn verifications_in(region: Region) {
    let flow = Flow::start_in(region).await;
    let country = region.country();
    // Another IBAN of the country (Lean's documented KSA sample account for
    // SA), and a scenario account (zeros ending in 03: closed).
    let (unknown_iban, iban_length) = match region {
        Region::Uae => ("AE070331234567890123456", 23),
        Region::Ksa => ("SA0380000000608010167519", 24),
    };
    let closed_iban = format!("{country}07{}03", "0".repeat(iban_length - 6));
    let entity = flow.link("no_otp_user").await;
    let accounts = flow
        .ok(&format!("/data/v2/accounts?entity_id={entity}"))
        .await;
    let account = &accounts["data"]["accounts"][0];
    let iban = account["account"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["scheme_name"] == "IBAN")
        .unwrap()["identification"]
        .as_str()
        .unwrap()
        .to_string();
    let identity = &flow
        .ok(&format!("/data/v2/identity?entity_id={entity}"))
        .await["data"]["identities"][0];
    let full_name = identity["full_legal_name"].as_str().unwrap().to_string();
    assert_eq!(account["account_holder_name"], full_name.as_str());

    let verify = |iban: String, ids: Value| {
        let body = json!({
            "country_code": country,
            "type": "PERSONAL",
            "account_details": {"type": "IBAN", "value": iban},
            "identifications": ids,
        });
        flow.post("/verifications/v1/accounts", body)
    };
    let matching = verify(
        iban.clone(),
        json!([{"type": "FULL_NAME", "value": full_name.to_uppercase()}]),
    )
    .await
    .json();
    assert_eq!(matching["status"], "OK");
    let v = &matching["verifications"];
    assert_eq!(v["account_ownership_verified"], true);
    assert_eq!(v["account_status"], "ACTIVE");
    assert_eq!(v["account_holder_name"], full_name.as_str());

    let by_id = verify(
        iban.clone(),
        // KSA's identity has the id in `party_number` (`national_id` null).
        json!([{"type": "NATIONAL_ID", "value": match region {
            Region::Uae => &identity["national_id"],
            Region::Ksa => &identity["party_number"],
        }}]),
    )
    .await
    .json();
    assert_eq!(by_id["verifications"]["account_ownership_verified"], true);

    let other = verify(
        iban.clone(),
        json!([{"type": "FULL_NAME", "value": "Someone Else"}]),
    )
    .await
    .json();
    let v = &other["verifications"];
    assert_eq!(v["account_ownership_verified"], false);
    assert_eq!(v["account_status"], "ACTIVE");
    let masked = v["account_holder_name"].as_str().unwrap();
    assert!(
        masked.contains("****") && !masked.contains(&full_name),
        "{masked}"
    );

    let unknown = verify(
        unknown_iban.into(),
        json!([{"type": "FULL_NAME", "value": full_name}]),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["status"], "DATA_NOT_FOUND");

    let closed = verify(
        closed_iban.clone(),
        json!([{"type": "FULL_NAME", "value": "Closed Holder"}]),
    )
    .await
    .json();
    assert_eq!(closed["verifications"]["account_status"], "CLOSED");
    assert_eq!(closed["verifications"]["account_ownership_verified"], false);

    let maintenance = flow.user("maintenance_user");
    let down = verify(
        maintenance.accounts[0].iban.clone(),
        json!([{"type": "FULL_NAME", "value": maintenance.identity.full_name}]),
    )
    .await
    .json();
    assert_eq!(down["status"], "FAILED");
    assert_eq!(down["status_detail"]["granular_status_code"], "BANK_ISSUE");

    // Name verification against the identity the data API shows.
    let name = |full_name: &str| {
        flow.post(
            "/insights/v1/name-verification",
            json!({"entity_id": entity, "full_name": full_name, "async": "false"}),
        )
    };
    let perfect = name(&full_name).await.json();
    assert_eq!(perfect["data"]["match_type"], "PERFECT_MATCH");
    assert_eq!(perfect["data"]["full_name_retrieved"], full_name.as_str());
    let words: Vec<&str> = full_name.split(' ').collect();
    let short = format!("{} {}", words[0], words[words.len() - 1]);
    assert_eq!(
        name(&short).await.json()["data"]["match_type"],
        "PARTIAL_MATCH"
    );
    assert_eq!(
        name("Someone Else").await.json()["data"]["match_type"],
        "NO_MATCH"
    );
}
