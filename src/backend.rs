//! [`Op`]: what an operation of a state backend returns.
//!
//! The state a layer shares with the admin API and the webhooks (the reconnect
//! registry, the fault rules' quotas, the webhook claims, the relay queue) is
//! reached through a handle that holds a backend behind a trait: today's keeps
//! it in memory (and files), a network one (Redis, for several replicas) will
//! keep it there. A network backend has to wait for its answer; the memory
//! backend has it at once, and some of its operations run on every request.
//! So an operation returns an [`Op`]: a value that is ready now, with no
//! allocation and no await, or a boxed future for later.
//!
//! Callers in async code `.await` it. Callers on the request path that cannot
//! wait (a body's `poll_frame`) take the value with [`Op::now`] or hand what
//! follows to [`Op::then`], which runs it at once when the value is ready and
//! in a task of its own otherwise. Callers on the blocking pool use
//! [`Op::wait`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A backend operation's outcome: ready now (the memory backend) or later (a
/// network backend). A future either way; see the [module docs](self).
#[must_use = "an operation that is not ready does nothing until it is awaited, waited for or detached"]
pub struct Op<T>(Outcome<T>);

enum Outcome<T> {
    /// `None` once taken by `poll`.
    Ready(Option<T>),
    Later(Pin<Box<dyn Future<Output = T> + Send>>),
}

impl<T> fmt::Debug for Op<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Outcome::Ready(_) => "Op::Ready",
            Outcome::Later(_) => "Op::Later",
        })
    }
}

// The value is never pinned: it is moved out whole.
impl<T> Unpin for Op<T> {}

impl<T> Op<T> {
    /// An outcome known now.
    pub fn ready(value: T) -> Self {
        Self(Outcome::Ready(Some(value)))
    }

    /// An outcome a future will give.
    pub fn later(future: impl Future<Output = T> + Send + 'static) -> Self {
        Self(Outcome::Later(Box::pin(future)))
    }

    /// Whether the outcome is known now.
    pub fn is_ready(&self) -> bool {
        matches!(self.0, Outcome::Ready(Some(_)))
    }

    /// The outcome when it is known now; the operation back otherwise.
    pub fn now(self) -> Result<T, Self> {
        match self.0 {
            Outcome::Ready(Some(value)) => Ok(value),
            other => Err(Self(other)),
        }
    }

    /// The outcome changed by `f`, at once when it is known now.
    pub fn map<U>(self, f: impl FnOnce(T) -> U + Send + 'static) -> Op<U>
    where
        T: Send + 'static,
    {
        match self.now() {
            Ok(value) => Op::ready(f(value)),
            Err(later) => Op::later(async move { f(later.await) }),
        }
    }

    /// The operation `f` makes of the outcome, started at once when the
    /// outcome is known now.
    pub fn and_then<U>(self, f: impl FnOnce(T) -> Op<U> + Send + 'static) -> Op<U>
    where
        T: Send + 'static,
        U: Send + 'static,
    {
        match self.now() {
            Ok(value) => f(value),
            Err(later) => Op::later(async move { f(later.await).await }),
        }
    }

    /// The outcomes of `ops`, in order: ready at once when all of them are.
    pub fn all(ops: Vec<Op<T>>) -> Op<Vec<T>>
    where
        T: Send + 'static,
    {
        if ops.iter().all(Op::is_ready) {
            return Op::ready(ops.into_iter().filter_map(|op| op.now().ok()).collect());
        }
        Op::later(async move {
            let mut outcomes = Vec::with_capacity(ops.len());
            for op in ops {
                outcomes.push(op.await);
            }
            outcomes
        })
    }

    /// Runs `f` with the outcome: here and now when it is known, else in a
    /// task of its own once it is (on the current tokio runtime; without one
    /// the operation is dropped, and said so).
    pub fn then(self, f: impl FnOnce(T) + Send + 'static)
    where
        T: Send + 'static,
    {
        match self.now() {
            Ok(value) => f(value),
            Err(later) => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move { f(later.await) });
                }
                Err(_) => {
                    tracing::error!("a state backend's operation was dropped: no runtime to run it")
                }
            },
        }
    }

    /// Lets the operation complete on its own; its outcome is not needed.
    pub fn detach(self)
    where
        T: Send + 'static,
    {
        self.then(drop);
    }

    /// The outcome, blocking the thread until it is known. Only for code on
    /// the blocking pool (`spawn_blocking`), where a network backend's future
    /// is run on the runtime; on a runtime thread it panics unless the
    /// outcome is known now.
    pub fn wait(self) -> T {
        match self.now() {
            Ok(value) => value,
            Err(later) => tokio::runtime::Handle::current().block_on(later),
        }
    }
}

impl<T> Future for Op<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.0 {
            Outcome::Ready(value) => match value.take() {
                Some(value) => Poll::Ready(value),
                None => panic!("`Op` polled after it completed"),
            },
            Outcome::Later(future) => future.as_mut().poll(cx),
        }
    }
}

/// In tests: the outcome of an operation of a memory backend (an [`Op`], or
/// a future made of them), which is always known at once.
#[cfg(test)]
pub(crate) trait AtOnce<T> {
    /// The outcome; panics when it is not known at the first poll.
    fn at_once(self) -> T;
}

#[cfg(test)]
impl<F: Future> AtOnce<F::Output> for F {
    fn at_once(self) -> F::Output {
        let future = std::pin::pin!(self);
        match future.poll(&mut Context::from_waker(std::task::Waker::noop())) {
            Poll::Ready(value) => value,
            Poll::Pending => panic!("a memory backend answers at once"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_ready_outcome_is_taken_now_and_followed_at_once() {
        let op = Op::ready(1).and_then(|n| Op::ready(n + 1)).map(|n| n * 10);
        assert!(op.is_ready());
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        op.then(move |n| s.store(n, Ordering::Relaxed));
        assert_eq!(seen.load(Ordering::Relaxed), 20, "no runtime was needed");
        let all = Op::all(vec![Op::ready(1), Op::ready(2)]);
        assert!(all.is_ready());
        assert_eq!(all.at_once(), [1, 2]);
    }

    #[tokio::test]
    async fn a_later_outcome_is_awaited_or_followed_in_a_task() {
        let op = Op::later(async { 3 });
        assert!(!op.is_ready());
        let op = op.now().expect_err("not known yet");
        assert_eq!(op.map(|n| n + 1).await, 4);
        assert_eq!(
            Op::ready(1)
                .and_then(|n| Op::later(async move { n * 6 }))
                .await,
            6
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        Op::later(async { 5 }).then(move |n| {
            let _ = tx.send(n);
        });
        assert_eq!(rx.await.unwrap(), 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_blocking_pool_waits_for_a_later_outcome() {
        let n = tokio::task::spawn_blocking(|| Op::later(async { 7 }).wait())
            .await
            .unwrap();
        assert_eq!(n, 7);
    }
}
