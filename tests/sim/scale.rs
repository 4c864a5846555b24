//! A thousand clients on one server.
//!
//! These scenarios test MPGS/1 (its wire, timers and PROTOCOL.md rules): their clients speak it explicitly (`crate::v1`).

use std::cell::RefCell;
use std::rc::Rc;

use mpgameserver::{Delivery, Duration, EndpointConfig, Event};
use mpgameserver_sim::{DropCause, LinkConfig, Sim};

use crate::server_key;

#[derive(Clone, Copy, Default)]
struct Counts {
    /// Echoes received.
    echoes: u64,
    delivered: u64,
    lost: u64,
    connected: u32,
    ended: u32,
}

#[test]
fn a_thousand_clients_exchange_messages_at_60_hz_for_10_virtual_seconds() {
    const CLIENTS: usize = 1000;
    const FRAMES: u64 = 600; // 10 s at 60 Hz
    let mut sim = Sim::new(1000);
    sim.set_trace_capacity(1000); // the digest still covers every event
    // 20 ms each way, 1 % loss, no jitter: the clients tick together, so
    // their datagrams land together, and the simulator handles each
    // frame's thousand arrivals in one step.
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(20)).loss(0.01));
    let server = sim.add_server(EndpointConfig::default(), server_key(1000)).unwrap();
    // The server echoes every message (the game state goes back).
    let received = Rc::new(RefCell::new(0u64));
    let r = received.clone();
    sim.record_events(server, false);
    sim.set_handler(server, move |ep, _, ev| {
        if let Event::Message { conn, payload, .. } = ev {
            *r.borrow_mut() += 1;
            ep.send(*conn, payload, Delivery::Unreliable).unwrap();
        }
    });
    let counts = Rc::new(RefCell::new(vec![Counts::default(); CLIENTS]));
    let mut clients = Vec::new();
    for k in 0..CLIENTS {
        let c = sim.add_client(crate::v1(EndpointConfig::default())).unwrap();
        sim.record_events(c, false);
        let counts = counts.clone();
        sim.set_handler(c, move |_, _, ev| {
            let mut all = counts.borrow_mut();
            let me = &mut all[k];
            match ev {
                Event::Message { .. } => me.echoes += 1,
                Event::Delivered { .. } => me.delivered += 1,
                Event::Lost { .. } => me.lost += 1,
                Event::Connected { .. } => me.connected += 1,
                Event::ConnectFailed { .. } | Event::Disconnected { .. } => me.ended += 1,
                _ => {}
            }
        });
        let conn = sim.connect(c, server).unwrap();
        clients.push((c, conn));
    }
    let all_in = |s: &Sim| s.endpoint(server).connection_count() == CLIENTS;
    assert!(sim.run_until(all_in, Duration::from_secs(10)), "{} connected", sim.endpoint(server).connection_count());
    assert!(sim.run_until(|_| counts.borrow().iter().all(|c| c.connected == 1), Duration::from_secs(5)));

    // Each client sends its input every frame (Unreliable, as games do).
    let tick = Duration::from_micros(16_667);
    for frame in 0..FRAMES {
        for &(c, conn) in &clients {
            sim.send(c, conn, &frame.to_be_bytes(), Delivery::Unreliable).unwrap();
        }
        sim.run_for(tick);
    }
    sim.run_for(Duration::from_secs(2)); // every outcome is known
    eprintln!("1000 clients, {} virtual: {}", sim.now(), sim.stats());

    let sent = CLIENTS as u64 * FRAMES;
    let counts = counts.borrow();
    // Exactly one outcome per message, everywhere.
    for (k, c) in counts.iter().enumerate() {
        assert_eq!(c.delivered + c.lost, FRAMES, "client {k}");
        assert_eq!((c.connected, c.ended), (1, 0), "client {k}");
    }
    // 1 % lost each way: nearly everything arrived, and no more echoes
    // came back than the server sent.
    let received = *received.borrow();
    let echoes: u64 = counts.iter().map(|c| c.echoes).sum();
    assert!(received > sent * 95 / 100 && received <= sent, "{received} of {sent}");
    assert!(echoes > received * 95 / 100 && echoes <= received, "{echoes} of {received}");
    assert!(sim.stats().dropped(DropCause::Loss) > 0);
    assert_eq!(sim.endpoint(server).connection_count(), CLIENTS);
}
