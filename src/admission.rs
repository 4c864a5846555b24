//! Admission of new clients at a server (PROTOCOL.md §16 bug 9): the hello
//! rate limits (endpoint-wide, per source address, per source prefix), the
//! per-address and per-prefix pending-handshake limits, the order in which
//! pending handshakes are evicted. Every protocol version admits its new
//! connections through it.
//!
//! Everything here runs only for CLIENT_HELLOs from unknown addresses; the
//! datagrams of established connections never reach it.
//!
//! The host entries also count each address's established connections
//! (`max_connections_per_ip`) and the reassembly bytes its connections hold
//! (`max_reassembly_bytes_per_ip`), so that one host cannot take the
//! endpoint-wide reassembly budget from the others.
//!
//! Memory is bounded: a source is tracked only while it has a pending
//! handshake, a connection or reassembly bytes, or its buckets are not yet
//! full again, and sources are only created by hellos that passed every rate
//! limit and by established connections, so at most
//! `2 · (max_pending_handshakes + hellos accepted within one refill time) +
//! max_connections` sources exist (see SECURITY.md for the figure).

use alloc::collections::{BTreeMap, VecDeque};
use core::net::IpAddr;

use crate::config::{EndpointConfig, RateLimit};
use crate::event::ConnectionId;
use crate::time::{Duration, Instant};

/// Sources are swept for idle entries at most this often.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// One token bucket, as a generic cell-rate algorithm: `tat` is the
/// theoretical arrival time of the next event. An event at `now` conforms
/// when `tat ≤ now + tolerance`; it then moves `tat` one interval on. The
/// bucket is full again (and can be forgotten) once `tat ≤ now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Bucket {
    tat: Instant,
}

impl Bucket {
    pub(crate) const FULL: Bucket = Bucket { tat: Instant::ZERO };

    pub(crate) fn allows(&self, now: Instant, limit: RateLimit) -> bool {
        self.tat.as_micros() <= now.as_micros().saturating_add(limit.tolerance_micros())
    }

    pub(crate) fn take(&mut self, now: Instant, limit: RateLimit) {
        self.tat = Instant::from_micros(self.tat.max(now).as_micros().saturating_add(limit.interval_micros()));
    }

    pub(crate) fn idle(&self, now: Instant) -> bool {
        self.tat <= now
    }
}

/// A source of hellos: one address (`Host`) or one prefix (`Prefix`).
/// IPv4 addresses live in the low 32 bits; an IPv4-mapped IPv6 address is
/// its IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SourceKey {
    Host4(u32),
    Prefix4(u32),
    Host6(u128),
    Prefix6(u128),
}

#[derive(Clone, Copy, Debug, Default)]
struct Source {
    pending: u32,
    /// Established connections (host entries only).
    connections: u32,
    /// Reassembly bytes its connections hold (host entries only).
    reassembly: usize,
    /// MPGS/2 pending entries (host entries only): they count against
    /// `max_connections_per_ip` with MPGS/1's, not against MPGS/1's
    /// pending limits (MPGS/2 has its own, MPGS2.md §2.8).
    v2_pending: u32,
    bucket: Bucket,
}

impl Source {
    /// What counts against `max_connections_per_ip`: pending handshakes and
    /// connections of both versions.
    fn load(&self) -> usize {
        (self.pending as usize).saturating_add(self.connections as usize).saturating_add(self.v2_pending as usize)
    }

    /// Whether nothing needs it any more.
    fn unused(&self, now: Instant) -> bool {
        self.pending == 0
            && self.connections == 0
            && self.v2_pending == 0
            && self.reassembly == 0
            && self.bucket.idle(now)
    }
}

impl Default for Bucket {
    fn default() -> Bucket {
        Bucket::FULL
    }
}

/// Why a hello was refused before any cryptography.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The endpoint-wide hello rate.
    Rate,
    /// A per-address or per-prefix pending or rate limit.
    Source,
}

/// The two source keys of an address: its host and its prefix.
fn keys_of(ip: IpAddr, cfg: &EndpointConfig) -> (SourceKey, SourceKey) {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let p = u32::from(cfg.hello_prefix_v4.min(32));
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            (SourceKey::Host4(bits), SourceKey::Prefix4(bits & mask))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let p = u32::from(cfg.hello_prefix_v6.min(128));
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            (SourceKey::Host6(bits), SourceKey::Prefix6(bits & mask))
        }
    }
}

/// The admission state of a server endpoint.
#[derive(Debug, Default)]
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub(crate) struct Admission {
    global: Bucket,
    sources: BTreeMap<SourceKey, Source>,
    next_sweep: Instant,
    /// Pending handshakes in the order they started (oldest first). Entries
    /// whose handshake has ended are skipped lazily and compacted away.
    order: VecDeque<ConnectionId>,
}

impl Admission {
    /// Checks every limit for a hello from `ip` without charging anything.
    pub(crate) fn check(&self, now: Instant, ip: IpAddr, cfg: &EndpointConfig) -> Result<(), Refusal> {
        let (host, prefix) = keys_of(ip, cfg);
        let get = |k| self.sources.get(&k).copied().unwrap_or_default();
        let (h, p) = (get(host), get(prefix));
        if h.pending as usize >= cfg.max_pending_per_ip
            || h.load() >= cfg.max_connections_per_ip
            || p.pending as usize >= cfg.max_pending_per_prefix
            || !h.bucket.allows(now, cfg.hello_rate_per_ip)
            || !p.bucket.allows(now, cfg.hello_rate_per_prefix)
        {
            return Err(Refusal::Source);
        }
        if !self.global.allows(now, cfg.hello_rate) {
            return Err(Refusal::Rate);
        }
        Ok(())
    }

    /// Charges an accepted hello from `ip` to every bucket, and counts its
    /// pending handshake `id` against the address and the prefix.
    pub(crate) fn admit(&mut self, now: Instant, ip: IpAddr, id: ConnectionId, cfg: &EndpointConfig) {
        if now >= self.next_sweep {
            self.sweep(now);
        }
        self.global.take(now, cfg.hello_rate);
        let (host, prefix) = keys_of(ip, cfg);
        for (key, limit) in [(host, cfg.hello_rate_per_ip), (prefix, cfg.hello_rate_per_prefix)] {
            let s = self.sources.entry(key).or_default();
            s.bucket.take(now, limit);
            s.pending += 1;
        }
        self.order.push_back(id);
    }

    /// A pending handshake from `ip` has ended (completed, expired or evicted).
    pub(crate) fn release(&mut self, now: Instant, ip: IpAddr, cfg: &EndpointConfig) {
        let (host, prefix) = keys_of(ip, cfg);
        for key in [host, prefix] {
            if let Some(s) = self.sources.get_mut(&key) {
                s.pending = s.pending.saturating_sub(1);
                if s.unused(now) {
                    self.sources.remove(&key);
                }
            }
        }
    }

    /// Pending handshakes and connections of both versions from `ip`, as
    /// `max_connections_per_ip` counts them.
    pub(crate) fn load_of(&self, ip: IpAddr, cfg: &EndpointConfig) -> usize {
        let (host, _) = keys_of(ip, cfg);
        self.sources.get(&host).map_or(0, Source::load)
    }

    /// An MPGS/2 pending entry from `ip` was created (`up`) or removed.
    pub(crate) fn v2_pending(&mut self, now: Instant, ip: IpAddr, up: bool, cfg: &EndpointConfig) {
        let (host, _) = keys_of(ip, cfg);
        if up {
            self.sources.entry(host).or_default().v2_pending += 1;
        } else if let Some(s) = self.sources.get_mut(&host) {
            s.v2_pending = s.v2_pending.saturating_sub(1);
            if s.unused(now) {
                self.sources.remove(&host);
            }
        }
    }

    /// A connection from `ip` became established (`up`) or ended.
    pub(crate) fn connection(&mut self, now: Instant, ip: IpAddr, up: bool, cfg: &EndpointConfig) {
        let (host, _) = keys_of(ip, cfg);
        if up {
            self.sources.entry(host).or_default().connections += 1;
        } else if let Some(s) = self.sources.get_mut(&host) {
            s.connections = s.connections.saturating_sub(1);
            if s.unused(now) {
                self.sources.remove(&host);
            }
        }
    }

    /// Reassembly bytes of the per-address budget of `ip` left beside its
    /// other connections, for one that holds `own`.
    pub(crate) fn reassembly_room(&self, ip: IpAddr, own: usize, cfg: &EndpointConfig) -> usize {
        let (host, _) = keys_of(ip, cfg);
        let held = self.sources.get(&host).map_or(0, |s| s.reassembly);
        cfg.max_reassembly_bytes_per_ip.saturating_sub(held.saturating_sub(own))
    }

    /// A connection from `ip` went from holding `before` to `after`
    /// reassembly bytes.
    pub(crate) fn reassembly_changed(
        &mut self,
        now: Instant,
        ip: IpAddr,
        before: usize,
        after: usize,
        cfg: &EndpointConfig,
    ) {
        if before == after {
            return;
        }
        let (host, _) = keys_of(ip, cfg);
        let s = self.sources.entry(host).or_default();
        s.reassembly = s.reassembly.saturating_sub(before).saturating_add(after);
        if s.unused(now) {
            self.sources.remove(&host);
        }
    }

    /// Forgets every source nothing needs any more.
    fn sweep(&mut self, now: Instant) {
        self.sources.retain(|_, s| !s.unused(now));
        self.next_sweep = now + SWEEP_INTERVAL;
    }

    /// The oldest handshake for which `is_pending` holds, removed from the
    /// order; ended ones met on the way are dropped.
    pub(crate) fn oldest_pending(&mut self, mut is_pending: impl FnMut(ConnectionId) -> bool) -> Option<ConnectionId> {
        while let Some(id) = self.order.pop_front() {
            if is_pending(id) {
                return Some(id);
            }
        }
        None
    }

    /// Drops ended handshakes from the order once it holds more than twice
    /// `pending` entries, so it stays within `2 · max_pending + 1`.
    pub(crate) fn compact(&mut self, pending: usize, mut is_pending: impl FnMut(ConnectionId) -> bool) {
        if self.order.len() > 2 * pending + 1 {
            self.order.retain(|&id| is_pending(id));
        }
    }

    /// Sources tracked (for tests and the memory figure).
    #[cfg(test)]
    pub(crate) fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Established connections and reassembly bytes counted for `ip` (tests).
    #[cfg(test)]
    pub(crate) fn host(&self, ip: IpAddr, cfg: &EndpointConfig) -> (u32, usize) {
        let (host, _) = keys_of(ip, cfg);
        self.sources.get(&host).map_or((0, 0), |s| (s.connections, s.reassembly))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let limit = RateLimit::new(10, 3); // one per 100 ms, three at once
        let mut b = Bucket::FULL;
        let t0 = Instant::from_secs(5);
        for _ in 0..3 {
            assert!(b.allows(t0, limit));
            b.take(t0, limit);
        }
        assert!(!b.allows(t0, limit));
        assert!(!b.allows(t0 + Duration::from_millis(99), limit));
        assert!(b.allows(t0 + Duration::from_millis(100), limit));
        assert!(!b.idle(t0 + Duration::from_millis(299)));
        assert!(b.idle(t0 + Duration::from_millis(300)));
        let mut u = Bucket::FULL;
        for _ in 0..1000 {
            assert!(u.allows(t0, RateLimit::UNLIMITED));
            u.take(t0, RateLimit::UNLIMITED);
        }
    }

    #[test]
    fn sources_group_by_prefix_and_mapped_v4() {
        let cfg = EndpointConfig::default();
        let a = keys_of("192.0.2.7".parse().unwrap(), &cfg);
        let b = keys_of("::ffff:192.0.2.200".parse().unwrap(), &cfg);
        assert_eq!(a.1, b.1);
        assert_ne!(a.0, b.0);
        let c = keys_of("2001:db8:1:2:aaaa::1".parse().unwrap(), &cfg);
        let d = keys_of("2001:db8:1:2:bbbb::9".parse().unwrap(), &cfg);
        let e = keys_of("2001:db8:1:3::1".parse().unwrap(), &cfg);
        assert_eq!(c.1, d.1);
        assert_ne!(c.1, e.1);
    }
}
