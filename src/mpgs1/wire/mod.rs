//! The MPGS/1 wire layer: parse and emit over bounded buffers (PROTOCOL.md
//! §2, §5, §8, §10, §11).
//!
//! Everything here is pure byte work. Nothing allocates, nothing touches
//! keys or checksums (the caller verifies the CRC or AEAD trailer, §3), and
//! no input makes anything panic: every read is bounds-checked and a short
//! or malformed input is an [`Err`].
//!
//! * [`header`]: the 20-byte datagram header and the receiver checks 1–4 of §2.
//! * [`frame`]: payload framing (§5), parsed into an iterator of [`Message`]s
//!   and built by a [`PayloadWriter`] that enforces the fit rule.
//! * [`fragment`]: the 6-byte fragment header and our sender's split (§8).
//! * [`handshake`]: the tagged-value encoding (§11) and the three handshake
//!   bodies (§10.2, §10.3, §10.6).
//!
//! The [`Reader`] and [`Writer`] below are the bounded big-endian cursors
//! the other modules are built on.

pub mod fragment;
pub mod frame;
pub mod handshake;
pub mod header;

use core::fmt;

pub use fragment::{FRAGMENT_HEADER_LEN, FragmentHeader};
pub use frame::{Full, Message, Messages, PayloadWriter};
pub use header::{Direction, Header, MsgType};

/// Length of the datagram header (§2).
pub const HEADER_LEN: usize = 20;
/// Length of the CRC-32 trailer of CRC-mode datagrams (§3).
pub const CRC_LEN: usize = 4;
/// Length of the AES-GCM tag trailer of AEAD-mode datagrams (§3).
pub const TAG_LEN: usize = 16;
/// Length of a P-256 public key as DER SubjectPublicKeyInfo with an
/// uncompressed point (§10.2).
pub const SPKI_LEN: usize = 91;

/// Why bytes could not be parsed, or could not be written.
///
/// Every variant means "drop the datagram" on the receive path (§15 rule 11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The input ended before a field, or an output buffer is too small.
    Truncated,
    /// The header magic is not the one of the expected direction.
    BadMagic,
    /// A header or message type above 7, or a handshake object of the wrong
    /// type id.
    BadType,
    /// The payload records do not fill `length` exactly, or a handshake body
    /// has bytes after its last field.
    BadFraming,
    /// A field holds a value outside its allowed range: a wrong tag, a
    /// negative length, a key of the wrong size, a field count other than 1,
    /// or a token outside `0..=0x7FFF_FFFF`.
    BadValue,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "truncated input or output buffer too small",
            WireError::BadMagic => "bad magic for the expected direction",
            WireError::BadType => "invalid packet, message or object type",
            WireError::BadFraming => "malformed payload framing",
            WireError::BadValue => "field value out of range",
        })
    }
}

impl core::error::Error for WireError {}

/// A bounded big-endian reader over a byte slice.
///
/// Each read either consumes exactly the bytes of its field or, when too few
/// remain, returns [`WireError::Truncated`] and consumes nothing.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    start_len: usize,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    #[inline]
    pub const fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, start_len: buf.len() }
    }

    /// Number of bytes not yet read.
    #[inline]
    pub const fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Whether every byte has been read.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Number of bytes read so far.
    #[inline]
    pub const fn consumed(&self) -> usize {
        self.start_len - self.buf.len()
    }

    /// The bytes not yet read, without consuming them.
    #[inline]
    pub const fn rest(&self) -> &'a [u8] {
        self.buf
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let (head, tail) = self.buf.split_first_chunk::<N>().ok_or(WireError::Truncated)?;
        self.buf = tail;
        Ok(*head)
    }

    /// Reads the next `n` bytes.
    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or(WireError::Truncated)?;
        self.buf = tail;
        Ok(head)
    }

    /// Reads a `u8`.
    #[inline]
    pub fn u8(&mut self) -> Result<u8, WireError> {
        self.array().map(u8::from_be_bytes)
    }

    /// Reads a big-endian `u16`.
    #[inline]
    pub fn u16(&mut self) -> Result<u16, WireError> {
        self.array().map(u16::from_be_bytes)
    }

    /// Reads a big-endian `u32`.
    #[inline]
    pub fn u32(&mut self) -> Result<u32, WireError> {
        self.array().map(u32::from_be_bytes)
    }

    /// Reads a big-endian `u64`.
    #[inline]
    pub fn u64(&mut self) -> Result<u64, WireError> {
        self.array().map(u64::from_be_bytes)
    }

    /// Reads an `i8`.
    #[inline]
    pub fn i8(&mut self) -> Result<i8, WireError> {
        self.array().map(i8::from_be_bytes)
    }

    /// Reads a big-endian `i16`.
    #[inline]
    pub fn i16(&mut self) -> Result<i16, WireError> {
        self.array().map(i16::from_be_bytes)
    }

    /// Reads a big-endian `i32`.
    #[inline]
    pub fn i32(&mut self) -> Result<i32, WireError> {
        self.array().map(i32::from_be_bytes)
    }

    /// Reads a big-endian `i64`.
    #[inline]
    pub fn i64(&mut self) -> Result<i64, WireError> {
        self.array().map(i64::from_be_bytes)
    }
}

/// A bounded big-endian writer into a caller buffer.
///
/// A write that does not fit returns [`WireError::Truncated`] and writes
/// nothing; the bytes written before it stay valid.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Writer<'a> {
    /// A writer positioned at the start of `buf`.
    #[inline]
    pub fn new(buf: &'a mut [u8]) -> Writer<'a> {
        Writer { buf, len: 0 }
    }

    /// Number of bytes written so far.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written yet.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of bytes that can still be written.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.len
    }

    /// The bytes written so far.
    #[inline]
    pub fn written(&self) -> &[u8] {
        // `len <= buf.len()` always holds, so the fallback is never taken.
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Reserves the next `n` bytes and returns them for the caller to fill.
    #[inline]
    pub fn reserve(&mut self, n: usize) -> Result<&mut [u8], WireError> {
        let end = self.len.checked_add(n).ok_or(WireError::Truncated)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(WireError::Truncated)?;
        self.len = end;
        Ok(dst)
    }

    /// Writes `b` verbatim.
    #[inline]
    pub fn put_bytes(&mut self, b: &[u8]) -> Result<(), WireError> {
        self.reserve(b.len())?.copy_from_slice(b);
        Ok(())
    }

    /// Writes a `u8`.
    #[inline]
    pub fn put_u8(&mut self, v: u8) -> Result<(), WireError> {
        self.put_bytes(&[v])
    }

    /// Writes a big-endian `u16`.
    #[inline]
    pub fn put_u16(&mut self, v: u16) -> Result<(), WireError> {
        self.put_bytes(&v.to_be_bytes())
    }

    /// Writes a big-endian `u32`.
    #[inline]
    pub fn put_u32(&mut self, v: u32) -> Result<(), WireError> {
        self.put_bytes(&v.to_be_bytes())
    }

    /// Writes a big-endian `u64`.
    #[inline]
    pub fn put_u64(&mut self, v: u64) -> Result<(), WireError> {
        self.put_bytes(&v.to_be_bytes())
    }

    /// Writes an `i8`.
    #[inline]
    pub fn put_i8(&mut self, v: i8) -> Result<(), WireError> {
        self.put_bytes(&v.to_be_bytes())
    }

    /// Writes a big-endian `i16`.
    #[inline]
    pub fn put_i16(&mut self, v: i16) -> Result<(), WireError> {
        self.put_bytes(&v.to_be_bytes())
    }

    /// Writes a big-endian `i32`.
    #[inline]
    pub fn put_i32(&mut self, v: i32) -> Result<(), WireError> {
        self.put_bytes(&v.to_be_bytes())
    }

    /// Writes a big-endian `i64`.
    #[inline]
    pub fn put_i64(&mut self, v: i64) -> Result<(), WireError> {
        self.put_bytes(&v.to_be_bytes())
    }
}

/// Helpers shared by the unit tests of the wire modules.
#[cfg(test)]
pub(crate) mod testutil {
    use std::string::String;
    use std::vec::Vec;

    /// The test vectors file (PROTOCOL.md §17).
    pub fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("../../../tests/data/mpgs1_vectors.json"))
            .expect("vectors file is valid JSON")
    }

    /// Decodes lowercase or uppercase hex, ignoring spaces.
    pub fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .map(|b| (b as char).to_digit(16).expect("hex digit") as u8)
            .collect();
        assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
        digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }

    /// Encodes bytes as lowercase hex.
    pub fn to_hex(b: &[u8]) -> String {
        use core::fmt::Write;
        let mut s = String::new();
        for x in b {
            write!(s, "{x:02x}").expect("writing to a String");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{hex, vectors};
    use super::*;
    use quickcheck::quickcheck;
    use std::vec::Vec;

    #[test]
    fn reader_reads_big_endian_and_stops_at_the_end() {
        let data = hex("01 0203 04050607 08090a0b0c0d0e0f ff");
        let mut r = Reader::new(&data);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(0x0203));
        assert_eq!(r.u32(), Ok(0x0405_0607));
        assert_eq!(r.i64(), Ok(0x0809_0a0b_0c0d_0e0f));
        assert_eq!(r.consumed(), 15);
        assert_eq!(r.rest(), &[0xff]);
        assert_eq!(r.u16(), Err(WireError::Truncated));
        assert_eq!(r.remaining(), 1, "a failed read consumes nothing");
        assert_eq!(r.bytes(2), Err(WireError::Truncated));
        assert_eq!(r.i8(), Ok(-1));
        assert!(r.is_empty());
        assert_eq!(r.bytes(0), Ok(&[][..]));
        assert_eq!(r.u8(), Err(WireError::Truncated));
    }

    #[test]
    fn writer_refuses_to_write_past_the_end() {
        let mut buf = [0u8; 7];
        let mut w = Writer::new(&mut buf);
        assert!(w.is_empty());
        w.put_u16(0x0102).expect("fits");
        w.put_i8(-2).expect("fits");
        assert_eq!(w.put_u64(1), Err(WireError::Truncated));
        assert_eq!(w.len(), 3, "a failed write writes nothing");
        w.put_u32(0x0304_0506).expect("fits exactly");
        assert_eq!(w.remaining(), 0);
        assert_eq!(w.put_u8(0), Err(WireError::Truncated));
        assert_eq!(w.put_bytes(&[]), Ok(()));
        assert_eq!(w.written(), &hex("0102fe03040506")[..]);
    }

    #[test]
    fn display_is_nonempty() {
        use std::string::ToString;
        for e in
            [WireError::Truncated, WireError::BadMagic, WireError::BadType, WireError::BadFraming, WireError::BadValue]
        {
            assert!(!e.to_string().is_empty());
        }
    }

    /// §17: datagrams 0–4 through the header checks, the payload bounds and,
    /// for the CRC datagram, the framing and the hello parser.
    #[test]
    fn vector_datagrams() {
        let v = vectors();
        let grams = v["datagrams"].as_array().expect("datagrams array");
        assert_eq!(grams.len(), 5);
        for (i, g) in grams.iter().enumerate() {
            let bytes = hex(g["datagram"].as_str().expect("hex string"));
            let want = &g["decoded_by_ref"]["hdr"];
            let msgs: Vec<(u16, u8, Vec<u8>)> = g["decoded_by_ref"]["msgs"]
                .as_array()
                .expect("msgs array")
                .iter()
                .map(|m| {
                    (
                        m[0].as_u64().expect("msgseq") as u16,
                        m[1].as_u64().expect("type") as u8,
                        hex(m[2].as_str().expect("data hex")),
                    )
                })
                .collect();
            let dir = if bytes[3] == b'S' { Direction::ToServer } else { Direction::ToClient };
            let other = match dir {
                Direction::ToServer => Direction::ToClient,
                Direction::ToClient => Direction::ToServer,
            };
            assert_eq!(Header::parse(&bytes, other), Err(WireError::BadMagic));
            let h = Header::parse(&bytes, dir).expect("vector header parses");
            assert_eq!(u64::from(h.seq), want["seq"].as_u64().expect("number"));
            assert_eq!(u64::from(h.ack), want["ack"].as_u64().expect("number"));
            assert_eq!(u64::from(h.ack_bits), want["ack_bits"].as_u64().expect("number"));
            assert_eq!(h.ty as u64, want["type"].as_u64().expect("number"));
            assert_eq!(u64::from(h.ctime), want["ctime"].as_u64().expect("number"));
            assert_eq!(usize::from(h.count), msgs.len());
            // The header re-encodes to the same 20 bytes.
            let mut out = [0u8; HEADER_LEN];
            h.emit(&mut out);
            assert_eq!(&out[..], &bytes[..HEADER_LEN]);
            // The payload length is what the reference's messages need.
            let data_total: usize = msgs.iter().map(|m| m.2.len()).sum();
            assert_eq!(usize::from(h.length), data_total + frame::overhead(msgs.len()));
            let crc_mode = i == 4;
            assert_eq!(crc_mode, h.ty == MsgType::ClientHello);
            let trailer = if crc_mode { CRC_LEN } else { TAG_LEN };
            let end = h.payload_end(bytes.len(), trailer).expect("long enough");
            assert_eq!(end + trailer, bytes.len(), "no bytes after the trailer");
            assert_eq!(h.payload_end(bytes.len() - 1, trailer), Err(WireError::Truncated));
            if crc_mode {
                let payload = &bytes[HEADER_LEN..end];
                let got: Vec<(u16, u8, Vec<u8>)> = frame::parse_payload(h.ty, h.count, payload)
                    .expect("framing is valid")
                    .map(|m| (m.msgseq, m.ty as u8, m.data.to_vec()))
                    .collect();
                assert_eq!(got, msgs);
                let body = frame::parse_payload(h.ty, h.count, payload)
                    .expect("framing is valid")
                    .next()
                    .expect("one message")
                    .data;
                assert!(handshake::parse_client_hello(body, 0).is_err());
                assert!(handshake::parse_server_hello(body).is_err());
            }
        }
    }

    quickcheck! {
        fn reader_never_panics(data: Vec<u8>, ops: Vec<(u8, u8)>) -> bool {
            let mut r = Reader::new(&data);
            for (op, n) in ops {
                let before = r.remaining();
                let ok = match op % 9 {
                    0 => r.u8().is_ok(),
                    1 => r.u16().is_ok(),
                    2 => r.u32().is_ok(),
                    3 => r.u64().is_ok(),
                    4 => r.i8().is_ok(),
                    5 => r.i16().is_ok(),
                    6 => r.i32().is_ok(),
                    7 => r.i64().is_ok(),
                    _ => r.bytes(usize::from(n)).is_ok(),
                };
                if !ok && r.remaining() != before {
                    return false;
                }
                if r.consumed() + r.remaining() != data.len() {
                    return false;
                }
            }
            true
        }
    }
}
