//! The handshake messages (MPGS2.md §2.3, §2.5): HELLO2 inside the MPGS/1
//! CLIENT_HELLO frame, and the long-header replies HELLO_RETRY, REJECT and
//! SERVER_HELLO.
//!
//! Parsers check every fixed byte, length and padding rule, so what parses
//! re-emits byte for byte; nothing here checks keys or signatures (see
//! [`super::keys`]).

use super::buf::{Reader, Writer};
use super::tlv::{COOKIE_LEN, HelloTlvs, MAX_HELLO_TLV_LEN, ServerHelloTlvs};
use super::{MIN_UDP_PAYLOAD, RANDOM_LEN, WireError};

/// A HELLO2 datagram is exactly this long (§2.3).
pub const HELLO2_LEN: usize = MIN_UDP_PAYLOAD;
/// Offset of the message data in the datagram (20-byte MPGS/1 header and
/// u16 msgseq).
pub const HELLO2_DATA_OFFSET: usize = 22;
/// Length of the HELLO2 message data.
pub const HELLO2_DATA_LEN: usize = 1174;
/// Length of the DER SPKI of a P-256 key with an uncompressed point.
pub const SPKI_LEN: usize = 91;
/// The fixed DER prefix of such an SPKI, up to and including the `04` of
/// the uncompressed point.
pub const SPKI_P256_PREFIX: [u8; 27] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];
/// Offset of the version field in the datagram: `00 03 02` (§2.2).
pub const VERSION_FIELD_OFFSET: usize = HELLO2_DATA_OFFSET + 98;
/// The version field of every HELLO2 (tagged i8 2, §2.9).
pub const VERSION_FIELD: [u8; 3] = [0x00, 0x03, 0x02];

/// MPGS/1 header + msgseq of a HELLO2: `FSOS`, ctime 0, seq 1, ack 0, type 1,
/// length 1176, count 1, ack_bits 0, msgseq 1.
const HELLO2_FRAME_HEAD: [u8; 22] =
    [b'F', b'S', b'O', b'S', 0, 0, 0, 0, 0, 1, 0, 0, 1, 0x04, 0x98, 1, 0, 0, 0, 0, 0, 1];
/// Client hello type id and tagged length 91, before the SPKI (as MPGS/1).
const HELLO_OBJECT_HEAD: [u8; 7] = [0x00, 0x82, 0x00, 0x0E, 0x00, 0x03, 0x5B];

/// Whether an MPGS/1 CLIENT_HELLO datagram (whose header and CRC the caller
/// has checked) carries the HELLO2 version field and so belongs to MPGS/2
/// (§2.2). Any other value stays with MPGS/1.
pub fn is_hello2(datagram: &[u8]) -> bool {
    datagram.get(VERSION_FIELD_OFFSET..VERSION_FIELD_OFFSET + 3) == Some(&VERSION_FIELD[..])
}

/// A parsed HELLO2 (§2.3), borrowed from its datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello2<'a> {
    /// The client's ephemeral P-256 key as DER SPKI (point not yet checked).
    pub client_spki: &'a [u8; SPKI_LEN],
    /// The TLV block.
    pub tlvs: HelloTlvs<'a>,
    /// The random padding after the block (`1071 − E` bytes).
    pub padding: &'a [u8],
}

impl<'a> Hello2<'a> {
    /// Parses a whole 1200-byte HELLO2 datagram: MPGS/1 frame, CRC, fixed
    /// fields, TLV block.
    pub fn parse(datagram: &'a [u8]) -> Result<Hello2<'a>, WireError> {
        let data = hello2_message_data(datagram)?;
        let mut r = Reader::new(data);
        if r.array::<7>()? != HELLO_OBJECT_HEAD {
            return Err(WireError::BadFrame);
        }
        let client_spki: &[u8; SPKI_LEN] = r.bytes(SPKI_LEN)?.try_into().map_err(|_| WireError::Truncated)?;
        if !client_spki.starts_with(&SPKI_P256_PREFIX) {
            return Err(WireError::BadValue);
        }
        if r.array::<3>()? != VERSION_FIELD {
            return Err(WireError::BadFrame);
        }
        let e = usize::from(r.u16()?);
        if e > MAX_HELLO_TLV_LEN {
            return Err(WireError::BadValue);
        }
        let tlvs = HelloTlvs::parse(r.bytes(e)?)?;
        Ok(Hello2 { client_spki, tlvs, padding: r.rest() })
    }

    /// Writes the whole datagram, with `self.padding` (which must be exactly
    /// `1071 − E` bytes).
    pub fn emit(&self, out: &mut [u8; HELLO2_LEN]) -> Result<(), WireError> {
        let padding = self.padding;
        emit_hello2(out, self.client_spki, &self.tlvs, |p| {
            if p.len() == padding.len() {
                p.copy_from_slice(padding);
                Ok(())
            } else {
                Err(WireError::BadValue)
            }
        })
    }
}

/// Writes a HELLO2 datagram; `fill_padding` fills the `1071 − E` padding
/// bytes (from the endpoint CSPRNG in production).
pub fn emit_hello2(
    out: &mut [u8; HELLO2_LEN],
    client_spki: &[u8; SPKI_LEN],
    tlvs: &HelloTlvs<'_>,
    fill_padding: impl FnOnce(&mut [u8]) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let e = tlvs.encoded_len();
    if e > MAX_HELLO_TLV_LEN || !client_spki.starts_with(&SPKI_P256_PREFIX) {
        return Err(WireError::BadValue);
    }
    let mut w = Writer::new(&mut out[..HELLO2_LEN - 4]);
    w.put_bytes(&HELLO2_FRAME_HEAD)?;
    w.put_bytes(&HELLO_OBJECT_HEAD)?;
    w.put_bytes(client_spki)?;
    w.put_bytes(&VERSION_FIELD)?;
    // `e` ≤ 1071 fits a u16.
    w.put_u16(e as u16)?;
    tlvs.emit(&mut w)?;
    let pad = w.remaining();
    fill_padding(w.reserve(pad)?)?;
    let crc = crc32fast::hash(&out[..HELLO2_LEN - 4]);
    out[HELLO2_LEN - 4..].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// The 1174 bytes of message data of a HELLO2 datagram (what the transcript
/// hash covers, §2.6), after checking its MPGS/1 frame: exact size, fixed
/// header fields, msgseq and CRC (computed as MPGS/1 does, PROTOCOL.md §3).
pub fn hello2_message_data(datagram: &[u8]) -> Result<&[u8], WireError> {
    if datagram.len() != HELLO2_LEN {
        return Err(WireError::BadFrame);
    }
    if datagram[..HELLO2_DATA_OFFSET] != HELLO2_FRAME_HEAD {
        return Err(WireError::BadFrame);
    }
    let (body, crc) = datagram.split_at(HELLO2_LEN - 4);
    if crc32fast::hash(body).to_be_bytes() != crc {
        return Err(WireError::BadFrame);
    }
    Ok(&body[HELLO2_DATA_OFFSET..])
}

/// The long-header types (§2.2, §2.5): first byte `0xC0–0xFF`, S → C only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LongType {
    /// `C0`: HELLO_RETRY.
    HelloRetry,
    /// `C1`: SERVER_HELLO.
    ServerHello,
    /// `C2`: REJECT.
    Reject,
}

impl LongType {
    /// The type of a long header's first byte; `None` for short headers,
    /// MPGS/1 and unknown long types (`C3–FF`), all of which a client drops
    /// here.
    pub const fn from_first_byte(b: u8) -> Option<LongType> {
        match b {
            0xC0 => Some(LongType::HelloRetry),
            0xC1 => Some(LongType::ServerHello),
            0xC2 => Some(LongType::Reject),
            _ => None,
        }
    }
}

/// HELLO_RETRY: `C0 ‖ version ‖ client_random ‖ cookie` (39 B).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelloRetry {
    /// The version byte (2).
    pub version: u8,
    /// Echo of the hello's `client_random`.
    pub client_random: [u8; RANDOM_LEN],
    /// The cookie to put in TLV 0x06.
    pub cookie: [u8; COOKIE_LEN],
}

impl HelloRetry {
    /// Its exact length.
    pub const LEN: usize = 2 + RANDOM_LEN + COOKIE_LEN;

    /// Parses exactly [`Self::LEN`] bytes.
    pub fn parse(b: &[u8]) -> Result<HelloRetry, WireError> {
        let mut r = Reader::new(b);
        if r.u8()? != 0xC0 {
            return Err(WireError::UnknownType);
        }
        let h = HelloRetry { version: r.u8()?, client_random: r.array()?, cookie: r.array()? };
        if !r.is_empty() {
            return Err(WireError::TrailingBytes);
        }
        Ok(h)
    }

    /// Writes it at the start of `out`; returns [`Self::LEN`].
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let mut w = Writer::new(out);
        if w.remaining() < Self::LEN {
            return Err(WireError::Truncated);
        }
        w.put_u8(0xC0)?;
        w.put_u8(self.version)?;
        w.put_bytes(&self.client_random)?;
        w.put_bytes(&self.cookie)?;
        Ok(w.len())
    }
}

/// Why a server refused a hello (§2.5, §2.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// 1: the connection cap is reached.
    Full,
    /// 2: the connect token is missing or not authentic.
    TokenInvalid,
    /// 3: the connect token has expired.
    TokenExpired,
    /// 4: the connect token was used already.
    TokenUsed,
    /// 5: no common version or suite.
    NoCommonVersionOrSuite,
    /// 6: another limit (bucket, ECDH budget, pending cap).
    Busy,
    /// A code this version does not know (Decision in §2.5: accepted, like
    /// an unknown QUIC error code).
    Other(u16),
}

impl RejectReason {
    /// The wire code.
    pub const fn code(self) -> u16 {
        match self {
            RejectReason::Full => 1,
            RejectReason::TokenInvalid => 2,
            RejectReason::TokenExpired => 3,
            RejectReason::TokenUsed => 4,
            RejectReason::NoCommonVersionOrSuite => 5,
            RejectReason::Busy => 6,
            RejectReason::Other(c) => c,
        }
    }

    /// The reason of a wire code.
    pub const fn from_code(c: u16) -> RejectReason {
        match c {
            1 => RejectReason::Full,
            2 => RejectReason::TokenInvalid,
            3 => RejectReason::TokenExpired,
            4 => RejectReason::TokenUsed,
            5 => RejectReason::NoCommonVersionOrSuite,
            6 => RejectReason::Busy,
            c => RejectReason::Other(c),
        }
    }
}

/// REJECT: `C2 ‖ version ‖ client_random ‖ u16 reason` (20 B).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reject {
    /// The version byte (2).
    pub version: u8,
    /// Echo of the hello's `client_random`.
    pub client_random: [u8; RANDOM_LEN],
    /// Why.
    pub reason: RejectReason,
}

impl Reject {
    /// Its exact length.
    pub const LEN: usize = 2 + RANDOM_LEN + 2;

    /// Parses exactly [`Self::LEN`] bytes.
    pub fn parse(b: &[u8]) -> Result<Reject, WireError> {
        let mut r = Reader::new(b);
        if r.u8()? != 0xC2 {
            return Err(WireError::UnknownType);
        }
        let j = Reject { version: r.u8()?, client_random: r.array()?, reason: RejectReason::from_code(r.u16()?) };
        if !r.is_empty() {
            return Err(WireError::TrailingBytes);
        }
        Ok(j)
    }

    /// Writes it at the start of `out`; returns [`Self::LEN`].
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let mut w = Writer::new(out);
        if w.remaining() < Self::LEN {
            return Err(WireError::Truncated);
        }
        w.put_u8(0xC2)?;
        w.put_u8(self.version)?;
        w.put_bytes(&self.client_random)?;
        w.put_u16(self.reason.code())?;
        Ok(w.len())
    }
}

/// Length of a SERVER_HELLO datagram (padded, §2.5).
pub const SERVER_HELLO_LEN: usize = MIN_UDP_PAYLOAD;
/// Length of the SEC1 uncompressed server key.
pub const SEC1_LEN: usize = 65;
/// Length of the raw `r ‖ s` signature.
pub const SIG_LEN: usize = 64;
/// Bytes before the TLV block (`C1`, version, suite, randoms, key).
const SERVER_HELLO_HEAD_LEN: usize = 3 + 2 * RANDOM_LEN + SEC1_LEN;

/// A parsed SERVER_HELLO (§2.5), borrowed from its datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerHello<'a> {
    /// The chosen version.
    pub version: u8,
    /// The chosen suite.
    pub suite: u8,
    /// Echo of the hello's `client_random`.
    pub client_random: [u8; RANDOM_LEN],
    /// The server's random.
    pub server_random: [u8; RANDOM_LEN],
    /// The server's ephemeral key, SEC1 uncompressed `04 ‖ X ‖ Y` (point not
    /// yet checked).
    pub server_key: &'a [u8; SEC1_LEN],
    /// The TLV block.
    pub tlvs: ServerHelloTlvs<'a>,
    /// The transcript signature, raw `r ‖ s`.
    pub signature: &'a [u8; SIG_LEN],
}

impl<'a> ServerHello<'a> {
    /// Parses a whole 1200-byte SERVER_HELLO. The padding must be zero.
    pub fn parse(datagram: &'a [u8]) -> Result<ServerHello<'a>, WireError> {
        if datagram.len() != SERVER_HELLO_LEN {
            return Err(WireError::BadValue);
        }
        let mut r = Reader::new(datagram);
        if r.u8()? != 0xC1 {
            return Err(WireError::UnknownType);
        }
        let version = r.u8()?;
        let suite = r.u8()?;
        let client_random = r.array()?;
        let server_random = r.array()?;
        let server_key: &[u8; SEC1_LEN] = r.bytes(SEC1_LEN)?.try_into().map_err(|_| WireError::Truncated)?;
        if server_key[0] != 0x04 {
            return Err(WireError::BadValue);
        }
        let e = usize::from(r.u16()?);
        let tlvs = ServerHelloTlvs::parse(r.bytes(e)?)?;
        let signature: &[u8; SIG_LEN] = r.bytes(SIG_LEN)?.try_into().map_err(|_| WireError::Truncated)?;
        if r.rest().iter().any(|&b| b != 0) {
            return Err(WireError::TrailingBytes);
        }
        Ok(ServerHello { version, suite, client_random, server_random, server_key, tlvs, signature })
    }

    /// The signed part of a SERVER_HELLO datagram, `[0 .. 102 + E]`, that the
    /// transcript hash covers (§2.6). Call on a datagram that parsed.
    pub fn signed_part(datagram: &[u8]) -> Result<&[u8], WireError> {
        let e = datagram.get(SERVER_HELLO_HEAD_LEN..SERVER_HELLO_HEAD_LEN + 2).ok_or(WireError::Truncated)?;
        let end = SERVER_HELLO_HEAD_LEN + 2 + usize::from(u16::from_be_bytes([e[0], e[1]]));
        datagram.get(..end).ok_or(WireError::Truncated)
    }

    /// Writes the signed part (everything before `sig`) at the start of `out`
    /// and returns its length, `102 + E`. The server then hashes the
    /// transcript over it, signs, and calls [`finish_server_hello`].
    pub fn emit_signed_part(&self, out: &mut [u8; SERVER_HELLO_LEN]) -> Result<usize, WireError> {
        let e = self.tlvs.encoded_len();
        if SERVER_HELLO_HEAD_LEN + 2 + e + SIG_LEN > SERVER_HELLO_LEN || self.server_key[0] != 0x04 {
            return Err(WireError::BadValue);
        }
        let mut w = Writer::new(out);
        w.put_u8(0xC1)?;
        w.put_u8(self.version)?;
        w.put_u8(self.suite)?;
        w.put_bytes(&self.client_random)?;
        w.put_bytes(&self.server_random)?;
        w.put_bytes(self.server_key)?;
        // Checked above: e < 1200.
        w.put_u16(e as u16)?;
        self.tlvs.emit(&mut w)?;
        Ok(w.len())
    }

    /// Writes the whole padded datagram with `self.signature`.
    pub fn emit(&self, out: &mut [u8; SERVER_HELLO_LEN]) -> Result<(), WireError> {
        let n = self.emit_signed_part(out)?;
        finish_server_hello(out, n, self.signature);
        Ok(())
    }
}

/// Appends `signature` after the signed part of length `signed_len` and pads
/// with zeros to 1200 B; returns the unpadded length (`signed_len + 64`),
/// which a pending entry stores (§2.5).
pub fn finish_server_hello(out: &mut [u8; SERVER_HELLO_LEN], signed_len: usize, signature: &[u8; SIG_LEN]) -> usize {
    // `emit_signed_part` guarantees signed_len + 64 ≤ 1200.
    let end = signed_len + SIG_LEN;
    out[signed_len..end].copy_from_slice(signature);
    out[end..].fill(0);
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpgs2::tlv::tests::OwnedHello;
    use crate::mpgs2::tlv::{Identity, TransportParams};
    use alloc::vec;
    use alloc::vec::Vec;
    use quickcheck::quickcheck;

    fn spki() -> [u8; SPKI_LEN] {
        let mut s = [0x11u8; SPKI_LEN];
        s[..27].copy_from_slice(&SPKI_P256_PREFIX);
        s
    }

    fn build(h: &OwnedHello, pad_byte: u8) -> Result<[u8; HELLO2_LEN], WireError> {
        let mut out = [0u8; HELLO2_LEN];
        emit_hello2(&mut out, &spki(), &h.borrow(), |p| {
            p.fill(pad_byte);
            Ok(())
        })?;
        Ok(out)
    }

    fn fits(h: &OwnedHello) -> bool {
        h.borrow().encoded_len() <= MAX_HELLO_TLV_LEN
    }

    #[test]
    fn hello2_layout() {
        let h = OwnedHello {
            protocol_id: 5,
            client_random: [7; 16],
            versions: vec![2],
            suites: vec![1, 2],
            recv_cid: None,
            cookie: None,
            token: None,
            params: TransportParams::default(),
            extensions: vec![],
        };
        let dg = build(&h, 0xEE).expect("fits");
        assert!(is_hello2(&dg));
        assert_eq!(hello2_message_data(&dg).map(<[u8]>::len), Ok(HELLO2_DATA_LEN));
        assert_eq!(&dg[..4], b"FSOS");
        assert_eq!(u16::from_be_bytes([dg[13], dg[14]]), 1176, "MPGS/1 length field");
        assert_eq!(&dg[120..123], &[0, 3, 2]);
        let p = Hello2::parse(&dg).expect("parses");
        assert_eq!(p.tlvs, h.borrow());
        assert_eq!(p.padding.len(), MAX_HELLO_TLV_LEN - h.borrow().encoded_len());
        let mut again = [0u8; HELLO2_LEN];
        p.emit(&mut again).expect("emits");
        assert_eq!(again, dg);
        // Every single-byte change is refused: CRC, header, or a field.
        for i in [0, 4, 9, 13, 21, 22, 30, 119, 120, 122, 123, 130, 1199] {
            let mut bad = dg;
            bad[i] ^= 0x01;
            assert!(Hello2::parse(&bad).is_err(), "byte {i}");
        }
        // Wrong size.
        assert_eq!(Hello2::parse(&dg[..1199]), Err(WireError::BadFrame));
        // Not a HELLO2: an MPGS/1 version field.
        let mut v1 = dg;
        v1[122] = 1;
        assert!(!is_hello2(&v1));
    }

    #[test]
    fn hello2_block_too_large() {
        let h = OwnedHello {
            protocol_id: 5,
            client_random: [7; 16],
            versions: vec![2],
            suites: vec![1],
            recv_cid: Some([1; 8]),
            cookie: Some([2; 21]),
            token: Some(vec![3; 512]),
            params: TransportParams::DEFAULTS,
            extensions: [0x80, 0x01, 0xF4].into_iter().chain(core::iter::repeat_n(0, 500)).collect(),
        };
        assert!(!fits(&h));
        assert_eq!(build(&h, 0).err(), Some(WireError::BadValue));
    }

    #[test]
    fn replies_layout() {
        let r = HelloRetry { version: crate::mpgs2::VERSION, client_random: [3; 16], cookie: [4; 21] };
        let mut out = [0u8; 64];
        assert_eq!(r.emit(&mut out), Ok(39));
        assert_eq!(out[0], 0xC0);
        assert_eq!(HelloRetry::parse(&out[..39]), Ok(r));
        assert_eq!(HelloRetry::parse(&out[..40]), Err(WireError::TrailingBytes));
        assert_eq!(HelloRetry::parse(&out[..38]), Err(WireError::Truncated));
        assert_eq!(LongType::from_first_byte(out[0]), Some(LongType::HelloRetry));

        let j = Reject { version: 2, client_random: [3; 16], reason: RejectReason::NoCommonVersionOrSuite };
        assert_eq!(j.emit(&mut out), Ok(20));
        assert_eq!(&out[18..20], &[0, 5]);
        assert_eq!(Reject::parse(&out[..20]), Ok(j));
        assert_eq!(RejectReason::from_code(0x1234), RejectReason::Other(0x1234));
        for c in 0..10 {
            assert_eq!(RejectReason::from_code(c).code(), c);
        }
        assert_eq!(LongType::from_first_byte(0xC3), None);
        assert_eq!(LongType::from_first_byte(0x80), None);
        assert_eq!(Reject::parse(&[0xC0; 20]), Err(WireError::UnknownType));
    }

    #[test]
    fn server_hello_layout() {
        let key = {
            let mut k = [0x22u8; SEC1_LEN];
            k[0] = 4;
            k
        };
        let sig = [0x33u8; SIG_LEN];
        let sh = ServerHello {
            version: 2,
            suite: 1,
            client_random: [1; 16],
            server_random: [2; 16],
            server_key: &key,
            tlvs: ServerHelloTlvs {
                server_cid: [5; 8],
                params: TransportParams::DEFAULTS,
                identity: Identity::Root { fingerprint: [6; 8] },
                extensions: &[],
            },
            signature: &sig,
        };
        let mut out = [0u8; SERVER_HELLO_LEN];
        let n = sh.emit_signed_part(&mut out).expect("fits");
        assert_eq!(n, 166);
        assert_eq!(finish_server_hello(&mut out, n, &sig), 230, "§2.5: 230 B unpadded with kind 0");
        let p = ServerHello::parse(&out).expect("parses");
        assert_eq!(p, sh);
        assert_eq!(ServerHello::signed_part(&out), Ok(&out[..166]));
        let mut again = [0xFFu8; SERVER_HELLO_LEN];
        sh.emit(&mut again).expect("emits");
        assert_eq!(again, out);
        // Non-zero padding, wrong size, compressed key: refused.
        let mut bad = out;
        bad[1199] = 1;
        assert_eq!(ServerHello::parse(&bad), Err(WireError::TrailingBytes));
        assert!(ServerHello::parse(&out[..1199]).is_err());
        let mut bad = out;
        bad[35] = 2;
        assert_eq!(ServerHello::parse(&bad), Err(WireError::BadValue));
    }

    quickcheck! {
        fn hello2_emit_then_parse(h: OwnedHello, pad: u8) -> bool {
            if !fits(&h) {
                return build(&h, pad).is_err();
            }
            let dg = build(&h, pad).expect("fits");
            let p = Hello2::parse(&dg).expect("parses");
            let mut again = [0u8; HELLO2_LEN];
            p.tlvs == h.borrow() && p.emit(&mut again).is_ok() && again == dg
        }

        fn hello2_mutation_never_panics(h: OwnedHello, flips: Vec<(u16, u8)>) -> bool {
            let Ok(mut dg) = build(&h, 9) else { return true };
            for (pos, v) in flips {
                dg[usize::from(pos) % HELLO2_LEN] = v;
            }
            match Hello2::parse(&dg) {
                Ok(p) => {
                    let mut again = [0u8; HELLO2_LEN];
                    p.emit(&mut again).is_ok() && again == dg
                }
                Err(_) => true,
            }
        }

        fn long_headers_never_panic(bytes: Vec<u8>) -> bool {
            let mut out = [0u8; SERVER_HELLO_LEN];
            if let Ok(r) = HelloRetry::parse(&bytes) {
                assert_eq!(r.emit(&mut out), Ok(bytes.len()));
                assert_eq!(&out[..bytes.len()], &bytes[..]);
            }
            if let Ok(j) = Reject::parse(&bytes) {
                assert_eq!(j.emit(&mut out), Ok(bytes.len()));
                assert_eq!(&out[..bytes.len()], &bytes[..]);
            }
            let _ = ServerHello::parse(&bytes);
            let _ = Hello2::parse(&bytes);
            true
        }

        fn server_hello_mutation(flips: Vec<(u16, u8)>, params: TransportParams) -> bool {
            let key = [4u8; SEC1_LEN];
            let sig = [9u8; SIG_LEN];
            let sh = ServerHello {
                version: 2, suite: 2, client_random: [1; 16], server_random: [2; 16], server_key: &key,
                tlvs: ServerHelloTlvs { server_cid: [5; 8], params, identity: Identity::Root { fingerprint: [6; 8] }, extensions: &[] },
                signature: &sig,
            };
            let mut dg = [0u8; SERVER_HELLO_LEN];
            sh.emit(&mut dg).expect("fits");
            if ServerHello::parse(&dg) != Ok(sh) {
                return false;
            }
            for (pos, v) in flips {
                dg[usize::from(pos) % SERVER_HELLO_LEN] = v;
            }
            match ServerHello::parse(&dg) {
                Ok(p) => {
                    let mut again = [0u8; SERVER_HELLO_LEN];
                    p.emit(&mut again).is_ok() && again == dg
                }
                Err(_) => true,
            }
        }
    }
}
