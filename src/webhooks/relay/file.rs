//! [`FileQueue`], today's relay queue: each delivery a file in the queue
//! directory, written atomically with `fsync` before the webhook is answered,
//! so deliveries accepted before a crash or restart are still relayed after
//! it; the lanes in memory; dead letters moved, with their reason, to `dead/`
//! in the queue directory.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::queue::{DeadLetter, Job, QueueError, QueueStore, ReplayDeadError};
use crate::backend::Op;
use crate::sync::lock;

/// The dead letters' folder in the queue directory.
const DEAD_DIR: &str = "dead";

/// A dead-lettered delivery, as stored on disk in `dead/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Dead {
    #[serde(flatten)]
    job: Job,
    reason: String,
    dead_at: chrono::DateTime<Utc>,
}

impl From<&Dead> for DeadLetter {
    fn from(d: &Dead) -> Self {
        Self {
            id: d.job.seq.to_string(),
            webhook_id: d.job.webhook_id.clone(),
            target: d.job.target.clone(),
            reason: d.reason.clone(),
            attempts: d.job.attempts,
            dead_at: d.dead_at,
        }
    }
}

/// The relay queue in a directory, its lanes in memory.
#[derive(Debug)]
pub(crate) struct FileQueue {
    /// Itself, for the futures that write on the blocking pool.
    this: Weak<FileQueue>,
    dir: PathBuf,
    limit: usize,
    lanes: Vec<Arc<Lane>>,
    /// Places taken in the bound: queued deliveries and dead letters.
    taken: AtomicU64,
    next_seq: AtomicU64,
    /// Dead letters, oldest first (their bodies stay on disk).
    dead: Mutex<Vec<DeadLetter>>,
}

/// One target's deliveries, in order.
#[derive(Debug)]
struct Lane {
    target: String,
    jobs: Mutex<VecDeque<Job>>,
    wake: Notify,
}

fn io(path: &Path, source: std::io::Error) -> QueueError {
    QueueError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads every `*.json` file of `dir` as a `T`; an unreadable one is left in
/// place, and said so.
fn read_entries<T: for<'de> Deserialize<'de>>(
    dir: &Path,
    what: &str,
) -> Result<Vec<(PathBuf, T)>, QueueError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        if path.extension().is_some_and(|e| e == "json") {
            match std::fs::read(&path).map(|b| serde_json::from_slice::<T>(&b)) {
                Ok(Ok(value)) => entries.push((path, value)),
                _ => {
                    tracing::warn!(file = %path.display(), "unreadable relay {what} left in place")
                }
            }
        }
    }
    Ok(entries)
}

impl FileQueue {
    /// The queue in `dir` for `targets` (one lane each, in this order),
    /// holding at most `limit` deliveries and dead letters: loads what was
    /// left there.
    pub(crate) fn open(
        dir: &Path,
        targets: &[String],
        limit: usize,
    ) -> Result<Arc<Self>, QueueError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let dead_dir = dir.join(DEAD_DIR);
        std::fs::create_dir_all(&dead_dir).map_err(|e| io(&dead_dir, e))?;
        let mut dead: Vec<DeadLetter> = read_entries::<Dead>(&dead_dir, "dead letter")?
            .iter()
            .map(|(_, d)| DeadLetter::from(d))
            .collect();
        dead.sort_by_key(|d| d.id.parse::<u64>().unwrap_or_default());
        let lanes: Vec<Arc<Lane>> = targets
            .iter()
            .map(|t| {
                Arc::new(Lane {
                    target: t.clone(),
                    jobs: Mutex::new(VecDeque::new()),
                    wake: Notify::new(),
                })
            })
            .collect();
        let mut leftovers: Vec<Job> = Vec::new();
        for (path, job) in read_entries::<Job>(dir, "queue entry")? {
            // Dead-lettered, then stopped before it was removed here.
            if dead.iter().any(|d| d.id == job.seq.to_string()) {
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(error = %e, file = %path.display(), "cannot remove a dead-lettered relay queue entry");
                }
            } else {
                leftovers.push(job);
            }
        }
        leftovers.sort_by_key(|j| j.seq);
        let next = leftovers.last().map_or(0, |j| j.seq + 1);
        let mut queued = 0;
        for job in leftovers {
            match lanes.iter().find(|l| l.target == job.target) {
                Some(lane) => {
                    lock(&lane.jobs).push_back(job);
                    queued += 1;
                }
                None => {
                    tracing::warn!(target = %job.target, seq = job.seq, "queued delivery for a target no longer configured; left in place")
                }
            }
        }
        if queued > 0 {
            tracing::info!(queued, "resuming webhook relays queued before the restart");
        }
        if !dead.is_empty() {
            tracing::warn!(
                dead = dead.len(),
                "webhook relays set aside (GET /api/webhooks/dead)"
            );
        }
        // Dead letters take room in the queue, as they take room on disk.
        let taken = queued + dead.len() as u64;
        Ok(Arc::new_cyclic(|this| Self {
            this: this.clone(),
            dir: dir.to_owned(),
            limit,
            lanes,
            taken: AtomicU64::new(taken),
            next_seq: AtomicU64::new(next.max(now_nanos())),
            dead: Mutex::new(dead),
        }))
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.json"))
    }

    fn dead_path(&self, seq: u64) -> PathBuf {
        self.dir.join(DEAD_DIR).join(format!("{seq:020}.json"))
    }

    /// Writes a queue entry in a place already taken.
    fn write(&self, job: &Job) -> Result<(), QueueError> {
        atomic_write(
            &self.path(job.seq),
            &serde_json::to_vec(job).unwrap_or_default(),
        )
    }

    /// Removes a job's file and gives its place back.
    fn forget(&self, job: &Job) {
        if let Err(e) = std::fs::remove_file(self.path(job.seq)) {
            tracing::warn!(error = %e, seq = job.seq, "cannot remove a finished relay queue entry");
        }
        self.taken.fetch_sub(1, Ordering::SeqCst);
    }

    /// Takes `lane`'s first job off it.
    fn pop(&self, lane: usize) {
        if let Some(lane) = self.lanes.get(lane) {
            lock(&lane.jobs).pop_front();
        }
    }

    /// Moves a delivery that can never succeed to `dead/`, with why: written
    /// there first, so a crash in between leaves it queued (and
    /// dead-lettered again), never lost. It keeps its place in the bound.
    fn bury(&self, job: &Job, reason: String) -> DeadLetter {
        let dead = Dead {
            job: job.clone(),
            reason,
            dead_at: Utc::now(),
        };
        let path = self.dead_path(job.seq);
        match atomic_write(&path, &serde_json::to_vec(&dead).unwrap_or_default()) {
            Ok(()) => {
                if let Err(e) = std::fs::remove_file(self.path(job.seq)) {
                    tracing::warn!(error = %e, seq = job.seq, "cannot remove a dead-lettered relay queue entry");
                }
            }
            // Kept where it is: found again at the next start.
            Err(e) => {
                tracing::error!(error = %e, seq = job.seq, "cannot write a relay dead letter; the entry stays queued on disk")
            }
        }
        let letter = DeadLetter::from(&dead);
        lock(&self.dead).push(letter.clone());
        letter
    }

    fn unbury(&self, id: &str, seq: u64) -> Result<Job, ReplayDeadError> {
        let known = lock(&self.dead).iter().any(|d| d.id == id);
        let old = id.parse::<u64>().ok().filter(|_| known);
        let old = old.ok_or_else(|| ReplayDeadError::Unknown(id.to_string()))?;
        let path = self.dead_path(old);
        let dead: Dead = std::fs::read(&path)
            .map_err(|source| io(&path, source))
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| io(&path, e.into())))?;
        if !self.lanes.iter().any(|l| l.target == dead.job.target) {
            return Err(ReplayDeadError::NoTarget(dead.job.target));
        }
        let job = Job {
            seq,
            attempts: 0,
            ..dead.job
        };
        // The dead letter's place in the bound is the new entry's.
        self.write(&job)?;
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(error = %e, file = %path.display(), "cannot remove a replayed dead letter");
        }
        lock(&self.dead).retain(|d| d.id != id);
        Ok(job)
    }
}

impl QueueStore for FileQueue {
    fn number(&self) -> Op<u64> {
        Op::ready(self.next_seq.fetch_add(1, Ordering::SeqCst))
    }

    fn stage(&self, job: &Job) -> Op<Result<(), QueueError>> {
        // The place first, so concurrent deliveries cannot overshoot.
        let taken = self.taken.fetch_add(1, Ordering::SeqCst);
        if taken >= self.limit as u64 {
            self.taken.fetch_sub(1, Ordering::SeqCst);
            return Op::ready(Err(QueueError::Full(taken as usize)));
        }
        Op::ready(self.write(job).inspect_err(|_| {
            self.taken.fetch_sub(1, Ordering::SeqCst);
        }))
    }

    fn unstage(&self, job: &Job) -> Op<()> {
        self.forget(job);
        Op::ready(())
    }

    fn offer(&self, job: Job) -> Op<()> {
        if let Some(lane) = self.lanes.iter().find(|l| l.target == job.target) {
            lock(&lane.jobs).push_back(job);
            lane.wake.notify_one();
        }
        Op::ready(())
    }

    fn next(&self, lane: usize) -> Op<Job> {
        let Some(lane) = self.lanes.get(lane).cloned() else {
            return Op::later(std::future::pending());
        };
        if let Some(job) = lock(&lane.jobs).front().cloned() {
            return Op::ready(job);
        }
        Op::later(async move {
            loop {
                // A job offered before this wait left a permit (`notify_one`).
                lane.wake.notified().await;
                if let Some(job) = lock(&lane.jobs).front().cloned() {
                    return job;
                }
            }
        })
    }

    fn finish(&self, lane: usize, job: &Job) -> Op<()> {
        self.pop(lane);
        self.forget(job);
        Op::ready(())
    }

    fn dead_letter(&self, lane: usize, job: &Job, reason: String) -> Op<Option<DeadLetter>> {
        self.pop(lane);
        let Some(this) = self.this.upgrade() else {
            return Op::ready(Some(self.bury(job, reason)));
        };
        let job = job.clone();
        // Moved with `fsync`: off the runtime's thread.
        Op::later(crate::sync::blocking(move || this.bury(&job, reason)))
    }

    fn dead_letters(&self) -> Op<Vec<DeadLetter>> {
        Op::ready(lock(&self.dead).clone())
    }

    fn revive(&self, id: &str, seq: u64) -> Op<Result<Job, ReplayDeadError>> {
        Op::ready(self.unbury(id, seq))
    }

    fn queued(&self) -> Op<u64> {
        let dead = lock(&self.dead).len() as u64;
        Op::ready(self.taken.load(Ordering::SeqCst).saturating_sub(dead))
    }
}

fn now_nanos() -> u64 {
    Utc::now().timestamp_nanos_opt().unwrap_or_default().max(0) as u64
}

/// Writes `bytes` to `path` through a synced temporary file, so a crash
/// leaves the old file or the new one whole.
fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), QueueError> {
    let tmp = path.with_extension("tmp");
    let written = (|| {
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|source| {
        // Not left for a later start to wonder about (it only loads `.json`).
        let _ = std::fs::remove_file(&tmp);
        io(path, source)
    })
}
