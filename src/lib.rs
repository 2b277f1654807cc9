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
//! let app = leanproxy::App::open(&settings).await?;
//! app.serve(listeners, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(())
//! # }
//! ```

pub mod admin;
mod app;
pub mod auth;
pub mod backend;
pub mod body;
pub mod cli;
pub mod client;
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
pub mod state;
mod sync;
pub mod webhooks;

pub use app::{serve_mockbank, App, Error, Listeners};
