//! The Mockbank's HTTP surface: Lean's API (customers, entities, banks, v1 and v2
//! data, results, refreshes, `/oauth2/token`) and the control API under
//! `/_mockbank/` (test users, linking, reconnecting, expiring sessions, the clock,
//! sent webhooks).

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use chrono::NaiveDate;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use rand::Rng;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::shapes::{self, page, paginate, ts};
use super::state::{
    Customer, DataRequest, Entity, PageReq, Refresh, Resource, Scope, State, StoredResult, Token,
    TOKEN_LIFETIME,
};
use super::users::{TestUser, OTP};
use super::MockbankCore;

mod aof;
mod beneficiaries;
mod consents;
mod control;
mod data;
mod insights;
mod payments;
mod payouts;
mod refunds;
mod reply;
mod verifications;

pub(super) use control::Grant;
pub(super) use reply::{Reply, ReplyBody};

/// A listing of the payments families: the page of `all` that the query's
/// `number_key` and `size_key` ask for (size `default_size` unless given, at
/// most 1,000), as `{list_key: [...], "page": {...}}`; `sort` is the page's
/// `sort` when its recorded answer has one.
pub(super) fn listing(
    call: &Call<'_>,
    (number_key, size_key, default_size): (&str, &str, usize),
    list_key: &str,
    all: &[Value],
    sort: Option<Value>,
) -> Reply {
    let number: usize = call
        .query
        .get(number_key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let size: usize = call
        .query
        .get(size_key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_size)
        .clamp(1, 1000);
    let total = all.len();
    let mut page = json!({
        "number": number,
        "size": size,
        "total_elements": total,
        "total_pages": total.div_ceil(size),
    });
    if let Some(sort) = sort {
        page["sort"] = sort;
    }
    ok(json!({list_key: shapes::paginate(all, number, size), "page": page}))
}

/// The string `key` of a JSON request object, unless absent or blank.
pub(super) fn field(body: &Value, key: &str) -> Option<String> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|v| !v.trim().is_empty())
        .map(str::to_string)
}

pub(super) fn ok(body: impl Into<ReplyBody>) -> Reply {
    Reply {
        status: StatusCode::OK,
        body: body.into(),
    }
}

/// Lean's error envelope; data endpoints include a `results_id`.
pub(super) fn error(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
    results_id: bool,
) -> Reply {
    let mut body = json!({
        "timestamp": crate::lean::timestamp_now(),
        "status": code,
        "message": message.into(),
        "metadata": null,
    });
    if results_id {
        body["results_id"] = json!(Uuid::new_v4());
    }
    Reply {
        status,
        body: body.into(),
    }
}

pub(super) fn invalid(field: &str, value: &str) -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETERS",
        format!("The request is badly formatted or a parameter of the wrong type has been provided, field: {field}, value: {value}."),
        true,
    )
}

pub(super) fn missing(field: &str) -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        "MISSING_PARAMETERS",
        format!("The request is missing a required parameter, field: {field}."),
        true,
    )
}

fn unknown_entity() -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "UNKNOWN_ENTITY",
        "The entity_id provided did not match an account in our records.",
        true,
    )
}

fn unknown_account() -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "UNKNOWN_ACCOUNT",
        "The account_id provided does not match an account with the entity_id provided.",
        true,
    )
}

fn unknown_results() -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "UNKNOWN_RESULTS_ID",
        "The results_id provided has not been recognized by Lean or has not been processed yet.",
        true,
    )
}

fn not_found_url(path: &str) -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "INVALID_URL",
        format!("The URL {path} does not exist."),
        false,
    )
}

fn wrong_method() -> Reply {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "INVALID_HTTP_METHOD",
        "The HTTP method is not supported for this URL.",
        false,
    )
}

/// A parsed request, as handlers see it.
pub(super) struct Call<'a> {
    pub(super) method: &'a Method,
    pub(super) path: &'a str,
    pub(super) query: HashMap<String, String>,
    pub(super) headers: &'a HeaderMap,
    pub(super) body: &'a [u8],
}

impl Call<'_> {
    fn json(&self) -> Result<Value, Reply> {
        if self.body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(self.body).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETERS",
                format!("The request body is not valid JSON: {e}."),
                true,
            )
        })
    }

    fn page(&self, number_key: &str, size_key: &str) -> Result<PageReq, Reply> {
        let read = |key: &str, default: usize, max: usize| match self.query.get(key) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(invalid(key, v)),
            },
        };
        let number = read(number_key, 0, 1_000_000)?;
        let size = read(size_key, 50, 1000)?;
        if size == 0 {
            return Err(invalid(size_key, "0"));
        }
        Ok(PageReq { number, size })
    }

    fn date(&self, key: &str) -> Result<Option<NaiveDate>, Reply> {
        self.query
            .get(key)
            .map(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| invalid(key, v)))
            .transpose()
    }

    fn is_async(&self, body: &Value) -> bool {
        body.get("async").and_then(Value::as_bool).unwrap_or(false)
            || self.query.get("async").is_some_and(|v| v == "true")
    }
}

pub(super) fn parse_uuid(field: &str, value: &str) -> Result<Uuid, Reply> {
    Uuid::parse_str(value).map_err(|_| invalid(field, value))
}

fn entity_param(value: Option<&str>) -> Result<Uuid, Reply> {
    match value {
        None | Some("") => Err(missing("entity_id")),
        Some(v) => parse_uuid("entity_id", v),
    }
}

/// Checks `method` against the methods a known path allows.
fn allow(method: &Method, allowed: &[Method]) -> Result<(), Reply> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(wrong_method())
    }
}

impl MockbankCore {
    /// The region the Mockbank emulates.
    pub(in crate::mockbank) fn region(&self) -> crate::mockbank::Region {
        self.settings.region
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Handlers never leave the state half-updated across a panic point.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Routes one call.
    pub(super) fn route(&self, call: &Call<'_>) -> Reply {
        let segments: Vec<&str> = call.path.split('/').filter(|s| !s.is_empty()).collect();
        let result = match segments.as_slice() {
            ["oauth2", "token"] => {
                allow(call.method, &[Method::POST]).and_then(|()| self.token(call))
            }
            ["_mockbank", rest @ ..] => self.control(call, rest),
            _ => self
                .authenticate(call.headers)
                .and_then(|()| self.api(call, &segments)),
        };
        result.unwrap_or_else(|reply| reply)
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<(), Reply> {
        let unauthorized = |why: &str| {
            error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                format!("{why}. Send `lean-app-token` or `Authorization: Bearer <token from POST /oauth2/token>`."),
                false,
            )
        };
        // Either credential suffices: a valid app token is not undone by a stale
        // bearer token the app also sent, and the other way round.
        let app_token = headers.get("lean-app-token");
        if app_token.is_some_and(|given| {
            bool::from(
                given
                    .as_bytes()
                    .ct_eq(self.settings.app_token.expose().as_bytes()),
            )
        }) {
            return Ok(());
        }
        if let Some(bearer) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            let now = self.clock.elapsed();
            let state = self.lock();
            return match state.tokens.get(bearer.trim()) {
                Some(Token {
                    scope: Scope::Api,
                    expires,
                }) if *expires > now => Ok(()),
                Some(Token {
                    scope: Scope::Api, ..
                }) => Err(unauthorized("The access token has expired")),
                Some(Token {
                    scope: Scope::Customer(_),
                    ..
                }) => Err(error(
                    StatusCode::FORBIDDEN,
                    "INCORRECT_ACCESS_LEVEL",
                    "A customer-scoped token is for the LinkSDK only; use an `api` token.",
                    false,
                )),
                None => Err(unauthorized("The access token is not valid")),
            };
        }
        Err(match app_token {
            Some(_) => unauthorized("The lean-app-token is not valid"),
            None => unauthorized("No credentials were sent"),
        })
    }

    fn api(&self, call: &Call<'_>, segments: &[&str]) -> Result<Reply, Reply> {
        use Method as M;
        let m = call.method;
        match segments {
            ["banks", "v1"] => allow(m, &[M::GET]).map(|()| self.banks(call)),
            ["customers", "v1", rest @ ..] => self.customers_api(call, rest),
            ["data", "v1", kind] | ["v1", kind]
                if matches!(*kind, "identity" | "accounts" | "balance" | "transactions") =>
            {
                allow(m, &[M::POST])?;
                self.v1_data(call, kind)
            }
            ["data", "v1", "results", id] | ["v1", "results", id] | ["results", id] => {
                allow(m, &[M::GET])?;
                self.results(id)
            }
            ["data", "v2", "accounts"] => {
                allow(m, &[M::GET])?;
                let request = DataRequest::V2Accounts(call.page("page", "size")?);
                self.data_call(
                    call.query.get("entity_id").map(String::as_str),
                    request,
                    call.is_async(&Value::Null),
                )
            }
            ["data", "v2", "identity"] => {
                allow(m, &[M::GET])?;
                let request = DataRequest::V2Identity(call.page("page", "size")?);
                self.data_call(
                    call.query.get("entity_id").map(String::as_str),
                    request,
                    call.is_async(&Value::Null),
                )
            }
            ["data", "v2", "accounts", account, resource] => {
                let resource =
                    Resource::from_segment(resource).ok_or_else(|| not_found_url(call.path))?;
                allow(m, &[M::GET])?;
                let request = DataRequest::V2Account {
                    account: parse_uuid("account_id", account)?,
                    resource,
                    page: call.page("page", "size")?,
                    range: (call.date("start_date")?, call.date("end_date")?),
                };
                self.data_call(
                    call.query.get("entity_id").map(String::as_str),
                    request,
                    call.is_async(&Value::Null),
                )
            }
            ["data", "v2", "results", id] => {
                allow(m, &[M::GET])?;
                self.results(id)
            }
            ["data", "v2", "refreshes"] => match *m {
                M::POST => self.start_refresh(call),
                M::GET => self.list_refreshes(call),
                _ => Err(wrong_method()),
            },
            // payments
            ["payments", "v1", rest @ ..] => self.payments_api(call, rest),
            ["payments", "account-on-file"] => self.aof_payment(call),
            ["consents", rest @ ..] => self.consents_api(call, rest),
            ["payouts", "refunds", rest @ ..] => self.refunds_api(call, rest),
            ["payouts", "v1", rest @ ..] => self.payouts_api(call, rest),
            ["data", "v2", "refreshes", id] => {
                allow(m, &[M::GET])?;
                self.refresh(call, id)
            }
            // verifications: api/verifications.rs routes them
            ["verifications", ..] | ["insights", "v1", ..] => self.verifications(call, segments),
            // insights: api/insights.rs routes them
            ["insights", ..] => self.insights(call, segments),
            _ => Err(not_found_url(call.path)),
        }
    }

    // -------------------------------------------------------------- customers

    /// `/customers/v1/{rest}`: customers, their entities and payment sources.
    fn customers_api(&self, call: &Call<'_>, rest: &[&str]) -> Result<Reply, Reply> {
        use Method as M;
        let m = call.method;
        match rest {
            [] => match *m {
                M::POST => self.create_customer(call),
                M::GET => self.list_customers(call),
                _ => Err(wrong_method()),
            },
            ["app-user-id", app_user_id] => {
                allow(m, &[M::GET])?;
                let state = self.lock();
                state
                    .customers
                    .iter()
                    .find(|c| c.app_user_id == *app_user_id)
                    .map(|c| ok(customer_json(c)))
                    .ok_or_else(unknown_customer)
            }
            ["entities"] => allow(m, &[M::GET]).and_then(|()| self.all_entities(call)),
            [customer] => {
                allow(m, &[M::GET])?;
                let id = parse_uuid("customer_id", customer)?;
                let state = self.lock();
                state
                    .customer(id)
                    .map(|c| ok(customer_json(c)))
                    .ok_or_else(unknown_customer)
            }
            [customer, "payment-sources"] => self.payment_sources_api(call, customer, None),
            [customer, "payment-sources", source] => {
                self.payment_sources_api(call, customer, Some(source))
            }
            [customer, "entities"] => {
                allow(m, &[M::GET])?;
                let id = parse_uuid("customer_id", customer)?;
                let state = self.lock();
                state.customer(id).ok_or_else(unknown_customer)?;
                let list: Vec<Value> = state
                    .entity_order
                    .iter()
                    .filter_map(|e| state.entities.get(e))
                    .filter(|e| e.customer == id)
                    .map(|e| self.entity_json(e))
                    .collect();
                Ok(ok(Value::Array(list)))
            }
            [customer, "entities", entity] => {
                allow(m, &[M::GET])?;
                let customer = parse_uuid("customer_id", customer)?;
                let entity = parse_uuid("entity_id", entity)?;
                let state = self.lock();
                state
                    .entities
                    .get(&entity)
                    .filter(|e| e.customer == customer)
                    .map(|e| ok(self.entity_json(e)))
                    .ok_or_else(unknown_entity)
            }
            _ => Err(not_found_url(call.path)),
        }
    }

    fn create_customer(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let body = call.json()?;
        let app_user_id = match body.get("app_user_id").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => return Err(missing("app_user_id")),
        };
        self.new_customer(app_user_id)
            .map(|customer| ok(customer_json(&customer)))
    }

    /// Adds a customer for `app_user_id` (unique, as at Lean).
    pub(super) fn new_customer(&self, app_user_id: String) -> Result<Customer, Reply> {
        let mut state = self.lock();
        if state.customers.iter().any(|c| c.app_user_id == app_user_id) {
            return Err(error(
                StatusCode::CONFLICT,
                "CUSTOMER_ALREADY_EXISTS",
                "A customer already exists for the app_user_id you have provided.",
                false,
            ));
        }
        let customer = Customer {
            id: Uuid::new_v4(),
            app_user_id,
        };
        state.customers.push(customer.clone());
        Ok(customer)
    }

    fn list_customers(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let p = call.page("page_number", "page_size")?;
        let state = self.lock();
        let data: Vec<Value> = paginate(&state.customers, p.number, p.size)
            .into_iter()
            .map(customer_json)
            .collect();
        Ok(ok(
            json!({"data": data, "page": page(p.number, p.size, state.customers.len())}),
        ))
    }

    fn all_entities(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let p = call.page("page_number", "page_size")?;
        let (start, end) = (call.date("start_date")?, call.date("end_date")?);
        let state = self.lock();
        let matching: Vec<&Entity> = state
            .entity_order
            .iter()
            .filter_map(|e| state.entities.get(e))
            .filter(|e| start.is_none_or(|s| e.created.date_naive() >= s))
            .filter(|e| end.is_none_or(|d| e.created.date_naive() <= d))
            .collect();
        // Lean's listing adds `status` and `updated_at`, which the per-customer
        // and by-id answers do not carry.
        let data: Vec<Value> = paginate(&matching, p.number, p.size)
            .iter()
            .map(|e| {
                let mut v = self.entity_json(e);
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("status".into(), json!("ACTIVE"));
                    obj.insert("updated_at".into(), json!(shapes::ts_ms(e.created)));
                }
                v
            })
            .collect();
        Ok(ok(
            json!({"data": data, "page": page(p.number, p.size, matching.len())}),
        ))
    }

    pub(super) fn entity_json(&self, e: &Entity) -> Value {
        shapes::entity(
            e.id,
            e.customer,
            &self.user_of(e),
            e.created,
            &e.permissions,
        )
    }

    /// The test user behind `e`, with only the accounts the customer chose to
    /// share (cloned only when that is fewer than all of them).
    pub(super) fn user_of(&self, e: &Entity) -> std::borrow::Cow<'_, TestUser> {
        let user = &self.users[e.user];
        match &e.accounts {
            Some(chosen) if chosen.len() < user.accounts.len() => {
                let mut shared = user.clone();
                shared.accounts.retain(|a| chosen.contains(&a.id));
                std::borrow::Cow::Owned(shared)
            }
            _ => std::borrow::Cow::Borrowed(user),
        }
    }

    fn banks(&self, call: &Call<'_>) -> Reply {
        let wanted = call.query.get("account_types");
        let state = self.lock();
        let list: Vec<Value> = self
            .region()
            .banks()
            .iter()
            .filter(|b| wanted.is_none_or(|w| w.split(',').any(|t| t == b.account_type)))
            .map(|b| shapes::bank(b, state.bank_up(b.identifier)))
            .collect();
        ok(Value::Array(list))
    }
}

/// Lean's answer once an entity's consent is gone (recorded on a refresh).
pub(super) fn consent_expired() -> Reply {
    error(
        StatusCode::FORBIDDEN,
        "CONSENT_EXPIRED",
        "Consent was suspended, revoked, or expired. New consent is required, please connect the entity once again.",
        false,
    )
}

pub(super) fn unknown_customer() -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "UNKNOWN_CUSTOMER",
        "The customer_id provided did not match a customer in our records.",
        false,
    )
}

fn customer_json(c: &Customer) -> Value {
    json!({"customer_id": c.id, "app_user_id": c.app_user_id})
}

fn user_json(u: &TestUser) -> Value {
    json!({
        "username": u.username,
        "password": u.password,
        "behaviour": u.behaviour,
        "description": u.behaviour.description(),
        "needs_otp": u.behaviour.needs_otp(),
        "bank_identifier": u.bank.identifier,
        "full_name": u.identity.full_name,
        "accounts": u.accounts.iter().map(|a| json!({
            "account_id": a.id,
            "type": a.sub_type.v2(),
            "iban": a.iban,
            "currency": a.currency,
            "balance": (a.closing_balance() as f64) / 100.0,
        })).collect::<Vec<_>>(),
    })
}

fn check_account(user: &TestUser, request: &DataRequest) -> Result<(), Reply> {
    let account = match request {
        DataRequest::V1Balance(a) | DataRequest::V1Transactions(a) => a,
        DataRequest::V2Account { account, .. } => account,
        _ => return Ok(()),
    };
    if user.accounts.iter().any(|a| a.id == *account) {
        Ok(())
    } else {
        Err(unknown_account())
    }
}

/// Headers on every Mockbank answer, as Lean's sandbox sends them.
pub(super) fn lean_headers(headers: &mut HeaderMap) {
    let mut rng = rand::rng();
    let correlation: String = (0..16)
        .map(|_| {
            let i = rng.random_range(0..52u8);
            char::from(if i < 26 { b'a' + i } else { b'A' + i - 26 })
        })
        .collect();
    let trace = hex::encode(rng.random::<[u8; 16]>());
    let pairs = [
        ("lean-correlation-id", correlation),
        ("lean-trace-id", trace),
        (
            "cache-control",
            "no-cache, no-store, max-age=0, must-revalidate".to_string(),
        ),
        ("x-content-type-options", "nosniff".to_string()),
        ("x-frame-options", "DENY".to_string()),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}
