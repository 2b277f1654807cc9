//! The one place where transport failures become HTTP answers: 502 when the
//! upstream cannot be reached or breaks the exchange, 504 when it is too slow. The
//! body is Lean's error envelope, with leanproxy's diagnosis in `metadata`.

use http::{Response, StatusCode};
use serde_json::json;

use crate::body::Body;
use crate::client::Failure;
use crate::lean::ErrorEnvelope;

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
    fn response_names_cause_and_upstream() {
        let r = failure_response(Failure::ResponseTimeout, "after 1s", "http://up");
        assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            r.extensions().get::<Failure>(),
            Some(&Failure::ResponseTimeout)
        );
    }
}
