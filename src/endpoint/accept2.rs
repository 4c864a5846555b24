//! A new MPGS/2 client's way in (MPGS2.md §2.2, §2.4, §2.5, §2.8), cheapest
//! check first: (block list, in `handle_datagram`) → a live MPGS/1
//! connection from the address → HELLO2 frame and TLV parse → protocol id →
//! pending-entry match (a byte-identical resend is answered from the stored
//! SERVER_HELLO) → cookie per policy → version and suite → per-source
//! bucket → ECDH budget → pending cap → connection cap → ECDH and signature.
//!
//! Refusals before the cookie check get nothing; refusals after it get
//! REJECT. Long-header replies to addresses no cookie has validated are
//! limited per address, and each HELLO2 gets at most one reply, never
//! larger than the hello, so an unvalidated address never receives more
//! bytes than it sent. None of this touches MPGS/1 admission state.

use alloc::collections::{BTreeMap, BTreeSet};
use core::net::{IpAddr, SocketAddr};

use sha2::{Digest, Sha256};

use super::{Endpoint, FINAL_DATAGRAM_MAX};
use crate::admission::Bucket;
use crate::config::{CookiePolicy, EndpointConfig, RateLimit};
use crate::event::ConnectionId;
use crate::mpgs2::cookie::CookieKeys;
use crate::mpgs2::handshake::{ServerAnswer, ServerPolicy, choose, server_answer};
use crate::mpgs2::hello::{HELLO2_DATA_LEN, HELLO2_DATA_OFFSET, Hello2, HelloRetry, Reject, RejectReason};
use crate::mpgs2::keys::Zeroizing;
use crate::mpgs2::reset::{MIN_TRIGGER_LEN, ResetKey, TOKEN_LEN, default_reset_base, emit_reset};
use crate::mpgs2::session::{self, PendingKey};
use crate::mpgs2::{CID_LEN, VERSION};
use crate::rng::Rng;
use crate::session::{Connection, Proto};
use crate::stats::DropReason;
use crate::time::Instant;

/// Addresses (or sources) a rate table tracks at most (§2.8: 4,096, LRU).
const RATE_TABLE_MAX: usize = 4096;
/// Long-header replies waiting for `poll_transmit` at most; more are
/// dropped (counted as `ReplyRate`).
const REPLY_QUEUE_MAX: usize = 4096;
/// HELLO2s per second above which `UnderLoad` demands cookies (§2.4).
const UNDER_LOAD_HELLOS: u32 = 100;
/// Stateless resets to one source (§6.4: at most 1/s).
const RESET_RATE_PER_SOURCE: RateLimit = RateLimit::new(1, 1);
/// Stateless resets in total (§6.4: at most 1,000/s).
const RESET_RATE_TOTAL: RateLimit = RateLimit::new(1000, 1000);

/// A bounded table of token buckets. When full, idle entries are swept and,
/// if none is idle, the entry whose bucket refills soonest is forgotten
/// (the least recently charged one, an LRU by charge time). Both come first
/// in `by_tat`, so a charge costs O(log n) even with the table full of
/// spoofed sources (a sweep of the whole table per hello made every
/// spoofed HELLO2 cost thousands of steps under a flood).
#[derive(Debug)]
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
struct RateTable<K: Ord> {
    buckets: BTreeMap<K, Bucket>,
    /// The same entries ordered by (bucket, key): idle ones first.
    by_tat: BTreeSet<(Bucket, K)>,
}

impl<K: Ord + Copy> RateTable<K> {
    fn new() -> RateTable<K> {
        RateTable { buckets: BTreeMap::new(), by_tat: BTreeSet::new() }
    }

    fn allows(&self, now: Instant, key: &K, limit: RateLimit) -> bool {
        self.buckets.get(key).is_none_or(|b| b.allows(now, limit))
    }

    fn take(&mut self, now: Instant, key: K, limit: RateLimit) {
        if !self.buckets.contains_key(&key) && self.buckets.len() >= RATE_TABLE_MAX {
            // Every idle entry goes; they lead the index.
            while let Some(&(b, k)) = self.by_tat.first() {
                if !b.idle(now) {
                    break;
                }
                self.by_tat.pop_first();
                self.buckets.remove(&k);
            }
            if self.buckets.len() >= RATE_TABLE_MAX {
                // Deterministic: the earliest refill, ties by key order.
                if let Some((_, k)) = self.by_tat.pop_first() {
                    self.buckets.remove(&k);
                }
            }
        }
        let b = self.buckets.entry(key).or_default();
        self.by_tat.remove(&(*b, key));
        b.take(now, limit);
        self.by_tat.insert((*b, key));
    }
}

/// A source of MPGS/2 hellos for the per-source buckets: /32 for IPv4
/// (IPv4-mapped IPv6 included), /64 for IPv6 (§2.8).
fn source_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => (u128::from(a) >> 64) << 64 | 1 << 32,
        },
    }
}

/// A server's MPGS/2 admission state. Its random values come from its own
/// stream, derived from the endpoint seed, so MPGS/2 traffic never shifts
/// what MPGS/1 draws (the pinned MPGS/1 traces stay as they are).
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub(crate) struct V2State {
    pub(super) rng: Rng,
    cookies: Option<CookieKeys>,
    reset_key: Option<ResetKey>,
    /// Pending entries (§2.5), bounded by `max_pending_handshakes`.
    pub(super) pending: BTreeMap<PendingKey, ConnectionId>,
    replies: RateTable<SocketAddr>,
    sources: RateTable<u128>,
    ecdh: Bucket,
    /// Stateless resets: per source and in total (§6.4).
    reset_sources: RateTable<u128>,
    resets: Bucket,
    /// HELLO2s in the current second and the previous one.
    hellos: (u64, u32, u32),
}

impl core::fmt::Debug for V2State {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("V2State").field("pending", &self.pending.len()).finish_non_exhaustive()
    }
}

impl V2State {
    pub(super) fn new(rng: Rng) -> V2State {
        V2State {
            rng,
            cookies: None,
            reset_key: None,
            pending: BTreeMap::new(),
            replies: RateTable::new(),
            sources: RateTable::new(),
            ecdh: Bucket::FULL,
            reset_sources: RateTable::new(),
            resets: Bucket::FULL,
            hellos: (0, 0, 0),
        }
    }

    fn count_hello(&mut self, now: Instant) {
        let sec = now.as_secs();
        let (s, cur, _) = self.hellos;
        self.hellos = match sec.saturating_sub(s) {
            0 => (s, cur.saturating_add(1), self.hellos.2),
            1 => (sec, 1, cur),
            _ => (sec, 1, 0),
        };
    }

    fn under_load(&self, now: Instant, cfg: &EndpointConfig) -> bool {
        let (s, cur, prev) = self.hellos;
        let recent = match now.as_secs().saturating_sub(s) {
            0 => cur.max(prev),
            1 => cur,
            _ => 0,
        };
        recent > UNDER_LOAD_HELLOS || self.pending.len() * 2 > cfg.max_pending_handshakes
    }
}

/// The random stream of MPGS/2 on an endpoint seeded with `seed`.
pub(super) fn v2_rng(seed: &crate::rng::Seed) -> Rng {
    let mut h = Sha256::new();
    h.update(b"mpgameserver MPGS/2 stream\0");
    h.update(seed.0);
    let mut s = [0u8; 32];
    s.copy_from_slice(&h.finalize());
    Rng::new(crate::rng::Seed(s))
}

impl Endpoint {
    /// A HELLO2 (an MPGS/1 CLIENT_HELLO whose version field is 2, §2.2).
    pub(super) fn accept_mpgs2(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Result<(), DropReason> {
        if self.table.by_addr(from).is_some() {
            // A live MPGS/1 connection there: nothing MPGS/2 goes to it.
            return Err(DropReason::Mpgs1Address);
        }
        let hello = Hello2::parse(datagram).map_err(|_| DropReason::Malformed)?;
        let t = &hello.tlvs;
        if t.protocol_id != self.cfg.protocol_id {
            return Err(DropReason::ProtocolId);
        }
        self.v2.count_hello(now);
        let data = &datagram[HELLO2_DATA_OFFSET..HELLO2_DATA_OFFSET + HELLO2_DATA_LEN];
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&Sha256::digest(data));
        let key: PendingKey = (from, t.client_random, digest);
        if let Some(&id) = self.v2.pending.get(&key) {
            // A byte-identical resend: the stored reply again, no ECDH.
            // Each resend (1200 B in) earns at most one reply (1200 B out).
            if !self.v2.replies.allows(now, &from, self.cfg.v2_reply_rate_per_address) {
                return Err(DropReason::ReplyRate);
            }
            self.v2.replies.take(now, from, self.cfg.v2_reply_rate_per_address);
            if self.table.get_mut(id).and_then(Connection::v2_mut).is_some_and(|c| c.resend_reply()) {
                self.stats.v2_hellos_resent += 1;
                self.touch(id, now);
            }
            return Ok(());
        }
        let source = source_of(from.ip());
        let bucket_ok = self.v2.sources.allows(now, &source, self.cfg.v2_hello_rate_per_source);
        let policy_wants = match self.cfg.cookie_policy {
            CookiePolicy::Always => true,
            CookiePolicy::Never => false,
            _ => self.v2.under_load(now, &self.cfg),
        };
        let Some(root) = self.server_key.as_ref() else { return Err(DropReason::UnknownPeer) };
        let cookies = match &mut self.v2.cookies {
            Some(c) => {
                c.rotate_if_due(now, &mut self.v2.rng);
                c
            }
            None => self.v2.cookies.insert(CookieKeys::new(now, &mut self.v2.rng)),
        };
        let cookie_ok = t.cookie.is_some_and(|c| cookies.check(now, from, &t.client_random, &c));
        // `max_connections_per_ip`, both versions together. An unvalidated
        // hello over it must bring a cookie first, so spoofed hellos cannot
        // make a victim's address look full to itself for long.
        let ip_full = self.admission.load_of(from.ip(), &self.cfg) >= self.cfg.max_connections_per_ip;
        if !cookie_ok && (policy_wants || !bucket_ok || ip_full) {
            let cookie = cookies.issue(now, from, &t.client_random);
            let mut out = [0u8; HelloRetry::LEN];
            let r = HelloRetry { version: VERSION, client_random: t.client_random, cookie };
            r.emit(&mut out).map_err(|_| DropReason::Malformed)?;
            self.long_reply(now, from, &out, false)?;
            self.stats.v2_hello_retries += 1;
            return Ok(());
        }
        let (params, _) = session::local_params(&self.cfg);
        let policy = ServerPolicy {
            protocol_id: self.cfg.protocol_id,
            versions: &session::VERSIONS,
            suites: &session::SUITES,
            params,
            require_cookie: false,
        };
        let refusal = if choose(&policy, t).is_none() {
            Some(RejectReason::NoCommonVersionOrSuite)
        } else if (cookie_ok && !bucket_ok)
            || !self.v2.ecdh.allows(now, self.cfg.v2_ecdh_rate)
            || self.v2.pending.len() >= self.cfg.max_pending_handshakes
        {
            Some(RejectReason::Busy)
        } else if ip_full || self.established + self.pending + self.v2.pending.len() >= self.cfg.max_connections {
            Some(RejectReason::Full)
        } else {
            None
        };
        if let Some(reason) = refusal {
            let mut out = [0u8; Reject::LEN];
            Reject { version: VERSION, client_random: t.client_random, reason }
                .emit(&mut out)
                .map_err(|_| DropReason::Malformed)?;
            self.long_reply(now, from, &out, cookie_ok)?;
            self.stats.v2_hellos_rejected += 1;
            if reason == RejectReason::Busy {
                self.stats.v2_hellos_busy += 1;
            }
            if reason == RejectReason::Full && ip_full {
                self.stats.v2_hellos_per_ip += 1;
            }
            return Ok(());
        }
        if !cookie_ok {
            // SERVER_HELLO is a long-header reply too (§2.8).
            if !self.v2.replies.allows(now, &from, self.cfg.v2_reply_rate_per_address) {
                return Err(DropReason::ReplyRate);
            }
            self.v2.replies.take(now, from, self.cfg.v2_reply_rate_per_address);
        } else {
            self.v2.sources.take(now, source, self.cfg.v2_hello_rate_per_source);
        }
        let cid = self.table.new_cid(&mut self.v2.rng);
        let answer =
            server_answer(now, &policy, root, cookies, from, datagram, cid, &mut self.v2.rng).map_err(|e| match e {
                crate::mpgs2::handshake::HandshakeError::BadKey => DropReason::Malformed,
                _ => DropReason::Unexpected,
            })?;
        self.v2.ecdh.take(now, self.cfg.v2_ecdh_rate);
        self.stats.v2_handshakes_started += 1;
        let ServerAnswer::Accept { server_hello, established, .. } = answer else {
            // `choose` and `require_cookie: false` rule out the other answers.
            return Err(DropReason::Unexpected);
        };
        let Some(token) = self.reset_token(&cid) else { return Err(DropReason::UnknownPeer) };
        let id = self.table.vacant();
        let conn = session::Connection::server(id, from, now, &self.cfg, established, &server_hello, key, token);
        let id = self.table.insert_cid(cid, Connection::new(Proto::V2(alloc::boxed::Box::new(conn))));
        self.v2.pending.insert(key, id);
        self.admission.v2_pending(now, from.ip(), true, &self.cfg);
        self.touch(id, now);
        Ok(())
    }

    /// The stateless reset token of `cid` at this server (§6.4), from the
    /// endpoint's reset key, made on first use: from the configured
    /// `reset_base`, else from the root key, and the `endpoint_id`.
    fn reset_token(&mut self, cid: &[u8; CID_LEN]) -> Option<[u8; TOKEN_LEN]> {
        if self.v2.reset_key.is_none() {
            let base = match &self.cfg.reset_base {
                Some(b) => Zeroizing::new(b.0),
                None => default_reset_base(self.server_key.as_ref()?),
            };
            self.v2.reset_key = Some(ResetKey::new(&base, self.cfg.endpoint_id));
        }
        self.v2.reset_key.as_ref().map(|k| k.token(cid))
    }

    /// A short packet of `len` bytes for connection id `cid`, which no
    /// connection here has, from `from` (which has no live MPGS/1
    /// connection here): answered with a stateless reset (§6.4) smaller
    /// than the packet, at most 1/s per source and 1,000/s in all, so
    /// resets never loop and never amplify. False when withheld.
    pub(super) fn stateless_reset(&mut self, now: Instant, from: SocketAddr, cid: &[u8; CID_LEN], len: usize) -> bool {
        let source = source_of(from.ip());
        if len < MIN_TRIGGER_LEN
            || self.finals.len() >= REPLY_QUEUE_MAX
            || !self.v2.resets.allows(now, RESET_RATE_TOTAL)
            || !self.v2.reset_sources.allows(now, &source, RESET_RATE_PER_SOURCE)
        {
            self.stats.v2_resets_withheld += 1;
            return false;
        }
        let Some(token) = self.reset_token(cid) else { return false };
        let mut out = [0u8; FINAL_DATAGRAM_MAX];
        let Some(n) = emit_reset(len, &token, &mut self.v2.rng, &mut out) else { return false };
        let Ok(bytes) = heapless::Vec::from_slice(&out[..n]) else { return false };
        self.v2.resets.take(now, RESET_RATE_TOTAL);
        self.v2.reset_sources.take(now, source, RESET_RATE_PER_SOURCE);
        self.finals.push_back((from, bytes));
        self.stats.v2_resets_sent += 1;
        true
    }

    /// Queues a HELLO_RETRY or REJECT for `to`; `validated` when a valid
    /// cookie came with the hello (no per-address reply limit then).
    fn long_reply(&mut self, now: Instant, to: SocketAddr, bytes: &[u8], validated: bool) -> Result<(), DropReason> {
        if self.finals.len() >= REPLY_QUEUE_MAX {
            return Err(DropReason::ReplyRate);
        }
        if !validated {
            if !self.v2.replies.allows(now, &to, self.cfg.v2_reply_rate_per_address) {
                return Err(DropReason::ReplyRate);
            }
            self.v2.replies.take(now, to, self.cfg.v2_reply_rate_per_address);
        }
        let bytes: heapless::Vec<u8, FINAL_DATAGRAM_MAX> =
            heapless::Vec::from_slice(bytes).map_err(|_| DropReason::Malformed)?;
        self.finals.push_back((to, bytes));
        Ok(())
    }

    /// A server's MPGS/2 connection `id` became connected: its pending entry
    /// goes, and so does the other variant's entry of the same attempt
    /// (§2.5), silently.
    pub(super) fn v2_confirmed(&mut self, id: ConnectionId, now: Instant) {
        let Some(key) = self.table.get(id).and_then(Connection::v2).and_then(|c| c.pending_key().copied()) else {
            return;
        };
        if self.v2.pending.remove(&key).is_some() {
            self.admission.v2_pending(now, key.0.ip(), false, &self.cfg);
        }
        let (addr, random, _) = key;
        let siblings: alloc::vec::Vec<ConnectionId> = self
            .v2
            .pending
            .range((addr, random, [0u8; 32])..=(addr, random, [0xFF; 32]))
            .map(|(_, &sid)| sid)
            .collect();
        for sid in siblings {
            self.with_conn(sid, |c, cfg, _| crate::session::Session::disconnect(c, now, cfg));
            self.touch(sid, now);
        }
    }

    /// The pending entry of a released MPGS/2 connection goes with it.
    pub(super) fn v2_released(&mut self, conn: &Connection) {
        if let Some(key) = conn.v2().and_then(|c| c.pending_key())
            && self.v2.pending.remove(key).is_some()
        {
            self.admission.v2_pending(self.now, key.0.ip(), false, &self.cfg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table before the index: a whole-table sweep per new key.
    fn naive_take(m: &mut BTreeMap<u32, Bucket>, now: Instant, key: u32, limit: RateLimit) {
        if !m.contains_key(&key) && m.len() >= RATE_TABLE_MAX {
            m.retain(|_, b| !b.idle(now));
            if m.len() >= RATE_TABLE_MAX
                && let Some(k) = m.iter().min_by_key(|(_, b)| **b).map(|(k, _)| *k)
            {
                m.remove(&k);
            }
        }
        m.entry(key).or_default().take(now, limit);
    }

    #[test]
    fn rate_table_evicts_as_the_whole_table_sweep_did() {
        // Found by the 200,000/s spoofed flood scenario (tests/sim/mpgs2_scen.rs):
        // with 4,096 busy entries every new source swept the whole table.
        let limit = RateLimit { per_second: 8, burst: 8 };
        let mut t: RateTable<u32> = RateTable::new();
        let mut naive = BTreeMap::new();
        let mut x = 0x1234_5678u32;
        for i in 0..40_000u64 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Mostly new keys (a spoofed flood), some repeats.
            let key = if i % 5 == 0 { x % 64 } else { x };
            let now = Instant::from_micros(i * 20);
            t.take(now, key, limit);
            naive_take(&mut naive, now, key, limit);
            assert!(t.buckets.len() <= RATE_TABLE_MAX);
            assert_eq!(t.buckets.len(), t.by_tat.len());
        }
        assert_eq!(t.buckets, naive);
        let idx: BTreeSet<(Bucket, u32)> = naive.iter().map(|(k, b)| (*b, *k)).collect();
        assert_eq!(t.by_tat, idx);
    }
}
