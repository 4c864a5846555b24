//! Integration tests of the core through its public API (one binary).
//!
//! For now the endpoints are wired by hand through a `VecDeque`; these tests
//! move onto `mpgameserver-sim` once it exists.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use mpgameserver::crypto::{SPKI_P256_PREFIX, crc32};
use mpgameserver::{
    ConnectionState, Delivery, DropReason, Duration, Endpoint, EndpointConfig, Event, Instant, KeyError, MAX_DATAGRAM,
    MessageId, PublicKey, Rng, Seed, ServerKey,
};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

const SERVER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)), 4000);
const CLIENT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)), 5000);

fn server_key(seed: u64) -> ServerKey {
    ServerKey::generate(&mut Rng::new(Seed::from_u64(seed)))
}

// ---------------------------------------------------------------------------
// Hostile input: arbitrary datagrams are dropped and counted, nothing else.
// ---------------------------------------------------------------------------

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
fn framed(g: &mut Gen) -> Vec<u8> {
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
    let mut client = Endpoint::client(EndpointConfig::default(), Seed::from_u64(3)).map_err(|e| e.to_string())?;
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
                // Only the client's own CLIENT_HELLO retransmissions may go out.
                let hello = !ep.is_server() && t.destination == SERVER && d.starts_with(b"FSOS") && d[12] == 1;
                if !hello {
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
    let mut client = Endpoint::client(EndpointConfig::default(), Seed::from_u64(3)).unwrap();
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

// ---------------------------------------------------------------------------
// Determinism: same seed, same bytes on the wire.
// ---------------------------------------------------------------------------

/// What a lossy exchange produced.
struct Run {
    /// Every datagram put on the wire, dropped or not: (from, to, bytes).
    log: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    dropped: usize,
    echoes: Vec<Vec<u8>>,
    /// Outcome events per message id of the client: (delivered, lost).
    outcomes: BTreeMap<MessageId, (u32, u32)>,
}

/// A client sends a few messages of several sizes and modes through a
/// `VecDeque` network with 10 ms latency and a seeded 10 % loss; the
/// server echoes them. Everything derives from `seed`.
fn lossy_exchange(seed: u64) -> Run {
    let key = server_key(seed);
    let pinned = key.public_key();
    let mut server = Endpoint::server(EndpointConfig::default(), key, Seed::from_u64(seed ^ 0x5e)).unwrap();
    let mut client = Endpoint::client(EndpointConfig::default(), Seed::from_u64(seed ^ 0xc1)).unwrap();
    let mut loss = Rng::new(Seed::from_u64(seed ^ 0x10));
    let mut net: VecDeque<(Instant, SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new();
    let mut run = Run { log: Vec::new(), dropped: 0, echoes: Vec::new(), outcomes: BTreeMap::new() };
    let mut now = Instant::ZERO;
    let conn = client.connect(now, SERVER, pinned).unwrap();
    for (i, size) in [0usize, 1, 500, 1433, 5000].into_iter().enumerate() {
        let mode = [Delivery::Reliable, Delivery::Unreliable, Delivery::BestEffort][i % 3];
        let id = client.send(conn, &vec![i as u8; size], mode).unwrap();
        run.outcomes.insert(id, (0, 0));
    }
    let mut buf = [0u8; MAX_DATAGRAM];
    while now < Instant::from_secs(4) {
        while net.front().is_some_and(|d| d.0 <= now) {
            let (_, from, to, mut bytes) = net.pop_front().unwrap();
            let ep = if to == SERVER { &mut server } else { &mut client };
            ep.handle_datagram(now, from, &mut bytes);
        }
        server.handle_timeout(now);
        client.handle_timeout(now);
        while let Some(ev) = server.poll_event() {
            if let Event::Message { conn, payload } = ev {
                server.send(conn, &payload, Delivery::Reliable).unwrap();
            }
        }
        while let Some(ev) = client.poll_event() {
            match ev {
                Event::Message { payload, .. } => run.echoes.push(payload),
                Event::Delivered { id, .. } => run.outcomes.entry(id).or_default().0 += 1,
                Event::Lost { id, .. } => run.outcomes.entry(id).or_default().1 += 1,
                _ => {}
            }
        }
        for (from, ep) in [(CLIENT, &mut client), (SERVER, &mut server)] {
            while let Some(t) = ep.poll_transmit(now, &mut buf) {
                let bytes = buf[..t.len].to_vec();
                run.log.push((from, t.destination, bytes.clone()));
                if loss.u32() < u32::MAX / 10 {
                    run.dropped += 1;
                } else {
                    net.push_back((now + Duration::from_millis(10), from, t.destination, bytes));
                }
            }
        }
        now += Duration::from_millis(1);
    }
    run
}

#[test]
fn same_seed_same_datagrams_different_seed_different_datagrams() {
    let a = lossy_exchange(7);
    let b = lossy_exchange(7);
    let c = lossy_exchange(8);
    assert!(a.dropped > 0, "the network dropped nothing; the test would prove little");
    assert_eq!(a.log.len(), b.log.len());
    for (k, (x, y)) in a.log.iter().zip(&b.log).enumerate() {
        assert_eq!(x, y, "datagram #{k} differs between two runs with the same seed");
    }
    assert_ne!(a.log, c.log, "a different seed gave the same datagrams");
    // The exchange did its job: every Reliable message (sizes 0 and 1433)
    // came back, and each message got exactly one Delivered or Lost.
    for run in [&a, &c] {
        assert!(run.echoes.contains(&Vec::new()) && run.echoes.contains(&vec![3u8; 1433]));
        for (id, (delivered, lost)) in &run.outcomes {
            assert_eq!(delivered + lost, 1, "message {id:?}: {delivered} Delivered, {lost} Lost");
        }
    }
}

// ---------------------------------------------------------------------------
// Key files.
// ---------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mpgameserver-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn key_files_round_trip_and_a_swapped_file_says_what_to_do() {
    let dir = TempDir::new("keys");
    let (key_path, pub_path) = (dir.0.join("root.key"), dir.0.join("root.pub"));
    let key = server_key(42);
    key.write_pem_file(&key_path).unwrap();
    key.public_key().write_pem_file(&pub_path).unwrap();

    let text = std::fs::read_to_string(&key_path).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
    let text = std::fs::read_to_string(&pub_path).unwrap();
    assert!(text.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key file must be private");
    }

    let loaded = ServerKey::read_pem_file(&key_path).unwrap();
    assert_eq!(*loaded.to_pkcs8_der(), *key.to_pkcs8_der());
    assert_eq!(PublicKey::read_pem_file(&pub_path).unwrap(), key.public_key());

    // The public key where the private key is expected: the message says which file goes where.
    let err = ServerKey::read_pem_file(&pub_path).map(|_| ()).unwrap_err();
    assert!(matches!(err, KeyError::WrongPemLabel { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("public key") && msg.contains("pass the .key file to the server"), "{msg}");
    // And the other way round.
    let msg = PublicKey::read_pem_file(&key_path).unwrap_err().to_string();
    assert!(msg.contains("pass the .pub file to the client"), "{msg}");
    // A missing file names the path.
    let missing = dir.0.join("missing.key");
    let err = ServerKey::read_pem_file(&missing).map(|_| ()).unwrap_err();
    assert!(matches!(err, KeyError::Io { .. }) && err.to_string().contains("missing.key"), "{err}");
}
