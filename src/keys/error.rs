//! Why a key could not be loaded or saved.

use alloc::string::String;
use core::fmt;

use super::der::{LABEL_PRIVATE, LABEL_PUBLIC};

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
pub(super) fn describe_expected(label: &str) -> &'static str {
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
