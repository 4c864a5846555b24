//! MPGS/2's parsers (docs/MPGS2.md §2.3, §2.5, §3.1, §3.4): the HELLO2
//! datagram and its TLV block, the long-header replies, short headers and
//! every frame type. Each entry point checks parse∘emit identity wherever a
//! parse succeeds, plus the invariants the parsers promise.
//!
//! The first input byte is a selector (which variant of a datagram the
//! harness completes); the rest is the body.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

use mpgameserver::_internal::mpgs2::buf::{Reader, Writer};
use mpgameserver::_internal::mpgs2::cookie::CookieKeys;
use mpgameserver::_internal::mpgs2::frame::{self, AckFrame, ChannelKind, Frame, Frames};
use mpgameserver::_internal::mpgs2::handshake::{
    ClientHandshake, ClientOffer, HandshakeError, ServerAnswer, ServerPolicy, server_answer,
};
use mpgameserver::_internal::mpgs2::hello::{
    self, HELLO2_DATA_LEN, HELLO2_DATA_OFFSET, HELLO2_LEN, Hello2, HelloRetry, LongType, Reject, RejectReason,
    SERVER_HELLO_LEN, SPKI_P256_PREFIX, ServerHello,
};
use mpgameserver::_internal::mpgs2::packet::{self, FirstByte, ShortHeader};
use mpgameserver::_internal::mpgs2::tlv::{self, HelloTlvs, ServerHelloTlvs, Tlvs, TransportParams};
use mpgameserver::_internal::mpgs2::{Side, varint};
use mpgameserver::{Instant, PublicKey, Rng, Seed, ServerKey};

/// The address the hellos come from (a documentation prefix).
const FROM: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 9000);
/// The server's protocol id; seeds use it.
pub const PROTOCOL_ID: u64 = 0x4d50_4753_0002;
const NOW: Instant = Instant::from_secs(100);

/// The fixed state of the handshake targets: a root key, cookie keys, and
/// one client attempt with its accepted SERVER_HELLO (fixed seeds).
pub struct Fixed {
    /// The server's root key.
    pub root: ServerKey,
    /// Its public half, pinned by the client.
    pub pinned: PublicKey,
    /// The server's cookie keys.
    pub cookies: CookieKeys,
    /// A client attempt (cloned per input: `on_retry` changes it).
    pub client: ClientHandshake,
    /// The SERVER_HELLO the server answered `client.hello()` with.
    pub server_hello: [u8; SERVER_HELLO_LEN],
    /// The transcript hash both sides derived.
    pub th: [u8; 32],
}

/// The 22-byte MPGS/1 frame head of every HELLO2, and the 1174 bytes of a
/// valid message data, taken from a real hello.
fn canonical_head(f: &Fixed) -> &[u8] {
    &f.client.hello()[..HELLO2_DATA_OFFSET]
}

/// Builds the fixed state once per process (ECDH, signing and verifying
/// are not cheap).
pub fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let mut rng = Rng::new(Seed::from_u64(0x2222));
        let root = ServerKey::generate(&mut rng);
        let cookies = CookieKeys::with_key(7, [0x55; 32], Instant::ZERO);
        let offer = ClientOffer {
            protocol_id: PROTOCOL_ID,
            versions: &[2],
            suites: &[1, 2],
            recv_cid: None,
            params: TransportParams::default(),
        };
        let client = ClientHandshake::new(&offer, &mut rng).expect("the offer fits a HELLO2");
        let policy = policy(false);
        let answer = server_answer(NOW, &policy, &root, &cookies, FROM, client.hello(), [0xA5; 8], &mut rng);
        let Ok(ServerAnswer::Accept { server_hello, established, .. }) = answer else {
            panic!("the fixed handshake is accepted: {answer:?}")
        };
        let est = client.on_server_hello(&server_hello, &[root.public_key()]).expect("the fixed hello verifies");
        assert_eq!(est.th, established.th);
        Fixed { pinned: root.public_key(), root, cookies, client, server_hello, th: est.th }
    })
}

fn policy(require_cookie: bool) -> ServerPolicy<'static> {
    ServerPolicy {
        protocol_id: PROTOCOL_ID,
        versions: &[2],
        suites: &[1, 2],
        params: TransportParams::DEFAULTS,
        require_cookie,
    }
}

// ---------------------------------------------------------------------------
// HELLO2 and its TLV block
// ---------------------------------------------------------------------------

/// The TLV block and the whole HELLO2 datagram (§2.3), and the server's
/// pure answer to it (§2.4, §2.8).
///
/// Selector bits: `0x01`/`0x02` choose how the body becomes a datagram (as
/// is; as message data with the frame and CRC completed by the harness; as
/// the TLV block behind a fixed valid prefix), `0x04` lets the answer go past
/// the cookie check (where a valid key costs an ECDH and a signature).
pub fn hello2(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    // The block alone, as both messages read it.
    tlv_block(body);
    let f = fixed();
    let mut dg = [0u8; HELLO2_LEN];
    let datagram: &[u8] = match sel & 3 {
        0 => body,
        1 => {
            // The body is the message data; the harness adds frame head and CRC.
            dg[..HELLO2_DATA_OFFSET].copy_from_slice(canonical_head(f));
            let n = body.len().min(HELLO2_DATA_LEN);
            dg[HELLO2_DATA_OFFSET..HELLO2_DATA_OFFSET + n].copy_from_slice(&body[..n]);
            seal_crc(&mut dg);
            &dg
        }
        _ => {
            // Valid everything up to `u16 E`; the body is E, the block, the padding.
            dg.copy_from_slice(f.client.hello());
            let at = hello::VERSION_FIELD_OFFSET + 3;
            let n = body.len().min(HELLO2_LEN - 4 - at);
            dg[at..at + n].copy_from_slice(&body[..n]);
            dg[at + n..HELLO2_LEN - 4].fill(0);
            seal_crc(&mut dg);
            &dg
        }
    };
    let parsed = Hello2::parse(datagram);
    if let Ok(h) = &parsed {
        assert!(hello::is_hello2(datagram));
        assert!(h.client_spki.starts_with(&SPKI_P256_PREFIX));
        assert_eq!(
            hello::hello2_message_data(datagram),
            Ok(&datagram[HELLO2_DATA_OFFSET..HELLO2_LEN - 4]),
            "message data of a parsed hello"
        );
        assert_eq!(h.tlvs.encoded_len() + h.padding.len(), tlv::MAX_HELLO_TLV_LEN);
        let mut out = [0u8; HELLO2_LEN];
        h.emit(&mut out).expect("a parsed hello re-emits");
        assert_eq!(&out[..], datagram, "HELLO2 round trip");
    }
    // The server's answer when a cookie is required: no ECDH, a HELLO_RETRY
    // echoing the client's random, whose cookie then passes.
    let strict = policy(true);
    let mut rng = Rng::new(Seed::from_u64(u64::from(sel)));
    let ans = server_answer(NOW, &strict, &f.root, &f.cookies, FROM, datagram, [1; 8], &mut rng);
    match (&parsed, ans) {
        (Err(_), Err(HandshakeError::Malformed)) => {}
        (Err(e), a) => panic!("an unparsable hello ({e:?}) was answered: {a:?}"),
        (Ok(h), Err(HandshakeError::ProtocolMismatch)) => assert_ne!(h.tlvs.protocol_id, PROTOCOL_ID),
        (Ok(h), Ok(ServerAnswer::Retry(r))) => {
            let r = HelloRetry::parse(&r).expect("our HELLO_RETRY parses");
            assert_eq!(r.client_random, h.tlvs.client_random);
            assert!(f.cookies.check(NOW, FROM, &h.tlvs.client_random, &r.cookie), "a fresh cookie passes");
            let other = SocketAddr::new(FROM.ip(), FROM.port() + 1);
            assert!(!f.cookies.check(NOW, other, &h.tlvs.client_random, &r.cookie), "a cookie is bound to the address");
        }
        (Ok(h), a) => {
            // Anything else happens past the cookie check (a REJECT, an
            // accept, a bad key): only a cookie we issued gets there.
            let c = h.tlvs.cookie.unwrap_or_else(|| panic!("{a:?} without a cookie"));
            assert!(f.cookies.check(NOW, FROM, &h.tlvs.client_random, &c), "forged cookie accepted: {a:?}");
        }
    }
    if sel & 4 != 0 && parsed.is_ok() {
        let ans = server_answer(NOW, &policy(false), &f.root, &f.cookies, FROM, datagram, [2; 8], &mut rng);
        if let Ok(ServerAnswer::Accept { server_hello, unpadded, established }) = ans {
            let sh = ServerHello::parse(&server_hello).expect("our SERVER_HELLO parses");
            assert_eq!(ServerHello::signed_part(&server_hello).map(|s| s.len() + 64), Ok(unpadded));
            assert_eq!(established.server_cid, [2; 8]);
            assert_eq!(sh.tlvs.server_cid, [2; 8]);
        } else if let Ok(ServerAnswer::Reject(r)) = ans {
            let r = Reject::parse(&r).expect("our REJECT parses");
            assert_eq!(r.reason, RejectReason::NoCommonVersionOrSuite);
        }
    }
}

fn seal_crc(dg: &mut [u8; HELLO2_LEN]) {
    let crc = mpgameserver::_internal::crc32(&dg[..HELLO2_LEN - 4]);
    dg[HELLO2_LEN - 4..].copy_from_slice(&crc.to_be_bytes());
}

/// A TLV block (without `u16 E`): the generic iterator, and both messages'
/// parsers with their round trips.
fn tlv_block(block: &[u8]) {
    let mut last = None;
    let mut seen = 0;
    for t in Tlvs::new(block) {
        let Ok(t) = t else { break };
        assert!(last.is_none_or(|l| t.ty > l), "TLV types strictly ascending");
        last = Some(t.ty);
        seen += 3 + t.value.len();
    }
    assert!(seen <= block.len());
    if let Ok(h) = HelloTlvs::parse(block) {
        assert_eq!(h.encoded_len(), block.len());
        assert!((1..=tlv::MAX_VERSIONS).contains(&h.versions.len()));
        assert!((1..=tlv::MAX_SUITES).contains(&h.suites.len()));
        assert!(h.connect_token.is_none_or(|t| t.len() <= tlv::MAX_TOKEN_LEN));
        params(&h.params);
        let mut out = vec![0u8; block.len()];
        let mut w = Writer::new(&mut out);
        h.emit(&mut w).expect("parsed TLVs re-emit");
        assert_eq!(w.len(), block.len());
        assert_eq!(out, block, "HELLO2 TLV round trip");
        assert_eq!(HelloTlvs::parse(&out), Ok(h));
    }
    if let Ok(s) = ServerHelloTlvs::parse(block) {
        assert_eq!(s.encoded_len(), block.len());
        params(&s.params);
        let mut out = vec![0u8; block.len()];
        let mut w = Writer::new(&mut out);
        s.emit(&mut w).expect("parsed TLVs re-emit");
        assert_eq!(out, block, "SERVER_HELLO TLV round trip");
    }
}

fn params(p: &TransportParams) {
    assert!(usize::from(p.max_udp_payload()) >= mpgameserver::_internal::mpgs2::MIN_UDP_PAYLOAD);
    let mut out = vec![0u8; p.encoded_len()];
    let mut w = Writer::new(&mut out);
    p.emit(&mut w).expect("sized for it");
    assert_eq!(w.len(), p.encoded_len());
    let neg = TransportParams::negotiated_idle_timeout_ms(&TransportParams::DEFAULTS, p);
    assert!(neg.is_some_and(|v| v <= 5_000 && v > 0), "the defaults' 5 s bounds the idle timeout");
}

// ---------------------------------------------------------------------------
// Long headers
// ---------------------------------------------------------------------------

/// HELLO_RETRY, REJECT and SERVER_HELLO (§2.5): parse with round trips, and
/// what the fixed client attempt does with each (echo, second retry,
/// choices, identity, transcript signature against the fixed root key).
///
/// Selector bits: `0x01` pads the body to 1200 bytes (SERVER_HELLO's size),
/// `0x02` writes the attempt's `client_random` into the echo field, so the
/// checks behind the echo are reached.
pub fn long_header(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let f = fixed();
    let mut dg = body.to_vec();
    if sel & 1 != 0 && dg.len() < SERVER_HELLO_LEN {
        dg.resize(SERVER_HELLO_LEN, 0);
    }
    if sel & 2 != 0 {
        // The echo is at 2 in HELLO_RETRY and REJECT, at 3 in SERVER_HELLO.
        let at = if dg.first() == Some(&0xC1) { 3 } else { 2 };
        if dg.len() >= at + 16 {
            dg[at..at + 16].copy_from_slice(f.client.client_random());
        }
    }
    let dg = &dg[..];
    if let Some(&b) = dg.first() {
        let lt = LongType::from_first_byte(b);
        assert_eq!(lt.is_some(), (0xC0..=0xC2).contains(&b));
        assert!(lt.is_none() || FirstByte::of(b) == FirstByte::Long);
    }
    if let Ok(r) = HelloRetry::parse(dg) {
        let mut out = [0u8; HelloRetry::LEN];
        assert_eq!(r.emit(&mut out), Ok(HelloRetry::LEN));
        assert_eq!(&out[..], dg, "HELLO_RETRY round trip");
    }
    if let Ok(r) = Reject::parse(dg) {
        assert_eq!(RejectReason::from_code(r.reason.code()), r.reason);
        let mut out = [0u8; Reject::LEN];
        assert_eq!(r.emit(&mut out), Ok(Reject::LEN));
        assert_eq!(&out[..], dg, "REJECT round trip");
    }
    let sh = ServerHello::parse(dg);
    if let Ok(sh) = &sh {
        let mut out = [0u8; SERVER_HELLO_LEN];
        sh.emit(&mut out).expect("a parsed SERVER_HELLO re-emits");
        assert_eq!(&out[..], dg, "SERVER_HELLO round trip");
        let signed = ServerHello::signed_part(dg).expect("parsed");
        let mut out2 = [0u8; SERVER_HELLO_LEN];
        assert_eq!(sh.emit_signed_part(&mut out2), Ok(signed.len()));
        assert_eq!(&out2[..signed.len()], signed);
        assert_eq!(&dg[signed.len()..signed.len() + 64], &sh.signature[..]);
    }
    // The client attempt: each reply is checked against what it sent.
    let mut client = f.client.clone();
    let mut rng = Rng::new(Seed::from_u64(9));
    let before = *client.hello();
    match client.on_retry(dg, &mut rng) {
        Ok(()) => {
            let r = HelloRetry::parse(dg).expect("accepted, so it parses");
            assert_eq!(&r.client_random, client.client_random());
            // The cookie variant: same key and random, the cookie in TLV 0x06.
            let h = Hello2::parse(client.hello()).expect("our second hello parses");
            assert_eq!(h.tlvs.cookie, Some(r.cookie));
            assert_eq!(h.client_spki, Hello2::parse(&before).expect("first hello").client_spki);
            assert_eq!(client.on_retry(dg, &mut rng), Err(HandshakeError::SecondRetry));
        }
        Err(e) => assert_eq!(client.hello(), &before, "a refused retry ({e:?}) changes nothing"),
    }
    if let Ok(reason) = f.client.on_reject(dg) {
        assert_eq!(Reject::parse(dg).map(|r| r.reason), Ok(reason));
    }
    match f.client.on_server_hello(dg, std::slice::from_ref(&f.pinned)) {
        Ok(est) => {
            // The signature binds the transcript: whatever verifies carries
            // exactly the server's signed bytes.
            let signed = ServerHello::signed_part(dg).expect("verified, so it parses");
            assert_eq!(signed, ServerHello::signed_part(&f.server_hello).expect("fixed hello"));
            assert_eq!(est.th, f.th);
        }
        Err(HandshakeError::Malformed) => assert!(sh.is_err()),
        Err(_) => assert!(sh.is_ok()),
    }
}

// ---------------------------------------------------------------------------
// Short packets and frames
// ---------------------------------------------------------------------------

/// The short header (§3.1) with packet-number recovery (§3.2), every frame
/// of §3.4 with round trips, and varints.
///
/// Selector: bit `0x01` is the receiver's connection id length (0 or 8);
/// the rest seeds the "largest received" of PN recovery.
pub fn frames(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let cid_len = if sel & 1 == 0 { 0 } else { 8 };
    if let Ok((h, n)) = ShortHeader::parse(body, cid_len) {
        assert_eq!(n, h.encoded_len());
        assert!(body.len() >= n + 1 + mpgameserver::_internal::mpgs2::TAG_LEN, "a byte of ciphertext and the tag");
        let mut out = [0u8; packet::MAX_SHORT_HEADER];
        assert_eq!(h.emit(&mut out), Ok(n));
        assert_eq!(&out[..n], &body[..n], "short header round trip");
        assert_eq!(FirstByte::of(body[0]), FirstByte::Short);
        pn_recovery(u64::from(sel >> 1) << (sel % 41), h.truncated_pn, h.pn_len);
        frame_run(&body[n..]);
    }
    frame_run(body);
    // Varints one after another.
    let mut rest = body;
    while let Ok((v, n)) = varint::decode(rest) {
        assert_eq!(varint::len(v), Some(n));
        let mut out = [0u8; 8];
        assert_eq!(varint::encode(v, &mut out), Ok(n));
        assert_eq!(&out[..n], &rest[..n], "varint round trip");
        rest = &rest[n..];
    }
}

/// RFC 9000 A.3: the recovered PN has the truncated bits and lies within
/// half a window of the expected one.
fn pn_recovery(largest: u64, truncated: u32, n: u8) {
    let largest = largest.min(mpgameserver::_internal::mpgs2::MAX_PN - 1);
    let Some(pn) = packet::pn_decode(Some(largest), truncated, n) else {
        return;
    };
    assert_eq!(packet::pn_truncate(pn, n), truncated);
    let win = 1u64 << (8 * u32::from(n));
    let expected = largest + 1;
    assert!(pn.abs_diff(expected) <= win / 2 || pn < win || pn + win > mpgameserver::_internal::mpgs2::MAX_PN);
}

/// Every frame of a payload: what parses re-emits to the same bytes and
/// parses back to itself.
fn frame_run(payload: &[u8]) {
    let mut r = Reader::new(payload);
    let mut frames = Frames::new(payload);
    loop {
        let before = r.consumed();
        let one = Frame::parse(&mut r);
        assert_eq!(frames.next(), if r.remaining() + (r.consumed() - before) == 0 { None } else { Some(one) });
        let Ok(f) = one else { break };
        let raw = &payload[before..r.consumed()];
        assert_eq!(f.encoded_len(), raw.len());
        let mut out = vec![0u8; raw.len()];
        let mut w = Writer::new(&mut out);
        f.emit(&mut w).expect("a parsed frame re-emits");
        assert_eq!(out, raw, "frame round trip");
        assert_eq!(Frame::parse(&mut Reader::new(&out)), Ok(f));
        check_frame(&f);
        if r.is_empty() {
            assert_eq!(frames.next(), None);
            break;
        }
    }
}

fn check_frame(f: &Frame<'_>) {
    assert!(f.allowed_from(Side::Client) || f.allowed_from(Side::Server));
    match *f {
        Frame::Ack(a) => ack(&a),
        Frame::Close { reason, .. } => assert!(reason.len() <= frame::MAX_CLOSE_REASON),
        Frame::Message { kind, channel, id, .. } => {
            assert!(channel < frame::MAX_CHANNELS);
            assert_eq!(id.is_none(), kind == ChannelKind::Unreliable);
            assert_eq!(ChannelKind::from_code(kind.code()), Some(kind));
        }
        Frame::Fragment { channel, total_len, offset, data, .. } => {
            assert!(channel < frame::MAX_CHANNELS);
            assert!(!data.is_empty() && offset + data.len() as u64 <= total_len);
        }
        Frame::Padding { len } => assert!(len >= 1),
        Frame::Auth(_) => assert!(!f.allowed_from(Side::Server)),
        Frame::ResetToken(_) => assert!(!f.allowed_from(Side::Client)),
        _ => assert!(f.is_ack_eliciting()),
    }
}

/// An ACK's ranges: `range_count + 1` of them, highest first, separated by
/// at least one PN, the first ending at `largest`, none below 0.
fn ack(a: &AckFrame<'_>) {
    let ranges: Vec<(u64, u64)> = a.ranges().collect();
    assert_eq!(ranges.len(), usize::from(a.range_count) + 1, "every range decodes");
    assert!(usize::from(a.range_count) <= frame::MAX_ACK_RANGES);
    assert_eq!(ranges[0], (a.largest - a.first_range, a.largest));
    for w in ranges.windows(2) {
        assert!(w[0].0 <= w[0].1);
        assert!(w[1].1 + 2 <= w[0].0, "ranges separated by a gap: {w:?}");
    }
    assert_eq!(a.smallest(), ranges.last().expect("at least one").0);
    assert_eq!(a.ack_delay_micros(), a.ack_delay.saturating_mul(frame::ACK_DELAY_UNIT_MICROS));
}

// ---------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------

/// Seed inputs for the MPGS/2 targets, as `(target, name, bytes)`: real
/// hellos and replies of the fixed handshake, and packets holding every
/// frame type. `tests/smoke.rs` (`write_mpgs2_seeds`, ignored) writes them
/// to `seeds/<target>/<name>`.
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let f = fixed();
    let hello = *f.client.hello();
    let with = |sel: u8, b: &[u8]| [&[sel][..], b].concat();
    let mut out = vec![
        ("mpgs2_hello", "datagram", with(0, &hello)),
        ("mpgs2_hello", "message_data", with(1, &hello[HELLO2_DATA_OFFSET..HELLO2_LEN - 4])),
        ("mpgs2_hello", "block", with(2, &hello[hello::VERSION_FIELD_OFFSET + 3..HELLO2_LEN - 4])),
        ("mpgs2_hello", "accept", with(5, &hello[HELLO2_DATA_OFFSET..HELLO2_LEN - 4])),
        ("mpgs2_long_header", "server_hello", with(0, &f.server_hello)),
    ];
    // The cookie variant, and the HELLO_RETRY and REJECT that go with it.
    let mut rng = Rng::new(Seed::from_u64(3));
    if let Ok(ServerAnswer::Retry(r)) =
        server_answer(NOW, &policy(true), &f.root, &f.cookies, FROM, &hello, [3; 8], &mut rng)
    {
        let mut c = f.client.clone();
        c.on_retry(&r, &mut rng).expect("our own retry");
        out.push(("mpgs2_hello", "cookie", with(1, &c.hello()[HELLO2_DATA_OFFSET..HELLO2_LEN - 4])));
        out.push(("mpgs2_long_header", "retry", with(0, &r)));
    }
    let reject = Reject { version: 2, client_random: *f.client.client_random(), reason: RejectReason::Busy };
    let mut rj = [0u8; Reject::LEN];
    reject.emit(&mut rj).expect("sized");
    out.push(("mpgs2_long_header", "reject", with(0, &rj)));
    // A block with every optional HELLO2 field and an extension.
    let tlvs = HelloTlvs {
        protocol_id: PROTOCOL_ID,
        client_random: [9; 16],
        versions: &[2, 3],
        suites: &[2, 1],
        recv_cid: Some([4; 8]),
        cookie: Some([5; 21]),
        connect_token: Some(&[6; 40]),
        params: TransportParams::DEFAULTS,
        extensions: &[0x80, 0, 2, 1, 2, 0xFF, 0, 0],
    };
    let mut block = vec![0u8; tlvs.encoded_len()];
    tlvs.emit(&mut Writer::new(&mut block)).expect("sized");
    let mut e = (block.len() as u16).to_be_bytes().to_vec();
    e.extend_from_slice(&block);
    out.push(("mpgs2_hello", "full_block", with(2, &e)));
    // A short packet to an 8-byte id with one frame of every type.
    let ack_raw = [0u8, 1, 3, 0];
    let frames = [
        Frame::Ack(AckFrame { largest: 40, ack_delay: 3, first_range: 2, range_count: 2, ranges_raw: &ack_raw }),
        Frame::Ping,
        Frame::Close { code: 2, reason: b"bye" },
        Frame::KeyUpdate,
        Frame::PathChallenge([1; 8]),
        Frame::PathResponse([2; 8]),
        Frame::Auth([3; 16]),
        Frame::ResetToken([4; 16]),
        Frame::Message { kind: ChannelKind::Unreliable, channel: 0, id: None, data: b"u" },
        Frame::Message { kind: ChannelKind::ReliableOrdered, channel: 2, id: Some(7), data: b"ro" },
        Frame::Fragment {
            kind: ChannelKind::ReliableUnordered,
            channel: 1,
            id: 3,
            total_len: 9,
            offset: 4,
            data: b"frag",
        },
        Frame::Padding { len: 3 },
    ];
    let mut pkt = vec![0u8; 600];
    let h = ShortHeader { key_phase: false, dcid: Some([0x5C; 8]), pn_len: 2, truncated_pn: 0x0102 };
    let n = h.emit(&mut pkt).expect("sized");
    let mut w = Writer::new(&mut pkt[n..]);
    for fr in &frames {
        fr.emit(&mut w).expect("sized");
    }
    let m = n + w.len();
    pkt.truncate(m);
    pkt.extend_from_slice(&[0xEE; 16]);
    out.push(("mpgs2_frames", "every_frame", with(1, &pkt)));
    out.push(("mpgs2_frames", "frames_only", with(0, &pkt[n..m])));
    // Operation sequences of the connection target (see mpgs2_conn.rs, `op`):
    // the application sends on every channel, timers run, the peer acks,
    // sends well-formed frames and a fragmented message, and closes.
    let ops: &[u8] = &[
        7, 2, 0x0B, 0xB8, // send 3,000 B Reliable
        8, 0, 0x05, 0x00, // send 1,280 B Unreliable (two fragments)
        7, 1, 0x00, 0x40, // send 64 B BestEffort
        6,    // timers
        12,   // ack everything
        1, 1, 10, 0x03, 0, 50, 11, 0x06, 0, 20, // MESSAGE kind 3 on channel 0, kind 2 on channel 1
        13, 0x03, 0x10, 0x00, 1, // a 4,096 B reliable-ordered message in fragments, backwards
        1, 0, 6, 1, 2, 3, 4, 5, 6, 7, 8, // PATH_CHALLENGE
        5, 40, // 1.6 s later
        12, 6, // ack, timers
        1, 0, 4, 0, 0, 3, // CLOSE(0)
        6,
    ];
    out.push(("mpgs2_conn", "server", with(0, ops)));
    out.push(("mpgs2_conn", "client", with(1, ops)));
    out
}
