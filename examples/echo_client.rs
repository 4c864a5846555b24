//! An echo client on the blocking driver: sends messages of random content
//! one at a time, checks each echo byte for byte, and prints one line:
//!
//! ```text
//! echoed K/N messages, size S, rtt p50 X ms p99 Y ms
//! ```
//!
//! The exit status is 0 only if every message came back intact. Run
//! `echo_server` first (see its documentation).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use mpgameserver::{Delivery, Duration, Event, Instant, MessageId, PublicKey, Rng};
use mpgameserver_drivers::blocking::Client;
use mpgameserver_drivers::os_seed;

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
    /// Delivery mode of the messages sent (echoes come back reliable)
    #[arg(long, value_enum, default_value_t = Mode::Reliable)]
    delivery: Mode,
    /// Seconds to wait for the connection, and for each echo
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    timeout: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Unreliable,
    BestEffort,
    Reliable,
}

impl From<Mode> for Delivery {
    fn from(m: Mode) -> Delivery {
        match m {
            Mode::Unreliable => Delivery::Unreliable,
            Mode::BestEffort => Delivery::BestEffort,
            Mode::Reliable => Delivery::Reliable,
        }
    }
}

/// How the wait for one echo ended.
enum Echo {
    Intact(Duration),
    /// The message itself was reported lost: no echo will come.
    Lost,
    TimedOut,
    Closed,
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

/// Whether every message came back intact.
fn run(args: &Args) -> Result<bool, Box<dyn std::error::Error>> {
    let timeout = Duration::try_from_secs_f64(args.timeout)
        .ok()
        .filter(|t| !t.is_zero())
        .ok_or_else(|| format!("--timeout must be a positive number of seconds, not {}", args.timeout))?;
    let key = PublicKey::read_pem_file(&args.key)?;
    let mut client = Client::connect(args.server, key, timeout)?;
    let mut rng = Rng::new(os_seed()?);
    let mut message = vec![0u8; args.size];
    let (mut intact, mut corrupt, mut closed) = (0u32, 0u32, false);
    let mut rtts = Vec::with_capacity(args.count as usize);

    for _ in 0..args.count {
        rng.fill(&mut message);
        let sent_at = client.now();
        let id = client.send(&message, args.delivery.into())?;
        match wait_for_echo(&mut client, &message, id, sent_at, sent_at + timeout, &mut corrupt) {
            Echo::Intact(rtt) => {
                intact += 1;
                rtts.push(rtt);
            }
            Echo::Lost => {}
            Echo::TimedOut => eprintln!("echo_client: no echo within {:.1} s", args.timeout),
            Echo::Closed => {
                eprintln!("echo_client: the server closed the connection");
                closed = true;
                break;
            }
        }
    }
    if !closed {
        client.disconnect(Duration::from_secs(1));
    }

    rtts.sort();
    let ms = |q: f64| match rtts.len() {
        0 => "-".to_string(),
        n => format!("{:.2}", rtts[((n - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3),
    };
    println!("echoed {intact}/{} messages, size {}, rtt p50 {} ms p99 {} ms", args.count, args.size, ms(0.5), ms(0.99));
    if corrupt > 0 {
        eprintln!("echo_client: {corrupt} echoes did not match what was sent");
    }
    Ok(intact == args.count && corrupt == 0)
}

/// Waits for the echo of `sent` (message `id`, sent at `sent_at`) until `deadline`. Echoes
/// that differ (a late echo of a message given up on, or a corrupt one)
/// are counted in `corrupt`.
fn wait_for_echo(
    client: &mut Client,
    sent: &[u8],
    id: MessageId,
    sent_at: Instant,
    deadline: Instant,
    corrupt: &mut u32,
) -> Echo {
    loop {
        while let Some(event) = client.poll_event() {
            match event {
                Event::Message { payload, .. } if payload == sent => return Echo::Intact(client.now() - sent_at),
                Event::Message { .. } => *corrupt += 1,
                Event::Lost { id: lost, .. } if lost == id => return Echo::Lost,
                Event::Disconnected { .. } => return Echo::Closed,
                _ => {}
            }
        }
        let now = client.now();
        if now >= deadline {
            return Echo::TimedOut;
        }
        client.update_wait(deadline - now);
    }
}

/// Logs to stderr; `RUST_LOG=debug` shows more.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
