//! Integration tests on real sockets (`127.0.0.1:0`), one test binary.

#![allow(unreachable_pub)] // test helpers are shared between modules of one crate
#![allow(clippy::unwrap_used)] // helpers, not only #[test] fns, may panic on failure

mod architecture;
mod browser;
mod conformance;
mod credentials;
mod dashboard;
mod failures;
mod faults;
mod first_hour;
mod guard;
mod ksa;
mod lifecycle;
mod limits;
mod link;
mod link_methods;
mod mockbank;
mod mockbank_answers;
mod mockbank_aof;
mod mockbank_insights;
mod oauth;
mod observe;
mod pool;
mod readme;
mod reconnect;
mod replicas;
mod routes;
mod stalls;
mod support;
mod tls;
mod transparency;
mod webhooks;
mod wire;
