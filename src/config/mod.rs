//! Configuration: the TOML file, environment overrides for secrets, and validation
//! into typed [`Settings`].
//!
//! Parsing ([`parse`]) is pure and strict: unknown keys are errors. Validation
//! ([`Settings::from_raw`]) turns strings into durations, addresses and URIs and
//! collects every problem at once, each naming its key. Layers never see this
//! module's raw types.

mod raw;
mod routes;
mod settings;
mod targets;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::auth::TokenPolicy;
pub use crate::mockbank::MockbankSettings;

pub use routes::{RawRoute, RouteMatch, RouteSettings};
pub use settings::{
    AdminSettings, AuthSettings, FaultSettings, LogFormat, LogSettings, ProxySettings,
    ReconnectSettings, Settings, TlsSettings, WebhookSettings,
};
pub use targets::{
    normal_host, parse_upstream, resolve_target, Target, PRODUCTION_HOSTS, SANDBOX_HOSTS,
};

pub use raw::{RawAdmin, RawAuth, RawConfig, RawLog, RawMockbank, RawProxy, RawReconnect, RawTls};

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

/// The most connections `proxy.max_connections` accepts (a process has far
/// fewer file descriptors).
const MAX_CONNECTIONS: usize = 1 << 24;

/// The most runtime worker threads `proxy.workers` accepts.
const MAX_WORKERS: usize = 1024;

/// A secret value (token, key). Its `Debug` never shows it, and config parse
/// errors never quote it.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

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

        let target = match raw.proxy.upstream.as_deref() {
            None => resolve_target("mockbank").ok(),
            Some(u) => resolve_target(u)
                .map_err(|e| c.fail("proxy.upstream", e))
                .ok(),
        };
        let upstream = target.as_ref().and_then(|t| t.base.clone());
        let proxy = ProxySettings {
            listen: c.addr("proxy.listen", &raw.proxy.listen),
            upstream,
            connect_timeout: c.duration("proxy.connect_timeout", &raw.proxy.connect_timeout),
            response_timeout: c.duration("proxy.response_timeout", &raw.proxy.response_timeout),
            shutdown_grace: c.duration("proxy.shutdown_grace", &raw.proxy.shutdown_grace),
            client_idle_timeout: match c
                .duration("proxy.client_idle_timeout", &raw.proxy.client_idle_timeout)
            {
                // Looked at every half timeout: shorter would close a
                // connection between two requests of a client.
                d if !d.is_zero() && d < Duration::from_secs(1) => {
                    c.fail("proxy.client_idle_timeout", "must be at least 1s");
                    d
                }
                d => d,
            },
            client_write_timeout: c.duration(
                "proxy.client_write_timeout",
                &raw.proxy.client_write_timeout,
            ),
            upstream_body_timeout: c.duration(
                "proxy.upstream_body_timeout",
                &raw.proxy.upstream_body_timeout,
            ),
            pool_idle_timeout: c.duration("proxy.pool_idle_timeout", &raw.proxy.pool_idle_timeout),
            pool_max_idle_per_host: raw.proxy.pool_max_idle_per_host,
            max_connections: match raw.proxy.max_connections {
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
            workers: match raw.proxy.workers {
                n if n > MAX_WORKERS => {
                    c.fail(
                        "proxy.workers",
                        format!("at most {MAX_WORKERS} (0: one per CPU)"),
                    );
                    None
                }
                n => std::num::NonZeroUsize::new(n),
            },
            data_dir: if raw.proxy.data_dir.trim().is_empty() {
                default_data_dir(env)
            } else {
                PathBuf::from(&raw.proxy.data_dir)
            },
        };

        let ca_file = c.path("tls.ca_file", &raw.tls.ca_file);
        let cert = c.path("tls.client_cert", &raw.tls.client_cert);
        let key = c.path("tls.client_key", &raw.tls.client_key);
        let client_identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (Some(_), None) => {
                c.fail("tls.client_key", "required when tls.client_cert is set");
                None
            }
            (None, Some(_)) => {
                c.fail("tls.client_cert", "required when tls.client_key is set");
                None
            }
            (None, None) => None,
        };
        if target.as_ref().is_some_and(|t| t.mtls) && client_identity.is_none() {
            c.fail(
                "tls.client_cert",
                format!(
                    "required for {}: {}",
                    raw.proxy.upstream.as_deref().unwrap_or_default(),
                    targets::MTLS_REQUIRED
                ),
            );
        }
        let routes = routes::validate(&mut c, raw.routes, client_identity.is_some());
        let tls = TlsSettings {
            ca_file,
            client_identity,
        };

        let app_token = secret(
            &mut c,
            "auth.app_token",
            ENV_APP_TOKEN,
            raw.auth.app_token,
            env,
        );
        let app_token_policy = match raw.auth.app_token_policy.as_str() {
            "override" => TokenPolicy::Override,
            "keep" => TokenPolicy::Keep,
            other => {
                c.fail(
                    "auth.app_token_policy",
                    format!("`{other}` is not one of \"override\", \"keep\""),
                );
                TokenPolicy::Override
            }
        };
        if let Some(token) = &app_token {
            if http::HeaderValue::from_str(token.expose()).is_err() {
                c.fail(
                    "auth.app_token",
                    "contains characters not allowed in a header value",
                );
            }
        }
        let client_id = env(ENV_CLIENT_ID)
            .filter(|v| !v.is_empty())
            .or(raw.auth.client_id.clone());
        let client_secret = secret(
            &mut c,
            "auth.client_secret",
            ENV_CLIENT_SECRET,
            raw.auth.client_secret.clone(),
            env,
        );
        let client = match (client_id, client_secret) {
            (Some(id), Some(secret)) => Some((id, secret)),
            (Some(_), None) => {
                c.fail(
                    "auth.client_secret",
                    format!("required with auth.client_id; set it or {ENV_CLIENT_SECRET}"),
                );
                None
            }
            (None, Some(_)) => {
                c.fail(
                    "auth.client_id",
                    format!("required with auth.client_secret; set it or {ENV_CLIENT_ID}"),
                );
                None
            }
            (None, None) => None,
        };
        let token_url = if raw.auth.token_url.trim().is_empty() {
            target.as_ref().and_then(|t| t.token_url.clone())
        } else {
            parse_upstream(&raw.auth.token_url)
                .map_err(|e| c.fail("auth.token_url", e))
                .ok()
        };
        if client.is_some() && token_url.is_none() && proxy.upstream.is_some() {
            c.fail(
                "auth.token_url",
                "required with client credentials when proxy.upstream is a URL, not a named target",
            );
        }
        let auth = AuthSettings {
            app_token,
            app_token_policy,
            client,
            token_url,
            scope: raw.auth.scope.clone(),
            refresh_margin: c.duration("auth.refresh_margin", &raw.auth.refresh_margin),
        };

        let admin = AdminSettings {
            listen: c.addr("admin.listen", &raw.admin.listen),
            token: secret(&mut c, "admin.token", ENV_ADMIN_TOKEN, raw.admin.token, env),
            allowed_hosts: raw
                .admin
                .allowed_hosts
                .iter()
                .enumerate()
                .filter_map(|(i, host)| {
                    host.parse()
                        .map_err(|e: String| c.fail(&format!("admin.allowed_hosts[{i}]"), e))
                        .ok()
                })
                .collect(),
        };
        if !admin.listen.ip().is_loopback() && admin.token.is_none() {
            c.fail(
                "admin.token",
                format!(
                    "required when admin.listen ({}) is not a loopback address; \
                     set it or {ENV_ADMIN_TOKEN}",
                    admin.listen
                ),
            );
        }

        let format = match raw.log.format.as_str() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                c.fail(
                    "log.format",
                    format!("`{other}` is not one of \"pretty\", \"json\""),
                );
                LogFormat::Pretty
            }
        };

        let m = &raw.mockbank;
        let non_empty = |c: &mut Checker, key: &str, v: &str| {
            if v.trim().is_empty() {
                c.fail(key, "must not be empty");
            }
            Secret::new(v)
        };
        if !(m.time_scale.is_finite() && m.time_scale > 0.0) {
            c.fail(
                "mockbank.time_scale",
                format!("{} is not a positive number", m.time_scale),
            );
        }
        let mockbank = MockbankSettings {
            listen: c.addr("mockbank.listen", &m.listen),
            seed: m.seed,
            inactivity: c.duration("mockbank.inactivity", &m.inactivity),
            corporate_session: c.duration("mockbank.corporate_session", &m.corporate_session),
            time_scale: m.time_scale,
            app_token: non_empty(&mut c, "mockbank.app_token", m.app_token.expose()),
            client_id: non_empty(&mut c, "mockbank.client_id", &m.client_id)
                .expose()
                .to_string(),
            client_secret: non_empty(&mut c, "mockbank.client_secret", m.client_secret.expose()),
            webhook_url: m.webhook_url.as_deref().and_then(|u| {
                parse_upstream(u)
                    .map_err(|e| c.fail("mockbank.webhook_url", e))
                    .ok()
            }),
            webhook_secret: non_empty(&mut c, "mockbank.webhook_secret", m.webhook_secret.expose()),
            async_delay: c.duration("mockbank.async_delay", &m.async_delay),
            refresh_duration: c.duration("mockbank.refresh_duration", &m.refresh_duration),
        };

        let r = &raw.reconnect;
        if r.inspect_limit == 0 {
            c.fail("reconnect.inspect_limit", "must be greater than zero");
        }
        let reconnect = ReconnectSettings {
            inspect_limit: r.inspect_limit,
            state_file: if r.state_file.trim().is_empty() {
                proxy.data_dir.join("reconnects.json")
            } else {
                PathBuf::from(&r.state_file)
            },
            history: r.history,
            reconnect_header: r.reconnect_header,
        };

        let w = raw.webhooks;
        let policy = match w.verify.as_str() {
            "enforce" => crate::webhooks::Policy::Enforce,
            "report" => crate::webhooks::Policy::Report,
            "off" => crate::webhooks::Policy::Off,
            other => {
                c.fail(
                    "webhooks.verify",
                    format!("`{other}` is not one of \"enforce\", \"report\", \"off\""),
                );
                crate::webhooks::Policy::Report
            }
        };
        let mut webhook_secret =
            secret(&mut c, "webhooks.secret", ENV_WEBHOOK_SECRET, w.secret, env);
        if webhook_secret.is_none() && proxy.upstream.is_none() {
            // The embedded Mockbank signs with its own secret.
            webhook_secret = Some(mockbank.webhook_secret.clone());
        }
        if policy == crate::webhooks::Policy::Enforce && webhook_secret.is_none() {
            c.fail(
                "webhooks.secret",
                format!(
                    "required when webhooks.verify is \"enforce\"; set it or {ENV_WEBHOOK_SECRET}"
                ),
            );
        }
        let relay = w
            .relay
            .iter()
            .enumerate()
            .filter_map(|(i, u)| {
                parse_upstream(u)
                    .map_err(|e| c.fail(&format!("webhooks.relay[{i}]"), e))
                    .ok()
            })
            .collect();
        if w.max_attempts == 0 {
            c.fail("webhooks.max_attempts", "must be at least 1");
        }
        let webhooks = WebhookSettings {
            listen: c.addr("webhooks.listen", &w.listen),
            secret: webhook_secret,
            policy,
            relay,
            body_limit: w.body_limit.max(1),
            history: w.history,
            queue_limit: w.queue_limit,
            retry_initial: c.duration("webhooks.retry_initial", &w.retry_initial),
            retry_max: c.duration("webhooks.retry_max", &w.retry_max),
            max_attempts: w.max_attempts,
        };

        let f = &raw.fault;
        // Every target counts: a production route is as guarded as a
        // production default. Hosts are normalised (`normal_host`), so no
        // spelling slips past the guard.
        let hosts: Vec<String> = proxy
            .upstream
            .iter()
            .chain(routes.iter().map(|r| &r.upstream))
            .map(normal_host)
            .collect();
        let production_host = hosts
            .iter()
            .find(|h| PRODUCTION_HOSTS.contains(&h.as_str()));
        // The Mockbank (no upstream) counts as a sandbox.
        let sandbox_or_mockbank = hosts.iter().all(|h| SANDBOX_HOSTS.contains(&h.as_str()));
        let refusal = production_host
            .filter(|_| !f.allow_faults_in_production)
            .map(|host| {
                format!(
                    "faults are refused against the production Lean host {host}; \
                     set fault.allow_faults_in_production = true to allow them"
                )
            });
        let allow_header = f.allow_header_faults.unwrap_or(sandbox_or_mockbank);
        if allow_header && refusal.is_some() {
            c.fail(
                "fault.allow_header_faults",
                refusal.clone().unwrap_or_default(),
            );
        }
        let mut rules = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for (i, raw_rule) in raw.faults.iter().enumerate() {
            match crate::fault::Rule::from_raw(raw_rule.clone()) {
                Ok(rule) => {
                    if !ids.insert(rule.id.clone()) {
                        c.fail(
                            &format!("faults[{i}].id"),
                            format!("`{}` is used by another rule", rule.id),
                        );
                    }
                    rules.push(rule);
                }
                Err(e) => c.fail(&format!("faults[{i}].{}", e.field), e.reason),
            }
        }
        if let (Some(why), false) = (&refusal, raw.faults.is_empty()) {
            c.fail("faults", why.clone());
        }
        let faults = FaultSettings {
            seed: f.seed,
            allow_header,
            allowed: refusal.is_none(),
            refusal,
            rules,
        };

        if c.errors.is_empty() {
            Ok(Settings {
                proxy,
                tls,
                auth,
                admin,
                log: LogSettings {
                    format,
                    requests: crate::log::LogConfig {
                        ring_entries: raw.log.ring,
                        ring_bytes: raw.log.ring_bytes,
                        capture_limit: raw.log.capture,
                        redact: raw.log.redact,
                        lines_per_second: raw.log.lines_per_second,
                        journal: (!raw.log.journal.trim().is_empty()).then(|| {
                            crate::log::JournalConfig {
                                path: PathBuf::from(&raw.log.journal),
                                max_bytes: raw.log.journal_max_bytes.max(1024),
                                files: raw.log.journal_files,
                            }
                        }),
                    },
                },
                mockbank,
                reconnect,
                webhooks,
                faults,
                routes,
            })
        } else {
            Err(ConfigError::Invalid(c.errors))
        }
    }
}

/// A secret from the environment (preferred) or the file; empty counts as unset.
fn secret(
    c: &mut Checker,
    key: &str,
    var: &str,
    file: Option<Secret>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Secret> {
    match env(var).filter(|v| !v.is_empty()).map(Secret).or(file) {
        Some(v) if v.expose().trim().is_empty() => {
            c.fail(key, "must not be empty");
            None
        }
        other => other,
    }
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

/// Reads variables from the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests;
