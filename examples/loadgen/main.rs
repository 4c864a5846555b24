//! A load generator: many client connections from one process (one thread
//! by default, `--threads T` to split them) against an echo server (ours,
//! the Python reference, or the raw UDP + AES-GCM baseline), each sending
//! one message per tick and checking every echo.
//!
//! ```text
//! loadgen --server 127.0.0.1:5000 --key keys/root.pub --clients 512 --hz 60 --size 100 --duration 10
//! ```
//!
//! Each client is a sans-IO `Endpoint` with its own non-blocking socket on
//! 127.0.0.1 (the server tells clients apart by address); per thread, one
//! epoll set waits for all of its clients and a timer heap runs their ticks
//! and protocol timers. The run has four phases:
//!
//! 1. **connect**: handshakes, at most `--concurrency` at a time; the rate
//!    of completed handshakes is reported;
//! 2. **warm-up** (`--warmup` s): every client sends one message per tick,
//!    the clients' ticks spread evenly over the tick period;
//! 3. **measurement** (`--duration` s): the same, counted: messages sent in
//!    this window, their echoes (checked byte for byte) and round-trip
//!    times, echoes received per second, and (with `--server-pid`) the
//!    server's CPU time from `/proc`;
//! 4. **drain** (up to `--drain` s): no new messages; late echoes still
//!    count. Then every client disconnects.
//!
//! The clients use the drivers' endpoint configuration, except that an
//! echo is acknowledged at the latest one tick later (`--ack-delay-ms`,
//! default one period up to 50 ms), so the acknowledgement rides on the
//! next message as in a game client's frame loop: one datagram each way
//! per message. Messages go `Unreliable` by default (`--delivery`), so a
//! datagram dropped anywhere shows as loss; the server chooses how it
//! echoes (ours: `Reliable`).
//!
//! A message is `seq (u64) ‖ send time (u64 µs) ‖ filler`; the filler is a
//! function of the client and `seq`, so a corrupted or misrouted echo is
//! caught. Output: one `key=value` line about the run, then the summary:
//!
//! ```text
//! connected=512/512 handshakes_per_s=.. offered_per_s=.. server_cpu_pct=.. loadgen_cpu_pct=.. ...
//! clients=512 sent=.. echoed=.. lost=.. msgs_per_s=.. p50_rtt_ms=.. p99_rtt_ms=..
//! ```
//!
//! `sent` and `echoed` count the messages sent during the measurement
//! window; `lost = sent - echoed`; `msgs_per_s` is the echoes received
//! during the window per second. `--raw` drives the raw baseline server
//! that `--serve-raw ADDR` runs (see `raw.rs`).

mod poller;
mod raw;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use clap::Parser;
use mpgameserver::_internal::PacketKey;
use mpgameserver::{ConnectionId, Delivery, Duration, Endpoint, Event, Instant, MAX_DATAGRAM, PublicKey};
use mpgameserver_drivers::udp::RecvBatch;
use mpgameserver_drivers::{Clock, endpoint_config, os_seed};

use poller::Poller;

/// Drive many client connections against an echo server and measure the echoes.
#[derive(Parser, Debug)]
#[command(name = "loadgen")]
struct Args {
    /// The echo server's address, e.g. 127.0.0.1:5000
    #[arg(long, value_name = "ADDR", required_unless_present = "serve_raw")]
    server: Option<SocketAddr>,
    /// The server's public key to pin (PEM); not used with --raw
    #[arg(long, value_name = "FILE.pub", required_unless_present_any = ["raw", "serve_raw"])]
    key: Option<PathBuf>,
    /// Number of client connections
    #[arg(long, value_name = "N", default_value_t = 100)]
    clients: u32,
    /// Messages per second per client (one per tick)
    #[arg(long, value_name = "R", default_value_t = 60.0)]
    hz: f64,
    /// Size of each message in bytes (at least 16)
    #[arg(long, value_name = "B", default_value_t = 100)]
    size: usize,
    /// Length of the measurement window, in seconds
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    duration: f64,
    /// Delivery mode of the messages sent: unreliable, best-effort or reliable (how the server echoes is its own choice)
    #[arg(long, default_value_t = Delivery::Unreliable)]
    delivery: Delivery,
    /// Seconds of load before the measurement window
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    warmup: f64,
    /// Seconds to wait for late echoes after the window
    #[arg(long, value_name = "S", default_value_t = 2.0)]
    drain: f64,
    /// Seconds allowed for all the handshakes
    #[arg(long, value_name = "S", default_value_t = 20.0)]
    connect_timeout: f64,
    /// Handshakes in flight at once
    #[arg(long, value_name = "P", default_value_t = 64)]
    concurrency: u32,
    /// Threads, each driving its share of the clients
    #[arg(long, value_name = "T", default_value_t = 1)]
    threads: u32,
    /// Longest wait before a client acknowledges an echo when it has nothing
    /// to send (default: one tick period, at most 50 ms, so acks ride on the
    /// next message as in a game client's frame loop)
    #[arg(long, value_name = "MS")]
    ack_delay_ms: Option<f64>,
    /// The server's process id, to report its CPU use during the window (Linux /proc)
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Drive the raw UDP + AES-GCM baseline server instead of an MPGS/1 server
    #[arg(long)]
    raw: bool,
    /// Run the raw baseline echo server on ADDR instead of generating load
    #[arg(long, value_name = "ADDR", conflicts_with = "raw")]
    serve_raw: Option<SocketAddr>,
    /// With --serve-raw: stop after this many seconds (default: run until killed)
    #[arg(long, value_name = "S")]
    serve_for: Option<f64>,
}

/// Bytes of a message before its filler: seq and send time.
const STAMP: usize = 16;
/// Echoes remembered per client, to recognise duplicates.
const WINDOW: u64 = 8192;

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.serve_raw {
        Some(bind) => serve_raw(bind, args.serve_for),
        None => run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve_raw(bind: SocketAddr, seconds: Option<f64>) -> Result<(), Box<dyn std::error::Error>> {
    let duration = seconds.map(secs).transpose()?;
    let replies = raw::serve(bind, duration)?;
    println!("raw server stopped after {replies} replies");
    Ok(())
}

fn secs(s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("{s} is not a number of seconds"))
}

/// What a client speaks.
enum Proto {
    Mpgs { ep: Box<Endpoint>, conn: ConnectionId },
    Raw { counter: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Connecting,
    Connected,
    Failed,
    Closed,
}

struct Client {
    /// Global client number (the filler and the raw header use it).
    id: u32,
    socket: UdpSocket,
    proto: Proto,
    t: Track,
}

/// A client's progress, apart from its protocol state.
struct Track {
    state: State,
    /// When the next message is due (`Instant::MAX`: not sending).
    next_send: Instant,
    /// The time of this client's valid entry in the timer heap.
    wake: Instant,
    next_seq: u64,
    /// Bit `seq % WINDOW` set: the echo of `seq` arrived.
    echoed: Box<[u64; (WINDOW / 64) as usize]>,
}

/// Counters of a run.
#[derive(Default)]
struct Tally {
    connected: u32,
    failed: u32,
    first_connected: Option<Instant>,
    last_connected: Option<Instant>,
    /// Messages sent in the measurement window, and echoes of them.
    sent: u64,
    echoed: u64,
    /// Echoes of any message received during the window.
    echoes_in_window: u64,
    duplicates: u64,
    corrupt: u64,
    /// Messages the client endpoint refused (its queue was full).
    refused: u64,
    /// `Lost` events for our messages (Reliable/BestEffort).
    reported_lost: u64,
    disconnected: u64,
    send_errors: u64,
    rtts_us: Vec<u32>,
}

struct Gen {
    clock: Clock,
    server: SocketAddr,
    clients: Vec<Client>,
    heap: BinaryHeap<Reverse<(Instant, u32)>>,
    poller: Poller,
    rx: RecvBatch,
    tx: Box<[u8; MAX_DATAGRAM]>,
    msg: Vec<u8>,
    raw_key: PacketKey,
    delivery: Delivery,
    period: Duration,
    /// The measurement window.
    window: (Instant, Instant),
    /// No message is sent at or after this.
    stop_sending: Instant,
    tally: Tally,
}

/// What every worker thread shares.
struct Plan<'a> {
    args: &'a Args,
    server: SocketAddr,
    key: Option<PublicKey>,
    cfg: mpgameserver::EndpointConfig,
    clock: Clock,
    period: Duration,
    connect_deadline: Instant,
    /// Threads that have finished connecting.
    connected: AtomicU32,
    /// When the clients start sending, set by the first thread done waiting.
    t0: OnceLock<Instant>,
}

/// CPU ticks of the server (if its pid is known) and of this process, and when.
type CpuSample = (Option<u64>, Option<u64>, Instant);

/// What a worker thread reports.
struct Outcome {
    tally: Tally,
    /// CPU samples at the window's start and end (thread 0 only).
    cpu: Option<[CpuSample; 2]>,
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let server = args.server.ok_or("--server is required")?;
    if !(args.hz > 0.0 && args.hz <= 10_000.0) {
        return Err("--hz must be in (0, 10000]".into());
    }
    let max_size = if args.raw { raw::MAX_PAYLOAD } else { mpgameserver::EndpointConfig::default().max_message_size };
    if args.size < STAMP || args.size > max_size {
        return Err(format!("--size must be in {STAMP}..={max_size}").into());
    }
    if args.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    let period = Duration::from_micros((1e6 / args.hz).round() as u64);
    let key = match (&args.key, args.raw) {
        (_, true) => None,
        (Some(path), false) => Some(PublicKey::read_pem_file(path)?),
        (None, false) => return Err("--key is required (or --raw)".into()),
    };
    let clock = Clock::new();
    let mut cfg = endpoint_config();
    cfg.unix_time_origin = clock.unix_time_origin();
    cfg.connect_timeout = secs(args.connect_timeout)?;
    cfg.max_ack_delay = match args.ack_delay_ms {
        Some(ms) => secs(ms / 1e3)?,
        None => period.min(Duration::from_millis(50)),
    };
    cfg.validate().map_err(|e| format!("client configuration: {e}"))?;
    // Check the timing arguments before any thread starts.
    for s in [args.warmup, args.duration, args.drain] {
        secs(s)?;
    }

    let threads = args.threads.clamp(1, args.clients);
    let connect_start = clock.now();
    let plan = Plan {
        args,
        server,
        key,
        cfg,
        clock,
        period,
        connect_deadline: connect_start + secs(args.connect_timeout)? + Duration::from_secs(1),
        connected: AtomicU32::new(0),
        t0: OnceLock::new(),
    };
    let outcomes: Vec<Result<Outcome, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn({
                    let plan = &plan;
                    move || worker(plan, t, threads).map_err(|e| e.to_string())
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err("a worker thread panicked".into()))).collect()
    });

    // Merge.
    let mut t = Tally::default();
    let mut cpu = None;
    for outcome in outcomes {
        let o = outcome?;
        cpu = cpu.or(o.cpu);
        let u = o.tally;
        t.connected += u.connected;
        t.failed += u.failed;
        t.first_connected = [t.first_connected, u.first_connected].into_iter().flatten().min();
        t.last_connected = t.last_connected.max(u.last_connected);
        t.sent += u.sent;
        t.echoed += u.echoed;
        t.echoes_in_window += u.echoes_in_window;
        t.duplicates += u.duplicates;
        t.corrupt += u.corrupt;
        t.refused += u.refused;
        t.reported_lost += u.reported_lost;
        t.disconnected += u.disconnected;
        t.send_errors += u.send_errors;
        t.rtts_us.extend(u.rtts_us);
    }
    let connect_time = t.last_connected.map(|at| at - connect_start);
    let handshakes_per_s = match (t.connected, connect_time) {
        _ if args.raw => "-".to_string(),
        (n, Some(d)) if n > 1 && !d.is_zero() => format!("{:.0}", f64::from(n) / d.as_secs_f64()),
        _ => "0".to_string(),
    };
    let (Some([cpu_start, cpu_end]), 1..) = (cpu, t.connected) else {
        println!("connected=0/{} failed={} handshakes_per_s=0 offered_per_s=0", args.clients, t.failed);
        println!("clients={} sent=0 echoed=0 lost=0 msgs_per_s=0 p50_rtt_ms=- p99_rtt_ms=-", args.clients);
        return Err("no client connected".into());
    };

    // Report.
    let window = (cpu_end.2 - cpu_start.2).as_secs_f64();
    let pct = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.1}", (b - a) as f64 / clock_ticks() as f64 / window * 100.0),
        _ => "-".into(),
    };
    t.rtts_us.sort_unstable();
    let q = |q: f64| match t.rtts_us.len() {
        0 => "-".to_string(),
        n => format!("{:.2}", f64::from(t.rtts_us[((n - 1) as f64 * q).round() as usize]) / 1e3),
    };
    println!(
        "connected={}/{} failed={} handshakes_per_s={} connect_s={:.2} offered_per_s={:.0} window_s={:.2} \
         server_cpu_pct={} loadgen_cpu_pct={} threads={} refused={} reported_lost={} duplicates={} corrupt={} \
         disconnected={} send_errors={} p999_rtt_ms={} max_rtt_ms={}",
        t.connected,
        args.clients,
        t.failed,
        handshakes_per_s,
        connect_time.map_or(0.0, |d| d.as_secs_f64()),
        f64::from(t.connected) * args.hz,
        window,
        pct(cpu_start.0, cpu_end.0),
        pct(cpu_start.1, cpu_end.1),
        threads,
        t.refused,
        t.reported_lost,
        t.duplicates,
        t.corrupt,
        t.disconnected,
        t.send_errors,
        q(0.999),
        q(1.0),
    );
    println!(
        "clients={} sent={} echoed={} lost={} msgs_per_s={:.0} p50_rtt_ms={} p99_rtt_ms={}",
        args.clients,
        t.sent,
        t.echoed,
        t.sent - t.echoed.min(t.sent),
        t.echoes_in_window as f64 / window,
        q(0.5),
        q(0.99),
    );
    Ok(())
}

/// One thread's share of the clients (global ids `t`, `t + threads`, ...),
/// through all the phases.
fn worker(plan: &Plan<'_>, t: u32, threads: u32) -> Result<Outcome, Box<dyn std::error::Error>> {
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

    // 4. Drain: late echoes of measured messages still count.
    let drain_end = window_end + secs(args.drain)?;
    while g.tally.echoed + g.tally.reported_lost < g.tally.sent && g.clock.now() < drain_end {
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

impl Gen {
    /// Runs timers and sockets until `until`.
    fn pump(&mut self, until: Instant, ready: &mut Vec<u32>) -> io::Result<()> {
        while self.clock.now() < until {
            self.pump_once(until, ready)?;
        }
        Ok(())
    }

    /// Runs the due timers, then waits (at most until `until`) and serves
    /// the sockets that became readable.
    fn pump_once(&mut self, until: Instant, ready: &mut Vec<u32>) -> io::Result<()> {
        let now = self.clock.now();
        while let Some(&Reverse((t, i))) = self.heap.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            let c = &mut self.clients[i as usize];
            if c.t.wake == t {
                c.t.wake = Instant::MAX;
                self.service(i, false);
            }
        }
        let now = self.clock.now();
        if now >= until {
            return Ok(());
        }
        let next = self.heap.peek().map_or(until, |Reverse((t, _))| (*t).min(until));
        let wait = if next > now { next - now } else { Duration::ZERO };
        ready.clear();
        self.poller.wait(wait, self.clients.iter().map(|c| &c.socket), ready)?;
        for &i in ready.iter() {
            self.service(i, true);
        }
        Ok(())
    }

    /// Everything one client has to do now: read its socket (when
    /// `readable`), run its timers, send its message if due, handle its
    /// events, and send its datagrams.
    fn service(&mut self, i: u32, readable: bool) {
        let Gen { clock, clients, rx, tx, msg, raw_key, tally, window, stop_sending, period, delivery, server, .. } =
            self;
        let c = &mut clients[i as usize];
        let id = c.id;
        if readable {
            loop {
                let n = match rx.recv(&c.socket) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break, // WouldBlock, or an ICMP report of an earlier send
                };
                let now = clock.now();
                for k in 0..n {
                    let (from, bytes) = rx.get_mut(k);
                    if bytes.len() > MAX_DATAGRAM {
                        continue;
                    }
                    match &mut c.proto {
                        Proto::Mpgs { ep, .. } => ep.handle_datagram(now, from, bytes),
                        Proto::Raw { .. } => match raw::open(raw_key, bytes) {
                            Some(payload) => on_echo(tally, &mut c.t, id, payload, now, *window),
                            None => tally.corrupt += 1,
                        },
                    }
                }
                if n < mpgameserver_drivers::udp::BATCH {
                    break;
                }
            }
        }
        let now = clock.now();
        if let Proto::Mpgs { ep, .. } = &mut c.proto {
            ep.handle_timeout(now);
            drain_events(ep, &mut c.t, id, tally, now, *window);
        }
        if c.t.state == State::Connected && now >= c.t.next_send {
            if now >= *stop_sending {
                c.t.next_send = Instant::MAX;
            } else {
                let seq = c.t.next_seq;
                c.t.next_seq += 1;
                c.t.echoed[((seq % WINDOW) / 64) as usize] &= !(1 << (seq % 64));
                fill_message(msg, id, seq, now);
                let measured = now >= window.0 && now < window.1;
                if measured {
                    tally.sent += 1;
                }
                match &mut c.proto {
                    Proto::Mpgs { ep, conn } => {
                        // A full queue (the server is far behind) or a closing
                        // connection: the message is never sent, so never echoed.
                        if ep.send(*conn, msg, *delivery).is_err() {
                            tally.refused += 1;
                        }
                    }
                    Proto::Raw { counter } => {
                        *counter += 1;
                        let len = raw::seal_request(raw_key, id, *counter, msg, &mut tx[..]);
                        if c.socket.send(&tx[..len]).is_err() {
                            tally.send_errors += 1;
                        }
                    }
                }
                // The next tick; if far behind, skip the missed ones.
                c.t.next_send += *period;
                if c.t.next_send <= now {
                    c.t.next_send = now + *period;
                }
            }
        }
        if let Proto::Mpgs { ep, .. } = &mut c.proto {
            drain_events(ep, &mut c.t, id, tally, now, *window);
            while let Some(t) = ep.poll_transmit(now, tx) {
                let sent = if t.destination == *server {
                    c.socket.send(&tx[..t.len])
                } else {
                    c.socket.send_to(&tx[..t.len], t.destination)
                };
                if sent.is_err() {
                    tally.send_errors += 1;
                }
            }
        }
        self.reschedule(i);
    }

    /// Puts client `i` back in the timer heap at its next timer or tick.
    fn reschedule(&mut self, i: u32) {
        let c = &mut self.clients[i as usize];
        let mut wake = if c.t.state == State::Connected { c.t.next_send } else { Instant::MAX };
        if let Proto::Mpgs { ep, .. } = &mut c.proto
            && let Some(t) = ep.poll_timeout()
        {
            wake = wake.min(t);
        }
        if wake != Instant::MAX && wake != c.t.wake {
            c.t.wake = wake;
            self.heap.push(Reverse((wake, i)));
        }
    }
}

/// Hands a client's endpoint events to the tally.
fn drain_events(ep: &mut Endpoint, c: &mut Track, i: u32, tally: &mut Tally, now: Instant, window: (Instant, Instant)) {
    while let Some(event) = ep.poll_event() {
        match event {
            Event::Connected { .. } => {
                c.state = State::Connected;
                tally.connected += 1;
                tally.first_connected.get_or_insert(now);
                tally.last_connected = Some(now);
            }
            Event::ConnectFailed { reason, .. } => {
                if tally.failed == 0 {
                    eprintln!("loadgen: a handshake failed: {reason}");
                }
                c.state = State::Failed;
                tally.failed += 1;
            }
            Event::Message { payload, .. } => on_echo(tally, c, i, &payload, now, window),
            Event::Lost { .. } => tally.reported_lost += 1,
            Event::Disconnected { .. } => {
                if c.state == State::Connected && now < window.1 {
                    tally.disconnected += 1;
                }
                c.state = State::Closed;
            }
            _ => {}
        }
    }
}

/// Writes message `seq` of client `i`, stamped with `now`.
fn fill_message(msg: &mut [u8], i: u32, seq: u64, now: Instant) {
    msg[0..8].copy_from_slice(&seq.to_le_bytes());
    msg[8..16].copy_from_slice(&now.as_micros().to_le_bytes());
    let mut x = filler_seed(i, seq);
    for b in &mut msg[STAMP..] {
        *b = (x >> 24) as u8;
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
    }
}

fn filler_seed(i: u32, seq: u64) -> u32 {
    (seq as u32).wrapping_mul(0x9E37_79B9) ^ i.wrapping_mul(0x85EB_CA6B) ^ (seq >> 32) as u32
}

/// Checks an echo and counts it.
fn on_echo(tally: &mut Tally, c: &mut Track, i: u32, payload: &[u8], now: Instant, window: (Instant, Instant)) {
    if payload.len() < STAMP {
        tally.corrupt += 1;
        return;
    }
    let seq = u64::from_le_bytes(payload[0..8].try_into().expect("8 bytes"));
    let sent_at = Instant::from_micros(u64::from_le_bytes(payload[8..16].try_into().expect("8 bytes")));
    let mut x = filler_seed(i, seq);
    let intact = seq < c.next_seq
        && payload[STAMP..].iter().all(|&b| {
            let ok = b == (x >> 24) as u8;
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ok
        });
    if !intact {
        tally.corrupt += 1;
        return;
    }
    let (word, bit) = (((seq % WINDOW) / 64) as usize, 1u64 << (seq % 64));
    if seq + WINDOW <= c.next_seq || c.echoed[word] & bit != 0 {
        tally.duplicates += 1;
        return;
    }
    c.echoed[word] |= bit;
    if now >= window.0 && now < window.1 {
        tally.echoes_in_window += 1;
    }
    if sent_at >= window.0 && sent_at < window.1 {
        tally.echoed += 1;
        tally.rtts_us.push(u32::try_from((now - sent_at).as_micros()).unwrap_or(u32::MAX));
    }
}

/// A non-blocking socket on the loopback (or unspecified) address of the
/// server's family, connected to the server.
fn bind_like(server: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = match server {
        SocketAddr::V4(a) if a.ip().is_loopback() => (Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(a) if a.ip().is_loopback() => (Ipv6Addr::LOCALHOST, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    // Connected: the kernel keeps the route, and only the server's
    // datagrams arrive.
    socket.connect(server)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// User + system CPU time of a process (`None`: this one) in clock ticks,
/// from `/proc` (Linux); `None` where unavailable.
fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
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

fn clock_ticks() -> u64 {
    #[cfg(target_os = "linux")]
    {
        rustix::param::clock_ticks_per_second()
    }
    #[cfg(not(target_os = "linux"))]
    {
        100
    }
}
