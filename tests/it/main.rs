//! Integration tests on real sockets (`127.0.0.1:0`), one test binary.

#![allow(unreachable_pub)] // test helpers are shared between modules of one crate

mod credentials;
mod failures;
mod support;
mod tls;
mod transparency;
