//! The README's main command: a server and four clients over real UDP
//! sockets on loopback, in one process, for a few seconds.
//!
//! ```sh
//! cargo run --release --example demo
//! ```
//!
//! The server (blocking driver, on its own thread) echoes every message
//! back. Three clients use the blocking driver, one the smol driver; each
//! first sends one 1 MiB message, then a message every 40 ms for 3 s, of
//! sizes from 16 B to 60 KB (1 433 and 2 451 B included: sizes the Python
//! reference cannot send) in all three delivery modes, and checks every echo
//! byte for byte. Then each client disconnects, the server stops, and the
//! demo prints a table of per-connection metrics from both sides.
//!
//! The server answers MPGS/1 and MPGS/2 on its one port: by default clients
//! 1 and 3 speak MPGS/1, clients 2 and 4 MPGS/2 (the table's `proto`
//! column shows the version of each connection, from both sides);
//! `--protocol v1` or `--protocol v2` makes every client speak that one.
//!
//! No arguments and no key files: the server's key is generated in memory.
//! `--metrics 127.0.0.1:9100` also serves the server's metrics over HTTP
//! while it runs (watch it with `mpgs-top`) and prints the final figures,
//! checked against the endpoint's own counters. Ctrl-C stops the server
//! early and gracefully.
//! Exit status 0 means every client connected, every Reliable message came
//! back intact, every disconnect was confirmed, and the server reported
//! every connect and disconnect.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::thread;

use clap::Parser;
use mpgameserver::{
    ConnectionId, ConnectionMetrics, Delivery, DisconnectReason, Duration, Event, Instant, ProtocolVersion, PublicKey,
    Rng, ServerKey,
};
use mpgameserver_drivers::shutdown::stop_on_signals;
use mpgameserver_drivers::{ClientConfig, DisconnectOutcome, EventHandler, ServerContext, blocking, os_seed, smol};

/// A server and four clients over UDP on loopback, for a few seconds.
#[derive(Parser, Debug)]
#[command(name = "demo")]
struct Args {
    /// Serve the server's metrics over HTTP on ADDR while the demo runs (e.g. 127.0.0.1:9100)
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Protocol of every client: v1 (MPGS/1) or v2 (MPGS/2). Default: clients 1 and 3 over v1, 2 and 4 over v2, on the same server port
    #[arg(long, value_name = "v1|v2")]
    protocol: Option<ProtocolVersion>,
}

const BLOCKING_CLIENTS: usize = 3;
const SMOL_CLIENTS: usize = 1;
const SEND_FOR: Duration = Duration::from_secs(3);
const SEND_EVERY: Duration = Duration::from_millis(40);
/// Echoes still missing after this long past the sending period are given up.
const DRAIN_FOR: Duration = Duration::from_secs(5);
const BIG: usize = 1 << 20;
const SIZES: [usize; 8] = [16, 200, 1_200, 1_433, 2_451, 10_000, 60_000, 100];
const MODES: [Delivery; 3] = [Delivery::Reliable, Delivery::Unreliable, Delivery::BestEffort];

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<bool, Box<dyn std::error::Error>> {
    // The server's root key, generated in memory; clients pin its public half.
    let key = ServerKey::generate(&mut Rng::new(os_seed()?));
    let pinned = key.public_key();
    let mut server = blocking::Server::bind("127.0.0.1:0", key)?;
    let addr = server.local_addr()?;
    let stop = server.stop_handle();
    let metrics = args.metrics.map(|addr| server.serve_metrics(addr)).transpose()?;
    let _signals = stop_on_signals(&stop)?;
    if let Some(m) = &metrics {
        println!("demo: metrics on http://{}/metrics (and /metrics.json)", m.local_addr());
    }
    // Odd clients over MPGS/1, even ones over MPGS/2, unless --protocol says.
    let protocol_of =
        |n: usize| args.protocol.unwrap_or(if n % 2 == 1 { ProtocolVersion::V1 } else { ProtocolVersion::V2 });
    let versions = match args.protocol {
        Some(p) => format!("all over {p}"),
        None => "odd ones over v1, even ones over v2".to_string(),
    };
    println!(
        "demo: a server on {addr} (MPGS/1 and MPGS/2) and {} clients ({BLOCKING_CLIENTS} blocking, {SMOL_CLIENTS} smol; \
         {versions}), {} s of traffic\n",
        BLOCKING_CLIENTS + SMOL_CLIENTS,
        SEND_FOR.as_secs()
    );
    let server_thread = thread::spawn(move || {
        let mut handler = EchoServer::default();
        server.run(&mut handler);
        (handler, server.endpoint().stats().clone(), server.driver_stats())
    });

    let clients: Vec<_> = (1..=BLOCKING_CLIENTS + SMOL_CLIENTS)
        .map(|n| {
            let pinned = pinned.clone();
            let mut config = ClientConfig::default();
            config.endpoint.protocol = protocol_of(n);
            thread::spawn(move || {
                if n <= BLOCKING_CLIENTS {
                    run_blocking_client(n, config, addr, pinned)
                } else {
                    ::smol::block_on(run_smol_client(n, config, addr, pinned))
                }
            })
        })
        .collect();
    let reports: Vec<Result<Report, String>> =
        clients.into_iter().map(|t| t.join().unwrap_or_else(|_| Err("client thread panicked".into()))).collect();
    stop.stop();
    let (server, server_stats, server_driver) = server_thread.join().map_err(|_| "server thread panicked")?;

    // The table: each connection from the client's side, then the server's.
    println!(
        "{:<20} {:>5} {:>8} {:>18} {:>16} {:>12} {:>12}",
        "connection", "proto", "srtt", "datagrams out/in", "messages out/in", "lost/resent", "KB/s out/in"
    );
    let mut ok = true;
    for report in &reports {
        match report {
            Ok(r) => {
                r.client.print_row(&format!("client {} ({})", r.n, r.driver));
                match server.clients.get(&r.port) {
                    Some(s) => s.summary.print_row("  server side"),
                    None => println!("  server side: never connected"),
                }
            }
            Err(e) => println!("a client failed: {e}"),
        }
    }

    println!("(srtt: smoothed round-trip time; KB/s: average over the last two whole seconds)\n");
    for report in &reports {
        let Ok(r) = report else {
            ok = false;
            continue;
        };
        let t = &r.traffic;
        let modes: Vec<String> = (0..3).map(|m| format!("{} {}/{}", MODES[m].name(), t.echoed[m], t.sent[m])).collect();
        println!(
            "client {}: echoes {}, {} bad; echo rtt p50 {} p99 {}; disconnect {:?}",
            r.n,
            modes.join(", "),
            t.bad,
            t.rtt(0.5),
            t.rtt(0.99),
            r.outcome
        );
        let reliable_ok = t.echoed[0] == t.sent[0] && t.bad == 0;
        let server_ok = server.clients.get(&r.port).is_some_and(|s| s.disconnect == Some(DisconnectReason::Peer));
        if !reliable_ok {
            println!("client {}: a Reliable message did not come back intact", r.n);
        }
        if r.outcome != DisconnectOutcome::Confirmed {
            println!("client {}: the server did not confirm the disconnect", r.n);
        }
        if !server_ok {
            println!("client {}: the server did not report this client's connect and disconnect", r.n);
        }
        ok &= reliable_ok && server_ok && r.outcome == DisconnectOutcome::Confirmed;
    }
    ok &= server.shutdown && server.clients.len() == reports.len();

    println!("\nserver endpoint: {server_stats}");
    println!(
        "server socket: {} datagrams in, {} out, {} receive errors, {} send errors",
        server_driver.datagrams_received,
        server_driver.datagrams_sent,
        server_driver.recv_errors,
        server_driver.send_errors
    );
    if let Some(m) = &metrics {
        // The final figures the endpoint kept serving after the server stopped.
        let snapshot = m.snapshot().ok_or("no final metrics")?;
        let t = &snapshot.totals;
        println!(
            "server metrics (final): {} handshakes, {} messages in, {} delivered, {} lost, {} datagrams in, {} out",
            t.handshakes_completed,
            t.messages_received,
            t.messages_delivered,
            t.messages_lost,
            t.datagrams_received,
            t.datagrams_sent
        );
        let same = t.datagrams_received == server_stats.datagrams_received
            && t.datagrams_sent == server_stats.datagrams_sent
            && t.handshakes_completed == server_stats.handshakes_completed
            && snapshot.stopped;
        if !same {
            println!("the final metrics differ from the endpoint's counters");
        }
        ok &= same;
    }
    if ok {
        println!("\nOK: every client connected, every Reliable message came back intact, every disconnect confirmed");
    } else {
        println!("\nFAILED (see above)");
    }
    Ok(ok)
}

/// What one client did.
struct Report {
    n: usize,
    driver: &'static str,
    /// The client's local port: how the server's side of it is found.
    port: u16,
    traffic: Traffic,
    client: Summary,
    outcome: DisconnectOutcome,
}

fn run_blocking_client(
    n: usize,
    config: ClientConfig,
    server: SocketAddr,
    pinned: PublicKey,
) -> Result<Report, String> {
    let mut client =
        blocking::Client::connect_with(config, server, pinned, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let port = client.local_addr().map_err(|e| e.to_string())?.port();
    let mut traffic = Traffic::new(n, client.now())?;
    while !traffic.finished(client.now()) {
        while let Some((message, mode)) = traffic.next_message(client.now()) {
            client.send(&message, mode).map_err(|e| e.to_string())?;
        }
        client.update_wait(Duration::from_millis(5));
        while let Some(event) = client.poll_event() {
            traffic.on_event(event, client.now());
        }
    }
    let metrics = client.connection().map(|c| Summary::of(c.version(), c.metrics(), client.now())).unwrap_or_default();
    let outcome = client.disconnect(Duration::from_secs(2));
    Ok(Report { n, driver: "blocking", port, traffic, client: metrics, outcome })
}

async fn run_smol_client(
    n: usize,
    config: ClientConfig,
    server: SocketAddr,
    pinned: PublicKey,
) -> Result<Report, String> {
    let mut client =
        smol::Client::connect_with(config, server, pinned, Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
    let port = client.local_addr().map_err(|e| e.to_string())?.port();
    let mut traffic = Traffic::new(n, client.now())?;
    while !traffic.finished(client.now()) {
        while let Some((message, mode)) = traffic.next_message(client.now()) {
            client.send(&message, mode).map_err(|e| e.to_string())?;
        }
        // The next event, or a 5 ms tick to send on schedule.
        let tick = ::smol::Timer::after(std::time::Duration::from_millis(5));
        let event = ::smol::future::or(client.next_event(), async {
            tick.await;
            None
        })
        .await;
        if let Some(event) = event {
            traffic.on_event(event, client.now());
        }
    }
    let metrics = client.connection().map(|c| Summary::of(c.version(), c.metrics(), client.now())).unwrap_or_default();
    let outcome = client.disconnect(Duration::from_secs(2)).await;
    Ok(Report { n, driver: "smol", port, traffic, client: metrics, outcome })
}

/// A client's schedule of messages and the bookkeeping of their echoes.
/// Each message starts with its number (4 bytes, big-endian); the rest is
/// random.
struct Traffic {
    rng: Rng,
    start: Instant,
    count: u32,
    /// Messages whose echo has not come back: bytes, mode index, send time.
    waiting: BTreeMap<u32, (Vec<u8>, usize, Instant)>,
    sent: [u32; 3],
    echoed: [u32; 3],
    bad: u32,
    rtts: Vec<Duration>,
}

impl Traffic {
    fn new(n: usize, start: Instant) -> Result<Traffic, String> {
        let _ = n;
        let rng = Rng::new(os_seed().map_err(|e| e.to_string())?);
        Ok(Traffic {
            rng,
            start,
            count: 0,
            waiting: BTreeMap::new(),
            sent: [0; 3],
            echoed: [0; 3],
            bad: 0,
            rtts: Vec::new(),
        })
    }

    /// The next message if its time has come: first one 1 MiB Reliable
    /// message, then one every `SEND_EVERY` until `SEND_FOR`.
    fn next_message(&mut self, now: Instant) -> Option<(Vec<u8>, Delivery)> {
        let n = self.count;
        let due = self.start + SEND_EVERY * n;
        if now < due || due >= self.start + SEND_FOR {
            return None;
        }
        let (size, mode) = match n {
            0 => (BIG, 0),
            _ => (SIZES[n as usize % SIZES.len()], n as usize % MODES.len()),
        };
        let mut bytes = vec![0u8; size];
        self.rng.fill(&mut bytes[4..]);
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        self.waiting.insert(n, (bytes.clone(), mode, now));
        self.sent[mode] += 1;
        self.count += 1;
        Some((bytes, MODES[mode]))
    }

    fn on_event(&mut self, event: Event, now: Instant) {
        let Event::Message { payload, .. } = event else { return };
        let n = payload.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        match n.and_then(|n| self.waiting.remove(&n)) {
            Some((sent, mode, at)) if sent == payload => {
                self.echoed[mode] += 1;
                self.rtts.push(now - at);
            }
            _ => self.bad += 1, // corrupt, unknown or duplicated
        }
    }

    /// Done once the sending period is over and every Reliable echo is back
    /// (or `DRAIN_FOR` later).
    fn finished(&self, now: Instant) -> bool {
        let sending_over = now >= self.start + SEND_FOR;
        let reliable_waiting = self.waiting.values().any(|&(_, mode, _)| mode == 0);
        sending_over && (!reliable_waiting || now >= self.start + SEND_FOR + DRAIN_FOR)
    }

    fn rtt(&self, q: f64) -> String {
        let mut rtts = self.rtts.clone();
        rtts.sort();
        match rtts.len() {
            0 => "-".into(),
            n => format!("{:.1} ms", rtts[((n - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3),
        }
    }
}

/// The server: echoes every message (Reliable), and keeps what it saw of
/// each client, by the client's port.
#[derive(Default)]
struct EchoServer {
    clients: BTreeMap<u16, ServerSide>,
    ports: BTreeMap<ConnectionId, u16>,
    shutdown: bool,
}

struct ServerSide {
    summary: Summary,
    disconnect: Option<DisconnectReason>,
}

impl EventHandler for EchoServer {
    fn connect(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId) {
        if let Some(c) = ctx.connection(conn) {
            let port = c.remote().port();
            self.ports.insert(conn, port);
            self.clients.insert(port, ServerSide { summary: Summary::default(), disconnect: None });
        }
    }

    fn disconnect(&mut self, _: &mut ServerContext<'_>, conn: ConnectionId, reason: DisconnectReason) {
        if let Some(side) = self.ports.remove(&conn).and_then(|port| self.clients.get_mut(&port)) {
            side.disconnect = Some(reason);
        }
    }

    fn update(&mut self, ctx: &mut ServerContext<'_>, _dt: Duration) {
        // A connection's metrics are gone once it has closed: keep a copy.
        for (&conn, port) in &self.ports {
            if let (Some(c), Some(side)) = (ctx.connection(conn), self.clients.get_mut(port)) {
                side.summary = Summary::of(c.version(), c.metrics(), ctx.now());
            }
        }
    }

    fn handle_message(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId, payload: Vec<u8>) {
        if let Err(e) = ctx.send(conn, &payload, Delivery::Reliable) {
            eprintln!("server: echo to {conn} failed: {e}");
        }
    }

    fn shutdown(&mut self, _: &mut ServerContext<'_>) {
        self.shutdown = true;
    }
}

/// A few numbers of a connection's metrics.
#[derive(Clone, Copy, Debug, Default)]
struct Summary {
    /// The protocol the connection speaks (`None`: never connected).
    version: Option<ProtocolVersion>,
    srtt: Option<Duration>,
    datagrams: (u64, u64),
    messages: (u64, u64),
    lost: u64,
    resent: u64,
    kbps: (f64, f64),
}

impl Summary {
    fn of(version: ProtocolVersion, m: &ConnectionMetrics, now: Instant) -> Summary {
        // The last two whole seconds: inside the traffic period on both sides.
        let rates = m.rates(now, 2);
        Summary {
            version: Some(version),
            srtt: m.srtt,
            datagrams: (m.datagrams_sent, m.datagrams_received),
            messages: (m.messages_sent, m.messages_received),
            lost: m.messages_lost,
            resent: m.messages_retransmitted,
            kbps: (rates.sent_bytes / 1e3, rates.recv_bytes / 1e3),
        }
    }

    fn print_row(&self, name: &str) {
        let srtt = self.srtt.map_or("-".into(), |d| format!("{:.2}ms", d.as_secs_f64() * 1e3));
        let version = self.version.map_or("-", ProtocolVersion::name);
        println!(
            "{name:<20} {version:>5} {srtt:>8} {:>18} {:>16} {:>12} {:>12}",
            format!("{}/{}", self.datagrams.0, self.datagrams.1),
            format!("{}/{}", self.messages.0, self.messages.1),
            format!("{}/{}", self.lost, self.resent),
            format!("{:.0}/{:.0}", self.kbps.0, self.kbps.1),
        );
    }
}
