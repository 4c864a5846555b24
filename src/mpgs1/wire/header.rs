//! The 20-byte datagram header (PROTOCOL.md §2) and the packet/message
//! types (§4).

use super::{HEADER_LEN, WireError};

/// A packet or message type (§4). The same numbering serves as the header
/// `type` and as each message's type; values above 7 are invalid.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MsgType {
    /// Never sent; a message of this type is ignored.
    Unknown = 0,
    /// First handshake message, C → S, CRC-protected (§10.2).
    ClientHello = 1,
    /// Second handshake message, S → C, CRC-protected (§10.3).
    ServerHello = 2,
    /// Third handshake message, C → S (§10.6).
    ChallengeResp = 3,
    /// Header-only packet (`count = 0`); a keep-alive message with data is ignored.
    KeepAlive = 4,
    /// Graceful close, with empty data (§13).
    Disconnect = 5,
    /// Application message.
    App = 6,
    /// One piece of a large application message (§8).
    AppFragment = 7,
}

impl MsgType {
    /// The type with wire value `v`, or `None` for values above 7.
    #[inline]
    pub const fn from_u8(v: u8) -> Option<MsgType> {
        Some(match v {
            0 => MsgType::Unknown,
            1 => MsgType::ClientHello,
            2 => MsgType::ServerHello,
            3 => MsgType::ChallengeResp,
            4 => MsgType::KeepAlive,
            5 => MsgType::Disconnect,
            6 => MsgType::App,
            7 => MsgType::AppFragment,
            _ => return None,
        })
    }

    /// The wire value of this type.
    #[inline]
    pub const fn to_u8(self) -> u8 {
        self as u8
    }
}

/// The direction of a datagram, which selects its magic (§2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server, magic `FSOS`.
    ToServer,
    /// Server to client, magic `FSOC`.
    ToClient,
}

impl Direction {
    /// The 4 magic bytes of datagrams travelling in this direction.
    #[inline]
    pub const fn magic(self) -> [u8; 4] {
        match self {
            Direction::ToServer => *b"FSOS",
            Direction::ToClient => *b"FSOC",
        }
    }

    /// The opposite direction.
    #[inline]
    pub const fn reverse(self) -> Direction {
        match self {
            Direction::ToServer => Direction::ToClient,
            Direction::ToClient => Direction::ToServer,
        }
    }
}

/// A parsed datagram header (§2), in struct notation `>4sLHHBHBL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Direction, from the magic.
    pub dir: Direction,
    /// Sender's clock in Unix seconds; part of the AEAD nonce, never checked.
    pub ctime: u32,
    /// Packet sequence number (§6).
    pub seq: u16,
    /// Newest packet `seq` received from the peer, `0` for none (§7).
    pub ack: u16,
    /// Type of the first message; [`MsgType::KeepAlive`] when `count = 0`.
    pub ty: MsgType,
    /// Payload length in bytes, excluding the trailer.
    pub length: u16,
    /// Number of messages in the payload.
    pub count: u8,
    /// History of received packets (§7.2).
    pub ack_bits: u32,
}

impl Header {
    /// Parses the first 20 bytes of `datagram`, applying the receiver checks
    /// 1–3 of §2 in order: at least 20 bytes ([`WireError::Truncated`]), the
    /// magic of direction `expect` ([`WireError::BadMagic`], also for the
    /// magic of the other direction), and `type` ≤ 7 ([`WireError::BadType`]).
    ///
    /// Check 4 needs the trailer length: see [`Header::payload_end`].
    #[inline]
    pub fn parse(datagram: &[u8], expect: Direction) -> Result<Header, WireError> {
        let h: &[u8; HEADER_LEN] = datagram.first_chunk::<HEADER_LEN>().ok_or(WireError::Truncated)?;
        let magic = expect.magic();
        if h[0..4] != magic {
            return Err(WireError::BadMagic);
        }
        let ty = MsgType::from_u8(h[12]).ok_or(WireError::BadType)?;
        Ok(Header {
            dir: expect,
            ctime: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            seq: u16::from_be_bytes([h[8], h[9]]),
            ack: u16::from_be_bytes([h[10], h[11]]),
            ty,
            length: u16::from_be_bytes([h[13], h[14]]),
            count: h[15],
            ack_bits: u32::from_be_bytes([h[16], h[17], h[18], h[19]]),
        })
    }

    /// Writes the header's 20 bytes.
    #[inline]
    pub fn emit(&self, out: &mut [u8; HEADER_LEN]) {
        let [m0, m1, m2, m3] = self.dir.magic();
        let [c0, c1, c2, c3] = self.ctime.to_be_bytes();
        let [s0, s1] = self.seq.to_be_bytes();
        let [a0, a1] = self.ack.to_be_bytes();
        let [l0, l1] = self.length.to_be_bytes();
        let [b0, b1, b2, b3] = self.ack_bits.to_be_bytes();
        *out = [m0, m1, m2, m3, c0, c1, c2, c3, s0, s1, a0, a1, self.ty as u8, l0, l1, self.count, b0, b1, b2, b3];
    }

    /// Receiver check 4 of §2: the end of the payload, `20 + length`, when
    /// a datagram of `datagram_len` bytes holds the header, the payload and
    /// a trailer of `trailer_len` bytes ([`super::CRC_LEN`] or
    /// [`super::TAG_LEN`]). The payload is `datagram[20..end]` and the
    /// trailer follows it; bytes after the trailer are ignored.
    ///
    /// Returns [`WireError::Truncated`] when the datagram is too short.
    #[inline]
    pub fn payload_end(&self, datagram_len: usize, trailer_len: usize) -> Result<usize, WireError> {
        let end = HEADER_LEN + usize::from(self.length);
        match end.checked_add(trailer_len) {
            Some(need) if need <= datagram_len => Ok(end),
            _ => Err(WireError::Truncated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::hex;
    use super::*;
    use quickcheck::{Arbitrary, Gen, quickcheck};
    use std::vec::Vec;

    impl Arbitrary for MsgType {
        fn arbitrary(g: &mut Gen) -> MsgType {
            MsgType::from_u8(u8::arbitrary(g) % 8).expect("0..=7 is valid")
        }
    }

    impl Arbitrary for Direction {
        fn arbitrary(g: &mut Gen) -> Direction {
            if bool::arbitrary(g) { Direction::ToServer } else { Direction::ToClient }
        }
    }

    impl Arbitrary for Header {
        fn arbitrary(g: &mut Gen) -> Header {
            Header {
                dir: Direction::arbitrary(g),
                ctime: u32::arbitrary(g),
                seq: u16::arbitrary(g),
                ack: u16::arbitrary(g),
                ty: MsgType::arbitrary(g),
                length: u16::arbitrary(g),
                count: u8::arbitrary(g),
                ack_bits: u32::arbitrary(g),
            }
        }
    }

    #[test]
    fn msg_type_values() {
        for v in 0..=255u8 {
            match MsgType::from_u8(v) {
                Some(t) => {
                    assert!(v <= 7);
                    assert_eq!(t.to_u8(), v);
                }
                None => assert!(v > 7),
            }
        }
    }

    #[test]
    fn magic_bytes() {
        assert_eq!(Direction::ToServer.magic(), [0x46, 0x53, 0x4F, 0x53]);
        assert_eq!(Direction::ToClient.magic(), [0x46, 0x53, 0x4F, 0x43]);
        assert_eq!(Direction::ToServer.reverse(), Direction::ToClient);
    }

    /// §10.7: the loopback capture's CLIENT_HELLO and KEEP_ALIVE headers.
    #[test]
    fn example_exchange_headers() {
        let hello = hex("46534f53 6b00d11d 0001 0000 01 0586 01 00000000");
        let h = Header::parse(&hello, Direction::ToServer).expect("valid header");
        assert_eq!(
            h,
            Header {
                dir: Direction::ToServer,
                ctime: 0x6b00_d11d,
                seq: 1,
                ack: 0,
                ty: MsgType::ClientHello,
                length: 1414,
                count: 1,
                ack_bits: 0,
            }
        );
        assert_eq!(h.payload_end(1438, super::super::CRC_LEN), Ok(1434));
        assert_eq!(h.payload_end(1437, super::super::CRC_LEN), Err(WireError::Truncated));
        let ka = hex("46534f43 6b00d11d 0002 0002 04 0000 00 80000000");
        let k = Header::parse(&ka, Direction::ToClient).expect("valid header");
        assert_eq!((k.ty, k.count, k.length), (MsgType::KeepAlive, 0, 0));
        assert_eq!(k.ack_bits, 0x8000_0000);
        assert_eq!(k.payload_end(36, super::super::TAG_LEN), Ok(20));
    }

    #[test]
    fn checks_in_order() {
        let good = hex("46534f53 00000001 0001 0000 06 0000 00 00000000");
        assert!(Header::parse(&good, Direction::ToServer).is_ok());
        assert_eq!(Header::parse(&good[..19], Direction::ToServer), Err(WireError::Truncated));
        assert_eq!(Header::parse(&[], Direction::ToServer), Err(WireError::Truncated));
        // Wrong direction is a bad magic.
        assert_eq!(Header::parse(&good, Direction::ToClient), Err(WireError::BadMagic));
        for i in 0..4 {
            let mut bad = good.clone();
            bad[i] ^= 0x20;
            assert_eq!(Header::parse(&bad, Direction::ToServer), Err(WireError::BadMagic));
        }
        let mut bad = good.clone();
        bad[12] = 8;
        assert_eq!(Header::parse(&bad, Direction::ToServer), Err(WireError::BadType));
        // Magic is checked before type.
        bad[0] = 0;
        assert_eq!(Header::parse(&bad, Direction::ToServer), Err(WireError::BadMagic));
        // Truncation is checked before magic.
        assert_eq!(Header::parse(&bad[..10], Direction::ToServer), Err(WireError::Truncated));
    }

    #[test]
    fn payload_end_bounds() {
        let mut h = Header {
            dir: Direction::ToServer,
            ctime: 0,
            seq: 1,
            ack: 0,
            ty: MsgType::App,
            length: u16::MAX,
            count: 1,
            ack_bits: 0,
        };
        assert_eq!(h.payload_end(usize::MAX, usize::MAX), Err(WireError::Truncated));
        assert_eq!(h.payload_end(20 + 65535 + 16, 16), Ok(20 + 65535));
        h.length = 0;
        assert_eq!(h.payload_end(20, 0), Ok(20));
        assert_eq!(h.payload_end(19, 0), Err(WireError::Truncated));
    }

    quickcheck! {
        fn parse_never_panics(data: Vec<u8>, to_server: bool) -> bool {
            let dir = if to_server { Direction::ToServer } else { Direction::ToClient };
            match Header::parse(&data, dir) {
                Ok(h) => {
                    let _ = h.payload_end(data.len(), 16);
                    data.len() >= HEADER_LEN && data[..4] == dir.magic()
                }
                Err(_) => true,
            }
        }

        fn emit_parse_round_trip(h: Header, tail: Vec<u8>) -> bool {
            let mut out = [0u8; HEADER_LEN];
            h.emit(&mut out);
            let mut d = out.to_vec();
            d.extend_from_slice(&tail);
            Header::parse(&d, h.dir) == Ok(h)
                && Header::parse(&d, h.dir.reverse()) == Err(WireError::BadMagic)
        }
    }
}
