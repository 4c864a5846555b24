//! MPGS/1 packet protection: the one owner of sealing and opening a
//! datagram (PROTOCOL.md §3, §10.5, §14).
//!
//! * [`crc32`]: the zlib / IEEE CRC-32 trailer of the two hello datagrams.
//! * [`PacketKey`]: AES-128-GCM, in place, without allocating. The nonce is
//!   `header[0..12]` and the AAD is the whole 20-byte header.
//! * [`derive_packet_key`]: HKDF-SHA256 with [`HKDF_INFO`] over an ephemeral
//!   ECDH secret, giving the 16-byte packet key.
//! * [`seal`] and [`open`]: a whole datagram, header to trailer (CRC or AEAD
//!   tag). The connection, the tests, the fuzz targets and the load
//!   generator all build and check datagrams through these two.

use core::fmt;

#[cfg(not(feature = "_fuzzing"))]
use aes_gcm::aead::AeadInOut;
#[cfg(not(feature = "_fuzzing"))]
use aes_gcm::{Aes128Gcm, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;

use super::wire::{CRC_LEN, HEADER_LEN, Header};
use crate::keys::Zeroizing;

/// Length of the AES-128-GCM packet key.
pub const KEY_LEN: usize = 16;
/// Length of the AES-GCM tag that trails an encrypted datagram.
pub const TAG_LEN: usize = 16;
/// Length of the HKDF salt carried in the SERVER_HELLO blob.
pub const SALT_LEN: usize = 16;
/// The HKDF `info` of MPGS/1 (43 ASCII bytes).
pub const HKDF_INFO: &[u8] = b"01-secp256r1-sha256-aesgcm128-server-client";

// CRC
// ---------------------------------------------------------------------------

/// The zlib / IEEE CRC-32 (reflected polynomial `0xEDB88320`), as used by the
/// CRC trailer of CLIENT_HELLO and SERVER_HELLO datagrams.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

// ---------------------------------------------------------------------------
// AES-128-GCM packet protection
// ---------------------------------------------------------------------------

/// AES-GCM tag verification failed: the datagram was forged, corrupted, or
/// protected with another key. The payload buffer still holds the ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthFailed;

impl fmt::Display for AuthFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "AES-GCM authentication failed: the datagram is forged, corrupted or was protected with another key",
        )
    }
}

impl core::error::Error for AuthFailed {}

/// AES-128-GCM packet protection with the key schedule (AES round keys and
/// GHASH key) computed once per connection.
///
/// Construct it once when the key is derived and reuse it for every datagram:
/// [`seal`](PacketKey::seal) and [`open`](PacketKey::open) work in place and do
/// not allocate. Both directions use the same key; the header magic inside the
/// nonce keeps them apart (PROTOCOL.md §3).
#[derive(Clone)]
pub struct PacketKey {
    #[cfg(not(feature = "_fuzzing"))]
    cipher: Aes128Gcm,
}

/// **`_fuzzing` builds only: NO SECURITY.** The fixed tag of the identity
/// "cipher" that replaces AES-GCM when the private `_fuzzing` feature is on,
/// so a fuzzer can forge authenticated datagrams and reach the message layer.
/// The feature exists for the `fuzz/` crate alone; a build with it protects
/// nothing: payloads go out in clear and anyone can forge them.
#[cfg(feature = "_fuzzing")]
pub const FUZZING_TAG: [u8; TAG_LEN] = *b"FUZZING-NO-CRYPT";

impl fmt::Debug for PacketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.write_str("PacketKey(..)")
    }
}

/// The GCM nonce of a datagram: its first 12 header bytes
/// (`magic ‖ ctime ‖ seq ‖ ack`).
#[cfg(not(feature = "_fuzzing"))]
fn nonce_of(header: &[u8; 20]) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n.copy_from_slice(&header[..12]);
    Nonce::from(n)
}

#[cfg(not(feature = "_fuzzing"))]
impl PacketKey {
    /// Precomputes the AES-128-GCM key schedule for `key`.
    pub fn new(key: &[u8; KEY_LEN]) -> PacketKey {
        PacketKey { cipher: Aes128Gcm::new(&(*key).into()) }
    }

    /// Encrypts `payload` in place and returns the tag.
    ///
    /// The nonce is `header[0..12]` and the AAD is the whole 20-byte header, so
    /// the header must be final (including `length`) before sealing. The caller
    /// must never seal two datagrams with the same `(magic, ctime, seq, ack)`.
    pub fn seal(&self, header: &[u8; 20], payload: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce_of(header), header, payload.into())
            // Invariant: GCM only refuses plaintexts above 64 GiB or AAD above
            // 2 EiB; a datagram payload is below 64 KiB and the AAD is 20 bytes.
            .expect("datagram payload within AES-GCM limits");
        tag.into()
    }

    /// Verifies `tag` and decrypts `payload` in place.
    ///
    /// On `Err(AuthFailed)` nothing was decrypted: `payload` still holds the
    /// ciphertext, so no unauthenticated plaintext is ever exposed.
    pub fn open(&self, header: &[u8; 20], payload: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), AuthFailed> {
        let tag = Tag::from(*tag);
        self.cipher.decrypt_inout_detached(&nonce_of(header), header, payload.into(), &tag).map_err(|_| AuthFailed)
    }
}

/// **NO SECURITY: `_fuzzing` builds only.** The payload is left in clear and
/// the tag is [`FUZZING_TAG`], so a fuzzer can forge "authenticated"
/// datagrams. Compiled only with the private `_fuzzing` feature, which only
/// the `fuzz/` crate enables; never ship a build with it.
#[cfg(feature = "_fuzzing")]
impl PacketKey {
    /// Ignores `key` (`_fuzzing` build: no security).
    pub fn new(key: &[u8; KEY_LEN]) -> PacketKey {
        let _ = key;
        PacketKey {}
    }

    /// Leaves `payload` in clear and returns [`FUZZING_TAG`] (`_fuzzing`
    /// build: no security).
    pub fn seal(&self, header: &[u8; 20], payload: &mut [u8]) -> [u8; TAG_LEN] {
        let _ = (header, payload);
        FUZZING_TAG
    }

    /// Accepts any payload whose tag is [`FUZZING_TAG`] (`_fuzzing` build:
    /// no security).
    pub fn open(&self, header: &[u8; 20], payload: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), AuthFailed> {
        let _ = (header, payload);
        if *tag == FUZZING_TAG { Ok(()) } else { Err(AuthFailed) }
    }
}

/// The packet key: HKDF-SHA256(IKM = `shared_x`, salt, info = [`HKDF_INFO`],
/// L = 16) (PROTOCOL.md §10.5). The key is wiped when dropped.
pub fn derive_packet_key(shared_x: &[u8; 32], salt: &[u8; SALT_LEN]) -> Zeroizing<[u8; KEY_LEN]> {
    let hk = Hkdf::<Sha256>::new(Some(salt), shared_x);
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    hk.expand(HKDF_INFO, key.as_mut())
        // Invariant: HKDF-SHA256 can expand up to 255 * 32 bytes; we ask for 16.
        .expect("HKDF-SHA256 output of 16 bytes");
    key
}

// ---------------------------------------------------------------------------
// Whole datagrams
// ---------------------------------------------------------------------------

/// Why a datagram did not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The lengths in the header do not match the datagram.
    Malformed,
    /// The CRC trailer does not match.
    BadCrc,
    /// The AEAD tag does not verify.
    AuthFailed,
}

/// Completes a datagram in `buf` whose payload (`payload_len` bytes) is
/// already written after the header's place: writes `hdr` (its `length` set
/// to `payload_len`) and the trailer, sealing the payload in place under
/// `key`, or appending the CRC without one. Returns the datagram's length.
///
/// Panics if `buf` is shorter than header, payload and trailer.
#[inline]
pub fn seal(buf: &mut [u8], mut hdr: Header, payload_len: usize, key: Option<&PacketKey>) -> usize {
    // Invariant: every MPGS/1 payload is below 1500 bytes.
    hdr.length = u16::try_from(payload_len).expect("a datagram payload fits the u16 length field");
    let (head, rest) = buf.split_at_mut(HEADER_LEN);
    // Invariant: `split_at_mut(HEADER_LEN)` gives a head of exactly HEADER_LEN bytes.
    let head: &mut [u8; HEADER_LEN] = head.try_into().expect("split at HEADER_LEN");
    hdr.emit(head);
    match key {
        Some(key) => {
            let tag = key.seal(head, &mut rest[..payload_len]);
            rest[payload_len..payload_len + TAG_LEN].copy_from_slice(&tag);
            HEADER_LEN + payload_len + TAG_LEN
        }
        None => {
            let end = HEADER_LEN + payload_len;
            let crc = crc32(&buf[..end]);
            buf[end..end + CRC_LEN].copy_from_slice(&crc.to_be_bytes());
            end + CRC_LEN
        }
    }
}

/// Checks the trailer of a datagram whose header `hdr` parsed: the CRC
/// without a key, the AEAD tag under `key` (decrypting the payload in
/// place). Returns the payload's end (the header ends at [`HEADER_LEN`]).
#[inline]
pub fn open(hdr: &Header, datagram: &mut [u8], key: Option<&PacketKey>) -> Result<usize, OpenError> {
    match key {
        None => open_crc(hdr, datagram),
        Some(key) => {
            let end = hdr.payload_end(datagram.len(), TAG_LEN).map_err(|_| OpenError::Malformed)?;
            let (head, rest) = datagram.split_at_mut(HEADER_LEN);
            let head: &[u8; HEADER_LEN] = (&*head).try_into().map_err(|_| OpenError::Malformed)?;
            let (payload, rest) = rest.split_at_mut(end - HEADER_LEN);
            let tag: &[u8; TAG_LEN] =
                rest.get(..TAG_LEN).and_then(|t| t.try_into().ok()).ok_or(OpenError::Malformed)?;
            key.open(head, payload, tag).map_err(|_| OpenError::AuthFailed)?;
            Ok(end)
        }
    }
}

/// [`open`] without a key, on an immutable datagram: checks the CRC trailer
/// and returns the payload's end.
pub fn open_crc(hdr: &Header, datagram: &[u8]) -> Result<usize, OpenError> {
    let end = hdr.payload_end(datagram.len(), CRC_LEN).map_err(|_| OpenError::Malformed)?;
    let trailer = datagram.get(end..end + CRC_LEN).ok_or(OpenError::Malformed)?;
    let expected = u32::from_be_bytes(trailer.try_into().map_err(|_| OpenError::Malformed)?);
    if crc32(&datagram[..end]) != expected {
        return Err(OpenError::BadCrc);
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::EphemeralKey;
    use quickcheck::quickcheck;
    use std::string::ToString;
    use std::vec::Vec;

    const VECTORS: &str = include_str!("../../tests/data/mpgs1_vectors.json");

    fn vectors() -> serde_json::Value {
        serde_json::from_str(VECTORS).expect("vector file is JSON")
    }

    fn hex(s: &str) -> Vec<u8> {
        let s = s.trim_start_matches("0x");
        let s = if s.len() % 2 == 1 { std::format!("0{s}") } else { s.to_string() };
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    fn hex_str(v: &serde_json::Value) -> Vec<u8> {
        hex(v.as_str().expect("hex string"))
    }

    fn arr<const N: usize>(v: &[u8]) -> [u8; N] {
        v.try_into().expect("length")
    }

    #[test]
    fn crc32_is_zlib() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn kdf_vector() {
        let v = vectors();
        let k = &v["kdf"];
        let mut c = [0u8; 32];
        let cs = hex_str(&k["client_scalar"]);
        c[32 - cs.len()..].copy_from_slice(&cs);
        let mut s = [0u8; 32];
        let ss = hex_str(&k["server_scalar"]);
        s[32 - ss.len()..].copy_from_slice(&ss);
        let client = EphemeralKey::from_scalar_bytes(&c).expect("client scalar");
        let server = EphemeralKey::from_scalar_bytes(&s).expect("server scalar");

        assert_eq!(client.public_spki().to_vec(), hex_str(&k["client_pub_der_spki"]));
        assert_eq!(server.public_spki().to_vec(), hex_str(&k["server_pub_der_spki"]));

        let x1 = client.agree(&server.public_spki()).expect("agree c");
        let x2 = server.agree(&client.public_spki()).expect("agree s");
        assert_eq!(x1, x2);
        assert_eq!(x1.to_vec(), hex_str(&k["ecdh_shared_x"]));

        assert_eq!(k["info"].as_str().expect("info").as_bytes(), HKDF_INFO);
        let salt: [u8; SALT_LEN] = arr(&hex_str(&k["salt"]));
        let key = derive_packet_key(&x1, &salt);
        assert_eq!(key.to_vec(), hex_str(&k["aes128_key"]));
    }

    /// Splits datagram `i` into (header, payload, trailer).
    fn datagram(v: &serde_json::Value, i: usize) -> ([u8; 20], Vec<u8>, Vec<u8>) {
        let d = hex_str(&v["datagrams"][i]["datagram"]);
        let header: [u8; 20] = arr(&d[..20]);
        let len = usize::from(u16::from_be_bytes([header[13], header[14]]));
        (header, d[20..20 + len].to_vec(), d[20 + len..].to_vec())
    }

    #[test]
    fn aead_datagram_vectors_open_and_reseal() {
        let v = vectors();
        let key = PacketKey::new(&arr(&hex_str(&v["aes_key"])));
        for i in 0..4 {
            let (header, ciphertext, tag) = datagram(&v, i);
            let tag: [u8; TAG_LEN] = arr(&tag);
            let mut buf = ciphertext.clone();
            key.open(&header, &mut buf, &tag).unwrap_or_else(|_| panic!("datagram {i} authenticates"));
            // The plaintext payload starts with the msgseq of the first
            // message when there is one.
            let resealed_tag = {
                let mut again = buf.clone();
                let t = key.seal(&header, &mut again);
                assert_eq!(again, ciphertext, "datagram {i} ciphertext");
                t
            };
            assert_eq!(resealed_tag, tag, "datagram {i} tag");

            // One-bit flips anywhere fail, and leave the ciphertext untouched.
            for bit in 0..(20 * 8) {
                let mut h = header;
                h[bit / 8] ^= 1 << (bit % 8);
                let mut b = ciphertext.clone();
                assert_eq!(key.open(&h, &mut b, &tag), Err(AuthFailed));
                assert_eq!(b, ciphertext);
            }
            for bit in 0..(ciphertext.len() * 8) {
                let mut b = ciphertext.clone();
                b[bit / 8] ^= 1 << (bit % 8);
                let flipped = b.clone();
                assert_eq!(key.open(&header, &mut b, &tag), Err(AuthFailed));
                assert_eq!(b, flipped);
            }
            for bit in 0..(TAG_LEN * 8) {
                let mut t = tag;
                t[bit / 8] ^= 1 << (bit % 8);
                let mut b = ciphertext.clone();
                assert_eq!(key.open(&header, &mut b, &t), Err(AuthFailed));
            }
        }
        // Datagram 0 decrypts to msgseq 1, type-less body "hello" per the vector.
        let (header, ciphertext, tag) = datagram(&v, 0);
        let mut buf = ciphertext;
        key.open(&header, &mut buf, &arr(&tag)).expect("opens");
        assert!(buf.ends_with(b"hello"));
    }

    #[test]
    fn wrong_key_fails() {
        let v = vectors();
        let key = PacketKey::new(&[0x55; KEY_LEN]);
        let (header, ciphertext, tag) = datagram(&v, 0);
        let mut buf = ciphertext;
        assert_eq!(key.open(&header, &mut buf, &arr(&tag)), Err(AuthFailed));
    }

    #[test]
    fn crc_datagram_vector() {
        let v = vectors();
        let (header, payload, trailer) = datagram(&v, 4);
        let mut covered = header.to_vec();
        covered.extend_from_slice(&payload);
        assert_eq!(trailer.len(), 4);
        assert_eq!(crc32(&covered), u32::from_be_bytes(arr(&trailer)));
    }

    #[test]
    fn seal_open_round_trip_empty_and_long() {
        let key = PacketKey::new(&[7; KEY_LEN]);
        let header = *b"FSOS\x5f\0\0\0\0\x01\0\0\x04\0\0\0\0\0\0\0";
        for len in [0usize, 1, 15, 16, 17, 1400] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut buf = plain.clone();
            let tag = key.seal(&header, &mut buf);
            if len > 0 {
                assert_ne!(buf, plain);
            }
            key.open(&header, &mut buf, &tag).expect("round trip");
            assert_eq!(buf, plain);
        }
        assert_eq!(std::format!("{key:?}"), "PacketKey(..)");
    }

    quickcheck! {
        fn prop_seal_open_round_trip(key: Vec<u8>, header: Vec<u8>, payload: Vec<u8>) -> bool {
            let mut k = [0u8; KEY_LEN];
            for (d, s) in k.iter_mut().zip(&key) { *d = *s; }
            let mut h = [0u8; 20];
            for (d, s) in h.iter_mut().zip(&header) { *d = *s; }
            let pk = PacketKey::new(&k);
            let mut buf = payload.clone();
            let tag = pk.seal(&h, &mut buf);
            pk.open(&h, &mut buf, &tag).is_ok() && buf == payload
        }
    }
}
