//! What the registry keeps: one [`Record`] per entity that needs a reconnect,
//! and the [`Sighting`] of a RECONNECT_REQUIRED answer that makes or updates it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::exchange::Api;

/// Whether the app still has to reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for the user.
    Pending,
    /// The user is back.
    Resolved,
}

/// What ended a pending reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolvedBy {
    /// An `entity.reconnected` webhook.
    Webhook,
    /// A later OK data answer for the entity.
    OkResponse,
    /// `DELETE /api/reconnects/{entity_id}`.
    Admin,
}

/// Who produced the RECONNECT_REQUIRED the app saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Lean (or the upstream).
    Upstream,
    /// An injected fault.
    Fault,
}

/// One entity's reconnect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The entity, when the request named it.
    pub entity_id: Option<String>,
    /// The id the app passes to the LinkSDK.
    pub reconnect_id: String,
    /// The answer's `results_id`.
    pub results_id: Option<String>,
    /// API generation.
    pub api: Api,
    /// Path of the call that was answered RECONNECT_REQUIRED (latest).
    pub path: String,
    /// First RECONNECT_REQUIRED.
    pub first_seen: DateTime<Utc>,
    /// Latest RECONNECT_REQUIRED.
    pub last_seen: DateTime<Utc>,
    /// Calls answered RECONNECT_REQUIRED since first seen.
    pub hits: u64,
    /// Calls naming the entity after it was flagged and before it was resolved:
    /// an app that keeps calling instead of starting the reconnect.
    pub calls_while_pending: u64,
    /// Times Lean answered with a different reconnect id while pending.
    pub replaced: u64,
    /// `first_seen` + 30 days.
    pub expires_at: DateTime<Utc>,
    /// Pending or resolved.
    pub state: State,
    /// What resolved it.
    pub resolved_by: Option<ResolvedBy>,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Upstream or injected fault.
    pub source: Source,
    /// When a `results.ready` webhook named this record's results id.
    #[serde(default)]
    pub results_ready_at: Option<DateTime<Utc>>,
}

impl Record {
    /// The registry key: the entity, or the reconnect id when the entity is unknown.
    pub fn key(&self) -> String {
        key_for(self.entity_id.as_deref(), &self.reconnect_id)
    }
}

pub(super) fn key_for(entity: Option<&str>, reconnect_id: &str) -> String {
    match entity {
        Some(e) => e.to_string(),
        None => format!("reconnect:{reconnect_id}"),
    }
}

/// A RECONNECT_REQUIRED answer, as the layer saw it.
#[derive(Debug, Clone)]
pub struct Sighting {
    /// Entity of the request, when known.
    pub entity_id: Option<String>,
    /// Reconnect id from the answer.
    pub reconnect_id: String,
    /// `results_id` from the answer.
    pub results_id: Option<String>,
    /// API generation of the answer.
    pub api: Api,
    /// Request path.
    pub path: String,
    /// Who produced it.
    pub source: Source,
}

/// What a sighting did to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SightingOutcome {
    /// A new pending record.
    New,
    /// Another hit on the same pending reconnect.
    Repeat,
    /// A pending record got a new reconnect id.
    Replaced,
    /// An answer from before its reconnect was resolved, written after the
    /// resolution (a backend that writes in the background): ignored, so a
    /// resolved reconnect is not opened again by its own last answers.
    Stale,
}
