//! A fixed number of messages through the core path, for profilers and
//! instruction counters (`benches/datagram.rs` times the same path, but for
//! a time, not a count).
//!
//! `cargo run --release --example core_loop -- v2 100 100000` sends 100,000
//! unreliable 100 B messages client → server over MPGS/2 (`v1`: MPGS/1;
//! `raw`: AES-128-GCM seal+open of the payload only; `v2ch`: MPGS/2 with
//! four active channels, the messages spread over channel 0 and three
//! configured unreliable channels of two priorities and weights 1–3), as the
//! bench does:
//! `send` → `poll_transmit` → `handle_datagram` → `poll_event`, the server's
//! acks fed back every 8 (MPGS/2) or 16 (MPGS/1) messages. Run it under
//! `valgrind --tool=cachegrind --cache-sim=no` at two counts: the difference
//! of the instruction totals over the difference of the counts is the
//! per-message cost, free of the machine's load.
#![allow(clippy::unwrap_used)] // a profiling loop that cannot set up should stop loudly

use std::hint::black_box;
use std::net::SocketAddr;

use mpgameserver::_internal::PacketKey;
use mpgameserver::{
    ConnectionId, Delivery, Duration, Endpoint, EndpointConfig, Event, Instant, MAX_DATAGRAM, ProtocolVersion, Rng,
    Seed, ServerKey,
};

const CLIENT: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 5000));
const SERVER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 4000));

struct Pair {
    client: Endpoint,
    server: Endpoint,
    conn: ConnectionId,
    now: Instant,
    buf: Box<[u8; MAX_DATAGRAM]>,
    ack_every: u64,
    /// Channels the messages rotate over (empty: `Delivery::Unreliable`).
    channels: Vec<u8>,
}

impl Pair {
    fn new(protocol: ProtocolVersion, channels: bool) -> Pair {
        let mut cfg = EndpointConfig::default();
        cfg.send_interval = Duration::ZERO;
        if channels {
            use mpgameserver::{ChannelConfig, ChannelKind};
            cfg.channels = vec![
                ChannelConfig::new(3, ChannelKind::Unreliable).with_weight(3),
                ChannelConfig::new(4, ChannelKind::UnreliableSequenced),
                ChannelConfig::new(5, ChannelKind::Unreliable).with_priority(1).with_weight(2),
            ];
        }
        let root = ServerKey::generate(&mut Rng::new(Seed::from_u64(1)));
        let pinned = root.public_key();
        let server = Endpoint::server(cfg.clone(), root, Seed::from_u64(2)).unwrap();
        let mut client = Endpoint::client(cfg, Seed::from_u64(3)).unwrap();
        let now = Instant::ZERO;
        let conn = client.connect_with(now, SERVER, pinned, protocol).unwrap();
        let ack_every = if protocol == ProtocolVersion::V2 { 8 } else { 16 };
        let channels = if channels { vec![0, 3, 4, 5] } else { Vec::new() };
        let mut p = Pair { client, server, conn, now, buf: Box::new([0; MAX_DATAGRAM]), ack_every, channels };
        for _ in 0..10 {
            while let Some(t) = p.client.poll_transmit(p.now, &mut p.buf) {
                p.server.handle_datagram(p.now, CLIENT, &mut p.buf[..t.len]);
            }
            while let Some(t) = p.server.poll_transmit(p.now, &mut p.buf) {
                p.client.handle_datagram(p.now, SERVER, &mut p.buf[..t.len]);
            }
            p.now += Duration::from_millis(1);
        }
        assert!(matches!(p.client.poll_event(), Some(Event::Connected { .. })));
        while p.server.poll_event().is_some() {}
        p
    }

    fn one(&mut self, k: u64, msg: &[u8]) {
        self.now += Duration::from_micros(500);
        if self.channels.is_empty() {
            self.client.send(self.conn, msg, Delivery::Unreliable).unwrap();
        } else {
            let ch = self.channels[(k % self.channels.len() as u64) as usize];
            self.client.send_on(self.conn, ch, msg).unwrap();
        }
        let t = self.client.poll_transmit(self.now, &mut self.buf).expect("a datagram is due");
        self.server.handle_datagram(self.now, CLIENT, &mut self.buf[..t.len]);
        match self.server.poll_event() {
            Some(Event::Message { payload, .. }) => {
                black_box(payload);
            }
            other => panic!("expected the message, got {other:?}"),
        }
        if (k + 1).is_multiple_of(self.ack_every) {
            while let Some(t) = self.server.poll_transmit(self.now, &mut self.buf) {
                self.client.handle_datagram(self.now, SERVER, &mut self.buf[..t.len]);
            }
            while self.client.poll_event().is_some() {}
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: core_loop v1|v2|v2ch|raw SIZE COUNT";
    let (which, size, count) = match &args[1..] {
        [w, s, c] => (w.as_str(), s.parse::<usize>().expect(usage), c.parse::<u64>().expect(usage)),
        _ => panic!("{usage}"),
    };
    // MPGS/2 at 1200 as in the bench: the largest message that leaves in
    // one 1,200 B datagram beside an ACK frame.
    let size = if which.starts_with("v2") { size.min(1140) } else { size };
    let msg = vec![0x5Au8; size];
    match which {
        "raw" => {
            let key = PacketKey::new(&[7u8; 16]);
            let header = [0x42u8; 20];
            let mut payload = msg;
            for _ in 0..count {
                let tag = key.seal(black_box(&header), &mut payload);
                key.open(&header, &mut payload, &tag).unwrap();
                black_box(&payload);
            }
        }
        "v1" | "v2" | "v2ch" => {
            let protocol = if which == "v1" { ProtocolVersion::V1 } else { ProtocolVersion::V2 };
            let mut pair = Pair::new(protocol, which == "v2ch");
            for k in 0..count {
                pair.one(k, &msg);
            }
        }
        _ => panic!("{usage}"),
    }
}
