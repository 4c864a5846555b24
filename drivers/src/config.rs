//! Driver settings: the endpoint configuration with the drivers' pacing,
//! the server's tick rate, and the errors of starting a driver.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use mpgameserver::{ConfigError, ConnectFailure, Duration, EndpointConfig};

use crate::clock::EntropyError;

/// Default minimum spacing of datagrams to one peer in the drivers: 250 µs,
/// so at most 4,000 datagrams (about 5.7 MB) per second per connection.
pub const SEND_INTERVAL: Duration = Duration::from_micros(250);

/// Default pacing burst in the drivers: after a pause, up to 32 datagrams
/// (about 46 KB) leave back to back.
pub const SEND_BURST: u32 = 32;

/// The endpoint configuration the drivers start from: the core's defaults
/// (the reference's timing, `docs/PROTOCOL.md` §12) with faster pacing.
///
/// # Pacing and reference peers
///
/// The core's default pacing, one datagram per 1/60 s per connection, is
/// what a reference (Python) client can read: its `update()` reads one
/// datagram per frame. It also caps a connection at about 60 KB/s of
/// message data (one 1 KiB fragment per datagram), so a 1 MiB message takes
/// 17 s. Between Rust peers the drivers use
/// [`SEND_INTERVAL`] and [`SEND_BURST`] instead, so many datagrams leave per
/// tick when there is more to send.
///
/// Faster pacing stays safe for a reference client because the core never
/// has more than 24 message-carrying datagrams unacknowledged (its flight
/// window), and the reference client only acknowledges what it has read:
/// in a bulk transfer its read rate, not our pacing, sets the pace, and the
/// datagrams waiting in its socket buffer stay bounded (a few dozen, beyond
/// the flight window only through retransmission timeouts). The cost is
/// latency: at 60 frames per second those datagrams wait up to about half a
/// second. Small per-frame messages are
/// unaffected (they coalesce into one datagram per tick either way). To
/// serve reference clients with the lowest latency, use
/// [`ServerConfig::reference_pacing`] (the core's pacing).
pub fn endpoint_config() -> EndpointConfig {
    let mut cfg = EndpointConfig::default();
    cfg.send_interval = SEND_INTERVAL;
    cfg.send_burst = SEND_BURST;
    cfg
}

/// Settings of a server driver.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The endpoint's configuration (default: [`endpoint_config`]). The
    /// driver sets its `unix_time_origin` from the system clock.
    pub endpoint: EndpointConfig,
    /// How many times per second the handler's `update` runs (default 60).
    pub tick_rate: u32,
}

impl ServerConfig {
    /// The core's own pacing (one datagram per 1/60 s per connection): the
    /// lowest latency for reference (Python) clients, at about 60 KB/s per
    /// connection. See [`endpoint_config`].
    pub fn reference_pacing(mut self) -> ServerConfig {
        let core = EndpointConfig::default();
        self.endpoint.send_interval = core.send_interval;
        self.endpoint.send_burst = core.send_burst;
        self
    }

    /// The tick period, if the tick rate is valid.
    pub(crate) fn tick_period(&self) -> Result<Duration, StartError> {
        if !(1..=MAX_TICK_RATE).contains(&self.tick_rate) {
            return Err(StartError::TickRate(self.tick_rate));
        }
        Ok(Duration::from_micros(1_000_000 / u64::from(self.tick_rate)))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { endpoint: endpoint_config(), tick_rate: 60 }
    }
}

/// Highest accepted tick rate, in ticks per second.
pub const MAX_TICK_RATE: u32 = 10_000;

/// Settings of a client driver.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The endpoint's configuration (default: [`endpoint_config`]). The
    /// driver sets `unix_time_origin` from the system clock and
    /// `connect_timeout` from the timeout given to `connect`.
    pub endpoint: EndpointConfig,
    /// Local address to bind (default: any address of the server's family,
    /// with a port chosen by the system).
    pub bind: Option<SocketAddr>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig { endpoint: endpoint_config(), bind: None }
    }
}

/// Why a server or client driver could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The UDP socket could not be opened or bound.
    Bind {
        /// The local address asked for, if it resolved.
        addr: Option<SocketAddr>,
        /// The system's error.
        error: io::Error,
    },
    /// The endpoint configuration is invalid.
    Config(ConfigError),
    /// The tick rate is outside `1..=MAX_TICK_RATE`.
    TickRate(u32),
    /// The operating system gave no randomness for the endpoint's seed.
    Entropy(EntropyError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind { addr: Some(addr), error } => write!(
                f,
                "cannot bind UDP {addr}: {error} (is another program using that port, or is the address not on this host?)"
            ),
            StartError::Bind { addr: None, error } => write!(f, "cannot open the UDP socket: {error}"),
            StartError::Config(e) => write!(f, "invalid endpoint configuration: {e}"),
            StartError::TickRate(n) => {
                write!(f, "tick rate {n} is out of range: use 1..={MAX_TICK_RATE} ticks per second (default 60)")
            }
            StartError::Entropy(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind { error, .. } => Some(error),
            StartError::Config(e) => Some(e),
            StartError::Entropy(e) => Some(e),
            StartError::TickRate(_) => None,
        }
    }
}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> Self {
        StartError::Config(e)
    }
}

impl From<EntropyError> for StartError {
    fn from(e: EntropyError) -> Self {
        StartError::Entropy(e)
    }
}

/// Why a client could not connect.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The client could not start (socket, configuration, randomness).
    Start(StartError),
    /// The endpoint refused to start the attempt (the address is blocked).
    Refused(mpgameserver::ConnectError),
    /// No handshake with the server within the timeout.
    TimedOut {
        /// The server's address.
        server: SocketAddr,
        /// The timeout.
        timeout: Duration,
    },
    /// The server answered, but its signature did not verify with the
    /// pinned key.
    WrongServerKey {
        /// The server's address.
        server: SocketAddr,
    },
    /// An MPGS/2 server refused the attempt with REJECT and this code (1
    /// full, 2–4 connect token refused, 5 no common version or suite, 6
    /// busy; see [`ConnectFailure::Rejected`]).
    Rejected {
        /// The server's address.
        server: SocketAddr,
        /// The REJECT code.
        code: u16,
    },
    /// The server speaks MPGS/2 but no MPGS/2 connection could be made
    /// (see [`ConnectFailure::DowngradeDetected`]).
    DowngradeDetected {
        /// The server's address.
        server: SocketAddr,
    },
}

impl ConnectError {
    /// The failure, in the core's terms, when the handshake itself failed.
    pub fn failure(&self) -> Option<ConnectFailure> {
        match self {
            ConnectError::TimedOut { .. } => Some(ConnectFailure::TimedOut),
            ConnectError::WrongServerKey { .. } => Some(ConnectFailure::WrongServerKey),
            ConnectError::Rejected { code, .. } => Some(ConnectFailure::Rejected(*code)),
            ConnectError::DowngradeDetected { .. } => Some(ConnectFailure::DowngradeDetected),
            _ => None,
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Start(e) => e.fmt(f),
            ConnectError::Refused(e) => write!(f, "cannot connect: {e}"),
            ConnectError::TimedOut { server, timeout } => write!(
                f,
                "no answer from {server} within {:.1} s: check the address and port, that the server runs, and that both sides use the same MTU",
                timeout.as_secs_f64()
            ),
            ConnectError::WrongServerKey { server } => write!(
                f,
                "the server at {server} answered, but its signature does not verify with the pinned key: pin the server's current public key (its .pub file), or suspect an impostor"
            ),
            ConnectError::Rejected { server, code } => {
                write!(f, "the server at {server} refused the connection: {}", ConnectFailure::Rejected(*code))
            }
            ConnectError::DowngradeDetected { server } => {
                write!(f, "connecting to {server}: {}", ConnectFailure::DowngradeDetected)
            }
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Start(e) => Some(e),
            ConnectError::Refused(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StartError> for ConnectError {
    fn from(e: StartError) -> Self {
        ConnectError::Start(e)
    }
}
