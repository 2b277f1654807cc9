//! Conformance with Lean's recordings: every request of Lean's Postman collection
//! (`../shared/lean-postman/`) that the Mockbank implements is sent to the Mockbank
//! once per recorded example, set up so that it should produce that example (valid
//! ids for a success, a malformed `entity_id` for "Bad Request", an unknown one for
//! "Entity not found", ...). The answer must have the example's status code and the
//! same JSON structure: keys and value types, recursively.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, Request};
use leanproxy::body;
use leanproxy::mockbank::{Behaviour, Mockbank};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{h1_client, send, HttpClient, Observed, Proxy};

const COLLECTION: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/lean-postman/Lean-API-UAE.postman_collection.json"
);

/// The Mockbank's default OAuth client.
const CLIENT_ID: &str = "mockbank-client-id";
const CLIENT_SECRET: &str = "mockbank-client-secret";

/// Fewer compared examples than this means the walk lost its way.
const MIN_COMPARED: usize = 25;

/// Known, deliberate differences: (example, JSON path, reason). A path covers its
/// subtree; a missing or extra key is at the key's own path; `HTTP status` is the
/// status code. Every entry must still be needed.
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "List Payouts › List Payouts",
        "$.content[].post_initiation_status",
        "the recorded list holds a FAILED payout, which has none; an accepted one is PROCESSED, as \"Get Payouts\" records",
    ),
    (
        "List Payouts › List Payouts",
        "$.content[].bank_transaction_reference",
        "likewise: a failed payout has no bank reference, an accepted one has, as \"Get Payouts\" records",
    ),
    (
        "List customers consents › List customers consents",
        "$.data[].consented_account",
        "the recorded list is Lean's documentation placeholder (every value \"string\") showing an authorised consent; one awaiting authorisation has no consented_account (null), as \"Get Consent Details By Id\" records",
    ),
    (
        "List customers consents › List customers consents",
        "$.data[].bank_identifier",
        "likewise: no bank until the customer authorises (null, as the consent details record)",
    ),
    (
        "List customers consents › List customers consents",
        "$.data[].control_parameters.max_cumulative_amount",
        "likewise: the placeholder shows 0; a consent without a cumulative limit has null, as \"Create AOF Consent\" and the consent details record",
    ),
    (
        "Get Results › Get results",
        "$.data.accounts[]",
        "recorded on Lean's KSA sandbox (no holder names or regional_data, null nickname); Mockbank answers results in the UAE shape of the original data call",
    ),
    (
        "Get Results › Get results",
        "$.data.page.sort",
        "recorded on Lean's KSA sandbox, whose page has no sort; UAE pages have it",
    ),
];

// ------------------------------------------------------------------ shapes

/// The JSON type of a value; integers and floats are both `number`.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The structure of one or more recorded values, merged.
#[derive(Default)]
struct Shape {
    /// Types seen.
    kinds: BTreeSet<&'static str>,
    /// Merged structure of all array elements seen (none: only empty arrays).
    items: Option<Box<Shape>>,
    /// Objects merged.
    objects: usize,
    /// Keys seen in those objects: in how many, and their merged structure.
    fields: BTreeMap<String, (usize, Shape)>,
}

impl Shape {
    fn add(&mut self, v: &Value) {
        self.kinds.insert(kind(v));
        match v {
            Value::Array(items) => {
                for item in items {
                    self.items.get_or_insert_with(Box::default).add(item);
                }
            }
            Value::Object(map) => {
                self.objects += 1;
                for (key, value) in map {
                    let (count, shape) = self.fields.entry(key.clone()).or_default();
                    *count += 1;
                    shape.add(value);
                }
            }
            _ => {}
        }
    }

    fn check(&self, actual: &Value, path: &str, out: &mut Vec<String>) {
        let got = kind(actual);
        if !self.kinds.contains(got) {
            let recorded: Vec<&str> = self.kinds.iter().copied().collect();
            out.push(format!(
                "{path}: recorded {}, got {got}",
                recorded.join(" or ")
            ));
            return;
        }
        match actual {
            Value::Array(items) => {
                if let Some(shape) = &self.items {
                    let path = format!("{path}[]");
                    for item in items {
                        shape.check(item, &path, out);
                    }
                }
            }
            Value::Object(map) => {
                for (key, (count, _)) in &self.fields {
                    if *count == self.objects && !map.contains_key(key) {
                        out.push(format!("{path}: missing key \"{key}\""));
                    }
                }
                for (key, value) in map {
                    match self.fields.get(key) {
                        Some((_, shape)) => shape.check(value, &format!("{path}.{key}"), out),
                        None => out.push(format!("{path}: extra key \"{key}\"")),
                    }
                }
            }
            _ => {}
        }
    }
}

/// Where `actual` does not have the structure of `recorded`, by JSON path. Array
/// elements are checked against the merged structure of all recorded elements (a
/// key missing from some recorded elements is optional); an empty recorded array
/// accepts any array.
pub(crate) fn shape_diff(recorded: &Value, actual: &Value) -> Vec<String> {
    let mut shape = Shape::default();
    shape.add(recorded);
    let mut out = Vec::new();
    shape.check(actual, "$", &mut out);
    let mut seen = BTreeSet::new();
    out.retain(|m| seen.insert(m.clone()));
    out
}

// ------------------------------------------------------------------ the collection

/// A request of the collection, with its folder path.
struct Item<'a> {
    folder: String,
    name: String,
    request: &'a Value,
    examples: &'a [Value],
}

fn walk<'a>(items: &'a [Value], folder: &str, out: &mut Vec<Item<'a>>) {
    for item in items {
        let name = item["name"].as_str().unwrap_or_default().to_string();
        if let Some(children) = item["item"].as_array() {
            let folder = if folder.is_empty() {
                name
            } else {
                format!("{folder}/{name}")
            };
            walk(children, &folder, out);
        } else {
            out.push(Item {
                folder: folder.to_string(),
                name,
                request: &item["request"],
                examples: item["response"].as_array().map_or(&[], Vec::as_slice),
            });
        }
    }
}

/// `{{name}}` replaced from `vars`; an unknown name is an error.
fn subst(text: &str, vars: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let len = rest[start..]
            .find("}}")
            .ok_or_else(|| format!("unclosed {{{{ in {text:?}"))?;
        let name = &rest[start + 2..start + len];
        out.push_str(&rest[..start]);
        out.push_str(
            vars.get(name)
                .ok_or_else(|| format!("no value for {{{{{name}}}}}"))?,
        );
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A raw JSON body as Postman sends it: `//` comments (outside strings) are
/// removed (the collection's "Create Payment Intent" has one).
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '/' && chars.peek() == Some(&'/') {
            for rest in chars.by_ref() {
                if rest == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// The path of a Postman URL once its host (variable or literal) is dropped.
fn url_path(raw: &str) -> String {
    let mut url = raw;
    for host in ["{{baseUrl}}", "{{auth_baseUrl}}", "{{sandbox_host}}"] {
        url = url.strip_prefix(host).unwrap_or(url);
    }
    if let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    {
        url = rest.find('/').map_or("", |i| &rest[i..]);
    }
    let path = url.split('?').next().unwrap_or_default();
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

/// Whether the Mockbank implements `method path` (from the collection, with its
/// `{{variables}}` and `:variables`).
fn implemented(method: &str, path: &str) -> bool {
    // verifications and insights
    if matches!(
        (method, path),
        ("POST", "/verifications/v1/accounts")
            | ("POST", "/insights/v1/name-verification")
            | ("POST", "/insights/v2/income")
            | ("GET", "/insights/v2/expenses")
            | ("GET", "/insights/v2/assets/cashflows")
    ) {
        return true;
    }
    let data = [
        "/data/v2/accounts",
        "/data/v2/identity",
        "/data/v2/refreshes",
        "/data/v2/results/",
    ];
    // payments: intents, payments, destinations
    let payments = path.starts_with("/payments/v1/")
        || path.starts_with("/consents/")
        || path.starts_with("/payouts/");
    match method {
        "POST" => {
            matches!(
                path,
                "/oauth2/token" | "/customers/v1/" | "/customers/v1" | "/data/v2/refreshes"
            ) || matches!(
                path,
                "/payments/v1/intents"
                    | "/payments/v1/destinations"
                    | "/consents/account-on-file"
                    | "/payments/account-on-file"
                    | "/payouts/refunds"
                    | "/payouts/v1/payment"
                    | "/payouts/v1/payment/destinations"
            )
        }
        "GET" if payments => true,
        "GET" | "DELETE" if path.contains("/payment-sources") => true,
        "PUT" => path == "/payouts/refunds",
        "GET" => {
            path.starts_with("/customers/v1")
                || path.starts_with("/banks/v1")
                || data.iter().any(|p| path.starts_with(p))
        }
        _ => false,
    }
}

/// A request to send.
struct Call {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    /// Content type and body.
    body: Option<(&'static str, String)>,
}

impl Call {
    /// Builds `request` with `vars`: `{{variables}}` and `:path_variables` by
    /// name; `query:<key>` in `vars` forces that query parameter, which replaces
    /// ids hard-coded in query strings (`entity_id=8a78e977-...`).
    fn build(request: &Value, vars: &HashMap<String, String>) -> Result<Call, String> {
        let method = request["method"].as_str().unwrap_or("GET");
        let raw = request["url"]["raw"]
            .as_str()
            .or_else(|| request["url"].as_str())
            .unwrap_or_default();
        let path = url_path(raw)
            .split('/')
            // The collection writes `customer_id` where it means the variable
            // (`/customers/v1/customer_id/payment-sources`).
            .map(|segment| {
                if segment == "customer_id" {
                    "{{customer_id}}"
                } else {
                    segment
                }
            })
            .map(|segment| match segment.strip_prefix(':') {
                Some(name) => vars
                    .get(name)
                    .cloned()
                    .ok_or_else(|| format!("no value for path variable :{name}")),
                None => subst(segment, vars),
            })
            .collect::<Result<Vec<_>, _>>()?
            .join("/");
        let query = raw
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let value = match vars.get(&format!("query:{key}")) {
                    Some(forced) => forced.clone(),
                    None => subst(value, vars)?,
                };
                Ok((key.to_string(), value))
            })
            .collect::<Result<_, String>>()?;
        let body = match request["body"]["mode"].as_str() {
            Some("raw") => Some((
                "application/json",
                without_comments(&subst(
                    request["body"]["raw"].as_str().unwrap_or_default(),
                    vars,
                )?),
            )),
            Some("urlencoded") => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                for field in request["body"]["urlencoded"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if field["disabled"].as_bool() != Some(true) {
                        form.append_pair(
                            field["key"].as_str().unwrap_or_default(),
                            &subst(field["value"].as_str().unwrap_or_default(), vars)?,
                        );
                    }
                }
                Some(("application/x-www-form-urlencoded", form.finish()))
            }
            _ => None,
        };
        Ok(Call {
            method: method.parse().map_err(|_| format!("bad method {method}"))?,
            path,
            query,
            body,
        })
    }

    fn uri(&self, base: SocketAddr) -> String {
        if self.query.is_empty() {
            format!("http://{base}{}", self.path)
        } else {
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&self.query)
                .finish();
            format!("http://{base}{}?{query}", self.path)
        }
    }
}

// ------------------------------------------------------------------ set-up

/// The Mockbank and the ids the walk substitutes.
struct Bank {
    client: HttpClient,
    addr: SocketAddr,
    token: String,
    vars: HashMap<String, String>,
    /// (entity, its accounts): data calls are compared for each.
    data_entities: Vec<(String, Vec<String>)>,
    /// An entity no refresh was triggered for.
    fresh_entity: String,
    /// An entity whose consent was expired by the control API.
    consent_expired_entity: String,
    /// A payout's payment (the collection's `{{payment_id}}` under Payouts).
    payout_payment: String,
    today: chrono::NaiveDate,
}

impl Bank {
    async fn send(&self, call: &Call) -> Observed {
        let mut req = Request::builder()
            .method(call.method.clone())
            .uri(call.uri(self.addr))
            .header("accept", "application/json");
        if call.path != "/oauth2/token" {
            req = req.header("authorization", format!("Bearer {}", self.token));
        }
        let req = match &call.body {
            Some((content_type, text)) => req
                .header("content-type", *content_type)
                .body(body::full(text.clone())),
            None => req.body(body::empty()),
        };
        send(&self.client, req.unwrap()).await
    }

    /// A set-up call that must succeed; its JSON answer.
    async fn expect_ok(&self, method: Method, path: &str, body: Value) -> Value {
        self.expect_ok_status(200, method, path, body).await
    }

    /// A set-up call that must answer `status`; its JSON answer.
    async fn expect_ok_status(
        &self,
        status: u16,
        method: Method,
        path: &str,
        body: Value,
    ) -> Value {
        let call = Call {
            method: method.clone(),
            path: path.to_string(),
            query: Vec::new(),
            body: (method == Method::POST).then(|| ("application/json", body.to_string())),
        };
        let answer = self.send(&call).await;
        assert_eq!(
            answer.status,
            status,
            "set-up {method} {path}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        answer.json()
    }

    async fn link(&self, customer: &str, mockbank: &Mockbank, behaviour: Behaviour) -> Value {
        let user = mockbank
            .users()
            .iter()
            .find(|u| u.behaviour == behaviour)
            .expect("seeded test user");
        self.expect_ok(
            Method::POST,
            "/_mockbank/link/connect",
            json!({"customer_id": customer, "username": user.username, "password": user.password, "otp": "1111"}),
        )
        .await
    }

    /// Creates a customer, links test users and collects the ids to substitute.
    async fn set_up(proxy: &Proxy, defaults: &HashMap<String, String>) -> Bank {
        let mockbank = proxy.mockbank.as_ref().expect("embedded Mockbank");
        // Paused: a refresh stays pending, async results wait for `advance`.
        mockbank.clock().pause();
        let mut bank = Bank {
            client: h1_client(),
            addr: proxy.mockbank_addr.expect("Mockbank listener"),
            token: String::new(),
            vars: defaults.clone(),
            data_entities: Vec::new(),
            fresh_entity: String::new(),
            consent_expired_entity: String::new(),
            payout_payment: String::new(),
            today: mockbank.clock().now().date_naive(),
        };
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("grant_type", "client_credentials"),
                ("scope", "api"),
            ])
            .finish();
        let token = Call {
            method: Method::POST,
            path: "/oauth2/token".into(),
            query: Vec::new(),
            body: Some(("application/x-www-form-urlencoded", form)),
        };
        let token = bank.send(&token).await.json();
        bank.token = token["access_token"].as_str().expect("api token").into();

        let app_user_id = bank.vars["app_user_id"].clone();
        let customer = bank
            .expect_ok(
                Method::POST,
                "/customers/v1/",
                json!({"app_user_id": app_user_id}),
            )
            .await;
        let customer_id = customer["customer_id"].as_str().unwrap().to_string();
        for behaviour in [Behaviour::MultiAccount, Behaviour::NoOtp] {
            let entity = bank.link(&customer_id, mockbank, behaviour).await;
            let user = mockbank
                .users()
                .iter()
                .find(|u| u.behaviour == behaviour)
                .unwrap();
            bank.data_entities.push((
                entity["id"].as_str().unwrap().to_string(),
                user.accounts.iter().map(|a| a.id.to_string()).collect(),
            ));
        }
        let other = bank
            .expect_ok(
                Method::POST,
                "/customers/v1/",
                json!({"app_user_id": format!("{app_user_id}_refresh")}),
            )
            .await;
        let fresh = bank
            .link(
                other["customer_id"].as_str().unwrap(),
                mockbank,
                Behaviour::NoOtp,
            )
            .await;
        bank.fresh_entity = fresh["id"].as_str().unwrap().to_string();
        let revoked = bank
            .link(
                other["customer_id"].as_str().unwrap(),
                mockbank,
                Behaviour::MultiAccount,
            )
            .await;
        bank.consent_expired_entity = revoked["id"].as_str().unwrap().to_string();
        bank.expect_ok(
            Method::POST,
            &format!(
                "/_mockbank/entities/{}/consent/expire",
                bank.consent_expired_entity
            ),
            json!({}),
        )
        .await;

        let (entity_id, accounts) = bank.data_entities[0].clone();
        let pending = bank
            .expect_ok(
                Method::GET,
                &format!("/data/v2/accounts?entity_id={entity_id}&async=true"),
                Value::Null,
            )
            .await;
        assert_eq!(pending["status"], "PENDING", "async=true answers PENDING");
        mockbank.clock().advance(Duration::from_secs(60));
        let refresh = bank
            .expect_ok(
                Method::POST,
                "/data/v2/refreshes",
                json!({"entity_id": entity_id}),
            )
            .await;

        let mut set = |key: &str, value: &str| {
            bank.vars.insert(key.to_string(), value.to_string());
        };
        set("baseUrl", "");
        set("auth_baseUrl", "");
        set("client_id", CLIENT_ID);
        set("client_secret", CLIENT_SECRET);
        set("customer_id", &customer_id);
        set("entity_id", &entity_id);
        set("query:entity_id", &entity_id);
        set("account_id", &accounts[0]);
        set("results_id", pending["results_id"].as_str().unwrap());
        set("refresh_id", refresh["refresh_id"].as_str().unwrap());

        // payments: an intent to the default destination, paid by a test user.
        let destinations = bank
            .expect_ok(Method::GET, "/payments/v1/destinations", Value::Null)
            .await;
        let destination = destinations[0]["id"].as_str().unwrap().to_string();
        let intent = bank
            .expect_ok(
                Method::POST,
                "/payments/v1/intents",
                json!({"amount": 25.5, "currency": "AED", "customer_id": customer_id, "payment_destination_id": destination}),
            )
            .await;
        let intent_id = intent["payment_intent_id"].as_str().unwrap().to_string();
        let payer = mockbank
            .users()
            .iter()
            .find(|u| u.behaviour == Behaviour::NoOtp)
            .unwrap();
        let payment = bank
            .expect_ok(
                Method::POST,
                "/_mockbank/payments",
                json!({"payment_intent_id": intent_id, "username": payer.username, "password": payer.password}),
            )
            .await;
        let source = bank
            .expect_ok(
                Method::POST,
                "/_mockbank/payment-sources",
                json!({"customer_id": customer_id, "username": payer.username, "password": payer.password}),
            )
            .await;
        let mut set = |key: &str, value: &str| {
            bank.vars.insert(key.to_string(), value.to_string());
        };
        set("payment_source_id", source["id"].as_str().unwrap());
        set("payment_destination_id", &destination);
        set("payment_reference", "IP-007");
        set("creditor_reference", "CR-007");
        set("destination_id", &destination);
        set("intent_id", &intent_id);
        set("payment_id", payment["id"].as_str().unwrap());
        set("payment_amount", "12.5");
        set("payment_description", "conformance payment");
        set("iban", "AE070331234567890123457");
        set("emirates_id", "784-1990-1234567-1");
        // An Account-on-File consent awaiting authorisation.
        let consent = bank
            .expect_ok(
                Method::POST,
                "/consents/account-on-file",
                json!({"customer_id": customer_id, "control_parameters": {"max_individual_amount": "5000"}}),
            )
            .await;
        bank.vars
            .insert("consent_id".into(), consent["id"].as_str().unwrap().into());
        // The payment settles, and a refund of part of it waits for approval.
        mockbank.clock().advance(Duration::from_secs(60));
        let refund = bank
            .expect_ok_status(
                201,
                Method::POST,
                "/payouts/refunds",
                json!([{"payment_id": bank.vars["payment_id"], "amount": 5, "currency": "AED", "reason_code": "CUSTOMER_REQUEST"}]),
            )
            .await;
        bank.vars.insert(
            "refund_id".into(),
            refund[0]["refund_id"].as_str().unwrap().into(),
        );
        // A payout, from the payment source's account to a payout destination.
        let payout_destination = bank
            .expect_ok(
                Method::POST,
                "/payouts/v1/payment/destinations",
                json!([{"name": "ABC CORP", "iban": "AE680030012312312312123", "bank_identifier": "MOCKBANK_UAE"}]),
            )
            .await;
        let payout_destination = payout_destination[0]["destination_id"]
            .as_str()
            .unwrap()
            .to_string();
        // Its own payment source: the collection deletes the other one first.
        let source = bank
            .expect_ok(
                Method::POST,
                "/_mockbank/payment-sources",
                json!({"customer_id": customer_id, "username": payer.username, "password": payer.password}),
            )
            .await;
        let payout_account = source["accounts"][0]["account_id"]
            .as_str()
            .unwrap()
            .to_string();
        let payout = bank
            .expect_ok(
                Method::POST,
                "/payouts/v1/payment",
                json!({"payment_details": [{"account_id": payout_account, "currency": "AED", "destination_details": [{"authorize_payment": true, "payment_destination_id": payout_destination, "amount": 16, "description": "test payment"}]}]}),
            )
            .await;
        let payout_intent = payout["payouts_payment_details"][0]["payment_intent_id"]
            .as_str()
            .unwrap()
            .to_string();
        let payout_payment = bank
            .expect_ok(
                Method::GET,
                &format!("/payouts/v1/intents/{payout_intent}"),
                Value::Null,
            )
            .await["payment"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        mockbank.clock().advance(Duration::from_secs(60));
        for (key, value) in [
            ("payout_account_id", payout_account),
            ("payout_destination_id", payout_destination),
            ("payment_intent_id", payout_intent),
        ] {
            bank.vars.insert(key.into(), value);
        }
        bank.payout_payment = payout_payment;
        bank
    }
}

// ------------------------------------------------------------------ examples

/// How to provoke a recorded example.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scenario {
    /// Valid ids.
    Success,
    /// A malformed `entity_id`.
    MalformedEntity,
    /// A well-formed `entity_id` the Mockbank does not know.
    UnknownEntity,
    /// An `account_id` not in the entity.
    UnknownAccount,
    /// A `results_id` never issued.
    UnknownResults,
    /// `app_user_id` of an existing customer.
    ExistingCustomer,
    /// A second refresh while one is pending.
    PendingRefresh,
    /// An entity whose consent was expired (`/_mockbank/entities/{id}/consent/expire`).
    ConsentExpired,
    // verifications and insights
    /// An IBAN no test user has (the recorded one is Lean's).
    UnknownIban,
    /// Both `lean-app-token` and `Authorization`.
    BothCredentials,
}

/// The scenario of an example, or why none can produce it.
fn scenario(code: u64, recorded: &Value) -> Result<Scenario, String> {
    // verifications and insights
    match recorded["status"].as_str().unwrap_or_default() {
        "DATA_NOT_FOUND" => return Ok(Scenario::UnknownIban),
        "INVALID_PARAMETERS"
            if recorded["message"]
                .as_str()
                .is_some_and(|m| m.contains("lean-app-token")) =>
        {
            return Ok(Scenario::BothCredentials)
        }
        _ => {}
    }
    if (200..300).contains(&code) {
        return Ok(Scenario::Success);
    }
    match recorded["status"].as_str().unwrap_or_default() {
        "INVALID_PARAMETERS" => Ok(Scenario::MalformedEntity),
        "UNKNOWN_ENTITY" => Ok(Scenario::UnknownEntity),
        "UNKNOWN_ACCOUNT" => Ok(Scenario::UnknownAccount),
        "UNKNOWN_RESULTS_ID" => Ok(Scenario::UnknownResults),
        "CUSTOMER_ALREADY_EXISTS" => Ok(Scenario::ExistingCustomer),
        "DUPLICATED_REQUEST" => Ok(Scenario::PendingRefresh),
        "INTERNAL_SERVER_ERROR" => Err("a failure inside Lean; no request can provoke it".into()),
        "CONSENT_EXPIRED" => Ok(Scenario::ConsentExpired),
        other => Err(format!("no scenario for status {other:?} (HTTP {code})")),
    }
}

/// One mismatch: the example, the JSON path (or `HTTP status`), the text.
struct Mismatch {
    example: String,
    path: String,
    text: String,
}

/// The JSON path of a mismatch; a missing or extra key is at its own path.
fn mismatch_path(text: &str) -> String {
    let (path, what) = text.split_once(": ").unwrap_or((text, ""));
    match what
        .strip_prefix("missing key ")
        .or_else(|| what.strip_prefix("extra key "))
    {
        Some(key) => format!("{path}.{}", key.trim_matches('"')),
        None => path.to_string(),
    }
}

fn allowed(m: &Mismatch) -> Option<usize> {
    ALLOWED.iter().position(|(example, path, _)| {
        *example == m.example
            && (m.path == *path
                || m.path
                    .strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('[')))
    })
}

/// The variable sets one example is sent with (one per entity and account for
/// account data, so every kind of account is compared).
fn variants(bank: &Bank, path: &str, scenario: Scenario) -> Vec<HashMap<String, String>> {
    let mut vars = bank.vars.clone();
    let mut set = |key: &str, value: String| {
        vars.insert(key.to_string(), value);
    };
    match scenario {
        Scenario::Success => {}
        Scenario::MalformedEntity => {
            // The value Lean's own example shows: one character short.
            let bad = "e34d8e49-9af2-4252-a53e-bd2df855134".to_string();
            set("entity_id", bad.clone());
            set("query:entity_id", bad);
        }
        Scenario::UnknownEntity => {
            let unknown = Uuid::new_v4().to_string();
            set("entity_id", unknown.clone());
            set("query:entity_id", unknown);
        }
        Scenario::UnknownAccount => set("account_id", Uuid::new_v4().to_string()),
        Scenario::UnknownResults => set("results_id", Uuid::new_v4().to_string()),
        Scenario::ConsentExpired => {
            set("entity_id", bank.consent_expired_entity.clone());
            set("query:entity_id", bank.consent_expired_entity.clone());
        }
        Scenario::ExistingCustomer | Scenario::PendingRefresh => {}
        // verifications and insights
        Scenario::UnknownIban | Scenario::BothCredentials => {}
    }
    if path == "/customers/v1/entities" {
        // The recorded range is fixed dates; ours must contain today's entities.
        set(
            "query:start_date",
            (bank.today - chrono::Duration::days(30)).to_string(),
        );
        set("query:end_date", bank.today.to_string());
    }
    if scenario != Scenario::Success {
        return vec![vars];
    }
    if path == "/customers/v1/" || path == "/customers/v1" {
        set(
            "app_user_id",
            format!("conformance_{}", Uuid::new_v4().simple()),
        );
    }
    if path == "/data/v2/refreshes" {
        set("entity_id", bank.fresh_entity.clone());
    }
    if path.starts_with("/payouts/v1/") {
        set("payment_id", bank.payout_payment.clone());
    }
    if !path.starts_with("/data/v2/accounts") && path != "/data/v2/identity" {
        return vec![vars];
    }
    let mut out = Vec::new();
    for (entity, accounts) in &bank.data_entities {
        for account in accounts {
            let mut v = vars.clone();
            v.insert("entity_id".into(), entity.clone());
            v.insert("query:entity_id".into(), entity.clone());
            v.insert("account_id".into(), account.clone());
            out.push(v);
            if !path.contains("account_id") {
                break; // entity-level data: once per entity
            }
        }
    }
    out
}

#[tokio::test]
async fn mockbank_answers_have_the_recorded_status_and_structure() {
    let text = match std::fs::read_to_string(COLLECTION) {
        Ok(text) => text,
        Err(e) => {
            crate::support::missing(&format!(
                "Lean's Postman collection is not at {COLLECTION} ({e}); Mockbank conformance not checked"
            ));
            return;
        }
    };
    let collection: Value = serde_json::from_str(&text).expect("the collection is JSON");
    let defaults: HashMap<String, String> = collection["variable"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            Some((
                v["key"].as_str()?.to_string(),
                v["value"].as_str()?.to_string(),
            ))
        })
        .collect();
    let mut items = Vec::new();
    walk(
        collection["item"].as_array().expect("collection items"),
        "",
        &mut items,
    );

    let proxy = Proxy::start("").await;
    let bank = Bank::set_up(&proxy, &defaults).await;
    let mockbank = proxy.mockbank.as_ref().expect("embedded Mockbank");

    let mut compared = 0;
    let mut sent = 0;
    let mut skipped: Vec<String> = Vec::new();
    let mut not_implemented: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut mismatches: Vec<Mismatch> = Vec::new();

    for item in &items {
        let method = item.request["method"].as_str().unwrap_or("GET");
        let raw = item.request["url"]["raw"]
            .as_str()
            .or_else(|| item.request["url"].as_str())
            .unwrap_or_default();
        let path = url_path(raw);
        if !implemented(method, &path) {
            let top = item
                .folder
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let entry = not_implemented.entry(top).or_default();
            entry.0 += 1;
            entry.1 += item.examples.len();
            continue;
        }
        for example in item.examples {
            let id = format!(
                "{} › {}",
                item.name,
                example["name"].as_str().unwrap_or_default()
            );
            let Ok(recorded) =
                serde_json::from_str::<Value>(example["body"].as_str().unwrap_or_default())
            else {
                skipped.push(format!("{id}: the recorded body is not JSON"));
                continue;
            };
            // A recording without a status code ("Get Payment By Intent Id")
            // whose body is no error envelope was a success.
            let code = example["code"].as_u64().unwrap_or(
                if recorded.get("status").is_some_and(Value::is_string) {
                    0
                } else {
                    200
                },
            );
            let scenario = match scenario(code, &recorded) {
                Ok(s) => s,
                Err(why) => {
                    skipped.push(format!("{id} (HTTP {code}): {why}"));
                    continue;
                }
            };
            let mut texts: Vec<String> = Vec::new();
            let mut answered = false;
            for vars in variants(&bank, &path, scenario) {
                let mut call = match Call::build(item.request, &vars) {
                    Ok(call) => call,
                    Err(why) => {
                        texts.push(format!("request: {why}"));
                        continue;
                    }
                };
                // verifications and insights: bodies from the test users
                prepare(&bank, mockbank, &mut call, &recorded).await;
                if scenario == Scenario::PendingRefresh {
                    bank.send(&call).await; // the first one is pending, or already was
                }
                let answer = match scenario {
                    // verifications and insights
                    Scenario::BothCredentials => send_both_credentials(&bank, &call).await,
                    _ => bank.send(&call).await,
                };
                sent += 1;
                answered = true;
                let actual: Value = serde_json::from_slice(&answer.body).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&answer.body).into_owned())
                });
                if u64::from(answer.status.as_u16()) != code {
                    texts.push(format!(
                        "HTTP status: recorded {code}, got {} {} for {} {}",
                        answer.status.as_u16(),
                        actual["status"],
                        call.method,
                        call.uri(bank.addr)
                    ));
                    continue;
                }
                texts.extend(shape_diff(&recorded, &actual));
                // verifications and insights: the recorded outcome, too
                texts.extend(outcome_diff(&call.path, &recorded, &actual));
            }
            compared += usize::from(answered);
            let mut seen = BTreeSet::new();
            for text in texts {
                if seen.insert(text.clone()) {
                    mismatches.push(Mismatch {
                        example: id.clone(),
                        path: mismatch_path(&text),
                        text,
                    });
                }
            }
        }
    }

    let mut used = vec![false; ALLOWED.len()];
    let mut failures = Vec::new();
    for m in &mismatches {
        match allowed(m) {
            Some(i) => used[i] = true,
            None => failures.push(format!("{}: {}", m.example, m.text)),
        }
    }
    for (i, (example, path, reason)) in ALLOWED.iter().enumerate() {
        if !used[i] {
            failures.push(format!(
                "allowlist entry no longer needed: ({example:?}, {path:?}): {reason}"
            ));
        }
    }

    eprintln!("conformance: {compared} recorded examples compared ({sent} requests)");
    eprintln!("skipped {} examples no request can produce:", skipped.len());
    for s in &skipped {
        eprintln!("  {s}");
    }
    let (requests, examples) = not_implemented
        .values()
        .fold((0, 0), |(r, e), (dr, de)| (r + dr, e + de));
    eprintln!("skipped {examples} examples of {requests} requests Mockbank does not implement:");
    for (folder, (r, e)) in &not_implemented {
        eprintln!("  {folder}: {e} examples of {r} requests");
    }
    eprintln!("allowed differences:");
    for m in &mismatches {
        if let Some(i) = allowed(m) {
            eprintln!("  {}: {}  [{}]", m.example, m.text, ALLOWED[i].2);
        }
    }
    assert!(
        failures.is_empty(),
        "{} conformance mismatches:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    assert!(
        compared >= MIN_COMPARED,
        "only {compared} examples compared (expected at least {MIN_COMPARED})"
    );
}

// ------------------------------------------------------------------ verifications and insights

/// Sets up the body of a verification example. Lean's recorded requests name
/// accounts of Lean's own sandbox, which the Mockbank does not have, so an AE
/// or SA account is chosen by the outcome the example records: a test user's
/// account, with their name, national id and account type, for an active one
/// (the Mockbank's `01` scenario account where no test user banks in that
/// country); the maintenance user's for `BANK_ISSUE`; the Mockbank's scenario
/// accounts (zeros ending in the scenario's two digits) for the others. Other
/// countries' requests and unknown accounts are sent as recorded. A name
/// verification's `full_name` becomes the entity's identity as
/// `/data/v2/identity` shows it.
async fn prepare(bank: &Bank, mockbank: &Mockbank, call: &mut Call, recorded: &Value) {
    let Some((content_type, text)) = call.body.clone() else {
        return;
    };
    let Ok(mut body) = serde_json::from_str::<Value>(&text) else {
        return;
    };
    match call.path.as_str() {
        "/verifications/v1/accounts" => verification_account(mockbank, &mut body, recorded),
        // payouts: the recorded request names accounts and destinations of
        // Lean's own sandbox; the Mockbank's are sent in their place.
        "/payouts/v1/payment" => {
            for detail in body["payment_details"].as_array_mut().into_iter().flatten() {
                detail["account_id"] = json!(bank.vars["payout_account_id"]);
                for target in detail["destination_details"]
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                {
                    target["payment_destination_id"] = json!(bank.vars["payout_destination_id"]);
                }
            }
        }
        "/insights/v1/name-verification" if recorded["data"]["match_type"] == "PERFECT_MATCH" => {
            let entity = body["entity_id"].as_str().unwrap_or_default();
            let identity = bank
                .expect_ok(
                    Method::GET,
                    &format!("/data/v2/identity?entity_id={entity}"),
                    Value::Null,
                )
                .await;
            body["full_name"] = identity["data"]["identities"][0]["full_legal_name"].clone();
        }
        _ => return,
    }
    call.body = Some((content_type, body.to_string()));
}

fn verification_account(mockbank: &Mockbank, body: &mut Value, recorded: &Value) {
    let country = body["country_code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if country != "AE" && country != "SA" {
        return;
    }
    let length = body["account_details"]["value"]
        .as_str()
        .unwrap_or_default()
        .len();
    let scenario = |digits: &str| {
        format!(
            "{country}00{}{digits}",
            "0".repeat(length.saturating_sub(6))
        )
    };
    let banking_in = |up: bool| {
        mockbank.users().iter().find(|u| {
            u.bank.data_available == up && u.accounts[0].iban.starts_with(country.as_str())
        })
    };
    let status = recorded["verifications"]["account_status"].as_str();
    let failed = recorded["status_detail"]["granular_status_code"].as_str();
    let account = match (status, failed) {
        (Some("ACTIVE"), _) => match banking_in(true) {
            Some(user) => {
                body["type"] = json!(user.bank.account_type);
                for id in body["identifications"].as_array_mut().into_iter().flatten() {
                    id["value"] = match id["type"].as_str() {
                        Some("NATIONAL_ID") => json!(user.identity.national_id),
                        _ => json!(user.identity.full_name),
                    };
                }
                user.accounts[0].iban.clone()
            }
            None => scenario("01"),
        },
        (Some("BLOCKED"), _) => scenario("02"),
        (Some("CLOSED"), _) => scenario("03"),
        (Some("IN_LIQUIDATION"), _) => scenario("04"),
        (_, Some("BANK_ISSUE")) => {
            banking_in(false).map_or_else(|| scenario("12"), |u| u.accounts[0].iban.clone())
        }
        (_, Some("LEAN_ERROR")) => scenario("11"),
        (_, Some("UNSUPPORTED_BY_BANK")) => scenario("13"),
        (_, Some("DISABLED_BY_LEAN")) => scenario("14"),
        (_, Some("GIVEN_INPUT_CANNOT_BE_VERIFIED")) => scenario("15"),
        _ => return,
    };
    body["account_details"]["value"] = json!(account);
}

/// Where a verification's outcome differs from the recorded one: its status,
/// account status, ownership, failure code or name match (shapes alone would
/// take a closed account for an active one).
fn outcome_diff(path: &str, recorded: &Value, actual: &Value) -> Vec<String> {
    if path != "/verifications/v1/accounts" && path != "/insights/v1/name-verification" {
        return Vec::new();
    }
    let outcome = [
        "/status",
        "/verifications/account_status",
        "/verifications/account_ownership_verified",
        "/status_detail/granular_status_code",
        "/data/match_type",
    ];
    outcome
        .iter()
        .filter_map(|pointer| {
            let want = recorded.pointer(pointer)?;
            let got = actual.pointer(pointer).unwrap_or(&Value::Null);
            let path = format!("${}", pointer.replace('/', "."));
            (want != got).then(|| format!("{path}: recorded {want}, got {got}"))
        })
        .collect()
}

/// `call` with the Mockbank's `lean-app-token` beside the bearer token.
async fn send_both_credentials(bank: &Bank, call: &Call) -> Observed {
    let mut req = Request::builder()
        .method(call.method.clone())
        .uri(call.uri(bank.addr))
        .header("authorization", format!("Bearer {}", bank.token))
        .header("lean-app-token", leanproxy::mockbank::DEFAULT_APP_TOKEN);
    let body = match &call.body {
        Some((content_type, text)) => {
            req = req.header("content-type", *content_type);
            body::full(text.clone())
        }
        None => body::empty(),
    };
    send(&bank.client, req.body(body).unwrap()).await
}

// ------------------------------------------------------------------ shape_diff

#[test]
fn comments_are_dropped_from_raw_bodies_but_not_from_strings() {
    assert_eq!(
        without_comments("{\n  \"a\": \"x//y\", // note\n  \"b\": 1\n}"),
        "{\n  \"a\": \"x//y\", \n  \"b\": 1\n}"
    );
}

#[test]
fn shape_diff_reports_types_missing_and_extra_keys_by_path() {
    let recorded =
        json!({"data": {"accounts": [{"servicer": {"identification": "X"}}], "page": {}}});
    let actual = json!({"data": {"accounts": [{"servicer": {"identification": null}, "foo": 1}]}});
    assert_eq!(
        shape_diff(&recorded, &actual),
        [
            "$.data: missing key \"page\"",
            "$.data.accounts[].servicer.identification: recorded string, got null",
            "$.data.accounts[]: extra key \"foo\"",
        ]
    );
}

#[test]
fn shape_diff_checks_every_element_against_all_recorded_elements() {
    let recorded = json!([{"a": 1, "b": "x"}, {"a": null}]);
    assert!(shape_diff(&recorded, &json!([{"a": null}, {"a": 2, "b": "y"}])).is_empty());
    assert_eq!(
        shape_diff(
            &recorded,
            &json!([{"a": 1}, {"a": 2, "b": true}, {"b": "z"}])
        ),
        [
            "$[].b: recorded string, got boolean",
            "$[]: missing key \"a\""
        ]
    );
}

#[test]
fn shape_diff_accepts_same_structure_with_other_values() {
    let recorded = json!({"n": 1, "f": 2.5, "s": "a", "list": [], "ok": true});
    let actual = json!({"n": 1.25, "f": 3, "s": "b", "list": [{"any": "thing"}], "ok": false});
    assert!(shape_diff(&recorded, &actual).is_empty());
    assert_eq!(
        shape_diff(&json!({"n": 1}), &json!({"n": "1"})),
        ["$.n: recorded number, got string"]
    );
}
