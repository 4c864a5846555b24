//! The TLV block of HELLO2 and SERVER_HELLO, and the transport parameters
//! (MPGS2.md §2.3).
//!
//! A block is `u16 E ‖ TLVs[E]`, each TLV `u8 type ‖ u16 len ‖ value`, in
//! strictly ascending type order. Types below 0x80 must be known to the
//! message that carries them; 0x80–0xFF are optional and skipped. Parsing
//! keeps the skipped tail as raw bytes, so parse and emit are exact inverses.

use super::buf::{Reader, Writer};
use super::{CID_LEN, MIN_UDP_PAYLOAD, RANDOM_LEN, WireError};

/// protocol_id (u64), required in HELLO2.
pub const T_PROTOCOL_ID: u8 = 0x01;
/// client_random (16 B), required in HELLO2.
pub const T_CLIENT_RANDOM: u8 = 0x02;
/// versions (1–8 B), required in HELLO2.
pub const T_VERSIONS: u8 = 0x03;
/// suites (1–4 B), required in HELLO2.
pub const T_SUITES: u8 = 0x04;
/// The connection id the peer must write on packets to the sender (0 or 8 B).
pub const T_RECV_CID: u8 = 0x05;
/// cookie (21 B) from HELLO_RETRY.
pub const T_COOKIE: u8 = 0x06;
/// connect_token (≤ 512 B).
pub const T_CONNECT_TOKEN: u8 = 0x07;
/// idle_timeout_ms, the first transport parameter; 0x10–0x16 are parameters.
pub const T_PARAMS_FIRST: u8 = 0x10;
/// The server identity (§2.6), in SERVER_HELLO only.
pub const T_IDENTITY: u8 = 0x20;
/// First optional type: from here on unknown types are skipped.
pub const T_OPTIONAL_FIRST: u8 = 0x80;

/// Most bytes a HELLO2 TLV block can hold (1174 − 103).
pub const MAX_HELLO_TLV_LEN: usize = 1071;
/// Longest versions list.
pub const MAX_VERSIONS: usize = 8;
/// Longest suites list.
pub const MAX_SUITES: usize = 4;
/// Length of a cookie (§2.4).
pub const COOKIE_LEN: usize = 21;
/// Longest connect token (§2.10).
pub const MAX_TOKEN_LEN: usize = 512;
/// Value length of identity kind 0 (`00 ‖ SHA-256(root SPKI)[0..8]`).
pub const IDENTITY_KIND0_LEN: usize = 9;
/// Value length of identity kind 1 (a delegated certificate).
pub const IDENTITY_KIND1_LEN: usize = 138;

/// Suite 1: AES-128-GCM (P-256, HKDF-SHA256).
pub const SUITE_AES128: u8 = 1;
/// Suite 2: AES-256-GCM (P-256, HKDF-SHA256).
pub const SUITE_AES256: u8 = 2;

/// Lengths of the parameters 0x10..=0x16, in order.
const PARAM_LENS: [usize; 7] = [4, 1, 2, 4, 4, 1, 4];

/// The transport parameters 0x10–0x16 (§2.3) as they appear in one hello:
/// `None` when absent, which means the default (see the getters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportParams {
    /// 0x10: idle timeout in ms (default 5,000; the smaller side wins).
    pub idle_timeout_ms: Option<u32>,
    /// 0x11: max ack delay in ms (default 10).
    pub max_ack_delay_ms: Option<u8>,
    /// 0x12: largest UDP payload the sender accepts (≥ 1200, default 1472).
    pub max_udp_payload: Option<u16>,
    /// 0x13: largest message (default 1 MiB).
    pub max_message_size: Option<u32>,
    /// 0x14: receive window per reliable channel (default 1 MiB).
    pub recv_window: Option<u32>,
    /// 0x15: most fragments of an unreliable message (default 16).
    pub max_unrel_fragments: Option<u8>,
    /// 0x16: receive window over all reliable channels (default 4 MiB).
    pub conn_recv_window: Option<u32>,
}

impl TransportParams {
    /// Every parameter present with its default value.
    pub const DEFAULTS: TransportParams = TransportParams {
        idle_timeout_ms: Some(5_000),
        max_ack_delay_ms: Some(10),
        max_udp_payload: Some(1472),
        max_message_size: Some(1 << 20),
        recv_window: Some(1 << 20),
        max_unrel_fragments: Some(16),
        conn_recv_window: Some(4 << 20),
    };

    /// Idle timeout in ms (0: this side has none, Decision in §2.3).
    pub fn idle_timeout_ms(&self) -> u32 {
        self.idle_timeout_ms.unwrap_or(5_000)
    }
    /// Max ack delay in ms.
    pub fn max_ack_delay_ms(&self) -> u8 {
        self.max_ack_delay_ms.unwrap_or(10)
    }
    /// Largest UDP payload accepted.
    pub fn max_udp_payload(&self) -> u16 {
        self.max_udp_payload.unwrap_or(1472)
    }
    /// Largest message.
    pub fn max_message_size(&self) -> u32 {
        self.max_message_size.unwrap_or(1 << 20)
    }
    /// Receive window per reliable channel.
    pub fn recv_window(&self) -> u32 {
        self.recv_window.unwrap_or(1 << 20)
    }
    /// Most fragments of an unreliable message.
    pub fn max_unrel_fragments(&self) -> u8 {
        self.max_unrel_fragments.unwrap_or(16)
    }
    /// Receive window over all reliable channels.
    pub fn conn_recv_window(&self) -> u32 {
        self.conn_recv_window.unwrap_or(4 << 20)
    }

    /// The idle timeout both sides use: the smaller advertised value, where 0
    /// means "none from this side" (Decision in §2.3, as RFC 9000 §10.1).
    /// `None`: neither side has one.
    pub fn negotiated_idle_timeout_ms(local: &TransportParams, peer: &TransportParams) -> Option<u32> {
        match (local.idle_timeout_ms(), peer.idle_timeout_ms()) {
            (0, 0) => None,
            (0, v) | (v, 0) => Some(v),
            (a, b) => Some(a.min(b)),
        }
    }

    fn as_values(&self) -> [Option<u64>; 7] {
        [
            self.idle_timeout_ms.map(u64::from),
            self.max_ack_delay_ms.map(u64::from),
            self.max_udp_payload.map(u64::from),
            self.max_message_size.map(u64::from),
            self.recv_window.map(u64::from),
            self.max_unrel_fragments.map(u64::from),
            self.conn_recv_window.map(u64::from),
        ]
    }

    /// Encoded length of the parameters that are present.
    pub fn encoded_len(&self) -> usize {
        self.as_values().iter().zip(PARAM_LENS).map(|(v, l)| if v.is_some() { 3 + l } else { 0 }).sum()
    }

    /// Writes the present parameters as TLVs 0x10–0x16.
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        if w.remaining() < self.encoded_len() {
            return Err(WireError::Truncated);
        }
        for (i, (v, l)) in self.as_values().into_iter().zip(PARAM_LENS).enumerate() {
            if let Some(v) = v {
                w.put_u8(T_PARAMS_FIRST + i as u8)?;
                w.put_u16(l as u16)?;
                w.put_bytes(&v.to_be_bytes()[8 - l..])?;
            }
        }
        Ok(())
    }

    /// Takes a parameter TLV (`t` in 0x10..=0x16); checks its exact length
    /// and value (Decision in §2.3: `max_udp_payload` ≥ 1200, as RFC 9000
    /// §18.2).
    fn set(&mut self, t: u8, value: &[u8]) -> Result<(), WireError> {
        let i = usize::from(t - T_PARAMS_FIRST);
        if value.len() != PARAM_LENS[i] {
            return Err(WireError::BadValue);
        }
        let v = value.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        // The casts below are exact: `v` has exactly the parameter's width.
        match t {
            0x10 => self.idle_timeout_ms = Some(v as u32),
            0x11 => self.max_ack_delay_ms = Some(v as u8),
            0x12 => {
                if v < MIN_UDP_PAYLOAD as u64 {
                    return Err(WireError::BadValue);
                }
                self.max_udp_payload = Some(v as u16);
            }
            0x13 => self.max_message_size = Some(v as u32),
            0x14 => self.recv_window = Some(v as u32),
            0x15 => self.max_unrel_fragments = Some(v as u8),
            _ => self.conn_recv_window = Some(v as u32),
        }
        Ok(())
    }
}

/// One TLV of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// Its type.
    pub ty: u8,
    /// Its value.
    pub value: &'a [u8],
}

/// Iterates over the TLVs of a block (without its `u16 E`), enforcing
/// strictly ascending types. Yields `Err` once and then `None`.
#[derive(Clone, Debug)]
pub struct Tlvs<'a> {
    r: Reader<'a>,
    last: Option<u8>,
    failed: bool,
}

impl<'a> Tlvs<'a> {
    /// Iterates over `block`.
    pub fn new(block: &'a [u8]) -> Tlvs<'a> {
        Tlvs { r: Reader::new(block), last: None, failed: false }
    }

    /// The bytes not yet iterated over.
    pub fn rest(&self) -> &'a [u8] {
        self.r.rest()
    }

    fn next_tlv(&mut self) -> Result<Tlv<'a>, WireError> {
        let ty = self.r.u8()?;
        if self.last.is_some_and(|l| ty <= l) {
            return Err(WireError::TlvOrder);
        }
        self.last = Some(ty);
        let len = self.r.u16()?;
        let value = self.r.bytes(usize::from(len))?;
        Ok(Tlv { ty, value })
    }
}

impl<'a> Iterator for Tlvs<'a> {
    type Item = Result<Tlv<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.is_empty() {
            return None;
        }
        let t = self.next_tlv();
        self.failed = t.is_err();
        Some(t)
    }
}

/// Checks that `tail` is a valid run of optional TLVs (all ≥ 0x80, ascending).
fn check_optional_tail(tail: &[u8]) -> Result<(), WireError> {
    for t in Tlvs::new(tail) {
        if t?.ty < T_OPTIONAL_FIRST {
            return Err(WireError::TlvOrder);
        }
    }
    Ok(())
}

/// Writes `t ‖ u16 len ‖ value`.
fn put_tlv(w: &mut Writer<'_>, t: u8, value: &[u8]) -> Result<(), WireError> {
    let len = u16::try_from(value.len()).map_err(|_| WireError::BadValue)?;
    if w.remaining() < 3 + value.len() {
        return Err(WireError::Truncated);
    }
    w.put_u8(t)?;
    w.put_u16(len)?;
    w.put_bytes(value)
}

/// The TLVs of a HELLO2 (§2.3), borrowed from the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelloTlvs<'a> {
    /// 0x01: chosen by the game; a mismatch is dropped silently.
    pub protocol_id: u64,
    /// 0x02: fresh per connection attempt.
    pub client_random: [u8; RANDOM_LEN],
    /// 0x03: versions the client accepts, in preference order (1–8 codes).
    pub versions: &'a [u8],
    /// 0x04: suites the client accepts (1–4 codes).
    pub suites: &'a [u8],
    /// 0x05: the id the server writes on packets to the client; `None` is
    /// the zero-length id.
    pub recv_cid: Option<[u8; CID_LEN]>,
    /// 0x06: the cookie from HELLO_RETRY.
    pub cookie: Option<[u8; COOKIE_LEN]>,
    /// 0x07: an opaque connect token (≤ 512 B).
    pub connect_token: Option<&'a [u8]>,
    /// 0x10–0x16.
    pub params: TransportParams,
    /// Optional TLVs 0x80–0xFF, raw (validated), in order.
    pub extensions: &'a [u8],
}

impl<'a> HelloTlvs<'a> {
    /// Encoded length of the block's TLVs (the `E` of §2.3).
    pub fn encoded_len(&self) -> usize {
        let mut n = 3 + 8 + 3 + RANDOM_LEN + 3 + self.versions.len() + 3 + self.suites.len() + 3;
        n += if self.recv_cid.is_some() { CID_LEN } else { 0 };
        n += self.cookie.map_or(0, |_| 3 + COOKIE_LEN);
        n += self.connect_token.map_or(0, |t| 3 + t.len());
        n + self.params.encoded_len() + self.extensions.len()
    }

    /// Writes the TLVs (without `u16 E`). Refuses ([`WireError::BadValue`])
    /// field lengths outside the table, so nothing unparseable is emitted.
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        if !(1..=MAX_VERSIONS).contains(&self.versions.len())
            || !(1..=MAX_SUITES).contains(&self.suites.len())
            || self.connect_token.is_some_and(|t| t.len() > MAX_TOKEN_LEN)
            || self.params.max_udp_payload.is_some_and(|v| usize::from(v) < MIN_UDP_PAYLOAD)
        {
            return Err(WireError::BadValue);
        }
        check_optional_tail(self.extensions)?;
        if w.remaining() < self.encoded_len() {
            return Err(WireError::Truncated);
        }
        put_tlv(w, T_PROTOCOL_ID, &self.protocol_id.to_be_bytes())?;
        put_tlv(w, T_CLIENT_RANDOM, &self.client_random)?;
        put_tlv(w, T_VERSIONS, self.versions)?;
        put_tlv(w, T_SUITES, self.suites)?;
        put_tlv(w, T_RECV_CID, self.recv_cid.as_ref().map_or(&[][..], |c| &c[..]))?;
        if let Some(c) = &self.cookie {
            put_tlv(w, T_COOKIE, c)?;
        }
        if let Some(t) = self.connect_token {
            put_tlv(w, T_CONNECT_TOKEN, t)?;
        }
        self.params.emit(w)?;
        w.put_bytes(self.extensions)
    }

    /// Parses the TLVs of a block (without `u16 E`).
    pub fn parse(block: &'a [u8]) -> Result<HelloTlvs<'a>, WireError> {
        let mut protocol_id = None;
        let mut client_random = None;
        let mut versions = None;
        let mut suites = None;
        let mut recv_cid = None;
        let mut cookie = None;
        let mut connect_token = None;
        let mut params = TransportParams::default();
        let mut it = Tlvs::new(block);
        let mut extensions: &[u8] = &[];
        loop {
            let before = it.rest();
            let Some(t) = it.next() else { break };
            let t = t?;
            let v = t.value;
            match t.ty {
                T_PROTOCOL_ID => protocol_id = Some(u64::from_be_bytes(v.try_into().map_err(|_| WireError::BadValue)?)),
                T_CLIENT_RANDOM => {
                    client_random = Some(<[u8; RANDOM_LEN]>::try_from(v).map_err(|_| WireError::BadValue)?)
                }
                T_VERSIONS if (1..=MAX_VERSIONS).contains(&v.len()) => versions = Some(v),
                T_SUITES if (1..=MAX_SUITES).contains(&v.len()) => suites = Some(v),
                T_RECV_CID => {
                    recv_cid = Some(match v.len() {
                        0 => None,
                        CID_LEN => Some(<[u8; CID_LEN]>::try_from(v).map_err(|_| WireError::BadValue)?),
                        _ => return Err(WireError::BadValue),
                    })
                }
                T_COOKIE => cookie = Some(<[u8; COOKIE_LEN]>::try_from(v).map_err(|_| WireError::BadValue)?),
                T_CONNECT_TOKEN if v.len() <= MAX_TOKEN_LEN => connect_token = Some(v),
                T_VERSIONS | T_SUITES | T_CONNECT_TOKEN => return Err(WireError::BadValue),
                0x10..=0x16 => params.set(t.ty, v)?,
                ty if ty >= T_OPTIONAL_FIRST => {
                    // Everything from here on is optional: keep it raw.
                    extensions = before;
                    for t in it.by_ref() {
                        t?;
                    }
                    break;
                }
                _ => return Err(WireError::UnknownType),
            }
        }
        Ok(HelloTlvs {
            protocol_id: protocol_id.ok_or(WireError::MissingField)?,
            client_random: client_random.ok_or(WireError::MissingField)?,
            versions: versions.ok_or(WireError::MissingField)?,
            suites: suites.ok_or(WireError::MissingField)?,
            recv_cid: recv_cid.ok_or(WireError::MissingField)?,
            cookie,
            connect_token,
            params,
            extensions,
        })
    }
}

/// The server identity, TLV 0x20 (§2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity<'a> {
    /// Kind 0: the root key signs directly; the value names it by
    /// `SHA-256(root SPKI)[0..8]`.
    Root {
        /// The first 8 bytes of SHA-256 over the root key's SPKI.
        fingerprint: [u8; 8],
    },
    /// Any other kind (1: a delegated certificate, stage 4): its kind byte and
    /// the bytes after it. A client that does not implement it fails the
    /// attempt.
    Other {
        /// The kind byte (never 0).
        kind: u8,
        /// The rest of the value.
        body: &'a [u8],
    },
}

impl<'a> Identity<'a> {
    fn encoded_len(&self) -> usize {
        match self {
            Identity::Root { .. } => IDENTITY_KIND0_LEN,
            Identity::Other { body, .. } => 1 + body.len(),
        }
    }

    fn parse(v: &'a [u8]) -> Result<Identity<'a>, WireError> {
        match v.split_first() {
            Some((0, fp)) => Ok(Identity::Root { fingerprint: fp.try_into().map_err(|_| WireError::BadValue)? }),
            Some((1, body)) if body.len() + 1 != IDENTITY_KIND1_LEN => Err(WireError::BadValue),
            Some((&kind, body)) => Ok(Identity::Other { kind, body }),
            None => Err(WireError::BadValue),
        }
    }
}

/// The TLVs of a SERVER_HELLO (§2.5), borrowed from the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerHelloTlvs<'a> {
    /// 0x05: the server's connection id.
    pub server_cid: [u8; CID_LEN],
    /// 0x10–0x16: the server's parameters.
    pub params: TransportParams,
    /// 0x20: the server identity.
    pub identity: Identity<'a>,
    /// Optional TLVs 0x80–0xFF, raw (validated), in order.
    pub extensions: &'a [u8],
}

impl<'a> ServerHelloTlvs<'a> {
    /// Encoded length of the TLVs (the `E` of §2.5).
    pub fn encoded_len(&self) -> usize {
        3 + CID_LEN + self.params.encoded_len() + 3 + self.identity.encoded_len() + self.extensions.len()
    }

    /// Writes the TLVs (without `u16 E`).
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        match self.identity {
            Identity::Other { kind: 0, .. } => return Err(WireError::BadValue),
            Identity::Other { kind: 1, body } if body.len() + 1 != IDENTITY_KIND1_LEN => {
                return Err(WireError::BadValue);
            }
            _ => {}
        }
        if self.params.max_udp_payload.is_some_and(|v| usize::from(v) < MIN_UDP_PAYLOAD)
            || self.identity.encoded_len() > usize::from(u16::MAX)
        {
            return Err(WireError::BadValue);
        }
        check_optional_tail(self.extensions)?;
        if w.remaining() < self.encoded_len() {
            return Err(WireError::Truncated);
        }
        put_tlv(w, T_RECV_CID, &self.server_cid)?;
        self.params.emit(w)?;
        w.put_u8(T_IDENTITY)?;
        w.put_u16(self.identity.encoded_len() as u16)?;
        match self.identity {
            Identity::Root { fingerprint } => {
                w.put_u8(0)?;
                w.put_bytes(&fingerprint)?;
            }
            Identity::Other { kind, body } => {
                w.put_u8(kind)?;
                w.put_bytes(body)?;
            }
        }
        w.put_bytes(self.extensions)
    }

    /// Parses the TLVs (without `u16 E`): 0x05 (8 B) and 0x20 required,
    /// 0x10–0x16 allowed, no other type below 0x80.
    pub fn parse(block: &'a [u8]) -> Result<ServerHelloTlvs<'a>, WireError> {
        let mut server_cid = None;
        let mut params = TransportParams::default();
        let mut identity = None;
        let mut extensions: &[u8] = &[];
        let mut it = Tlvs::new(block);
        loop {
            let before = it.rest();
            let Some(t) = it.next() else { break };
            let t = t?;
            match t.ty {
                T_RECV_CID => server_cid = Some(<[u8; CID_LEN]>::try_from(t.value).map_err(|_| WireError::BadValue)?),
                0x10..=0x16 => params.set(t.ty, t.value)?,
                T_IDENTITY => identity = Some(Identity::parse(t.value)?),
                ty if ty >= T_OPTIONAL_FIRST => {
                    extensions = before;
                    for t in it.by_ref() {
                        t?;
                    }
                    break;
                }
                _ => return Err(WireError::UnknownType),
            }
        }
        Ok(ServerHelloTlvs {
            server_cid: server_cid.ok_or(WireError::MissingField)?,
            params,
            identity: identity.ok_or(WireError::MissingField)?,
            extensions,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use quickcheck::{Arbitrary, Gen, quickcheck};

    /// Owned storage for an arbitrary HelloTlvs.
    #[derive(Clone, Debug)]
    pub struct OwnedHello {
        pub protocol_id: u64,
        pub client_random: [u8; 16],
        pub versions: Vec<u8>,
        pub suites: Vec<u8>,
        pub recv_cid: Option<[u8; 8]>,
        pub cookie: Option<[u8; 21]>,
        pub token: Option<Vec<u8>>,
        pub params: TransportParams,
        pub extensions: Vec<u8>,
    }

    impl OwnedHello {
        pub fn borrow(&self) -> HelloTlvs<'_> {
            HelloTlvs {
                protocol_id: self.protocol_id,
                client_random: self.client_random,
                versions: &self.versions,
                suites: &self.suites,
                recv_cid: self.recv_cid,
                cookie: self.cookie,
                connect_token: self.token.as_deref(),
                params: self.params,
                extensions: &self.extensions,
            }
        }
    }

    fn arr<const N: usize>(g: &mut Gen) -> [u8; N] {
        core::array::from_fn(|_| u8::arbitrary(g))
    }

    fn bounded_vec(g: &mut Gen, min: usize, max: usize) -> Vec<u8> {
        let n = min + usize::arbitrary(g) % (max - min + 1);
        (0..n).map(|_| u8::arbitrary(g)).collect()
    }

    impl Arbitrary for TransportParams {
        fn arbitrary(g: &mut Gen) -> Self {
            TransportParams {
                idle_timeout_ms: Option::arbitrary(g),
                max_ack_delay_ms: Option::arbitrary(g),
                max_udp_payload: Option::<u16>::arbitrary(g).map(|v| v.max(1200)),
                max_message_size: Option::arbitrary(g),
                recv_window: Option::arbitrary(g),
                max_unrel_fragments: Option::arbitrary(g),
                conn_recv_window: Option::arbitrary(g),
            }
        }
    }

    /// A valid run of optional TLVs.
    pub fn arbitrary_extensions(g: &mut Gen) -> Vec<u8> {
        let mut out = Vec::new();
        let mut ty = 0x7Fu8;
        for _ in 0..usize::arbitrary(g) % 3 {
            let step = 1 + u8::arbitrary(g) % 40;
            let Some(t) = ty.checked_add(step) else { break };
            ty = t;
            let v = bounded_vec(g, 0, 12);
            out.push(ty);
            out.extend_from_slice(&(v.len() as u16).to_be_bytes());
            out.extend_from_slice(&v);
        }
        out
    }

    impl Arbitrary for OwnedHello {
        fn arbitrary(g: &mut Gen) -> Self {
            OwnedHello {
                protocol_id: u64::arbitrary(g),
                client_random: arr(g),
                versions: bounded_vec(g, 1, 8),
                suites: bounded_vec(g, 1, 4),
                recv_cid: bool::arbitrary(g).then(|| arr(g)),
                cookie: bool::arbitrary(g).then(|| arr(g)),
                token: bool::arbitrary(g).then(|| bounded_vec(g, 0, 600).into_iter().take(512).collect()),
                params: TransportParams::arbitrary(g),
                extensions: arbitrary_extensions(g),
            }
        }
    }

    fn emit_hello(h: &HelloTlvs<'_>) -> Vec<u8> {
        let mut out = vec![0u8; h.encoded_len()];
        let mut w = Writer::new(&mut out);
        h.emit(&mut w).expect("valid hello TLVs");
        assert_eq!(w.len(), out.len(), "encoded_len is exact");
        out
    }

    #[test]
    fn minimal_hello_and_defaults() {
        let h = HelloTlvs {
            protocol_id: 7,
            client_random: [1; 16],
            versions: &[2],
            suites: &[1, 2],
            recv_cid: None,
            cookie: None,
            connect_token: None,
            params: TransportParams::default(),
            extensions: &[],
        };
        let bytes = emit_hello(&h);
        assert_eq!(bytes.len(), 11 + 19 + 4 + 5 + 3);
        let p = HelloTlvs::parse(&bytes).expect("parses");
        assert_eq!(p, h);
        assert_eq!(p.params.idle_timeout_ms(), 5_000);
        assert_eq!(p.params.max_udp_payload(), 1472);
        assert_eq!(p.params.conn_recv_window(), 4 << 20);
        assert_eq!(p.params.max_ack_delay_ms(), 10);
        assert_eq!(p.params.max_message_size(), 1 << 20);
        assert_eq!(p.params.recv_window(), 1 << 20);
        assert_eq!(p.params.max_unrel_fragments(), 16);
        assert_eq!(TransportParams::DEFAULTS.encoded_len(), 41);
    }

    #[test]
    fn refusals() {
        let base = OwnedHello {
            protocol_id: 1,
            client_random: [2; 16],
            versions: vec![2],
            suites: vec![1],
            recv_cid: Some([3; 8]),
            cookie: None,
            token: None,
            params: TransportParams::DEFAULTS,
            extensions: vec![],
        };
        let good = emit_hello(&base.borrow());
        assert!(HelloTlvs::parse(&good).is_ok());
        // Swap the first two TLVs: out of order.
        let mut swapped = good[11..30].to_vec();
        swapped.extend_from_slice(&good[..11]);
        swapped.extend_from_slice(&good[30..]);
        assert_eq!(HelloTlvs::parse(&swapped), Err(WireError::TlvOrder));
        // Repeat the first TLV.
        let mut repeated = good[..11].to_vec();
        repeated.extend_from_slice(&good);
        assert_eq!(HelloTlvs::parse(&repeated), Err(WireError::TlvOrder));
        // Missing a required type (drop protocol_id).
        assert_eq!(HelloTlvs::parse(&good[11..]), Err(WireError::MissingField));
        // Unknown type below 0x80.
        let mut unknown = good.clone();
        unknown.extend_from_slice(&[0x30, 0, 0]);
        assert_eq!(HelloTlvs::parse(&unknown), Err(WireError::UnknownType));
        // Unknown type at or above 0x80 is skipped but kept.
        let mut optional = good.clone();
        optional.extend_from_slice(&[0x90, 0, 1, 0xAA]);
        let p = HelloTlvs::parse(&optional).expect("optional TLV skipped");
        assert_eq!(p.extensions, &[0x90, 0, 1, 0xAA]);
        // Parameter of the wrong length: idle_timeout with 2 bytes.
        let mut o = base.clone();
        o.params = TransportParams::default();
        let mut short_param = emit_hello(&o.borrow());
        short_param.extend_from_slice(&[0x10, 0, 2, 0, 1]);
        assert_eq!(HelloTlvs::parse(&short_param), Err(WireError::BadValue));
        // max_udp_payload below 1200.
        let mut small_mtu = emit_hello(&o.borrow());
        small_mtu.extend_from_slice(&[0x12, 0, 2, 0x04, 0xAF]);
        assert_eq!(HelloTlvs::parse(&small_mtu), Err(WireError::BadValue));
        // versions: 9 codes is too many; 0 too few.
        for n in [0usize, 9] {
            let mut bad = good[..30].to_vec();
            bad.extend_from_slice(&[T_VERSIONS, 0, n as u8]);
            bad.extend(core::iter::repeat_n(2, n));
            bad.extend_from_slice(&good[34..]);
            assert_eq!(HelloTlvs::parse(&bad), Err(WireError::BadValue), "{n} versions");
        }
        // Truncated value.
        assert_eq!(HelloTlvs::parse(&good[..good.len() - 1]), Err(WireError::Truncated));
        // recv_cid of 4 bytes.
        let mut o2 = base.clone();
        o2.recv_cid = None;
        let b = emit_hello(&o2.borrow());
        let pos = b.iter().position(|&x| x == T_RECV_CID).expect("recv_cid");
        let mut bad = b[..pos].to_vec();
        bad.extend_from_slice(&[T_RECV_CID, 0, 4, 1, 2, 3, 4]);
        bad.extend_from_slice(&b[pos + 3..]);
        assert_eq!(HelloTlvs::parse(&bad), Err(WireError::BadValue));
    }

    #[test]
    fn idle_timeout_negotiation() {
        let p = |v| TransportParams { idle_timeout_ms: Some(v), ..TransportParams::default() };
        assert_eq!(TransportParams::negotiated_idle_timeout_ms(&p(5000), &p(3000)), Some(3000));
        assert_eq!(TransportParams::negotiated_idle_timeout_ms(&p(0), &p(3000)), Some(3000));
        assert_eq!(TransportParams::negotiated_idle_timeout_ms(&p(0), &p(0)), None);
        assert_eq!(TransportParams::negotiated_idle_timeout_ms(&TransportParams::default(), &p(9000)), Some(5000));
    }

    #[test]
    fn server_hello_tlvs() {
        let s = ServerHelloTlvs {
            server_cid: [9; 8],
            params: TransportParams::DEFAULTS,
            identity: Identity::Root { fingerprint: [4; 8] },
            extensions: &[],
        };
        let mut out = vec![0u8; s.encoded_len()];
        s.emit(&mut Writer::new(&mut out)).expect("valid");
        assert_eq!(out.len(), 64, "E of §2.5 with identity kind 0 and all seven parameters");
        assert_eq!(ServerHelloTlvs::parse(&out), Ok(s));
        // A HELLO2-only type (cookie) is refused in SERVER_HELLO.
        let mut bad = out[..11].to_vec();
        bad.extend_from_slice(&[T_COOKIE, 0, 21]);
        bad.extend_from_slice(&[0; 21]);
        bad.extend_from_slice(&out[11..]);
        assert_eq!(ServerHelloTlvs::parse(&bad), Err(WireError::UnknownType));
        // Missing identity.
        assert_eq!(ServerHelloTlvs::parse(&out[..out.len() - 12]), Err(WireError::MissingField));
        // Kind 1 must be exactly 138 bytes; kind 7 may be anything.
        let k1 = [1u8; 137];
        let s1 = ServerHelloTlvs { identity: Identity::Other { kind: 1, body: &k1 }, ..s };
        let mut o1 = vec![0u8; s1.encoded_len()];
        s1.emit(&mut Writer::new(&mut o1)).expect("valid kind 1");
        assert_eq!(ServerHelloTlvs::parse(&o1), Ok(s1));
        let s7 = ServerHelloTlvs { identity: Identity::Other { kind: 7, body: &[] }, ..s };
        let mut o7 = vec![0u8; s7.encoded_len()];
        s7.emit(&mut Writer::new(&mut o7)).expect("valid kind 7");
        assert_eq!(ServerHelloTlvs::parse(&o7), Ok(s7));
        let bad1 = ServerHelloTlvs { identity: Identity::Other { kind: 1, body: &[1; 10] }, ..s };
        assert_eq!(bad1.emit(&mut Writer::new(&mut [0u8; 300])), Err(WireError::BadValue));
    }

    quickcheck! {
        fn hello_tlvs_emit_then_parse(h: OwnedHello) -> bool {
            let bytes = emit_hello(&h.borrow());
            HelloTlvs::parse(&bytes) == Ok(h.borrow())
        }

        fn hello_tlvs_parse_then_emit(bytes: Vec<u8>) -> bool {
            match HelloTlvs::parse(&bytes) {
                Ok(h) => emit_hello(&h) == bytes,
                Err(_) => true,
            }
        }

        fn hello_tlvs_mutated_never_panic(h: OwnedHello, pos: usize, val: u8) -> bool {
            let mut bytes = emit_hello(&h.borrow());
            let i = pos % bytes.len();
            bytes[i] = val;
            match HelloTlvs::parse(&bytes) {
                Ok(p) => emit_hello(&p) == bytes,
                Err(_) => true,
            }
        }

        fn server_tlvs_roundtrip(cid: u64, params: TransportParams, fp: u64, ext_seed: u64) -> bool {
            let mut g = Gen::new(16);
            let _ = ext_seed;
            let ext = arbitrary_extensions(&mut g);
            let s = ServerHelloTlvs {
                server_cid: cid.to_be_bytes(),
                params,
                identity: Identity::Root { fingerprint: fp.to_be_bytes() },
                extensions: &ext,
            };
            let mut out = vec![0u8; s.encoded_len()];
            s.emit(&mut Writer::new(&mut out)).is_ok() && ServerHelloTlvs::parse(&out) == Ok(s)
        }
    }
}
