//! The Mockbank's data calls: v1 and v2 data, results, refreshes.

use super::*;
use crate::mockbank::shapes::wire::{
    self, Page, V1Balance, V1Ok, V1Transactions, V2Account, V2Ok, V2Page, V2Transaction,
};
use crate::mockbank::users::Account;
use chrono::{DateTime, Utc};
use serde::Serialize;

impl MockbankCore {
    // -------------------------------------------------------------- data

    pub(super) fn v1_data(&self, call: &Call<'_>, kind: &str) -> Result<Reply, Reply> {
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
    pub(super) fn data_call(
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
        let shared = self.user_of(&entity);
        let user = &*shared;
        check_account(user, &request)?;
        let v1 = request.is_v1();

        if entity.consent_expired {
            return Err(consent_expired());
        }
        if !state.bank_up(user.bank.identifier) {
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
        // Rendered without the lock: with more than one runtime worker, data
        // calls are shaped and serialised side by side.
        drop(state);
        Ok(ok(self.render(&entity, user, &request, results_id)))
    }

    /// The OK answer for `request`, `user` as `entity` shares it
    /// ([`MockbankCore::user_of`]).
    pub(super) fn render(
        &self,
        entity: &Entity,
        user: &TestUser,
        request: &DataRequest,
        results_id: Uuid,
    ) -> ReplyBody {
        let wall = self.clock.now();
        let account = |id: &Uuid| user.accounts.iter().find(|a| a.id == *id);
        let v1 = |payload| v1_answer(payload, V1_BYTES, results_id, wall);
        let v2 = |kind, page| V2Answer {
            kind,
            page,
            results_id,
            now: wall,
            refreshed: entity.created,
        };
        match request {
            DataRequest::V1Accounts => v1(shapes::v1_accounts(user)),
            DataRequest::V1Identity => v1(shapes::v1_identity(user)),
            DataRequest::V1Balance(id) => match account(id) {
                Some(a) => v1_answer(V1Balance::new(user, a), V1_BYTES, results_id, wall),
                None => Value::Null.into(),
            },
            DataRequest::V1Transactions(id) => match account(id) {
                Some(a) => {
                    let capacity = V1_BYTES + V1_TRANSACTION_BYTES * a.transactions.len();
                    v1_answer(V1Transactions::new(a), capacity, results_id, wall)
                }
                None => Value::Null.into(),
            },
            DataRequest::V2Accounts(p) => {
                let items = user
                    .accounts
                    .iter()
                    .map(|a| V2Account::new(entity.id, user, a))
                    .collect();
                v2("accounts", p).list("accounts", items, &[])
            }
            DataRequest::V2Identity(p) => {
                let items = vec![shapes::v2_identity(entity.id, user)];
                v2("identities", p).list("identities", items, &["account_id"])
            }
            DataRequest::V2Account {
                account: id,
                resource,
                page: p,
                range,
            } => match account(id) {
                Some(a) => {
                    let answer = v2(resource.kind(), p);
                    account_page(&answer, entity.id, user, a, *resource, range, wall)
                }
                None => Value::Null.into(),
            },
            DataRequest::Insight(insight) => {
                self.render_insight(entity, insight, results_id).into()
            }
        }
    }

    pub(super) fn results(&self, id: &str) -> Result<Reply, Reply> {
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
            Some(at) if at <= now => {
                // Rendered without the lock, as in `data_call`.
                let (entity, request) = (entity.clone(), stored.request.clone());
                drop(state);
                let user = self.user_of(&entity);
                Ok(ok(self.render(&entity, &user, &request, results_id)))
            }
            _ => Ok(ok(if v1 {
                crate::lean::v1_pending(results_id, wall)
            } else {
                crate::lean::v2_pending(results_id, wall)
            })),
        }
    }

    // -------------------------------------------------------------- refreshes

    pub(super) fn start_refresh(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let body = call.json()?;
        let entity_id = entity_param(body.get("entity_id").and_then(Value::as_str))?;
        let now = self.clock.elapsed();
        let mut state = self.lock();
        let entity = state
            .entities
            .get(&entity_id)
            .ok_or_else(unknown_entity)?
            .clone();
        if entity.consent_expired {
            return Err(consent_expired());
        }
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
    pub(super) fn data_status(&self, entity: &Entity, availability_key: &str) -> Value {
        let shared = self.user_of(entity);
        let user = &*shared;
        let accounts: Vec<Value> = user
            .accounts
            .iter()
            .map(|a| {
                let start = a.transactions.first().map_or(a.opened, |t| t.date);
                let end = a.transactions.last().map_or(a.opened, |t| t.date);
                let mut availability = json!({"start": start.to_string(), "end": end.to_string()});
                // The webhook's spelling also counts the whole months (Lean's
                // samples); the API's does not.
                if availability_key == "transaction_availability" {
                    availability["complete_months"] = json!(complete_months(start, end));
                }
                json!({
                    "account_id": a.id,
                    "balance": "OK",
                    "identity": "OK",
                    "transactions": "OK",
                    "scheduled_payments": "OK",
                    "direct_debits": "OK",
                    "standing_orders": "OK",
                    "beneficiaries": "OK",
                    availability_key: availability,
                })
            })
            .collect();
        json!({"accounts": "OK", "identity": "OK", "account_data": accounts})
    }

    pub(super) fn refresh_status(&self, r: &Refresh, now: Duration) -> &'static str {
        if r.finishes <= now {
            "FINISHED"
        } else {
            "PENDING"
        }
    }

    pub(super) fn refresh_times(&self, r: &Refresh, now: Duration) -> (String, String) {
        let at = |elapsed: Duration| {
            let back = chrono::Duration::from_std(self.clock.elapsed().saturating_sub(elapsed))
                .unwrap_or_default();
            shapes::ts_ms(self.clock.now() - back)
        };
        (at(r.created), at(r.finishes.min(now)))
    }

    pub(super) fn list_refreshes(&self, call: &Call<'_>) -> Result<Reply, Reply> {
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

    pub(super) fn refresh(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
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
}

/// Calendar months wholly inside `start..=end` (Lean's
/// `transaction_availability.complete_months`).
fn complete_months(start: NaiveDate, end: NaiveDate) -> u32 {
    use chrono::Datelike;
    let index = |d: NaiveDate| d.year() * 12 + d.month0() as i32;
    let first = index(start) + i32::from(start.day() != 1);
    let last_day = end
        .checked_add_days(chrono::Days::new(1))
        .is_some_and(|next| next.month() != end.month());
    let last = index(end) - i32::from(!last_day);
    u32::try_from(last - first + 1).unwrap_or(0)
}

/// A written answer's buffer to start with: a v2 envelope and page, and each
/// item (a v2 transaction is 1.3-1.4 KB, an account 0.9 KB); a v1 answer, and
/// each v1 transaction (about 250 bytes).
const ENVELOPE_BYTES: usize = 512;
const ITEM_BYTES: usize = 1536;
const V1_BYTES: usize = 1024;
const V1_TRANSACTION_BYTES: usize = 320;

/// A v1 data answer carrying `payload`.
fn v1_answer(
    payload: impl Serialize,
    capacity: usize,
    results_id: Uuid,
    now: DateTime<Utc>,
) -> ReplyBody {
    ReplyBody::written(&V1Ok::new(payload, results_id, now), capacity)
}

/// A v2 data answer being written: its `type`, the page asked for and its
/// envelope's ids and times.
struct V2Answer<'a> {
    kind: &'a str,
    page: &'a PageReq,
    results_id: Uuid,
    now: DateTime<Utc>,
    refreshed: DateTime<Utc>,
}

impl V2Answer<'_> {
    /// The answer with `items` (the page's only, of `total`) under `key`, and
    /// `null` for each of `nulls` after the page.
    fn page<T: Serialize>(
        &self,
        key: &str,
        items: Vec<T>,
        total: usize,
        nulls: &[&str],
    ) -> ReplyBody {
        let capacity = ENVELOPE_BYTES + ITEM_BYTES * items.len();
        let data = V2Page {
            kind: self.kind,
            key,
            items,
            page: Page::new(self.page.number, self.page.size, total),
            nulls,
        };
        let answer = V2Ok::new(self.kind, data, self.results_id, self.now, self.refreshed);
        ReplyBody::written(&answer, capacity)
    }

    /// The answer with the asked page of all of `items`.
    fn list<T: Serialize>(&self, key: &str, items: Vec<T>, nulls: &[&str]) -> ReplyBody {
        let total = items.len();
        let items = paginate(items, self.page.number, self.page.size);
        self.page(key, items, total, nulls)
    }
}

/// The asked page of an account's `resource`: only the page's items are
/// shaped.
fn account_page(
    answer: &V2Answer<'_>,
    entity: Uuid,
    user: &TestUser,
    a: &Account,
    resource: Resource,
    range: &(Option<NaiveDate>, Option<NaiveDate>),
    wall: DateTime<Utc>,
) -> ReplyBody {
    let region = user.bank.region;
    match resource {
        Resource::Transactions => {
            let matching = a.transactions.iter().rev().filter(|t| {
                range.0.is_none_or(|s| t.date >= s) && range.1.is_none_or(|e| t.date <= e)
            });
            let total = matching.clone().count();
            let p = answer.page;
            let items = paginate(matching.enumerate(), p.number, p.size)
                .into_iter()
                .map(|(i, t)| V2Transaction::new(region, entity, a, t, i))
                .collect();
            answer.page("transactions", items, total, &[])
        }
        Resource::Balances => {
            let at = shapes::ts_ms(wall);
            answer.list("balances", wire::v2_balances(entity, a, &at), &[])
        }
        Resource::Identities => {
            let items = vec![shapes::v2_account_identity(entity, user)];
            answer.list("identities", items, &["account_id"])
        }
        Resource::Beneficiaries => {
            answer.list("beneficiaries", shapes::v2_beneficiaries(region, a), &[])
        }
        Resource::DirectDebits => {
            answer.list("direct_debits", shapes::v2_direct_debits(region, a), &[])
        }
        Resource::ScheduledPayments => {
            let items = shapes::v2_scheduled_payments(region, a);
            answer.list("scheduled_payments", items, &[])
        }
        Resource::StandingOrders => answer.list(
            "standing_orders",
            shapes::v2_standing_orders(region, a),
            &[],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_months_count_whole_calendar_months_as_lean_samples_do() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        // The two accounts of Lean's entity.data.refresh.updated sample.
        assert_eq!(complete_months(d("2025-07-01"), d("2026-05-12")), 10);
        assert_eq!(complete_months(d("2025-05-13"), d("2026-05-12")), 11);
        assert_eq!(complete_months(d("2026-01-01"), d("2026-01-31")), 1);
        assert_eq!(complete_months(d("2026-01-02"), d("2026-01-31")), 0);
        assert_eq!(complete_months(d("2026-03-05"), d("2026-03-20")), 0);
    }
}
