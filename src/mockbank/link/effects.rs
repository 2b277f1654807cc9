//! What a Link step does to the Mockbank once the screens are through: link
//! an entity, reconnect, pay, create a payment source or add a beneficiary to
//! one, authorise or revoke a consent. Each ends in the same code as the API
//! and the control endpoints, so the webhooks and the state are theirs. Also
//! what the `manageConsents` screen lists.

use serde_json::{json, Value};

use super::methods::same_name;
use super::session::{Effect, Method, Session, StepError};
use crate::mockbank::api::Grant;
use crate::mockbank::payments::{units, ConsentStatus, PaymentStatus};
use crate::mockbank::MockbankCore;

impl MockbankCore {
    /// Makes `effect` happen and ends `session` with its outcome. Called
    /// with the sessions' lock held; takes the state's.
    pub(super) fn apply(&self, session: &mut Session, effect: Effect) {
        let outcome = match effect {
            Effect::None => return,
            Effect::Link { user, accounts } => return self.link_effect(session, user, accounts),
            Effect::Pay {
                intent,
                user,
                account,
            } => self.pay(intent, user, account).map(|p| {
                tracing::info!(target: "leanproxy::mockbank", payment_id = %p["id"], "paid in the browser");
            }),
            Effect::Checkout {
                intent,
                user,
                account,
            } => self.checkout(session, intent, user, account),
            Effect::Authorize {
                consent,
                user,
                account,
            } => self
                .change_consent(consent, "authorise", Some((user, account)))
                .map(|_| {
                    tracing::info!(target: "leanproxy::mockbank", consent_id = %consent, "consent authorised in the browser");
                }),
            Effect::Beneficiary {
                source,
                destination,
            } => match session.opening.customer.as_ref().map(|c| c.id) {
                Some(customer) => self
                    .add_beneficiary(customer, source, destination)
                    .map(|_| {
                        tracing::info!(target: "leanproxy::mockbank", payment_source_id = %source, "beneficiary added in the browser");
                    }),
                None => return session.failed(&json!({"message": "The customer is gone."})),
            },
            Effect::Revoke(consent) => {
                // The screen stays: the user may revoke another, then is
                // done; a refusal is shown on it (the list is read afresh).
                session.error = self.revoke_own(session, consent).err().map(|answer| StepError {
                    secondary_status: "FAILED",
                    message: answer["message"]
                        .as_str()
                        .unwrap_or("The consent could not be revoked.")
                        .to_string(),
                });
                return;
            }
            Effect::Reconnect(reconnect_id) => {
                self.finish_reconnect(reconnect_id).map(|done| {
                    tracing::info!(target: "leanproxy::mockbank", entity_id = %done.entity_id, "reconnected in the browser");
                })
            }
        };
        match outcome {
            Ok(()) => session.succeeded(),
            Err(reply) => session.failed(&reply.value()),
        }
    }

    /// Linking (`connect`, `link`, `verifyAddress`) or, for
    /// `createPaymentSource`, the payment source of the accounts chosen.
    fn link_effect(&self, session: &mut Session, user: usize, accounts: Option<Vec<uuid::Uuid>>) {
        let Some(customer) = session.opening.customer.clone() else {
            return session.failed(&json!({"message": "The customer is gone."}));
        };
        match session.opening.method {
            Method::CreatePaymentSource => {
                match self.create_source(customer.id, user, accounts) {
                    Ok(source) => {
                        tracing::info!(target: "leanproxy::mockbank", payment_source_id = %source["id"], "payment source created in the browser");
                        session.succeeded();
                    }
                    Err(reply) => session.failed(&reply.value()),
                }
                return;
            }
            Method::VerifyAddress => {
                let given = session.opening.customer_name.as_deref().unwrap_or_default();
                if !same_name(given, &self.users[user].identity.full_name) {
                    return session.refused(
                        "The name given is not the account holder's: the address is not verified.",
                        "CUSTOMER_NAME_MISMATCH",
                    );
                }
            }
            _ => {}
        }
        let grant = Grant {
            customer,
            user,
            permissions: session.opening.permissions.clone(),
            accounts,
        };
        let entity = self.link_entity(grant);
        tracing::info!(target: "leanproxy::mockbank", entity_id = %entity.id, "linked in the browser");
        session.succeeded();
    }

    /// `checkout`: a payment source of the one account chosen, then the
    /// intent paid from it.
    fn checkout(
        &self,
        session: &Session,
        intent: uuid::Uuid,
        user: usize,
        account: uuid::Uuid,
    ) -> Result<(), crate::mockbank::api::Reply> {
        let now = self.clock.elapsed();
        let (customer, paid) = {
            let state = self.lock();
            let paid = state.payments.payments_of(intent).any(|p| {
                p.status(now) != PaymentStatus::Failed && p.outcome != PaymentStatus::RejectedByBank
            });
            let customer = state.payments.intent(intent).map(|i| i.customer);
            (
                customer.or(session.opening.customer.as_ref().map(|c| c.id)),
                paid,
            )
        };
        if paid {
            // No payment source for an intent that cannot be paid: the
            // payment's own refusal (INTENT_ALREADY_PAID).
            return self.pay_from(intent, user, account, None).map(|_| ());
        }
        let source = self.create_source(customer.unwrap_or_default(), user, Some(vec![account]))?;
        let source_id = source["id"]
            .as_str()
            .and_then(|s| uuid::Uuid::parse_str(s).ok());
        let payment = self.pay_from(intent, user, account, source_id)?;
        tracing::info!(target: "leanproxy::mockbank", payment_id = %payment["id"], "checkout in the browser");
        Ok(())
    }

    /// Revokes `consent` if it is the session's customer's; `Err`: the
    /// answer that says why not.
    fn revoke_own(&self, session: &mut Session, consent: uuid::Uuid) -> Result<(), Value> {
        let customer = session.opening.customer.as_ref().map(|c| c.id);
        let owned = self
            .lock()
            .payments
            .consents
            .iter()
            .any(|c| c.id == consent && Some(c.customer) == customer);
        if !owned {
            return Err(
                json!({"status": "UNKNOWN_CONSENT", "message": "No consent with this consent_id for this customer."}),
            );
        }
        match self.change_consent(consent, "revoke", None) {
            Ok(_) => {
                session.revoked += 1;
                tracing::info!(target: "leanproxy::mockbank", consent_id = %consent, "consent revoked in the browser");
                Ok(())
            }
            Err(reply) => Err(reply.value().into_owned()),
        }
    }

    /// Adds what the screens show from the Mockbank's state to `view`: the
    /// consents `manageConsents` lists.
    pub(super) fn decorate(&self, session: &Session, view: &mut Value) {
        if session.opening.method != Method::ManageConsents {
            return;
        }
        let customer = session.opening.customer.as_ref().map(|c| c.id);
        let state = self.lock();
        let consents: Vec<Value> = state
            .payments
            .consents
            .iter()
            .filter(|c| Some(c.customer) == customer)
            .filter(|c| session.opening.consent.is_none_or(|only| only == c.id))
            .map(|c| {
                let account = c.account.and_then(|(user, account)| {
                    let u = &self.users[user];
                    let a = u.accounts.iter().find(|a| a.id == account)?;
                    Some((u.bank.name, a))
                });
                json!({
                    "id": c.id,
                    "status": c.status.name(),
                    "reference": c.reference,
                    "currency": c.currency,
                    "max_individual_amount": format!("{:.2}", units(c.controls.max_individual)),
                    "period_type": c.controls.period_type,
                    "destination": state.payments.destination(c.destination).map(|d| d.display_name.clone()),
                    "bank": account.map(|(bank, _)| bank),
                    "account": account.map(|(_, a)| format!("•••• {}", &a.iban[a.iban.len().saturating_sub(4)..])),
                    "revocable": matches!(c.status, ConsentStatus::AwaitingAuthorisation | ConsentStatus::Authorised),
                })
            })
            .collect();
        view["consents"] = Value::Array(consents);
    }
}
