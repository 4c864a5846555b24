//! The MPGS/2 handshake as pure functions over bytes (MPGS2.md §2.1–§2.9,
//! stage 1): the client's HELLO2 and its cookie variant, the server's
//! answer (HELLO_RETRY, REJECT or a signed SERVER_HELLO with its keys), and
//! the client's check of SERVER_HELLO (echo, choices, identity, transcript
//! signature) that yields its keys.
//!
//! The endpoint keeps the rest of §2.8 around these calls (block list,
//! pending entries and byte-identical resends, per-source buckets, the ECDH
//! budget, rate limits); everything here is deterministic given the
//! [`Rng`].

use core::net::SocketAddr;

use super::cookie::CookieKeys;
use super::hello::{
    HELLO2_LEN, Hello2, HelloRetry, Reject, RejectReason, SERVER_HELLO_LEN, ServerHello, emit_hello2,
    finish_server_hello, hello2_message_data,
};
use super::keys::{
    Ephemeral, HASH_LEN, Schedule, Suite, root_fingerprint, sign_transcript, transcript_hash, verify_transcript,
};
use super::tlv::{HelloTlvs, Identity, ServerHelloTlvs, TransportParams};
use super::{CID_LEN, RANDOM_LEN, Side, VERSION};
use crate::{Instant, PublicKey, Rng, ServerKey};

/// Why a handshake message was not accepted. The endpoint drops and counts
/// it; none of these ends the attempt except where noted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The bytes do not parse (§2.3, §2.5).
    Malformed,
    /// `protocol_id` differs from ours: dropped silently (§2.3).
    ProtocolMismatch,
    /// The reply does not echo our `client_random` (off-path forgery or stale).
    WrongEcho,
    /// A second HELLO_RETRY in one attempt (§2.1): ignored.
    SecondRetry,
    /// The server chose a version or suite we did not offer.
    NotOffered,
    /// An identity kind this client does not implement: fails the attempt (§2.6).
    UnsupportedIdentity,
    /// The identity names no pinned root.
    UnknownRoot,
    /// The transcript signature does not verify against any hello we sent.
    BadSignature,
    /// A peer public key is not a valid P-256 point.
    BadKey,
}

impl core::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            HandshakeError::Malformed => "malformed handshake message",
            HandshakeError::ProtocolMismatch => "protocol id mismatch",
            HandshakeError::WrongEcho => "reply does not echo our client random",
            HandshakeError::SecondRetry => "second HELLO_RETRY in one attempt",
            HandshakeError::NotOffered => "server chose a version or suite we did not offer",
            HandshakeError::UnsupportedIdentity => "unsupported server identity kind",
            HandshakeError::UnknownRoot => "server identity is not a pinned root key",
            HandshakeError::BadSignature => "transcript signature does not verify",
            HandshakeError::BadKey => "invalid P-256 public key",
        })
    }
}

impl core::error::Error for HandshakeError {}

/// What a client offers.
#[derive(Clone, Debug)]
pub struct ClientOffer<'a> {
    /// The game's protocol id.
    pub protocol_id: u64,
    /// Versions accepted, in preference order.
    pub versions: &'a [u8],
    /// Suites accepted, in preference order.
    pub suites: &'a [u8],
    /// The id the server writes on packets to us (`None`: zero-length).
    pub recv_cid: Option<[u8; CID_LEN]>,
    /// Our transport parameters.
    pub params: TransportParams,
}

/// One client connection attempt (§2.1): one ephemeral key and random, at
/// most two hello variants (without and with the cookie).
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub struct ClientHandshake {
    eph: Ephemeral,
    client_random: [u8; RANDOM_LEN],
    versions: heapless::Vec<u8, 8>,
    suites: heapless::Vec<u8, 4>,
    /// The first variant (no cookie) and, after a HELLO_RETRY, the second.
    variants: [Option<[u8; HELLO2_LEN]>; 2],
    offer_protocol_id: u64,
    recv_cid: Option<[u8; CID_LEN]>,
    params: TransportParams,
}

impl core::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientHandshake").field("retried", &self.variants[1].is_some()).finish_non_exhaustive()
    }
}

/// Keys and choices of an established handshake, on either side.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub struct Established {
    /// The key schedule (secrets as local/remote for this side).
    pub schedule: Schedule,
    /// The chosen version.
    pub version: u8,
    /// The chosen suite.
    pub suite: Suite,
    /// The server's connection id.
    pub server_cid: [u8; CID_LEN],
    /// The client's connection id (`None`: zero-length).
    pub client_cid: Option<[u8; CID_LEN]>,
    /// The peer's transport parameters.
    pub peer_params: TransportParams,
    /// The transcript hash.
    pub th: [u8; HASH_LEN],
}

impl core::fmt::Debug for Established {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Established")
            .field("version", &self.version)
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

fn build_hello(eph: &Ephemeral, h: &HelloTlvs<'_>, rng: &mut Rng) -> Result<[u8; HELLO2_LEN], HandshakeError> {
    let mut out = [0u8; HELLO2_LEN];
    emit_hello2(&mut out, &eph.spki(), h, |pad| {
        rng.fill(pad);
        Ok(())
    })
    .map_err(|_| HandshakeError::Malformed)?;
    Ok(out)
}

impl ClientHandshake {
    /// A new attempt: fresh key and random from `rng`, and the first HELLO2.
    /// `Err(Malformed)` if the offer does not fit a HELLO2 (lists too long).
    pub fn new(offer: &ClientOffer<'_>, rng: &mut Rng) -> Result<ClientHandshake, HandshakeError> {
        let eph = Ephemeral::generate(rng);
        let mut client_random = [0u8; RANDOM_LEN];
        rng.fill(&mut client_random);
        let versions = heapless::Vec::from_slice(offer.versions).map_err(|_| HandshakeError::Malformed)?;
        let suites = heapless::Vec::from_slice(offer.suites).map_err(|_| HandshakeError::Malformed)?;
        let mut c = ClientHandshake {
            eph,
            client_random,
            versions,
            suites,
            variants: [None, None],
            offer_protocol_id: offer.protocol_id,
            recv_cid: offer.recv_cid,
            params: offer.params,
        };
        let first = build_hello(&c.eph, &c.tlvs(None), rng)?;
        c.variants[0] = Some(first);
        Ok(c)
    }

    fn tlvs(&self, cookie: Option<[u8; 21]>) -> HelloTlvs<'_> {
        HelloTlvs {
            protocol_id: self.offer_protocol_id,
            client_random: self.client_random,
            versions: &self.versions,
            suites: &self.suites,
            recv_cid: self.recv_cid,
            cookie,
            connect_token: None,
            params: self.params,
            extensions: &[],
        }
    }

    /// Our `client_random` (what replies must echo).
    pub fn client_random(&self) -> &[u8; RANDOM_LEN] {
        &self.client_random
    }

    /// The HELLO2 to (re)send now: the latest variant, byte-identical on
    /// every resend (§2.1).
    pub fn hello(&self) -> &[u8; HELLO2_LEN] {
        // Invariant: `new` always builds variant 0.
        self.variants[1].as_ref().or(self.variants[0].as_ref()).expect("variant 0 exists")
    }

    /// Follows a HELLO_RETRY: builds the cookie variant (same key and
    /// random). At most one per attempt.
    pub fn on_retry(&mut self, datagram: &[u8], rng: &mut Rng) -> Result<(), HandshakeError> {
        let r = HelloRetry::parse(datagram).map_err(|_| HandshakeError::Malformed)?;
        if r.client_random != self.client_random {
            return Err(HandshakeError::WrongEcho);
        }
        if self.variants[1].is_some() {
            return Err(HandshakeError::SecondRetry);
        }
        let second = build_hello(&self.eph, &self.tlvs(Some(r.cookie)), rng)?;
        self.variants[1] = Some(second);
        Ok(())
    }

    /// Reads a REJECT for this attempt: `Ok(reason)` ends the attempt.
    pub fn on_reject(&self, datagram: &[u8]) -> Result<RejectReason, HandshakeError> {
        let r = Reject::parse(datagram).map_err(|_| HandshakeError::Malformed)?;
        if r.client_random != self.client_random {
            return Err(HandshakeError::WrongEcho);
        }
        Ok(r.reason)
    }

    /// Checks a SERVER_HELLO against the hellos we sent and the pinned
    /// roots; on success derives the keys (§2.5–§2.7).
    pub fn on_server_hello(&self, datagram: &[u8], pinned: &[PublicKey]) -> Result<Established, HandshakeError> {
        let sh = ServerHello::parse(datagram).map_err(|_| HandshakeError::Malformed)?;
        if sh.client_random != self.client_random {
            return Err(HandshakeError::WrongEcho);
        }
        if sh.version != VERSION || !self.versions.contains(&sh.version) || !self.suites.contains(&sh.suite) {
            return Err(HandshakeError::NotOffered);
        }
        let suite = Suite::from_code(sh.suite).ok_or(HandshakeError::NotOffered)?;
        let Identity::Root { fingerprint } = sh.tlvs.identity else {
            return Err(HandshakeError::UnsupportedIdentity);
        };
        let root = pinned.iter().find(|k| root_fingerprint(k) == fingerprint).ok_or(HandshakeError::UnknownRoot)?;
        let signed = ServerHello::signed_part(datagram).map_err(|_| HandshakeError::Malformed)?;
        // The TH of whichever variant the server answered.
        let th = self
            .variants
            .iter()
            .flatten()
            .map(|v| transcript_hash(&v[22..HELLO2_LEN - 4], signed))
            .find(|th| verify_transcript(root, th, sh.signature))
            .ok_or(HandshakeError::BadSignature)?;
        let z = self.eph.agree_sec1(sh.server_key).ok_or(HandshakeError::BadKey)?;
        let schedule = Schedule::derive(Side::Client, &z, &self.client_random, &sh.server_random, &th, suite);
        Ok(Established {
            schedule,
            version: sh.version,
            suite,
            server_cid: sh.tlvs.server_cid,
            client_cid: self.recv_cid,
            peer_params: sh.tlvs.params,
            th,
        })
    }
}

/// What a server offers.
#[derive(Clone, Debug)]
pub struct ServerPolicy<'a> {
    /// The game's protocol id.
    pub protocol_id: u64,
    /// Versions spoken (only 2 in stage 1).
    pub versions: &'a [u8],
    /// Suites in the server's preference order.
    pub suites: &'a [u8],
    /// Our transport parameters (all seven are sent).
    pub params: TransportParams,
    /// Whether a cookie is required now (§2.4 policy and buckets).
    pub require_cookie: bool,
}

/// The server's answer to a HELLO2.
#[allow(clippy::large_enum_variant)]
pub enum ServerAnswer {
    /// Send this HELLO_RETRY (39 B); keep nothing.
    Retry([u8; HelloRetry::LEN]),
    /// Send this REJECT (20 B).
    Reject([u8; Reject::LEN]),
    /// Send this SERVER_HELLO (1200 B); `unpadded` bytes of it are what a
    /// pending entry stores (§2.5); the keys are ready.
    Accept {
        /// The padded datagram.
        server_hello: [u8; SERVER_HELLO_LEN],
        /// Its unpadded length.
        unpadded: usize,
        /// Keys and choices.
        established: Established,
    },
}

impl core::fmt::Debug for ServerAnswer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ServerAnswer::Retry(_) => f.write_str("Retry"),
            ServerAnswer::Reject(r) => write!(f, "Reject({})", u16::from_be_bytes([r[18], r[19]])),
            ServerAnswer::Accept { unpadded, .. } => write!(f, "Accept({unpadded} B)"),
        }
    }
}

/// The highest common version and the server's preferred common suite
/// (unknown codes ignored, §2.9); `None` when either has no common value
/// (REJECT 5).
pub fn choose(policy: &ServerPolicy<'_>, t: &HelloTlvs<'_>) -> Option<(u8, u8)> {
    let version = t.versions.iter().copied().filter(|v| policy.versions.contains(v)).max()?;
    let suite = policy.suites.iter().copied().find(|s| t.suites.contains(s) && Suite::from_code(*s).is_some())?;
    Some((version, suite))
}

/// Answers one HELLO2 datagram from `from` (§2.8 order for the steps that
/// are pure: parse → protocol id → cookie → version and suite → ECDH and
/// signature). `server_cid` is the id this server picks for the connection.
#[allow(clippy::too_many_arguments)]
pub fn server_answer(
    now: Instant,
    policy: &ServerPolicy<'_>,
    root: &ServerKey,
    cookies: &CookieKeys,
    from: SocketAddr,
    datagram: &[u8],
    server_cid: [u8; CID_LEN],
    rng: &mut Rng,
) -> Result<ServerAnswer, HandshakeError> {
    let hello = Hello2::parse(datagram).map_err(|_| HandshakeError::Malformed)?;
    let t = &hello.tlvs;
    if t.protocol_id != policy.protocol_id {
        return Err(HandshakeError::ProtocolMismatch);
    }
    let cookie_ok = t.cookie.is_some_and(|c| cookies.check(now, from, &t.client_random, &c));
    if policy.require_cookie && !cookie_ok {
        let r = HelloRetry {
            version: VERSION,
            client_random: t.client_random,
            cookie: cookies.issue(now, from, &t.client_random),
        };
        let mut out = [0u8; HelloRetry::LEN];
        r.emit(&mut out).map_err(|_| HandshakeError::Malformed)?;
        return Ok(ServerAnswer::Retry(out));
    }
    let Some((version, suite_code)) = choose(policy, t) else {
        let r =
            Reject { version: VERSION, client_random: t.client_random, reason: RejectReason::NoCommonVersionOrSuite };
        let mut out = [0u8; Reject::LEN];
        r.emit(&mut out).map_err(|_| HandshakeError::Malformed)?;
        return Ok(ServerAnswer::Reject(out));
    };
    // Checked just above: the code is known.
    let suite = Suite::from_code(suite_code).ok_or(HandshakeError::NotOffered)?;
    let eph = Ephemeral::generate(rng);
    let z = eph.agree_spki(hello.client_spki).ok_or(HandshakeError::BadKey)?;
    let mut server_random = [0u8; RANDOM_LEN];
    rng.fill(&mut server_random);
    let sig_placeholder = [0u8; 64];
    let sh = ServerHello {
        version,
        suite: suite_code,
        client_random: t.client_random,
        server_random,
        server_key: eph.sec1(),
        tlvs: ServerHelloTlvs {
            server_cid,
            params: policy.params,
            identity: Identity::Root { fingerprint: root_fingerprint(&root.public_key()) },
            extensions: &[],
        },
        signature: &sig_placeholder,
    };
    let mut out = [0u8; SERVER_HELLO_LEN];
    let n = sh.emit_signed_part(&mut out).map_err(|_| HandshakeError::Malformed)?;
    let data = hello2_message_data(datagram).map_err(|_| HandshakeError::Malformed)?;
    let th = transcript_hash(data, &out[..n]);
    let sig = sign_transcript(root, &th);
    let unpadded = finish_server_hello(&mut out, n, &sig);
    let schedule = Schedule::derive(Side::Server, &z, &t.client_random, &server_random, &th, suite);
    Ok(ServerAnswer::Accept {
        server_hello: out,
        unpadded,
        established: Established {
            schedule,
            version,
            suite,
            server_cid,
            client_cid: t.recv_cid,
            peer_params: t.params,
            th,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpgs2::protect::Protection;
    use crate::{Duration, Seed};
    use alloc::vec::Vec;

    fn addr() -> SocketAddr {
        "192.0.2.7:5000".parse().expect("address")
    }

    fn offer(versions: &'static [u8], suites: &'static [u8]) -> ClientOffer<'static> {
        ClientOffer { protocol_id: 77, versions, suites, recv_cid: None, params: TransportParams::default() }
    }

    fn policy(require_cookie: bool) -> ServerPolicy<'static> {
        ServerPolicy {
            protocol_id: 77,
            versions: &[2],
            suites: &[1, 2],
            params: TransportParams::DEFAULTS,
            require_cookie,
        }
    }

    struct World {
        rng: Rng,
        root: ServerKey,
        cookies: CookieKeys,
    }

    fn world() -> World {
        let mut rng = Rng::new(Seed::from_u64(42));
        let root = ServerKey::generate(&mut rng);
        let cookies = CookieKeys::new(Instant::ZERO, &mut rng);
        World { rng, root, cookies }
    }

    fn answer(w: &mut World, p: &ServerPolicy<'_>, dg: &[u8]) -> Result<ServerAnswer, HandshakeError> {
        server_answer(Instant::from_secs(1), p, &w.root, &w.cookies, addr(), dg, [0xA5; 8], &mut w.rng)
    }

    fn accept(a: ServerAnswer) -> ([u8; SERVER_HELLO_LEN], Established) {
        match a {
            ServerAnswer::Accept { server_hello, established, unpadded } => {
                assert_eq!(unpadded, 230);
                (server_hello, established)
            }
            other => panic!("expected Accept, got {other:?}"),
        }
    }

    #[test]
    fn full_handshake_then_packets_both_ways() {
        let mut w = world();
        let mut crng = Rng::new(Seed::from_u64(7));
        let client = ClientHandshake::new(&offer(&[3, 2], &[9, 1]), &mut crng).expect("fits");
        let (sh, server) = accept(answer(&mut w, &policy(false), client.hello()).expect("answers"));
        assert_eq!((server.version, server.suite), (2, Suite::Aes128Gcm), "v3 and suite 9 unknown: ignored");
        let pinned = [w.root.public_key()];
        let est = client.on_server_hello(&sh, &pinned).expect("verifies");
        assert_eq!(est.th, server.th);
        assert_eq!(est.server_cid, [0xA5; 8]);
        assert_eq!(est.peer_params, TransportParams::DEFAULTS);
        // The keys interoperate: client → server and server → client.
        let mut c = Protection::new(est.schedule.into_protection(), Some(est.server_cid), 0);
        let mut s = Protection::new(server.schedule.into_protection(), est.client_cid, 8);
        fn one_way(tx: &mut Protection, rx: &mut Protection) {
            let mut buf = [0u8; 64];
            let b = tx.begin(None, &mut buf).expect("room");
            buf[b.header_len] = 0x01;
            let n = tx.finish(b, &mut buf, 1).expect("sealed");
            let o = rx.open(Instant::ZERO, Duration::from_millis(100), &mut buf[..n]).expect("opens");
            assert_eq!(buf[o.payload], [0x01]);
        }
        one_way(&mut c, &mut s);
        one_way(&mut s, &mut c);
    }

    #[test]
    fn cookie_round_trip_and_either_variant() {
        let mut w = world();
        let mut crng = Rng::new(Seed::from_u64(8));
        let mut client = ClientHandshake::new(&offer(&[2], &[1]), &mut crng).expect("fits");
        let first = *client.hello();
        // An answer to the uncookied hello (say the policy changed between the two).
        let (sh_first, _) = accept(answer(&mut w, &policy(false), &first).expect("answers"));
        let ServerAnswer::Retry(retry) = answer(&mut w, &policy(true), &first).expect("answers") else {
            panic!("retry expected")
        };
        client.on_retry(&retry, &mut crng).expect("follows");
        assert_ne!(client.hello(), &first);
        assert_eq!(client.on_retry(&retry, &mut crng), Err(HandshakeError::SecondRetry));
        let (sh, _) = accept(answer(&mut w, &policy(true), client.hello()).expect("answers"));
        let pinned = [w.root.public_key()];
        client.on_server_hello(&sh, &pinned).expect("cookie variant verifies");
        client.on_server_hello(&sh_first, &pinned).expect("first variant verifies too (§2.5)");
        // A cookie for another address is refused: another retry.
        let other: SocketAddr = "192.0.2.8:5000".parse().expect("address");
        let a = server_answer(
            Instant::from_secs(1),
            &policy(true),
            &w.root,
            &w.cookies,
            other,
            client.hello(),
            [1; 8],
            &mut w.rng,
        );
        assert!(matches!(a, Ok(ServerAnswer::Retry(_))));
    }

    #[test]
    fn rejects_and_drops() {
        let mut w = world();
        let mut crng = Rng::new(Seed::from_u64(9));
        for (versions, suites) in [(&[3u8][..], &[1u8][..]), (&[2][..], &[9][..])] {
            let o = ClientOffer { versions, suites, ..offer(&[2], &[1]) };
            let client = ClientHandshake::new(&o, &mut crng).expect("fits");
            let ServerAnswer::Reject(r) = answer(&mut w, &policy(false), client.hello()).expect("answers") else {
                panic!("reject expected")
            };
            assert_eq!(client.on_reject(&r), Ok(RejectReason::NoCommonVersionOrSuite));
        }
        let client =
            ClientHandshake::new(&ClientOffer { protocol_id: 78, ..offer(&[2], &[1]) }, &mut crng).expect("fits");
        assert_eq!(answer(&mut w, &policy(false), client.hello()).err(), Some(HandshakeError::ProtocolMismatch));
        assert_eq!(answer(&mut w, &policy(false), &[0u8; 1200]).err(), Some(HandshakeError::Malformed));
        // Unpinned root, and a replayed SERVER_HELLO from an earlier attempt.
        let client = ClientHandshake::new(&offer(&[2], &[1]), &mut crng).expect("fits");
        let (sh, _) = accept(answer(&mut w, &policy(false), client.hello()).expect("answers"));
        let stranger = ServerKey::generate(&mut crng).public_key();
        assert_eq!(client.on_server_hello(&sh, &[stranger]).err(), Some(HandshakeError::UnknownRoot));
        let next = ClientHandshake::new(&offer(&[2], &[1]), &mut crng).expect("fits");
        assert_ne!(next.client_random(), client.client_random(), "fresh per attempt");
        assert_eq!(next.on_server_hello(&sh, &[w.root.public_key()]).err(), Some(HandshakeError::WrongEcho));
        assert!(!alloc::format!("{}", HandshakeError::BadSignature).is_empty());
    }

    /// §7 "Signature binding": flipping any byte of the HELLO2 message data
    /// (with the CRC fixed up, as an attacker would) or of SERVER_HELLO before
    /// `sig` makes the client refuse the reply.
    #[test]
    fn tampering_with_any_byte_fails() {
        let mut w = world();
        let mut crng = Rng::new(Seed::from_u64(10));
        let client = ClientHandshake::new(&offer(&[2], &[1]), &mut crng).expect("fits");
        let pinned = [w.root.public_key()];
        let mut refused = 0;
        for i in (22..HELLO2_LEN - 4).step_by(7) {
            let mut t = *client.hello();
            t[i] ^= 0x01;
            let crc = crc32fast::hash(&t[..HELLO2_LEN - 4]);
            t[HELLO2_LEN - 4..].copy_from_slice(&crc.to_be_bytes());
            match answer(&mut w, &policy(false), &t) {
                Ok(ServerAnswer::Accept { server_hello, .. }) => {
                    assert!(client.on_server_hello(&server_hello, &pinned).is_err(), "hello byte {i}");
                }
                _ => refused += 1,
            }
        }
        assert!(refused > 0, "some flips make the hello malformed");
        let (sh, _) = accept(answer(&mut w, &policy(false), client.hello()).expect("answers"));
        let signed_len = ServerHello::signed_part(&sh).expect("parses").len();
        let results: Vec<bool> = (0..signed_len + 64)
            .map(|i| {
                let mut t = sh;
                t[i] ^= 0x01;
                client.on_server_hello(&t, &pinned).is_err()
            })
            .collect();
        assert!(results.iter().all(|&r| r), "every byte before and of sig is bound");
        client.on_server_hello(&sh, &pinned).expect("the untouched reply verifies");
    }
}
