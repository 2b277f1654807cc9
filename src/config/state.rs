//! `[state]`: where the state several replicas share is kept.

use std::time::Duration;

use super::raw::RawState;
use super::{given, secret, Checker};
use crate::state::{self, RedisSettings, StateSettings};

/// The Redis password, apart from `state.url` (wins over the URL's).
pub const ENV_REDIS_PASSWORD: &str = "LEANPROXY_REDIS_PASSWORD";

/// `state.backend`'s values.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Memory,
    Redis,
}

const BACKENDS: &[(&str, Backend)] = &[("memory", Backend::Memory), ("redis", Backend::Redis)];

/// Validates `[state]`; `url` is required with `backend = "redis"`.
pub(super) fn validate(
    c: &mut Checker,
    s: RawState,
    env: &dyn Fn(&str) -> Option<String>,
) -> StateSettings {
    let backend = c.choice("state.backend", &s.backend, BACKENDS);
    let timeout = c.duration("state.timeout", &s.timeout);
    if timeout > Duration::from_secs(30) {
        c.fail(
            "state.timeout",
            "must be at most 30s: no request waits longer on Redis",
        );
    }
    let password = secret(c, "state.url", ENV_REDIS_PASSWORD, None, env);
    if s.prefix.contains(char::is_whitespace) {
        c.fail("state.prefix", "must not contain spaces");
    }
    let replica = match given(&s.replica) {
        Some(name) if name.len() > 64 || name.contains(['|', ' ']) => {
            c.fail(
                "state.replica",
                "must be at most 64 characters, without spaces or `|`",
            );
            String::new()
        }
        Some(name) => name.to_string(),
        None => state::default_replica(),
    };
    let Some(Backend::Redis) = backend else {
        if s.url.is_some() {
            c.fail("state.url", "is only read with state.backend = \"redis\"");
        }
        return StateSettings::Memory;
    };
    let Some(url) = s.url.filter(|u| !u.expose().trim().is_empty()) else {
        c.fail(
            "state.url",
            "required with state.backend = \"redis\" (redis://host:6379 or rediss://…)",
        );
        return StateSettings::Memory;
    };
    if let Err(why) = state::check_url(url.expose()) {
        c.fail("state.url", why);
    }
    StateSettings::Redis(RedisSettings {
        url,
        password,
        prefix: s.prefix,
        timeout,
        replica,
        require: s.require,
    })
}
