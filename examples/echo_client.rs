//! An echo client on the blocking driver: sends messages of random content
//! (one at a time, or `--burst N` at a time), checks each echo byte for
//! byte, and prints two lines:
//!
//! ```text
//! echoed K/N messages, size S, rtt p50 X ms p99 Y ms, late L, lost M, mismatched B
//! disconnect confirmed by the server
//! ```
//!
//! `echoed` counts the intact echoes that came while the client waited for
//! them (the round-trip times are theirs); `late` the intact echoes that
//! came after their wait ended (`late 2 (up to 3.41 s after the wait)`:
//! raise `--timeout`); `lost` the messages no intact echo came back for
//! before the client stopped (`N - echoed - late`); `mismatched` the
//! replies that match nothing the client ever sent (corruption). A reply
//! repeating one already received is reported on stderr as a duplicate.
//! Each burst's wait is `--timeout` seconds, by default sized by what the
//! burst sends (see [`default_wait`]).
//!
//! The exit status is 0 only if every message came back intact and in
//! time, and nothing else came. Run `echo_server` first (see its
//! documentation). It connects with MPGS/2 (the crate's native protocol)
//! by default; `--protocol v1` connects with MPGS/1, the only protocol a
//! Python reference server speaks.
//!
//! For testing against other servers (`tests/interop/`): `--reply sha256`
//! expects the SHA-256 digest of each message instead of its echo;
//! `--pause S` idles between bursts (only keep-alives flow; late echoes
//! are still recognised); and `--expect-close` does not disconnect at the
//! end but waits for the server to end the connection, and fails if it
//! does not.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use mpgameserver::{Delivery, DisconnectReason, Duration, Event, Instant, MessageId, ProtocolVersion, PublicKey, Rng};
use mpgameserver_drivers::ClientConfig;
use mpgameserver_drivers::blocking::Client;
use mpgameserver_drivers::{DisconnectOutcome, os_seed};
use sha2::{Digest, Sha256};

/// Send messages of random content to an echo server and check every echo byte for byte.
#[derive(Parser, Debug)]
#[command(name = "echo_client")]
struct Args {
    /// The server's address, e.g. 127.0.0.1:5000
    #[arg(long, value_name = "ADDR")]
    server: SocketAddr,
    /// The server's public key to pin (PEM, e.g. keys/root.pub from keygen)
    #[arg(long, value_name = "FILE.pub")]
    key: PathBuf,
    /// How many messages to send
    #[arg(long, value_name = "N", default_value_t = 200)]
    count: u32,
    /// Size of each message in bytes (up to 1048576)
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    size: usize,
    /// Delivery mode of the messages sent: unreliable, best-effort or reliable (echoes come back reliable)
    #[arg(long, default_value_t = Delivery::Reliable)]
    delivery: Delivery,
    /// Seconds to wait for the connection, and for the echoes of each burst; an echo
    /// that comes after its wait is reported as late. Default: 10 s for the
    /// connection; for a burst, 10 s + 1 s per 16 KiB it sends (size × burst /
    /// 16384), e.g. 74 s for one 1 MiB message (the Python reference, the
    /// slowest peer tested, echoes 200 KB in about 7 s on loopback)
    #[arg(long, value_name = "S")]
    timeout: Option<f64>,
    /// Messages sent together before waiting for their echoes (small ones share datagrams)
    #[arg(long, value_name = "N", default_value_t = 1)]
    burst: u32,
    /// Seconds to stay idle between bursts
    #[arg(long, value_name = "S", default_value_t = 0.0)]
    pause: f64,
    /// What the server answers each message with: its echo, or its SHA-256 digest
    #[arg(long, value_enum, default_value_t = Reply::Echo)]
    reply: Reply,
    /// At the end, wait (up to --timeout) for the server to end the connection instead of disconnecting
    #[arg(long)]
    expect_close: bool,
    /// Protocol to connect with: v2 (MPGS/2, this crate's native protocol; the default) or v1 (MPGS/1, the only one a Python reference server speaks)
    #[arg(long, value_name = "v1|v2", default_value_t = ProtocolVersion::V2)]
    protocol: ProtocolVersion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Reply {
    Echo,
    Sha256,
}

/// The wait for the connection (and for the server to close it) without `--timeout`.
const BASE_WAIT: Duration = Duration::from_secs(10);
/// Bytes a burst may send per second of its default wait beyond [`BASE_WAIT`].
const WAIT_BYTES_PER_S: f64 = 16_384.0;

/// The default wait for the echoes of a burst of `burst` messages of `size`
/// bytes: [`BASE_WAIT`] plus one second per 16 KiB the burst sends. The
/// slowest peer we test against, the Python reference, paces its datagrams
/// (it echoed 200 KB in about 7 s on loopback, about 29 KB/s of message
/// per round trip), so this leaves it twice the time it needs or more at
/// every size up to 1 MiB.
fn default_wait(size: usize, burst: u32) -> Duration {
    let bytes = size as f64 * f64::from(burst);
    BASE_WAIT + Duration::from_secs_f64(bytes / WAIT_BYTES_PER_S)
}

/// A message whose wait is running.
struct Pending {
    id: MessageId,
    /// The reply it should get (the message, or its digest).
    expected: Vec<u8>,
    sent_at: Instant,
    /// The endpoint reported it lost (its delivery mode gave up): no reply
    /// is expected any more, but one may still come.
    reported_lost: bool,
}

/// A message whose wait ended without its reply.
#[derive(Clone, Copy, Debug)]
struct GaveUp {
    sent_at: Instant,
    /// When its wait ended.
    at: Instant,
}

/// What became of a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// The reply of a message still waited for.
    Echoed { rtt: Duration },
    /// The reply of a message given up on: `after` its wait ended.
    Late { rtt: Duration, after: Duration },
    /// A reply identical to one already received (a duplicate delivery).
    Duplicate,
    /// Bytes that are the reply of nothing sent.
    Mismatched,
}

/// Counts of the replies so far.
#[derive(Debug, Default)]
struct Tally {
    echoed: u32,
    late: u32,
    /// The latest a late echo came after its wait ended.
    max_late: Duration,
    /// The longest round trip of a late echo.
    max_late_rtt: Duration,
    duplicates: u32,
    mismatched: u32,
    /// Round-trip times of the echoed (in time) messages.
    rtts: Vec<Duration>,
}

/// The bookkeeping of what was sent and what came back, apart from the
/// socket and the clock (every time is an argument): which messages are
/// waited for, which were given up on, and what each reply is.
struct Ledger {
    reply: Reply,
    waiting: Vec<Pending>,
    /// Messages given up on, by the SHA-256 of their expected reply (small
    /// random messages can repeat, hence a list). Digests, not the replies:
    /// memory stays 32 bytes per message even for 1 MiB messages.
    given_up: BTreeMap<[u8; 32], Vec<GaveUp>>,
    /// SHA-256 of every reply received intact, to tell a duplicate from corruption.
    answered: BTreeSet<[u8; 32]>,
    tally: Tally,
}

/// The summary line (the first line of the output).
#[derive(Clone, Debug, PartialEq)]
struct Summary {
    count: u32,
    size: usize,
    echoed: u32,
    late: u32,
    max_late: Duration,
    lost: u32,
    mismatched: u32,
    /// Median and 99th percentile round-trip time of the echoed messages.
    p50: Option<Duration>,
    p99: Option<Duration>,
}

impl Ledger {
    /// An empty ledger for `count` messages answered as `reply` says.
    fn new(reply: Reply, count: usize) -> Ledger {
        Ledger {
            reply,
            waiting: Vec::new(),
            given_up: BTreeMap::new(),
            answered: BTreeSet::new(),
            tally: Tally { rtts: Vec::with_capacity(count), ..Tally::default() },
        }
    }

    /// Message `id` was sent at `at`: its reply is now waited for.
    fn sent(&mut self, id: MessageId, message: &[u8], at: Instant) {
        let expected = match self.reply {
            Reply::Echo => message.to_vec(),
            Reply::Sha256 => Sha256::digest(message).to_vec(),
        };
        self.waiting.push(Pending { id, expected, sent_at: at, reported_lost: false });
    }

    /// The endpoint reported message `id` lost: its wait need not go on.
    fn reported_lost(&mut self, id: MessageId) {
        if let Some(p) = self.waiting.iter_mut().find(|p| p.id == id) {
            p.reported_lost = true;
        }
    }

    /// Whether a waited-for message may still get its reply (none reported lost).
    fn awaiting(&self) -> bool {
        self.waiting.iter().any(|p| !p.reported_lost)
    }

    /// The wait ended at `now`: every message still waited for is given up
    /// on (a reply that still comes is late). Returns how many.
    fn give_up(&mut self, now: Instant) -> usize {
        let n = self.waiting.len();
        for p in self.waiting.drain(..) {
            let digest: [u8; 32] = Sha256::digest(&p.expected).into();
            self.given_up.entry(digest).or_default().push(GaveUp { sent_at: p.sent_at, at: now });
        }
        n
    }

    /// A reply arrived at `now`: classifies and counts it.
    fn received(&mut self, payload: &[u8], now: Instant) -> Verdict {
        let digest: [u8; 32] = Sha256::digest(payload).into();
        let verdict = if let Some(i) = self.waiting.iter().position(|p| p.expected == payload) {
            let p = self.waiting.remove(i); // keeps the send order: the oldest match first
            Verdict::Echoed { rtt: now.saturating_duration_since(p.sent_at) }
        } else if let Some(list) = self.given_up.get_mut(&digest) {
            // The oldest first: it is the likeliest to come first.
            let g = list.remove(0);
            if list.is_empty() {
                self.given_up.remove(&digest);
            }
            Verdict::Late { rtt: now.saturating_duration_since(g.sent_at), after: now.saturating_duration_since(g.at) }
        } else if self.answered.contains(&digest) {
            Verdict::Duplicate
        } else {
            Verdict::Mismatched
        };
        let t = &mut self.tally;
        match verdict {
            Verdict::Echoed { rtt } => {
                t.echoed += 1;
                t.rtts.push(rtt);
                self.answered.insert(digest);
            }
            Verdict::Late { rtt, after } => {
                t.late += 1;
                t.max_late = t.max_late.max(after);
                t.max_late_rtt = t.max_late_rtt.max(rtt);
                self.answered.insert(digest);
            }
            Verdict::Duplicate => t.duplicates += 1,
            Verdict::Mismatched => t.mismatched += 1,
        }
        verdict
    }

    /// The summary of a run of `count` messages of `size` bytes.
    fn summary(&self, count: u32, size: usize) -> Summary {
        let t = &self.tally;
        let mut rtts = t.rtts.clone();
        rtts.sort_unstable();
        let q = |q: f64| match rtts.len() {
            0 => None,
            n => Some(rtts[((n - 1) as f64 * q).round() as usize]),
        };
        Summary {
            count,
            size,
            echoed: t.echoed,
            late: t.late,
            max_late: t.max_late,
            lost: count.saturating_sub(t.echoed + t.late),
            mismatched: t.mismatched,
            p50: q(0.5),
            p99: q(0.99),
        }
    }
}

impl Summary {
    /// Every message echoed intact in time, and no reply matching nothing.
    fn all_intact_in_time(&self) -> bool {
        self.echoed == self.count && self.late == 0 && self.mismatched == 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Option<Duration>| d.map_or_else(|| "-".to_string(), |d| format!("{:.2}", d.as_secs_f64() * 1e3));
        write!(
            f,
            "echoed {}/{} messages, size {}, rtt p50 {} ms p99 {} ms, late {}",
            self.echoed,
            self.count,
            self.size,
            ms(self.p50),
            ms(self.p99),
            self.late
        )?;
        if self.late > 0 {
            write!(f, " (up to {:.2} s after the wait)", self.max_late.as_secs_f64())?;
        }
        write!(f, ", lost {}, mismatched {}", self.lost, self.mismatched)
    }
}

fn main() -> ExitCode {
    init_logging();
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("echo_client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn seconds(value: f64, flag: &str, allow_zero: bool) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|t| allow_zero || !t.is_zero())
        .ok_or_else(|| format!("{flag} must be a positive number of seconds, not {value}"))
}

/// Whether every message came back intact and in time.
fn run(args: &Args) -> Result<bool, Box<dyn std::error::Error>> {
    let timeout = args.timeout.map(|t| seconds(t, "--timeout", false)).transpose()?;
    let pause = seconds(args.pause, "--pause", true)?;
    if args.burst == 0 {
        return Err("--burst must be at least 1".into());
    }
    let wait = timeout.unwrap_or_else(|| default_wait(args.size, args.burst.min(args.count.max(1))));
    let other_wait = timeout.unwrap_or(BASE_WAIT);
    let key = PublicKey::read_pem_file(&args.key)?;
    let mut config = ClientConfig::default();
    config.endpoint.protocol = args.protocol;
    let mut client = Client::connect_with(config, args.server, key, other_wait)?;
    let mut rng = Rng::new(os_seed()?);
    let mut message = vec![0u8; args.size];
    let mut ledger = Ledger::new(args.reply, args.count as usize);
    let mut closed = None;
    let mut sent = 0;

    while sent < args.count && closed.is_none() {
        if sent > 0 && !pause.is_zero() {
            let until = client.now() + pause;
            closed = wait_until(&mut client, &mut ledger, until, false);
            if closed.is_some() {
                break;
            }
        }
        for _ in 0..args.burst.min(args.count - sent) {
            rng.fill(&mut message);
            let sent_at = client.now();
            let id = client.send(&message, args.delivery)?;
            ledger.sent(id, &message, sent_at);
            sent += 1;
        }
        let deadline = client.now() + wait;
        closed = wait_until(&mut client, &mut ledger, deadline, true);
        let gave_up = ledger.give_up(client.now());
        if closed.is_none() && gave_up > 0 {
            eprintln!(
                "echo_client: {gave_up} echoes did not come within {:.1} s (an echo that still comes is reported as late)",
                wait.as_secs_f64()
            );
        }
    }
    let ending = match closed {
        Some(reason) => {
            eprintln!("echo_client: the connection ended early: {reason}");
            format!("connection ended early: {reason}")
        }
        None if args.expect_close => {
            let deadline = client.now() + other_wait;
            closed = wait_until(&mut client, &mut ledger, deadline, false);
            match closed {
                Some(reason) => format!("connection ended by the server: {reason}"),
                None => format!("the server did not end the connection within {:.1} s", other_wait.as_secs_f64()),
            }
        }
        None => match client.disconnect(Duration::from_secs(1)) {
            DisconnectOutcome::Confirmed => "disconnect confirmed by the server".to_string(),
            DisconnectOutcome::Unconfirmed => "disconnect not confirmed by the server".to_string(),
            DisconnectOutcome::AlreadyClosed => "connection had already ended".to_string(),
        },
    };

    let summary = ledger.summary(args.count, args.size);
    println!("{summary}");
    println!("{ending}");
    let t = &ledger.tally;
    if t.late > 0 {
        eprintln!(
            "echo_client: {} echoes came intact but after their wait had ended (up to {:.2} s after it, \
             round trips up to {:.2} s): raise --timeout (this run waited {:.1} s per burst)",
            t.late,
            t.max_late.as_secs_f64(),
            t.max_late_rtt.as_secs_f64(),
            wait.as_secs_f64()
        );
    }
    if t.mismatched > 0 {
        eprintln!("echo_client: {} replies did not match anything that was sent", t.mismatched);
    }
    if t.duplicates > 0 {
        eprintln!("echo_client: {} replies repeated one already received", t.duplicates);
    }
    let ended_as_asked = !args.expect_close || closed.is_some();
    Ok(summary.all_intact_in_time() && t.duplicates == 0 && ended_as_asked)
}

/// Runs the client until `deadline` or the end of the connection, handing
/// every reply and loss report to `ledger`. With `for_burst`, it returns as
/// soon as no reply is awaited any more (each has come, or was reported
/// lost). Returns why the connection ended, if it did.
fn wait_until(
    client: &mut Client,
    ledger: &mut Ledger,
    deadline: Instant,
    for_burst: bool,
) -> Option<DisconnectReason> {
    loop {
        while let Some(event) = client.poll_event() {
            match event {
                Event::Message { payload, .. } => {
                    ledger.received(&payload, client.now());
                }
                Event::Lost { id, .. } => ledger.reported_lost(id),
                Event::Disconnected { reason, .. } => return Some(reason),
                _ => {}
            }
        }
        let now = client.now();
        if now >= deadline || (for_burst && !ledger.awaiting()) {
            return None;
        }
        client.update_wait(deadline - now);
    }
}

/// Logs to stderr; `RUST_LOG=debug` shows more.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// Run by `cargo test` through `tests/ops/tools.rs`, which includes this file.
#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn an_echo_within_the_wait_is_echoed_with_its_round_trip() {
        let mut l = Ledger::new(Reply::Echo, 2);
        l.sent(MessageId(0), b"first message....", at(0));
        l.sent(MessageId(1), b"second message...", at(1));
        assert!(l.awaiting());
        assert_eq!(l.received(b"second message...", at(11)), Verdict::Echoed { rtt: 10 * MS });
        assert_eq!(l.received(b"first message....", at(20)), Verdict::Echoed { rtt: 20 * MS });
        assert!(!l.awaiting());
        assert_eq!(l.give_up(at(30)), 0);
        let s = l.summary(2, 17);
        assert_eq!((s.echoed, s.late, s.lost, s.mismatched), (2, 0, 0, 0));
        assert!(s.all_intact_in_time());
    }

    #[test]
    fn an_echo_after_its_wait_is_late_by_how_long_not_mismatched() {
        let mut l = Ledger::new(Reply::Echo, 2);
        l.sent(MessageId(0), b"a large message..", at(0));
        assert_eq!(l.give_up(at(10_000)), 1);
        // The next burst is waited for when the first echo comes.
        l.sent(MessageId(1), b"the next message.", at(10_000));
        assert_eq!(l.received(b"a large message..", at(13_500)), Verdict::Late { rtt: 13_500 * MS, after: 3_500 * MS });
        assert!(l.awaiting(), "the late echo does not answer the message waited for now");
        assert_eq!(l.received(b"the next message.", at(13_600)), Verdict::Echoed { rtt: 3_600 * MS });
        let s = l.summary(2, 17);
        assert_eq!((s.echoed, s.late, s.lost, s.mismatched), (1, 1, 0, 0));
        assert_eq!(s.max_late, 3_500 * MS);
        assert_eq!(l.tally.max_late_rtt, 13_500 * MS);
        assert!(!s.all_intact_in_time(), "a late echo fails the run: --timeout was too short");
    }

    #[test]
    fn bytes_that_are_the_reply_of_nothing_sent_are_mismatched() {
        let mut l = Ledger::new(Reply::Echo, 1);
        l.sent(MessageId(0), b"what was sent....", at(0));
        assert_eq!(l.received(b"what was sent...!", at(5)), Verdict::Mismatched);
        l.give_up(at(100));
        // Given up on, and then a corrupt copy: still no match.
        assert_eq!(l.received(b"What was sent....", at(150)), Verdict::Mismatched);
        let s = l.summary(1, 17);
        assert_eq!((s.echoed, s.late, s.lost, s.mismatched), (0, 0, 1, 2));
    }

    #[test]
    fn a_repeated_reply_is_a_duplicate_not_a_mismatch_nor_a_second_echo() {
        let mut l = Ledger::new(Reply::Echo, 2);
        l.sent(MessageId(0), b"in time message..", at(0));
        l.sent(MessageId(1), b"late message.....", at(0));
        assert!(matches!(l.received(b"in time message..", at(5)), Verdict::Echoed { .. }));
        l.give_up(at(100));
        assert!(matches!(l.received(b"late message.....", at(150)), Verdict::Late { .. }));
        assert_eq!(l.received(b"in time message..", at(160)), Verdict::Duplicate);
        assert_eq!(l.received(b"late message.....", at(170)), Verdict::Duplicate);
        let s = l.summary(2, 17);
        assert_eq!((s.echoed, s.late, s.lost, s.mismatched), (1, 1, 0, 0));
        assert_eq!(l.tally.duplicates, 2);
    }

    #[test]
    fn identical_small_messages_are_each_matched_once() {
        let mut l = Ledger::new(Reply::Echo, 3);
        for id in 0..3 {
            l.sent(MessageId(id), b"x", at(id));
        }
        assert!(matches!(l.received(b"x", at(5)), Verdict::Echoed { .. }));
        l.give_up(at(10));
        assert_eq!(l.received(b"x", at(12)), Verdict::Late { rtt: 11 * MS, after: 2 * MS }, "the oldest first");
        assert_eq!(l.received(b"x", at(13)), Verdict::Late { rtt: 11 * MS, after: 3 * MS });
        // Every "x" sent has had its reply: a fourth one repeats one.
        assert_eq!(l.received(b"x", at(14)), Verdict::Duplicate);
    }

    #[test]
    fn a_message_reported_lost_ends_the_wait_but_its_echo_is_still_recognised() {
        let mut l = Ledger::new(Reply::Echo, 1);
        l.sent(MessageId(7), b"maybe lost.......", at(0));
        l.reported_lost(MessageId(8)); // not ours: nothing changes
        assert!(l.awaiting());
        l.reported_lost(MessageId(7));
        assert!(!l.awaiting(), "no reply is expected once the endpoint gave the message up");
        // Its delivery was only unconfirmed: the echo comes before the wait ends.
        assert_eq!(l.received(b"maybe lost.......", at(40)), Verdict::Echoed { rtt: 40 * MS });
        let mut l = Ledger::new(Reply::Echo, 1);
        l.sent(MessageId(7), b"maybe lost.......", at(0));
        l.reported_lost(MessageId(7));
        l.give_up(at(50));
        assert_eq!(l.received(b"maybe lost.......", at(80)), Verdict::Late { rtt: 80 * MS, after: 30 * MS });
    }

    #[test]
    fn sha256_replies_are_matched_by_digest() {
        let mut l = Ledger::new(Reply::Sha256, 2);
        l.sent(MessageId(0), b"hash me", at(0));
        l.sent(MessageId(1), b"and me", at(0));
        // The echo itself is not the reply asked for.
        assert_eq!(l.received(b"hash me", at(1)), Verdict::Mismatched);
        assert!(matches!(l.received(&Sha256::digest(b"hash me"), at(2)), Verdict::Echoed { .. }));
        l.give_up(at(10));
        assert!(matches!(l.received(&Sha256::digest(b"and me"), at(20)), Verdict::Late { .. }));
    }

    #[test]
    fn the_summary_line_keeps_its_prefix_and_counts_late_lost_and_mismatched() {
        let mut l = Ledger::new(Reply::Echo, 5);
        for (id, rtt) in [(0u8, 10), (1, 20), (2, 30)] {
            l.sent(MessageId(id.into()), &[id; 20], at(0));
            l.received(&[id; 20], at(rtt));
        }
        l.sent(MessageId(3), &[3; 20], at(100));
        l.sent(MessageId(4), &[4; 20], at(100));
        l.give_up(at(200));
        l.received(&[3; 20], at(1_450));
        l.received(&[9; 20], at(1_500));
        let s = l.summary(5, 20);
        assert_eq!(
            s.to_string(),
            "echoed 3/5 messages, size 20, rtt p50 20.00 ms p99 30.00 ms, late 1 (up to 1.25 s after the wait), \
             lost 1, mismatched 1"
        );
        let clean = Ledger::new(Reply::Echo, 0).summary(0, 100);
        assert_eq!(
            clean.to_string(),
            "echoed 0/0 messages, size 100, rtt p50 - ms p99 - ms, late 0, lost 0, mismatched 0"
        );
        // Messages never sent (the connection ended early) are lost too.
        assert_eq!(Ledger::new(Reply::Echo, 4).summary(4, 100).lost, 4);
    }

    #[test]
    fn the_default_wait_grows_by_a_second_per_16_kib_a_burst_sends() {
        assert_eq!(default_wait(0, 1), Duration::from_secs(10));
        assert_eq!(default_wait(16_384, 1), Duration::from_secs(11));
        assert_eq!(default_wait(1 << 20, 1), Duration::from_secs(74));
        assert_eq!(default_wait(100, 200), default_wait(20_000, 1));
        // The Python reference echoed 200 KB in about 7 s (29 KB/s): twice
        // that time or more at every size up to 1 MiB.
        for size in [1_000, 100_000, 200_000, 1 << 20] {
            let needs = Duration::from_secs_f64(size as f64 / 29_000.0);
            assert!(default_wait(size, 1) >= 2 * needs, "{size} B");
        }
    }
}
