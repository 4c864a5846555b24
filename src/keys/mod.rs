//! Keys, shared by every protocol version: the long-term server root key
//! pair ([`ServerKey`], [`PublicKey`]) that signs and verifies handshakes,
//! the ephemeral ECDH keys of one handshake ([`EphemeralKey`]), their DER and
//! PEM encodings, and key files.
//!
//! * [`ServerKey`] / [`PublicKey`]: the P-256 root key pair. A server signs
//!   with ECDSA-SHA256 (DER signature); clients verify with the pinned
//!   public key.
//! * [`EphemeralKey`]: ephemeral P-256 ECDH; the packet keys derived from it
//!   belong to each protocol version (MPGS/1: `mpgs1::protect`).
//! * Key files: unencrypted PKCS#8 `PRIVATE KEY` and SPKI `PUBLIC KEY` PEM,
//!   the formats `mpcli genkey` of the reference writes, in both directions.
//!
//! Randomness comes only from the caller's [`Rng`](crate::Rng). Secret keys
//! are zeroized on drop by the RustCrypto types that hold them, and no
//! `Debug` output of this module prints secret material.

mod der;
mod ephemeral;
mod error;
#[cfg(feature = "std")]
mod files;
mod public;
mod server;

/// A buffer that is overwritten with zeros when dropped; holds serialized
/// private keys (re-exported from `zeroize`).
pub use p256::elliptic_curve::zeroize::Zeroizing;

pub use ephemeral::EphemeralKey;
pub(crate) use ephemeral::peer_key;
pub use error::KeyError;
pub use public::PublicKey;
pub use server::ServerKey;

/// Length of a P-256 public key as DER SubjectPublicKeyInfo with an
/// uncompressed point, the only form MPGS/1 puts on the wire.
pub const SPKI_LEN: usize = 91;
/// Largest DER ECDSA P-256 signature: `30 46 02 21 r(33) 02 21 s(33)`.
pub const MAX_SIGNATURE_LEN: usize = 72;

/// The fixed 26-byte prefix of every P-256 SPKI with an uncompressed point;
/// `04 ‖ X ‖ Y` follows.
pub const SPKI_P256_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

#[cfg(test)]
mod tests {
    use super::der::{LABEL_PRIVATE, LABEL_PUBLIC, encode_pem};
    use super::*;
    use crate::rng::{Rng, Seed};
    use p256::elliptic_curve::sec1::ToSec1Point;
    use quickcheck::quickcheck;
    use std::string::{String, ToString};
    use std::vec::Vec;

    fn hex(s: &str) -> Vec<u8> {
        let s = s.trim_start_matches("0x");
        let s = if s.len() % 2 == 1 { std::format!("0{s}") } else { s.to_string() };
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
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
            crate::mpgs1::protect::crc32(b"key_files_round_trip")
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
    }
}
