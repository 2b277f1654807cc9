//! The admin listener.
//!
//! A hand-written service matching `(method, path)`. Endpoints:
//!
//! | method | path | guarded | what |
//! | --- | --- | --- | --- |
//! | GET | `/healthz` | no | `{"status":"ok"}` while the process serves |
//!
//! Every other path is guarded: when an admin token is configured (it must be
//! when the listener is not on loopback), requests need
//! `Authorization: Bearer <token>`; without it they get 401.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::body::Body;
use crate::config::Secret;
use crate::lean::{json_response, ErrorEnvelope};

/// The admin API service.
#[derive(Clone, Debug)]
pub struct Admin {
    inner: Arc<AdminInner>,
}

#[derive(Debug)]
struct AdminInner {
    /// `Bearer <token>`, precomputed.
    expected: Option<Secret>,
}

impl Admin {
    /// An admin service; `token` guards every endpoint but `/healthz`.
    pub fn new(token: Option<Secret>) -> Self {
        let expected = token.map(|t| Secret::new(format!("Bearer {}", t.expose())));
        Self {
            inner: Arc::new(AdminInner { expected }),
        }
    }

    fn authorized(&self, req: &Request<Body>) -> bool {
        let Some(expected) = &self.inner.expected else {
            return true;
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        // Constant time: the answer's timing must not reveal how much of a
        // guessed token was right.
        given.ct_eq(expected.expose().as_bytes()).into()
    }

    fn route(&self, req: &Request<Body>) -> Response<Body> {
        let path = req.uri().path();
        if path == "/healthz" {
            return match *req.method() {
                Method::GET | Method::HEAD => {
                    json_response(StatusCode::OK, &json!({"status": "ok"}))
                }
                _ => method_not_allowed(),
            };
        }
        if !self.authorized(req) {
            let mut response = ErrorEnvelope::new(
                "UNAUTHORIZED",
                "the admin API needs `Authorization: Bearer <admin.token>`",
            )
            .into_response(StatusCode::UNAUTHORIZED);
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        ErrorEnvelope::new("INVALID_URL", format!("no admin endpoint at {path}"))
            .into_response(StatusCode::NOT_FOUND)
    }
}

fn method_not_allowed() -> Response<Body> {
    ErrorEnvelope::new(
        "INVALID_HTTP_METHOD",
        "method not allowed on this admin endpoint",
    )
    .into_response(StatusCode::METHOD_NOT_ALLOWED)
}

impl tower::Service<Request<Body>> for Admin {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        ready(Ok(self.route(&req)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn status(admin: &Admin, path: &str, auth: Option<&str>) -> StatusCode {
        let mut req = Request::get(path).body(crate::body::empty()).unwrap();
        if let Some(auth) = auth {
            req.headers_mut()
                .insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        }
        admin.clone().oneshot(req).await.unwrap().status()
    }

    #[tokio::test]
    async fn healthz_is_open_even_with_a_token() {
        let admin = Admin::new(Some(Secret::new("t0k")));
        assert_eq!(status(&admin, "/healthz", None).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn guarded_paths_need_the_bearer_token() {
        let admin = Admin::new(Some(Secret::new("t0k")));
        assert_eq!(
            status(&admin, "/api/x", None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&admin, "/api/x", Some("Bearer nope")).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&admin, "/api/x", Some("Bearer t0k")).await,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn a_token_prefix_is_not_enough() {
        let admin = Admin::new(Some(Secret::new("t0k")));
        assert_eq!(
            status(&admin, "/api/x", Some("Bearer t0")).await,
            StatusCode::UNAUTHORIZED
        );
    }
}
