//! Live events: exchanges, new and resolved reconnects, fault hits and webhooks,
//! published to whoever listens (`GET /api/events`, `leanproxy tail`). Slow
//! listeners miss events rather than slowing the proxy down.
//!
//! With several replicas on Redis, each event also carries its replica's
//! name, and an [`Outbox`] (filled by `state::fleet`) carries this replica's
//! events to the others' listeners while any of them listens; the others'
//! events come back in through [`Events::inject`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

/// One exchange, as a live event shows it (no headers or bodies).
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// An event as listeners get it: with the name of the replica it happened
/// on, when there are several (`[state] backend = "redis"`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    /// The replica's name (`state.replica`); absent with one replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<Arc<str>>,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

impl std::ops::Deref for Published {
    type Target = Event;

    fn deref(&self) -> &Event {
        &self.event
    }
}

/// Where this replica's events go for the other replicas' listeners.
#[derive(Debug)]
pub struct Outbox {
    /// Whether another replica listens now (kept current by its sender).
    pub wanted: AtomicBool,
    tx: mpsc::Sender<Arc<Published>>,
}

impl Outbox {
    /// An outbox holding up to `capacity` events not yet sent (more are
    /// dropped: slow senders miss events, as slow listeners do), and its
    /// receiving end.
    pub fn new(capacity: usize) -> (Arc<Self>, mpsc::Receiver<Arc<Published>>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Arc::new(Self {
                wanted: AtomicBool::new(false),
                tx,
            }),
            rx,
        )
    }
}

/// The event bus. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Events {
    tx: broadcast::Sender<Arc<Published>>,
    replica: Option<Arc<str>>,
    outbox: Option<Arc<Outbox>>,
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
        Self {
            tx,
            replica: None,
            outbox: None,
        }
    }

    /// The same bus, its events named by `replica` and also sent to
    /// `outbox` while another replica listens. Set before it is cloned.
    pub fn for_fleet(mut self, replica: Arc<str>, outbox: Arc<Outbox>) -> Self {
        self.replica = Some(replica);
        self.outbox = Some(outbox);
        self
    }

    /// Publishes an event (nothing happens when nobody listens).
    pub fn publish(&self, event: Event) {
        let here = self.tx.receiver_count() > 0;
        let fleet = self
            .outbox
            .as_ref()
            .filter(|o| o.wanted.load(Ordering::Relaxed));
        if !here && fleet.is_none() {
            return;
        }
        let published = Arc::new(Published {
            replica: self.replica.clone(),
            event,
        });
        if let Some(outbox) = fleet {
            let _ = outbox.tx.try_send(published.clone());
        }
        if here {
            let _ = self.tx.send(published);
        }
    }

    /// Publishes another replica's event to this replica's listeners.
    pub fn inject(&self, published: Published) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Arc::new(published));
        }
    }

    /// Whether anybody listens, here or on another replica (to skip building
    /// an event nobody reads).
    pub fn listening(&self) -> bool {
        self.tx.receiver_count() > 0
            || self
                .outbox
                .as_ref()
                .is_some_and(|o| o.wanted.load(Ordering::Relaxed))
    }

    /// Listeners on this replica.
    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }

    /// This replica's name, when it has one.
    pub fn replica(&self) -> Option<&Arc<str>> {
        self.replica.as_ref()
    }

    /// A new listener.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }
}
