//! MPGS/2 keys (MPGS2.md §2.6, §2.7, §3.3, §6.3): transcript hash and
//! signature, ephemeral ECDH, the key schedule with per-direction
//! [`KeyPair`]s, IV ⊕ PN nonces, the key-update ratchet and the exporter,
//! and the one owner of short-packet AEAD ([`PacketKey`]).
//!
//! Secrets are [`Zeroizing`]; AES key schedules are zeroized on drop by
//! `aes-gcm` (feature `zeroize`); `Debug` never prints key material.

use core::fmt;

#[cfg(not(feature = "_fuzzing"))]
use aes_gcm::aead::AeadInOut;
#[cfg(not(feature = "_fuzzing"))]
use aes_gcm::aead::consts::U12;
#[cfg(not(feature = "_fuzzing"))]
use aes_gcm::{Aes128Gcm, Aes256Gcm, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::elliptic_curve::Generate;
use p256::elliptic_curve::sec1::ToSec1Point;
pub use p256::elliptic_curve::zeroize::Zeroizing;
use sha2::{Digest, Sha256};

use super::hello::{SEC1_LEN, SIG_LEN, SPKI_LEN, SPKI_P256_PREFIX};
use super::tlv::{SUITE_AES128, SUITE_AES256};
use super::{RANDOM_LEN, TAG_LEN};
use crate::{PublicKey, Rng, ServerKey};

/// Context of the transcript hash (§2.6).
const TRANSCRIPT_CONTEXT: &[u8] = b"MPGS/2 transcript\0";
/// Context of the SERVER_HELLO signature (§2.6).
const SIGNATURE_CONTEXT: &[u8; 20] = b"MPGS/2 server hello\0";
/// Salt prefix of HKDF-Extract (§2.7).
const SALT_PREFIX: &[u8; 7] = b"MPGS/2\0";
/// Length of an AEAD nonce and of the IVs.
pub const IV_LEN: usize = 12;
/// Length of TH, PRK and traffic secrets.
pub const HASH_LEN: usize = 32;
/// Packets one send key may protect (§6.3: half the RFC 9001 §6.6 AES-GCM
/// confidentiality limit). Until stage 3 initiates key updates, a connection
/// that reaches it is closed (§8).
pub const CONFIDENTIALITY_LIMIT: u64 = 1 << 22;
/// Largest exporter output (the HKDF-SHA256 limit, Decision in §2.7).
pub const MAX_EXPORT_LEN: usize = 255 * HASH_LEN;
/// Length of `SIGNATURE_CONTEXT ‖ TH`.
pub const SIGNATURE_INPUT_LEN: usize = SIGNATURE_CONTEXT.len() + HASH_LEN;

/// A 32-byte value that is zeroized on drop.
pub type Secret = Zeroizing<[u8; HASH_LEN]>;

/// `TH = SHA-256("MPGS/2 transcript\0" ‖ HELLO2 message data ‖
/// SERVER_HELLO[0 .. 102 + E])` (§2.6).
pub fn transcript_hash(hello2_message_data: &[u8], server_hello_signed: &[u8]) -> [u8; HASH_LEN] {
    let mut h = Sha256::new();
    h.update(TRANSCRIPT_CONTEXT);
    h.update(hello2_message_data);
    h.update(server_hello_signed);
    h.finalize().into()
}

/// What the server identity signs: `"MPGS/2 server hello\0" ‖ TH` (§2.6).
pub fn signature_input(th: &[u8; HASH_LEN]) -> [u8; SIGNATURE_INPUT_LEN] {
    let mut out = [0u8; SIGNATURE_INPUT_LEN];
    out[..SIGNATURE_CONTEXT.len()].copy_from_slice(SIGNATURE_CONTEXT);
    out[SIGNATURE_CONTEXT.len()..].copy_from_slice(th);
    out
}

/// The transcript signature with identity kind 0 (the root key signs
/// directly), raw `r ‖ s`; ECDSA-P256-SHA256 with RFC 6979 nonces.
pub fn sign_transcript(root: &ServerKey, th: &[u8; HASH_LEN]) -> [u8; SIG_LEN] {
    let der = root.sign(&signature_input(th));
    let sig = Signature::from_der(&der)
        // Invariant: ServerKey::sign returns a valid DER P-256 signature.
        .expect("ServerKey::sign gives valid DER");
    sig.to_bytes().into()
}

/// Verifies a raw `r ‖ s` transcript signature against a pinned root key.
pub fn verify_transcript(root: &PublicKey, th: &[u8; HASH_LEN], sig: &[u8; SIG_LEN]) -> bool {
    let spki = root.to_spki_der();
    let Ok(key) = VerifyingKey::from_sec1_bytes(&spki[SPKI_P256_PREFIX.len() - 1..]) else { return false };
    let Ok(sig) = Signature::from_slice(sig) else { return false };
    key.verify(&signature_input(th), &sig).is_ok()
}

/// Identity kind 0's value after the kind byte: `SHA-256(root SPKI)[0..8]`.
pub fn root_fingerprint(root: &PublicKey) -> [u8; 8] {
    let d: [u8; 32] = Sha256::digest(root.to_spki_der()).into();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// An ephemeral P-256 key for one handshake; zeroized on drop, not `Clone`
/// (except in `_fuzzing` builds, so a fuzz target copies a fixed handshake).
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub struct Ephemeral {
    secret: p256::SecretKey,
    sec1: [u8; SEC1_LEN],
}

impl fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ephemeral(..)")
    }
}

impl Ephemeral {
    fn from_secret(secret: p256::SecretKey) -> Ephemeral {
        let mut sec1 = [0u8; SEC1_LEN];
        // An uncompressed P-256 point is always 65 bytes: 04 ‖ X ‖ Y.
        sec1.copy_from_slice(secret.public_key().to_sec1_point(false).as_bytes());
        Ephemeral { secret, sec1 }
    }

    /// A fresh key from the endpoint CSPRNG.
    pub fn generate(rng: &mut Rng) -> Ephemeral {
        Ephemeral::from_secret(p256::SecretKey::generate_from_rng(rng))
    }

    /// A key with a fixed scalar (test vectors); `None` if out of range.
    pub fn from_scalar(scalar: &[u8; 32]) -> Option<Ephemeral> {
        p256::SecretKey::from_slice(scalar).ok().map(Ephemeral::from_secret)
    }

    /// The public key, SEC1 uncompressed (SERVER_HELLO).
    pub fn sec1(&self) -> &[u8; SEC1_LEN] {
        &self.sec1
    }

    /// The public key as DER SPKI (HELLO2).
    pub fn spki(&self) -> [u8; SPKI_LEN] {
        let mut out = [0u8; SPKI_LEN];
        let p = SPKI_P256_PREFIX.len() - 1;
        out[..p].copy_from_slice(&SPKI_P256_PREFIX[..p]);
        out[p..].copy_from_slice(&self.sec1);
        out
    }

    /// ECDH with a peer's SEC1 uncompressed point: the shared x-coordinate
    /// `Z`, or `None` for a point that is not on the curve.
    pub fn agree_sec1(&self, peer: &[u8]) -> Option<Secret> {
        let peer = p256::PublicKey::from_sec1_bytes(peer).ok()?;
        let shared = self.secret.diffie_hellman(&peer);
        Some(Zeroizing::new((*shared.raw_secret_bytes()).into()))
    }

    /// ECDH with a peer's DER SPKI (HELLO2's fixed 91-byte form).
    pub fn agree_spki(&self, peer: &[u8; SPKI_LEN]) -> Option<Secret> {
        if !peer.starts_with(&SPKI_P256_PREFIX) {
            return None;
        }
        self.agree_sec1(&peer[SPKI_P256_PREFIX.len() - 1..])
    }
}

/// The AEAD suite (§2.3, TLV 0x04).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// `01`: AES-128-GCM.
    Aes128Gcm,
    /// `02`: AES-256-GCM.
    Aes256Gcm,
}

impl Suite {
    /// The suite of a wire code.
    pub const fn from_code(c: u8) -> Option<Suite> {
        match c {
            SUITE_AES128 => Some(Suite::Aes128Gcm),
            SUITE_AES256 => Some(Suite::Aes256Gcm),
            _ => None,
        }
    }

    /// Its wire code.
    pub const fn code(self) -> u8 {
        match self {
            Suite::Aes128Gcm => SUITE_AES128,
            Suite::Aes256Gcm => SUITE_AES256,
        }
    }

    /// Key length in bytes.
    pub const fn key_len(self) -> usize {
        match self {
            Suite::Aes128Gcm => 16,
            Suite::Aes256Gcm => 32,
        }
    }
}

/// HKDF-Expand from a 32-byte PRK with a multi-part info; `out` ≤ 8160 B.
fn expand(prk: &[u8; HASH_LEN], info: &[&[u8]], out: &mut [u8]) {
    Hkdf::<Sha256>::from_prk(prk)
        // Invariant: a 32-byte PRK is exactly HashLen.
        .expect("32-byte PRK")
        .expand_multi_info(info, out)
        // Invariant: every caller asks for at most 255 · 32 bytes.
        .expect("HKDF output within 255 · HashLen");
}

fn expand32(prk: &[u8; HASH_LEN], info: &[&[u8]]) -> Secret {
    let mut s = Zeroizing::new([0u8; HASH_LEN]);
    expand(prk, info, s.as_mut());
    s
}

/// A value per direction, named from the holder's point of view (quinn's
/// `KeyPair`): `local` protects what this end sends, `remote` opens what
/// the peer sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPair<T> {
    /// For packets this end sends.
    pub local: T,
    /// For packets the peer sends.
    pub remote: T,
}

/// The output of the key schedule for one connection (§2.7).
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub struct Schedule {
    prk: Secret,
    th: [u8; HASH_LEN],
    suite: Suite,
    /// `S_c2s[0]` and `S_s2c[0]` arranged as local/remote for one side.
    pub secrets: KeyPair<Secret>,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule").field("suite", &self.suite).finish_non_exhaustive()
    }
}

impl Schedule {
    /// Runs the key schedule: `PRK = HKDF-Extract("MPGS/2\0" ‖ client_random
    /// ‖ server_random, Z)`, `S_c2s[0] = HKDF-Expand(PRK, "mpgs2 c2s" ‖ TH,
    /// 32)`, `S_s2c[0]` likewise; `side` names which is local.
    pub fn derive(
        side: super::Side,
        shared: &[u8; HASH_LEN],
        client_random: &[u8; RANDOM_LEN],
        server_random: &[u8; RANDOM_LEN],
        th: &[u8; HASH_LEN],
        suite: Suite,
    ) -> Schedule {
        let mut salt = [0u8; SALT_PREFIX.len() + 2 * RANDOM_LEN];
        salt[..7].copy_from_slice(SALT_PREFIX);
        salt[7..23].copy_from_slice(client_random);
        salt[23..].copy_from_slice(server_random);
        let (prk, _) = Hkdf::<Sha256>::extract(Some(&salt), shared);
        let prk: Secret = Zeroizing::new(prk.into());
        let c2s = expand32(&prk, &[b"mpgs2 c2s", th]);
        let s2c = expand32(&prk, &[b"mpgs2 s2c", th]);
        let secrets = match side {
            super::Side::Client => KeyPair { local: c2s, remote: s2c },
            super::Side::Server => KeyPair { local: s2c, remote: c2s },
        };
        Schedule { prk, th: *th, suite, secrets }
    }

    /// The PRK (for the known-answer tests).
    pub fn prk(&self) -> &[u8; HASH_LEN] {
        &self.prk
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// `export(l, n) = HKDF-Expand(PRK, "mpgs2 exp" ‖ TH ‖ u16 n ‖ u8 len(l)
    /// ‖ l, n)` into `out` (`n = out.len()`), a channel binding for
    /// application logins. Refuses labels over 255 B and outputs of 0 or
    /// more than 8160 B.
    pub fn export(&self, label: &[u8], out: &mut [u8]) -> Result<(), ExportError> {
        let label_len = u8::try_from(label.len()).map_err(|_| ExportError::LabelTooLong)?;
        if out.is_empty() || out.len() > MAX_EXPORT_LEN {
            return Err(ExportError::BadLength { max: MAX_EXPORT_LEN });
        }
        // ≤ 8160 fits a u16.
        let n = (out.len() as u16).to_be_bytes();
        expand(&self.prk, &[b"mpgs2 exp", &self.th, &n, &[label_len], label], out);
        Ok(())
    }

    /// The packet protection of both directions at generation 0.
    pub fn into_protection(self) -> KeyPair<DirectionKeys> {
        KeyPair {
            local: DirectionKeys::new(self.suite, &self.secrets.local),
            remote: DirectionKeys::new(self.suite, &self.secrets.remote),
        }
    }
}

/// Why [`Schedule::export`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportError {
    /// The label is longer than 255 bytes; use a shorter label.
    LabelTooLong,
    /// The output must be 1 to `max` bytes long.
    BadLength {
        /// The largest length.
        max: usize,
    },
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::LabelTooLong => f.write_str("exporter label longer than 255 bytes: use a shorter label"),
            ExportError::BadLength { max } => write!(f, "exporter output must be 1 to {max} bytes long"),
        }
    }
}

impl core::error::Error for ExportError {}

/// `key[g] = HKDF-Expand(S[g], "mpgs2 key", 16 | 32)`.
pub fn traffic_key(suite: Suite, secret: &[u8; HASH_LEN]) -> Zeroizing<[u8; 32]> {
    let mut k = Zeroizing::new([0u8; 32]);
    expand(secret, &[b"mpgs2 key"], &mut k[..suite.key_len()]);
    k
}

/// `iv = HKDF-Expand(S[0], "mpgs2 iv", 12)`.
pub fn traffic_iv(secret: &[u8; HASH_LEN]) -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    expand(secret, &[b"mpgs2 iv"], &mut iv);
    iv
}

/// `S[g+1] = HKDF-Expand(S[g], "mpgs2 ku", 32)`.
pub fn next_secret(secret: &[u8; HASH_LEN]) -> Secret {
    expand32(secret, &[b"mpgs2 ku"])
}

/// `nonce = iv ⊕ (00 00 00 00 ‖ pn as u64)` (§3.3).
#[inline]
pub fn nonce(iv: &[u8; IV_LEN], pn: u64) -> [u8; IV_LEN] {
    let mut n = *iv;
    for (a, b) in n[4..].iter_mut().zip(pn.to_be_bytes()) {
        *a ^= b;
    }
    n
}

/// AES-GCM tag verification failed; the payload still holds the ciphertext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthFailed;

/// **`_fuzzing` builds only: NO SECURITY.** A tag that opens a packet of
/// any number under any key: what fuzz targets put on the packets they
/// forge (as hostile input). Packets the core seals carry a tag bound to
/// their nonce and header instead, so a harness can tell them apart.
#[cfg(feature = "_fuzzing")]
pub const FUZZING_TAG: [u8; TAG_LEN] = *b"FUZZING-NO-CRYPT";

// Both variants inline (848 and 1104 bytes): a box would add a pointer
// chase to every seal and open, and a connection holds only four keys.
#[cfg(not(feature = "_fuzzing"))]
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Cipher {
    Aes128(Aes128Gcm),
    Aes256(Aes256Gcm),
}

/// One direction's packet protection at one key generation: the AES-GCM
/// key schedule and the IV. The only code that seals or opens MPGS/2
/// short packets.
#[derive(Clone)]
pub struct PacketKey {
    #[cfg(not(feature = "_fuzzing"))]
    cipher: Cipher,
    iv: [u8; IV_LEN],
}

impl fmt::Debug for PacketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PacketKey(..)")
    }
}

impl PacketKey {
    /// The key for `secret` (generation g) with the connection's `iv`.
    pub fn new(suite: Suite, secret: &[u8; HASH_LEN], iv: [u8; IV_LEN]) -> PacketKey {
        let key = traffic_key(suite, secret);
        #[cfg(feature = "_fuzzing")]
        let _ = key;
        PacketKey {
            #[cfg(not(feature = "_fuzzing"))]
            // Invariant (both expects): the slices are exactly the cipher's
            // key length, 16 and 32 bytes.
            cipher: match suite {
                Suite::Aes128Gcm => Cipher::Aes128(Aes128Gcm::new_from_slice(&key[..16]).expect("16-byte key")),
                Suite::Aes256Gcm => Cipher::Aes256(Aes256Gcm::new_from_slice(&key[..]).expect("32-byte key")),
            },
            iv,
        }
    }

    /// The nonce of packet `pn`.
    #[inline]
    pub fn nonce(&self, pn: u64) -> [u8; IV_LEN] {
        nonce(&self.iv, pn)
    }

    /// Encrypts `payload` in place under packet number `pn` with the whole
    /// header as AAD; returns the tag. The caller never seals two packets
    /// with one `pn` under one key (§3.2).
    #[cfg(not(feature = "_fuzzing"))]
    pub fn seal(&self, pn: u64, header: &[u8], payload: &mut [u8]) -> [u8; TAG_LEN] {
        let n = Nonce::<U12>::from(self.nonce(pn));
        let tag = match &self.cipher {
            Cipher::Aes128(c) => c.encrypt_inout_detached(&n, header, payload.into()),
            Cipher::Aes256(c) => c.encrypt_inout_detached(&n, header, payload.into()),
        }
        // Invariant: GCM refuses only plaintexts over 64 GiB; a packet is
        // under 64 KiB.
        .expect("packet within AES-GCM limits");
        tag.into()
    }

    /// Verifies `tag` and decrypts `payload` in place. On `Err` nothing was
    /// decrypted.
    #[cfg(not(feature = "_fuzzing"))]
    pub fn open(&self, pn: u64, header: &[u8], payload: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), AuthFailed> {
        let n = Nonce::<U12>::from(self.nonce(pn));
        let tag = Tag::from(*tag);
        match &self.cipher {
            Cipher::Aes128(c) => c.decrypt_inout_detached(&n, header, payload.into(), &tag),
            Cipher::Aes256(c) => c.decrypt_inout_detached(&n, header, payload.into(), &tag),
        }
        .map_err(|_| AuthFailed)
    }

    /// **`_fuzzing` builds only: NO SECURITY.** The tag the identity
    /// "cipher" (which replaces AES-GCM with the private `_fuzzing` feature,
    /// so the fuzz targets reach the frame layer) puts on the packets it
    /// seals: the packet's nonce (IV ⊕ PN, so the key generation's IV and
    /// the packet number are bound as AES-GCM binds them) and a CRC-32 of
    /// the header (the AAD). Only the payload is unprotected. With a
    /// constant tag, a late duplicate whose truncated packet number decodes
    /// to a newer, unseen number opened as a new packet, which AES-GCM
    /// refuses (the nonce differs), and fuzzing reported a duplicate
    /// delivery that cannot happen (`fuzz/regressions/mpgs2_channels/`).
    #[cfg(feature = "_fuzzing")]
    fn fuzzing_tag(&self, pn: u64, header: &[u8]) -> [u8; TAG_LEN] {
        let mut tag = [0u8; TAG_LEN];
        tag[..IV_LEN].copy_from_slice(&self.nonce(pn));
        tag[IV_LEN..].copy_from_slice(&crc32fast::hash(header).to_be_bytes());
        tag
    }

    /// `_fuzzing` build, NO SECURITY: leaves `payload` in clear and returns
    /// the fuzzing tag (nonce and header checksum).
    #[cfg(feature = "_fuzzing")]
    pub fn seal(&self, pn: u64, header: &[u8], payload: &mut [u8]) -> [u8; TAG_LEN] {
        let _ = payload;
        self.fuzzing_tag(pn, header)
    }

    /// `_fuzzing` build, NO SECURITY: accepts any payload whose tag is the
    /// fuzzing tag of `pn` and `header` under this key, or the wildcard
    /// [`FUZZING_TAG`] with which fuzz targets forge packets of any number.
    #[cfg(feature = "_fuzzing")]
    pub fn open(&self, pn: u64, header: &[u8], payload: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), AuthFailed> {
        let _ = payload;
        if *tag == FUZZING_TAG || *tag == self.fuzzing_tag(pn, header) { Ok(()) } else { Err(AuthFailed) }
    }
}

/// One direction's secret, IV and current generation (§2.7, §6.3).
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub struct DirectionKeys {
    suite: Suite,
    generation: u64,
    secret: Secret,
    iv: [u8; IV_LEN],
}

impl fmt::Debug for DirectionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectionKeys").field("generation", &self.generation).finish_non_exhaustive()
    }
}

impl DirectionKeys {
    /// Generation 0 from `S[0]`.
    pub fn new(suite: Suite, secret0: &[u8; HASH_LEN]) -> DirectionKeys {
        DirectionKeys { suite, generation: 0, secret: Zeroizing::new(*secret0), iv: traffic_iv(secret0) }
    }

    /// The generation g.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The IV (fixed for the connection).
    pub fn iv(&self) -> &[u8; IV_LEN] {
        &self.iv
    }

    /// `S[g]`.
    pub fn secret(&self) -> &[u8; HASH_LEN] {
        &self.secret
    }

    /// The packet key of generation g.
    pub fn packet_key(&self) -> PacketKey {
        PacketKey::new(self.suite, &self.secret, self.iv)
    }

    /// Moves to generation g + 1; `S[g]` is zeroized.
    pub fn advance(&mut self) {
        self.secret = next_secret(&self.secret);
        self.generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpgs2::Side;
    use crate::{Seed, ServerKey};

    fn pair() -> (KeyPair<DirectionKeys>, KeyPair<DirectionKeys>) {
        let c = Ephemeral::from_scalar(&[0x11; 32]).expect("scalar in range");
        let s = Ephemeral::from_scalar(&[0x22; 32]).expect("scalar in range");
        let z1 = c.agree_sec1(s.sec1()).expect("valid point");
        let z2 = s.agree_spki(&c.spki()).expect("valid point");
        assert_eq!(*z1, *z2);
        let th = [9u8; 32];
        let a = Schedule::derive(Side::Client, &z1, &[1; 16], &[2; 16], &th, Suite::Aes128Gcm);
        let b = Schedule::derive(Side::Server, &z2, &[1; 16], &[2; 16], &th, Suite::Aes128Gcm);
        assert_eq!(*a.secrets.local, *b.secrets.remote);
        assert_eq!(*a.secrets.remote, *b.secrets.local);
        assert_ne!(*a.secrets.local, *a.secrets.remote);
        (a.into_protection(), b.into_protection())
    }

    #[test]
    fn seal_open_both_directions_and_suites() {
        let (client, server) = pair();
        let header = [0x81u8, 1, 2, 3];
        let mut payload = *b"frames go here";
        let tag = client.local.packet_key().seal(7, &header, &mut payload);
        assert_ne!(&payload, b"frames go here");
        // Wrong PN, wrong header, wrong direction: refused and left intact.
        let copy = payload;
        assert_eq!(server.remote.packet_key().open(8, &header, &mut payload, &tag), Err(AuthFailed));
        assert_eq!(payload, copy);
        assert_eq!(server.remote.packet_key().open(7, &[0x80, 1, 2, 3], &mut payload, &tag), Err(AuthFailed));
        assert_eq!(server.local.packet_key().open(7, &header, &mut payload, &tag), Err(AuthFailed));
        server.remote.packet_key().open(7, &header, &mut payload, &tag).expect("opens");
        assert_eq!(&payload, b"frames go here");

        let k256 = PacketKey::new(Suite::Aes256Gcm, &[3; 32], [0; 12]);
        let mut p = [1u8; 40];
        let t = k256.seal(1, b"h", &mut p);
        k256.open(1, b"h", &mut p, &t).expect("opens");
        assert_eq!(p, [1u8; 40]);
        assert_eq!(Suite::from_code(1), Some(Suite::Aes128Gcm));
        assert_eq!(Suite::from_code(3), None);
        assert_eq!(Suite::Aes256Gcm.code(), 2);
    }

    #[test]
    fn key_update_ratchet_follows_both_ends() {
        let (mut client, mut server) = pair();
        let iv = *client.local.iv();
        for g in 1..=3 {
            client.local.advance();
            server.remote.advance();
            assert_eq!(client.local.generation(), g);
            assert_eq!(client.local.iv(), &iv, "the IV is fixed for the connection");
            let mut p = [5u8; 20];
            let t = client.local.packet_key().seal(100 + g, &[0xA0], &mut p);
            server.remote.packet_key().open(100 + g, &[0xA0], &mut p, &t).expect("same generation opens");
            let mut stale = [5u8; 20];
            let t = client.local.packet_key().seal(200, &[0xA0], &mut stale);
            let old = DirectionKeys::new(Suite::Aes128Gcm, server.local.secret());
            assert!(old.packet_key().open(200, &[0xA0], &mut stale, &t).is_err());
        }
    }

    #[test]
    fn no_key_nonce_repeat_over_a_million_packets() {
        // Nonces are iv ⊕ pn, so distinct PNs give distinct nonces; the
        // directions use different IVs and keys. Check both over 10^6 PNs and
        // 50 updates (the key changes, the PN sequence continues).
        let (client, server) = pair();
        let mut seen = std::collections::BTreeSet::new();
        let mut c = client.local;
        let s = server.local;
        let per_gen = 1_000_000 / 50;
        for pn in 0..1_000_000u64 {
            if pn > 0 && pn % per_gen == 0 {
                c.advance();
            }
            assert!(seen.insert((c.generation(), c.nonce_of(pn))), "repeat at pn {pn}");
        }
        // The server direction's nonces never collide with the client's at the same PN.
        assert!((0..1000u64).all(|pn| s.nonce_of(pn) != c.nonce_of(pn)));
    }

    impl DirectionKeys {
        fn nonce_of(&self, pn: u64) -> [u8; IV_LEN] {
            nonce(&self.iv, pn)
        }
    }

    #[test]
    fn signatures_bind_the_transcript() {
        let root = ServerKey::generate(&mut Rng::new(Seed::from_u64(5)));
        let th = transcript_hash(b"hello", b"reply");
        let sig = sign_transcript(&root, &th);
        assert!(verify_transcript(&root.public_key(), &th, &sig));
        let other = transcript_hash(b"hello", b"replY");
        assert!(!verify_transcript(&root.public_key(), &other, &sig));
        let mut bad = sig;
        bad[10] ^= 1;
        assert!(!verify_transcript(&root.public_key(), &th, &bad));
        let stranger = ServerKey::generate(&mut Rng::new(Seed::from_u64(6)));
        assert!(!verify_transcript(&stranger.public_key(), &th, &sig));
        assert_eq!(&signature_input(&th)[..20], b"MPGS/2 server hello\0");
        assert_ne!(root_fingerprint(&root.public_key()), root_fingerprint(&stranger.public_key()));
    }

    #[test]
    fn ephemeral_keys() {
        let mut rng = Rng::new(Seed::from_u64(1));
        let a = Ephemeral::generate(&mut rng);
        let b = Ephemeral::generate(&mut rng);
        assert_ne!(a.sec1(), b.sec1());
        assert_eq!(a.spki()[..27], SPKI_P256_PREFIX);
        // A point off the curve, and a bad SPKI prefix.
        let mut off = *b.sec1();
        off[64] ^= 1;
        assert!(a.agree_sec1(&off).is_none());
        let mut spki = b.spki();
        spki[0] = 0x31;
        assert!(a.agree_spki(&spki).is_none());
        assert!(Ephemeral::from_scalar(&[0; 32]).is_none());
        assert_eq!(alloc::format!("{a:?}"), "Ephemeral(..)");
    }

    #[test]
    fn exporter_limits() {
        let s = Schedule::derive(Side::Client, &[1; 32], &[2; 16], &[3; 16], &[4; 32], Suite::Aes128Gcm);
        let mut a = [0u8; 32];
        let mut b = [0u8; 33];
        s.export(b"x", &mut a).expect("fine");
        s.export(b"x", &mut b).expect("fine");
        assert_ne!(a[..], b[..32], "the length is part of the info");
        assert_eq!(s.export(&[0; 256], &mut a), Err(ExportError::LabelTooLong));
        assert_eq!(s.export(b"x", &mut []), Err(ExportError::BadLength { max: 8160 }));
        let mut big = alloc::vec![0u8; 8161];
        assert!(s.export(b"x", &mut big).is_err());
        assert!(s.export(b"x", &mut big[..8160]).is_ok());
        assert!(!alloc::format!("{}", ExportError::LabelTooLong).is_empty());
        assert_eq!(s.suite(), Suite::Aes128Gcm);
        assert_eq!(s.prk().len(), 32);
    }
}
