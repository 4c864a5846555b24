//! The server's long-term root key.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::elliptic_curve::Generate;
use p256::pkcs8::der::Decode;
use p256::pkcs8::{EncodePrivateKey, PrivateKeyInfoRef, SubjectPublicKeyInfoRef};

use super::der::{DER_PKCS8, LABEL_PRIVATE, check_algorithm, decode_pem, encode_pem};
use super::{KeyError, MAX_SIGNATURE_LEN, PublicKey, Zeroizing};
use crate::rng::Rng;

/// The long-term server root key (P-256, ECDSA-SHA256) that signs the
/// SERVER_HELLO blob.
///
/// The secret scalar is zeroized on drop; `Debug` prints only the public key.
#[derive(Clone)]
pub struct ServerKey {
    signing: SigningKey,
    public: PublicKey,
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKey").field("public", &self.public).finish_non_exhaustive()
    }
}

impl ServerKey {
    fn from_signing(signing: SigningKey) -> ServerKey {
        let public = PublicKey::from_p256(p256::PublicKey::from(signing.verifying_key()));
        ServerKey { signing, public }
    }

    /// A new random root key from `rng`.
    pub fn generate(rng: &mut Rng) -> ServerKey {
        ServerKey::from_signing(SigningKey::generate_from_rng(rng))
    }

    /// Parses a PEM `-----BEGIN PRIVATE KEY-----` (unencrypted PKCS#8), such as
    /// `root.key` written by the reference's `mpcli genkey`.
    pub fn from_pkcs8_pem(pem: &str) -> Result<ServerKey, KeyError> {
        let der = decode_pem(pem, LABEL_PRIVATE)?;
        ServerKey::from_pkcs8_der(&der)
    }

    /// Parses an unencrypted PKCS#8 DER private key on P-256.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<ServerKey, KeyError> {
        let info = PrivateKeyInfoRef::from_der(der).map_err(|e| KeyError::InvalidDer {
            expected: DER_PKCS8,
            detail: if SubjectPublicKeyInfoRef::from_der(der).is_ok() {
                "this is a public key (SubjectPublicKeyInfo), not a private key".to_string()
            } else {
                e.to_string()
            },
        })?;
        check_algorithm(&info.algorithm)?;
        let secret = p256::SecretKey::try_from(info).map_err(|_| KeyError::InvalidKey {
            detail: "the private scalar is out of range, or the embedded public key does not match it",
        })?;
        Ok(ServerKey::from_signing(SigningKey::from(secret)))
    }

    /// The unencrypted PKCS#8 DER encoding (zeroized on drop).
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        let doc = self
            .signing
            .to_pkcs8_der()
            // Invariant: encoding a valid P-256 key into a few hundred bytes of
            // DER cannot fail.
            .expect("PKCS#8 encoding of a valid key");
        Zeroizing::new(doc.as_bytes().to_vec())
    }

    /// The PEM `-----BEGIN PRIVATE KEY-----` text (unencrypted PKCS#8, LF line
    /// endings), readable by the reference implementation. Zeroized on drop.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(encode_pem(LABEL_PRIVATE, &self.to_pkcs8_der()))
    }

    /// The public half, to pin in clients.
    pub fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    /// ECDSA-SHA256 over `msg` (deterministic, RFC 6979), DER-encoded, at most
    /// 72 bytes.
    pub fn sign(&self, msg: &[u8]) -> heapless::Vec<u8, MAX_SIGNATURE_LEN> {
        let signature: DerSignature = self
            .signing
            .try_sign(msg)
            // Invariant: ECDSA signing fails only if r or s is zero, which
            // happens with probability about 2^-256.
            .expect("ECDSA signing");
        heapless::Vec::from_slice(signature.as_bytes())
            // Invariant: a DER P-256 signature is at most 72 bytes.
            .expect("DER P-256 signature fits 72 bytes")
    }
}
