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
use super::Inner;

/// An answer before it becomes an HTTP response.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: Value,
}

fn ok(body: Value) -> Reply {
    Reply {
        status: StatusCode::OK,
        body,
    }
}

/// Lean's error envelope; data endpoints include a `results_id`.
fn error(status: StatusCode, code: &str, message: impl Into<String>, results_id: bool) -> Reply {
    let mut body = json!({
        "timestamp": crate::lean::timestamp_now(),
        "status": code,
        "message": message.into(),
        "metadata": null,
    });
    if results_id {
        body["results_id"] = json!(Uuid::new_v4());
    }
    Reply { status, body }
}

fn invalid(field: &str, value: &str) -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETERS",
        format!("The request is badly formatted or a parameter of the wrong type has been provided, field: {field}, value: {value}."),
        true,
    )
}

fn missing(field: &str) -> Reply {
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

fn parse_uuid(field: &str, value: &str) -> Result<Uuid, Reply> {
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

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
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
            ["customers", "v1"] => match *m {
                M::POST => self.create_customer(call),
                M::GET => self.list_customers(call),
                _ => Err(wrong_method()),
            },
            ["customers", "v1", "app-user-id", app_user_id] => {
                allow(m, &[M::GET])?;
                let state = self.lock();
                state
                    .customers
                    .iter()
                    .find(|c| c.app_user_id == *app_user_id)
                    .map(|c| ok(customer_json(c)))
                    .ok_or_else(unknown_customer)
            }
            ["customers", "v1", "entities"] => {
                allow(m, &[M::GET]).and_then(|()| self.all_entities(call))
            }
            ["customers", "v1", customer] => {
                allow(m, &[M::GET])?;
                let id = parse_uuid("customer_id", customer)?;
                let state = self.lock();
                state
                    .customer(id)
                    .map(|c| ok(customer_json(c)))
                    .ok_or_else(unknown_customer)
            }
            ["customers", "v1", customer, "entities"] => {
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
            ["customers", "v1", customer, "entities", entity] => {
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
            ["data", "v2", "refreshes", id] => {
                allow(m, &[M::GET])?;
                self.refresh(call, id)
            }
            _ => Err(not_found_url(call.path)),
        }
    }

    // -------------------------------------------------------------- customers

    fn create_customer(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let body = call.json()?;
        let app_user_id = match body.get("app_user_id").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => return Err(missing("app_user_id")),
        };
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
        let reply = ok(customer_json(&customer));
        state.customers.push(customer);
        Ok(reply)
    }

    fn list_customers(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let p = call.page("page_number", "page_size")?;
        let state = self.lock();
        let data: Vec<Value> = paginate(&state.customers, p.number, p.size)
            .iter()
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
        shapes::entity(e.id, e.customer, &self.users[e.user], e.created)
    }

    fn banks(&self, call: &Call<'_>) -> Reply {
        let wanted = call.query.get("account_types");
        let list: Vec<Value> = super::users::BANKS
            .iter()
            .filter(|b| wanted.is_none_or(|w| w.split(',').any(|t| t == b.account_type)))
            .map(shapes::bank)
            .collect();
        ok(Value::Array(list))
    }

    // -------------------------------------------------------------- data

    fn v1_data(&self, call: &Call<'_>, kind: &str) -> Result<Reply, Reply> {
        let body = call.json()?;
        let account = || -> Result<Uuid, Reply> {
            match body.get("account_id").and_then(Value::as_str) {
                None | Some("") => Err(missing("account_id")),
                Some(v) => parse_uuid("account_id", v),
            }
        };
        let request = match kind {
            "accounts" => DataRequest::V1Accounts,
            "identity" => DataRequest::V1Identity,
            "balance" => DataRequest::V1Balance(account()?),
            _ => DataRequest::V1Transactions(account()?),
        };
        let entity = body.get("entity_id").map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        });
        self.data_call(entity.as_deref(), request, call.is_async(&body))
    }

    /// The shared path of every data call: entity, account, bank availability,
    /// session, async, answer.
    fn data_call(
        &self,
        entity: Option<&str>,
        request: DataRequest,
        is_async: bool,
    ) -> Result<Reply, Reply> {
        let entity_id = entity_param(entity)?;
        let now = self.clock.elapsed();
        let wall = self.clock.now();
        let mut state = self.lock();
        let entity = state
            .entities
            .get(&entity_id)
            .ok_or_else(unknown_entity)?
            .clone();
        let user = &self.users[entity.user];
        check_account(user, &request)?;
        let v1 = request.is_v1();

        if !user.bank.data_available {
            let results_id = Uuid::new_v4();
            return Ok(ok(if v1 {
                crate::lean::v1_failed(results_id, "BANK_MAINTENANCE", wall)
            } else {
                crate::lean::v2_failed(results_id, "BANK_MAINTENANCE", wall)
            }));
        }

        if State::session_expired(&entity, user.behaviour, now, self.timing) {
            let pending = state
                .pending_reconnect(entity_id, &request, now)
                .ok_or_else(unknown_entity)?;
            tracing::info!(target: "leanproxy::mockbank", entity_id = %entity_id, reconnect_id = %pending.reconnect_id, "session expired: RECONNECT_REQUIRED");
            return Ok(ok(if v1 {
                crate::lean::v1_reconnect(pending.reconnect_id, pending.results_id, wall)
            } else {
                crate::lean::v2_reconnect(pending.results_id, wall)
            }));
        }

        if let Some(e) = state.entities.get_mut(&entity_id) {
            e.last_activity = now;
        }
        let results_id = Uuid::new_v4();
        if is_async {
            let ready_at = now + self.settings.async_delay;
            state.results.insert(
                results_id,
                StoredResult {
                    entity: entity_id,
                    request: request.clone(),
                    ready_at: Some(ready_at),
                },
            );
            drop(state);
            let (clock, webhooks) = (self.clock.clone(), self.webhooks.clone());
            tokio::spawn(async move {
                clock.sleep_until(ready_at).await;
                webhooks.send(
                    "results.ready",
                    json!({"id": results_id}),
                    "Your results are ready.",
                );
            });
            return Ok(ok(if v1 {
                crate::lean::v1_pending(results_id, wall)
            } else {
                crate::lean::v2_pending(results_id, wall)
            }));
        }
        Ok(ok(self.render(&entity, &request, results_id)))
    }

    /// The OK answer for `request`.
    fn render(&self, entity: &Entity, request: &DataRequest, results_id: Uuid) -> Value {
        let user = &self.users[entity.user];
        let wall = self.clock.now();
        let refreshed = entity.created;
        let account = |id: &Uuid| user.accounts.iter().find(|a| a.id == *id);
        let v2_list = |kind: &str, key: &str, items: Vec<Value>, p: &PageReq, extra: Value| {
            let mut data = json!({"type": kind, key: paginate(&items, p.number, p.size), "page": page(p.number, p.size, items.len())});
            if let (Some(obj), Value::Object(extra)) = (data.as_object_mut(), extra) {
                obj.extend(extra);
            }
            shapes::v2_ok(kind, data, results_id, wall, refreshed)
        };
        match request {
            DataRequest::V1Accounts => shapes::v1_ok(shapes::v1_accounts(user), results_id, wall),
            DataRequest::V1Identity => shapes::v1_ok(shapes::v1_identity(user), results_id, wall),
            DataRequest::V1Balance(id) => match account(id) {
                Some(a) => shapes::v1_ok(shapes::v1_balance(user, a), results_id, wall),
                None => Value::Null,
            },
            DataRequest::V1Transactions(id) => match account(id) {
                Some(a) => shapes::v1_ok(shapes::v1_transactions(a), results_id, wall),
                None => Value::Null,
            },
            DataRequest::V2Accounts(p) => {
                let items = user
                    .accounts
                    .iter()
                    .map(|a| shapes::v2_account(entity.id, user, a))
                    .collect();
                v2_list("accounts", "accounts", items, p, Value::Null)
            }
            DataRequest::V2Identity(p) => {
                let items = vec![shapes::v2_identity(entity.id, user)];
                v2_list(
                    "identities",
                    "identities",
                    items,
                    p,
                    json!({"account_id": null}),
                )
            }
            DataRequest::V2Account {
                account: id,
                resource,
                page: p,
                range,
            } => {
                let Some(a) = account(id) else {
                    return Value::Null;
                };
                let (items, key, extra) = match resource {
                    Resource::Transactions => {
                        let items = a
                            .transactions
                            .iter()
                            .rev()
                            .filter(|t| {
                                range.0.is_none_or(|s| t.date >= s)
                                    && range.1.is_none_or(|e| t.date <= e)
                            })
                            .enumerate()
                            .map(|(i, t)| shapes::v2_transaction(entity.id, a, t, i))
                            .collect();
                        (items, "transactions", Value::Null)
                    }
                    Resource::Balances => (
                        shapes::v2_balances(entity.id, a, wall),
                        "balances",
                        Value::Null,
                    ),
                    Resource::Identities => (
                        vec![shapes::v2_account_identity(entity.id, user)],
                        "identities",
                        json!({"account_id": null}),
                    ),
                    Resource::Beneficiaries => {
                        (shapes::v2_beneficiaries(a), "beneficiaries", Value::Null)
                    }
                    Resource::DirectDebits => {
                        (shapes::v2_direct_debits(a), "direct_debits", Value::Null)
                    }
                    Resource::ScheduledPayments => (
                        shapes::v2_scheduled_payments(a),
                        "scheduled_payments",
                        Value::Null,
                    ),
                    Resource::StandingOrders => (
                        shapes::v2_standing_orders(a),
                        "standing_orders",
                        Value::Null,
                    ),
                };
                v2_list(resource.kind(), key, items, p, extra)
            }
        }
    }

    fn results(&self, id: &str) -> Result<Reply, Reply> {
        let results_id = parse_uuid("results_id", id)?;
        let now = self.clock.elapsed();
        let wall = self.clock.now();
        let state = self.lock();
        let stored = state.results.get(&results_id).ok_or_else(unknown_results)?;
        let entity = state
            .entities
            .get(&stored.entity)
            .ok_or_else(unknown_entity)?;
        let v1 = stored.request.is_v1();
        match stored.ready_at {
            Some(at) if at <= now => Ok(ok(self.render(entity, &stored.request, results_id))),
            _ => Ok(ok(if v1 {
                crate::lean::v1_pending(results_id, wall)
            } else {
                crate::lean::v2_pending(results_id, wall)
            })),
        }
    }

    // -------------------------------------------------------------- refreshes

    fn start_refresh(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let body = call.json()?;
        let entity_id = entity_param(body.get("entity_id").and_then(Value::as_str))?;
        let now = self.clock.elapsed();
        let mut state = self.lock();
        let entity = state
            .entities
            .get(&entity_id)
            .ok_or_else(unknown_entity)?
            .clone();
        if state
            .refreshes
            .iter()
            .any(|r| r.entity == entity_id && r.finishes > now)
        {
            return Err(error(
                StatusCode::TOO_MANY_REQUESTS,
                "DUPLICATED_REQUEST",
                "Data refresh is already pending.",
                false,
            ));
        }
        let refresh = Refresh {
            id: Uuid::new_v4(),
            entity: entity_id,
            customer: entity.customer,
            created: now,
            finishes: now + self.settings.refresh_duration,
        };
        let app_user_id = state
            .customer(entity.customer)
            .map(|c| c.app_user_id.clone())
            .unwrap_or_default();
        state.refreshes.push(refresh.clone());
        drop(state);
        let payload = |status: &str| {
            json!({
                "status": status,
                "entity_id": entity_id,
                "refresh_id": refresh.id,
                "app_user_id": app_user_id,
                "customer_id": entity.customer,
                "data_status": self.data_status(&entity, "transaction_availability"),
            })
        };
        let message = "An entity data refresh state has been updated.";
        self.webhooks
            .send("entity.data.refresh.updated", payload("PENDING"), message);
        let finished = payload("FINISHED");
        let (clock, webhooks) = (self.clock.clone(), self.webhooks.clone());
        tokio::spawn(async move {
            clock.sleep_until(refresh.finishes).await;
            webhooks.send("entity.data.refresh.updated", finished, message);
        });
        Ok(ok(json!({
            "refresh_id": refresh.id,
            "status": "OK",
            "message": "Data refresh triggered successfully",
            "timestamp": ts(self.clock.now()),
        })))
    }

    /// `data_status` of a refresh; the API and the webhook spell the
    /// availability key differently (`transactionAvailability` vs
    /// `transaction_availability`), as Lean does.
    fn data_status(&self, entity: &Entity, availability_key: &str) -> Value {
        let user = &self.users[entity.user];
        let accounts: Vec<Value> = user
            .accounts
            .iter()
            .map(|a| {
                let start = a.transactions.first().map_or(a.opened, |t| t.date);
                let end = a.transactions.last().map_or(a.opened, |t| t.date);
                json!({
                    "account_id": a.id,
                    "balance": "OK",
                    "identity": "OK",
                    "transactions": "OK",
                    "scheduled_payments": "OK",
                    "direct_debits": "OK",
                    "standing_orders": "OK",
                    "beneficiaries": "OK",
                    availability_key: {"start": start.to_string(), "end": end.to_string()},
                })
            })
            .collect();
        json!({"accounts": "OK", "identity": "OK", "account_data": accounts})
    }

    fn refresh_status(&self, r: &Refresh, now: Duration) -> &'static str {
        if r.finishes <= now {
            "FINISHED"
        } else {
            "PENDING"
        }
    }

    fn refresh_times(&self, r: &Refresh, now: Duration) -> (String, String) {
        let at = |elapsed: Duration| {
            let back = chrono::Duration::from_std(self.clock.elapsed().saturating_sub(elapsed))
                .unwrap_or_default();
            shapes::ts_ms(self.clock.now() - back)
        };
        (at(r.created), at(r.finishes.min(now)))
    }

    fn list_refreshes(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let entity_id = entity_param(call.query.get("entity_id").map(String::as_str))?;
        let p = call.page("page", "size")?;
        let now = self.clock.elapsed();
        let state = self.lock();
        state.entities.get(&entity_id).ok_or_else(unknown_entity)?;
        let list: Vec<Value> = state
            .refreshes
            .iter()
            .rev()
            .filter(|r| r.entity == entity_id)
            .map(|r| {
                let (created, updated) = self.refresh_times(r, now);
                json!({
                    "refresh_id": r.id,
                    "entity_id": r.entity,
                    "customer_id": r.customer,
                    "status": self.refresh_status(r, now),
                    "created_at": created,
                    "updated_at": updated,
                })
            })
            .collect();
        Ok(ok(
            json!({"content": paginate(&list, p.number, p.size), "page": page(p.number, p.size, list.len())}),
        ))
    }

    fn refresh(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        let refresh_id = parse_uuid("refresh_id", id)?;
        // Lean validates the optional `entity_id` query parameter too.
        let entity = call
            .query
            .get("entity_id")
            .map(|v| parse_uuid("entity_id", v))
            .transpose()?;
        let now = self.clock.elapsed();
        let state = self.lock();
        if let Some(entity) = entity {
            state.entities.get(&entity).ok_or_else(unknown_entity)?;
        }
        let r = state
            .refreshes
            .iter()
            .find(|r| r.id == refresh_id)
            .ok_or_else(|| {
                error(
                    StatusCode::NOT_FOUND,
                    "UNKNOWN_REFRESH_ID",
                    "The refresh_id provided did not match a refresh in our records.",
                    true,
                )
            })?;
        let entity = state.entities.get(&r.entity).ok_or_else(unknown_entity)?;
        let (created, updated) = self.refresh_times(r, now);
        Ok(ok(json!({
            "refresh_id": r.id,
            "entity_id": r.entity,
            "customer_id": r.customer,
            "status": self.refresh_status(r, now),
            "data_status": self.data_status(entity, "transactionAvailability"),
            "created_at": created,
            "updated_at": updated,
        })))
    }

    // -------------------------------------------------------------- OAuth

    fn token(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let form: HashMap<String, String> =
            form_urlencoded::parse(call.body).into_owned().collect();
        let oauth_error = |status: StatusCode, code: &str| Reply {
            status,
            body: json!({"error": code}),
        };
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
            ));
        }
        let id_ok = form
            .get("client_id")
            .is_some_and(|id| *id == self.settings.client_id);
        let secret_ok = form.get("client_secret").is_some_and(|s| {
            bool::from(
                s.as_bytes()
                    .ct_eq(self.settings.client_secret.expose().as_bytes()),
            )
        });
        if !(id_ok && secret_ok) {
            return Err(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client"));
        }
        let scope_text = form.get("scope").cloned().unwrap_or_else(|| "api".into());
        let scope = match scope_text.as_str() {
            "api" => Scope::Api,
            other => match other.strip_prefix("customer.").map(Uuid::parse_str) {
                Some(Ok(customer)) if self.lock().customer(customer).is_some() => {
                    Scope::Customer(customer)
                }
                _ => return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_scope")),
            },
        };
        let now = self.clock.elapsed();
        let token = self.jwt(&scope);
        {
            let mut state = self.lock();
            state.tokens_issued += 1;
            state.tokens.insert(
                token.clone(),
                Token {
                    scope,
                    expires: now + TOKEN_LIFETIME,
                },
            );
        }
        Ok(ok(json!({
            "access_token": token,
            "scope": scope_text,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME.as_secs() - 1,
        })))
    }

    /// A JWT-shaped token like Lean's (RS256 header, claims); Mockbank recognises
    /// its tokens by value, so the signature part is random.
    fn jwt(&self, scope: &Scope) -> String {
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let iat = self.clock.now().timestamp();
        let mut claims = json!({
            "sub": self.settings.client_id,
            "aud": "http://mockbank.leanproxy.local",
            "nbf": iat,
            "iss": "http://auth.mockbank.leanproxy.local",
            "exp": iat + TOKEN_LIFETIME.as_secs() as i64,
            "iat": iat,
            "jti": Uuid::new_v4(),
            "applications": [{"id": self.settings.client_id}],
        });
        match scope {
            Scope::Api => {
                claims["scope"] =
                    json!(["customer.read", "customer.write", "bank.read", "data.read"])
            }
            Scope::Customer(c) => {
                claims["scope"] = json!([
                    "customer.read",
                    "connect.write",
                    "connect.read",
                    "bank.read"
                ]);
                claims["customers"] = json!([{"id": c}]);
            }
        }
        let signature: [u8; 32] = rand::rng().random();
        format!(
            "{}.{}.{}",
            b64(&json!({"kid": "mockbank", "alg": "RS256"})),
            b64(&claims),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
        )
    }

    // -------------------------------------------------------------- control

    fn control(&self, call: &Call<'_>, rest: &[&str]) -> Result<Reply, Reply> {
        use Method as M;
        let m = call.method;
        match rest {
            ["users"] => {
                allow(m, &[M::GET])?;
                let users: Vec<Value> = self.users.iter().map(user_json).collect();
                Ok(ok(json!({"otp": OTP, "users": users})))
            }
            ["link", "connect"] => allow(m, &[M::POST]).and_then(|()| self.connect(call)),
            ["link", "reconnect"] => allow(m, &[M::POST]).and_then(|()| self.reconnect(call)),
            ["entities", entity, "expire"] => {
                allow(m, &[M::POST])?;
                let id = parse_uuid("entity_id", entity)?;
                let mut state = self.lock();
                let e = state.entities.get_mut(&id).ok_or_else(unknown_entity)?;
                e.expired = true;
                Ok(ok(
                    json!({"entity_id": id, "status": "EXPIRED", "message": "Session expired: the next data call answers RECONNECT_REQUIRED."}),
                ))
            }
            ["clock"] => {
                allow(m, &[M::GET])?;
                Ok(ok(self.clock_json()))
            }
            ["clock", action] => {
                allow(m, &[M::POST])?;
                match *action {
                    "advance" => {
                        let seconds = call
                            .json()?
                            .get("seconds")
                            .and_then(Value::as_f64)
                            .filter(|s| *s >= 0.0 && s.is_finite());
                        let seconds =
                            seconds.ok_or_else(|| invalid("seconds", "a non-negative number"))?;
                        self.clock.advance(Duration::from_secs_f64(seconds));
                    }
                    "pause" => self.clock.pause(),
                    "resume" => self.clock.resume(),
                    _ => return Err(not_found_url(call.path)),
                }
                Ok(ok(self.clock_json()))
            }
            ["oauth", "revoke"] => {
                allow(m, &[M::POST])?;
                let mut state = self.lock();
                let revoked = state.tokens.len();
                state.tokens.clear();
                Ok(ok(json!({"revoked": revoked})))
            }
            ["webhooks"] => {
                allow(m, &[M::GET])?;
                Ok(ok(json!({"deliveries": self.webhooks.deliveries()})))
            }
            _ => Err(not_found_url(call.path)),
        }
    }

    fn clock_json(&self) -> Value {
        json!({
            "now": ts(self.clock.now()),
            "paused": self.clock.is_paused(),
            "elapsed_seconds": self.clock.elapsed().as_secs_f64(),
        })
    }

    fn login(&self, body: &Value) -> Result<usize, Reply> {
        let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
        let refused =
            |code: &str, message: &str| error(StatusCode::UNAUTHORIZED, code, message, false);
        let user = self
            .users
            .iter()
            .position(|u| u.username == text("username") && u.password == text("password"))
            .ok_or_else(|| {
                refused(
                    "INVALID_CREDENTIALS",
                    "The username or password is incorrect.",
                )
            })?;
        if self.users[user].behaviour.needs_otp() && text("otp") != OTP {
            return Err(refused(
                "INVALID_OTP",
                "The one-time password is incorrect.",
            ));
        }
        Ok(user)
    }

    fn connect(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let body = call.json()?;
        let customer_id = body
            .get("customer_id")
            .and_then(Value::as_str)
            .map(|v| parse_uuid("customer_id", v))
            .transpose()?;
        let app_user_id = body.get("app_user_id").and_then(Value::as_str);
        let user = self.login(&body)?;
        let now = self.clock.elapsed();
        let mut state = self.lock();
        let customer = match (customer_id, app_user_id) {
            (Some(id), _) => state.customer(id).cloned(),
            (None, Some(app)) => state
                .customers
                .iter()
                .find(|c| c.app_user_id == app)
                .cloned(),
            (None, None) => return Err(missing("customer_id")),
        }
        .ok_or_else(unknown_customer)?;

        let existing = state
            .entities
            .values_mut()
            .find(|e| e.customer == customer.id && e.user == user);
        let (entity, created) = match existing {
            Some(e) => {
                // Linking the same bank again renews the session.
                e.expired = false;
                e.pending = None;
                e.last_activity = now;
                e.session_start = now;
                (e.clone(), false)
            }
            None => {
                let e = Entity {
                    id: Uuid::new_v4(),
                    customer: customer.id,
                    user,
                    created: self.clock.now(),
                    last_activity: now,
                    session_start: now,
                    expired: false,
                    pending: None,
                };
                state.entity_order.push(e.id);
                state.entities.insert(e.id, e.clone());
                (e, true)
            }
        };
        drop(state);
        let u = &self.users[user];
        let permissions: Vec<&str> = [
            "identity",
            "accounts",
            "balance",
            "transactions",
            "identities",
            "scheduled_payments",
            "standing_orders",
            "direct_debits",
            "beneficiaries",
        ]
        .to_vec();
        let payload = json!({
            "id": entity.id,
            "app_user_id": customer.app_user_id,
            "customer_id": customer.id,
            "permissions": permissions,
            "bank_details": shapes::bank_details(u.bank),
        });
        if created {
            self.webhooks.send(
                "entity.created",
                payload,
                "An entity object has been created.",
            );
        } else {
            self.webhooks.send(
                "entity.updated",
                payload,
                "An entity object has been updated.",
            );
        }
        Ok(ok(self.entity_json(&entity)))
    }

    fn reconnect(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let body = call.json()?;
        let reconnect_id = match body.get("reconnect_id").and_then(Value::as_str) {
            None | Some("") => return Err(missing("reconnect_id")),
            Some(v) => parse_uuid("reconnect_id", v)?,
        };
        let now = self.clock.elapsed();
        let mut state = self.lock();
        let unknown = || {
            error(
                StatusCode::NOT_FOUND,
                "UNKNOWN_RECONNECT_ID",
                "No entity is waiting for a reconnect with this reconnect_id.",
                false,
            )
        };
        let entity = state
            .waiting_for(reconnect_id)
            .cloned()
            .ok_or_else(unknown)?;
        if self.users[entity.user].behaviour.needs_otp()
            && body.get("otp").and_then(Value::as_str) != Some(OTP)
        {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "INVALID_OTP",
                "The one-time password is incorrect.",
                false,
            ));
        }
        let (entity_id, pending) =
            state
                .complete_reconnect(reconnect_id, now)
                .map_err(|e| {
                    match e {
            super::state::ReconnectError::Unknown => unknown(),
            super::state::ReconnectError::Expired => error(
                StatusCode::GONE,
                "RECONNECT_ID_EXPIRED",
                "The reconnect_id is older than 30 days; make a new data call for a new one.",
                false,
            ),
        }
                })?;
        drop(state);
        self.webhooks.send(
            "entity.reconnected",
            json!({"id": entity_id, "reconnect_id": pending.reconnect_id}),
            "The reconnect was successful and the results are ready for collection from the results endpoint.",
        );
        self.webhooks.send(
            "results.ready",
            json!({"id": pending.results_id}),
            "Your results are ready.",
        );
        Ok(ok(json!({
            "status": "SUCCESS",
            "message": "The reconnect was successful.",
            "entity_id": entity_id,
            "reconnect_id": pending.reconnect_id,
            "results_id": pending.results_id,
        })))
    }
}

fn unknown_customer() -> Reply {
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
