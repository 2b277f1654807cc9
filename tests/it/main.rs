//! Integration tests on real sockets (`127.0.0.1:0`), one test binary.

#![allow(unreachable_pub)] // test helpers are shared between modules of one crate
#![allow(clippy::unwrap_used)] // helpers, not only #[test] fns, may panic on failure

mod credentials;
mod failures;
mod lifecycle;
mod support;
mod tls;
mod transparency;
mod conformance;
mod mockbank;
mod readme;
