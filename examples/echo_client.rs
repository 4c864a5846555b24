//! An echo client on the blocking driver: sends messages of random content
//! (one at a time, or `--burst N` at a time), checks each echo byte for
//! byte, and prints two lines:
//!
//! ```text
//! echoed K/N messages, size S, rtt p50 X ms p99 Y ms
//! disconnect confirmed by the server
//! ```
//!
//! The exit status is 0 only if every message came back intact. Run
//! `echo_server` first (see its documentation).
//!
//! For testing against other servers (`tests/interop/`): `--reply sha256`
//! expects the SHA-256 digest of each message instead of its echo;
//! `--pause S` idles between bursts (only keep-alives flow); and
//! `--expect-close` does not disconnect at the end but waits for the server
//! to end the connection, and fails if it does not.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use mpgameserver::{Delivery, DisconnectReason, Duration, Event, Instant, MessageId, PublicKey, Rng};
use mpgameserver_drivers::blocking::Client;
use mpgameserver_drivers::{DisconnectOutcome, os_seed};
use sha2::{Digest, Sha256};

/// Send messages of random content to an echo server and check every echo byte for byte.
#[derive(Parser, Debug)]
#[command(name = "echo_client")]
struct Args {
    /// The server's address, e.g. 127.0.0.1:5000
    #[arg(long, value_name = "ADDR")]
    server: SocketAddr,
    /// The server's public key to pin (PEM, e.g. keys/root.pub from keygen)
    #[arg(long, value_name = "FILE.pub")]
    key: PathBuf,
    /// How many messages to send
    #[arg(long, value_name = "N", default_value_t = 200)]
    count: u32,
    /// Size of each message in bytes (up to 1048576)
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    size: usize,
    /// Delivery mode of the messages sent: unreliable, best-effort or reliable (echoes come back reliable)
    #[arg(long, default_value_t = Delivery::Reliable)]
    delivery: Delivery,
    /// Seconds to wait for the connection, and for the echoes of each burst
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    timeout: f64,
    /// Messages sent together before waiting for their echoes (small ones share datagrams)
    #[arg(long, value_name = "N", default_value_t = 1)]
    burst: u32,
    /// Seconds to stay idle between bursts
    #[arg(long, value_name = "S", default_value_t = 0.0)]
    pause: f64,
    /// What the server answers each message with: its echo, or its SHA-256 digest
    #[arg(long, value_enum, default_value_t = Reply::Echo)]
    reply: Reply,
    /// At the end, wait (up to --timeout) for the server to end the connection instead of disconnecting
    #[arg(long)]
    expect_close: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Reply {
    Echo,
    Sha256,
}

/// A message waiting for its echo.
struct Pending {
    id: MessageId,
    expected: Vec<u8>,
    sent_at: Instant,
}

/// Counts of the replies so far.
#[derive(Default)]
struct Tally {
    intact: u32,
    /// Replies that matched no message waiting (a late echo of a message
    /// given up on, or a corrupt one).
    corrupt: u32,
    rtts: Vec<Duration>,
}

fn main() -> ExitCode {
    init_logging();
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("echo_client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn seconds(value: f64, flag: &str, allow_zero: bool) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|t| allow_zero || !t.is_zero())
        .ok_or_else(|| format!("{flag} must be a positive number of seconds, not {value}"))
}

/// Whether every message came back intact.
fn run(args: &Args) -> Result<bool, Box<dyn std::error::Error>> {
    let timeout = seconds(args.timeout, "--timeout", false)?;
    let pause = seconds(args.pause, "--pause", true)?;
    if args.burst == 0 {
        return Err("--burst must be at least 1".into());
    }
    let key = PublicKey::read_pem_file(&args.key)?;
    let mut client = Client::connect(args.server, key, timeout)?;
    let mut rng = Rng::new(os_seed()?);
    let mut message = vec![0u8; args.size];
    let mut tally = Tally { rtts: Vec::with_capacity(args.count as usize), ..Tally::default() };
    let mut closed = None;
    let mut sent = 0;

    while sent < args.count && closed.is_none() {
        if sent > 0 && !pause.is_zero() {
            let until = client.now() + pause;
            closed = wait_until(&mut client, &mut Vec::new(), until, &mut tally);
            if closed.is_some() {
                break;
            }
        }
        let mut waiting = Vec::new();
        for _ in 0..args.burst.min(args.count - sent) {
            rng.fill(&mut message);
            let expected = match args.reply {
                Reply::Echo => message.clone(),
                Reply::Sha256 => Sha256::digest(&message).to_vec(),
            };
            let sent_at = client.now();
            let id = client.send(&message, args.delivery)?;
            waiting.push(Pending { id, expected, sent_at });
            sent += 1;
        }
        let deadline = client.now() + timeout;
        closed = wait_until(&mut client, &mut waiting, deadline, &mut tally);
        if closed.is_none() && !waiting.is_empty() {
            eprintln!("echo_client: {} echoes did not come within {:.1} s", waiting.len(), args.timeout);
        }
    }
    let ending = match closed {
        Some(reason) => {
            eprintln!("echo_client: the connection ended early: {reason}");
            format!("connection ended early: {reason}")
        }
        None if args.expect_close => {
            let deadline = client.now() + timeout;
            closed = wait_until(&mut client, &mut Vec::new(), deadline, &mut tally);
            match closed {
                Some(reason) => format!("connection ended by the server: {reason}"),
                None => format!("the server did not end the connection within {:.1} s", args.timeout),
            }
        }
        None => match client.disconnect(Duration::from_secs(1)) {
            DisconnectOutcome::Confirmed => "disconnect confirmed by the server".to_string(),
            DisconnectOutcome::Unconfirmed => "disconnect not confirmed by the server".to_string(),
            DisconnectOutcome::AlreadyClosed => "connection had already ended".to_string(),
        },
    };

    let Tally { intact, corrupt, mut rtts } = tally;
    rtts.sort();
    let ms = |q: f64| match rtts.len() {
        0 => "-".to_string(),
        n => format!("{:.2}", rtts[((n - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3),
    };
    println!("echoed {intact}/{} messages, size {}, rtt p50 {} ms p99 {} ms", args.count, args.size, ms(0.5), ms(0.99));
    println!("{ending}");
    if corrupt > 0 {
        eprintln!("echo_client: {corrupt} echoes did not match what was sent");
    }
    let ended_as_asked = !args.expect_close || closed.is_some();
    Ok(intact == args.count && corrupt == 0 && ended_as_asked)
}

/// Runs the client until every message in `waiting` has its reply (or was
/// reported lost: no echo will come), the connection ends, or `deadline`
/// passes. With nothing waiting it runs until the deadline or the end of
/// the connection. Returns why the connection ended, if it did.
fn wait_until(
    client: &mut Client,
    waiting: &mut Vec<Pending>,
    deadline: Instant,
    tally: &mut Tally,
) -> Option<DisconnectReason> {
    let idle = waiting.is_empty();
    loop {
        while let Some(event) = client.poll_event() {
            match event {
                Event::Message { payload, .. } => match waiting.iter().position(|p| p.expected == payload) {
                    Some(i) => {
                        let p = waiting.swap_remove(i);
                        tally.intact += 1;
                        tally.rtts.push(client.now() - p.sent_at);
                    }
                    None => tally.corrupt += 1,
                },
                Event::Lost { id, .. } => waiting.retain(|p| p.id != id),
                Event::Disconnected { reason, .. } => return Some(reason),
                _ => {}
            }
        }
        let now = client.now();
        if now >= deadline || (!idle && waiting.is_empty()) {
            return None;
        }
        client.update_wait(deadline - now);
    }
}

/// Logs to stderr; `RUST_LOG=debug` shows more.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
