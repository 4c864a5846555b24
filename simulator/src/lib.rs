//! # mpgameserver-sim
//!
//! A deterministic, lossy, virtual-time network for [`mpgameserver`]
//! endpoints. It is itself a sans-IO state machine: no sockets, no clock,
//! no sleeping, no threads. Endpoints sit on virtual IPv4 or IPv6
//! addresses; every one-way link has its own latency, jitter, loss
//! (independent or bursty Gilbert–Elliott), duplication, reordering,
//! corruption, MTU and bandwidth cap; paths can be partitioned and healed;
//! and a test can operate on the traffic: drop the next N datagrams, hold
//! a link and release it, inject raw bytes from any address, capture a
//! datagram and replay it later.
//!
//! Each [`Sim::step`] jumps the clock to the next datagram arrival or
//! endpoint timer, so ten virtual minutes of a quiet connection take
//! milliseconds. Everything random derives from one seed; the [`Trace`]
//! records every datagram event, and [`Sim::digest`] hashes it (with every
//! byte put on the wire): the same seed gives the same digest, run after
//! run.
//!
//! ## Test your game logic on a bad network
//!
//! 1. Create a [`Sim`] with a seed, add a server with its root key and a
//!    few clients ([`Sim::add_server`], [`Sim::add_client`]).
//! 2. Choose the network: [`Sim::set_default_link`] with a preset
//!    ([`LinkConfig::wifi`], [`LinkConfig::mobile_lossy`], ...) or your own
//!    [`LinkConfig`]; [`Sim::set_link`] for one direction of one path.
//! 3. Put your game logic on the nodes: the very
//!    [`EventHandler`](mpgameserver::EventHandler) the socket drivers run,
//!    ticking at its rate in virtual time ([`Sim::run_handler`]); or a
//!    closure that reacts to each event as it is drained
//!    ([`Sim::set_handler`]) plus commands between runs ([`Sim::send`],
//!    [`Sim::with_endpoint`]).
//! 4. Run with [`Sim::run_until`] or [`Sim::run_for`], and check the
//!    recorded events ([`Sim::events`], [`Sim::messages`]), the endpoints'
//!    metrics and [`Sim::stats`].
//! 5. When something fails, print [`Trace::tail`]; rerun with the same seed
//!    to get the very same run, and vary the seed to explore others.
//!    [`assert_deterministic`] runs a scenario twice and names the first
//!    trace entry where the runs part (game logic that iterates a
//!    `HashMap` or reads the wall clock).
//!
//! ```
//! use std::cell::Cell;
//! use std::rc::Rc;
//! use mpgameserver::{Delivery, Duration, EndpointConfig, Event, Rng, Seed, ServerKey};
//! use mpgameserver_sim::{LinkConfig, Sim};
//!
//! let mut sim = Sim::new(42);
//! sim.set_default_link(LinkConfig::mobile_lossy());
//! let key = ServerKey::generate(&mut Rng::new(Seed::from_u64(1)));
//! let server = sim.add_server(EndpointConfig::default(), key).unwrap();
//! let client = sim.add_client(EndpointConfig::default()).unwrap();
//!
//! // Game logic on the server: answer every "ping" with a "pong".
//! sim.set_handler(server, |ep, _now, event| {
//!     if let Event::Message { conn, payload, .. } = event {
//!         if payload == b"ping" {
//!             ep.send(*conn, b"pong", Delivery::Reliable).unwrap();
//!         }
//!     }
//! });
//! // And on the client: count the pongs.
//! let pongs = Rc::new(Cell::new(0));
//! let counter = pongs.clone();
//! sim.set_handler(client, move |_ep, _now, event| {
//!     if matches!(event, Event::Message { payload, .. } if payload == b"pong") {
//!         counter.set(counter.get() + 1);
//!     }
//! });
//!
//! let conn = sim.connect(client, server).unwrap();
//! for _ in 0..10 {
//!     sim.send(client, conn, b"ping", Delivery::Reliable).unwrap(); // one per 60 Hz frame
//!     sim.run_for(Duration::from_micros(16_667));
//! }
//! assert!(sim.run_until(|_| pongs.get() == 10, Duration::from_secs(10)));
//! assert!(sim.events(client).contains(&Event::Connected { conn }));
//! println!("{}", sim.stats()); // what the network did to the traffic
//!
//! // The same seed gives the very same run.
//! let digest = sim.digest();
//! # let _ = digest;
//! ```
//!
//! ## Presets
//!
//! | [`Preset`] | Latency + jitter | Loss | Other |
//! |---|---|---|---|
//! | `perfect` | 0 | none | — |
//! | `lan` | 0.5 ms + 0–0.1 ms | none | — |
//! | `wifi` | 3 ms + 0–6 ms | 1.5 %, bursts of 3 | 0.2 % duplicated, 0.5 % reordered |
//! | `mobile-lossy` | 60 ms + 0–40 ms | 8 %, bursts of 4 | 1 % duplicated, 2 % reordered, 0.5 % corrupted, 4 Mbit/s with a 64 KiB queue |
//!
//! ## Determinism
//!
//! The simulator never reads a clock or OS randomness, keeps no hash maps,
//! and orders simultaneous arrivals by the order they were sent (a
//! min-heap on `(arrival time, sequence number)`). Endpoint seeds derive
//! from the master seed ([`Sim::endpoint_seed`]), and so does each link's
//! random stream, so changing one link's settings does not change the
//! fate of datagrams on the others.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod determinism;
mod handler;
mod link;
mod rng;
mod sim;
mod trace;

pub use determinism::{Divergence, assert_deterministic};
pub use handler::{HandlerRef, MAX_TICK_HZ, TickRateError};
pub use link::{Bandwidth, GilbertElliott, IP_UDP_OVERHEAD, LinkConfig, Loss, Preset};
pub use rng::SimRng;
pub use sim::{Datagram, Handler, NodeId, Sim, SimError, SimStats};
pub use trace::{DropCause, Trace, TraceEntry, TraceKind, hex};
