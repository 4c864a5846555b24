//! Every frame type of MPGS2.md §3.4, parsed from and emitted into the
//! plaintext of a short packet, without allocation.
//!
//! ```text
//! 0x00 PADDING      0x01 PING         0x02 ACK           0x05 CLOSE
//! 0x06 KEY_UPDATE   0x07 PATH_CHALLENGE                  0x08 PATH_RESPONSE
//! 0x09 AUTH (C→S)   0x0A RESET_TOKEN (S→C)
//! 0x10+k MESSAGE    0x14+k FRAGMENT   (k = channel kind 0–3)
//! ```
//! Parsing refuses what §3.4 calls a PROTOCOL_VIOLATION that a frame shows
//! on its own (unknown type, channel ≥ 64, an empty FRAGMENT, `offset + len
//! > total_len`, an ACK with more than 31 ranges or below PN 0, a CLOSE
//! reason over 64 B). The checks that need connection state (direction,
//! channel kinds, `max_message_size`, acks of unsent PNs) belong to the
//! connection; [`Frame::allowed_from`] gives the direction rule.

use super::buf::{Reader, Writer};
use super::{Side, WireError, varint};

/// Highest channel number plus one (§3.4).
pub const MAX_CHANNELS: u8 = 64;
/// Most ACK ranges after the first (§3.4).
pub const MAX_ACK_RANGES: usize = 31;
/// Longest CLOSE reason (§3.4, §6.4).
pub const MAX_CLOSE_REASON: usize = 64;
/// ACK delay unit in µs (§3.4).
pub const ACK_DELAY_UNIT_MICROS: u64 = 8;

/// Frame type bytes.
pub mod types {
    /// PADDING.
    pub const PADDING: u8 = 0x00;
    /// PING.
    pub const PING: u8 = 0x01;
    /// ACK.
    pub const ACK: u8 = 0x02;
    /// CLOSE.
    pub const CLOSE: u8 = 0x05;
    /// KEY_UPDATE.
    pub const KEY_UPDATE: u8 = 0x06;
    /// PATH_CHALLENGE.
    pub const PATH_CHALLENGE: u8 = 0x07;
    /// PATH_RESPONSE.
    pub const PATH_RESPONSE: u8 = 0x08;
    /// AUTH.
    pub const AUTH: u8 = 0x09;
    /// RESET_TOKEN.
    pub const RESET_TOKEN: u8 = 0x0A;
    /// MESSAGE of kind 0; `+ k` for kind k.
    pub const MESSAGE: u8 = 0x10;
    /// FRAGMENT of kind 0; `+ k` for kind k.
    pub const FRAGMENT: u8 = 0x14;
}

/// The kind of a channel (§4.3), the `k` of MESSAGE and FRAGMENT types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChannelKind {
    /// 0: delivered on arrival, sent once.
    Unreliable = 0,
    /// 1: delivered only if newer than the newest delivered.
    UnreliableSequenced = 1,
    /// 2: resent until acked, delivered on arrival.
    ReliableUnordered = 2,
    /// 3: resent until acked, delivered in id order.
    ReliableOrdered = 3,
}

impl ChannelKind {
    /// The kind with code `k` (0–3).
    pub const fn from_code(k: u8) -> Option<ChannelKind> {
        match k {
            0 => Some(ChannelKind::Unreliable),
            1 => Some(ChannelKind::UnreliableSequenced),
            2 => Some(ChannelKind::ReliableUnordered),
            3 => Some(ChannelKind::ReliableOrdered),
            _ => None,
        }
    }

    /// Its code `k`.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Whether lost frames of this kind are resent (k ≥ 2).
    pub const fn is_reliable(self) -> bool {
        matches!(self, ChannelKind::ReliableUnordered | ChannelKind::ReliableOrdered)
    }
}

/// An ACK frame (§3.4, RFC 9000 §19.3), borrowed: the additional ranges stay
/// encoded and [`AckFrame::ranges`] walks them. Parsing has validated them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckFrame<'a> {
    /// Largest PN acknowledged.
    pub largest: u64,
    /// Ack delay in units of 8 µs.
    pub ack_delay: u64,
    /// The first range covers `[largest − first_range, largest]`.
    pub first_range: u64,
    /// Number of further ranges (≤ 31).
    pub range_count: u8,
    /// The `range_count × (varint gap ‖ varint len)` bytes.
    pub ranges_raw: &'a [u8],
}

impl<'a> AckFrame<'a> {
    /// The ack delay in µs (saturating).
    pub fn ack_delay_micros(&self) -> u64 {
        self.ack_delay.saturating_mul(ACK_DELAY_UNIT_MICROS)
    }

    /// The acknowledged ranges `(smallest, largest)`, highest first.
    pub fn ranges(&self) -> AckRanges<'a> {
        AckRanges {
            r: Reader::new(self.ranges_raw),
            next: Some((self.largest - self.first_range, self.largest)),
            left: self.range_count,
        }
    }

    /// The smallest PN this ACK covers.
    pub fn smallest(&self) -> u64 {
        self.ranges().last().map_or(self.largest, |(s, _)| s)
    }

    fn parse(r: &mut Reader<'a>) -> Result<AckFrame<'a>, WireError> {
        let largest = r.varint()?;
        let ack_delay = r.varint()?;
        let count = r.varint()?;
        if count > MAX_ACK_RANGES as u64 {
            return Err(WireError::BadValue);
        }
        let first_range = r.varint()?;
        let mut smallest = largest.checked_sub(first_range).ok_or(WireError::BadValue)?;
        let start = r.rest();
        for _ in 0..count {
            let gap = r.varint()?;
            let len = r.varint()?;
            let end = smallest.checked_sub(gap).and_then(|v| v.checked_sub(2)).ok_or(WireError::BadValue)?;
            smallest = end.checked_sub(len).ok_or(WireError::BadValue)?;
        }
        let raw = &start[..start.len() - r.remaining()];
        // count ≤ 31 fits a u8.
        Ok(AckFrame { largest, ack_delay, first_range, range_count: count as u8, ranges_raw: raw })
    }

    fn emit(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_u8(types::ACK)?;
        w.put_varint(self.largest)?;
        w.put_varint(self.ack_delay)?;
        w.put_varint(u64::from(self.range_count))?;
        w.put_varint(self.first_range)?;
        w.put_bytes(self.ranges_raw)
    }

    fn encoded_len(&self) -> usize {
        1 + vlen(self.largest) + vlen(self.ack_delay) + 1 + vlen(self.first_range) + self.ranges_raw.len()
    }
}

/// Iterator over the ranges of an [`AckFrame`], highest first.
#[derive(Clone, Debug)]
pub struct AckRanges<'a> {
    r: Reader<'a>,
    next: Option<(u64, u64)>,
    left: u8,
}

impl Iterator for AckRanges<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        let cur = self.next.take()?;
        if self.left > 0 {
            self.left -= 1;
            // Validated by AckFrame::parse (or built by RangeSet): no error or
            // underflow can occur; a failure ends the iteration.
            let step = (|| {
                let gap = self.r.varint().ok()?;
                let len = self.r.varint().ok()?;
                let end = cur.0.checked_sub(gap)?.checked_sub(2)?;
                Some((end.checked_sub(len)?, end))
            })();
            self.next = step;
        }
        Some(cur)
    }
}

/// One frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A run of `len` PADDING bytes (each zero byte is one PADDING frame, as
    /// in QUIC; a run parses as one).
    Padding {
        /// Number of zero bytes.
        len: usize,
    },
    /// PING.
    Ping,
    /// ACK.
    Ack(AckFrame<'a>),
    /// CLOSE.
    Close {
        /// The code (§6.4).
        code: u16,
        /// The reason, ≤ 64 bytes, meant as UTF-8 (not checked, Decision
        /// in §3.4).
        reason: &'a [u8],
    },
    /// KEY_UPDATE.
    KeyUpdate,
    /// PATH_CHALLENGE.
    PathChallenge([u8; 8]),
    /// PATH_RESPONSE.
    PathResponse([u8; 8]),
    /// AUTH (C → S).
    Auth([u8; 16]),
    /// RESET_TOKEN (S → C).
    ResetToken([u8; 16]),
    /// A whole message.
    Message {
        /// Its channel's kind.
        kind: ChannelKind,
        /// Its channel, < 64.
        channel: u8,
        /// Its id; `None` exactly for kind 0.
        id: Option<u16>,
        /// The message.
        data: &'a [u8],
    },
    /// A piece of a message.
    Fragment {
        /// Its channel's kind.
        kind: ChannelKind,
        /// Its channel, < 64.
        channel: u8,
        /// Its message id.
        id: u16,
        /// The whole message's length.
        total_len: u64,
        /// Where `data` starts in the message.
        offset: u64,
        /// At least one byte; `offset + len ≤ total_len`.
        data: &'a [u8],
    },
}

/// Encoded length of a varint value (8 for out-of-range values, which emit
/// refuses anyway).
fn vlen(v: u64) -> usize {
    varint::len(v).unwrap_or(8)
}

impl<'a> Frame<'a> {
    /// Whether receiving it obliges the receiver to ack (§3.4).
    pub fn is_ack_eliciting(&self) -> bool {
        !matches!(self, Frame::Padding { .. } | Frame::Ack(_) | Frame::Close { .. })
    }

    /// Whether `sender` may send it (§3.4): AUTH only from a client,
    /// RESET_TOKEN only from a server; any other frame both ways.
    pub fn allowed_from(&self, sender: Side) -> bool {
        match self {
            Frame::Auth(_) => sender == Side::Client,
            Frame::ResetToken(_) => sender == Side::Server,
            _ => true,
        }
    }

    /// Encoded length.
    pub fn encoded_len(&self) -> usize {
        match self {
            Frame::Padding { len } => *len,
            Frame::Ping | Frame::KeyUpdate => 1,
            Frame::Ack(a) => a.encoded_len(),
            Frame::Close { reason, .. } => 4 + reason.len(),
            Frame::PathChallenge(_) | Frame::PathResponse(_) => 9,
            Frame::Auth(_) | Frame::ResetToken(_) => 17,
            Frame::Message { id, data, .. } => {
                2 + if id.is_some() { 2 } else { 0 } + vlen(data.len() as u64) + data.len()
            }
            Frame::Fragment { total_len, offset, data, .. } => {
                4 + vlen(*total_len) + vlen(*offset) + vlen(data.len() as u64) + data.len()
            }
        }
    }

    /// Parses one frame at the reader's position.
    pub fn parse(r: &mut Reader<'a>) -> Result<Frame<'a>, WireError> {
        let ty = r.u8()?;
        Ok(match ty {
            types::PADDING => {
                let run = r.rest().iter().take_while(|&&b| b == 0).count();
                r.bytes(run)?;
                Frame::Padding { len: 1 + run }
            }
            types::PING => Frame::Ping,
            types::ACK => Frame::Ack(AckFrame::parse(r)?),
            types::CLOSE => {
                let code = r.u16()?;
                let len = usize::from(r.u8()?);
                if len > MAX_CLOSE_REASON {
                    return Err(WireError::BadValue);
                }
                Frame::Close { code, reason: r.bytes(len)? }
            }
            types::KEY_UPDATE => Frame::KeyUpdate,
            types::PATH_CHALLENGE => Frame::PathChallenge(r.array()?),
            types::PATH_RESPONSE => Frame::PathResponse(r.array()?),
            types::AUTH => Frame::Auth(r.array()?),
            types::RESET_TOKEN => Frame::ResetToken(r.array()?),
            0x10..=0x13 => {
                let kind = ChannelKind::from_code(ty - types::MESSAGE).ok_or(WireError::UnknownType)?;
                let channel = channel(r)?;
                let id = if kind == ChannelKind::Unreliable { None } else { Some(r.u16()?) };
                let len = r.varint()?;
                let data = r.bytes(usize::try_from(len).map_err(|_| WireError::Truncated)?)?;
                Frame::Message { kind, channel, id, data }
            }
            0x14..=0x17 => {
                let kind = ChannelKind::from_code(ty - types::FRAGMENT).ok_or(WireError::UnknownType)?;
                let channel = channel(r)?;
                let id = r.u16()?;
                let total_len = r.varint()?;
                let offset = r.varint()?;
                let len = r.varint()?;
                if len == 0 || offset.checked_add(len).is_none_or(|end| end > total_len) {
                    return Err(WireError::BadValue);
                }
                let data = r.bytes(usize::try_from(len).map_err(|_| WireError::Truncated)?)?;
                Frame::Fragment { kind, channel, id, total_len, offset, data }
            }
            _ => return Err(WireError::UnknownType),
        })
    }

    /// Writes the frame. Refuses ([`WireError::BadValue`]) what [`parse`]
    /// would refuse, so every emitted frame parses back to itself.
    ///
    /// [`parse`]: Frame::parse
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        if w.remaining() < self.encoded_len() {
            return Err(WireError::Truncated);
        }
        match *self {
            Frame::Padding { len } => {
                if len == 0 {
                    return Err(WireError::BadValue);
                }
                w.put_zeros(len)
            }
            Frame::Ping => w.put_u8(types::PING),
            Frame::Ack(a) => {
                if usize::from(a.range_count) > MAX_ACK_RANGES || a.first_range > a.largest {
                    return Err(WireError::BadValue);
                }
                a.emit(w)
            }
            Frame::Close { code, reason } => {
                if reason.len() > MAX_CLOSE_REASON {
                    return Err(WireError::BadValue);
                }
                w.put_u8(types::CLOSE)?;
                w.put_u16(code)?;
                // ≤ 64 fits a u8.
                w.put_u8(reason.len() as u8)?;
                w.put_bytes(reason)
            }
            Frame::KeyUpdate => w.put_u8(types::KEY_UPDATE),
            Frame::PathChallenge(d) => {
                w.put_u8(types::PATH_CHALLENGE)?;
                w.put_bytes(&d)
            }
            Frame::PathResponse(d) => {
                w.put_u8(types::PATH_RESPONSE)?;
                w.put_bytes(&d)
            }
            Frame::Auth(t) => {
                w.put_u8(types::AUTH)?;
                w.put_bytes(&t)
            }
            Frame::ResetToken(t) => {
                w.put_u8(types::RESET_TOKEN)?;
                w.put_bytes(&t)
            }
            Frame::Message { kind, channel, id, data } => {
                if channel >= MAX_CHANNELS || id.is_some() != (kind != ChannelKind::Unreliable) {
                    return Err(WireError::BadValue);
                }
                w.put_u8(types::MESSAGE + kind.code())?;
                w.put_u8(channel)?;
                if let Some(id) = id {
                    w.put_u16(id)?;
                }
                w.put_varint(data.len() as u64)?;
                w.put_bytes(data)
            }
            Frame::Fragment { kind, channel, id, total_len, offset, data } => {
                let len = data.len() as u64;
                if channel >= MAX_CHANNELS || len == 0 || offset.checked_add(len).is_none_or(|e| e > total_len) {
                    return Err(WireError::BadValue);
                }
                w.put_u8(types::FRAGMENT + kind.code())?;
                w.put_u8(channel)?;
                w.put_u16(id)?;
                w.put_varint(total_len)?;
                w.put_varint(offset)?;
                w.put_varint(len)?;
                w.put_bytes(data)
            }
        }
    }
}

fn channel(r: &mut Reader<'_>) -> Result<u8, WireError> {
    let c = r.u8()?;
    if c >= MAX_CHANNELS { Err(WireError::BadValue) } else { Ok(c) }
}

/// Iterates over the frames of a decrypted packet payload. After the first
/// `Err` it yields nothing more (the caller closes the connection with
/// PROTOCOL_VIOLATION, §3.4).
#[derive(Clone, Debug)]
pub struct Frames<'a> {
    r: Reader<'a>,
    failed: bool,
}

impl<'a> Frames<'a> {
    /// Iterates over `payload`.
    pub fn new(payload: &'a [u8]) -> Frames<'a> {
        Frames { r: Reader::new(payload), failed: false }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.is_empty() {
            return None;
        }
        let f = Frame::parse(&mut self.r);
        self.failed = f.is_err();
        Some(f)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use quickcheck::{Arbitrary, Gen, quickcheck};

    /// Owned storage for an arbitrary frame.
    #[derive(Clone, Debug)]
    pub struct OwnedFrame {
        pub ty: u8,
        pub a: u64,
        pub b: u64,
        pub c: u64,
        pub channel: u8,
        pub id: u16,
        pub bytes: Vec<u8>,
        pub ack_raw: Vec<u8>,
        pub ack_count: u8,
        pub ack_largest: u64,
    }

    impl OwnedFrame {
        pub fn borrow(&self) -> Frame<'_> {
            let kind = ChannelKind::from_code(self.ty % 4).expect("0..4");
            match self.ty % 11 {
                0 => Frame::Padding { len: 1 + self.bytes.len() },
                1 => Frame::Ping,
                2 => Frame::Ack(AckFrame {
                    largest: self.ack_largest,
                    ack_delay: self.b,
                    first_range: self.c,
                    range_count: self.ack_count,
                    ranges_raw: &self.ack_raw,
                }),
                3 => Frame::Close { code: self.id, reason: &self.bytes[..self.bytes.len().min(64)] },
                4 => Frame::KeyUpdate,
                5 => Frame::PathChallenge(self.a.to_be_bytes()),
                6 => Frame::PathResponse(self.b.to_be_bytes()),
                7 => Frame::Auth(core::array::from_fn(|i| self.bytes.get(i).copied().unwrap_or(i as u8))),
                8 => Frame::ResetToken(core::array::from_fn(|i| self.bytes.get(i).copied().unwrap_or(1))),
                9 => Frame::Message {
                    kind,
                    channel: self.channel,
                    id: (kind != ChannelKind::Unreliable).then_some(self.id),
                    data: &self.bytes,
                },
                _ => {
                    let len = self.bytes.len().max(1);
                    let data = if self.bytes.is_empty() { &[7u8][..] } else { &self.bytes[..] };
                    Frame::Fragment {
                        kind,
                        channel: self.channel,
                        id: self.id,
                        total_len: self.a + self.b + len as u64,
                        offset: self.a,
                        data: &data[..len],
                    }
                }
            }
        }
    }

    impl Arbitrary for OwnedFrame {
        fn arbitrary(g: &mut Gen) -> Self {
            let largest = u64::arbitrary(g) % (1 << 62);
            let first_range = u64::arbitrary(g) % (largest / 2 + 1);
            // Build valid additional ranges below the first one.
            let mut smallest = largest - first_range;
            let mut raw = Vec::new();
            let mut count = 0u8;
            for _ in 0..u8::arbitrary(g) % 32 {
                let gap = u64::arbitrary(g) % 1000;
                let len = u64::arbitrary(g) % 1000;
                let Some(end) = smallest.checked_sub(gap + 2) else { break };
                let Some(s) = end.checked_sub(len) else { break };
                smallest = s;
                let mut b = [0u8; 8];
                let n = varint::encode(gap, &mut b).expect("small");
                raw.extend_from_slice(&b[..n]);
                let n = varint::encode(len, &mut b).expect("small");
                raw.extend_from_slice(&b[..n]);
                count += 1;
            }
            let n = usize::arbitrary(g) % 200;
            OwnedFrame {
                ty: u8::arbitrary(g),
                a: u64::arbitrary(g) % (1 << 40),
                b: u64::arbitrary(g) % (1 << 40),
                c: first_range,
                channel: u8::arbitrary(g) % 64,
                id: u16::arbitrary(g),
                bytes: (0..n).map(|_| u8::arbitrary(g)).collect(),
                ack_raw: raw,
                ack_count: count,
                ack_largest: largest,
            }
        }
    }

    fn emit(f: &Frame<'_>) -> Vec<u8> {
        let mut out = vec![0u8; f.encoded_len()];
        let mut w = Writer::new(&mut out);
        f.emit(&mut w).expect("valid frame");
        assert_eq!(w.len(), out.len(), "encoded_len is exact for {f:?}");
        out
    }

    fn parse_one(b: &[u8]) -> Result<Frame<'_>, WireError> {
        let mut r = Reader::new(b);
        let f = Frame::parse(&mut r)?;
        if r.is_empty() { Ok(f) } else { Err(WireError::TrailingBytes) }
    }

    #[test]
    fn layouts() {
        assert_eq!(emit(&Frame::Ping), [0x01]);
        assert_eq!(emit(&Frame::KeyUpdate), [0x06]);
        assert_eq!(emit(&Frame::Close { code: 2, reason: b"bad" }), [0x05, 0, 2, 3, b'b', b'a', b'd']);
        assert_eq!(
            emit(&Frame::Message { kind: ChannelKind::Unreliable, channel: 0, id: None, data: b"hi" }),
            [0x10, 0, 2, b'h', b'i']
        );
        assert_eq!(
            emit(&Frame::Message { kind: ChannelKind::ReliableOrdered, channel: 2, id: Some(0x0102), data: b"" }),
            [0x13, 2, 1, 2, 0]
        );
        assert_eq!(
            emit(&Frame::Fragment {
                kind: ChannelKind::ReliableUnordered,
                channel: 1,
                id: 9,
                total_len: 300,
                offset: 100,
                data: b"xy"
            }),
            [0x16, 1, 0, 9, 0x41, 0x2c, 0x40, 100, 2, b'x', b'y']
        );
        assert!(Frame::Auth([0; 16]).allowed_from(Side::Client));
        assert!(!Frame::Auth([0; 16]).allowed_from(Side::Server));
        assert!(Frame::ResetToken([0; 16]).allowed_from(Side::Server));
        assert!(!Frame::ResetToken([0; 16]).allowed_from(Side::Client));
        assert!(Frame::Ping.allowed_from(Side::Client));
        assert!(Frame::Auth([0; 16]).allowed_from(Side::Server.peer()));
        assert!(ChannelKind::ReliableOrdered.is_reliable() && ChannelKind::ReliableUnordered.is_reliable());
        assert!(!ChannelKind::Unreliable.is_reliable() && !ChannelKind::UnreliableSequenced.is_reliable());
        assert_eq!(ChannelKind::from_code(4), None);
        assert!(Frame::PathResponse([0; 8]).is_ack_eliciting());
        assert!(!Frame::Padding { len: 3 }.is_ack_eliciting());
        assert!(!Frame::Close { code: 0, reason: b"" }.is_ack_eliciting());
    }

    #[test]
    fn ack_ranges_rfc9000_19_3() {
        // largest 100, first range 4 → [96, 100]; gap 1 → next ends 93;
        // len 2 → [91, 93]; gap 0 → ends 89; len 0 → [89, 89].
        let bytes = [0x02, 0x40, 100, 5, 2, 4, 1, 2, 0, 0];
        let Ok(Frame::Ack(a)) = parse_one(&bytes) else { panic!("ack parses") };
        assert_eq!(a.ack_delay_micros(), 40);
        let ranges: Vec<_> = a.ranges().collect();
        assert_eq!(ranges, [(96, 100), (91, 93), (89, 89)]);
        assert_eq!(a.smallest(), 89);
        assert_eq!(emit(&Frame::Ack(a)), bytes);
        // A range below PN 0.
        assert_eq!(parse_one(&[0x02, 5, 0, 0, 6]), Err(WireError::BadValue));
        assert_eq!(parse_one(&[0x02, 5, 0, 1, 2, 2, 0]), Err(WireError::BadValue));
        // 32 additional ranges.
        let mut many = vec![0x02, 0x80, 0, 0x40, 0, 0, 32, 0];
        for _ in 0..32 {
            many.extend_from_slice(&[0, 0]);
        }
        assert_eq!(parse_one(&many), Err(WireError::BadValue));
    }

    #[test]
    fn refusals() {
        // Unknown types, including the unused 0x03, 0x04, 0x0B and 0x18.
        for ty in [0x03u8, 0x04, 0x0B, 0x0F, 0x18, 0x40, 0xFF] {
            assert_eq!(parse_one(&[ty, 0, 0, 0]), Err(WireError::UnknownType), "type {ty:#x}");
        }
        // Channel ≥ 64.
        assert_eq!(parse_one(&[0x10, 64, 0]), Err(WireError::BadValue));
        // Empty FRAGMENT, offset + len > total_len.
        assert_eq!(parse_one(&[0x14, 0, 0, 1, 5, 0, 0]), Err(WireError::BadValue));
        assert_eq!(parse_one(&[0x14, 0, 0, 1, 5, 4, 2, 1, 2]), Err(WireError::BadValue));
        // CLOSE reason > 64 bytes.
        let mut close = vec![0x05, 0, 0, 65];
        close.extend_from_slice(&[b'a'; 65]);
        assert_eq!(parse_one(&close), Err(WireError::BadValue));
        // Truncations.
        assert_eq!(parse_one(&[0x10, 0, 5, 1]), Err(WireError::Truncated));
        assert_eq!(parse_one(&[0x07, 1, 2]), Err(WireError::Truncated));
        // A non-minimal varint length.
        assert_eq!(parse_one(&[0x10, 0, 0x40, 1, 9]), Err(WireError::NonMinimalVarint));
        // Padding run then a frame.
        let payload = [0u8, 0, 0, 0x01, 0, 0x06];
        let fs: Vec<_> = Frames::new(&payload).collect::<Result<_, _>>().expect("valid");
        assert_eq!(fs, [Frame::Padding { len: 3 }, Frame::Ping, Frame::Padding { len: 1 }, Frame::KeyUpdate]);
        // The iterator stops after an error.
        let bad = [0x01, 0x03, 0x01];
        let fs: Vec<_> = Frames::new(&bad).collect();
        assert_eq!(fs, [Ok(Frame::Ping), Err(WireError::UnknownType)]);
        // Emit refuses invalid frames.
        let mut out = [0u8; 128];
        let bad_msg = Frame::Message { kind: ChannelKind::Unreliable, channel: 0, id: Some(1), data: b"" };
        assert_eq!(bad_msg.emit(&mut Writer::new(&mut out)), Err(WireError::BadValue));
        let bad_frag =
            Frame::Fragment { kind: ChannelKind::Unreliable, channel: 0, id: 1, total_len: 1, offset: 1, data: b"x" };
        assert_eq!(bad_frag.emit(&mut Writer::new(&mut out)), Err(WireError::BadValue));
        assert_eq!(Frame::Padding { len: 0 }.emit(&mut Writer::new(&mut out)), Err(WireError::BadValue));
    }

    quickcheck! {
        fn frame_emit_then_parse(f: OwnedFrame) -> bool {
            let frame = f.borrow();
            let bytes = emit(&frame);
            parse_one(&bytes) == Ok(frame)
        }

        fn frames_parse_then_emit(bytes: Vec<u8>) -> bool {
            let mut out = Vec::new();
            for f in Frames::new(&bytes) {
                match f {
                    Ok(f) => out.extend_from_slice(&emit(&f)),
                    Err(_) => return true,
                }
            }
            out == bytes
        }

        fn frame_sequences_roundtrip(fs: Vec<OwnedFrame>) -> bool {
            let mut bytes = Vec::new();
            let mut expected = Vec::new();
            for f in &fs {
                let frame = f.borrow();
                // Adjacent padding runs merge on parse; keep them apart.
                if matches!(frame, Frame::Padding { .. }) && matches!(expected.last(), Some(Frame::Padding { .. })) {
                    continue;
                }
                bytes.extend_from_slice(&emit(&frame));
                expected.push(frame);
            }
            let parsed: Result<Vec<_>, _> = Frames::new(&bytes).collect();
            parsed == Ok(expected)
        }
    }
}
