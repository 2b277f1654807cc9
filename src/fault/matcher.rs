//! Which requests a rule applies to: method, path glob, entity, headers and query
//! parameters. Everything is compiled when the rule is validated; matching a
//! request only compares.

use std::fmt;

use globset::{Glob, GlobMatcher};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{json, Map, Value};

use super::error::RuleError;
use super::raw::RawMatch;
use super::value::{scalar_text, table, text};

/// What the fault layer knows about a request when it evaluates rules.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request path, without the query.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The entity the request names (v2 query parameter or v1 body), when known.
    pub entity_id: Option<&'a str>,
}

/// A compiled path glob. `*` matches any characters, `/` included, so
/// `/data/v2/*` matches every path under `/data/v2/`; `?`, `[abc]` and `{a,b}`
/// work as in a shell.
#[derive(Clone)]
pub struct PathGlob {
    pattern: String,
    /// The pattern's text before its first glob character: a path that does
    /// not start with it cannot match, and checking that first is far cheaper
    /// than the compiled matcher when many rules are installed.
    literal: usize,
    matcher: GlobMatcher,
}

impl PathGlob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Result<Self, globset::Error> {
        Ok(Self {
            pattern: pattern.to_owned(),
            literal: pattern
                .find(['*', '?', '[', '{', '\\'])
                .unwrap_or(pattern.len()),
            matcher: Glob::new(pattern)?.compile_matcher(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `path` matches.
    pub fn is_match(&self, path: &str) -> bool {
        path.starts_with(&self.pattern[..self.literal]) && self.matcher.is_match(path)
    }
}

impl fmt::Debug for PathGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PathGlob").field(&self.pattern).finish()
    }
}

impl PartialEq for PathGlob {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

/// The conditions of a rule. Every condition given must hold; the empty match
/// (the default) matches every request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Match {
    /// The request method.
    pub method: Option<Method>,
    /// The path, as a glob.
    pub path: Option<PathGlob>,
    /// The entity the request names.
    pub entity_id: Option<String>,
    /// Headers that must be present with exactly this value (one of the header's
    /// values, when it is repeated).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Query parameters that must be present with exactly this (decoded) value.
    pub query: Vec<(String, String)>,
}

impl Match {
    /// Whether the request described by `facts` meets every condition.
    pub fn matches(&self, facts: &RequestFacts<'_>) -> bool {
        if self.method.as_ref().is_some_and(|m| m != facts.method) {
            return false;
        }
        if self.path.as_ref().is_some_and(|p| !p.is_match(facts.path)) {
            return false;
        }
        if let Some(entity) = &self.entity_id {
            if facts.entity_id != Some(entity.as_str()) {
                return false;
            }
        }
        let headers_hold = self.headers.iter().all(|(name, value)| {
            facts
                .headers
                .get_all(name)
                .iter()
                .any(|given| given == value)
        });
        if !headers_hold {
            return false;
        }
        self.query.iter().all(|(name, value)| {
            facts.query.is_some_and(|q| {
                form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == *name && v == *value)
            })
        })
    }
}

impl Match {
    /// Validates a written `match` table.
    pub(super) fn from_raw(raw: &RawMatch) -> Result<Match, RuleError> {
        let method = raw
            .method
            .as_ref()
            .map(|v| {
                let m = text("match.method", v)?;
                Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                    RuleError::new("match.method", format!("`{m}` is not an HTTP method"))
                })
            })
            .transpose()?;
        let path =
            raw.path
                .as_ref()
                .map(|v| {
                    let p = text("match.path", v)?;
                    if !p.starts_with(['/', '*', '{']) {
                        return Err(RuleError::new(
                    "match.path",
                    format!("`{p}` must start with `/` (it is matched against the request path)"),
                ));
                    }
                    PathGlob::new(&p).map_err(|e| {
                        RuleError::new("match.path", format!("`{p}` is not a glob: {e}"))
                    })
                })
                .transpose()?;
        let entity_id = raw
            .entity_id
            .as_ref()
            .map(|v| text("match.entity_id", v))
            .transpose()?;
        let mut headers = Vec::new();
        for (name, value) in table("match.headers", raw.headers.as_ref())? {
            let field = format!("match.headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| RuleError::new(&field, format!("`{name}` is not a header name")))?;
            let value = scalar_text(&field, value)?;
            let value = HeaderValue::from_str(&value)
                .map_err(|_| RuleError::new(&field, format!("`{value}` is not a header value")))?;
            headers.push((header, value));
        }
        let mut query = Vec::new();
        for (name, value) in table("match.query", raw.query.as_ref())? {
            let value = scalar_text(&format!("match.query.{name}"), value)?;
            query.push((name.clone(), value));
        }
        Ok(Match {
            method,
            path,
            entity_id,
            headers,
            query,
        })
    }

    /// The conditions as written.
    pub(super) fn to_raw(&self) -> RawMatch {
        let m = self;
        let headers: Map<String, Value> = m
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    json!(String::from_utf8_lossy(v.as_bytes())),
                )
            })
            .collect();
        let query: Map<String, Value> =
            m.query.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
        RawMatch {
            method: m.method.as_ref().map(|m| json!(m.as_str())),
            path: m.path.as_ref().map(|p| json!(p.as_str())),
            entity_id: m.entity_id.as_ref().map(|e| json!(e)),
            headers: (!headers.is_empty()).then_some(Value::Object(headers)),
            query: (!query.is_empty()).then_some(Value::Object(query)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Req {
        method: Method,
        path: &'static str,
        query: Option<&'static str>,
        headers: HeaderMap,
        entity: Option<&'static str>,
    }

    impl Req {
        fn get(path: &'static str) -> Self {
            Self {
                method: Method::GET,
                path,
                query: None,
                headers: HeaderMap::new(),
                entity: None,
            }
        }

        fn facts(&self) -> RequestFacts<'_> {
            RequestFacts {
                method: &self.method,
                path: self.path,
                query: self.query,
                headers: &self.headers,
                entity_id: self.entity,
            }
        }
    }

    fn path(p: &str) -> Match {
        Match {
            path: Some(PathGlob::new(p).unwrap()),
            ..Match::default()
        }
    }

    #[test]
    fn empty_match_matches_everything() {
        assert!(Match::default().matches(&Req::get("/anything").facts()));
    }

    #[test]
    fn star_glob_matches_below_the_prefix_only() {
        let m = path("/data/v2/*");
        assert!(m.matches(&Req::get("/data/v2/accounts").facts()));
        assert!(m.matches(&Req::get("/data/v2/accounts/123/balances").facts()));
        assert!(!m.matches(&Req::get("/data/v1/accounts").facts()));
        assert!(!m.matches(&Req::get("/data/v2").facts()));
    }

    #[test]
    fn alternation_and_character_class_globs_work() {
        let m = path("/data/v{1,2}/accoun[t]s");
        assert!(m.matches(&Req::get("/data/v1/accounts").facts()));
        assert!(m.matches(&Req::get("/data/v2/accounts").facts()));
        assert!(!m.matches(&Req::get("/data/v3/accounts").facts()));
    }

    #[test]
    fn the_literal_prefix_shortcut_agrees_with_the_glob() {
        let paths = [
            "/data/v2/accounts",
            "/data/v2/accounts/1",
            "/data/v1/accounts",
            "/data/v2",
            "/payments/intents",
            "/",
            "/data/v2/accounts?",
        ];
        for pattern in [
            "/data/v2/accounts",
            "/data/v2/*",
            "*/accounts",
            "/data/v[12]/accounts",
            "/data/v2/accounts\\?",
            "{/data,/payments}/*",
            "/payments/**",
        ] {
            let glob = PathGlob::new(pattern).unwrap();
            let full = Glob::new(pattern).unwrap().compile_matcher();
            for path in paths {
                assert_eq!(glob.is_match(path), full.is_match(path), "{pattern} {path}");
            }
        }
    }

    #[test]
    fn method_must_be_equal() {
        let m = Match {
            method: Some(Method::POST),
            ..Match::default()
        };
        assert!(!m.matches(&Req::get("/x").facts()));
        let mut req = Req::get("/x");
        req.method = Method::POST;
        assert!(m.matches(&req.facts()));
    }

    #[test]
    fn entity_must_be_named_and_equal() {
        let m = Match {
            entity_id: Some("e-1".into()),
            ..Match::default()
        };
        let mut req = Req::get("/x");
        assert!(!m.matches(&req.facts()), "no entity");
        req.entity = Some("e-2");
        assert!(!m.matches(&req.facts()));
        req.entity = Some("e-1");
        assert!(m.matches(&req.facts()));
    }

    #[test]
    fn header_must_have_the_value_among_repeats() {
        let m = Match {
            headers: vec![(
                HeaderName::from_static("x-env"),
                HeaderValue::from_static("staging"),
            )],
            ..Match::default()
        };
        let mut req = Req::get("/x");
        assert!(!m.matches(&req.facts()), "absent");
        req.headers
            .append("x-env", HeaderValue::from_static("prod"));
        assert!(!m.matches(&req.facts()), "other value");
        req.headers
            .append("x-env", HeaderValue::from_static("staging"));
        assert!(m.matches(&req.facts()), "one of the values");
    }

    #[test]
    fn query_parameter_is_decoded_and_compared() {
        let m = Match {
            query: vec![("page".into(), "0".into()), ("q".into(), "a b".into())],
            ..Match::default()
        };
        let mut req = Req::get("/x");
        assert!(!m.matches(&req.facts()), "no query");
        req.query = Some("page=0&q=a+b");
        assert!(m.matches(&req.facts()));
        req.query = Some("page=1&q=a%20b");
        assert!(!m.matches(&req.facts()), "page differs");
        req.query = Some("q=a%20b&page=0");
        assert!(m.matches(&req.facts()));
    }
}
