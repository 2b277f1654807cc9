//! Link in the browser, served by the Mockbank as Lean serves it: LinkSDK's
//! scripts at Lean's CDN paths (the legacy bundle, the loader and the v2
//! bundle), the Link screens in an iframe, the hosted page mobile SDKs open in
//! a WebView, and a boilerplate page at the root.
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | GET | `/` | the boilerplate page: one button per LinkSDK method |
//! | GET | `/link/sdk/web/{version}/Lean.min.js` | legacy bundle, global `Lean`, mounts into `#lean-link` |
//! | GET | `/link/loader/prod/{ae,sa}/{version}/lean-link-loader.min.js` | loader, global `Lean`, its own overlay |
//! | GET | `/link/sdk/web/v2/prod/{ae,sa}/{version}/Lean.min.js` | v2 bundle, global `LeanV2`, mounts into `#lean-link` |
//! | GET | `/link/loader/prod/{ae,sa}/{version}/lean-sdk.html` | the hosted page, ends in `leanlink://…` |
//! | GET | `/link/app?session=…` | the Link screens (in the SDK's iframe) |
//! | POST | `/link/v1/sessions` | opens a session from the SDK's configuration (CORS, `mockbank.link_origins`) |
//! | GET | `/link/v1/sessions/{id}` | what the screens show |
//! | POST | `/link/v1/sessions/{id}/steps` | one step: `{"action": "bank" \| "login" \| "otp" \| "accounts" \| "revoke" \| "done" \| "close" \| …}` |
//!
//! The scripts, pages and styles are plain files in `assets/`, embedded in the
//! binary. Every LinkSDK method runs its flow; each ends in the same code as
//! the API and the controls (`effects.rs`): linking as `/_mockbank/link/connect`
//! and `/_mockbank/link/reconnect` ([`MockbankCore::link_entity`],
//! [`MockbankCore::finish_reconnect`]), paying, payment sources and their
//! beneficiaries, consents.

mod effects;
mod methods;
mod opening;
mod session;

use std::collections::HashMap;
use std::sync::Mutex;

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use super::MockbankCore;
use crate::body::{self, Body};
use session::{Session, SESSION_LIFETIME};

const SDK_JS: &str = include_str!("assets/sdk.js");
const LINK_HTML: &str = include_str!("assets/link.html");
const LINK_JS: &str = include_str!("assets/link.js");
const LINK_CSS: &str = include_str!("assets/link.css");
const BOILERPLATE_HTML: &str = include_str!("assets/boilerplate.html");
const BOILERPLATE_JS: &str = include_str!("assets/boilerplate.js");

/// At most this many sessions are kept; the oldest go first.
const MAX_SESSIONS: usize = 1000;

/// Which of LinkSDK's deliveries opened a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Generation {
    /// `link/sdk/web/{version}/Lean.min.js`: global `Lean`, callbacks carry `method`.
    Legacy,
    /// `link/loader/…/lean-link-loader.min.js`: global `Lean`.
    Loader,
    /// `link/sdk/web/v2/…/Lean.min.js`: global `LeanV2`; configuration errors
    /// reach the callback only with `sandbox: true`.
    V2,
    /// `lean-sdk.html`, opened by the mobile SDKs.
    Hosted,
}

impl Generation {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "legacy" => Self::Legacy,
            "loader" => Self::Loader,
            "v2" => Self::V2,
            "hosted" => Self::Hosted,
            _ => return None,
        })
    }
}

/// Lean's regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Region {
    /// UAE.
    Ae,
    /// KSA: more permissions.
    Sa,
}

impl Region {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "ae" => Some(Self::Ae),
            "sa" => Some(Self::Sa),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Ae => "ae",
            Self::Sa => "sa",
        }
    }

    /// The permissions `connect` accepts in this region.
    fn permissions(self) -> &'static [&'static str] {
        match self {
            Self::Ae => &[
                "identity",
                "accounts",
                "balance",
                "transactions",
                "payments",
            ],
            // Lean's KSA LinkSDK lists the nine data permissions only.
            Self::Sa => &[
                "identity",
                "accounts",
                "balance",
                "transactions",
                "identities",
                "beneficiaries",
                "direct_debits",
                "standing_orders",
                "scheduled_payments",
            ],
        }
    }
}

/// `permissions` as `connect` takes them: a non-empty array of the region's
/// permission names, or why not.
pub(crate) fn permissions(list: &Value, region: Region) -> Result<Vec<String>, String> {
    let allowed = region.permissions();
    let items = list
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| format!("give a non-empty array of {}", allowed.join(", ")))?;
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let name = item.as_str().unwrap_or_default();
        if !allowed.contains(&name) {
            return Err(format!(
                "{item} is not a permission in {}; give some of {}",
                region.name(),
                allowed.join(", ")
            ));
        }
        if !out.iter().any(|p| p == name) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// The Link sessions of one Mockbank.
#[derive(Default)]
pub(super) struct Sessions(Mutex<HashMap<Uuid, Session>>);

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Session>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Which pages may open Link: the `mockbank.link_origins` allow-list, or any
/// loopback origin when it is empty.
pub(crate) fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    if allowed.is_empty() {
        return is_loopback_origin(origin);
    }
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/') == origin)
}

/// `http(s)://localhost`, `127.x.x.x` or `[::1]`, on any port.
fn is_loopback_origin(origin: &str) -> bool {
    let Ok(uri) = origin.parse::<http::Uri>() else {
        return false;
    };
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let host = uri.host().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    scheme_ok && loopback && uri.path() == "/" && uri.query().is_none()
}

/// A script path's version segment: `latest` or a pinned version.
fn version_ok(v: &str) -> bool {
    v == "latest"
        || (!v.is_empty()
            && v.len() <= 32
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
}

impl MockbankCore {
    /// The boilerplate page, its script list holding this Mockbank's
    /// region's scripts only (its users bank at that region's banks, and
    /// sessions from the other region's scripts are refused), starting on
    /// its loader.
    fn boilerplate(&self) -> String {
        let own = self.settings.region.link().name();
        let mine = format!(r#"<option data-region="{own}" "#);
        let page: Vec<&str> = BOILERPLATE_HTML
            .lines()
            .filter(|line| !line.contains("<option data-region=") || line.contains(&mine))
            .collect();
        let loader =
            format!(r#"{mine}value="/link/loader/prod/{own}/latest/lean-link-loader.min.js""#);
        page.join("\n")
            .replacen(&loader, &format!("{loader} selected"), 1)
    }

    /// Answers a Link path; `None` when `path` is not one.
    pub(super) fn link(
        &self,
        method: &Method,
        path: &str,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<Response<Body>> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let get = method == Method::GET || method == Method::HEAD;
        Some(match segments.as_slice() {
            [] if get => page(self.boilerplate(), "'self'"),
            ["link", "sdk", "web", v, "Lean.min.js"] if get && version_ok(v) => {
                script(Generation::Legacy, Region::Ae, v)
            }
            ["link", "sdk", "web", "v2", "prod", r, v, "Lean.min.js"] if get && version_ok(v) => {
                script(Generation::V2, Region::parse(r)?, v)
            }
            ["link", "loader", "prod", r, v, "lean-link-loader.min.js"] if get && version_ok(v) => {
                script(Generation::Loader, Region::parse(r)?, v)
            }
            ["link", "loader", "prod", r, v, "lean-sdk.html"] if get && version_ok(v) => {
                let region = Region::parse(r)?;
                page(LINK_HTML.replace("{{REGION}}", region.name()), "'none'")
            }
            ["link", "app"] if get => {
                // Only the page that opened the session may frame it; the
                // screens speak the session's region.
                let (ancestors, region) = query
                    .get("session")
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .and_then(|id| {
                        let sessions = self.link_sessions.lock();
                        let opening = &sessions.get(&id)?.opening;
                        Some((opening.origin.clone(), opening.region))
                    })
                    .unwrap_or((None, Region::Ae));
                let ancestors = ancestors.unwrap_or_else(|| "'none'".into());
                page(LINK_HTML.replace("{{REGION}}", region.name()), &ancestors)
            }
            ["link", "assets", "link.js"] if get => asset(LINK_JS, "text/javascript"),
            ["link", "assets", "link.css"] if get => asset(LINK_CSS, "text/css"),
            ["link", "assets", "boilerplate.js"] if get => asset(BOILERPLATE_JS, "text/javascript"),
            ["link", "v1", "sessions"] => self.sessions_endpoint(method, headers, body),
            ["link", "v1", "sessions", id] if get => match self.same_origin(headers) {
                false => not_own_origin(),
                true => self.session_view(id),
            },
            ["link", "v1", "sessions", id, "steps"] if method == Method::POST => {
                match self.same_origin(headers) {
                    false => not_own_origin(),
                    true => self.session_step(id, body),
                }
            }
            ["link", ..] => json_answer(
                StatusCode::NOT_FOUND,
                &json!({"status": "ERROR", "message": format!("no Link resource at {path}")}),
            ),
            _ => return None,
        })
    }

    /// `POST /link/v1/sessions` (and its CORS preflight).
    fn sessions_endpoint(
        &self,
        method: &Method,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response<Body> {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let allowed = origin.as_deref().is_none_or(|o| {
            self.is_own_origin(headers, o) || origin_allowed(&self.settings.link_origins, o)
        });
        let mut response = match (method, allowed) {
            (&Method::OPTIONS, true) => {
                let mut r = Response::new(body::empty());
                *r.status_mut() = StatusCode::NO_CONTENT;
                let h = r.headers_mut();
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("POST, GET, OPTIONS"),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("content-type"),
                );
                h.insert(
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static("600"),
                );
                r
            }
            (_, false) => {
                tracing::warn!(target: "leanproxy::mockbank", origin = origin.as_deref().unwrap_or(""), "Link refused: origin not in mockbank.link_origins");
                return json_answer(
                    StatusCode::FORBIDDEN,
                    &json!({"status": "ERROR", "message": format!(
                        "this page's origin ({}) may not open Link: add it to mockbank.link_origins",
                        origin.as_deref().unwrap_or("")
                    )}),
                );
            }
            (&Method::POST, true) => self.open_session(body, origin.clone()),
            _ => json_answer(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"status": "ERROR", "message": "use POST"}),
            ),
        };
        if let Some(o) = origin.and_then(|o| HeaderValue::from_str(&o).ok()) {
            let h = response.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        response
    }

    fn open_session(&self, body: &[u8], origin: Option<String>) -> Response<Body> {
        let cfg: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let generation = cfg
            .get("generation")
            .and_then(Value::as_str)
            .and_then(Generation::parse)
            .unwrap_or(Generation::Loader);
        let region = cfg
            .get("region")
            .and_then(Value::as_str)
            .and_then(Region::parse)
            .unwrap_or(Region::Ae);
        let correlation = Uuid::new_v4();
        let opening = match self.opening(&cfg, origin, generation, region) {
            Ok(opening) => opening,
            Err(message) => {
                tracing::info!(target: "leanproxy::mockbank", %message, "Link refused its configuration");
                let refusal = json!({
                    "status": "ERROR",
                    "message": message,
                    "bank": {"bank_identifier": null, "is_supported": true},
                    "exit_point": null,
                    "secondary_status": null,
                    "last_api_response": null,
                    "user_exit_intent": null,
                    "exit_intent_point": null,
                    "exit_survey_reason": null,
                    "lean_correlation_id": correlation,
                    "open_banking_redirect_url": null,
                });
                return json_answer(StatusCode::BAD_REQUEST, &refusal);
            }
        };
        let now = self.clock.elapsed();
        let session = Session::new(opening, now);
        let id = session.id;
        let mut sessions = self.link_sessions.lock();
        sessions.retain(|_, s| now.saturating_sub(s.opened) < SESSION_LIFETIME);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions.values().min_by_key(|s| s.opened).map(|s| s.id) {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id, session);
        json_answer(
            StatusCode::CREATED,
            &json!({"session_id": id, "link_url": format!("/link/app?session={id}")}),
        )
    }

    fn session_view(&self, id: &str) -> Response<Body> {
        // Both locks are only ever taken in one order, the sessions' then the
        // state's (`decorate`): the banks down are read before, not inside.
        let down = self.lock().banks_down.clone();
        let sessions = self.link_sessions.lock();
        match Uuid::parse_str(id).ok().and_then(|id| sessions.get(&id)) {
            Some(s) => {
                let mut view = s.view(&self.users, &down);
                self.decorate(s, &mut view);
                json_answer(StatusCode::OK, &view)
            }
            None => unknown_session(),
        }
    }

    fn session_step(&self, id: &str, body: &[u8]) -> Response<Body> {
        let step: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let Some(id) = Uuid::parse_str(id).ok() else {
            return unknown_session();
        };
        let down = self.lock().banks_down.clone();
        // Linking below takes the state's lock while the sessions' is held:
        // the one order the two are taken in.
        let mut sessions = self.link_sessions.lock();
        let Some(session) = sessions.get_mut(&id) else {
            return unknown_session();
        };
        let effect = match session.step(&step, &self.users) {
            Ok(effect) => effect,
            Err(why) => {
                return json_answer(
                    StatusCode::CONFLICT,
                    &json!({"status": "ERROR", "message": why}),
                )
            }
        };
        self.apply(session, effect);
        let mut view = session.view(&self.users, &down);
        self.decorate(session, &mut view);
        json_answer(StatusCode::OK, &view)
    }

    /// Whether `origin` is the Mockbank's own (the `Host` the request came to).
    fn is_own_origin(&self, headers: &HeaderMap, origin: &str) -> bool {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        !host.is_empty()
            && (origin == format!("http://{host}") || origin == format!("https://{host}"))
    }

    /// Whether a call of the screens' own comes from the Mockbank's origin
    /// (or carries none).
    fn same_origin(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|o| self.is_own_origin(headers, o))
    }
}

fn not_own_origin() -> Response<Body> {
    json_answer(
        StatusCode::FORBIDDEN,
        &json!({"status": "ERROR", "message": "Link's screens call this from the Mockbank's own pages only"}),
    )
}

fn unknown_session() -> Response<Body> {
    json_answer(
        StatusCode::NOT_FOUND,
        &json!({"status": "ERROR", "message": "no such Link session (it may have expired: sessions last an hour)"}),
    )
}

fn json_answer(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = Response::new(body::full(serde_json::to_vec(value).unwrap_or_default()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An SDK script: the shared runtime, told which generation it plays.
fn script(generation: Generation, region: Region, version: &str) -> Response<Body> {
    let (name, global) = match generation {
        Generation::Legacy => ("legacy", "Lean"),
        Generation::Loader => ("loader", "Lean"),
        Generation::V2 | Generation::Hosted => ("v2", "LeanV2"),
    };
    let config =
        json!({"generation": name, "global": global, "region": region.name(), "version": version});
    let text = format!(
        "/* LinkSDK as emulated by leanproxy's Mockbank ({name}, {}, {version}) */\n(function (LINK) {{\n{SDK_JS}\n}})({config});\n",
        region.name()
    );
    asset_owned(text, "text/javascript")
}

fn asset(text: &'static str, content_type: &'static str) -> Response<Body> {
    asset_owned(text.to_string(), content_type)
}

fn asset_owned(text: String, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(body::full(text.into_bytes()));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&format!("{content_type}; charset=utf-8")).expect("static"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// An HTML page: scripts and styles from the Mockbank only, framed only by
/// `ancestors`.
fn page(html: String, ancestors: &str) -> Response<Body> {
    let mut r = asset_owned(html, "text/html");
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; frame-src 'self'; frame-ancestors {ancestors}; base-uri 'none'; form-action 'self'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_origins_are_allowed_by_default_and_others_only_when_listed() {
        for o in [
            "http://localhost:3000",
            "http://127.0.0.1:8080",
            "https://[::1]:5173",
            "http://localhost",
        ] {
            assert!(origin_allowed(&[], o), "{o}");
        }
        for o in [
            "http://example.com",
            "http://localhost.evil.test",
            "null",
            "file://",
            "http://10.0.0.1:3000",
        ] {
            assert!(!origin_allowed(&[], o), "{o}");
        }
        let list = vec!["https://app.example.test".to_string()];
        assert!(origin_allowed(&list, "https://app.example.test"));
        assert!(!origin_allowed(&list, "http://localhost:3000"));
        assert!(origin_allowed(&["*".to_string()], "http://anything.test"));
    }

    #[test]
    fn permissions_are_checked_per_region() {
        let ae = permissions(&json!(["identity", "accounts", "identity"]), Region::Ae).unwrap();
        assert_eq!(ae, ["identity", "accounts"]);
        let err = permissions(&json!(["identity", "beneficiaries"]), Region::Ae).unwrap_err();
        assert!(
            err.contains("\"beneficiaries\" is not a permission in ae"),
            "{err}"
        );
        assert!(permissions(&json!(["beneficiaries"]), Region::Sa).is_ok());
        assert!(permissions(&json!([]), Region::Ae).is_err());
        assert!(permissions(&json!("identity"), Region::Ae).is_err());
    }

    #[test]
    fn versions_are_latest_or_pinned() {
        assert!(version_ok("latest") && version_ok("2.1.4") && version_ok("v3.0.0-beta"));
        assert!(!version_ok("") && !version_ok("..%2f") && !version_ok("a/b"));
    }
}
