//! The arena's game logic (the same `ArenaServer` and `ArenaClient` types
//! the binaries run over UDP) in the simulator, over a lossy mobile network.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::BTreeMap;

use mpgameserver::{Duration, EndpointConfig, Rng, Seed, ServerKey};
use mpgameserver_arena::{ArenaClient, ArenaServer, Autopilot, TICK_HZ, check_bot};
use mpgameserver_sim::{HandlerRef, LinkConfig, Sim};

const BOTS: u32 = 3;
const LINES: u64 = 5;

struct Run {
    digest: [u8; 32],
    positions: String,
    problems: Vec<String>,
    chat: usize,
    corrections: Vec<u64>,
}

fn run(seed: u64) -> Run {
    let mut sim = Sim::new(seed);
    sim.set_default_link(LinkConfig::mobile_lossy());
    let key = ServerKey::generate(&mut Rng::new(Seed::from_u64(seed)));
    let server = sim.add_server(EndpointConfig::default(), key).unwrap();
    let s = sim.run_handler(server, ArenaServer::default(), TICK_HZ).unwrap();
    let bots: Vec<HandlerRef<ArenaClient>> = (0..BOTS)
        .map(|n| {
            let node = sim.add_client(EndpointConfig::default()).unwrap();
            let bot = ArenaClient::bot(&format!("bot{n}"), Autopilot { number: n, chat_lines: LINES });
            let h = sim.run_handler(node, bot, TICK_HZ).unwrap();
            sim.connect(node, server).unwrap();
            h
        })
        .collect();
    // The bots chat for LINES seconds; give the last lines time to arrive.
    sim.run_for(Duration::from_secs(LINES + 6));
    let sent: BTreeMap<String, u64> =
        bots.iter().map(|b| (b.borrow().name().to_string(), b.borrow().chat_sent())).collect();
    let mut problems = Vec::new();
    for b in &bots {
        problems.extend(check_bot(&b.borrow(), &sent, 50.0));
        assert_eq!(b.borrow().undecodable(), 0);
    }
    let positions = format!("{:?}", s.borrow().positions());
    let chat = s.borrow().chat_log.len();
    let corrections = bots.iter().map(|b| b.borrow().corrections()).collect();
    sim.stop_handler(&s, Duration::from_secs(2));
    Run { digest: sim.digest(), positions, problems, chat, corrections }
}

#[test]
fn arena_plays_over_a_lossy_mobile_network_deterministically() {
    let a = run(2024);
    assert!(a.problems.is_empty(), "{:#?}", a.problems);
    assert_eq!(a.chat, (BOTS as u64 * LINES) as usize, "every line relayed once");
    let b = run(2024);
    assert_eq!(a.digest, b.digest, "same seed, same run");
    assert_eq!((a.positions, a.corrections), (b.positions, b.corrections));
    let c = run(2025);
    assert_ne!(a.digest, c.digest, "another seed, another run");
    assert!(c.problems.is_empty(), "{:#?}", c.problems);
}
