//! A game server and four clients over a simulated bad network, in virtual
//! time, with `mpgameserver-sim`.
//!
//! Each client sends its input every 60 Hz frame (`Unreliable`), a chat
//! line every second (`Reliable`) and a 60 kB upload once (`Reliable`,
//! fragmented); the server sends every client a state update every frame
//! (`Unreliable`), echoes the chat lines (`Reliable`) and sends each client
//! a 200 kB map (`Reliable`). After 20 virtual seconds the clients
//! disconnect. The program prints what happened per connection and what the
//! network did.
//!
//! Everything derives from the seed: the same `--seed` prints the same
//! bytes, run after run (including the trace digest on the last line); a
//! different seed gives a different run.
//!
//! ```sh
//! cargo run --example lossy_sim -- --seed 7
//! cargo run --example lossy_sim -- --seed 8 --preset wifi
//! ```

use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;

use mpgameserver::{
    ConnectionId, ConnectionMetrics, Delivery, DropReason, Duration, Endpoint, EndpointConfig, Event, Rng, Seed,
    ServerKey,
};
use mpgameserver_sim::{DropCause, NodeId, Preset, Sim, hex};

const CLIENTS: usize = 4;
const FRAME: Duration = Duration::from_micros(16_667);
const PLAY_FRAMES: u32 = 20 * 60;
const MAP_BYTES: usize = 200_000;
const UPLOAD_BYTES: usize = 60_000;

struct Args {
    seed: u64,
    preset: Preset,
}

const USAGE: &str = "usage: lossy_sim [--seed N] [--preset perfect|lan|wifi|mobile-lossy]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args { seed: 1, preset: Preset::MobileLossy };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--seed" => {
                let v = value("--seed")?;
                args.seed = v.parse().map_err(|_| format!("--seed wants a number, not {v:?}\n{USAGE}"))?;
            }
            "--preset" => {
                let v = value("--preset")?;
                args.preset = Preset::from_name(&v).ok_or_else(|| format!("unknown preset {v:?}\n{USAGE}"))?;
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

/// What a client's game logic saw.
#[derive(Default)]
struct Seen {
    connected: bool,
    states: u32,
    chat_echoes: u32,
    map: Option<usize>,
    delivered: u32,
    lost: u32,
    disconnected: Option<String>,
}

fn print_metrics(name: &str, m: &ConnectionMetrics) {
    let srtt = m.srtt.map_or("-".to_string(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3));
    println!(
        "  {name:<8} srtt {srtt:>9}  datagrams sent/received/lost {:>5}/{:>5}/{:>4}  messages sent/acked/lost/resent/received {:>5}/{:>5}/{:>4}/{:>4}/{:>5}",
        m.datagrams_sent,
        m.datagrams_received,
        m.datagrams_lost,
        m.messages_sent,
        m.messages_acked,
        m.messages_lost,
        m.messages_retransmitted,
        m.messages_received
    );
}

fn print_drops(name: &str, ep: &Endpoint) {
    let s = ep.stats();
    let reasons: Vec<String> = DropReason::ALL
        .iter()
        .filter(|&&r| s.dropped(r) > 0)
        .map(|&r| format!("{}={}", r.name(), s.dropped(r)))
        .collect();
    let reasons = if reasons.is_empty() { "none".to_string() } else { reasons.join(" ") };
    println!("  {name:<8} refused datagrams: {reasons}");
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut sim = Sim::new(args.seed);
    sim.set_default_link(args.preset.config());
    let key = ServerKey::generate(&mut Rng::new(Seed::from_u64(args.seed)));
    let server = sim.add_server(EndpointConfig::default(), key).expect("the default configuration is valid");
    sim.record_events(server, false);
    // Server logic: echo chat lines, send the map to every new client.
    sim.set_handler(server, |ep, _, ev| match ev {
        Event::Connected { conn } => {
            let map: Vec<u8> = (0..MAP_BYTES).map(|i| (i % 251) as u8).collect();
            ep.send(*conn, &map, Delivery::Reliable).expect("the queue has room for the map");
        }
        Event::Message { conn, payload } if payload.starts_with(b"chat:") => {
            let _ = ep.send(*conn, payload, Delivery::Reliable);
        }
        _ => {}
    });

    let mut clients: Vec<(NodeId, ConnectionId, Rc<RefCell<Seen>>)> = Vec::new();
    for k in 0..CLIENTS {
        sim.use_ipv6(k == CLIENTS - 1); // the last client is on IPv6
        let node = sim.add_client(EndpointConfig::default()).expect("the default configuration is valid");
        sim.record_events(node, false);
        let seen = Rc::new(RefCell::new(Seen::default()));
        let s = seen.clone();
        sim.set_handler(node, move |_, now, ev| {
            let mut s = s.borrow_mut();
            match ev {
                Event::Connected { .. } => s.connected = true,
                Event::Message { payload, .. } if payload.starts_with(b"state:") => s.states += 1,
                Event::Message { payload, .. } if payload.starts_with(b"chat:") => s.chat_echoes += 1,
                Event::Message { payload, .. } => s.map = Some(payload.len()),
                Event::Delivered { .. } => s.delivered += 1,
                Event::Lost { .. } => s.lost += 1,
                Event::ConnectFailed { reason, .. } => {
                    s.disconnected = Some(format!("connect failed at {now}: {reason}"))
                }
                Event::Disconnected { reason, .. } => s.disconnected = Some(format!("at {now}: {reason}")),
                _ => {}
            }
        });
        let conn = sim.connect(node, server).expect("a client can connect");
        clients.push((node, conn, seen));
    }

    println!(
        "lossy_sim: seed {}, preset {}, {CLIENTS} clients, {} s of play",
        args.seed,
        args.preset,
        PLAY_FRAMES / 60
    );
    let upload: Vec<u8> = (0..UPLOAD_BYTES).map(|i| (i % 241) as u8).collect();
    for frame in 0..PLAY_FRAMES {
        for (k, (node, conn, seen)) in clients.iter().enumerate() {
            if !seen.borrow().connected {
                continue;
            }
            let input = [b"input:".as_slice(), &frame.to_be_bytes()].concat();
            let _ = sim.send(*node, *conn, &input, Delivery::Unreliable);
            if frame % 60 == k as u32 * 5 {
                let line = format!("chat:client {k} says hello at frame {frame}");
                let _ = sim.send(*node, *conn, line.as_bytes(), Delivery::Reliable);
            }
            if frame == 30 {
                let _ = sim.send(*node, *conn, &upload, Delivery::Reliable);
            }
        }
        // The server's state update to every client.
        let conns: Vec<ConnectionId> = sim.endpoint(server).connections().collect();
        for conn in conns {
            let state = [b"state:".as_slice(), &frame.to_be_bytes()].concat();
            let _ = sim.send(server, conn, &state, Delivery::Unreliable);
        }
        sim.run_for(FRAME);
    }

    println!("\nafter {} (virtual):", sim.now());
    for (k, (node, conn, seen)) in clients.iter().enumerate() {
        let s = seen.borrow();
        println!(
            "client {k} at {}: state updates {}, chat echoes {}, map {}, outcomes delivered/lost {}/{}",
            sim.addr(*node),
            s.states,
            s.chat_echoes,
            s.map.map_or("not yet".to_string(), |n| format!("{n} B")),
            s.delivered,
            s.lost
        );
        if let Some(c) = sim.endpoint(*node).connection(*conn) {
            print_metrics("client", c.metrics());
        }
        if let Some(c) = sim.conn_of(server, *node).and_then(|id| sim.endpoint(server).connection(id)) {
            print_metrics("server", c.metrics());
        }
        print_drops("client", sim.endpoint(*node));
    }
    print_drops("server", sim.endpoint(server));

    // Everyone leaves.
    for (node, conn, _) in &clients {
        let _ = sim.disconnect(*node, *conn);
    }
    sim.run_for(Duration::from_secs(3));
    for (k, (_, _, seen)) in clients.iter().enumerate() {
        let s = seen.borrow();
        println!("client {k} disconnected {}", s.disconnected.as_deref().unwrap_or("(not yet)"));
    }

    let st = sim.stats();
    println!("\nnetwork: {st}");
    let causes: Vec<String> = DropCause::ALL.iter().map(|&c| format!("{}={}", c.name(), st.dropped(c))).collect();
    println!("dropped by cause: {}", causes.join(" "));
    println!("steps {}, handle_timeout calls {}, trace entries {}", st.steps, st.timeouts, sim.trace().total());
    println!("trace digest {}", hex(&sim.digest()));
    ExitCode::SUCCESS
}
