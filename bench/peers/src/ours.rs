//! Ours (MPGS/1, against `examples/echo_server`) for the workloads that
//! `examples/` has no client for: bulk throughput and connect latency. The
//! load pattern itself is `examples/loadgen`, and the large-message echo
//! `examples/echo_client`. Clients are the blocking driver's, with its
//! default configuration.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use mpgameserver::{Delivery, Duration, Event, PublicKey};
use mpgameserver_drivers::blocking::Client;

use crate::common::{Clock, STAMP, Tally, Track, Window, report_bulk, report_connect};

fn read_key(path: &Path) -> Result<PublicKey, String> {
    PublicKey::read_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Workload 4: one connection, Reliable messages of `size` bytes, `window`
/// in flight, for `seconds`; echoed bytes per second.
pub fn bulk(server: SocketAddr, key: &Path, size: usize, window: u32, seconds: f64) -> Result<(), String> {
    let max = mpgameserver::EndpointConfig::default().max_message_size;
    if !(STAMP..=max).contains(&size) {
        return Err(format!("--size must be in {STAMP}..={max}"));
    }
    let mut client = Client::connect(server, read_key(key)?, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let clock = Clock::new();
    let start = clock.us();
    let end = start + (seconds * 1e6) as u64;
    let counted = Window { start, end };
    let (mut track, mut tally) = (Track::new(0), Tally::default());
    let mut msg = vec![0; size];
    let mut lost = 0u64;
    while clock.us() < end {
        while track.next_seq - (tally.echoed + tally.corrupt + lost) < u64::from(window) {
            track.next_message(&mut msg, clock.us(), counted, &mut tally);
            if client.send(&msg, Delivery::Reliable).is_err() {
                // The send queue is full: take the message back, wait for acknowledgements.
                track.next_seq -= 1;
                tally.sent -= 1;
                break;
            }
        }
        client.update_wait(Duration::from_millis(1));
        while let Some(event) = client.poll_event() {
            match event {
                Event::Message { payload, .. } => track.on_echo(&payload, clock.us(), counted, &mut tally),
                Event::Lost { .. } => lost += 1,
                Event::Disconnected { reason, .. } => return Err(format!("the connection ended: {reason}")),
                _ => {}
            }
        }
    }
    let elapsed = (clock.us() - start) as f64 / 1e6;
    client.disconnect(Duration::from_millis(500));
    report_bulk(tally.echoed * size as u64, elapsed, size, tally.corrupt);
    Ok(())
}

/// Workload 5: `clients` handshakes, `concurrency` at a time (one thread
/// per handshake in flight, each with the blocking client).
pub fn connect(server: SocketAddr, key: &Path, clients: u32, concurrency: u32, timeout: f64) -> Result<(), String> {
    let key = read_key(key)?;
    let timeout = Duration::try_from_secs_f64(timeout).map_err(|_| "--connect-timeout must be seconds")?;
    let clock = Clock::new();
    let next = AtomicU32::new(0);
    let tally = Mutex::new(Tally::default());
    let open = Mutex::new(Vec::new());
    let start = clock.us();
    std::thread::scope(|scope| {
        for _ in 0..concurrency.clamp(1, clients.max(1)) {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < clients {
                    let started = clock.us();
                    let result = Client::connect(server, key.clone(), timeout);
                    let done = clock.us();
                    // A poisoned lock means another thread panicked: the run is void anyway.
                    let mut t = tally.lock().expect("no thread panics holding the tally");
                    match result {
                        Ok(client) => {
                            t.on_connected(started, done);
                            open.lock().expect("no thread panics holding the list").push(client);
                        }
                        Err(e) => {
                            if t.failed == 0 {
                                eprintln!("ours connect: a handshake failed: {e}");
                            }
                            t.failed += 1;
                        }
                    }
                }
            });
        }
    });
    let mut tally = tally.into_inner().map_err(|_| "a connect thread panicked")?;
    let elapsed = tally.last_connected.unwrap_or(start).saturating_sub(start) as f64 / 1e6;
    // Dropping a client sends its DISCONNECT.
    drop(open);
    report_connect(clients, concurrency, &mut tally, elapsed);
    Ok(())
}
