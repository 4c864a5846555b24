//! A tiny virtual-time network for protocol tests: endpoints on fixed
//! addresses, a fixed one-way latency, and a per-datagram filter that can
//! drop, duplicate, capture or rewrite. (The full simulator lives in
//! `mpgameserver-sim`; unit tests in `src/` cannot use it.)

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::net::SocketAddr;
use std::string::String;

use crate::mpgs1::protect::PacketKey;
use crate::mpgs1::wire::{Direction, HEADER_LEN, Header, MsgType};
use crate::{
    ConnectionId, Duration, Endpoint, EndpointConfig, Event, Instant, MAX_DATAGRAM, ProtocolVersion, PublicKey, Rng,
    Seed, ServerKey,
};

pub(crate) const SERVER: usize = 0;

/// A datagram on the simulated wire.
#[derive(Clone, Debug)]
pub(crate) struct Datagram {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
    pub sent: Instant,
}

impl Datagram {
    pub(crate) fn header(&self) -> Header {
        let dir = if self.bytes.starts_with(b"FSOS") { Direction::ToServer } else { Direction::ToClient };
        Header::parse(&self.bytes, dir).expect("endpoints only emit valid headers")
    }
}

/// What the filter does with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Deliver,
    Drop,
    Duplicate,
}

type Filter = Box<dyn FnMut(&Datagram) -> Verdict>;

pub(crate) struct Net {
    pub now: Instant,
    pub addrs: Vec<SocketAddr>,
    pub eps: Vec<Endpoint>,
    pub events: Vec<Vec<Event>>,
    pub latency: Duration,
    /// Every datagram any endpoint emitted, in order (before the filter).
    pub wire_log: Vec<Datagram>,
    pub filter: Option<Filter>,
    in_flight: Vec<(Instant, u64, Datagram)>,
    counter: u64,
    pub pinned: PublicKey,
}

pub(crate) fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4000 + i as u16))
}

pub(crate) fn test_key() -> ServerKey {
    ServerKey::generate(&mut Rng::new(Seed::from_u64(0xC0FFEE)))
}

impl Net {
    /// A server (endpoint 0) and `clients` client endpoints, none connected.
    pub(crate) fn new(cfg: EndpointConfig, clients: usize, seed: u64) -> Net {
        let key = test_key();
        let pinned = key.public_key();
        let mut eps = alloc::vec![Endpoint::server(cfg.clone(), key, Seed::from_u64(seed)).unwrap()];
        // These tests are about MPGS/1 (PROTOCOL.md): the clients speak it
        // explicitly, whatever the default.
        let mut client_cfg = cfg.clone();
        client_cfg.protocol = ProtocolVersion::V1;
        for i in 0..clients {
            eps.push(Endpoint::client(client_cfg.clone(), Seed::from_u64(seed ^ (0x1000 + i as u64))).unwrap());
        }
        Net {
            now: Instant::ZERO,
            addrs: (0..=clients).map(addr).collect(),
            events: (0..=clients).map(|_| Vec::new()).collect(),
            eps,
            latency: Duration::from_millis(10),
            wire_log: Vec::new(),
            filter: None,
            in_flight: Vec::new(),
            counter: 0,
            pinned,
        }
    }

    /// Server plus one client, connected. Returns (client conn, server conn).
    pub(crate) fn pair(cfg: EndpointConfig) -> (Net, ConnectionId, ConnectionId) {
        let mut net = Net::new(cfg, 1, 7);
        let c = net.connect(1);
        net.run_for(Duration::from_millis(200));
        let s = net.server_conn_of(1).expect("handshake completed");
        assert!(net.events[1].contains(&Event::Connected { conn: c }), "{:?}", net.events[1]);
        (net, c, s)
    }

    pub(crate) fn connect(&mut self, client: usize) -> ConnectionId {
        let (now, srv, key) = (self.now, self.addrs[SERVER], self.pinned.clone());
        self.eps[client].connect(now, srv, key).unwrap()
    }

    /// The server's connection for client endpoint `client`.
    pub(crate) fn server_conn_of(&self, client: usize) -> Option<ConnectionId> {
        let a = self.addrs[client];
        self.eps[SERVER].connections().find(|&id| self.eps[SERVER].connection(id).unwrap().remote() == a)
    }

    pub(crate) fn set_filter(&mut self, f: impl FnMut(&Datagram) -> Verdict + 'static) {
        self.filter = Some(Box::new(f));
    }

    fn index_of(&self, a: SocketAddr) -> Option<usize> {
        self.addrs.iter().position(|&x| x == a)
    }

    /// Drains every endpoint's transmits onto the wire and its events into `events`.
    pub(crate) fn flush(&mut self) {
        let mut buf = [0u8; MAX_DATAGRAM];
        for i in 0..self.eps.len() {
            while let Some(t) = self.eps[i].poll_transmit(self.now, &mut buf) {
                assert!(t.len <= self.eps[i].config().sizes().max_datagram, "oversize datagram");
                let d =
                    Datagram { from: self.addrs[i], to: t.destination, bytes: buf[..t.len].to_vec(), sent: self.now };
                self.wire_log.push(d.clone());
                self.inject_filtered(d);
            }
            while let Some(e) = self.eps[i].poll_event() {
                self.events[i].push(e);
            }
        }
    }

    fn inject_filtered(&mut self, d: Datagram) {
        let verdict = self.filter.as_mut().map_or(Verdict::Deliver, |f| f(&d));
        match verdict {
            Verdict::Deliver => self.inject(d),
            Verdict::Drop => {}
            Verdict::Duplicate => {
                self.inject(d.clone());
                self.inject(d);
            }
        }
    }

    /// Puts a datagram on the wire, bypassing the filter; it arrives after the latency.
    pub(crate) fn inject(&mut self, d: Datagram) {
        self.counter += 1;
        self.in_flight.push((self.now + self.latency, self.counter, d));
    }

    /// Delivers a datagram right now (bypassing wire and filter).
    pub(crate) fn deliver_now(&mut self, d: &Datagram) {
        if let Some(i) = self.index_of(d.to) {
            let mut bytes = d.bytes.clone();
            self.eps[i].handle_datagram(self.now, d.from, &mut bytes);
        }
        self.flush();
    }

    /// Advances to the next delivery or timer, at most to `limit`. Returns
    /// false when nothing is scheduled before `limit`.
    pub(crate) fn step(&mut self, limit: Instant) -> bool {
        self.flush();
        let next_delivery = self.in_flight.iter().map(|x| x.0).min();
        let next_timer = self.eps.iter_mut().filter_map(|e| e.poll_timeout()).min();
        let next = match (next_delivery, next_timer) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => return false,
            },
        };
        if next > limit {
            self.now = limit;
            return false;
        }
        // A timer armed before the clock last jumped fires at once.
        self.now = next.max(self.now);
        // Deliver everything due, in send order.
        self.in_flight.sort_by_key(|x| (x.0, x.1));
        while self.in_flight.first().is_some_and(|x| x.0 <= self.now) {
            let (_, _, d) = self.in_flight.remove(0);
            if let Some(i) = self.index_of(d.to) {
                let mut bytes = d.bytes;
                self.eps[i].handle_datagram(self.now, d.from, &mut bytes);
            }
        }
        for ep in &mut self.eps {
            ep.handle_timeout(self.now);
        }
        for ep in &mut self.eps {
            if let Some(t) = ep.poll_timeout() {
                assert!(t > self.now, "poll_timeout {t} not after handle_timeout({})", self.now);
            }
        }
        self.flush();
        true
    }

    pub(crate) fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        let mut steps = 0u32;
        while self.step(limit) {
            steps += 1;
            assert!(steps < 5_000_000, "livelock at {}", self.now);
        }
    }

    /// Runs until `cond` holds or `d` passes; returns whether it held.
    pub(crate) fn run_until(&mut self, d: Duration, mut cond: impl FnMut(&Net) -> bool) -> bool {
        let limit = self.now + d;
        loop {
            if cond(self) {
                return true;
            }
            if !self.step(limit) {
                return cond(self);
            }
        }
    }

    /// The session key of `conn` at endpoint `ep`, to decode captured datagrams.
    pub(crate) fn key_of(&self, ep: usize, conn: ConnectionId) -> PacketKey {
        self.eps[ep].connection(conn).unwrap().packet_key().unwrap().clone()
    }

    pub(crate) fn take_events(&mut self, ep: usize) -> Vec<Event> {
        core::mem::take(&mut self.events[ep])
    }

    pub(crate) fn messages(&self, ep: usize) -> Vec<Vec<u8>> {
        self.events[ep]
            .iter()
            .filter_map(|e| match e {
                Event::Message { payload, .. } => Some(payload.clone()),
                _ => None,
            })
            .collect()
    }
}

/// A decrypted datagram: header and its messages as (msgseq, type, data).
pub(crate) fn decode(key: &PacketKey, d: &Datagram) -> (Header, Vec<(u16, MsgType, Vec<u8>)>) {
    let hdr = d.header();
    let mut bytes = d.bytes.clone();
    let end = crate::mpgs1::protect::open(&hdr, &mut bytes, Some(key)).expect("decodes under the session key");
    let msgs = crate::mpgs1::wire::frame::parse_payload(hdr.ty, hdr.count, &bytes[HEADER_LEN..end])
        .unwrap()
        .map(|m| (m.msgseq, m.ty, m.data.to_vec()))
        .collect();
    (hdr, msgs)
}

/// A small deterministic PRNG for test decisions (xorshift64*).
pub(crate) struct TestRng(u64);

impl TestRng {
    pub(crate) fn new(seed: u64) -> TestRng {
        TestRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// Patterned bytes of length `n` (distinct per `tag`).
pub(crate) fn payload(n: usize, tag: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(tag)).collect()
}

pub(crate) fn describe(events: &[Event]) -> String {
    std::format!("{events:?}")
}

/// Builds a datagram from header fields and messages: AEAD under `key`, or
/// CRC when `key` is `None`. For forging and replaying in tests.
#[allow(clippy::too_many_arguments)]
pub(crate) fn craft(
    key: Option<&PacketKey>,
    dir: Direction,
    ctime: u32,
    seq: u16,
    ack: u16,
    ack_bits: u32,
    msgs: &[(u16, MsgType, &[u8])],
) -> Vec<u8> {
    let mut buf = [0u8; MAX_DATAGRAM];
    let mut w = crate::mpgs1::wire::PayloadWriter::new(&mut buf[HEADER_LEN..HEADER_LEN + 1434], 1434);
    for &(msgseq, ty, data) in msgs {
        w.push(msgseq, ty, data).expect("crafted messages fit");
    }
    let (length, count, ty) = w.finish();
    let hdr = Header { dir, ctime, seq, ack, ty, length: 0, count, ack_bits };
    let n = crate::mpgs1::protect::seal(&mut buf, hdr, length, key);
    buf[..n].to_vec()
}
