//! A new MPGS/1 client's way in (PROTOCOL.md §10.1, §10.2; the limits in
//! `admission.rs`). Everything that can refuse a CLIENT_HELLO runs before
//! any cryptography: the hello's own checks, the rate and source limits,
//! the connection cap, the client key's validity and the replay check.

use core::net::SocketAddr;

use super::Endpoint;
use crate::keys::{SPKI_LEN, peer_key};
use crate::mpgs1::hello_key::HelloKey;
use crate::mpgs1::wire::Header;
use crate::mpgs1::{self, parse_client_hello};
use crate::session::{Connection, Proto, Session};
use crate::state::{ConnectionState, Role};
use crate::stats::DropReason;
use crate::time::Instant;

impl Endpoint {
    /// A CLIENT_HELLO (header `hdr`) from an unknown address.
    pub(super) fn accept_mpgs1(
        &mut self,
        now: Instant,
        from: SocketAddr,
        hdr: &Header,
        datagram: &[u8],
    ) -> Result<(), DropReason> {
        let hello = parse_client_hello(hdr, datagram, self.sizes.hello_padding)?;
        if let Err(refusal) = self.admission.check(now, from.ip(), &self.cfg) {
            match refusal {
                crate::admission::Refusal::Rate => self.stats.hellos_refused_rate += 1,
                crate::admission::Refusal::Source => self.stats.hellos_refused_source += 1,
            }
            return Err(DropReason::Rate);
        }
        if self.established >= self.cfg.max_connections {
            self.stats.hellos_refused_full += 1;
            return Err(DropReason::Rate);
        }
        let client_key: [u8; SPKI_LEN] = hello.key_spki.try_into().map_err(|_| DropReason::Malformed)?;
        let (peer, x) = peer_key(&client_key).ok_or(DropReason::Malformed)?;
        let reuse = self.hello_key.as_ref().filter(|k| k.usable(now));
        if reuse.is_some_and(|k| k.answered(&x)) {
            // The same client key (or its negation) from another address
            // while the server key that answered it is current: a replayed
            // hello. Answering it would give two connections one session key.
            return Err(DropReason::Replay);
        }
        let fresh = reuse.is_none();
        if self.server_key.is_none() {
            return Err(DropReason::UnknownPeer);
        }
        // Make room: the oldest pending handshake goes first.
        while self.pending >= self.cfg.max_pending_handshakes
            || self.established + self.pending >= self.cfg.max_connections
        {
            if !self.evict_oldest_pending(now) {
                self.stats.hellos_refused_full += 1;
                return Err(DropReason::Rate);
            }
        }
        let root = self.server_key.as_ref().ok_or(DropReason::UnknownPeer)?;
        if fresh {
            self.hello_key = Some(HelloKey::generate(now, &mut self.rng, self.cfg.server_hello_reuse));
            self.stats.server_hello_keys += 1;
        }
        let key = self.hello_key.as_mut().ok_or(DropReason::UnknownPeer)?;
        let answer = key.answer(x, &mut self.rng, root, self.cfg.accept_mpgs2).ok_or(DropReason::Malformed)?;
        let id = self.table.vacant();
        let conn = mpgs1::Connection::server(
            id,
            from,
            now,
            &self.cfg,
            &key.ephemeral,
            answer,
            client_key,
            &peer,
            (hello.seq, hello.msgseq, hello.len),
        );
        self.pending += 1;
        let id = self.table.insert(from, Connection::new(Proto::V1(conn)));
        self.admission.admit(now, from.ip(), id, &self.cfg);
        self.stats.hellos_accepted += 1;
        self.touch(id, now);
        let table = &self.table;
        self.admission.compact(self.pending, |id| is_pending(table.get(id)));
        Ok(())
    }

    /// Closes the oldest pending handshake silently; false if none is pending.
    fn evict_oldest_pending(&mut self, now: Instant) -> bool {
        let table = &self.table;
        let Some(id) = self.admission.oldest_pending(|id| is_pending(table.get(id))) else {
            return false;
        };
        self.with_conn(id, |c, cfg, _| c.disconnect(now, cfg));
        self.touch(id, now);
        self.stats.handshakes_evicted += 1;
        true
    }
}

/// Whether `conn` is a live server handshake still pending.
fn is_pending(conn: Option<&Connection>) -> bool {
    conn.is_some_and(|c| Session::role(c) == Role::Server && Session::state(c) == ConnectionState::Connecting)
}
