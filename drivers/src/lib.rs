//! # mpgameserver-drivers (not implemented yet)
//!
//! **This crate is empty for now: it has no API yet.** Its contents come with
//! a later issue. Until then, drive an [`mpgameserver::Endpoint`] yourself
//! (see the run loop in the `mpgameserver` crate docs and
//! `examples/in_memory.rs`).
//!
//! What it will contain: small adapters that run the sans-IO
//! `mpgameserver` core over real UDP sockets, and the only code of the
//! workspace that reads the system clock and OS randomness.
//!
//! * `blocking`: a std `UdpSocket` driver for IPv4 and IPv6. A `Server` runs
//!   a tick loop and calls an `EventHandler` trait (`starting`, `connect`,
//!   `disconnect`, `update(dt)`, `handle_message`, `shutdown`), the same
//!   shape as MpGameServer's handler; a `Client` offers `connect`, `update`,
//!   `send` and `disconnect`.
//! * `smol` (behind the `smol` feature): the same over
//!   `async_io::Async<UdpSocket>` and `async_io::Timer`.
//! * One shared flush helper (drain transmits, then events) used by both.
#![forbid(unsafe_code)]
