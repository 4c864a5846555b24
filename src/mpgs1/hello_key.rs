//! The SERVER_HELLO key a MPGS/1 server shares between the hellos of a
//! short period, and the signed answer each client gets.

use super::handshake::SERVER_HELLO_MAX;
use super::protect::SALT_LEN;
use super::wire::handshake::{self, SERVER_BLOB_LEN};
use crate::keys::{EphemeralKey, ServerKey};
use crate::rng::Rng;
use crate::time::{Duration, Instant};

/// Clients answered with one SERVER_HELLO key at most.
pub(crate) const HELLO_KEY_MAX_USES: usize = 64;

/// The server ephemeral key shared by the hellos of one short period
/// (`server_hello_reuse`), so a hello costs an ECDH and a signature instead
/// of a key generation, an ECDH and a signature.
///
/// Only the key pair is shared. Every client gets its own random salt and
/// token in its own signed SERVER_HELLO ([`HelloKey::answer`]): the token is
/// what proves, at CHALLENGE_RESP, that the client receives datagrams at its
/// address. Were it shared, an attacker could complete a handshake "from" a
/// spoofed address with the token of its own hello and the server key it
/// already knows, and so turn the server into a reflector.
///
/// Each session key is HKDF(ECDH(server ephemeral, client ephemeral), salt),
/// distinct per client through both the client key and the salt. A hello
/// whose key has the x-coordinate of one already answered with the current
/// server key (the same key or its negation) is a replay: it is refused
/// before any cryptography, which makes a captured hello replayed from many
/// spoofed addresses nearly free to reject.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub(crate) struct HelloKey {
    pub(crate) ephemeral: EphemeralKey,
    pub(crate) expires: Instant,
    /// x-coordinates of the client keys answered with it.
    clients: heapless::Vec<[u8; 32], HELLO_KEY_MAX_USES>,
}

/// One client's SERVER_HELLO: its own salt and token, signed with the
/// shared ephemeral key.
pub(crate) struct HelloAnswer {
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) token: u32,
    /// The SERVER_HELLO message data.
    pub(crate) reply: heapless::Vec<u8, SERVER_HELLO_MAX>,
}

impl HelloKey {
    /// A new ephemeral key pair, usable for `reuse` (one client if zero).
    pub(crate) fn generate(now: Instant, rng: &mut Rng, reuse: Duration) -> HelloKey {
        HelloKey { ephemeral: EphemeralKey::generate(rng), expires: now + reuse, clients: heapless::Vec::new() }
    }

    /// Whether it may answer one more client at `now`.
    pub(crate) fn usable(&self, now: Instant) -> bool {
        now < self.expires && !self.clients.is_full()
    }

    /// Whether the client key with x-coordinate `x` was already answered.
    pub(crate) fn answered(&self, x: &[u8; 32]) -> bool {
        self.clients.contains(x)
    }

    /// Records the client key with x-coordinate `x` and signs a SERVER_HELLO
    /// for it with a fresh salt and token. With `sentinel` (a server that
    /// speaks MPGS/2), the salt's last 8 bytes are overwritten with
    /// MPGS/2's downgrade sentinel after it is drawn (MPGS2.md §2.9), so the
    /// random stream, and everything an MPGS/1-only server sends, is
    /// unchanged.
    pub(crate) fn answer(
        &mut self,
        x: [u8; 32],
        rng: &mut Rng,
        root: &ServerKey,
        sentinel: bool,
    ) -> Option<HelloAnswer> {
        // `usable` was checked, so there is room; a full list only means
        // the next hello gets a fresh key.
        let _ = self.clients.push(x);
        let mut salt = [0u8; SALT_LEN];
        rng.fill(&mut salt);
        if sentinel {
            let n = crate::mpgs2::DOWNGRADE_SENTINEL.len();
            salt[SALT_LEN - n..].copy_from_slice(&crate::mpgs2::DOWNGRADE_SENTINEL);
        }
        let token = (rng.u32() & 0x3FFF_FFFF) | 0x4000_0000;
        let mut blob = [0u8; SERVER_BLOB_LEN];
        handshake::emit_server_blob(&mut blob, &self.ephemeral.public_spki(), &salt, token);
        let signature = root.sign(&blob);
        let mut reply = heapless::Vec::<u8, SERVER_HELLO_MAX>::new();
        reply.resize(SERVER_HELLO_MAX, 0).ok()?;
        let n = handshake::emit_server_hello(&mut reply, &root.public_key().to_spki_der(), &blob, &signature).ok()?;
        reply.truncate(n);
        Some(HelloAnswer { salt, token, reply })
    }
}

impl core::fmt::Debug for HelloKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HelloKey").field("expires", &self.expires).field("clients", &self.clients.len()).finish()
    }
}
