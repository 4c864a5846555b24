//! # mpgameserver-drivers
//!
//! Socket drivers for the sans-IO [`mpgameserver`] core: they own the UDP
//! socket, the clock and the OS randomness, and run the core's loop (feed
//! every received datagram, run the timers, drain the transmits, then the
//! events).
//!
//! * [`blocking`]: a std `UdpSocket` (IPv4 or IPv6). A [`blocking::Server`]
//!   runs a tick loop on its thread and calls an [`EventHandler`]
//!   (`starting`, `connect`, `disconnect`, `update(dt)`, `handle_message`,
//!   `shutdown`: MpGameServer's handler in Rust form); a
//!   [`blocking::Client`] offers `connect`, `update`, `send`, `disconnect`.
//! * `smol` (feature `smol`): the same over `async_io::Async<UdpSocket>`
//!   and `async_io::Timer`, usable from `smol::block_on`.
//!
//! * [`workers`]: N blocking servers on one port, one thread each
//!   (`SO_REUSEPORT` on Linux).
//! * `metrics` (feature `metrics`): `serve_metrics(addr)` on any server
//!   serves Prometheus text and JSON snapshots over HTTP.
//! * `shutdown` (feature `signals`): stop gracefully on SIGINT/SIGTERM.
//!
//! Both run the core's [`EventHandler`] (with its [`ServerContext`]), the
//! trait the simulator (`Sim::run_handler`) runs too; a client runs
//! client-side handlers with `Client::dispatch` and `Client::tick`.
//!
//! Both share one loop (`server.rs`, `client.rs`) and one flush helper
//! (`io.rs`); only the waiting differs. Only [`Clock`] and [`os_seed`] read
//! the real clock and OS randomness in the whole workspace.
//!
//! Socket errors never reach the core and never stop a loop: they are
//! counted in [`DriverStats`] and logged through `tracing`.
//!
//! ## A server and a client
//!
//! ```
//! use std::thread;
//! use mpgameserver::{ConnectionId, Delivery, Duration, Event, Rng, ServerKey};
//! use mpgameserver_drivers::blocking::{Client, Server};
//! use mpgameserver_drivers::{EventHandler, ServerContext, os_seed};
//!
//! struct Echo;
//!
//! impl EventHandler for Echo {
//!     fn handle_message(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId, payload: Vec<u8>) {
//!         let _ = ctx.send(conn, &payload, Delivery::Reliable);
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In production the key comes from a file: ServerKey::read_pem_file("root.key").
//! let key = ServerKey::generate(&mut Rng::new(os_seed()?));
//! let pinned = key.public_key();
//! let mut server = Server::bind("127.0.0.1:0", key)?;
//! let addr = server.local_addr()?;
//! let stop = server.stop_handle();
//! let thread = thread::spawn(move || server.run(&mut Echo));
//!
//! let mut client = Client::connect(addr, pinned, Duration::from_secs(5))?;
//! client.send(b"hello", Delivery::Reliable)?;
//! let echo = loop {
//!     client.update_wait(Duration::from_millis(100));
//!     if let Some(Event::Message { payload, .. }) = client.poll_event() {
//!         break payload;
//!     }
//! };
//! assert_eq!(echo, b"hello");
//! client.disconnect(Duration::from_secs(1));
//! stop.stop();
//! thread.join().unwrap();
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod blocking;
mod client;
mod clock;
mod config;
mod counters;
mod io;
#[cfg(feature = "metrics")]
pub mod metrics;
mod server;
#[cfg(feature = "signals")]
pub mod shutdown;
#[cfg(feature = "smol")]
#[cfg_attr(docsrs, doc(cfg(feature = "smol")))]
pub mod smol;
pub mod udp;
pub mod workers;

pub use client::DisconnectOutcome;
pub use clock::{Clock, EntropyError, os_seed};
pub use config::{
    ClientConfig, ConnectError, MAX_TICK_RATE, SEND_BURST, SEND_INTERVAL, ServerConfig, StartError, endpoint_config,
};
pub use io::DriverStats;
pub use server::{EventHandler, ServerContext, StopHandle};
