//! Leanproxy's outbound HTTP, shared by the upstream edge ([`crate::proxy`]),
//! the OAuth2 token source, the webhook relay, the Mockbank's webhooks and the
//! CLI: the TLS client configuration and connector ([`tls`]), and what a
//! failed call means ([`classify`]).

use std::error::Error as StdError;
use std::io;

use http::StatusCode;

pub mod tls;

pub use tls::{TlsError, TlsSettings};

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

    /// One sentence for answers and logs.
    pub(crate) fn summary(self) -> &'static str {
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

/// A client error, classified: what failed and all its causes as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// What went wrong.
    pub failure: Failure,
    /// The error's chain of causes, as one line.
    pub detail: String,
}

/// Classifies a client error and renders its causes as one line.
pub fn classify(err: &(dyn StdError + 'static)) -> Classified {
    classify_chain(err, false)
}

/// Classifies an error from opening a connection.
pub(crate) fn classify_connect(err: &(dyn StdError + 'static)) -> Classified {
    classify_chain(err, true)
}

fn classify_chain(err: &(dyn StdError + 'static), mut connect: bool) -> Classified {
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
    Classified {
        failure,
        detail: parts.join(": "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_io_error_is_a_502() {
        let err = io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused");
        let Classified { failure, detail } = classify(&err);
        assert_eq!(failure, Failure::ConnectRefused);
        assert_eq!(failure.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(detail, "Connection refused");
    }

    #[test]
    fn tls_error_inside_io_error_is_tls() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let err = io::Error::new(io::ErrorKind::InvalidData, tls);
        let Classified { failure, detail } = classify(&err);
        assert_eq!(failure, Failure::Tls);
        assert!(detail.contains("UnknownIssuer"), "{detail}");
    }

    #[test]
    fn tls_error_nested_in_two_io_errors_is_tls() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let err = io::Error::other(io::Error::new(io::ErrorKind::InvalidData, tls));
        assert_eq!(classify(&err).failure, Failure::Tls);
    }
}
