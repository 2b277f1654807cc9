//! The validated configuration: what [`super::Settings::from_raw`] produces and
//! the rest of leanproxy reads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;

use super::{MockbankSettings, RouteSettings, Secret, TokenPolicy};
use crate::auth::AppTokenValue;
use crate::client::tls::TlsSettings;
use crate::log::LogFormat;

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The proxy listener, upstream and timeouts.
    pub proxy: ProxySettings,
    /// TLS towards the upstream.
    pub tls: TlsSettings,
    /// Credentials added on the way out.
    pub auth: AuthSettings,
    /// The admin listener.
    pub admin: AdminSettings,
    /// leanproxy's own log.
    pub log: LogSettings,
    /// The embedded Mockbank (used when no upstream is configured).
    pub mockbank: MockbankSettings,
    /// Reconnect awareness.
    pub reconnect: ReconnectSettings,
    /// The webhook catcher and relay.
    pub webhooks: WebhookSettings,
    /// Fault injection.
    pub faults: FaultSettings,
    /// Further targets chosen by path prefix or header (`[[routes]]`).
    pub routes: Vec<RouteSettings>,
    /// Where the state several replicas share is kept (`[state]`).
    pub state: crate::state::StateSettings,
}

/// Validated `[fault]` and `[[faults]]`.
#[derive(Debug, Clone, Default)]
pub struct FaultSettings {
    /// Seed of probabilistic decisions.
    pub seed: Option<u64>,
    /// Whether `x-leanproxy-fault` is honoured.
    pub allow_header: bool,
    /// Whether faults may be installed at all (false against production Lean
    /// unless explicitly allowed).
    pub allowed: bool,
    /// Why faults are refused, when they are.
    pub refusal: Option<String>,
    /// Rules installed at start.
    pub rules: Vec<crate::fault::Rule>,
}

/// Validated `[webhooks]`.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Listener address.
    pub listen: SocketAddr,
    /// Secret the signatures are checked with (defaults to the Mockbank's when it runs).
    pub secret: Option<Secret>,
    /// What an invalid signature leads to.
    pub policy: crate::webhooks::Policy,
    /// Relay targets.
    pub relay: Vec<Uri>,
    /// Largest body accepted.
    pub body_limit: usize,
    /// Deliveries kept.
    pub history: usize,
    /// Bytes the kept deliveries may hold (the oldest are evicted).
    pub history_bytes: usize,
    /// How long accepted event ids are remembered across restarts.
    pub claim_window: Duration,
    /// Most relays waiting.
    pub queue_limit: usize,
    /// First retry delay.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Attempts before giving up.
    pub max_attempts: u32,
}

/// Validated `[reconnect]`.
#[derive(Debug, Clone)]
pub struct ReconnectSettings {
    /// Largest JSON answer inspected, in bytes.
    pub inspect_limit: usize,
    /// Where the registry is persisted.
    pub state_file: PathBuf,
    /// Resolved records kept.
    pub history: usize,
    /// Whether answers carrying a reconnect get `x-leanproxy-reconnect-id`.
    pub reconnect_header: bool,
}

/// Validated `[proxy]`.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Proxy listener address.
    pub listen: SocketAddr,
    /// Upstream base URL (`http` or `https`, optional path prefix). `None`: the
    /// embedded Mockbank.
    pub upstream: Option<Uri>,
    /// Connect timeout (TCP + TLS).
    pub connect_timeout: Duration,
    /// Time to the upstream's response head.
    pub response_timeout: Duration,
    /// Grace period for in-flight exchanges at shutdown.
    pub shutdown_grace: Duration,
    /// How long a connection to any listener may go without an exchange
    /// before it is closed (see [`crate::server::Timeouts::idle`]).
    pub client_idle_timeout: Duration,
    /// How long writing to an app connection may make no progress before it
    /// is cut (see [`crate::server::Timeouts::client_write`]).
    pub client_write_timeout: Duration,
    /// How long an upstream answer's body may send nothing before it is cut,
    /// and its connection closed.
    pub upstream_body_timeout: Duration,
    /// Idle lifetime of pooled upstream connections.
    pub pool_idle_timeout: Duration,
    /// Idle pooled connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// Most connections each listener keeps open at once (see
    /// [`crate::server::Serving::max_connections`]).
    pub max_connections: usize,
    /// Runtime worker threads; `None`: one per CPU.
    pub workers: Option<std::num::NonZeroUsize>,
    /// Where leanproxy keeps its state files.
    pub data_dir: PathBuf,
}

/// Validated `[auth]`.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// The `lean-app-token` to inject, if any.
    pub app_token: Option<AppTokenValue>,
    /// The `lean-app-token` sent to the embedded Mockbank when `app_token` is
    /// not set: `[mockbank] app_token`. `None` when an upstream is configured.
    pub mockbank_app_token: Option<AppTokenValue>,
    /// What to do with an app's own token (and `Authorization`).
    pub app_token_policy: TokenPolicy,
    /// OAuth2 client credentials, when configured.
    pub client: Option<(String, Secret)>,
    /// The token URL (`None` with the embedded Mockbank: its own).
    pub token_url: Option<Uri>,
    /// Scope of the API token.
    pub scope: String,
    /// Refresh margin.
    pub refresh_margin: Duration,
}

/// Validated `[admin]`.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Admin listener address.
    pub listen: SocketAddr,
    /// Bearer token required on guarded admin endpoints.
    pub token: Option<Secret>,
    /// Names the admin listener and the Mockbank control endpoints answer
    /// besides their own addresses (`admin.allowed_hosts`).
    pub allowed_hosts: Vec<crate::admin::AllowedHost>,
}

/// Validated `[log]`.
#[derive(Debug, Clone, Default)]
pub struct LogSettings {
    /// Line format.
    pub format: LogFormat,
    /// The request log (ring buffer, captures, redaction, journal).
    pub requests: crate::log::LogConfig,
}

impl ProxySettings {
    /// The timeouts each listener's connections get.
    pub fn timeouts(&self) -> crate::server::Timeouts {
        crate::server::Timeouts {
            grace: self.shutdown_grace,
            idle: self.client_idle_timeout,
            client_write: self.client_write_timeout,
        }
    }
}

impl Settings {
    /// Every configured secret: scrubbed from what the request log shows.
    pub fn secrets(&self) -> Vec<Secret> {
        let mut out: Vec<Secret> = Vec::new();
        out.extend(self.auth.app_token.as_ref().map(AppTokenValue::secret));
        out.extend(self.auth.client.as_ref().map(|(_, s)| s.clone()));
        out.extend(self.admin.token.clone());
        out.extend(self.webhooks.secret.clone());
        for route in &self.routes {
            out.extend(route.app_token.as_ref().map(AppTokenValue::secret));
            out.extend(route.client.as_ref().map(|(_, s)| s.clone()));
        }
        let m = &self.mockbank;
        out.extend([
            m.app_token.clone(),
            m.client_secret.clone(),
            m.webhook_secret.clone(),
        ]);
        if let crate::state::StateSettings::Redis(r) = &self.state {
            out.extend(r.password.clone());
            out.extend(redis_password(r.url.expose()).map(Secret::new));
        }
        out
    }

    /// What is valid but probably not what the user meant, one sentence each,
    /// naming what to set: printed by `leanproxy check` and logged at start.
    pub fn warnings(&self) -> Vec<String> {
        let is_lean = |uri: &Uri| {
            let host = super::normal_host(uri);
            host.ends_with(".leantech.me") || host == "leantech.me"
        };
        let mut out = Vec::new();
        if let Some(upstream) = self.proxy.upstream.as_ref().filter(|u| is_lean(u)) {
            if self.auth.app_token.is_none() && self.auth.client.is_none() {
                out.push(format!(
                    "proxy.upstream is Lean ({}) but no credentials are configured: \
                     every call will be refused. Set LEAN_APP_TOKEN (v1) or \
                     LEAN_CLIENT_ID and LEAN_CLIENT_SECRET (v2), or auth.app_token / \
                     auth.client_id / auth.client_secret",
                    super::normal_host(upstream)
                ));
            }
        }
        for route in self.routes.iter().filter(|r| is_lean(&r.upstream)) {
            if route.app_token.is_none() && route.client.is_none() {
                out.push(format!(
                    "route {} goes to Lean ({}) but has no credentials: set its \
                     app_token or client_id and client_secret",
                    route.name,
                    super::normal_host(&route.upstream)
                ));
            }
        }
        out
    }
}

/// The password in a `redis://` URL, when it has one.
fn redis_password(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let (userinfo, _) = rest.rsplit_once('@')?;
    let password = userinfo.split_once(':').map_or(userinfo, |(_, p)| p);
    (!password.is_empty()).then(|| password.to_string())
}
