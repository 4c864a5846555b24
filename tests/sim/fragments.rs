//! Fragmented messages, 1 KiB to 1 MiB, under 20 % loss.

use std::collections::BTreeMap;

use mpgameserver::{Delivery, Duration, EndpointConfig, MessageId};
use mpgameserver_sim::{DropCause, LinkConfig};

use crate::{Pair, numbered, outcomes};

#[test]
fn fragmented_messages_from_1_kib_to_1_mib_arrive_intact_under_20_percent_loss() {
    let link = LinkConfig::default().latency(Duration::from_millis(25)).jitter(Duration::from_millis(10)).loss(0.2);
    // A faster pacer than the 60 Hz default (a Rust-to-Rust link), so the
    // megabyte takes seconds rather than a virtual minute; the loss and
    // the datagram count are the same either way.
    // MPGS/1's fragmentation (PROTOCOL.md §8).
    let mut cfg = crate::v1(EndpointConfig::default());
    cfg.send_interval = Duration::from_millis(2);
    let mut pair = Pair::new(21, link, cfg);
    let (client, server) = (pair.client, pair.server);
    let kib = 1024;
    // Around every boundary: one datagram (1432), two (1433), many, the maximum.
    let sizes = [kib, 1432, 1433, 1434, 2 * kib, 4 * kib + 3, 64 * kib, 100_000, 256 * kib, 1024 * kib];
    let mut up: BTreeMap<MessageId, Vec<u8>> = BTreeMap::new();
    for (i, &n) in sizes.iter().enumerate() {
        let data = numbered(i as u32, n - 4);
        up.insert(pair.sim.send(client, pair.c, &data, Delivery::Reliable).unwrap(), data);
    }
    // And the server answers with a few large ones meanwhile.
    let mut down: BTreeMap<MessageId, Vec<u8>> = BTreeMap::new();
    for (i, &n) in [3 * kib, 200 * kib, 1024 * kib].iter().enumerate() {
        let data = numbered(100 + i as u32, n - 4);
        down.insert(pair.sim.send(server, pair.s, &data, Delivery::Reliable).unwrap(), data);
    }
    let done = |s: &mpgameserver_sim::Sim| {
        outcomes(s.events(client)).len() == up.len() && outcomes(s.events(server)).len() == down.len()
    };
    assert!(pair.sim.run_until(done, Duration::from_secs(120)), "{}", pair.sim.stats());
    pair.sim.run_for(Duration::from_secs(1));
    for (messages, sender, receiver) in [(&up, client, server), (&down, server, client)] {
        let reports = outcomes(pair.sim.events(sender));
        let got = pair.sim.messages(receiver);
        assert_eq!(got.len(), messages.len(), "each message once");
        for (id, data) in messages {
            assert_eq!(reports[id], (1, 0), "{id:?} delivered and reported once");
            let copies = got.iter().filter(|p| **p == data.as_slice()).count();
            assert_eq!(copies, 1, "{} B message intact, once", data.len());
        }
    }
    // The loss was real: a fifth of some 1,700 datagrams, and resent.
    assert!(pair.sim.stats().dropped(DropCause::Loss) > 300, "{}", pair.sim.stats());
    let m = pair.sim.endpoint(client).connection(pair.c).unwrap().metrics();
    assert!(m.messages_retransmitted > 100, "{m:?}");
}

#[test]
fn a_megabyte_over_the_mobile_preset_at_the_default_pace() {
    // The default 60 Hz pacer, a bursty, reordering, corrupting,
    // bandwidth-capped path: 1 MiB still arrives once, intact.
    let mut pair = Pair::new(22, LinkConfig::mobile_lossy(), EndpointConfig::default());
    let data = numbered(7, 1024 * 1024 - 4);
    let id = pair.sim.send(pair.server, pair.s, &data, Delivery::Reliable).unwrap();
    let server = pair.server;
    assert!(pair.sim.run_until(|s| outcomes(s.events(server)).contains_key(&id), Duration::from_secs(120)));
    assert_eq!(outcomes(pair.sim.events(server))[&id], (1, 0));
    assert_eq!(pair.sim.messages(pair.client), [data.as_slice()]);
    // 733 fragments at 60 a second: at least 12 virtual seconds.
    assert!(pair.sim.now().as_secs() >= 12, "{}", pair.sim.now());
}
