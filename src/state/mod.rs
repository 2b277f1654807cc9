//! Where the state several replicas share is kept: `[state] backend =
//! "memory"` (each replica its own, in memory and files: the default) or
//! `"redis"` (one Redis for the fleet).
//!
//! This module holds what every Redis backend uses: [`StateSettings`], the
//! connection ([`RedisState`]: a `redis` crate `ConnectionManager`, the key
//! prefix, the timeout no caller waits longer than, the errors counted and
//! logged once a minute), the notices replicas send each other over pub/sub
//! ([`Notices`]) and the fleet's live events ([`fleet`]). Each backend trait's
//! Redis implementation is a file beside the trait:
//!
//! | state | trait | Redis backend |
//! | --- | --- | --- |
//! | reconnect registry | `reconnect::store::RegistryStore` | `src/reconnect/redis.rs` |
//! | fault rules, counters, quotas | `fault::quota::QuotaStore`, `fault::book::RuleBook` | `src/fault/redis.rs` |
//! | webhook claims | `webhooks::claims::ClaimStore` | `src/webhooks/redis_claims.rs` |
//! | relay queue | `webhooks::relay::QueueStore` | `src/webhooks/relay/redis.rs` |
//!
//! The request log, the received webhooks kept for inspection and each
//! handle's counters for metrics stay per replica.

pub mod fleet;
mod redis;

use std::time::Duration;

use crate::secret::Secret;

pub use self::redis::{Health, Notices, RedisState, Unavailable};

/// Default key prefix: several environments can share one Redis with
/// different prefixes.
pub const DEFAULT_PREFIX: &str = "leanproxy:";

/// Where the shared state is kept (`[state]`).
#[derive(Debug, Clone, Default)]
pub enum StateSettings {
    /// Each replica keeps its own, in memory and in `proxy.data_dir`.
    #[default]
    Memory,
    /// One Redis for the fleet.
    Redis(RedisSettings),
}

/// `[state] backend = "redis"`.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` URL; may carry a password, so it is a
    /// secret, shown only through [`RedisSettings::shown_url`].
    pub url: Secret,
    /// The password, when given apart from the URL
    /// (`LEANPROXY_REDIS_PASSWORD`); it wins over the URL's.
    pub password: Option<Secret>,
    /// Prefix of every key and channel.
    pub prefix: String,
    /// Longest any caller waits for Redis.
    pub timeout: Duration,
    /// This replica's name, on its events and request log records.
    pub replica: String,
    /// Refuse to start when Redis cannot be reached (else start degraded).
    pub require: bool,
}

impl RedisSettings {
    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn shown_url(&self) -> String {
        shown_url(self.url.expose())
    }
}

/// `url` with its password (and user) replaced by `***`.
pub fn shown_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => "(not a URL)".into(),
    }
}

/// Checks a `[state] url`: `Err` says why it cannot be used (never quoting
/// it: it may carry a password).
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err("must start with redis:// or rediss://".into());
    }
    ::redis::IntoConnectionInfo::into_connection_info(url)
        .map(drop)
        .map_err(|e| format!("is not a Redis URL ({})", e.kind_name()))
}

/// The default replica name: the host's name and the process id, so two
/// replicas on one host differ.
pub fn default_replica() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "leanproxy".into());
    format!("{host}-{}", std::process::id())
}

trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for ::redis::RedisError {
    fn kind_name(&self) -> String {
        // The error's text may quote the URL; its kind does not.
        format!("{:?}", self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shown_url_hides_the_password() {
        assert_eq!(
            shown_url("redis://:hunter2@10.0.0.1:6379/0"),
            "redis://***@10.0.0.1:6379/0"
        );
        assert_eq!(
            shown_url("rediss://user:p@ss@cache:6380"),
            "rediss://***@cache:6380"
        );
        assert_eq!(shown_url("redis://127.0.0.1"), "redis://127.0.0.1");
    }

    #[test]
    fn only_redis_urls_are_taken() {
        assert!(check_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_url("rediss://:pw@cache:6380/1").is_ok());
        assert!(check_url("http://127.0.0.1").is_err());
        assert!(check_url("redis://").is_err());
    }
}

#[cfg(test)]
pub(crate) mod test_server;

/// In the library's tests: a Redis server of the test's own and a
/// connection to it under `prefix`; `None` (said as SKIPPED, a failure under
/// `CI=true`) when `redis-server` is not installed.
#[cfg(test)]
pub(crate) async fn test_redis(prefix: &str) -> Option<(test_server::RedisServer, RedisState)> {
    let Some(server) = test_server::RedisServer::start() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "redis-server: required under CI=true (scripts/test installs it)"
        );
        eprintln!("SKIPPED (not run, not passed): redis-server is not installed");
        return None;
    };
    let settings = RedisSettings {
        url: Secret::new(server.url()),
        password: None,
        prefix: prefix.into(),
        timeout: Duration::from_secs(2),
        replica: "test".into(),
        require: true,
    };
    let state = RedisState::new(&settings).expect("a connection");
    state.check().await.expect("the test's Redis answers");
    Some((server, state))
}
