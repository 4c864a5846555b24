//! # mpgameserver-sim (not implemented yet)
//!
//! **This crate is empty for now: it has no API yet.** Its contents come with
//! a later issue. Until then, `examples/in_memory.rs` in the `mpgameserver`
//! crate shows endpoints exchanging datagrams through a hand-written lossy
//! `VecDeque` network in virtual time.
//!
//! What it will contain: a seeded, virtual-time network for
//! [`mpgameserver::Endpoint`]s, itself a sans-IO state machine. Per-link
//! latency, jitter, random and bursty (Gilbert-Elliott) loss, duplication,
//! reordering, corruption, MTU, bandwidth caps, partitions and scripted
//! surgery (drop the next N datagrams, hold and release). It drives any
//! number of endpoints, jumps time to the next event instead of sleeping,
//! and records a trace whose digest proves determinism. The integration
//! tests (`tests/sim/`) will run on it, and users can run their own game
//! logic on it.
#![forbid(unsafe_code)]
