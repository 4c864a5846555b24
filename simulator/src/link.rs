//! One direction of a path between two nodes: its settings ([`LinkConfig`],
//! [`Loss`], [`GilbertElliott`], [`Bandwidth`], the named [`Preset`]s) and
//! its run-time state (the loss model's state, the transmit queue, the
//! scripted surgery).

use std::collections::VecDeque;
use std::fmt;

use mpgameserver::{Duration, Instant};

use crate::rng::SimRng;

/// IPv4 + UDP header bytes added to a datagram's length when it is checked
/// against a link's MTU or put through its bandwidth cap (the core's own
/// figure, `mpgameserver::EndpointConfig::mtu` − 28).
pub const IP_UDP_OVERHEAD: usize = 28;

/// How a link loses datagrams.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Loss {
    /// Nothing is lost.
    #[default]
    None,
    /// Each datagram is lost independently with this probability (0..=1).
    Random(f64),
    /// Bursty loss from a two-state Markov chain.
    GilbertElliott(GilbertElliott),
}

impl Loss {
    /// The long-run fraction of datagrams lost.
    pub fn mean(&self) -> f64 {
        match *self {
            Loss::None => 0.0,
            Loss::Random(p) => p.clamp(0.0, 1.0),
            Loss::GilbertElliott(ge) => ge.mean_loss(),
        }
    }
}

/// The Gilbert–Elliott loss model: a link is in a *good* or a *bad* state,
/// loses datagrams with a different probability in each, and switches state
/// with fixed probabilities before each datagram. Losses come in bursts
/// whose mean length is `1 / r` datagrams when `loss_bad` is 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GilbertElliott {
    /// Probability of moving from good to bad, per datagram.
    pub p: f64,
    /// Probability of moving from bad to good, per datagram.
    pub r: f64,
    /// Loss probability in the good state (often 0).
    pub loss_good: f64,
    /// Loss probability in the bad state (often 1).
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// Bursts of `mean_burst` datagrams (at least 1) lost in a row, in
    /// proportion for a long-run loss of `mean_loss` (0..1): the simple
    /// Gilbert model, with every datagram of the bad state lost and none of
    /// the good state.
    pub fn bursty(mean_loss: f64, mean_burst: f64) -> GilbertElliott {
        let mean_loss = mean_loss.clamp(0.0, 0.99);
        let r = 1.0 / mean_burst.max(1.0);
        // Stationary share of the bad state: p / (p + r) = mean_loss.
        let p = mean_loss * r / (1.0 - mean_loss);
        GilbertElliott { p, r, loss_good: 0.0, loss_bad: 1.0 }
    }

    /// The long-run fraction of datagrams lost.
    pub fn mean_loss(&self) -> f64 {
        let (p, r) = (self.p.clamp(0.0, 1.0), self.r.clamp(0.0, 1.0));
        if p + r == 0.0 {
            return self.loss_good.clamp(0.0, 1.0);
        }
        let bad = p / (p + r);
        (1.0 - bad) * self.loss_good.clamp(0.0, 1.0) + bad * self.loss_bad.clamp(0.0, 1.0)
    }
}

/// A bandwidth cap: datagrams are serialised one after another at
/// `bits_per_sec` (their length plus 28 bytes of IP/UDP header), waiting in
/// a FIFO queue of at most `queue_bytes`; a datagram that does not fit in
/// the queue is dropped (tail drop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bandwidth {
    /// Link rate in bits per second (at least 1).
    pub bits_per_sec: u64,
    /// Bytes that may wait for the transmitter, the one being sent included.
    pub queue_bytes: usize,
}

/// The settings of one direction of a path. Start from a preset or
/// [`LinkConfig::default`] (a perfect link) and chain the setters.
///
/// Order of the effects on a datagram put on the link: partition, scripted
/// drops, MTU, hold, loss, bandwidth queue, then delay, corruption and
/// duplication on the datagrams that get through.
///
/// ```
/// use mpgameserver::Duration;
/// use mpgameserver_sim::LinkConfig;
///
/// let link = LinkConfig::default()
///     .latency(Duration::from_millis(40))
///     .jitter(Duration::from_millis(10))
///     .bursty_loss(0.05, 3.0) // 5 % of datagrams, in bursts of 3 on average
///     .duplicate(0.01)
///     .corrupt(0.001);
/// assert!((link.loss.mean() - 0.05).abs() < 1e-9);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct LinkConfig {
    /// Fixed one-way delay.
    pub latency: Duration,
    /// Extra delay drawn uniformly from `0..=jitter` per datagram. Jitter
    /// alone never reorders: a datagram never overtakes an earlier one on
    /// the same link unless `reorder` (or duplication) lets it.
    pub jitter: Duration,
    /// The loss model.
    pub loss: Loss,
    /// Probability that a datagram is delivered twice (the copy takes its
    /// own delay and may arrive before or after the original).
    pub duplicate: f64,
    /// Probability that a datagram is held back by `reorder_delay`, so that
    /// later datagrams overtake it.
    pub reorder: f64,
    /// How long a reordered datagram is held back.
    pub reorder_delay: Duration,
    /// Probability that a datagram arrives with 1 to 3 random bits flipped.
    pub corrupt: f64,
    /// Largest IP packet (datagram + 28 bytes) the link carries; larger
    /// ones are dropped. `None`: no limit.
    pub mtu: Option<u16>,
    /// A bandwidth cap with a bounded queue. `None`: infinite bandwidth.
    pub bandwidth: Option<Bandwidth>,
}

impl LinkConfig {
    /// A perfect link: no delay, no loss, nothing changed.
    pub fn perfect() -> LinkConfig {
        LinkConfig::default()
    }

    /// A wired LAN: 0.5 ms ± 0.1 ms, no loss.
    pub fn lan() -> LinkConfig {
        LinkConfig::default().latency(Duration::from_micros(500)).jitter(Duration::from_micros(100))
    }

    /// Home Wi-Fi: 3 ms + up to 6 ms of jitter, 1.5 % loss in bursts of 3,
    /// a few duplicates and reordered datagrams.
    pub fn wifi() -> LinkConfig {
        LinkConfig::default()
            .latency(Duration::from_millis(3))
            .jitter(Duration::from_millis(6))
            .bursty_loss(0.015, 3.0)
            .duplicate(0.002)
            .reorder(0.005, Duration::from_millis(4))
    }

    /// A poor mobile connection: 60 ms + up to 40 ms of jitter, 8 % loss in
    /// bursts of 4, 1 % duplicates, 2 % reordered by 50 ms, 0.5 % corrupted,
    /// 4 Mbit/s with a 64 KiB queue.
    pub fn mobile_lossy() -> LinkConfig {
        LinkConfig::default()
            .latency(Duration::from_millis(60))
            .jitter(Duration::from_millis(40))
            .bursty_loss(0.08, 4.0)
            .duplicate(0.01)
            .reorder(0.02, Duration::from_millis(50))
            .corrupt(0.005)
            .bandwidth(4_000_000, 64 * 1024)
    }

    /// Sets the fixed one-way delay.
    pub fn latency(mut self, latency: Duration) -> LinkConfig {
        self.latency = latency;
        self
    }

    /// Sets the jitter (extra delay uniform in `0..=jitter`).
    pub fn jitter(mut self, jitter: Duration) -> LinkConfig {
        self.jitter = jitter;
        self
    }

    /// Independent loss with probability `p` per datagram.
    pub fn loss(mut self, p: f64) -> LinkConfig {
        self.loss = if p > 0.0 { Loss::Random(p) } else { Loss::None };
        self
    }

    /// Bursty loss: see [`GilbertElliott::bursty`].
    pub fn bursty_loss(mut self, mean_loss: f64, mean_burst: f64) -> LinkConfig {
        self.loss = Loss::GilbertElliott(GilbertElliott::bursty(mean_loss, mean_burst));
        self
    }

    /// Sets any loss model.
    pub fn loss_model(mut self, loss: Loss) -> LinkConfig {
        self.loss = loss;
        self
    }

    /// Duplicates a datagram with probability `p`.
    pub fn duplicate(mut self, p: f64) -> LinkConfig {
        self.duplicate = p;
        self
    }

    /// Holds a datagram back by `delay` with probability `p`.
    pub fn reorder(mut self, p: f64, delay: Duration) -> LinkConfig {
        self.reorder = p;
        self.reorder_delay = delay;
        self
    }

    /// Flips 1 to 3 bits of a datagram with probability `p`.
    pub fn corrupt(mut self, p: f64) -> LinkConfig {
        self.corrupt = p;
        self
    }

    /// Drops datagrams whose IP packet (length + 28) exceeds `mtu`.
    pub fn mtu(mut self, mtu: u16) -> LinkConfig {
        self.mtu = Some(mtu);
        self
    }

    /// Caps the link at `bits_per_sec` with a queue of `queue_bytes`.
    pub fn bandwidth(mut self, bits_per_sec: u64, queue_bytes: usize) -> LinkConfig {
        self.bandwidth = Some(Bandwidth { bits_per_sec: bits_per_sec.max(1), queue_bytes });
        self
    }
}

/// The named link presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Preset {
    /// [`LinkConfig::perfect`].
    Perfect,
    /// [`LinkConfig::lan`].
    Lan,
    /// [`LinkConfig::wifi`].
    Wifi,
    /// [`LinkConfig::mobile_lossy`].
    MobileLossy,
}

impl Preset {
    /// Every preset, from best to worst.
    pub const ALL: [Preset; 4] = [Preset::Perfect, Preset::Lan, Preset::Wifi, Preset::MobileLossy];

    /// The preset's settings.
    pub fn config(self) -> LinkConfig {
        match self {
            Preset::Perfect => LinkConfig::perfect(),
            Preset::Lan => LinkConfig::lan(),
            Preset::Wifi => LinkConfig::wifi(),
            Preset::MobileLossy => LinkConfig::mobile_lossy(),
        }
    }

    /// Its name: `perfect`, `lan`, `wifi` or `mobile-lossy`.
    pub const fn name(self) -> &'static str {
        match self {
            Preset::Perfect => "perfect",
            Preset::Lan => "lan",
            Preset::Wifi => "wifi",
            Preset::MobileLossy => "mobile-lossy",
        }
    }

    /// The preset called `name` (as [`Preset::name`] spells it).
    pub fn from_name(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the link decided for one datagram that got through.
pub(crate) struct Passage {
    /// When the original arrives.
    pub arrive: Instant,
    /// Whether to flip bits in the original.
    pub corrupt: bool,
    /// When a duplicate arrives, and whether to corrupt it.
    pub duplicate: Option<(Instant, bool)>,
}

/// One direction of a path, at run time.
pub(crate) struct Link {
    pub cfg: LinkConfig,
    /// Set explicitly; the default link no longer applies.
    pub custom: bool,
    pub rng: SimRng,
    /// Gilbert–Elliott: in the bad state.
    bad: bool,
    /// Bandwidth cap: when the transmitter frees up.
    busy_until: Instant,
    /// Bandwidth cap: (end of transmission, bytes) of the datagrams queued.
    queue: VecDeque<(Instant, usize)>,
    queued_bytes: usize,
    /// Latest arrival scheduled (jitter never reorders).
    last_arrival: Instant,
    /// Scripted: drop this many datagrams next.
    pub drop_next: u64,
    /// Scripted: datagrams held back until release, as (id, bytes).
    pub held: Option<VecDeque<(u64, Vec<u8>)>>,
}

impl Link {
    pub(crate) fn new(cfg: LinkConfig, custom: bool, seed: u64) -> Link {
        Link {
            cfg,
            custom,
            rng: SimRng::new(seed),
            bad: false,
            busy_until: Instant::ZERO,
            queue: VecDeque::new(),
            queued_bytes: 0,
            last_arrival: Instant::ZERO,
            drop_next: 0,
            held: None,
        }
    }

    /// Whether the datagram is too large for the link.
    pub(crate) fn too_large(&self, len: usize) -> bool {
        self.cfg.mtu.is_some_and(|mtu| len + IP_UDP_OVERHEAD > usize::from(mtu))
    }

    /// Runs the loss model for one datagram: true if it is lost.
    pub(crate) fn lose(&mut self) -> bool {
        match self.cfg.loss {
            Loss::None => false,
            Loss::Random(p) => self.rng.chance(p),
            Loss::GilbertElliott(ge) => {
                let switch = if self.bad { ge.r } else { ge.p };
                if self.rng.chance(switch) {
                    self.bad = !self.bad;
                }
                self.rng.chance(if self.bad { ge.loss_bad } else { ge.loss_good })
            }
        }
    }

    /// Bandwidth cap: when the datagram has left the transmitter, or `None`
    /// when the queue is full.
    fn departure(&mut self, now: Instant, len: usize) -> Option<Instant> {
        let Some(bw) = self.cfg.bandwidth else {
            return Some(now);
        };
        while self.queue.front().is_some_and(|&(end, _)| end <= now) {
            if let Some((_, n)) = self.queue.pop_front() {
                self.queued_bytes -= n;
            }
        }
        let bytes = len + IP_UDP_OVERHEAD;
        if self.queued_bytes + bytes > bw.queue_bytes {
            return None;
        }
        let micros = (bytes as u128 * 8 * 1_000_000).div_ceil(u128::from(bw.bits_per_sec.max(1)));
        let start = self.busy_until.max(now);
        let end = start + Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX));
        self.busy_until = end;
        self.queue.push_back((end, bytes));
        self.queued_bytes += bytes;
        Some(end)
    }

    fn delay(&mut self) -> Duration {
        let jitter = self.cfg.jitter.as_micros().min(u128::from(u64::MAX)) as u64;
        let extra = if jitter == 0 { 0 } else { self.rng.below_or_eq(jitter) };
        self.cfg.latency + Duration::from_micros(extra)
    }

    /// Delay, reordering, corruption and duplication for a datagram that
    /// survived loss; `None` when the bandwidth queue is full.
    pub(crate) fn pass(&mut self, now: Instant, len: usize) -> Option<Passage> {
        let left = self.departure(now, len)?;
        let mut arrive = left + self.delay();
        if self.rng.chance(self.cfg.reorder) {
            arrive += self.cfg.reorder_delay;
        } else {
            arrive = arrive.max(self.last_arrival);
            self.last_arrival = arrive;
        }
        let corrupt = self.rng.chance(self.cfg.corrupt);
        let duplicate = if self.rng.chance(self.cfg.duplicate) {
            let at = left + self.delay();
            Some((at, self.rng.chance(self.cfg.corrupt)))
        } else {
            None
        };
        Some(Passage { arrive, corrupt, duplicate })
    }

    /// Arrival of a released datagram: latency only, in order.
    pub(crate) fn release_arrival(&mut self, now: Instant) -> Instant {
        let arrive = (now + self.cfg.latency).max(self.last_arrival);
        self.last_arrival = arrive;
        arrive
    }

    /// Flips 1 to 3 random bits of `bytes`; returns how many.
    pub(crate) fn flip_bits(&mut self, bytes: &mut [u8]) -> u8 {
        if bytes.is_empty() {
            return 0;
        }
        let n = 1 + self.rng.below_or_eq(2) as u8;
        let bits = bytes.len() as u64 * 8;
        for _ in 0..n {
            let bit = self.rng.below_or_eq(bits - 1);
            bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gilbert_elliott_hits_its_mean_and_bursts() {
        let ge = GilbertElliott::bursty(0.1, 4.0);
        assert!((ge.mean_loss() - 0.1).abs() < 1e-12);
        let mut link = Link::new(LinkConfig::default().loss_model(Loss::GilbertElliott(ge)), true, 3);
        let n = 200_000;
        let lost: Vec<bool> = (0..n).map(|_| link.lose()).collect();
        let total = lost.iter().filter(|&&l| l).count();
        assert!((18_000..22_000).contains(&total), "{total}");
        let bursts = lost.windows(2).filter(|w| w[1] && !w[0]).count();
        let mean_burst = total as f64 / bursts as f64;
        assert!((3.5..4.5).contains(&mean_burst), "{mean_burst}");
    }

    #[test]
    fn bandwidth_serialises_and_tail_drops() {
        // 1 Mbit/s: a 97-byte datagram (125 B on the wire) takes 1 ms.
        let mut link = Link::new(LinkConfig::default().bandwidth(1_000_000, 300), true, 1);
        let t0 = Instant::from_secs(1);
        assert_eq!(link.departure(t0, 97), Some(t0 + Duration::from_millis(1)));
        assert_eq!(link.departure(t0, 97), Some(t0 + Duration::from_millis(2)));
        assert_eq!(link.departure(t0, 97), None, "the queue holds 250 of 300 bytes");
        assert_eq!(link.departure(t0 + Duration::from_millis(1), 97), Some(t0 + Duration::from_millis(3)));
    }

    #[test]
    fn jitter_never_reorders_and_presets_have_names() {
        let mut link = Link::new(LinkConfig::default().jitter(Duration::from_millis(50)), true, 9);
        let mut last = Instant::ZERO;
        for i in 0..1000 {
            let p = link.pass(Instant::from_millis(i), 10).unwrap();
            assert!(p.arrive >= last);
            last = p.arrive;
        }
        for p in Preset::ALL {
            assert_eq!(Preset::from_name(p.name()), Some(p));
        }
        assert!(LinkConfig::mobile_lossy().loss.mean() > LinkConfig::wifi().loss.mean());
    }
}
