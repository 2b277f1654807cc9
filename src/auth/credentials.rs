//! [`CredentialsLayer`]: Lean's credentials on the way out. `lean-app-token` (v1)
//! and an OAuth2 bearer token (v2); when both are configured, paths with a `/v2/`
//! segment get the bearer token and the others the app token. A 401 answer to a
//! bearer-authenticated, idempotent request without a body refreshes the token
//! and retries once.

use std::task::{Context, Poll};

use http::{header, Method, Request, Response, StatusCode};
use http_body::Body as _;
use serde_json::json;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceExt};

use super::oauth::TokenSource;
use super::{AppTokenLayer, TokenPolicy};
use crate::body::{self, Body};
use crate::future::ResponseFuture;
use crate::lean::ErrorEnvelope;

/// Adds `lean-app-token` and/or `Authorization: Bearer`.
#[derive(Clone, Debug, Default)]
pub struct CredentialsLayer {
    app_token: Option<AppTokenLayer>,
    bearer: Option<(TokenSource, TokenPolicy)>,
}

impl CredentialsLayer {
    /// No credentials.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `lean-app-token`.
    pub fn app_token(mut self, layer: AppTokenLayer) -> Self {
        self.app_token = Some(layer);
        self
    }

    /// Adds `Authorization: Bearer` from `source` under `policy`.
    pub fn bearer(mut self, source: TokenSource, policy: TokenPolicy) -> Self {
        self.bearer = Some((source, policy));
        self
    }

    /// The token source, when OAuth2 is configured.
    pub fn token_source(&self) -> Option<&TokenSource> {
        self.bearer.as_ref().map(|(s, _)| s)
    }
}

impl<S> Layer<S> for CredentialsLayer {
    type Service = Credentials<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Credentials {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service built by [`CredentialsLayer`].
#[derive(Clone, Debug)]
pub struct Credentials<S> {
    inner: S,
    layer: CredentialsLayer,
}

fn wants_bearer(path: &str) -> bool {
    crate::exchange::Api::of_path(path) == Some(crate::exchange::Api::V2)
}

fn token_failure(e: &super::oauth::TokenError) -> Response<Body> {
    tracing::warn!(target: "leanproxy::auth", cause = e.cause(), error = %e, "no API token");
    ErrorEnvelope::new(
        "BAD_GATEWAY",
        format!("leanproxy: cannot get an API token: {e}"),
    )
    .with_metadata(json!({"source": "leanproxy", "cause": e.cause()}))
    .into_response(StatusCode::BAD_GATEWAY)
}

impl<S> Service<Request<Body>> for Credentials<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let bearer = self.layer.bearer.as_ref().filter(|(_, policy)| {
            !(*policy == TokenPolicy::Keep && req.headers().contains_key(header::AUTHORIZATION))
        });
        let use_bearer = match (&self.layer.app_token, bearer) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(_), Some(_)) => wants_bearer(req.uri().path()),
        };
        if !use_bearer {
            if let Some(app) = &self.layer.app_token {
                app.apply(req.headers_mut());
            }
            return ResponseFuture::inner(self.inner.call(req));
        }
        let Some((source, _)) = bearer.cloned() else {
            unreachable!("use_bearer implies a bearer source")
        };
        // Boxed so the future does not name `S::Future` across awaits.
        let clone = self.inner.clone();
        let inner = BoxCloneService::new(std::mem::replace(&mut self.inner, clone));
        ResponseFuture::boxed(with_bearer(source, inner, req))
    }
}

async fn with_bearer<E>(
    source: TokenSource,
    mut inner: BoxCloneService<Request<Body>, Response<Body>, E>,
    mut req: Request<Body>,
) -> Result<Response<Body>, E> {
    let token = match source.bearer().await {
        Ok(t) => t,
        Err(e) => return Ok(token_failure(&e)),
    };
    // Only idempotent requests without a body can be sent again.
    let retry = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::PUT
    ) && req.body().is_end_stream();
    let again = retry.then(|| {
        let mut copy = Request::new(body::empty());
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        copy
    });
    req.headers_mut()
        .insert(header::AUTHORIZATION, token.clone());
    let response = inner.ready().await?.call(req).await?;
    if response.status() != StatusCode::UNAUTHORIZED {
        return Ok(response);
    }
    let Some(mut again) = again else {
        return Ok(response);
    };
    source.invalidate(&token);
    let token = match source.bearer().await {
        Ok(t) => t,
        Err(e) => return Ok(token_failure(&e)),
    };
    tracing::info!(target: "leanproxy::auth", "401 with the cached token: refreshed it and retried once");
    again.headers_mut().insert(header::AUTHORIZATION, token);
    inner.ready().await?.call(again).await
}
