//! Credentials on the way out.
//!
//! [`AppTokenLayer`] adds Lean's `lean-app-token` header to every request, so the
//! app carries no credential. The value is an [`AppTokenValue`], checked once to be a
//! header value and marked sensitive: HTTP/2 never indexes it and `Debug` output
//! never shows it. [`TokenSource`]
//! keeps an OAuth2 client-credentials token; [`CredentialsLayer`] puts either on
//! each request (v1 paths the app token, v2 paths the bearer token).

mod credentials;
mod oauth;

pub use credentials::{Credentials, CredentialsLayer};
pub use oauth::{Minted, TokenConfig, TokenError, TokenInfo, TokenSource};

use std::task::{Context, Poll};

use http::header::{HeaderName, HeaderValue, InvalidHeaderValue};
use http::Request;
use tower::{Layer, Service};

use crate::secret::Secret;

/// Lean's v1 credential header.
pub static LEAN_APP_TOKEN: HeaderName = HeaderName::from_static("lean-app-token");

/// What the token layer does when the app sends its own `lean-app-token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenPolicy {
    /// Replace the app's value with the configured one.
    #[default]
    Override,
    /// Keep the app's value; add the configured one only when absent.
    Keep,
}

/// A `lean-app-token` value: checked to be a header value when it is made
/// (the configuration does it once), and marked sensitive. `Debug` never shows
/// it.
#[derive(Clone, PartialEq, Eq)]
pub struct AppTokenValue(HeaderValue);

impl AppTokenValue {
    /// `token`, when it can be a header value.
    pub fn new(token: &str) -> Result<Self, InvalidHeaderValue> {
        let mut value = HeaderValue::from_str(token)?;
        value.set_sensitive(true);
        Ok(Self(value))
    }

    /// The header value (sensitive).
    pub fn header(&self) -> &HeaderValue {
        &self.0
    }

    /// The token's text. Named so that every use of it stands out, as
    /// [`Secret::expose`].
    pub fn expose(&self) -> &str {
        // Made from a `&str` of header characters: always text.
        self.0.to_str().unwrap_or_default()
    }

    /// The token's text, as a [`Secret`] (what the request log scrubs, what
    /// the embedded Mockbank accepts).
    pub fn secret(&self) -> Secret {
        Secret::new(self.expose())
    }
}

impl std::fmt::Debug for AppTokenValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppTokenValue([redacted])")
    }
}

/// Adds `lean-app-token` to requests.
#[derive(Clone)]
pub struct AppTokenLayer {
    value: HeaderValue,
    policy: TokenPolicy,
}

impl AppTokenLayer {
    /// A layer injecting `token` under `policy`.
    pub fn new(token: AppTokenValue, policy: TokenPolicy) -> Self {
        Self {
            value: token.0,
            policy,
        }
    }
}

impl AppTokenLayer {
    /// Puts the token in `headers` per the policy.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        match self.policy {
            TokenPolicy::Override => {
                headers.insert(&LEAN_APP_TOKEN, self.value.clone());
            }
            TokenPolicy::Keep => match headers.get_mut(&LEAN_APP_TOKEN) {
                Some(own) => own.set_sensitive(true),
                None => {
                    headers.insert(&LEAN_APP_TOKEN, self.value.clone());
                }
            },
        }
    }
}

impl std::fmt::Debug for AppTokenLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppTokenLayer")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AppTokenLayer {
    type Service = AppToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AppToken {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service built by [`AppTokenLayer`].
#[derive(Clone, Debug)]
pub struct AppToken<S> {
    inner: S,
    layer: AppTokenLayer,
}

impl<S, B> Service<Request<B>> for AppToken<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        self.layer.apply(req.headers_mut());
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{service_fn, ServiceExt};

    async fn sent_token(policy: TokenPolicy, own: Option<&str>) -> HeaderValue {
        let echo = service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(req.headers()[&LEAN_APP_TOKEN].clone())
        });
        let svc = AppTokenLayer::new(AppTokenValue::new("configured").unwrap(), policy).layer(echo);
        let mut req = Request::new(());
        if let Some(own) = own {
            req.headers_mut()
                .insert(&LEAN_APP_TOKEN, HeaderValue::from_str(own).unwrap());
        }
        svc.oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn override_replaces_the_apps_token() {
        assert_eq!(
            sent_token(TokenPolicy::Override, Some("app")).await,
            "configured"
        );
    }

    #[tokio::test]
    async fn keep_leaves_the_apps_token() {
        assert_eq!(sent_token(TokenPolicy::Keep, Some("app")).await, "app");
        assert_eq!(sent_token(TokenPolicy::Keep, None).await, "configured");
    }

    #[tokio::test]
    async fn injected_value_is_sensitive() {
        let v = sent_token(TokenPolicy::Override, None).await;
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("configured"));
    }
}
