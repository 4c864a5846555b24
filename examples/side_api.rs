//! A game server with an HTTP API beside it, in one process: what
//! MpGameServer's HTTP module is for. The UDP game server runs its tick on
//! the main thread; a small synchronous HTTP server ([`tiny_http`], the
//! crate the metrics endpoint uses) answers on another:
//!
//! | route | what |
//! |---|---|
//! | `GET /health` | `200 ok` while the game runs, `503 stopping` once it stops (for a load balancer's health check) |
//! | `POST /login` | body `{"name": "alice"}`: a one-time token, the game server's address and the public key to pin |
//! | `GET /matches` | the matches and their players |
//! | `GET /state` | the live game state as JSON |
//!
//! The player then connects over UDP and sends `LOGIN <token>`; the game
//! answers `WELCOME <name> <match>` and puts the player in a match of up to
//! four. `SAY <text>` is relayed to the others in the match as
//! `<name>: <text>`.
//!
//! The HTTP side never blocks the tick: logins travel to the game through a
//! channel the tick drains, and at the end of every tick the game publishes
//! an immutable view of its state through an [`arc_swap::ArcSwap`], which
//! the HTTP thread reads without a lock. A slow HTTP client delays only the
//! HTTP thread.
//!
//! ```sh
//! cargo run --release --example side_api -- --bind 127.0.0.1:5000 --http 127.0.0.1:8080
//! curl -s -X POST -d '{"name":"alice"}' http://127.0.0.1:8080/login
//! curl -s http://127.0.0.1:8080/state
//! ```
//!
//! In production, put the HTTP side behind a TLS-terminating proxy (the
//! login response carries the key clients pin), and keep `--http` on
//! loopback or a private address. SIGINT/SIGTERM stop both gracefully.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc;

use arc_swap::ArcSwap;
use clap::Parser;
use mpgameserver::{ConnectionId, Delivery, DisconnectReason, Duration, Rng, ServerKey};
use mpgameserver_drivers::blocking::Server;
use mpgameserver_drivers::shutdown::stop_on_signals;
use mpgameserver_drivers::{EventHandler, ServerContext, StopHandle, os_seed};
use serde_json::json;

/// A UDP game server and its HTTP API (login, matches, state, health) in one process.
#[derive(Parser, Debug)]
#[command(name = "side_api")]
struct Args {
    /// UDP address of the game server
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// TCP address of the HTTP API (keep it on loopback or a private network)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    http: SocketAddr,
    /// The server's private key (PEM); default: a key generated in memory
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Ticks per second
    #[arg(long, value_name = "N", default_value_t = 30)]
    tick_hz: u32,
}

/// Players per match.
const MATCH_SIZE: usize = 4;

/// What the HTTP side reads: published by the game at the end of every tick.
#[derive(Debug, Default)]
struct View {
    tick: u64,
    players: Vec<PlayerView>,
    matches: BTreeMap<u32, Vec<String>>,
}

#[derive(Debug)]
struct PlayerView {
    name: String,
    match_id: u32,
    address: SocketAddr,
    rtt_ms: Option<f64>,
    said: u64,
}

struct Player {
    name: String,
    match_id: u32,
    said: u64,
}

/// The game: logins come from the HTTP thread through `logins`.
struct Game {
    logins: mpsc::Receiver<(String, String)>,
    /// Tokens issued and not used yet: token → name.
    tokens: BTreeMap<String, String>,
    players: BTreeMap<ConnectionId, Player>,
    view: Arc<ArcSwap<View>>,
    tick: u64,
}

impl Game {
    fn match_for_new_player(&self) -> u32 {
        let mut sizes: BTreeMap<u32, usize> = BTreeMap::new();
        for p in self.players.values() {
            *sizes.entry(p.match_id).or_default() += 1;
        }
        (1..).find(|id| sizes.get(id).copied().unwrap_or(0) < MATCH_SIZE).unwrap_or(1)
    }

    fn publish(&self, ctx: &ServerContext<'_>) {
        let mut view = View { tick: self.tick, ..View::default() };
        for (conn, p) in &self.players {
            let Some(c) = ctx.connection(*conn) else { continue };
            view.players.push(PlayerView {
                name: p.name.clone(),
                match_id: p.match_id,
                address: c.remote(),
                rtt_ms: c.metrics().srtt.map(|d| d.as_secs_f64() * 1e3),
                said: p.said,
            });
            view.matches.entry(p.match_id).or_default().push(p.name.clone());
        }
        self.view.store(Arc::new(view));
    }
}

impl EventHandler for Game {
    fn update(&mut self, ctx: &mut ServerContext<'_>, _dt: Duration) {
        self.tick += 1;
        while let Ok((token, name)) = self.logins.try_recv() {
            self.tokens.insert(token, name);
        }
        self.publish(ctx);
    }

    fn disconnect(&mut self, _: &mut ServerContext<'_>, conn: ConnectionId, reason: DisconnectReason) {
        if let Some(p) = self.players.remove(&conn) {
            println!("{} left ({reason})", p.name);
        }
    }

    fn handle_message(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId, payload: Vec<u8>) {
        let text = String::from_utf8_lossy(&payload);
        if let Some(token) = text.strip_prefix("LOGIN ") {
            // Tokens issued during this tick are still in the channel.
            while let Ok((t, name)) = self.logins.try_recv() {
                self.tokens.insert(t, name);
            }
            let Some(name) = self.tokens.remove(token.trim()) else {
                let _ = ctx.send(conn, b"DENIED unknown or used token", Delivery::Reliable);
                let _ = ctx.disconnect(conn);
                return;
            };
            let match_id = self.match_for_new_player();
            let _ = ctx.send(conn, format!("WELCOME {name} {match_id}").as_bytes(), Delivery::Reliable);
            println!("{name} joined match {match_id}");
            self.players.insert(conn, Player { name, match_id, said: 0 });
        } else if let Some(said) = text.strip_prefix("SAY ") {
            let Some(p) = self.players.get_mut(&conn) else { return };
            p.said += 1;
            let (line, match_id) = (format!("{}: {said}", p.name), p.match_id);
            let others: Vec<ConnectionId> =
                self.players.iter().filter(|(c, q)| **c != conn && q.match_id == match_id).map(|(c, _)| *c).collect();
            for other in others {
                let _ = ctx.send(other, line.as_bytes(), Delivery::Reliable);
            }
        }
    }
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("side_api: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = Rng::new(os_seed()?);
    let key = match &args.key {
        Some(path) => ServerKey::read_pem_file(path)?,
        None => ServerKey::generate(&mut rng),
    };
    let public_pem = key.public_key().to_public_key_pem();
    let mut config = mpgameserver_drivers::ServerConfig::default();
    config.tick_rate = args.tick_hz;
    let mut server = Server::bind_with(config, args.bind, key)?;
    let game_addr = server.local_addr()?;
    let stop = server.stop_handle();
    let _signals = stop_on_signals(&stop)?;

    let view = Arc::new(ArcSwap::from_pointee(View::default()));
    let (login_tx, logins) = mpsc::channel();
    let http =
        Arc::new(tiny_http::Server::http(args.http).map_err(|e| format!("cannot serve HTTP on {}: {e}", args.http))?);
    let http_addr = http.server_addr().to_ip().ok_or("the HTTP server is not on an IP address")?;
    let api = Api { view: view.clone(), logins: login_tx, stop: stop.clone(), game_addr, public_pem, rng };
    let http_thread = {
        let http = http.clone();
        std::thread::Builder::new().name("http-api".into()).spawn(move || api.serve(&http))?
    };
    println!("game server on {game_addr}, {} ticks/s", args.tick_hz);
    println!("http api on http://{http_addr}");

    let mut game = Game { logins, tokens: BTreeMap::new(), players: BTreeMap::new(), view, tick: 0 };
    server.run(&mut game);
    // The game has stopped (every player told): stop answering HTTP too.
    http.unblock();
    http_thread.join().map_err(|_| "the HTTP thread panicked")?;
    println!("stopped after {} ticks", game.tick);
    Ok(())
}

/// The HTTP side: reads the published view, sends logins to the game.
struct Api {
    view: Arc<ArcSwap<View>>,
    logins: mpsc::Sender<(String, String)>,
    stop: StopHandle,
    game_addr: SocketAddr,
    public_pem: String,
    rng: Rng,
}

type Response = tiny_http::Response<std::io::Cursor<Vec<u8>>>;

impl Api {
    fn serve(mut self, http: &tiny_http::Server) {
        for mut request in http.incoming_requests() {
            let mut body = String::new();
            let response = if std::io::Read::read_to_string(&mut request.as_reader(), &mut body).is_err() {
                text(400, "unreadable body")
            } else {
                self.respond(request.method(), request.url(), &body)
            };
            let _ = request.respond(response);
        }
    }

    fn respond(&mut self, method: &tiny_http::Method, url: &str, body: &str) -> Response {
        use tiny_http::Method::{Get, Post};
        match (method, url) {
            (Get, "/health") if self.stop.is_stopped() => text(503, "stopping"),
            (Get, "/health") => text(200, "ok"),
            (Post, "/login") => self.login(body),
            (Get, "/matches") => {
                let view = self.view.load();
                let matches: Vec<_> = view
                    .matches
                    .iter()
                    .map(|(id, players)| json!({ "id": id, "players": players, "max": MATCH_SIZE }))
                    .collect();
                json_response(200, &json!({ "matches": matches }))
            }
            (Get, "/state") => {
                let view = self.view.load();
                let players: Vec<_> = view
                    .players
                    .iter()
                    .map(|p| {
                        json!({ "name": p.name, "match": p.match_id, "address": p.address.to_string(),
                                "rtt_ms": p.rtt_ms, "said": p.said })
                    })
                    .collect();
                json_response(200, &json!({ "tick": view.tick, "players": players }))
            }
            (_, "/health" | "/login" | "/matches" | "/state") => text(405, "method not allowed"),
            _ => text(404, "not found"),
        }
    }

    fn login(&mut self, body: &str) -> Response {
        let name = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("name")?.as_str().map(str::to_string))
            .filter(|n| (1..=32).contains(&n.len()) && n.chars().all(|c| c.is_alphanumeric() || c == '_'));
        let Some(name) = name else {
            return text(400, "send {\"name\": \"...\"}: 1 to 32 letters, digits or _");
        };
        let mut raw = [0u8; 16];
        self.rng.fill(&mut raw);
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        if self.logins.send((token.clone(), name)).is_err() {
            return text(503, "stopping");
        }
        json_response(
            200,
            &json!({ "token": token, "server": self.game_addr.to_string(), "public_key": self.public_pem }),
        )
    }
}

fn text(status: u16, body: &str) -> Response {
    with_type(
        tiny_http::Response::from_string(format!("{body}\n")).with_status_code(status),
        "text/plain; charset=utf-8",
    )
}

fn json_response(status: u16, value: &serde_json::Value) -> Response {
    with_type(tiny_http::Response::from_string(value.to_string()).with_status_code(status), "application/json")
}

fn with_type(response: Response, content_type: &str) -> Response {
    match tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
        Ok(h) => response.with_header(h),
        Err(()) => response,
    }
}
