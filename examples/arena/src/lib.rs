//! # Arena: a small multiplayer game on mpgameserver
//!
//! Players move dots around an 800×600 arena and chat. The server is
//! authoritative: it applies each player's inputs and sends everyone a
//! snapshot 30 times a second. Each client predicts its own player
//! (applying its inputs at once, reconciling with the server's snapshots)
//! and draws the others interpolated 100 ms in the past.
//!
//! The game logic is two [`EventHandler`]s, [`ArenaServer`] and
//! [`ArenaClient`]: the binaries run them over UDP sockets
//! (`mpgameserver-drivers`), and `tests/sim.rs` runs the very same types in
//! the simulator over a lossy mobile network, deterministically.
//!
//! Chat lines arrive in send order although MPGS/1's `Reliable` delivery
//! is unordered: every line is numbered by its sender and again by the
//! server, and a [`HoldBack`] releases them in order. Native ordered
//! channels come with MPGS/2.

use std::collections::{BTreeMap, VecDeque};

use mpgameserver::typed::{self, DecodeError, MessageHandler};
use mpgameserver::{ConnectionId, Context, Delivery, DisconnectReason, Duration, EventHandler};
use mpgameserver_game::{HoldBack, InputReceiver, Interpolate, Prediction, SnapshotBuffer};
use serde::{Deserialize, Serialize};

/// Server ticks (and snapshots) per second.
pub const TICK_HZ: u32 = 30;
/// Arena width, in pixels.
pub const WIDTH: f32 = 800.0;
/// Arena height, in pixels.
pub const HEIGHT: f32 = 600.0;
/// Player speed, in pixels per second.
pub const SPEED: f32 = 180.0;
/// How far behind the server remote players are drawn.
pub const RENDER_DELAY: Duration = Duration::from_millis(100);
/// Longest chat line, in characters (longer ones are cut).
pub const MAX_CHAT: usize = 120;
/// Longest player name, in characters.
pub const MAX_NAME: usize = 16;
/// Inputs a client sends per datagram at most (the newest unacknowledged).
pub const INPUT_REDUNDANCY: usize = 16;
/// The on-screen and README note about chat ordering.
pub const ORDER_NOTE: &str =
    "chat order: sequence numbers + hold-back (MPGS/1 Reliable is unordered; ordered channels come with MPGS/2)";

/// The length of one tick.
pub fn tick_period() -> Duration {
    Duration::from_micros(1_000_000 / u64::from(TICK_HZ))
}

/// A player's movement for one tick: each axis -1, 0 or 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// Left (-1) or right (1).
    pub dx: i8,
    /// Up (-1) or down (1).
    pub dy: i8,
}

/// A position in the arena.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pos {
    /// Pixels from the left.
    pub x: f32,
    /// Pixels from the top.
    pub y: f32,
}

impl Interpolate for Pos {
    fn interpolate(&self, other: &Pos, t: f32) -> Pos {
        Pos { x: self.x.interpolate(&other.x, t), y: self.y.interpolate(&other.y, t) }
    }
}

impl Pos {
    /// The distance to `other`.
    pub fn distance(&self, other: &Pos) -> f32 {
        ((self.x - other.x).powi(2) + (self.y - other.y).powi(2)).sqrt()
    }
}

/// The game's physics, the same on server and client (prediction needs
/// bit-identical results): one tick of `input`.
pub fn step(pos: &mut Pos, input: &Input) {
    let d = SPEED / TICK_HZ as f32;
    pos.x = (pos.x + f32::from(input.dx.signum()) * d).clamp(0.0, WIDTH);
    pos.y = (pos.y + f32::from(input.dy.signum()) * d).clamp(0.0, HEIGHT);
}

/// Where player `id` appears.
pub fn spawn(id: u16) -> Pos {
    // Three columns 230 px apart, two rows: a bot's walk (at most 90 px
    // from its spawn) never reaches another spawn, the edges or the text.
    Pos { x: 170.0 + 230.0 * f32::from(id % 3), y: 180.0 + 150.0 * f32::from(id / 3 % 2) }
}

/// One player in a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlayerState {
    /// Its id.
    pub id: u16,
    /// Where it is.
    pub pos: Pos,
}

/// What a client sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToServer {
    /// The player's name (first message).
    Hello {
        /// Shown over the player.
        name: String,
    },
    /// Numbered inputs, every unacknowledged one (up to [`INPUT_REDUNDANCY`]).
    Inputs(Vec<(u32, Input)>),
    /// A chat line, numbered by the sender from 0.
    Chat {
        /// The sender's line number.
        seq: u64,
        /// The line.
        text: String,
    },
}

/// What the server sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToClient {
    /// Your player id, and where the chat is (a late joiner does not wait
    /// for the lines said before it came).
    Welcome {
        /// The id.
        id: u16,
        /// The order number of the next chat line.
        chat_from: u64,
    },
    /// The world at a server tick, with the last of your inputs applied.
    Snapshot {
        /// The server's tick.
        tick: u64,
        /// Your last input applied.
        acked: Option<u32>,
        /// Every player.
        players: Vec<PlayerState>,
    },
    /// Every player's name.
    Roster(Vec<(u16, String)>),
    /// A chat line, numbered by the server in relay order from 0.
    Chat(ChatLine),
}

/// A relayed chat line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatLine {
    /// Its position in the whole chat.
    pub order: u64,
    /// The sender's id.
    pub from: u16,
    /// The sender's line number.
    pub seq: u64,
    /// The line.
    pub text: String,
}

/// The longest prefix of `s` of at most `n` characters.
fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

struct Player {
    id: u16,
    name: String,
    pos: Pos,
    inputs: InputReceiver,
    /// Inputs it may still apply (one more per tick, a few banked): no
    /// speed hack by sending inputs faster than the tick rate.
    budget: u32,
    chat: HoldBack<String>,
}

/// The authoritative server: applies inputs, relays chat in order, sends
/// snapshots every tick.
#[derive(Default)]
pub struct ArenaServer {
    players: BTreeMap<ConnectionId, Player>,
    next_id: u16,
    tick: u64,
    chat_order: u64,
    /// Every chat line relayed, in order.
    pub chat_log: Vec<ChatLine>,
    /// Messages that did not decode.
    pub undecodable: u64,
}

impl ArenaServer {
    /// Players connected.
    pub fn player_count(&self) -> usize {
        self.players.len()
    }

    /// Every player's position, by id.
    pub fn positions(&self) -> BTreeMap<u16, Pos> {
        self.players.values().map(|p| (p.id, p.pos)).collect()
    }

    fn roster(&self) -> ToClient {
        ToClient::Roster(self.players.values().map(|p| (p.id, p.name.clone())).collect())
    }
}

impl EventHandler for ArenaServer {
    fn connect(&mut self, ctx: &mut Context<'_>, conn: ConnectionId) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let player = Player {
            id,
            name: format!("player{id}"),
            pos: spawn(id),
            inputs: InputReceiver::new(),
            budget: 10,
            chat: HoldBack::new(256),
        };
        self.players.insert(conn, player);
        // Only Reliable control messages are sent with reports on; none are needed.
        let _ = ctx.set_outcome_reports(conn, false);
        let _ = ctx.send_msg(conn, &ToClient::Welcome { id, chat_from: self.chat_order }, Delivery::Reliable);
        let _ = ctx.broadcast_msg(&self.roster(), Delivery::Reliable);
    }

    fn disconnect(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, _reason: DisconnectReason) {
        if self.players.remove(&conn).is_some() {
            let _ = ctx.broadcast_msg(&self.roster(), Delivery::Reliable);
        }
    }

    fn update(&mut self, ctx: &mut Context<'_>, _dt: Duration) {
        self.tick += 1;
        let players: Vec<PlayerState> = self.players.values().map(|p| PlayerState { id: p.id, pos: p.pos }).collect();
        let conns: Vec<(ConnectionId, Option<u32>)> =
            self.players.iter_mut().map(|(c, p)| (*c, p.inputs.last_applied())).collect();
        for p in self.players.values_mut() {
            p.budget = (p.budget + 1).min(10);
        }
        for (conn, acked) in conns {
            let snap = ToClient::Snapshot { tick: self.tick, acked, players: players.clone() };
            let _ = ctx.send_msg(conn, &snap, Delivery::Unreliable.unreported());
        }
    }

    fn handle_message(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, payload: Vec<u8>) {
        typed::dispatch_message(self, ctx, conn, &payload);
    }
}

impl MessageHandler for ArenaServer {
    type Message = ToServer;

    fn message(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, msg: ToServer) {
        let Some(p) = self.players.get_mut(&conn) else { return };
        match msg {
            ToServer::Hello { name } => {
                p.name = cut(name.trim(), MAX_NAME);
                let _ = ctx.broadcast_msg(&self.roster(), Delivery::Reliable);
            }
            ToServer::Inputs(inputs) => {
                for (_, input) in p.inputs.accept(inputs.into_iter().take(INPUT_REDUNDANCY)) {
                    if p.budget > 0 {
                        p.budget -= 1;
                        step(&mut p.pos, &input);
                    }
                }
            }
            ToServer::Chat { seq, text } => {
                let from = p.id;
                for text in p.chat.push(seq, cut(&text, MAX_CHAT)) {
                    let line = ChatLine { order: self.chat_order, from, seq, text };
                    self.chat_order += 1;
                    let _ = ctx.broadcast_msg(&ToClient::Chat(line.clone()), Delivery::Reliable);
                    self.chat_log.push(line);
                }
            }
        }
    }

    fn undecodable(&mut self, _ctx: &mut Context<'_>, _conn: ConnectionId, _error: DecodeError) {
        self.undecodable += 1;
    }
}

/// A headless player: walks a figure specific to its number and says a
/// numbered line every second, up to `chat_lines`.
#[derive(Clone, Debug)]
pub struct Autopilot {
    /// Distinguishes the bots' paths.
    pub number: u32,
    /// Lines to say.
    pub chat_lines: u64,
}

impl Autopilot {
    /// The input at tick `t`: a 90 px square walked in a direction and
    /// phase specific to the bot.
    pub fn input(&self, t: u64) -> Input {
        let leg = (t / 15 + u64::from(self.number)) % 4;
        let (dx, dy) = [(1, 0), (0, 1), (-1, 0), (0, -1)][leg as usize];
        if self.number.is_multiple_of(2) { Input { dx, dy } } else { Input { dx: dy, dy: dx } }
    }
}

/// What a client saw of another player.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Seen {
    /// Its first position seen.
    pub first: Pos,
    /// The farthest it was seen from there.
    pub max_distance: f32,
}

/// The client's game logic: prediction of the local player, interpolation
/// of the others, the chat in order. The window or the bot feeds it inputs
/// ([`ArenaClient::set_input`]) and chat lines ([`ArenaClient::say`]) and
/// draws from [`ArenaClient::local`], [`ArenaClient::remote`] and the chat
/// log.
pub struct ArenaClient {
    name: String,
    conn: Option<ConnectionId>,
    my_id: Option<u16>,
    prediction: Prediction<Pos, Input>,
    remote: SnapshotBuffer<BTreeMap<u16, Pos>>,
    /// Every name ever announced (a player who left keeps its name in the chat).
    roster: BTreeMap<u16, String>,
    /// Players connected now.
    present: Vec<u16>,
    /// The chat in relay order, from the `Welcome` on.
    chat_in: Option<HoldBack<ChatLine>>,
    /// Lines that arrived before the `Welcome` (delivery is unordered).
    chat_early: Vec<ChatLine>,
    chat_log: Vec<ChatLine>,
    chat_out: VecDeque<String>,
    chat_seq: u64,
    input: Input,
    autopilot: Option<Autopilot>,
    ticks: u64,
    seen: BTreeMap<u16, Seen>,
    undecodable: u64,
}

impl ArenaClient {
    /// A player called `name`.
    pub fn new(name: &str) -> ArenaClient {
        ArenaClient {
            name: cut(name, MAX_NAME),
            conn: None,
            my_id: None,
            prediction: Prediction::new(Pos::default(), 256),
            remote: SnapshotBuffer::new(tick_period(), RENDER_DELAY, 64),
            roster: BTreeMap::new(),
            present: Vec::new(),
            chat_in: None,
            chat_early: Vec::new(),
            chat_log: Vec::new(),
            chat_out: VecDeque::new(),
            chat_seq: 0,
            input: Input::default(),
            autopilot: None,
            ticks: 0,
            seen: BTreeMap::new(),
            undecodable: 0,
        }
    }

    /// A bot: moves and chats by itself.
    pub fn bot(name: &str, autopilot: Autopilot) -> ArenaClient {
        ArenaClient { autopilot: Some(autopilot), ..ArenaClient::new(name) }
    }

    /// The input for the next ticks (a window's keys).
    pub fn set_input(&mut self, input: Input) {
        self.input = input;
    }

    /// Queues a chat line (sent at the next tick).
    pub fn say(&mut self, text: &str) {
        self.chat_out.push_back(cut(text, MAX_CHAT));
    }

    /// The player name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's id for this player, once welcomed.
    pub fn my_id(&self) -> Option<u16> {
        self.my_id
    }

    /// The local player's predicted position (exact, for game logic).
    pub fn predicted(&self) -> Pos {
        *self.prediction.state()
    }

    /// The local player as drawn (corrections fade in).
    pub fn local(&self) -> Pos {
        self.prediction.display()
    }

    /// The other players as drawn at `now` (interpolated 100 ms behind).
    pub fn remote(&self, now: mpgameserver::Instant) -> BTreeMap<u16, Pos> {
        let mut world = self.remote.sample(now).unwrap_or_default();
        if let Some(me) = self.my_id {
            world.remove(&me);
        }
        world
    }

    /// Players connected now (by id), as the server last said.
    pub fn present(&self) -> &[u16] {
        &self.present
    }

    /// A player's name, if known.
    pub fn name_of(&self, id: u16) -> Option<&str> {
        self.roster.get(&id).map(String::as_str)
    }

    /// The chat, in order.
    pub fn chat_log(&self) -> &[ChatLine] {
        &self.chat_log
    }

    /// Chat lines received early, waiting for an earlier one.
    pub fn chat_held(&self) -> usize {
        self.chat_in.as_ref().map_or(self.chat_early.len(), HoldBack::held)
    }

    /// Chat lines said so far.
    pub fn chat_sent(&self) -> u64 {
        self.chat_seq
    }

    /// What this client saw of every other player.
    pub fn seen(&self) -> &BTreeMap<u16, Seen> {
        &self.seen
    }

    /// Reconciliations that moved the local player.
    pub fn corrections(&self) -> u64 {
        self.prediction.corrections()
    }

    /// Ticks run.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Messages from the server that did not decode.
    pub fn undecodable(&self) -> u64 {
        self.undecodable
    }
}

impl EventHandler for ArenaClient {
    fn connect(&mut self, ctx: &mut Context<'_>, conn: ConnectionId) {
        self.conn = Some(conn);
        let _ = ctx.send_msg(conn, &ToServer::Hello { name: self.name.clone() }, Delivery::Reliable.unreported());
    }

    fn disconnect(&mut self, _ctx: &mut Context<'_>, _conn: ConnectionId, _reason: DisconnectReason) {
        self.conn = None;
    }

    fn update(&mut self, ctx: &mut Context<'_>, _dt: Duration) {
        let (Some(conn), Some(_)) = (self.conn, self.my_id) else { return };
        self.ticks += 1;
        if let Some(bot) = &self.autopilot {
            self.input = bot.input(self.ticks);
            if self.ticks.is_multiple_of(u64::from(TICK_HZ))
                && self.chat_seq + (self.chat_out.len() as u64) < bot.chat_lines
            {
                let line = format!("{} says line {}", self.name, self.chat_seq + self.chat_out.len() as u64);
                self.chat_out.push_back(line);
            }
        }
        self.prediction.predict(self.input, step);
        let unacked: Vec<(u32, Input)> = self.prediction.unacked().map(|(s, i)| (s, *i)).collect();
        let recent = unacked[unacked.len().saturating_sub(INPUT_REDUNDANCY)..].to_vec();
        let _ = ctx.send_msg(conn, &ToServer::Inputs(recent), Delivery::Unreliable.unreported());
        while let Some(text) = self.chat_out.pop_front() {
            let msg = ToServer::Chat { seq: self.chat_seq, text };
            if ctx.send_msg(conn, &msg, Delivery::Reliable.unreported()).is_err() {
                break; // queue full: the line is dropped from the chat, not retried out of order
            }
            self.chat_seq += 1;
        }
    }

    fn handle_message(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, payload: Vec<u8>) {
        typed::dispatch_message(self, ctx, conn, &payload);
    }
}

impl MessageHandler for ArenaClient {
    type Message = ToClient;

    fn message(&mut self, ctx: &mut Context<'_>, _conn: ConnectionId, msg: ToClient) {
        match msg {
            ToClient::Welcome { id, chat_from } => {
                self.my_id = Some(id);
                self.prediction = Prediction::new(spawn(id), 256);
                let mut chat = HoldBack::starting_at(chat_from, 1024);
                for line in std::mem::take(&mut self.chat_early) {
                    self.chat_log.extend(chat.push(line.order, line));
                }
                self.chat_in = Some(chat);
            }
            ToClient::Snapshot { tick, acked, players } => {
                let world: BTreeMap<u16, Pos> = players.iter().map(|p| (p.id, p.pos)).collect();
                if let Some(me) = self.my_id.and_then(|id| world.get(&id)) {
                    self.prediction.reconcile(acked, *me, step);
                }
                for (&id, pos) in &world {
                    if Some(id) != self.my_id {
                        let seen = self.seen.entry(id).or_insert(Seen { first: *pos, max_distance: 0.0 });
                        seen.max_distance = seen.max_distance.max(seen.first.distance(pos));
                    }
                }
                self.remote.push(ctx.now(), tick, world);
            }
            ToClient::Roster(names) => {
                self.present = names.iter().map(|(id, _)| *id).collect();
                self.roster.extend(names);
            }
            ToClient::Chat(line) => match self.chat_in.as_mut() {
                Some(chat) => self.chat_log.extend(chat.push(line.order, line)),
                None if self.chat_early.len() < 1024 => self.chat_early.push(line),
                None => {}
            },
        }
    }

    fn undecodable(&mut self, _ctx: &mut Context<'_>, _conn: ConnectionId, _error: DecodeError) {
        self.undecodable += 1;
    }
}

/// Checks what a bot saw at the end of a run: every other player in
/// `others` moved at least `min_move` pixels; the chat log is gap-free and
/// holds, for each sender, its lines 0..n in order, with n as `sent` says
/// (by name). Returns the problems found (empty: all good).
pub fn check_bot(client: &ArenaClient, sent: &BTreeMap<String, u64>, min_move: f32) -> Vec<String> {
    let mut problems = Vec::new();
    let me = client.my_id();
    let ids: BTreeMap<&str, u16> = client.roster.iter().map(|(id, n)| (n.as_str(), *id)).collect();
    for (name, &lines) in sent {
        let Some(&id) = ids.get(name.as_str()) else {
            problems.push(format!("{}: {name} is not in the roster", client.name()));
            continue;
        };
        if Some(id) != me {
            let moved = client.seen().get(&id).map_or(0.0, |s| s.max_distance);
            if moved < min_move {
                problems.push(format!("{}: saw {name} move only {moved:.0} px", client.name()));
            }
        }
        let seqs: Vec<u64> = client.chat_log().iter().filter(|l| l.from == id).map(|l| l.seq).collect();
        if seqs != (0..lines).collect::<Vec<_>>() {
            problems
                .push(format!("{}: lines of {name} arrived as {seqs:?}, expected 0..{lines} in order", client.name()));
        }
    }
    let orders: Vec<u64> = client.chat_log().iter().map(|l| l.order).collect();
    let first = orders.first().copied().unwrap_or(0);
    if orders != (first..first + orders.len() as u64).collect::<Vec<_>>() || client.chat_held() > 0 {
        problems.push(format!("{}: chat order has gaps ({} held)", client.name(), client.chat_held()));
    }
    problems
}
