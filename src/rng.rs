//! The only randomness of the core: a seeded CSPRNG.
//!
//! An endpoint is built from a [`Seed`]; drivers draw it from the OS, tests
//! and the simulator choose it. Every connection forks its own generator, so
//! the bytes one connection draws do not depend on how many others exist or on
//! the order the caller polls them in.

use chacha20::ChaCha20Rng;
use rand_core::{Rng as _, SeedableRng};

/// 32 bytes of seed for an endpoint's CSPRNG.
///
/// In production the seed must come from a secure source (the drivers use the
/// OS). A fixed seed makes every key, token and padding byte reproducible,
/// which is what tests want and what production must never do.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Seed(pub [u8; 32]);

impl Seed {
    /// A seed from a small number, for tests and simulations.
    ///
    /// Never use this in production: the whole key schedule becomes
    /// predictable.
    pub const fn from_u64(n: u64) -> Seed {
        let b = n.to_le_bytes();
        let mut s = [0u8; 32];
        let mut i = 0;
        while i < 8 {
            s[i] = b[i];
            i += 1;
        }
        Seed(s)
    }
}

impl core::fmt::Debug for Seed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print key material.
        f.write_str("Seed(..)")
    }
}

/// A ChaCha20 CSPRNG seeded from a [`Seed`].
///
/// It implements `rand_core::CryptoRng` (0.10), so it can feed the RustCrypto
/// key generators directly.
#[derive(Debug)]
pub struct Rng(ChaCha20Rng);

/// A copy with the same future output, for the fuzz harness's snapshots
/// only (`_fuzzing` builds; never in normal builds, where two copies of one
/// generator would repeat keys).
#[cfg(feature = "_fuzzing")]
impl Clone for Rng {
    fn clone(&self) -> Rng {
        let mut c = ChaCha20Rng::from_seed(self.0.get_seed());
        c.set_stream(self.0.get_stream());
        c.set_word_pos(self.0.get_word_pos());
        Rng(c)
    }
}

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: Seed) -> Rng {
        Rng(ChaCha20Rng::from_seed(seed.0))
    }

    /// A child generator, independent of this one's later output.
    ///
    /// The parent then re-keys itself from its own output ("fast key
    /// erasure"): its state no longer reveals the seeds of children forked
    /// earlier, so a later disclosure of an endpoint's memory does not give
    /// away the ephemeral keys of past sessions. Still deterministic.
    pub fn fork(&mut self) -> Rng {
        let mut child = [0u8; 32];
        self.0.fill_bytes(&mut child);
        let mut next = [0u8; 32];
        self.0.fill_bytes(&mut next);
        self.0 = ChaCha20Rng::from_seed(next);
        next.fill(0);
        let rng = Rng::new(Seed(child));
        child.fill(0);
        rng
    }

    /// Fills `dest` with random bytes.
    pub fn fill(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest);
    }

    /// A uniformly random `u32`.
    pub fn u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    /// A uniformly random `u64`.
    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }
}

impl rand_core::TryRng for Rng {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.0.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.0.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for Rng {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_forks_differ() {
        let mut a = Rng::new(Seed::from_u64(7));
        let mut b = Rng::new(Seed::from_u64(7));
        assert_eq!(a.u64(), b.u64());
        let mut fa = a.fork();
        let mut fb = b.fork();
        assert_eq!(fa.u64(), fb.u64());
        assert_ne!(fa.u64(), a.u64());
        let mut c = Rng::new(Seed::from_u64(8));
        assert_ne!(c.u64(), Rng::new(Seed::from_u64(7)).u64());
    }
}
