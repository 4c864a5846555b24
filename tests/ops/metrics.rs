//! The metrics endpoint over real HTTP: families present, the text parses,
//! the numbers are the endpoint's own.

use std::collections::BTreeSet;
use std::thread;

use mpgameserver::{DropReason, Duration, Instant};
use mpgameserver_drivers::Clock;
use mpgameserver_drivers::blocking::{Client, Server};
use mpgameserver_drivers::metrics::Snapshot;
use prometheus_parse::{Sample, Scrape, Value};

use crate::common::{Echo, echo_round, get, key};

const CLIENTS: usize = 3;
const MESSAGES: usize = 50;

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample of `metric` whose labels include `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let sample: Vec<&Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(sample.len(), 1, "{metric}{labels:?}: {} samples", sample.len());
    match &sample[0].value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(_) | Value::Summary(_) => panic!("{metric} is not a single value"),
    }
}

#[test]
fn metrics_endpoint_serves_the_endpoints_numbers() {
    let root = key();
    let public = root.public_key();
    let mut server = Server::bind("127.0.0.1:0", root).unwrap();
    let addr = server.local_addr().unwrap();
    let metrics = server.serve_metrics("127.0.0.1:0").unwrap();
    let url = format!("http://{}", metrics.local_addr());
    assert!(metrics.local_addr().ip().is_loopback());
    let stop = server.stop_handle();
    let handler = Echo::default();
    let shutdowns = handler.shutdown_disconnects.clone();
    let thread = thread::spawn(move || {
        let mut handler = handler;
        server.run(&mut handler);
        server
    });

    // Clients of every protocol version there is (MPGS/1 today), with traffic.
    let mut clients: Vec<Client> =
        (0..CLIENTS).map(|_| Client::connect(addr, public.clone(), Duration::from_secs(5)).unwrap()).collect();
    for c in &mut clients {
        echo_round(c, MESSAGES, Duration::from_secs(10));
    }

    // The clients acknowledge the echoes when they next run: until the
    // server has every acknowledgement (and so an RTT for each connection).
    let clock = Clock::new();
    loop {
        for c in &mut clients {
            c.update();
        }
        let snap: Snapshot = serde_json::from_str(&get(&format!("{url}/metrics.json")).1).unwrap();
        if snap.connections.iter().all(|c| c.messages_acked == MESSAGES as u64 && c.srtt_ms.is_some()) {
            break;
        }
        assert!(clock.now() < Instant::from_secs(5), "echoes not acknowledged within 5 s: {:?}", snap.connections);
    }

    // Live: the Prometheus text parses and shows the connections.
    let (status, text) = get(&format!("{url}/metrics"));
    assert_eq!(status, 200, "{text}");
    let live = parse(&text);
    assert_eq!(value(&live, "mpgs_connections", &[("version", "1"), ("state", "connected")]), CLIENTS as f64);
    assert_eq!(value(&live, "mpgs_workers", &[]), 1.0);
    let rtt = live.samples.iter().find(|s| s.metric == "mpgs_connection_rtt_seconds").unwrap();
    match &rtt.value {
        Value::Histogram(buckets) => {
            let all = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
            assert_eq!(all, CLIENTS as f64, "every connection measured its RTT: {buckets:?}");
        }
        other => panic!("mpgs_connection_rtt_seconds is {other:?}"),
    }
    // Live: the JSON lists each connection with its detail.
    let (status, json) = get(&format!("{url}/metrics.json"));
    assert_eq!(status, 200);
    let snap: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(snap.connections.len(), CLIENTS);
    let ports: BTreeSet<u16> = clients.iter().map(|c| c.local_addr().unwrap().port()).collect();
    assert_eq!(snap.connections.iter().map(|c| c.address.port()).collect::<BTreeSet<_>>(), ports);
    for c in &snap.connections {
        assert_eq!((c.version.as_str(), c.state.as_str()), ("1", "connected"));
        assert_eq!(c.messages_received, MESSAGES as u64);
        assert!(c.srtt_ms.is_some_and(|ms| ms > 0.0), "{c:?}");
    }
    assert_eq!(get(&format!("{url}/nothing")).0, 404);

    // Stop with the clients connected: the endpoint keeps serving the final figures.
    stop.stop();
    let server = thread.join().unwrap();
    let stats = server.endpoint().stats().clone();
    let driver = server.driver_stats();
    let (status, text) = get(&format!("{url}/metrics"));
    assert_eq!(status, 200);
    let last = parse(&text);
    let counter = |metric: &str, labels: &[(&str, &str)]| value(&last, metric, labels) as u64;
    assert_eq!(counter("mpgs_datagrams_total", &[("direction", "in")]), stats.datagrams_received);
    assert_eq!(counter("mpgs_datagrams_total", &[("direction", "out")]), stats.datagrams_sent);
    assert_eq!(counter("mpgs_bytes_total", &[("direction", "in")]), stats.bytes_received);
    assert_eq!(counter("mpgs_bytes_total", &[("direction", "out")]), stats.bytes_sent);
    assert_eq!(counter("mpgs_handshakes_started_total", &[]), stats.hellos_accepted);
    assert_eq!(counter("mpgs_handshakes_completed_total", &[]), stats.handshakes_completed);
    assert_eq!(stats.handshakes_completed, CLIENTS as u64);
    assert_eq!(counter("mpgs_handshakes_refused_total", &[("reason", "rate")]), stats.hellos_refused_rate);
    assert_eq!(counter("mpgs_handshakes_refused_total", &[("reason", "source")]), stats.hellos_refused_source);
    assert_eq!(counter("mpgs_handshakes_refused_total", &[("reason", "full")]), stats.hellos_refused_full);
    assert_eq!(counter("mpgs_handshakes_evicted_total", &[]), stats.handshakes_evicted);
    assert_eq!(counter("mpgs_server_hello_keys_total", &[]), stats.server_hello_keys);
    for reason in DropReason::ALL {
        assert_eq!(counter("mpgs_dropped_datagrams_total", &[("reason", reason.name())]), stats.dropped(reason));
    }
    assert_eq!(counter("mpgs_socket_datagrams_total", &[("direction", "in")]), driver.datagrams_received);
    assert_eq!(counter("mpgs_messages_received_total", &[]), (CLIENTS * MESSAGES) as u64);
    assert_eq!(counter("mpgs_message_outcomes_total", &[("outcome", "delivered")]), (CLIENTS * MESSAGES) as u64);
    assert_eq!(counter("mpgs_disconnects_total", &[("reason", "shutdown")]), CLIENTS as u64);
    assert_eq!(shutdowns.load(std::sync::atomic::Ordering::Relaxed), CLIENTS as u64);
    assert_eq!(value(&last, "mpgs_connections", &[("version", "1"), ("state", "connected")]), 0.0);
    assert!(value(&last, "process_start_time_seconds", &[]) > 1.6e9);
    let snap: Snapshot = serde_json::from_str(&get(&format!("{url}/metrics.json")).1).unwrap();
    assert!(snap.stopped);
    assert_eq!(snap.totals.datagrams_received, stats.datagrams_received);
}

#[test]
fn the_smol_server_serves_metrics_too() {
    let root = key();
    let public = root.public_key();
    let mut server = mpgameserver_drivers::smol::Server::bind("127.0.0.1:0", root).unwrap();
    let addr = server.local_addr().unwrap();
    let metrics = server.serve_metrics("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metrics.json", metrics.local_addr());
    let stop = server.stop_handle();
    let thread = thread::spawn(move || smol::block_on(server.run(&mut Echo::default())));
    let mut client = Client::connect(addr, public, Duration::from_secs(5)).unwrap();
    echo_round(&mut client, 5, Duration::from_secs(5));
    let snap: Snapshot = serde_json::from_str(&get(&url).1).unwrap();
    assert_eq!((snap.workers, snap.totals.connections, snap.totals.messages_received), (1, 1, 5));
    assert_eq!(snap.connections[0].address.port(), client.local_addr().unwrap().port());
    stop.stop();
    thread.join().unwrap();
    let last = metrics.snapshot().unwrap();
    assert!(last.stopped);
    assert_eq!(last.totals.disconnects["shutdown"], 1);
}
