//! [`FaultLayer`]: applies what the rules (or the `x-leanproxy-fault` header)
//! decide. It sits inside the reconnect layer, so synthetic reconnects are
//! recorded like real ones (`source: fault`). Every answer it produces or changes
//! carries `x-leanproxy-injected: <rule id or "header">`.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use tower::{Layer, Service};
use uuid::Uuid;

use super::body::{ThrottleBody, TruncateBody};
use super::quota::Sticky;
use super::{parse_spec, Action, Applied, FaultRules, Preset, RequestFacts};
use crate::body::{self, Body};
use crate::events::Event;
use crate::exchange::{Api, ExchangeNotes, Synthetic, X_LEANPROXY_FAULT, X_LEANPROXY_INJECTED};
pub use crate::future::ResponseFuture;
use crate::lean::{self, json_response, ErrorEnvelope};
use crate::log::Telemetry;
use crate::reconnect::{entity_of_body, entity_of_query, ReconnectRegistry, State};
use crate::server::ResetConnection;

/// How much of a JSON request body is read ahead to find its `entity_id` while
/// faults are active.
const PEEK_LIMIT: usize = 64 * 1024;

/// The malformed JSON a `corrupt` fault answers with.
const CORRUPT_BODY: &[u8] =
    br#"{"status":"OK","results_id":"0f","data":{"accounts":[{"account_id":"3d586d40-"#;

/// Applies faults.
#[derive(Clone, Debug)]
pub struct FaultLayer {
    shared: Arc<FaultSettings>,
}

#[derive(Debug)]
struct FaultSettings {
    rules: FaultRules,
    allow_header: bool,
    registry: Option<ReconnectRegistry>,
    telemetry: Option<Telemetry>,
}

impl FaultLayer {
    /// Applies `rules`. Header faults are off; see [`FaultLayer::with_header_faults`].
    pub fn new(rules: FaultRules) -> Self {
        Self::build(rules, false, None, None)
    }

    fn build(
        rules: FaultRules,
        allow_header: bool,
        registry: Option<ReconnectRegistry>,
        telemetry: Option<Telemetry>,
    ) -> Self {
        Self {
            shared: Arc::new(FaultSettings {
                rules,
                allow_header,
                registry,
                telemetry,
            }),
        }
    }

    /// Honours `x-leanproxy-fault` (it is stripped either way).
    pub fn with_header_faults(self, allow: bool) -> Self {
        let s = &self.shared;
        Self::build(
            s.rules.clone(),
            allow,
            s.registry.clone(),
            s.telemetry.clone(),
        )
    }

    /// Ends sticky reconnects when `registry` marks them resolved.
    pub fn with_registry(self, registry: ReconnectRegistry) -> Self {
        let s = &self.shared;
        Self::build(
            s.rules.clone(),
            s.allow_header,
            Some(registry),
            s.telemetry.clone(),
        )
    }

    /// Counts and publishes fault hits.
    pub fn with_telemetry(self, telemetry: Telemetry) -> Self {
        let s = &self.shared;
        Self::build(
            s.rules.clone(),
            s.allow_header,
            s.registry.clone(),
            Some(telemetry),
        )
    }

    /// The live rules.
    pub fn rules(&self) -> &FaultRules {
        &self.shared.rules
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = Fault<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Fault {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service built by [`FaultLayer`].
#[derive(Clone, Debug)]
pub struct Fault<S> {
    inner: S,
    shared: Arc<FaultSettings>,
}

/// How long a sticky hold waits for its record before it counts as lost (a
/// record trimmed from the history or expired): far longer than the reconnect
/// layer takes to write one.
const HOLD_WITHOUT_RECORD: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Why the registry ended the sticky reconnect `held` answered with, if it
/// did. No record is not an end: the reconnect layer writes the record after
/// the first answer leaves, and another request (on any replica) may look in
/// between. A resolved record ends it when it is this reconnect's (by id) or
/// was resolved after the hold began; an older resolution does not.
async fn hold_ended(
    registry: &ReconnectRegistry,
    entity: &str,
    held: &Sticky,
) -> Option<&'static str> {
    let now = chrono::Utc::now();
    let Some(record) = registry.get(entity).await else {
        return (now - held.since > HOLD_WITHOUT_RECORD)
            .then_some("the registry has no record of it");
    };
    if record.state != State::Resolved {
        return None;
    }
    let ids = [held.reconnect_id.to_string(), held.results_id.to_string()];
    let this_one = ids.contains(&record.reconnect_id)
        || record.results_id.as_ref().is_some_and(|r| ids.contains(r));
    let after = record.resolved_at.is_some_and(|at| at >= held.since);
    (this_one || after).then_some("the registry resolved it")
}

/// The wrapped service, boxed inside a fault's future.
type BoxedInner<E> = tower::util::BoxService<Request<Body>, Response<Body>, E>;

impl<S> Service<Request<Body>> for Fault<S>
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
        let spec = req.headers_mut().remove(&X_LEANPROXY_FAULT);
        let shared = &self.shared;
        if spec.is_none() && !shared.rules.holds_sticky() && shared.rules.is_empty() {
            return ResponseFuture::inner(self.inner.call(req));
        }
        // The ready service goes into the future; a fresh clone stays here. It is
        // boxed so the future does not name `S::Future` (which trips the
        // compiler's `Send` inference across the awaits below).
        let clone = self.inner.clone();
        let inner = tower::util::BoxService::new(std::mem::replace(&mut self.inner, clone));
        let shared = shared.clone();
        ResponseFuture::boxed(async move { shared.handle(req, spec, inner).await })
    }
}

fn injected(mut response: Response<Body>, id: &str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert(&X_LEANPROXY_INJECTED, v);
    }
    response
}

/// `injected`, for an answer the fault made up itself.
fn synthetic(response: Response<Body>, id: &str) -> Response<Body> {
    let mut response = injected(response, id);
    response.extensions_mut().insert(Synthetic);
    response
}

fn is_v1(path: &str) -> bool {
    Api::of_path(path) == Some(Api::V1)
}

fn data_answer(value: serde_json::Value) -> Response<Body> {
    json_response(StatusCode::OK, &value)
}

/// Reads up to [`PEEK_LIMIT`] bytes of a JSON request body for its `entity_id`,
/// then puts them back in front of the rest.
async fn peek_entity(req: Request<Body>) -> (Request<Body>, Option<String>) {
    if !crate::body::is_json(req.headers()) || req.body().is_end_stream() {
        return (req, None);
    }
    let (parts, mut rest) = req.into_parts();
    let mut head = bytes::BytesMut::new();
    let mut error = None;
    while head.len() < PEEK_LIMIT {
        match rest.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    head.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => {
                error = Some(e);
                break;
            }
            None => break,
        }
    }
    let head = head.freeze();
    let entity = entity_of_body(&head);
    let body = match error {
        // The app's body failed: forward the failure as it was.
        Some(e) => body::boxed(http_body_util::StreamBody::new(tokio_stream::iter([
            Err::<http_body::Frame<Bytes>, crate::body::BoxError>(e),
        ]))),
        None if rest.is_end_stream() => body::full(head),
        None => {
            let first =
                tokio_stream::iter([Ok::<_, crate::body::BoxError>(http_body::Frame::data(head))]);
            let rest = http_body_util::BodyStream::new(rest);
            body::boxed(http_body_util::StreamBody::new(
                tokio_stream::StreamExt::chain(first, rest),
            ))
        }
    };
    (Request::from_parts(parts, body), entity)
}

impl FaultSettings {
    async fn handle<E>(
        self: Arc<Self>,
        req: Request<Body>,
        spec: Option<HeaderValue>,
        mut inner: BoxedInner<E>,
    ) -> Result<Response<Body>, E> {
        let (req, entity) = match entity_of_query(req.uri().query()) {
            Some(e) => (req, Some(e)),
            None => peek_entity(req).await,
        };
        if let (Some(e), Some(notes)) = (&entity, req.extensions().get::<ExchangeNotes>()) {
            notes.set_entity(e);
        }
        let path = req.uri().path().to_string();

        if let Some(e) = &entity {
            if let Some(answer) = self.sticky_answer(e, &path).await {
                return Ok(answer);
            }
        }

        let header_rule = match spec {
            Some(value) if self.allow_header => match value
                .to_str()
                .map_err(|_| "not text".to_string())
                .and_then(|s| parse_spec(s).map(|r| (r, s)).map_err(|e| e.to_string()))
            {
                Ok((rule, text)) => Some((rule, text.to_string())),
                Err(reason) => {
                    let answer = ErrorEnvelope::new(
                        "INVALID_PARAMETERS",
                        format!("x-leanproxy-fault refused: {reason}"),
                    )
                    .into_response(StatusCode::BAD_REQUEST);
                    return Ok(synthetic(answer, "header"));
                }
            },
            Some(_) => {
                tracing::debug!(target: "leanproxy::fault", "x-leanproxy-fault ignored: fault.allow_header_faults is off");
                None
            }
            None => None,
        };
        let applied = {
            let facts = RequestFacts {
                method: req.method(),
                path: &path,
                query: req.uri().query(),
                headers: req.headers(),
                entity_id: entity.as_deref(),
            };
            match &header_rule {
                Some((rule, text)) => {
                    self.rules
                        .evaluate_rule(rule, text, &facts)
                        .await
                        .map(|mut a| {
                            a.rule_id = "header".into();
                            a
                        })
                }
                None => self.rules.evaluate(&facts).await,
            }
        };
        let Some(applied) = applied else {
            return inner.call(req).await;
        };
        self.count(&applied, &path);
        self.apply(applied, req, entity, &path, inner).await
    }

    /// The same synthetic reconnect again, while the registry has not resolved it.
    async fn sticky_answer(&self, entity: &str, path: &str) -> Option<Response<Body>> {
        if !self.rules.holds_sticky() {
            return None;
        }
        let held = self.rules.sticky(entity).await?;
        let ended = match &self.registry {
            Some(registry) => hold_ended(registry, entity, &held).await,
            None => None,
        };
        if let Some(why) = ended {
            self.rules.release_sticky(entity).await;
            tracing::info!(target: "leanproxy::fault", entity_id = entity, rule = %held.rule, "sticky reconnect fault ended: {why}");
            return None;
        }
        self.count(
            &Applied {
                rule_id: held.rule.clone(),
                action: Action::ReconnectRequired { sticky: true },
                delay: None,
                retry_after_secs: None,
            },
            path,
        );
        let now = chrono::Utc::now();
        let body = if is_v1(path) {
            lean::v1_reconnect(held.reconnect_id, held.results_id, now)
        } else {
            lean::v2_reconnect(held.results_id, now)
        };
        Some(synthetic(data_answer(body), &held.rule))
    }

    fn count(&self, applied: &Applied, path: &str) {
        let action = applied.action.name();
        tracing::info!(target: "leanproxy::fault", rule = %applied.rule_id, action, path, "fault injected");
        if let Some(t) = &self.telemetry {
            t.metrics().fault(action);
            t.events().publish(Event::FaultHit {
                rule: applied.rule_id.clone(),
                action: action.to_string(),
                path: path.to_string(),
            });
        }
    }

    async fn apply<E>(
        &self,
        applied: Applied,
        req: Request<Body>,
        entity: Option<String>,
        path: &str,
        mut inner: BoxedInner<E>,
    ) -> Result<Response<Body>, E> {
        let id = applied.rule_id.as_str();
        let now = chrono::Utc::now();
        let answer = match applied.action {
            Action::Delay(_) => {
                if let Some(d) = applied.delay {
                    tokio::time::sleep(d).await;
                }
                let response = inner.call(req).await?;
                return Ok(injected(response, id));
            }
            Action::Status {
                code,
                body: text,
                content_type,
            } => {
                let mut r = Response::new(body::full(text));
                *r.status_mut() = code;
                r.headers_mut().insert(header::CONTENT_TYPE, content_type);
                r
            }
            Action::LeanError(preset) => {
                let (code, envelope) = preset.envelope();
                envelope.into_response(code)
            }
            Action::ReconnectRequired { sticky } => {
                let (reconnect_id, results_id) = (Uuid::new_v4(), Uuid::new_v4());
                // v2 apps use the results id as the reconnect id.
                let reconnect_id = if is_v1(path) {
                    reconnect_id
                } else {
                    results_id
                };
                if sticky {
                    if let Some(e) = &entity {
                        let held = Sticky {
                            rule: id.to_string(),
                            reconnect_id,
                            results_id,
                            since: now,
                        };
                        self.rules.hold_sticky(e, held).await;
                    }
                }
                data_answer(if is_v1(path) {
                    lean::v1_reconnect(reconnect_id, results_id, now)
                } else {
                    lean::v2_reconnect(results_id, now)
                })
            }
            Action::Failed {
                granular_status_code,
            } => data_answer(if is_v1(path) {
                lean::v1_failed(Uuid::new_v4(), &granular_status_code, now)
            } else {
                lean::v2_failed(Uuid::new_v4(), &granular_status_code, now)
            }),
            Action::Pending => data_answer(if is_v1(path) {
                lean::v1_pending(Uuid::new_v4(), now)
            } else {
                lean::v2_pending(Uuid::new_v4(), now)
            }),
            Action::RateLimit { .. } => {
                let (code, envelope) = Preset::RateLimitExceeded.envelope();
                let mut r = envelope.into_response(code);
                let retry = applied.retry_after_secs.unwrap_or(1).max(1);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry));
                r
            }
            Action::Reset => reset(),
            Action::Timeout { hold } => {
                tokio::time::sleep(hold).await;
                reset()
            }
            Action::Truncate { after_bytes } => {
                let response = inner.call(req).await?;
                let response = response.map(|b| body::boxed(TruncateBody::new(b, after_bytes)));
                return Ok(injected(response, id));
            }
            Action::Corrupt => {
                let response = inner.call(req).await?;
                let (mut parts, _real) = response.into_parts();
                parts.headers.remove(header::CONTENT_LENGTH);
                let response =
                    Response::from_parts(parts, body::full(Bytes::from_static(CORRUPT_BODY)));
                return Ok(injected(response, id));
            }
            Action::Throttle { bytes_per_second } => {
                let response = inner.call(req).await?;
                let response =
                    response.map(|b| body::boxed(ThrottleBody::new(b, bytes_per_second)));
                return Ok(injected(response, id));
            }
        };
        Ok(synthetic(answer, id))
    }
}

/// An answer the server turns into closing the connection without a response.
fn reset() -> Response<Body> {
    let mut r = Response::new(body::empty());
    r.extensions_mut().insert(ResetConnection);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{service_fn, ServiceExt};

    fn origin(
    ) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future = impl Send>
           + Clone
           + Send
           + 'static {
        service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(body::full("real")))
        })
    }

    #[tokio::test(start_paused = true)]
    async fn delays_are_waited_in_tokio_time() {
        let rules = FaultRules::new(Some(1));
        rules.add(parse_spec("delay=10m").unwrap()).unwrap();
        let svc = FaultLayer::new(rules).layer(origin());
        let (wall, virt) = (std::time::Instant::now(), tokio::time::Instant::now());
        let r = svc.oneshot(Request::new(body::empty())).await.unwrap();
        let rule = r.headers()[&X_LEANPROXY_INJECTED].to_str().unwrap();
        assert!(
            rule.starts_with("fault-"),
            "generated rule id marked: {rule}"
        );
        assert!(virt.elapsed() >= std::time::Duration::from_secs(600));
        assert!(
            wall.elapsed() < std::time::Duration::from_secs(5),
            "paused time, not real time"
        );
        assert_eq!(r.into_body().collect().await.unwrap().to_bytes(), "real");
    }

    #[tokio::test(start_paused = true)]
    async fn uniform_delays_stay_within_their_bounds() {
        let rules = FaultRules::new(Some(7));
        rules
            .add(parse_spec("delay=100ms..300ms").unwrap())
            .unwrap();
        let svc = FaultLayer::new(rules).layer(origin());
        for _ in 0..20 {
            let start = tokio::time::Instant::now();
            svc.clone()
                .oneshot(Request::new(body::empty()))
                .await
                .unwrap();
            let took = start.elapsed();
            assert!(
                took >= std::time::Duration::from_millis(100)
                    && took <= std::time::Duration::from_millis(301),
                "{took:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_sticky_hold_ends_with_its_own_resolution_only() {
        use crate::reconnect::{ResolvedBy, Sighting, Source};
        let registry = ReconnectRegistry::in_memory(10);
        let seen = |entity: &str, id: Uuid| Sighting {
            entity_id: Some(entity.to_string()),
            reconnect_id: id.to_string(),
            results_id: Some(id.to_string()),
            api: Api::V2,
            path: "/data/v2/accounts".into(),
            source: Source::Fault,
        };
        let hold = |ago: i64| Sticky {
            rule: "s".into(),
            reconnect_id: Uuid::new_v4(),
            results_id: Uuid::new_v4(),
            since: chrono::Utc::now() - chrono::TimeDelta::seconds(ago),
        };
        // An earlier reconnect of the entity, resolved before the hold began.
        registry.observe_reconnect(seen("e", Uuid::new_v4())).await;
        registry.resolve_entity("e", ResolvedBy::Admin).await;
        let held = hold(0);
        // Its own record not written yet: what another replica sees while
        // the reconnect layer is still writing it.
        assert_eq!(hold_ended(&registry, "e", &held).await, None);
        registry.observe_reconnect(seen("e", held.results_id)).await;
        assert_eq!(hold_ended(&registry, "e", &held).await, None);
        registry.resolve_entity("e", ResolvedBy::Webhook).await;
        let resolved = Some("the registry resolved it");
        assert_eq!(hold_ended(&registry, "e", &held).await, resolved);

        // A record that took another id (replaced while pending), resolved
        // after the hold began, ends it too.
        let replaced = hold(5);
        registry.observe_reconnect(seen("r", Uuid::new_v4())).await;
        assert_eq!(hold_ended(&registry, "r", &replaced).await, None);
        registry.resolve_entity("r", ResolvedBy::Admin).await;
        assert_eq!(hold_ended(&registry, "r", &replaced).await, resolved);

        // A hold whose record never shows (trimmed, expired) ends after a
        // minute, not before.
        assert_eq!(hold_ended(&registry, "gone", &hold(30)).await, None);
        assert_eq!(
            hold_ended(&registry, "gone", &hold(61)).await,
            Some("the registry has no record of it")
        );
    }

    #[tokio::test]
    async fn no_rules_no_header_is_a_passthrough() {
        let svc = FaultLayer::new(FaultRules::new(None)).layer(origin());
        let r = svc.oneshot(Request::new(body::empty())).await.unwrap();
        assert!(r.headers().get(&X_LEANPROXY_INJECTED).is_none());
    }
}
