//! examples/side_api: the HTTP API beside the game server, over real HTTP
//! and UDP on loopback.

use mpgameserver::{Delivery, Duration, Event, Instant, PublicKey};
use mpgameserver_drivers::Clock;
use mpgameserver_drivers::blocking::Client;
use serde_json::Value;

use crate::common::{Process, example, get, post};

/// Logs in over HTTP, connects over UDP with what the login returned, and
/// sends the token; returns the client once welcomed.
fn join(api: &str, name: &str) -> (Client, String) {
    let (status, body) = post(&format!("{api}/login"), &format!(r#"{{"name":"{name}"}}"#));
    assert_eq!(status, 200, "{body}");
    let login: Value = serde_json::from_str(&body).unwrap();
    let server = login["server"].as_str().unwrap().parse().unwrap();
    let key = PublicKey::from_public_key_pem(login["public_key"].as_str().unwrap()).unwrap();
    let mut client = Client::connect(server, key, Duration::from_secs(5)).unwrap();
    client.send(format!("LOGIN {}", login["token"].as_str().unwrap()).as_bytes(), Delivery::Reliable).unwrap();
    let welcome = next_text(&mut client);
    assert!(welcome.starts_with(&format!("WELCOME {name} ")), "{welcome}");
    (client, welcome)
}

fn next_text(client: &mut Client) -> String {
    let clock = Clock::new();
    loop {
        assert!(clock.now() < Instant::from_secs(5), "no message within 5 s");
        client.update_wait(Duration::from_millis(20));
        while let Some(event) = client.poll_event() {
            match event {
                Event::Message { payload, .. } => return String::from_utf8(payload).unwrap(),
                Event::Disconnected { reason, .. } => panic!("disconnected: {reason}"),
                _ => {}
            }
        }
    }
}

#[test]
fn side_api_logs_players_in_lists_matches_and_reads_live_state() {
    let mut server = Process::spawn(&example("side_api"), &["--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"]);
    server.address_after("game server on");
    let api = format!("http://{}", server.address_after("http api on"));

    assert_eq!(get(&format!("{api}/health")), (200, "ok\n".to_string()));
    assert_eq!(post(&format!("{api}/login"), "{}").0, 400);
    assert_eq!(get(&format!("{api}/nothing")).0, 404);

    let (mut alice, welcome) = join(&api, "alice");
    assert_eq!(welcome, "WELCOME alice 1");
    let (mut bob, _) = join(&api, "bob");
    alice.send(b"SAY hello bob", Delivery::Reliable).unwrap();
    alice.update(); // a blocking client sends when it runs
    assert_eq!(next_text(&mut bob), "alice: hello bob");

    // The state the tick publishes shows both players (within a few ticks).
    let clock = Clock::new();
    let state = loop {
        alice.update();
        bob.update();
        let state: Value = serde_json::from_str(&get(&format!("{api}/state")).1).unwrap();
        let players = state["players"].as_array().unwrap();
        if players.len() == 2 && players.iter().any(|p| p["name"] == "alice" && p["said"] == 1) {
            break state;
        }
        assert!(clock.now() < Instant::from_secs(5), "state never showed both players: {state}");
    };
    assert!(state["tick"].as_u64().unwrap() > 0);
    let matches: Value = serde_json::from_str(&get(&format!("{api}/matches")).1).unwrap();
    assert_eq!(matches["matches"][0]["players"], serde_json::json!(["alice", "bob"]), "{matches}");

    // SIGTERM: both players see the server close, the process exits 0.
    server.terminate();
    for client in [&mut alice, &mut bob] {
        let clock = Clock::new();
        'wait: loop {
            assert!(clock.now() < Instant::from_secs(2), "no disconnect within 2 s of SIGTERM");
            client.update_wait(Duration::from_millis(10));
            while let Some(event) = client.poll_event() {
                if let Event::Disconnected { reason, .. } = event {
                    assert_eq!(reason, mpgameserver::DisconnectReason::Peer);
                    break 'wait;
                }
            }
        }
    }
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
}
