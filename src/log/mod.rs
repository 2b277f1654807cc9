//! The request log: what the app said to Lean and what came back, without the
//! secrets and personal data that flow through an open-banking API.
//!
//! [`RequestLogLayer`] (outermost) gives every exchange an id (`x-request-id`,
//! propagated or generated, echoed on the answer) and, when the answer's body
//! ends, completes one record: method, path, query (secrets removed), status,
//! Lean `status`, entity, reconnect id, fault, upstream time to first byte, total
//! time, bytes each way, `lean-correlation-id`, and capped, redacted captures of
//! both bodies. [`Telemetry`] fans the record out to:
//!
//! - one structured tracing event (5xx at WARN),
//! - the [`Ring`] buffer behind `GET /api/requests` and the HAR export,
//! - the [`Journal`] (JSON lines, rotated by size), when configured,
//! - the live [`Events`](crate::events::Events) (`GET /api/events`),
//! - the [`Metrics`](crate::metrics::Metrics) (`GET /metrics`).

mod har;
mod journal;
mod layer;
mod lines;
mod record;
pub mod redact;
mod ring;
mod stderr;

use std::io::IsTerminal;
use std::sync::Arc;

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::EnvFilter;

pub use har::document as har_document;
pub use journal::{files as journal_files, Journal, JournalConfig};
pub use layer::{RequestLog, RequestLogLayer, ResponseFuture};
pub use record::{lean_status, Capture, ExchangeRecord, Headers, Rendered};
pub use ring::{Filter, Ring};
pub use stderr::BatchedStderr;

/// Format of leanproxy's own log lines (`log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable single lines, colored on a terminal.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}
use crate::events::Events;
use crate::metrics::Metrics;

/// How much of an answer's body the request log reads for Lean's `status`.
const STATUS_PREFIX: usize = 4096;

/// Request log settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Exchanges kept in the ring buffer (0: none).
    pub ring_entries: usize,
    /// Bytes the ring buffer may keep.
    pub ring_bytes: usize,
    /// Bytes captured of each body.
    pub capture_limit: usize,
    /// Remove secrets and personal data (on unless turned off for local debugging).
    pub redact: bool,
    /// The configured secrets, scrubbed from whatever is shown wherever they
    /// appear (an upstream may echo one); set by the application.
    pub known_secrets: Vec<crate::secret::Secret>,
    /// The journal, when configured.
    pub journal: Option<JournalConfig>,
    /// Exchange lines on stderr per second at most, for 5xx answers (WARN)
    /// and for the others (INFO) each (0: every exchange). The others are
    /// counted, and reported by [`Telemetry::report_held_lines`], which must
    /// then run. The `leanproxy` binary sets 100 (`log.lines_per_second`).
    pub lines_per_second: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            ring_entries: 1000,
            // 8 MiB: a thousand small exchanges, or the last ~250 with both
            // bodies captured to the limit (16 KiB each). Under 512 KiB
            // answers at 64 connections, peak RSS was ~145 MiB with 64 MiB and
            // 64 KiB, ~60 MiB with 16 MiB and 64 KiB, ~32 MiB with these.
            ring_bytes: 8 << 20,
            capture_limit: 16 << 10,
            redact: true,
            known_secrets: Vec::new(),
            journal: None,
            lines_per_second: 0,
        }
    }
}

/// Where completed exchanges go. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Telemetry {
    inner: Arc<TelemetryState>,
}

#[derive(Debug)]
struct TelemetryState {
    config: LogConfig,
    redactor: redact::Redactor,
    ring: Ring,
    journal: Option<Journal>,
    events: Events,
    metrics: Metrics,
    /// Budgets for INFO (below 500) and WARN (5xx) exchange lines.
    lines: lines::LineBudget,
    warn_lines: lines::LineBudget,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new(LogConfig::default(), Events::default(), Metrics::new())
    }
}

impl Telemetry {
    /// Telemetry over `config`, publishing to `events` and counting in `metrics`.
    /// Starts the journal's writer thread when a journal is configured.
    pub fn new(config: LogConfig, events: Events, metrics: Metrics) -> Self {
        let journal = config.journal.clone().map(Journal::start);
        let redactor = if config.redact {
            redact::Redactor::on(config.known_secrets.iter().map(|s| s.expose().to_string()))
        } else {
            redact::Redactor::off()
        };
        Self {
            inner: Arc::new(TelemetryState {
                redactor,
                ring: Ring::new(config.ring_entries, config.ring_bytes),
                lines: lines::LineBudget::new(config.lines_per_second),
                warn_lines: lines::LineBudget::new(config.lines_per_second),
                config,
                journal,
                events,
                metrics,
            }),
        }
    }

    /// The ring buffer.
    pub fn ring(&self) -> &Ring {
        &self.inner.ring
    }

    /// The journal, when configured.
    pub fn journal(&self) -> Option<&Journal> {
        self.inner.journal.as_ref()
    }

    /// The event bus.
    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Whether an exchange with `status` gets its line on stderr.
    fn admit_line(&self, status: u16) -> bool {
        if status >= 500 {
            self.inner.warn_lines.admit(status)
        } else {
            self.inner.lines.admit(status)
        }
    }

    /// Once a second until `stop` completes (and once more then), one line
    /// counting the exchange lines held back by `log.lines_per_second`.
    pub async fn report_held_lines(self, stop: impl std::future::Future<Output = ()>) {
        let per_second = self.inner.lines.per_second();
        if per_second == 0 {
            return;
        }
        const SEE: &str = "see /api/requests, `leanproxy tail` or log.journal";
        let report = || {
            let held = self.inner.lines.take_held();
            if held.total() > 0 {
                tracing::info!(
                    target: "leanproxy::exchange",
                    "{} more exchanges than log.lines_per_second = {per_second} allows ({}); {SEE}",
                    held.total(),
                    held.breakdown(),
                );
            }
            let held = self.inner.warn_lines.take_held();
            if held.total() > 0 {
                tracing::warn!(
                    target: "leanproxy::exchange",
                    "{} more 5xx exchanges than log.lines_per_second = {per_second} allows; {SEE}",
                    held.total(),
                );
            }
        };
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => report(),
                () = &mut stop => break,
            }
        }
        report();
    }

    /// How what is kept is shown.
    pub fn redactor(&self) -> &redact::Redactor {
        &self.inner.redactor
    }

    /// How much of a body is kept: the configured capture when a record keeps
    /// it, else `unkept` (an answer's [`STATUS_PREFIX`] for Lean's `status`; none
    /// of a request, whose size is counted all the same).
    fn capture_limit(&self, unkept: usize) -> usize {
        if self.keeps_records() {
            self.inner.config.capture_limit
        } else {
            unkept
        }
    }

    fn keeps_records(&self) -> bool {
        self.inner.config.ring_entries > 0 || self.inner.journal.is_some()
    }

    fn keep(&self, record: ExchangeRecord) {
        let record = Arc::new(record);
        if let Some(journal) = &self.inner.journal {
            journal.append(record.clone());
        }
        if self.inner.config.ring_entries > 0 {
            self.inner.ring.push(record);
        }
    }
}

/// Installs the global tracing subscriber: `RUST_LOG` filter (default `info`),
/// lines on stderr, human-readable or JSON, written in batches
/// ([`BatchedStderr`]; call [`BatchedStderr::flush_global`] before exiting).
pub fn install_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(BatchedStderr::global().clone())
        .with_ansi(std::io::stderr().is_terminal());
    // A second install (tests, embedding) keeps the first subscriber.
    let _ = match format {
        // `name=value` without the default formatter's styling of each name:
        // the styling runs for every field of every line, colors on or off,
        // and is most of what a line costs to format (benches/HISTORY.md).
        LogFormat::Pretty => builder
            .fmt_fields(
                tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
                    let name = field.name();
                    match name {
                        "message" => write!(w, "{value:?}"),
                        // Where events bridged from the `log` crate came from.
                        _ if name.starts_with("log.") => Ok(()),
                        _ => write!(w, "{}={value:?}", name.trim_start_matches("r#")),
                    }
                })
                .delimited(" "),
            )
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{self, Body};
    use crate::exchange::X_REQUEST_ID;
    use http::{HeaderValue, Request, Response};
    use http_body_util::BodyExt;
    use std::convert::Infallible;
    use tower::{service_fn, Layer, ServiceExt};

    async fn exchange(
        telemetry: &Telemetry,
        id: Option<&str>,
        answer: &'static str,
    ) -> (HeaderValue, HeaderValue) {
        let echo = service_fn(move |req: Request<Body>| async move {
            let seen = req.headers()[&X_REQUEST_ID].clone();
            // Like an upstream, read what the app sent.
            req.into_body().collect().await.unwrap();
            let mut r = Response::new(body::full(answer));
            r.headers_mut().insert("x-seen", seen);
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            Ok::<_, Infallible>(r)
        });
        let mut req = Request::new(body::full(r#"{"entity_id":"e"}"#));
        if let Some(id) = id {
            req.headers_mut()
                .insert(&X_REQUEST_ID, HeaderValue::from_str(id).unwrap());
        }
        let response = RequestLogLayer::new(telemetry.clone())
            .layer(echo)
            .oneshot(req)
            .await
            .unwrap();
        let seen = response.headers()["x-seen"].clone();
        let echoed = response.headers()[&X_REQUEST_ID].clone();
        response.into_body().collect().await.unwrap();
        (seen, echoed)
    }

    #[tokio::test]
    async fn app_request_id_is_propagated_and_echoed() {
        let (upstream, echoed) = exchange(&Telemetry::default(), Some("app-123"), "{}").await;
        assert_eq!(upstream, "app-123");
        assert_eq!(echoed, "app-123");
    }

    #[tokio::test]
    async fn missing_request_id_is_generated_once() {
        let (upstream, echoed) = exchange(&Telemetry::default(), None, "{}").await;
        assert_eq!(upstream, echoed);
        assert_eq!(upstream.len(), 36);
    }

    #[tokio::test]
    async fn one_request_id_goes_on_when_the_app_sent_several() {
        let upstream = service_fn(|req: Request<Body>| async move {
            let ids: Vec<_> = req
                .headers()
                .get_all(&X_REQUEST_ID)
                .iter()
                .cloned()
                .collect();
            Ok::<_, Infallible>(Response::new(body::full(format!("{ids:?}"))))
        });
        let mut req = Request::new(body::empty());
        req.headers_mut()
            .append(&X_REQUEST_ID, HeaderValue::from_static("app-1"));
        req.headers_mut()
            .append(&X_REQUEST_ID, HeaderValue::from_static("app-2"));
        let telemetry = Telemetry::default();
        let r = RequestLogLayer::new(telemetry.clone())
            .layer(upstream)
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(r.headers()[&X_REQUEST_ID], "app-1");
        let seen = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&seen[..], br#"["app-1"]"#);
        let record = telemetry.ring().get("app-1").expect("kept");
        let sent: Vec<_> = record.request_headers.pairs();
        assert_eq!(
            sent.iter().filter(|(k, _)| k == "x-request-id").count(),
            1,
            "{sent:?}"
        );
    }

    #[tokio::test]
    async fn oversized_request_id_is_replaced() {
        let long = "x".repeat(129);
        let (upstream, _) = exchange(&Telemetry::default(), Some(&long), "{}").await;
        assert_ne!(upstream, long.as_str());
    }

    #[tokio::test]
    async fn completed_exchange_is_kept_with_lean_status_and_sizes() {
        let telemetry = Telemetry::default();
        exchange(&telemetry, Some("r-1"), r#"{"status":"OK","payload":{}}"#).await;
        let record = telemetry.ring().get("r-1").expect("kept");
        assert_eq!(record.lean_status.as_deref(), Some("OK"));
        assert_eq!(record.bytes_out, 28);
        assert_eq!(record.bytes_in, 17);
        assert!(record.completed);
        assert!(telemetry.metrics().encode().contains("lean_status=\"OK\""));
    }

    #[tokio::test]
    async fn record_names_what_the_headers_said() {
        let telemetry = Telemetry::default();
        let upstream = service_fn(|req: Request<Body>| async move {
            req.into_body().collect().await.unwrap();
            let mut r = Response::new(body::full(r#"{"status":"SOMETHING_NEW"}"#));
            let h = r.headers_mut();
            h.insert("content-type", HeaderValue::from_static("application/json"));
            h.insert("lean-correlation-id", HeaderValue::from_static("corr-9"));
            h.insert(
                &crate::exchange::X_LEANPROXY_INJECTED,
                HeaderValue::from_static("slow-accounts"),
            );
            Ok::<_, Infallible>(r)
        });
        let req = Request::post("http://bank.test/customers/v1/?secret=x")
            .header("host", "lean.test")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body::full("a=1&b=2"))
            .unwrap();
        let response = RequestLogLayer::new(telemetry.clone())
            .layer(upstream)
            .oneshot(req)
            .await
            .unwrap();
        let id = response.headers()[&X_REQUEST_ID]
            .to_str()
            .unwrap()
            .to_string();
        response.into_body().collect().await.unwrap();
        let record = telemetry.ring().get(&id).expect("kept");
        assert_eq!(record.method, http::Method::POST);
        assert_eq!(record.version, "HTTP/1.1");
        assert_eq!(record.host.as_deref(), Some("lean.test"));
        assert_eq!(record.lean_status.as_deref(), Some("SOMETHING_NEW"));
        assert_eq!(record.lean_correlation_id.as_deref(), Some("corr-9"));
        assert_eq!(record.fault.as_deref(), Some("slow-accounts"));
        let request_body = record.request_body.as_ref().expect("captured");
        assert_eq!(
            request_body.mime(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(request_body.render().text.as_deref(), Some("a=1&b=2"));
        let response_body = record.response_body.as_ref().expect("captured");
        assert_eq!(response_body.mime(), Some("application/json"));
        let shown = serde_json::to_value(&*record).unwrap();
        assert_eq!(shown["id"], id.as_str());
        assert_eq!(shown["method"], "POST");
        assert_eq!(shown["version"], "HTTP/1.1");
        let sent: Vec<_> = record.request_headers.pairs();
        assert!(
            sent.contains(&("x-request-id".to_string(), id.clone())),
            "the generated id is among the headers sent: {sent:?}"
        );
    }

    #[tokio::test]
    async fn the_record_has_the_lean_status_and_entity_through_the_reconnect_layer() {
        let telemetry = Telemetry::default();
        let upstream = service_fn(|_req: Request<Body>| async move {
            let mut r = Response::new(body::full(r#"{"status":"PENDING","payload":{}}"#));
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            Ok::<_, Infallible>(r)
        });
        let (reconnect, _registry) = crate::reconnect::ReconnectLayer::pair(1 << 20);
        let stack = RequestLogLayer::new(telemetry.clone()).layer(reconnect.layer(upstream));
        let req = Request::get("/data/v2/accounts?entity_id=e-1")
            .header(&X_REQUEST_ID, "noted-1")
            .body(body::empty())
            .unwrap();
        let response = stack.oneshot(req).await.unwrap();
        response.into_body().collect().await.unwrap();
        let record = telemetry.ring().get("noted-1").expect("kept");
        assert_eq!(record.lean_status.as_deref(), Some("PENDING"));
        assert_eq!(record.entity_id.as_deref(), Some("e-1"));
    }

    #[test]
    fn ring_stays_within_its_byte_cap_under_many_large_records() {
        let ring = Ring::new(1000, 8 << 20);
        let text = bytes::Bytes::from("x".repeat(1 << 20));
        for i in 0..20_000 {
            let mut record = sample(i);
            record.response_body = Some(Capture::new(
                text.clone(),
                1 << 20,
                false,
                Some("text/plain"),
                crate::log::redact::Redactor::default(),
            ));
            ring.push(Arc::new(record));
            let (_, bytes) = ring.usage();
            assert!(bytes <= ring.max_bytes(), "{bytes} bytes kept after {i}");
        }
        let (entries, bytes) = ring.usage();
        assert!(entries >= 7, "recent records are kept: {entries}");
        assert!(bytes <= 8 << 20);
        assert_eq!(ring.list(&Filter::default())[0].id, "19999", "newest first");
    }

    fn sample(i: usize) -> ExchangeRecord {
        ExchangeRecord {
            id: http::HeaderValue::from(i),
            started_at: chrono::Utc::now(),
            method: http::Method::GET,
            host: None,
            path: "/data/v2/accounts".into(),
            query: None,
            version: "HTTP/1.1",
            client: None,
            request_headers: Headers::default(),
            request_body: None,
            status: 200,
            response_headers: Headers::default(),
            response_body: None,
            lean_status: Some("OK".into()),
            entity_id: None,
            reconnect_id: None,
            fault: None,
            lean_correlation_id: None,
            upstream_ms: None,
            duration_ms: 1.0,
            bytes_in: 0,
            bytes_out: 0,
            completed: true,
            upstream_error: None,
            route: None,
            replica: None,
        }
    }
}
