//! What the ops tests share: an echo handler that counts, bounded waits,
//! HTTP GETs, and the example binaries.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mpgameserver::{ConnectionId, Delivery, DisconnectReason, Duration, Event, Instant, Rng, ServerKey};
use mpgameserver_drivers::blocking::Client;
use mpgameserver_drivers::{Clock, EventHandler, ServerContext, os_seed};

/// Echoes every message Reliable and counts connects and disconnects.
#[derive(Clone, Default)]
pub struct Echo {
    pub connects: Arc<AtomicU64>,
    pub shutdown_disconnects: Arc<AtomicU64>,
}

impl EventHandler for Echo {
    fn connect(&mut self, _: &mut ServerContext<'_>, _: ConnectionId) {
        self.connects.fetch_add(1, Ordering::Relaxed);
    }
    fn disconnect(&mut self, _: &mut ServerContext<'_>, _: ConnectionId, reason: DisconnectReason) {
        if reason == DisconnectReason::Shutdown {
            self.shutdown_disconnects.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn handle_message(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId, payload: Vec<u8>) {
        ctx.send(conn, &payload, Delivery::Reliable).unwrap();
    }
}

pub fn key() -> ServerKey {
    ServerKey::generate(&mut Rng::new(os_seed().unwrap()))
}

/// Sends `count` messages from `client` and waits (bounded) for every echo.
pub fn echo_round(client: &mut Client, count: usize, within: Duration) {
    for i in 0..count {
        client.send(format!("message {i}").as_bytes(), Delivery::Reliable).unwrap();
    }
    let clock = Clock::new();
    let mut echoed = 0;
    while echoed < count {
        assert!(clock.now() < Instant::ZERO + within, "{echoed}/{count} echoes within {within:?}");
        client.update_wait(Duration::from_millis(20));
        while let Some(event) = client.poll_event() {
            match event {
                Event::Message { .. } => echoed += 1,
                Event::Disconnected { reason, .. } => panic!("disconnected while waiting for echoes: {reason}"),
                _ => {}
            }
        }
    }
}

/// `GET url`: the status and body (any status).
pub fn get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(5)))
        .build()
        .into();
    let mut response = agent.get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

/// `POST url` with `body`: the status and body.
pub fn post(url: &str, body: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(5)))
        .build()
        .into();
    let mut response = agent.post(url).send(body).unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

/// An example binary that `cargo test` built (examples are built before
/// the tests run), under the target directory.
pub fn example(name: &str) -> PathBuf {
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"), PathBuf::from);
    let mut candidates = vec![target.join(profile).join("examples").join(name)];
    // Next to the test binary (deps/../examples) when no separate build directory is used.
    if let Some(dir) = std::env::current_exe().unwrap().parent().and_then(Path::parent) {
        candidates.push(dir.join("examples").join(name));
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("example {name} not built (looked at {candidates:?}): run `cargo test`"))
        .clone()
}

/// A running example process, killed if the test fails.
pub struct Process {
    pub child: Child,
    pub stdout: BufReader<ChildStdout>,
}

impl Process {
    pub fn spawn(path: &Path, args: &[&str]) -> Process {
        let mut child = Command::new(path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Process { child, stdout }
    }

    /// The next line of its output (blocking; the examples print at once).
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        assert!(self.stdout.read_line(&mut line).unwrap() > 0, "the process closed its output");
        line
    }

    /// Reads lines until one contains `marker`; returns the first address
    /// (`host:port`) in it.
    pub fn address_after(&mut self, marker: &str) -> SocketAddr {
        loop {
            let line = self.line();
            if line.contains(marker) {
                let word = line
                    .split(|c: char| c.is_whitespace() || c == ',' || c == '/')
                    .find(|w| w.parse::<SocketAddr>().is_ok())
                    .unwrap_or_else(|| panic!("no address in {line:?}"));
                return word.parse().unwrap();
            }
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
