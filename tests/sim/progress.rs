//! Progress: after `handle_timeout(t)`, `poll_timeout()` is `None` or
//! later than `t`, so a caller that sleeps until `poll_timeout` never spins.
//! The simulator checks this after every `handle_timeout` it makes; these
//! tests drive it through many situations, and call `handle_timeout` at
//! arbitrary (early, late, repeated) times as well.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};

use mpgameserver::{Delivery, Duration, EndpointConfig, Event, Instant, ProtocolVersion};
use mpgameserver_sim::{LinkConfig, Sim};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

use crate::{numbered, server_key};

/// A scenario: a lossy path, a game loop rate per node (or none), and a
/// list of actions.
#[derive(Clone, Debug)]
struct Scenario {
    seed: u64,
    latency_ms: u8,
    loss: u8,
    frame_us: [Option<u32>; 2],
    actions: Vec<Action>,
    /// The client connects over MPGS/2.
    v2: bool,
}

#[derive(Clone, Debug)]
enum Action {
    /// Run for this many milliseconds.
    Wait(u16),
    /// Send a message of this size in this mode, from the client or the server.
    Send {
        from_server: bool,
        size: u16,
        mode: u8,
    },
    /// A spurious `handle_timeout` this many ms in the past (clamped).
    Spurious {
        node: bool,
        back_ms: u16,
    },
    /// Cut or heal the path.
    Partition(bool),
    Disconnect {
        from_server: bool,
    },
}

impl Arbitrary for Action {
    fn arbitrary(g: &mut Gen) -> Action {
        match u8::arbitrary(g) % 10 {
            0..=2 => Action::Wait(u16::arbitrary(g) % 3000),
            3..=6 => Action::Send {
                from_server: bool::arbitrary(g),
                size: *g.choose(&[0, 10, 1433, 5000]).unwrap(),
                mode: u8::arbitrary(g) % 3,
            },
            7 => Action::Spurious { node: bool::arbitrary(g), back_ms: u16::arbitrary(g) % 2000 },
            8 => Action::Partition(bool::arbitrary(g)),
            _ => Action::Disconnect { from_server: bool::arbitrary(g) },
        }
    }
}

impl Arbitrary for Scenario {
    fn arbitrary(g: &mut Gen) -> Scenario {
        // A game loop from 1,000 Hz to 20 Hz, or none.
        let frame = |g: &mut Gen| if bool::arbitrary(g) { Some(1000 + u32::arbitrary(g) % 49_000) } else { None };
        let n = usize::arbitrary(g) % 12;
        Scenario {
            seed: u64::arbitrary(g),
            latency_ms: u8::arbitrary(g) % 100,
            loss: *g.choose(&[0, 5, 20, 50]).unwrap(),
            frame_us: [frame(g), frame(g)],
            actions: (0..n).map(|_| Action::arbitrary(g)).collect(),
            v2: false,
        }
    }
}

fn run(s: &Scenario) -> u64 {
    let mut sim = Sim::new(s.seed);
    sim.set_default_link(
        LinkConfig::default().latency(Duration::from_millis(u64::from(s.latency_ms))).loss(f64::from(s.loss) / 100.0),
    );
    let server = sim.add_server(EndpointConfig::default(), server_key(1)).unwrap();
    let client = sim.add_client(EndpointConfig::default()).unwrap();
    for (node, frame) in [server, client].into_iter().zip(s.frame_us) {
        sim.set_frame_interval(node, frame.map(|us| Duration::from_micros(u64::from(us))));
    }
    // The version is explicit: the client default (MPGS/2) would make the
    // MPGS/1 property run over MPGS/2 too.
    let proto = if s.v2 { ProtocolVersion::V2 } else { ProtocolVersion::V1 };
    let (addr, key) = (sim.addr(server), sim.server_key(server).unwrap().clone());
    let c = sim.with_endpoint(client, |ep, now| ep.connect_with(now, addr, key, proto)).unwrap();
    // The server's connection: `conn_of` finds MPGS/1 ones by address; an
    // MPGS/2 one is found by its `Connected` event.
    let server_conn = |sim: &Sim| {
        if s.v2 {
            sim.events(server).iter().rev().find_map(|e| match e {
                Event::Connected { conn } => sim.endpoint(server).connection(*conn).map(|_| *conn),
                _ => None,
            })
        } else {
            sim.conn_of(server, client)
        }
    };
    for (i, a) in s.actions.iter().enumerate() {
        match *a {
            Action::Wait(ms) => sim.run_for(Duration::from_millis(u64::from(ms))),
            Action::Send { from_server, size, mode } => {
                let mode = [Delivery::Unreliable, Delivery::BestEffort, Delivery::Reliable][usize::from(mode)];
                let data = numbered(i as u32, usize::from(size));
                let (node, conn) = if from_server { (server, server_conn(&sim)) } else { (client, Some(c)) };
                if let Some(conn) = conn {
                    let _ = sim.send(node, conn, &data, mode);
                }
            }
            Action::Spurious { node, back_ms } => {
                let node = if node { server } else { client };
                let t = sim.now() - Duration::from_millis(u64::from(back_ms));
                let ep = sim.endpoint_mut(node);
                ep.handle_timeout(t);
                // The property, for an arbitrary (here: past) time.
                if let Some(next) = ep.poll_timeout() {
                    assert!(next > t, "after handle_timeout({t}) poll_timeout() = {next}");
                }
            }
            Action::Partition(cut) => {
                if cut {
                    sim.partition(&[client], &[server]);
                } else {
                    sim.heal();
                }
            }
            Action::Disconnect { from_server } => {
                let (node, conn) = if from_server { (server, server_conn(&sim)) } else { (client, Some(c)) };
                if let Some(conn) = conn {
                    let _ = sim.disconnect(node, conn);
                }
            }
        }
    }
    // Run everything out: the simulator checks the property at every
    // handle_timeout until both endpoints are idle or a minute passes.
    sim.heal();
    sim.run_for(Duration::from_secs(60));
    sim.stats().progress_checks
}

#[test]
fn poll_timeout_is_later_than_every_handle_timeout() {
    static CHECKS: AtomicU64 = AtomicU64::new(0);
    fn prop(s: Scenario) -> TestResult {
        // The simulator panics, failing the case, if the property breaks.
        CHECKS.fetch_add(run(&s), Ordering::Relaxed);
        TestResult::passed()
    }
    QuickCheck::new()
        .rng(Gen::from_size_and_seed(100, 0x9e37))
        .tests(200)
        .max_tests(200)
        .quickcheck(prop as fn(Scenario) -> TestResult);
    let checks = CHECKS.load(Ordering::Relaxed);
    assert!(checks > 100_000, "{checks}");
}

/// The same property over MPGS/2 traffic (MPGS2.md §4.1 timers): every
/// timer an MPGS/2 connection reports is one `handle_timeout` acts on, or a
/// send time still ahead, so none is retried blindly.
#[test]
fn poll_timeout_is_later_than_every_handle_timeout_over_mpgs2() {
    static CHECKS: AtomicU64 = AtomicU64::new(0);
    fn prop(mut s: Scenario) -> TestResult {
        s.v2 = true;
        CHECKS.fetch_add(run(&s), Ordering::Relaxed);
        TestResult::passed()
    }
    QuickCheck::new()
        .rng(Gen::from_size_and_seed(100, 0x5eed_0002))
        .tests(200)
        .max_tests(200)
        .quickcheck(prop as fn(Scenario) -> TestResult);
    let checks = CHECKS.load(Ordering::Relaxed);
    assert!(checks > 50_000, "{checks}");
}

#[test]
fn every_frame_of_a_busy_session_is_checked() {
    // A 60 Hz loop on both sides of a lossy session: every call counts.
    let mut pair = crate::Pair::new(71, LinkConfig::wifi(), EndpointConfig::default());
    for node in [pair.client, pair.server] {
        pair.sim.set_frame_interval(node, Some(Duration::from_micros(16_667)));
    }
    let client = pair.client;
    let before = pair.sim.stats().progress_checks;
    crate::send_numbered(&mut pair, client, 0, 300, Delivery::Reliable);
    let checks = pair.sim.stats().progress_checks - before;
    assert_eq!(pair.sim.stats().timeouts, pair.sim.stats().progress_checks);
    // At least one per frame per node over 5 s.
    assert!(checks >= 2 * 300, "{checks}");
}

/// The panic message of `f`, if it panics.
fn panic_message(f: impl FnOnce()) -> Option<String> {
    let err = catch_unwind(AssertUnwindSafe(f)).err()?;
    err.downcast_ref::<String>().cloned().or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
}

#[test]
fn the_step_cap_stops_a_run_with_the_last_trace_entries() {
    // A run longer than its step budget.
    let msg = panic_message(|| {
        let mut pair = crate::Pair::simple(72);
        pair.sim.set_step_limit(50, 1_000_000);
        for i in 0..100 {
            pair.sim.send(pair.client, pair.c, &numbered(i, 10), Delivery::Reliable).unwrap();
        }
        pair.sim.run_for(Duration::from_secs(10));
    })
    .expect("the step cap panics");
    assert!(msg.contains("livelock? more than 50 steps"), "{msg}");
    assert!(msg.contains("seed 72"), "{msg}");
    assert!(msg.contains("Last 20 trace entries"), "{msg}");
    let lines: Vec<&str> = msg.lines().filter(|l| l.contains(" -> ")).collect();
    assert_eq!(lines.len(), 20, "{msg}");
    assert!(lines.iter().any(|l| l.contains("deliver")), "{msg}");

    // Too much at one instant: over a zero-latency link the whole
    // handshake happens at time zero.
    let msg = panic_message(|| {
        let mut sim = Sim::new(73);
        sim.set_step_limit(u64::MAX, 3);
        let server = sim.add_server(EndpointConfig::default(), server_key(73)).unwrap();
        let client = sim.add_client(EndpointConfig::default()).unwrap();
        sim.connect(client, server).unwrap();
        sim.run_for(Duration::from_secs(1));
    })
    .expect("the per-instant cap panics");
    assert!(msg.contains("without time advancing") && msg.contains("at 0.000000s"), "{msg}");
    assert!(msg.contains("ClientHello"), "{msg}");
}

#[test]
fn a_zero_latency_network_still_makes_progress() {
    // Perfect links (no delay at all): the handshake and an exchange
    // complete at time zero, and the run then jumps from timer to timer.
    let mut sim = Sim::new(74);
    let server = sim.add_server(EndpointConfig::default(), server_key(74)).unwrap();
    let client = sim.add_client(EndpointConfig::default()).unwrap();
    let c = sim.connect(client, server).unwrap();
    sim.send(client, c, b"hi", Delivery::Reliable).unwrap();
    assert!(sim.run_until(|s| s.messages(server).len() == 1, Duration::from_secs(1)));
    assert_eq!(sim.now(), Instant::ZERO);
    sim.run_for(Duration::from_secs(10));
    assert!(sim.stats().progress_checks > 100);
}
