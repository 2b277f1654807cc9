//! The config file as written: plain strings and numbers, strict keys, defaults in
//! one place. Nothing here is validated; see [`super::Settings::from_raw`].

use serde::Deserialize;

use super::Secret;
use crate::mockbank;

/// Default proxy listener.
pub(super) const DEFAULT_PROXY_LISTEN: &str = "127.0.0.1:7070";
/// Default admin listener.
pub(super) const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:7071";
/// Default Mockbank listener.
pub(super) const DEFAULT_MOCKBANK_LISTEN: &str = "127.0.0.1:7072";
/// Default webhooks listener.
pub(super) const DEFAULT_WEBHOOKS_LISTEN: &str = "127.0.0.1:7073";

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
    /// `[mockbank]`
    pub mockbank: RawMockbank,
    /// `[reconnect]`
    pub reconnect: RawReconnect,
    /// `[webhooks]`
    pub webhooks: RawWebhooks,
    /// `[fault]`
    pub fault: RawFault,
    /// `[[faults]]`: rules installed at start.
    pub faults: Vec<crate::fault::RawRule>,
    /// `[[routes]]`: further targets by path prefix or header.
    pub routes: Vec<super::routes::RawRoute>,
    /// `[state]`
    pub state: RawState,
}

/// `[state]`: where the state several replicas share is kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawState {
    /// `memory` (each replica its own) or `redis` (shared).
    pub backend: String,
    /// `redis://` or `rediss://` URL (may carry the password).
    pub url: Option<Secret>,
    /// Prefix of every key and channel.
    pub prefix: String,
    /// Longest any request waits on Redis.
    pub timeout: String,
    /// This replica's name (unset: host name and process id).
    pub replica: Option<String>,
    /// Refuse to start when Redis cannot be reached.
    pub require: bool,
}

impl Default for RawState {
    fn default() -> Self {
        Self {
            backend: "memory".into(),
            url: None,
            prefix: crate::state::DEFAULT_PREFIX.into(),
            timeout: "250ms".into(),
            replica: None,
            require: true,
        }
    }
}

/// `[fault]`: fault injection.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFault {
    /// Seed of probabilistic decisions (absent: random).
    pub seed: Option<u64>,
    /// Honour `x-leanproxy-fault` (absent: only in front of the Mockbank or a sandbox).
    pub allow_header_faults: Option<bool>,
    /// Allow faults against a production Lean host.
    pub allow_faults_in_production: bool,
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
    /// How long an app connection may go without an exchange before it is closed.
    pub client_idle_timeout: String,
    /// How long writing an answer to the app may make no progress before its
    /// connection (and the upstream one) is closed.
    pub client_write_timeout: String,
    /// How long an upstream answer's body may send nothing before it is cut.
    pub upstream_body_timeout: String,
    /// How long an idle pooled upstream connection is kept.
    pub pool_idle_timeout: String,
    /// Most idle pooled connections kept per upstream host.
    pub pool_max_idle_per_host: usize,
    /// Most connections each listener keeps open at once.
    pub max_connections: usize,
    /// Runtime worker threads serving the listeners (default 1; 0: one per CPU).
    pub workers: usize,
    /// Where leanproxy keeps its state (unset or empty: the platform's data
    /// directory).
    pub data_dir: Option<String>,
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
            // Above the common clients' pool idle times (Node 4-5 s,
            // reqwest and Go 90 s): a client reusing a connection the
            // server is closing fails a request it may not retry.
            client_idle_timeout: "120s".into(),
            // nginx's `send_timeout` and `proxy_read_timeout` default to
            // 60 s too: time enough for a slow network, not for a peer
            // that has stopped.
            client_write_timeout: "60s".into(),
            upstream_body_timeout: "60s".into(),
            // Below the common upstream keep-alive idle times (nginx 60-75 s,
            // load balancers 60 s): reusing a connection the server is closing
            // fails a request that cannot be retried.
            pool_idle_timeout: "30s".into(),
            pool_max_idle_per_host: 64,
            // A proxied exchange holds two sockets (app and upstream); the
            // usual soft limit of open files is 1,024, so past about 500
            // connections accepting fails anyway until it is raised.
            max_connections: 10_000,
            // One, like nginx's own default: on a small machine shared with
            // the app and its upstream, a second thread costs more CPU per
            // request (wake-ups, cross-thread frees) than it gives
            // (benches/HISTORY.md); 0 asks for one per CPU.
            workers: 1,
            data_dir: None,
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
    pub app_token: Option<Secret>,
    /// `override` or `keep`.
    pub app_token_policy: String,
    /// OAuth2 client id; `LEAN_CLIENT_ID` overrides it.
    pub client_id: Option<String>,
    /// OAuth2 client secret; `LEAN_CLIENT_SECRET` overrides it.
    pub client_secret: Option<Secret>,
    /// Token URL (unset or empty: the target's).
    pub token_url: Option<String>,
    /// Scope of the API token.
    pub scope: String,
    /// Refresh the token this long before it expires.
    pub refresh_margin: String,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            app_token: None,
            app_token_policy: "override".into(),
            client_id: None,
            client_secret: None,
            token_url: None,
            scope: "api".into(),
            refresh_margin: "60s".into(),
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
    pub token: Option<Secret>,
    /// Host names the admin listener and the Mockbank control endpoints
    /// answer besides their own addresses.
    pub allowed_hosts: Vec<String>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: DEFAULT_ADMIN_LISTEN.into(),
            token: None,
            allowed_hosts: Vec::new(),
        }
    }
}

/// `[log]`: leanproxy's own log, the request log and the journal.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// `pretty` or `json`.
    pub format: String,
    /// Exchanges kept in the ring buffer.
    pub ring: usize,
    /// Bytes the ring buffer may keep.
    pub ring_bytes: usize,
    /// Bytes captured of each body.
    pub capture: usize,
    /// Remove secrets and personal data from what is kept.
    pub redact: bool,
    /// Journal file (unset or empty: no journal).
    pub journal: Option<String>,
    /// Journal size at which it is rotated.
    pub journal_max_bytes: u64,
    /// Rotated journal files kept.
    pub journal_files: usize,
    /// Exchange lines on stderr per second at most (0: every one).
    pub lines_per_second: u32,
}

impl Default for RawLog {
    fn default() -> Self {
        let log = crate::log::LogConfig::default();
        Self {
            format: "pretty".into(),
            ring: log.ring_entries,
            ring_bytes: log.ring_bytes,
            capture: log.capture_limit,
            redact: log.redact,
            journal: None,
            journal_max_bytes: 10 << 20,
            journal_files: 5,
            lines_per_second: 100,
        }
    }
}

/// `[mockbank]`: the embedded offline Lean sandbox.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMockbank {
    /// Listener address.
    pub listen: String,
    /// `uae` or `ksa` (absent: the target's, else `uae`).
    pub region: Option<String>,
    /// Seed of the test users.
    pub seed: u64,
    /// Inactivity after which OTP users must reconnect.
    pub inactivity: String,
    /// How long a corporate session lasts after (re)connecting.
    pub corporate_session: String,
    /// Mockbank seconds per real second.
    pub time_scale: f64,
    /// The `lean-app-token` it accepts.
    pub app_token: Secret,
    /// The OAuth client id it accepts.
    pub client_id: String,
    /// The OAuth client secret it accepts.
    pub client_secret: Secret,
    /// Where it sends webhooks.
    pub webhook_url: Option<String>,
    /// The key it signs webhooks with.
    pub webhook_secret: Secret,
    /// How long `async=true` results take.
    pub async_delay: String,
    /// How long a data refresh stays pending.
    pub refresh_duration: String,
    /// Pages (origins) that may open Link; empty: any loopback origin.
    pub link_origins: Vec<String>,
}

impl Default for RawMockbank {
    fn default() -> Self {
        Self {
            listen: DEFAULT_MOCKBANK_LISTEN.into(),
            region: None,
            seed: 7,
            inactivity: "10m".into(),
            corporate_session: "5m".into(),
            time_scale: 1.0,
            app_token: Secret::new(mockbank::DEFAULT_APP_TOKEN),
            client_id: mockbank::DEFAULT_CLIENT_ID.into(),
            client_secret: Secret::new(mockbank::DEFAULT_CLIENT_SECRET),
            webhook_url: None,
            webhook_secret: Secret::new(mockbank::DEFAULT_WEBHOOK_SECRET),
            async_delay: "2s".into(),
            refresh_duration: "10s".into(),
            link_origins: Vec::new(),
        }
    }
}

/// `[reconnect]`: reconnect awareness.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawReconnect {
    /// Largest JSON answer (bytes) inspected for RECONNECT_REQUIRED.
    pub inspect_limit: usize,
    /// State file (unset or empty: `reconnects.json` in the data directory).
    pub state_file: Option<String>,
    /// Resolved records kept in the history.
    pub history: usize,
    /// Add `x-leanproxy-reconnect-id` to answers that carry a reconnect.
    pub reconnect_header: bool,
}

impl Default for RawReconnect {
    fn default() -> Self {
        Self {
            inspect_limit: 1 << 20,
            state_file: None,
            history: 1000,
            reconnect_header: false,
        }
    }
}

/// `[webhooks]`: the webhook catcher and relay.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWebhooks {
    /// Listener address.
    pub listen: String,
    /// Webhook secret; `LEAN_WEBHOOK_SECRET` overrides it.
    pub secret: Option<Secret>,
    /// `enforce`, `report` or `off`.
    pub verify: String,
    /// The app's URLs accepted webhooks are relayed to.
    pub relay: Vec<String>,
    /// Largest webhook body accepted.
    pub body_limit: usize,
    /// Deliveries kept for inspection.
    pub history: usize,
    /// Bytes the kept deliveries may hold.
    pub history_bytes: usize,
    /// How long accepted event ids are remembered across restarts.
    pub claim_window: String,
    /// Most relays waiting at once.
    pub queue_limit: usize,
    /// First relay retry delay.
    pub retry_initial: String,
    /// Longest relay retry delay.
    pub retry_max: String,
    /// Relay attempts before giving up.
    pub max_attempts: u32,
}

impl Default for RawWebhooks {
    fn default() -> Self {
        Self {
            listen: DEFAULT_WEBHOOKS_LISTEN.into(),
            secret: None,
            verify: "report".into(),
            relay: Vec::new(),
            body_limit: 1 << 20,
            history: 1000,
            history_bytes: 16 << 20,
            claim_window: "5h".into(),
            queue_limit: 10_000,
            retry_initial: "1s".into(),
            retry_max: "1m".into(),
            max_attempts: 20,
        }
    }
}
