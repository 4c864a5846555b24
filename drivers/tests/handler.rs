//! Client-side game logic on the blocking driver (`Client::dispatch` and
//! `Client::tick`), against a server whose handler broadcasts and stops
//! itself through its context. Loopback only, bounded in time.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::thread;

use mpgameserver::{ConnectionId, Context, Delivery, Duration, EventHandler, Rng, ServerKey};
use mpgameserver_drivers::blocking::{Client, Server};
use mpgameserver_drivers::{ServerConfig, os_seed};

/// Relays each message to the other clients; stops the server once it has
/// relayed `stop_after` messages.
struct Relay {
    relayed: u32,
    stop_after: u32,
    shutdown: bool,
}

impl EventHandler for Relay {
    fn handle_message(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, payload: Vec<u8>) {
        let b = ctx.broadcast_except(conn, &payload, Delivery::Reliable).unwrap();
        self.relayed += u32::try_from(b.sent).unwrap();
        if self.relayed >= self.stop_after {
            ctx.stop();
        }
    }

    fn shutdown(&mut self, _ctx: &mut Context<'_>) {
        self.shutdown = true;
    }
}

/// Counts what the driver hands it; says one line per tick, three in all.
#[derive(Default)]
struct Player {
    connects: u32,
    conn: Option<ConnectionId>,
    heard: Vec<Vec<u8>>,
    said: u32,
    outcomes: u32,
}

impl EventHandler for Player {
    fn connect(&mut self, _ctx: &mut Context<'_>, conn: ConnectionId) {
        self.connects += 1;
        self.conn = Some(conn);
    }

    fn update(&mut self, ctx: &mut Context<'_>, _dt: Duration) {
        if let Some(conn) = self.conn
            && self.said < 3
        {
            ctx.send(conn, format!("line {}", self.said).as_bytes(), Delivery::Reliable.unreported()).unwrap();
            self.said += 1;
        }
    }

    fn handle_message(&mut self, _ctx: &mut Context<'_>, _conn: ConnectionId, payload: Vec<u8>) {
        self.heard.push(payload);
    }

    fn delivered(&mut self, _ctx: &mut Context<'_>, _conn: ConnectionId, _id: mpgameserver::MessageId) {
        self.outcomes += 1;
    }

    fn lost(&mut self, _ctx: &mut Context<'_>, _conn: ConnectionId, _id: mpgameserver::MessageId) {
        self.outcomes += 1;
    }
}

#[test]
fn client_side_handlers_run_on_the_driver_and_a_handler_stops_its_server() {
    let key = ServerKey::generate(&mut Rng::new(os_seed().unwrap()));
    let pinned = key.public_key();
    let mut config = ServerConfig::default();
    config.tick_rate = 30;
    let mut server = Server::bind_with(config, "127.0.0.1:0", key).unwrap();
    let addr = server.local_addr().unwrap();
    let stop = server.stop_handle();
    let thread = thread::spawn(move || {
        let mut relay = Relay { relayed: 0, stop_after: 3, shutdown: false };
        server.run(&mut relay);
        relay
    });

    let mut speaker = Client::connect(addr, pinned.clone(), Duration::from_secs(5)).unwrap();
    let mut listener = Client::connect(addr, pinned, Duration::from_secs(5)).unwrap();
    let (mut a, mut b) = (Player::default(), Player::default());
    let start = speaker.now();
    while b.heard.len() < 3 && speaker.now() - start < Duration::from_secs(10) {
        speaker.dispatch(&mut a);
        listener.dispatch(&mut b);
        speaker.tick(&mut a, Duration::from_millis(20));
        listener.update_wait(Duration::from_millis(20));
    }
    assert_eq!((a.connects, b.connects), (1, 1), "connect is told once");
    assert_eq!(b.heard.len(), 3, "{:?}", b.heard);
    // Sent unreported: no delivered/lost callback.
    speaker.dispatch(&mut a);
    assert_eq!(a.outcomes, 0);

    // The relay stopped the server itself after three lines.
    let relay = thread.join().unwrap();
    assert!(stop.is_stopped());
    assert!(relay.shutdown && relay.relayed == 3);
}
