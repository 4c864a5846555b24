//! renet + renet_netcode: an echo server and the clients of every workload.
//!
//! Netcode runs with secure connect tokens (`ServerAuthentication::Secure`):
//! the clients make their tokens with the server's private key, as a game's
//! matchmaking backend would. renet's default connection configuration and
//! channels (unreliable 0, reliable-ordered 2; 60,000 bytes per
//! `send_packets` call) are used unchanged.
//!
//! renet is driven by its user's loop: `update`, read the messages,
//! `send_packets`. The server here runs that loop as a game server does,
//! once per tick at 60 Hz (`--tick-hz`); `--pass-hz N` also runs it when a
//! datagram arrives, at most N times per second, which cuts the echo's
//! latency but costs renet an ack packet per client per pass (and each
//! pass walks every client: renet has no "which clients have messages").
//! The clients wake when their socket is readable (the round-trip time is
//! taken on arrival) and at their ticks, when they send their message and
//! `send_packets` (their acknowledgements ride there, as in a game loop).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use renet::{ConnectionConfig, DefaultChannel, RenetClient, RenetServer};
use renet_netcode::{
    ClientAuthentication, ConnectToken, NETCODE_KEY_BYTES, NetcodeClientTransport, NetcodeServerTransport,
    ServerAuthentication, ServerConfig,
};

use crate::common::{
    Clock, CpuSample, Delivery, LoadArgs, Measured, Phases, Tally, Track, Window, cpu_sample, report, report_bulk,
    report_connect, report_echo, secs,
};
use crate::poller::{Poller, wait_readable};

/// Identifies this benchmark's netcode protocol (tokens and packets carry it).
const PROTOCOL_ID: u64 = 0x6d70_6773_2d70_6565;
/// netcode's largest number of clients per server (`NETCODE_MAX_CLIENTS`).
pub const MAX_CLIENTS: usize = 1024;
/// The largest message the clients send (renet slices larger ones; a
/// reliable channel holds at most 5 MiB unacknowledged).
const MAX_MESSAGE: usize = 1 << 20;

fn channel(delivery: Delivery) -> u8 {
    match delivery {
        Delivery::Unreliable => DefaultChannel::Unreliable.into(),
        Delivery::Reliable => DefaultChannel::ReliableOrdered.into(),
    }
}

/// Time since the Unix epoch, netcode's clock for tokens.
fn unix_now() -> Duration {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
}

/// Writes a new random netcode private key (32 bytes) to `path`.
pub fn write_key(path: &Path) -> Result<(), String> {
    let key = renet_netcode::generate_random_bytes::<NETCODE_KEY_BYTES>();
    std::fs::write(path, key).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn read_key(path: &Path) -> Result<[u8; NETCODE_KEY_BYTES], String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    bytes.try_into().map_err(|_| format!("{}: not a {NETCODE_KEY_BYTES}-byte netcode key", path.display()))
}

/// The echo server's arguments.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:5000
    #[arg(long, value_name = "ADDR")]
    bind: SocketAddr,
    /// The netcode private key (32 bytes, from `peers renet-key`)
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// A further address clients may reach the server at (a counting proxy)
    #[arg(long, value_name = "ADDR")]
    public: Vec<SocketAddr>,
    /// Stop after this many seconds (default: run until killed)
    #[arg(long, value_name = "S")]
    duration: Option<f64>,
    /// Largest number of clients (netcode allows at most 1024)
    #[arg(long, value_name = "N", default_value_t = MAX_CLIENTS)]
    max_clients: usize,
    /// Passes per second at least, without traffic (the game tick)
    #[arg(long, value_name = "N", default_value_t = 60)]
    tick_hz: u32,
    /// Passes per second at most: a datagram wakes the server, but no
    /// sooner than 1/N s after the previous pass (default: one pass per
    /// game tick; more passes cut the echo's latency but cost one ack
    /// packet per client per pass)
    #[arg(long, value_name = "N", default_value_t = 60)]
    pass_hz: u32,
}

/// Runs the echo server: every message comes back on its channel.
pub fn serve(args: &ServeArgs) -> Result<(), String> {
    let private_key = read_key(&args.key)?;
    if args.max_clients == 0 || args.max_clients > MAX_CLIENTS {
        return Err(format!("--max-clients must be in 1..={MAX_CLIENTS} (netcode's limit)"));
    }
    let socket = UdpSocket::bind(args.bind).map_err(|e| format!("bind {}: {e}", args.bind))?;
    mpgameserver_drivers::udp::grow_recv_buffer(&socket, 4 << 20).map_err(|e| e.to_string())?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let waiter = socket.try_clone().map_err(|e| e.to_string())?;
    let mut public_addresses = vec![local];
    public_addresses.extend(&args.public);
    let config = ServerConfig {
        current_time: unix_now(),
        max_clients: args.max_clients,
        protocol_id: PROTOCOL_ID,
        public_addresses,
        authentication: ServerAuthentication::Secure { private_key },
    };
    let mut transport = NetcodeServerTransport::new(config, socket).map_err(|e| e.to_string())?;
    let mut server = RenetServer::new(ConnectionConfig::default());
    let tick = Duration::from_secs(1) / args.tick_hz.max(1);
    let gap = Duration::from_secs(1) / args.pass_hz.max(1);
    let start = Instant::now();
    let end = args.duration.map(secs).transpose()?.map(|d| start + d);
    let channels = [channel(Delivery::Unreliable), channel(Delivery::Reliable)];
    println!("renet echo server on {local}, netcode secure, up to {} clients", args.max_clients);
    let (mut last, mut echoed, mut errors) = (start, 0u64, 0u64);
    loop {
        let now = Instant::now();
        if end.is_some_and(|e| now >= e) {
            break;
        }
        if now < last + gap {
            std::thread::sleep(last + gap - now);
        } else {
            wait_readable(&waiter, (last + tick).saturating_duration_since(now)).map_err(|e| e.to_string())?;
        }
        let now = Instant::now();
        let dt = now - last;
        last = now;
        server.update(dt);
        if let Err(e) = transport.update(dt, &mut server) {
            errors += 1;
            if errors == 1 {
                eprintln!("renet server: {e}");
            }
        }
        while server.get_event().is_some() {}
        for client in server.clients_id() {
            for ch in channels {
                while let Some(message) = server.receive_message(client, ch) {
                    server.send_message(client, ch, message);
                    echoed += 1;
                }
            }
        }
        transport.send_packets(&mut server);
    }
    transport.disconnect_all(&mut server);
    println!("stopped: {echoed} messages echoed, {errors} transport errors");
    Ok(())
}

/// One client: renet's connection, netcode's transport, a second handle of
/// its socket to wait on.
struct Conn {
    client: RenetClient,
    transport: NetcodeClientTransport,
    socket: UdpSocket,
    last: Instant,
}

impl Conn {
    fn new(server: SocketAddr, key: &[u8; NETCODE_KEY_BYTES], client_id: u64) -> Result<Conn, String> {
        let local: SocketAddr = match server {
            SocketAddr::V4(a) if a.ip().is_loopback() => (Ipv4Addr::LOCALHOST, 0).into(),
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(a) if a.ip().is_loopback() => (Ipv6Addr::LOCALHOST, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).map_err(|e| e.to_string())?;
        let waiter = socket.try_clone().map_err(|e| e.to_string())?;
        let now = unix_now();
        let connect_token = ConnectToken::generate(now, PROTOCOL_ID, 300, client_id, 15, vec![server], None, key)
            .map_err(|e| e.to_string())?;
        let transport = NetcodeClientTransport::new(now, ClientAuthentication::Secure { connect_token }, socket)
            .map_err(|e| e.to_string())?;
        Ok(Conn {
            client: RenetClient::new(ConnectionConfig::default()),
            transport,
            socket: waiter,
            last: Instant::now(),
        })
    }

    /// Advances renet's time and reads the socket. `Err`: the connection is over.
    fn update(&mut self) -> Result<(), String> {
        let now = Instant::now();
        let dt = now - self.last;
        self.last = now;
        self.client.update(dt);
        self.transport.update(dt, &mut self.client).map_err(|e| e.to_string())?;
        if self.client.is_connecting() {
            // The transport tells renet that netcode connected only at the
            // start of an update: tell it now, not one tick later.
            self.transport.update(Duration::ZERO, &mut self.client).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Sends what renet has queued (messages, acknowledgements).
    fn flush(&mut self) -> Result<(), String> {
        self.transport.send_packets(&mut self.client).map_err(|e| e.to_string())
    }

    /// Connects, waiting up to `timeout`.
    fn connect(server: SocketAddr, key: &[u8; NETCODE_KEY_BYTES], timeout: Duration) -> Result<Conn, String> {
        let mut conn = Conn::new(server, key, 1)?;
        let end = Instant::now() + timeout;
        while !conn.client.is_connected() {
            if Instant::now() >= end {
                return Err(format!("no connection to {server} within {timeout:?}"));
            }
            wait_readable(&conn.socket, Duration::from_millis(10)).map_err(|e| e.to_string())?;
            conn.update()?;
        }
        Ok(conn)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Connected,
    Closed,
}

struct Slot {
    conn: Conn,
    track: Track,
    state: State,
    started: u64,
    next_tick: u64,
    /// The first message's time (`u64::MAX` until the phases are known).
    send_from: u64,
    wake: u64,
}

/// Many clients on one thread: an epoll set over their sockets and a timer heap of their ticks.
struct Load<'a> {
    args: &'a LoadArgs,
    key: [u8; NETCODE_KEY_BYTES],
    clock: Clock,
    period: u64,
    channel: u8,
    slots: Vec<Slot>,
    heap: BinaryHeap<Reverse<(u64, u32)>>,
    poller: Poller,
    msg: Vec<u8>,
    window: Window,
    stop_sending: u64,
    connect_deadline: u64,
    tally: Tally,
}

impl Load<'_> {
    /// Starts the handshakes, at most `concurrency` at a time, and waits for them.
    fn connect_all(&mut self, concurrency: u32) -> Result<(), String> {
        let base = u64::from(std::process::id()) << 32;
        let mut ready = Vec::new();
        loop {
            while self.slots.len() < self.args.clients as usize
                && self.slots.len() as u32 - (self.tally.connected + self.tally.failed) < concurrency
            {
                let i = self.slots.len() as u32;
                let started = self.clock.us();
                let conn = Conn::new(self.args.server, &self.key, base + u64::from(i))?;
                self.poller.add(&conn.socket, i).map_err(|e| e.to_string())?;
                self.slots.push(Slot {
                    conn,
                    track: Track::new(i),
                    state: State::Connecting,
                    started,
                    next_tick: u64::MAX,
                    send_from: u64::MAX,
                    wake: u64::MAX,
                });
                self.service(i, false);
            }
            if (self.tally.connected + self.tally.failed) as usize >= self.args.clients as usize
                || self.clock.us() >= self.connect_deadline
            {
                return Ok(());
            }
            let until = (self.clock.us() + 10_000).min(self.connect_deadline);
            self.pump_once(until, &mut ready)?;
        }
    }

    fn pump(&mut self, until: u64) -> Result<(), String> {
        let mut ready = Vec::with_capacity(1024);
        while self.clock.us() < until {
            self.pump_once(until, &mut ready)?;
        }
        Ok(())
    }

    fn pump_once(&mut self, until: u64, ready: &mut Vec<u32>) -> Result<(), String> {
        let now = self.clock.us();
        while let Some(&Reverse((t, i))) = self.heap.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            if self.slots[i as usize].wake == t {
                self.slots[i as usize].wake = u64::MAX;
                self.service(i, false);
            }
        }
        let now = self.clock.us();
        if now >= until {
            return Ok(());
        }
        let next = self.heap.peek().map_or(until, |Reverse((t, _))| (*t).min(until));
        ready.clear();
        self.poller.wait(Duration::from_micros(next.saturating_sub(now)), ready).map_err(|e| e.to_string())?;
        for &i in ready.iter() {
            self.service(i, true);
        }
        Ok(())
    }

    /// Everything client `i` does now: read, count echoes, tick.
    fn service(&mut self, i: u32, _readable: bool) {
        let Load { clock, slots, tally, msg, window, .. } = self;
        let s = &mut slots[i as usize];
        if s.state == State::Closed {
            return;
        }
        let now = clock.us();
        if let Err(e) = s.conn.update() {
            match s.state {
                State::Connecting => {
                    if tally.failed == 0 {
                        eprintln!("renet load: a handshake failed: {e}");
                    }
                    tally.failed += 1;
                }
                _ if now < window.end => tally.disconnected += 1,
                _ => {}
            }
            s.state = State::Closed;
            return;
        }
        if s.state == State::Connecting {
            if s.conn.client.is_connected() {
                s.state = State::Connected;
                tally.on_connected(s.started, now);
                s.next_tick = now;
            } else if now >= self.connect_deadline {
                tally.failed += 1;
                s.state = State::Closed;
                s.conn.transport.disconnect();
                return;
            }
        }
        while let Some(echo) = s.conn.client.receive_message(self.channel) {
            s.track.on_echo(&echo, now, *window, tally);
        }
        if s.state == State::Connected && now >= s.next_tick {
            if now >= s.send_from && now < self.stop_sending {
                s.track.next_message(msg, now, *window, tally);
                if s.conn.client.can_send_message(self.channel, msg.len()) {
                    s.conn.client.send_message(self.channel, msg.clone());
                } else {
                    tally.refused += 1;
                }
            }
            if s.conn.flush().is_err() {
                tally.send_errors += 1;
            }
            s.next_tick += self.period;
            if s.next_tick <= now {
                s.next_tick = now + self.period;
            }
        }
        let wake = match s.state {
            State::Connecting => now + 10_000,
            _ => s.next_tick,
        };
        if wake != s.wake {
            s.wake = wake;
            self.heap.push(Reverse((wake, i)));
        }
    }

    fn disconnect_all(&mut self) {
        for s in &mut self.slots {
            if s.state != State::Closed {
                s.conn.transport.disconnect();
                s.state = State::Closed;
            }
        }
    }
}

fn new_load(args: &LoadArgs, key: [u8; NETCODE_KEY_BYTES], period: Duration) -> Result<Load<'_>, String> {
    let clock = Clock::new();
    let connect_deadline = clock.us() + (args.connect_timeout * 1e6) as u64 + 1_000_000;
    Ok(Load {
        args,
        key,
        clock,
        period: period.as_micros() as u64,
        channel: channel(args.delivery),
        slots: Vec::with_capacity(args.clients as usize),
        heap: BinaryHeap::new(),
        poller: Poller::new().map_err(|e| e.to_string())?,
        msg: vec![0; args.size],
        window: Window::NONE,
        stop_sending: u64::MAX,
        connect_deadline,
        tally: Tally::default(),
    })
}

/// Workloads 1 and 2: `examples/loadgen`'s pattern with renet clients.
pub fn load(args: &LoadArgs, key: &Path) -> Result<(), String> {
    let m = measure(args, key)?;
    report(args, m.tally, m.connect_start, m.cpu, 1)
}

fn measure(args: &LoadArgs, key: &Path) -> Result<Measured, String> {
    let period = args.validate(MAX_MESSAGE)?;
    let mut g = new_load(args, read_key(key)?, period)?;
    let connect_start = g.clock.us();
    g.connect_all(args.concurrency)?;
    let phases = Phases::new(args, g.clock.us());
    g.window = phases.window;
    g.stop_sending = phases.window.end;
    for i in 0..g.slots.len() {
        let s = &mut g.slots[i];
        if s.state == State::Connected {
            s.send_from = phases.first_send(period, i as u32, args.clients);
            s.next_tick = s.send_from;
            s.wake = s.send_from;
            g.heap.push(Reverse((s.send_from, i as u32)));
        }
    }
    let live = g.tally.connected as f64;
    g.tally.rtts_us.reserve((live * args.hz * args.duration * 1.05) as usize);
    g.pump(phases.window.start)?;
    let cpu_start: CpuSample = cpu_sample(args.server_pid, &g.clock);
    g.pump(phases.window.end)?;
    let cpu_end = cpu_sample(args.server_pid, &g.clock);
    while g.tally.echoed < g.tally.sent && g.clock.us() < phases.drain_end {
        let step = (g.clock.us() + 20_000).min(phases.drain_end);
        g.pump(step)?;
    }
    g.disconnect_all();
    let tally = std::mem::take(&mut g.tally);
    Ok(Measured { tally, connect_start, cpu: Some([cpu_start, cpu_end]) })
}

/// Workload 5: `clients` handshakes, `concurrency` at a time.
pub fn connect(args: &LoadArgs, key: &Path) -> Result<(), String> {
    let period = args.validate(MAX_MESSAGE)?;
    let mut g = new_load(args, read_key(key)?, period)?;
    let start = g.clock.us();
    g.connect_all(args.concurrency)?;
    let elapsed = g.tally.last_connected.unwrap_or(start).saturating_sub(start) as f64 / 1e6;
    g.disconnect_all();
    report_connect(args.clients, args.concurrency, &mut g.tally, elapsed);
    Ok(())
}

/// Workload 3: one connection, `count` messages of `size` bytes, one at a
/// time on the reliable-ordered channel.
pub fn echo(server: SocketAddr, key: &Path, size: usize, count: u32, timeout: Duration) -> Result<(), String> {
    if !(crate::common::STAMP..=MAX_MESSAGE).contains(&size) {
        return Err(format!("--size must be in {}..={MAX_MESSAGE}", crate::common::STAMP));
    }
    let mut conn = Conn::connect(server, &read_key(key)?, timeout)?;
    let ch = channel(Delivery::Reliable);
    let clock = Clock::new();
    let everything = Window { start: 0, end: u64::MAX };
    let (mut track, mut tally) = (Track::new(0), Tally::default());
    let mut msg = vec![0; size];
    for _ in 0..count {
        track.next_message(&mut msg, clock.us(), everything, &mut tally);
        conn.client.send_message(ch, msg.clone());
        conn.flush()?;
        let end = Instant::now() + timeout;
        let before = tally.echoed + tally.corrupt;
        while tally.echoed + tally.corrupt == before && Instant::now() < end {
            wait_readable(&conn.socket, Duration::from_millis(1)).map_err(|e| e.to_string())?;
            conn.update()?;
            while let Some(echo) = conn.client.receive_message(ch) {
                track.on_echo(&echo, clock.us(), everything, &mut tally);
            }
            conn.flush()?;
        }
    }
    conn.transport.disconnect();
    report_echo(&mut tally.rtts_us, count, size);
    if tally.corrupt > 0 {
        return Err(format!("{} echoes did not match what was sent", tally.corrupt));
    }
    Ok(())
}

/// Workload 4: one connection, reliable-ordered messages of `size` bytes,
/// `window` in flight, for `seconds`; echoed bytes per second.
pub fn bulk(server: SocketAddr, key: &Path, size: usize, window: u32, seconds: f64) -> Result<(), String> {
    if !(crate::common::STAMP..=MAX_MESSAGE).contains(&size) {
        return Err(format!("--size must be in {}..={MAX_MESSAGE}", crate::common::STAMP));
    }
    let mut conn = Conn::connect(server, &read_key(key)?, Duration::from_secs(10))?;
    let ch = channel(Delivery::Reliable);
    let clock = Clock::new();
    let start = clock.us();
    let end = start + (seconds * 1e6) as u64;
    let counted = Window { start, end };
    let (mut track, mut tally) = (Track::new(0), Tally::default());
    let mut msg = vec![0; size];
    while clock.us() < end {
        while track.next_seq - (tally.echoed + tally.corrupt) < u64::from(window)
            && conn.client.can_send_message(ch, size)
        {
            track.next_message(&mut msg, clock.us(), counted, &mut tally);
            conn.client.send_message(ch, msg.clone());
        }
        conn.flush()?;
        wait_readable(&conn.socket, Duration::from_millis(1)).map_err(|e| e.to_string())?;
        conn.update()?;
        while let Some(echo) = conn.client.receive_message(ch) {
            track.on_echo(&echo, clock.us(), counted, &mut tally);
        }
    }
    let elapsed = (clock.us() - start) as f64 / 1e6;
    conn.transport.disconnect();
    report_bulk(tally.echoed * size as u64, elapsed, size, tally.corrupt);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testing::{check, free_port, small_load};

    #[test]
    fn renet_echoes_every_message_on_both_channels_over_loopback() {
        let dir = std::env::temp_dir().join(format!("peers-renet-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let key = dir.join("renet.key");
        write_key(&key).expect("write the key");
        let bind = free_port();
        let serve_args = ServeArgs {
            bind,
            key: key.clone(),
            public: Vec::new(),
            duration: Some(5.0),
            max_clients: 8,
            tick_hz: 60,
            pass_hz: 60,
        };
        let server = std::thread::spawn(move || serve(&serve_args));
        std::thread::sleep(Duration::from_millis(200));
        for delivery in [Delivery::Unreliable, Delivery::Reliable] {
            check(&measure(&small_load(bind, delivery), &key).expect("a load run"));
        }
        server.join().expect("the server thread").expect("the server");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_token_sealed_with_another_key_does_not_connect() {
        let dir = std::env::temp_dir().join(format!("peers-renet-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let (key, other) = (dir.join("server.key"), dir.join("other.key"));
        write_key(&key).expect("write the key");
        write_key(&other).expect("write another key");
        let bind = free_port();
        let serve_args =
            ServeArgs { bind, key, public: Vec::new(), duration: Some(3.5), max_clients: 8, tick_hz: 60, pass_hz: 60 };
        let server = std::thread::spawn(move || serve(&serve_args));
        std::thread::sleep(Duration::from_millis(200));
        let mut args = small_load(bind, Delivery::Unreliable);
        args.connect_timeout = 1.0;
        let m = measure(&args, &other).expect("a load run");
        assert_eq!((m.tally.connected, m.tally.failed), (0, 3));
        server.join().expect("the server thread").expect("the server");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
