//! What keeps web pages away from the admin listener and the Mockbank's
//! control endpoints.
//!
//! Both are for the developer's own tools (curl, the CLI). Any page the
//! developer visits can still make the browser talk to `127.0.0.1`: send a
//! cross-site "simple" request (a `text/plain` POST needs no preflight) that
//! changes state, or point its own name at `127.0.0.1` (DNS rebinding) and
//! read answers as if they were its own. [`Guard`] refuses both, once per
//! request:
//!
//! - the `Host` (the URI's authority for h2 and absolute-form requests) must
//!   be the listener's own address (its ip:port, `localhost:port`,
//!   `127.0.0.1:port`, `[::1]:port`) or a name of `admin.allowed_hosts`;
//! - a request that can change state (anything but GET, HEAD, OPTIONS) is
//!   refused when the browser says it comes from another site: an `Origin`
//!   that is not one of those hosts, or `Sec-Fetch-Site: cross-site` /
//!   `same-site`. Requests without either (curl, the CLI) pass.
//!
//! [`require_json`] is the admin API's content-type check for the endpoints
//! that read a JSON body.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use http::uri::Authority;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use serde_json::json;

use crate::body::Body;
use crate::lean::ErrorEnvelope;
use crate::server::ClientAddr;

/// The longest part of a refused `Host` or `Origin` quoted back.
const QUOTED: usize = 200;

/// A name of `admin.allowed_hosts`: a host, and the only port it may come
/// with when one is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// Lower case; IPv6 addresses in brackets.
    host: String,
    port: Option<u16>,
}

impl FromStr for AllowedHost {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = split_host(s).ok_or_else(|| {
            format!("`{s}` is not a host name like \"leanproxy.local\" or \"leanproxy.local:7071\"")
        })?;
        Ok(Self { host, port })
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// The Host and Origin checks of a listener for the developer's tools. Cheap
/// to clone.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allowed: Arc<[AllowedHost]>,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// No Host header and no authority.
    MissingHost,
    /// The Host names someone else.
    ForeignHost(String),
    /// A state-changing request from an `Origin` that is not ours.
    ForeignOrigin(String),
    /// A state-changing request the browser marked with this `Sec-Fetch-Site`.
    OtherSite(String),
}

/// What the guard looks at in a request.
struct Seen<'a> {
    /// The authority, or the Host header.
    host: Option<&'a str>,
    /// The listener's address the connection came in on; `None` for a
    /// request that did not come through a listener (a service called in
    /// process), or when the address was not known.
    local: Option<SocketAddr>,
    /// Whether the request came through a listener.
    from_listener: bool,
    method: &'a Method,
    origin: Option<&'a str>,
    fetch_site: Option<&'a str>,
}

impl Guard {
    /// A guard that also accepts the names in `allowed`.
    pub fn new(allowed: Vec<AllowedHost>) -> Self {
        Self {
            allowed: allowed.into(),
        }
    }

    /// `None` lets `req` through; otherwise the answer refusing it, in Lean's
    /// error envelope. `what` names the listener in the message ("admin
    /// listener").
    pub fn check<B>(&self, req: &Request<B>, what: &str) -> Option<Response<Body>> {
        let client = req.extensions().get::<ClientAddr>();
        let headers = req.headers();
        let seen = Seen {
            host: match req.uri().authority() {
                Some(authority) => Some(authority.as_str()),
                None => headers.get(header::HOST).map(text),
            },
            local: client.and_then(ClientAddr::local),
            from_listener: client.is_some(),
            method: req.method(),
            origin: headers.get(header::ORIGIN).map(text),
            fetch_site: headers.get("sec-fetch-site").map(text),
        };
        let refusal = self.decide(&seen).err()?;
        let (status, cause, message) = match refusal {
            Refusal::MissingHost => (
                StatusCode::BAD_REQUEST,
                "missing_host",
                format!("leanproxy: the request has no Host header; the {what} needs one"),
            ),
            Refusal::ForeignHost(host) => (
                StatusCode::FORBIDDEN,
                "foreign_host",
                format!(
                    "leanproxy: Host `{}` is not this {what}'s; add it to admin.allowed_hosts",
                    quoted(&host)
                ),
            ),
            Refusal::ForeignOrigin(origin) => (
                StatusCode::FORBIDDEN,
                "cross_site",
                format!(
                    "leanproxy: a page of another site (Origin `{}`) may not change the {what}'s \
                     state; add its host to admin.allowed_hosts if it is yours",
                    quoted(&origin)
                ),
            ),
            Refusal::OtherSite(site) => (
                StatusCode::FORBIDDEN,
                "cross_site",
                format!(
                    "leanproxy: a page of another site (Sec-Fetch-Site: {}) may not change \
                     the {what}'s state",
                    quoted(&site)
                ),
            ),
        };
        let code = if status == StatusCode::FORBIDDEN {
            "FORBIDDEN"
        } else {
            "INVALID_PARAMETERS"
        };
        Some(
            ErrorEnvelope::new(code, message)
                .with_metadata(json!({"source": "leanproxy", "cause": cause}))
                .into_response(status),
        )
    }

    fn decide(&self, seen: &Seen<'_>) -> Result<(), Refusal> {
        match seen.host {
            None if seen.from_listener => return Err(Refusal::MissingHost),
            // Called in process: nothing a browser could have sent.
            None => {}
            Some(host) if !self.ours(host, 80, seen.local) => {
                return Err(Refusal::ForeignHost(host.to_string()))
            }
            Some(_) => {}
        }
        if matches!(*seen.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        if let Some(site) = seen.fetch_site {
            let site = site.trim();
            if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
                return Err(Refusal::OtherSite(site.to_string()));
            }
        }
        if let Some(origin) = seen.origin {
            if !self.our_origin(origin, seen.local) {
                return Err(Refusal::ForeignOrigin(origin.to_string()));
            }
        }
        Ok(())
    }

    /// Whether an `Origin` (`scheme://host[:port]`) is one of our hosts.
    /// `null` (sandboxed frames, some redirects) is not.
    fn our_origin(&self, origin: &str, local: Option<SocketAddr>) -> bool {
        let Ok(uri) = origin.trim().parse::<Uri>() else {
            return false;
        };
        let default_port = match uri.scheme_str() {
            Some("http") => 80,
            Some("https") => 443,
            _ => return false,
        };
        let bare = uri.path_and_query().is_none_or(|pq| pq.as_str() == "/");
        bare && uri
            .authority()
            .is_some_and(|a| self.ours(a.as_str(), default_port, local))
    }

    /// Whether `host` (`name[:port]`; `default_port` when without one) is the
    /// listener's own address, a loopback name with its port, or allowed.
    fn ours(&self, host: &str, default_port: u16, local: Option<SocketAddr>) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        let port = port.unwrap_or(default_port);
        let allowed = self
            .allowed
            .iter()
            .any(|a| a.host == name && a.port.is_none_or(|p| p == port));
        if allowed {
            return true;
        }
        // Without a listener (called in process) any port will do.
        if local.is_some_and(|l| l.port() != port) {
            return false;
        }
        if name == "localhost" {
            return true;
        }
        let ip = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(&name)
            .parse::<IpAddr>();
        match ip {
            Ok(IpAddr::V4(v4)) if v4 == std::net::Ipv4Addr::LOCALHOST => true,
            Ok(IpAddr::V6(v6)) if v6 == std::net::Ipv6Addr::LOCALHOST => true,
            Ok(ip) => local.is_some_and(|l| l.ip() == ip),
            Err(_) => false,
        }
    }
}

/// `name[:port]` as the lower-case name and the port, or `None` when it is
/// not that (user info, a path, a port that is not a number).
fn split_host(text: &str) -> Option<(String, Option<u16>)> {
    if text.contains('@') {
        return None;
    }
    let authority = Authority::from_str(text).ok()?;
    let host = authority.host();
    let has_port = authority.as_str().len() > host.len();
    let port = authority.port_u16();
    if host.is_empty() || (has_port && port.is_none()) {
        return None;
    }
    Some((host.to_ascii_lowercase(), port))
}

/// `Some(answer)` refusing a body that is not declared as JSON
/// (`content-type: application/json`, parameters such as `charset` allowed).
pub(crate) fn require_json(headers: &HeaderMap) -> Option<Response<Body>> {
    let given = headers.get(header::CONTENT_TYPE).map(text);
    let essence = given.map(|t| t.split(';').next().unwrap_or_default().trim());
    if essence.is_some_and(|e| e.eq_ignore_ascii_case("application/json")) {
        return None;
    }
    let got = match given {
        Some(t) => format!("not `{}`", quoted(t)),
        None => "and the request has none".to_string(),
    };
    Some(
        ErrorEnvelope::new(
            "UNSUPPORTED_MEDIA_TYPE",
            format!("leanproxy: this endpoint takes `content-type: application/json`, {got}"),
        )
        .with_metadata(json!({"source": "leanproxy", "expected": "application/json"}))
        .into_response(StatusCode::UNSUPPORTED_MEDIA_TYPE),
    )
}

/// A header's text; one that is not visible ASCII reads as a replacement
/// character (never one of our hosts).
fn text(value: &HeaderValue) -> &str {
    value.to_str().unwrap_or("\u{fffd}")
}

/// At most [`QUOTED`] bytes of `s`, cut at a character boundary.
fn quoted(s: &str) -> &str {
    let mut end = s.len().min(QUOTED);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTENER: &str = "127.0.0.1:7071";

    fn guard() -> Guard {
        Guard::new(vec![
            "leanproxy.local".parse().unwrap(),
            "Pinned.Example:8443".parse().unwrap(),
        ])
    }

    fn seen<'a>(method: &'a Method, host: Option<&'a str>) -> Seen<'a> {
        Seen {
            host,
            local: Some(LISTENER.parse().unwrap()),
            from_listener: true,
            method,
            origin: None,
            fetch_site: None,
        }
    }

    #[test]
    fn the_listeners_own_addresses_and_allowed_names_are_accepted() {
        let g = guard();
        for host in [
            "127.0.0.1:7071",
            "localhost:7071",
            "LocalHost:7071",
            "[::1]:7071",
            "leanproxy.local",
            "leanproxy.local:9999",
            "pinned.example:8443",
        ] {
            assert_eq!(g.decide(&seen(&Method::GET, Some(host))), Ok(()), "{host}");
        }
    }

    #[test]
    fn other_hosts_and_other_ports_are_refused() {
        let g = guard();
        for host in [
            "evil.example",
            "evil.example:7071",
            "localhost:7072",
            "localhost",
            "127.0.0.2:7071",
            // Not an address anyone is connected to (the proxy calls a
            // Mockbank on 0.0.0.0 on loopback for that reason).
            "0.0.0.0:7071",
            "pinned.example",
            "pinned.example:7071",
            "user@localhost:7071",
            "localhost.:7071",
            "\u{fffd}",
        ] {
            assert_eq!(
                g.decide(&seen(&Method::GET, Some(host))),
                Err(Refusal::ForeignHost(host.to_string())),
                "{host}"
            );
        }
    }

    #[test]
    fn a_listener_on_another_interface_accepts_its_own_ip() {
        let mut s = seen(&Method::GET, Some("192.168.1.20:7071"));
        assert_eq!(
            guard().decide(&s),
            Err(Refusal::ForeignHost(s.host.unwrap().into()))
        );
        s.local = Some("192.168.1.20:7071".parse().unwrap());
        assert_eq!(guard().decide(&s), Ok(()));
    }

    #[test]
    fn a_missing_host_is_refused_only_through_a_listener() {
        let mut s = seen(&Method::GET, None);
        assert_eq!(guard().decide(&s), Err(Refusal::MissingHost));
        s.from_listener = false;
        s.local = None;
        assert_eq!(guard().decide(&s), Ok(()));
    }

    #[test]
    fn state_changes_from_another_origin_are_refused() {
        let g = guard();
        let post = Method::POST;
        let delete = Method::DELETE;
        for origin in [
            "http://evil.example",
            "http://localhost:3000",
            "http://localhost:7072",
            "null",
            "file://",
            "http://localhost:7071/path",
        ] {
            for method in [&post, &delete] {
                let mut s = seen(method, Some(LISTENER));
                s.origin = Some(origin);
                assert_eq!(
                    g.decide(&s),
                    Err(Refusal::ForeignOrigin(origin.to_string())),
                    "{method} {origin}"
                );
            }
        }
    }

    #[test]
    fn state_changes_from_our_origins_or_without_one_pass() {
        let g = guard();
        for origin in [
            None,
            Some("http://127.0.0.1:7071"),
            Some("http://localhost:7071"),
            Some("http://leanproxy.local"),
            Some("https://leanproxy.local"),
            Some("https://pinned.example:8443"),
        ] {
            let mut s = seen(&Method::POST, Some(LISTENER));
            s.origin = origin;
            assert_eq!(g.decide(&s), Ok(()), "{origin:?}");
        }
    }

    #[test]
    fn sec_fetch_site_other_than_same_origin_or_none_refuses_state_changes() {
        let g = guard();
        for (site, refused) in [
            ("cross-site", true),
            ("same-site", true),
            ("Cross-Site", true),
            ("same-origin", false),
            ("none", false),
        ] {
            let mut s = seen(&Method::PUT, Some(LISTENER));
            s.fetch_site = Some(site);
            let expected = if refused {
                Err(Refusal::OtherSite(site.to_string()))
            } else {
                Ok(())
            };
            assert_eq!(g.decide(&s), expected, "{site}");
        }
    }

    #[test]
    fn reads_are_not_refused_for_their_origin() {
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            let mut s = seen(&method, Some(LISTENER));
            s.origin = Some("http://evil.example");
            s.fetch_site = Some("cross-site");
            assert_eq!(guard().decide(&s), Ok(()), "{method}");
        }
    }

    #[test]
    fn a_foreign_host_is_refused_before_anything_else() {
        let mut s = seen(&Method::POST, Some("evil.example:7071"));
        s.origin = Some("http://evil.example:7071");
        assert_eq!(
            guard().decide(&s),
            Err(Refusal::ForeignHost("evil.example:7071".into()))
        );
    }

    #[test]
    fn allowed_hosts_are_validated() {
        assert!("leanproxy.local:7071".parse::<AllowedHost>().is_ok());
        for bad in [
            "",
            "http://x",
            "a b",
            "user@host",
            "host:port",
            "host:",
            "x/y",
        ] {
            assert!(bad.parse::<AllowedHost>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_json_bodies_are_taken() {
        let with = |ct: Option<&str>| {
            let mut h = HeaderMap::new();
            if let Some(ct) = ct {
                h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            }
            require_json(&h).map(|r| r.status())
        };
        assert_eq!(with(Some("application/json")), None);
        assert_eq!(with(Some("Application/JSON; charset=utf-8")), None);
        for ct in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
            None,
        ] {
            assert_eq!(with(ct), Some(StatusCode::UNSUPPORTED_MEDIA_TYPE), "{ct:?}");
        }
    }
}
