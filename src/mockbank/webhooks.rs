//! Webhooks the Mockbank sends: Lean's envelope, signed `lean-signature:
//! sha512=<hex>`, delivered in the background. A non-200 answer or none within
//! 10 s is retried 1, 2, 5, 10, 60 and 180 minutes after the first attempt, on the
//! Mockbank clock (so tests advance it instead of waiting).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::clock::Clock;
use super::shapes::ts;
use crate::body::{self, Body};
use crate::client::tls::TlsSettings;
use crate::client::TlsError;
use crate::lean::{webhook_signature, SIGNATURE_HEADER};
use crate::secret::Secret;

/// Lean's retry schedule, measured from the first attempt.
const RETRY_AFTER_MINUTES: [u64; 6] = [1, 2, 5, 10, 60, 180];
/// Lean waits this long for a 200.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries remembered for `/_mockbank/webhooks`.
const HISTORY: usize = 200;

/// What happened to one webhook.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// The envelope's `event_id`.
    pub event_id: Uuid,
    /// Webhook type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Whether an attempt got a 200.
    pub delivered: bool,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// The payload's `id` (the entity, results or refresh it is about).
    pub payload_id: Option<String>,
    /// The payload's `customer_id`, when it has one.
    pub customer_id: Option<String>,
}

/// Sends the Mockbank's webhooks. Cheap to clone.
#[derive(Clone)]
pub(super) struct WebhookSender {
    inner: Arc<SenderState>,
}

struct SenderState {
    url: std::sync::RwLock<Option<Uri>>,
    secret: Secret,
    clock: Clock,
    client: Client<HttpsConnector<HttpConnector>, Body>,
    queue: mpsc::UnboundedSender<Outgoing>,
    history: Mutex<Vec<Delivery>>,
}

struct Outgoing {
    event_id: Uuid,
    kind: String,
    body: Bytes,
}

impl WebhookSender {
    /// A sender posting to `url` (none: webhooks are only recorded), trusting the
    /// webpki and system roots for https. Spawns the delivery task, so call it
    /// inside a Tokio runtime.
    pub(super) fn new(url: Option<Uri>, secret: Secret, clock: Clock) -> Result<Self, TlsError> {
        let tls = crate::client::tls::client_config(&TlsSettings::default())?;
        let connector = crate::client::tls::http1_connector(tls);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let (queue, mut rx) = mpsc::unbounded_channel::<Outgoing>();
        let inner = Arc::new(SenderState {
            url: std::sync::RwLock::new(url),
            secret,
            clock,
            client,
            queue,
            history: Mutex::new(Vec::new()),
        });
        let worker = Arc::downgrade(&inner);
        // First attempts go out in order (entity.reconnected before
        // results.ready); retries run on their own.
        tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                let Some(inner) = worker.upgrade() else { break };
                // Lean's schedule counts from the first attempt.
                let first = inner.clock.elapsed();
                if !inner.attempt(&out).await {
                    let inner = inner.clone();
                    tokio::spawn(async move { inner.retry(out, first).await });
                }
            }
        });
        Ok(Self { inner })
    }

    /// Queues a webhook; returns its `event_id` at once.
    pub(super) fn send(&self, kind: &str, payload: Value, message: &str) -> Uuid {
        let text = |key: &str| {
            payload
                .get(key)
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
        };
        let (payload_id, customer_id) = (text("id"), text("customer_id"));
        let event_id = Uuid::new_v4();
        let envelope = json!({
            "type": kind,
            "payload": payload,
            "message": message,
            "timestamp": ts(self.inner.clock.now()),
            "event_id": event_id,
        });
        let body = Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default());
        self.inner.record(Delivery {
            event_id,
            kind: kind.into(),
            attempts: 0,
            delivered: false,
            last_error: None,
            payload_id,
            customer_id,
        });
        if self.inner.url().is_none() {
            tracing::info!(target: "leanproxy::mockbank", %event_id, kind, "webhook not sent: no webhook_url configured");
        }
        let _ = self.inner.queue.send(Outgoing {
            event_id,
            kind: kind.into(),
            body,
        });
        event_id
    }

    /// Points webhooks at `url` from now on.
    pub(super) fn set_url(&self, url: Uri) {
        *self
            .inner
            .url
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(url);
    }

    /// Recent deliveries, oldest first.
    pub(super) fn deliveries(&self) -> Vec<Delivery> {
        self.inner.lock_history().clone()
    }
}

impl SenderState {
    fn url(&self) -> Option<Uri> {
        self.url
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn lock_history(&self) -> std::sync::MutexGuard<'_, Vec<Delivery>> {
        // Entries are replaced whole; a poisoned lock holds consistent data.
        self.history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, delivery: Delivery) {
        let mut history = self.lock_history();
        if history.len() >= HISTORY {
            history.remove(0);
        }
        history.push(delivery);
    }

    fn update(&self, event_id: Uuid, outcome: Result<(), String>) {
        let mut history = self.lock_history();
        if let Some(d) = history.iter_mut().find(|d| d.event_id == event_id) {
            d.attempts += 1;
            match outcome {
                Ok(()) => d.delivered = true,
                Err(e) => d.last_error = Some(e),
            }
        }
    }

    /// One delivery attempt; true when done (delivered, or nowhere to send).
    async fn attempt(&self, out: &Outgoing) -> bool {
        let Some(url) = self.url() else { return true };
        let signature = webhook_signature(self.secret.expose().as_bytes(), &out.body);
        let request = Request::post(url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body::full(out.body.clone()));
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                self.update(out.event_id, Err(e.to_string()));
                return true;
            }
        };
        let outcome =
            match tokio::time::timeout(DELIVERY_TIMEOUT, self.client.request(request)).await {
                Ok(Ok(response)) if response.status() == http::StatusCode::OK => Ok(()),
                Ok(Ok(response)) => Err(format!("answered {}", response.status())),
                Ok(Err(e)) => Err(format!("not delivered: {e}")),
                Err(_) => Err("no answer within 10 s".to_string()),
            };
        let done = outcome.is_ok();
        match &outcome {
            Ok(()) => {
                tracing::debug!(target: "leanproxy::mockbank", event_id = %out.event_id, kind = %out.kind, "webhook delivered")
            }
            Err(e) => {
                tracing::info!(target: "leanproxy::mockbank", event_id = %out.event_id, kind = %out.kind, error = %e, "webhook delivery failed; will retry")
            }
        }
        self.update(out.event_id, outcome);
        done
    }

    async fn retry(&self, out: Outgoing, first: Duration) {
        for minutes in RETRY_AFTER_MINUTES {
            self.clock
                .sleep_until(first + Duration::from_secs(minutes * 60))
                .await;
            if self.attempt(&out).await {
                return;
            }
        }
        tracing::warn!(target: "leanproxy::mockbank", event_id = %out.event_id, kind = %out.kind, "webhook given up after Lean's retry schedule");
    }
}
