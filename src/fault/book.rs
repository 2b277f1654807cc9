//! [`RuleBook`]: the rule set shared by several replicas. With one replica
//! there is none: the rule set is the replica's own ([`FaultRules`]). With
//! several (`[state] backend = "redis"`), each change is made in the book
//! (`redis.rs`), which tells every replica; each replica then loads the
//! book into its own rule set, keeping the [`Live`](super::live::Live) rules
//! it already has (their installation names their counters, which every
//! replica shares).
//!
//! [`FaultRules`]: super::FaultRules

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::raw::RawRule;
use super::rules::Placement;
use crate::backend::Op;
use crate::state::{Notices, Unavailable};

/// A rule as the book keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The rule's id.
    pub(crate) id: String,
    /// Names this installation's counters (a rule removed and added again
    /// starts from nothing).
    pub(crate) installation: String,
    /// When it was installed (its `ttl` counts from here on every replica).
    pub(crate) installed_at: DateTime<Utc>,
    /// The rule, as written.
    pub(crate) rule: RawRule,
}

/// The book's rules, in evaluation order, each with whether it is paused.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shared {
    /// Bumped by every change.
    pub(crate) version: u64,
    pub(crate) entries: Vec<(Entry, bool)>,
}

/// What adding a rule to the book found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Added {
    /// Added, at this version of the book.
    Yes,
    /// A rule with this id is installed already.
    Taken,
    /// `before` names no rule.
    NoSuchRule,
}

/// The shared rule set. Nothing here is on the request path: the admin API
/// changes it, and each replica loads it when told it changed.
pub(crate) trait RuleBook: Send + Sync + fmt::Debug {
    /// The book's version; `None` when there is no book yet.
    fn version(&self) -> Op<Result<Option<u64>, Unavailable>>;

    /// The whole book; `None` when there is none yet.
    fn load(&self) -> Op<Result<Option<Shared>, Unavailable>>;

    /// Adds `entry` where `placement` says.
    fn add(&self, entry: Entry, placement: Placement) -> Op<Result<Added, Unavailable>>;

    /// Removes the rule `id` (and its counters); whether there was one.
    fn remove(&self, id: &str) -> Op<Result<bool, Unavailable>>;

    /// Pauses or resumes the rule `id`; whether there is one.
    fn pause(&self, id: &str, paused: bool) -> Op<Result<bool, Unavailable>>;

    /// Replaces every rule with `entries` (none: clears the book), or, with
    /// `only_if_none`, only when there is no book yet (a replica starting
    /// with rules in its config does not undo the fleet's changes). How many
    /// rules there were; `None` when `only_if_none` found a book.
    fn replace(
        &self,
        entries: Vec<Entry>,
        only_if_none: bool,
    ) -> Op<Result<Option<usize>, Unavailable>>;

    /// The notices that say the book may have changed.
    fn changes(&self) -> Notices;
}
