//! The admin API's answers as types: the admin service serialises them and
//! the CLI's [`crate::cli::AdminClient`] reads the same types back.

use serde::{Deserialize, Serialize};

use crate::fault::RuleView;
use crate::reconnect::{Record, Stats};

/// `GET /api/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultList {
    /// The seed of probabilistic decisions, when one was given.
    pub seed: Option<u64>,
    /// Whether new rules are accepted (false against Lean's production).
    pub allowed: bool,
    /// The rules in evaluation order, with their counters.
    pub faults: Vec<RuleView>,
}

/// `GET /api/reconnects`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconnectList {
    /// Records still pending (in the whole registry, whatever the filter).
    pub pending: usize,
    /// The registry's counters.
    pub stats: Stats,
    /// Pending records, most recently seen first, then resolved ones.
    pub reconnects: Vec<Record>,
}

/// What a `DELETE` removed: a rule's id, or how many rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Removed<T> {
    /// The id, or the count.
    pub removed: T,
}
