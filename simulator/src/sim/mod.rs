//! The simulator: endpoints on virtual addresses ("nodes"), one-way links
//! between them, a min-heap of datagrams in flight, a heap of endpoint
//! timers, and the virtual clock.
//!
//! * `node.rs`: nodes (one endpoint on one address each) and the commands
//!   and event records through which a test drives them.
//! * `network.rs`: links, partitions, scripted surgery and what a link does
//!   to each datagram on its way.
//! * `drive.rs`: running a node's endpoint: draining its output, its
//!   timers, and the heap of node timers.
//! * `report.rs`: what a run reports: datagrams, counters, errors.

mod drive;
mod network;
mod node;
mod report;

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mpgameserver::{
    ConfigError, ConnectError, ConnectionId, Delivery, Duration, Endpoint, EndpointConfig, Event, Instant,
    MAX_DATAGRAM, MessageId, PublicKey, Seed, SendError, ServerKey, UnknownConnection,
};

use crate::link::{Link, LinkConfig};
use crate::rng::{mix, splitmix64};
use crate::trace::{DropCause, Trace, TraceEntry, TraceKind, msg_type_of};

use network::{CaptureFilter, InFlight};
use node::Node;
pub use node::{Handler, NodeId};
pub use report::{Datagram, SimError, SimStats};

/// Default cap on steps per `run_*` call.
const DEFAULT_STEP_LIMIT: u64 = 20_000_000;
/// Default cap on deliveries and timeouts at one virtual instant.
const DEFAULT_INSTANT_LIMIT: u64 = 1_000_000;
/// Trace entries shown when the simulator panics.
const PANIC_TAIL: usize = 20;

/// A deterministic network of [`Endpoint`]s in virtual time.
///
/// Everything is a function of the seed given to [`Sim::new`]: the
/// endpoints' seeds, every loss, delay, duplicate and flipped bit. The
/// simulator never reads a clock and never sleeps: each [`step`](Sim::step)
/// jumps to the earliest datagram arrival or endpoint timer.
///
/// # How it drives endpoints
///
/// Exactly as the core's run-loop contract says. After every input
/// (`handle_datagram`, `handle_timeout`) and every command issued through
/// the simulator, it drains `poll_transmit` (putting each datagram on its
/// link), then `poll_event` (recording each event and passing it to the
/// node's [`Handler`], if any), and again while a handler produced output.
/// Before it chooses the next instant, it asks `poll_timeout` of every node
/// that had input since it last asked (once per step, not once per input:
/// a server's `poll_timeout` looks at every connection). After every
/// `handle_timeout(t)` it checks the progress property: `poll_timeout()` is
/// `None` or later than `t`, and panics otherwise. With
/// [`set_frame_interval`](Sim::set_frame_interval) a node also gets a
/// `handle_timeout` every frame, like a fixed-rate game loop.
///
/// # Limits
///
/// A run stops with a panic that shows the last trace entries when a
/// single `run_*` call takes more than 20 million steps, or when more than
/// a million deliveries and timeouts happen at one virtual instant (a
/// livelock); see [`Sim::set_step_limit`].
pub struct Sim {
    seed: u64,
    now: Instant,
    nodes: Vec<Node>,
    by_addr: BTreeMap<SocketAddr, NodeId>,
    ipv6: bool,
    default_link: LinkConfig,
    links: BTreeMap<(u32, u32), Link>,
    partitions: BTreeSet<(u32, u32)>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    next_seq: u64,
    next_id: u64,
    trace: Trace,
    capture: Option<CaptureFilter>,
    captured: Vec<Datagram>,
    stats: SimStats,
    step_limit: u64,
    instant_limit: u64,
    run_steps: u64,
    busy_instant: Instant,
    busy_actions: u64,
    buf: Box<[u8; MAX_DATAGRAM]>,
    outbox: Vec<(SocketAddr, Vec<u8>)>,
    /// Nodes changed through `endpoint_mut`.
    dirty: Vec<u32>,
    /// Nodes whose timer is stale. Timers are read once per step, not once
    /// per input: a server with many connections pays for `poll_timeout`.
    stale: Vec<u32>,
}

impl Sim {
    /// An empty network at time zero. `seed` decides everything random.
    pub fn new(seed: u64) -> Sim {
        Sim {
            seed,
            now: Instant::ZERO,
            nodes: Vec::new(),
            by_addr: BTreeMap::new(),
            ipv6: false,
            default_link: LinkConfig::default(),
            links: BTreeMap::new(),
            partitions: BTreeSet::new(),
            in_flight: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            next_seq: 0,
            next_id: 0,
            trace: Trace::new(),
            capture: None,
            captured: Vec::new(),
            stats: SimStats::default(),
            step_limit: DEFAULT_STEP_LIMIT,
            instant_limit: DEFAULT_INSTANT_LIMIT,
            run_steps: 0,
            busy_instant: Instant::ZERO,
            busy_actions: 0,
            buf: Box::new([0; MAX_DATAGRAM]),
            outbox: Vec::new(),
            dirty: Vec::new(),
            stale: Vec::new(),
        }
    }

    /// The master seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    // ----- trace and limits ----------------------------------------------

    /// The trace.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// SHA-256 of the whole trace so far (see [`Trace::digest`]): equal for
    /// two runs exactly when (with overwhelming probability) every datagram
    /// event and every byte on the wire was the same.
    pub fn digest(&self) -> [u8; 32] {
        self.trace.digest()
    }

    /// Keeps at most `n` trace entries (the most recent; default
    /// [`Trace::DEFAULT_CAPACITY`]). The digest still covers every entry.
    pub fn set_trace_capacity(&mut self, n: usize) {
        self.trace.set_capacity(n);
    }

    /// Counters of the simulated network.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Panics (showing the last trace entries) when one `run_*` call takes
    /// more than `max_steps` steps (default 20 million), or when more than
    /// `max_per_instant` deliveries and timeouts happen at one virtual
    /// instant (default a million).
    pub fn set_step_limit(&mut self, max_steps: u64, max_per_instant: u64) {
        self.step_limit = max_steps;
        self.instant_limit = max_per_instant;
    }

    // ----- running -------------------------------------------------------

    /// When the next datagram arrives or the next timer fires, if anything
    /// is scheduled.
    pub fn next_wakeup(&mut self) -> Option<Instant> {
        self.flush_dirty();
        self.refresh_timers();
        let delivery = self.in_flight.peek().map(|Reverse(d)| d.at);
        let timer = self.next_timer();
        match (delivery, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Processes the next instant at which anything happens, if it is not
    /// later than `limit`: every datagram arriving then (in arrival, then
    /// send order), then every timer due then. Returns false, with the
    /// clock moved to `limit`, when nothing is due by `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        let Some(next) = self.next_wakeup().filter(|&t| t <= limit) else {
            if limit != Instant::MAX {
                self.now = self.now.max(limit);
            }
            return false;
        };
        self.now = self.now.max(next);
        self.stats.steps += 1;
        self.run_steps += 1;
        if self.run_steps > self.step_limit {
            self.fail(&format!(
                "livelock? more than {} steps in one run call (raise it with Sim::set_step_limit if the run is legitimately this long)",
                self.step_limit
            ));
        }
        while self.in_flight.peek().is_some_and(|Reverse(d)| d.at <= self.now) {
            let Some(Reverse(d)) = self.in_flight.pop() else { break };
            self.deliver(d);
        }
        self.refresh_timers();
        while let Some(n) = self.pop_due_timer() {
            self.fire(n);
        }
        true
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.advance_to(self.now + d);
    }

    /// Runs until the clock reaches `t`.
    pub fn advance_to(&mut self, t: Instant) {
        self.run_steps = 0;
        while self.step(t) {}
    }

    /// Runs until `cond` holds (checked before every step) or `limit` of
    /// virtual time passes; returns whether it held.
    pub fn run_until(&mut self, mut cond: impl FnMut(&Sim) -> bool, limit: Duration) -> bool {
        self.run_steps = 0;
        let deadline = self.now + limit;
        loop {
            self.flush_dirty();
            if cond(self) {
                return true;
            }
            if !self.step(deadline) {
                return cond(self);
            }
        }
    }

    // ----- internals -----------------------------------------------------

    pub(super) fn fail(&self, what: &str) -> ! {
        panic!(
            "mpgameserver-sim (seed {}): {what} at {}. Last {PANIC_TAIL} trace entries:\n{}",
            self.seed,
            self.now,
            self.trace.tail(PANIC_TAIL)
        );
    }

    pub(super) fn count_action(&mut self) {
        if self.busy_instant != self.now {
            self.busy_instant = self.now;
            self.busy_actions = 0;
        }
        self.busy_actions += 1;
        if self.busy_actions > self.instant_limit {
            self.fail(&format!(
                "livelock: more than {} deliveries and timeouts at one instant without time advancing",
                self.instant_limit
            ));
        }
    }
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("in_flight", &self.in_flight.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simultaneous_arrivals_leave_in_send_order() {
        let addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut heap = BinaryHeap::new();
        let at = Instant::from_millis(5);
        for (seq, t) in [(0, at), (1, Instant::from_millis(1)), (2, at), (3, at), (4, Instant::from_millis(9))] {
            heap.push(Reverse(InFlight { at: t, seq, to: 0, id: seq, from: addr, bytes: Vec::new() }));
        }
        let order: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|Reverse(d)| d.seq)).collect();
        assert_eq!(order, [1, 0, 2, 3, 4]);
    }

    #[test]
    fn auto_addresses_are_distinct_in_both_families() {
        let mut sim = Sim::new(1);
        let v4: Vec<SocketAddr> = (0..300).map(|i| sim.auto_addr(i, i % 2 == 0)).collect();
        sim.use_ipv6(true);
        let v6: Vec<SocketAddr> = (0..300).map(|i| sim.auto_addr(i, false)).collect();
        let all: BTreeSet<SocketAddr> = v4.iter().chain(&v6).copied().collect();
        assert_eq!(all.len(), 600);
        assert!(v4.iter().all(SocketAddr::is_ipv4) && v6.iter().all(SocketAddr::is_ipv6));
    }
}
