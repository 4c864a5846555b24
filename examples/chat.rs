//! A line chat on the smol driver. The server relays every line to every
//! other client; a client sends the lines it reads from stdin and prints
//! what the others say.
//!
//! ```sh
//! cargo run --example keygen -- --name root keys
//! cargo run --example chat -- server --bind 127.0.0.1:5001 --key keys/root.key
//! # in two other shells:
//! cargo run --example chat -- client --server 127.0.0.1:5001 --key keys/root.pub --name ada
//! cargo run --example chat -- client --server 127.0.0.1:5001 --key keys/root.pub --name bob
//! ```
//!
//! End a client with Ctrl-D (end of input), the server with Ctrl-C.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mpgameserver::{ConnectionId, Delivery, DisconnectReason, Duration, Event, PublicKey, ServerKey};
use mpgameserver_drivers::smol::{Client, Server};
use mpgameserver_drivers::{EventHandler, ServerContext};
use smol::io::{AsyncBufReadExt, BufReader};
use smol::stream::StreamExt;

/// A line chat over the smol driver.
#[derive(Parser, Debug)]
#[command(name = "chat")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Relay every line to every other client
    Server {
        /// Address to listen on
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5001")]
        bind: SocketAddr,
        /// The server's private key (PEM, e.g. keys/root.key from keygen)
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Send the lines of stdin; print what the others say
    Client {
        /// The server's address
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5001")]
        server: SocketAddr,
        /// The server's public key to pin (PEM, e.g. keys/root.pub)
        #[arg(long, value_name = "FILE.pub")]
        key: PathBuf,
        /// Your name in the chat
        #[arg(long, value_name = "NAME", default_value = "anonymous")]
        name: String,
    },
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let result = match Args::parse().mode {
        Mode::Server { bind, key } => serve(bind, key),
        Mode::Client { server, key, name } => smol::block_on(chat(server, key, name)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Relays each line to every other client, and announces arrivals and
/// departures.
struct Relay {
    clients: BTreeMap<ConnectionId, SocketAddr>,
}

impl Relay {
    fn broadcast(&self, ctx: &mut ServerContext<'_>, from: Option<ConnectionId>, line: &[u8]) {
        for &conn in self.clients.keys().filter(|&&c| Some(c) != from) {
            if let Err(e) = ctx.send(conn, line, Delivery::Reliable) {
                eprintln!("to {conn}: {e}");
            }
        }
    }
}

impl EventHandler for Relay {
    fn connect(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId) {
        let Some(addr) = ctx.connection(conn).map(|c| c.remote()) else { return };
        let line = format!("* {addr} joined");
        println!("{line}");
        self.broadcast(ctx, None, line.as_bytes());
        self.clients.insert(conn, addr);
    }

    fn disconnect(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId, reason: DisconnectReason) {
        if let Some(addr) = self.clients.remove(&conn) {
            let line = format!("* {addr} left ({reason})");
            println!("{line}");
            self.broadcast(ctx, None, line.as_bytes());
        }
    }

    fn handle_message(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId, payload: Vec<u8>) {
        println!("{}", String::from_utf8_lossy(&payload));
        self.broadcast(ctx, Some(conn), &payload);
    }
}

fn serve(bind: SocketAddr, key: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let key = ServerKey::read_pem_file(key)?;
    let mut server = Server::bind(bind, key)?;
    // Ctrl-C / SIGTERM: every client is told before the server exits.
    let _signals = mpgameserver_drivers::shutdown::stop_on_signals(&server.stop_handle())?;
    println!("chat server on {}", server.local_addr()?);
    smol::block_on(server.run(&mut Relay { clients: BTreeMap::new() }));
    Ok(())
}

/// What woke the client up.
enum Input {
    Line(Option<std::io::Result<String>>),
    Net(Option<Event>),
}

async fn chat(server: SocketAddr, key: PathBuf, name: String) -> Result<(), Box<dyn std::error::Error>> {
    let key = PublicKey::read_pem_file(key)?;
    let mut client = Client::connect(server, key, Duration::from_secs(5)).await?;
    eprintln!("connected to {server} as {name}; type a line and press Enter, Ctrl-D to leave");
    let mut lines = BufReader::new(smol::Unblock::new(std::io::stdin())).lines();
    loop {
        // Both futures are cancel-safe: whichever loses the race loses nothing.
        let input = smol::future::or(async { Input::Line(lines.next().await) }, async {
            Input::Net(client.next_event().await)
        })
        .await;
        match input {
            Input::Line(Some(Ok(line))) => {
                client.send(format!("{name}: {line}").as_bytes(), Delivery::Reliable)?;
            }
            Input::Line(Some(Err(e))) => return Err(e.into()),
            Input::Line(None) => break, // end of input
            Input::Net(Some(Event::Message { payload, .. })) => println!("{}", String::from_utf8_lossy(&payload)),
            Input::Net(Some(Event::Disconnected { reason, .. })) => {
                eprintln!("disconnected: {reason}");
                return Ok(());
            }
            Input::Net(Some(_)) => {} // delivery reports
            Input::Net(None) => return Ok(()),
        }
    }
    client.update(); // send the last lines before saying goodbye
    client.disconnect(Duration::from_secs(1)).await;
    Ok(())
}
