//! The arena's client: a macroquad window (arrow keys or WASD to move,
//! Enter to chat), or a headless bot with `--bot`.
//!
//! ```sh
//! cargo run -p mpgameserver-arena --bin arena-client -- --name ada
//! cargo run -p mpgameserver-arena --bin arena-client -- --bot --number 1 --name bot1 --duration 10
//! ```
//!
//! A bot walks a rectangle, says `--chat-lines` numbered lines (one a
//! second), and at the end of `--duration` checks that it saw every player
//! of `--expect` move and got each one's lines in send order; it exits
//! with status 1 if not.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use macroquad::prelude::*;
use mpgameserver::{Duration, PublicKey};
use mpgameserver_arena::{
    ArenaClient, Autopilot, HEIGHT, Input, MAX_CHAT, ORDER_NOTE, Pos, TICK_HZ, WIDTH, check_bot, tick_period,
};
use mpgameserver_drivers::blocking::Client;
use mpgameserver_game::TickClock;

/// The arena game client.
#[derive(Parser, Debug, Clone)]
#[command(name = "arena-client")]
struct Args {
    /// The server's address
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5050")]
    server: SocketAddr,
    /// The server's public key to pin
    #[arg(long, value_name = "FILE.pub", default_value = "target/arena-keys/arena.pub")]
    key: PathBuf,
    /// Your name
    #[arg(long, default_value = "player")]
    name: String,
    /// Run headless: walk and chat by yourself, then check what you saw
    #[arg(long)]
    bot: bool,
    /// The bot's number (chooses its path)
    #[arg(long, default_value_t = 0)]
    number: u32,
    /// Chat lines a bot says (one a second)
    #[arg(long, default_value_t = 5)]
    chat_lines: u64,
    /// Seconds to run (bot: then check; window: then close)
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// Names of the bots a bot expects to see moving and chatting (comma-separated, itself included)
    #[arg(long, value_delimiter = ',')]
    expect: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match connect(&args) {
        Ok(client) if args.bot => bot(&args, client),
        Ok(client) => {
            let conf = Conf {
                window_title: format!("arena: {}", args.name),
                window_width: WIDTH as i32,
                window_height: HEIGHT as i32,
                window_resizable: false,
                ..Default::default()
            };
            macroquad::Window::from_config(conf, window(args.clone(), client));
            Ok(())
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arena-client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn connect(args: &Args) -> Result<Client, Box<dyn std::error::Error>> {
    let key = PublicKey::read_pem_file(&args.key)?;
    Ok(Client::connect(args.server, key, Duration::from_secs(5))?)
}

/// One frame of networking: events to the game logic, then the ticks due.
fn pump(client: &mut Client, game: &mut ArenaClient, clock: &mut TickClock) {
    client.dispatch(game);
    for _ in 0..clock.advance(client.now()) {
        client.tick(game, tick_period());
    }
}

fn bot(args: &Args, mut client: Client) -> Result<(), Box<dyn std::error::Error>> {
    let autopilot = Autopilot { number: args.number, chat_lines: args.chat_lines };
    let mut game = ArenaClient::bot(&args.name, autopilot);
    let mut clock = TickClock::new(TICK_HZ, client.now())?;
    let end = client.now() + Duration::from_secs(args.duration.unwrap_or(10));
    while client.now() < end && client.is_connected() {
        pump(&mut client, &mut game, &mut clock);
        let wait = clock.next_tick().saturating_duration_since(client.now());
        client.update_wait(wait);
    }
    client.disconnect(Duration::from_secs(1));
    let sent: BTreeMap<String, u64> = args.expect.iter().map(|n| (n.clone(), args.chat_lines)).collect();
    let problems = check_bot(&game, &sent, 50.0);
    let moved: Vec<String> = game
        .seen()
        .iter()
        .map(|(id, s)| format!("{}={:.0}px", game.name_of(*id).unwrap_or("?"), s.max_distance))
        .collect();
    println!(
        "{}: {} chat lines in order, saw moving: {}, {} corrections, {} ticks",
        game.name(),
        game.chat_log().len(),
        moved.join(" "),
        game.corrections(),
        game.ticks()
    );
    if problems.is_empty() {
        println!("{}: OK", game.name());
        Ok(())
    } else {
        Err(problems.join("; ").into())
    }
}

/// Player colours by id (the CI's screenshot test looks for them).
const PALETTE: [Color; 8] = [RED, GREEN, BLUE, YELLOW, ORANGE, PURPLE, PINK, SKYBLUE];
const RADIUS: f32 = 14.0;

fn draw_player(pos: Pos, id: u16, name: &str, local: bool) {
    let colour = PALETTE[usize::from(id) % PALETTE.len()];
    draw_circle(pos.x, pos.y, RADIUS, colour);
    if local {
        draw_circle_lines(pos.x, pos.y, RADIUS + 3.0, 2.0, WHITE);
    }
    let size = measure_text(name, None, 18, 1.0);
    draw_text(name, pos.x - size.width / 2.0, pos.y - RADIUS - 6.0, 18.0, WHITE);
}

async fn window(args: Args, mut client: Client) {
    let mut game = ArenaClient::new(&args.name);
    let mut clock = match TickClock::new(TICK_HZ, client.now()) {
        Ok(c) => c,
        Err(e) => return eprintln!("arena-client: {e}"),
    };
    let end = args.duration.map(|s| client.now() + Duration::from_secs(s));
    let mut typing: Option<String> = None;
    loop {
        // Input: movement, or a chat line being typed.
        let mut input = Input::default();
        match typing.as_mut() {
            Some(line) => {
                while let Some(c) = get_char_pressed() {
                    if !c.is_control() && line.chars().count() < MAX_CHAT {
                        line.push(c);
                    }
                }
                if is_key_pressed(KeyCode::Backspace) {
                    line.pop();
                }
                if is_key_pressed(KeyCode::Escape) {
                    typing = None;
                } else if is_key_pressed(KeyCode::Enter) {
                    if !line.trim().is_empty() {
                        game.say(line);
                    }
                    typing = None;
                }
            }
            None => {
                let axis = |neg: [KeyCode; 2], pos: [KeyCode; 2]| {
                    i8::from(pos.iter().any(|&k| is_key_down(k))) - i8::from(neg.iter().any(|&k| is_key_down(k)))
                };
                input.dx = axis([KeyCode::Left, KeyCode::A], [KeyCode::Right, KeyCode::D]);
                input.dy = axis([KeyCode::Up, KeyCode::W], [KeyCode::Down, KeyCode::S]);
                if is_key_pressed(KeyCode::Enter) {
                    while get_char_pressed().is_some() {}
                    typing = Some(String::new());
                }
            }
        }
        game.set_input(input);
        pump(&mut client, &mut game, &mut clock);
        let now = client.now();

        clear_background(Color::from_rgba(24, 26, 32, 255));
        for (id, pos) in game.remote(now) {
            if game.present().contains(&id) {
                draw_player(pos, id, game.name_of(id).unwrap_or("?"), false);
            }
        }
        if let Some(id) = game.my_id() {
            draw_player(game.local(), id, game.name(), true);
        }

        // HUD: network figures, the ordering note, the chat.
        let grey = Color::from_rgba(200, 200, 200, 255);
        let net = match client.connection().map(|c| c.metrics().clone()) {
            Some(m) => {
                let rtt = m.srtt.map_or("-".to_string(), |d| format!("{:.1} ms", d.as_micros() as f64 / 1000.0));
                let loss = 100.0 * m.datagrams_lost as f64 / m.datagrams_sent.max(1) as f64;
                format!("RTT {rtt}   loss {loss:.1} %   corrections {}", game.corrections())
            }
            None => "disconnected".to_string(),
        };
        draw_text(&net, 10.0, 20.0, 20.0, grey);
        draw_text(ORDER_NOTE, 10.0, 40.0, 14.0, grey);
        let log = game.chat_log();
        for (k, line) in log[log.len().saturating_sub(6)..].iter().enumerate() {
            let who = game.name_of(line.from).unwrap_or("?");
            draw_text(format!("{who}: {}", line.text), 10.0, HEIGHT - 130.0 + 18.0 * k as f32, 18.0, grey);
        }
        let prompt = match &typing {
            Some(line) => format!("say: {line}_"),
            None => "arrows/WASD move, Enter chats".to_string(),
        };
        draw_text(&prompt, 10.0, HEIGHT - 12.0, 18.0, WHITE);

        if !client.is_connected() || end.is_some_and(|e| now >= e) {
            break;
        }
        next_frame().await;
    }
    client.disconnect(Duration::from_secs(1));
}
