//! [`RedisState`]: the one connection every Redis backend of a replica uses,
//! and what it counts.
//!
//! Every call goes through [`RedisState::call`]: it waits at most the
//! configured timeout, counts a failure by operation (in `/metrics`,
//! `leanproxy_state_errors_total{op=…}`, and in `/healthz`), logs at most one
//! line a minute, and after a failure that says Redis is gone fails the next
//! calls at once for a second, so a request that needs several answers does
//! not wait once per answer. The `ConnectionManager` reconnects by itself.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::{FromRedisValue, IntoConnectionInfo, RedisResult};
use serde::Serialize;
use tokio::sync::broadcast;

use super::RedisSettings;
use crate::metrics::Metrics;
use crate::sync::lock;

/// How long calls fail at once after Redis was found gone.
const FAST_FAIL: Duration = Duration::from_secs(1);
/// At most one log line per this long about Redis trouble.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// How often the health task pings.
const PING_EVERY: Duration = Duration::from_secs(1);

/// A Redis call that could not be made (Redis down, too slow, or refusing).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the shared state on Redis could not {op}: {detail}")]
pub struct Unavailable {
    /// What was tried (the `op` label of `leanproxy_state_errors_total`).
    pub op: &'static str,
    /// What went wrong (never the URL).
    pub detail: String,
}

/// What `/healthz` says about the state backend.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Health {
    /// `redis`.
    pub backend: &'static str,
    /// This replica's name.
    pub replica: String,
    /// Whether the last ping was answered.
    pub up: bool,
    /// The last ping's round trip, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Failed calls since start, by operation.
    pub errors: BTreeMap<&'static str, u64>,
}

/// The connection to Redis shared by a replica's backends. Cheap to clone.
#[derive(Clone)]
pub struct RedisState {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    replica: Arc<str>,
    shown_url: String,
    /// Calls fail at once until then.
    down_until: Mutex<Option<Instant>>,
    last_logged: Mutex<Option<Instant>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    up: AtomicBool,
    /// Last ping, in microseconds (`u64::MAX`: none yet).
    latency_us: AtomicU64,
    metrics: OnceLock<Metrics>,
    notices: broadcast::Sender<Arc<str>>,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("url", &self.inner.shown_url)
            .field("prefix", &self.inner.prefix)
            .field("replica", &self.inner.replica)
            .finish_non_exhaustive()
    }
}

impl RedisState {
    /// A connection made lazily (the first call connects): call
    /// [`RedisState::check`] to know whether Redis answers. Inside a Tokio
    /// runtime.
    pub fn new(settings: &RedisSettings) -> Result<Self, Unavailable> {
        let refused = |e: redis::RedisError| Unavailable {
            op: "connect",
            detail: format!("{:?}: check state.url", e.kind()),
        };
        let mut info = settings
            .url
            .expose()
            .into_connection_info()
            .map_err(refused)?;
        if let Some(password) = &settings.password {
            let redis = info
                .redis_settings()
                .clone()
                .set_password(password.expose());
            info = info.set_redis_settings(redis);
        }
        let client = redis::Client::open(info).map_err(refused)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(settings.timeout))
            .set_connection_timeout(Some(settings.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(refused)?;
        let (notices, _) = broadcast::channel(256);
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                conn,
                prefix: settings.prefix.clone(),
                timeout: settings.timeout,
                replica: settings.replica.as_str().into(),
                shown_url: settings.shown_url(),
                down_until: Mutex::new(None),
                last_logged: Mutex::new(None),
                errors: Mutex::new(BTreeMap::new()),
                up: AtomicBool::new(false),
                latency_us: AtomicU64::new(u64::MAX),
                metrics: OnceLock::new(),
                notices,
            }),
        })
    }

    /// Counts errors and latency in `metrics` too (once).
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        metrics.state_backend("redis");
        let _ = self.inner.metrics.set(metrics);
        self
    }

    /// `prefix` + `name`: every key and channel is named through here.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.inner.prefix)
    }

    /// This replica's name.
    pub fn replica(&self) -> &Arc<str> {
        &self.inner.replica
    }

    /// The URL, its password hidden.
    pub fn shown_url(&self) -> &str {
        &self.inner.shown_url
    }

    /// The longest a call waits.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Whether Redis answers a PING now (within the timeout); at start.
    pub async fn check(&self) -> Result<(), Unavailable> {
        let started = Instant::now();
        let pong: RedisResult<String> = match tokio::time::timeout(
            self.inner.timeout,
            redis::cmd("PING").query_async(&mut self.inner.conn.clone()),
        )
        .await
        {
            Ok(answer) => answer,
            Err(_) => {
                self.inner.up.store(false, Ordering::Relaxed);
                return Err(Unavailable {
                    op: "ping",
                    detail: format!("no answer within {:?}", self.inner.timeout),
                });
            }
        };
        match pong {
            Ok(_) => {
                self.answered(started);
                Ok(())
            }
            Err(e) => {
                self.inner.up.store(false, Ordering::Relaxed);
                Err(Unavailable {
                    op: "ping",
                    detail: describe(&e),
                })
            }
        }
    }

    fn answered(&self, started: Instant) {
        let us = started.elapsed().as_micros().min(u128::from(u64::MAX - 1)) as u64;
        self.inner.latency_us.store(us, Ordering::Relaxed);
        self.inner.up.store(true, Ordering::Relaxed);
        *lock(&self.inner.down_until) = None;
        if let Some(m) = self.inner.metrics.get() {
            m.set_state(true, us as f64 / 1e6);
        }
    }

    /// Runs `f` on the connection: at most the timeout, failures counted
    /// under `op` (see the module docs).
    pub async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, Unavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if lock(&self.inner.down_until).is_some_and(|until| Instant::now() < until) {
            return Err(self.failed(op, "Redis was unreachable a moment ago".into(), false));
        }
        match tokio::time::timeout(self.inner.timeout, f(self.inner.conn.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let gone = e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal();
                Err(self.failed(op, describe(&e), gone))
            }
            Err(_) => Err(self.failed(
                op,
                format!("no answer within {:?}", self.inner.timeout),
                true,
            )),
        }
    }

    /// One command.
    pub async fn query<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: redis::Cmd,
    ) -> Result<T, Unavailable> {
        self.call(op, |mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// One pipeline (atomic when made with `.atomic()`).
    pub async fn pipe<T: FromRedisValue>(
        &self,
        op: &'static str,
        pipe: redis::Pipeline,
    ) -> Result<T, Unavailable> {
        self.call(op, |mut c| async move { pipe.query_async(&mut c).await })
            .await
    }

    /// Runs a Lua script (by its digest, loading it when Redis lacks it).
    pub async fn script<T: FromRedisValue>(
        &self,
        op: &'static str,
        script: &'static redis::Script,
        keys: Vec<String>,
        args: Vec<Vec<u8>>,
    ) -> Result<T, Unavailable> {
        self.call(op, |mut c| async move {
            let mut invocation = script.prepare_invoke();
            for k in &keys {
                invocation.key(k);
            }
            for a in &args {
                invocation.arg(a.as_slice());
            }
            invocation.invoke_async(&mut c).await
        })
        .await
    }

    fn failed(&self, op: &'static str, detail: String, gone: bool) -> Unavailable {
        *lock(&self.inner.errors).entry(op).or_default() += 1;
        if let Some(m) = self.inner.metrics.get() {
            m.state_error(op);
            if gone {
                m.set_state(false, 0.0);
            }
        }
        if gone {
            self.inner.up.store(false, Ordering::Relaxed);
            *lock(&self.inner.down_until) = Some(Instant::now() + FAST_FAIL);
        }
        let now = Instant::now();
        let mut logged = lock(&self.inner.last_logged);
        if logged.is_none_or(|at| now.duration_since(at) >= LOG_EVERY) {
            *logged = Some(now);
            tracing::error!(target: "leanproxy::state", op, error = %detail, url = %self.inner.shown_url,
                "the shared state on Redis cannot be used; proxying goes on (failed calls are counted in leanproxy_state_errors_total; this is logged once a minute)");
        }
        Unavailable { op, detail }
    }

    /// What `/healthz` shows.
    pub fn health(&self) -> Health {
        let us = self.inner.latency_us.load(Ordering::Relaxed);
        Health {
            backend: "redis",
            replica: self.inner.replica.to_string(),
            up: self.inner.up.load(Ordering::Relaxed),
            latency_ms: (us != u64::MAX).then(|| us as f64 / 1000.0),
            errors: lock(&self.inner.errors).clone(),
        }
    }

    /// Pings every second until `stop` completes, keeping the health and the
    /// latency current.
    pub async fn watch_health(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(PING_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => {}
            }
            let started = Instant::now();
            let pong: Result<String, _> = self.query("ping", redis::cmd("PING")).await;
            if pong.is_ok() {
                self.answered(started);
            }
        }
    }

    /// Publishes `notice` to every replica's [`Notices`] (fire and forget).
    pub async fn notify(&self, notice: &str) {
        let cmd = redis::cmd("PUBLISH")
            .arg(self.key("notices"))
            .arg(format!("{}|{notice}", self.inner.replica))
            .clone();
        let _: Result<i64, _> = self.query("publish", cmd).await;
    }

    /// The notices replicas send each other (`rules`, `sticky`, `relay:…`),
    /// and `connected` each time the subscription is (re)made: whoever
    /// listens then catches up on what it may have missed.
    pub fn notices(&self) -> Notices {
        Notices {
            rx: self.inner.notices.subscribe(),
        }
    }

    /// Keeps the notices' subscription until `stop` completes, making it
    /// again after Redis comes back.
    pub async fn listen(self, stop: impl Future<Output = ()>) {
        use tokio_stream::StreamExt;
        tokio::pin!(stop);
        let channel = self.key("notices");
        loop {
            let subscribed = async {
                let mut pubsub = self.inner.client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                RedisResult::Ok(pubsub)
            };
            let pubsub = tokio::select! {
                () = &mut stop => return,
                made = tokio::time::timeout(self.inner.timeout * 4, subscribed) => made,
            };
            match pubsub {
                Ok(Ok(pubsub)) => {
                    let _ = self.inner.notices.send("connected".into());
                    let mut messages = pubsub.into_on_message();
                    loop {
                        let message = tokio::select! {
                            () = &mut stop => return,
                            m = messages.next() => m,
                        };
                        let Some(message) = message else { break };
                        let Ok(text) = message.get_payload::<String>() else {
                            continue;
                        };
                        // Each replica's own notices too: it may hold
                        // several handles.
                        if let Some((_, notice)) = text.split_once('|') {
                            let _ = self.inner.notices.send(notice.into());
                        }
                    }
                }
                Ok(Err(e)) => {
                    self.failed("subscribe", describe(&e), true);
                }
                Err(_) => {
                    self.failed("subscribe", "no answer".into(), true);
                }
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// The client, for connections of their own (the fleet's events).
    pub(crate) fn client(&self) -> &redis::Client {
        &self.inner.client
    }
}

/// A listener on the replicas' notices.
#[derive(Debug)]
pub struct Notices {
    rx: broadcast::Receiver<Arc<str>>,
}

impl Notices {
    /// The next notice; `connected` also after notices were missed.
    pub async fn next(&mut self) -> Option<Arc<str>> {
        match self.rx.recv().await {
            Ok(notice) => Some(notice),
            Err(broadcast::error::RecvError::Lagged(_)) => Some("connected".into()),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// An error's kind and text, without the URL (the client's errors do not
/// quote it; the kind says enough).
fn describe(e: &redis::RedisError) -> String {
    format!("{:?}: {e}", e.kind())
}
