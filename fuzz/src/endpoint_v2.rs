//! MPGS/2 through the whole `Endpoint`: a server endpoint and a client
//! endpoint joined by an MPGS/2 connection made by a real handshake (fixed
//! seeds, one snapshot per cookie policy), fed a sequence of operations
//! decoded from the fuzz input:
//!
//! * the wire between them: the datagrams both endpoints sent wait in a
//!   queue, and "pump" operations deliver them with drops, duplicates and
//!   flipped bytes chosen by the input, so real V2 connects (HELLO2,
//!   HELLO_RETRY and its cookie, SERVER_HELLO, REJECT), MPGS/1 connects on
//!   the same server port, and established traffic all run through the
//!   endpoints' routing (accept2.rs, the cid and address routes);
//! * forged datagrams: short packets to the live connections with frames of
//!   every §3.4 type (the `_fuzzing` identity cipher makes them open), to
//!   unknown connection ids and from other addresses (migration, an address
//!   with a live MPGS/1 connection), valid and corrupted HELLO2s from any
//!   address, stateless resets with the real token, raw bytes, reflections;
//! * the application: `connect_with` either version, `send` in every mode,
//!   `disconnect`, `ban`, `block`, time.
//!
//! Checked throughout: datagram sizes, the caps, that no MPGS/2 datagram
//! goes to an address with a live MPGS/1 connection (§2.2), that an
//! address the harness never completed a handshake from gets at most 3× the
//! bytes it sent (§2.8, §6.2), `Connected` and `Disconnected` at most once
//! per connection and nothing after `Disconnected`, at most one outcome per
//! message, and `poll_timeout` after `handle_timeout`. At the end every
//! timer runs out: nothing pending, no connection left, every `Connected`
//! had its `Disconnected`, and every message its one outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;

use mpgameserver::_internal::crc32;
use mpgameserver::_internal::mpgs2::buf::Writer;
use mpgameserver::_internal::mpgs2::frame::{AckFrame, ChannelKind, Frame};
use mpgameserver::_internal::mpgs2::handshake::{ClientHandshake, ClientOffer};
use mpgameserver::_internal::mpgs2::hello::HELLO2_LEN;
use mpgameserver::_internal::mpgs2::keys::FUZZING_TAG;
use mpgameserver::_internal::mpgs2::packet::{ShortHeader, pn_truncate};
use mpgameserver::_internal::mpgs2::reset::{ResetKey, TOKEN_LEN, default_reset_base, emit_reset};
use mpgameserver::_internal::mpgs2::tlv::TransportParams;
use mpgameserver::_internal::mpgs2::{CID_LEN, TAG_LEN};
use mpgameserver::{
    ConnectionId, ConnectionState, CookiePolicy, Delivery, Duration, Endpoint, EndpointConfig, Event, Instant, IpNet,
    MAX_DATAGRAM, MessageId, ProtocolVersion, PublicKey, RateLimit, Rng, Seed, ServerKey,
};

/// The game's protocol id (HELLO2 TLV 0x01).
const PROTOCOL_ID: u64 = 0x4d50_4753_0002;
/// Server addresses the client endpoint connects to, and the source
/// addresses the server sees for them (the wire's "NAT"): pair 0 holds the
/// established connection, pair 2 is IPv6.
const PAIRS: [(SocketAddr, SocketAddr); 3] = [
    (
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 4000),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 5000),
    ),
    (
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 4001),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 5001),
    ),
    (
        SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)), 4000),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)), 5000),
    ),
];
/// Valid HELLO2s (generated once) the harness may send from any address.
const HELLOS: usize = 4;
/// Datagrams waiting on the wire; older ones are lost beyond this.
const WIRE_CAP: usize = 256;
const MAX_OPS: usize = 192;
/// Largest message; small, so the fuzzer reaches it.
const MAX_MESSAGE: usize = 64 * 1024;

fn config(policy: CookiePolicy) -> EndpointConfig {
    let mut cfg = EndpointConfig::default();
    cfg.protocol = ProtocolVersion::V2;
    cfg.protocol_id = PROTOCOL_ID;
    cfg.cookie_policy = policy;
    cfg.max_message_size = MAX_MESSAGE;
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
    cfg.v2_hello_rate_per_source = RateLimit::new(2, 3);
    cfg.v2_ecdh_rate = RateLimit::new(20, 4);
    cfg.v2_reply_rate_per_address = RateLimit::new(4, 4);
    cfg.send_queue_messages = 64;
    cfg.send_queue_bytes = 256 * 1024;
    cfg.unix_time_origin = 1_700_000_000;
    cfg
}

/// The state every input starts from.
struct Snapshot {
    server: Endpoint,
    client: Endpoint,
    now: Instant,
    s_conn: ConnectionId,
    c_conn: ConnectionId,
    /// The id the server chose for the established connection.
    server_cid: [u8; CID_LEN],
    /// The stateless reset token of that id.
    token: [u8; TOKEN_LEN],
    pinned: PublicKey,
    other_key: PublicKey,
    hellos: Vec<[u8; HELLO2_LEN]>,
}

fn snapshot(policy: u8) -> &'static Snapshot {
    static SNAPS: [OnceLock<Snapshot>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let p = [CookiePolicy::UnderLoad, CookiePolicy::Always, CookiePolicy::Never][usize::from(policy % 3)];
    SNAPS[usize::from(policy % 3)].get_or_init(|| build(p))
}

/// Destination → (source seen by the other endpoint, to the server?).
fn route(dest: SocketAddr) -> Option<(SocketAddr, bool)> {
    PAIRS.iter().find_map(|&(s, c)| {
        if dest == s {
            Some((c, true))
        } else if dest == c {
            Some((s, false))
        } else {
            None
        }
    })
}

/// A real MPGS/2 handshake between the two endpoints (fixed seeds).
fn build(policy: CookiePolicy) -> Snapshot {
    let root = ServerKey::generate(&mut Rng::new(Seed::from_u64(1)));
    let pinned = root.public_key();
    let token_key = ResetKey::new(&default_reset_base(&root), 0);
    let mut server = Endpoint::server(config(policy), root, Seed::from_u64(2)).expect("valid config");
    let mut client = Endpoint::client(config(policy), Seed::from_u64(3)).expect("valid config");
    let mut now = Instant::from_secs(10);
    let c_conn = client.connect_with(now, PAIRS[0].0, pinned.clone(), ProtocolVersion::V2).expect("connect");
    let mut buf = [0u8; MAX_DATAGRAM];
    let (mut s_conn, mut c_ok, mut server_cid) = (None, false, None);
    for _ in 0..200 {
        while let Some(t) = client.poll_transmit(now, &mut buf) {
            let d = &mut buf[..t.len];
            if (0x80..0xC0).contains(&d[0]) && d.len() > CID_LEN {
                server_cid = Some(d[1..1 + CID_LEN].try_into().expect("CID_LEN bytes"));
            }
            server.handle_datagram(now, PAIRS[0].1, d);
        }
        while let Some(t) = server.poll_transmit(now, &mut buf) {
            client.handle_datagram(now, PAIRS[0].0, &mut buf[..t.len]);
        }
        while let Some(e) = server.poll_event() {
            if let Event::Connected { conn } = e {
                s_conn = Some(conn);
            }
        }
        while let Some(e) = client.poll_event() {
            c_ok |= matches!(e, Event::Connected { .. });
        }
        if s_conn.is_some() && c_ok && server_cid.is_some() {
            break;
        }
        now += Duration::from_millis(5);
        server.handle_timeout(now);
        client.handle_timeout(now);
    }
    assert!(c_ok, "the fixed MPGS/2 handshake completes");
    let server_cid = server_cid.expect("the client sent a short packet");
    let mut rng = Rng::new(Seed::from_u64(4));
    let offer = ClientOffer {
        protocol_id: PROTOCOL_ID,
        versions: &[2],
        suites: &[1, 2],
        recv_cid: None,
        params: TransportParams::default(),
    };
    let hellos = (0..HELLOS)
        .map(|_| *ClientHandshake::new(&offer, &mut rng).expect("the offer fits a HELLO2").hello())
        .collect();
    Snapshot {
        server,
        client,
        now,
        s_conn: s_conn.expect("the server confirmed the connection"),
        c_conn,
        server_cid,
        token: token_key.token(&server_cid),
        pinned,
        other_key: ServerKey::generate(&mut Rng::new(Seed::from_u64(9))).public_key(),
        hellos,
    }
}

/// The fuzz input, read front to back; reads past the end give zeros.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
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
    fn arr<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        a.iter_mut().for_each(|b| *b = self.u8());
        a
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    /// A source address: one of the wire's, a neighbour, or any.
    fn addr(&mut self, usual: SocketAddr) -> SocketAddr {
        match self.u8() % 8 {
            0..=2 => usual,
            3 => PAIRS[usize::from(self.u8() % 3)].1,
            4 => SocketAddr::new(usual.ip(), usual.port().wrapping_add(7)),
            5 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, self.u8())), self.u16()),
            6 => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(self.u32())), self.u16()),
            _ => {
                let hi = u128::from(self.u32()) << 96 | u128::from(self.u32());
                SocketAddr::new(IpAddr::V6(Ipv6Addr::from(hi)), self.u16())
            }
        }
    }
}

/// What one endpoint reported, checked as it arrives.
#[derive(Default)]
struct Reports {
    connected: BTreeSet<ConnectionId>,
    ended: BTreeSet<ConnectionId>,
    /// Outcomes per message.
    sent: BTreeMap<(ConnectionId, MessageId), u8>,
    /// Connections the application may name.
    known: Vec<ConnectionId>,
}

impl Reports {
    fn event(&mut self, who: &str, e: Event) {
        match e {
            Event::Connected { conn } => {
                assert!(!self.ended.contains(&conn), "{who}: Connected({conn}) after its end");
                assert!(self.connected.insert(conn), "{who}: Connected({conn}) twice");
                self.known.push(conn);
            }
            Event::ConnectFailed { conn, .. } => {
                assert!(!self.connected.contains(&conn), "{who}: ConnectFailed({conn}) after Connected");
                assert!(self.ended.insert(conn), "{who}: {conn} ended twice");
            }
            Event::Disconnected { conn, .. } => {
                assert!(self.ended.insert(conn), "{who}: {conn} ended twice");
            }
            Event::Message { conn, payload, .. } => {
                assert!(!self.ended.contains(&conn), "{who}: a message on {conn} after its end");
                assert!(payload.len() <= MAX_MESSAGE, "{who}: a message over max_message_size");
            }
            Event::Delivered { conn, id } | Event::Lost { conn, id, .. } => {
                let n = self.sent.get_mut(&(conn, id)).unwrap_or_else(|| panic!("{who}: outcome of unsent {id:?}"));
                *n += 1;
                assert_eq!(*n, 1, "{who}: a second outcome for {conn} {id:?}");
            }
            _ => {}
        }
    }
}

struct Harness {
    server: Endpoint,
    client: Endpoint,
    now: Instant,
    snap: &'static Snapshot,
    /// Datagrams on the wire: (to the server?, source, bytes).
    wire: Vec<(bool, SocketAddr, Vec<u8>)>,
    s: Reports,
    c: Reports,
    /// Next packet number of forged packets, each way (above the real
    /// peers' few, so both kinds meet in the replay window).
    pn_to_server: u64,
    pn_to_client: u64,
    /// Operations that cost an ECDH or a key generation left.
    crypto_left: u32,
    /// Bytes the server received from and sent to each address.
    from: BTreeMap<SocketAddr, u64>,
    to: BTreeMap<SocketAddr, u64>,
    buf: [u8; MAX_DATAGRAM],
}

/// Runs one input: the first byte picks the server's cookie policy.
pub fn endpoint_v2(data: &[u8]) {
    let Some((&sel, ops)) = data.split_first() else {
        return;
    };
    let snap = snapshot(sel);
    let mut h = Harness {
        server: snap.server.clone(),
        client: snap.client.clone(),
        now: snap.now,
        snap,
        wire: Vec::new(),
        s: Reports { known: vec![snap.s_conn], connected: [snap.s_conn].into(), ..Reports::default() },
        c: Reports { known: vec![snap.c_conn], connected: [snap.c_conn].into(), ..Reports::default() },
        pn_to_server: 200,
        pn_to_client: 200,
        crypto_left: 3,
        from: BTreeMap::new(),
        to: BTreeMap::new(),
        buf: [0u8; MAX_DATAGRAM],
    };
    let mut inp = Input(ops);
    for _ in 0..MAX_OPS {
        if inp.0.is_empty() {
            break;
        }
        h.op(&mut inp);
        h.collect();
    }
    h.finish();
}

impl Harness {
    fn deliver_to_server(&mut self, from: SocketAddr, d: &mut [u8]) {
        *self.from.entry(from).or_default() += d.len() as u64;
        self.server.handle_datagram(self.now, from, d);
    }

    fn op(&mut self, inp: &mut Input<'_>) {
        let (s_peer, c_peer) = (PAIRS[0].1, PAIRS[0].0);
        match inp.u8() % 16 {
            0 => {
                let from = inp.addr(s_peer);
                let n = usize::from(inp.u16() % 1500);
                let mut d = inp.bytes(n).to_vec();
                self.deliver_to_server(from, &mut d);
            }
            1 => {
                let from = inp.addr(c_peer);
                let n = usize::from(inp.u16() % 1500);
                let mut d = inp.bytes(n).to_vec();
                self.client.handle_datagram(self.now, from, &mut d);
            }
            2 | 3 => {
                // A short packet to the server: the live connection's id,
                // another one, or a corrupted one; from its address or another.
                let from = inp.addr(s_peer);
                let cid = match inp.u8() % 4 {
                    0 => inp.arr(),
                    1 => {
                        let mut c = self.snap.server_cid;
                        c[usize::from(inp.u8()) % CID_LEN] ^= 1 << (inp.u8() % 8);
                        c
                    }
                    _ => self.snap.server_cid,
                };
                let mut d = self.forged(inp, Some(cid), true);
                self.deliver_to_server(from, &mut d);
            }
            4 => {
                let from = inp.addr(c_peer);
                let mut d = self.forged(inp, None, false);
                self.client.handle_datagram(self.now, from, &mut d);
            }
            5 if self.crypto_left > 0 => {
                // A valid HELLO2, maybe with a byte changed (and the CRC
                // made right again or not).
                self.crypto_left -= 1;
                let usual = PAIRS[usize::from(inp.u8() % 3)].1;
                let from = inp.addr(usual);
                let mut d = self.snap.hellos[usize::from(inp.u8()) % HELLOS].to_vec();
                let m = inp.u8();
                if m & 3 != 0 {
                    let i = usize::from(inp.u16()) % HELLO2_LEN;
                    d[i] ^= inp.u8().max(1);
                    if m & 3 == 1 {
                        let crc = crc32(&d[..HELLO2_LEN - 4]);
                        d[HELLO2_LEN - 4..].copy_from_slice(&crc.to_be_bytes());
                    }
                }
                let again = d.clone();
                self.deliver_to_server(from, &mut d);
                if m & 4 != 0 {
                    // Resent byte for byte.
                    self.deliver_to_server(from, &mut again.clone());
                }
            }
            6 if self.crypto_left > 0 => {
                self.crypto_left -= 1;
                let b = inp.u8();
                let to = match b % 5 {
                    0..=2 => PAIRS[usize::from(b % 3)].0,
                    3 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)), 1),
                    _ => PAIRS[0].1,
                };
                let v = if b & 0x80 == 0 { ProtocolVersion::V2 } else { ProtocolVersion::V1 };
                let key = if b & 0x40 == 0 { self.snap.pinned.clone() } else { self.snap.other_key.clone() };
                if let Ok(c) = self.client.connect_with(self.now, to, key, v) {
                    self.c.known.push(c);
                }
            }
            5 | 6 => {}
            7..=9 => self.pump(inp),
            10 => {
                let ms = u64::from(inp.u16());
                self.now += Duration::from_millis(ms);
                self.timers();
            }
            11 => {
                // The next timer of either endpoint.
                let t = [self.server.poll_timeout(), self.client.poll_timeout()].into_iter().flatten().min();
                if let Some(t) = t {
                    self.now = self.now.max(t);
                }
                self.timers();
            }
            12 => {
                let n = match inp.u8() % 4 {
                    0 => usize::from(inp.u8()),
                    1 => usize::from(inp.u16()) % (MAX_MESSAGE + 2),
                    2 => MAX_MESSAGE,
                    _ => 1100 + usize::from(inp.u8()),
                };
                let delivery =
                    [Delivery::Unreliable, Delivery::BestEffort, Delivery::Reliable][usize::from(inp.u8() % 3)];
                let to_server = inp.u8() & 1 == 0;
                let (ep, r) = if to_server { (&mut self.client, &mut self.c) } else { (&mut self.server, &mut self.s) };
                let conn = r.known[usize::from(inp.u8()) % r.known.len()];
                if let Ok(id) = ep.send(conn, &vec![0xA5; n], delivery) {
                    assert!(r.sent.insert((conn, id), 0).is_none(), "{id:?} issued twice on {conn}");
                }
            }
            13 => {
                let b = inp.u8();
                let (ep, r) = if b & 1 == 0 { (&mut self.client, &self.c) } else { (&mut self.server, &self.s) };
                let conn = r.known[usize::from(inp.u8()) % r.known.len()];
                if b & 2 == 0 {
                    let _ = ep.disconnect(self.now, conn);
                } else {
                    let _ = ep.ban(self.now, conn);
                }
            }
            14 => {
                // A stateless reset to the client: the real token or another.
                let b = inp.u8();
                let token = if b & 1 == 0 { self.snap.token } else { inp.arr() };
                let mut out = [0u8; 64];
                let mut rng = Rng::new(Seed::from_u64(u64::from(b)));
                if let Some(n) = emit_reset(usize::from(inp.u8() % 64), &token, &mut rng, &mut out) {
                    let from = inp.addr(c_peer);
                    self.client.handle_datagram(self.now, from, &mut out[..n]);
                }
            }
            _ => {
                let b = inp.u8();
                if b & 1 == 0 {
                    let a = inp.addr(s_peer);
                    let net = IpNet::new(a.ip(), inp.u8()).unwrap_or(IpNet::host(a.ip()));
                    if b & 2 == 0 {
                        self.server.block(net);
                    } else {
                        self.server.unblock(net);
                    }
                } else if let Some(i) = (!self.wire.is_empty()).then(|| usize::from(inp.u8()) % self.wire.len()) {
                    // A datagram on the wire, reflected to the endpoint
                    // that sent it, from any address.
                    let (to_server, _, mut d) = self.wire[i].clone();
                    let from = inp.addr(PAIRS[0].1);
                    if to_server {
                        self.client.handle_datagram(self.now, from, &mut d);
                    } else {
                        self.deliver_to_server(from, &mut d);
                    }
                }
            }
        }
    }

    /// A short packet with the identity tag: the input's header choices,
    /// then raw bytes or well-formed frames.
    fn forged(&mut self, inp: &mut Input<'_>, dcid: Option<[u8; CID_LEN]>, to_server: bool) -> Vec<u8> {
        let flags = inp.u8();
        let next = if to_server { &mut self.pn_to_server } else { &mut self.pn_to_client };
        let pn = match flags >> 6 {
            0 | 1 => {
                *next += 1 + u64::from(flags & 3);
                *next
            }
            2 => next.saturating_sub(u64::from(inp.u16())),
            _ => u64::from(inp.u32()),
        };
        let pn_len = ((flags >> 2) & 3) + 1;
        let h = ShortHeader { key_phase: flags & 0x10 != 0, dcid, pn_len, truncated_pn: pn_truncate(pn, pn_len) };
        let mut d = vec![0u8; 1400];
        let Ok(hl) = h.emit(&mut d) else { return Vec::new() };
        let body = if flags & 0x20 == 0 {
            let mut w = Writer::new(&mut d[hl..1400 - TAG_LEN]);
            for _ in 0..inp.u8() % 6 + 1 {
                if !frame(inp, &mut w) {
                    break;
                }
            }
            w.len()
        } else {
            let n = usize::from(inp.u16()) % 1200;
            let raw = inp.bytes(n);
            d[hl..hl + raw.len()].copy_from_slice(raw);
            raw.len()
        };
        d.truncate(hl + body.max(1));
        d.extend_from_slice(&FUZZING_TAG);
        d
    }

    /// Delivers what waits on the wire, each datagram delivered, dropped,
    /// duplicated or changed as the input says, then collects the answers;
    /// for up to 8 rounds.
    fn pump(&mut self, inp: &mut Input<'_>) {
        for _ in 0..inp.u8() % 8 + 1 {
            let batch = std::mem::take(&mut self.wire);
            if batch.is_empty() {
                return;
            }
            for (to_server, from, mut d) in batch {
                let a = inp.u8();
                let times = match a % 8 {
                    5 => 0,
                    6 => 2,
                    7 => {
                        let i = usize::from(a >> 3) * 41 % d.len().max(1);
                        if let Some(b) = d.get_mut(i) {
                            *b ^= inp.u8().max(1);
                        }
                        1
                    }
                    _ => 1,
                };
                for _ in 0..times {
                    let mut copy = d.clone();
                    if to_server {
                        self.deliver_to_server(from, &mut copy);
                    } else {
                        self.client.handle_datagram(self.now, from, &mut copy);
                    }
                }
            }
            self.collect();
        }
    }

    /// Runs the timers due now, as a driver does, and checks they settle.
    fn timers(&mut self) {
        for _ in 0..8 {
            self.server.handle_timeout(self.now);
            self.client.handle_timeout(self.now);
            self.collect();
            let due = [self.server.poll_timeout(), self.client.poll_timeout()].into_iter().flatten().min();
            if due.is_none_or(|t| t > self.now) {
                return;
            }
        }
        panic!(
            "a timer still due at {:?} after 8 rounds of handle_timeout({:?}): server {:?}, client {:?}",
            self.now,
            self.now,
            self.server.poll_timeout(),
            self.client.poll_timeout()
        );
    }

    /// Moves both endpoints' output onto the wire, drains their events, and
    /// checks what holds after any operation.
    fn collect(&mut self) {
        let now = self.now;
        for to_client in [true, false] {
            let max = self.server.config().sizes().max_datagram;
            let mut n = 0;
            loop {
                let ep = if to_client { &mut self.server } else { &mut self.client };
                let Some(t) = ep.poll_transmit(now, &mut self.buf) else { break };
                n += 1;
                assert!(n < 10_000, "poll_transmit does not run dry");
                assert!(t.len <= max, "oversize datagram: {}", t.len);
                let d = self.buf[..t.len].to_vec();
                if to_client {
                    if d.first().is_some_and(|&b| b >= 0x80)
                        && let Some(c) = self.server.connection_by_addr(t.destination)
                    {
                        // §2.2: never to a live (established) MPGS/1 connection's address.
                        let v1 = self.server.connection(c).is_some_and(|c| {
                            c.version() == ProtocolVersion::V1 && c.state() == ConnectionState::Connected
                        });
                        assert!(!v1, "MPGS/2 datagram to the address of a live MPGS/1 connection");
                    }
                    *self.to.entry(t.destination).or_default() += t.len as u64;
                    if route(t.destination).is_none() {
                        let got = self.from.get(&t.destination).copied().unwrap_or(0);
                        let sent = self.to[&t.destination];
                        assert!(sent <= 3 * got, "{sent} bytes to {} that sent {got}", t.destination);
                    }
                }
                if let Some((from, to_server)) = route(t.destination)
                    && to_server != to_client
                {
                    if self.wire.len() == WIRE_CAP {
                        self.wire.remove(0);
                    }
                    self.wire.push((to_server, from, d));
                }
            }
        }
        while let Some(e) = self.server.poll_event() {
            self.s.event("server", e);
        }
        while let Some(e) = self.client.poll_event() {
            self.c.event("client", e);
        }
        for ep in [&self.server, &self.client] {
            let c = ep.config();
            // MPGS/1 and MPGS/2 pending entries are capped separately (§2.8).
            assert!(ep.pending_handshakes() <= 2 * c.max_pending_handshakes, "pending handshakes over the cap");
            assert!(ep.reassembly_bytes() <= c.max_reassembly_bytes_total);
        }
        assert!(self.server.connection_count() <= self.server.config().max_connections, "over max_connections");
    }

    /// Lets every timer run out with nothing delivered: everything ends.
    fn finish(mut self) {
        self.wire.clear();
        for _ in 0..16 {
            self.now += Duration::from_secs(20);
            self.timers();
            self.wire.clear();
        }
        for (who, ep, r) in [("server", &self.server, &self.s), ("client", &self.client, &self.c)] {
            assert_eq!(ep.pending_handshakes(), 0, "{who}: every pending handshake expires");
            assert_eq!(ep.reassembly_bytes(), 0, "{who}: every reassembly expires");
            assert_eq!(ep.connection_count(), 0, "{who}: every connection ends");
            for c in &r.connected {
                assert!(r.ended.contains(c), "{who}: {c} was Connected but never Disconnected");
            }
            for ((c, id), n) in &r.sent {
                assert_eq!(*n, 1, "{who}: {c} {id:?} had {n} outcomes");
            }
        }
    }
}

/// One well-formed frame chosen by the input; `false` when it does not fit.
fn frame(inp: &mut Input<'_>, w: &mut Writer<'_>) -> bool {
    const FILL: [u8; 1200] = [0x5A; 1200];
    let reason = [b'x'; 64];
    let f = match inp.u8() % 12 {
        0 => Frame::Ping,
        1 => Frame::Padding { len: usize::from(inp.u8() % 32) + 1 },
        2 => {
            let largest = u64::from(inp.u16());
            let first = u64::from(inp.u8()).min(largest);
            Frame::Ack(AckFrame { largest, ack_delay: 1, first_range: first, range_count: 0, ranges_raw: &[] })
        }
        3 => Frame::Close { code: inp.u16(), reason: &reason[..usize::from(inp.u8() % 65)] },
        4 => Frame::KeyUpdate,
        5 => Frame::PathChallenge(inp.arr()),
        6 => Frame::PathResponse(inp.arr()),
        7 => Frame::ResetToken(inp.arr()),
        8 => Frame::Auth(inp.arr()),
        9 | 10 => {
            let (kind, channel, id) = head(inp);
            let len = usize::from(inp.u16()) % 1200;
            let data = &FILL[..len.min(w.remaining().saturating_sub(8))];
            Frame::Message { kind, channel, id: (kind != ChannelKind::Unreliable).then_some(id), data }
        }
        _ => {
            let (kind, channel, id) = head(inp);
            let total_len = u64::from(inp.u32() % (MAX_MESSAGE as u32 + 4096)).max(1);
            let offset = u64::from(inp.u32()) % total_len;
            let len = (u64::from(inp.u16()) % 1200).clamp(1, total_len - offset);
            let room = w.remaining().saturating_sub(24) as u64;
            let len = len.min(room).max(1) as usize;
            Frame::Fragment { kind, channel, id, total_len, offset, data: &FILL[..len] }
        }
    };
    f.emit(w).is_ok()
}

/// Kind, channel and id of a MESSAGE or FRAGMENT: mostly small values.
fn head(inp: &mut Input<'_>) -> (ChannelKind, u8, u16) {
    let b = inp.u8();
    let kind = ChannelKind::from_code(b & 3).expect("two bits");
    let channel = if b & 0x80 == 0 { (b >> 2) & 3 } else { (b >> 2) & 63 };
    let id = if b & 0x40 == 0 { u16::from(inp.u8() % 8) } else { inp.u16() };
    (kind, channel, id)
}
