//! Ephemeral P-256 ECDH keys, one per handshake.

use core::fmt;

use p256::elliptic_curve::Generate;

use super::public::{parse_spki, spki_of};
use super::{SPKI_LEN, SPKI_P256_PREFIX, Zeroizing};
use crate::rng::Rng;

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
    pub(crate) fn from_scalar_bytes(bytes: &[u8; 32]) -> Option<EphemeralKey> {
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
