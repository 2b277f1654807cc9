//! [`AdminClient`]: the admin API of a running leanproxy, typed.

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::admin::{FaultList, ReconnectList, Removed};
use crate::auth::Minted;
use crate::body::{self, Body};
use crate::fault::{Placement, RawRule, RuleView};
use crate::reconnect::Record;
use crate::secret::Secret;

/// Why a call to the admin API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL could not be built.
    #[error("bad admin URL {0}")]
    Url(String),
    /// Nothing answered.
    #[error("cannot reach the admin API at {url} ({detail}); is leanproxy running? (--admin URL)")]
    Unreachable {
        /// The admin base URL.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The admin API refused, with the message of its error envelope.
    #[error("{status}: {message}")]
    Refused {
        /// HTTP status.
        status: StatusCode,
        /// The envelope's `message`.
        message: String,
    },
    /// The answer was not what the admin API sends.
    #[error("the admin API answered {status} with a body that is not the expected JSON")]
    NotJson {
        /// HTTP status.
        status: StatusCode,
    },
}

impl ClientError {
    /// The process exit code for it: 3 when what was asked for does not
    /// exist (404), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Refused { status, .. } if *status == StatusCode::NOT_FOUND => 3,
            _ => 1,
        }
    }
}

/// The admin API of a running leanproxy at `base` (e.g.
/// `http://127.0.0.1:7071`), answering in the types the admin service writes.
#[derive(Clone)]
pub struct AdminClient {
    base: String,
    token: Option<Secret>,
    client: Client<HttpConnector, Body>,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client for `base`, sending `token` as `Authorization: Bearer` when
    /// given (`LEANPROXY_ADMIN_TOKEN`).
    pub fn new(base: &str, token: Option<Secret>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            client: Client::builder(TokioExecutor::new()).build_http::<Body>(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        json: Option<&Value>,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
        }
        let body = match json {
            Some(v) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                body::full(v.to_string())
            }
            None => body::empty(),
        };
        let request = request
            .body(body)
            .map_err(|e| ClientError::Url(format!("{url}: {e}")))?;
        self.client
            .request(request)
            .await
            .map_err(|e| self.unreachable(crate::client::classify(&e).detail))
    }

    fn unreachable(&self, detail: String) -> ClientError {
        ClientError::Unreachable {
            url: self.base.clone(),
            detail,
        }
    }

    /// Calls `method path` and reads the answer as a `T`; an error envelope
    /// becomes [`ClientError::Refused`].
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        json: Option<&Value>,
    ) -> Result<T, ClientError> {
        let response = self.send(method, path, json).await?;
        let status = response.status();
        let bytes: Bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.unreachable(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(str::to_string))
                .ok_or(ClientError::NotJson { status })?;
            return Err(ClientError::Refused { status, message });
        }
        serde_json::from_slice(&bytes).map_err(|_| ClientError::NotJson { status })
    }

    /// The fault rules with their counters.
    pub async fn faults(&self) -> Result<FaultList, ClientError> {
        self.call(Method::GET, "/api/faults", None).await
    }

    /// Adds `rule` where `placement` says; the rule as installed.
    pub async fn add_fault(
        &self,
        rule: &RawRule,
        placement: &Placement,
    ) -> Result<RuleView, ClientError> {
        let query = match placement {
            Placement::Last => String::new(),
            Placement::Position(n) => format!("?position={n}"),
            Placement::Before(id) => format!(
                "?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("before", id)
                    .finish()
            ),
        };
        let rule = serde_json::to_value(rule).map_err(|e| ClientError::Url(e.to_string()))?;
        self.call(Method::POST, &format!("/api/faults{query}"), Some(&rule))
            .await
    }

    /// Removes the rule `id`.
    pub async fn remove_fault(&self, id: &str) -> Result<String, ClientError> {
        let path = format!("/api/faults/{}", segment(id));
        let removed: Removed<String> = self.call(Method::DELETE, &path, None).await?;
        Ok(removed.removed)
    }

    /// Removes every rule; how many there were.
    pub async fn clear_faults(&self) -> Result<u64, ClientError> {
        let removed: Removed<u64> = self.call(Method::DELETE, "/api/faults", None).await?;
        Ok(removed.removed)
    }

    /// Pauses (`true`) or resumes the rule `id`.
    pub async fn pause_fault(&self, id: &str, paused: bool) -> Result<RuleView, ClientError> {
        let verb = if paused { "pause" } else { "resume" };
        let path = format!("/api/faults/{}/{verb}", segment(id));
        self.call(Method::POST, &path, None).await
    }

    /// The reconnect records, all or only `pending` / `resolved` ones.
    pub async fn reconnects(&self, state: Option<&str>) -> Result<ReconnectList, ClientError> {
        let path = match state {
            Some(state) => format!(
                "/api/reconnects?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("state", state)
                    .finish()
            ),
            None => "/api/reconnects".to_string(),
        };
        self.call(Method::GET, &path, None).await
    }

    /// The record of `key` (an entity id, or `reconnect:<id>`).
    pub async fn reconnect(&self, key: &str) -> Result<Record, ClientError> {
        let path = format!("/api/reconnects/{}", segment(key));
        self.call(Method::GET, &path, None).await
    }

    /// Marks the reconnect of `key` resolved; the resolved record.
    pub async fn resolve(&self, key: &str) -> Result<Record, ClientError> {
        let path = format!("/api/reconnects/{}", segment(key));
        self.call(Method::DELETE, &path, None).await
    }

    /// A `customer.<id>` token for the LinkSDK.
    pub async fn customer_token(&self, customer_id: &str) -> Result<Minted, ClientError> {
        let body = json!({"customer_id": customer_id});
        self.call(Method::POST, "/api/tokens/customer", Some(&body))
            .await
    }

    /// Follows `/api/events`, calling `event` with each event's name and JSON
    /// data until the stream ends.
    pub async fn events(&self, mut event: impl FnMut(&str, &Value)) -> Result<(), ClientError> {
        let response = self.send(Method::GET, "/api/events", None).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(ClientError::NotJson { status });
        }
        let mut body = response.into_body();
        let mut buffer = String::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.unreachable(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buffer.push_str(&String::from_utf8_lossy(&data));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut name = "";
                let mut payload = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = v;
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        payload.push_str(v);
                    }
                }
                if let Ok(value) = serde_json::from_str::<Value>(&payload) {
                    event(name, &value);
                }
            }
        }
        Ok(())
    }
}

/// `value` as one path segment: the bytes that would end or change the path
/// are percent-encoded; the rest (`:` of `reconnect:<id>` included, which the
/// admin API matches as written) go as they are.
fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.:~@!$&'()*,;=".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_segment_cannot_change_the_path() {
        assert_eq!(super::segment("reconnect:r-1"), "reconnect:r-1");
        assert_eq!(super::segment("a/b?c#d e%"), "a%2Fb%3Fc%23d%20e%25");
    }
}

/// The control API (`/_mockbank/…`) of a running Mockbank at `base` (e.g.
/// `http://127.0.0.1:7072`), alone or embedded in the proxy.
#[derive(Clone, Debug)]
pub struct MockbankClient {
    inner: AdminClient,
}

impl MockbankClient {
    /// A client for the Mockbank at `base`.
    pub fn new(base: &str) -> Self {
        Self {
            inner: AdminClient::new(base, None),
        }
    }

    /// `method /_mockbank/{path}` with an optional JSON body; the JSON answer.
    pub async fn control(
        &self,
        method: Method,
        path: &str,
        json: Option<&Value>,
    ) -> Result<Value, ClientError> {
        self.inner
            .call(method, &format!("/_mockbank/{path}"), json)
            .await
    }
}
