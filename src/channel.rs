//! Channels (MPGS2.md §4.3–§4.6): independent message streams on one
//! connection, each with its own delivery guarantee, priority, weight, TTL,
//! queue limit and receipts.
//!
//! Channels are configured locally, per direction, in
//! [`EndpointConfig::channels`](crate::EndpointConfig::channels): the peer
//! learns a channel's kind from the first frame it receives on it. Three
//! channels always exist, the ones the [`Delivery`](crate::Delivery) modes
//! use; ids 3–63 are free for the game's own.
//!
//! | Kind | Delivered to the peer | Sender |
//! |---|---|---|
//! | [`Unreliable`](ChannelKind::Unreliable) | at most once, in arrival order | sent once; dropped after its TTL (default 100 ms) if it could not leave |
//! | [`UnreliableSequenced`](ChannelKind::UnreliableSequenced) | at most once, only if newer than every message delivered before on the channel | a newer queued message replaces an older unsent one (`Lost(Superseded)`) |
//! | [`ReliableUnordered`](ChannelKind::ReliableUnordered) | exactly once, in arrival order | resent until acknowledged; optional TTL before the first byte leaves |
//! | [`ReliableOrdered`](ChannelKind::ReliableOrdered) | exactly once, in send order | resent until acknowledged; no TTL |
//!
//! ```
//! use mpgameserver::{ChannelConfig, ChannelKind, Duration, EndpointConfig};
//!
//! let mut cfg = EndpointConfig::default();
//! cfg.channels = vec![
//!     ChannelConfig::new(3, ChannelKind::UnreliableSequenced),           // inputs
//!     ChannelConfig::new(4, ChannelKind::ReliableOrdered).with_priority(1), // chat
//!     ChannelConfig::new(5, ChannelKind::ReliableUnordered)              // assets
//!         .with_priority(7)
//!         .with_queue_limit(4 << 20),
//! ];
//! cfg.validate().unwrap();
//! ```

use alloc::boxed::Box;
use core::fmt;

pub use crate::mpgs2::frame::ChannelKind;
use crate::time::Duration;

/// Channel of [`Delivery::Unreliable`](crate::Delivery::Unreliable): unreliable, TTL 100 ms.
pub const UNRELIABLE: u8 = 0;
/// Channel of [`Delivery::BestEffort`](crate::Delivery::BestEffort): reliable-unordered with a 1 s TTL.
pub const BEST_EFFORT: u8 = 1;
/// Channel of [`Delivery::Reliable`](crate::Delivery::Reliable): reliable-ordered.
pub const RELIABLE: u8 = 2;
/// The first id free for configured channels.
pub const FIRST_CONFIGURABLE: u8 = 3;
/// Channels per direction: ids 0–63.
pub const MAX_CHANNELS: u8 = crate::mpgs2::frame::MAX_CHANNELS;
/// The lowest priority (0 is served first).
pub const MAX_PRIORITY: u8 = 7;
/// Default queue limit of a configured channel (256 KiB).
pub const DEFAULT_QUEUE_LIMIT: usize = 256 * 1024;
/// Default TTL of unreliable and sequenced messages (§4.3).
pub const DEFAULT_UNRELIABLE_TTL: Duration = Duration::from_millis(100);
/// TTL of the BestEffort channel (§4.3).
pub const BEST_EFFORT_TTL: Duration = Duration::from_secs(1);
/// The size contract of MPGS2.md §4.5: a message of at most this many
/// bytes always leaves as one frame in one datagram, on any path MPGS/2
/// accepts (1200 − 29 − 6).
pub const GUARANTEED_UNFRAGMENTED: usize = crate::mpgs2::send::GUARANTEED_UNFRAGMENTED;
/// Bytes of a short packet's worst-case header and tag (§4.5).
pub const MAX_PACKET_OVERHEAD: usize = crate::mpgs2::send::MAX_PACKET_OVERHEAD;
/// Bytes a MESSAGE frame adds to its data, with a 2-byte length (§4.5).
pub const MESSAGE_OVERHEAD: usize = crate::mpgs2::send::MESSAGE_OVERHEAD;
/// Bytes an unreliable FRAGMENT frame adds to its data at most (§4.5).
pub const FRAGMENT_OVERHEAD: usize = crate::mpgs2::send::FRAGMENT_OVERHEAD;

/// The channel MPGS/1 messages report in [`Event::Message`](crate::Event::Message):
/// MPGS/1 does not carry the sender's delivery mode.
pub const MPGS1: u8 = 255;

/// What an unreliable channel does with a message too large for
/// `max_unrel_fragments` unreliable fragments (MPGS2.md §4.5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Oversize {
    /// Refuse it: `send` returns [`SendError::TooLarge`](crate::SendError::TooLarge)
    /// with the largest unreliable size (the default for configured channels).
    #[default]
    Reject,
    /// Send it on this reliable-unordered channel instead (counted in the
    /// channel's [`ChannelMetrics::promoted`]); its receipt keeps its id.
    PromoteTo(u8),
}

/// One channel's local configuration (MPGS2.md §4.3). Build it with
/// [`ChannelConfig::new`] and the `with_*` methods.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelConfig {
    /// Its id, 3–63 (0–2 are the [`Delivery`](crate::Delivery) channels).
    pub id: u8,
    /// Its delivery guarantee.
    pub kind: ChannelKind,
    /// 0 (served first, the default) to 7: a channel is served only when
    /// every channel of a smaller priority has nothing it may send.
    pub priority: u8,
    /// Its share of the link among the channels of its priority (deficit
    /// round-robin, quantum = weight × 64 B; default 1).
    pub weight: u16,
    /// How long a message may wait before its first byte leaves; then it is
    /// `Lost(Expired)`. Unreliable kinds: default 100 ms, required;
    /// reliable-unordered: default none; reliable-ordered: must be none.
    pub ttl: Option<Duration>,
    /// Bytes of messages accepted on the channel whose outcome is not known
    /// yet, above which `send` returns
    /// [`SendError::QueueFull`](crate::SendError::QueueFull) (default 256 KiB).
    pub queue_limit: usize,
    /// What an unreliable kind does with an oversize message.
    pub oversize: Oversize,
    /// Whether messages get a `Delivered`/`Lost` event unless the send says
    /// otherwise ([`SendOptions::report`](crate::SendOptions::report);
    /// default off: receipts are opt-in).
    pub receipts: bool,
}

impl ChannelConfig {
    /// Channel `id` of `kind`, with the defaults: priority 0, weight 1, TTL
    /// 100 ms for unreliable kinds (none for reliable ones), a 256 KiB queue,
    /// oversize messages refused, no receipts.
    pub const fn new(id: u8, kind: ChannelKind) -> ChannelConfig {
        ChannelConfig {
            id,
            kind,
            priority: 0,
            weight: 1,
            ttl: if kind.is_reliable() { None } else { Some(DEFAULT_UNRELIABLE_TTL) },
            queue_limit: DEFAULT_QUEUE_LIMIT,
            oversize: Oversize::Reject,
            receipts: false,
        }
    }

    /// The same with priority `p` (0–7, 0 first).
    pub const fn with_priority(mut self, p: u8) -> ChannelConfig {
        self.priority = p;
        self
    }

    /// The same with weight `w` (1–65535) within its priority.
    pub const fn with_weight(mut self, w: u16) -> ChannelConfig {
        self.weight = w;
        self
    }

    /// The same with a TTL (`None`: messages wait as long as it takes).
    pub const fn with_ttl(mut self, ttl: Option<Duration>) -> ChannelConfig {
        self.ttl = ttl;
        self
    }

    /// The same with a queue limit of `bytes`.
    pub const fn with_queue_limit(mut self, bytes: usize) -> ChannelConfig {
        self.queue_limit = bytes;
        self
    }

    /// The same with an oversize policy.
    pub const fn with_oversize(mut self, o: Oversize) -> ChannelConfig {
        self.oversize = o;
        self
    }

    /// The same with receipts on or off by default.
    pub const fn with_receipts(mut self, on: bool) -> ChannelConfig {
        self.receipts = on;
        self
    }

    /// The three fixed channels of the `Delivery` modes (§4.3): priority 0,
    /// weight 1, receipts on (the connection's default decides), the
    /// connection-wide send queue limits.
    pub(crate) const DEFAULTS: [ChannelConfig; 3] = [
        ChannelConfig {
            id: UNRELIABLE,
            kind: ChannelKind::Unreliable,
            priority: 0,
            weight: 1,
            ttl: Some(DEFAULT_UNRELIABLE_TTL),
            queue_limit: usize::MAX,
            oversize: Oversize::PromoteTo(BEST_EFFORT),
            receipts: true,
        },
        ChannelConfig {
            id: BEST_EFFORT,
            kind: ChannelKind::ReliableUnordered,
            priority: 0,
            weight: 1,
            ttl: Some(BEST_EFFORT_TTL),
            queue_limit: usize::MAX,
            oversize: Oversize::Reject,
            receipts: true,
        },
        ChannelConfig {
            id: RELIABLE,
            kind: ChannelKind::ReliableOrdered,
            priority: 0,
            weight: 1,
            ttl: None,
            queue_limit: usize::MAX,
            oversize: Oversize::Reject,
            receipts: true,
        },
    ];

    /// Checks this channel among `all` (the configured ones).
    pub(crate) fn validate(&self, all: &[ChannelConfig]) -> Result<(), crate::ConfigError> {
        let bad = |field: &'static str, problem: &'static str| {
            Err(crate::ConfigError::Channel { channel: self.id, field, problem })
        };
        if !(FIRST_CONFIGURABLE..MAX_CHANNELS).contains(&self.id) {
            return bad("id", "must be 3–63 (0–2 are the Delivery channels)");
        }
        if all.iter().filter(|c| c.id == self.id).count() > 1 {
            return bad("id", "is configured twice: give every channel its own id");
        }
        if self.priority > MAX_PRIORITY {
            return bad("priority", "must be 0–7 (0 is served first)");
        }
        if self.weight == 0 {
            return bad("weight", "must be 1–65535");
        }
        if self.queue_limit == 0 {
            return bad("queue_limit", "must not be zero");
        }
        match (self.kind, self.ttl) {
            (ChannelKind::ReliableOrdered, Some(_)) => {
                return bad("ttl", "must be None on a reliable-ordered channel (a gap would block it forever)");
            }
            (k, None) if !k.is_reliable() => {
                return bad("ttl", "is required on an unreliable channel (default 100 ms)");
            }
            (_, Some(t)) if t.is_zero() => return bad("ttl", "must not be zero (None: no TTL)"),
            _ => {}
        }
        if let Oversize::PromoteTo(to) = self.oversize {
            if self.kind.is_reliable() {
                return bad("oversize", "PromoteTo applies to unreliable kinds only (use Reject)");
            }
            let target_ok = to == BEST_EFFORT
                || all.iter().any(|c| c.id == to && c.kind == ChannelKind::ReliableUnordered && c.id != self.id);
            if !target_ok {
                return bad("oversize", "PromoteTo must name channel 1 or a configured reliable-unordered channel");
            }
        }
        Ok(())
    }
}

/// Delivery delays by logarithmic bucket: 4 buckets per power of two of
/// microseconds (within 19 % of the true value), from 1 µs to 2^32 µs.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct DelayHistogram {
    counts: Box<[u32; HIST_BUCKETS]>,
    n: u64,
    sum_us: u64,
}

const HIST_SUB: usize = 4;
const HIST_BUCKETS: usize = 33 * HIST_SUB;

impl DelayHistogram {
    pub(crate) fn new() -> DelayHistogram {
        DelayHistogram { counts: Box::new([0; HIST_BUCKETS]), n: 0, sum_us: 0 }
    }

    fn bucket(us: u64) -> usize {
        let us = us.clamp(1, u64::from(u32::MAX));
        let p = 63 - us.leading_zeros() as usize; // floor(log2)
        // The two bits below the leading one pick the sub-bucket.
        let sub = if p >= 2 { ((us >> (p - 2)) & 3) as usize } else { ((us << (2 - p)) & 3) as usize };
        (p * HIST_SUB + sub).min(HIST_BUCKETS - 1)
    }

    /// The upper edge of bucket `i`, in µs.
    fn upper(i: usize) -> u64 {
        let (p, sub) = (i / HIST_SUB, (i % HIST_SUB) as u64);
        let base = 1u64 << p;
        base + (base * (sub + 1)) / 4
    }

    pub(crate) fn record(&mut self, d: Duration) {
        let us = crate::time::duration_micros(d);
        let b = Self::bucket(us);
        self.counts[b] = self.counts[b].saturating_add(1);
        self.n += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    pub(crate) fn mean(&self) -> Option<Duration> {
        (self.n > 0).then(|| Duration::from_micros(self.sum_us / self.n))
    }

    /// The delay below which `q` (0–1000 ‰) of the samples lie, by bucket
    /// upper edge.
    pub(crate) fn quantile(&self, permille: u64) -> Option<Duration> {
        if self.n == 0 {
            return None;
        }
        let rank = (self.n * permille).div_ceil(1000).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(Duration::from_micros(Self::upper(i)));
            }
        }
        None
    }
}

impl fmt::Debug for DelayHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelayHistogram").field("n", &self.n).field("mean", &self.mean()).finish()
    }
}

/// One channel's counters on one connection, beside
/// [`ConnectionMetrics`](crate::ConnectionMetrics); from
/// [`Endpoint::channel_metrics`](crate::Endpoint::channel_metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelMetrics {
    /// Bytes accepted on the channel whose outcome is not known yet (what
    /// the queue limit counts).
    pub queued_bytes: usize,
    /// Of those, bytes sent at least once and not yet acknowledged (MPGS/2).
    pub in_flight_bytes: usize,
    /// Messages accepted.
    pub sent: u64,
    /// Messages acknowledged.
    pub delivered: u64,
    /// Messages lost because a packet carrying them was (unreliable kinds).
    pub lost_packet: u64,
    /// Messages whose TTL passed before they could leave.
    pub lost_expired: u64,
    /// Sequenced messages replaced by a newer one before they left.
    pub lost_superseded: u64,
    /// Messages outstanding when the connection closed.
    pub lost_closed: u64,
    /// Oversize unreliable messages promoted to a reliable channel.
    pub promoted: u64,
    /// Sends refused with `QueueFull`.
    pub refused_full: u64,
    /// Mean time from `send` to `Delivered`.
    pub delay_mean: Option<Duration>,
    /// 99th percentile of the time from `send` to `Delivered` (bucketed,
    /// within 19 %).
    pub delay_p99: Option<Duration>,
    /// Median of the same.
    pub delay_p50: Option<Duration>,
}

/// The options a send on channel `options.channel` takes over `conn`: as
/// they are over MPGS/2; over MPGS/1, the `Delivery` mode its kind maps to
/// (unreliable → `Unreliable`, reliable-unordered → `Reliable`, channels
/// 0–2 → their own modes), or `PeerSpeaksMpgs1` for the kinds MPGS/1 cannot
/// carry. Unknown channels are refused either way.
pub(crate) fn resolve(
    cfg: &crate::EndpointConfig,
    conn: &crate::Connection,
    options: crate::SendOptions,
) -> Result<crate::SendOptions, crate::SendError> {
    use crate::{Delivery, ProtocolVersion, SendError};
    let channel = options.channel();
    let c = cfg.channel(channel).ok_or(SendError::UnknownChannel { channel })?;
    if conn.version() == ProtocolVersion::V2 {
        return Ok(options);
    }
    let delivery = match (channel, c.kind) {
        (UNRELIABLE, _) => Delivery::Unreliable,
        (BEST_EFFORT, _) => Delivery::BestEffort,
        (RELIABLE, _) => Delivery::Reliable,
        (_, ChannelKind::Unreliable) => Delivery::Unreliable,
        (_, ChannelKind::ReliableUnordered) => Delivery::Reliable,
        (_, kind) => return Err(SendError::PeerSpeaksMpgs1 { channel, kind }),
    };
    let report = options.report.or((channel >= FIRST_CONFIGURABLE).then_some(c.receipts));
    Ok(crate::SendOptions { delivery, report, channel: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles() {
        let mut h = DelayHistogram::new();
        assert_eq!(h.quantile(990), None);
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(500).expect("samples").as_micros();
        let p99 = h.quantile(990).expect("samples").as_micros();
        assert!((50_000..=50_000 * 5 / 4).contains(&p50), "{p50}");
        assert!((99_000..=99_000 * 5 / 4).contains(&p99), "{p99}");
        assert_eq!(h.mean(), Some(Duration::from_micros(50_500)));
        // Bucket edges are monotone and cover every value.
        for us in [1u64, 2, 3, 5, 7, 8, 1000, 1 << 31, u64::MAX] {
            let b = DelayHistogram::bucket(us);
            assert!(DelayHistogram::upper(b) >= us.min(u64::from(u32::MAX)), "{us}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        let ok = [ChannelConfig::new(3, ChannelKind::ReliableUnordered)];
        assert_eq!(ok[0].validate(&ok), Ok(()));
        let cases = [
            (ChannelConfig::new(2, ChannelKind::Unreliable), "id"),
            (ChannelConfig::new(64, ChannelKind::Unreliable), "id"),
            (ChannelConfig::new(3, ChannelKind::Unreliable).with_priority(8), "priority"),
            (ChannelConfig::new(3, ChannelKind::Unreliable).with_weight(0), "weight"),
            (ChannelConfig::new(3, ChannelKind::Unreliable).with_queue_limit(0), "queue_limit"),
            (ChannelConfig::new(3, ChannelKind::ReliableOrdered).with_ttl(Some(Duration::from_secs(1))), "ttl"),
            (ChannelConfig::new(3, ChannelKind::Unreliable).with_ttl(None), "ttl"),
            (ChannelConfig::new(3, ChannelKind::Unreliable).with_oversize(Oversize::PromoteTo(9)), "oversize"),
            (ChannelConfig::new(3, ChannelKind::ReliableOrdered).with_oversize(Oversize::PromoteTo(1)), "oversize"),
        ];
        for (c, field) in cases {
            match c.validate(core::slice::from_ref(&c)) {
                Err(crate::ConfigError::Channel { field: f, .. }) => assert_eq!(f, field, "{c:?}"),
                other => panic!("{c:?}: {other:?}"),
            }
        }
        let twice = [ChannelConfig::new(3, ChannelKind::Unreliable), ChannelConfig::new(3, ChannelKind::Unreliable)];
        assert!(twice[0].validate(&twice).is_err());
        let promote = [
            ChannelConfig::new(3, ChannelKind::Unreliable).with_oversize(Oversize::PromoteTo(4)),
            ChannelConfig::new(4, ChannelKind::ReliableUnordered),
        ];
        assert_eq!(promote[0].validate(&promote), Ok(()));
    }
}
