//! `peers`: echo servers and load clients for renet (+ renet_netcode) and
//! quinn, following `examples/loadgen`'s pattern against `examples/echo_server`,
//! so that `bench/peers/run.sh` can compare the three libraries on the same
//! workloads in one run. See `bench/peers/README.md`.
//!
//! ```text
//! peers renet-key --out target/peers/renet.key
//! peers renet-server --bind 127.0.0.1:5000 --key target/peers/renet.key &
//! peers load --peer renet --key target/peers/renet.key --server 127.0.0.1:5000 --clients 500 --hz 60
//! ```

mod common;
mod ours;
mod poller;
mod proxy;
mod quinn_peer;
mod renet_peer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use common::{LoadArgs, secs};

/// Echo servers and load clients for renet and quinn (and ours, for bulk and connect).
#[derive(Parser, Debug)]
#[command(name = "peers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Peer {
    /// MPGS/1 (examples/echo_server); --key is its root public key (PEM)
    Ours,
    /// MPGS/2 against the same server (examples/echo_server); --key as for ours
    Ours2,
    /// renet + renet_netcode; --key is the netcode private key
    Renet,
    /// quinn; --key is the server's certificate (DER), pinned
    Quinn,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a self-signed certificate for quinn (DIR/cert.der, DIR/key.der)
    Cert {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Write a random netcode private key for renet
    RenetKey {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// The renet echo server
    RenetServer(renet_peer::ServeArgs),
    /// The quinn echo server
    QuinnServer(quinn_peer::ServeArgs),
    /// Workloads 1-2: N clients, one message per tick each (renet or quinn; ours is examples/loadgen)
    Load {
        #[arg(long, value_enum)]
        peer: Peer,
        /// The credential the client needs (see --peer)
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Workload 5: handshakes per second and connect latency
    Connect {
        #[arg(long, value_enum)]
        peer: Peer,
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Workload 3: one connection, large reliable messages echoed one at a time
    /// (renet or quinn; ours is examples/echo_client)
    Echo {
        #[arg(long, value_enum)]
        peer: Peer,
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[arg(long, value_name = "ADDR")]
        server: SocketAddr,
        #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
        size: usize,
        #[arg(long, value_name = "N", default_value_t = 10)]
        count: u32,
        /// Seconds to wait for the connection and for each echo
        #[arg(long, value_name = "S", default_value_t = 30.0)]
        timeout: f64,
    },
    /// Workload 4: one connection, reliable messages back to back for some seconds
    Bulk {
        #[arg(long, value_enum)]
        peer: Peer,
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[arg(long, value_name = "ADDR")]
        server: SocketAddr,
        /// Bytes per message
        #[arg(long, value_name = "BYTES", default_value_t = 16 << 10)]
        size: usize,
        /// Messages in flight (sent, echo not yet back)
        #[arg(long, value_name = "N", default_value_t = 64)]
        window: u32,
        #[arg(long, value_name = "S", default_value_t = 5.0)]
        seconds: f64,
        /// Ours only (pacing experiment): the client's send_interval in µs
        #[arg(long, value_name = "US")]
        send_interval_us: Option<u64>,
        /// Ours only (pacing experiment): the client's send_burst
        #[arg(long, value_name = "N")]
        send_burst: Option<u32>,
        /// Ours only (pacing experiment): the client's send_window
        #[arg(long, value_name = "N")]
        send_window: Option<u16>,
    },
    /// Ours with the pacer's settings open (an experiment, not a compared server)
    OursServer(ours::ServeArgs),
    /// Workload 6: a counting UDP relay between the clients and a server
    Proxy(proxy::ProxyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peers: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The protocol our clients speak as `peer`.
fn protocol_of(peer: Peer) -> mpgameserver::ProtocolVersion {
    if peer == Peer::Ours2 { mpgameserver::ProtocolVersion::V2 } else { mpgameserver::ProtocolVersion::V1 }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Cert { out } => quinn_peer::write_cert(&out),
        Command::RenetKey { out } => renet_peer::write_key(&out),
        Command::RenetServer(args) => renet_peer::serve(&args),
        Command::QuinnServer(args) => quinn_peer::serve(&args),
        Command::Load { peer, key, load } => match peer {
            Peer::Renet => renet_peer::load(&load, &key),
            Peer::Quinn => quinn_peer::load(&load, &key),
            Peer::Ours | Peer::Ours2 => Err("ours: use examples/loadgen (bench/peers/run.sh does)".into()),
        },
        Command::Connect { peer, key, load } => match peer {
            Peer::Renet => renet_peer::connect(&load, &key),
            Peer::Quinn => quinn_peer::connect_run(&load, &key),
            Peer::Ours | Peer::Ours2 => ours::connect(
                load.server,
                &key,
                load.clients,
                load.concurrency,
                load.connect_timeout,
                protocol_of(peer),
            ),
        },
        Command::Echo { peer, key, server, size, count, timeout } => {
            let timeout: Duration = secs(timeout)?;
            match peer {
                Peer::Renet => renet_peer::echo(server, &key, size, count, timeout),
                Peer::Quinn => quinn_peer::echo(server, &key, size, count, timeout),
                Peer::Ours | Peer::Ours2 => Err("ours: use examples/echo_client (bench/peers/run.sh does)".into()),
            }
        }
        Command::Bulk { peer, key, server, size, window, seconds, send_interval_us, send_burst, send_window } => {
            match peer {
                Peer::Renet => renet_peer::bulk(server, &key, size, window, seconds),
                Peer::Quinn => quinn_peer::bulk(server, &key, size, window, seconds),
                Peer::Ours | Peer::Ours2 => ours::bulk(
                    server,
                    &key,
                    size,
                    window,
                    seconds,
                    (send_interval_us, send_burst, send_window),
                    protocol_of(peer),
                ),
            }
        }
        Command::OursServer(args) => ours::serve(&args),
        Command::Proxy(args) => proxy::run(&args),
    }
}
