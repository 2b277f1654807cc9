//! Configuration: the TOML file, environment overrides for secrets, and validation
//! into typed [`Settings`].
//!
//! Parsing ([`parse`]) is pure and strict: unknown keys are errors. Validation
//! ([`Settings::from_raw`]) turns strings into durations, addresses and URIs and
//! collects every problem at once, each naming its key. Layers never see this
//! module's raw types.

mod admin;
mod auth;
mod faults;
mod log;
mod mockbank;
mod proxy;
mod raw;
mod reconnect;
mod routes;
mod settings;
mod state;
mod targets;
mod tls;
mod webhooks;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::auth::{AppTokenValue, TokenPolicy};
pub use crate::mockbank::MockbankSettings;

pub use crate::client::tls::TlsSettings;
pub use crate::log::LogFormat;
pub use crate::route::RouteMatch;
pub use crate::state::{RedisSettings, StateSettings};
pub use routes::{RawRoute, RouteSettings};
pub use settings::{
    AdminSettings, AuthSettings, FaultSettings, LogSettings, ProxySettings, ReconnectSettings,
    Settings, WebhookSettings,
};
pub use targets::{
    normal_host, parse_upstream, resolve_target, Target, PRODUCTION_HOSTS, SANDBOX_HOSTS,
};

pub use raw::{
    RawAdmin, RawAuth, RawConfig, RawLog, RawMockbank, RawProxy, RawReconnect, RawState, RawTls,
};
pub use state::ENV_REDIS_PASSWORD;

/// Environment variable holding the `lean-app-token`.
pub const ENV_APP_TOKEN: &str = "LEAN_APP_TOKEN";
/// Environment variable holding the admin API bearer token.
pub const ENV_ADMIN_TOKEN: &str = "LEANPROXY_ADMIN_TOKEN";
/// Environment variable holding the webhook secret.
pub const ENV_WEBHOOK_SECRET: &str = "LEAN_WEBHOOK_SECRET";
/// Environment variable holding the OAuth2 client id.
pub const ENV_CLIENT_ID: &str = "LEAN_CLIENT_ID";
/// Environment variable holding the OAuth2 client secret.
pub const ENV_CLIENT_SECRET: &str = "LEAN_CLIENT_SECRET";
/// Environment variable naming the config file.
pub const ENV_CONFIG: &str = "LEANPROXY_CONFIG";

pub use crate::secret::Secret;

/// One problem with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted key, e.g. `proxy.connect_timeout`.
    pub key: String,
    /// Why the value was refused.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("invalid config{}: {message}", origin.as_ref().map(|p| format!(" file {}", p.display())).unwrap_or_default())]
    Parse {
        /// The file, when there is one.
        origin: Option<PathBuf>,
        /// toml's message, which names the key and its line.
        message: String,
    },
    /// Values that parse but are not acceptable.
    #[error("invalid configuration:\n{}", list(.0))]
    Invalid(Vec<FieldError>),
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses TOML text strictly into the raw form.
pub fn parse(text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        origin: None,
        message: describe(&e, text),
    })
}

/// toml's error without the source line it normally quotes, and with quoted
/// values hidden: the line or the value may be a secret. Keeps the line and
/// column, the key on that line, the reason and what was expected there.
fn describe(e: &toml::de::Error, text: &str) -> String {
    let mut out = String::new();
    if let Some(span) = e.span() {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        out.push_str(&format!("line {line}, column {column}"));
        let key = text
            .lines()
            .nth(line - 1)
            .and_then(|l| l.split_once('=').map(|(k, _)| k.trim()))
            .filter(|k| !k.is_empty() && !k.contains(char::is_whitespace));
        if let Some(key) = key {
            out.push_str(&format!(", key `{key}`"));
        }
        out.push_str(": ");
    }
    let message = e.message().trim();
    // Unknown or missing fields quote key names, which are safe; anything else may
    // quote a value.
    if message.starts_with("unknown field")
        || message.starts_with("missing field")
        || message.starts_with("duplicate key")
    {
        out.push_str(message);
    } else {
        let lines: Vec<String> = message.lines().map(hide_values).collect();
        out.push_str(&lines.join("; "));
    }
    out
}

/// One line of a toml or serde message with the values it quotes hidden. What
/// follows `expected` names grammar tokens or types (`.`, `]`, `u32`), never
/// a value, and is kept.
fn hide_values(line: &str) -> String {
    if line.starts_with("expected ") {
        return line.to_string();
    }
    let (head, tail) = line.split_at(line.find(", expected ").unwrap_or(line.len()));
    let mut hidden = String::new();
    let mut quote = None;
    for c in head.chars() {
        match quote {
            None if c == '`' || c == '"' => {
                quote = Some(c);
                hidden.push_str("(value hidden)");
            }
            None => hidden.push(c),
            Some(q) if c == q => quote = None,
            Some(_) => {}
        }
    }
    hidden + tail
}

/// Reads and parses a config file.
pub fn load(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|e| match e {
        ConfigError::Parse { message, .. } => ConfigError::Parse {
            origin: Some(path.to_owned()),
            message,
        },
        other => other,
    })
}

/// Collects field errors during validation.
#[derive(Default)]
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn fail(&mut self, key: &str, reason: impl Into<String>) {
        self.errors.push(FieldError {
            key: key.into(),
            reason: reason.into(),
        });
    }

    fn duration(&mut self, key: &str, value: &str) -> Duration {
        match humantime::parse_duration(value) {
            Ok(d) if d.is_zero() => {
                self.fail(key, "must be greater than zero");
                Duration::ZERO
            }
            Ok(d) => d,
            Err(e) => {
                self.fail(
                    key,
                    format!("`{value}` is not a duration like \"5s\" or \"2m\" ({e})"),
                );
                Duration::ZERO
            }
        }
    }

    fn addr(&mut self, key: &str, value: &str) -> SocketAddr {
        value.parse().unwrap_or_else(|e| {
            self.fail(
                key,
                format!("`{value}` is not an address like \"127.0.0.1:7070\" ({e})"),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    /// The variant `table` names `value` (each entry a name as written and
    /// its variant); `None` after an error naming the choices.
    fn choice<T: Copy>(&mut self, key: &str, value: &str, table: &[(&str, T)]) -> Option<T> {
        let found = table.iter().find(|(name, _)| *name == value);
        if found.is_none() {
            let names: Vec<String> = table.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            self.fail(key, format!("`{value}` is not one of {}", names.join(", ")));
        }
        found.map(|(_, variant)| *variant)
    }

    fn path(&mut self, key: &str, value: &Option<String>) -> Option<PathBuf> {
        match value.as_deref() {
            Some("") => {
                self.fail(key, "must not be empty");
                None
            }
            other => other.map(PathBuf::from),
        }
    }
}

impl Settings {
    /// Validates `raw`, taking secrets from `env` when set there (the environment
    /// wins over the file). Returns every problem found, not just the first.
    pub fn from_raw(
        raw: RawConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut c = Checker::default();

        let (target, proxy) = proxy::validate(&mut c, &raw.proxy, env);

        let tls = tls::validate(
            &mut c,
            &raw.tls,
            target.as_ref(),
            raw.proxy.upstream.as_deref(),
        );
        let routes = routes::validate(&mut c, raw.routes, tls.client_identity.is_some());
        let auth = auth::validate(
            &mut c,
            raw.auth,
            target.as_ref(),
            proxy.upstream.is_some(),
            env,
        );
        let admin = admin::validate(&mut c, raw.admin, env);
        let log = log::validate(&mut c, &raw.log);
        let mockbank = mockbank::validate(
            &mut c,
            &raw.mockbank,
            target.as_ref().and_then(|t| t.mockbank_region),
        );
        let mut auth = auth;
        // The token the proxy sends the embedded Mockbank when `[auth]` sets
        // none (which the Mockbank then accepts instead of its own).
        if proxy.upstream.is_none() && auth.app_token.is_none() {
            auth.mockbank_app_token =
                auth::app_token(&mut c, "mockbank.app_token", &mockbank.app_token);
        }
        let reconnect = reconnect::validate(&mut c, &raw.reconnect, &proxy.data_dir);
        let webhooks = webhooks::validate(
            &mut c,
            raw.webhooks,
            proxy.upstream.is_none(),
            &mockbank.webhook_secret,
            env,
        );
        let state = state::validate(&mut c, raw.state, env);
        let faults = faults::validate(
            &mut c,
            &raw.fault,
            &raw.faults,
            proxy.upstream.as_ref(),
            &routes,
        );

        if c.errors.is_empty() {
            let mut settings = Settings {
                proxy,
                tls,
                auth,
                admin,
                log,
                mockbank,
                reconnect,
                webhooks,
                faults,
                routes,
                state,
            };
            settings.log.requests.known_secrets = settings.secrets();
            Ok(settings)
        } else {
            Err(ConfigError::Invalid(c.errors))
        }
    }
}

/// The value of a key that may be unset: absent, or empty (as earlier shipped
/// files wrote unset keys: `data_dir = ""`).
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.trim().is_empty())
}

/// A secret from the environment (preferred) or the file; empty counts as unset.
fn secret(
    c: &mut Checker,
    key: &str,
    var: &str,
    file: Option<Secret>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Secret> {
    match env(var).filter(|v| !v.is_empty()).map(Secret::new).or(file) {
        Some(v) if v.expose().trim().is_empty() => {
            c.fail(key, "must not be empty");
            None
        }
        other => other,
    }
}

/// Reads variables from the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests;
