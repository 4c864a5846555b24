//! Counters: per endpoint (datagrams dropped by reason) and per connection
//! (RTT, rates over rolling one-second buckets, message counters).

use alloc::boxed::Box;
use core::fmt;

use crate::time::{Duration, Instant};

/// Why a received datagram was dropped. Network input never becomes an
/// error; it is dropped and counted under one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Too short, wrong magic or direction, type above 7, bad length, bad
    /// framing, or a handshake body that does not parse.
    Malformed,
    /// The CRC-32 trailer does not match.
    BadCrc,
    /// The AES-GCM tag does not verify, or a SERVER_HELLO signature does not.
    AuthFailed,
    /// A duplicate packet, one older than the window, or a `ctime` far older
    /// than the newest seen (§15 rules 6 and 17).
    Replay,
    /// The source address is on the block list.
    Blocked,
    /// From an address with no connection, or not the server's address at
    /// a client (and not a CLIENT_HELLO at a server).
    UnknownPeer,
    /// A valid datagram the connection's state does not accept: a hello from
    /// an established peer (§15 rules 7, 18, 19), a CRC-only datagram after
    /// the handshake, a datagram type the state does not take.
    Unexpected,
    /// Refused by a limit: a CLIENT_HELLO over a hello rate limit, a
    /// per-address or per-prefix pending limit or the connection cap, or
    /// fragments over a reassembly bound. [`EndpointStats`] has a counter
    /// per limit.
    Rate,
    /// An MPGS/2 datagram (a HELLO2 or a short packet) from an address that
    /// has a live MPGS/1 connection with this endpoint: MPGS/2 never
    /// disturbs it, and nothing MPGS/2 goes to it (MPGS2.md §2.2).
    Mpgs1Address,
    /// A HELLO2 whose `protocol_id` is not this endpoint's
    /// `EndpointConfig::protocol_id` (another game; dropped silently, §2.3).
    ProtocolId,
    /// A HELLO2 that would need a long-header reply to an address that no
    /// cookie has validated, over `v2_reply_rate_per_address` (§2.8), or
    /// with the queue of such replies full.
    ReplyRate,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 11] = [
        DropReason::Malformed,
        DropReason::BadCrc,
        DropReason::AuthFailed,
        DropReason::Replay,
        DropReason::Blocked,
        DropReason::UnknownPeer,
        DropReason::Unexpected,
        DropReason::Rate,
        DropReason::Mpgs1Address,
        DropReason::ProtocolId,
        DropReason::ReplyRate,
    ];

    /// A short lowercase name.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadCrc => "bad_crc",
            DropReason::AuthFailed => "auth_failed",
            DropReason::Replay => "replay",
            DropReason::Blocked => "blocked",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::Unexpected => "unexpected",
            DropReason::Rate => "rate",
            DropReason::Mpgs1Address => "mpgs1_address",
            DropReason::ProtocolId => "protocol_id",
            DropReason::ReplyRate => "reply_rate",
        }
    }
}

/// What a connection tells its endpoint besides application events: the
/// endpoint-wide counters it moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndpointEvent {
    /// A handshake completed.
    HandshakeCompleted,
    /// A repeated hello was not answered: the reply would exceed the bytes
    /// received from the unverified address.
    AmplificationLimited,
    /// A datagram's fragments were refused because the endpoint-wide or the
    /// address's reassembly budget was short.
    ReassemblyBudgetRefused,
    /// Reassembly dropped a fragment.
    FragmentDropped,
    /// This many reassemblies expired.
    ReassembliesExpired(u64),
}

/// Endpoint-wide counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// Datagrams handed to `handle_datagram`.
    pub datagrams_received: u64,
    /// Bytes handed to `handle_datagram`.
    pub bytes_received: u64,
    /// Datagrams returned by `poll_transmit`.
    pub datagrams_sent: u64,
    /// Bytes returned by `poll_transmit`.
    pub bytes_sent: u64,
    /// Handshakes completed (server: clients accepted; client: connects).
    pub handshakes_completed: u64,
    /// Fragments dropped by reassembly validation or bounds (the datagram
    /// itself was valid).
    pub fragments_dropped: u64,
    /// Reassemblies discarded because they expired incomplete.
    pub reassemblies_expired: u64,
    /// CLIENT_HELLOs that started a pending handshake.
    pub hellos_accepted: u64,
    /// CLIENT_HELLOs refused by the endpoint-wide `hello_rate`.
    pub hellos_refused_rate: u64,
    /// CLIENT_HELLOs refused by a per-address or per-prefix limit (pending
    /// handshakes or rate).
    pub hellos_refused_source: u64,
    /// CLIENT_HELLOs refused because `max_connections` clients are
    /// established.
    pub hellos_refused_full: u64,
    /// Pending handshakes evicted (oldest first) to make room for a new one.
    pub handshakes_evicted: u64,
    /// Server ephemeral keys generated and signed for SERVER_HELLOs (at most
    /// one per `server_hello_reuse` period and 64 clients).
    pub server_hello_keys: u64,
    /// SERVER_HELLO repeats not sent because the address has not yet sent us
    /// as many bytes (anti-amplification; never happens with valid hellos).
    pub amplification_limited: u64,
    /// Datagrams refused because the endpoint-wide reassembly budget
    /// (`max_reassembly_bytes_total`) or the sending address's
    /// (`max_reassembly_bytes_per_ip`) was exhausted.
    pub reassembly_budget_refusals: u64,
    /// Messages that arrived intact but did not decode into the type the
    /// application asked for (the `serde` feature's typed messages): a
    /// peer's garbage or another version of the game, never a panic.
    pub messages_undecodable: u64,
    /// MPGS/2: HELLO2s answered with a new SERVER_HELLO, i.e. server ECDH
    /// operations (each also a key generation and a signature).
    pub v2_handshakes_started: u64,
    /// MPGS/2: byte-identical HELLO2 resends answered from a pending entry's
    /// stored SERVER_HELLO (no new ECDH).
    pub v2_hellos_resent: u64,
    /// MPGS/2: HELLO2s answered with HELLO_RETRY (a cookie was demanded).
    pub v2_hello_retries: u64,
    /// MPGS/2: HELLO2s answered with REJECT (any reason).
    pub v2_hellos_rejected: u64,
    /// MPGS/2: REJECT 6 (BUSY) among them: per-source bucket, ECDH budget or
    /// pending cap.
    pub v2_hellos_busy: u64,
    /// MPGS/2: REJECT 1 (FULL) among them because the source address already
    /// has `max_connections_per_ip` connections and handshakes of both
    /// versions together.
    pub v2_hellos_per_ip: u64,
    /// MPGS/2: datagrams not sent because their destination has a live
    /// MPGS/1 connection with this server (§2.2).
    pub v2_suppressed_to_mpgs1: u64,
    /// MPGS/2: stateless resets sent for short packets of unknown
    /// connection ids (§6.4).
    pub v2_resets_sent: u64,
    /// MPGS/2: short packets of unknown connection ids left unanswered: too
    /// short to answer with a smaller reset, or over the reset rate limits.
    pub v2_resets_withheld: u64,
    dropped: [u64; DropReason::ALL.len()],
}

impl EndpointStats {
    /// Datagrams dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    /// Datagrams dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.dropped[reason as usize] += 1;
    }

    /// Books what a connection reported.
    pub(crate) fn count(&mut self, event: EndpointEvent) {
        match event {
            EndpointEvent::HandshakeCompleted => self.handshakes_completed += 1,
            EndpointEvent::AmplificationLimited => self.amplification_limited += 1,
            EndpointEvent::ReassemblyBudgetRefused => self.reassembly_budget_refusals += 1,
            EndpointEvent::FragmentDropped => self.fragments_dropped += 1,
            EndpointEvent::ReassembliesExpired(n) => self.reassemblies_expired += n,
        }
    }
}

impl fmt::Display for EndpointStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rx {} dgrams / {} B, tx {} dgrams / {} B, dropped",
            self.datagrams_received, self.bytes_received, self.datagrams_sent, self.bytes_sent
        )?;
        for r in DropReason::ALL {
            write!(f, " {}={}", r.name(), self.dropped(r))?;
        }
        write!(
            f,
            "; hellos accepted {} refused rate={} source={} full={}, evicted {}, hello keys {}, amplification-limited {}, reassembly-budget refusals {}",
            self.hellos_accepted,
            self.hellos_refused_rate,
            self.hellos_refused_source,
            self.hellos_refused_full,
            self.handshakes_evicted,
            self.server_hello_keys,
            self.amplification_limited,
            self.reassembly_budget_refusals
        )?;
        if self.v2_handshakes_started + self.v2_hello_retries + self.v2_hellos_rejected > 0 {
            write!(
                f,
                "; mpgs2 handshakes {} resent {} retries {} rejected {} (busy {}, per-ip {})",
                self.v2_handshakes_started,
                self.v2_hellos_resent,
                self.v2_hello_retries,
                self.v2_hellos_rejected,
                self.v2_hellos_busy,
                self.v2_hellos_per_ip
            )?;
        }
        Ok(())
    }
}

/// Seconds of history kept for the rate metrics (as the reference keeps).
pub const RATE_HISTORY_SECS: usize = 300;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bucket {
    sent_datagrams: u32,
    sent_bytes: u32,
    recv_datagrams: u32,
    recv_bytes: u32,
}

/// Datagrams and bytes per second, each way.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    /// Datagrams sent per second.
    pub sent_datagrams: f64,
    /// Bytes sent per second.
    pub sent_bytes: f64,
    /// Datagrams received per second.
    pub recv_datagrams: f64,
    /// Bytes received per second.
    pub recv_bytes: f64,
}

/// Per-connection metrics.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct ConnectionMetrics {
    /// Smoothed round-trip time (RFC 6298 style), once measured.
    pub srtt: Option<Duration>,
    /// RTT variation.
    pub rttvar: Duration,
    /// The most recent RTT sample.
    pub latest_rtt: Option<Duration>,
    /// The reference's latency figure: `latency += 0.1·(rtt/2 − latency)`.
    pub latency: Duration,
    /// Messages accepted by `send`.
    pub messages_sent: u64,
    /// Messages delivered to the application.
    pub messages_received: u64,
    /// Messages reported `Delivered`.
    pub messages_acked: u64,
    /// Messages reported `Lost`.
    pub messages_lost: u64,
    /// Message copies sent again (retransmissions and repeats).
    pub messages_retransmitted: u64,
    /// Received messages dropped as duplicates.
    pub duplicate_messages: u64,
    /// Datagrams sent on this connection.
    pub datagrams_sent: u64,
    /// Authenticated datagrams received on this connection.
    pub datagrams_received: u64,
    /// Datagrams declared lost (not acknowledged within the ack timeout).
    pub datagrams_lost: u64,
    /// Datagrams acknowledged.
    pub datagrams_acked: u64,
    /// MPGS/2: reliable messages that waited for the peer's flow window
    /// (`recv_window` or `conn_recv_window`) before their first byte left
    /// (MPGS2.md §4.3). Always 0 on MPGS/1.
    pub flow_blocked: u64,
    /// MPGS/2: packets with reliable frames refused, unacknowledged, while
    /// the application left more than `recv_queue_bytes` of received
    /// messages undrained (MPGS2.md §4.6). Always 0 on MPGS/1.
    pub recv_queue_refused: u64,
    /// Completed seconds, at `sec % RATE_HISTORY_SECS`.
    history: Box<[Bucket; RATE_HISTORY_SECS]>,
    /// The bucket of `current_sec`, kept inline so that the per-datagram
    /// counters never reach into the boxed history (a cache miss per
    /// datagram on a busy server); stored there when the second changes.
    current: Bucket,
    /// The latest second (since the origin) counted.
    current_sec: u64,
}

impl Default for ConnectionMetrics {
    fn default() -> Self {
        ConnectionMetrics {
            srtt: None,
            rttvar: Duration::ZERO,
            latest_rtt: None,
            latency: Duration::ZERO,
            messages_sent: 0,
            messages_received: 0,
            messages_acked: 0,
            messages_lost: 0,
            messages_retransmitted: 0,
            duplicate_messages: 0,
            datagrams_sent: 0,
            datagrams_received: 0,
            datagrams_lost: 0,
            datagrams_acked: 0,
            flow_blocked: 0,
            recv_queue_refused: 0,
            history: Box::new([Bucket::default(); RATE_HISTORY_SECS]),
            current: Bucket::default(),
            current_sec: 0,
        }
    }
}

impl ConnectionMetrics {
    /// Average rates over the last `secs` complete seconds before `now`
    /// (1..=299; the current, partial second is excluded).
    pub fn rates(&self, now: Instant, secs: u32) -> Rates {
        let secs = (secs as usize).clamp(1, RATE_HISTORY_SECS - 1);
        let now_sec = now.as_secs();
        let mut sum = Rates::default();
        for back in 1..=secs as u64 {
            let Some(sec) = now_sec.checked_sub(back) else {
                break;
            };
            if let Some(b) = self.bucket(sec) {
                sum.sent_datagrams += f64::from(b.sent_datagrams);
                sum.sent_bytes += f64::from(b.sent_bytes);
                sum.recv_datagrams += f64::from(b.recv_datagrams);
                sum.recv_bytes += f64::from(b.recv_bytes);
            }
        }
        let n = secs as f64;
        Rates {
            sent_datagrams: sum.sent_datagrams / n,
            sent_bytes: sum.sent_bytes / n,
            recv_datagrams: sum.recv_datagrams / n,
            recv_bytes: sum.recv_bytes / n,
        }
    }

    /// The bucket of second `sec`, if still in the history.
    fn bucket(&self, sec: u64) -> Option<&Bucket> {
        if sec > self.current_sec || self.current_sec - sec >= RATE_HISTORY_SECS as u64 {
            return None;
        }
        if sec == self.current_sec {
            return Some(&self.current);
        }
        Some(&self.history[(sec % RATE_HISTORY_SECS as u64) as usize])
    }

    /// The bucket of the current second (an earlier `now` counts in the
    /// latest second seen).
    fn bucket_mut(&mut self, now: Instant) -> &mut Bucket {
        let sec = now.as_secs();
        if sec > self.current_sec {
            let n = RATE_HISTORY_SECS as u64;
            self.history[(self.current_sec % n) as usize] = self.current;
            // Seconds without traffic in between (all of them after a long
            // silence, the one just stored included) are empty.
            let gap = (sec - self.current_sec).min(n);
            for s in 0..gap {
                self.history[((sec - s) % n) as usize] = Bucket::default();
            }
            self.current = Bucket::default();
            self.current_sec = sec;
        }
        &mut self.current
    }

    pub(crate) fn on_sent(&mut self, now: Instant, bytes: usize) {
        self.datagrams_sent += 1;
        let b = self.bucket_mut(now);
        b.sent_datagrams = b.sent_datagrams.saturating_add(1);
        b.sent_bytes = b.sent_bytes.saturating_add(bytes as u32);
    }

    pub(crate) fn on_received(&mut self, now: Instant, bytes: usize) {
        self.datagrams_received += 1;
        let b = self.bucket_mut(now);
        b.recv_datagrams = b.recv_datagrams.saturating_add(1);
        b.recv_bytes = b.recv_bytes.saturating_add(bytes as u32);
    }

    /// Feeds one RTT sample (RFC 6298 smoothing, and the reference's latency).
    pub(crate) fn on_rtt(&mut self, rtt: Duration) {
        self.latest_rtt = Some(rtt);
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
                self.latency = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
                let half = rtt / 2;
                if half > self.latency {
                    self.latency += (half - self.latency) / 10;
                } else {
                    self.latency -= (self.latency - half) / 10;
                }
            }
        }
    }
}

impl fmt::Debug for ConnectionMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionMetrics")
            .field("srtt", &self.srtt)
            .field("latency", &self.latency)
            .field("messages_sent", &self.messages_sent)
            .field("messages_received", &self.messages_received)
            .field("messages_acked", &self.messages_acked)
            .field("messages_lost", &self.messages_lost)
            .field("messages_retransmitted", &self.messages_retransmitted)
            .field("datagrams_sent", &self.datagrams_sent)
            .field("datagrams_received", &self.datagrams_received)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_average_complete_seconds() {
        let mut m = ConnectionMetrics::default();
        for i in 0..30u64 {
            // 10 datagrams of 100 B in each of seconds 0, 1, 2.
            m.on_sent(Instant::from_millis(i * 100), 100);
            m.on_received(Instant::from_millis(i * 100 + 50), 50);
        }
        let r = m.rates(Instant::from_millis(3_500), 3);
        assert_eq!(r.sent_datagrams, 10.0);
        assert_eq!(r.sent_bytes, 1000.0);
        assert_eq!(r.recv_bytes, 500.0);
        // Far later, the history has rolled past them.
        m.on_sent(Instant::from_secs(1000), 1);
        assert_eq!(m.rates(Instant::from_secs(1001), 299).sent_datagrams, 1.0 / 299.0);
        assert_eq!(m.rates(Instant::from_secs(1001), 1).sent_bytes, 1.0);
    }

    #[test]
    fn rates_across_gaps_and_a_late_instant() {
        let mut m = ConnectionMetrics::default();
        m.on_sent(Instant::from_millis(5_100), 10);
        m.on_sent(Instant::from_millis(5_900), 10);
        // Second 5 is the latest counted (not yet stored in the history).
        assert_eq!(m.rates(Instant::from_secs(6), 1).sent_datagrams, 2.0);
        assert_eq!(m.rates(Instant::from_secs(9), 4).sent_bytes, 5.0);
        // Three silent seconds, then second 9; an earlier instant counts in it.
        m.on_sent(Instant::from_millis(9_500), 30);
        m.on_sent(Instant::from_millis(8_000), 30);
        let r = m.rates(Instant::from_secs(10), 5);
        assert_eq!((r.sent_datagrams, r.sent_bytes), (4.0 / 5.0, 80.0 / 5.0));
        assert_eq!(m.rates(Instant::from_secs(10), 1).sent_datagrams, 2.0);
        assert_eq!(m.rates(Instant::from_secs(9), 3).sent_datagrams, 0.0);
    }

    #[test]
    fn rtt_smoothing() {
        let mut m = ConnectionMetrics::default();
        m.on_rtt(Duration::from_millis(100));
        assert_eq!(m.srtt, Some(Duration::from_millis(100)));
        assert_eq!(m.latency, Duration::from_millis(50));
        m.on_rtt(Duration::from_millis(20));
        assert_eq!(m.srtt, Some(Duration::from_millis(90)));
        assert_eq!(m.latency, Duration::from_millis(46));
    }
}
