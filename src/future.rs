//! [`ResponseFuture`]: the response future of a layer that either passes a
//! request straight to the inner service or runs its own boxed work around it.
//! The pass-through case costs no allocation.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::body::Body;

/// A boxed future answering a request.
pub type BoxResponse<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

pin_project! {
    /// The inner service's future untouched, or the layer's own boxed future.
    pub struct ResponseFuture<F, E> {
        #[pin]
        state: State<F, E>,
    }
}

pin_project! {
    #[project = Projected]
    enum State<F, E> {
        Inner { #[pin] inner: F },
        Boxed { future: BoxResponse<E> },
    }
}

impl<F, E> ResponseFuture<F, E> {
    /// Passes the inner service's future through.
    pub fn inner(inner: F) -> Self {
        Self {
            state: State::Inner { inner },
        }
    }

    /// Runs the layer's own work.
    pub fn boxed(future: impl Future<Output = Result<Response<Body>, E>> + Send + 'static) -> Self {
        Self {
            state: State::Boxed {
                future: Box::pin(future),
            },
        }
    }
}

impl<F, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            Projected::Inner { inner } => inner.poll(cx),
            Projected::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}
