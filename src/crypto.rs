//! The cryptography of MPGS/1 (PROTOCOL.md §3, §10, §14).
//!
//! * [`crc32`]: the zlib / IEEE CRC-32 trailer of the two hello datagrams.
//! * [`PacketKey`]: AES-128-GCM packet protection, in place, without allocating.
//!   The nonce is `header[0..12]` and the AAD is the whole 20-byte header.
//! * [`ServerKey`] / [`PublicKey`]: the long-term P-256 root key pair. The
//!   server signs the SERVER_HELLO blob with ECDSA-SHA256 (DER signature), and
//!   clients verify it with the pinned public key.
//! * [`EphemeralKey`] and [`derive_packet_key`]: ephemeral P-256 ECDH, then
//!   HKDF-SHA256 with [`HKDF_INFO`], giving the 16-byte packet key.
//! * Key files: unencrypted PKCS#8 `PRIVATE KEY` and SPKI `PUBLIC KEY` PEM,
//!   the formats `mpcli genkey` of the reference writes, in both directions.
//!
//! Randomness comes only from the caller's [`Rng`]. Secret keys are zeroized
//! on drop by the RustCrypto types that hold them, and no `Debug` output of this
//! module prints secret material.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

#[cfg(not(feature = "_fuzzing"))]
use aes_gcm::aead::AeadInOut;
#[cfg(not(feature = "_fuzzing"))]
use aes_gcm::{Aes128Gcm, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate;
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::pkcs8::der::{Decode, pem};
use p256::pkcs8::spki::AlgorithmIdentifierRef;
use p256::pkcs8::{EncodePrivateKey, LineEnding, ObjectIdentifier, PrivateKeyInfoRef, SubjectPublicKeyInfoRef};
use sha2::{Digest, Sha256};

/// A buffer that is overwritten with zeros when dropped; holds serialized
/// private keys (re-exported from `zeroize`).
pub use p256::elliptic_curve::zeroize::Zeroizing;

use crate::rng::Rng;

/// Length of the AES-128-GCM packet key.
pub const KEY_LEN: usize = 16;
/// Length of the AES-GCM tag that trails an encrypted datagram.
pub const TAG_LEN: usize = 16;
/// Length of a P-256 public key as DER SubjectPublicKeyInfo with an
/// uncompressed point, the only form MPGS/1 puts on the wire.
pub const SPKI_LEN: usize = 91;
/// Length of the HKDF salt carried in the SERVER_HELLO blob.
pub const SALT_LEN: usize = 16;
/// The HKDF `info` of MPGS/1 (43 ASCII bytes).
pub const HKDF_INFO: &[u8] = b"01-secp256r1-sha256-aesgcm128-server-client";
/// Largest DER ECDSA P-256 signature: `30 46 02 21 r(33) 02 21 s(33)`.
pub const MAX_SIGNATURE_LEN: usize = 72;

/// The fixed 26-byte prefix of every P-256 SPKI with an uncompressed point;
/// `04 ‖ X ‖ Y` follows.
pub const SPKI_P256_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

const LABEL_PRIVATE: &str = "PRIVATE KEY";
const LABEL_PUBLIC: &str = "PUBLIC KEY";
const DER_PKCS8: &str = "PKCS#8 PrivateKeyInfo";
const DER_SPKI: &str = "SubjectPublicKeyInfo";

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

// ---------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------
// Key errors
// ---------------------------------------------------------------------------

/// Why a key could not be loaded or saved.
///
/// Every `Display` says what is wrong and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The input is empty (or only whitespace).
    Empty {
        /// The PEM label that was expected: `"PRIVATE KEY"` or `"PUBLIC KEY"`.
        expected: &'static str,
    },
    /// The input is not PEM text (no valid `-----BEGIN ...-----` block).
    NotPem {
        /// The PEM label that was expected: `"PRIVATE KEY"` or `"PUBLIC KEY"`.
        expected: &'static str,
        /// What the PEM decoder objected to.
        detail: String,
    },
    /// The input is PEM, but with another label (another kind of object).
    WrongPemLabel {
        /// The label found, e.g. `"PUBLIC KEY"` or `"EC PRIVATE KEY"`.
        found: String,
        /// The label expected: `"PRIVATE KEY"` or `"PUBLIC KEY"`.
        expected: &'static str,
    },
    /// The DER inside is not the expected ASN.1 structure.
    InvalidDer {
        /// The structure expected: `"PKCS#8 PrivateKeyInfo"` or `"SubjectPublicKeyInfo"`.
        expected: &'static str,
        /// What the DER decoder objected to.
        detail: String,
    },
    /// The key is not an elliptic-curve key at all (e.g. Ed25519 or RSA).
    WrongAlgorithm {
        /// The algorithm found, by name when known, always with its OID.
        found: String,
    },
    /// The key is an elliptic-curve key on another curve than P-256.
    WrongCurve {
        /// The curve found, by name when known, always with its OID.
        found: String,
    },
    /// The structure is right but the key value is not a valid P-256 key
    /// (scalar out of range, point not on the curve, or a private key whose
    /// embedded public key does not match).
    InvalidKey {
        /// Which part is invalid.
        detail: &'static str,
    },
    /// A key file could not be read or written (only produced by the
    /// `std`-only file helpers).
    Io {
        /// The path, as given.
        path: String,
        /// The operation and the OS error.
        message: String,
    },
}

/// A description of the PEM document expected under `label`.
fn describe_expected(label: &str) -> &'static str {
    if label == LABEL_PUBLIC {
        "a PEM 'PUBLIC KEY' (SPKI) such as root.pub"
    } else {
        "a PEM 'PRIVATE KEY' (unencrypted PKCS#8) such as root.key"
    }
}

const GENERATE_HINT: &str = "generate a P-256 root key pair with `mpcli genkey --name root DIR` \
     or ServerKey::generate + write_pem_file (the server loads root.key, clients pin root.pub)";

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty { expected } => write!(
                f,
                "the key data is empty; expected {} — check that the right file was given and \
                 was written completely, or {GENERATE_HINT}",
                describe_expected(expected)
            ),
            KeyError::NotPem { expected, detail } => write!(
                f,
                "the key data is not PEM ({detail}); expected {} beginning with \
                 '-----BEGIN {expected}-----' — pass the PEM file written by `mpcli genkey` or \
                 write_pem_file (for raw DER use from_pkcs8_der / from_spki_der), or {GENERATE_HINT}",
                describe_expected(expected)
            ),
            KeyError::WrongPemLabel { found, expected } => {
                write!(
                    f,
                    "expected {} as written by `mpcli genkey` or write_pem_file; found '{found}' — ",
                    describe_expected(expected)
                )?;
                let hint = match (*expected, found.as_str()) {
                    (LABEL_PUBLIC, "PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY") => {
                        "that is a private key: pass the .pub file to the client and the .key \
                         file to the server (never ship the private key to clients)"
                    }
                    (LABEL_PUBLIC, "CERTIFICATE") => {
                        "extract its public key with `openssl x509 -in CERT -pubkey -noout -out root.pub`"
                    }
                    (LABEL_PRIVATE, "PUBLIC KEY") => {
                        "that is a public key: pass the .key file to the server and the .pub \
                         file to the client"
                    }
                    (LABEL_PRIVATE, "EC PRIVATE KEY") => {
                        "that is a SEC1 EC key; convert it to PKCS#8 with \
                         `openssl pkcs8 -topk8 -nocrypt -in KEY -out root.key`"
                    }
                    (LABEL_PRIVATE, "ENCRYPTED PRIVATE KEY") => {
                        "password-protected keys are not supported; decrypt it with \
                         `openssl pkcs8 -in KEY -out root.key` and protect the file with \
                         permissions instead"
                    }
                    _ => GENERATE_HINT,
                };
                f.write_str(hint)
            }
            KeyError::InvalidDer { expected, detail } => write!(
                f,
                "the key is not a valid DER {expected} ({detail}) — the file is corrupt or in \
                 another format; {GENERATE_HINT}"
            ),
            KeyError::WrongAlgorithm { found } => write!(
                f,
                "the key is a {found} key, but MPGS/1 needs an ECDSA P-256 (secp256r1) key — \
                 {GENERATE_HINT}"
            ),
            KeyError::WrongCurve { found } => write!(
                f,
                "the key is an elliptic-curve key on {found}, but MPGS/1 needs P-256 \
                 (secp256r1, prime256v1) — {GENERATE_HINT}"
            ),
            KeyError::InvalidKey { detail } => write!(
                f,
                "the key is well-formed but not a valid P-256 key ({detail}) — the file is \
                 corrupt; {GENERATE_HINT}"
            ),
            KeyError::Io { path, message } => write!(
                f,
                "key file '{path}': {message} — check the path and its permissions, or \
                 {GENERATE_HINT}"
            ),
        }
    }
}

impl core::error::Error for KeyError {}

/// A readable name for a key algorithm or curve OID, always with the OID.
fn oid_name(oid: &ObjectIdentifier) -> String {
    let name = match oid.to_string().as_str() {
        "1.2.840.10045.2.1" => "EC",
        "1.2.840.10045.3.1.7" => "P-256",
        "1.2.840.10045.3.1.1" => "P-192/prime192v1",
        "1.3.132.0.33" => "P-224/secp224r1",
        "1.3.132.0.34" => "P-384/secp384r1",
        "1.3.132.0.35" => "P-521/secp521r1",
        "1.3.132.0.10" => "secp256k1",
        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1",
        "1.3.36.3.3.2.8.1.1.11" => "brainpoolP384r1",
        "1.3.36.3.3.2.8.1.1.13" => "brainpoolP512r1",
        "1.2.156.10197.1.301" => "SM2",
        "1.3.101.110" => "X25519",
        "1.3.101.111" => "X448",
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        "1.2.840.113549.1.1.1" => "RSA",
        "1.2.840.113549.1.1.10" => "RSA-PSS",
        "1.2.840.10040.4.1" => "DSA",
        "1.2.840.10046.2.1" => "DH",
        _ => return alloc::format!("OID {oid}"),
    };
    alloc::format!("{name} (OID {oid})")
}

/// Checks that an AlgorithmIdentifier says "EC public key on P-256".
fn check_algorithm(alg: &AlgorithmIdentifierRef<'_>) -> Result<(), KeyError> {
    if alg.oid != OID_EC_PUBLIC_KEY {
        return Err(KeyError::WrongAlgorithm { found: oid_name(&alg.oid) });
    }
    match alg.parameters_oid() {
        Ok(curve) if curve == OID_P256 => Ok(()),
        Ok(curve) => Err(KeyError::WrongCurve { found: oid_name(&curve) }),
        Err(_) => Err(KeyError::WrongCurve {
            found: "explicit or missing curve parameters (not a named curve; re-encode \
                    with `openssl ec -param_enc named_curve`)"
                .to_string(),
        }),
    }
}

/// Decodes one PEM document with label `expected` into its DER bytes.
fn decode_pem(input: &str, expected: &'static str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(KeyError::Empty { expected });
    }
    let not_pem = |e: pem::Error| KeyError::NotPem { expected, detail: e.to_string() };
    // Check the label first, so a wrong kind of key gets the precise error
    // even if its body would fail to decode.
    let label = pem::decode_label(input.as_bytes()).map_err(not_pem)?;
    if label != expected {
        return Err(KeyError::WrongPemLabel { found: label.to_string(), expected });
    }
    let (_, der) = pem::decode_vec(input.as_bytes()).map_err(not_pem)?;
    Ok(Zeroizing::new(der))
}

/// PEM-encodes `der` under `label`, LF line endings, 64 columns.
fn encode_pem(label: &str, der: &[u8]) -> String {
    pem::encode_string(label, LineEnding::LF, der)
        // Invariant: encoding only fails for labels with invalid characters or
        // lengths overflowing usize; both labels here are fixed ASCII and a key
        // is a few hundred bytes.
        .expect("PEM encoding of a key")
}

// ---------------------------------------------------------------------------
// Public keys
// ---------------------------------------------------------------------------

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
fn spki_of(key: &p256::PublicKey) -> [u8; SPKI_LEN] {
    let point = key.to_sec1_point(false);
    let mut spki = [0u8; SPKI_LEN];
    spki[..SPKI_P256_PREFIX.len()].copy_from_slice(&SPKI_P256_PREFIX);
    // An uncompressed P-256 point is always 65 bytes: 04 ‖ X ‖ Y.
    spki[SPKI_P256_PREFIX.len()..].copy_from_slice(point.as_bytes());
    spki
}

impl PublicKey {
    fn from_p256(key: p256::PublicKey) -> PublicKey {
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
fn parse_spki(der: &[u8]) -> Result<p256::PublicKey, KeyError> {
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

// ---------------------------------------------------------------------------
// Server root key
// ---------------------------------------------------------------------------

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
    /// [`MAX_SIGNATURE_LEN`] bytes.
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

// ---------------------------------------------------------------------------
// Ephemeral ECDH and key derivation
// ---------------------------------------------------------------------------

/// An ephemeral P-256 ECDH key for one handshake. Zeroized on drop; not
/// `Clone` on purpose; `Debug` prints only the public key.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub struct EphemeralKey {
    secret: p256::SecretKey,
    spki: [u8; SPKI_LEN],
}

impl fmt::Debug for EphemeralKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EphemeralKey { public: ")?;
        for b in &self.spki[SPKI_P256_PREFIX.len()..SPKI_P256_PREFIX.len() + 9] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…, .. }")
    }
}

impl EphemeralKey {
    fn from_secret(secret: p256::SecretKey) -> EphemeralKey {
        let spki = spki_of(&secret.public_key());
        EphemeralKey { secret, spki }
    }

    /// A new random ephemeral key from `rng`.
    pub fn generate(rng: &mut Rng) -> EphemeralKey {
        EphemeralKey::from_secret(p256::SecretKey::generate_from_rng(rng))
    }

    /// A key with a fixed scalar, for test vectors only.
    #[cfg(test)]
    fn from_scalar_bytes(bytes: &[u8; 32]) -> Option<EphemeralKey> {
        let secret = p256::SecretKey::from_bytes(&(*bytes).into()).ok()?;
        Some(EphemeralKey::from_secret(secret))
    }

    /// Our public key as the 91-byte uncompressed SPKI that goes on the wire.
    pub fn public_spki(&self) -> [u8; SPKI_LEN] {
        self.spki
    }

    /// ECDH with the peer's SPKI-encoded public key. Returns the 32-byte
    /// big-endian x-coordinate of the shared point, or `None` if `peer_spki`
    /// is not a valid P-256 SPKI / point. The secret is wiped when dropped.
    pub fn agree(&self, peer_spki: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
        let peer = parse_spki(peer_spki).ok()?;
        Some(self.agree_with(&peer))
    }

    /// ECDH with a peer key already parsed by [`peer_key`].
    pub(crate) fn agree_with(&self, peer: &p256::PublicKey) -> Zeroizing<[u8; 32]> {
        let shared = self.secret.diffie_hellman(peer);
        Zeroizing::new((*shared.raw_secret_bytes()).into())
    }
}

/// Parses and validates a peer's SPKI-encoded P-256 key for ECDH, and
/// returns it with its affine x-coordinate. `P` and `−P` share the
/// x-coordinate, and so does the ECDH secret of either with one server key:
/// the x-coordinate is what tells two clients' session keys apart.
pub(crate) fn peer_key(spki: &[u8]) -> Option<(p256::PublicKey, [u8; 32])> {
    let key = parse_spki(spki).ok()?;
    let canonical = spki_of(&key);
    let x: [u8; 32] = canonical.get(SPKI_P256_PREFIX.len() + 1..SPKI_P256_PREFIX.len() + 33)?.try_into().ok()?;
    Some((key, x))
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
// Key files (std)
// ---------------------------------------------------------------------------

#[cfg(feature = "std")]
mod files {
    use super::{KeyError, PublicKey, ServerKey, Zeroizing};
    use alloc::string::{String, ToString};
    use std::io::Write;
    use std::path::Path;

    fn io_error(path: &Path, op: &str, e: &std::io::Error) -> KeyError {
        KeyError::Io { path: path.display().to_string(), message: alloc::format!("cannot {op}: {e}") }
    }

    fn read(path: &Path) -> Result<Zeroizing<String>, KeyError> {
        std::fs::read_to_string(path).map(Zeroizing::new).map_err(|e| io_error(path, "read", &e))
    }

    impl ServerKey {
        /// Reads a PEM `PRIVATE KEY` file such as `root.key`.
        pub fn read_pem_file(path: impl AsRef<Path>) -> Result<ServerKey, KeyError> {
            ServerKey::from_pkcs8_pem(&read(path.as_ref())?)
        }

        /// Writes the key as a PEM `PRIVATE KEY` file, replacing any existing
        /// file. On Unix the file gets mode 0600 (owner read/write only).
        pub fn write_pem_file(&self, path: impl AsRef<Path>) -> Result<(), KeyError> {
            let path = path.as_ref();
            let err = |e: std::io::Error| io_error(path, "write", &e);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(path).map_err(err)?;
            #[cfg(unix)]
            {
                // `mode` only applies to a new file; tighten an existing one too.
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(err)?;
            }
            file.write_all(self.to_pkcs8_pem().as_bytes()).map_err(err)?;
            file.sync_all().map_err(err)
        }
    }

    impl PublicKey {
        /// Reads a PEM `PUBLIC KEY` file such as `root.pub`.
        pub fn read_pem_file(path: impl AsRef<Path>) -> Result<PublicKey, KeyError> {
            PublicKey::from_public_key_pem(&read(path.as_ref())?)
        }

        /// Writes the key as a PEM `PUBLIC KEY` file, replacing any existing file.
        pub fn write_pem_file(&self, path: impl AsRef<Path>) -> Result<(), KeyError> {
            let path = path.as_ref();
            std::fs::write(path, self.to_public_key_pem()).map_err(|e| io_error(path, "write", &e))
        }
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Seed;
    use quickcheck::quickcheck;
    use std::string::String;
    use std::vec::Vec;

    const VECTORS: &str = include_str!("../tests/data/mpgs1_vectors.json");

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

    fn rng(n: u64) -> Rng {
        Rng::new(Seed::from_u64(n))
    }

    // --- Keys and signatures written by Python `cryptography` 48.0.0 exactly
    // as the reference's `mpcli genkey` does: ec.generate_private_key(SECP256R1()),
    // private_bytes(PEM, PKCS8, NoEncryption()), public_bytes(PEM,
    // SubjectPublicKeyInfo); signatures from key.sign(MSG, ECDSA(SHA256())).

    const PY_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgG8iYN4cziwnuU2xf
IzZUyhknY1U74QatHwo+/LbRIaehRANCAAQ/y+GZuVDW4tt7Shdu50RssAoiwcQD
LHoFFHPZNqURNi9CuYdHGVs2asB82cP2QLLjgFpsgTO1Cgk2hOjnLEVg
-----END PRIVATE KEY-----
";

    const PY_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEP8vhmblQ1uLbe0oXbudEbLAKIsHE
Ayx6BRRz2TalETYvQrmHRxlbNmrAfNnD9kCy44BabIEztQoJNoTo5yxFYA==
-----END PUBLIC KEY-----
";

    const PY_MSG: &[u8] = b"MPGS/1 interop test message";
    /// A Python signature over PY_MSG with s < n/2.
    const PY_SIG_LOW_S: &str = "304502210084de65c7e0517ab1fd949d2bdc31a04209d8fbd571d8131c4c034e1b4c46070e022078867905b1e5837c1f699e6f3c4ae1861a2af906ed20bf86e937259d816e9b1b";
    /// A Python signature over PY_MSG with s > n/2.
    const PY_SIG_HIGH_S: &str = "3045022019ec32688da0acefd36c24d30d950b29f3a5290b84410564db1977f30899cb98022100f2fcba4d7a21579485b6e9661d20a5858c53cea3895b665d187deac1943d347a";

    /// The same private key in SEC1 ("traditional OpenSSL") form.
    const PY_SEC1_PEM: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIBvImDeHM4sJ7lNsXyM2VMoZJ2NVO+EGrR8KPvy20SGnoAoGCCqGSM49
AwEHoUQDQgAEP8vhmblQ1uLbe0oXbudEbLAKIsHEAyx6BRRz2TalETYvQrmHRxlb
NmrAfNnD9kCy44BabIEztQoJNoTo5yxFYA==
-----END EC PRIVATE KEY-----
";

    /// A password-protected PKCS#8 P-256 key (password "pw").
    const PY_ENCRYPTED_PEM: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----
MIH0MF8GCSqGSIb3DQEFDTBSMDEGCSqGSIb3DQEFDDAkBBBVeZ/7RH12DgZE23Ep
L7h/AgIIADAMBggqhkiG9w0CCQUAMB0GCWCGSAFlAwQBKgQQCDQyBdGOELUI+g6i
vrNSvgSBkEVUFig84HJHf2kM3E2+4K+nOJx9crhop86sERQeTdJZx2uC0P82iOl2
k65JWGubeidL9tp/DPTzIihVOgkQEwBBj56kRnT5fKV+DVRudX5krRp8/MmcmpUO
icR0ck1K/lZm7rD3oLWXotwfFjjbnzLYb11xc/cWRi5C3VcNosPnRdlxUogZ4Y6b
uCoM7ySqFQ==
-----END ENCRYPTED PRIVATE KEY-----
";

    const P384_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDB0ImStt/r5nM3LUXvL
/qpif4yfZGM35VFp3rAPIzmlRDfDtxd0VuX//QbYneC3zZ+hZANiAAQmZsS/Uz66
MHtBoQXqc79GXq6DBB9ztqDJoWPUDW8eo+tw6hQ7gMFv5SKENYCqm3p8E/dfb+q7
ZuinKVzCEmwuMy7mqncsgt5SazzQiMh8DQ1Ff3duUWu2XsdTBiNEAKc=
-----END PRIVATE KEY-----
";

    const P384_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEJmbEv1M+ujB7QaEF6nO/Rl6ugwQfc7ag
yaFj1A1vHqPrcOoUO4DBb+UihDWAqpt6fBP3X2/qu2bopylcwhJsLjMu5qp3LILe
Ums80IjIfA0NRX93blFrtl7HUwYjRACn
-----END PUBLIC KEY-----
";

    const ED25519_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEINBJBRykH1FQdgqXi5f/HHUPd+v8DdtE3QTD29hhPSd2
-----END PRIVATE KEY-----
";

    const ED25519_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAOsbmvAtpzyVOmLQmM+OD5Gnbc0BCrhM48GH0vwNUb84=
-----END PUBLIC KEY-----
";

    // --- Vectors ----------------------------------------------------------

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

    // --- Signatures -------------------------------------------------------

    /// The same signature with s replaced by n - s.
    fn flip_s(der: &[u8]) -> Vec<u8> {
        let sig = p256::ecdsa::Signature::from_der(der).expect("valid DER");
        let (r, s) = sig.split_scalars();
        let neg_s = -*s;
        let flipped = p256::ecdsa::Signature::from_scalars(r.to_bytes(), neg_s.to_bytes()).expect("scalars");
        flipped.to_der().as_bytes().to_vec()
    }

    fn is_high_s(der: &[u8]) -> bool {
        let sig = p256::ecdsa::Signature::from_der(der).expect("valid DER");
        use p256::elliptic_curve::scalar::IsHigh;
        bool::from(sig.s().is_high())
    }

    #[test]
    fn sign_verify_round_trip_and_high_s() {
        let mut r = rng(1);
        let key = ServerKey::generate(&mut r);
        let public = key.public_key();
        let blob = [0xA5u8; 123];
        let sig = key.sign(&blob);
        assert!(sig.len() <= MAX_SIGNATURE_LEN && sig.len() >= 8);
        assert!(public.verify(&blob, &sig));
        // RFC 6979: deterministic.
        assert_eq!(sig, key.sign(&blob));

        let flipped = flip_s(&sig);
        assert_ne!(flipped, sig.to_vec());
        assert_ne!(is_high_s(&sig), is_high_s(&flipped));
        assert!(public.verify(&blob, &flipped), "high-S must verify");

        // Wrong message, wrong key.
        assert!(!public.verify(&blob[..122], &sig));
        let mut other = blob;
        other[0] ^= 1;
        assert!(!public.verify(&other, &sig));
        let other_key = ServerKey::generate(&mut r).public_key();
        assert!(!other_key.verify(&blob, &sig));

        // Malformed signatures.
        for n in 0..sig.len() {
            assert!(!public.verify(&blob, &sig[..n]));
        }
        let mut long = sig.to_vec();
        long.push(0);
        assert!(!public.verify(&blob, &long));
        assert!(!public.verify(&blob, &[0u8; 200]));
        assert!(!public.verify(&blob, &[0x30; 72]));
        for i in 0..sig.len() {
            let mut s = sig.to_vec();
            s[i] ^= 0x80;
            assert!(!public.verify(&blob, &s), "byte {i} flipped");
        }
    }

    #[test]
    fn many_signatures_verify_in_both_s_forms() {
        let key = ServerKey::generate(&mut rng(2));
        let public = key.public_key();
        let (mut low, mut high) = (0, 0);
        for i in 0u32..32 {
            let msg = i.to_be_bytes();
            let sig = key.sign(&msg);
            if is_high_s(&sig) {
                high += 1;
            } else {
                low += 1;
            }
            assert!(public.verify(&msg, &sig));
            assert!(public.verify(&msg, &flip_s(&sig)));
        }
        // p256 does not normalize S when signing either, like the reference.
        assert!(low > 0 && high > 0, "low {low} high {high}");
    }

    #[test]
    fn python_cryptography_interop() {
        let key = ServerKey::from_pkcs8_pem(PY_PRIVATE_PEM).expect("reference root.key loads");
        let public = PublicKey::from_public_key_pem(PY_PUBLIC_PEM).expect("reference root.pub loads");
        assert_eq!(key.public_key(), public);

        let low = hex(PY_SIG_LOW_S);
        let high = hex(PY_SIG_HIGH_S);
        assert!(!is_high_s(&low));
        assert!(is_high_s(&high));
        assert!(public.verify(PY_MSG, &low));
        assert!(public.verify(PY_MSG, &high));
        assert!(!public.verify(b"another message", &high));

        // We write byte-identical files.
        assert_eq!(key.to_pkcs8_pem().as_str(), PY_PRIVATE_PEM);
        assert_eq!(public.to_public_key_pem(), PY_PUBLIC_PEM);

        // Our signatures verify under the reference's key material.
        let sig = key.sign(PY_MSG);
        assert!(public.verify(PY_MSG, &sig));
    }

    // --- Key encodings ----------------------------------------------------

    #[test]
    fn pem_round_trips_and_spki_layout() {
        let key = ServerKey::generate(&mut rng(3));
        let pem = key.to_pkcs8_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.ends_with("-----END PRIVATE KEY-----\n"));
        let again = ServerKey::from_pkcs8_pem(&pem).expect("round trip");
        assert_eq!(again.public_key(), key.public_key());
        assert_eq!(again.sign(b"x"), key.sign(b"x"));
        let from_der = ServerKey::from_pkcs8_der(&key.to_pkcs8_der()).expect("der round trip");
        assert_eq!(from_der.public_key(), key.public_key());

        let public = key.public_key();
        let spki = public.to_spki_der();
        assert_eq!(spki.len(), SPKI_LEN);
        assert_eq!(spki[..26].to_vec(), hex("3059301306072a8648ce3d020106082a8648ce3d030107034200"));
        assert_eq!(spki[26], 0x04);
        let pub_pem = public.to_public_key_pem();
        assert!(pub_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(PublicKey::from_public_key_pem(&pub_pem), Ok(public.clone()));
        assert_eq!(PublicKey::from_spki_der(&spki), Ok(public.clone()));

        // Tolerant of CRLF and surrounding whitespace.
        let crlf = std::format!("\n  {}\n\n", pub_pem.replace('\n', "\r\n"));
        assert_eq!(PublicKey::from_public_key_pem(&crlf), Ok(public.clone()));

        // Debug never shows the secret.
        let dbg = std::format!("{key:?}");
        assert!(dbg.starts_with("ServerKey { public: PublicKey(sha256:"), "{dbg}");
        let scalar = key.to_pkcs8_der();
        let secret_hex: String = scalar[36..68].iter().map(|b| std::format!("{b:02x}")).collect();
        assert!(!dbg.contains(&secret_hex));
    }

    #[test]
    fn compressed_point_spki_is_accepted_and_reencoded_uncompressed() {
        let key = ServerKey::generate(&mut rng(4)).public_key();
        let point = p256::PublicKey::from_sec1_bytes(&key.to_spki_der()[26..]).expect("point");
        let compressed = point.to_sec1_point(true);
        // SEQUENCE { SEQUENCE { ecPublicKey, prime256v1 }, BIT STRING (34) }
        let mut der = hex("3039301306072a8648ce3d020106082a8648ce3d030107032200");
        der.extend_from_slice(compressed.as_bytes());
        let parsed = PublicKey::from_spki_der(&der).expect("compressed SPKI");
        assert_eq!(parsed, key);
        assert_eq!(parsed.to_spki_der(), key.to_spki_der());
    }

    #[test]
    fn wrong_armour_is_a_clear_error() {
        let err = ServerKey::from_pkcs8_pem(PY_PUBLIC_PEM).expect_err("public key as private");
        assert_eq!(err, KeyError::WrongPemLabel { found: "PUBLIC KEY".into(), expected: "PRIVATE KEY" });
        let msg = err.to_string();
        assert!(msg.contains("found 'PUBLIC KEY'"), "{msg}");
        assert!(msg.contains(".key file to the server"), "{msg}");

        let err = PublicKey::from_public_key_pem(PY_PRIVATE_PEM).expect_err("private as public");
        assert_eq!(err, KeyError::WrongPemLabel { found: "PRIVATE KEY".into(), expected: "PUBLIC KEY" });
        let msg = err.to_string();
        assert!(msg.contains("expected a PEM 'PUBLIC KEY' (SPKI) such as root.pub"), "{msg}");
        assert!(msg.contains("pass the .pub file to the client and the .key file to the server"));

        let err = ServerKey::from_pkcs8_pem(PY_SEC1_PEM).expect_err("sec1");
        assert!(matches!(&err, KeyError::WrongPemLabel { found, .. } if found == "EC PRIVATE KEY"));
        assert!(err.to_string().contains("openssl pkcs8 -topk8 -nocrypt"));

        let err = ServerKey::from_pkcs8_pem(PY_ENCRYPTED_PEM).expect_err("encrypted");
        assert!(matches!(&err, KeyError::WrongPemLabel { found, .. } if found == "ENCRYPTED PRIVATE KEY"));
        assert!(err.to_string().contains("not supported"));
    }

    #[test]
    fn garbage_and_empty_inputs() {
        for empty in ["", "   \n\t"] {
            assert_eq!(
                ServerKey::from_pkcs8_pem(empty).expect_err("empty"),
                KeyError::Empty { expected: "PRIVATE KEY" }
            );
            assert_eq!(
                PublicKey::from_public_key_pem(empty).expect_err("empty"),
                KeyError::Empty { expected: "PUBLIC KEY" }
            );
        }
        for garbage in [
            "hello world",
            "-----BEGIN PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ] {
            let err = ServerKey::from_pkcs8_pem(garbage).expect_err("garbage");
            assert!(matches!(err, KeyError::NotPem { .. }), "{garbage:?}: {err:?}");
            assert!(err.to_string().contains("-----BEGIN PRIVATE KEY-----"));
        }
        // Valid PEM, invalid DER.
        let bad_der = "-----BEGIN PUBLIC KEY-----\nAAECAwQF\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            PublicKey::from_public_key_pem(bad_der),
            Err(KeyError::InvalidDer { expected: "SubjectPublicKeyInfo", .. })
        ));
        let bad_der = "-----BEGIN PRIVATE KEY-----\nAAECAwQF\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            ServerKey::from_pkcs8_pem(bad_der),
            Err(KeyError::InvalidDer { expected: "PKCS#8 PrivateKeyInfo", .. })
        ));

        // DER of the wrong kind says so.
        let spki = ServerKey::generate(&mut rng(5)).public_key().to_spki_der();
        match ServerKey::from_pkcs8_der(&spki) {
            Err(KeyError::InvalidDer { detail, .. }) => assert!(detail.contains("public key")),
            other => panic!("{other:?}"),
        }
        let pkcs8 = ServerKey::generate(&mut rng(5)).to_pkcs8_der();
        match PublicKey::from_spki_der(&pkcs8) {
            Err(KeyError::InvalidDer { detail, .. }) => assert!(detail.contains("private key")),
            other => panic!("{other:?}"),
        }

        // SPKI with trailing bytes, truncated, or an off-curve point.
        let mut long = spki.to_vec();
        long.push(0);
        assert!(matches!(PublicKey::from_spki_der(&long), Err(KeyError::InvalidDer { .. })));
        assert!(matches!(PublicKey::from_spki_der(&spki[..90]), Err(KeyError::InvalidDer { .. })));
        let mut off_curve = spki;
        off_curve[90] ^= 1;
        assert_eq!(
            PublicKey::from_spki_der(&off_curve),
            Err(KeyError::InvalidKey { detail: "the public point is not on the P-256 curve or is malformed" })
        );
        let mut bad_tag = spki;
        bad_tag[26] = 0x05;
        assert!(matches!(PublicKey::from_spki_der(&bad_tag), Err(KeyError::InvalidKey { .. })));
    }

    #[test]
    fn private_key_with_mismatched_public_key_is_rejected() {
        // Replace the embedded public key of one PKCS#8 by another key's.
        let a = ServerKey::generate(&mut rng(6));
        let b = ServerKey::generate(&mut rng(7));
        let mut der = a.to_pkcs8_der().to_vec();
        let pa = a.public_key().to_spki_der();
        let pb = b.public_key().to_spki_der();
        let at = der.windows(65).position(|w| w == &pa[26..]).expect("embedded public key");
        der[at..at + 65].copy_from_slice(&pb[26..]);
        assert!(matches!(ServerKey::from_pkcs8_der(&der), Err(KeyError::InvalidKey { .. })));
    }

    #[test]
    fn other_algorithms_and_curves_are_rejected() {
        let err = ServerKey::from_pkcs8_pem(P384_PRIVATE_PEM).expect_err("p384");
        assert_eq!(err, KeyError::WrongCurve { found: "P-384/secp384r1 (OID 1.3.132.0.34)".into() });
        assert!(err.to_string().contains("needs P-256"));
        assert!(matches!(
            PublicKey::from_public_key_pem(P384_PUBLIC_PEM),
            Err(KeyError::WrongCurve { found }) if found.starts_with("P-384")
        ));
        let err = ServerKey::from_pkcs8_pem(ED25519_PRIVATE_PEM).expect_err("ed25519");
        assert_eq!(err, KeyError::WrongAlgorithm { found: "Ed25519 (OID 1.3.101.112)".into() });
        assert!(err.to_string().contains("ECDSA P-256"));
        assert!(matches!(
            PublicKey::from_public_key_pem(ED25519_PUBLIC_PEM),
            Err(KeyError::WrongAlgorithm { found }) if found.starts_with("Ed25519")
        ));
        let p384_spki = hex("3076301006072a8648ce3d020106052b81040022036200");
        let mut p384_spki = p384_spki;
        p384_spki.extend_from_slice(&[4u8; 97]);
        assert!(EphemeralKey::generate(&mut rng(8)).agree(&p384_spki).is_none());
    }

    #[test]
    fn every_error_display_says_what_to_do() {
        let errors = [
            KeyError::Empty { expected: "PUBLIC KEY" },
            KeyError::NotPem { expected: "PRIVATE KEY", detail: "x".into() },
            KeyError::WrongPemLabel { found: "CERTIFICATE".into(), expected: "PUBLIC KEY" },
            KeyError::WrongPemLabel { found: "RSA PRIVATE KEY".into(), expected: "PRIVATE KEY" },
            KeyError::InvalidDer { expected: "SubjectPublicKeyInfo", detail: "x".into() },
            KeyError::WrongAlgorithm { found: "RSA".into() },
            KeyError::WrongCurve { found: "secp256k1".into() },
            KeyError::InvalidKey { detail: "x" },
            KeyError::Io { path: "/nope/root.key".into(), message: "cannot read: not found".into() },
        ];
        for e in errors {
            let msg = e.to_string();
            assert!(msg.contains("mpcli genkey") || msg.contains("openssl"), "{msg}");
            let _: &dyn core::error::Error = &e;
        }
    }

    #[test]
    fn ephemeral_keys_agree_and_reject_bad_peers() {
        let mut r = rng(9);
        let a = EphemeralKey::generate(&mut r);
        let b = EphemeralKey::generate(&mut r);
        assert_ne!(a.public_spki(), b.public_spki());
        let x = a.agree(&b.public_spki()).expect("agree");
        assert_eq!(Some(x), b.agree(&a.public_spki()));
        assert_eq!(a.public_spki()[..26], SPKI_P256_PREFIX);
        assert!(a.agree(&[]).is_none());
        let mut bad = b.public_spki();
        bad[60] ^= 4;
        assert!(a.agree(&bad).is_none());
        // Same seed, same key: the core stays deterministic.
        assert_eq!(EphemeralKey::generate(&mut rng(9)).public_spki(), a.public_spki());
        let dbg = std::format!("{a:?}");
        assert!(dbg.starts_with("EphemeralKey { public: "), "{dbg}");
    }

    #[cfg(feature = "std")]
    #[test]
    fn key_files_round_trip() {
        let dir = std::env::temp_dir().join(std::format!(
            "mpgs-crypto-test-{}-{}",
            std::process::id(),
            crc32(b"key_files_round_trip")
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let key_path = dir.join("root.key");
        let pub_path = dir.join("root.pub");
        let key = ServerKey::generate(&mut rng(10));
        // Pre-existing, world-readable file gets tightened and replaced.
        std::fs::write(&key_path, "old").expect("write");
        key.write_pem_file(&key_path).expect("write key");
        key.public_key().write_pem_file(&pub_path).expect("write pub");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let loaded = ServerKey::read_pem_file(&key_path).expect("read key");
        assert_eq!(loaded.public_key(), key.public_key());
        assert_eq!(PublicKey::read_pem_file(&pub_path).expect("read pub"), key.public_key());
        // Swapped files give the label error.
        assert!(matches!(ServerKey::read_pem_file(&pub_path), Err(KeyError::WrongPemLabel { .. })));
        let missing = dir.join("missing.pub");
        match PublicKey::read_pem_file(&missing) {
            Err(KeyError::Io { path, message }) => {
                assert_eq!(path, missing.display().to_string());
                assert!(message.starts_with("cannot read"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    // --- Properties -------------------------------------------------------

    quickcheck! {
        fn prop_from_spki_der_never_panics(data: Vec<u8>) -> bool {
            let _ = PublicKey::from_spki_der(&data);
            true
        }

        fn prop_from_pkcs8_never_panics(text: String, data: Vec<u8>) -> bool {
            let _ = ServerKey::from_pkcs8_pem(&text);
            let _ = PublicKey::from_public_key_pem(&text);
            let _ = ServerKey::from_pkcs8_der(&data);
            true
        }

        fn prop_pem_wrapped_garbage_never_panics(data: Vec<u8>) -> bool {
            let pem = encode_pem(LABEL_PRIVATE, &data);
            let _ = ServerKey::from_pkcs8_pem(&pem);
            let pem = encode_pem(LABEL_PUBLIC, &data);
            let _ = PublicKey::from_public_key_pem(&pem);
            true
        }

        fn prop_verify_garbage_is_false(msg: Vec<u8>, sig: Vec<u8>) -> bool {
            let public = ServerKey::generate(&mut rng(11)).public_key();
            !public.verify(&msg, &sig)
        }

        fn prop_agree_garbage_never_panics(data: Vec<u8>) -> bool {
            let key = EphemeralKey::generate(&mut rng(12));
            let _ = key.agree(&data);
            true
        }

        fn prop_mutated_spki_never_panics(pos: usize, byte: u8, cut: usize) -> bool {
            let key = EphemeralKey::generate(&mut rng(13));
            let mut spki = key.public_spki().to_vec();
            let i = pos % spki.len();
            spki[i] = byte;
            spki.truncate(SPKI_LEN - cut % 4);
            let _ = PublicKey::from_spki_der(&spki);
            let _ = key.agree(&spki);
            true
        }

        fn prop_mutated_signature_never_panics(pos: usize, byte: u8, msg: Vec<u8>) -> bool {
            let key = ServerKey::generate(&mut rng(14));
            let mut sig = key.sign(&msg).to_vec();
            let i = pos % sig.len();
            let changed = sig[i] != byte;
            sig[i] = byte;
            // An unchanged signature verifies; any changed byte breaks it.
            key.public_key().verify(&msg, &sig) != changed
        }

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
