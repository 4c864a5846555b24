//! One client and one server endpoint, connected in memory, that move one
//! message at a time through the core path: client `send` (or `send_on`) →
//! `poll_transmit` → server `handle_datagram` → `poll_event`, the server's
//! acks fed back every `ack_every` messages so the connection stays in
//! steady state. Shared by `benches/datagram.rs` (timed) and
//! `examples/core_loop.rs` (counted under cachegrind), so both measure the
//! same path.

use std::hint::black_box;
use std::net::SocketAddr;

use mpgameserver::{
    ChannelConfig, ChannelKind, ConnectionId, Delivery, Duration, Endpoint, EndpointConfig, Event, Instant,
    MAX_DATAGRAM, ProtocolVersion, Rng, Seed, ServerKey,
};

pub const CLIENT: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 5000));
pub const SERVER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 4000));

/// An MPGS/2 message that leaves in one 1,200 B datagram beside an ACK
/// frame (1,165 B alone: a 29 B packet overhead and a 6 B MESSAGE frame
/// header, MPGS2.md §3).
pub const V2_UNFRAGMENTED: usize = 1140;

pub struct Pair {
    client: Endpoint,
    server: Endpoint,
    conn: ConnectionId,
    now: Instant,
    buf: Box<[u8; MAX_DATAGRAM]>,
    sent: u64,
    /// Messages between two returns of the server's acks: 16 over MPGS/1;
    /// 8 over MPGS/2, whose receiver acks every 8 ack-eliciting packets and
    /// whose congestion window (10 datagrams at first) does not grow while
    /// the sender is application-limited, as it is here.
    ack_every: u64,
    /// Channels the messages rotate over (empty: `Delivery::Unreliable`).
    channels: Vec<u8>,
}

impl Pair {
    /// A connected pair; with `four_channels` (MPGS/2), the messages
    /// rotate over channel 0 and three configured unreliable channels of
    /// two priorities and weights 1–3, all four active.
    pub fn new(protocol: ProtocolVersion, four_channels: bool) -> Pair {
        let mut cfg = EndpointConfig::default();
        cfg.send_interval = Duration::ZERO;
        if four_channels {
            cfg.channels = vec![
                ChannelConfig::new(3, ChannelKind::Unreliable).with_weight(3),
                ChannelConfig::new(4, ChannelKind::UnreliableSequenced),
                ChannelConfig::new(5, ChannelKind::Unreliable).with_priority(1).with_weight(2),
            ];
        }
        let root = ServerKey::generate(&mut Rng::new(Seed::from_u64(1)));
        let pinned = root.public_key();
        let server = Endpoint::server(cfg.clone(), root, Seed::from_u64(2)).unwrap();
        let mut client = Endpoint::client(cfg, Seed::from_u64(3)).unwrap();
        let now = Instant::ZERO;
        let conn = client.connect_with(now, SERVER, pinned, protocol).unwrap();
        let ack_every = if protocol == ProtocolVersion::V2 { 8 } else { 16 };
        let channels = if four_channels { vec![0, 3, 4, 5] } else { Vec::new() };
        let mut p = Pair { client, server, conn, now, buf: Box::new([0; MAX_DATAGRAM]), sent: 0, ack_every, channels };
        for _ in 0..10 {
            p.exchange();
            p.now += Duration::from_millis(1);
        }
        assert!(matches!(p.client.poll_event(), Some(Event::Connected { .. })));
        while p.server.poll_event().is_some() {}
        p
    }

    /// Moves every pending datagram both ways.
    fn exchange(&mut self) {
        while let Some(t) = self.client.poll_transmit(self.now, &mut self.buf) {
            self.server.handle_datagram(self.now, CLIENT, &mut self.buf[..t.len]);
        }
        while let Some(t) = self.server.poll_transmit(self.now, &mut self.buf) {
            self.client.handle_datagram(self.now, SERVER, &mut self.buf[..t.len]);
        }
    }

    /// One message through the core path.
    pub fn one(&mut self, msg: &[u8]) {
        // 2,000 datagrams per virtual second: within an MPGS/1 connection's
        // sequence budget (16,000 per connection_timeout + 2 s, plus a
        // 16,000 burst).
        self.now += Duration::from_micros(500);
        if self.channels.is_empty() {
            self.client.send(self.conn, msg, Delivery::Unreliable).unwrap();
        } else {
            let ch = self.channels[(self.sent % self.channels.len() as u64) as usize];
            self.client.send_on(self.conn, ch, msg).unwrap();
        }
        let t = self.client.poll_transmit(self.now, &mut self.buf).expect("a datagram is due");
        self.server.handle_datagram(self.now, CLIENT, &mut self.buf[..t.len]);
        match self.server.poll_event() {
            Some(Event::Message { payload, .. }) => {
                black_box(payload);
            }
            other => panic!("expected the message, got {other:?}"),
        }
        self.sent += 1;
        if self.sent.is_multiple_of(self.ack_every) {
            // Acks back to the client, and its Delivered events.
            while let Some(t) = self.server.poll_transmit(self.now, &mut self.buf) {
                self.client.handle_datagram(self.now, SERVER, &mut self.buf[..t.len]);
            }
            while self.client.poll_event().is_some() {}
        }
    }
}
