//! The configuration of the methods added to Link after the first five:
//! `updatePaymentSource` and `createBeneficiary` (a destination added to a
//! payment source), `manageConsents`, `verifyAddress` and `captureRedirect`.
//! (`link` is checked as `connect`, `checkout` as `pay`, in `opening.rs`.)

use serde_json::Value;

use super::opening::{chosen_bank, uuid_of, Refusal};
use super::permissions;
use super::session::Opening;
use crate::mockbank::MockbankCore;

impl MockbankCore {
    /// `updatePaymentSource`, `createBeneficiary`: the customer's payment
    /// source and a destination that is not yet its beneficiary. The bank
    /// list is skipped: the source's own user logs in at its bank.
    pub(super) fn beneficiary_opening(
        &self,
        cfg: &Value,
        opening: &mut Opening,
    ) -> Result<(), Refusal> {
        let method = opening.method.name();
        let customer = self.customer_of(cfg, method)?;
        let source_id = uuid_of(cfg, "payment_source_id", method)?;
        let destination = uuid_of(cfg, "payment_destination_id", method)?;
        let user = {
            let state = self.lock();
            let source = state
                .payments
                .sources
                .iter()
                .find(|s| s.id == source_id && s.customer == customer.id)
                .ok_or_else(|| {
                    format!("payment_source_id: no payment source {source_id} of this customer")
                })?;
            if state.payments.destination(destination).is_none() {
                return Err(format!(
                    "payment_destination_id: no payment destination {destination} (create one with POST /payments/v1/destinations)"
                ));
            }
            if source
                .beneficiaries
                .iter()
                .any(|b| b.destination == destination)
            {
                return Err(format!(
                    "payment_destination_id: {destination} is already a beneficiary of this payment source"
                ));
            }
            source.user
        };
        opening.bank = Some(self.users[user].bank);
        opening.beneficiary = Some((source_id, destination, user));
        opening.customer = Some(customer);
        Ok(())
    }

    /// `manageConsents`: the customer, and the one consent to show when
    /// `consent_id` is given (it must be the customer's).
    pub(super) fn manage_opening(&self, cfg: &Value, opening: &mut Opening) -> Result<(), Refusal> {
        let customer = self.customer_of(cfg, "manageConsents")?;
        if cfg
            .get("consent_id")
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty())
        {
            let id = uuid_of(cfg, "consent_id", "manageConsents")?;
            let owned = self
                .lock()
                .payments
                .consents
                .iter()
                .any(|c| c.id == id && c.customer == customer.id);
            if !owned {
                return Err(format!("consent_id: no consent {id} of this customer"));
            }
            opening.consent = Some(id);
        }
        opening.customer = Some(customer);
        Ok(())
    }

    /// `verifyAddress`: the customer, the name the account holder must
    /// have, and permissions that include `identity` (the address is in it;
    /// `["identity", "accounts"]` when none are given).
    pub(super) fn address_opening(
        &self,
        cfg: &Value,
        opening: &mut Opening,
    ) -> Result<(), Refusal> {
        let customer = self.customer_of(cfg, "verifyAddress")?;
        let name = cfg
            .get("customer_name")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or("customer_name: required for verifyAddress (the account holder's name)")?;
        opening.permissions = match cfg.get("permissions") {
            None | Some(Value::Null) => vec!["identity".into(), "accounts".into()],
            Some(list) => {
                permissions(list, opening.region).map_err(|why| format!("permissions: {why}"))?
            }
        };
        if !opening.permissions.iter().any(|p| p == "identity") {
            return Err(
                "permissions: verifyAddress needs \"identity\" (the address is part of it)".into(),
            );
        }
        opening.bank = chosen_bank(cfg, opening.region)?;
        opening.customer_name = Some(name.to_string());
        opening.customer = Some(customer);
        Ok(())
    }

    /// `captureRedirect`: the outcome of the customer's flow that ended by
    /// redirecting the page with this `consent_attempt_id`, shown once.
    pub(super) fn capture_opening(
        &self,
        cfg: &Value,
        opening: &mut Opening,
    ) -> Result<(), Refusal> {
        let customer = self.customer_of(cfg, "captureRedirect")?;
        let attempt = uuid_of(cfg, "consent_attempt_id", "captureRedirect")?;
        let mut sessions = self.link_sessions.lock();
        let session = sessions
            .values_mut()
            .find(|s| s.attempt == attempt && s.redirect().is_some())
            .filter(|s| {
                s.opening
                    .customer
                    .as_ref()
                    .is_some_and(|c| c.id == customer.id)
            })
            .ok_or_else(|| {
                format!("consent_attempt_id: no redirect of this customer with {attempt}")
            })?;
        if session.captured {
            return Err(format!(
                "consent_attempt_id: {attempt} was captured already"
            ));
        }
        session.captured = true;
        let mut result = session.result.clone().unwrap_or_default();
        if result.get("method").is_some() {
            result["method"] = Value::from("CAPTURE_REDIRECT");
        }
        opening.bank = session.bank;
        opening.captured = Some(result);
        opening.customer = Some(customer);
        Ok(())
    }
}

/// Whether `given` names the account holder `holder`: the same words,
/// whatever their case and spacing.
pub(super) fn same_name(given: &str, holder: &str) -> bool {
    let words = |s: &str| {
        s.split_whitespace()
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
    };
    words(given) == words(holder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_whatever_their_case_and_spacing() {
        assert!(same_name("  angelika   JACOBS ", "Angelika Jacobs"));
        assert!(!same_name("Angelika", "Angelika Jacobs"));
        assert!(!same_name("Jacobs Angelika", "Angelika Jacobs"));
    }
}
