//! Endpoint configuration: MTU-derived sizes (PROTOCOL.md §9), timeouts
//! (§12), limits and reassembly bounds (§15 rule 10).

use core::fmt;

use alloc::vec::Vec;

use crate::channel::ChannelConfig;
use crate::state::ProtocolVersion;
use crate::time::Duration;

/// Largest datagram the core ever emits or accepts into its buffers, in bytes.
///
/// `poll_transmit` writes into a `[u8; MAX_DATAGRAM]`. It equals the
/// reference's receive buffer (2048 B), so the MTU is at most
/// `MAX_DATAGRAM + 28`.
pub const MAX_DATAGRAM: usize = 2048;

/// IPv4 + UDP header bytes subtracted from the MTU (the reference uses 28
/// even over IPv6, and so do we, for wire compatibility).
pub const UDP_HEADER_SIZE: usize = 28;

/// Smallest MTU accepted: large enough for a SERVER_HELLO (≤ 303 B of
/// message data) in one datagram.
pub const MIN_MTU: u16 = 400;
/// Largest MTU accepted (see [`MAX_DATAGRAM`]).
pub const MAX_MTU: u16 = (MAX_DATAGRAM + UDP_HEADER_SIZE) as u16;

/// Largest configurable maximum message size: 8 MiB (the reference's 8192
/// fragments of 1 KiB).
pub const MAX_MESSAGE_SIZE_LIMIT: usize = 8 * 1024 * 1024;
/// Longest `server_hello_reuse` accepted: a shared server ephemeral key is
/// erased at the end of its period, and a longer period would keep it (and
/// so the sessions made with it) exposed to a memory compromise for longer.
pub const MAX_SERVER_HELLO_REUSE: Duration = Duration::from_secs(1);

/// A rate limit: a bucket of `burst` tokens refilled at `per_second`
/// tokens per second, one token per event (a generic cell-rate algorithm on
/// injected time, so it is deterministic). A rate above 1,000,000 per second
/// is unlimited (the core counts time in microseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained events per second (at least 1).
    pub per_second: u32,
    /// Events allowed back to back after a quiet period (at least 1).
    pub burst: u32,
}

impl RateLimit {
    /// `per_second` sustained, `burst` at once.
    pub const fn new(per_second: u32, burst: u32) -> RateLimit {
        RateLimit { per_second, burst }
    }

    /// No limit.
    pub const UNLIMITED: RateLimit = RateLimit { per_second: u32::MAX, burst: u32::MAX };

    /// Microseconds of credit one event costs (0 when unlimited).
    pub(crate) const fn interval_micros(&self) -> u64 {
        if self.per_second == 0 { u64::MAX } else { 1_000_000 / self.per_second as u64 }
    }

    /// How far ahead of real time the bucket may run: `(burst − 1)` intervals.
    pub(crate) const fn tolerance_micros(&self) -> u64 {
        self.interval_micros().saturating_mul(self.burst.saturating_sub(1) as u64)
    }
}

/// Sizes derived from the MTU, as PROTOCOL.md §9 defines them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// `MTU − 28`: the largest datagram.
    pub max_datagram: usize,
    /// `max_datagram − 20 − 16 − 2`: payload budget including message overheads.
    pub max_payload: usize,
    /// `max_payload − 2`: the largest message sent unfragmented.
    pub max_single: usize,
    /// Padding bytes of a CLIENT_HELLO: `max_payload − 2 − 20 − 99 − 2`.
    pub hello_padding: usize,
}

impl Sizes {
    /// The sizes for `mtu` (no range check; see [`EndpointConfig::validate`]).
    pub const fn for_mtu(mtu: u16) -> Sizes {
        let max_datagram = mtu as usize - UDP_HEADER_SIZE;
        let max_payload = max_datagram - 20 - 16 - 2;
        Sizes { max_datagram, max_payload, max_single: max_payload - 2, hello_padding: max_payload - 2 - 20 - 99 - 2 }
    }
}

/// The MPGS/1 size arithmetic of fragmentation (PROTOCOL.md §8), beside
/// [`Sizes::for_mtu`]: configuration checks need it, and the wire layer
/// (`mpgs1::wire::fragment`) re-exports it.
pub(crate) mod fragments {
    /// Length of the fragment header at the start of APP_FRAGMENT data.
    pub const FRAGMENT_HEADER_LEN: usize = 6;

    /// Size of the full chunks of our split when the payload allows it
    /// (`MAX_FRAGMENT_SIZE` of the reference).
    pub(crate) const CHUNK_CAP: usize = 1024;

    /// `MAX_SINGLE`: the largest message sent unfragmented, `max_payload − 2`
    /// (1432 at MTU 1500).
    #[inline]
    pub const fn max_single(max_payload: usize) -> usize {
        max_payload.saturating_sub(2)
    }

    /// `FRAG_TAIL_MAX`: the largest chunk that fits a payload with its 6-byte
    /// fragment header and 2-byte msgseq, `max_payload − 8` (1426 at MTU 1500).
    #[inline]
    pub const fn frag_tail_max(max_payload: usize) -> usize {
        max_payload.saturating_sub(FRAGMENT_HEADER_LEN + 2)
    }

    /// `FRAG_CHUNK`: the size of every chunk but the last,
    /// `min(1024, FRAG_TAIL_MAX)` (1024 at MTU 1500).
    #[inline]
    pub const fn frag_chunk(max_payload: usize) -> usize {
        let tail = frag_tail_max(max_payload);
        if tail < CHUNK_CAP { tail } else { CHUNK_CAP }
    }

    /// Number of full-size chunks cut before the final one.
    #[inline]
    pub(crate) const fn full_chunks(len: usize, tail_max: usize, chunk: usize) -> usize {
        if len <= tail_max { 0 } else { (len - tail_max).div_ceil(chunk) }
    }

    /// Number of fragments our split makes of a message of `len` bytes, in O(1).
    ///
    /// Only meaningful for `len > max_single(max_payload)`; a shorter message is
    /// sent unfragmented, and for it this returns 1 (a single piece, which must
    /// not be sent as a fragment: receivers require `count ≥ 2`). Returns 0 when
    /// `max_payload < 9`, where no chunk fits.
    #[inline]
    pub const fn fragment_count(len: usize, max_payload: usize) -> usize {
        let chunk = frag_chunk(max_payload);
        if chunk == 0 {
            return 0;
        }
        if len <= max_single(max_payload) {
            return 1;
        }
        full_chunks(len, frag_tail_max(max_payload), chunk) + 1
    }
}

/// Per-endpoint settings. Start from [`EndpointConfig::default`] and change
/// fields; [`crate::Endpoint`] validates them at construction.
///
/// Both peers must use the same MTU (the server derives the expected
/// CLIENT_HELLO padding from its own).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// Path MTU in bytes (default 1500). Datagrams are at most `mtu − 28` B.
    pub mtu: u16,
    /// Unix time, in seconds, at [`crate::Instant::ZERO`]. The header's `ctime`
    /// is this plus the injected time, so it never goes back (§15 rule 15).
    /// Drivers set it from the system clock once; simulations leave it fixed.
    pub unix_time_origin: u64,
    /// Minimum spacing of datagrams to one peer (default 1/60 s; zero
    /// disables pacing). A reference client reads one datagram per frame, so
    /// keep this at or above its frame time when serving one.
    pub send_interval: Duration,
    /// How many datagrams may go back to back when a connection has been
    /// idle (token-bucket depth, default 1).
    pub send_burst: u32,
    /// Send a KEEP_ALIVE after this long without sending (default 0.1 s).
    pub keep_alive_interval: Duration,
    /// Longest wait before acknowledging a datagram that carried messages,
    /// when nothing else is sent sooner (default 5 ms).
    pub max_ack_delay: Duration,
    /// Minimum retransmission delay for `BestEffort`/`Reliable` messages
    /// (default 0.1 s, the reference's). The actual delay also follows the RTT.
    pub retransmit_interval: Duration,
    /// A datagram not acknowledged after this long is lost (default 1 s).
    pub ack_timeout: Duration,
    /// Close a connection after this long without an authenticated
    /// datagram from the peer (default 5 s).
    pub connection_timeout: Duration,
    /// A server forgets a pending handshake after this long without a
    /// (repeated) CLIENT_HELLO from the client (default 2 s).
    pub handshake_timeout: Duration,
    /// A client gives up connecting after this long (default 5 s).
    pub connect_timeout: Duration,
    /// A client repeats CLIENT_HELLO / CHALLENGE_RESP this often (default 0.25 s).
    pub handshake_retransmit_interval: Duration,
    /// After a local `disconnect`, wait at most this long for the peer's
    /// acknowledgement (default 1 s).
    pub disconnect_linger: Duration,
    /// Maximum established connections on a server (default 4096).
    /// Pending handshakes count against it too; when it is reached, the
    /// oldest pending handshake makes room for a new one, and with no
    /// handshake pending a new CLIENT_HELLO is refused.
    pub max_connections: usize,
    /// Maximum handshakes pending at once on a server (default 1024). When
    /// the table is full, the oldest pending handshake is evicted to make
    /// room (counted in `EndpointStats::handshakes_evicted`), so a flood
    /// cannot lock new clients out by filling it.
    pub max_pending_handshakes: usize,
    /// Pending handshakes allowed per source IP address (default 16).
    pub max_pending_per_ip: usize,
    /// Pending handshakes allowed per source prefix: `/hello_prefix_v4`
    /// for IPv4, `/hello_prefix_v6` for IPv6 (default 128).
    pub max_pending_per_prefix: usize,
    /// Connections (pending and established) allowed per source IP address
    /// (default 64). Players behind one NAT share an address: raise it for
    /// such audiences.
    pub max_connections_per_ip: usize,
    /// CLIENT_HELLOs a server processes endpoint-wide (each costs an ECDH,
    /// and a signature, about 0.3 ms, plus a key generation when
    /// `server_hello_reuse` does not cover it). Default 500/s, burst 100.
    pub hello_rate: RateLimit,
    /// CLIENT_HELLOs processed per source IP address (default 8/s, burst 16).
    pub hello_rate_per_ip: RateLimit,
    /// CLIENT_HELLOs processed per source prefix (default 100/s, burst 200).
    pub hello_rate_per_prefix: RateLimit,
    /// Prefix length grouping IPv4 sources for the per-prefix limits (default 24).
    pub hello_prefix_v4: u8,
    /// Prefix length grouping IPv6 sources for the per-prefix limits (default 64).
    pub hello_prefix_v6: u8,
    /// How long a server answers CLIENT_HELLOs with the same server
    /// ephemeral key, at most 64 clients per key (default 100 ms, at most
    /// 1 s; zero gives every handshake its own). This saves a key generation
    /// per hello. Every client still gets its own salt, token and signature,
    /// so its session key is its own and the token still proves its address;
    /// a client key already answered with the current server key is refused
    /// as a replay. The key is erased when its period ends. See SECURITY.md.
    pub server_hello_reuse: Duration,
    /// Largest message `send` accepts and reassembly delivers (default
    /// 1 MiB, at most 8 MiB).
    pub max_message_size: usize,
    /// Most fragments a received message may claim (default 8192).
    pub max_fragments: u16,
    /// Concurrent reassemblies per connection (default 16).
    pub max_reassemblies: usize,
    /// Bytes buffered for reassembly per connection (default 4 MiB).
    pub max_reassembly_bytes: usize,
    /// Bytes buffered for reassembly by all connections together (default
    /// 64 MiB, at least `max_reassembly_bytes`). A datagram whose fragments
    /// do not fit is refused unacknowledged, so its sender retransmits.
    pub max_reassembly_bytes_total: usize,
    /// Bytes buffered for reassembly by all connections from one IP
    /// address together (default 8 MiB, at least `max_message_size`), so
    /// that one host cannot take the endpoint-wide budget from the others.
    pub max_reassembly_bytes_per_ip: usize,
    /// Messages waiting or in flight per connection before `send` reports
    /// `QueueFull` (default 4096).
    pub send_queue_messages: usize,
    /// Bytes waiting or in flight per connection before `send` reports
    /// `QueueFull` (default 16 MiB).
    pub send_queue_bytes: usize,
    /// Entries of the received-message duplicate window (default 1024, at
    /// most 1024).
    pub message_window: u16,
    /// How far the oldest unacknowledged message may trail the newest one
    /// sent, in message sequence numbers (default 256: the reference's
    /// window, §15 rule 16).
    pub send_window: u16,
    /// The protocol [`crate::Endpoint::connect`] uses (default
    /// [`ProtocolVersion::V2`], MPGS/2, which servers of this crate speak).
    /// Set [`ProtocolVersion::V1`] to reach a Python reference server, which
    /// speaks only MPGS/1. Servers accept both whatever this says.
    pub protocol: ProtocolVersion,
    /// MPGS/2: the game's protocol id, sent in every HELLO2; a server drops
    /// hellos of any other id (default 0).
    pub protocol_id: u64,
    /// MPGS/2: when a server demands a stateless cookie before its ECDH
    /// (default [`CookiePolicy::UnderLoad`]).
    pub cookie_policy: CookiePolicy,
    /// MPGS/2: cookie-validated HELLO2s a server answers with ECDH per
    /// source (/32 IPv4, /64 IPv6; default 4/s, burst 8). A source over it
    /// gets REJECT (BUSY); a hello without a cookie from it gets HELLO_RETRY.
    pub v2_hello_rate_per_source: RateLimit,
    /// MPGS/2: a server's ECDH budget for new handshakes, endpoint-wide
    /// (default 1,500/s, burst 150). Hellos over it get REJECT (BUSY).
    pub v2_ecdh_rate: RateLimit,
    /// MPGS/2: long-header replies (HELLO_RETRY, REJECT, SERVER_HELLO) to one
    /// address (IP and port) that no cookie has validated (default 8/s,
    /// burst 8).
    pub v2_reply_rate_per_address: RateLimit,
    /// MPGS/2: whether a server speaks MPGS/2 (default true). When false a
    /// HELLO2 is handled as an MPGS/1-only server handles it (dropped as a
    /// CLIENT_HELLO of an unknown version), MPGS/2 short headers are dropped
    /// without a stateless reset, and MPGS/1 SERVER_HELLOs carry no
    /// downgrade sentinel (MPGS2.md §2.9): the server's bytes are exactly
    /// those of a server without MPGS/2.
    pub accept_mpgs2: bool,
    /// MPGS/2 client: fall back to MPGS/1 after 1 s without any MPGS/2
    /// reply (default false, MPGS2.md §2.9). A fallback that meets a server
    /// whose signed MPGS/1 SERVER_HELLO says it speaks MPGS/2 returns to
    /// MPGS/2, and fails with [`crate::ConnectFailure::DowngradeDetected`]
    /// if no MPGS/2 connection is made by the connect timeout.
    pub allow_v1_fallback: bool,
    /// MPGS/2 server: the secret its stateless reset key is derived from
    /// (MPGS2.md §6.4). `None` (default): derived from the server's root
    /// key, so it survives restarts with the same key file. Endpoints that
    /// share one must have distinct `endpoint_id`s.
    pub reset_base: Option<ResetBase>,
    /// MPGS/2 server: this endpoint's id among the endpoints sharing a
    /// `reset_base` (default 0); stable across restarts.
    pub endpoint_id: u64,
    /// MPGS/2: the game's own channels, ids 3–63 (default none; MPGS2.md
    /// §4.3). Channels 0–2 always exist: the [`Delivery`](crate::Delivery)
    /// modes use them. Configured per direction: each side sends on its own
    /// list, and receives whatever the peer sends on any channel.
    pub channels: Vec<ChannelConfig>,
    /// MPGS/2: bytes of received messages a connection may leave undrained
    /// in [`Endpoint::poll_event`](crate::Endpoint::poll_event) (default
    /// 4 MiB). Above it, new packets carrying reliable frames from that peer
    /// are discarded unacknowledged (the peer resends them later) and
    /// counted in [`ConnectionMetrics::recv_queue_refused`](crate::ConnectionMetrics::recv_queue_refused)
    /// (MPGS2.md §4.6).
    pub recv_queue_bytes: usize,
}

/// A 32-byte secret from which MPGS/2 stateless reset keys are derived
/// (used as an HKDF PRK, MPGS2.md §6.4). Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ResetBase(pub [u8; 32]);

impl fmt::Debug for ResetBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResetBase(..)")
    }
}

/// When an MPGS/2 server demands a stateless cookie (a HELLO_RETRY round
/// trip) before it spends an ECDH on a HELLO2 (MPGS2.md §2.4). Under every
/// policy a source whose per-source bucket is empty must bring a cookie.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CookiePolicy {
    /// Always: every client pays one more round trip; spoofed hellos never
    /// cost an ECDH.
    Always,
    /// While more than 100 HELLO2s arrived in the current or the previous
    /// second, or the pending handshakes fill more than half of
    /// `max_pending_handshakes`.
    #[default]
    UnderLoad,
    /// Never (when something else gates admission).
    Never,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            mtu: 1500,
            unix_time_origin: 0,
            send_interval: Duration::from_micros(16_667),
            send_burst: 1,
            keep_alive_interval: Duration::from_millis(100),
            max_ack_delay: Duration::from_millis(5),
            retransmit_interval: Duration::from_millis(100),
            ack_timeout: Duration::from_secs(1),
            connection_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            handshake_retransmit_interval: Duration::from_millis(250),
            disconnect_linger: Duration::from_secs(1),
            max_connections: 4096,
            max_pending_handshakes: 1024,
            max_pending_per_ip: 16,
            max_pending_per_prefix: 128,
            max_connections_per_ip: 64,
            hello_rate: RateLimit::new(500, 100),
            hello_rate_per_ip: RateLimit::new(8, 16),
            hello_rate_per_prefix: RateLimit::new(100, 200),
            hello_prefix_v4: 24,
            hello_prefix_v6: 64,
            server_hello_reuse: Duration::from_millis(100),
            max_message_size: 1024 * 1024,
            max_fragments: 8192,
            max_reassemblies: 16,
            max_reassembly_bytes: 4 * 1024 * 1024,
            max_reassembly_bytes_total: 64 * 1024 * 1024,
            max_reassembly_bytes_per_ip: 8 * 1024 * 1024,
            send_queue_messages: 4096,
            send_queue_bytes: 16 * 1024 * 1024,
            message_window: 1024,
            send_window: 256,
            protocol: ProtocolVersion::V2,
            protocol_id: 0,
            cookie_policy: CookiePolicy::UnderLoad,
            v2_hello_rate_per_source: RateLimit::new(4, 8),
            v2_ecdh_rate: RateLimit::new(1500, 150),
            v2_reply_rate_per_address: RateLimit::new(8, 8),
            accept_mpgs2: true,
            allow_v1_fallback: false,
            reset_base: None,
            endpoint_id: 0,
            channels: Vec::new(),
            recv_queue_bytes: 4 * 1024 * 1024,
        }
    }
}

impl EndpointConfig {
    /// The MTU-derived sizes.
    pub const fn sizes(&self) -> Sizes {
        Sizes::for_mtu(self.mtu)
    }

    /// Checks every field and says which one is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(ConfigError::Mtu(self.mtu));
        }
        if self.max_message_size > MAX_MESSAGE_SIZE_LIMIT {
            return Err(ConfigError::MaxMessageSize(self.max_message_size));
        }
        let sizes = self.sizes();
        let chunk = fragments::frag_chunk(sizes.max_payload);
        let frags = fragments::fragment_count(self.max_message_size, sizes.max_payload);
        if self.max_message_size > sizes.max_single && frags > usize::from(self.max_fragments) {
            return Err(ConfigError::TooManyFragments {
                max_message_size: self.max_message_size,
                needed: frags,
                max_fragments: self.max_fragments,
                chunk,
            });
        }
        if self.max_fragments < 2 {
            return Err(ConfigError::Zero("max_fragments (at least 2)"));
        }
        if !(32..=1024).contains(&self.message_window) {
            return Err(ConfigError::MessageWindow(self.message_window));
        }
        if !(2..=self.message_window).contains(&self.send_window) {
            return Err(ConfigError::SendWindow(self.send_window));
        }
        let nonzero = [
            (self.keep_alive_interval, "keep_alive_interval"),
            (self.retransmit_interval, "retransmit_interval"),
            (self.ack_timeout, "ack_timeout"),
            (self.connection_timeout, "connection_timeout"),
            (self.handshake_timeout, "handshake_timeout"),
            (self.connect_timeout, "connect_timeout"),
            (self.handshake_retransmit_interval, "handshake_retransmit_interval"),
        ];
        for (d, name) in nonzero {
            if d.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        let counts = [
            (self.send_burst as usize, "send_burst"),
            (self.max_connections, "max_connections"),
            (self.max_pending_handshakes, "max_pending_handshakes"),
            (self.max_pending_per_ip, "max_pending_per_ip"),
            (self.max_pending_per_prefix, "max_pending_per_prefix"),
            (self.max_connections_per_ip, "max_connections_per_ip"),
            (self.hello_rate.per_second as usize, "hello_rate.per_second"),
            (self.hello_rate.burst as usize, "hello_rate.burst"),
            (self.hello_rate_per_ip.per_second as usize, "hello_rate_per_ip.per_second"),
            (self.hello_rate_per_ip.burst as usize, "hello_rate_per_ip.burst"),
            (self.hello_rate_per_prefix.per_second as usize, "hello_rate_per_prefix.per_second"),
            (self.hello_rate_per_prefix.burst as usize, "hello_rate_per_prefix.burst"),
            (self.max_reassemblies, "max_reassemblies"),
            (self.recv_queue_bytes, "recv_queue_bytes"),
            (self.send_queue_messages, "send_queue_messages"),
            (self.v2_hello_rate_per_source.per_second as usize, "v2_hello_rate_per_source.per_second"),
            (self.v2_hello_rate_per_source.burst as usize, "v2_hello_rate_per_source.burst"),
            (self.v2_ecdh_rate.per_second as usize, "v2_ecdh_rate.per_second"),
            (self.v2_ecdh_rate.burst as usize, "v2_ecdh_rate.burst"),
            (self.v2_reply_rate_per_address.per_second as usize, "v2_reply_rate_per_address.per_second"),
            (self.v2_reply_rate_per_address.burst as usize, "v2_reply_rate_per_address.burst"),
        ];
        for (n, name) in counts {
            if n == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.hello_prefix_v4 > 32 || self.hello_prefix_v6 > 128 {
            return Err(ConfigError::HelloPrefix { v4: self.hello_prefix_v4, v6: self.hello_prefix_v6 });
        }
        if self.server_hello_reuse > MAX_SERVER_HELLO_REUSE {
            return Err(ConfigError::ServerHelloReuse(self.server_hello_reuse));
        }
        if self.max_reassembly_bytes_total < self.max_reassembly_bytes {
            return Err(ConfigError::ReassemblyBytesTotal {
                max_reassembly_bytes_total: self.max_reassembly_bytes_total,
                max_reassembly_bytes: self.max_reassembly_bytes,
            });
        }
        if self.max_reassembly_bytes < self.max_message_size {
            return Err(ConfigError::ReassemblyBytes {
                max_reassembly_bytes: self.max_reassembly_bytes,
                max_message_size: self.max_message_size,
            });
        }
        if self.max_reassembly_bytes_per_ip < self.max_message_size {
            return Err(ConfigError::ReassemblyBytesPerIp {
                max_reassembly_bytes_per_ip: self.max_reassembly_bytes_per_ip,
                max_message_size: self.max_message_size,
            });
        }
        if self.send_queue_bytes < self.max_message_size {
            return Err(ConfigError::SendQueueBytes {
                send_queue_bytes: self.send_queue_bytes,
                max_message_size: self.max_message_size,
            });
        }
        for c in &self.channels {
            c.validate(&self.channels)?;
        }
        Ok(())
    }

    /// The configuration of channel `id`: one of the three `Delivery`
    /// channels (0–2) or a configured one.
    pub fn channel(&self, id: u8) -> Option<&ChannelConfig> {
        ChannelConfig::DEFAULTS.get(usize::from(id)).or_else(|| self.channels.iter().find(|c| c.id == id))
    }
}

/// A configuration value is out of range.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The MTU is outside `MIN_MTU..=MAX_MTU`.
    Mtu(u16),
    /// `max_message_size` is above 8 MiB.
    MaxMessageSize(usize),
    /// `max_message_size` needs more fragments than `max_fragments` allows.
    TooManyFragments {
        /// The configured maximum message size.
        max_message_size: usize,
        /// Fragments such a message needs.
        needed: usize,
        /// The configured fragment limit.
        max_fragments: u16,
        /// Fragment chunk size at this MTU.
        chunk: usize,
    },
    /// `message_window` is outside 32..=1024.
    MessageWindow(u16),
    /// `send_window` is outside 2..=`message_window`.
    SendWindow(u16),
    /// A field that must be non-zero is zero.
    Zero(&'static str),
    /// `max_reassembly_bytes` cannot hold one message of the maximum size.
    ReassemblyBytes {
        /// The configured reassembly budget.
        max_reassembly_bytes: usize,
        /// The configured maximum message size.
        max_message_size: usize,
    },
    /// `hello_prefix_v4` is above 32 or `hello_prefix_v6` above 128.
    HelloPrefix {
        /// The configured IPv4 prefix length.
        v4: u8,
        /// The configured IPv6 prefix length.
        v6: u8,
    },
    /// `max_reassembly_bytes_total` is below `max_reassembly_bytes`.
    ReassemblyBytesTotal {
        /// The configured endpoint-wide reassembly budget.
        max_reassembly_bytes_total: usize,
        /// The configured per-connection reassembly budget.
        max_reassembly_bytes: usize,
    },
    /// `max_reassembly_bytes_per_ip` cannot hold one message of the maximum size.
    ReassemblyBytesPerIp {
        /// The configured per-address reassembly budget.
        max_reassembly_bytes_per_ip: usize,
        /// The configured maximum message size.
        max_message_size: usize,
    },
    /// `server_hello_reuse` is above `MAX_SERVER_HELLO_REUSE` (1 s).
    ServerHelloReuse(Duration),
    /// A channel of [`EndpointConfig::channels`] is invalid: `field` names
    /// the field, `problem` what is wrong with it.
    Channel {
        /// The channel's id.
        channel: u8,
        /// The field: `id`, `priority`, `weight`, `ttl`, `queue_limit` or `oversize`.
        field: &'static str,
        /// What is wrong, and what to do.
        problem: &'static str,
    },
    /// `send_queue_bytes` cannot hold one message of the maximum size.
    SendQueueBytes {
        /// The configured send-queue budget.
        send_queue_bytes: usize,
        /// The configured maximum message size.
        max_message_size: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Mtu(m) => write!(
                f,
                "mtu {m} is out of range: use {MIN_MTU}..={MAX_MTU} (1500 for Ethernet paths; both peers must agree)"
            ),
            ConfigError::MaxMessageSize(n) => write!(
                f,
                "max_message_size {n} is above the protocol limit of {MAX_MESSAGE_SIZE_LIMIT} bytes (8 MiB): lower it"
            ),
            ConfigError::TooManyFragments { max_message_size, needed, max_fragments, chunk } => write!(
                f,
                "max_message_size {max_message_size} needs {needed} fragments of {chunk} bytes but max_fragments is {max_fragments}: raise max_fragments (≤ 8192 for the reference peer) or lower max_message_size"
            ),
            ConfigError::MessageWindow(n) => {
                write!(f, "message_window {n} is out of range: use 32..=1024 (default 1024)")
            }
            ConfigError::SendWindow(n) => write!(
                f,
                "send_window {n} is out of range: use 2..=message_window (default 256, the reference's receive window)"
            ),
            ConfigError::Zero(name) => write!(f, "{name} must not be zero"),
            ConfigError::ReassemblyBytes { max_reassembly_bytes, max_message_size } => write!(
                f,
                "max_reassembly_bytes {max_reassembly_bytes} is smaller than max_message_size {max_message_size}: a maximal message could never be reassembled; raise it"
            ),
            ConfigError::HelloPrefix { v4, v6 } => write!(
                f,
                "hello prefix lengths /{v4} (IPv4) and /{v6} (IPv6) are out of range: use at most 32 and 128 (defaults 24 and 64)"
            ),
            ConfigError::ReassemblyBytesTotal { max_reassembly_bytes_total, max_reassembly_bytes } => write!(
                f,
                "max_reassembly_bytes_total {max_reassembly_bytes_total} is smaller than max_reassembly_bytes {max_reassembly_bytes}: one connection could never use its own budget; raise it"
            ),
            ConfigError::ReassemblyBytesPerIp { max_reassembly_bytes_per_ip, max_message_size } => write!(
                f,
                "max_reassembly_bytes_per_ip {max_reassembly_bytes_per_ip} is smaller than max_message_size {max_message_size}: a maximal message from one address could never be reassembled; raise it"
            ),
            ConfigError::ServerHelloReuse(d) => write!(
                f,
                "server_hello_reuse {} ms is above the 1000 ms limit: a shared server ephemeral key must not outlive a short period; lower it (zero disables sharing)",
                d.as_millis()
            ),
            ConfigError::Channel { channel, field, problem } => {
                write!(f, "channel {channel}: {field} {problem}")
            }
            ConfigError::SendQueueBytes { send_queue_bytes, max_message_size } => write!(
                f,
                "send_queue_bytes {send_queue_bytes} is smaller than max_message_size {max_message_size}: a maximal message could never be queued; raise it"
            ),
        }
    }
}

impl core::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_of_section_9() {
        let s = Sizes::for_mtu(1500);
        assert_eq!(s.max_datagram, 1472);
        assert_eq!(s.max_payload, 1434);
        assert_eq!(s.max_single, 1432);
        assert_eq!(s.hello_padding, 1311);
        assert_eq!(Sizes::for_mtu(512).max_datagram, 484);
    }

    #[test]
    fn default_is_valid_and_errors_say_what_to_do() {
        EndpointConfig::default().validate().unwrap();
        let c = EndpointConfig { mtu: 100, ..Default::default() };
        let e = c.validate().unwrap_err();
        assert!(alloc::format!("{e}").contains("400..=2076"), "{e}");
        let c = EndpointConfig { max_message_size: 9 << 20, ..Default::default() };
        assert_eq!(c.validate(), Err(ConfigError::MaxMessageSize(9 << 20)));
        let c = EndpointConfig { max_message_size: 8 << 20, max_reassembly_bytes: 8 << 20, ..Default::default() };
        c.validate().unwrap();
        let c = EndpointConfig { ack_timeout: Duration::ZERO, ..Default::default() };
        assert_eq!(c.validate(), Err(ConfigError::Zero("ack_timeout")));
    }
}
