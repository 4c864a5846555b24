//! The phases of one worker thread, what the threads share, and the CPU
//! samples of the measurement window.

use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use mpgameserver::{Duration, Endpoint, Instant, MAX_DATAGRAM, PublicKey};
use mpgameserver_drivers::udp::RecvBatch;
use mpgameserver_drivers::{Clock, os_seed};

use crate::poller::Poller;

use crate::client::{Client, Gen, Proto, State, Tally, Track, bind_like};
use crate::{Args, WINDOW, raw, secs};

/// What every worker thread shares.
pub(crate) struct Plan<'a> {
    pub(crate) args: &'a Args,
    pub(crate) server: SocketAddr,
    pub(crate) key: Option<PublicKey>,
    pub(crate) cfg: mpgameserver::EndpointConfig,
    pub(crate) clock: Clock,
    pub(crate) period: Duration,
    pub(crate) connect_deadline: Instant,
    /// Threads that have finished connecting.
    pub(crate) connected: AtomicU32,
    /// When the clients start sending, set by the first thread done waiting.
    pub(crate) t0: OnceLock<Instant>,
}

/// CPU ticks of the server (if its pid is known) and of this process, and when.
pub(crate) type CpuSample = (Option<u64>, Option<u64>, Instant);

/// What a worker thread reports.
pub(crate) struct Outcome {
    pub(crate) tally: Tally,
    /// CPU samples at the window's start and end (thread 0 only).
    pub(crate) cpu: Option<[CpuSample; 2]>,
}

/// One thread's share of the clients (global ids `t`, `t + threads`, ...),
/// through all the phases.
pub(crate) fn worker(plan: &Plan<'_>, t: u32, threads: u32) -> Result<Outcome, Box<dyn std::error::Error>> {
    let args = plan.args;
    let ids: Vec<u32> = (t..args.clients).step_by(threads as usize).collect();
    let mut g = Gen {
        clock: plan.clock,
        server: plan.server,
        clients: Vec::with_capacity(ids.len()),
        heap: BinaryHeap::new(),
        poller: Poller::new()?,
        rx: RecvBatch::new(),
        tx: Box::new([0; MAX_DATAGRAM]),
        msg: vec![0; args.size],
        raw_key: raw::key(),
        delivery: args.delivery,
        period: plan.period,
        window: (Instant::MAX, Instant::MAX),
        stop_sending: Instant::MAX,
        tally: Tally::default(),
    };
    let mut ready = Vec::with_capacity(1024);

    // 1. Connect, at most `concurrency` handshakes in flight over all threads.
    // An error is returned only after this thread has counted itself done
    // below, so the other threads never wait for it forever.
    let concurrency = (args.concurrency / threads).max(1);
    let mut connect = || -> Result<(), Box<dyn std::error::Error>> {
        let mut started = 0usize;
        loop {
            while started < ids.len() && started as u32 - (g.tally.connected + g.tally.failed) < concurrency {
                let local = started as u32;
                let socket = bind_like(plan.server)?;
                g.tally.sources.insert(socket.local_addr()?.ip());
                g.poller.add(&socket, local)?;
                let now = g.clock.now();
                let proto = match &plan.key {
                    Some(key) => {
                        let mut ep = Endpoint::client(plan.cfg.clone(), os_seed()?)?;
                        let conn = ep.connect(now, plan.server, key.clone())?;
                        Proto::Mpgs { ep: Box::new(ep), conn }
                    }
                    None => Proto::Raw { counter: 0 },
                };
                let raw = matches!(proto, Proto::Raw { .. });
                g.clients.push(Client {
                    id: ids[started],
                    socket,
                    proto,
                    t: Track {
                        state: if raw { State::Connected } else { State::Connecting },
                        next_send: Instant::MAX,
                        wake: Instant::MAX,
                        next_seq: 0,
                        echoed: Box::new([0; (WINDOW / 64) as usize]),
                    },
                });
                if raw {
                    g.tally.connected += 1;
                    g.tally.first_connected.get_or_insert(now);
                    g.tally.last_connected = Some(now);
                }
                g.service(local, false);
                started += 1;
            }
            if (g.tally.connected + g.tally.failed) as usize >= ids.len() || g.clock.now() >= plan.connect_deadline {
                break;
            }
            let step = (g.clock.now() + Duration::from_millis(10)).min(plan.connect_deadline);
            g.pump_once(step, &mut ready)?;
        }
        Ok(())
    };
    let connected = connect();

    // Wait for every thread's handshakes, serving this thread's clients
    // meanwhile (their keep-alives hold the connections).
    plan.connected.fetch_add(1, Ordering::AcqRel);
    while plan.connected.load(Ordering::Acquire) < threads {
        let step = g.clock.now() + Duration::from_millis(5);
        g.pump_once(step, &mut ready)?;
    }
    connected?;

    // 2.-3. Load: every connected client ticks, spread over the period by its id.
    let t0 = *plan.t0.get_or_init(|| plan.clock.now() + Duration::from_millis(20));
    for local in 0..g.clients.len() as u32 {
        let c = &mut g.clients[local as usize];
        if c.t.state == State::Connected {
            c.t.next_send = t0 + plan.period * c.id / args.clients;
            g.reschedule(local);
        }
    }
    let window_start = t0 + secs(args.warmup)?;
    let window_end = window_start + secs(args.duration)?;
    g.window = (window_start, window_end);
    g.stop_sending = window_end;
    let live = g.clients.iter().filter(|c| c.t.state == State::Connected).count();
    g.tally.rtts_us.reserve((live as f64 * args.hz * args.duration * 1.05) as usize);
    g.pump(window_start, &mut ready)?;
    let sample = |clock: &Clock| (args.server_pid.and_then(|pid| cpu_ticks(Some(pid))), cpu_ticks(None), clock.now());
    let cpu_start = (t == 0).then(|| sample(&g.clock));
    g.pump(window_end, &mut ready)?;
    let cpu_end = (t == 0).then(|| sample(&g.clock));

    // 4. Drain: late echoes of measured messages still count. Only echoes
    // end it early: a `Lost` report may be spurious (its message arrived and
    // its echo is on the way), and reports also come for messages sent
    // outside the window, so counting them ended the drain before the last
    // echoes of the window had arrived.
    let drain_end = window_end + secs(args.drain)?;
    while g.tally.echoed < g.tally.sent && g.clock.now() < drain_end {
        let step = (g.clock.now() + Duration::from_millis(20)).min(drain_end);
        g.pump(step, &mut ready)?;
    }
    // Disconnect every client (the server frees their state at once).
    let now = g.clock.now();
    for local in 0..g.clients.len() as u32 {
        if let Proto::Mpgs { ep, conn } = &mut g.clients[local as usize].proto {
            let _ = ep.disconnect(now, *conn);
            g.service(local, false);
        }
    }
    let close_end = g.clock.now() + Duration::from_millis(500);
    while g.clients.iter().any(|c| c.t.state == State::Connected) && g.clock.now() < close_end {
        let step = (g.clock.now() + Duration::from_millis(20)).min(close_end);
        g.pump(step, &mut ready)?;
    }
    let cpu = cpu_start.zip(cpu_end).map(|(a, b)| [a, b]);
    Ok(Outcome { tally: g.tally, cpu })
}

/// User + system CPU time of a process (`None`: this one) in clock ticks,
/// from `/proc` (Linux); `None` where unavailable.
pub(crate) fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may contain spaces), from field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

pub(crate) fn clock_ticks() -> u64 {
    #[cfg(target_os = "linux")]
    {
        rustix::param::clock_ticks_per_second()
    }
    #[cfg(not(target_os = "linux"))]
    {
        100
    }
}
