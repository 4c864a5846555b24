//! Running servers as an operator would: the metrics endpoint scraped over
//! HTTP, worker threads on one port, SIGTERM on an example server, and the
//! side HTTP API example; the test tools (`echo_client`, `loadgen`) as a
//! user runs them. Every test binds loopback only and bounds its own waits.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;
mod metrics;
mod side_api;
mod signals;
mod tools;
mod workers;
