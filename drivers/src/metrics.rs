//! Metrics export (feature `metrics`): what a running server is doing, over
//! HTTP, for Prometheus and for the `mpgs-top` dashboard.
//!
//! One call enables it: [`blocking::Server::serve_metrics`](crate::blocking::Server::serve_metrics),
//! [`Workers::serve_metrics`](crate::workers::Workers::serve_metrics) or the
//! smol server's. It starts one thread with a small synchronous HTTP server
//! ([`tiny_http`]; no async runtime) that answers:
//!
//! | route | what |
//! |---|---|
//! | `GET /metrics` | the Prometheus text format (0.0.4), encoded by [`prometheus_client`] |
//! | `GET /metrics.json` | the same [`Snapshot`] as JSON, with one entry per connection |
//! | `GET /` | a short index |
//!
//! Each request asks the server loop (every worker of it) for a fresh
//! snapshot; the loop answers on its next pass (within one tick) and never
//! waits for the HTTP thread. A worker that does not answer within a second
//! is represented by its previous snapshot (`mpgs_metrics_stale_workers`
//! counts them). When the server stops, it publishes its final figures, which
//! the endpoint keeps serving until the [`MetricsServer`] is dropped, and
//! [`MetricsServer::snapshot`] returns them.
//!
//! Bind it to loopback (`127.0.0.1:9100`) unless a firewall or a private
//! network keeps it from the internet: the JSON view lists every client's
//! address. `docs/DEPLOYMENT.md` shows a Prometheus scrape configuration.
//!
//! ## Families
//!
//! Every counter only grows for the life of the process (totals over every
//! worker); gauges are the state at the scrape.
//!
//! | family | type | labels |
//! |---|---|---|
//! | `mpgs_connections` | gauge | `version` (`"1"`: MPGS/1), `state` (`connecting`, `connected`, `closing`) |
//! | `mpgs_handshakes_started_total` / `_completed_total` / `_evicted_total` | counter | |
//! | `mpgs_handshakes_refused_total` | counter | `reason` (`rate`, `source`, `full`) |
//! | `mpgs_server_hello_keys_total`, `mpgs_amplification_limited_total` | counter | |
//! | `mpgs_datagrams_total`, `mpgs_bytes_total` | counter | `direction` (`in`, `out`) |
//! | `mpgs_dropped_datagrams_total` | counter | `reason` ([`DropReason::name`]) |
//! | `mpgs_fragments_dropped_total`, `mpgs_reassemblies_expired_total`, `mpgs_reassembly_budget_refusals_total` | counter | |
//! | `mpgs_messages_received_total` | counter | |
//! | `mpgs_message_outcomes_total` | counter | `outcome` (`delivered`, `lost`) |
//! | `mpgs_disconnects_total` | counter | `reason` (`local`, `peer`, `timed_out`, `shutdown`, `other`) |
//! | `mpgs_connection_rtt_seconds`, `mpgs_connection_loss_ratio` | histogram over the connections | `le` |
//! | `mpgs_send_queue_messages`, `mpgs_send_queue_bytes` | gauge | `stat` (`sum`, `max`) over the connections |
//! | `mpgs_reassembly_bytes`, `mpgs_pending_handshakes`, `mpgs_workers` | gauge | |
//! | `mpgs_socket_datagrams_total` | counter | `direction` |
//! | `mpgs_socket_errors_total` | counter | `kind` (`recv`, `send`, `send_blocked`, `oversized`, `wait`) |
//! | `mpgs_metrics_stale_workers` | gauge | |
//! | `process_start_time_seconds` | gauge | |
//!
//! The two histograms describe the connections of the moment (each
//! connection's smoothed RTT, its datagram loss): they are rebuilt at every
//! scrape, so their buckets can fall. Read them with `histogram_quantile`
//! on the series themselves, not on `rate()`:
//! `histogram_quantile(0.99, sum by (le) (mpgs_connection_rtt_seconds_bucket))`.
//!
//! The `version` label (and the JSON's `version` field) names the
//! connection's protocol version; a second version adds a value, not a
//! family.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use mpgameserver::{Connection, ConnectionState, DropReason, Endpoint, Instant};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::clock::unix_time_now;
use crate::counters::EventCounts;
use crate::io::DriverStats;
use crate::server::ServerCore;

/// Version of the JSON document ([`Snapshot::format`]). Fields are only
/// added within a format; readers ignore what they do not know.
pub const JSON_FORMAT: u32 = 1;

/// How long a request waits for the workers' fresh snapshots.
const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Bucket bounds of the per-connection RTT histogram, in seconds.
const RTT_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5];
/// Bucket bounds of the per-connection loss histogram.
const LOSS_BUCKETS: [f64; 8] = [0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];

/// Everything the export knows at one moment: totals over every worker and
/// one entry per connection. What `GET /metrics.json` returns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Snapshot {
    /// [`JSON_FORMAT`].
    pub format: u32,
    /// When it was taken, Unix time in seconds.
    pub time: f64,
    /// When the process started, Unix time in seconds.
    pub start_time: f64,
    /// Worker threads (endpoints) of the server.
    pub workers: u32,
    /// Workers whose figures are from this request (the others' are their
    /// previous ones).
    pub workers_fresh: u32,
    /// Every worker has stopped: these are the final figures.
    pub stopped: bool,
    /// Totals over every worker.
    pub totals: Totals,
    /// Per-worker figures, by worker index.
    pub per_worker: Vec<WorkerSummary>,
    /// Every established connection, by worker then slot.
    pub connections: Vec<ConnectionInfo>,
}

/// Endpoint-wide totals (summed over the workers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Totals {
    /// Established connections.
    pub connections: u64,
    /// Connections closing (a DISCONNECT sent, waiting for its acknowledgement).
    pub closing: u64,
    /// Handshakes in progress.
    pub pending_handshakes: u64,
    /// Datagrams handed to the endpoints.
    pub datagrams_received: u64,
    /// Their bytes.
    pub bytes_received: u64,
    /// Datagrams the endpoints produced.
    pub datagrams_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
    /// Handshakes started (CLIENT_HELLOs admitted).
    pub handshakes_started: u64,
    /// Handshakes completed.
    pub handshakes_completed: u64,
    /// CLIENT_HELLOs refused by the endpoint-wide hello rate.
    pub hellos_refused_rate: u64,
    /// CLIENT_HELLOs refused by a per-address or per-prefix limit.
    pub hellos_refused_source: u64,
    /// CLIENT_HELLOs refused because the connection cap was reached.
    pub hellos_refused_full: u64,
    /// Pending handshakes evicted for newer ones.
    pub handshakes_evicted: u64,
    /// Signed server ephemeral keys generated.
    pub server_hello_keys: u64,
    /// SERVER_HELLO repeats withheld by the anti-amplification rule.
    pub amplification_limited: u64,
    /// Fragments dropped by reassembly checks or bounds.
    pub fragments_dropped: u64,
    /// Reassemblies expired incomplete.
    pub reassemblies_expired: u64,
    /// Datagrams refused by a reassembly budget.
    pub reassembly_budget_refusals: u64,
    /// Bytes held for reassembly now.
    pub reassembly_bytes: u64,
    /// Datagrams dropped, by [`DropReason::name`].
    pub dropped: BTreeMap<String, u64>,
    /// Messages delivered to the application.
    pub messages_received: u64,
    /// Messages sent and acknowledged by the peer (`Delivered`).
    pub messages_delivered: u64,
    /// Messages sent and reported `Lost`.
    pub messages_lost: u64,
    /// Disconnects by reason (`local`, `peer`, `timed_out`, `shutdown`, `other`).
    pub disconnects: BTreeMap<String, u64>,
    /// Messages waiting in the send queues now.
    pub queued_messages: u64,
    /// Their bytes.
    pub queued_bytes: u64,
    /// The socket counters of the drivers.
    pub socket: SocketTotals,
}

/// The drivers' socket counters ([`DriverStats`]), summed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SocketTotals {
    /// Datagrams received from the sockets.
    pub datagrams_received: u64,
    /// Datagrams the sockets accepted for sending.
    pub datagrams_sent: u64,
    /// Receive errors (mostly ICMP reports of peers gone).
    pub recv_errors: u64,
    /// Send errors (datagram dropped).
    pub send_errors: u64,
    /// Times a send buffer was full.
    pub send_blocked: u64,
    /// Datagrams longer than the protocol allows.
    pub oversized: u64,
    /// Failures of the wait for a socket.
    pub wait_errors: u64,
}

/// One worker's share.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct WorkerSummary {
    /// The worker's index.
    pub index: u32,
    /// Its established connections.
    pub connections: u64,
    /// Datagrams its endpoint received.
    pub datagrams_received: u64,
    /// Datagrams its endpoint sent.
    pub datagrams_sent: u64,
    /// Its figures are from this request.
    pub fresh: bool,
    /// It has stopped.
    pub stopped: bool,
}

/// One connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The worker (endpoint) that holds it.
    pub worker: u32,
    /// Its handle on that worker (`conn#slot.generation`).
    pub id: String,
    /// The client's address.
    pub address: SocketAddr,
    /// Protocol version (`"1"`: MPGS/1).
    pub version: String,
    /// `connected` or `closing`.
    pub state: String,
    /// Smoothed RTT in milliseconds, once measured.
    pub srtt_ms: Option<f64>,
    /// RTT variation in milliseconds.
    pub rttvar_ms: f64,
    /// Datagrams declared lost over datagrams resolved (lost or acknowledged), 0..=1.
    pub loss: f64,
    /// Datagrams per second sent to it, over the last complete second.
    pub sent_datagrams_per_s: f64,
    /// Bytes per second sent to it.
    pub sent_bytes_per_s: f64,
    /// Datagrams per second received from it.
    pub recv_datagrams_per_s: f64,
    /// Bytes per second received from it.
    pub recv_bytes_per_s: f64,
    /// Messages in its send queue.
    pub queued_messages: u64,
    /// Their bytes.
    pub queued_bytes: u64,
    /// Messages sent to it.
    pub messages_sent: u64,
    /// Messages received from it.
    pub messages_received: u64,
    /// Messages it acknowledged.
    pub messages_acked: u64,
    /// Messages to it reported lost.
    pub messages_lost: u64,
    /// Message copies sent again.
    pub messages_retransmitted: u64,
    /// Datagrams sent to it.
    pub datagrams_sent: u64,
    /// Datagrams received from it.
    pub datagrams_received: u64,
}

/// The protocol version label of a connection. Every connection speaks
/// MPGS/1 today; once the core reports a connection's version this returns
/// its number, and the families gain a label value, not a name.
fn version_label(_conn: &Connection) -> &'static str {
    "1"
}

impl Totals {
    /// One endpoint's totals.
    fn of(ep: &Endpoint, driver: &DriverStats, counts: &EventCounts) -> Totals {
        let s = ep.stats();
        let mut t = Totals {
            pending_handshakes: ep.pending_handshakes() as u64,
            datagrams_received: s.datagrams_received,
            bytes_received: s.bytes_received,
            datagrams_sent: s.datagrams_sent,
            bytes_sent: s.bytes_sent,
            handshakes_started: s.hellos_accepted,
            handshakes_completed: s.handshakes_completed,
            hellos_refused_rate: s.hellos_refused_rate,
            hellos_refused_source: s.hellos_refused_source,
            hellos_refused_full: s.hellos_refused_full,
            handshakes_evicted: s.handshakes_evicted,
            server_hello_keys: s.server_hello_keys,
            amplification_limited: s.amplification_limited,
            fragments_dropped: s.fragments_dropped,
            reassemblies_expired: s.reassemblies_expired,
            reassembly_budget_refusals: s.reassembly_budget_refusals,
            reassembly_bytes: ep.reassembly_bytes() as u64,
            dropped: DropReason::ALL.iter().map(|&r| (r.name().to_string(), s.dropped(r))).collect(),
            messages_received: counts.messages_received,
            messages_delivered: counts.messages_delivered,
            messages_lost: counts.messages_lost,
            disconnects: EventCounts::DISCONNECT_REASONS
                .iter()
                .zip(counts.disconnected)
                .map(|(name, n)| (name.to_string(), n))
                .collect(),
            socket: SocketTotals {
                datagrams_received: driver.datagrams_received,
                datagrams_sent: driver.datagrams_sent,
                recv_errors: driver.recv_errors,
                send_errors: driver.send_errors,
                send_blocked: driver.send_blocked,
                oversized: driver.oversized,
                wait_errors: driver.wait_errors,
            },
            ..Totals::default()
        };
        for id in ep.connections() {
            let Some(c) = ep.connection(id) else { continue };
            match c.state() {
                ConnectionState::Connected => t.connections += 1,
                ConnectionState::Closing => t.closing += 1,
                _ => {}
            }
            t.queued_messages += c.pending_messages() as u64;
            t.queued_bytes += c.pending_bytes() as u64;
        }
        t
    }

    /// Adds another worker's totals.
    fn add(&mut self, o: &Totals) {
        self.connections += o.connections;
        self.closing += o.closing;
        self.pending_handshakes += o.pending_handshakes;
        self.datagrams_received += o.datagrams_received;
        self.bytes_received += o.bytes_received;
        self.datagrams_sent += o.datagrams_sent;
        self.bytes_sent += o.bytes_sent;
        self.handshakes_started += o.handshakes_started;
        self.handshakes_completed += o.handshakes_completed;
        self.hellos_refused_rate += o.hellos_refused_rate;
        self.hellos_refused_source += o.hellos_refused_source;
        self.hellos_refused_full += o.hellos_refused_full;
        self.handshakes_evicted += o.handshakes_evicted;
        self.server_hello_keys += o.server_hello_keys;
        self.amplification_limited += o.amplification_limited;
        self.fragments_dropped += o.fragments_dropped;
        self.reassemblies_expired += o.reassemblies_expired;
        self.reassembly_budget_refusals += o.reassembly_budget_refusals;
        self.reassembly_bytes += o.reassembly_bytes;
        for (k, v) in &o.dropped {
            *self.dropped.entry(k.clone()).or_default() += v;
        }
        self.messages_received += o.messages_received;
        self.messages_delivered += o.messages_delivered;
        self.messages_lost += o.messages_lost;
        for (k, v) in &o.disconnects {
            *self.disconnects.entry(k.clone()).or_default() += v;
        }
        self.queued_messages += o.queued_messages;
        self.queued_bytes += o.queued_bytes;
        let (s, x) = (&mut self.socket, &o.socket);
        s.datagrams_received += x.datagrams_received;
        s.datagrams_sent += x.datagrams_sent;
        s.recv_errors += x.recv_errors;
        s.send_errors += x.send_errors;
        s.send_blocked += x.send_blocked;
        s.oversized += x.oversized;
        s.wait_errors += x.wait_errors;
    }
}

impl ConnectionInfo {
    fn of(worker: u32, id: mpgameserver::ConnectionId, c: &Connection, now: Instant) -> ConnectionInfo {
        let m = c.metrics();
        let resolved = m.datagrams_lost + m.datagrams_acked;
        let rates = m.rates(now, 1);
        ConnectionInfo {
            worker,
            id: id.to_string(),
            address: c.remote(),
            version: version_label(c).to_string(),
            state: match c.state() {
                ConnectionState::Connecting => "connecting",
                ConnectionState::Connected => "connected",
                ConnectionState::Closing => "closing",
                _ => "closed",
            }
            .to_string(),
            srtt_ms: m.srtt.map(|d| d.as_secs_f64() * 1e3),
            rttvar_ms: m.rttvar.as_secs_f64() * 1e3,
            loss: if resolved == 0 { 0.0 } else { m.datagrams_lost as f64 / resolved as f64 },
            sent_datagrams_per_s: rates.sent_datagrams,
            sent_bytes_per_s: rates.sent_bytes,
            recv_datagrams_per_s: rates.recv_datagrams,
            recv_bytes_per_s: rates.recv_bytes,
            queued_messages: c.pending_messages() as u64,
            queued_bytes: c.pending_bytes() as u64,
            messages_sent: m.messages_sent,
            messages_received: m.messages_received,
            messages_acked: m.messages_acked,
            messages_lost: m.messages_lost,
            messages_retransmitted: m.messages_retransmitted,
            datagrams_sent: m.datagrams_sent,
            datagrams_received: m.datagrams_received,
        }
    }
}

/// One worker's answer.
#[derive(Clone, Debug, Default)]
struct WorkerSnapshot {
    totals: Totals,
    connections: Vec<ConnectionInfo>,
}

#[derive(Debug, Default)]
struct Slot {
    /// The request generation this slot answered (0: none yet).
    generation: u64,
    snapshot: Option<WorkerSnapshot>,
    stopped: bool,
}

/// What the HTTP thread and the workers share.
#[derive(Debug)]
pub(crate) struct Hub {
    /// The latest request generation.
    requested: AtomicU64,
    slots: Mutex<Vec<Slot>>,
    answered: Condvar,
    start_time: f64,
}

impl Hub {
    fn new(workers: usize) -> Arc<Hub> {
        Arc::new(Hub {
            requested: AtomicU64::new(0),
            slots: Mutex::new((0..workers).map(|_| Slot::default()).collect()),
            answered: Condvar::new(),
            start_time: process_start_time().unwrap_or_else(unix_time_now),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Slot>> {
        // A worker that panicked mid-update leaves a slot that is still a
        // whole value: keep serving it.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks every running worker for a fresh snapshot, waits up to
    /// `ANSWER_WAIT`, and merges what there is. `None` if no worker ever
    /// answered (the server has not started).
    fn snapshot(&self) -> Option<Snapshot> {
        let generation = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        let slots = self.lock();
        let (slots, _) = self
            .answered
            .wait_timeout_while(slots, ANSWER_WAIT, |slots| {
                slots.iter().any(|s| !s.stopped && s.generation < generation)
            })
            .unwrap_or_else(PoisonError::into_inner);
        if slots.iter().all(|s| s.snapshot.is_none()) {
            return None;
        }
        let mut snap = Snapshot {
            format: JSON_FORMAT,
            time: unix_time_now(),
            start_time: self.start_time,
            workers: slots.len() as u32,
            stopped: slots.iter().all(|s| s.stopped),
            ..Snapshot::default()
        };
        for (i, slot) in slots.iter().enumerate() {
            let fresh = slot.stopped || slot.generation >= generation;
            snap.workers_fresh += u32::from(fresh);
            let Some(w) = &slot.snapshot else {
                snap.per_worker.push(WorkerSummary { index: i as u32, ..WorkerSummary::default() });
                continue;
            };
            snap.totals.add(&w.totals);
            snap.connections.extend(w.connections.iter().cloned());
            snap.per_worker.push(WorkerSummary {
                index: i as u32,
                connections: w.totals.connections,
                datagrams_received: w.totals.datagrams_received,
                datagrams_sent: w.totals.datagrams_sent,
                fresh,
                stopped: slot.stopped,
            });
        }
        Some(snap)
    }
}

/// A server loop's side of the export: answers requests for a snapshot.
#[derive(Debug)]
pub(crate) struct Reporter {
    hub: Arc<Hub>,
    worker: usize,
    answered: u64,
}

impl ServerCore {
    /// Answers a pending request for a snapshot, or publishes the final one.
    /// Costs one atomic load when nobody asks.
    pub(crate) fn report_metrics(&mut self, now: Instant, finished: bool) {
        let Some(reporter) = &mut self.metrics else { return };
        let requested = reporter.hub.requested.load(Ordering::Acquire);
        if !finished && requested <= reporter.answered {
            return;
        }
        reporter.answered = requested;
        let worker = reporter.worker as u32;
        let snapshot = WorkerSnapshot {
            totals: Totals::of(&self.ep, &self.io.stats, &self.counts),
            connections: self
                .ep
                .connections()
                .filter_map(|id| Some(ConnectionInfo::of(worker, id, self.ep.connection(id)?, now)))
                .collect(),
        };
        let mut slots = reporter.hub.lock();
        if let Some(slot) = slots.get_mut(reporter.worker) {
            *slot = Slot { generation: requested, snapshot: Some(snapshot), stopped: finished };
        }
        drop(slots);
        reporter.hub.answered.notify_all();
    }
}

/// Starts the export for `cores` (the workers of one server, or one server).
pub(crate) fn serve<'a>(
    cores: impl ExactSizeIterator<Item = &'a mut ServerCore>,
    addr: impl ToSocketAddrs,
) -> Result<MetricsServer, MetricsError> {
    let unresolved = |error: io::Error| MetricsError { addr: None, error: Box::new(error) };
    let addr = addr.to_socket_addrs().map_err(unresolved)?.next();
    let addr = addr.ok_or_else(|| unresolved(io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")))?;
    let http = tiny_http::Server::http(addr).map_err(|error| MetricsError { addr: Some(addr), error })?;
    let local = http.server_addr().to_ip().unwrap_or(addr);
    if !local.ip().is_loopback() {
        tracing::warn!(%local, "metrics served beyond loopback: they list every client's address; keep the port behind a firewall");
    }
    let hub = Hub::new(cores.len());
    for (worker, core) in cores.enumerate() {
        core.metrics = Some(Reporter { hub: hub.clone(), worker, answered: 0 });
    }
    let http = Arc::new(http);
    let thread = {
        let (http, hub) = (http.clone(), hub.clone());
        std::thread::Builder::new()
            .name("mpgs-metrics".into())
            .spawn(move || serve_http(&http, &hub))
            .map_err(|error| MetricsError { addr: Some(local), error: Box::new(error) })?
    };
    tracing::info!(%local, "metrics on http://{local}/metrics");
    Ok(MetricsServer { http, thread: Some(thread), hub, addr: local })
}

fn serve_http(http: &tiny_http::Server, hub: &Hub) {
    for request in http.incoming_requests() {
        let response = respond(hub, request.method(), request.url());
        if let Err(e) = request.respond(response) {
            tracing::debug!(error = %e, "metrics: could not answer a request");
        }
    }
}

type Response = tiny_http::Response<io::Cursor<Vec<u8>>>;

fn respond(hub: &Hub, method: &tiny_http::Method, url: &str) -> Response {
    let text = |status: u16, body: &str| {
        with_type(tiny_http::Response::from_string(body).with_status_code(status), "text/plain; charset=utf-8")
    };
    if !matches!(method, tiny_http::Method::Get | tiny_http::Method::Head) {
        return text(405, "only GET\n");
    }
    let path = url.split('?').next().unwrap_or(url);
    match path {
        "/" => text(
            200,
            "mpgameserver metrics\n/metrics       Prometheus text format\n/metrics.json  the same snapshot as JSON, with every connection\n",
        ),
        "/metrics" | "/metrics.json" => {
            let Some(snap) = hub.snapshot() else {
                return text(503, "the server is not running yet\n");
            };
            if path == "/metrics" {
                with_type(tiny_http::Response::from_string(encode_prometheus(&snap)), prometheus_text::CONTENT_TYPE)
            } else {
                match serde_json::to_vec(&snap) {
                    Ok(body) => with_type(tiny_http::Response::from_data(body), "application/json"),
                    Err(e) => text(500, &format!("cannot encode the snapshot: {e}\n")),
                }
            }
        }
        _ => text(404, "not found: try /metrics or /metrics.json\n"),
    }
}

fn with_type(response: Response, content_type: &str) -> Response {
    match tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
        Ok(h) => response.with_header(h),
        Err(()) => response,
    }
}

/// The metrics endpoint: serves until dropped (also after the server has
/// stopped, with its final figures).
pub struct MetricsServer {
    http: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    hub: Arc<Hub>,
    addr: SocketAddr,
}

impl MetricsServer {
    /// The address it listens on (with the actual port).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A fresh snapshot, as a request would get it (waiting up to a second
    /// for the workers); after the server stopped, its final figures. `None`
    /// before the server has started.
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.hub.snapshot()
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.http.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// The metrics endpoint could not start.
#[derive(Debug)]
pub struct MetricsError {
    /// The address asked for, if it resolved.
    pub addr: Option<SocketAddr>,
    /// Why.
    pub error: Box<dyn std::error::Error + Send + Sync>,
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            Some(addr) => {
                write!(f, "cannot serve metrics on {addr}: {} (is another program using that TCP port?)", self.error)
            }
            None => write!(f, "cannot serve metrics: {} (give an address such as 127.0.0.1:9100)", self.error),
        }
    }
}

impl std::error::Error for MetricsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.error)
    }
}

type Labels = Vec<(&'static str, String)>;

/// A registry of constant values for one scrape.
struct Families(Registry);

impl Families {
    fn counter(&mut self, name: &str, help: &str, value: u64) {
        let c = Counter::<u64>::default();
        c.inc_by(value);
        self.0.register(name, help, c);
    }

    fn counters<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &'static str,
        values: impl Iterator<Item = (&'a str, u64)>,
    ) {
        let family = Family::<Labels, Counter<u64>>::default();
        for (v, n) in values {
            family.get_or_create(&vec![(label, v.to_string())]).inc_by(n);
        }
        self.0.register(name, help, family);
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(value).unwrap_or(i64::MAX));
        self.0.register(name, help, g);
    }

    fn gauge_f64(&mut self, name: &str, help: &str, value: f64) {
        let g = Gauge::<f64, AtomicU64>::default();
        g.set(value);
        self.0.register(name, help, g);
    }

    fn histogram(&mut self, name: &str, help: &str, buckets: &[f64], values: impl Iterator<Item = f64>) {
        let h = Histogram::new(buckets.iter().copied());
        for v in values {
            h.observe(v);
        }
        self.0.register(name, help, h);
    }

    fn gauges(&mut self, name: &str, help: &str, values: impl Iterator<Item = (Labels, u64)>) {
        let family = Family::<Labels, Gauge<i64>>::default();
        for (labels, v) in values {
            family.get_or_create(&labels).set(i64::try_from(v).unwrap_or(i64::MAX));
        }
        self.0.register(name, help, family);
    }
}

/// `snapshot` in the Prometheus text format (0.0.4), as `GET /metrics`
/// serves it. Also usable for a node_exporter textfile collector.
pub fn encode_prometheus(snapshot: &Snapshot) -> String {
    let t = &snapshot.totals;
    let mut f = Families(Registry::default());

    // Connections by protocol version and state.
    let mut by_state: BTreeMap<(String, &str), u64> = BTreeMap::new();
    for c in &snapshot.connections {
        let state = if c.state == "closing" { "closing" } else { "connected" };
        *by_state.entry((c.version.clone(), state)).or_default() += 1;
    }
    // Pending handshakes have no version yet: a CLIENT_HELLO is MPGS/1's.
    *by_state.entry(("1".to_string(), "connecting")).or_default() += t.pending_handshakes;
    for state in ["connected", "closing"] {
        by_state.entry(("1".to_string(), state)).or_default();
    }
    f.gauges(
        "mpgs_connections",
        "Connections by protocol version and state",
        by_state.into_iter().map(|((version, state), n)| (vec![("version", version), ("state", state.to_string())], n)),
    );
    f.gauge("mpgs_pending_handshakes", "Handshakes in progress", t.pending_handshakes);
    f.gauge("mpgs_workers", "Worker threads (endpoints) of the server", u64::from(snapshot.workers));

    f.counter("mpgs_handshakes_started", "Handshakes started (CLIENT_HELLOs admitted)", t.handshakes_started);
    f.counter("mpgs_handshakes_completed", "Handshakes completed", t.handshakes_completed);
    f.counters(
        "mpgs_handshakes_refused",
        "CLIENT_HELLOs refused, by limit: rate (endpoint-wide hello rate), source (per-address or per-prefix limits), full (connection cap)",
        "reason",
        [("rate", t.hellos_refused_rate), ("source", t.hellos_refused_source), ("full", t.hellos_refused_full)]
            .into_iter(),
    );
    f.counter("mpgs_handshakes_evicted", "Pending handshakes evicted for newer ones", t.handshakes_evicted);
    f.counter("mpgs_server_hello_keys", "Signed server ephemeral keys generated", t.server_hello_keys);
    f.counter(
        "mpgs_amplification_limited",
        "SERVER_HELLO repeats withheld by the anti-amplification rule",
        t.amplification_limited,
    );

    f.counters(
        "mpgs_datagrams",
        "Datagrams through the endpoints",
        "direction",
        [("in", t.datagrams_received), ("out", t.datagrams_sent)].into_iter(),
    );
    f.counters(
        "mpgs_bytes",
        "Bytes of the datagrams through the endpoints",
        "direction",
        [("in", t.bytes_received), ("out", t.bytes_sent)].into_iter(),
    );
    f.counters(
        "mpgs_dropped_datagrams",
        "Received datagrams dropped, by reason",
        "reason",
        DropReason::ALL.iter().map(|r| (r.name(), t.dropped.get(r.name()).copied().unwrap_or(0))),
    );
    f.counter("mpgs_fragments_dropped", "Fragments dropped by reassembly checks or bounds", t.fragments_dropped);
    f.counter("mpgs_reassemblies_expired", "Reassemblies expired incomplete", t.reassemblies_expired);
    f.counter(
        "mpgs_reassembly_budget_refusals",
        "Datagrams refused by a reassembly budget",
        t.reassembly_budget_refusals,
    );
    f.gauge("mpgs_reassembly_bytes", "Bytes held for reassembling fragmented messages", t.reassembly_bytes);

    f.counter("mpgs_messages_received", "Messages delivered to the application", t.messages_received);
    f.counters(
        "mpgs_message_outcomes",
        "Outcomes of the messages sent: delivered (acknowledged) or lost",
        "outcome",
        [("delivered", t.messages_delivered), ("lost", t.messages_lost)].into_iter(),
    );
    f.counters(
        "mpgs_disconnects",
        "Connections ended, by reason",
        "reason",
        EventCounts::DISCONNECT_REASONS.iter().map(|&r| (r, t.disconnects.get(r).copied().unwrap_or(0))),
    );

    f.histogram(
        "mpgs_connection_rtt_seconds",
        "Smoothed RTT of each connection that measured one (the connections of the moment)",
        &RTT_BUCKETS,
        snapshot.connections.iter().filter_map(|c| c.srtt_ms).map(|ms| ms / 1e3),
    );
    f.histogram(
        "mpgs_connection_loss_ratio",
        "Datagram loss of each connection: lost over lost and acknowledged (the connections of the moment)",
        &LOSS_BUCKETS,
        snapshot.connections.iter().map(|c| c.loss),
    );
    let max_of = |get: fn(&ConnectionInfo) -> u64| snapshot.connections.iter().map(get).max().unwrap_or(0);
    f.gauges(
        "mpgs_send_queue_messages",
        "Messages in the send queues: sum and largest over the connections",
        [
            (vec![("stat", "sum".to_string())], t.queued_messages),
            (vec![("stat", "max".to_string())], max_of(|c| c.queued_messages)),
        ]
        .into_iter(),
    );
    f.gauges(
        "mpgs_send_queue_bytes",
        "Bytes in the send queues: sum and largest over the connections",
        [
            (vec![("stat", "sum".to_string())], t.queued_bytes),
            (vec![("stat", "max".to_string())], max_of(|c| c.queued_bytes)),
        ]
        .into_iter(),
    );

    let s = &t.socket;
    f.counters(
        "mpgs_socket_datagrams",
        "Datagrams through the sockets",
        "direction",
        [("in", s.datagrams_received), ("out", s.datagrams_sent)].into_iter(),
    );
    f.counters(
        "mpgs_socket_errors",
        "Socket events: receive and send errors, full send buffers, oversized datagrams, failed waits",
        "kind",
        [
            ("recv", s.recv_errors),
            ("send", s.send_errors),
            ("send_blocked", s.send_blocked),
            ("oversized", s.oversized),
            ("wait", s.wait_errors),
        ]
        .into_iter(),
    );
    f.gauge(
        "mpgs_metrics_stale_workers",
        "Workers that did not answer this scrape in time (their previous figures are used)",
        u64::from(snapshot.workers - snapshot.workers_fresh.min(snapshot.workers)),
    );
    f.gauge_f64(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds",
        snapshot.start_time,
    );

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_text::encode(&mut out, &f.0);
    out
}

/// The process's start time (Linux: from `/proc`), Unix seconds.
#[cfg(target_os = "linux")]
fn process_start_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Field 22 (starttime, in clock ticks since boot); the command name
    // (field 2) may hold spaces, so count from its closing parenthesis.
    let after = &stat[stat.rfind(')')? + 1..];
    let ticks: f64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let hz = rustix::param::clock_ticks_per_second() as f64;
    Some(boot + ticks / hz)
}

/// The process's start time: unknown here (the export's start is used).
#[cfg(not(target_os = "linux"))]
fn process_start_time() -> Option<f64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_snapshot_encodes_every_family() {
        let text = encode_prometheus(&Snapshot { workers: 1, workers_fresh: 1, ..Snapshot::default() });
        for family in [
            "mpgs_connections",
            "mpgs_dropped_datagrams_total",
            "mpgs_connection_rtt_seconds",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(&format!("# TYPE {family} ")), "{family} missing from\n{text}");
        }
        assert!(text.contains(r#"mpgs_connections{version="1",state="connected"} 0"#), "{text}");
    }

    #[test]
    fn a_worker_that_does_not_answer_is_served_stale_and_counted() {
        let hub = Hub::new(2);
        assert!(hub.snapshot().is_none(), "nothing before the server starts");
        // Worker 0 answers every request from its own thread; worker 1 answered once, long ago.
        let totals = |n| Totals { datagrams_received: n, connections: 1, ..Totals::default() };
        hub.lock()[1] = Slot {
            generation: 0,
            snapshot: Some(WorkerSnapshot { totals: totals(5), connections: Vec::new() }),
            stopped: false,
        };
        let earlier = hub.requested.load(Ordering::Acquire);
        let answering = {
            let hub = hub.clone();
            std::thread::spawn(move || {
                let mut answered = earlier;
                while answered <= earlier {
                    let requested = hub.requested.load(Ordering::Acquire);
                    if requested > answered {
                        answered = requested;
                        let snapshot = WorkerSnapshot { totals: totals(7), connections: Vec::new() };
                        hub.lock()[0] = Slot { generation: requested, snapshot: Some(snapshot), stopped: false };
                        hub.answered.notify_all();
                    }
                    std::thread::yield_now();
                }
            })
        };
        let snap = hub.snapshot().unwrap();
        answering.join().unwrap();
        assert_eq!((snap.workers, snap.workers_fresh), (2, 1));
        assert_eq!(snap.totals.datagrams_received, 12);
        assert_eq!(snap.totals.connections, 2);
        assert_eq!(snap.per_worker.iter().map(|w| w.fresh).collect::<Vec<_>>(), [true, false]);
        assert!(encode_prometheus(&snap).contains("mpgs_metrics_stale_workers 1\n"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_started_in_the_past() {
        let start = process_start_time().unwrap();
        let now = unix_time_now();
        assert!(start <= now + 1.0 && start > now - 7.0 * 86_400.0, "start {start}, now {now}");
    }
}
