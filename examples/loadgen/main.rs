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
//! clients=512 connected=512/512 sent=.. echoed=.. lost=.. msgs_per_s=.. p50_rtt_ms=.. p99_rtt_ms=..
//! ```
//!
//! `clients` is the number asked for, `connected` how many of them
//! completed their handshake (only those send). `sent` and `echoed` count
//! the messages sent during the measurement window; `lost = sent - echoed`;
//! `msgs_per_s` is the echoes received during the window per second.
//! `--protocol v1|v2` chooses what the clients speak: MPGS/2 by default,
//! `--protocol v1` for MPGS/1 (the only protocol a Python reference server
//! speaks); the first line ends with the protocol used.
//! `--raw` drives the raw baseline server that `--serve-raw ADDR` runs (see
//! `raw.rs`).
//!
//! The exit status is non-zero when not every client connected (after the
//! two lines, whose figures are then those of the clients that did): the
//! error says how many did not and why, if it can tell. A server refuses a
//! hello beyond its per-address limits without answering, and every client
//! of loadgen shares one address: against our `echo_server`, run it with
//! `--no-source-limits` for more than 64 clients.

mod poller;
mod raw;

mod client;
mod report;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU32;

use clap::Parser;
use mpgameserver::{Delivery, Duration, ProtocolVersion, PublicKey};
use mpgameserver_drivers::{Clock, endpoint_config};

use client::Tally;
use report::{quantile_ms, shortfall, summary_line};
use worker::{Outcome, Plan, clock_ticks, worker};

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
    /// Protocol the clients connect with: v2 (MPGS/2, the default) or v1 (MPGS/1); our echo_server answers both
    #[arg(long, value_name = "v1|v2", default_value_t = ProtocolVersion::V2, conflicts_with = "raw")]
    protocol: ProtocolVersion,
    /// Drive the raw UDP + AES-GCM baseline server instead of an MPGS server
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
    cfg.protocol = args.protocol;
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
        t.timed_out += u.timed_out;
        t.sources.extend(u.sources);
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
    let shortfall = shortfall(args.clients, &t, args.connect_timeout);
    let (Some([cpu_start, cpu_end]), 1..) = (cpu, t.connected) else {
        println!("connected={}/{} failed={} handshakes_per_s=0 offered_per_s=0", t.connected, args.clients, t.failed);
        println!("{}", summary_line(args.clients, &t, 1.0));
        return Err(shortfall.unwrap_or_else(|| "no client connected".into()).into());
    };

    // Report.
    let window = (cpu_end.2 - cpu_start.2).as_secs_f64();
    let pct = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.1}", (b - a) as f64 / clock_ticks() as f64 / window * 100.0),
        _ => "-".into(),
    };
    t.rtts_us.sort_unstable();
    let q = |q: f64| quantile_ms(&t.rtts_us, q);
    println!(
        "connected={}/{} failed={} handshakes_per_s={} connect_s={:.2} offered_per_s={:.0} window_s={:.2} \
         server_cpu_pct={} loadgen_cpu_pct={} threads={} refused={} reported_lost={} duplicates={} corrupt={} \
         disconnected={} send_errors={} p999_rtt_ms={} max_rtt_ms={} protocol={}",
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
        if args.raw { "raw" } else { args.protocol.name() },
    );
    println!("{}", summary_line(args.clients, &t, window));
    match shortfall {
        Some(why) => Err(why.into()),
        None => Ok(()),
    }
}
