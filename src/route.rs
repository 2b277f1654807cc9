//! Several targets on one proxy, in two parts:
//!
//! - [`RouteSelect`], outside the reconnect and fault layers, picks the first
//!   route whose path prefix or header matches. It removes a matched prefix from
//!   the path (`/ksa/v1/x` becomes `/v1/x`) and a matched selector header, and
//!   marks the request with [`RouteTarget`]. Fault rules and reconnect
//!   inspection therefore see the path the target will see.
//! - [`Router`], innermost, sends a marked request to its route's target and
//!   any other request to the default target.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use http::{Request, Uri};
use tower::Service;

use crate::body::Body;
/// How a route is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    /// The path is the prefix or starts with the prefix and `/`.
    Prefix(String),
    /// The header has this value.
    Header(http::HeaderName, http::HeaderValue),
}

/// Which route a request was given to (an index into the router's routes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteTarget(pub usize);

/// Sends each request to its [`RouteTarget`]'s service, else to the default.
///
/// It owns its targets (a clone of the router clones each), so that a call
/// goes straight to the target, with no clone of the target per request
/// (which `oneshot` would need).
///
/// `tower::steer::Steer` routes the same way; it is not used because it keeps
/// a queue of the targets to poll again (a push and a pop per request, and a
/// queue to copy with every clone, which the fault layer makes per request
/// when rules are set), where leanproxy's targets are always ready.
#[derive(Clone, Debug)]
pub struct Router<S> {
    matchers: Arc<[RouteMatch]>,
    names: Arc<[Arc<str>]>,
    targets: Vec<S>,
    default: S,
}

impl<S> Router<S> {
    /// Routes to `default` unless one of `routes` (tried in order) matches.
    pub fn new(default: S, routes: Vec<(RouteMatch, S)>) -> Self {
        let (matchers, targets): (Vec<_>, Vec<_>) = routes.into_iter().unzip();
        let names: Vec<Arc<str>> = (0..targets.len())
            .map(|i| Arc::from(format!("route-{i}")))
            .collect();
        Self {
            matchers: matchers.into(),
            names: names.into(),
            targets,
            default,
        }
    }

    /// Names the routes (in order) for the request log: the exchange records
    /// the route it took by that name.
    pub fn with_names(mut self, names: Vec<Arc<str>>) -> Self {
        if names.len() == self.targets.len() {
            self.names = names.into();
        }
        self
    }

    /// The selector to place outside the layers that read the path.
    pub fn selector<T>(&self, inner: T) -> RouteSelect<T> {
        RouteSelect {
            matchers: self.matchers.clone(),
            names: self.names.clone(),
            inner,
        }
    }
}

impl<S> Service<Request<Body>> for Router<S>
where
    S: Service<Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Ready when every target is: the request's target is not known yet.
        let mut ready = true;
        for target in std::iter::once(&mut self.default).chain(&mut self.targets) {
            match target.poll_ready(cx)? {
                Poll::Ready(()) => {}
                Poll::Pending => ready = false,
            }
        }
        if ready {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let target = req.extensions().get::<RouteTarget>().map(|t| t.0);
        match target.and_then(|i| self.targets.get_mut(i)) {
            Some(target) => target.call(req),
            None => self.default.call(req),
        }
    }
}

/// Matches routes and rewrites the request for its target; see the module docs.
#[derive(Clone, Debug)]
pub struct RouteSelect<S> {
    matchers: Arc<[RouteMatch]>,
    names: Arc<[Arc<str>]>,
    inner: S,
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

/// Finds the request's route and rewrites the request for it.
fn select(matchers: &[RouteMatch], req: &mut Request<Body>) -> Option<usize> {
    for (i, matcher) in matchers.iter().enumerate() {
        match matcher {
            RouteMatch::Prefix(prefix) => {
                if let Some(pq) = strip_prefix(req.uri(), prefix) {
                    rewrite(req, pq);
                    return Some(i);
                }
            }
            RouteMatch::Header(name, value) => {
                let hit = req
                    .headers()
                    .get_all(name)
                    .iter()
                    .any(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()));
                if hit {
                    req.headers_mut().remove(name);
                    return Some(i);
                }
            }
        }
    }
    None
}

impl<S> Service<Request<Body>> for RouteSelect<S>
where
    S: Service<Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        if let Some(i) = select(&self.matchers, &mut req) {
            if let (Some(notes), Some(name)) = (
                req.extensions().get::<crate::exchange::ExchangeNotes>(),
                self.names.get(i),
            ) {
                notes.set_route(name.clone());
            }
            req.extensions_mut().insert(RouteTarget(i));
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

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
        let service = router.selector(router.clone());
        let call = |uri: &str, header: Option<&str>| {
            let mut req = Request::builder().uri(uri);
            if let Some(h) = header {
                req = req.header("x-target", h);
            }
            service
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
