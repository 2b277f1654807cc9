//! leanproxy: a reconnect-aware reverse proxy for Lean's open-banking API, and a
//! library of the tower layers it is made of.
//!
//! An app talks to leanproxy instead of Lean. leanproxy adds the credentials, logs
//! every exchange and forwards to Lean (or any upstream) over a pooled HTTP/1.1 +
//! HTTP/2 client with rustls and optional mTLS. With no upstream configured it
//! runs in front of its embedded [`mockbank`], an offline emulation of Lean's
//! sandbox.
//!
//! The request path, outer to inner (assembled in [`stack`]):
//!
//! 1. server — HTTP/1.1 and h2c on one listener, a cap on open connections,
//!    apps that stop reading cut, graceful shutdown ([`server`]);
//! 2. request log — `x-request-id`, one structured event per exchange ([`log`]);
//! 3. reconnect — finds RECONNECT_REQUIRED in answers, keeps the registry
//!    ([`reconnect`]);
//! 4. fault — injects Lean-shaped failures on demand ([`fault`]);
//! 5. router — the target per path prefix or header ([`route`]); its selector
//!    runs before reconnect and fault, so they see the path the target sees;
//! 6. auth — `lean-app-token` and OAuth2 bearer injection ([`auth`]);
//! 7. upstream — URI rewrite, hop-by-hop hygiene, pooled client, 502/504 in Lean's
//!    error envelope ([`proxy`]).
//!
//! Running the proxy on an already-bound listener, as the binary and the tests do:
//!
//! ```no_run
//! # async fn example() -> Result<(), leanproxy::Error> {
//! use leanproxy::config::{self, Settings};
//! use tokio::net::TcpListener;
//!
//! let raw = config::parse("[proxy]\nupstream = \"https://sandbox.leantech.me\"\n")?;
//! let settings = Settings::from_raw(raw, &config::process_env)?;
//! let listeners = leanproxy::Listeners {
//!     proxy: TcpListener::bind("127.0.0.1:0").await?,
//!     admin: TcpListener::bind("127.0.0.1:0").await?,
//!     mockbank: None,
//!     webhooks: TcpListener::bind("127.0.0.1:0").await?,
//! };
//! let app = leanproxy::App::build(&settings)?;
//! app.serve(listeners, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod events;
pub mod exchange;
pub mod fault;
pub mod future;
pub mod lean;
pub mod log;
pub mod metrics;
pub mod mockbank;
mod progress;
pub mod proxy;
pub mod reconnect;
pub mod route;
pub mod secret;
pub mod server;
pub mod stack;
mod sync;
pub mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::Layer;

use crate::admin::Admin;
use crate::auth::{AppTokenLayer, CredentialsLayer, TokenConfig, TokenPolicy, TokenSource};
use crate::config::{ConfigError, Settings};
use crate::events::{Event, Events};
use crate::fault::{FaultLayer, FaultRules};
use crate::log::Telemetry;
use crate::metrics::Metrics;
use crate::mockbank::{Clock, Mockbank};
use crate::proxy::{TlsError, Upstream, UpstreamConfig};
use crate::reconnect::RegistryEvent;
use crate::reconnect::{ReconnectLayer, ReconnectRegistry};
use crate::secret::Secret;
use crate::webhooks::{Relay, RelayConfig, WebhookConfig, Webhooks};

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

/// A fully built leanproxy, ready to serve: everything that can fail at startup
/// (TLS files, credentials) has been checked.
pub struct App {
    upstream: UpstreamConfig,
    tls: rustls::ClientConfig,
    app_token: Option<AppTokenLayer>,
    token: Option<(TokenConfig, TokenPolicy)>,
    admin_token: Option<Secret>,
    guard: admin::Guard,
    mockbank: Option<Mockbank>,
    reconnect: ReconnectLayer,
    webhooks: Webhooks,
    relay: Relay,
    telemetry: Telemetry,
    faults: FaultLayer,
    timeouts: server::Timeouts,
    max_connections: usize,
    routes: Vec<(config::RouteMatch, stack::TargetService)>,
    route_tokens: Vec<(String, TokenSource)>,
    /// Scope and refresh margin of the API token (also of the token minted
    /// with the Mockbank's credentials when none are configured).
    token_scope: (String, std::time::Duration),
    relay_targets: Vec<http::Uri>,
}

impl App {
    /// Builds the proxy and the admin service from validated settings. With no
    /// upstream configured, it builds the embedded Mockbank too, and the proxy
    /// sends the Mockbank's app token unless one is configured. Call it inside a
    /// Tokio runtime.
    pub fn build(settings: &Settings) -> Result<Self, Error> {
        let tls = proxy::tls::client_config(&settings.tls)?;
        let guard = admin::Guard::new(settings.admin.allowed_hosts.clone());
        let mockbank = match settings.proxy.upstream {
            Some(_) => None,
            None => {
                let clock = Clock::new(chrono::Utc::now(), settings.mockbank.time_scale);
                let mut mockbank = settings.mockbank.clone();
                // The Mockbank accepts the configured lean-app-token (LEAN_APP_TOKEN
                // included), so the proxy and its Mockbank always agree.
                if let Some(token) = &settings.auth.app_token {
                    mockbank.app_token = token.clone();
                }
                Some(Mockbank::new(mockbank, clock)?.with_guard(guard.clone()))
            }
        };
        let token = settings.auth.app_token.clone().or_else(|| {
            mockbank
                .as_ref()
                .map(|_| settings.mockbank.app_token.clone())
        });
        let app_token = match token {
            Some(token) => Some(
                AppTokenLayer::new(token.expose(), settings.auth.app_token_policy).map_err(
                    |_| {
                        ConfigError::Invalid(vec![config::FieldError {
                            key: "auth.app_token".into(),
                            reason: "contains characters not allowed in a header value".into(),
                        }])
                    },
                )?,
            ),
            None => None,
        };
        let registry =
            ReconnectRegistry::open(&settings.reconnect.state_file, settings.reconnect.history)?;
        let events = Events::default();
        let metrics = Metrics::new();
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        if !settings.log.requests.redact {
            tracing::warn!("log.redact is off: secrets and personal data will appear in the request log, journal and HAR. Use this only for local debugging.");
        }
        let telemetry = Telemetry::new(
            settings.log.requests.clone(),
            events.clone(),
            metrics.clone(),
        );
        registry.set_observer({
            let (events, metrics) = (events.clone(), metrics.clone());
            Arc::new(move |event: &RegistryEvent<'_>| match event {
                RegistryEvent::New(r) => {
                    metrics.reconnect_new();
                    events.publish(Event::ReconnectNew {
                        entity_id: r.entity_id.clone(),
                        reconnect_id: r.reconnect_id.clone(),
                        source: format!("{:?}", r.source).to_lowercase(),
                    });
                }
                RegistryEvent::Resolved(r) => {
                    let by = r
                        .resolved_by
                        .and_then(|b| serde_json::to_value(b).ok())
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    metrics.reconnect_resolved(&by);
                    events.publish(Event::ReconnectResolved {
                        entity_id: r.entity_id.clone(),
                        reconnect_id: r.reconnect_id.clone(),
                        resolved_by: by,
                    });
                }
                RegistryEvent::Inspection(inspected) => metrics.inspection(*inspected),
            })
        });
        let w = &settings.webhooks;
        let (claims, claimed) = webhooks::ClaimLog::open(
            &settings.proxy.data_dir.join("webhook-claims.log"),
            w.claim_window,
            w.history * webhooks::Store::CLAIMS_PER_DELIVERY,
        )?;
        let store = webhooks::Store::new(w.history, w.history_bytes).with_claims(claims, claimed);
        let relay = Relay::open(
            RelayConfig {
                targets: w.relay.clone(),
                dir: settings.proxy.data_dir.join("webhook-relay"),
                queue_limit: w.queue_limit,
                retry_initial: w.retry_initial,
                retry_max: w.retry_max,
                max_attempts: w.max_attempts,
            },
            store.clone(),
            tls.clone(),
        )?;
        let webhooks = Webhooks::new(
            WebhookConfig {
                secret: w.secret.clone(),
                policy: w.policy,
                body_limit: w.body_limit,
                history: w.history,
            },
            store,
            Some(relay.clone()),
            registry.clone(),
            telemetry.clone(),
        );
        let rules = FaultRules::guarded(settings.faults.seed, settings.faults.refusal.clone());
        rules.install(settings.faults.rules.clone()).map_err(|e| {
            ConfigError::Invalid(vec![config::FieldError {
                key: format!("faults.{}", e.field),
                reason: e.reason,
            }])
        })?;
        let faults = FaultLayer::new(rules)
            .with_header_faults(settings.faults.allow_header)
            .with_registry(registry.clone())
            .with_telemetry(telemetry.clone());
        let reconnect = ReconnectLayer::new(registry, settings.reconnect.inspect_limit)
            .with_reconnect_header(settings.reconnect.reconnect_header);
        let token = settings
            .auth
            .client
            .clone()
            .map(|(client_id, client_secret)| {
                (
                    TokenConfig {
                        // Replaced by the Mockbank's token URL in `serve` when absent.
                        url: settings.auth.token_url.clone().unwrap_or_default(),
                        client_id,
                        client_secret,
                        scope: settings.auth.scope.clone(),
                        refresh_margin: settings.auth.refresh_margin,
                    },
                    settings.auth.app_token_policy,
                )
            });
        let upstream_config = |base: http::Uri| UpstreamConfig {
            base,
            connect_timeout: settings.proxy.connect_timeout,
            response_timeout: settings.proxy.response_timeout,
            pool_idle_timeout: settings.proxy.pool_idle_timeout,
            pool_max_idle_per_host: settings.proxy.pool_max_idle_per_host,
            body_timeout: settings.proxy.upstream_body_timeout,
            metrics: Some(metrics.clone()),
        };
        let mut route_tokens = Vec::new();
        let routes = settings
            .routes
            .iter()
            .map(|route| {
                let mut credentials = CredentialsLayer::new();
                if let Some(token) = &route.app_token {
                    // Validated as a header value in `config`.
                    let layer = AppTokenLayer::new(token.expose(), settings.auth.app_token_policy)
                        .map_err(|_| std::io::Error::other("route app token"))?;
                    credentials = credentials.app_token(layer);
                }
                if let (Some((client_id, client_secret)), Some(url)) =
                    (&route.client, &route.token_url)
                {
                    let config = TokenConfig {
                        url: url.clone(),
                        client_id: client_id.clone(),
                        client_secret: client_secret.clone(),
                        scope: settings.auth.scope.clone(),
                        refresh_margin: settings.auth.refresh_margin,
                    };
                    let source = TokenSource::new(config, tls.clone());
                    route_tokens.push((route.name.clone(), source.clone()));
                    credentials = credentials.bearer(source, settings.auth.app_token_policy);
                }
                tracing::info!(route = %route.name, upstream = %route.upstream, matcher = ?route.matcher, "route");
                let upstream = Upstream::new(upstream_config(route.upstream.clone()), tls.clone());
                Ok((route.matcher.clone(), credentials.layer(upstream)))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Self {
            token,
            routes,
            route_tokens,
            upstream: UpstreamConfig {
                // Replaced by the Mockbank's address in `serve` when absent.
                base: settings.proxy.upstream.clone().unwrap_or_default(),
                connect_timeout: settings.proxy.connect_timeout,
                response_timeout: settings.proxy.response_timeout,
                pool_idle_timeout: settings.proxy.pool_idle_timeout,
                pool_max_idle_per_host: settings.proxy.pool_max_idle_per_host,
                body_timeout: settings.proxy.upstream_body_timeout,
                metrics: Some(metrics.clone()),
            },
            tls,
            app_token,
            admin_token: settings.admin.token.clone(),
            guard,
            mockbank,
            reconnect,
            webhooks,
            relay,
            telemetry,
            faults,
            timeouts: server::Timeouts::from(&settings.proxy),
            max_connections: settings.proxy.max_connections,
            token_scope: (settings.auth.scope.clone(), settings.auth.refresh_margin),
            relay_targets: settings.webhooks.relay.clone(),
        })
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
        let upstream = match (&self.upstream.base, &mockbank_url) {
            (_, Some(url)) if self.mockbank.is_some() => format!("{url} (embedded Mockbank)"),
            (base, _) => base.to_string(),
        };
        let mut text = format!(
            "leanproxy proxy listening on http://{} -> {upstream}\n\
             leanproxy admin listening on http://{}\n\
             leanproxy webhooks listening on http://{webhooks_addr} (POST any path)\n",
            listeners.proxy.local_addr()?,
            listeners.admin.local_addr()?,
        );
        if self.relay_targets.is_empty() {
            text.push_str("  relay: caught webhooks are kept, not relayed (no webhooks.relay)\n");
        } else {
            let targets: Vec<String> = self.relay_targets.iter().map(|u| u.to_string()).collect();
            text.push_str(&format!(
                "  relay: caught webhooks go on to {}\n",
                targets.join(", ")
            ));
        }
        if let (Some(mockbank), Some(url)) = (&self.mockbank, mockbank_url) {
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
        self.mockbank.as_ref()
    }

    /// Serves the listeners until `shutdown` completes, then drains in-flight
    /// exchanges for at most the configured grace period. Refuses an admin
    /// listener off loopback without an admin token.
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        let admin_addr = listeners.admin.local_addr()?;
        if !admin_addr.ip().is_loopback() && self.admin_token.is_none() {
            return Err(ConfigError::Invalid(vec![config::FieldError {
                key: "admin.token".into(),
                reason: format!(
                    "required when the admin listener ({admin_addr}) is not on loopback"
                ),
            }])
            .into());
        }
        let mut upstream = self.upstream;
        let mockbank = match (self.mockbank, listeners.mockbank) {
            (Some(mockbank), Some(listener)) => {
                let mut addr = listener.local_addr()?;
                // A Mockbank on every interface is called on loopback: the
                // Host its control endpoints accept is an address connected
                // to, never `0.0.0.0`.
                if addr.ip().is_unspecified() {
                    addr.set_ip(match addr {
                        std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                        std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                    });
                }
                upstream.base = format!("http://{addr}")
                    .parse()
                    .map_err(|e| std::io::Error::other(format!("mockbank address: {e}")))?;
                Some((mockbank, listener))
            }
            (Some(_), None) => return Err(Error::NoUpstream),
            (None, _) => None,
        };
        let webhooks_addr = listeners.webhooks.local_addr()?;
        if let Some((mockbank, _)) = &mockbank {
            mockbank.set_webhook_url(mockbank_webhook_url(mockbank, webhooks_addr)?);
        }
        let proxy_addr = listeners.proxy.local_addr()?;
        if !proxy_addr.ip().is_loopback() && self.app_token.is_some() {
            tracing::warn!(%proxy_addr, "the proxy listens off loopback and adds credentials: anyone who reaches it can call Lean as your app");
        }
        let (tx, rx) = watch::channel(false);
        let registry = self.reconnect.registry().clone();
        let (stop_writer, writer_stopped) = tokio::sync::oneshot::channel::<()>();
        let writer = tokio::spawn(registry.clone().run_writer(async {
            let _ = writer_stopped.await;
        }));
        let mut credentials = CredentialsLayer::new();
        if let Some(app_token) = self.app_token {
            credentials = credentials.app_token(app_token);
        }
        if let Some((mut config, policy)) = self.token {
            if config.url == http::Uri::default() {
                config.url = token_url(&upstream.base)?;
            }
            credentials = credentials.bearer(TokenSource::new(config, self.tls.clone()), policy);
        }
        // In front of the embedded Mockbank its client credentials are known:
        // customer tokens (`leanproxy token customer`) work with nothing set.
        let tokens = match (credentials.token_source(), &mockbank) {
            (Some(source), _) => Some(source.clone()),
            (None, Some((mockbank, _))) => {
                let (client_id, client_secret) = mockbank.client_credentials();
                let config = TokenConfig {
                    url: token_url(&upstream.base)?,
                    client_id,
                    client_secret,
                    scope: self.token_scope.0.clone(),
                    refresh_margin: self.token_scope.1,
                };
                Some(TokenSource::new(config, self.tls.clone()))
            }
            (None, None) => None,
        };
        let stack = stack::routed_stack(
            route::Router::new(
                credentials.layer(Upstream::new(upstream, self.tls)),
                self.routes,
            ),
            self.reconnect,
            self.faults.clone(),
            self.telemetry.clone(),
        );
        let admin = Admin::new(
            self.admin_token,
            registry.clone(),
            self.webhooks.clone(),
            self.telemetry.clone(),
        )
        .with_faults(self.faults.rules().clone())
        .with_tokens(tokens)
        .with_route_tokens(self.route_tokens)
        .with_guard(self.guard)
        .with_shutdown(rx.clone());
        let relays = self.relay.start();

        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        // Reports until every server has drained, so lines held back during
        // the drain are counted too.
        let (servers_done, drained) = tokio::sync::oneshot::channel::<()>();
        let held_lines = self.telemetry.clone().report_held_lines(async {
            let _ = drained.await;
        });
        // Each listener has its own cap: a full proxy listener leaves the
        // admin API (and its /metrics) reachable.
        let serving = |name| server::Serving {
            timeouts: self.timeouts,
            max_connections: self.max_connections,
            name,
            metrics: Some(self.telemetry.metrics().clone()),
        };
        let proxy = server::serve(
            listeners.proxy,
            stack,
            stopped(rx.clone()),
            serving("proxy"),
        );
        let admin = server::serve(
            listeners.admin,
            admin,
            stopped(rx.clone()),
            serving("admin"),
        );
        let catcher = server::serve(
            listeners.webhooks,
            self.webhooks,
            stopped(rx.clone()),
            serving("webhooks"),
        );
        let mockbank = async {
            if let Some((mockbank, listener)) = mockbank {
                server::serve(listener, mockbank, stopped(rx), serving("mockbank")).await;
            }
        };
        let trigger = async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, draining in-flight exchanges");
            let _ = tx.send(true);
        };
        let servers = async move {
            tokio::join!(proxy, admin, catcher, mockbank, trigger);
            let _ = servers_done.send(());
        };
        tokio::join!(servers, held_lines);
        let _ = stop_writer.send(());
        let _ = writer.await;
        for relay in relays {
            // Queued deliveries stay on disk for the next start.
            relay.abort();
        }
        registry.flush().await?;
        Ok(())
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

/// The OAuth2 token URL of an upstream that serves its own (the Mockbank).
fn token_url(base: &http::Uri) -> Result<http::Uri, Error> {
    format!("{}/oauth2/token", base.to_string().trim_end_matches('/'))
        .parse()
        .map_err(|e| std::io::Error::other(format!("token URL: {e}")).into())
}

/// Runs the Mockbank alone on `listener` until `shutdown` completes.
pub async fn serve_mockbank(
    mockbank: Mockbank,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    timeouts: server::Timeouts,
) {
    server::serve(listener, mockbank, shutdown, timeouts).await;
}
