//! An echo server on the blocking driver: every message comes back to its
//! sender. Prints a line per connect and per disconnect, with the
//! connection's metrics.
//!
//! ```sh
//! cargo run --release --example keygen -- --name root keys
//! cargo run --release --example echo_server -- --bind 127.0.0.1:5000 --key keys/root.key
//! # in another shell:
//! cargo run --release --example echo_client -- --server 127.0.0.1:5000 --key keys/root.pub
//! cargo run --release --example echo_client -- --server 127.0.0.1:5000 --key keys/root.pub --protocol v2
//! ```
//!
//! The server answers MPGS/1 and MPGS/2 clients on the same port (no flag);
//! each connect line names the version the client speaks.
//!
//! The delivery mode is not on the wire (a receiver cannot tell how hard
//! the sender tries), so every echo goes back Reliable.
//!
//! For peers that cannot send every size (the Python reference, see
//! `docs/PROTOCOL.md` §15 rule 3), `--pattern-requests` makes the server
//! answer a message `PATTERN <size> <seed>` (ASCII) with `<size>` bytes of
//! [`pattern`] instead of its echo. `--reference-pacing` paces datagrams for
//! reference clients (one per 1/60 s, [`ServerConfig::reference_pacing`]).
//!
//! In production: `--metrics 127.0.0.1:9100` serves Prometheus metrics
//! (`/metrics`) and the JSON that `mpgs-top` reads (`/metrics.json`);
//! `--workers N` runs N worker threads on the port (`SO_REUSEPORT`, Linux;
//! 0: one per core). SIGINT or SIGTERM stops the server gracefully: every
//! client is disconnected (and sees it at once), the final metrics are
//! printed, and the process exits 0. See `docs/DEPLOYMENT.md`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mpgameserver::{
    ConnectionId, ConnectionMetrics, Delivery, DisconnectReason, Duration, Instant, RateLimit, ServerKey,
};
use mpgameserver_drivers::metrics::Snapshot;
use mpgameserver_drivers::shutdown::stop_on_signals;
use mpgameserver_drivers::workers::{Workers, WorkersConfig, default_workers};
use mpgameserver_drivers::{EventHandler, ServerConfig, ServerContext};

/// Echo every message back to its sender (Reliable: the sender's delivery mode is not on the wire).
#[derive(Parser, Debug)]
#[command(name = "echo_server")]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:5000 or [::1]:5000
    #[arg(long, value_name = "ADDR")]
    bind: SocketAddr,
    /// The server's private key (PEM PKCS#8, e.g. keys/root.key from keygen)
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Ticks per second of the server loop
    #[arg(long, value_name = "N", default_value_t = 60)]
    tick_hz: u32,
    /// Stop after this many seconds (default: run until interrupted)
    #[arg(long, value_name = "S")]
    duration: Option<f64>,
    /// Pace datagrams for reference (Python) clients: one per 1/60 s per connection
    #[arg(long)]
    reference_pacing: bool,
    /// Answer a message "PATTERN <size> <seed>" with <size> bytes of a test pattern instead of its echo
    #[arg(long)]
    pattern_requests: bool,
    /// Lift the hello rate limits and every per-address and per-prefix
    /// limit, for load tests whose clients all share one address. Never on
    /// a server reachable from the internet (see SECURITY.md).
    #[arg(long)]
    no_source_limits: bool,
    /// Serve metrics over HTTP on ADDR (Prometheus at /metrics, JSON at
    /// /metrics.json): 127.0.0.1:9100, or a port alone for loopback; keep it
    /// on loopback or behind a firewall
    #[arg(long, value_name = "ADDR", value_parser = metrics_addr)]
    metrics: Option<SocketAddr>,
    /// Worker threads on the port, each with its own endpoint (SO_REUSEPORT,
    /// Linux; elsewhere 1); 0 for one per core. Limits apply per worker
    #[arg(long, value_name = "N", default_value_t = 1)]
    workers: usize,
}

/// The counters printed at disconnect: a connection's metrics are gone once
/// it has closed, so they are copied while it lives.
#[derive(Clone, Copy, Debug, Default)]
struct Summary {
    srtt: Option<Duration>,
    messages_received: u64,
    messages_sent: u64,
    messages_lost: u64,
    retransmitted: u64,
    datagrams_received: u64,
    datagrams_sent: u64,
}

impl Summary {
    fn of(m: &ConnectionMetrics) -> Summary {
        Summary {
            srtt: m.srtt,
            messages_received: m.messages_received,
            messages_sent: m.messages_sent,
            messages_lost: m.messages_lost,
            retransmitted: m.messages_retransmitted,
            datagrams_received: m.datagrams_received,
            datagrams_sent: m.datagrams_sent,
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.srtt {
            Some(rtt) => write!(f, "srtt {:.2} ms", rtt.as_secs_f64() * 1e3)?,
            None => write!(f, "srtt -")?,
        }
        write!(
            f,
            ", messages {} in / {} out ({} lost, {} resent), datagrams {} in / {} out",
            self.messages_received,
            self.messages_sent,
            self.messages_lost,
            self.retransmitted,
            self.datagrams_received,
            self.datagrams_sent
        )
    }
}

struct Echo {
    clients: BTreeMap<ConnectionId, (SocketAddr, Summary)>,
    stop_at: Option<Instant>,
    pattern_requests: bool,
}

/// The reply to a `PATTERN <size> <seed>` request: byte `i` is the top byte
/// of `seed + i·0x9E3779B1` (mod 2³²), so a misplaced 256- or 1024-byte
/// block shows. `None` if `msg` is not such a request.
fn pattern(msg: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(msg.strip_prefix(b"PATTERN ")?).ok()?;
    let (size, seed) = text.split_once(' ')?;
    let (size, seed) = (size.parse::<usize>().ok().filter(|&n| n <= 1 << 23)?, seed.parse::<u32>().ok()?);
    let step = 0x9E37_79B1_u32;
    Some((0..size).map(|i| (seed.wrapping_add((i as u32).wrapping_mul(step)) >> 24) as u8).collect())
}

impl Echo {
    fn refresh(&mut self, ctx: &ServerContext<'_>, conn: ConnectionId) {
        if let (Some(c), Some(entry)) = (ctx.connection(conn), self.clients.get_mut(&conn)) {
            entry.1 = Summary::of(c.metrics());
        }
    }
}

impl EventHandler for Echo {
    fn starting(&mut self, ctx: &mut ServerContext<'_>) {
        self.stop_at = self.stop_at.map(|d| ctx.now() + (d - Instant::ZERO));
    }

    fn connect(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId) {
        let Some((addr, version)) = ctx.connection(conn).map(|c| (c.remote(), c.version())) else { return };
        println!("connect    {conn} from {addr} over {version}");
        self.clients.insert(conn, (addr, Summary::default()));
    }

    fn disconnect(&mut self, _: &mut ServerContext<'_>, conn: ConnectionId, reason: DisconnectReason) {
        if let Some((addr, summary)) = self.clients.remove(&conn) {
            println!("disconnect {conn} from {addr} ({reason}): {summary}");
        }
    }

    fn update(&mut self, ctx: &mut ServerContext<'_>, _dt: Duration) {
        for (conn, (_, summary)) in &mut self.clients {
            if let Some(c) = ctx.connection(*conn) {
                *summary = Summary::of(c.metrics());
            }
        }
        if self.stop_at.is_some_and(|t| ctx.now() >= t) {
            ctx.stop();
        }
    }

    fn handle_message(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId, payload: Vec<u8>) {
        let reply = if self.pattern_requests { pattern(&payload) } else { None };
        if let Err(e) = ctx.send(conn, reply.as_deref().unwrap_or(&payload), Delivery::Reliable) {
            eprintln!("echo to {conn} failed: {e}");
        }
        self.refresh(ctx, conn);
    }

    fn shutdown(&mut self, ctx: &mut ServerContext<'_>) {
        println!("stopped: {}", ctx.stats());
    }
}

fn main() -> ExitCode {
    init_logging();
    let args = Args::parse();
    let key = match ServerKey::read_pem_file(&args.key) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("echo_server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop_at = match args.duration.map(Duration::try_from_secs_f64) {
        None => None,
        Some(Ok(d)) => Some(Instant::ZERO + d),
        Some(Err(_)) => {
            eprintln!("echo_server: --duration must be a number of seconds");
            return ExitCode::FAILURE;
        }
    };
    let mut config = ServerConfig::default();
    if args.reference_pacing {
        config = config.reference_pacing();
    }
    config.tick_rate = args.tick_hz;
    if args.no_source_limits {
        let e = &mut config.endpoint;
        e.hello_rate = RateLimit::UNLIMITED;
        e.hello_rate_per_ip = RateLimit::UNLIMITED;
        e.hello_rate_per_prefix = RateLimit::UNLIMITED;
        e.max_pending_per_ip = e.max_pending_handshakes;
        e.max_pending_per_prefix = e.max_pending_handshakes;
        e.max_connections_per_ip = e.max_connections;
        e.max_reassembly_bytes_per_ip = e.max_reassembly_bytes_total;
        // MPGS/2's: per source address, and the ECDH rate (MPGS/1's hello_rate).
        e.v2_hello_rate_per_source = RateLimit::UNLIMITED;
        e.v2_ecdh_rate = RateLimit::UNLIMITED;
    }
    let workers = if args.workers == 0 { default_workers() } else { args.workers };
    let mut server = match Workers::bind(WorkersConfig::new(config, workers), args.bind, key) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("echo_server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let metrics = match args.metrics.map(|addr| server.serve_metrics(addr)).transpose() {
        Ok(metrics) => metrics,
        Err(e) => {
            eprintln!("echo_server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _signals = match stop_on_signals(&server.stop_handle()) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("echo_server: cannot handle SIGINT/SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "echo server on {}, {} ticks/s, {} worker(s), accepting MPGS/1 and MPGS/2 (clients: --protocol v1|v2)",
        server.local_addr(),
        args.tick_hz,
        server.len()
    );
    if let Some(m) = &metrics {
        println!("metrics on http://{}/metrics", m.local_addr());
    }
    server.run(|_| Echo { clients: BTreeMap::new(), stop_at, pattern_requests: args.pattern_requests });
    if let Some(snapshot) = metrics.as_ref().and_then(|m| m.snapshot()) {
        println!("final metrics: {}", summary(&snapshot));
    }
    ExitCode::SUCCESS
}

/// `--metrics`: an address, or a port alone on loopback.
fn metrics_addr(s: &str) -> Result<SocketAddr, String> {
    match s.parse::<u16>() {
        Ok(port) => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
        Err(_) => s.parse().map_err(|_| format!("{s:?} is neither ADDR:PORT (127.0.0.1:9100) nor a port (9100)")),
    }
}

/// One line of the final metrics.
fn summary(s: &Snapshot) -> String {
    let t = &s.totals;
    let disconnects: Vec<String> =
        t.disconnects.iter().filter(|(_, n)| **n > 0).map(|(r, n)| format!("{r}={n}")).collect();
    format!(
        "handshakes {} completed, messages {} in / {} delivered / {} lost, datagrams {} in / {} out, {} dropped, disconnects {}",
        t.handshakes_completed,
        t.messages_received,
        t.messages_delivered,
        t.messages_lost,
        t.datagrams_received,
        t.datagrams_sent,
        t.dropped.values().sum::<u64>(),
        if disconnects.is_empty() { "none".to_string() } else { disconnects.join(" ") }
    )
}

/// Logs to stderr; `RUST_LOG=debug` shows more.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
