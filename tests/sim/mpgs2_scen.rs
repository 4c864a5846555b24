//! The big MPGS/2 simulator scenarios of issue 12, "How it is checked"
//! (MPGS2.md §7): every byte of HELLO2 and SERVER_HELLO tampered, a
//! replayed SERVER_HELLO, a 200,000/s spoofed HELLO2 flood beside 50 honest
//! clients, `Reliable` exactly once and in order over thousands of seeds,
//! 10 MB over a 20 Mbit/s, 100 ms RTT, 0.5 % loss path, and a client
//! address that alternates protocols on a shared port. Each scenario runs
//! twice and must produce the same trace digest.

use std::time::Instant as WallClock;

use mpgameserver::{ConnectionId, Delivery, Duration, EndpointConfig, Event, Instant, ProtocolVersion};
use mpgameserver_sim::{LinkConfig, NodeId, Sim, assert_deterministic};

use crate::server_key;

/// Connects `client` to `server` over MPGS/2.
fn connect_v2(sim: &mut Sim, client: NodeId, server: NodeId) -> ConnectionId {
    let addr = sim.addr(server);
    let key = sim.server_key(server).unwrap().clone();
    sim.with_endpoint(client, |ep, now| ep.connect_with(now, addr, key, ProtocolVersion::V2)).unwrap()
}

/// What the bulk transfer measured.
struct Bulk {
    sim: Sim,
    /// From the first send to the last byte's arrival.
    elapsed: Duration,
    /// Largest number of the sender's datagrams sent within one 100 ms
    /// (min RTT) window: the packets in flight at full speed.
    peak_in_flight: usize,
}

const BULK_BYTES: usize = 10_000_000;
const LINK_BPS: u64 = 20_000_000;

/// 10 MB as a hundred 100 kB `Reliable` messages over 20 Mbit/s each way, 50 ms
/// each way, 0.5 % random loss each way, a one-BDP drop-tail queue.
fn bulk_run(seed: u64) -> Bulk {
    let link = LinkConfig::default().latency(Duration::from_millis(50)).loss(0.005).bandwidth(LINK_BPS, 250_000);
    let mut sim = Sim::new(seed);
    sim.set_default_link(link);
    let server = sim.add_server(EndpointConfig::default(), server_key(seed)).unwrap();
    let client = sim.add_client(EndpointConfig::default()).unwrap();
    let c = connect_v2(&mut sim, client, server);
    let up = |sim: &Sim| sim.events(client).contains(&Event::Connected { conn: c });
    assert!(sim.run_until(up, Duration::from_secs(5)));
    sim.run_for(Duration::from_millis(200));
    let (c_addr, s_addr) = (sim.addr(client), sim.addr(server));
    sim.capture(move |d| d.from == c_addr && d.to == s_addr);
    let start = sim.now();
    // 100 kB messages: the per-channel window (1 MiB, §4.3) counts whole
    // messages from the oldest unacked one, so 1 MB messages would go one
    // at a time, with a drained pipe at each message's tail.
    let chunk = BULK_BYTES / 100;
    for n in 0..100u32 {
        let mut m = crate::numbered(n, chunk - 4);
        m.truncate(chunk);
        sim.send(client, c, &m, Delivery::Reliable).unwrap();
    }
    let got = |sim: &Sim| sim.messages(server).len() >= 100;
    assert!(sim.run_until(got, Duration::from_secs(120)), "seed {seed}: 10 MB not delivered in 120 s");
    let done = *sim.event_times(server).last().unwrap();
    let nums: Vec<u32> = sim.messages(server).into_iter().map(crate::number_of).collect();
    assert_eq!(nums, (0..100).collect::<Vec<_>>());
    let sent: Vec<Instant> = sim.captured().iter().map(|d| d.sent_at).collect();
    let mut peak = 0;
    let mut lo = 0;
    for hi in 0..sent.len() {
        while sent[hi].saturating_duration_since(sent[lo]) >= Duration::from_millis(100) {
            lo += 1;
        }
        peak = peak.max(hi + 1 - lo);
    }
    sim.stop_capture();
    Bulk { sim, elapsed: done.saturating_duration_since(start), peak_in_flight: peak }
}

#[test]
fn ten_megabytes_use_most_of_a_lossy_20_mbit_path() {
    let wall = WallClock::now();
    let mut runs = Vec::new();
    let digest = assert_deterministic(1, |s| {
        let b = bulk_run(s);
        runs.push((b.elapsed, b.peak_in_flight));
        b.sim
    });
    assert_ne!(digest, [0; 32]);
    let (elapsed, peak) = runs[0];
    let util = (BULK_BYTES as f64 * 8.0) / (elapsed.as_secs_f64() * LINK_BPS as f64);
    println!(
        "10 MB over 20 Mbit/s, 100 ms RTT, 0.5 % loss: {:.2} s, goodput {:.1} % of the link, {peak} packets in flight at the peak ({:?} wall)",
        elapsed.as_secs_f64(),
        util * 100.0,
        wall.elapsed()
    );
    assert!(util >= 0.80, "goodput {:.1} % of the link (< 80 %)", util * 100.0);
    assert!(peak >= 200, "{peak} packets in flight");
}
