//! Ours (MPGS/1 or MPGS/2, against `examples/echo_server`) for the workloads that
//! `examples/` has no client for: bulk throughput and connect latency. The
//! load pattern itself is `examples/loadgen`, and the large-message echo
//! `examples/echo_client`. Clients are the blocking driver's, with its
//! default configuration.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use mpgameserver::{Delivery, Duration, Event, ProtocolVersion, PublicKey};
use mpgameserver_drivers::ClientConfig;
use mpgameserver_drivers::blocking::Client;

use crate::common::{Clock, STAMP, Tally, Track, Window, report_bulk, report_connect};

fn read_key(path: &Path) -> Result<PublicKey, String> {
    PublicKey::read_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Workload 4: one connection, Reliable messages of `size` bytes, `window`
/// in flight, for `seconds`; echoed bytes per second.
/// `pacing` (send_interval µs, send_burst, send_window) replaces the drivers' for the
/// pacing experiment.
pub fn bulk(
    server: SocketAddr,
    key: &Path,
    size: usize,
    window: u32,
    seconds: f64,
    pacing: (Option<u64>, Option<u32>, Option<u16>),
    protocol: ProtocolVersion,
) -> Result<(), String> {
    let max = mpgameserver::EndpointConfig::default().max_message_size;
    if !(STAMP..=max).contains(&size) {
        return Err(format!("--size must be in {STAMP}..={max}"));
    }
    let mut config = ClientConfig::default();
    config.endpoint.protocol = protocol;
    if let Some(us) = pacing.0 {
        config.endpoint.send_interval = Duration::from_micros(us);
    }
    if let Some(n) = pacing.1 {
        config.endpoint.send_burst = n;
    }
    if let Some(n) = pacing.2 {
        config.endpoint.send_window = n;
    }
    let mut client =
        Client::connect_with(config, server, read_key(key)?, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let clock = Clock::new();
    let start = clock.us();
    let end = start + (seconds * 1e6) as u64;
    let counted = Window { start, end };
    let (mut track, mut tally) = (Track::new(0), Tally::default());
    let mut msg = vec![0; size];
    let mut lost = 0u64;
    while clock.us() < end {
        while track.next_seq - (tally.echoed + tally.corrupt + lost) < u64::from(window) {
            track.next_message(&mut msg, clock.us(), counted, &mut tally);
            if client.send(&msg, Delivery::Reliable).is_err() {
                // The send queue is full: take the message back, wait for acknowledgements.
                track.next_seq -= 1;
                tally.sent -= 1;
                break;
            }
        }
        client.update_wait(Duration::from_millis(1));
        while let Some(event) = client.poll_event() {
            match event {
                Event::Message { payload, .. } => track.on_echo(&payload, clock.us(), counted, &mut tally),
                Event::Lost { .. } => lost += 1,
                Event::Disconnected { reason, .. } => return Err(format!("the connection ended: {reason}")),
                _ => {}
            }
        }
    }
    let elapsed = (clock.us() - start) as f64 / 1e6;
    if let Some(c) = client.connection() {
        let m = c.metrics();
        eprintln!(
            "ours bulk (client side): datagrams sent {} lost {}, messages retransmitted {}, srtt {:?}",
            m.datagrams_sent, m.datagrams_lost, m.messages_retransmitted, m.srtt
        );
    }
    client.disconnect(Duration::from_millis(500));
    report_bulk(tally.echoed * size as u64, elapsed, size, tally.corrupt);
    Ok(())
}

/// Workload 5: `clients` handshakes, `concurrency` at a time (one thread
/// per handshake in flight, each with the blocking client).
pub fn connect(
    server: SocketAddr,
    key: &Path,
    clients: u32,
    concurrency: u32,
    timeout: f64,
    protocol: ProtocolVersion,
) -> Result<(), String> {
    let key = read_key(key)?;
    let timeout = Duration::try_from_secs_f64(timeout).map_err(|_| "--connect-timeout must be seconds")?;
    let clock = Clock::new();
    let next = AtomicU32::new(0);
    let tally = Mutex::new(Tally::default());
    let open = Mutex::new(Vec::new());
    let start = clock.us();
    std::thread::scope(|scope| {
        for _ in 0..concurrency.clamp(1, clients.max(1)) {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < clients {
                    let started = clock.us();
                    let mut config = ClientConfig::default();
                    config.endpoint.protocol = protocol;
                    let result = Client::connect_with(config, server, key.clone(), timeout);
                    let done = clock.us();
                    // A poisoned lock means another thread panicked: the run is void anyway.
                    let mut t = tally.lock().expect("no thread panics holding the tally");
                    match result {
                        Ok(client) => {
                            t.on_connected(started, done);
                            open.lock().expect("no thread panics holding the list").push(client);
                        }
                        Err(e) => {
                            if t.failed == 0 {
                                eprintln!("ours connect: a handshake failed: {e}");
                            }
                            t.failed += 1;
                        }
                    }
                }
            });
        }
    });
    let mut tally = tally.into_inner().map_err(|_| "a connect thread panicked")?;
    let elapsed = tally.last_connected.unwrap_or(start).saturating_sub(start) as f64 / 1e6;
    // Dropping a client sends its DISCONNECT.
    drop(open);
    report_connect(clients, concurrency, &mut tally, elapsed);
    Ok(())
}

/// The arguments of the pacing experiment's server.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:5000
    #[arg(long, value_name = "ADDR")]
    bind: SocketAddr,
    /// The server's private key (PEM, from examples/keygen)
    #[arg(long, value_name = "FILE")]
    key: std::path::PathBuf,
    /// Stop after this many seconds
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    duration: f64,
    /// The endpoint's send_interval in µs (the drivers' default is 250)
    #[arg(long, value_name = "US")]
    send_interval_us: Option<u64>,
    /// The endpoint's send_burst (the drivers' default is 32)
    #[arg(long, value_name = "N")]
    send_burst: Option<u32>,
    /// The endpoint's send_window in datagrams (default 256)
    #[arg(long, value_name = "N")]
    send_window: Option<u16>,
    /// The driver's ticks per second (default 60)
    #[arg(long, value_name = "N")]
    tick_hz: Option<u32>,
}

/// What `examples/echo_server --no-source-limits` does (every message back,
/// Reliable), with the pacer's two settings open: an experiment for
/// BENCHMARKS.md, not one of the compared servers.
pub fn serve(args: &ServeArgs) -> Result<(), String> {
    use mpgameserver::{ConnectionId, Instant, RateLimit, ServerKey};
    use mpgameserver_drivers::blocking::Server;
    use mpgameserver_drivers::{EventHandler, ServerConfig, ServerContext};

    struct Echo {
        stop_at: Instant,
    }
    impl EventHandler for Echo {
        fn starting(&mut self, ctx: &mut ServerContext<'_>) {
            self.stop_at = ctx.now() + (self.stop_at - Instant::ZERO);
        }
        fn update(&mut self, ctx: &mut ServerContext<'_>, _dt: Duration) {
            if ctx.now() >= self.stop_at {
                ctx.stop();
            }
        }
        fn handle_message(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId, payload: Vec<u8>) {
            let _ = ctx.send(conn, &payload, Delivery::Reliable);
        }
    }

    let key = ServerKey::read_pem_file(&args.key).map_err(|e| format!("{}: {e}", args.key.display()))?;
    let mut config = ServerConfig::default();
    let e = &mut config.endpoint;
    e.hello_rate = RateLimit::UNLIMITED;
    e.hello_rate_per_ip = RateLimit::UNLIMITED;
    e.hello_rate_per_prefix = RateLimit::UNLIMITED;
    e.max_pending_per_ip = e.max_pending_handshakes;
    e.max_pending_per_prefix = e.max_pending_handshakes;
    e.max_connections_per_ip = e.max_connections;
    e.max_reassembly_bytes_per_ip = e.max_reassembly_bytes_total;
    if let Some(us) = args.send_interval_us {
        e.send_interval = Duration::from_micros(us);
    }
    if let Some(n) = args.send_burst {
        e.send_burst = n;
    }
    if let Some(n) = args.send_window {
        e.send_window = n;
    }
    if let Some(hz) = args.tick_hz {
        config.tick_rate = hz;
    }
    let stop = Duration::try_from_secs_f64(args.duration).map_err(|_| "--duration must be seconds")?;
    let mut server = Server::bind_with(config, args.bind, key).map_err(|e| e.to_string())?;
    println!("ours (pacing experiment) on {}", server.local_addr().map_err(|e| e.to_string())?);
    server.run(&mut Echo { stop_at: Instant::ZERO + stop });
    Ok(())
}
