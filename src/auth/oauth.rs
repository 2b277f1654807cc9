//! OAuth2 client credentials (Lean's current API): a bearer token fetched from
//! the target's token URL (`grant_type=client_credentials`, `scope=api`), cached,
//! refreshed before it expires. Concurrent requests that find it missing or
//! expiring cause one token request between them (single flight). The token is
//! never logged or shown; only its scope and expiry are.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{header, HeaderValue, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::body::{self, Body};
use crate::secret::Secret;

/// How long a token request may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(15);

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint refused the client credentials.
    #[error("the token endpoint {url} refused the client credentials ({status}{detail}); check client_id and client_secret")]
    Refused {
        /// Token URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The OAuth `error`, when given.
        detail: String,
    },
    /// The token endpoint refused the scope asked for (`invalid_scope`): for a
    /// customer token, a customer the application does not have.
    #[error("the token endpoint {url} refused the scope `{scope}` ({status}, invalid_scope); a customer token needs the customer_id of one of this application's customers")]
    Scope {
        /// Token URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The scope asked for.
        scope: String,
    },
    /// The token endpoint could not be reached or answered nonsense.
    #[error("the token endpoint {url} could not be used: {detail}")]
    Unreachable {
        /// Token URL.
        url: String,
        /// What failed.
        detail: String,
    },
}

impl TokenError {
    /// `token_refused` or `token_unreachable`.
    pub fn cause(&self) -> &'static str {
        match self {
            TokenError::Refused { .. } | TokenError::Scope { .. } => "token_refused",
            TokenError::Unreachable { .. } => "token_unreachable",
        }
    }
}

/// A token, kept with its expiry.
#[derive(Clone)]
struct Cached {
    value: HeaderValue,
    scope: String,
    refresh_at: Instant,
    expires_at: DateTime<Utc>,
}

/// What the admin API shows of a token: never the token itself.
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    /// Granted scope.
    pub scope: String,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// A minted token (customer tokens for the LinkSDK).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Minted {
    /// The token.
    pub access_token: String,
    /// Granted scope.
    pub scope: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds of validity.
    pub expires_in: u64,
}

/// Where and how to get tokens.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// The token endpoint.
    pub url: Uri,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: Secret,
    /// Scope of the API token.
    pub scope: String,
    /// Refresh this long before expiry.
    pub refresh_margin: Duration,
}

/// The cached API token. Cheap to clone.
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<TokenState>,
}

struct TokenState {
    config: TokenConfig,
    client: Client<HttpsConnector<HttpConnector>, Body>,
    cached: Mutex<Option<Cached>>,
    /// Held by the one request fetching a token.
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("url", &self.inner.config.url.to_string())
            .field("client_id", &self.inner.config.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    token_type: String,
    expires_in: u64,
}

impl TokenSource {
    /// A token source using `tls` for https token URLs.
    pub fn new(config: TokenConfig, tls: rustls::ClientConfig) -> Self {
        let connector = crate::client::tls::http1_connector(tls);
        Self {
            inner: Arc::new(TokenState {
                config,
                client: Client::builder(TokioExecutor::new()).build(connector),
                cached: Mutex::new(None),
                fetching: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn cached(&self) -> Option<Cached> {
        self.inner
            .cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn fresh(&self) -> Option<HeaderValue> {
        self.cached()
            .filter(|c| Instant::now() < c.refresh_at)
            .map(|c| c.value)
    }

    /// The `Authorization` value to send: the cached token, or a new one.
    pub async fn bearer(&self) -> Result<HeaderValue, TokenError> {
        if let Some(v) = self.fresh() {
            return Ok(v);
        }
        let _only_one = self.inner.fetching.lock().await;
        // Another request may have fetched it while this one waited.
        if let Some(v) = self.fresh() {
            return Ok(v);
        }
        let answer = self.request(&self.inner.config.scope).await?;
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", answer.access_token)).map_err(|_| {
                TokenError::Unreachable {
                    url: self.inner.config.url.to_string(),
                    detail: "the token is not a valid header value".into(),
                }
            })?;
        value.set_sensitive(true);
        let lifetime = Duration::from_secs(answer.expires_in);
        let refresh_in = lifetime.saturating_sub(self.inner.config.refresh_margin);
        *self.inner.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(Cached {
            value: value.clone(),
            scope: answer.scope,
            refresh_at: Instant::now() + refresh_in,
            expires_at: Utc::now() + chrono::Duration::from_std(lifetime).unwrap_or_default(),
        });
        tracing::info!(target: "leanproxy::auth", expires_in = answer.expires_in, "new API token");
        Ok(value)
    }

    /// Forgets the cached token if it is still `used` (after a 401), so the next
    /// request fetches a new one.
    pub fn invalidate(&self, used: &HeaderValue) {
        let mut cached = self.inner.cached.lock().unwrap_or_else(|p| p.into_inner());
        if cached.as_ref().is_some_and(|c| c.value == *used) {
            *cached = None;
        }
    }

    /// Forgets the cached token.
    pub fn clear(&self) {
        *self.inner.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Scope and expiry of the cached token.
    pub fn info(&self) -> Option<TokenInfo> {
        self.cached().map(|c| TokenInfo {
            scope: c.scope,
            expires_at: c.expires_at,
        })
    }

    /// Mints a `customer.<id>` token for the LinkSDK (not cached).
    pub async fn customer_token(&self, customer_id: &str) -> Result<Minted, TokenError> {
        let a = self.request(&format!("customer.{customer_id}")).await?;
        Ok(Minted {
            access_token: a.access_token,
            scope: a.scope,
            token_type: if a.token_type.is_empty() {
                "Bearer".into()
            } else {
                a.token_type
            },
            expires_in: a.expires_in,
        })
    }

    async fn request(&self, scope: &str) -> Result<TokenAnswer, TokenError> {
        let c = &self.inner.config;
        let url = c.url.to_string();
        let unreachable = |detail: String| TokenError::Unreachable {
            url: url.clone(),
            detail,
        };
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &c.client_id)
            .append_pair("client_secret", c.client_secret.expose())
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", scope)
            .finish();
        let request = Request::post(c.url.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(body::full(form))
            .map_err(|e| unreachable(e.to_string()))?;
        let response =
            match tokio::time::timeout(TOKEN_TIMEOUT, self.inner.client.request(request)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(unreachable(crate::client::classify(&e).detail)),
                Err(_) => {
                    return Err(unreachable(format!(
                        "no answer within {}s",
                        TOKEN_TIMEOUT.as_secs()
                    )))
                }
            };
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        if matches!(
            status,
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            let error = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string));
            if error.as_deref() == Some("invalid_scope") {
                return Err(TokenError::Scope {
                    url,
                    status: status.as_u16(),
                    scope: scope.to_string(),
                });
            }
            let detail = error.map(|e| format!(", {e}")).unwrap_or_default();
            return Err(TokenError::Refused {
                url,
                status: status.as_u16(),
                detail,
            });
        }
        if !status.is_success() {
            return Err(unreachable(format!("answered {status}")));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| unreachable(format!("the answer is not a token: {e}")))
    }
}
