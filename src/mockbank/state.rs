//! The Mockbank's state and rules, free of HTTP: customers, linked entities and
//! their sessions, pending reconnects, async results, refreshes and OAuth tokens.
//! Times are Mockbank clock readings (time since the clock's start).

use std::collections::HashMap;
use std::time::Duration;

use chrono::NaiveDate;
use uuid::Uuid;

use super::users::Behaviour;

/// Reconnect ids are valid this long (Lean: 30 days).
pub(super) const RECONNECT_ID_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// OAuth tokens are valid this long (Lean answers `expires_in: 3599`).
pub(super) const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// A customer.
#[derive(Debug, Clone)]
pub(super) struct Customer {
    /// `customer_id`
    pub(super) id: Uuid,
    /// The app's own id for its user (unique).
    pub(super) app_user_id: String,
}

/// A pending reconnect of an entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pending {
    /// The id the app passes to the LinkSDK (v1 `payload.reconnect_id`).
    pub(super) reconnect_id: Uuid,
    /// The results id of the call that found the session expired (v2: also the
    /// reconnect id); its results are ready after the reconnect.
    pub(super) results_id: Uuid,
    /// When it was issued.
    pub(super) issued: Duration,
}

/// A linked bank connection.
#[derive(Debug, Clone)]
pub(super) struct Entity {
    /// `entity_id`
    pub(super) id: Uuid,
    /// Owner.
    pub(super) customer: Uuid,
    /// Index of the test user in the user list.
    pub(super) user: usize,
    /// Link time (wall clock), for the entity object.
    pub(super) created: chrono::DateTime<chrono::Utc>,
    /// Last successful data call.
    pub(super) last_activity: Duration,
    /// Last connect or reconnect.
    pub(super) session_start: Duration,
    /// Session ended by "Expire session".
    pub(super) expired: bool,
    /// The reconnect it waits for, once a data call found the session expired.
    pub(super) pending: Option<Pending>,
    /// The permissions the customer granted at link time.
    pub(super) permissions: Vec<String>,
    /// The accounts the customer chose to share (`None`: all of the user's).
    pub(super) accounts: Option<Vec<Uuid>>,
    /// The consent was expired (revoked) by the control API: data calls and
    /// refreshes answer `CONSENT_EXPIRED` until the user links again.
    pub(super) consent_expired: bool,
}

/// The data a call asked for, kept so async and post-reconnect results can be
/// answered later.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum DataRequest {
    /// v1 `/data/v1/accounts`
    V1Accounts,
    /// v1 `/data/v1/balance`
    V1Balance(Uuid),
    /// v1 `/data/v1/identity`
    V1Identity,
    /// v1 `/data/v1/transactions`
    V1Transactions(Uuid),
    /// v2 `/data/v2/accounts`
    V2Accounts(PageReq),
    /// v2 `/data/v2/identity`
    V2Identity(PageReq),
    /// v2 `/data/v2/accounts/{account_id}/{resource}`
    V2Account {
        /// The account.
        account: Uuid,
        /// Which resource.
        resource: Resource,
        /// Paging.
        page: PageReq,
        /// `start_date` / `end_date` (transactions).
        range: (Option<NaiveDate>, Option<NaiveDate>),
    },
    /// `/insights/…`: computed from the entity's data.
    Insight(super::insights::Insight),
}

impl DataRequest {
    /// Whether this is a v1 call (envelope `payload`) or v2 (`data`).
    pub(super) fn is_v1(&self) -> bool {
        matches!(
            self,
            DataRequest::V1Accounts
                | DataRequest::V1Balance(_)
                | DataRequest::V1Identity
                | DataRequest::V1Transactions(_)
        )
    }
}

/// v2 paging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PageReq {
    /// 0-based page.
    pub(super) number: usize,
    /// Page size.
    pub(super) size: usize,
}

/// v2 per-account resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resource {
    /// `transactions`
    Transactions,
    /// `balances`
    Balances,
    /// `identities`
    Identities,
    /// `beneficiaries`
    Beneficiaries,
    /// `direct-debits`
    DirectDebits,
    /// `scheduled-payments`
    ScheduledPayments,
    /// `standing-orders`
    StandingOrders,
}

impl Resource {
    /// From the path segment.
    pub(super) fn from_segment(s: &str) -> Option<Self> {
        Some(match s {
            "transactions" => Resource::Transactions,
            "balances" => Resource::Balances,
            "identities" => Resource::Identities,
            "beneficiaries" => Resource::Beneficiaries,
            "direct-debits" => Resource::DirectDebits,
            "scheduled-payments" => Resource::ScheduledPayments,
            "standing-orders" => Resource::StandingOrders,
            _ => return None,
        })
    }

    /// The `type` Lean answers with.
    pub(super) fn kind(self) -> &'static str {
        match self {
            Resource::Transactions => "transactions",
            Resource::Balances => "balances",
            Resource::Identities => "identities",
            Resource::Beneficiaries => "beneficiaries",
            Resource::DirectDebits => "direct-debits",
            Resource::ScheduledPayments => "scheduled-payments",
            Resource::StandingOrders => "standing-orders",
        }
    }
}

/// Results that can be fetched from the results endpoints.
#[derive(Debug, Clone)]
pub(super) struct StoredResult {
    /// Entity the call was for.
    pub(super) entity: Uuid,
    /// What it asked for.
    pub(super) request: DataRequest,
    /// When the results become fetchable (`None`: after a reconnect).
    pub(super) ready_at: Option<Duration>,
}

/// A data refresh.
#[derive(Debug, Clone)]
pub(super) struct Refresh {
    /// `refresh_id`
    pub(super) id: Uuid,
    /// Entity.
    pub(super) entity: Uuid,
    /// Its customer.
    pub(super) customer: Uuid,
    /// Created (clock reading).
    pub(super) created: Duration,
    /// Finished (clock reading).
    pub(super) finishes: Duration,
}

/// What an OAuth token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Scope {
    /// `api`: backend calls.
    Api,
    /// `customer.<id>`: LinkSDK only.
    Customer(Uuid),
}

/// An issued OAuth token.
#[derive(Debug, Clone)]
pub(super) struct Token {
    /// Its scope.
    pub(super) scope: Scope,
    /// Clock reading when it stops working.
    pub(super) expires: Duration,
}

/// Timing rules for sessions.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    /// OTP users are de-authenticated after this long without a data call.
    pub(super) inactivity: Duration,
    /// Corporate sessions last this long after (re)connecting.
    pub(super) corporate_session: Duration,
}

/// Everything the Mockbank remembers.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Customers in creation order.
    pub(super) customers: Vec<Customer>,
    /// Linked entities.
    pub(super) entities: HashMap<Uuid, Entity>,
    /// Entity ids in link order (for listings).
    pub(super) entity_order: Vec<Uuid>,
    /// Results fetchable by id.
    pub(super) results: HashMap<Uuid, StoredResult>,
    /// Refreshes in creation order.
    pub(super) refreshes: Vec<Refresh>,
    /// Issued tokens.
    pub(super) tokens: HashMap<String, Token>,
    /// Tokens issued so far (revoked ones included).
    pub(super) tokens_issued: usize,
    /// Banks taken down (under maintenance): their data calls answer
    /// `FAILED` / `BANK_MAINTENANCE`. The maintenance bank starts here.
    pub(super) banks_down: std::collections::BTreeSet<&'static str>,
    /// Destinations, payment intents and payments.
    pub(super) payments: super::payments::Payments,
}

impl State {
    /// The state a Mockbank starts with: every bank that is not
    /// `data_available` is down.
    pub(super) fn new(region: super::Region) -> Self {
        Self {
            banks_down: region
                .banks()
                .iter()
                .filter(|b| !b.data_available)
                .map(|b| b.identifier)
                .collect(),
            payments: super::payments::Payments::new(region),
            ..Self::default()
        }
    }

    /// Whether `bank`'s data calls work now.
    pub(super) fn bank_up(&self, bank: &str) -> bool {
        !self.banks_down.contains(bank)
    }

    /// The customer with `id`.
    pub(super) fn customer(&self, id: Uuid) -> Option<&Customer> {
        self.customers.iter().find(|c| c.id == id)
    }

    /// Whether the entity's bank session has ended, by its user's behaviour.
    pub(super) fn session_expired(
        entity: &Entity,
        behaviour: Behaviour,
        now: Duration,
        timing: Timing,
    ) -> bool {
        if entity.expired || entity.pending.is_some() {
            return true;
        }
        // Lean's sandbox de-authenticates after the inactivity window; the
        // no-OTP user is the one documented as stable.
        match behaviour {
            Behaviour::OtpRequired | Behaviour::MultiAccount | Behaviour::BankMaintenance => {
                now.saturating_sub(entity.last_activity) > timing.inactivity
            }
            Behaviour::Corporate => {
                now.saturating_sub(entity.session_start) > timing.corporate_session
            }
            Behaviour::NoOtp => false,
        }
    }

    /// The pending reconnect of `entity`, issuing one (with a results entry
    /// answered after the reconnect) when there is none or it has expired.
    /// Repeated calls return the same ids.
    pub(super) fn pending_reconnect(
        &mut self,
        entity: Uuid,
        request: &DataRequest,
        now: Duration,
    ) -> Option<Pending> {
        let e = self.entities.get_mut(&entity)?;
        e.expired = true;
        let valid = e
            .pending
            .as_ref()
            .filter(|p| now.saturating_sub(p.issued) < RECONNECT_ID_LIFETIME)
            .cloned();
        let pending = match valid {
            Some(p) => p,
            None => {
                let results_id = Uuid::new_v4();
                // v2 uses the results id as the reconnect id.
                let reconnect_id = if request.is_v1() {
                    Uuid::new_v4()
                } else {
                    results_id
                };
                let p = Pending {
                    reconnect_id,
                    results_id,
                    issued: now,
                };
                e.pending = Some(p.clone());
                self.results.insert(
                    results_id,
                    StoredResult {
                        entity,
                        request: request.clone(),
                        ready_at: None,
                    },
                );
                p
            }
        };
        Some(pending)
    }

    /// The entity waiting for the reconnect `id`: its v1 `reconnect_id` or its
    /// `results_id` (which v2 apps use as the reconnect id).
    pub(super) fn waiting_for(&self, id: Uuid) -> Option<&Entity> {
        self.entities.values().find(|e| {
            e.pending
                .as_ref()
                .is_some_and(|p| p.reconnect_id == id || p.results_id == id)
        })
    }

    /// Completes the reconnect named by `reconnect_id`: the session restarts and
    /// the deferred results become ready. Returns the entity and the pending
    /// record, or why not.
    pub(super) fn complete_reconnect(
        &mut self,
        reconnect_id: Uuid,
        now: Duration,
    ) -> Result<(Uuid, Pending), ReconnectError> {
        let id = self
            .waiting_for(reconnect_id)
            .ok_or(ReconnectError::Unknown)?
            .id;
        let entity = self.entities.get_mut(&id).ok_or(ReconnectError::Unknown)?;
        let pending = entity.pending.clone().ok_or(ReconnectError::Unknown)?;
        if now.saturating_sub(pending.issued) >= RECONNECT_ID_LIFETIME {
            return Err(ReconnectError::Expired);
        }
        entity.pending = None;
        entity.expired = false;
        entity.last_activity = now;
        entity.session_start = now;
        let id = entity.id;
        if let Some(result) = self.results.get_mut(&pending.results_id) {
            result.ready_at = Some(now);
        }
        Ok((id, pending))
    }
}

/// Why a reconnect was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReconnectError {
    /// No entity waits for this reconnect id.
    Unknown,
    /// The id is older than 30 days.
    Expired,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn timing() -> Timing {
        Timing {
            inactivity: 10 * MIN,
            corporate_session: 5 * MIN,
        }
    }

    fn state_with_entity() -> (State, Uuid) {
        let mut s = State::default();
        let id = Uuid::new_v4();
        s.entities.insert(
            id,
            Entity {
                id,
                customer: Uuid::new_v4(),
                user: 0,
                created: chrono::Utc::now(),
                last_activity: Duration::ZERO,
                session_start: Duration::ZERO,
                expired: false,
                pending: None,
                permissions: Vec::new(),
                accounts: None,
                consent_expired: false,
            },
        );
        (s, id)
    }

    #[test]
    fn otp_user_expires_after_inactivity_only() {
        let (s, id) = state_with_entity();
        let e = &s.entities[&id];
        assert!(!State::session_expired(
            e,
            Behaviour::OtpRequired,
            10 * MIN,
            timing()
        ));
        assert!(State::session_expired(
            e,
            Behaviour::OtpRequired,
            10 * MIN + MIN,
            timing()
        ));
        assert!(!State::session_expired(
            e,
            Behaviour::NoOtp,
            1000 * MIN,
            timing()
        ));
    }

    #[test]
    fn corporate_session_ends_even_when_active() {
        let (mut s, id) = state_with_entity();
        s.entities.get_mut(&id).unwrap().last_activity = 6 * MIN;
        let e = &s.entities[&id];
        assert!(State::session_expired(
            e,
            Behaviour::Corporate,
            6 * MIN,
            timing()
        ));
    }

    #[test]
    fn repeated_calls_get_the_same_reconnect_id_until_it_expires() {
        let (mut s, id) = state_with_entity();
        let first = s
            .pending_reconnect(id, &DataRequest::V1Accounts, MIN)
            .unwrap();
        let again = s
            .pending_reconnect(id, &DataRequest::V1Accounts, 2 * MIN)
            .unwrap();
        assert_eq!(first.reconnect_id, again.reconnect_id);
        assert_ne!(first.reconnect_id, first.results_id, "v1 ids differ");
        let later = s
            .pending_reconnect(id, &DataRequest::V1Accounts, MIN + RECONNECT_ID_LIFETIME)
            .unwrap();
        assert_ne!(
            later.reconnect_id, first.reconnect_id,
            "a new id after 30 days"
        );
    }

    #[test]
    fn v2_reconnect_id_is_the_results_id() {
        let (mut s, id) = state_with_entity();
        let req = DataRequest::V2Accounts(PageReq {
            number: 0,
            size: 50,
        });
        let p = s.pending_reconnect(id, &req, MIN).unwrap();
        assert_eq!(p.reconnect_id, p.results_id);
    }

    #[test]
    fn reconnect_restores_the_session_and_readies_results() {
        let (mut s, id) = state_with_entity();
        let p = s
            .pending_reconnect(id, &DataRequest::V1Accounts, MIN)
            .unwrap();
        assert_eq!(s.results[&p.results_id].ready_at, None);
        assert_eq!(
            s.complete_reconnect(Uuid::new_v4(), 2 * MIN),
            Err(ReconnectError::Unknown)
        );
        let (entity, _) = s.complete_reconnect(p.reconnect_id, 2 * MIN).unwrap();
        assert_eq!(entity, id);
        assert!(!State::session_expired(
            &s.entities[&id],
            Behaviour::OtpRequired,
            3 * MIN,
            timing()
        ));
        assert_eq!(s.results[&p.results_id].ready_at, Some(2 * MIN));
        assert_eq!(
            s.complete_reconnect(p.reconnect_id, 2 * MIN),
            Err(ReconnectError::Unknown),
            "used once"
        );
    }

    #[test]
    fn v2_apps_may_reconnect_with_the_results_id() {
        let (mut s, id) = state_with_entity();
        let p = s
            .pending_reconnect(id, &DataRequest::V1Accounts, MIN)
            .unwrap();
        assert_eq!(s.complete_reconnect(p.results_id, 2 * MIN).unwrap().0, id);
    }

    #[test]
    fn expired_reconnect_id_is_refused() {
        let (mut s, id) = state_with_entity();
        let p = s
            .pending_reconnect(id, &DataRequest::V1Accounts, Duration::ZERO)
            .unwrap();
        assert_eq!(
            s.complete_reconnect(p.reconnect_id, RECONNECT_ID_LIFETIME),
            Err(ReconnectError::Expired)
        );
    }
}
