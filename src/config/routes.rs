//! `[[routes]]`: several targets on one proxy, chosen per request by path prefix
//! or by a request header, each with its own credentials.

use http::header::{HeaderName, HeaderValue};
use http::Uri;
use serde::Deserialize;

use super::{parse_upstream, resolve_target, AppTokenValue, Checker, Secret};
use crate::route::RouteMatch;

/// One `[[routes]]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRoute {
    /// Name shown in errors and logs.
    pub name: String,
    /// Path prefix (`/ksa`): matching requests are forwarded without it.
    pub prefix: Option<String>,
    /// Request header that selects the route (removed before forwarding).
    pub header: Option<String>,
    /// Value of `header` that selects the route (compared case-insensitively).
    pub header_value: Option<String>,
    /// Target: a preset name or a URL (not `mockbank`).
    pub upstream: String,
    /// This target's `lean-app-token`.
    pub app_token: Option<Secret>,
    /// This target's OAuth2 client id.
    pub client_id: Option<String>,
    /// This target's OAuth2 client secret.
    pub client_secret: Option<Secret>,
    /// Token URL (absent: the preset's).
    pub token_url: Option<String>,
}

/// A validated route.
#[derive(Debug, Clone)]
pub struct RouteSettings {
    /// Its name.
    pub name: String,
    /// How it is chosen.
    pub matcher: RouteMatch,
    /// Where it forwards.
    pub upstream: Uri,
    /// Whether the target needs a client certificate.
    pub mtls: bool,
    /// Its `lean-app-token`.
    pub app_token: Option<AppTokenValue>,
    /// Its OAuth2 client credentials.
    pub client: Option<(String, Secret)>,
    /// Its token URL.
    pub token_url: Option<Uri>,
}

/// Validates every route; problems name `routes[i].<field>`.
pub(super) fn validate(
    c: &mut Checker,
    raw: Vec<RawRoute>,
    has_client_identity: bool,
) -> Vec<RouteSettings> {
    let mut routes = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, r) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("routes[{i}].{field}");
        let before = c.errors.len();
        if r.name.trim().is_empty() {
            c.fail(&key("name"), "must not be empty");
        } else if !names.insert(r.name.clone()) {
            c.fail(
                &key("name"),
                format!("`{}` is used by another route", r.name),
            );
        }
        let matcher = matcher(c, i, r.prefix, r.header, r.header_value);
        let target = match r.upstream.as_str() {
            "" => {
                c.fail(&key("upstream"), "required");
                None
            }
            u => match resolve_target(u) {
                Ok(t) if t.base.is_none() => {
                    c.fail(
                        &key("upstream"),
                        "a route cannot target the embedded Mockbank; give its URL or a Lean target",
                    );
                    None
                }
                Ok(t) => Some(t),
                Err(e) => {
                    c.fail(&key("upstream"), e);
                    None
                }
            },
        };
        if target.as_ref().is_some_and(|t| t.mtls) && !has_client_identity {
            c.fail(&key("upstream"), super::targets::MTLS_REQUIRED);
        }
        let app_token = r.app_token.as_ref().and_then(|token| {
            let sent = AppTokenValue::new(token.expose())
                .ok()
                .filter(|_| !token.expose().trim().is_empty());
            if sent.is_none() {
                c.fail(&key("app_token"), "must be a non-empty header value");
            }
            sent
        });
        let id = r.client_id.filter(|v| !v.trim().is_empty());
        let secret = r.client_secret.filter(|v| !v.expose().trim().is_empty());
        let client = match (id, secret) {
            (Some(id), Some(secret)) => Some((id, secret)),
            (None, None) => None,
            (Some(_), None) => {
                c.fail(&key("client_secret"), "required with client_id, not empty");
                None
            }
            (None, Some(_)) => {
                c.fail(&key("client_id"), "required with client_secret, not empty");
                None
            }
        };
        let token_url = match r.token_url {
            Some(u) => parse_upstream(&u)
                .map_err(|e| c.fail(&key("token_url"), e))
                .ok(),
            None => target.as_ref().and_then(|t| t.token_url.clone()),
        };
        if client.is_some() && token_url.is_none() && target.is_some() {
            c.fail(
                &key("token_url"),
                "required with client credentials when upstream is a URL, not a named target",
            );
        }
        if c.errors.len() > before {
            continue;
        }
        if let (Some(matcher), Some(target)) = (matcher, target) {
            if let Some(upstream) = target.base {
                routes.push(RouteSettings {
                    name: r.name,
                    matcher,
                    upstream,
                    mtls: target.mtls,
                    app_token,
                    client,
                    token_url,
                });
            }
        }
    }
    routes
}

/// How route `i` is chosen: a path prefix, or a header and its value.
fn matcher(
    c: &mut Checker,
    i: usize,
    prefix: Option<String>,
    header: Option<String>,
    header_value: Option<String>,
) -> Option<RouteMatch> {
    let key = |field: &str| format!("routes[{i}].{field}");
    match (prefix, header, header_value) {
        (Some(prefix), None, None) => {
            let valid = prefix.len() > 1
                && prefix.starts_with('/')
                && !prefix.ends_with('/')
                && !prefix.contains(['?', '#', ' ']);
            if !valid {
                c.fail(
                    &key("prefix"),
                    format!(
                        "`{prefix}` is not a path prefix like \"/ksa\" (leading /, no trailing /)"
                    ),
                );
            }
            Some(RouteMatch::Prefix(prefix))
        }
        (None, Some(name), Some(value)) => {
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| c.fail(&key("header"), format!("`{name}` is not a header name")))
                .ok();
            // Incoming values arrive trimmed, so compare trimmed.
            let value = match value.trim() {
                "" => {
                    c.fail(&key("header_value"), "must not be empty");
                    None
                }
                v => HeaderValue::from_str(v)
                    .map_err(|_| c.fail(&key("header_value"), "is not a valid header value"))
                    .ok(),
            };
            name.zip(value).map(|(n, v)| RouteMatch::Header(n, v))
        }
        (None, Some(_), None) => {
            c.fail(&key("header_value"), "required with header");
            None
        }
        (None, None, Some(_)) => {
            c.fail(&key("header"), "required with header_value");
            None
        }
        (None, None, None) => {
            c.fail(&key("prefix"), "set prefix, or header and header_value");
            None
        }
        (Some(_), _, _) => {
            c.fail(&key("prefix"), "set either prefix or header, not both");
            None
        }
    }
}
