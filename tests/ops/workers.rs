//! Worker threads on one port (SO_REUSEPORT): 400 clients over 2 workers.

use std::sync::atomic::Ordering;
use std::thread;

use mpgameserver::{Delivery, Duration, Event, Instant, RateLimit};
use mpgameserver_drivers::blocking::Client;
use mpgameserver_drivers::workers::{REUSEPORT, Workers, WorkersConfig};
use mpgameserver_drivers::{Clock, ServerConfig};

use crate::common::{Echo, key};

const CLIENTS: usize = 400;

#[test]
fn two_workers_carry_400_clients_and_every_echo_returns() {
    // Every client comes from 127.0.0.1: lift the per-address limits (as for players behind one NAT).
    let mut config = ServerConfig::default();
    let e = &mut config.endpoint;
    e.hello_rate = RateLimit::UNLIMITED;
    e.hello_rate_per_ip = RateLimit::UNLIMITED;
    e.hello_rate_per_prefix = RateLimit::UNLIMITED;
    e.max_pending_per_ip = e.max_pending_handshakes;
    e.max_pending_per_prefix = e.max_pending_handshakes;
    e.v2_hello_rate_per_source = RateLimit::UNLIMITED;
    e.v2_ecdh_rate = RateLimit::UNLIMITED;
    e.max_connections_per_ip = e.max_connections;
    let root = key();
    let public = root.public_key();
    let mut workers = Workers::bind(WorkersConfig::new(config, 2), "127.0.0.1:0", root).unwrap();
    let expected_workers = if REUSEPORT { 2 } else { 1 };
    assert_eq!(workers.len(), expected_workers);
    let addr = workers.local_addr();
    let metrics = workers.serve_metrics("127.0.0.1:0").unwrap();
    let stop = workers.stop_handle();
    let handlers: Vec<Echo> = (0..workers.len()).map(|_| Echo::default()).collect();
    let counts: Vec<_> = handlers.iter().map(|h| h.connects.clone()).collect();
    let server = thread::spawn(move || {
        let mut handlers = handlers.into_iter();
        workers.run(|_| handlers.next().unwrap())
    });

    let mut clients: Vec<Client> =
        (0..CLIENTS).map(|_| Client::connect(addr, public.clone(), Duration::from_secs(10)).unwrap()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(format!("client {i}").as_bytes(), Delivery::Reliable).unwrap();
    }
    let mut echoed = vec![false; CLIENTS];
    let clock = Clock::new();
    while echoed.iter().any(|e| !e) {
        assert!(
            clock.now() < Instant::from_secs(30),
            "{} of {CLIENTS} echoes within 30 s",
            echoed.iter().filter(|e| **e).count()
        );
        for (i, c) in clients.iter_mut().enumerate() {
            c.update();
            while let Some(event) = c.poll_event() {
                match event {
                    Event::Message { payload, .. } => {
                        assert_eq!(payload, format!("client {i}").as_bytes());
                        echoed[i] = true;
                    }
                    Event::Disconnected { reason, .. } => panic!("client {i} disconnected: {reason}"),
                    _ => {}
                }
            }
        }
        thread::sleep(std::time::Duration::from_millis(1));
    }

    // Both workers carry connections, and the metrics add them up.
    let per_worker: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    assert_eq!(per_worker.iter().sum::<u64>(), CLIENTS as u64, "{per_worker:?}");
    assert!(per_worker.iter().all(|&n| n > 0), "a worker carries no connection: {per_worker:?}");
    let snap = metrics.snapshot().unwrap();
    assert_eq!(snap.workers as usize, expected_workers);
    assert_eq!(snap.totals.connections, CLIENTS as u64);
    assert_eq!(snap.connections.len(), CLIENTS);
    let reported: Vec<u64> = snap.per_worker.iter().map(|w| w.connections).collect();
    assert_eq!(reported, per_worker);
    assert_eq!(snap.totals.messages_received, CLIENTS as u64);

    stop.stop();
    let handlers = server.join().unwrap();
    assert_eq!(handlers.len(), expected_workers);
    let shutdowns: u64 = handlers.iter().map(|h| h.shutdown_disconnects.load(Ordering::Relaxed)).sum();
    assert_eq!(shutdowns, CLIENTS as u64);
}
