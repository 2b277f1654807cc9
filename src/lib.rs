//! leanproxy: a reconnect-aware reverse proxy for Lean's open-banking API, and a
//! library of the tower layers it is made of.
//!
//! An app talks to leanproxy instead of Lean. leanproxy adds the credentials, logs
//! every exchange and forwards to Lean (or any upstream) over a pooled HTTP/1.1 +
//! HTTP/2 client with rustls and optional mTLS.
//!
//! The request path, outer to inner (assembled in [`stack`]):
//!
//! 1. server — HTTP/1.1 and h2c on one listener, graceful shutdown ([`server`]);
//! 2. request log — `x-request-id`, one structured event per exchange ([`log`]);
//! 3. auth — `lean-app-token` injection ([`auth`]);
//! 4. upstream — URI rewrite, hop-by-hop hygiene, pooled client, 502/504 in Lean's
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
//! };
//! let app = leanproxy::App::build(&settings)?;
//! app.serve(listeners, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub mod auth;
pub mod body;
pub mod config;
pub mod lean;
pub mod log;
pub mod proxy;
pub mod server;
pub mod stack;

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::Admin;
use crate::auth::AppTokenLayer;
use crate::config::{ConfigError, Settings};
use crate::proxy::{TlsError, Upstream, UpstreamConfig};
use crate::stack::ProxyService;

/// Why leanproxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS files are missing, unreadable or do not match.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// No upstream was given.
    #[error(
        "no upstream configured: pass --upstream URL (e.g. --upstream https://sandbox.leantech.me) \
         or set `upstream` under [proxy] in the config file"
    )]
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
}

impl Listeners {
    /// Binds the addresses in `settings`.
    pub async fn bind(settings: &Settings) -> Result<Self, Error> {
        let bind = |key, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { key, addr, source })
        };
        Ok(Self {
            proxy: bind("proxy.listen", settings.proxy.listen).await?,
            admin: bind("admin.listen", settings.admin.listen).await?,
        })
    }
}

/// A fully built leanproxy, ready to serve: everything that can fail at startup
/// (TLS files, credentials) has been checked.
pub struct App {
    proxy: ProxyService,
    admin: Admin,
    grace: Duration,
}

impl App {
    /// Builds the proxy stack and the admin service from validated settings.
    pub fn build(settings: &Settings) -> Result<Self, Error> {
        let tls = proxy::tls::client_config(&settings.tls)?;
        let base = settings.proxy.upstream.clone().ok_or(Error::NoUpstream)?;
        let upstream = Upstream::new(
            UpstreamConfig {
                base,
                connect_timeout: settings.proxy.connect_timeout,
                response_timeout: settings.proxy.response_timeout,
                pool_idle_timeout: settings.proxy.pool_idle_timeout,
                pool_max_idle_per_host: settings.proxy.pool_max_idle_per_host,
            },
            tls,
        );
        let app_token = match &settings.auth.app_token {
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
        Ok(Self {
            proxy: stack::proxy_stack(upstream, app_token),
            admin: Admin::new(settings.admin.token.clone()),
            grace: settings.proxy.shutdown_grace,
        })
    }

    /// Serves the listeners until `shutdown` completes, then drains in-flight
    /// exchanges for at most the configured grace period.
    pub async fn serve(self, listeners: Listeners, shutdown: impl Future<Output = ()> + Send) {
        let (tx, rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let proxy = server::serve(listeners.proxy, self.proxy, stopped(rx.clone()), self.grace);
        let admin = server::serve(listeners.admin, self.admin, stopped(rx), self.grace);
        let trigger = async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, draining in-flight exchanges");
            let _ = tx.send(true);
        };
        tokio::join!(proxy, admin, trigger);
    }
}
