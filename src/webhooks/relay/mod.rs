//! Relaying accepted webhooks to the app, byte-identical with their headers and
//! signature, through a bounded and durable queue, so webhooks accepted before
//! a crash or restart are still relayed after it. One worker per target keeps
//! Lean's order; failures are retried with exponential backoff.
//!
//! A delivery that can never succeed does not hold its target's lane: one
//! answered 4xx (but 408 and 429, which are worth retrying) or whose queue
//! entry cannot be decoded is dead-lettered at once: set aside with the
//! reason, listed by [`Relay::dead_letters`] and queued again (last) by
//! [`Relay::replay_dead`]. Dead letters count against the queue's bound, so
//! the room they take is bounded too.
//!
//! [`Relay`] is the handle: the workers, the HTTP client, the order of
//! deliveries and their statuses. The queue itself is a [`QueueStore`]
//! (`queue.rs`); today's, [`FileQueue`](file::FileQueue) (`file.rs`), keeps
//! each delivery as a file in the queue directory, written with `fsync`
//! before the webhook is answered, and dead letters in `dead/` beside them.
//! The second backend, for several replicas, is
//! [`RedisQueue`](redis::RedisQueue) (`redis.rs`: a Redis stream per target
//! read by a consumer group, one replica at a time per target), checked by
//! the same contract (`contract.rs`).

#[cfg(test)]
mod contract;
mod file;
mod queue;
mod redis;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use http::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::store::{RelayStatus, Store, Stored};
use crate::body::{self, Body};
use crate::sync::lock;
use queue::Job;
pub(crate) use queue::QueueStore;
pub use queue::{DeadLetter, QueueError, ReplayDeadError};

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
    shared: Arc<Relaying>,
}

/// What the clones of a [`Relay`] and its workers share.
struct Relaying {
    config: RelayConfig,
    /// Where the deliveries' statuses are reported.
    store: Store,
    client: Client<HttpsConnector<HttpConnector>, Body>,
    queue: Arc<dyn QueueStore>,
    /// Held by [`Relay::enqueue`] from numbering its deliveries to offering
    /// them (and by [`Relay::replay_dead`]), so each target gets them in the
    /// order of their numbers.
    order: Mutex<()>,
}

impl Relay {
    /// A relay over `config`, its queue in `config.dir` (see `file.rs`),
    /// loading deliveries left there. Call [`Relay::start`] to run the
    /// workers.
    pub fn open(
        config: RelayConfig,
        store: Store,
        tls: rustls::ClientConfig,
    ) -> Result<Self, QueueError> {
        let targets: Vec<String> = config.targets.iter().map(Uri::to_string).collect();
        let queue = file::FileQueue::open(&config.dir, &targets, config.queue_limit)?;
        Ok(Self::with_queue(config, store, tls, queue))
    }

    /// A relay over `config` whose queue is on Redis, shared by every
    /// replica (`config.dir` is not used). Inside a Tokio runtime.
    pub fn on_redis(
        config: RelayConfig,
        store: Store,
        tls: rustls::ClientConfig,
        redis: crate::state::RedisState,
    ) -> Self {
        let targets: Vec<String> = config.targets.iter().map(Uri::to_string).collect();
        let queue = redis::RedisQueue::new(redis, &targets, config.queue_limit);
        Self::with_queue(config, store, tls, queue)
    }

    /// A relay over `config` whose deliveries are kept by `queue` (its lanes
    /// in the order of `config.targets`).
    pub(crate) fn with_queue(
        config: RelayConfig,
        store: Store,
        tls: rustls::ClientConfig,
        queue: Arc<dyn QueueStore>,
    ) -> Self {
        let connector = crate::client::tls::http1_connector(tls);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Self {
            shared: Arc::new(Relaying {
                config,
                store,
                client,
                queue,
                order: Mutex::new(()),
            }),
        }
    }

    /// Runs one worker per target; they run until aborted (queued deliveries
    /// stay queued for the next start).
    pub fn start(&self) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.shared.config.targets.len())
            .map(|lane| {
                let shared = self.shared.clone();
                tokio::spawn(async move { work(shared, lane).await })
            })
            .collect()
    }

    /// Whether there is anywhere to relay to.
    pub fn has_targets(&self) -> bool {
        !self.shared.config.targets.is_empty()
    }

    /// Deliveries waiting (dead letters aside).
    pub fn queued(&self) -> crate::backend::Op<u64> {
        self.shared.queue.queued()
    }

    /// Deliveries set aside, oldest first.
    pub fn dead_letters(&self) -> crate::backend::Op<Vec<DeadLetter>> {
        self.shared.queue.dead_letters()
    }

    /// Queues the dead letter `id` again for its target, after the deliveries
    /// waiting there, with its attempts reset. Writes with `fsync`: call it
    /// off the runtime's threads where that matters.
    pub fn replay_dead(&self, id: &str) -> Result<RelayStatus, ReplayDeadError> {
        let shared = &self.shared;
        // Held throughout: a second replay of the same letter finds it gone.
        let _order = lock(&shared.order);
        let seq = shared.queue.number().wait();
        let job = shared.queue.revive(id, seq).wait()?;
        // Reported before the worker can see it, so it never overwrites the
        // worker's report.
        shared.report(&job, "queued", None);
        let status = RelayStatus {
            target: job.target.clone(),
            state: "queued",
            attempts: 0,
            last_error: None,
        };
        shared.queue.offer(job).wait();
        Ok(status)
    }

    /// Queues the delivery `webhook_id` to every target, durably, or to none
    /// when one cannot take it. Returns one status per target, also recorded
    /// in `stored` before any target's worker can see the deliveries, so they
    /// never overwrite a worker's report. `then` runs after that, still
    /// before the workers see them, told whether they were queued: what the
    /// webhook means is applied there, before the app can have it.
    ///
    /// Each delivery is made durable there (the file queue: a file written
    /// with `fsync`, 1 ms typical, tens at worst): call it off the runtime's
    /// threads where that matters.
    pub fn enqueue(
        &self,
        webhook_id: &str,
        stored: &Stored,
        then: impl FnOnce(bool),
    ) -> Vec<RelayStatus> {
        let shared = &self.shared;
        let headers: Vec<(String, String)> = stored
            .forward
            .iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body_base64 = base64::engine::general_purpose::STANDARD.encode(&stored.body);
        let _order = lock(&shared.order);
        let mut staged = Vec::with_capacity(shared.config.targets.len());
        let mut statuses: Vec<RelayStatus> = shared
            .config
            .targets
            .iter()
            .map(|target| {
                let target = target.to_string();
                let job = Job {
                    seq: shared.queue.number().wait(),
                    webhook_id: webhook_id.to_string(),
                    target: target.clone(),
                    headers: headers.clone(),
                    body_base64: body_base64.clone(),
                    attempts: 0,
                };
                match shared.queue.stage(&job).wait() {
                    Ok(()) => {
                        staged.push(job);
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
            for job in staged.drain(..) {
                shared.queue.unstage(&job).wait();
            }
            for status in statuses.iter_mut().filter(|s| s.state == "queued") {
                status.state = "dropped";
                status.last_error = Some(why.clone());
            }
        }
        stored.update(|r| r.relay = statuses.clone());
        then(statuses.iter().all(|s| s.state == "queued"));
        for job in staged {
            shared.queue.offer(job).wait();
        }
        statuses
    }
}

impl Relaying {
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

    async fn attempt(&self, target: &Uri, job: &Job) -> Result<(), Failure> {
        let body = base64::engine::general_purpose::STANDARD
            .decode(&job.body_base64)
            .map_err(|e| Failure::Permanent(format!("queue entry damaged: {e}")))?;
        let mut request = Request::post(target.clone());
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

async fn work(shared: Arc<Relaying>, lane: usize) {
    let Some(target) = shared.config.targets.get(lane).cloned() else {
        return;
    };
    loop {
        let mut job = shared.queue.next(lane).await;
        let mut delay = shared.config.retry_initial;
        let mut dead = None;
        let mut delivered = false;
        loop {
            job.attempts += 1;
            match shared.attempt(&target, &job).await {
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
                Err(Failure::Retry(e)) if job.attempts >= shared.config.max_attempts => {
                    tracing::error!(target: "leanproxy::webhooks", webhook = %job.webhook_id, target_url = %job.target, attempts = job.attempts, error = %e, "webhook relay given up");
                    shared.report(&job, "failed", Some(e));
                    break;
                }
                Err(Failure::Retry(e)) => {
                    tracing::info!(target: "leanproxy::webhooks", webhook = %job.webhook_id, target_url = %job.target, attempts = job.attempts, error = %e, retry_in = ?delay, "webhook relay failed; will retry");
                    shared.report(&job, "queued", Some(e));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(shared.config.retry_max);
                }
            }
        }
        match dead {
            Some(reason) => {
                if let Some(letter) = shared.queue.dead_letter(lane, &job, reason).await {
                    shared.report(&job, "dead", Some(letter.reason));
                }
            }
            None => {
                shared.queue.finish(lane, &job).await;
                // Said once its queue entry is gone: a restart from here on
                // cannot send it again.
                if delivered {
                    shared.report(&job, "delivered", None);
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
