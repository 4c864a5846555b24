//! A predicted client over the simulator: 10 % loss, 40 ms of jitter, and a
//! server that pushes the player now and then (what the client cannot
//! predict). The client must converge to the server's state exactly, and
//! the drawn position must never jump by more than [`MAX_SNAP`] beyond the
//! movement of its own input in one tick.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use mpgameserver::{ConnectionId, Context, Delivery, Duration, EndpointConfig, EventHandler, Rng, Seed, ServerKey};
use mpgameserver_game::{InputReceiver, Interpolate, Prediction};
use mpgameserver_sim::{LinkConfig, Loss, Sim};
use serde::{Deserialize, Serialize};

const HZ: u32 = 30;
const SPEED: f32 = 6.0; // pixels per tick
const PUSH: f32 = 30.0; // the server's unpredicted push, pixels
/// The stated bound: in one tick, the drawn player never moves more than
/// this beyond the movement of its own input. A push of 30 px shown at once
/// would be a 30 px snap; faded in at 20 % a tick it is at most 6 px.
const MAX_SNAP: f32 = 0.2 * PUSH + 0.01;

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct P(f32, f32);

impl Interpolate for P {
    fn interpolate(&self, o: &P, t: f32) -> P {
        P(self.0.interpolate(&o.0, t), self.1.interpolate(&o.1, t))
    }
}

fn step(p: &mut P, i: &(i8, i8)) {
    p.0 += f32::from(i.0) * SPEED;
    p.1 += f32::from(i.1) * SPEED;
}

#[derive(Serialize, Deserialize)]
struct Inputs(Vec<(u32, (i8, i8))>);

#[derive(Serialize, Deserialize)]
struct State {
    acked: Option<u32>,
    pos: P,
}

#[derive(Default)]
struct Server {
    pos: P,
    inputs: InputReceiver,
    ticks: u64,
}

impl EventHandler for Server {
    fn update(&mut self, ctx: &mut Context<'_>, _dt: Duration) {
        self.ticks += 1;
        if self.ticks.is_multiple_of(60) && self.ticks <= 600 {
            self.pos.1 += PUSH; // a collision the client cannot know about
        }
        let state = State { acked: self.inputs.last_applied(), pos: self.pos };
        let _ = ctx.broadcast_msg(&state, Delivery::Unreliable.unreported());
    }

    fn handle_message(&mut self, ctx: &mut Context<'_>, _conn: ConnectionId, payload: Vec<u8>) {
        if let Ok(Inputs(batch)) = ctx.decode(&payload) {
            for (_, input) in self.inputs.accept(batch) {
                step(&mut self.pos, &input);
            }
        }
    }
}

struct Client {
    conn: Option<ConnectionId>,
    prediction: Prediction<P, (i8, i8)>,
    ticks: u64,
    /// Where the player was drawn at each tick, and the input of that tick.
    drawn: Vec<(P, (i8, i8))>,
}

impl EventHandler for Client {
    fn connect(&mut self, _ctx: &mut Context<'_>, conn: ConnectionId) {
        self.conn = Some(conn);
    }

    fn update(&mut self, ctx: &mut Context<'_>, _dt: Duration) {
        let Some(conn) = self.conn else { return };
        self.ticks += 1;
        // Ten seconds of walking in turns, then standing still.
        let input =
            if self.ticks <= 300 { [(1, 0), (0, 1), (-1, 0), (0, -1)][(self.ticks / 15 % 4) as usize] } else { (0, 0) };
        self.prediction.predict(input, step);
        let batch: Vec<(u32, (i8, i8))> = self.prediction.unacked().map(|(s, i)| (s, *i)).collect();
        ctx.send_msg(conn, &Inputs(batch), Delivery::Unreliable.unreported()).unwrap();
        self.drawn.push((self.prediction.display(), input));
    }

    fn handle_message(&mut self, ctx: &mut Context<'_>, _conn: ConnectionId, payload: Vec<u8>) {
        if let Ok(s) = ctx.decode::<State>(&payload) {
            self.prediction.reconcile(s.acked, s.pos, step);
        }
    }
}

/// Runs the scenario; returns (client, server position, largest snap).
fn run(seed: u64, smoothing: f32) -> (Client, P, f32, u64) {
    let mut sim = Sim::new(seed);
    let mut link = LinkConfig::default().latency(Duration::from_millis(40)).jitter(Duration::from_millis(40));
    link.loss = Loss::Random(0.10);
    sim.set_default_link(link);
    let key = ServerKey::generate(&mut Rng::new(Seed::from_u64(seed)));
    let server = sim.add_server(EndpointConfig::default(), key).unwrap();
    let client = sim.add_client(EndpointConfig::default()).unwrap();
    let s = sim.run_handler(server, Server::default(), HZ).unwrap();
    let prediction = Prediction::new(P::default(), 512).with_smoothing(smoothing);
    let c = sim.run_handler(client, Client { conn: None, prediction, ticks: 0, drawn: Vec::new() }, HZ).unwrap();
    sim.connect(client, server).unwrap();
    sim.run_for(Duration::from_secs(25));
    let c_ = c.borrow();
    let snap = c_
        .drawn
        .windows(2)
        .map(|w| {
            // The drawn movement minus the player's own: what a correction added.
            let (mut own, (b, input)) = (w[0].0, w[1]);
            step(&mut own, &input);
            ((b.0 - own.0).powi(2) + (b.1 - own.1).powi(2)).sqrt()
        })
        .fold(0.0f32, f32::max);
    let client = Client { conn: c_.conn, prediction: c_.prediction.clone(), ticks: c_.ticks, drawn: c_.drawn.clone() };
    let skipped = s.borrow().inputs.skipped();
    (client, s.borrow().pos, snap, skipped)
}

#[test]
fn a_predicted_client_converges_without_visible_snaps() {
    for seed in [1, 2, 3] {
        let (client, server_pos, snap, skipped) = run(seed, 0.2);
        assert!(client.ticks > 700, "ran {} ticks", client.ticks);
        // Converged exactly: the same state, drawn where it is; only the
        // idle inputs of the last round trip are still unacknowledged.
        assert_eq!(*client.prediction.state(), server_pos, "seed {seed}");
        assert!(client.prediction.unacked().count() <= 10, "{}", client.prediction.unacked().count());
        assert_eq!(client.prediction.display(), server_pos);
        // The ten pushes were corrections, and none snapped.
        assert!(client.prediction.corrections() >= 10, "seed {seed}: {}", client.prediction.corrections());
        assert!(snap <= MAX_SNAP, "seed {seed}: a snap of {snap} px (bound {MAX_SNAP})");
        println!("seed {seed}: largest snap {snap:.2} px, {} corrections", client.prediction.corrections());
        // Every input reached the server despite the loss: sent redundantly.
        assert_eq!(skipped, 0, "seed {seed}");
    }
    // Without the fade, the same pushes are visible snaps.
    let (_, _, snap, _) = run(1, 1.0);
    assert!(snap >= PUSH - 0.01, "unsmoothed snap {snap}");
}
