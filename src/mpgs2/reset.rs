//! Stateless reset (MPGS2.md §6.4): the per-endpoint reset key, the token
//! of a connection id, building a reset and recognising one.
//!
//! ```text
//! reset_key = HKDF-Expand(reset_base, "mpgs2 reset key" ‖ endpoint_id u64, 32)
//! token     = HMAC-SHA256(reset_key, "mpgs2 reset" ‖ connection id)[0..16]
//! ```

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use p256::pkcs8::DecodePrivateKey;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::keys::{HASH_LEN, Secret, Zeroizing};
use super::{CID_LEN, TAG_LEN};
use crate::{Rng, ServerKey};

/// Length of a reset token.
pub const TOKEN_LEN: usize = 16;
/// Smallest datagram a client checks for a token (§6.4).
pub const MIN_RESET_LEN: usize = 21;
/// Largest reset sent.
pub const MAX_RESET_LEN: usize = 43;
/// Smallest trigger a reset answers.
pub const MIN_TRIGGER_LEN: usize = 22;

/// The default `reset_base` of a server (Decision in §6.4):
/// `HKDF-Expand(HKDF-Extract("MPGS/2 reset\0", root scalar), "mpgs2 reset
/// base", 32)`, so it survives restarts and never reveals the signing key.
pub fn default_reset_base(root: &ServerKey) -> Secret {
    let der = root.to_pkcs8_der();
    let secret = p256::SecretKey::from_pkcs8_der(&der)
        // Invariant: ServerKey::to_pkcs8_der writes a valid P-256 PKCS#8 key.
        .expect("ServerKey gives valid PKCS#8");
    let scalar = Zeroizing::new(<[u8; 32]>::from(secret.to_bytes()));
    let (_, hk) = Hkdf::<Sha256>::extract(Some(b"MPGS/2 reset\0"), scalar.as_ref());
    let mut out = Zeroizing::new([0u8; HASH_LEN]);
    hk.expand(b"mpgs2 reset base", out.as_mut())
        // Invariant: 32 bytes is within HKDF-SHA256's 8160-byte limit.
        .expect("32-byte HKDF output");
    out
}

/// An endpoint's reset key.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub struct ResetKey(Secret);

impl core::fmt::Debug for ResetKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ResetKey(..)")
    }
}

impl ResetKey {
    /// `HKDF-Expand(reset_base, "mpgs2 reset key" ‖ endpoint_id, 32)`.
    pub fn new(reset_base: &[u8; HASH_LEN], endpoint_id: u64) -> ResetKey {
        let mut k = Zeroizing::new([0u8; HASH_LEN]);
        Hkdf::<Sha256>::from_prk(reset_base)
            // Invariant: a 32-byte PRK is exactly HashLen.
            .expect("32-byte PRK")
            .expand_multi_info(&[b"mpgs2 reset key", &endpoint_id.to_be_bytes()], k.as_mut())
            // Invariant: 32 bytes is within HKDF-SHA256's limit.
            .expect("32-byte HKDF output");
        ResetKey(k)
    }

    /// The key bytes (for the known-answer tests).
    pub fn bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// The token of a connection id.
    pub fn token(&self, cid: &[u8; CID_LEN]) -> [u8; TOKEN_LEN] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.as_ref())
            // Invariant: HMAC accepts keys of any length.
            .expect("HMAC key of any length");
        mac.update(b"mpgs2 reset");
        mac.update(cid);
        let full = mac.finalize().into_bytes();
        let mut t = [0u8; TOKEN_LEN];
        t.copy_from_slice(&full[..TOKEN_LEN]);
        t
    }
}

/// Writes a stateless reset answering a short packet of `trigger_len`
/// bytes: `min(L − 1, 43)` bytes, `0x80 | random bits 5, 1, 0`, random
/// bytes, the token. `None` for a trigger under 22 bytes (no answer), so a
/// reset is always smaller than its trigger and none can loop.
pub fn emit_reset(trigger_len: usize, token: &[u8; TOKEN_LEN], rng: &mut Rng, out: &mut [u8]) -> Option<usize> {
    if trigger_len < MIN_TRIGGER_LEN {
        return None;
    }
    let n = (trigger_len - 1).min(MAX_RESET_LEN);
    let out = out.get_mut(..n)?;
    rng.fill(out);
    out[0] = 0x80 | (out[0] & 0x23);
    out[n - TOKEN_LEN..].copy_from_slice(token);
    Some(n)
}

/// Whether a datagram that failed to parse or open on a connection is its
/// stateless reset: ≥ 21 B, first byte `0x80–0xBF`, last 16 bytes equal to
/// the token (constant-time compare).
pub fn is_reset(datagram: &[u8], token: &[u8; TOKEN_LEN]) -> bool {
    if datagram.len() < MIN_RESET_LEN || datagram[0] & 0xC0 != 0x80 {
        return false;
    }
    let tail = &datagram[datagram.len() - TOKEN_LEN..];
    tail.ct_eq(token).into()
}

// The token is exactly as long as the AEAD tag, so a reset looks like a packet
// whose last 16 bytes are its tag.
const _: () = assert!(TOKEN_LEN == TAG_LEN);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Seed;

    #[test]
    fn reset_sizes_and_recognition() {
        let key = ResetKey::new(&[1; 32], 0);
        let token = key.token(&[2; 8]);
        assert_ne!(token, key.token(&[3; 8]));
        assert_ne!(token, ResetKey::new(&[1; 32], 1).token(&[2; 8]), "endpoint ids separate keys");
        let mut rng = Rng::new(Seed::from_u64(4));
        let mut out = [0u8; 64];
        assert_eq!(emit_reset(21, &token, &mut rng, &mut out), None);
        for l in [22usize, 30, 44, 45, 1200] {
            let n = emit_reset(l, &token, &mut rng, &mut out).expect("answered");
            assert_eq!(n, (l - 1).min(43));
            assert!(n < l);
            assert_eq!(out[0] & 0xDC, 0x80, "short-header form with reserved bits clear");
            assert!(is_reset(&out[..n], &token));
            assert!(!is_reset(&out[..n], &key.token(&[9; 8])));
        }
        let mut bad = out;
        bad[0] = 0xC0;
        assert!(!is_reset(&bad[..30], &token));
        assert!(!is_reset(&out[..20], &token));
        assert_eq!(alloc::format!("{key:?}"), "ResetKey(..)");
    }

    #[test]
    fn default_base_is_stable_and_key_specific() {
        let a = ServerKey::generate(&mut Rng::new(Seed::from_u64(1)));
        let b = ServerKey::generate(&mut Rng::new(Seed::from_u64(2)));
        let a2 = ServerKey::from_pkcs8_der(&a.to_pkcs8_der()).expect("round trip");
        assert_eq!(*default_reset_base(&a), *default_reset_base(&a2), "survives a restart");
        assert_ne!(*default_reset_base(&a), *default_reset_base(&b));
    }
}
