//! What every peer's load client shares with `examples/loadgen`: the
//! message (`seq (u64) ‖ send time (u64 µs) ‖ filler`, the filler a
//! function of the client and `seq`), its byte-for-byte check, the per-client
//! record of echoes, the counters, the phases' timing and the two output
//! lines, key for key.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Bytes of a message before its filler: seq and send time.
pub const STAMP: usize = 16;
/// Echoes remembered per client, to recognise duplicates.
pub const WINDOW: u64 = 8192;

/// How the messages travel (and how the peers' servers echo them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Delivery {
    /// renet: the unreliable channel; quinn: QUIC datagrams.
    Unreliable,
    /// renet: the reliable-ordered channel; quinn: one bidirectional stream per client.
    Reliable,
}

/// The load pattern, with `examples/loadgen`'s flags and defaults.
#[derive(clap::Args, Clone, Debug)]
pub struct LoadArgs {
    /// The echo server's address, e.g. 127.0.0.1:5000
    #[arg(long, value_name = "ADDR")]
    pub server: SocketAddr,
    /// Number of client connections
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub clients: u32,
    /// Messages per second per client (one per tick)
    #[arg(long, value_name = "R", default_value_t = 60.0)]
    pub hz: f64,
    /// Size of each message in bytes (at least 16)
    #[arg(long, value_name = "B", default_value_t = 100)]
    pub size: usize,
    /// Length of the measurement window, in seconds
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub duration: f64,
    /// How the messages travel
    #[arg(long, value_enum, default_value_t = Delivery::Unreliable)]
    pub delivery: Delivery,
    /// Seconds of load before the measurement window
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds to wait for late echoes after the window
    #[arg(long, value_name = "S", default_value_t = 2.0)]
    pub drain: f64,
    /// Seconds allowed for all the handshakes
    #[arg(long, value_name = "S", default_value_t = 20.0)]
    pub connect_timeout: f64,
    /// Handshakes in flight at once
    #[arg(long, value_name = "P", default_value_t = 64)]
    pub concurrency: u32,
    /// The server's process id, to report its CPU use during the window (Linux /proc)
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
}

impl LoadArgs {
    /// Checks the arguments; returns the tick period.
    pub fn validate(&self, max_size: usize) -> Result<Duration, String> {
        if !(self.hz > 0.0 && self.hz <= 10_000.0) {
            return Err("--hz must be in (0, 10000]".into());
        }
        if self.size < STAMP || self.size > max_size {
            return Err(format!("--size must be in {STAMP}..={max_size}"));
        }
        if self.clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        for s in [self.warmup, self.duration, self.drain, self.connect_timeout] {
            secs(s)?;
        }
        Ok(Duration::from_micros((1e6 / self.hz).round() as u64))
    }
}

/// A number of seconds from the command line.
pub fn secs(s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("{s} is not a number of seconds"))
}

/// Microseconds since the start of the process: the time base of the
/// messages' stamps (one clock for every client of a process).
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Clock {
        Clock(Instant::now())
    }

    pub fn us(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }

    pub fn at(&self, us: u64) -> Instant {
        self.0 + Duration::from_micros(us)
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// Writes message `seq` of client `i`, stamped with `now_us`.
pub fn fill_message(msg: &mut [u8], i: u32, seq: u64, now_us: u64) {
    msg[0..8].copy_from_slice(&seq.to_le_bytes());
    msg[8..16].copy_from_slice(&now_us.to_le_bytes());
    let mut x = filler_seed(i, seq);
    for b in &mut msg[STAMP..] {
        *b = (x >> 24) as u8;
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
    }
}

fn filler_seed(i: u32, seq: u64) -> u32 {
    (seq as u32).wrapping_mul(0x9E37_79B9) ^ i.wrapping_mul(0x85EB_CA6B) ^ (seq >> 32) as u32
}

/// One client's messages: the next sequence number and which of the last
/// [`WINDOW`] came back.
pub struct Track {
    pub id: u32,
    pub next_seq: u64,
    echoed: Box<[u64; (WINDOW / 64) as usize]>,
}

impl Track {
    pub fn new(id: u32) -> Track {
        Track { id, next_seq: 0, echoed: Box::new([0; (WINDOW / 64) as usize]) }
    }

    /// Writes the next message into `msg` (stamped `now_us`) and counts it
    /// if it falls in the window.
    pub fn next_message(&mut self, msg: &mut [u8], now_us: u64, window: Window, tally: &mut Tally) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.echoed[((seq % WINDOW) / 64) as usize] &= !(1 << (seq % 64));
        fill_message(msg, self.id, seq, now_us);
        if window.contains(now_us) {
            tally.sent += 1;
        }
    }

    /// Notes that the next message was sent by someone else (another task
    /// writing the same stream), so that its echo is expected.
    pub fn expect_next(&mut self) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.echoed[((seq % WINDOW) / 64) as usize] &= !(1 << (seq % 64));
    }

    /// Checks an echo and counts it.
    pub fn on_echo(&mut self, payload: &[u8], now_us: u64, window: Window, tally: &mut Tally) {
        if payload.len() < STAMP {
            tally.corrupt += 1;
            return;
        }
        let seq = u64::from_le_bytes(payload[0..8].try_into().expect("8 bytes: length checked above"));
        let sent_at = u64::from_le_bytes(payload[8..16].try_into().expect("8 bytes: length checked above"));
        let mut x = filler_seed(self.id, seq);
        let intact = seq < self.next_seq
            && payload[STAMP..].iter().all(|&b| {
                let ok = b == (x >> 24) as u8;
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ok
            });
        if !intact {
            tally.corrupt += 1;
            return;
        }
        let (word, bit) = (((seq % WINDOW) / 64) as usize, 1u64 << (seq % 64));
        if seq + WINDOW <= self.next_seq || self.echoed[word] & bit != 0 {
            tally.duplicates += 1;
            return;
        }
        self.echoed[word] |= bit;
        if window.contains(now_us) {
            tally.echoes_in_window += 1;
        }
        if window.contains(sent_at) {
            tally.echoed += 1;
            tally.rtts_us.push(u32::try_from(now_us.saturating_sub(sent_at)).unwrap_or(u32::MAX));
        }
    }
}

/// The measurement window, in [`Clock`] microseconds.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start: u64,
    pub end: u64,
}

impl Window {
    /// Before the phases are known: contains nothing.
    pub const NONE: Window = Window { start: u64::MAX, end: u64::MAX };

    pub fn contains(&self, t: u64) -> bool {
        t >= self.start && t < self.end
    }
}

/// The phases after the handshakes, in [`Clock`] microseconds.
#[derive(Clone, Copy, Debug)]
pub struct Phases {
    /// The clients start sending (client `i` at `t0 + period·i/N`).
    pub t0: u64,
    pub window: Window,
    /// The end of the drain.
    pub drain_end: u64,
}

impl Phases {
    pub fn new(args: &LoadArgs, now_us: u64) -> Phases {
        let us = |s: f64| (s * 1e6).round() as u64;
        let t0 = now_us + 20_000;
        let start = t0 + us(args.warmup);
        let end = start + us(args.duration);
        Phases { t0, window: Window { start, end }, drain_end: end + us(args.drain) }
    }

    /// When client `id` of `clients` sends its first message.
    pub fn first_send(&self, period: Duration, id: u32, clients: u32) -> u64 {
        self.t0 + (period.as_micros() as u64) * u64::from(id) / u64::from(clients)
    }
}

/// Counters of a run (or of one client, merged at the end).
#[derive(Default)]
pub struct Tally {
    pub connected: u32,
    pub failed: u32,
    /// Handshake times of the connected clients.
    pub connect_us: Vec<u32>,
    pub last_connected: Option<u64>,
    pub sent: u64,
    pub echoed: u64,
    pub echoes_in_window: u64,
    pub duplicates: u64,
    pub corrupt: u64,
    /// Messages the client library refused (a full queue or channel).
    pub refused: u64,
    pub disconnected: u64,
    pub send_errors: u64,
    pub rtts_us: Vec<u32>,
}

impl Tally {
    pub fn merge(&mut self, u: Tally) {
        self.connected += u.connected;
        self.failed += u.failed;
        self.connect_us.extend(u.connect_us);
        self.last_connected = self.last_connected.max(u.last_connected);
        self.sent += u.sent;
        self.echoed += u.echoed;
        self.echoes_in_window += u.echoes_in_window;
        self.duplicates += u.duplicates;
        self.corrupt += u.corrupt;
        self.refused += u.refused;
        self.disconnected += u.disconnected;
        self.send_errors += u.send_errors;
        self.rtts_us.extend(u.rtts_us);
    }

    /// A client finished its handshake, `started` µs after the clock's origin.
    pub fn on_connected(&mut self, started: u64, now_us: u64) {
        self.connected += 1;
        self.connect_us.push(u32::try_from(now_us.saturating_sub(started)).unwrap_or(u32::MAX));
        self.last_connected = self.last_connected.max(Some(now_us));
    }
}

/// Quantile `q` of sorted microseconds, in milliseconds (`-` when empty).
pub fn quantile_ms(sorted_us: &[u32], q: f64) -> String {
    match sorted_us.len() {
        0 => "-".to_string(),
        n => format!("{:.2}", f64::from(sorted_us[((n - 1) as f64 * q).round() as usize]) / 1e3),
    }
}

/// CPU ticks of the server (if its pid is known) and of this process, and when (µs).
pub type CpuSample = (Option<u64>, Option<u64>, u64);

pub fn cpu_sample(server_pid: Option<u32>, clock: &Clock) -> CpuSample {
    (server_pid.and_then(|pid| cpu_ticks(Some(pid))), cpu_ticks(None), clock.us())
}

/// What a load run measured, before it is reported.
pub struct Measured {
    pub tally: Tally,
    /// When the handshakes started ([`Clock`] µs).
    pub connect_start: u64,
    /// CPU samples at the window's start and end.
    pub cpu: Option<[CpuSample; 2]>,
}

/// Prints `examples/loadgen`'s two lines (the first with two more keys:
/// the handshake times); `Err` when a client did not connect, so the exit
/// status says so too.
pub fn report(
    args: &LoadArgs,
    mut t: Tally,
    connect_start: u64,
    cpu: Option<[CpuSample; 2]>,
    threads: u32,
) -> Result<(), String> {
    let connect_s = t.last_connected.map_or(0.0, |at| at.saturating_sub(connect_start) as f64 / 1e6);
    let handshakes_per_s = if t.connected > 1 && connect_s > 0.0 {
        format!("{:.0}", f64::from(t.connected) / connect_s)
    } else {
        "0".to_string()
    };
    let (Some([cpu_start, cpu_end]), 1..) = (cpu, t.connected) else {
        println!("connected=0/{} failed={} handshakes_per_s=0 offered_per_s=0", args.clients, t.failed);
        println!("{}", summary_line(args.clients, &t, 1.0));
        return Err("no client connected".into());
    };
    let window = (cpu_end.2 - cpu_start.2) as f64 / 1e6;
    let pct = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.1}", (b - a) as f64 / clock_ticks() as f64 / window * 100.0),
        _ => "-".into(),
    };
    t.rtts_us.sort_unstable();
    t.connect_us.sort_unstable();
    println!(
        "connected={}/{} failed={} handshakes_per_s={} connect_s={:.2} offered_per_s={:.0} window_s={:.2} \
         server_cpu_pct={} loadgen_cpu_pct={} threads={} refused={} reported_lost=0 duplicates={} corrupt={} \
         disconnected={} send_errors={} p999_rtt_ms={} max_rtt_ms={} connect_p50_ms={} connect_p99_ms={}",
        t.connected,
        args.clients,
        t.failed,
        handshakes_per_s,
        connect_s,
        f64::from(t.connected) * args.hz,
        window,
        pct(cpu_start.0, cpu_end.0),
        pct(cpu_start.1, cpu_end.1),
        threads,
        t.refused,
        t.duplicates,
        t.corrupt,
        t.disconnected,
        t.send_errors,
        quantile_ms(&t.rtts_us, 0.999),
        quantile_ms(&t.rtts_us, 1.0),
        quantile_ms(&t.connect_us, 0.5),
        quantile_ms(&t.connect_us, 0.99),
    );
    println!("{}", summary_line(args.clients, &t, window));
    if t.connected < args.clients {
        return Err(format!(
            "only {} of {} clients connected ({} failed); the figures above are for those",
            t.connected, args.clients, t.failed
        ));
    }
    Ok(())
}

/// `examples/loadgen`'s summary line; `t.rtts_us` sorted, `window` in seconds.
pub fn summary_line(clients: u32, t: &Tally, window: f64) -> String {
    format!(
        "clients={} connected={}/{} sent={} echoed={} lost={} msgs_per_s={:.0} p50_rtt_ms={} p99_rtt_ms={}",
        clients,
        t.connected,
        clients,
        t.sent,
        t.echoed,
        t.sent - t.echoed.min(t.sent),
        t.echoes_in_window as f64 / window,
        quantile_ms(&t.rtts_us, 0.5),
        quantile_ms(&t.rtts_us, 0.99),
    )
}

/// The large-message echo's report line, as `examples/echo_client` prints it.
pub fn report_echo(rtts_us: &mut [u32], count: u32, size: usize) {
    rtts_us.sort_unstable();
    println!(
        "echoed {}/{} messages, size {}, rtt p50 {} ms p99 {} ms",
        rtts_us.len(),
        count,
        size,
        quantile_ms(rtts_us, 0.5),
        quantile_ms(rtts_us, 0.99)
    );
}

/// The bulk run's report line.
pub fn report_bulk(echoed_bytes: u64, seconds: f64, size: usize, corrupt: u64) {
    println!(
        "bulk seconds={seconds:.2} message_size={size} echoed_bytes={echoed_bytes} mb_per_s={:.2} corrupt={corrupt}",
        echoed_bytes as f64 / seconds / 1e6
    );
}

/// The connect run's report line.
pub fn report_connect(clients: u32, concurrency: u32, t: &mut Tally, elapsed_s: f64) {
    t.connect_us.sort_unstable();
    println!(
        "connect clients={clients} concurrency={concurrency} connected={} failed={} handshakes_per_s={:.0} \
         connect_p50_ms={} connect_p99_ms={}",
        t.connected,
        t.failed,
        f64::from(t.connected) / elapsed_s.max(1e-9),
        quantile_ms(&t.connect_us, 0.5),
        quantile_ms(&t.connect_us, 0.99),
    );
}

/// User + system CPU time of a process (`None`: this one) in clock ticks,
/// from `/proc` (Linux); `None` where unavailable.
pub fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may contain spaces), from field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks() -> u64 {
    rustix::param::clock_ticks_per_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_has_loadgens_keys_in_loadgens_order() {
        let t = Tally {
            connected: 3,
            sent: 10,
            echoed: 9,
            echoes_in_window: 20,
            rtts_us: vec![1_000, 2_000, 3_000],
            ..Tally::default()
        };
        let line = summary_line(4, &t, 2.0);
        assert_eq!(
            line,
            "clients=4 connected=3/4 sent=10 echoed=9 lost=1 msgs_per_s=10 p50_rtt_ms=2.00 p99_rtt_ms=3.00"
        );
        // The keys as examples/loadgen documents them.
        let loadgen = "clients=.. connected=../.. sent=.. echoed=.. lost=.. msgs_per_s=.. p50_rtt_ms=.. p99_rtt_ms=..";
        let keys = |l: &str| l.split(' ').map(|kv| kv.split('=').next().unwrap_or("").to_string()).collect::<Vec<_>>();
        assert_eq!(keys(&line), keys(loadgen));
    }

    #[test]
    fn clients_first_sends_spread_over_one_period() {
        let args = LoadArgs {
            server: "127.0.0.1:1".parse().expect("an address"),
            clients: 4,
            hz: 50.0,
            size: 100,
            duration: 1.0,
            delivery: Delivery::Unreliable,
            warmup: 0.5,
            drain: 0.25,
            connect_timeout: 1.0,
            concurrency: 1,
            server_pid: None,
        };
        let period = args.validate(1000).expect("valid arguments");
        let p = Phases::new(&args, 1_000);
        assert_eq!(p.t0, 21_000);
        assert_eq!((p.window.start, p.window.end, p.drain_end), (521_000, 1_521_000, 1_771_000));
        let firsts: Vec<u64> = (0..4).map(|i| p.first_send(period, i, 4)).collect();
        assert_eq!(firsts, [21_000, 26_000, 31_000, 36_000]);
        assert!(LoadArgs { size: 8, ..args.clone() }.validate(1000).is_err());
    }

    #[test]
    fn an_intact_echo_counts_once_and_a_changed_byte_is_corrupt() {
        let window = Window { start: 0, end: 1_000 };
        let mut tally = Tally::default();
        let mut track = Track::new(7);
        let mut msg = vec![0; 100];
        track.next_message(&mut msg, 10, window, &mut tally);
        track.on_echo(&msg, 30, window, &mut tally);
        track.on_echo(&msg, 31, window, &mut tally);
        assert_eq!((tally.sent, tally.echoed, tally.duplicates, tally.corrupt), (1, 1, 1, 0));
        assert_eq!(tally.rtts_us, [20]);
        let mut other = vec![0; 100];
        track.next_message(&mut other, 40, window, &mut tally);
        other[99] ^= 1;
        track.on_echo(&other, 50, window, &mut tally);
        assert_eq!(tally.corrupt, 1);
        // Another client's message (the filler differs) is corrupt too.
        let mut foreign = vec![0; 100];
        fill_message(&mut foreign, 8, 0, 10);
        track.on_echo(&foreign, 60, window, &mut tally);
        assert_eq!(tally.corrupt, 2);
    }
}

/// For the loopback tests of the peers: a port free on 127.0.0.1 a moment
/// ago, and a small load on it.
#[cfg(test)]
pub mod testing {
    use super::*;

    pub fn free_port() -> SocketAddr {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral port");
        s.local_addr().expect("a bound socket has an address")
    }

    /// 3 clients at 50 Hz for 0.4 s, bounded waits.
    pub fn small_load(server: SocketAddr, delivery: Delivery) -> LoadArgs {
        LoadArgs {
            server,
            clients: 3,
            hz: 50.0,
            size: 100,
            duration: 0.4,
            delivery,
            warmup: 0.1,
            drain: 1.0,
            connect_timeout: 3.0,
            concurrency: 3,
            server_pid: Some(std::process::id()),
        }
    }

    /// Every client connected, and every message sent in the window came back intact.
    pub fn check(m: &Measured) {
        let t = &m.tally;
        assert_eq!((t.connected, t.failed), (3, 0));
        // 3 clients × 50 Hz × 0.4 s, give or take the window's edges.
        assert!((57..=63).contains(&t.sent), "sent {}", t.sent);
        assert_eq!(t.echoed, t.sent);
        assert_eq!((t.corrupt, t.duplicates, t.refused, t.send_errors), (0, 0, 0, 0));
        assert_eq!(t.rtts_us.len() as u64, t.echoed);
        assert!(m.cpu.is_some());
    }
}
