//! Bodies of faults that change a real answer on its way to the app.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::body::{Body, BoxError};

/// Why a truncated body ends.
#[derive(Debug, thiserror::Error)]
#[error("body truncated after {0} bytes by an injected fault")]
pub(super) struct Truncated(pub(super) u64);

/// How long a truncated body waits after its last bytes before failing, so the
/// server flushes them (it drops unflushed output when a body fails).
const FLUSH_PAUSE: Duration = Duration::from_millis(20);

pin_project! {
    /// Passes the first `limit` bytes, then fails, so the connection is cut.
    pub(super) struct TruncateBody {
        #[pin]
        inner: Body,
        left: u64,
        limit: u64,
        #[pin]
        flush: Option<Sleep>,
        done: bool,
    }
}

impl TruncateBody {
    /// Cuts `inner` after `limit` bytes.
    pub(super) fn new(inner: Body, limit: u64) -> Self {
        Self {
            inner,
            left: limit,
            limit,
            flush: None,
            done: false,
        }
    }
}

impl http_body::Body for TruncateBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        if *this.left == 0 {
            if this.flush.is_none() {
                this.flush.set(Some(tokio::time::sleep(FLUSH_PAUSE)));
            }
            if let Some(pause) = this.flush.as_mut().as_pin_mut() {
                if pause.poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            *this.done = true;
            return Poll::Ready(Some(Err(Box::new(Truncated(*this.limit)))));
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    if data.len() as u64 > *this.left {
                        data.truncate(*this.left as usize);
                    }
                    *this.left -= data.len() as u64;
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                // Trailers of a truncated body are not sent.
                Err(_) => {
                    *this.done = true;
                    Poll::Ready(Some(Err(Box::new(Truncated(*this.limit)))))
                }
            },
            // The real answer ended before the limit: it passes whole.
            other => other,
        }
    }
}

pin_project! {
    /// Streams the real body at about `rate` bytes per second, in slices of a
    /// tenth of a second.
    pub(super) struct ThrottleBody {
        #[pin]
        inner: Body,
        rate: u64,
        held: Bytes,
        #[pin]
        pause: Option<Sleep>,
        ended: bool,
    }
}

impl ThrottleBody {
    /// Throttles `inner` to `rate` bytes per second.
    pub(super) fn new(inner: Body, rate: u64) -> Self {
        Self {
            inner,
            rate: rate.max(1),
            held: Bytes::new(),
            pause: None,
            ended: false,
        }
    }
}

impl http_body::Body for ThrottleBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if let Some(pause) = this.pause.as_mut().as_pin_mut() {
                if pause.poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.pause.set(None);
            }
            if !this.held.is_empty() {
                let slice = (*this.rate / 10).max(1) as usize;
                let n = this.held.len().min(slice);
                let out = this.held.split_to(n);
                let wait = Duration::from_secs_f64(n as f64 / *this.rate as f64);
                this.pause.set(Some(tokio::time::sleep(wait)));
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
            if *this.ended {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(mut data) => *this.held = data.copy_to_bytes(data.remaining()),
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Poll::Ready(None) => *this.ended = true,
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.held.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
