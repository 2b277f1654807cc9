//! The Mockbank's data calls: v1 and v2 data, results, refreshes.

use super::*;
use crate::mockbank::users::Account;
use chrono::{DateTime, Utc};

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
        Ok(ok(self.render(&entity, &request, results_id)))
    }

    /// The OK answer for `request`.
    pub(super) fn render(&self, entity: &Entity, request: &DataRequest, results_id: Uuid) -> Value {
        let shared = self.user_of(entity);
        let user = &*shared;
        let wall = self.clock.now();
        let refreshed = entity.created;
        let account = |id: &Uuid| user.accounts.iter().find(|a| a.id == *id);
        // A page of `total` items, shaped: `items` holds only the page's.
        let v2_page =
            |kind: &str, key: &str, items: Vec<Value>, total: usize, p: &PageReq, extra: Value| {
                let mut data =
                    json!({"type": kind, key: null, "page": page(p.number, p.size, total)});
                data[key] = Value::Array(items); // moved in (see `shapes::v2_ok`)
                if let (Some(obj), Value::Object(extra)) = (data.as_object_mut(), extra) {
                    obj.extend(extra);
                }
                shapes::v2_ok(kind, data, results_id, wall, refreshed)
            };
        let v2_list = |kind: &str, key: &str, items: Vec<Value>, p: &PageReq, extra: Value| {
            let total = items.len();
            v2_page(
                kind,
                key,
                paginate(items, p.number, p.size),
                total,
                p,
                extra,
            )
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
                let (items, total, key, extra) =
                    account_page(entity.id, user, a, *resource, p, range, wall);
                v2_page(resource.kind(), key, items, total, p, extra)
            }
            DataRequest::Insight(insight) => self.render_insight(entity, insight, results_id),
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
            Some(at) if at <= now => Ok(ok(self.render(entity, &stored.request, results_id))),
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

/// Page `p` of an account's `resource`: the page's items (only they are
/// shaped), how many there are in all, their key and extra `data` fields.
fn account_page(
    entity: Uuid,
    user: &TestUser,
    a: &Account,
    resource: Resource,
    p: &PageReq,
    range: &(Option<NaiveDate>, Option<NaiveDate>),
    wall: DateTime<Utc>,
) -> (Vec<Value>, usize, &'static str, Value) {
    let region = user.bank.region;
    let (items, key, extra) = match resource {
        Resource::Transactions => {
            let matching = a.transactions.iter().rev().filter(|t| {
                range.0.is_none_or(|s| t.date >= s) && range.1.is_none_or(|e| t.date <= e)
            });
            let total = matching.clone().count();
            let items = paginate(matching.enumerate(), p.number, p.size)
                .into_iter()
                .map(|(i, t)| shapes::v2_transaction(region, entity, a, t, i))
                .collect();
            return (items, total, "transactions", Value::Null);
        }
        Resource::Balances => (
            shapes::v2_balances(entity, a, wall),
            "balances",
            Value::Null,
        ),
        Resource::Identities => (
            vec![shapes::v2_account_identity(entity, user)],
            "identities",
            json!({"account_id": null}),
        ),
        Resource::Beneficiaries => (
            shapes::v2_beneficiaries(region, a),
            "beneficiaries",
            Value::Null,
        ),
        Resource::DirectDebits => (
            shapes::v2_direct_debits(region, a),
            "direct_debits",
            Value::Null,
        ),
        Resource::ScheduledPayments => (
            shapes::v2_scheduled_payments(region, a),
            "scheduled_payments",
            Value::Null,
        ),
        Resource::StandingOrders => (
            shapes::v2_standing_orders(region, a),
            "standing_orders",
            Value::Null,
        ),
    };
    let total = items.len();
    (paginate(items, p.number, p.size), total, key, extra)
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
