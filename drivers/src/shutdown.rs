//! Graceful shutdown on SIGINT and SIGTERM (feature `signals`), with
//! [`signal_hook`].
//!
//! [`stop_on_signals`] makes the first SIGINT (Ctrl-C) or SIGTERM (what
//! `systemctl stop`, `docker stop` and Kubernetes send) stop a server as its
//! [`StopHandle`] would: within one tick it closes every connection (each
//! client gets a DISCONNECT and sees the connection end at once, not by
//! timeout; the handler's `disconnect` gets
//! [`DisconnectReason::Shutdown`](mpgameserver::DisconnectReason::Shutdown)),
//! waits up to the endpoint's `disconnect_linger` for their
//! acknowledgements, publishes its final metrics, calls `shutdown` and
//! returns from `run`. A second signal while it stops ends the process at
//! once with exit status 1.
//!
//! ```no_run
//! # use mpgameserver::{ConnectionId, ServerKey};
//! # use mpgameserver_drivers::{EventHandler, ServerContext};
//! # struct Game;
//! # impl EventHandler for Game {
//! #     fn handle_message(&mut self, _: &mut ServerContext<'_>, _: ConnectionId, _: Vec<u8>) {}
//! # }
//! use mpgameserver_drivers::blocking::Server;
//! use mpgameserver_drivers::shutdown::stop_on_signals;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut server = Server::bind("0.0.0.0:5000", ServerKey::read_pem_file("root.key")?)?;
//! let _signals = stop_on_signals(&server.stop_handle())?;
//! server.run(&mut Game); // returns after SIGINT/SIGTERM, every client told
//! # Ok(())
//! # }
//! ```

use std::io;
use std::sync::Arc;

use signal_hook::SigId;
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::server::StopHandle;

/// The signals that stop a server: SIGINT and SIGTERM.
pub const STOP_SIGNALS: [i32; 2] = [SIGINT, SIGTERM];

/// Keeps the signal handlers of [`stop_on_signals`] installed; dropping it
/// removes them (the default action, ending the process, comes back).
#[derive(Debug)]
pub struct SignalGuard {
    ids: Vec<SigId>,
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Stops the server of `stop` at the first SIGINT or SIGTERM; a second one
/// ends the process with status 1. Errors only if a handler cannot be
/// installed (a signal the platform does not have).
pub fn stop_on_signals(stop: &StopHandle) -> io::Result<SignalGuard> {
    let flag = stop.flag();
    let mut guard = SignalGuard { ids: Vec::new() };
    for signal in STOP_SIGNALS {
        // Order matters: the first signal finds the flag clear and only sets
        // it; a later one finds it set and exits.
        guard.ids.push(signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(flag))?);
        guard.ids.push(signal_hook::flag::register(signal, Arc::clone(flag))?);
    }
    Ok(guard)
}
