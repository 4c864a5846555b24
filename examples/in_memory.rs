//! A server and three clients exchange messages over a lossy in-memory
//! network, in one process and in virtual time: no sockets, no sleeping.
//!
//! Each client connects with the server's pinned public key and sends 30
//! messages of 10 B to 100 KB in all three delivery modes; the server echoes
//! every message it receives back (Reliable). The "network" is a `VecDeque`
//! with a 20 ms one-way delay that drops about 5 % of datagrams. Everything
//! is seeded, so every run prints the same numbers. A client disconnects once
//! all its Reliable messages are back. Exit status 0 means every Reliable
//! message came back intact.
//!
//! Run it with `cargo run --release --example in_memory`.

use std::collections::{BTreeSet, VecDeque};
use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;

use mpgameserver::{
    ConnectionId, ConnectionMetrics, Delivery, DropReason, Duration, Endpoint, EndpointConfig, Event, Instant,
    MAX_DATAGRAM, Rng, Seed, ServerKey,
};

const CLIENTS: u8 = 3;
const MESSAGES: u32 = 30; // per client, one every SEND_EVERY
const SEND_EVERY: Duration = Duration::from_millis(50);
const SIZES: [usize; 7] = [10, 100, 1_000, 1_433, 10_000, 100, 100_000]; // 1 433: just too big for one datagram
const MODES: [Delivery; 3] = [Delivery::Reliable, Delivery::Unreliable, Delivery::BestEffort];
const LATENCY: Duration = Duration::from_millis(20);
const DROP_PERCENT: u32 = 5;
const DISCONNECT_BY: Instant = Instant::from_secs(20); // even if echoes are missing
const GIVE_UP: Instant = Instant::from_secs(30);

/// Message `n` of client `c`: its size and mode cycle through SIZES and
/// MODES; its bytes start with (c, n) so the echo can be checked.
fn message(c: u8, n: u32) -> (Vec<u8>, Delivery) {
    let mut bytes: Vec<u8> = (0..SIZES[n as usize % SIZES.len()]).map(|i| (i as u32 * 7 + n) as u8 ^ c).collect();
    bytes[0] = c;
    bytes[1..5].copy_from_slice(&n.to_be_bytes());
    (bytes, MODES[n as usize % MODES.len()])
}

struct Client {
    id: u8,
    addr: SocketAddr,
    ep: Endpoint,
    conn: ConnectionId,
    sent: u32,
    echoes: BTreeSet<u32>, // message numbers that came back intact
    bad_echoes: u32,       // corrupted or duplicated echoes (should stay 0)
    closed: bool,
    metrics: Option<(ConnectionMetrics, ConnectionMetrics)>, // (client side, server side)
}

impl Client {
    fn reliable_sent(&self) -> usize {
        (0..self.sent).filter(|&n| message(self.id, n).1 == Delivery::Reliable).count()
    }
    fn reliable_back(&self) -> usize {
        self.echoes.iter().filter(|&&n| message(self.id, n).1 == Delivery::Reliable).count()
    }
}

fn print_row(name: &str, m: &ConnectionMetrics) {
    let srtt = m.srtt.map_or("-".into(), |d| format!("{:.1}ms", d.as_secs_f64() * 1e3));
    let dgrams = format!("{}/{}", m.datagrams_sent, m.datagrams_received);
    let msgs = format!("{}/{}/{}/{}", m.messages_sent, m.messages_acked, m.messages_lost, m.messages_retransmitted);
    println!("{name:<20} {srtt:>8} {dgrams:>14} {msgs:>26}");
}

fn print_stats(name: &str, ep: &Endpoint) {
    let s = ep.stats();
    let reasons = DropReason::ALL.iter().filter(|&&r| s.dropped(r) > 0);
    let reasons: String = reasons.map(|&r| format!(" {}={}", r.name(), s.dropped(r))).collect();
    let (received, sent, dropped) = (s.datagrams_received, s.datagrams_sent, s.dropped_total());
    println!("{name:<10} received {received:>5}, sent {sent:>5}, dropped {dropped}{reasons}");
}

fn main() -> Result<ExitCode, Box<dyn Error>> {
    let server_addr = SocketAddr::from(([10, 0, 0, 1], 4000));
    let mut cfg = EndpointConfig::default();
    // Pacing: by default a connection sends one datagram per 1/60 s, what a
    // 60 Hz reference peer reading one datagram per frame can take; a 100 KB
    // message (73 datagrams) would need 1.2 s. Both ends here are this crate,
    // so send one every 2 ms on average (`send_interval`, the sustained rate)
    // and up to 8 back to back after a pause (`send_burst`, the bucket depth).
    cfg.send_interval = Duration::from_millis(2);
    cfg.send_burst = 8;

    // The server's long-term key; clients pin its public half.
    let server_key = ServerKey::generate(&mut Rng::new(Seed::from_u64(1)));
    let pinned = server_key.public_key();
    let mut server = Endpoint::server(cfg.clone(), server_key, Seed::from_u64(2))?;

    let mut now = Instant::ZERO;
    let mut clients = Vec::new();
    for id in 1..=CLIENTS {
        let addr = SocketAddr::from(([10, 0, 0, 1 + id], 5000));
        let mut ep = Endpoint::client(cfg.clone(), Seed::from_u64(10 + u64::from(id)))?;
        let conn = ep.connect(now, server_addr, pinned.clone())?;
        let (sent, echoes, bad_echoes, closed, metrics) = (0, BTreeSet::new(), 0, false, None);
        clients.push(Client { id, addr, ep, conn, sent, echoes, bad_echoes, closed, metrics });
    }

    // The network: (arrival time, from, to, bytes). One fixed delay keeps it in arrival order.
    let mut net: VecDeque<(Instant, SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new();
    let mut loss = Rng::new(Seed::from_u64(99));
    let (mut carried, mut dropped) = (0u32, 0u32);
    let mut buf = [0u8; MAX_DATAGRAM];

    while now < GIVE_UP {
        // Feed the inputs: the datagrams that have arrived, then the timers.
        // (An early handle_timeout does nothing, so calling it every time is fine.)
        while net.front().is_some_and(|d| d.0 <= now) {
            let Some((_, from, to, mut bytes)) = net.pop_front() else { break };
            match clients.iter_mut().find(|c| c.addr == to) {
                Some(c) => c.ep.handle_datagram(now, from, &mut bytes),
                None => server.handle_datagram(now, from, &mut bytes),
            }
        }
        server.handle_timeout(now);
        clients.iter_mut().for_each(|c| c.ep.handle_timeout(now));

        // Drain the events and react: the server echoes, the clients check
        // their echoes, send on schedule and disconnect when done. (Draining
        // events before transmits lets replies leave in the same instant.)
        while let Some(event) = server.poll_event() {
            match event {
                Event::Message { conn, payload, .. } => {
                    server.send(conn, &payload, Delivery::Reliable)?;
                }
                Event::Connected { conn } => {
                    let from = server.connection(conn).map_or(String::new(), |c| format!(" from {}", c.remote()));
                    println!("{now} server: {event:?}{from}");
                }
                Event::Disconnected { .. } => println!("{now} server: {event:?}"),
                _ => {} // Delivered / Lost of the echoes
            }
        }
        for c in &mut clients {
            while let Some(event) = c.ep.poll_event() {
                match event {
                    Event::Message { ref payload, .. } => {
                        // Intact means: byte for byte what was sent, and only once.
                        let n = payload.get(1..5).map_or(u32::MAX, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                        let intact = n < MESSAGES && *payload == message(c.id, n).0;
                        if !(intact && c.echoes.insert(n)) {
                            c.bad_echoes += 1;
                        }
                    }
                    Event::Delivered { .. } | Event::Lost { .. } => {} // counted in the metrics
                    _ => println!("{now} client {}: {event:?}", c.id),
                }
                c.closed |= matches!(event, Event::Disconnected { .. } | Event::ConnectFailed { .. });
            }
            if c.closed {
                continue;
            }
            // Messages sent before the handshake completes wait for it.
            while c.sent < MESSAGES && now >= Instant::ZERO + SEND_EVERY * c.sent {
                let (bytes, mode) = message(c.id, c.sent);
                c.ep.send(c.conn, &bytes, mode)?;
                c.sent += 1;
            }
            // Done: keep the final metrics of both sides, then disconnect gracefully.
            let done = c.sent == MESSAGES && c.reliable_back() == c.reliable_sent();
            if c.metrics.is_none() && (done || now >= DISCONNECT_BY) {
                let mine = c.ep.connection(c.conn).map(|conn| conn.metrics().clone());
                let theirs = server.connections().filter_map(|id| server.connection(id)).find(|s| s.remote() == c.addr);
                c.metrics = mine.zip(theirs.map(|s| s.metrics().clone()));
                c.ep.disconnect(now, c.conn)?;
            }
        }

        // Drain the transmits: every datagram due now goes onto the network, or is lost.
        let senders = clients.iter_mut().map(|c| (c.addr, &mut c.ep)).chain([(server_addr, &mut server)]);
        for (from, ep) in senders {
            while let Some(t) = ep.poll_transmit(now, &mut buf) {
                if loss.u32() % 100 < DROP_PERCENT {
                    dropped += 1;
                } else {
                    carried += 1;
                    net.push_back((now + LATENCY, from, t.destination, buf[..t.len].to_vec()));
                }
            }
        }

        // Wait, in virtual time, for the next arrival, timer or scheduled send.
        let mut wake: Vec<Instant> = clients.iter_mut().filter_map(|c| c.ep.poll_timeout()).collect();
        wake.extend(server.poll_timeout());
        wake.extend(net.front().map(|d| d.0));
        wake.extend(clients.iter().filter(|c| c.sent < MESSAGES).map(|c| Instant::ZERO + SEND_EVERY * c.sent));
        match wake.into_iter().min() {
            Some(t) => now = t.max(now + Duration::from_micros(1)), // never stand still
            None => break,                                          // nothing left to do
        }
    }

    println!("\n{now}: done; the network delivered {carried} datagrams and dropped {dropped}\n");
    println!("{:<20} {:>8} {:>14} {:>26}", "connection", "srtt", "datagrams", "messages");
    println!("{:<20} {:>8} {:>14} {:>26}", "(at disconnect)", "", "sent/recv", "sent/acked/lost/resent");
    for c in &clients {
        if let Some((mine, theirs)) = &c.metrics {
            print_row(&format!("client {} -> server", c.id), mine);
            print_row(&format!("server -> client {}", c.id), theirs);
        }
    }
    println!("\nendpoint counters (received datagrams that were dropped, by reason):");
    print_stats("server", &server);
    for c in &clients {
        print_stats(&format!("client {}", c.id), &c.ep);
    }

    let mut ok = true;
    println!();
    for c in &clients {
        let (sent, back) = (c.reliable_sent(), c.reliable_back());
        let others = c.echoes.len() - back;
        println!("client {}: {back}/{sent} Reliable echoes intact, {others} other echoes, {} bad", c.id, c.bad_echoes);
        if !c.closed {
            println!("client {}: the connection did not close", c.id);
        }
        ok &= c.sent == MESSAGES && back == sent && c.bad_echoes == 0 && c.closed;
    }
    if ok {
        println!("OK: every Reliable message came back intact");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("FAILED: a Reliable message did not come back intact, or a client did not close");
        Ok(ExitCode::FAILURE)
    }
}
