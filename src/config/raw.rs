//! The config file as written: plain strings and numbers, strict keys, defaults in
//! one place. Nothing here is validated; see [`super::Settings::from_raw`].

use serde::Deserialize;

/// Default proxy listener.
pub(super) const DEFAULT_PROXY_LISTEN: &str = "127.0.0.1:7070";
/// Default admin listener.
pub(super) const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:7071";

/// The whole file. Every section is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// `[proxy]`
    pub proxy: RawProxy,
    /// `[tls]`
    pub tls: RawTls,
    /// `[auth]`
    pub auth: RawAuth,
    /// `[admin]`
    pub admin: RawAdmin,
    /// `[log]`
    pub log: RawLog,
}

/// `[proxy]`: the listener, the upstream and the timeouts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProxy {
    /// Address the proxy listens on.
    pub listen: String,
    /// Base URL requests are forwarded to.
    pub upstream: Option<String>,
    /// Time allowed to open a connection (TCP and TLS) to the upstream.
    pub connect_timeout: String,
    /// Time allowed for the upstream's response head once the request is sent.
    pub response_timeout: String,
    /// How long in-flight exchanges may run on after SIGINT/SIGTERM.
    pub shutdown_grace: String,
    /// How long an idle pooled upstream connection is kept.
    pub pool_idle_timeout: String,
    /// Most idle pooled connections kept per upstream host.
    pub pool_max_idle_per_host: usize,
}

impl Default for RawProxy {
    fn default() -> Self {
        Self {
            listen: DEFAULT_PROXY_LISTEN.into(),
            upstream: None,
            connect_timeout: "5s".into(),
            // Lean falls back to async answers after 50 s; leave it room.
            response_timeout: "60s".into(),
            shutdown_grace: "30s".into(),
            pool_idle_timeout: "90s".into(),
            pool_max_idle_per_host: 64,
        }
    }
}

/// `[tls]`: trust and client certificate for HTTPS upstreams.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    /// Extra CA certificates (PEM) trusted besides the system and webpki roots.
    pub ca_file: Option<String>,
    /// Client certificate chain (PEM) for mTLS.
    pub client_cert: Option<String>,
    /// Private key (PEM) of the client certificate.
    pub client_key: Option<String>,
}

/// `[auth]`: credentials added on the way out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    /// The `lean-app-token` value; `LEAN_APP_TOKEN` overrides it.
    pub app_token: Option<String>,
    /// `override` or `keep`.
    pub app_token_policy: String,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            app_token: None,
            app_token_policy: "override".into(),
        }
    }
}

/// `[admin]`: the admin listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// Address of the admin listener.
    pub listen: String,
    /// Bearer token required on the admin API; `LEANPROXY_ADMIN_TOKEN` overrides it.
    pub token: Option<String>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: DEFAULT_ADMIN_LISTEN.into(),
            token: None,
        }
    }
}

/// `[log]`: how leanproxy writes its own log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// `pretty` or `json`.
    pub format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "pretty".into(),
        }
    }
}
