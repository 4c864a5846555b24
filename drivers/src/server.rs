//! What both server drivers share: the [`StopHandle`] and the server loop
//! itself minus the waiting (`ServerCore`). The [`EventHandler`] trait and
//! its [`ServerContext`] live in the core (`mpgameserver::EventHandler`), so
//! the simulator runs the same handlers.

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mpgameserver::{ConnectionId, DisconnectReason, Duration, Endpoint, Event, Instant, ServerKey};
pub use mpgameserver::{EventHandler, ServerContext};

use crate::clock::{Clock, os_seed};
use crate::config::{ServerConfig, StartError};
use crate::counters::EventCounts;
use crate::io::{Flushed, Io};

/// A driver's context for one callback: a [`ServerContext`] whose
/// [`stop`](ServerContext::stop) reaches the driver's [`StopHandle`].
fn with_ctx<R>(ep: &mut Endpoint, now: Instant, stop: &AtomicBool, f: impl FnOnce(&mut ServerContext<'_>) -> R) -> R {
    let mut ctx = ServerContext::new(ep, now);
    let r = f(&mut ctx);
    if ctx.stop_requested() {
        stop.store(true, Ordering::Relaxed);
    }
    r
}

/// Stops a running server from any thread: cheap to clone, `Send`.
#[derive(Clone, Debug)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks the server to stop. It notices within one tick, disconnects
    /// every client (waiting up to the endpoint's `disconnect_linger` for
    /// their acknowledgements), reports each to the handler's `disconnect`
    /// with [`DisconnectReason::Shutdown`], calls `shutdown` and returns from
    /// `run`. Stopping is final.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The flag itself (set by signal handlers, shared by workers).
    #[cfg_attr(not(feature = "signals"), allow(dead_code))]
    pub(crate) fn flag(&self) -> &Arc<AtomicBool> {
        &self.0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    NotStarted,
    Running,
    Stopping { deadline: Instant },
    Finished,
}

/// What the driver's loop does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Wait (for a datagram, writability if blocked, or the deadline).
    Wait,
    /// The server has shut down.
    Finished,
}

/// The server loop without its waiting: both drivers wait for the socket
/// or [`ServerCore::deadline`], then call [`ServerCore::step`].
pub(crate) struct ServerCore {
    pub(crate) ep: Endpoint,
    pub(crate) clock: Clock,
    pub(crate) io: Io,
    /// Connections the handler was told about and not yet disconnected.
    live: BTreeSet<ConnectionId>,
    /// Scratch list for shutdown (reused).
    scratch: Vec<ConnectionId>,
    stop: StopHandle,
    period: Duration,
    next_tick: Instant,
    last_update: Instant,
    phase: Phase,
    linger: Duration,
    /// Event totals for the metrics export.
    pub(crate) counts: EventCounts,
    /// Answers the metrics endpoint's requests for a snapshot.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<crate::metrics::Reporter>,
}

impl ServerCore {
    pub(crate) fn new(config: ServerConfig, key: ServerKey) -> Result<ServerCore, StartError> {
        let period = config.tick_period()?;
        let clock = Clock::new();
        let mut cfg = config.endpoint;
        cfg.unix_time_origin = clock.unix_time_origin();
        let linger = cfg.disconnect_linger;
        let ep = Endpoint::server(cfg, key, os_seed()?)?;
        Ok(ServerCore {
            ep,
            clock,
            io: Io::new(),
            live: BTreeSet::new(),
            scratch: Vec::new(),
            stop: StopHandle(Arc::new(AtomicBool::new(false))),
            period,
            next_tick: Instant::ZERO,
            last_update: Instant::ZERO,
            phase: Phase::NotStarted,
            linger,
            counts: EventCounts::default(),
            #[cfg(feature = "metrics")]
            metrics: None,
        })
    }

    /// Shares `stop` with other servers (the workers of one port).
    pub(crate) fn with_stop(mut self, stop: StopHandle) -> ServerCore {
        self.stop = stop;
        self
    }

    pub(crate) fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Calls `starting` and begins ticking.
    pub(crate) fn start(&mut self, socket: &UdpSocket, handler: &mut impl EventHandler) {
        if self.phase != Phase::NotStarted {
            return;
        }
        let now = self.clock.now();
        with_ctx(&mut self.ep, now, &self.stop.0, |ctx| handler.starting(ctx));
        self.phase = Phase::Running;
        self.last_update = now;
        self.next_tick = now + self.period;
        self.flush(socket, handler, now);
        tracing::info!(tick_hz = 1_000_000 / self.period.as_micros().max(1), "server running");
    }

    /// Until when the driver may wait for the socket (the next tick, timer
    /// or the end of shutdown).
    pub(crate) fn deadline(&mut self) -> Instant {
        let timer = self.ep.poll_timeout().unwrap_or(Instant::MAX);
        match self.phase {
            Phase::Running => timer.min(self.next_tick),
            Phase::Stopping { deadline } => timer.min(deadline),
            Phase::NotStarted | Phase::Finished => Instant::ZERO,
        }
    }

    /// One pass: receive every waiting datagram, run the timers, flush,
    /// tick if due, and handle a stop request.
    pub(crate) fn step(&mut self, socket: &UdpSocket, handler: &mut impl EventHandler) -> Step {
        match self.phase {
            Phase::NotStarted => self.start(socket, handler),
            Phase::Finished => return Step::Finished,
            Phase::Running | Phase::Stopping { .. } => {}
        }
        self.io.drain(socket, &mut self.ep, &self.clock);
        let now = self.clock.now();
        self.ep.handle_timeout(now);
        self.flush(socket, handler, now);

        match self.phase {
            Phase::Running if self.stop.is_stopped() => self.begin_shutdown(socket, handler, now),
            Phase::Running if now >= self.next_tick => {
                let dt = now - self.last_update;
                self.last_update = now;
                self.next_tick += self.period;
                if self.next_tick <= now {
                    // Far behind (a slow handler or a suspended process): skip
                    // the missed ticks instead of running them back to back.
                    self.next_tick = now + self.period;
                }
                with_ctx(&mut self.ep, now, &self.stop.0, |ctx| handler.update(ctx, dt));
                self.flush(socket, handler, now);
            }
            _ => {}
        }
        if let Phase::Stopping { deadline } = self.phase
            && (self.live.is_empty() || now >= deadline)
        {
            self.finish(socket, handler, now);
            return Step::Finished;
        }
        #[cfg(feature = "metrics")]
        self.report_metrics(now, false);
        Step::Wait
    }

    /// Disconnects every client; `step` finishes once each is reported.
    fn begin_shutdown(&mut self, socket: &UdpSocket, handler: &mut impl EventHandler, now: Instant) {
        tracing::info!(clients = self.live.len(), "server stopping");
        self.scratch.clear();
        self.scratch.extend(self.ep.connections());
        for &conn in &self.scratch {
            let _ = self.ep.disconnect(now, conn);
        }
        // The core closes each connection at its acknowledgement or after the
        // linger time; the margin covers a late tick.
        self.phase = Phase::Stopping { deadline: now + self.linger + self.period * 2 };
        self.flush(socket, handler, now);
    }

    fn finish(&mut self, socket: &UdpSocket, handler: &mut impl EventHandler, now: Instant) {
        let live = std::mem::take(&mut self.live);
        let counts = &mut self.counts;
        with_ctx(&mut self.ep, now, &self.stop.0, |ctx| {
            for conn in live {
                counts.on_disconnect(DisconnectReason::Shutdown);
                handler.disconnect(ctx, conn, DisconnectReason::Shutdown);
            }
            handler.shutdown(ctx);
        });
        self.phase = Phase::Finished;
        // Last datagrams (DISCONNECT replies), best effort.
        let _ = self.io.transmit(socket, &mut self.ep, now);
        // The final figures, for the last scrape.
        #[cfg(feature = "metrics")]
        self.report_metrics(now, true);
        tracing::info!("server stopped");
    }

    /// The shared flush, dispatching events to the handler.
    fn flush(&mut self, socket: &UdpSocket, handler: &mut impl EventHandler, now: Instant) -> Flushed {
        let ServerCore { ep, io, live, stop, phase, counts, .. } = self;
        let stopping = matches!(phase, Phase::Stopping { .. });
        io.flush(socket, ep, now, |ep, mut event| {
            if let Event::Disconnected { reason: reason @ DisconnectReason::Local, .. } = &mut event
                && stopping
            {
                // The shutdown closed it (or, rarely, the handler did just before the stop).
                *reason = DisconnectReason::Shutdown;
            }
            counts.on_event(&event);
            if let Event::Connected { conn } = event
                && stopping
            {
                // Too late: close it without telling the handler.
                let _ = ep.disconnect(now, conn);
                return;
            }
            with_ctx(ep, now, &stop.0, |ctx| match event {
                Event::Connected { conn } => {
                    live.insert(conn);
                    handler.connect(ctx, conn);
                }
                // Only connections the handler was told about (not those refused while stopping).
                Event::Disconnected { conn, reason } if live.remove(&conn) => {
                    handler.disconnect(ctx, conn, reason);
                }
                Event::Message { conn, payload, .. } if live.contains(&conn) => {
                    handler.handle_message(ctx, conn, payload);
                }
                Event::Delivered { conn, id } if live.contains(&conn) => handler.delivered(ctx, conn, id),
                Event::Lost { conn, id, .. } if live.contains(&conn) => handler.lost(ctx, conn, id),
                Event::Writable { conn, channel } if live.contains(&conn) => handler.writable(ctx, conn, channel),
                _ => {}
            })
        })
    }
}
