//! The one body type that flows through the layer stack.
//!
//! Every layer takes `Request<Body>` and answers `Response<Body>`, so a layer that
//! answers by itself (a fault, an error) and one that forwards (the upstream edge)
//! return the same type. A body is a boxed stream of `Bytes` frames: nothing is
//! buffered whole.

use bytes::{Bytes, BytesMut};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

/// Errors carried through the stack: transport and body errors of any origin.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming HTTP body, boxed so every layer shares one type.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes`, sent in one frame.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body with no data.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Boxes any body whose errors convert into [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// Whether `headers` declare a JSON body (`application/json`, any `+json`),
/// case-insensitively, parameters ignored.
pub fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            ct == "application/json" || ct.ends_with("+json")
        })
}

/// Why a bounded read stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The body is larger than allowed.
    #[error("larger than {0} bytes")]
    TooLarge(usize),
    /// The body failed while streaming.
    #[error("{0}")]
    Body(BoxError),
}

/// Reads a whole body that is expected to be small, refusing more than `max`
/// bytes. (`http_body_util::Limited` cannot be used with this crate's boxed error
/// type inside a `Send` future; this loop can.)
pub async fn read_limited(mut body: Body, max: usize) -> Result<Bytes, ReadError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ReadError::Body)?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > max {
                return Err(ReadError::TooLarge(max));
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(buf.freeze())
}
