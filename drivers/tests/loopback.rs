//! Both drivers over real sockets on loopback (127.0.0.1 and ::1). Every
//! test bounds its own waits, so a failure ends in seconds, not a hang.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use mpgameserver::{
    ConnectFailure, ConnectionId, Delivery, DisconnectReason, Duration, Event, Instant, ProtocolVersion, PublicKey,
    Rng, ServerKey,
};
use mpgameserver_drivers::blocking::{Client, Server};
use mpgameserver_drivers::{
    ClientConfig, Clock, ConnectError, DisconnectOutcome, EventHandler, ServerConfig, ServerContext, StopHandle,
    os_seed,
};

/// What the test server saw.
#[derive(Debug, Default)]
struct Log {
    started: bool,
    connects: Vec<ConnectionId>,
    /// The protocol of each connection, in connect order.
    versions: Vec<ProtocolVersion>,
    disconnects: Vec<(ConnectionId, DisconnectReason)>,
    messages: usize,
    updates: u32,
    shutdown: bool,
}

/// Echoes every message (Reliable), except `kick me`, which disconnects
/// the sender.
struct Echo(Arc<Mutex<Log>>);

impl EventHandler for Echo {
    fn starting(&mut self, _: &mut ServerContext<'_>) {
        self.0.lock().unwrap().started = true;
    }
    fn connect(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId) {
        let mut log = self.0.lock().unwrap();
        log.connects.push(conn);
        log.versions.extend(ctx.connection(conn).map(|c| c.version()));
    }
    fn disconnect(&mut self, _: &mut ServerContext<'_>, conn: ConnectionId, reason: DisconnectReason) {
        self.0.lock().unwrap().disconnects.push((conn, reason));
    }
    fn update(&mut self, _: &mut ServerContext<'_>, _: Duration) {
        self.0.lock().unwrap().updates += 1;
    }
    fn handle_message(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId, payload: Vec<u8>) {
        self.0.lock().unwrap().messages += 1;
        if payload == b"kick me" {
            ctx.disconnect(conn).unwrap();
        } else {
            ctx.send(conn, &payload, Delivery::Reliable).unwrap();
        }
    }
    fn shutdown(&mut self, _: &mut ServerContext<'_>) {
        self.0.lock().unwrap().shutdown = true;
    }
}

struct TestServer {
    addr: SocketAddr,
    key: PublicKey,
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
    log: Arc<Mutex<Log>>,
}

impl TestServer {
    /// A blocking server on `bind`, or `None` if that address cannot be
    /// bound (no IPv6 loopback on this host).
    fn start(bind: &str) -> Option<TestServer> {
        TestServer::start_with(bind, ServerConfig::default())
    }

    fn start_with(bind: &str, config: ServerConfig) -> Option<TestServer> {
        let root = ServerKey::generate(&mut Rng::new(os_seed().unwrap()));
        let key = root.public_key();
        let mut server = match Server::bind_with(config, bind, root) {
            Ok(server) => server,
            Err(e) => {
                eprintln!("skipped: cannot bind {bind}: {e}");
                return None;
            }
        };
        let addr = server.local_addr().unwrap();
        let stop = server.stop_handle();
        let log = Arc::new(Mutex::new(Log::default()));
        let mut handler = Echo(log.clone());
        let thread = Some(thread::spawn(move || server.run(&mut handler)));
        Some(TestServer { addr, key, stop, thread, log })
    }

    /// Stops the server and waits for `run` to return (bounded).
    fn stop(&mut self) {
        self.stop.stop();
        let clock = Clock::new();
        let thread = self.thread.take().unwrap();
        while !thread.is_finished() {
            assert!(clock.now() < Instant::from_secs(5), "the server did not stop within 5 s");
            thread::sleep(std::time::Duration::from_millis(5));
        }
        thread.join().unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

const SECOND: Duration = Duration::from_secs(1);

/// Waits (bounded) for the next message on `client`, skipping other events.
fn next_message(client: &mut Client, within: Duration) -> Vec<u8> {
    let clock = Clock::new();
    loop {
        while let Some(event) = client.poll_event() {
            match event {
                Event::Message { payload, .. } => return payload,
                Event::Disconnected { reason, .. } => panic!("disconnected while waiting: {reason}"),
                _ => {}
            }
        }
        assert!(clock.now() < Instant::ZERO + within, "no message within {within:?}");
        client.update_wait(Duration::from_millis(50));
    }
}

/// Waits (bounded) for the client's `Disconnected` event and returns its reason.
fn next_disconnect(client: &mut Client, within: Duration) -> DisconnectReason {
    let clock = Clock::new();
    loop {
        client.update_wait(Duration::from_millis(20));
        while let Some(event) = client.poll_event() {
            if let Event::Disconnected { reason, .. } = event {
                return reason;
            }
        }
        assert!(clock.now() < Instant::ZERO + within, "no Disconnected event within {within:?}");
    }
}

/// Waits (bounded) until `cond` holds on the server's log.
fn wait_for(log: &Mutex<Log>, within: Duration, cond: impl Fn(&Log) -> bool) {
    let clock = Clock::new();
    while !cond(&log.lock().unwrap()) {
        assert!(clock.now() < Instant::ZERO + within, "condition not met within {within:?}: {:?}", log.lock().unwrap());
        thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn payload(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31) ^ salt ^ (i >> 8) as u8).collect()
}

fn echo_round_trip(bind: &str, protocol: ProtocolVersion) {
    let Some(mut server) = TestServer::start(bind) else { return };
    let mut config = ClientConfig::default();
    config.endpoint.protocol = protocol;
    let mut client = Client::connect_with(config, server.addr, server.key.clone(), 2 * SECOND).unwrap();
    assert!(client.is_connected());
    assert_eq!(client.connection().unwrap().version(), protocol);
    for (i, (len, mode)) in
        [(0, Delivery::Reliable), (100, Delivery::Unreliable), (1433, Delivery::BestEffort), (5000, Delivery::Reliable)]
            .into_iter()
            .enumerate()
    {
        let sent = payload(len, i as u8);
        client.send(&sent, mode).unwrap();
        assert_eq!(next_message(&mut client, 2 * SECOND), sent, "echo of {len} bytes ({mode:?})");
    }
    assert_eq!(client.disconnect(2 * SECOND), DisconnectOutcome::Confirmed);
    assert!(!client.is_connected());
    wait_for(&server.log, 2 * SECOND, |l| l.disconnects.len() == 1);
    let log = server.log.lock().unwrap();
    assert!(log.started);
    assert_eq!(log.connects.len(), 1);
    assert_eq!(log.versions, vec![protocol], "the server's side speaks the client's protocol");
    assert_eq!(log.disconnects, vec![(log.connects[0], DisconnectReason::Peer)]);
    drop(log);
    server.stop();
    assert!(server.log.lock().unwrap().shutdown);
}

#[test]
fn echo_over_ipv4() {
    echo_round_trip("127.0.0.1:0", ProtocolVersion::V1);
}

#[test]
fn echo_over_ipv6() {
    echo_round_trip("[::1]:0", ProtocolVersion::V1);
}

/// A driver client that asks for MPGS/2 gets it from the blocking server
/// (which answers both on one port, with no configuration): every size and
/// mode echoes, and the disconnect is confirmed.
#[test]
fn echo_over_mpgs2() {
    echo_round_trip("127.0.0.1:0", ProtocolVersion::V2);
}

/// A full MPGS/2 server's REJECT reaches the driver as the refusal it is,
/// at once, not as a timeout.
#[test]
fn a_v2_reject_is_a_refusal_not_a_timeout() {
    let mut config = ServerConfig::default();
    config.endpoint.max_connections = 1;
    let Some(mut server) = TestServer::start_with("127.0.0.1:0", config) else { return };
    let mut v2 = ClientConfig::default();
    v2.endpoint.protocol = ProtocolVersion::V2;
    let first = Client::connect_with(v2.clone(), server.addr, server.key.clone(), 2 * SECOND).unwrap();
    let clock = Clock::new();
    let Err(err) = Client::connect_with(v2, server.addr, server.key.clone(), 10 * SECOND) else {
        panic!("a full server admitted a second client");
    };
    assert!(clock.now() < Instant::from_secs(5), "refused at once, not at the timeout");
    assert!(matches!(err, ConnectError::Rejected { code: 1, .. }), "{err:?}");
    assert_eq!(err.failure(), Some(ConnectFailure::Rejected(1)));
    assert!(err.to_string().contains("full"), "{err}");
    drop(first);
    server.stop();
}

#[test]
fn one_mib_message_both_ways() {
    let mut server = TestServer::start("127.0.0.1:0").unwrap();
    let mut client = Client::connect(server.addr, server.key.clone(), 2 * SECOND).unwrap();
    let big = payload(1 << 20, 7);
    client.send(&big, Delivery::Reliable).unwrap();
    let echo = next_message(&mut client, 8 * SECOND);
    assert!(echo == big, "the 1 MiB echo differs");
    let m = client.connection().unwrap().metrics().clone();
    assert_eq!(m.messages_acked, 1);
    client.disconnect(SECOND);
    server.stop();
}

#[test]
fn server_side_disconnect_reaches_the_client() {
    let mut server = TestServer::start("127.0.0.1:0").unwrap();
    let mut client = Client::connect(server.addr, server.key.clone(), 2 * SECOND).unwrap();
    client.send(b"kick me", Delivery::Reliable).unwrap();
    let reason = next_disconnect(&mut client, 3 * SECOND);
    assert_eq!(reason, DisconnectReason::Peer);
    assert!(!client.is_connected());
    assert_eq!(client.disconnect(SECOND), DisconnectOutcome::AlreadyClosed);
    assert!(client.send(b"late", Delivery::Reliable).is_err());
    wait_for(&server.log, 2 * SECOND, |l| l.disconnects.len() == 1);
    assert_eq!(server.log.lock().unwrap().disconnects[0].1, DisconnectReason::Local);
    server.stop();
}

#[test]
fn disconnect_without_waiting_still_closes() {
    let mut server = TestServer::start("127.0.0.1:0").unwrap();
    // MPGS/1's DISCONNECT is confirmed by the peer (PROTOCOL.md §13); an
    // MPGS/2 close is reported when it begins (MPGS2.md §6.4).
    let mut config = ClientConfig::default();
    config.endpoint.protocol = ProtocolVersion::V1;
    let mut client = Client::connect_with(config, server.addr, server.key.clone(), 2 * SECOND).unwrap();
    assert_eq!(client.disconnect(Duration::ZERO), DisconnectOutcome::Unconfirmed);
    assert!(!client.is_connected());
    // The DISCONNECT went out; the confirmation still arrives with later updates.
    let reason = next_disconnect(&mut client, 3 * SECOND);
    assert_eq!(reason, DisconnectReason::Local);
    assert_eq!(client.disconnect(SECOND), DisconnectOutcome::AlreadyClosed);
    wait_for(&server.log, 2 * SECOND, |l| l.disconnects.len() == 1);
    assert_eq!(server.log.lock().unwrap().disconnects[0].1, DisconnectReason::Peer);
    server.stop();
}

#[test]
fn stop_reports_every_client_disconnected() {
    let mut server = TestServer::start("127.0.0.1:0").unwrap();
    let mut a = Client::connect(server.addr, server.key.clone(), 2 * SECOND).unwrap();
    let mut b = Client::connect(server.addr, server.key.clone(), 2 * SECOND).unwrap();
    wait_for(&server.log, 2 * SECOND, |l| l.connects.len() == 2);
    // The clients keep their loops running while the server stops.
    let stopping = thread::spawn(move || {
        let clock = Clock::new();
        let mut ended = [None, None];
        while ended.iter().any(Option::is_none) && clock.now() < Instant::from_secs(4) {
            for (client, end) in [&mut a, &mut b].into_iter().zip(&mut ended) {
                client.update_wait(Duration::from_millis(5));
                while let Some(event) = client.poll_event() {
                    if let Event::Disconnected { reason, .. } = event {
                        *end = Some(reason);
                    }
                }
            }
        }
        ended
    });
    server.stop();
    let log = server.log.lock().unwrap();
    assert!(log.shutdown);
    assert_eq!(log.disconnects.len(), 2, "{log:?}");
    assert!(log.disconnects.iter().all(|&(_, reason)| reason == DisconnectReason::Shutdown));
    drop(log);
    assert_eq!(stopping.join().unwrap(), [Some(DisconnectReason::Peer); 2]);
}

#[test]
fn server_ticks_without_clients() {
    let mut config = ServerConfig::default();
    config.tick_rate = 100;
    let mut server = TestServer::start_with("127.0.0.1:0", config).unwrap();
    thread::sleep(std::time::Duration::from_millis(300));
    server.stop();
    let log = server.log.lock().unwrap();
    // About 30 at 100 Hz; the bound only proves the loop does not block.
    assert!(log.updates >= 10, "{} updates in 0.3 s at 100 Hz", log.updates);
    assert!(log.connects.is_empty() && log.shutdown);
}

#[test]
fn connect_times_out_against_a_closed_port() {
    // A port that was free a moment ago: nothing answers there.
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let key = ServerKey::generate(&mut Rng::new(os_seed().unwrap())).public_key();
    let clock = Clock::new();
    let err = Client::connect(closed, key, Duration::from_millis(400)).unwrap_err();
    let took = clock.now() - Instant::ZERO;
    assert!(matches!(err, ConnectError::TimedOut { .. }), "{err:?}");
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(3), "{took:?}");
    assert!(err.to_string().contains("no answer from"), "{err}");
}

#[test]
fn wrong_pinned_key_fails_clearly() {
    let mut server = TestServer::start("127.0.0.1:0").unwrap();
    let other = ServerKey::generate(&mut Rng::new(os_seed().unwrap())).public_key();
    let err = Client::connect(server.addr, other, Duration::from_millis(600)).unwrap_err();
    assert!(matches!(err, ConnectError::WrongServerKey { .. }), "{err:?}");
    assert!(err.to_string().contains("pinned key"), "{err}");
    assert!(server.log.lock().unwrap().connects.is_empty());
    server.stop();
}

#[test]
fn junk_sent_to_the_client_is_ignored() {
    let mut server = TestServer::start("127.0.0.1:0").unwrap();
    let mut client = Client::connect(server.addr, server.key.clone(), 2 * SECOND).unwrap();
    let port = client.local_addr().unwrap().port();
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = Rng::new(os_seed().unwrap());
    let mut buf = [0u8; 3000];
    rng.fill(&mut buf);
    for len in [0, 1, 19, 20, 36, 100, 1472, 2048, 3000] {
        junk.send_to(&buf[..len], ("127.0.0.1", port)).unwrap();
    }
    // Random bytes of every length (empty, shorter than a header, up to
    // larger than any datagram) from an address that is not the server.
    client.send(b"still there?", Delivery::Reliable).unwrap();
    assert_eq!(next_message(&mut client, 2 * SECOND), b"still there?");
    let dropped = client.endpoint().stats().dropped_total();
    let stats = client.driver_stats();
    assert_eq!(stats.oversized, 1, "{stats:?}");
    assert!(dropped >= 8, "dropped {dropped}: {}", client.endpoint().stats());
    assert!(client.is_connected());
    assert_eq!(client.disconnect(2 * SECOND), DisconnectOutcome::Confirmed);
    server.stop();
}

#[cfg(feature = "smol")]
mod smol_driver {
    use super::*;
    use mpgameserver_drivers::smol;

    fn start(bind: &str) -> Option<TestServer> {
        let root = ServerKey::generate(&mut Rng::new(os_seed().unwrap()));
        let key = root.public_key();
        let mut server = match smol::Server::bind(bind, root) {
            Ok(server) => server,
            Err(e) => {
                eprintln!("skipped: cannot bind {bind}: {e}");
                return None;
            }
        };
        let addr = server.local_addr().unwrap();
        let stop = server.stop_handle();
        let log = Arc::new(Mutex::new(Log::default()));
        let mut handler = Echo(log.clone());
        let thread = Some(thread::spawn(move || ::smol::block_on(server.run(&mut handler))));
        Some(TestServer { addr, key, stop, thread, log })
    }

    async fn next_message(client: &mut smol::Client) -> Vec<u8> {
        loop {
            match client.next_event().await {
                Some(Event::Message { payload, .. }) => return payload,
                Some(Event::Disconnected { reason, .. }) => panic!("disconnected: {reason}"),
                Some(_) => {}
                None => panic!("closed"),
            }
        }
    }

    fn echo(bind: &str) {
        let Some(mut server) = start(bind) else { return };
        ::smol::block_on(async {
            let mut client = smol::Client::connect(server.addr, server.key.clone(), 2 * SECOND).await.unwrap();
            for (len, mode) in [(0, Delivery::Unreliable), (1432, Delivery::BestEffort), (300_000, Delivery::Reliable)]
            {
                let sent = payload(len, 3);
                client.send(&sent, mode).unwrap();
                let got = async_io::Timer::after(std::time::Duration::from_secs(5));
                let echo = futures_lite::future::or(async { Some(next_message(&mut client).await) }, async {
                    got.await;
                    None
                })
                .await;
                assert!(echo.as_deref() == Some(&sent[..]), "echo of {len} bytes");
            }
            assert_eq!(client.disconnect(2 * SECOND).await, DisconnectOutcome::Confirmed);
            // The Disconnected event stays queued like every other one; then the stream ends.
            let mut rest = Vec::new();
            while let Some(event) = client.next_event().await {
                rest.push(event);
            }
            assert!(
                matches!(rest.last(), Some(Event::Disconnected { reason: DisconnectReason::Local, .. })),
                "{rest:?}"
            );
        });
        server.stop();
        let log = server.log.lock().unwrap();
        assert_eq!(log.connects.len(), 1);
        assert_eq!(log.disconnects.len(), 1);
        assert!(log.shutdown);
    }

    #[test]
    fn smol_echo_over_ipv4() {
        echo("127.0.0.1:0");
    }

    #[test]
    fn smol_echo_over_ipv6() {
        echo("[::1]:0");
    }

    #[test]
    fn smol_wrong_key_and_closed_port() {
        let mut server = start("127.0.0.1:0").unwrap();
        let addr = server.addr;
        let other = ServerKey::generate(&mut Rng::new(os_seed().unwrap())).public_key();
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        ::smol::block_on(async {
            let err = smol::Client::connect(addr, other.clone(), Duration::from_millis(500)).await.unwrap_err();
            assert!(matches!(err, ConnectError::WrongServerKey { .. }), "{err:?}");
            let err = smol::Client::connect(closed, other, Duration::from_millis(300)).await.unwrap_err();
            assert!(matches!(err, ConnectError::TimedOut { .. }), "{err:?}");
        });
        server.stop();
    }
}
