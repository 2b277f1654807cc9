//! The one place where transport failures become HTTP answers: 502 when the
//! upstream cannot be reached or breaks the exchange, 504 when it is too slow. The
//! body is Lean's error envelope, with leanproxy's diagnosis in `metadata`.

use std::error::Error as StdError;
use std::io;

use http::{Response, StatusCode};
use serde_json::json;

use crate::body::Body;
use crate::lean::ErrorEnvelope;

/// What went wrong between leanproxy and the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// TCP connection refused.
    ConnectRefused,
    /// TCP connect did not finish within `proxy.connect_timeout`.
    ConnectTimeout,
    /// The host name did not resolve.
    Dns,
    /// TLS handshake failed (untrusted certificate, client certificate refused…).
    Tls,
    /// Any other failure to connect.
    Connect,
    /// No response head within `proxy.response_timeout`.
    ResponseTimeout,
    /// The connection broke or the upstream answered something that is not HTTP.
    Exchange,
}

impl Failure {
    /// Stable name, used in `metadata.cause` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::ConnectRefused => "connect_refused",
            Failure::ConnectTimeout => "connect_timeout",
            Failure::Dns => "dns",
            Failure::Tls => "tls",
            Failure::Connect => "connect",
            Failure::ResponseTimeout => "response_timeout",
            Failure::Exchange => "exchange",
        }
    }

    /// 504 for timeouts, 502 for everything else.
    pub fn status(self) -> StatusCode {
        match self {
            Failure::ConnectTimeout | Failure::ResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    fn summary(self) -> &'static str {
        match self {
            Failure::ConnectRefused => "the upstream refused the connection",
            Failure::ConnectTimeout => "connecting to the upstream timed out",
            Failure::Dns => "the upstream host name could not be resolved",
            Failure::Tls => "the TLS handshake with the upstream failed",
            Failure::Connect => "the upstream could not be reached",
            Failure::ResponseTimeout => "the upstream did not answer in time",
            Failure::Exchange => "the exchange with the upstream failed",
        }
    }
}

/// Classifies a client error and renders its causes as one line.
pub fn classify(err: &(dyn StdError + 'static)) -> (Failure, String) {
    classify_chain(err, false)
}

/// Classifies an error from opening a connection.
pub(crate) fn classify_connect(err: &(dyn StdError + 'static)) -> (Failure, String) {
    classify_chain(err, true)
}

fn classify_chain(err: &(dyn StdError + 'static), mut connect: bool) -> (Failure, String) {
    let mut failure = None;
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(client) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            connect |= client.is_connect();
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            let inner_is_tls = io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
            failure = failure.or(match io.kind() {
                _ if inner_is_tls => Some(Failure::Tls),
                io::ErrorKind::ConnectionRefused => Some(Failure::ConnectRefused),
                io::ErrorKind::TimedOut if connect => Some(Failure::ConnectTimeout),
                _ => None,
            });
        }
        if e.downcast_ref::<rustls::Error>().is_some() {
            failure = failure.or(Some(Failure::Tls));
        }
        let text = e.to_string();
        if text.contains("dns error") || text.contains("failed to lookup address") {
            failure = failure.or(Some(Failure::Dns));
        }
        // A TLS 1.3 server refuses a client certificate after the handshake; the
        // alert then arrives inside h2's error, which does not expose its source.
        if text.contains("received fatal alert") {
            failure = failure.or(Some(Failure::Tls));
        }
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        // `io::Error::source()` skips the error it wraps (and connectors wrap
        // io errors in io errors), so descend through `get_ref()` instead.
        current = match e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    let failure = failure.unwrap_or(if connect {
        Failure::Connect
    } else {
        Failure::Exchange
    });
    (failure, parts.join(": "))
}

/// The answer to a request whose body failed while it was being forwarded
/// (malformed chunked framing, a body cut short): the app's error, 400 in
/// Lean's envelope. Not a [`Failure`]:
/// the upstream did nothing wrong, and metrics do not count it as one.
pub(crate) fn request_body_response(detail: &str) -> Response<Body> {
    ErrorEnvelope::new(
        "INVALID_PARAMETERS",
        format!("leanproxy: the request body could not be read: {detail}"),
    )
    .with_metadata(json!({"source": "leanproxy", "cause": "request_body"}))
    .into_response(StatusCode::BAD_REQUEST)
}

/// The 502/504 answer for `failure`, in Lean's error envelope.
pub fn failure_response(failure: Failure, detail: &str, upstream: &str) -> Response<Body> {
    let status = failure.status();
    let code = if status == StatusCode::GATEWAY_TIMEOUT {
        "GATEWAY_TIMEOUT"
    } else {
        "BAD_GATEWAY"
    };
    let message = format!("leanproxy: {} ({upstream}): {detail}", failure.summary());
    let mut response = ErrorEnvelope::new(code, message)
        .with_metadata(json!({
            "source": "leanproxy",
            "cause": failure.as_str(),
            "upstream": upstream,
        }))
        .into_response(status);
    response.extensions_mut().insert(failure);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_io_error_is_a_502() {
        let err = io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused");
        let (failure, detail) = classify(&err);
        assert_eq!(failure, Failure::ConnectRefused);
        assert_eq!(failure.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(detail, "Connection refused");
    }

    #[test]
    fn tls_error_inside_io_error_is_tls() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let err = io::Error::new(io::ErrorKind::InvalidData, tls);
        let (failure, detail) = classify(&err);
        assert_eq!(failure, Failure::Tls);
        assert!(detail.contains("UnknownIssuer"), "{detail}");
    }

    #[test]
    fn tls_error_nested_in_two_io_errors_is_tls() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let err = io::Error::other(io::Error::new(io::ErrorKind::InvalidData, tls));
        assert_eq!(classify(&err).0, Failure::Tls);
    }

    #[test]
    fn response_names_cause_and_upstream() {
        let r = failure_response(Failure::ResponseTimeout, "after 1s", "http://up");
        assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            r.extensions().get::<Failure>(),
            Some(&Failure::ResponseTimeout)
        );
    }
}
