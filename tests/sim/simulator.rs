//! The simulator's own promises: loss models, MTU, bandwidth, duplication,
//! corruption, reordering, hold/release, injection, the trace.
//!
//! These scenarios test MPGS/1 (its wire, timers and PROTOCOL.md rules): their clients speak it explicitly (`crate::v1`).

use std::net::SocketAddr;

use mpgameserver::_internal::wire::MsgType;
use mpgameserver::{Delivery, DropReason, Duration, EndpointConfig, Instant};
use mpgameserver_sim::{DropCause, LinkConfig, Loss, NodeId, Sim, TraceKind, hex};

use crate::{Pair, numbered, received_numbers, server_key};

/// A pair over a perfect 5 ms link with an unpaced client (one datagram
/// per full-size message), then `up` as the client-to-server link.
fn blaster(seed: u64, up: LinkConfig) -> Pair {
    let mut cfg = crate::v1(EndpointConfig::default());
    cfg.send_interval = Duration::from_micros(500);
    let mut pair = Pair::new(seed, LinkConfig::default().latency(Duration::from_millis(5)), cfg);
    pair.sim.set_link(pair.client, pair.server, up);
    pair
}

/// Sends `n` full-size Unreliable messages from the client, one datagram
/// each, and lets them land. Returns the trace's Send/Drop entries of that
/// link, in order: true for dropped.
fn blast(pair: &mut Pair, n: u32) -> Vec<bool> {
    let (client, server) = (pair.client, pair.server);
    let (from, to) = (pair.sim.addr(client), pair.sim.addr(server));
    pair.sim.set_trace_capacity(usize::MAX);
    let mark = pair.sim.trace().total();
    for i in 0..n {
        pair.sim.send(client, pair.c, &numbered(i, 1400), Delivery::Unreliable).unwrap();
        pair.sim.run_for(Duration::from_millis(1));
    }
    pair.sim.run_for(Duration::from_secs(2));
    let new = pair
        .sim
        .trace()
        .entries()
        .skip((mark - (pair.sim.trace().total() - pair.sim.trace().entries().len() as u64)) as usize);
    let mut fate = Vec::new();
    for e in new.filter(|e| e.from == from && e.to == to && e.msg_type == Some(MsgType::App)) {
        match e.kind {
            TraceKind::Send => fate.push(false),
            TraceKind::Drop(_) => *fate.last_mut().unwrap() = true,
            _ => {}
        }
    }
    fate
}

#[test]
fn loss_models_lose_what_they_promise() {
    // Independent: 10 % of 3000, no more bursty than chance.
    let mut pair = blaster(81, LinkConfig::default().latency(Duration::from_millis(5)).loss(0.1));
    let fate = blast(&mut pair, 3000);
    assert_eq!(fate.len(), 3000);
    let lost = fate.iter().filter(|&&l| l).count();
    assert!((240..360).contains(&lost), "{lost}");
    let runs = fate.windows(2).filter(|w| w[1] && !w[0]).count();
    let mean_run = lost as f64 / runs as f64;
    assert!(mean_run < 1.3, "{mean_run}");
    // Received: exactly those not dropped.
    assert_eq!(received_numbers(&pair.sim, pair.server).len(), 3000 - lost);

    // Gilbert–Elliott: the same 10 %, in bursts of 5 on average.
    let mut pair = blaster(82, LinkConfig::default().latency(Duration::from_millis(5)).bursty_loss(0.1, 5.0));
    let fate = blast(&mut pair, 3000);
    let lost = fate.iter().filter(|&&l| l).count();
    assert!((200..400).contains(&lost), "{lost}");
    let runs = fate.windows(2).filter(|w| w[1] && !w[0]).count();
    let mean_run = lost as f64 / runs as f64;
    assert!((3.5..7.0).contains(&mean_run), "{mean_run}");
    assert!(matches!(pair.sim.link_config(pair.client, pair.server).loss, Loss::GilbertElliott(_)));
}

#[test]
fn the_mtu_drops_oversize_datagrams() {
    // A 1000-byte path MTU: the 1438-byte CLIENT_HELLO never gets through.
    let mut sim = Sim::new(83);
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(5)).mtu(1000));
    let server = sim.add_server(EndpointConfig::default(), server_key(83)).unwrap();
    let client = sim.add_client(crate::v1(EndpointConfig::default())).unwrap();
    sim.connect(client, server).unwrap();
    sim.run_for(Duration::from_secs(6));
    assert_eq!(sim.stats().dropped(DropCause::Mtu), 20);
    assert!(sim.events(server).is_empty());

    // Endpoints configured for that MTU work over it, fragments and all.
    let mut cfg = crate::v1(EndpointConfig::default());
    cfg.mtu = 1000;
    let mut pair = Pair::new(84, LinkConfig::default().latency(Duration::from_millis(5)).mtu(1000), cfg);
    pair.sim.send(pair.client, pair.c, &numbered(1, 20_000), Delivery::Reliable).unwrap();
    let server = pair.server;
    assert!(pair.sim.run_until(|s| s.messages(server).len() == 1, Duration::from_secs(5)));
    assert_eq!(pair.sim.stats().dropped(DropCause::Mtu), 0);
}

#[test]
fn the_bandwidth_cap_paces_and_tail_drops() {
    // 1 Mbit/s with an 8 KiB queue; the client offers 500 full datagrams
    // (about 5.9 Mbit) as fast as its pacer allows (one per 0.5 ms).
    let link = LinkConfig::default().latency(Duration::from_millis(5)).bandwidth(1_000_000, 8 * 1024);
    let mut pair = blaster(85, link);
    let start = pair.sim.now();
    let fate = blast(&mut pair, 500);
    let dropped = pair.sim.stats().dropped(DropCause::QueueFull);
    assert!(dropped > 100, "{dropped}");
    assert_eq!(fate.iter().filter(|&&l| l).count() as u64, dropped);
    // What got through arrived no faster than the link rate: each
    // 1428-byte packet (with headers) takes 11.4 ms on the wire.
    let server = pair.sim.addr(pair.server);
    let arrivals: Vec<Instant> = pair
        .sim
        .trace()
        .entries()
        .filter(|e| e.kind == TraceKind::Deliver && e.to == server && e.msg_type == Some(MsgType::App) && e.at > start)
        .map(|e| e.at)
        .collect();
    for w in arrivals.windows(2) {
        assert!(w[1] - w[0] >= Duration::from_micros(11_400), "{:?}", w[1] - w[0]);
    }
    assert_eq!(arrivals.len() as u64, 500 - dropped);
}

#[test]
fn duplication_and_corruption_reach_the_endpoints_who_refuse_them() {
    // Every datagram duplicated: each copy after the first is a replay.
    let mut pair = blaster(86, LinkConfig::default().latency(Duration::from_millis(5)).duplicate(1.0));
    let before = pair.sim.endpoint(pair.server).stats().dropped(DropReason::Replay);
    blast(&mut pair, 200);
    let replays = pair.sim.endpoint(pair.server).stats().dropped(DropReason::Replay) - before;
    assert!(replays >= 200, "{replays}");
    assert!(received_numbers(&pair.sim, pair.server).values().all(|&k| k == 1));

    // 20 % corrupted: every corrupted copy is refused (bad CRC, bad tag,
    // bad header), nothing corrupted is delivered.
    let mut pair = blaster(87, LinkConfig::default().latency(Duration::from_millis(5)).corrupt(0.2));
    let before = pair.sim.endpoint(pair.server).stats().dropped_total();
    let corrupted_before = pair.sim.stats().corrupted;
    blast(&mut pair, 500);
    let corrupted = pair.sim.stats().corrupted - corrupted_before;
    let refused = pair.sim.endpoint(pair.server).stats().dropped_total() - before;
    assert!((60..140).contains(&corrupted), "{corrupted}");
    assert_eq!(refused, corrupted, "{}", pair.sim.endpoint(pair.server).stats());
    // Received: exactly the messages whose datagram was not corrupted.
    let trace = pair.sim.trace();
    let corrupted_ids: std::collections::BTreeSet<u64> =
        trace.entries().filter(|e| matches!(e.kind, TraceKind::Corrupt { .. })).map(|e| e.id).collect();
    let app_corrupted = trace
        .entries()
        .filter(|e| e.kind == TraceKind::Send && e.msg_type == Some(MsgType::App) && corrupted_ids.contains(&e.id))
        .count();
    let got = received_numbers(&pair.sim, pair.server);
    assert_eq!(got.len(), 500 - app_corrupted);
    let bits = pair.sim.trace().entries().filter(|e| matches!(e.kind, TraceKind::Corrupt { bits: 1..=3 })).count();
    assert!(bits as u64 >= corrupted);
}

#[test]
fn reordering_lets_later_datagrams_overtake_and_jitter_alone_does_not() {
    let arrival_order = |pair: &Pair| -> Vec<u64> {
        let server = pair.sim.addr(pair.server);
        pair.sim
            .trace()
            .entries()
            .filter(|e| e.kind == TraceKind::Deliver && e.to == server && e.msg_type == Some(MsgType::App))
            .map(|e| e.id)
            .collect()
    };
    let jitter = LinkConfig::default().latency(Duration::from_millis(5)).jitter(Duration::from_millis(30));
    let mut pair = blaster(88, jitter.clone());
    blast(&mut pair, 300);
    let ids = arrival_order(&pair);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "jitter never reorders");

    // Held back by 15 ms, fewer than 32 later datagrams overtake (the
    // receiver's packet window): all still arrive.
    let mut pair =
        blaster(89, LinkConfig::default().latency(Duration::from_millis(5)).reorder(0.2, Duration::from_millis(15)));
    blast(&mut pair, 300);
    let ids = arrival_order(&pair);
    let overtaken = ids.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(overtaken > 20, "{overtaken}");
    // Reordered or not, each message arrives once.
    assert_eq!(received_numbers(&pair.sim, pair.server).len(), 300);
}

#[test]
fn hold_and_release_a_link() {
    let mut pair = Pair::simple(90);
    let (client, server) = (pair.client, pair.server);
    pair.sim.hold(client, server);
    for i in 0..5 {
        pair.sim.send(client, pair.c, &numbered(i, 10), Delivery::Reliable).unwrap();
        pair.sim.run_for(Duration::from_millis(20));
    }
    pair.sim.run_for(Duration::from_millis(500));
    assert!(pair.sim.messages(server).is_empty());
    assert!(pair.sim.stats().held >= 5);
    let held = pair.sim.release(client, server);
    assert_eq!(held as u64, pair.sim.stats().held);
    assert_eq!(pair.sim.release(client, server), 0, "released already");
    pair.sim.run_for(Duration::from_secs(1));
    let got: Vec<u32> = pair.sim.messages(server).iter().map(|p| crate::number_of(p)).collect();
    assert_eq!(got, [0, 1, 2, 3, 4], "in order, once each");
}

#[test]
fn injection_needs_a_destination_and_drop_next_counts() {
    let mut pair = Pair::simple(91);
    let stranger: SocketAddr = "[2001:db8::99]:1234".parse().unwrap();
    let nowhere: SocketAddr = "10.99.0.1:1".parse().unwrap();
    pair.sim.inject(stranger, nowhere, vec![1, 2, 3], Duration::ZERO);
    assert_eq!(pair.sim.stats().dropped(DropCause::NoRoute), 1);
    let server_addr = pair.sim.addr(pair.server);
    pair.sim.inject(stranger, server_addr, vec![1, 2, 3], Duration::from_millis(3));
    pair.sim.run_for(Duration::from_millis(10));
    assert_eq!(pair.sim.endpoint(pair.server).stats().dropped(DropReason::Malformed), 1);
    assert_eq!(pair.sim.stats().injected, 2);

    pair.sim.drop_next(pair.client, pair.server, 3);
    let client = pair.client;
    crate::send_numbered(&mut pair, client, 0, 10, Delivery::Reliable);
    pair.sim.run_for(Duration::from_secs(1));
    assert_eq!(pair.sim.stats().dropped(DropCause::Scripted), 3);
    assert_eq!(received_numbers(&pair.sim, pair.server).len(), 10, "Reliable: resent");
}

#[test]
fn links_are_per_direction_and_the_default_applies_to_the_rest() {
    let mut sim = Sim::new(92);
    let a = sim.add_server(EndpointConfig::default(), server_key(92)).unwrap();
    let b = sim.add_client(crate::v1(EndpointConfig::default())).unwrap();
    let c = sim.add_client(crate::v1(EndpointConfig::default())).unwrap();
    sim.set_link(b, a, LinkConfig::wifi());
    sim.set_default_link(LinkConfig::lan());
    assert_eq!(*sim.link_config(b, a), LinkConfig::wifi());
    assert_eq!(*sim.link_config(a, b), LinkConfig::lan());
    assert_eq!(*sim.link_config(c, a), LinkConfig::lan());
    sim.set_path(a, c, LinkConfig::mobile_lossy());
    assert_eq!(*sim.link_config(c, a), LinkConfig::mobile_lossy());
    assert_eq!(*sim.link_config(a, c), LinkConfig::mobile_lossy());
    sim.partition(&[a], &[b, c]);
    assert!(sim.is_partitioned(b, a) && sim.is_partitioned(a, c));
    sim.heal_between(a, b);
    assert!(!sim.is_partitioned(a, b) && sim.is_partitioned(c, a));
    sim.heal();
    assert!(!sim.is_partitioned(c, a));
    assert_eq!(sim.node_at(sim.addr(c)), Some(c));
    assert_eq!(sim.node_count(), 3);
    assert!(sim.add_client_at(sim.addr(c), crate::v1(EndpointConfig::default())).is_err(), "address in use");
    let _: NodeId = c;
}

#[test]
fn the_trace_records_every_datagram_event_and_digests_them() {
    let mut pair = Pair::new(93, LinkConfig::mobile_lossy(), crate::v1(EndpointConfig::default()));
    let client = pair.client;
    crate::send_numbered(&mut pair, client, 0, 100, Delivery::Reliable);
    pair.sim.run_for(Duration::from_secs(3));
    let trace = pair.sim.trace();
    let stats = pair.sim.stats().clone();
    let count = |pred: &dyn Fn(TraceKind) -> bool| trace.entries().filter(|e| pred(e.kind)).count() as u64;
    assert_eq!(trace.total(), trace.entries().len() as u64, "all kept under the default capacity");
    assert_eq!(count(&|k| k == TraceKind::Send), stats.datagrams_sent);
    assert_eq!(count(&|k| k == TraceKind::Deliver), stats.datagrams_delivered);
    assert_eq!(count(&|k| matches!(k, TraceKind::Drop(_))), stats.dropped_total());
    assert_eq!(count(&|k| k == TraceKind::Duplicate), stats.duplicated);
    assert_eq!(count(&|k| matches!(k, TraceKind::Corrupt { .. })), stats.corrupted);
    // Sent = delivered + dropped − duplicates (nothing is in flight now
    // but keep-alives; allow for those).
    assert!(stats.datagrams_sent + stats.duplicated >= stats.datagrams_delivered + stats.dropped_total());
    // Entries are in time order and print one per line.
    assert!(trace.entries().zip(trace.entries().skip(1)).all(|(a, b)| a.at <= b.at));
    let tail = trace.tail(3);
    assert_eq!(tail.lines().count(), 3);
    // The digest moves with every entry; hex prints it.
    let d1 = pair.sim.digest();
    pair.sim.run_for(Duration::from_secs(1));
    assert_ne!(d1, pair.sim.digest());
    assert_eq!(hex(&d1).len(), 64);
    // A small capacity keeps the last entries only, and the digest still
    // covers everything.
    pair.sim.set_trace_capacity(10);
    pair.sim.run_for(Duration::from_secs(1));
    assert_eq!(pair.sim.trace().entries().len(), 10);
    assert!(pair.sim.trace().total() > 10);
}
