//! [`Router`]: several targets on one proxy. Each request goes to the first
//! route whose path prefix or header matches, else to the default target. A
//! matched prefix is removed from the path (`/ksa/v1/x` is forwarded as `/v1/x`)
//! and a matched selector header is removed, so the target sees the request it
//! would have seen directly.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use http::{Request, Uri};
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

use crate::body::Body;
pub use crate::config::RouteMatch;

/// Chooses a target service per request.
#[derive(Clone, Debug)]
pub struct Router<S> {
    routes: Arc<[(RouteMatch, S)]>,
    default: S,
}

impl<S> Router<S> {
    /// Routes to `default` unless one of `routes` (tried in order) matches.
    pub fn new(default: S, routes: Vec<(RouteMatch, S)>) -> Self {
        Self {
            routes: routes.into(),
            default,
        }
    }
}

/// The path and query of `uri` with `prefix` removed, when the path is
/// `prefix` or continues with `/` after it.
fn strip_prefix(uri: &Uri, prefix: &str) -> Option<PathAndQuery> {
    let rest = uri.path().strip_prefix(prefix)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let path = if rest.is_empty() { "/" } else { rest };
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    pq.parse().ok()
}

fn rewrite(req: &mut Request<Body>, pq: PathAndQuery) {
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(pq);
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

impl<S> Service<Request<Body>> for Router<S>
where
    S: Service<Request<Body>> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Oneshot<S, Request<Body>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call drives a clone of its target to readiness (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        for (matcher, service) in self.routes.iter() {
            match matcher {
                RouteMatch::Prefix(prefix) => {
                    if let Some(pq) = strip_prefix(req.uri(), prefix) {
                        rewrite(&mut req, pq);
                        return service.clone().oneshot(req);
                    }
                }
                RouteMatch::Header(name, value) => {
                    let hit = req
                        .headers()
                        .get(name)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()));
                    if hit {
                        req.headers_mut().remove(name);
                        return service.clone().oneshot(req);
                    }
                }
            }
        }
        self.default.clone().oneshot(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pq(uri: &str, prefix: &str) -> Option<String> {
        strip_prefix(&uri.parse().unwrap(), prefix).map(|p| p.to_string())
    }

    #[test]
    fn a_prefix_matches_whole_segments_and_keeps_the_query() {
        assert_eq!(pq("/ksa/v1/x?a=1", "/ksa").as_deref(), Some("/v1/x?a=1"));
        assert_eq!(pq("/ksa", "/ksa").as_deref(), Some("/"));
        assert_eq!(pq("/ksa?a=1", "/ksa").as_deref(), Some("/?a=1"));
        assert_eq!(pq("/ksa/", "/ksa").as_deref(), Some("/"));
        assert_eq!(pq("/ksabank/x", "/ksa"), None);
        assert_eq!(pq("/uae/x", "/ksa"), None);
    }

    #[tokio::test]
    async fn the_first_matching_route_wins_and_the_selector_header_is_removed() {
        let echo = |name: &'static str| {
            tower::service_fn(move |req: Request<Body>| async move {
                let header = req.headers().contains_key("x-target");
                Ok::<_, std::convert::Infallible>(format!("{name} {} {header}", req.uri()))
            })
        };
        let router = Router::new(
            echo("default"),
            vec![
                (RouteMatch::Prefix("/ksa".into()), echo("ksa")),
                (
                    RouteMatch::Header("x-target".parse().unwrap(), "UAE".parse().unwrap()),
                    echo("uae"),
                ),
            ],
        );
        let call = |uri: &str, header: Option<&str>| {
            let mut req = Request::builder().uri(uri);
            if let Some(h) = header {
                req = req.header("x-target", h);
            }
            router
                .clone()
                .oneshot(req.body(crate::body::empty()).unwrap())
        };
        assert_eq!(call("/ksa/v1/a", None).await.unwrap(), "ksa /v1/a false");
        assert_eq!(call("/v1/a", Some("uae")).await.unwrap(), "uae /v1/a false");
        assert_eq!(
            call("/ksa/v1/a", Some("uae")).await.unwrap(),
            "ksa /v1/a true"
        );
        assert_eq!(
            call("/v1/a", Some("other")).await.unwrap(),
            "default /v1/a true"
        );
        assert_eq!(
            call("/ksabank", None).await.unwrap(),
            "default /ksabank false"
        );
    }
}
