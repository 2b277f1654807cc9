//! OAuth2 tokens on the admin API: never the API token itself, only its scope and
//! expiry; customer tokens are minted for the LinkSDK.

use http::{Request, Response, StatusCode};
use serde_json::json;

use super::Admin;
use crate::body::{self, Body};
use crate::lean::{json_response, ErrorEnvelope};

fn not_configured() -> Response<Body> {
    ErrorEnvelope::new(
        "NO_CLIENT_CREDENTIALS",
        "no OAuth2 client credentials are configured (auth.client_id / auth.client_secret)",
    )
    .into_response(StatusCode::CONFLICT)
}

impl Admin {
    pub(super) fn token_info(&self) -> Response<Body> {
        let source = self.inner.tokens.as_ref();
        let routes: serde_json::Map<String, serde_json::Value> = self
            .inner
            .route_tokens
            .iter()
            .map(|(name, s)| (name.clone(), json!(s.info())))
            .collect();
        json_response(
            StatusCode::OK,
            &json!({
                "configured": source.is_some() || !routes.is_empty(),
                "api": source.and_then(|s| s.info()),
                "routes": routes,
            }),
        )
    }

    pub(super) fn forget_token(&self) -> Response<Body> {
        let inner = &self.inner;
        if inner.tokens.is_none() && inner.route_tokens.is_empty() {
            return not_configured();
        }
        for source in inner
            .tokens
            .iter()
            .chain(inner.route_tokens.iter().map(|(_, s)| s))
        {
            source.clear();
        }
        json_response(StatusCode::OK, &json!({"cleared": true}))
    }

    pub(super) async fn customer_token(&self, req: Request<Body>) -> Response<Body> {
        let Some(source) = self.inner.tokens.clone() else {
            return not_configured();
        };
        let bytes = body::read_limited(req.into_body(), 4096)
            .await
            .unwrap_or_default();
        let customer = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("customer_id")
                    .and_then(|c| c.as_str())
                    .map(str::to_string)
            })
            .filter(|c| !c.is_empty());
        let Some(customer) = customer else {
            return ErrorEnvelope::new(
                "MISSING_PARAMETERS",
                "customer_id: required (JSON body {\"customer_id\": ...})",
            )
            .into_response(StatusCode::BAD_REQUEST);
        };
        match source.customer_token(&customer).await {
            Ok(minted) => {
                tracing::info!(target: "leanproxy::auth", scope = %minted.scope, "customer token minted");
                json_response(StatusCode::CREATED, &minted)
            }
            Err(e) => ErrorEnvelope::new(
                "BAD_GATEWAY",
                format!("leanproxy: cannot mint a customer token: {e}"),
            )
            .with_metadata(json!({"source": "leanproxy", "cause": e.cause()}))
            .into_response(StatusCode::BAD_GATEWAY),
        }
    }
}
