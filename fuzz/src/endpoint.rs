//! The endpoint as a whole: a server or a client endpoint, with one
//! established connection made by a real handshake (fixed seeds), fed a
//! sequence of operations decoded from the fuzz input: raw datagrams from
//! arbitrary addresses, "sealed" datagrams whose framing and trailer the
//! harness completes (with the `_fuzzing` identity cipher, so they pass
//! authentication and reach the message layer), valid CLIENT_HELLOs,
//! fragments, time jumps, and the application's commands.
//!
//! The established state is built once per process and cloned for every
//! input (the `_fuzzing` feature makes the endpoint `Clone`), so an input
//! costs no handshake unless it asks for one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;

use mpgameserver::_internal::protect::{self, TAG_LEN};
use mpgameserver::_internal::wire::handshake::{self, CLIENT_HELLO_FIXED_LEN};
use mpgameserver::_internal::wire::{Direction, FragmentHeader, HEADER_LEN, Header, MsgType, PayloadWriter};
use mpgameserver::_internal::{EphemeralKey, PacketKey};
use mpgameserver::{
    ConnectionId, Delivery, Duration, Endpoint, EndpointConfig, Event, Instant, IpNet, MAX_DATAGRAM, RateLimit, Rng,
    Role, Seed, ServerKey,
};

const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 4000);
const CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 5000);
/// Valid client keys for CLIENT_HELLOs (generated once).
const HELLO_KEYS: usize = 8;

/// Limits small enough for the fuzzer to hit every one of them.
fn config() -> EndpointConfig {
    let mut cfg = EndpointConfig::default();
    cfg.max_message_size = 64 * 1024;
    cfg.max_fragments = 128;
    cfg.max_reassemblies = 4;
    cfg.max_reassembly_bytes = 128 * 1024;
    cfg.max_reassembly_bytes_total = 192 * 1024;
    cfg.max_pending_handshakes = 4;
    cfg.max_connections = 6;
    cfg.max_pending_per_ip = 2;
    cfg.max_pending_per_prefix = 3;
    cfg.hello_rate = RateLimit::new(50, 5);
    cfg.hello_rate_per_ip = RateLimit::new(4, 2);
    cfg.hello_rate_per_prefix = RateLimit::new(10, 4);
    cfg.send_queue_messages = 64;
    cfg.send_queue_bytes = 256 * 1024;
    cfg.unix_time_origin = 1_700_000_000;
    cfg
}

/// The state every input starts from.
struct Snapshot {
    ep: Endpoint,
    now: Instant,
    conn: ConnectionId,
    /// The established peer's address.
    peer: SocketAddr,
    hello_keys: Vec<[u8; 91]>,
    /// A server key to pin in `connect`.
    other_key: mpgameserver::PublicKey,
}

fn snapshot(role: Role) -> &'static Snapshot {
    static SERVER_SNAP: OnceLock<Snapshot> = OnceLock::new();
    static CLIENT_SNAP: OnceLock<Snapshot> = OnceLock::new();
    let cell = if role == Role::Server { &SERVER_SNAP } else { &CLIENT_SNAP };
    cell.get_or_init(|| build(role))
}

/// A real handshake between two endpoints with fixed seeds.
fn build(role: Role) -> Snapshot {
    let root = ServerKey::generate(&mut Rng::new(Seed::from_u64(1)));
    let pinned = root.public_key();
    let mut server = Endpoint::server(config(), root, Seed::from_u64(2)).expect("valid config");
    let mut client = Endpoint::client(config(), Seed::from_u64(3)).expect("valid config");
    let mut now = Instant::from_secs(10);
    let c = client.connect(now, SERVER, pinned).expect("connect");
    let mut buf = [0u8; MAX_DATAGRAM];
    let mut s_conn = None;
    for _ in 0..200 {
        while let Some(t) = client.poll_transmit(now, &mut buf) {
            server.handle_datagram(now, CLIENT, &mut buf[..t.len]);
        }
        while let Some(t) = server.poll_transmit(now, &mut buf) {
            client.handle_datagram(now, SERVER, &mut buf[..t.len]);
        }
        while let Some(e) = server.poll_event() {
            if let Event::Connected { conn } = e {
                s_conn = Some(conn);
            }
        }
        while client.poll_event().is_some() {}
        if s_conn.is_some() && client.connection_count() == 1 {
            break;
        }
        now += Duration::from_millis(5);
        server.handle_timeout(now);
        client.handle_timeout(now);
    }
    let hello_keys = (0..HELLO_KEYS as u64)
        .map(|i| EphemeralKey::generate(&mut Rng::new(Seed::from_u64(100 + i))).public_spki())
        .collect();
    let other_key = ServerKey::generate(&mut Rng::new(Seed::from_u64(9))).public_key();
    match role {
        Role::Server => Snapshot {
            ep: server,
            now,
            conn: s_conn.expect("handshake completed"),
            peer: CLIENT,
            hello_keys,
            other_key,
        },
        Role::Client => Snapshot { ep: client, now, conn: c, peer: SERVER, hello_keys, other_key },
    }
}

/// The fuzz input, read front to back; reads past the end give zeros.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn u8(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    /// A source address: the peer, a few fixed ones (IPv6, the peer's
    /// IPv4-mapped form, its /24 neighbour), or arbitrary ones.
    fn addr(&mut self, peer: SocketAddr) -> SocketAddr {
        match self.u8() % 8 {
            0..=2 => peer,
            3 => SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 7)), 6000),
            4 => match peer.ip() {
                IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), peer.port()),
                v6 => SocketAddr::new(v6, peer.port().wrapping_add(1)),
            },
            5 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, self.u8())), self.u16()),
            6 => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(self.u32())), self.u16()),
            _ => {
                let hi = u128::from(self.u32()) << 96 | u128::from(self.u32());
                SocketAddr::new(IpAddr::V6(Ipv6Addr::from(hi)), self.u16())
            }
        }
    }
}

struct Harness {
    ep: Endpoint,
    role: Role,
    now: Instant,
    conn: ConnectionId,
    peer: SocketAddr,
    cfg: EndpointConfig,
    /// Connections the endpoint reported, for the application commands.
    conns: Vec<ConnectionId>,
    buf: [u8; MAX_DATAGRAM],
    /// Operations that cost a key exchange left for this input (keeps an
    /// execution fast; the rate limits are reached through the config).
    crypto_left: u32,
}

impl Harness {
    fn dir(&self) -> Direction {
        if self.role == Role::Server { Direction::ToServer } else { Direction::ToClient }
    }

    fn deliver(&mut self, from: SocketAddr, bytes: &[u8]) {
        let mut b = bytes.to_vec();
        self.ep.handle_datagram(self.now, from, &mut b);
    }

    /// A datagram with the header fields from the input and `msgs`, with a
    /// correct length, count, type and trailer (identity "AEAD" or CRC).
    fn sealed(&self, inp: &mut Input, msgs: &[(u16, MsgType, Vec<u8>)], crc: bool) -> Vec<u8> {
        let max = self.cfg.sizes().max_payload;
        let mut out = vec![0u8; HEADER_LEN + max + TAG_LEN];
        let mut w = PayloadWriter::new(&mut out[HEADER_LEN..HEADER_LEN + max], max);
        for (msgseq, ty, data) in msgs {
            let _ = w.push(*msgseq, *ty, data);
        }
        let (len, count, ty) = w.finish();
        let origin = self.cfg.unix_time_origin as u32;
        let current = origin.wrapping_add(self.now.as_secs() as u32);
        let ctime = match inp.u8() % 4 {
            0 => current,
            1 => current.wrapping_sub(7),
            2 => current.wrapping_add(1),
            _ => inp.u32(),
        };
        let hdr = Header {
            dir: self.dir(),
            ctime,
            seq: inp.u16(),
            ack: inp.u16(),
            ty,
            length: 0, // set by `seal`
            count,
            ack_bits: inp.u32(),
        };
        // Any key: the `_fuzzing` build's identity "cipher" leaves the
        // payload in clear and writes FUZZING_TAG.
        let key = PacketKey::new(&[0; 16]);
        let n = protect::seal(&mut out, hdr, len, (!crc).then_some(&key));
        out.truncate(n);
        out
    }

    fn message(&self, inp: &mut Input) -> (u16, MsgType, Vec<u8>) {
        let msgseq = inp.u16();
        let sel = inp.u8();
        let ty = MsgType::from_u8(sel % 8).unwrap_or(MsgType::App);
        let data = if ty == MsgType::AppFragment && sel & 0x80 != 0 {
            // A fragment with small header values and a chunk of a chosen size.
            let h = FragmentHeader {
                frag_id: u16::from(inp.u8() % 4),
                index: u16::from(inp.u8()),
                count: u16::from(inp.u8()),
            };
            let mut d = [0u8; 6];
            h.emit(&mut d);
            let mut v = d.to_vec();
            let n = usize::from(inp.u16() % 1500);
            v.resize(6 + n, inp.u8());
            v
        } else {
            let n = usize::from(inp.u8());
            inp.bytes(n).to_vec()
        };
        (msgseq, ty, data)
    }

    fn hello(&self, key: &[u8; 91], pad_short: bool) -> Vec<u8> {
        let pad = vec![0x33; if pad_short { 10 } else { self.cfg.sizes().hello_padding }];
        let mut body = vec![0; CLIENT_HELLO_FIXED_LEN + pad.len()];
        let n = handshake::emit_client_hello(&mut body, key, &pad).expect("sized");
        body.truncate(n);
        body
    }

    fn live_conn(&self, inp: &mut Input) -> ConnectionId {
        let i = usize::from(inp.u8());
        if i == 0 || self.conns.is_empty() { self.conn } else { self.conns[i % self.conns.len()] }
    }

    fn step(&mut self, inp: &mut Input, snap: &Snapshot) {
        match inp.u8() % 12 {
            0 => {
                let from = inp.addr(self.peer);
                let n = usize::from(inp.u16() % 2100);
                let bytes = inp.bytes(n).to_vec();
                self.deliver(from, &bytes);
            }
            1..=3 => {
                let from = inp.addr(self.peer);
                let k = usize::from(inp.u8() % 5);
                let msgs: Vec<_> = (0..k).map(|_| self.message(inp)).collect();
                let crc = inp.u8().is_multiple_of(8);
                let d = self.sealed(inp, &msgs, crc);
                self.deliver(from, &d);
            }
            4 => {
                // A burst of consecutive fragments of one message.
                let from = inp.addr(self.peer);
                let (frag_id, count, first) = (inp.u16(), u16::from(inp.u8()), u16::from(inp.u8()));
                let (m1, chunk, seq) = (inp.u16(), usize::from(inp.u16() % 1100) + 1, inp.u16());
                for i in 0..u16::from(inp.u8() % 8) + 1 {
                    let index = first.wrapping_add(i);
                    let h = FragmentHeader { frag_id, index, count };
                    let mut d = vec![0u8; 6 + chunk];
                    let head: &mut [u8; 6] = (&mut d[..6]).try_into().expect("6 bytes");
                    h.emit(head);
                    let msgs = [(m1.wrapping_add(index), MsgType::AppFragment, d)];
                    let mut hdr_in = Input(&[]);
                    let mut dg = self.sealed(&mut hdr_in, &msgs, false);
                    dg[8..10].copy_from_slice(&seq.wrapping_add(i).to_be_bytes());
                    self.deliver(from, &dg);
                }
            }
            5 => {
                let ms = u64::from(inp.u16());
                self.now += Duration::from_millis(ms);
                self.ep.handle_timeout(self.now);
                if let Some(t) = self.ep.poll_timeout() {
                    assert!(t > self.now, "poll_timeout {t} not after handle_timeout({})", self.now);
                }
            }
            6 => {
                let n = match inp.u8() % 4 {
                    0 => usize::from(inp.u8()),
                    1 => usize::from(inp.u16()),
                    2 => self.cfg.max_message_size,
                    _ => self.cfg.max_message_size + 1,
                };
                let delivery =
                    [Delivery::Unreliable, Delivery::BestEffort, Delivery::Reliable][usize::from(inp.u8() % 3)];
                let conn = self.live_conn(inp);
                let _ = self.ep.send(conn, &vec![0xA5; n], delivery);
            }
            7 => {
                let conn = self.live_conn(inp);
                if inp.u8().is_multiple_of(2) {
                    let _ = self.ep.disconnect(self.now, conn);
                } else {
                    let _ = self.ep.ban(self.now, conn);
                }
            }
            8 => {
                let a = inp.addr(self.peer);
                let net = IpNet::new(a.ip(), inp.u8()).unwrap_or(IpNet::host(a.ip()));
                if inp.u8().is_multiple_of(2) {
                    self.ep.block(net);
                } else {
                    self.ep.unblock(net);
                }
            }
            9 if self.crypto_left == 0 => {}
            9 if self.role == Role::Server => {
                self.crypto_left -= 1;
                // A valid CLIENT_HELLO (a real key exchange follows).
                let from = inp.addr(self.peer);
                let key = snap.hello_keys[usize::from(inp.u8()) % HELLO_KEYS];
                let body = self.hello(&key, inp.u8().is_multiple_of(8));
                let msgs = [(inp.u16(), MsgType::ClientHello, body)];
                let d = self.sealed(inp, &msgs, true);
                self.deliver(from, &d);
            }
            9 => {
                self.crypto_left -= 1;
                let to = inp.addr(self.peer);
                let _ = self.ep.connect(self.now, to, snap.other_key.clone());
            }
            10 => {
                // Our own last datagram, fed back (a reflection), possibly
                // with one byte changed.
                if let Some(t) = self.ep.poll_transmit(self.now, &mut self.buf) {
                    let mut d = self.buf[..t.len].to_vec();
                    let i = usize::from(inp.u16()) % d.len().max(1);
                    if let Some(b) = d.get_mut(i) {
                        *b ^= inp.u8();
                    }
                    let from = inp.addr(t.destination);
                    self.deliver(from, &d);
                }
            }
            _ => {
                let now = self.now;
                let _ = self.ep.poll_transmit(now, &mut self.buf);
            }
        }
    }

    /// Drains output and checks the invariants that hold after any input.
    fn drain(&mut self) {
        let max = self.cfg.sizes().max_datagram;
        let mut n = 0;
        while let Some(t) = self.ep.poll_transmit(self.now, &mut self.buf) {
            assert!(t.len <= max, "oversize datagram: {}", t.len);
            n += 1;
            assert!(n < 100_000, "poll_transmit does not end");
        }
        while let Some(e) = self.ep.poll_event() {
            if let Event::Connected { conn } = e {
                self.conns.push(conn);
            }
        }
        let c = self.ep.config();
        assert!(self.ep.pending_handshakes() <= c.max_pending_handshakes);
        if self.role == Role::Server {
            assert!(self.ep.connection_count() <= c.max_connections);
        }
        assert!(self.ep.reassembly_bytes() <= c.max_reassembly_bytes_total);
    }
}

/// Runs the operations of `data` against an endpoint in `role` with one
/// established connection. Never panics unless an invariant breaks.
pub fn endpoint(data: &[u8], role: Role) {
    let snap = snapshot(role);
    let mut h = Harness {
        ep: snap.ep.clone(),
        role,
        now: snap.now,
        conn: snap.conn,
        peer: snap.peer,
        cfg: config(),
        conns: Vec::new(),
        buf: [0u8; MAX_DATAGRAM],
        crypto_left: 2,
    };
    let mut inp = Input(data);
    let mut ops = 0;
    while !inp.is_empty() && ops < 256 {
        h.step(&mut inp, snap);
        h.drain();
        ops += 1;
    }
    // Let every timer run out: everything ends, nothing loops.
    for _ in 0..12 {
        h.now += Duration::from_secs(20);
        h.ep.handle_timeout(h.now);
        h.drain();
    }
    assert_eq!(h.ep.pending_handshakes(), 0, "every pending handshake expires");
    assert_eq!(h.ep.reassembly_bytes(), 0, "every reassembly expires");
}
