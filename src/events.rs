//! Live events: exchanges, new and resolved reconnects, fault hits and webhooks,
//! published to whoever listens (`GET /api/events`, `leanproxy tail`). Slow
//! listeners miss events rather than slowing the proxy down.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

/// One exchange, as a live event shows it (no headers or bodies).
#[derive(Debug, Clone, Serialize)]
pub struct ExchangeSummary {
    /// Request id.
    pub id: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// HTTP method.
    pub method: String,
    /// Path (no query).
    pub path: String,
    /// HTTP status.
    pub status: u16,
    /// Lean `status` from the answer, when seen.
    pub lean_status: Option<String>,
    /// Entity of the request.
    pub entity_id: Option<String>,
    /// Reconnect id the answer carried.
    pub reconnect_id: Option<String>,
    /// The fault rule that produced or changed the answer.
    pub fault: Option<String>,
    /// Milliseconds to the upstream's answer head, when one came.
    pub upstream_ms: Option<f64>,
    /// The `[[routes]]` target, when not the default upstream.
    pub route: Option<String>,
    /// Total time in milliseconds, body included.
    pub duration_ms: f64,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
}

/// Something that happened.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// An exchange completed.
    Exchange(ExchangeSummary),
    /// An entity needs a reconnect.
    ReconnectNew {
        /// Entity, when known.
        entity_id: Option<String>,
        /// The reconnect id.
        reconnect_id: String,
        /// `upstream` or `fault`.
        source: String,
    },
    /// A reconnect was resolved.
    ReconnectResolved {
        /// Entity, when known.
        entity_id: Option<String>,
        /// The reconnect id.
        reconnect_id: String,
        /// `webhook`, `ok_response` or `admin`.
        resolved_by: String,
    },
    /// A fault rule produced or changed an answer.
    FaultHit {
        /// Rule id (or `header`).
        rule: String,
        /// Action name.
        action: String,
        /// Request path.
        path: String,
    },
    /// A webhook arrived.
    Webhook {
        /// leanproxy's id for it.
        id: String,
        /// Lean's type.
        #[serde(rename = "type")]
        kind: Option<String>,
        /// Signature verdict.
        signature: String,
        /// accepted, rejected or duplicate.
        outcome: String,
    },
}

impl Event {
    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Exchange(_) => "exchange",
            Event::ReconnectNew { .. } => "reconnect_new",
            Event::ReconnectResolved { .. } => "reconnect_resolved",
            Event::FaultHit { .. } => "fault_hit",
            Event::Webhook { .. } => "webhook",
        }
    }
}

/// The event bus. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Events {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl Events {
    /// A bus keeping up to `capacity` events for slow listeners.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }

    /// Publishes an event (nothing happens when nobody listens).
    pub fn publish(&self, event: Event) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Arc::new(event));
        }
    }

    /// Whether anybody listens (to skip building an event nobody reads).
    pub fn listening(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// A new listener.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}
