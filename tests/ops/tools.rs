//! The test tools as a user runs them: `examples/echo_client` against a
//! server that answers late and wrong, and `examples/loadgen` against an
//! `echo_server` whose per-address limits refuse some of its clients.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;

use mpgameserver::{ConnectionId, Delivery, Duration, Instant};
use mpgameserver_drivers::blocking::Server;
use mpgameserver_drivers::{Clock, EventHandler, ServerContext};

use crate::common::{Process, example, key};

// The examples' bookkeeping, with its unit tests (`#[cfg(test)]` in those
// files): an example's own tests run only with `cargo test --examples`,
// and declaring an example `test = true` stops `cargo test` from building
// the binary the tests below run. Their other items are the examples' own.
#[allow(dead_code, reason = "main() and the I/O are the example's, not the tests'")]
#[path = "../../examples/echo_client.rs"]
mod echo_client;
#[allow(dead_code, reason = "the load generator uses the rest")]
#[path = "../../examples/loadgen/report.rs"]
mod loadgen_report;

/// Runs `path` with `args` to its end, killing it after `limit`; its
/// status and both outputs.
fn run_bounded(path: &Path, args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(path)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
    // Both outputs are read on threads, so a full pipe never blocks the child.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut v = Vec::new();
        stdout.read_to_end(&mut v).unwrap();
        v
    });
    let err = thread::spawn(move || {
        let mut v = Vec::new();
        stderr.read_to_end(&mut v).unwrap();
        v
    });
    let clock = Clock::new();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if clock.now() >= Instant::ZERO + limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} still running after {limit:?}", path.display());
        }
        thread::sleep(std::time::Duration::from_millis(10));
    };
    Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The value of `key=` in a `key=value` line.
fn value<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// Echoes every message, except that it holds the first one's echo back
/// for `delay`, and answers the second with one byte flipped.
struct Trickster {
    delay: Duration,
    received: u32,
    held: Vec<(Instant, ConnectionId, Vec<u8>)>,
}

impl EventHandler for Trickster {
    fn handle_message(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId, mut payload: Vec<u8>) {
        self.received += 1;
        match self.received {
            1 => self.held.push((ctx.now() + self.delay, conn, payload)),
            2 => {
                payload[0] ^= 1;
                ctx.send(conn, &payload, Delivery::Reliable).unwrap();
            }
            _ => {
                ctx.send(conn, &payload, Delivery::Reliable).unwrap();
            }
        }
    }

    fn update(&mut self, ctx: &mut ServerContext<'_>, _dt: Duration) {
        let now = ctx.now();
        for (due, conn, payload) in std::mem::take(&mut self.held) {
            if now >= due {
                ctx.send(conn, &payload, Delivery::Reliable).unwrap();
            } else {
                self.held.push((due, conn, payload));
            }
        }
    }
}

#[test]
fn echo_client_reports_a_late_echo_as_late_and_a_wrong_one_as_mismatched() {
    let dir = std::env::temp_dir().join(format!("mpgs-ops-echo-client-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = key();
    let pub_file = dir.join("root.pub");
    root.public_key().write_pem_file(&pub_file).unwrap();
    let mut server = Server::bind("127.0.0.1:0", root).unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let stop = server.stop_handle();
    let handle = thread::spawn(move || {
        let mut handler = Trickster { delay: Duration::from_millis(1_600), received: 0, held: Vec::new() };
        server.run(&mut handler);
    });

    // Message 1: given up on after 0.8 s; its echo comes at 1.6 s, during
    // the 1.5 s pause. Message 2: a flipped byte comes back, then nothing.
    // Message 3: echoed.
    let client = example("echo_client");
    let pub_path = pub_file.to_str().unwrap();
    let args = ["--server", &addr, "--key", pub_path, "--count", "3", "--size", "64", "--timeout", "0.8"];
    let out = run_bounded(&client, &[&args[..], &["--pause", "1.5"]].concat(), Duration::from_secs(30));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let summary = stdout.lines().next().unwrap_or_default();
    let prefix = "echoed 1/3 messages, size 64, rtt p50 ";
    assert!(summary.starts_with(prefix), "{summary}\n{stderr}");
    let counts = summary.split_once(", late ").map(|(_, rest)| rest).unwrap_or_else(|| panic!("{summary}"));
    let (late, rest) = counts.split_once(" (up to ").unwrap_or_else(|| panic!("not one late echo: {summary}"));
    assert_eq!(late, "1", "{summary}\n{stderr}");
    let (after, rest) = rest.split_once(" s after the wait), ").unwrap_or_else(|| panic!("{summary}"));
    let after: f64 = after.parse().unwrap();
    assert!(after > 0.2 && after < 1.5, "the echo held 1.6 s came {after} s after a 0.8 s wait: {summary}");
    assert_eq!(rest, "lost 1, mismatched 1", "{summary}\n{stderr}");
    assert!(!out.status.success(), "a run with a late and a wrong echo must fail");
    assert!(stderr.contains("raise --timeout"), "{stderr}");
    assert!(stderr.contains("1 replies did not match anything that was sent"), "{stderr}");

    // The same server echoes everything from now on: a clean run (with the
    // default wait) passes.
    let args = ["--server", &addr, "--key", pub_path, "--count", "5", "--burst", "5", "--size", "1000"];
    let out = run_bounded(&client, &args, Duration::from_secs(30));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let summary = stdout.lines().next().unwrap_or_default();
    assert!(summary.starts_with("echoed 5/5 messages, size 1000, rtt p50 "), "{summary}\n{stderr}");
    assert!(summary.ends_with(", late 0, lost 0, mismatched 0"), "{summary}");
    assert!(out.status.success(), "{summary}\n{stderr}");

    stop.stop();
    handle.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs loadgen (80 clients, at most 2 s for the handshakes, a short load)
/// against an `echo_server` with `server_flags`; its output.
fn loadgen_against_echo_server(tag: &str, server_flags: &[&str]) -> Output {
    let dir = std::env::temp_dir().join(format!("mpgs-ops-loadgen-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = key();
    root.write_pem_file(dir.join("root.key")).unwrap();
    root.public_key().write_pem_file(dir.join("root.pub")).unwrap();
    let key_file = dir.join("root.key");
    let mut server_args = vec!["--bind", "127.0.0.1:0", "--key", key_file.to_str().unwrap(), "--duration", "30"];
    server_args.extend_from_slice(server_flags);
    let mut server = Process::spawn(&example("echo_server"), &server_args);
    let addr = server.address_after("echo server on").to_string();
    let pub_file = dir.join("root.pub");
    let args = [
        "--server",
        &addr,
        "--key",
        pub_file.to_str().unwrap(),
        "--clients",
        "80",
        "--hz",
        "10",
        "--connect-timeout",
        "2",
        "--warmup",
        "0.2",
        "--duration",
        "0.5",
        "--drain",
        "0.3",
        // The per-address limits these runs check are MPGS/1's (PROTOCOL.md
        // §15 rule 10; `--no-source-limits` lifts them): MPGS/1 explicitly.
        "--protocol",
        "v1",
    ];
    let out = run_bounded(&example("loadgen"), &args, Duration::from_secs(30));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[test]
fn loadgen_short_of_clients_says_so_exits_non_zero_and_points_at_the_per_address_limits() {
    // 80 clients from 127.0.0.1 against the default limits (64 connections,
    // 8 hellos/s with bursts of 16 per address): not all connect in 2 s.
    let out = loadgen_against_echo_server("limited", &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let summary = stdout.lines().nth(1).unwrap_or_else(|| panic!("no summary line: {stdout}\n{stderr}"));
    assert_eq!(value(summary, "clients"), "80", "{summary}");
    let (connected, asked) = value(summary, "connected").split_once('/').unwrap();
    let connected: u32 = connected.parse().unwrap();
    assert_eq!(asked, "80");
    assert!(connected > 0 && connected < 80, "{summary}");
    assert!(!out.status.success(), "loadgen exited 0 with {connected} of 80 clients connected");
    assert!(stderr.contains(&format!("only {connected} of 80 clients connected")), "{stderr}");
    assert!(stderr.contains("per-address limits"), "{stderr}");
    assert!(stderr.contains("echo_server --no-source-limits"), "{stderr}");

    // The control: the same run with the limits lifted connects everyone and exits 0.
    let out = loadgen_against_echo_server("open", &["--no-source-limits"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let summary = stdout.lines().nth(1).unwrap_or_else(|| panic!("no summary line: {stdout}\n{stderr}"));
    assert_eq!(value(summary, "connected"), "80/80", "{summary}\n{stderr}");
    assert!(out.status.success(), "{summary}\n{stderr}");
    assert!(value(summary, "echoed").parse::<u64>().unwrap() > 0, "{summary}");
}
