//! `[proxy]`: the listener, the upstream (a named target or a URL; none: the
//! embedded Mockbank), timeouts, connection limits, workers and the data
//! directory.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawProxy;
use super::{given, resolve_target, Checker, ProxySettings, Target};

/// The most connections `proxy.max_connections` accepts (a process has far
/// fewer file descriptors).
const MAX_CONNECTIONS: usize = 1 << 24;

/// The most runtime worker threads `proxy.workers` accepts.
const MAX_WORKERS: usize = 1024;

/// Validates `[proxy]`; also the resolved target, whose hosts and token URL
/// other sections read.
pub(super) fn validate(
    c: &mut Checker,
    raw: &RawProxy,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Option<Target>, ProxySettings) {
    let target = match raw.upstream.as_deref() {
        None => resolve_target("mockbank").ok(),
        Some(u) => resolve_target(u)
            .map_err(|e| c.fail("proxy.upstream", e))
            .ok(),
    };
    let upstream = target.as_ref().and_then(|t| t.base.clone());
    let proxy = ProxySettings {
        listen: c.addr("proxy.listen", &raw.listen),
        upstream,
        connect_timeout: c.duration("proxy.connect_timeout", &raw.connect_timeout),
        response_timeout: c.duration("proxy.response_timeout", &raw.response_timeout),
        shutdown_grace: c.duration("proxy.shutdown_grace", &raw.shutdown_grace),
        client_idle_timeout: match c.duration("proxy.client_idle_timeout", &raw.client_idle_timeout)
        {
            // Looked at every half timeout: shorter would close a
            // connection between two requests of a client.
            d if !d.is_zero() && d < Duration::from_secs(1) => {
                c.fail("proxy.client_idle_timeout", "must be at least 1s");
                d
            }
            d => d,
        },
        client_write_timeout: c.duration("proxy.client_write_timeout", &raw.client_write_timeout),
        upstream_body_timeout: c
            .duration("proxy.upstream_body_timeout", &raw.upstream_body_timeout),
        pool_idle_timeout: c.duration("proxy.pool_idle_timeout", &raw.pool_idle_timeout),
        pool_max_idle_per_host: raw.pool_max_idle_per_host,
        max_connections: match raw.max_connections {
            0 => {
                c.fail("proxy.max_connections", "must be at least 1");
                1
            }
            n if n > MAX_CONNECTIONS => {
                c.fail(
                    "proxy.max_connections",
                    format!("at most {MAX_CONNECTIONS}"),
                );
                MAX_CONNECTIONS
            }
            n => n,
        },
        workers: match raw.workers {
            n if n > MAX_WORKERS => {
                c.fail(
                    "proxy.workers",
                    format!("at most {MAX_WORKERS} (0: one per CPU)"),
                );
                None
            }
            n => std::num::NonZeroUsize::new(n),
        },
        data_dir: match given(&raw.data_dir) {
            None => default_data_dir(env),
            Some(dir) => PathBuf::from(dir),
        },
    };
    (target, proxy)
}

/// `$XDG_DATA_HOME/leanproxy`, else `$HOME/.local/share/leanproxy`, else
/// `.leanproxy` in the working directory.
fn default_data_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let set = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    set("XDG_DATA_HOME")
        .map(|d| d.join("leanproxy"))
        .or_else(|| set("HOME").map(|h| h.join(".local/share/leanproxy")))
        .unwrap_or_else(|| PathBuf::from(".leanproxy"))
}
