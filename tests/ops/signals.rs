//! SIGTERM to a running example server with connected clients.

use mpgameserver::{DisconnectReason, Duration, Event, Instant};
use mpgameserver_drivers::Clock;
use mpgameserver_drivers::blocking::Client;

use crate::common::{Process, echo_round, example, key};

const CLIENTS: usize = 8;

#[test]
fn sigterm_stops_the_echo_server_and_every_client_sees_a_clean_disconnect() {
    let dir = std::env::temp_dir().join(format!("mpgs-ops-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = key();
    root.write_pem_file(dir.join("root.key")).unwrap();
    let key_file = dir.join("root.key");
    let mut server = Process::spawn(
        &example("echo_server"),
        &["--bind", "127.0.0.1:0", "--key", key_file.to_str().unwrap(), "--workers", "2", "--metrics", "127.0.0.1:0"],
    );
    let addr = server.address_after("echo server on");
    let metrics = server.address_after("metrics on");
    let mut clients: Vec<Client> =
        (0..CLIENTS).map(|_| Client::connect(addr, root.public_key(), Duration::from_secs(5)).unwrap()).collect();
    for c in &mut clients {
        echo_round(c, 3, Duration::from_secs(5));
    }
    let (status, _) = crate::common::get(&format!("http://{metrics}/metrics"));
    assert_eq!(status, 200);

    let clock = Clock::new();
    server.terminate();
    // Every client sees the server close the connection (not a timeout).
    let mut reasons: Vec<Option<DisconnectReason>> = vec![None; CLIENTS];
    while reasons.iter().any(Option::is_none) {
        assert!(clock.now() < Instant::from_secs(2), "clients still connected 2 s after SIGTERM: {reasons:?}");
        for (c, r) in clients.iter_mut().zip(&mut reasons) {
            c.update_wait(Duration::from_millis(2));
            while let Some(event) = c.poll_event() {
                if let Event::Disconnected { reason, .. } = event {
                    *r = Some(reason);
                }
            }
        }
    }
    assert!(reasons.iter().all(|r| *r == Some(DisconnectReason::Peer)), "{reasons:?}");
    // The process exits 0 within 2 s, after printing its final metrics.
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(clock.now() < Instant::from_secs(2), "echo_server still running 2 s after SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(status.success(), "exit status {status}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut server.stdout, &mut rest).unwrap();
    let last =
        rest.lines().find(|l| l.starts_with("final metrics:")).unwrap_or_else(|| panic!("no final metrics in {rest}"));
    assert!(last.contains(&format!("shutdown={CLIENTS}")), "{last}");
    let _ = std::fs::remove_dir_all(dir);
}
