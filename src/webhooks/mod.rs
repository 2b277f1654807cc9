//! The webhook catcher and relay.
//!
//! A listener of its own (default `127.0.0.1:7073`) accepts POSTs on any path,
//! answers 200 once a delivery is recorded (and, when relayed, durably queued),
//! and records each: headers (redacted), raw body, Lean's `type`, `event_id`,
//! the entity / reconnect / results ids in the payload, and the signature
//! verdict (`lean-signature: sha512=<hex HMAC-SHA512>`). Repeated
//! `event_id`s are recorded as duplicates and relayed once. Accepted webhooks are
//! relayed byte-identical to the app through a durable queue, in order of
//! acceptance per target; one the app refuses for good (4xx but 408 / 429) or
//! whose queue entry is damaged is set aside as a dead letter, and the next
//! go on. `entity.reconnected`
//! resolves the reconnect registry; `results.ready` marks the record of the
//! results id it names.

mod claims;
#[cfg(test)]
mod claims_contract;
mod redis_claims;
mod relay;
mod store;
mod verify;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, Method, Request, Response, StatusCode};
use serde_json::json;

pub use claims::{Claim, ClaimLog, Claims};
pub use relay::{DeadLetter, QueueError, Relay, RelayConfig, ReplayDeadError};
pub use store::{Outcome, Page, RelayStatus, Store, WebhookRecord};
pub use verify::{verify, Policy, Verdict};

use crate::backend::Op;
use crate::body::Body;
use crate::events::Event;
use crate::lean::{json_response, ErrorEnvelope, SIGNATURE_HEADER};
use crate::log::Telemetry;
use crate::reconnect::{ReconnectRegistry, ResolvedBy};
use crate::secret::Secret;

/// Validated webhook settings (the listener address is in `[webhooks] listen`).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Webhook secret the signatures are checked with.
    pub secret: Option<Secret>,
    /// What an invalid signature leads to.
    pub policy: Policy,
    /// Largest body accepted (bytes); larger deliveries get 413.
    pub body_limit: usize,
    /// Deliveries kept for inspection.
    pub history: usize,
}

/// The webhook intake service and its handle. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<CatcherState>,
}

struct CatcherState {
    config: WebhookConfig,
    store: Store,
    claims: Claims,
    /// Only when it has targets.
    relay: Option<Relay>,
    registry: ReconnectRegistry,
    telemetry: Telemetry,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("policy", &self.inner.config.policy)
            .field("relay", &self.inner.relay.is_some())
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// The catcher; `claims` tells first deliveries of an event id from
    /// duplicates; `relay` forwards accepted webhooks when given (and it has
    /// targets); deliveries are published to `telemetry`'s events and metrics.
    pub fn new(
        config: WebhookConfig,
        store: Store,
        claims: Claims,
        relay: Option<Relay>,
        registry: ReconnectRegistry,
        telemetry: Telemetry,
    ) -> Self {
        Self {
            inner: Arc::new(CatcherState {
                config,
                store,
                claims,
                relay: relay.filter(Relay::has_targets),
                registry,
                telemetry,
            }),
        }
    }

    /// Received deliveries, oldest first, with their bodies.
    pub fn records(&self) -> Vec<WebhookRecord> {
        self.inner.store.records(self.inner.telemetry.redactor())
    }

    /// The newest `limit` deliveries `keep` accepts, before the delivery
    /// `before` (see [`Store::page`]), without their bodies.
    pub fn page(
        &self,
        keep: impl Fn(&WebhookRecord) -> bool,
        before: Option<&str>,
        limit: usize,
    ) -> Option<Page> {
        self.inner.store.page(keep, before, limit)
    }

    /// Deliveries and bytes kept, and the byte bound (`webhooks.history_bytes`).
    pub fn usage(&self) -> (usize, usize, usize) {
        let (kept, bytes) = self.inner.store.usage();
        (kept, bytes, self.inner.store.max_bytes())
    }

    /// One delivery.
    pub fn record(&self, id: &str) -> Option<WebhookRecord> {
        self.inner
            .store
            .get(id)
            .map(|s| s.record(self.inner.telemetry.redactor()))
    }

    /// Sends a received webhook to the relay targets again. An empty list:
    /// no relay targets.
    pub fn replay(&self, id: &str) -> Result<Vec<RelayStatus>, ReplayError> {
        let stored = self.inner.store.get(id).ok_or(ReplayError::Unknown)?;
        if stored.truncated() {
            return Err(ReplayError::Truncated);
        }
        let Some(relay) = &self.inner.relay else {
            return Ok(Vec::new());
        };
        Ok(relay.enqueue(id, &stored, |_| ()))
    }

    /// Relay deliveries set aside (dead letters), oldest first.
    pub fn dead_letters(&self) -> Op<Vec<DeadLetter>> {
        match &self.inner.relay {
            Some(relay) => relay.dead_letters(),
            None => Op::ready(Vec::new()),
        }
    }

    /// Queues a dead letter again for its target (see [`Relay::replay_dead`]).
    pub fn replay_dead(&self, id: &str) -> Result<RelayStatus, ReplayDeadError> {
        match &self.inner.relay {
            Some(relay) => relay.replay_dead(id),
            None => Err(ReplayDeadError::Unknown(id.to_string())),
        }
    }
}

/// Why a webhook cannot be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// No such delivery is kept.
    #[error("no such webhook is kept")]
    Unknown,
    /// Only a prefix of its body is kept (it was rejected).
    #[error("only a prefix of its body is kept (it was rejected)")]
    Truncated,
}

impl CatcherState {
    async fn handle(self: &Arc<Self>, req: Request<Body>) -> Response<Body> {
        if req.method() != Method::POST {
            let mut r =
                ErrorEnvelope::new("INVALID_HTTP_METHOD", "webhooks are delivered with POST")
                    .into_response(StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut()
                .insert(header::ALLOW, http::HeaderValue::from_static("POST"));
            return r;
        }
        let (parts, body) = req.into_parts();
        let limit = self.config.body_limit;
        let body = match crate::body::read_limited(body, limit).await {
            Ok(bytes) => bytes,
            Err(e) => {
                let too_large = matches!(e, crate::body::ReadError::TooLarge(_));
                return ErrorEnvelope::new(
                    if too_large {
                        "PAYLOAD_TOO_LARGE"
                    } else {
                        "INVALID_PARAMETERS"
                    },
                    if too_large {
                        format!("webhook bodies are limited to {limit} bytes (webhooks.body_limit)")
                    } else {
                        format!("the webhook body could not be read: {e}")
                    },
                )
                .into_response(if too_large {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                });
            }
        };
        let signature = parts.headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes());
        let verdict = match (&self.config.secret, self.config.policy) {
            (_, Policy::Off) | (None, _) => Verdict::Unchecked,
            (Some(secret), _) => verify(secret.expose().as_bytes(), &body, signature),
        };
        let rejected = self.config.policy == Policy::Enforce && verdict != Verdict::Valid;
        let id = uuid::Uuid::new_v4().to_string();
        // A rejected body is never relayed nor replayed: a prefix is enough to
        // inspect it, and forged deliveries cannot pin memory.
        let stored = Arc::new(store::parse(
            id.clone(),
            parts.uri.path(),
            &parts.headers,
            body,
            verdict.clone(),
            rejected.then_some(store::REJECTED_PREFIX),
        ));
        let record = stored.summary();
        let kind = record.kind.clone().unwrap_or_else(|| "unknown".into());

        // Only a delivery that is Lean's (or unchecked) may claim its event id and
        // change state: a forged one must not block or pre-empt the real one.
        let trusted = matches!(verdict, Verdict::Valid | Verdict::Unchecked);
        let mut claim = None;
        let mut duplicate = false;
        if let Some(event_id) = record.event_id.as_deref().filter(|_| !rejected && trusted) {
            claim = self.claims.claim(event_id).await;
            duplicate = claim.is_none();
        }
        let outcome = if rejected {
            Outcome::Rejected
        } else if duplicate {
            Outcome::Duplicate
        } else {
            Outcome::Accepted
        };
        stored.update(|r| r.outcome = outcome);
        self.store.push(stored.clone());
        self.telemetry.metrics().webhook(&kind, verdict.name());
        self.telemetry.events().publish(Event::Webhook {
            id: id.clone(),
            kind: record.kind.clone(),
            signature: verdict.name().to_string(),
            outcome: serde_json::to_value(outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        });
        tracing::info!(
            target: "leanproxy::webhooks",
            id = %id, kind = %kind, event_id = record.event_id.as_deref().unwrap_or("-"),
            signature = verdict.name(), outcome = ?outcome,
            "webhook received"
        );

        if rejected {
            let reason = match &verdict {
                Verdict::Invalid(r) => r.clone(),
                Verdict::Missing => "no lean-signature header".into(),
                _ => "the signature could not be checked".into(),
            };
            return ErrorEnvelope::new("INVALID_SIGNATURE", format!("webhook refused: {reason}"))
                .into_response(StatusCode::UNAUTHORIZED);
        }
        if outcome == Outcome::Accepted {
            let kept = match self.relay.clone() {
                None => self.accept(&stored, &record, trusted, None, claim),
                // The relay queue's files are written with `fsync`, on the
                // blocking pool: the runtime has one thread by default, and
                // every exchange would wait. The claim goes along, and what
                // follows the write too: once started, it all completes even
                // if this handler is dropped (client gone, shutdown). Not
                // started (shutdown), the claim is dropped, so forgotten.
                Some(relay) => {
                    let (this, stored) = (self.clone(), stored.clone());
                    crate::sync::blocking(move || {
                        this.accept(&stored, &record, trusted, Some(&relay), claim)
                    })
                    .await
                    .unwrap_or(false)
                }
            };
            if !kept {
                // Not queued: let Lean retry it later rather than lose it.
                return ErrorEnvelope::new(
                    "RELAY_QUEUE_FULL",
                    "the webhook could not be queued for relay; retry later",
                )
                .into_response(StatusCode::SERVICE_UNAVAILABLE);
            }
        }
        json_response(StatusCode::OK, &json!({"status": "OK", "id": id}))
    }

    /// Queues an accepted delivery for relay, settles its claim, then applies
    /// it (when its signature is trusted). False when it could not be queued:
    /// then it changes nothing, and its event id is forgotten.
    fn accept(
        &self,
        stored: &Arc<store::Stored>,
        record: &WebhookRecord,
        trusted: bool,
        relay: Option<&Relay>,
        claim: Option<claims::Settle>,
    ) -> bool {
        let mut kept = false;
        let settle = |queued: bool| {
            kept = queued;
            if !queued {
                // `claim` is dropped with this closure: forgotten.
                return;
            }
            // Kept once queued, whatever follows: a retry would be relayed twice.
            if let Some(claim) = claim {
                claim.keep();
            }
            if trusted {
                self.apply(stored, record, relay.is_some());
            } else {
                tracing::warn!(target: "leanproxy::webhooks", id = %record.id, kind = record.kind.as_deref().unwrap_or("unknown"), "webhook with an invalid signature: recorded and relayed, but it changes nothing");
            }
        };
        match relay {
            // Applied before the app can have it (`enqueue` runs `settle`
            // before its workers see the deliveries).
            Some(relay) => {
                relay.enqueue(&record.id, stored, settle);
            }
            None => settle(true),
        }
        kept
    }

    /// What a webhook means for the reconnect registry. `wait`: on the
    /// blocking pool, where the registry's answer is waited for, so it is
    /// applied before the relay's workers see the delivery; else it is
    /// applied as the registry answers (at once, in memory).
    fn apply(&self, stored: &Arc<store::Stored>, record: &WebhookRecord, wait: bool) {
        let registry = self.registry.clone();
        let resolved = match record.kind.as_deref() {
            Some("entity.reconnected") => {
                let entity = record.entity_id.clone();
                let by_id = match record.reconnect_id.as_deref() {
                    Some(id) => registry.resolve_reconnect_id(
                        id,
                        record.entity_id.as_deref(),
                        ResolvedBy::Webhook,
                    ),
                    None => Op::ready(None),
                };
                by_id
                    .and_then(move |found| match (found, entity) {
                        (Some(r), _) => Op::ready(Some(r)),
                        (None, Some(e)) => registry.resolve_entity(&e, ResolvedBy::Webhook),
                        (None, None) => Op::ready(None),
                    })
                    .map(|resolved| {
                        resolved.map(|r| {
                            tracing::info!(target: "leanproxy::reconnect", entity_id = r.entity_id.as_deref().unwrap_or("unknown"), reconnect_id = %r.reconnect_id, hits = r.hits, "reconnect resolved: entity.reconnected webhook");
                            r.key()
                        })
                    })
            }
            Some("results.ready") => match record.results_id.as_deref() {
                Some(id) => registry.mark_results_ready(id),
                None => return,
            },
            _ => return,
        };
        let stored = stored.clone();
        let note = move |key: Option<String>| {
            if let Some(key) = key {
                stored.update(|rec| rec.resolved_reconnect = Some(key));
            }
        };
        if wait {
            note(resolved.wait());
        } else {
            resolved.then(note);
        }
    }
}

impl tower::Service<Request<Body>> for Webhooks {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { Ok(inner.handle(req).await) })
    }
}
