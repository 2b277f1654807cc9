//! The relay queue's operations, [`QueueStore`], and what it keeps: a
//! [`Job`] per delivery to one target, and the [`DeadLetter`]s set aside.

use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::Op;

/// One delivery of a webhook to one target, as queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Job {
    /// Orders a target's deliveries ([`QueueStore::number`]); a dead
    /// letter's id.
    pub(crate) seq: u64,
    pub(crate) webhook_id: String,
    /// The target's URL, as written in `webhooks.relay`.
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body_base64: String,
    pub(crate) attempts: u32,
}

/// A delivery set aside: its target answered that it will never take it, or
/// its queue entry is damaged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// Its id, for [`Relay::replay_dead`](super::Relay::replay_dead) (its
    /// queue sequence number).
    pub id: String,
    /// The webhook it delivers.
    pub webhook_id: String,
    /// The app's URL.
    pub target: String,
    /// Why it was set aside.
    pub reason: String,
    /// Attempts made.
    pub attempts: u32,
    /// When it was set aside.
    pub dead_at: DateTime<Utc>,
}

/// Why a delivery could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// `queue_limit` deliveries are already waiting.
    #[error("relay queue is full ({0} deliveries waiting)")]
    Full(usize),
    /// The queue's store (Redis) could not be reached in time.
    #[error("the relay queue cannot be reached: {0}")]
    Unavailable(String),
    /// The queue file could not be written.
    #[error("cannot write to the relay queue {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Why a dead letter cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayDeadError {
    /// No dead letter has this id.
    #[error("no dead letter {0}")]
    Unknown(String),
    /// Its target is no longer configured.
    #[error("its target {0} is no longer configured (webhooks.relay)")]
    NoTarget(String),
    /// Its file could not be read or the new queue entry written.
    #[error(transparent)]
    Io(#[from] QueueError),
}

/// The relay queue, wherever it is kept: one lane per target (its index in
/// the relay's targets), in the order of the deliveries' numbers, and the
/// dead letters. Each delivery takes a place in the queue's bound from
/// [`stage`](Self::stage) until it is finished; a dead letter keeps its
/// place.
///
/// Nothing here is on the proxy's request path. On a webhook's path, from
/// the blocking pool (where the file backend writes with `fsync` and a
/// network backend's future is waited for), with the relay's order lock
/// held: [`number`](Self::number), [`stage`](Self::stage),
/// [`unstage`](Self::unstage), [`offer`](Self::offer). From each target's
/// worker task: [`next`](Self::next), [`finish`](Self::finish),
/// [`dead_letter`](Self::dead_letter). From the admin API: the rest.
pub(crate) trait QueueStore: Send + Sync + fmt::Debug {
    /// A new delivery's number: numbers grow, so a target's deliveries keep
    /// the order they were numbered in.
    fn number(&self) -> Op<u64>;

    /// Makes `job` durable and takes its place in the queue's bound, without
    /// offering it to its target's worker: the webhook is applied between
    /// `stage` and [`offer`](Self::offer), before the app can have it.
    fn stage(&self, job: &Job) -> Op<Result<(), QueueError>>;

    /// Takes back a staged job that will not be offered (another target's
    /// delivery of the same webhook could not be staged).
    fn unstage(&self, job: &Job) -> Op<()>;

    /// Offers a staged job to its target's worker, after those offered
    /// before it.
    fn offer(&self, job: Job) -> Op<()>;

    /// The first delivery of target `lane`, once there is one. It stays first
    /// until it is [finished](Self::finish) or
    /// [dead-lettered](Self::dead_letter).
    fn next(&self, lane: usize) -> Op<Job>;

    /// Removes `lane`'s first delivery, `job`: delivered, or given up.
    fn finish(&self, lane: usize, job: &Job) -> Op<()>;

    /// Sets `lane`'s first delivery, `job`, aside as a dead letter, with why.
    /// `None` when it could not be moved now (the runtime is shutting down):
    /// it stays queued, and is set aside again after the next start.
    fn dead_letter(&self, lane: usize, job: &Job, reason: String) -> Op<Option<DeadLetter>>;

    /// Deliveries set aside, oldest first.
    fn dead_letters(&self) -> Op<Vec<DeadLetter>>;

    /// Stages the dead letter `id` again as the delivery numbered `seq`, its
    /// attempts reset, for [`offer`](Self::offer); it keeps its place in the
    /// bound. Fails when there is no such dead letter or its target has no
    /// lane.
    fn revive(&self, id: &str, seq: u64) -> Op<Result<Job, ReplayDeadError>>;

    /// Deliveries waiting (dead letters aside).
    fn queued(&self) -> Op<u64>;
}
