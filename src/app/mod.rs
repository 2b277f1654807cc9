//! The composition root: validated [`Settings`] in, a running leanproxy out.
//!
//! [`App::build`] makes every part from its settings (each in a named
//! function of [`build`](self::build)); [`App::serve`] puts them on the
//! listeners ([`serve`](self::serve)). This is the one place that knows all
//! the subsystems; they do not know each other's settings.

mod build;
mod serve;

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::admin::Guard;
use crate::client::TlsError;
use crate::config::{ConfigError, RouteMatch, Settings};
use crate::fault::{FaultLayer, FaultRules};
use crate::log::Telemetry;
use crate::mockbank::Mockbank;
use crate::proxy::UpstreamConfig;
use crate::reconnect::{ReconnectLayer, ReconnectRegistry};
use crate::secret::Secret;
use crate::server::Serving;
use crate::stack::TargetService;
use crate::state::fleet::Fleet;
use crate::state::{RedisState, StateSettings};
use crate::webhooks::{self, Relay, Webhooks};
use crate::{reconnect, server};

use build::Credentials;

/// Why leanproxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS files are missing, unreadable or do not match.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The Mockbank was expected but not given a listener.
    #[error("no upstream configured and no Mockbank listener bound")]
    NoUpstream,
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        /// Config key of the address.
        key: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The webhook relay queue cannot be used.
    #[error(transparent)]
    Relay(#[from] webhooks::QueueError),
    /// The reconnect state file cannot be used.
    #[error(transparent)]
    State(#[from] reconnect::StateError),
    /// Redis, where the shared state is kept, cannot be reached at start
    /// (and `state.require` is true).
    #[error("state.url ({url}): Redis cannot be reached at start ({reason}); start it, correct state.url, or set state.require = false to start without it and catch up when it is back")]
    Redis {
        /// The URL, its password hidden.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Any other I/O failure at startup.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The listeners leanproxy serves, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// The proxy listener.
    pub proxy: TcpListener,
    /// The admin listener.
    pub admin: TcpListener,
    /// The Mockbank listener, when no upstream is configured.
    pub mockbank: Option<TcpListener>,
    /// The webhook catcher's listener.
    pub webhooks: TcpListener,
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { key, addr, source })
}

impl Listeners {
    /// Binds the addresses in `settings` (the Mockbank's only when no upstream
    /// is configured).
    pub async fn bind(settings: &Settings) -> Result<Self, Error> {
        let mockbank = match settings.proxy.upstream {
            Some(_) => None,
            None => Some(bind("mockbank.listen", settings.mockbank.listen).await?),
        };
        Ok(Self {
            proxy: bind("proxy.listen", settings.proxy.listen).await?,
            admin: bind("admin.listen", settings.admin.listen).await?,
            mockbank,
            webhooks: bind("webhooks.listen", settings.webhooks.listen).await?,
        })
    }
}

/// Where the proxy forwards what no route takes.
enum Target {
    /// An upstream URL (a named target resolved, or one given).
    Url(http::Uri),
    /// The embedded Mockbank: its address is known once its listener is.
    Mockbank(Box<Mockbank>),
}

/// A fully built leanproxy, ready to serve: everything that can fail at startup
/// (TLS files, credentials) has been checked.
pub struct App {
    target: Target,
    /// How upstream connections behave (the default target's base URL is
    /// known in [`App::serve`], from `target` and the listeners).
    upstream: UpstreamConfig,
    credentials: Credentials,
    tls: rustls::ClientConfig,
    admin_token: Option<Secret>,
    guard: Guard,
    reconnect: ReconnectLayer,
    webhooks: Webhooks,
    relay: Relay,
    telemetry: Telemetry,
    faults: FaultLayer,
    serving: Serving,
    routes: Vec<(RouteMatch, TargetService)>,
    /// The routes' names, in order.
    route_names: Vec<std::sync::Arc<str>>,
    route_tokens: Vec<(String, crate::auth::TokenSource)>,
    relay_targets: Vec<http::Uri>,
    /// Redis, when the state is shared there, with the link of the live
    /// events to the fleet's.
    state: Option<(RedisState, Fleet)>,
}

/// An address as a browser can open it (an unspecified address as loopback).
pub(super) fn called_by(mut addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

impl App {
    /// [`App::build`], then, with the state on Redis, checks that Redis
    /// answers (refusing to start when it does not and `state.require` is
    /// set) and loads the fleet's fault rules (or starts them with the
    /// configured ones when Redis has none). The binary starts this way.
    pub async fn open(settings: &Settings) -> Result<Self, Error> {
        let app = Self::build(settings)?;
        let (Some((redis, _)), StateSettings::Redis(r)) = (&app.state, &settings.state) else {
            return Ok(app);
        };
        match redis.check().await {
            Ok(()) => {
                tracing::info!(target: "leanproxy::state", url = %redis.shown_url(), replica = %redis.replica(), "shared state on Redis");
                if let Err(e) = app.faults().load().await {
                    tracing::warn!(target: "leanproxy::state", error = %e, "the fleet's fault rules could not be loaded yet; this replica's config rules apply until they are");
                }
            }
            Err(e) if r.require => {
                return Err(Error::Redis {
                    url: redis.shown_url().to_string(),
                    reason: e.detail,
                })
            }
            Err(e) => {
                tracing::warn!(target: "leanproxy::state", url = %redis.shown_url(), error = %e.detail, "Redis cannot be reached: starting degraded (state.require = false); the shared state catches up when it is back");
            }
        }
        Ok(app)
    }

    /// What leanproxy prints at start: where each listener is, where the proxy
    /// forwards, where webhooks go, and the embedded Mockbank's credentials,
    /// timing and users. The `leanproxy … listening on http://ADDR` lines are
    /// stable; scripts read the ports from them.
    pub fn banner(&self, listeners: &Listeners) -> Result<String, Error> {
        let webhooks_addr = listeners.webhooks.local_addr()?;
        let mockbank_url = match &listeners.mockbank {
            Some(l) => Some(format!("http://{}", l.local_addr()?)),
            None => None,
        };
        let upstream = match (&self.target, &mockbank_url) {
            (Target::Url(base), _) => base.to_string(),
            (Target::Mockbank(_), Some(url)) => format!("{url} (embedded Mockbank)"),
            (Target::Mockbank(_), None) => return Err(Error::NoUpstream),
        };
        let mut text = format!(
            "leanproxy proxy listening on http://{} -> {upstream}\n\
             leanproxy admin listening on http://{}\n\
             leanproxy webhooks listening on http://{webhooks_addr} (POST any path)\n  \
             dashboard: http://{admin}/ (exchanges, reconnects, faults, webhooks, live)\n",
            listeners.proxy.local_addr()?,
            listeners.admin.local_addr()?,
            admin = called_by(listeners.admin.local_addr()?),
        );
        if let Some((redis, _)) = &self.state {
            text.push_str(&format!(
                "  state: shared on Redis at {} as replica {}\n",
                redis.shown_url(),
                redis.replica()
            ));
        }
        if self.relay_targets.is_empty() {
            text.push_str("  relay: caught webhooks are kept, not relayed (no webhooks.relay)\n");
        } else {
            let targets: Vec<String> = self.relay_targets.iter().map(|u| u.to_string()).collect();
            text.push_str(&format!(
                "  relay: caught webhooks go on to {}\n",
                targets.join(", ")
            ));
        }
        if let (Target::Mockbank(mockbank), Some(url)) = (&self.target, mockbank_url) {
            let webhooks_to = mockbank_webhook_url(mockbank, webhooks_addr)?;
            text.push_str(&format!("leanproxy mockbank listening on {url}\n"));
            text.push_str(&mockbank.banner(&url, Some(&webhooks_to)));
        }
        Ok(text)
    }

    /// The live fault rules.
    pub fn faults(&self) -> &FaultRules {
        self.faults.rules()
    }

    /// Where completed exchanges go (ring buffer, events, metrics).
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The webhook catcher (records, replay).
    pub fn webhooks(&self) -> &Webhooks {
        &self.webhooks
    }

    /// The reconnect registry (shared with the admin API and webhooks).
    pub fn registry(&self) -> &ReconnectRegistry {
        self.reconnect.registry()
    }

    /// The embedded Mockbank, when it runs (no upstream configured).
    pub fn mockbank(&self) -> Option<&Mockbank> {
        match &self.target {
            Target::Mockbank(mockbank) => Some(mockbank),
            Target::Url(_) => None,
        }
    }
}

/// Where the embedded Mockbank's webhooks go: its `mockbank.webhook_url`, or
/// else leanproxy's own catcher on `webhooks`.
fn mockbank_webhook_url(mockbank: &Mockbank, webhooks: SocketAddr) -> Result<http::Uri, Error> {
    match mockbank.webhook_url() {
        Some(url) => Ok(url),
        None => format!("http://{webhooks}/webhooks/lean")
            .parse()
            .map_err(|e| std::io::Error::other(format!("webhooks address: {e}")).into()),
    }
}

/// Runs the Mockbank alone on `listener` until `shutdown` completes.
pub async fn serve_mockbank(
    mockbank: Mockbank,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
    serving: impl Into<Serving>,
) {
    server::serve(listener, mockbank, shutdown, serving).await;
}

/// A refused configuration with one field.
fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Error {
    ConfigError::Invalid(vec![crate::config::FieldError {
        key: key.into(),
        reason: reason.into(),
    }])
    .into()
}
