//! One load-generating thread's clients: their protocol (ours or the raw
//! baseline), their progress, the counters, and the loop that runs their
//! ticks, timers and sockets and checks every echo.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use mpgameserver::_internal::PacketKey;
use mpgameserver::{ConnectFailure, ConnectionId, Delivery, Duration, Endpoint, Event, Instant, MAX_DATAGRAM};
use mpgameserver_drivers::Clock;
use mpgameserver_drivers::udp::RecvBatch;

use crate::poller::Poller;

pub(crate) use crate::report::Tally;
use crate::{STAMP, WINDOW, raw};

/// What a client speaks.
pub(crate) enum Proto {
    Mpgs { ep: Box<Endpoint>, conn: ConnectionId },
    Raw { counter: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Connecting,
    Connected,
    Failed,
    Closed,
}

pub(crate) struct Client {
    /// Global client number (the filler and the raw header use it).
    pub(crate) id: u32,
    pub(crate) socket: UdpSocket,
    pub(crate) proto: Proto,
    pub(crate) t: Track,
}

/// A client's progress, apart from its protocol state.
pub(crate) struct Track {
    pub(crate) state: State,
    /// When the next message is due (`Instant::MAX`: not sending).
    pub(crate) next_send: Instant,
    /// The time of this client's valid entry in the timer heap.
    pub(crate) wake: Instant,
    pub(crate) next_seq: u64,
    /// Bit `seq % WINDOW` set: the echo of `seq` arrived.
    pub(crate) echoed: Box<[u64; (WINDOW / 64) as usize]>,
}

pub(crate) struct Gen {
    pub(crate) clock: Clock,
    pub(crate) server: SocketAddr,
    pub(crate) clients: Vec<Client>,
    pub(crate) heap: BinaryHeap<Reverse<(Instant, u32)>>,
    pub(crate) poller: Poller,
    pub(crate) rx: RecvBatch,
    pub(crate) tx: Box<[u8; MAX_DATAGRAM]>,
    pub(crate) msg: Vec<u8>,
    pub(crate) raw_key: PacketKey,
    pub(crate) delivery: Delivery,
    pub(crate) period: Duration,
    /// The measurement window.
    pub(crate) window: (Instant, Instant),
    /// No message is sent at or after this.
    pub(crate) stop_sending: Instant,
    pub(crate) tally: Tally,
}

impl Gen {
    /// Runs timers and sockets until `until`.
    pub(crate) fn pump(&mut self, until: Instant, ready: &mut Vec<u32>) -> io::Result<()> {
        while self.clock.now() < until {
            self.pump_once(until, ready)?;
        }
        Ok(())
    }

    /// Runs the due timers, then waits (at most until `until`) and serves
    /// the sockets that became readable.
    pub(crate) fn pump_once(&mut self, until: Instant, ready: &mut Vec<u32>) -> io::Result<()> {
        let now = self.clock.now();
        while let Some(&Reverse((t, i))) = self.heap.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            let c = &mut self.clients[i as usize];
            if c.t.wake == t {
                c.t.wake = Instant::MAX;
                self.service(i, false);
            }
        }
        let now = self.clock.now();
        if now >= until {
            return Ok(());
        }
        let next = self.heap.peek().map_or(until, |Reverse((t, _))| (*t).min(until));
        let wait = if next > now { next - now } else { Duration::ZERO };
        ready.clear();
        self.poller.wait(wait, self.clients.iter().map(|c| &c.socket), ready)?;
        for &i in ready.iter() {
            self.service(i, true);
        }
        Ok(())
    }

    /// Everything one client has to do now: read its socket (when
    /// `readable`), run its timers, send its message if due, handle its
    /// events, and send its datagrams.
    pub(crate) fn service(&mut self, i: u32, readable: bool) {
        let Gen { clock, clients, rx, tx, msg, raw_key, tally, window, stop_sending, period, delivery, server, .. } =
            self;
        let c = &mut clients[i as usize];
        let id = c.id;
        if readable {
            loop {
                let n = match rx.recv(&c.socket) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break, // WouldBlock, or an ICMP report of an earlier send
                };
                let now = clock.now();
                for k in 0..n {
                    let (from, bytes) = rx.get_mut(k);
                    if bytes.len() > MAX_DATAGRAM {
                        continue;
                    }
                    match &mut c.proto {
                        Proto::Mpgs { ep, .. } => ep.handle_datagram(now, from, bytes),
                        Proto::Raw { .. } => match raw::open(raw_key, bytes) {
                            Some(payload) => on_echo(tally, &mut c.t, id, payload, now, *window),
                            None => tally.corrupt += 1,
                        },
                    }
                }
                if n < mpgameserver_drivers::udp::BATCH {
                    break;
                }
            }
        }
        let now = clock.now();
        if let Proto::Mpgs { ep, .. } = &mut c.proto {
            ep.handle_timeout(now);
            drain_events(ep, &mut c.t, id, tally, now, *window);
        }
        if c.t.state == State::Connected && now >= c.t.next_send {
            if now >= *stop_sending {
                c.t.next_send = Instant::MAX;
            } else {
                let seq = c.t.next_seq;
                c.t.next_seq += 1;
                c.t.echoed[((seq % WINDOW) / 64) as usize] &= !(1 << (seq % 64));
                fill_message(msg, id, seq, now);
                let measured = now >= window.0 && now < window.1;
                if measured {
                    tally.sent += 1;
                }
                match &mut c.proto {
                    Proto::Mpgs { ep, conn } => {
                        // A full queue (the server is far behind) or a closing
                        // connection: the message is never sent, so never echoed.
                        if ep.send(*conn, msg, *delivery).is_err() {
                            tally.refused += 1;
                        }
                    }
                    Proto::Raw { counter } => {
                        *counter += 1;
                        let len = raw::seal_request(raw_key, id, *counter, msg, &mut tx[..]);
                        if c.socket.send(&tx[..len]).is_err() {
                            tally.send_errors += 1;
                        }
                    }
                }
                // The next tick; if far behind, skip the missed ones.
                c.t.next_send += *period;
                if c.t.next_send <= now {
                    c.t.next_send = now + *period;
                }
            }
        }
        if let Proto::Mpgs { ep, .. } = &mut c.proto {
            drain_events(ep, &mut c.t, id, tally, now, *window);
            while let Some(t) = ep.poll_transmit(now, tx) {
                let sent = if t.destination == *server {
                    c.socket.send(&tx[..t.len])
                } else {
                    c.socket.send_to(&tx[..t.len], t.destination)
                };
                if sent.is_err() {
                    tally.send_errors += 1;
                }
            }
        }
        self.reschedule(i);
    }

    /// Puts client `i` back in the timer heap at its next timer or tick.
    pub(crate) fn reschedule(&mut self, i: u32) {
        let c = &mut self.clients[i as usize];
        let mut wake = if c.t.state == State::Connected { c.t.next_send } else { Instant::MAX };
        if let Proto::Mpgs { ep, .. } = &mut c.proto
            && let Some(t) = ep.poll_timeout()
        {
            wake = wake.min(t);
        }
        if wake != Instant::MAX && wake != c.t.wake {
            c.t.wake = wake;
            self.heap.push(Reverse((wake, i)));
        }
    }
}

/// Hands a client's endpoint events to the tally.
pub(crate) fn drain_events(
    ep: &mut Endpoint,
    c: &mut Track,
    i: u32,
    tally: &mut Tally,
    now: Instant,
    window: (Instant, Instant),
) {
    while let Some(event) = ep.poll_event() {
        match event {
            Event::Connected { .. } => {
                c.state = State::Connected;
                tally.connected += 1;
                tally.first_connected.get_or_insert(now);
                tally.last_connected = Some(now);
            }
            Event::ConnectFailed { reason, .. } => {
                if tally.failed == 0 {
                    eprintln!("loadgen: a handshake failed: {reason}");
                }
                c.state = State::Failed;
                tally.failed += 1;
                if reason == ConnectFailure::TimedOut {
                    tally.timed_out += 1;
                }
            }
            Event::Message { payload, .. } => on_echo(tally, c, i, &payload, now, window),
            Event::Lost { .. } => tally.reported_lost += 1,
            Event::Disconnected { .. } => {
                if c.state == State::Connected && now < window.1 {
                    tally.disconnected += 1;
                }
                c.state = State::Closed;
            }
            _ => {}
        }
    }
}

/// Writes message `seq` of client `i`, stamped with `now`.
pub(crate) fn fill_message(msg: &mut [u8], i: u32, seq: u64, now: Instant) {
    msg[0..8].copy_from_slice(&seq.to_le_bytes());
    msg[8..16].copy_from_slice(&now.as_micros().to_le_bytes());
    let mut x = filler_seed(i, seq);
    for b in &mut msg[STAMP..] {
        *b = (x >> 24) as u8;
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
    }
}

pub(crate) fn filler_seed(i: u32, seq: u64) -> u32 {
    (seq as u32).wrapping_mul(0x9E37_79B9) ^ i.wrapping_mul(0x85EB_CA6B) ^ (seq >> 32) as u32
}

/// Checks an echo and counts it.
pub(crate) fn on_echo(
    tally: &mut Tally,
    c: &mut Track,
    i: u32,
    payload: &[u8],
    now: Instant,
    window: (Instant, Instant),
) {
    if payload.len() < STAMP {
        tally.corrupt += 1;
        return;
    }
    let seq = u64::from_le_bytes(payload[0..8].try_into().expect("8 bytes"));
    let sent_at = Instant::from_micros(u64::from_le_bytes(payload[8..16].try_into().expect("8 bytes")));
    let mut x = filler_seed(i, seq);
    let intact = seq < c.next_seq
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
    if seq + WINDOW <= c.next_seq || c.echoed[word] & bit != 0 {
        tally.duplicates += 1;
        return;
    }
    c.echoed[word] |= bit;
    if now >= window.0 && now < window.1 {
        tally.echoes_in_window += 1;
    }
    if sent_at >= window.0 && sent_at < window.1 {
        tally.echoed += 1;
        tally.rtts_us.push(u32::try_from((now - sent_at).as_micros()).unwrap_or(u32::MAX));
    }
}

/// A non-blocking socket on the loopback (or unspecified) address of the
/// server's family, connected to the server.
pub(crate) fn bind_like(server: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = match server {
        SocketAddr::V4(a) if a.ip().is_loopback() => (Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(a) if a.ip().is_loopback() => (Ipv6Addr::LOCALHOST, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    // Connected: the kernel keeps the route, and only the server's
    // datagrams arrive.
    socket.connect(server)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}
