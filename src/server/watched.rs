//! An app connection's socket, cut when writing to it makes no progress for
//! `proxy.client_write_timeout`: an app that stops reading its answer would
//! otherwise hold the connection, the answer's upstream connection and the
//! buffers between them for as long as it likes.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::metrics::{Metrics, StallSide};
use crate::progress::Progress;

/// The error hyper sees once the app has not taken a byte for the limit.
#[derive(Debug, thiserror::Error)]
#[error("the app took no bytes of its answer for {} (proxy.client_write_timeout)", humantime::format_duration(*.0))]
pub(super) struct AppStalled(std::time::Duration);

/// A socket whose writes are watched (see the module docs). Reads pass as
/// they are; so do writes that complete at once, which cost nothing more.
pub(super) struct Watched {
    io: TcpStream,
    progress: Progress,
    peer: SocketAddr,
    metrics: Option<Metrics>,
    /// Set once cut: every write fails from then on.
    cut: bool,
}

impl Watched {
    pub(super) fn new(
        io: TcpStream,
        limit: std::time::Duration,
        peer: SocketAddr,
        metrics: Option<Metrics>,
    ) -> Self {
        Self {
            io,
            progress: Progress::new(limit),
            peer,
            metrics,
            cut: false,
        }
    }

    /// `polled`, or the error that cuts the connection once writes have
    /// waited for the limit.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending if self.progress.stalled(cx, || None) => {
                self.cut = true;
                // Reset, not closed: what the app left unread is dropped by
                // the kernel at once rather than retried for minutes.
                let _ = self.io.set_zero_linger();
                if let Some(metrics) = &self.metrics {
                    metrics.stalled(StallSide::Client);
                }
                let limit = self.progress.limit();
                tracing::warn!(peer = %self.peer, limit = %humantime::format_duration(limit), "the app stopped reading its answer: connection closed");
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    AppStalled(limit),
                )))
            }
            Poll::Pending => Poll::Pending,
            ready => {
                self.progress.moved();
                ready
            }
        }
    }

    fn refused(&self) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, AppStalled(self.progress.limit()))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.cut {
            return Poll::Ready(Err(this.refused()));
        }
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.cut {
            return Poll::Ready(Err(this.refused()));
        }
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
