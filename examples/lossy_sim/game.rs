//! The scenario of the `lossy_sim` example: a game server and four clients
//! over a simulated bad network, in virtual time. It is a module of its own
//! so that the simulator suite (`tests/sim/golden.rs`) runs exactly the code
//! the example runs and pins its trace digests.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;

use mpgameserver::{
    ConnectionId, ConnectionMetrics, Delivery, DropReason, Duration, Endpoint, EndpointConfig, Event, ProtocolVersion,
    Rng, Seed, ServerKey,
};
use mpgameserver_sim::{DropCause, NodeId, Preset, Sim, hex};

/// Clients in the game.
pub const CLIENTS: usize = 4;
const FRAME: Duration = Duration::from_micros(16_667);
const PLAY_FRAMES: u32 = 20 * 60;
const MAP_BYTES: usize = 200_000;
const UPLOAD_BYTES: usize = 60_000;

/// Appends one line to the report.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        // Invariant: writing to a `String` never fails.
        writeln!($out, $($arg)*).expect("a String accepts every write")
    };
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

fn print_metrics(out: &mut String, name: &str, m: &ConnectionMetrics) {
    let srtt = m.srtt.map_or("-".to_string(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3));
    say!(
        out,
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

fn print_drops(out: &mut String, name: &str, ep: &Endpoint) {
    let s = ep.stats();
    let reasons: Vec<String> = DropReason::ALL
        .iter()
        .filter(|&&r| s.dropped(r) > 0)
        .map(|&r| format!("{}={}", r.name(), s.dropped(r)))
        .collect();
    let reasons = if reasons.is_empty() { "none".to_string() } else { reasons.join(" ") };
    say!(out, "  {name:<8} refused datagrams: {reasons}");
}

/// Runs the game for `seed` over links of `preset`, appends what happened
/// (per connection and on the network) to `out`, and returns the trace
/// digest (also the report's last line). Everything derives from `seed`.
/// The clients connect with `protocol`; over MPGS/1 the server has MPGS/2
/// off, so the report of an MPGS/1 run is what it was before MPGS/2 existed.
pub fn run(seed: u64, preset: Preset, protocol: ProtocolVersion, out: &mut String) -> [u8; 32] {
    let mut sim = Sim::new(seed);
    sim.set_default_link(preset.config());
    let key = ServerKey::generate(&mut Rng::new(Seed::from_u64(seed)));
    // An MPGS/1 run is the pinned golden scenario: its server speaks MPGS/1
    // only, so its SERVER_HELLOs carry no downgrade sentinel (MPGS2.md
    // §2.9) and its bytes are those of every run before MPGS/2 existed.
    let mut server_config = EndpointConfig::default();
    server_config.accept_mpgs2 = protocol != ProtocolVersion::V1;
    let server = sim.add_server(server_config, key).expect("the default configuration is valid");
    sim.record_events(server, false);
    // Server logic: echo chat lines, send the map to every new client.
    sim.set_handler(server, |ep, _, ev| match ev {
        Event::Connected { conn } => {
            let map: Vec<u8> = (0..MAP_BYTES).map(|i| (i % 251) as u8).collect();
            ep.send(*conn, &map, Delivery::Reliable).expect("the queue has room for the map");
        }
        Event::Message { conn, payload, .. } if payload.starts_with(b"chat:") => {
            let _ = ep.send(*conn, payload, Delivery::Reliable);
        }
        _ => {}
    });

    let mut clients: Vec<(NodeId, ConnectionId, Rc<RefCell<Seen>>)> = Vec::new();
    for k in 0..CLIENTS {
        sim.use_ipv6(k == CLIENTS - 1); // the last client is on IPv6
        let mut config = EndpointConfig::default();
        config.protocol = protocol;
        let node = sim.add_client(config).expect("the default configuration with either protocol is valid");
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

    let over = match protocol {
        ProtocolVersion::V1 => String::new(), // MPGS/1 reports stay as they were
        other => format!(", protocol {other}"),
    };
    say!(out, "lossy_sim: seed {}, preset {}, {CLIENTS} clients, {} s of play{over}", seed, preset, PLAY_FRAMES / 60);
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

    say!(out, "\nafter {} (virtual):", sim.now());
    for (k, (node, conn, seen)) in clients.iter().enumerate() {
        let s = seen.borrow();
        say!(
            out,
            "client {k} at {}: state updates {}, chat echoes {}, map {}, outcomes delivered/lost {}/{}",
            sim.addr(*node),
            s.states,
            s.chat_echoes,
            s.map.map_or("not yet".to_string(), |n| format!("{n} B")),
            s.delivered,
            s.lost
        );
        if let Some(c) = sim.endpoint(*node).connection(*conn) {
            print_metrics(out, "client", c.metrics());
        }
        if let Some(c) = sim.conn_of(server, *node).and_then(|id| sim.endpoint(server).connection(id)) {
            print_metrics(out, "server", c.metrics());
        }
        print_drops(out, "client", sim.endpoint(*node));
    }
    print_drops(out, "server", sim.endpoint(server));

    // Everyone leaves.
    for (node, conn, _) in &clients {
        let _ = sim.disconnect(*node, *conn);
    }
    sim.run_for(Duration::from_secs(3));
    for (k, (_, _, seen)) in clients.iter().enumerate() {
        let s = seen.borrow();
        say!(out, "client {k} disconnected {}", s.disconnected.as_deref().unwrap_or("(not yet)"));
    }

    let st = sim.stats();
    say!(out, "\nnetwork: {st}");
    let causes: Vec<String> = DropCause::ALL.iter().map(|&c| format!("{}={}", c.name(), st.dropped(c))).collect();
    say!(out, "dropped by cause: {}", causes.join(" "));
    say!(out, "steps {}, handle_timeout calls {}, trace entries {}", st.steps, st.timeouts, sim.trace().total());
    let digest = sim.digest();
    say!(out, "trace digest {}", hex(&digest));
    digest
}
