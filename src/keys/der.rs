//! DER and PEM: the encodings of the root key pair, and the checks that a
//! decoded key is an EC key on P-256.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use p256::pkcs8::der::pem;
use p256::pkcs8::spki::AlgorithmIdentifierRef;
use p256::pkcs8::{LineEnding, ObjectIdentifier};

use super::{KeyError, Zeroizing};

pub(super) const LABEL_PRIVATE: &str = "PRIVATE KEY";
pub(super) const LABEL_PUBLIC: &str = "PUBLIC KEY";
pub(super) const DER_PKCS8: &str = "PKCS#8 PrivateKeyInfo";
pub(super) const DER_SPKI: &str = "SubjectPublicKeyInfo";

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// A readable name for a key algorithm or curve OID, always with the OID.
pub(super) fn oid_name(oid: &ObjectIdentifier) -> String {
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
pub(super) fn check_algorithm(alg: &AlgorithmIdentifierRef<'_>) -> Result<(), KeyError> {
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
pub(super) fn decode_pem(input: &str, expected: &'static str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
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
pub(super) fn encode_pem(label: &str, der: &[u8]) -> String {
    pem::encode_string(label, LineEnding::LF, der)
        // Invariant: encoding only fails for labels with invalid characters or
        // lengths overflowing usize; both labels here are fixed ASCII and a key
        // is a few hundred bytes.
        .expect("PEM encoding of a key")
}
