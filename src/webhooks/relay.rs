//! Relaying accepted webhooks to the app, byte-identical with their headers and
//! signature, through a bounded and durable queue: each delivery is a file in the
//! queue directory (written atomically before the webhook is answered), so
//! webhooks accepted before a crash or restart are still relayed after it. One
//! worker per target keeps Lean's order; failures are retried with exponential
//! backoff.
//!
//! A delivery that can never succeed does not hold its target's lane: one
//! answered 4xx (but 408 and 429, which are worth retrying) or whose queue
//! entry cannot be decoded is dead-lettered at once: moved, with the reason,
//! to `dead/` in the queue directory, listed by [`Relay::dead_letters`] and
//! queued again (last) by [`Relay::replay_dead`]. Dead letters count against
//! the queue's bound, so the disk they take is bounded too.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use http::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::store::{RelayStatus, Store, Stored};
use crate::body::{self, Body};
use crate::sync::lock;

/// How long a target may take to answer one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Relay settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The app's URLs.
    pub targets: Vec<Uri>,
    /// Where queued deliveries are kept.
    pub dir: PathBuf,
    /// Most deliveries waiting at once (all targets).
    pub queue_limit: usize,
    /// First retry delay; doubles up to `retry_max`.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Attempts before a delivery is given up.
    pub max_attempts: u32,
}

/// One queued delivery, as stored on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    /// Orders jobs; also the file name.
    seq: u64,
    webhook_id: String,
    target: String,
    headers: Vec<(String, String)>,
    body_base64: String,
    attempts: u32,
}

/// A dead-lettered delivery, as stored on disk in `dead/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Dead {
    #[serde(flatten)]
    job: Job,
    reason: String,
    dead_at: DateTime<Utc>,
}

/// A delivery set aside: its target answered that it will never take it, or
/// its queue entry is damaged.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Its id, for [`Relay::replay_dead`] (its queue sequence number).
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

/// How an attempt failed.
enum Failure {
    /// Worth another attempt: no answer, 5xx, 408, 429.
    Retry(String),
    /// It can never succeed: dead-letter it.
    Permanent(String),
}

/// The relay. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<RelayState>,
}

struct RelayState {
    config: RelayConfig,
    store: Store,
    client: Client<HttpsConnector<HttpConnector>, Body>,
    queues: Vec<Lane>,
    queued: AtomicU64,
    next_seq: AtomicU64,
    /// Held by [`Relay::enqueue`] from numbering its deliveries to pushing
    /// them, so each target gets them in the order of their numbers.
    order: Mutex<()>,
    /// Dead letters, oldest first (their bodies stay on disk).
    dead: Mutex<Vec<DeadLetter>>,
}

struct Lane {
    target: Uri,
    jobs: Mutex<VecDeque<Job>>,
    wake: Notify,
}

/// Why a delivery could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// `queue_limit` deliveries are already waiting.
    #[error("relay queue is full ({0} deliveries waiting)")]
    Full(usize),
    /// The queue file could not be written.
    #[error("cannot write to the relay queue {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Relay {
    /// A relay over `config`, loading deliveries left in its queue directory.
    /// Call [`Relay::start`] to run the workers.
    pub fn open(
        config: RelayConfig,
        store: Store,
        tls: rustls::ClientConfig,
    ) -> Result<Self, QueueError> {
        let io = |path: &Path, source| QueueError::Io {
            path: path.to_owned(),
            source,
        };
        std::fs::create_dir_all(&config.dir).map_err(|e| io(&config.dir, e))?;
        let dead_dir = config.dir.join(DEAD_DIR);
        std::fs::create_dir_all(&dead_dir).map_err(|e| io(&dead_dir, e))?;
        let mut dead: Vec<DeadLetter> = Vec::new();
        for entry in std::fs::read_dir(&dead_dir).map_err(|e| io(&dead_dir, e))? {
            let path = entry.map_err(|e| io(&dead_dir, e))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                match std::fs::read(&path).map(|b| serde_json::from_slice::<Dead>(&b)) {
                    Ok(Ok(d)) => dead.push(DeadLetter::from(&d)),
                    _ => {
                        tracing::warn!(file = %path.display(), "unreadable relay dead letter left in place")
                    }
                }
            }
        }
        dead.sort_by_key(|d| d.id.parse::<u64>().unwrap_or_default());
        let connector = crate::client::tls::http1_connector(tls);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let queues: Vec<Lane> = config
            .targets
            .iter()
            .map(|t| Lane {
                target: t.clone(),
                jobs: Mutex::new(VecDeque::new()),
                wake: Notify::new(),
            })
            .collect();
        let mut leftovers: Vec<Job> = Vec::new();
        for entry in std::fs::read_dir(&config.dir).map_err(|e| io(&config.dir, e))? {
            let path = entry.map_err(|e| io(&config.dir, e))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                match std::fs::read(&path).map(|b| serde_json::from_slice::<Job>(&b)) {
                    // Dead-lettered, then stopped before it was removed here.
                    Ok(Ok(job)) if dead.iter().any(|d| d.id == job.seq.to_string()) => {
                        if let Err(e) = std::fs::remove_file(&path) {
                            tracing::warn!(error = %e, file = %path.display(), "cannot remove a dead-lettered relay queue entry");
                        }
                    }
                    Ok(Ok(job)) => leftovers.push(job),
                    _ => {
                        tracing::warn!(file = %path.display(), "unreadable relay queue entry left in place")
                    }
                }
            }
        }
        leftovers.sort_by_key(|j| j.seq);
        let next = leftovers.last().map_or(0, |j| j.seq + 1);
        let mut queued = 0;
        for job in leftovers {
            match queues.iter().find(|l| l.target.to_string() == job.target) {
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
        let slots = queued + dead.len() as u64;
        Ok(Self {
            inner: Arc::new(RelayState {
                config,
                store,
                client,
                queues,
                queued: AtomicU64::new(slots),
                next_seq: AtomicU64::new(next.max(now_nanos())),
                order: Mutex::new(()),
                dead: Mutex::new(dead),
            }),
        })
    }

    /// Runs one worker per target; they run until aborted (queued deliveries
    /// stay on disk for the next start).
    pub fn start(&self) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.inner.queues.len())
            .map(|i| {
                let inner = self.inner.clone();
                tokio::spawn(async move { work(inner, i).await })
            })
            .collect()
    }

    /// Whether there is anywhere to relay to.
    pub fn has_targets(&self) -> bool {
        !self.inner.queues.is_empty()
    }

    /// Deliveries waiting (dead letters aside).
    pub fn queued(&self) -> u64 {
        let dead = lock(&self.inner.dead).len() as u64;
        self.inner
            .queued
            .load(Ordering::SeqCst)
            .saturating_sub(dead)
    }

    /// Deliveries set aside, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        lock(&self.inner.dead).clone()
    }

    /// Queues the dead letter `id` again for its target, after the deliveries
    /// waiting there, with its attempts reset. Writes with `fsync`: call it
    /// off the runtime's threads where that matters.
    pub fn replay_dead(&self, id: &str) -> Result<RelayStatus, ReplayDeadError> {
        let inner = &self.inner;
        // Held throughout: a second replay of the same letter finds it gone.
        let _order = lock(&inner.order);
        let known = lock(&inner.dead).iter().any(|d| d.id == id);
        let seq = id.parse::<u64>().ok().filter(|_| known);
        let seq = seq.ok_or_else(|| ReplayDeadError::Unknown(id.to_string()))?;
        let path = inner.dead_path(seq);
        let dead: Dead = std::fs::read(&path)
            .map_err(|source| QueueError::Io {
                path: path.clone(),
                source,
            })
            .and_then(|b| {
                serde_json::from_slice(&b).map_err(|e| QueueError::Io {
                    path: path.clone(),
                    source: e.into(),
                })
            })?;
        let lane = inner
            .queues
            .iter()
            .find(|l| l.target.to_string() == dead.job.target)
            .ok_or_else(|| ReplayDeadError::NoTarget(dead.job.target.clone()))?;
        let job = Job {
            seq: inner.next_seq.fetch_add(1, Ordering::SeqCst),
            attempts: 0,
            ..dead.job
        };
        // The dead letter's slot in the queue is the new entry's.
        inner.write(&job)?;
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(error = %e, file = %path.display(), "cannot remove a replayed dead letter");
        }
        lock(&inner.dead).retain(|d| d.id != id);
        inner.report(&job, "queued", None);
        let status = RelayStatus {
            target: job.target.clone(),
            state: "queued",
            attempts: 0,
            last_error: None,
        };
        lock(&lane.jobs).push_back(job);
        lane.wake.notify_one();
        Ok(status)
    }

    /// Queues the delivery `webhook_id` to every target, durably, or to none
    /// when one cannot take it. Returns one status per target, also recorded
    /// in `stored` before any target's worker can see the deliveries, so they
    /// never overwrite a worker's report. `then` runs after that, still
    /// before the workers see them, told whether they were queued: what the
    /// webhook means is applied there, before the app can have it.
    ///
    /// Each delivery is a file written with `fsync` (1 ms typical, tens at
    /// worst): call it off the runtime's threads where that matters.
    pub fn enqueue(
        &self,
        webhook_id: &str,
        stored: &Stored,
        then: impl FnOnce(bool),
    ) -> Vec<RelayStatus> {
        let headers: Vec<(String, String)> = stored
            .forward
            .iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body_base64 = base64::engine::general_purpose::STANDARD.encode(&stored.body);
        let _order = lock(&self.inner.order);
        let mut persisted = Vec::with_capacity(self.inner.queues.len());
        let mut statuses: Vec<RelayStatus> = self
            .inner
            .queues
            .iter()
            .map(|lane| {
                let target = lane.target.to_string();
                let job = Job {
                    seq: self.inner.next_seq.fetch_add(1, Ordering::SeqCst),
                    webhook_id: webhook_id.to_string(),
                    target: target.clone(),
                    headers: headers.clone(),
                    body_base64: body_base64.clone(),
                    attempts: 0,
                };
                match self.inner.persist(&job) {
                    Ok(()) => {
                        persisted.push((lane, job));
                        RelayStatus {
                            target,
                            state: "queued",
                            attempts: 0,
                            last_error: None,
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, %target, "webhook not queued for relay");
                        RelayStatus {
                            target,
                            state: "dropped",
                            attempts: 0,
                            last_error: Some(e.to_string()),
                        }
                    }
                }
            })
            .collect();
        if let Some(failed) = statuses.iter().find(|s| s.state == "dropped") {
            // All or none: the webhook is refused and Lean will send it
            // again, which would reach the targets that took it twice.
            let why = format!(
                "not queued, as another target's delivery could not be: {}",
                failed.last_error.as_deref().unwrap_or("unknown error")
            );
            for (_, job) in persisted.drain(..) {
                self.inner.forget(&job);
            }
            for status in statuses.iter_mut().filter(|s| s.state == "queued") {
                status.state = "dropped";
                status.last_error = Some(why.clone());
            }
        }
        stored.update(|r| r.relay = statuses.clone());
        then(statuses.iter().all(|s| s.state == "queued"));
        for (lane, job) in persisted {
            lock(&lane.jobs).push_back(job);
            lane.wake.notify_one();
        }
        statuses
    }
}

/// The dead letters' folder in the queue directory.
const DEAD_DIR: &str = "dead";

fn now_nanos() -> u64 {
    chrono::Utc::now()
        .timestamp_nanos_opt()
        .unwrap_or_default()
        .max(0) as u64
}

impl RelayState {
    fn path(&self, job: &Job) -> PathBuf {
        self.config.dir.join(format!("{:020}.json", job.seq))
    }

    fn dead_path(&self, seq: u64) -> PathBuf {
        self.config
            .dir
            .join(DEAD_DIR)
            .join(format!("{seq:020}.json"))
    }

    fn persist(&self, job: &Job) -> Result<(), QueueError> {
        // Reserve the slot first, so concurrent deliveries cannot overshoot.
        let waiting = self.queued.fetch_add(1, Ordering::SeqCst);
        if waiting >= self.config.queue_limit as u64 {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(QueueError::Full(waiting as usize));
        }
        self.write(job).inspect_err(|_| {
            self.queued.fetch_sub(1, Ordering::SeqCst);
        })
    }

    /// Writes a queue entry in a slot already reserved.
    fn write(&self, job: &Job) -> Result<(), QueueError> {
        let path = self.path(job);
        atomic_write(&path, &serde_json::to_vec(job).unwrap_or_default())
    }

    /// Moves a delivery that can never succeed out of its lane, with why:
    /// written to `dead/` first, so a crash in between leaves it queued (and
    /// dead-lettered again), never lost. It keeps its slot in the queue.
    fn dead_letter(&self, job: &Job, reason: String) {
        let dead = Dead {
            job: job.clone(),
            reason,
            dead_at: Utc::now(),
        };
        let path = self.dead_path(job.seq);
        match atomic_write(&path, &serde_json::to_vec(&dead).unwrap_or_default()) {
            Ok(()) => {
                if let Err(e) = std::fs::remove_file(self.path(job)) {
                    tracing::warn!(error = %e, seq = job.seq, "cannot remove a dead-lettered relay queue entry");
                }
            }
            // Kept where it is: found again at the next start.
            Err(e) => {
                tracing::error!(error = %e, seq = job.seq, "cannot write a relay dead letter; the entry stays queued on disk")
            }
        }
        self.report(job, "dead", Some(dead.reason.clone()));
        lock(&self.dead).push(DeadLetter::from(&dead));
    }

    fn forget(&self, job: &Job) {
        if let Err(e) = std::fs::remove_file(self.path(job)) {
            tracing::warn!(error = %e, seq = job.seq, "cannot remove a finished relay queue entry");
        }
        self.queued.fetch_sub(1, Ordering::SeqCst);
    }

    fn report(&self, job: &Job, state: &'static str, last_error: Option<String>) {
        if let Some(stored) = self.store.get(&job.webhook_id) {
            stored.update(|r| {
                let status = RelayStatus {
                    target: job.target.clone(),
                    state,
                    attempts: job.attempts,
                    last_error,
                };
                match r.relay.iter_mut().find(|s| s.target == job.target) {
                    Some(s) => *s = status,
                    None => r.relay.push(status),
                }
            });
        }
    }

    async fn attempt(&self, lane: &Lane, job: &Job) -> Result<(), Failure> {
        let body = base64::engine::general_purpose::STANDARD
            .decode(&job.body_base64)
            .map_err(|e| Failure::Permanent(format!("queue entry damaged: {e}")))?;
        let mut request = Request::post(lane.target.clone());
        for (k, v) in &job.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let request = request
            .body(body::full(body))
            .map_err(|e| Failure::Permanent(format!("queue entry damaged: {e}")))?;
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.request(request)).await {
            Ok(Ok(r)) if r.status().is_success() => Ok(()),
            Ok(Ok(r)) if permanent(r.status()) => {
                Err(Failure::Permanent(format!("answered {}", r.status())))
            }
            Ok(Ok(r)) => Err(Failure::Retry(format!("answered {}", r.status()))),
            Ok(Err(e)) => Err(Failure::Retry(crate::client::classify(&e).detail)),
            Err(_) => Err(Failure::Retry("no answer within 10 s".into())),
        }
    }
}

/// An answer that another attempt would not change: a 4xx but 408 (Request
/// Timeout) and 429 (Too Many Requests).
fn permanent(status: StatusCode) -> bool {
    status.is_client_error()
        && status != StatusCode::REQUEST_TIMEOUT
        && status != StatusCode::TOO_MANY_REQUESTS
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
        QueueError::Io {
            path: path.to_owned(),
            source,
        }
    })
}

async fn work(strong: Arc<RelayState>, lane_index: usize) {
    let lane = &strong.queues[lane_index];
    loop {
        let next = lock(&lane.jobs).front().cloned();
        let Some(mut job) = next else {
            // A job pushed before this wait left a permit (`notify_one`).
            lane.wake.notified().await;
            continue;
        };
        let mut delay = strong.config.retry_initial;
        let mut dead = None;
        let mut delivered = false;
        loop {
            job.attempts += 1;
            match strong.attempt(lane, &job).await {
                Ok(()) => {
                    tracing::debug!(target: "leanproxy::webhooks", webhook = %job.webhook_id, target_url = %job.target, attempts = job.attempts, "webhook relayed");
                    delivered = true;
                    break;
                }
                Err(Failure::Permanent(e)) => {
                    tracing::warn!(target: "leanproxy::webhooks", webhook = %job.webhook_id, target_url = %job.target, attempts = job.attempts, error = %e, "webhook relay dead-lettered; the next ones go on");
                    dead = Some(e);
                    break;
                }
                Err(Failure::Retry(e)) if job.attempts >= strong.config.max_attempts => {
                    tracing::error!(target: "leanproxy::webhooks", webhook = %job.webhook_id, target_url = %job.target, attempts = job.attempts, error = %e, "webhook relay given up");
                    strong.report(&job, "failed", Some(e));
                    break;
                }
                Err(Failure::Retry(e)) => {
                    tracing::info!(target: "leanproxy::webhooks", webhook = %job.webhook_id, target_url = %job.target, attempts = job.attempts, error = %e, retry_in = ?delay, "webhook relay failed; will retry");
                    strong.report(&job, "queued", Some(e));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(strong.config.retry_max);
                }
            }
        }
        lock(&lane.jobs).pop_front();
        match dead {
            // Moved with `fsync`: off the runtime's thread.
            Some(reason) => {
                let inner = strong.clone();
                crate::sync::blocking(move || inner.dead_letter(&job, reason)).await;
            }
            None => {
                strong.forget(&job);
                // Said once its queue entry is gone: a restart from here on
                // cannot send it again.
                if delivered {
                    strong.report(&job, "delivered", None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_4xx_but_408_and_429_is_permanent() {
        for code in [400, 401, 403, 404, 410, 422] {
            assert!(permanent(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [408, 429, 500, 502, 503, 301] {
            assert!(!permanent(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }
}
