//! Lean's insights: `POST /insights/v2/income`, `GET /insights/v2/expenses` and
//! `GET /insights/v2/assets/cashflows`, and in KSA only
//! `GET /insights/v2/liabilities/credit-obligations`, `…/non-credit-obligations`,
//! `/insights/v2/income/employment` and `/insights/v2/assets/balances` (a UAE
//! Mockbank answers them `INVALID_URL`, as Lean's UAE sandbox does), computed
//! from the entity's test user by `mockbank/insights/`. Each is a data call (`data_call`): unknown entities,
//! expired sessions (`RECONNECT_REQUIRED`, answered after the reconnect), a bank
//! under maintenance and `async=true` (`PENDING`, then `results.ready` and
//! `/data/v2/results/{results_id}`) work as they do for data.
//!
//! Lean's insights errors carry no `results_id` (the data API's do), and Lean
//! refuses a call that sends both `lean-app-token` and `Authorization`.

use super::*;
use crate::mockbank::insights::{self, IncomeType, Insight, Window};
use crate::mockbank::Region;

/// `reply` without the `results_id` the data API's errors carry: Lean's
/// insights and verifications errors have none. (Errors are `Value`s; only
/// data answers are written ahead.)
pub(super) fn without_results_id(mut reply: Reply) -> Reply {
    if let ReplyBody::Value(Value::Object(body)) = &mut reply.body {
        body.remove("results_id");
    }
    reply
}

/// Refuses both credentials at once, as Lean's insights do.
pub(super) fn one_credential(call: &Call<'_>) -> Result<(), Reply> {
    if call.headers.contains_key("lean-app-token")
        && call.headers.contains_key(header::AUTHORIZATION)
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETERS",
            "Do not supply a 'lean-app-token' header when providing an 'Authorization' header",
            false,
        ));
    }
    Ok(())
}

/// `async` from the query or the body, where Lean's examples also send it as
/// a string (`"async": "false"`).
pub(super) fn wants_async(call: &Call<'_>, body: &Value) -> bool {
    call.is_async(body) || body.get("async").and_then(Value::as_str) == Some("true")
}

/// An `entity_id` from a JSON body (a non-string is passed on as its JSON
/// text, so it is reported as the invalid value it is).
pub(super) fn body_entity(body: &Value) -> Option<String> {
    body.get("entity_id").map(|v| {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    })
}

impl MockbankCore {
    /// Routes `/insights/v2/…`.
    pub(super) fn insights(&self, call: &Call<'_>, segments: &[&str]) -> Result<Reply, Reply> {
        let (get, post) = (&[Method::GET], &[Method::POST]);
        match segments {
            ["insights", "v2", "income"] => {
                allow(call.method, post).and_then(|()| self.income(call))
            }
            ["insights", "v2", "expenses"] => {
                allow(call.method, get).and_then(|()| self.windowed(call, Insight::Expenses))
            }
            ["insights", "v2", "assets", "cashflows"] => {
                allow(call.method, get).and_then(|()| self.windowed(call, Insight::Cashflows))
            }
            ["insights", "v2", ..] if self.region() == Region::Ksa => {
                self.ksa_insights(call, &segments[2..])
            }
            _ => Err(not_found_url(call.path)),
        }
    }

    /// The insights only Lean's KSA sandbox serves.
    fn ksa_insights(&self, call: &Call<'_>, rest: &[&str]) -> Result<Reply, Reply> {
        let insight: fn(Window) -> Insight = match rest {
            ["liabilities", "credit-obligations"] => Insight::CreditObligations,
            ["liabilities", "non-credit-obligations"] => Insight::NonCreditObligations,
            ["income", "employment"] => Insight::Employment,
            ["assets", "balances"] => Insight::Balances,
            _ => return Err(not_found_url(call.path)),
        };
        allow(call.method, &[Method::GET])?;
        self.windowed(call, insight)
    }

    fn income(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        one_credential(call)?;
        let body = call.json().map_err(without_results_id)?;
        let kind = match body.get("income_type") {
            None | Some(Value::Null) => IncomeType::All,
            Some(v) => v
                .as_str()
                .and_then(IncomeType::parse)
                .ok_or_else(|| without_results_id(invalid("income_type", &value_text(v))))?,
        };
        self.data_call(
            body_entity(&body).as_deref(),
            DataRequest::Insight(Insight::Income(kind)),
            wants_async(call, &body),
        )
        .map_err(without_results_id)
    }

    /// A `GET` insight over `start_date` … `end_date`.
    fn windowed(&self, call: &Call<'_>, insight: fn(Window) -> Insight) -> Result<Reply, Reply> {
        one_credential(call)?;
        let window = Window {
            start: call.date("start_date").map_err(without_results_id)?,
            end: call.date("end_date").map_err(without_results_id)?,
        };
        if let (Some(start), Some(end)) = (window.start, window.end) {
            if start > end {
                return Err(without_results_id(invalid(
                    "start_date",
                    &start.to_string(),
                )));
            }
        }
        self.data_call(
            call.query.get("entity_id").map(String::as_str),
            DataRequest::Insight(insight(window)),
            call.is_async(&Value::Null),
        )
        .map_err(without_results_id)
    }

    /// The OK answer of an insight, now or when its async results are read.
    pub(super) fn render_insight(
        &self,
        entity: &Entity,
        insight: &Insight,
        results_id: Uuid,
    ) -> Value {
        let shared = self.user_of(entity);
        let user = &*shared;
        let wall = self.clock.now();
        let today = wall.date_naive();
        let (kind, computed) = match insight {
            Insight::Income(kind) => (Some("income"), insights::income(user, today, *kind)),
            Insight::Expenses(window) => {
                (Some("expenses"), insights::expenses(user, today, *window))
            }
            // Lean's cash flows and cash balances answers have no `type`.
            Insight::Cashflows(window) => (None, insights::cashflows(user, today, *window)),
            Insight::CreditObligations(window) => (
                Some("credits-obligations"),
                insights::credit_obligations(user, today, *window),
            ),
            Insight::NonCreditObligations(window) => (
                Some("non-credits-obligations"),
                insights::non_credit_obligations(user, today, *window),
            ),
            Insight::Employment(window) => (
                Some("employment"),
                insights::employment(user, today, *window),
            ),
            Insight::Balances(window) => (None, insights::balances(user, today, *window)),
            Insight::NameVerification(name) => {
                return self.name_verification(user, name, results_id)
            }
        };
        let mut body = json!({
            "status": "OK",
            "results_id": results_id,
            "message": "Data successfully retrieved",
            "meta": null,
            "timestamp": ts(wall),
            "status_detail": null,
        });
        if let Some(obj) = body.as_object_mut() {
            if let Some(kind) = kind {
                obj.insert("type".into(), json!(kind));
            }
            obj.insert("insights".into(), computed);
        }
        body
    }
}

/// A JSON value as an error message shows it (strings without quotes).
pub(super) fn value_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}
