//! The admin listener.
//!
//! A hand-written service matching `(method, path)`. Endpoints:
//!
//! | method | path | guarded | what |
//! | --- | --- | --- | --- |
//! | GET | `/healthz` | no | `{"status":"ok","state":{…}}` while the process serves; `state` says where the shared state is kept (`memory`, or `redis` with this replica's name, whether Redis answers, its latency and failed calls by operation) |
//! | GET | `/`, `/ui/{file}` | host only | the dashboard (it holds no data; it asks for the token when one is needed) |
//! | GET | `/api/info` | yes | the proxy's and the Mockbank's URLs, the version |
//! | POST | `/api/requests/{id}/replay` | yes | sends a kept exchange's request through the proxy again, optionally edited (`{"method", "path", "headers", "body"}`); its new request id |
//! | GET, POST | `/api/mockbank/{path}` | yes | the embedded Mockbank's `/_mockbank/{path}` (clock, users, entities, expire) |
//! | GET | `/api/reconnects` | yes | records (filters `state`, `entity_id`), history, counters |
//! | GET | `/api/reconnects/{entity_id}` | yes | one record (key: entity id, or `reconnect:<id>`) |
//! | DELETE | `/api/reconnects/{entity_id}` | yes | marks it resolved by admin |
//! | GET | `/api/webhooks` | yes | received webhooks without bodies, the newest `limit` (default 100, at most 1000) shown oldest first; `before=<id>` pages back (the answer's `next_before`); filters `type`, `verdict`, `outcome`; `kept`, `kept_bytes`, `history_bytes` |
//! | GET | `/api/webhooks/{id}` | yes | one delivery with its body (64 KiB shown), headers redacted |
//! | POST | `/api/webhooks/{id}/replay` | yes | sends it to the relay targets again (409 when only a prefix of its body is kept) |
//! | GET | `/api/webhooks/dead` | yes | relay deliveries set aside (answered 4xx but 408 / 429, or a damaged queue entry), with the reason |
//! | POST | `/api/webhooks/dead/{id}/replay` | yes | queues a dead letter again for its target, after those waiting |
//! | GET | `/api/requests` | yes | recent exchanges (filters `status`, `status_class` (`4xx`), `lean_status`, `entity_id`, `path` prefix, `method`, `fault` (a rule id, `any`, `none`), `route` (a `[[routes]]` name, `default`), `q` (text in the path, query or redacted bodies), `limit`; `view=summary`: the rows only) |
//! | GET | `/api/requests/{id}` | yes | one exchange, headers and bodies redacted |
//! | GET | `/api/requests.har` | yes | HAR 1.2 of the kept exchanges, of those the same filters pass, or of one (`id`) |
//! | GET | `/api/events` | yes | server-sent events: exchanges, reconnects, faults, webhooks |
//! | GET | `/metrics` | yes | Prometheus text format |
//! | GET | `/api/faults` | yes | fault rules with their counters |
//! | POST | `/api/faults` | yes | adds a rule (JSON, the `[[faults]]` shape; `?position=N` or `?before=<id>` places it, default last; `?dry_run=true` only checks it; `{"spec": "..."}` takes the compact grammar of `leanproxy faults add`); 400 names the bad field |
//! | DELETE | `/api/faults/{id}` | yes | removes a rule |
//! | POST | `/api/faults/{id}/pause`, `/resume` | yes | pauses a rule (kept with its counters, offered nothing) or resumes it |
//! | DELETE | `/api/faults` | yes | removes every rule |
//! | GET | `/api/tokens` | yes | the API token's scope and expiry (never the token) |
//! | DELETE | `/api/tokens` | yes | forgets the cached API tokens |
//! | POST | `/api/tokens/customer` | yes | `{"customer_id"}` → a `customer.<id>` token for the LinkSDK |
//!
//! Every other path is guarded: when an admin token is configured (it must be
//! when the listener is not on loopback), requests need
//! `Authorization: Bearer <token>`; without it they get 401.
//!
//! Every request but `/healthz` first passes the [`Guard`]: a `Host` that is
//! not the listener's own (or in `admin.allowed_hosts`) gets 403, and so does
//! a state-changing request from another site. The endpoints that read a
//! JSON body take only `content-type: application/json` (415 otherwise).
//! Answers carry no CORS headers: other sites' pages cannot read them.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, HeaderValue, Request, Response, StatusCode};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::auth::TokenSource;
use crate::body::Body;
use crate::fault::FaultRules;
use crate::lean::{json_response, ErrorEnvelope};
use crate::log::Telemetry;
use crate::reconnect::{ReconnectRegistry, Record, ResolvedBy, State};
use crate::secret::Secret;
use crate::webhooks::Webhooks;
use tokio::sync::watch;

mod answers;
mod dashboard;
mod endpoint;
mod faults;
mod guard;
mod observe;
mod tokens;
mod webhooks;

pub use answers::{FaultList, ReconnectList, Removed};
use endpoint::{Endpoint, Runs};
use guard::require_json;
pub use guard::{AllowedHost, Guard};

/// The admin API service.
#[derive(Clone, Debug)]
pub struct Admin {
    inner: Arc<AdminInner>,
}

#[derive(Debug, Clone)]
struct AdminInner {
    /// `Bearer <token>`, precomputed.
    expected: Option<Secret>,
    registry: ReconnectRegistry,
    webhooks: Webhooks,
    telemetry: Telemetry,
    shutdown: watch::Receiver<bool>,
    faults: FaultRules,
    tokens: Option<TokenSource>,
    route_tokens: Vec<(String, TokenSource)>,
    guard: Guard,
    /// Where the proxy listens (replays go there).
    proxy: Option<http::Uri>,
    /// The embedded Mockbank's service and its URL, when it runs.
    mockbank: Option<(Controls, String)>,
    /// The shared state's connection, with several replicas.
    state: Option<crate::state::RedisState>,
}

/// The embedded Mockbank as the admin listener reaches it: a service it hands
/// `/_mockbank/…` requests to (the admin knows nothing else of the Mockbank).
pub type Controls =
    tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, std::convert::Infallible>;

impl Admin {
    /// An admin service over the reconnect `registry`, the `webhooks` catcher
    /// and the request log's `telemetry`; `token` guards every endpoint but
    /// `/healthz`.
    pub fn new(
        token: Option<Secret>,
        registry: ReconnectRegistry,
        webhooks: Webhooks,
        telemetry: Telemetry,
    ) -> Self {
        let expected = token.map(|t| Secret::new(format!("Bearer {}", t.expose())));
        // A receiver whose sender is gone never reports shutdown.
        let (_, shutdown) = watch::channel(false);
        Self {
            inner: Arc::new(AdminInner {
                expected,
                registry,
                webhooks,
                telemetry,
                shutdown,
                faults: FaultRules::new(None),
                tokens: None,
                route_tokens: Vec::new(),
                guard: Guard::default(),
                proxy: None,
                mockbank: None,
                state: None,
            }),
        }
    }

    fn with(self, f: impl FnOnce(&mut AdminInner)) -> Self {
        let mut inner = (*self.inner).clone();
        f(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Ends event streams when `shutdown` turns true.
    pub fn with_shutdown(self, shutdown: watch::Receiver<bool>) -> Self {
        self.with(|i| i.shutdown = shutdown)
    }

    /// Serves `/api/tokens` over the OAuth2 token `source`, when configured.
    pub fn with_tokens(self, source: Option<TokenSource>) -> Self {
        self.with(|i| i.tokens = source)
    }

    /// Shows (and forgets) the token of each `[[routes]]` target, by route name.
    pub fn with_route_tokens(self, sources: Vec<(String, TokenSource)>) -> Self {
        self.with(|i| i.route_tokens = sources)
    }

    /// Checks every request's Host and Origin with `guard` (by default, one
    /// that knows no names beyond the listener's own).
    pub fn with_guard(self, guard: Guard) -> Self {
        self.with(|i| i.guard = guard)
    }

    /// Serves `/api/faults` over `rules` (which refuse new rules with their
    /// reason when the production guard holds).
    pub fn with_faults(self, rules: FaultRules) -> Self {
        self.with(|i| i.faults = rules)
    }

    /// Shows the shared state's backend on Redis (its latency, its errors) in
    /// `/healthz`.
    pub fn with_state(self, state: Option<crate::state::RedisState>) -> Self {
        self.with(|i| i.state = state)
    }

    /// Tells it where the proxy listens (the dashboard replays exchanges
    /// there) and the embedded Mockbank's service with its URL, when it runs.
    pub fn with_listeners(self, proxy: http::Uri, mockbank: Option<(Controls, String)>) -> Self {
        self.with(|i| {
            i.proxy = Some(proxy);
            i.mockbank = mockbank;
        })
    }

    /// `/healthz`: 200 while the process serves, with where the shared state
    /// is kept and, on Redis, whether it answers (a replica serves on
    /// without it, so it stays 200).
    fn health(&self) -> Response<Body> {
        let state = match &self.inner.state {
            Some(redis) => serde_json::to_value(redis.health()).unwrap_or_default(),
            None => json!({"backend": "memory"}),
        };
        json_response(StatusCode::OK, &json!({"status": "ok", "state": state}))
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

    async fn route(&self, req: Request<Body>) -> Response<Body> {
        let endpoint = Endpoint::of(req.method(), req.uri().path());
        // `/healthz` tells nothing; probes may call it by any name.
        if endpoint != Endpoint::Health {
            if let Some(refused) = self.inner.guard.check(&req, "admin listener") {
                return refused;
            }
            // The dashboard's page and files hold no data: it asks for the
            // token itself when the API needs one.
            let page = matches!(endpoint, Endpoint::Dashboard | Endpoint::UiAsset(_));
            if !page && !self.authorized(&req) {
                return unauthorized();
            }
        }
        match endpoint.runs() {
            Runs::Head => self.answer(endpoint, req.uri()).await,
            Runs::Blocking => {
                let admin = self.clone();
                off_thread(move || admin.answer_blocking(endpoint, &req)).await
            }
            Runs::ReadsJson => match (require_json(req.headers()), endpoint) {
                (Some(refused), _) => refused,
                (None, Endpoint::AddFault) => self.add_fault(req).await,
                (None, Endpoint::ReplayRequest(id)) => self.replay_request(&id, req).await,
                (None, _) => self.customer_token(req).await,
            },
            Runs::Forwarded => match endpoint {
                Endpoint::Mockbank(rest) => self.to_mockbank(&rest, req).await,
                _ => method_not_allowed(),
            },
        }
    }

    /// The answer of an endpoint made from the request head (the guard and
    /// the token were checked), on the runtime's thread: what it waits for is
    /// a state backend's answer (at once, in memory).
    async fn answer(&self, endpoint: Endpoint, uri: &http::Uri) -> Response<Body> {
        let query = uri.query();
        match endpoint {
            Endpoint::Health => self.health(),
            Endpoint::Reconnects => self.reconnects(query).await,
            Endpoint::Reconnect(key) => match self.inner.registry.get(&key).await {
                Some(record) => json_response(StatusCode::OK, &record),
                None => not_found(&key),
            },
            Endpoint::ResolveReconnect(key) => self.resolve_reconnect(&key).await,
            Endpoint::Tokens => self.token_info(),
            Endpoint::ForgetTokens => self.forget_token(),
            Endpoint::Faults => self.list_faults().await,
            Endpoint::MissingFaultId => {
                ErrorEnvelope::new("INVALID_PARAMETERS", "a fault rule id is required")
                    .into_response(StatusCode::BAD_REQUEST)
            }
            Endpoint::ClearFaults => self.clear_faults().await,
            Endpoint::RemoveFault(id) => self.remove_fault(&id).await,
            Endpoint::PauseFault(id, paused) => self.pause_fault(&id, paused).await,
            Endpoint::Request(id) => self.request(&id),
            Endpoint::Events => self.events(),
            Endpoint::Metrics => {
                let pending = self.inner.registry.pending_count().await;
                self.metrics(pending)
            }
            Endpoint::DeadLetters => json_response(
                StatusCode::OK,
                &json!({"dead": self.inner.webhooks.dead_letters().await}),
            ),
            Endpoint::Webhook(id) => match self.inner.webhooks.record(&id) {
                Some(record) => json_response(StatusCode::OK, &record),
                None => unknown_webhook(&id),
            },
            Endpoint::Dashboard => dashboard::page(),
            Endpoint::UiAsset(file) => dashboard::asset(&file),
            Endpoint::Info => self.info(),
            // Made on the blocking pool, or read after the head: answered
            // by `route`.
            Endpoint::Requests
            | Endpoint::Har
            | Endpoint::Webhooks
            | Endpoint::ReplayWebhook(_)
            | Endpoint::ReplayDead(_)
            | Endpoint::AddFault
            | Endpoint::CustomerToken
            | Endpoint::ReplayRequest(_)
            | Endpoint::Mockbank(_) => method_not_allowed(),
            Endpoint::MethodNotAllowed => method_not_allowed(),
            Endpoint::NotFound => ErrorEnvelope::new(
                "INVALID_URL",
                format!("no admin endpoint at {}", uri.path()),
            )
            .into_response(StatusCode::NOT_FOUND),
        }
    }

    /// The answer of an endpoint made on the blocking pool ([`Runs::Blocking`]).
    fn answer_blocking(&self, endpoint: Endpoint, req: &Request<Body>) -> Response<Body> {
        let query = req.uri().query();
        match endpoint {
            Endpoint::Requests => self.requests(query),
            Endpoint::Har => self.har(query),
            Endpoint::Webhooks => self.webhooks(query),
            Endpoint::ReplayDead(id) => self.replay_dead(&id),
            Endpoint::ReplayWebhook(id) => self.replay(&id),
            // Made on the runtime's thread: answered by `answer`.
            _ => method_not_allowed(),
        }
    }

    async fn resolve_reconnect(&self, key: &str) -> Response<Body> {
        let registry = &self.inner.registry;
        match registry.resolve_entity(key, ResolvedBy::Admin).await {
            Some(record) => {
                tracing::info!(target: "leanproxy::reconnect", key, reconnect_id = %record.reconnect_id, "reconnect resolved by admin");
                json_response(StatusCode::OK, &record)
            }
            None if registry.get(key).await.is_some() => ErrorEnvelope::new(
                "NOT_PENDING",
                format!("the reconnect of {key} is already resolved"),
            )
            .into_response(StatusCode::CONFLICT),
            None => not_found(key),
        }
    }

    async fn reconnects(&self, query: Option<&str>) -> Response<Body> {
        let mut state = None;
        let mut entity = None;
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match k.as_ref() {
                "state" => match v.as_ref() {
                    "pending" => state = Some(State::Pending),
                    "resolved" => state = Some(State::Resolved),
                    other => {
                        return ErrorEnvelope::new(
                            "INVALID_PARAMETERS",
                            format!("state: `{other}` is not one of pending, resolved"),
                        )
                        .into_response(StatusCode::BAD_REQUEST)
                    }
                },
                "entity_id" => entity = Some(v.into_owned()),
                other => {
                    return ErrorEnvelope::new(
                        "INVALID_PARAMETERS",
                        format!("unknown filter `{other}`; use state, entity_id"),
                    )
                    .into_response(StatusCode::BAD_REQUEST)
                }
            }
        }
        let registry = &self.inner.registry;
        let keep = |r: &Record| {
            state.is_none_or(|s| r.state == s)
                && entity
                    .as_deref()
                    .is_none_or(|e| r.entity_id.as_deref() == Some(e))
        };
        let reconnects: Vec<Record> = registry
            .list()
            .await
            .into_iter()
            .filter(|r| keep(r))
            .collect();
        json_response(
            StatusCode::OK,
            &ReconnectList {
                pending: registry.pending_count().await,
                stats: registry.stats(),
                reconnects,
            },
        )
    }
}

/// `answer`, made on the blocking pool.
async fn off_thread(answer: impl FnOnce() -> Response<Body> + Send + 'static) -> Response<Body> {
    crate::sync::blocking(answer).await.unwrap_or_else(|| {
        ErrorEnvelope::new("SHUTTING_DOWN", "leanproxy is shutting down")
            .into_response(StatusCode::SERVICE_UNAVAILABLE)
    })
}

fn unauthorized() -> Response<Body> {
    let mut response = ErrorEnvelope::new(
        "UNAUTHORIZED",
        "the admin API needs `Authorization: Bearer <admin.token>`",
    )
    .into_response(StatusCode::UNAUTHORIZED);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn bad_filter(message: &str) -> Response<Body> {
    ErrorEnvelope::new("INVALID_PARAMETERS", message).into_response(StatusCode::BAD_REQUEST)
}

fn unknown_webhook(id: &str) -> Response<Body> {
    ErrorEnvelope::new("UNKNOWN_WEBHOOK", format!("no webhook {id} is kept"))
        .into_response(StatusCode::NOT_FOUND)
}

fn not_found(key: &str) -> Response<Body> {
    ErrorEnvelope::new("UNKNOWN_ENTITY", format!("no reconnect recorded for {key}"))
        .into_response(StatusCode::NOT_FOUND)
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
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let admin = self.clone();
        Box::pin(async move { Ok(admin.route(req).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::AtOnce;
    use http::Method;
    use tower::ServiceExt;

    fn admin(token: Option<Secret>, registry: ReconnectRegistry) -> Admin {
        let webhooks = Webhooks::new(
            crate::webhooks::WebhookConfig {
                secret: None,
                policy: crate::webhooks::Policy::Report,
                body_limit: 1024,
                history: 10,
            },
            crate::webhooks::Store::new(10, 1 << 20),
            crate::webhooks::Claims::in_memory(40),
            None,
            registry.clone(),
            Telemetry::default(),
        );
        Admin::new(token, registry, webhooks, Telemetry::default())
    }

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
        let admin = admin(Some(Secret::new("t0k")), ReconnectRegistry::in_memory(10));
        assert_eq!(status(&admin, "/healthz", None).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn guarded_paths_need_the_bearer_token() {
        let admin = admin(Some(Secret::new("t0k")), ReconnectRegistry::in_memory(10));
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
    async fn answers_made_off_the_runtime_thread_are_guarded_and_routed_alike() {
        let admin = admin(Some(Secret::new("t0k")), ReconnectRegistry::in_memory(10));
        let ok = Some("Bearer t0k");
        for path in ["/api/requests", "/api/requests.har", "/api/webhooks"] {
            assert_eq!(status(&admin, path, None).await, StatusCode::UNAUTHORIZED);
            assert_eq!(status(&admin, path, ok).await, StatusCode::OK, "{path}");
            let slashed = format!("/{path}/").replace("/api/", "/api//");
            assert_eq!(
                status(&admin, &slashed, ok).await,
                StatusCode::OK,
                "{slashed}"
            );
            let head = Request::head(path)
                .header(header::AUTHORIZATION, "Bearer t0k")
                .body(crate::body::empty())
                .unwrap();
            assert_eq!(
                admin.clone().oneshot(head).await.unwrap().status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "HEAD {path}"
            );
        }
        assert_eq!(
            status(&admin, "/api/webhooks?colour=red", ok).await,
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn reconnects_can_be_listed_filtered_and_resolved() {
        use crate::reconnect::{Api, Sighting, Source};
        let registry = ReconnectRegistry::in_memory(10);
        registry
            .observe_reconnect(Sighting {
                entity_id: Some("e-1".into()),
                reconnect_id: "r-1".into(),
                results_id: None,
                api: Api::V1,
                path: "/data/v1/accounts".into(),
                source: Source::Upstream,
            })
            .at_once();
        let admin = admin(None, registry.clone());
        let call = |method: Method, path: &str| {
            let admin = admin.clone();
            let req = Request::builder()
                .method(method)
                .uri(path)
                .body(crate::body::empty())
                .unwrap();
            async move {
                let r = admin.oneshot(req).await.unwrap();
                let status = r.status();
                let bytes = http_body_util::BodyExt::collect(r.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                (
                    status,
                    serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
                )
            }
        };
        let (status, list) = call(Method::GET, "/api/reconnects?state=pending").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["pending"], 1);
        assert_eq!(list["reconnects"][0]["reconnect_id"], "r-1");
        assert_eq!(
            call(Method::GET, "/api/reconnects?state=resolved").await.1["reconnects"],
            serde_json::json!([])
        );
        assert_eq!(
            call(Method::GET, "/api/reconnects?state=maybe").await.0,
            StatusCode::BAD_REQUEST
        );
        let (status, one) = call(Method::GET, "/api/reconnects/e-1").await;
        assert_eq!(
            (status, one["state"].as_str()),
            (StatusCode::OK, Some("pending"))
        );
        let (status, done) = call(Method::DELETE, "/api/reconnects/e-1").await;
        assert_eq!(
            (status, done["resolved_by"].as_str()),
            (StatusCode::OK, Some("admin"))
        );
        assert_eq!(
            call(Method::DELETE, "/api/reconnects/e-1").await.0,
            StatusCode::CONFLICT
        );
        assert_eq!(
            call(Method::GET, "/api/reconnects/e-2").await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn a_token_prefix_is_not_enough() {
        let admin = admin(Some(Secret::new("t0k")), ReconnectRegistry::in_memory(10));
        assert_eq!(
            status(&admin, "/api/x", Some("Bearer t0")).await,
            StatusCode::UNAUTHORIZED
        );
    }
}
