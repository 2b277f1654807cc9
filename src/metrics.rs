//! Prometheus metrics (`GET /metrics`), with the prometheus-client crate.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of `leanproxy_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    // Static for the usual values, so counting an exchange allocates nothing.
    method: Cow<'static, str>,
    status: u16,
    lean_status: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    kind: String,
    signature: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SideLabels {
    side: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

/// One listener's connection metrics, looked up once per listener.
#[derive(Debug, Clone)]
pub struct ListenerMetrics {
    open: Gauge,
    limit_reached: Counter,
}

impl ListenerMetrics {
    /// A connection was accepted.
    pub fn opened(&self) {
        self.open.inc();
    }

    /// A connection ended.
    pub fn closed(&self) {
        self.open.dec();
    }

    /// The listener stopped accepting: it has its most connections open.
    pub fn limit_reached(&self) {
        self.limit_reached.inc();
    }
}

/// Which peer stopped moving an answer (`leanproxy_stalled_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallSide {
    /// The app stopped reading it (`proxy.client_write_timeout`).
    Client,
    /// The upstream stopped sending it (`proxy.upstream_body_timeout`).
    Upstream,
}

/// Gives each [`Metrics`] an identity for the per-thread cache below.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The `leanproxy_requests_total` series this thread counted last, with
    /// its metrics' id and labels. Exchanges mostly repeat the labels of the
    /// one before, and finding a series in its family takes a lock and
    /// hashes the labels (SipHash) each time.
    static LAST_SERIES: RefCell<Option<(u64, RequestLabels, Counter)>> = const { RefCell::new(None) };
}

/// One completed exchange, as the metrics count it.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// HTTP status.
    pub status: u16,
    /// Lean status, when seen.
    pub lean_status: Option<&'a str>,
    /// Total time, body included.
    pub total_seconds: f64,
    /// Time to the upstream's response head.
    pub upstream_seconds: Option<f64>,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
}

/// Webhook types Lean documents; anything else is counted as `other`, so a
/// client cannot mint label values.
const WEBHOOK_TYPES: [&str; 13] = [
    "entity.created",
    "entity.updated",
    "entity.reconnected",
    "results.ready",
    "entity.data.refresh.updated",
    "bank.availability.updated",
    "consent.status.updated",
    "payment_intent.created",
    "payment.created",
    "payment.updated",
    "payment_source.created",
    "payment_source.beneficiary.created",
    "payment_source.beneficiary.updated",
];

/// HTTP methods counted by name; others are `OTHER`.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// The entry of `known` equal to `value`.
fn static_of(value: &str, known: &[&'static str]) -> Option<&'static str> {
    known.iter().find(|k| **k == value).copied()
}

/// `value` as one of `known` (no allocation), or owned.
pub(crate) fn label(value: &str, known: &[&'static str]) -> Cow<'static, str> {
    static_of(value, known).map_or_else(|| Cow::Owned(value.to_string()), Cow::Borrowed)
}

fn bounded<'a>(value: &'a str, known: &[&str], other: &'a str) -> &'a str {
    if known.contains(&value) {
        value
    } else {
        other
    }
}

/// The metrics handle. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Families>,
}

#[derive(Debug)]
struct Families {
    /// Unique per instance (addresses are reused once freed).
    id: u64,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    upstream: Histogram,
    bytes_in: Counter,
    bytes_out: Counter,
    reconnects_pending: Gauge,
    reconnects: Counter,
    reconnects_resolved: Family<KindLabels, Counter>,
    /// The two `leanproxy_inspections` series, looked up once.
    inspected: Counter,
    uninspected: Counter,
    faults: Family<KindLabels, Counter>,
    webhooks: Family<WebhookLabels, Counter>,
    upstream_errors: Family<CauseLabels, Counter>,
    /// The two `leanproxy_stalled` series, looked up once.
    stalled_client: Counter,
    stalled_upstream: Counter,
    connections_open: Family<ListenerLabels, Gauge>,
    connection_limit: Family<ListenerLabels, Counter>,
    state: StateMetrics,
}

/// The shared state's backend: which, whether it answers, how fast, and its
/// failed calls.
#[derive(Debug)]
struct StateMetrics {
    backend: Family<BackendLabels, Gauge>,
    errors: Family<OpLabels, Counter>,
    up: Gauge,
    latency: Gauge<f64, AtomicU64>,
}

impl StateMetrics {
    fn register(registry: &mut Registry) -> Self {
        let backend = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "state_backend",
            "Where the shared state is kept (1 for the backend in use: memory or redis)",
            backend.clone(),
        );
        backend
            .get_or_create(&BackendLabels { backend: "memory" })
            .set(1);
        let errors = Family::<OpLabels, Counter>::default();
        registry.register(
            "state_errors",
            "Calls to the shared state (Redis) that failed or timed out, by operation",
            errors.clone(),
        );
        let up = Gauge::default();
        registry.register(
            "state_up",
            "Whether the shared state (Redis) answered its last ping (always 1 in memory)",
            up.clone(),
        );
        up.set(1);
        let latency = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "state_latency_seconds",
            "Round trip of the last ping to the shared state (Redis)",
            latency.clone(),
        );
        Self {
            backend,
            errors,
            up,
            latency,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All of leanproxy's metrics, registered under `leanproxy_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("leanproxy");
        let requests = Family::<RequestLabels, Counter>::default();
        // 0.5 ms .. ~33 s
        let duration = Histogram::new(exponential_buckets(0.0005, 2.0, 17));
        let upstream = Histogram::new(exponential_buckets(0.0005, 2.0, 17));
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let reconnects_pending = Gauge::default();
        let reconnects = Counter::default();
        let reconnects_resolved = Family::<KindLabels, Counter>::default();
        let inspections = Family::<ResultLabels, Counter>::default();
        let faults = Family::<KindLabels, Counter>::default();
        let webhooks = Family::<WebhookLabels, Counter>::default();
        let upstream_errors = Family::<CauseLabels, Counter>::default();
        registry.register(
            "requests",
            "Exchanges by method, HTTP status and Lean status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Total exchange time, body included",
            duration.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time to the upstream's response head",
            upstream.clone(),
        );
        registry.register("request_bytes", "Request body bytes", bytes_in.clone());
        registry.register("response_bytes", "Response body bytes", bytes_out.clone());
        registry.register(
            "reconnects_pending",
            "Entities waiting for a reconnect",
            reconnects_pending.clone(),
        );
        registry.register("reconnects", "Reconnects first seen", reconnects.clone());
        registry.register(
            "reconnects_resolved",
            "Reconnects resolved, by what resolved them",
            reconnects_resolved.clone(),
        );
        registry.register(
            "inspections",
            "Answers inspected for RECONNECT_REQUIRED, or passed uninspected",
            inspections.clone(),
        );
        registry.register(
            "faults_injected",
            "Answers a fault produced or changed, by action",
            faults.clone(),
        );
        registry.register(
            "webhooks_received",
            "Webhooks received, by type and signature verdict",
            webhooks.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failures reaching the upstream, by cause",
            upstream_errors.clone(),
        );
        let result = |result: &str| {
            inspections
                .get_or_create(&ResultLabels {
                    result: result.to_string(),
                })
                .clone()
        };
        let (inspected, uninspected) = (result("inspected"), result("uninspected"));
        let stalled = Family::<SideLabels, Counter>::default();
        registry.register(
            "stalled",
            "Answers cut because a peer stopped moving them: the app stopped \
             reading (side=client) or the upstream stopped sending (side=upstream)",
            stalled.clone(),
        );
        let side = |side| stalled.get_or_create(&SideLabels { side }).clone();
        let (stalled_client, stalled_upstream) = (side("client"), side("upstream"));
        let connections_open = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "connections_open",
            "Connections open, by listener",
            connections_open.clone(),
        );
        let connection_limit = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "connection_limit_reached",
            "Times a listener stopped accepting because it had proxy.max_connections open",
            connection_limit.clone(),
        );
        let state = StateMetrics::register(&mut registry);
        Self {
            inner: Arc::new(Families {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                registry,
                requests,
                duration,
                upstream,
                bytes_in,
                bytes_out,
                reconnects_pending,
                reconnects,
                reconnects_resolved,
                inspected,
                uninspected,
                faults,
                webhooks,
                upstream_errors,
                stalled_client,
                stalled_upstream,
                connections_open,
                connection_limit,
                state,
            }),
        }
    }

    /// Counts one completed exchange.
    pub fn exchange(&self, e: &Exchange<'_>) {
        let i = &self.inner;
        let labels = RequestLabels {
            method: Cow::Borrowed(static_of(e.method, &METHODS).unwrap_or("OTHER")),
            status: e.status,
            lean_status: label(e.lean_status.unwrap_or(""), &crate::lean::KNOWN_STATUSES),
        };
        let cached = LAST_SERIES.try_with(|last| {
            let mut last = last.borrow_mut();
            match &*last {
                Some((id, seen, series)) if *id == i.id && *seen == labels => {
                    series.inc();
                }
                _ => {
                    let series = i.requests.get_or_create(&labels).clone();
                    series.inc();
                    *last = Some((i.id, labels.clone(), series));
                }
            };
        });
        if cached.is_err() {
            // The thread is being torn down (an answer dropped by a
            // thread-local's destructor): counted without the cache.
            i.requests.get_or_create(&labels).inc();
        }
        i.duration.observe(e.total_seconds);
        if let Some(u) = e.upstream_seconds {
            i.upstream.observe(u);
        }
        i.bytes_in.inc_by(e.bytes_in);
        i.bytes_out.inc_by(e.bytes_out);
    }

    /// Counts a failure to reach the upstream.
    pub fn upstream_error(&self, cause: &str) {
        self.inner
            .upstream_errors
            .get_or_create(&CauseLabels {
                cause: cause.to_string(),
            })
            .inc();
    }

    /// Counts an answer cut because `side` stopped moving it.
    pub fn stalled(&self, side: StallSide) {
        match side {
            StallSide::Client => self.inner.stalled_client.inc(),
            StallSide::Upstream => self.inner.stalled_upstream.inc(),
        };
    }

    /// The connection metrics of the listener called `name` (`proxy`,
    /// `admin`, …).
    pub fn listener(&self, name: &'static str) -> ListenerMetrics {
        let labels = ListenerLabels { listener: name };
        ListenerMetrics {
            open: self.inner.connections_open.get_or_create(&labels).clone(),
            limit_reached: self.inner.connection_limit.get_or_create(&labels).clone(),
        }
    }

    /// Counts an injected fault.
    pub fn fault(&self, action: &str) {
        self.inner
            .faults
            .get_or_create(&KindLabels {
                kind: action.to_string(),
            })
            .inc();
    }

    /// Counts a received webhook.
    pub fn webhook(&self, kind: &str, signature: &str) {
        self.inner
            .webhooks
            .get_or_create(&WebhookLabels {
                kind: bounded(kind, &WEBHOOK_TYPES, "other").to_string(),
                signature: signature.to_string(),
            })
            .inc();
    }

    /// Counts a new reconnect.
    pub fn reconnect_new(&self) {
        self.inner.reconnects.inc();
    }

    /// Counts a resolved reconnect.
    pub fn reconnect_resolved(&self, by: &str) {
        self.inner
            .reconnects_resolved
            .get_or_create(&KindLabels {
                kind: by.to_string(),
            })
            .inc();
    }

    /// Counts an answer inspected (or not).
    pub fn inspection(&self, inspected: bool) {
        if inspected {
            self.inner.inspected.inc();
        } else {
            self.inner.uninspected.inc();
        }
    }

    /// Says which backend keeps the shared state.
    pub fn state_backend(&self, backend: &'static str) {
        self.inner.state.backend.clear();
        self.inner
            .state
            .backend
            .get_or_create(&BackendLabels { backend })
            .set(1);
    }

    /// Counts a failed call to the shared state.
    pub fn state_error(&self, op: &'static str) {
        self.inner
            .state
            .errors
            .get_or_create(&OpLabels { op })
            .inc();
    }

    /// Whether the shared state answers, and its last round trip.
    pub fn set_state(&self, up: bool, latency_seconds: f64) {
        self.inner.state.up.set(i64::from(up));
        if up {
            self.inner.state.latency.set(latency_seconds);
        }
    }

    /// Sets the pending-reconnects gauge.
    pub fn set_reconnects_pending(&self, n: usize) {
        self.inner.reconnects_pending.set(n as i64);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_instance_counts_its_own_exchanges_on_one_thread() {
        let exchange = |status| Exchange {
            method: "GET",
            status,
            lean_status: Some("OK"),
            total_seconds: 0.01,
            upstream_seconds: None,
            bytes_in: 0,
            bytes_out: 0,
        };
        let (a, b) = (Metrics::new(), Metrics::new());
        for _ in 0..3 {
            a.exchange(&exchange(200));
        }
        b.exchange(&exchange(200));
        a.exchange(&exchange(200));
        a.exchange(&exchange(404));
        a.exchange(&exchange(200));
        let series = |m: &Metrics, status: u16| {
            let line = format!(
                "leanproxy_requests_total{{method=\"GET\",status=\"{status}\",lean_status=\"OK\"}} "
            );
            let text = m.encode();
            text.lines()
                .find_map(|l| l.strip_prefix(line.as_str()))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("no {line} in\n{text}"))
        };
        assert_eq!(series(&a, 200), "5");
        assert_eq!(series(&a, 404), "1");
        assert_eq!(series(&b, 200), "1");
        drop(b);
        let c = Metrics::new();
        c.exchange(&exchange(200));
        assert_eq!(series(&c, 200), "1", "a new instance starts from zero");
        assert_eq!(series(&a, 200), "5");
    }

    #[test]
    fn counters_show_up_in_the_exposition() {
        let m = Metrics::new();
        m.exchange(&Exchange {
            method: "GET",
            status: 200,
            lean_status: Some("OK"),
            total_seconds: 0.01,
            upstream_seconds: Some(0.005),
            bytes_in: 10,
            bytes_out: 1024,
        });
        let mut other = Exchange {
            method: "PROPFIND",
            status: 400,
            lean_status: Some("INVALID_PARAMETERS"),
            total_seconds: 0.01,
            upstream_seconds: None,
            bytes_in: 0,
            bytes_out: 0,
        };
        m.exchange(&other);
        other.lean_status = None;
        m.exchange(&other);
        m.inspection(true);
        m.webhook("entity.reconnected", "valid");
        m.upstream_error("connect_refused");
        let text = m.encode();
        for line in [
            r#"leanproxy_requests_total{method="OTHER",status="400",lean_status="INVALID_PARAMETERS"} 1"#,
            r#"leanproxy_requests_total{method="OTHER",status="400",lean_status=""} 1"#,
            r#"leanproxy_inspections_total{result="inspected"} 1"#,
            r#"leanproxy_inspections_total{result="uninspected"} 0"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(
            text.contains(
                r#"leanproxy_requests_total{method="GET",status="200",lean_status="OK"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"leanproxy_webhooks_received_total{kind="entity.reconnected",signature="valid"} 1"#), "{text}");
        assert!(
            text.contains("leanproxy_response_bytes_total 1024"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
