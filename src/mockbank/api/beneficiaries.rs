//! Beneficiaries of payment sources: a destination added at the customer's
//! bank, after a cool-off at the corporate bank. Link's `createPaymentSource`
//! adds the default destination; `updatePaymentSource` and
//! `createBeneficiary` add another ([`MockbankCore::add_beneficiary`]). Each
//! sends `payment_source.beneficiary.created`, and
//! `payment_source.beneficiary.updated` when its cool-off ends.

use super::payments::unknown_source;
use super::*;
use crate::mockbank::payments::{Beneficiary, Source, BENEFICIARY_COOL_OFF};

impl MockbankCore {
    /// A beneficiary for `destination` at test user `user`'s bank, cooling
    /// off from `now` (the clock's reading) if that bank is the corporate one.
    pub(super) fn new_beneficiary(
        &self,
        user: usize,
        destination: Uuid,
        now: Duration,
    ) -> Beneficiary {
        let cool_off = if self.users[user].bank.bank_type == "CORPORATE" {
            BENEFICIARY_COOL_OFF
        } else {
            Duration::ZERO
        };
        Beneficiary {
            id: Uuid::new_v4(),
            destination,
            active_from: now + cool_off,
            active_from_wall: self.clock.now()
                + chrono::Duration::from_std(cool_off).unwrap_or_default(),
        }
    }

    /// Adds `destination` as a beneficiary of the customer's payment source
    /// `source`, with its webhooks; the source as `GET
    /// /customers/v1/{customer_id}/payment-sources/{id}` shows it.
    pub(in crate::mockbank) fn add_beneficiary(
        &self,
        customer: Uuid,
        source: Uuid,
        destination: Uuid,
    ) -> Result<Value, Reply> {
        let now = self.clock.elapsed();
        let mut state = self.lock();
        if state.payments.destination(destination).is_none() {
            return Err(invalid("payment_destination_id", &destination.to_string()));
        }
        let found = state
            .payments
            .sources
            .iter_mut()
            .find(|s| s.id == source && s.customer == customer)
            .ok_or_else(unknown_source)?;
        if found
            .beneficiaries
            .iter()
            .any(|b| b.destination == destination)
        {
            return Err(error(
                StatusCode::CONFLICT,
                "BENEFICIARY_ALREADY_EXISTS",
                "This destination is already a beneficiary of the payment source.",
                false,
            ));
        }
        let beneficiary = self.new_beneficiary(found.user, destination, now);
        found.beneficiaries.push(beneficiary.clone());
        let source = found.clone();
        drop(state);
        self.beneficiary_webhooks(&source, &beneficiary, now);
        let state = self.lock();
        let answer = state
            .payments
            .sources
            .iter()
            .find(|s| s.id == source.id)
            .map(|s| self.source_json(s, now, false))
            .unwrap_or_default();
        Ok(answer)
    }

    /// `payment_source.beneficiary.created` now, and `.updated` when the
    /// beneficiary's cool-off ends (`now`: the clock's reading).
    pub(super) fn beneficiary_webhooks(&self, source: &Source, b: &Beneficiary, now: Duration) {
        let bank = self.users[source.user].bank.identifier;
        let payload = |status: &str| {
            json!({
                "id": b.id,
                "status": status,
                "customer_id": source.customer,
                "payment_source_id": source.id,
                "payment_destination_id": b.destination,
                "payment_source_bank_identifier": bank,
            })
        };
        self.webhooks.send(
            "payment_source.beneficiary.created",
            payload(b.status(now)),
            "A beneficiary was added for a payment source.",
        );
        if b.active_from > now {
            let (clock, webhooks) = (self.clock.clone(), self.webhooks.clone());
            let (payload, at) = (payload("ACTIVE"), b.active_from);
            tokio::spawn(async move {
                clock.sleep_until(at).await;
                webhooks.send(
                    "payment_source.beneficiary.updated",
                    payload,
                    "A beneficiary was updated for a payment source.",
                );
            });
        }
    }
}
