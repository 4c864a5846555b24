//! # mpgameserver-game
//!
//! Engine-agnostic helpers for the game loop of a networked game on
//! [`mpgameserver`]: no game engine, no clock, no allocation per frame
//! beyond the states you store. Everything takes time as an argument (the
//! core's [`Instant`]), so it runs the same over real sockets and in the
//! simulator's virtual time.
//!
//! * [`TickClock`]: a fixed-timestep clock. Feed it the current time each
//!   frame; it says how many simulation ticks are due (catching up, within
//!   a bound) and how far the frame is between two ticks.
//! * [`SnapshotBuffer`]: snapshots of remote entities stamped with the
//!   server's tick, played back at a render delay and interpolated
//!   ([`Interpolate`]), so other players move smoothly despite jitter and
//!   loss.
//! * [`Prediction`] (client) and [`InputReceiver`] (server): client-side
//!   prediction with server reconciliation. The client applies each input
//!   at once and keeps it until the server acknowledges it; when an
//!   authoritative state arrives, it restarts from it and replays the
//!   unacknowledged inputs, and blends a correction in over a few ticks
//!   instead of snapping.
//! * [`HoldBack`]: send order over MPGS/1's exactly-once but unordered
//!   `Reliable` messages (number them, hold back the early ones).
//!
//! ```
//! use mpgameserver::{Duration, Instant};
//! use mpgameserver_game::{InputReceiver, Prediction, TickClock};
//!
//! // One-dimensional "physics": the state is a position, the input a velocity.
//! fn step(x: &mut f32, v: &i8) {
//!     *x += f32::from(*v);
//! }
//!
//! let mut clock = TickClock::new(60, Instant::ZERO).unwrap();
//! let mut client = Prediction::new(0.0f32, 128);
//! let (mut server, mut server_x) = (InputReceiver::new(), 0.0f32);
//!
//! // Three frames of 1/60 s: one tick each, one input each.
//! for frame in 1..=3u64 {
//!     for _ in 0..clock.advance(Instant::from_micros(frame * 16_667)) {
//!         client.predict(1, step);
//!     }
//! }
//! assert_eq!(*client.state(), 3.0); // predicted at once
//!
//! // The server receives the unacknowledged inputs (sent redundantly), applies each once...
//! let sent: Vec<(u32, i8)> = client.unacked().map(|(seq, v)| (seq, *v)).collect();
//! for (_, v) in server.accept(sent) {
//!     step(&mut server_x, &v);
//! }
//! // ... and answers with its state and the last input it applied.
//! client.reconcile(server.last_applied(), server_x, step);
//! assert_eq!(*client.state(), 3.0);
//! assert_eq!(client.unacked().count(), 0);
//! # let _ = Duration::ZERO;
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod clock;
mod holdback;
mod interpolate;
mod predict;

pub use clock::{MAX_TICK_HZ, TickClock, TickRateError};
pub use holdback::HoldBack;
pub use interpolate::{Interpolate, SnapshotBuffer};
pub use mpgameserver::{Duration, Instant};
pub use predict::{InputReceiver, Prediction};

/// The README's code (its "Using it in your game" guide in particular),
/// compiled and run as this crate's doctests so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
