//! Channels (MPGS/2, docs/MPGS2.md §4.3–§4.6) in a small game, run on the
//! deterministic simulator: 10 virtual seconds at 60 Hz over a 2 Mbit/s,
//! 50 ms RTT path with 5 % loss.
//!
//! * inputs, client → server: unreliable-sequenced, priority 0 (only the
//!   newest matters; an old one arriving late is dropped);
//! * snapshots, server → client: unreliable-sequenced, priority 0;
//! * chat, both ways: reliable-ordered, priority 1;
//! * an asset download, server → client: reliable-unordered, priority 7, 2 MB
//!   in 16 KiB pieces, refilled on `Writable` (it only takes what the game
//!   leaves of the link).
//!
//! `cargo run --release --example channels` prints what each channel
//! delivered and its delays; the run is deterministic (same seed, same
//! figures). `-- --delay-table` prints instead the delivery delay of a
//! reliable-ordered and a reliable-unordered channel side by side at 1, 5
//! and 10 % loss (the cost of head-of-line blocking; BENCHMARKS.md).
#![allow(clippy::unwrap_used)] // an example that cannot set up should stop loudly

use mpgameserver::{
    ChannelConfig, ChannelKind, ConnectionId, Duration, EndpointConfig, Event, Instant, LossReason, ProtocolVersion,
    Rng, Seed, ServerKey,
};
use mpgameserver_sim::{LinkConfig, NodeId, Sim};

const INPUTS: u8 = 3;
const SNAPSHOTS: u8 = 4;
const CHAT: u8 = 5;
const ASSETS: u8 = 6;
const TICK: Duration = Duration::from_micros(16_667);

fn config() -> EndpointConfig {
    let mut cfg = EndpointConfig::default();
    cfg.channels = vec![
        ChannelConfig::new(INPUTS, ChannelKind::UnreliableSequenced).with_receipts(true),
        ChannelConfig::new(SNAPSHOTS, ChannelKind::UnreliableSequenced).with_receipts(true),
        ChannelConfig::new(CHAT, ChannelKind::ReliableOrdered).with_priority(1).with_receipts(true),
        ChannelConfig::new(ASSETS, ChannelKind::ReliableUnordered)
            .with_priority(7)
            .with_queue_limit(256 * 1024)
            .with_receipts(true),
    ];
    cfg
}

/// A connected pair over `link`: (sim, server, client, client's conn, server's conn).
fn connect(seed: u64, cfg: EndpointConfig, link: LinkConfig) -> (Sim, NodeId, NodeId, ConnectionId, ConnectionId) {
    let mut sim = Sim::new(seed);
    sim.set_default_link(link);
    let key = ServerKey::generate(&mut Rng::new(Seed::from_u64(seed)));
    let server = sim.add_server(cfg.clone(), key).unwrap();
    let client = sim.add_client(cfg).unwrap();
    let (addr, pk) = (sim.addr(server), sim.server_key(server).unwrap().clone());
    let c = sim.with_endpoint(client, |ep, now| ep.connect_with(now, addr, pk, ProtocolVersion::V2)).unwrap();
    let up = |s: &Sim| s.events(client).contains(&Event::Connected { conn: c }) && s.conn_of(server, client).is_some();
    assert!(sim.run_until(up, Duration::from_secs(10)), "no handshake");
    let s = sim.conn_of(server, client).unwrap();
    (sim, server, client, c, s)
}

/// A message stamped with its send time (µs) and a number.
fn stamped(now: Instant, n: u32, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len.max(12)];
    v[..8].copy_from_slice(&now.as_micros().to_be_bytes());
    v[8..12].copy_from_slice(&n.to_be_bytes());
    v
}

fn stamp_of(p: &[u8]) -> (Instant, u32) {
    let t = u64::from_be_bytes(p[..8].try_into().unwrap());
    (Instant::from_micros(t), u32::from_be_bytes(p[8..12].try_into().unwrap()))
}

fn percentile(v: &mut [Duration], p: usize) -> Duration {
    v.sort_unstable();
    v.get((v.len() * p / 100).min(v.len().saturating_sub(1))).copied().unwrap_or_default()
}

fn game() {
    let link = LinkConfig::default().latency(Duration::from_millis(25)).loss(0.05).bandwidth(2_000_000, 64 * 1024);
    let (mut sim, server, client, c, s) = connect(42, config(), link);
    let piece = vec![0xA5u8; 16 * 1024];
    let mut asset_sent = 0usize;
    let asset_total = 2 << 20;
    let mut tick = 0u32;
    let end = sim.now() + Duration::from_secs(10);
    while sim.now() < end {
        let now = sim.now();
        sim.with_endpoint(client, |ep, _| ep.send_on(c, INPUTS, &stamped(now, tick, 24))).unwrap();
        sim.with_endpoint(server, |ep, _| ep.send_on(s, SNAPSHOTS, &stamped(now, tick, 300))).unwrap();
        if tick.is_multiple_of(60) {
            let line = stamped(now, tick, 40);
            sim.with_endpoint(client, |ep, _| ep.send_on(c, CHAT, &line)).unwrap();
            sim.with_endpoint(server, |ep, _| ep.send_on(s, CHAT, &line)).unwrap();
        }
        // The download fills its queue; `Writable` says when to go on.
        while asset_sent < asset_total && sim.endpoint(server).can_send(s, ASSETS, piece.len()).is_ok() {
            sim.with_endpoint(server, |ep, _| ep.send_on(s, ASSETS, &piece)).unwrap();
            asset_sent += piece.len();
        }
        sim.run_for(TICK);
        tick += 1;
    }
    sim.run_for(Duration::from_secs(2));

    println!("10 s at 60 Hz, 50 ms RTT, 5 % loss, 2 Mbit/s; {} ticks", tick);
    println!(
        "{:<22} {:>6} {:>9} {:>6} {:>11} {:>9} {:>9}",
        "channel", "sent", "delivered", "lost", "superseded", "p50", "p99"
    );
    for (name, node, conn, ch) in [
        ("inputs (c→s, seq)", client, c, INPUTS),
        ("snapshots (s→c, seq)", server, s, SNAPSHOTS),
        ("chat (c→s, ordered)", client, c, CHAT),
        ("chat (s→c, ordered)", server, s, CHAT),
        ("assets (s→c, unord.)", server, s, ASSETS),
    ] {
        let m = sim.endpoint(node).channel_metrics(conn, ch).unwrap();
        let ms = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.1} ms", d.as_micros() as f64 / 1000.0));
        println!(
            "{:<22} {:>6} {:>9} {:>6} {:>11} {:>9} {:>9}",
            name,
            m.sent,
            m.delivered,
            m.lost_packet + m.lost_expired + m.lost_closed,
            m.lost_superseded,
            ms(m.delay_p50),
            ms(m.delay_p99)
        );
    }
    // What the applications saw: sequenced numbers only rise; chat in order.
    for (node, ch, what) in [(server, INPUTS, "inputs"), (client, SNAPSHOTS, "snapshots"), (server, CHAT, "chat")] {
        let nums: Vec<u32> = sim
            .events(node)
            .iter()
            .filter_map(|e| match e {
                Event::Message { channel, payload, .. } if *channel == ch => Some(stamp_of(payload).1),
                _ => None,
            })
            .collect();
        assert!(nums.windows(2).all(|w| w[0] < w[1]), "{what} out of order");
        println!("{what}: {} received, numbers rising", nums.len());
    }
    let assets: usize = sim
        .events(client)
        .iter()
        .filter_map(|e| match e {
            Event::Message { channel: ASSETS, payload, .. } => Some(payload.len()),
            _ => None,
        })
        .sum();
    let superseded =
        sim.events(client).iter().filter(|e| matches!(e, Event::Lost { reason: LossReason::Superseded, .. })).count();
    println!("asset bytes received: {assets} of {asset_total} ({superseded} client inputs superseded before leaving)");
    println!("trace digest {}", mpgameserver_sim::hex(&sim.digest()));
}

/// Receiver-side delivery delay (send → `Message`) of 100 B messages at
/// 60 Hz on a reliable-ordered and a reliable-unordered channel at once, for
/// 60 virtual seconds at 50 ms RTT.
fn delay_table() {
    let mut cfg = EndpointConfig::default();
    cfg.channels = vec![
        ChannelConfig::new(3, ChannelKind::ReliableOrdered),
        ChannelConfig::new(4, ChannelKind::ReliableUnordered),
    ];
    println!("loss  ordered p50  ordered p99  unordered p50  unordered p99  (60 s, 60 Hz, 100 B, 50 ms RTT)");
    for loss in [0.01, 0.05, 0.10] {
        let link = LinkConfig::default().latency(Duration::from_millis(25)).loss(loss);
        let (mut sim, server, client, c, _) = connect(7, cfg.clone(), link);
        for n in 0..3600u32 {
            let now = sim.now();
            sim.with_endpoint(client, |ep, _| {
                ep.send_on(c, 3, &stamped(now, n, 100)).unwrap();
                ep.send_on(c, 4, &stamped(now, n, 100)).unwrap();
            });
            sim.run_for(TICK);
        }
        sim.run_for(Duration::from_secs(5));
        let mut d: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
        for (e, t) in sim.events(server).iter().zip(sim.event_times(server)) {
            if let Event::Message { channel: ch @ (3 | 4), payload, .. } = e {
                d[usize::from(*ch - 3)].push(t.saturating_duration_since(stamp_of(payload).0));
            }
        }
        assert_eq!((d[0].len(), d[1].len()), (3600, 3600), "every message arrived");
        let ms = |x: Duration| x.as_micros() as f64 / 1000.0;
        let (o50, o99) = (percentile(&mut d[0], 50), percentile(&mut d[0], 99));
        let (u50, u99) = (percentile(&mut d[1], 50), percentile(&mut d[1], 99));
        println!(
            "{:>3.0} % {:>9.1} ms {:>9.1} ms {:>11.1} ms {:>11.1} ms",
            loss * 100.0,
            ms(o50),
            ms(o99),
            ms(u50),
            ms(u99)
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--delay-table") {
        delay_table();
    } else {
        game();
    }
}
