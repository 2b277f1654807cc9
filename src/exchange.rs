//! The vocabulary the layers pass each other about one exchange: the header
//! names leanproxy reads and writes, the request id and notes in a request's
//! extensions, the marker on answers a fault made up, and which Lean API
//! generation a path belongs to.

use std::sync::{Arc, Mutex};

use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// `x-request-id`: propagated when the app sends one, generated otherwise.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request header carrying a one-off fault spec; always stripped.
pub static X_LEANPROXY_FAULT: HeaderName = HeaderName::from_static("x-leanproxy-fault");

/// Response header naming the rule (or `header`) that produced or changed an answer.
pub static X_LEANPROXY_INJECTED: HeaderName = HeaderName::from_static("x-leanproxy-injected");

/// Response header carrying the reconnect id, when `reconnect.reconnect_header` is on.
pub static X_LEANPROXY_RECONNECT_ID: HeaderName =
    HeaderName::from_static("x-leanproxy-reconnect-id");

/// The exchange's id, in the request's extensions for inner layers.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// In an answer's extensions: a fault made this answer up (it did not come from
/// the upstream), so a RECONNECT_REQUIRED in it is recorded as `source: fault`.
#[derive(Debug, Clone, Copy)]
pub struct Synthetic;

/// The facts inner layers learn about an exchange.
#[derive(Debug, Clone, Default)]
pub struct Notes {
    /// Entity of the request.
    pub entity_id: Option<String>,
    /// Reconnect id the answer carried.
    pub reconnect_id: Option<String>,
    /// The `[[routes]]` target the request went to (none: the default).
    pub route: Option<Arc<str>>,
}

/// What inner layers tell the request log: the request log puts these in the
/// request's extensions, inner layers fill them in, the request log reads them
/// when the exchange completes. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ExchangeNotes(Arc<Mutex<Notes>>);

impl ExchangeNotes {
    fn with(&self, f: impl FnOnce(&mut Notes)) {
        // Fields are replaced whole; a poisoned lock is consistent.
        f(&mut crate::sync::lock(&self.0));
    }

    /// Records the entity.
    pub fn set_entity(&self, entity: &str) {
        self.with(|n| n.entity_id = Some(entity.to_string()));
    }

    /// Records the reconnect id.
    pub fn set_reconnect_id(&self, id: &str) {
        self.with(|n| n.reconnect_id = Some(id.to_string()));
    }

    /// Records the route.
    pub fn set_route(&self, route: Arc<str>) {
        self.with(|n| n.route = Some(route));
    }

    /// What was noted.
    pub fn snapshot(&self) -> Notes {
        crate::sync::lock(&self.0).clone()
    }
}

/// A Lean API generation: v1 (`lean-app-token`, `payload`, `payload.reconnect_id`)
/// or v2 (OAuth2 bearer token, `data`, the `results_id` as reconnect id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `payload.reconnect_id`
    V1,
    /// `results_id` is the reconnect id
    V2,
}

impl Api {
    /// The generation a request path belongs to, by its `/v1` or `/v2`
    /// segment (`/data/v2/accounts`, `/customers/v1/`); `None` for paths with
    /// neither (`/oauth2/token`, `/banks`).
    pub fn of_path(path: &str) -> Option<Api> {
        let has = |v: &str| path.contains(&format!("/{v}/")) || path.ends_with(&format!("/{v}"));
        if has("v2") {
            Some(Api::V2)
        } else if has("v1") {
            Some(Api::V1)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Api;

    #[test]
    fn a_path_names_its_generation_by_its_segment() {
        assert_eq!(Api::of_path("/data/v2/accounts"), Some(Api::V2));
        assert_eq!(Api::of_path("/data/v1/accounts"), Some(Api::V1));
        assert_eq!(Api::of_path("/v1"), Some(Api::V1));
        assert_eq!(Api::of_path("/customers/v1/"), Some(Api::V1));
        assert_eq!(Api::of_path("/payments/v2"), Some(Api::V2));
        assert_eq!(Api::of_path("/oauth2/token"), None);
        assert_eq!(Api::of_path("/v10/x"), None);
    }
}
