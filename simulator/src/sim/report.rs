//! What a run reports: the datagrams put on the network, the network's
//! counters, and why a node could not be added.

#[allow(clippy::wildcard_imports, reason = "one type split over files shares its imports")]
use super::*;

/// A datagram as it was put on the network (see [`Sim::capture`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Its id in the trace.
    pub id: u64,
    /// Source address.
    pub from: SocketAddr,
    /// Destination address.
    pub to: SocketAddr,
    /// Its bytes, as the sender emitted them.
    pub bytes: Vec<u8>,
    /// When it was sent.
    pub sent_at: Instant,
}

impl Datagram {
    /// The header's packet type, if the bytes look like an MPGS/1 datagram.
    pub fn msg_type(&self) -> Option<mpgameserver::_internal::wire::MsgType> {
        msg_type_of(&self.bytes)
    }
}

/// Counters of the simulated network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimStats {
    /// Steps taken (distinct instants processed).
    pub steps: u64,
    /// Datagrams endpoints emitted.
    pub datagrams_sent: u64,
    /// Datagrams handed to an endpoint (duplicates, injections and replays
    /// included).
    pub datagrams_delivered: u64,
    /// Copies added by duplication.
    pub duplicated: u64,
    /// Copies with flipped bits.
    pub corrupted: u64,
    /// Datagrams held on a held link.
    pub held: u64,
    /// Datagrams released from a held link.
    pub released: u64,
    /// Raw datagrams injected.
    pub injected: u64,
    /// Captured datagrams replayed.
    pub replayed: u64,
    /// `handle_timeout` calls.
    pub timeouts: u64,
    /// Times the progress property was checked (once per `handle_timeout`).
    pub progress_checks: u64,
    pub(super) dropped: [u64; 6],
}

impl SimStats {
    /// Datagrams dropped for `cause`.
    pub fn dropped(&self, cause: DropCause) -> u64 {
        self.dropped[cause as usize]
    }

    /// Datagrams dropped for any cause.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

impl fmt::Display for SimStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}, delivered {}, duplicated {}, corrupted {}, dropped {}",
            self.datagrams_sent,
            self.datagrams_delivered,
            self.duplicated,
            self.corrupted,
            self.dropped_total()
        )?;
        let mut first = true;
        for c in DropCause::ALL {
            if self.dropped(c) > 0 {
                write!(f, "{}{}={}", if first { " (" } else { ", " }, c.name(), self.dropped(c))?;
                first = false;
            }
        }
        if !first {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Why a node could not be added.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SimError {
    /// The endpoint configuration is invalid.
    Config(ConfigError),
    /// Another node already has this address.
    AddressInUse(SocketAddr),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Config(e) => write!(f, "invalid endpoint configuration: {e}"),
            SimError::AddressInUse(a) => write!(f, "address {a} is already used by another node: choose another"),
        }
    }
}

impl std::error::Error for SimError {}

impl From<ConfigError> for SimError {
    fn from(e: ConfigError) -> SimError {
        SimError::Config(e)
    }
}
