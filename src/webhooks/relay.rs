//! Relaying accepted webhooks to the app, byte-identical with their headers and
//! signature, through a bounded and durable queue: each delivery is a file in the
//! queue directory (written atomically before the webhook is answered), so
//! webhooks accepted before a crash or restart are still relayed after it. One
//! worker per target keeps Lean's order; failures are retried with exponential
//! backoff.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use http::{Request, Uri};
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

/// The relay. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    config: RelayConfig,
    store: Store,
    client: Client<HttpsConnector<HttpConnector>, Body>,
    queues: Vec<Lane>,
    queued: AtomicU64,
    next_seq: AtomicU64,
    /// Held by [`Relay::enqueue`] from numbering its deliveries to pushing
    /// them, so each target gets them in the order of their numbers.
    order: Mutex<()>,
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
        let connector = crate::proxy::tls::http1_connector(tls);
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
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                store,
                client,
                queues,
                queued: AtomicU64::new(queued),
                next_seq: AtomicU64::new(next.max(now_nanos())),
                order: Mutex::new(()),
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

    /// Deliveries waiting.
    pub fn queued(&self) -> u64 {
        self.inner.queued.load(Ordering::SeqCst)
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

fn now_nanos() -> u64 {
    chrono::Utc::now()
        .timestamp_nanos_opt()
        .unwrap_or_default()
        .max(0) as u64
}

impl Inner {
    fn path(&self, job: &Job) -> PathBuf {
        self.config.dir.join(format!("{:020}.json", job.seq))
    }

    fn persist(&self, job: &Job) -> Result<(), QueueError> {
        // Reserve the slot first, so concurrent deliveries cannot overshoot.
        let waiting = self.queued.fetch_add(1, Ordering::SeqCst);
        if waiting >= self.config.queue_limit as u64 {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(QueueError::Full(waiting as usize));
        }
        let path = self.path(job);
        let tmp = path.with_extension("tmp");
        let written = (|| {
            {
                use std::io::Write;
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(&serde_json::to_vec(job).unwrap_or_default())?;
                file.sync_all()?;
            }
            std::fs::rename(&tmp, &path)
        })();
        written.map_err(|source| {
            // Not left for a later start to wonder about (it only loads `.json`).
            let _ = std::fs::remove_file(&tmp);
            self.queued.fetch_sub(1, Ordering::SeqCst);
            QueueError::Io {
                path: path.clone(),
                source,
            }
        })
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

    async fn attempt(&self, lane: &Lane, job: &Job) -> Result<(), String> {
        let body = base64::engine::general_purpose::STANDARD
            .decode(&job.body_base64)
            .map_err(|e| format!("queue entry damaged: {e}"))?;
        let mut request = Request::post(lane.target.clone());
        for (k, v) in &job.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let request = request.body(body::full(body)).map_err(|e| e.to_string())?;
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.request(request)).await {
            Ok(Ok(r)) if r.status().is_success() => Ok(()),
            Ok(Ok(r)) => Err(format!("answered {}", r.status())),
            Ok(Err(e)) => Err(crate::proxy::classify(&e).1),
            Err(_) => Err("no answer within 10 s".into()),
        }
    }
}

async fn work(strong: Arc<Inner>, lane_index: usize) {
    let lane = &strong.queues[lane_index];
    loop {
        let next = lock(&lane.jobs).front().cloned();
        let Some(mut job) = next else {
            // A job pushed before this wait left a permit (`notify_one`).
            lane.wake.notified().await;
            continue;
        };
        let mut delay = strong.config.retry_initial;
        loop {
            job.attempts += 1;
            match strong.attempt(lane, &job).await {
                Ok(()) => {
                    tracing::debug!(target: "leanproxy::webhooks", webhook = %job.webhook_id, target_url = %job.target, attempts = job.attempts, "webhook relayed");
                    strong.report(&job, "delivered", None);
                    break;
                }
                Err(e) if job.attempts >= strong.config.max_attempts => {
                    tracing::error!(target: "leanproxy::webhooks", webhook = %job.webhook_id, target_url = %job.target, attempts = job.attempts, error = %e, "webhook relay given up");
                    strong.report(&job, "failed", Some(e));
                    break;
                }
                Err(e) => {
                    tracing::info!(target: "leanproxy::webhooks", webhook = %job.webhook_id, target_url = %job.target, attempts = job.attempts, error = %e, retry_in = ?delay, "webhook relay failed; will retry");
                    strong.report(&job, "queued", Some(e));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(strong.config.retry_max);
                }
            }
        }
        lock(&lane.jobs).pop_front();
        strong.forget(&job);
    }
}
