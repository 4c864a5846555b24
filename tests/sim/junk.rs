//! Hostile input fed straight to endpoints: arbitrary datagrams are dropped
//! and counted, nothing else happens. (No network here: the property checks
//! the endpoint's counters after every single datagram. The generator is
//! also used by the adversarial tests over the simulator.)

use std::net::SocketAddr;

use mpgameserver::_internal::{SPKI_P256_PREFIX, crc32};
use mpgameserver::{ConnectionState, DropReason, Duration, Endpoint, EndpointConfig, Instant, MAX_DATAGRAM, Seed};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

use crate::server_key;

const SERVER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)), 4000);
const CLIENT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)), 5000);

/// One datagram from the network, and how far time moves before it arrives.
#[derive(Clone, Debug)]
struct Junk {
    /// `None`: from the endpoint's peer (the client's address at the server,
    /// the server's at the client), so the datagram reaches the connection.
    from: Option<SocketAddr>,
    bytes: Vec<u8>,
    advance_us: u16,
}

fn random_bytes(g: &mut Gen, n: usize) -> Vec<u8> {
    (0..n).map(|_| u8::arbitrary(g)).collect()
}

/// Tagged byte-string prefix of the handshake bodies (PROTOCOL.md §11).
fn tagged_len(out: &mut Vec<u8>, len: u8) {
    out.extend([0, 14, 0, 3, len]);
}

/// A message body shaped like a CLIENT_HELLO or SERVER_HELLO (§10.2,
/// §10.3) with random key points, blob and signature: it gets through the
/// framing into the handshake parsers. A server hello carries the pinned
/// root key, so it reaches the signature check (and fails it).
fn hello_like(g: &mut Gen, server: bool) -> Vec<u8> {
    let mut d = vec![0, if server { 0x83 } else { 0x82 }];
    tagged_len(&mut d, 91);
    if server {
        d.extend(server_key(1).public_key().to_spki_der());
        tagged_len(&mut d, 123);
        tagged_len(&mut d, 91);
        d.extend(SPKI_P256_PREFIX);
        d.push(4);
        d.extend(random_bytes(g, 64)); // ephemeral key
        tagged_len(&mut d, 16);
        d.extend(random_bytes(g, 16)); // salt
        d.extend([0, 5]);
        d.extend(random_bytes(g, 4)); // token
        tagged_len(&mut d, 71);
        d.extend(random_bytes(g, 71));
    } else {
        d.extend(SPKI_P256_PREFIX);
        d.push(4);
        d.extend(random_bytes(g, 64)); // (X, Y) is almost surely not on the curve
        d.extend([0, 3, 1]);
        let pad = *g.choose(&[0, 1310, 1311, 1312]).unwrap_or(&0);
        d.extend(random_bytes(g, pad));
    }
    d
}

/// A valid 20-byte header (a valid type, usually the magic of its
/// direction and a consistent length and count) followed by a random or
/// hello-shaped payload and, usually, a correct CRC.
pub fn framed(g: &mut Gen) -> Vec<u8> {
    let ty = *g.choose(&[0u8, 1, 1, 1, 2, 2, 2, 3, 4, 5, 6, 7]).unwrap_or(&1);
    let to_server = match ty {
        1 | 3 => u8::arbitrary(g) % 8 != 0,
        2 => u8::arbitrary(g) % 8 == 0,
        _ => bool::arbitrary(g),
    };
    let mut payload = match ty {
        1 | 2 if u8::arbitrary(g) % 4 != 0 => hello_like(g, ty == 2),
        _ => Vec::<u8>::arbitrary(g),
    };
    payload.splice(0..0, u16::arbitrary(g).to_be_bytes()); // msgseq, or a record length
    payload.truncate(1500);
    let length = if u8::arbitrary(g) % 8 == 0 { u16::arbitrary(g) } else { payload.len() as u16 };
    let any = u8::arbitrary(g);
    let count = *g.choose(&[1, 1, 1, 0, 2, 3, any]).unwrap_or(&1);
    let mut d = if to_server { b"FSOS".to_vec() } else { b"FSOC".to_vec() };
    d.extend(u32::arbitrary(g).to_be_bytes()); // ctime
    d.extend(u16::arbitrary(g).to_be_bytes()); // seq
    d.extend(u16::arbitrary(g).to_be_bytes()); // ack
    d.push(ty);
    d.extend(length.to_be_bytes());
    d.push(count);
    d.extend(u32::arbitrary(g).to_be_bytes()); // ack_bits
    d.extend(&payload);
    if u8::arbitrary(g) % 8 != 0 {
        let crc = crc32(&d);
        d.extend(crc.to_be_bytes());
    } else {
        d.extend(random_bytes(g, 16));
    }
    d
}

impl Arbitrary for Junk {
    fn arbitrary(g: &mut Gen) -> Junk {
        let from = if bool::arbitrary(g) { None } else { Some(SocketAddr::arbitrary(g)) };
        let bytes = if bool::arbitrary(g) { Vec::arbitrary(g) } else { framed(g) };
        Junk { from, bytes, advance_us: u16::arbitrary(g) % 10_000 }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Junk>> {
        let (from, advance_us) = (self.from, self.advance_us);
        Box::new(self.bytes.shrink().map(move |bytes| Junk { from, bytes, advance_us }))
    }
}

/// Feeds `junk` to a server endpoint and to a client endpoint that is
/// connecting to `SERVER`. Returns what went wrong, if anything.
fn feed_junk(junk: &[Junk]) -> Result<(), String> {
    let mut server =
        Endpoint::server(EndpointConfig::default(), server_key(1), Seed::from_u64(2)).map_err(|e| e.to_string())?;
    // The client is an MPGS/1 one: the junk is shaped for MPGS/1's hellos.
    let mut client =
        Endpoint::client(crate::v1(EndpointConfig::default()), Seed::from_u64(3)).map_err(|e| e.to_string())?;
    let mut now = Instant::ZERO;
    let conn = client.connect(now, SERVER, server_key(1).public_key()).map_err(|e| e.to_string())?;
    let mut buf = [0u8; MAX_DATAGRAM];
    for (n, j) in junk.iter().enumerate() {
        now += Duration::from_micros(u64::from(j.advance_us)); // ≤ 1 s in all: below every timeout
        for (ep, name, peer) in [(&mut server, "server", CLIENT), (&mut client, "client", SERVER)] {
            let mut bytes = j.bytes.clone();
            ep.handle_datagram(now, j.from.unwrap_or(peer), &mut bytes);
            ep.handle_timeout(now);
            while let Some(t) = ep.poll_transmit(now, &mut buf) {
                let d = &buf[..t.len];
                // Only the client's own CLIENT_HELLO retransmissions may go
                // out, and a server's stateless reset answering an MPGS/2
                // short header of an unknown connection: smaller than it,
                // short-header form (MPGS2.md §6.4).
                let hello = !ep.is_server() && t.destination == SERVER && d.starts_with(b"FSOS") && d[12] == 1;
                let reset = ep.is_server()
                    && j.bytes[0] & 0xC0 == 0x80
                    && t.len < j.bytes.len()
                    && d[0] & 0xC0 == 0x80
                    && ep.stats().v2_resets_sent > 0;
                if !hello && !reset {
                    return Err(format!("{name} transmitted {} bytes to {} after junk #{n}", t.len, t.destination));
                }
            }
            if let Some(e) = ep.poll_event() {
                return Err(format!("{name} produced {e:?} after junk #{n}"));
            }
            let stats = ep.stats();
            if stats.datagrams_received != n as u64 + 1 || stats.dropped_total() != n as u64 + 1 {
                return Err(format!("{name} after {} datagrams: {stats}", n + 1));
            }
        }
    }
    match client.connection(conn).map(|c| c.state()) {
        Some(ConnectionState::Connecting) => Ok(()),
        s => Err(format!("client connection is {s:?}, not Connecting")),
    }
}

#[test]
fn arbitrary_datagrams_are_dropped_and_counted() {
    fn prop(junk: Vec<Junk>) -> TestResult {
        match feed_junk(&junk) {
            Ok(()) => TestResult::passed(),
            Err(e) => TestResult::error(e),
        }
    }
    QuickCheck::new().tests(150).quickcheck(prop as fn(Vec<Junk>) -> TestResult);
}

#[test]
fn the_junk_generator_reaches_past_the_header() {
    // A check of the generator, not of the endpoint: framed datagrams get
    // past the header checks to the CRC, and at a client through the
    // hello parser to the signature check.
    let mut g = Gen::new(100);
    let mut server = Endpoint::server(EndpointConfig::default(), server_key(1), Seed::from_u64(2)).unwrap();
    let mut client = Endpoint::client(crate::v1(EndpointConfig::default()), Seed::from_u64(3)).unwrap();
    client.connect(Instant::ZERO, SERVER, server_key(1).public_key()).unwrap();
    for _ in 0..500 {
        let bytes = framed(&mut g);
        server.handle_datagram(Instant::ZERO, CLIENT, &mut bytes.clone());
        client.handle_datagram(Instant::ZERO, SERVER, &mut bytes.clone());
    }
    let (s, c) = (server.stats(), client.stats());
    assert!(s.dropped(DropReason::BadCrc) > 0 && s.dropped(DropReason::UnknownPeer) > 0, "{s}");
    assert!(c.dropped(DropReason::AuthFailed) > 0, "no forged SERVER_HELLO reached the signature check: {c}");
    assert_eq!((s.dropped_total(), c.dropped_total()), (500, 500));
}
