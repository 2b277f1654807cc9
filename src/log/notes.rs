//! What inner layers tell the request log about an exchange: the request log puts
//! [`ExchangeNotes`] in the request's extensions, inner layers fill it in, the
//! request log reads it when the exchange completes.

use std::sync::{Arc, Mutex};

/// The facts inner layers learn.
#[derive(Debug, Clone, Default)]
pub struct Notes {
    /// Entity of the request.
    pub entity_id: Option<String>,
    /// Reconnect id the answer carried.
    pub reconnect_id: Option<String>,
}

/// Shared, per-exchange notes. Cheap to clone.
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

    /// What was noted.
    pub fn snapshot(&self) -> Notes {
        crate::sync::lock(&self.0).clone()
    }
}
