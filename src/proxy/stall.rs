//! Upstream answers whose body stops: after `proxy.upstream_body_timeout`
//! without a byte, the body ends with [`UpstreamStalled`], so the app sees an
//! answer cut short instead of waiting until it gives up, and the upstream
//! connection is closed (what is left of the answer cannot be skipped).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::body::BoxError;
use crate::metrics::{Metrics, StallSide};
use crate::progress::Progress;

/// The error an answer's body ends with when its upstream sent nothing for
/// the limit.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent no bytes of its answer for {} (proxy.upstream_body_timeout)", humantime::format_duration(*.0))]
pub struct UpstreamStalled(pub Duration);

/// Counts and logs a body cut after `limit`; the error it ends with.
pub(super) fn cut(
    limit: Duration,
    metrics: Option<&Metrics>,
    upstream: &dyn std::fmt::Display,
) -> BoxError {
    if let Some(metrics) = metrics {
        metrics.stalled(StallSide::Upstream);
    }
    tracing::warn!(%upstream, limit = %humantime::format_duration(limit), "the upstream stopped sending an answer's body: cut");
    Box::new(UpstreamStalled(limit))
}

/// An answer's body from hyper-util's pooled client (https upstreams), cut
/// when it stalls. Dropping the body on the cut closes its connection: the
/// client does not pool a connection whose answer was not read to its end.
pub(super) struct Stalling<B> {
    inner: Option<B>,
    progress: Progress,
    metrics: Option<Metrics>,
    upstream: Arc<str>,
}

impl<B> Stalling<B> {
    pub(super) fn new(
        inner: B,
        limit: Duration,
        metrics: Option<Metrics>,
        upstream: Arc<str>,
    ) -> Self {
        Self {
            inner: Some(inner),
            progress: Progress::new(limit),
            metrics,
            upstream,
        }
    }
}

impl<B> http_body::Body for Stalling<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => {
                // A timer per answer: hyper-util's client has no app
                // connection to borrow one from.
                if this.progress.stalled(cx, || None) {
                    this.inner = None;
                    let limit = this.progress.limit();
                    return Poll::Ready(Some(Err(cut(
                        limit,
                        this.metrics.as_ref(),
                        &this.upstream,
                    ))));
                }
                Poll::Pending
            }
            Poll::Ready(frame) => {
                this.progress.moved();
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
        }
    }

    // Once cut, the body has not ended: it failed, and must not look
    // complete to a caller that asks before polling it for the error.
    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_some_and(B::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(SizeHint::default, B::size_hint)
    }
}
