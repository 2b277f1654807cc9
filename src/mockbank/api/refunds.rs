//! Refunds (`/payouts/refunds`): the app asks to give back part or all of an
//! accepted payment, then approves or rejects the request. In the shapes
//! Lean's collection records.

use super::*;
use crate::mockbank::payments::{fils, units, PaymentStatus, Refund, REFUND_REASONS};

impl MockbankCore {
    pub(super) fn refunds_api(&self, call: &Call<'_>, rest: &[&str]) -> Result<Reply, Reply> {
        use Method as M;
        match (call.method, rest) {
            (&M::POST, []) => self.create_refunds(call),
            (&M::PUT, []) => self.process_refunds(call),
            (&M::GET, []) => Ok(self.list_refunds(call)),
            (&M::GET, ["reasons"]) => Ok(ok(json!(REFUND_REASONS))),
            (_, [] | ["reasons"]) => Err(wrong_method()),
            _ => Err(not_found_url(call.path)),
        }
    }

    /// `POST /payouts/refunds`: a list of refund requests, all or none.
    fn create_refunds(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let body = call.json()?;
        let items = body
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| invalid("body", "give a non-empty array of refunds"))?;
        let now = self.clock.elapsed();
        let wall = self.clock.now();
        let mut state = self.lock();
        let mut made = Vec::new();
        for item in items {
            let text = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
            let payment_id = parse_uuid(
                "payment_id",
                &text("payment_id").ok_or_else(|| missing("payment_id"))?,
            )?;
            let payment = state
                .payments
                .payments
                .iter()
                .find(|p| p.id == payment_id)
                .ok_or_else(|| invalid("payment_id", &payment_id.to_string()))?;
            if payment.status(now) != PaymentStatus::AcceptedByBank {
                return Err(error(
                    StatusCode::CONFLICT,
                    "PAYMENT_NOT_REFUNDABLE",
                    format!(
                        "Only a payment accepted by the bank can be refunded; this one is {}.",
                        payment.status(now).name()
                    ),
                    false,
                ));
            }
            let paid = state
                .payments
                .intent(payment.intent)
                .map_or(0, |i| i.amount);
            let amount = match item.get("amount") {
                None | Some(Value::Null) => return Err(missing("amount")),
                Some(v) => fils(v).ok_or_else(|| invalid("amount", &v.to_string()))?,
            };
            let refunded: i64 = state
                .payments
                .refunds
                .iter()
                .chain(made.iter())
                .filter(|r| r.payment == payment_id && r.status != "REJECTED")
                .map(|r| r.amount)
                .sum();
            if refunded + amount > paid {
                return Err(invalid(
                    "amount",
                    &format!(
                        "{} (more than the {} left to refund)",
                        units(amount),
                        units(paid - refunded)
                    ),
                ));
            }
            let reason = text("reason_code").ok_or_else(|| missing("reason_code"))?;
            if !REFUND_REASONS.contains(&reason.as_str()) {
                return Err(invalid("reason_code", &reason));
            }
            made.push(Refund {
                id: Uuid::new_v4(),
                payment: payment_id,
                amount,
                currency: text("currency").unwrap_or_else(|| self.region().currency().into()),
                reason,
                description: text("description"),
                external_reference: text("external_reference"),
                status: "CREATED",
                created: wall,
            });
        }
        let answer: Vec<Value> = made
            .iter()
            .map(|r| self.refund_json(&state, r, false))
            .collect();
        state.payments.refunds.extend(made);
        Ok(Reply {
            status: StatusCode::CREATED,
            body: Value::Array(answer).into(),
        })
    }

    /// `PUT /payouts/refunds`: `[{refund_id, status: APPROVED | REJECTED}]`.
    fn process_refunds(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let body = call.json()?;
        let items = body
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| invalid("body", "give a non-empty array of {refund_id, status}"))?;
        let mut state = self.lock();
        let mut decisions = Vec::new();
        for item in items {
            let id = parse_uuid(
                "refund_id",
                item.get("refund_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            )?;
            let status = match item.get("status").and_then(Value::as_str) {
                Some("APPROVED") => "APPROVED",
                Some("REJECTED") => "REJECTED",
                other => return Err(invalid("status", other.unwrap_or("(none)"))),
            };
            let refund = state
                .payments
                .refunds
                .iter()
                .find(|r| r.id == id)
                .ok_or_else(|| invalid("refund_id", &id.to_string()))?;
            if refund.status != "CREATED" {
                return Err(error(
                    StatusCode::CONFLICT,
                    "REFUND_ALREADY_PROCESSED",
                    format!("The refund is already {}.", refund.status),
                    false,
                ));
            }
            decisions.push((id, status));
        }
        for (id, status) in &decisions {
            if let Some(r) = state.payments.refunds.iter_mut().find(|r| r.id == *id) {
                r.status = status;
            }
        }
        Ok(ok(Value::Array(
            decisions
                .iter()
                .map(|(id, status)| json!({"refund_id": id, "status": status}))
                .collect(),
        )))
    }

    fn list_refunds(&self, call: &Call<'_>) -> Reply {
        let wanted = call.query.get("status");
        let state = self.lock();
        let all: Vec<Value> = state
            .payments
            .refunds
            .iter()
            .rev()
            .filter(|r| wanted.is_none_or(|w| r.status == w))
            .map(|r| self.refund_json(&state, r, true))
            .collect();
        listing(
            call,
            ("page", "size", 50),
            "content",
            &all,
            Some(Value::Null),
        )
    }

    /// A refund as created (`listed`: false) or as listed.
    fn refund_json(&self, state: &State, r: &Refund, listed: bool) -> Value {
        let payment = state.payments.payments.iter().find(|p| p.id == r.payment);
        let beneficiary = payment.map(|p| {
            let user = &self.users[p.user];
            json!({
                "name": user.identity.full_name,
                "iban": user.accounts.iter().find(|a| a.id == p.account).map(|a| a.iban.clone()),
                "account_id": p.account,
                "city": user.identity.address.town,
            })
        });
        let mut out = json!({
            "refund_id": r.id,
            "payment_id": r.payment,
            "status": r.status,
            "amount": units(r.amount),
            "currency": r.currency,
            "reason_code": r.reason,
            "description": r.description,
            "external_reference": r.external_reference,
            "beneficiary": beneficiary,
        });
        if listed {
            out["deposit_amount"] = json!(units(r.amount));
            out["deposit_currency"] = json!(r.currency);
            out["created_at"] = json!(shapes::ts(r.created));
            out["created_by"] = json!("api");
            out["actioned_by"] = json!(if r.status == "CREATED" {
                Value::Null
            } else {
                json!("api")
            });
            out["refund_intent_id"] = Value::Null;
        }
        out
    }
}
