//! `[tls]`: the extra CA and the client certificate (mTLS) towards the upstream.

use super::raw::RawTls;
use super::{targets, Checker, Target, TlsSettings};

/// Validates `[tls]`; a target that needs mTLS (`upstream`, as written)
/// requires the client certificate.
pub(super) fn validate(
    c: &mut Checker,
    raw: &RawTls,
    target: Option<&Target>,
    upstream: Option<&str>,
) -> TlsSettings {
    let ca_file = c.path("tls.ca_file", &raw.ca_file);
    let cert = c.path("tls.client_cert", &raw.client_cert);
    let key = c.path("tls.client_key", &raw.client_key);
    let client_identity = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (Some(_), None) => {
            c.fail("tls.client_key", "required when tls.client_cert is set");
            None
        }
        (None, Some(_)) => {
            c.fail("tls.client_cert", "required when tls.client_key is set");
            None
        }
        (None, None) => None,
    };
    if target.as_ref().is_some_and(|t| t.mtls) && client_identity.is_none() {
        c.fail(
            "tls.client_cert",
            format!(
                "required for {}: {}",
                upstream.unwrap_or_default(),
                targets::MTLS_REQUIRED
            ),
        );
    }
    TlsSettings {
        ca_file,
        client_identity,
    }
}
