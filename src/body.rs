//! The one body type that flows through the layer stack.
//!
//! Every layer takes `Request<Body>` and answers `Response<Body>`, so a layer that
//! answers by itself (a fault, an error) and one that forwards (the upstream edge)
//! return the same type. A body is a boxed stream of `Bytes` frames: nothing is
//! buffered whole.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use pin_project_lite::pin_project;

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

/// Looks at a body as it streams past, without changing it (see [`watched`]).
pub(crate) trait Watch: Send + 'static {
    /// A data frame passes.
    fn data(&mut self, data: &Bytes);

    /// The body ended (`complete`), or failed or was dropped before its end.
    /// Called once.
    fn end(self, complete: bool)
    where
        Self: Sized,
    {
        let _ = complete;
    }
}

pin_project! {
    struct Watched<W: Watch> {
        #[pin]
        inner: Body,
        watch: Option<W>,
    }

    impl<W: Watch> PinnedDrop for Watched<W> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(watch) = this.project().watch.take() {
                watch.end(false);
            }
        }
    }
}

/// `inner`, shown frame by frame to `watch`, which also learns how it ended.
pub(crate) fn watched<W: Watch>(inner: Body, watch: W) -> Body {
    boxed(Watched {
        inner,
        watch: Some(watch),
    })
}

impl<W: Watch> http_body::Body for Watched<W> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(watch)) = (frame.data_ref(), this.watch.as_mut()) {
                    watch.data(data);
                }
                // hyper stops polling once the body says it has ended.
                this.inner.is_end_stream().then_some(true)
            }
            Poll::Ready(None) => Some(true),
            Poll::Ready(Some(Err(_))) => Some(false),
            Poll::Pending => None,
        };
        if let Some(complete) = ended {
            if let Some(watch) = this.watch.take() {
                watch.end(complete);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `headers` declare a JSON body (`application/json`, any `+json`),
/// case-insensitively, parameters ignored.
pub fn is_json(headers: &http::HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).is_some_and(|v| {
        // The bytes compared in place, in one walk: lower-casing a copy
        // would allocate per answer, and `to_str` plus `split` walk the
        // value twice more.
        let v = v.as_bytes();
        let ct = v[..memchr::memchr(b';', v).unwrap_or(v.len())].trim_ascii();
        ct.eq_ignore_ascii_case(b"application/json")
            || ct.len() >= 5 && ct[ct.len() - 5..].eq_ignore_ascii_case(b"+json")
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

#[cfg(test)]
mod watch_tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records what it saw into a shared log.
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl Watch for Seen {
        fn data(&mut self, data: &Bytes) {
            self.0.lock().unwrap().push(format!("{} bytes", data.len()));
        }

        fn end(self, complete: bool) {
            self.0.lock().unwrap().push(format!("end {complete}"));
        }
    }

    #[tokio::test]
    async fn a_watch_sees_each_frame_and_one_end() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let body = watched(full("hello"), Seen(log.clone()));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
        assert_eq!(*log.lock().unwrap(), ["5 bytes", "end true"]);

        let log = Arc::new(Mutex::new(Vec::new()));
        drop(watched(full("never read"), Seen(log.clone())));
        assert_eq!(
            *log.lock().unwrap(),
            ["end false"],
            "dropped before its end"
        );
    }
}

#[cfg(test)]
mod json_tests {
    use super::is_json;

    #[test]
    fn json_media_types_in_any_case_with_parameters() {
        let json = |ct: Option<&str>| {
            let mut headers = http::HeaderMap::new();
            if let Some(ct) = ct {
                headers.insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
            }
            is_json(&headers)
        };
        assert!(json(Some("application/json")));
        assert!(json(Some("Application/JSON; charset=utf-8")));
        assert!(json(Some(" application/problem+JSON ;q=1")));
        assert!(!json(Some("text/plain")));
        assert!(!json(Some("json")));
        assert!(!json(Some("application/jsonl")));
        assert!(!json(None));
    }
}
