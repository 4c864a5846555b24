//! The arena's server: the authoritative game at 30 ticks a second on the
//! blocking driver.
//!
//! ```sh
//! cargo run -p mpgameserver-arena --bin arena-server -- --bind 127.0.0.1:5050 --keys target/arena-keys
//! ```
//!
//! The first run creates a development key pair in the key directory
//! (`arena.key`, `arena.pub`); clients pin `arena.pub`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration as StdDuration;

use clap::Parser;
use mpgameserver::{Rng, ServerKey};
use mpgameserver_arena::{ArenaServer, TICK_HZ};
use mpgameserver_drivers::blocking::Server;
use mpgameserver_drivers::{ServerConfig, os_seed};

/// The arena game server.
#[derive(Parser, Debug)]
#[command(name = "arena-server")]
struct Args {
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5050")]
    bind: SocketAddr,
    /// Directory of the key pair (arena.key, arena.pub), created with a new pair if missing
    #[arg(long, value_name = "DIR", default_value = "target/arena-keys")]
    keys: PathBuf,
    /// Stop after this many seconds (default: run until killed)
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arena-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads `DIR/arena.key`, or creates a development key pair there.
fn load_or_create_key(dir: &Path) -> Result<ServerKey, Box<dyn std::error::Error>> {
    let key_path = dir.join("arena.key");
    if key_path.exists() {
        return Ok(ServerKey::read_pem_file(&key_path)?);
    }
    std::fs::create_dir_all(dir)?;
    let key = ServerKey::generate(&mut Rng::new(os_seed()?));
    std::fs::write(&key_path, key.to_pkcs8_pem().as_bytes())?;
    std::fs::write(dir.join("arena.pub"), key.public_key().to_public_key_pem())?;
    println!("created a development key pair in {}", dir.display());
    Ok(key)
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let key = load_or_create_key(&args.keys)?;
    let mut config = ServerConfig::default();
    config.tick_rate = TICK_HZ;
    let mut server = Server::bind_with(config, args.bind, key)?;
    println!(
        "arena server on {} at {TICK_HZ} Hz; clients pin {}",
        server.local_addr()?,
        args.keys.join("arena.pub").display()
    );
    if let Some(secs) = args.duration {
        let stop = server.stop_handle();
        std::thread::spawn(move || {
            std::thread::sleep(StdDuration::from_secs(secs));
            stop.stop();
        });
    }
    let mut game = ArenaServer::default();
    server.run(&mut game);
    println!(
        "arena server stopped: {} chat lines relayed, {} undecodable messages",
        game.chat_log.len(),
        game.undecodable
    );
    Ok(())
}
