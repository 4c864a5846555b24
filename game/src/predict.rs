//! Client-side prediction with server reconciliation, and the server's side
//! of the input stream.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::interpolate::Interpolate;

/// The local player's state, predicted: each input is applied at once with
/// the game's own step function and kept, numbered, until the server
/// acknowledges it. When an authoritative state arrives with the number of
/// the last input the server applied, the prediction restarts from it and
/// replays the inputs the server has not applied yet
/// ([`reconcile`](Prediction::reconcile)).
///
/// The step function must be deterministic and the same on both sides (the
/// same code, the same `f32` operations); then, once the server has seen
/// every input, the prediction equals the server's state exactly.
///
/// Inputs can be lost on the way: send every [unacknowledged](Prediction::unacked)
/// input with each new one (a few bytes each), and let the server keep
/// only the new ones ([`InputReceiver`]).
///
/// Corrections (the server disagreed: an input was lost, or another player
/// pushed us) are blended in: [`display`](Prediction::display) moves from
/// where the player was drawn to the corrected state over a few ticks
/// (`smoothing` per tick) instead of snapping.
#[derive(Clone, Debug)]
pub struct Prediction<S, I> {
    state: S,
    history: VecDeque<(u32, I)>,
    capacity: usize,
    next_seq: u32,
    acked: Option<u32>,
    /// Where the player was drawn before the last correction, moved by the
    /// same inputs since, and its weight in the display.
    ghost: Option<(S, f32)>,
    smoothing: f32,
    corrections: u64,
    overflowed: u64,
}

impl<S: Clone, I: Clone> Prediction<S, I> {
    /// Starts from `state`, keeping at most `capacity` unacknowledged inputs
    /// (at least 1; the oldest is dropped beyond, counted in
    /// [`overflowed`](Prediction::overflowed)). Corrections fade by 20 % a
    /// tick.
    pub fn new(state: S, capacity: usize) -> Prediction<S, I> {
        Prediction {
            state,
            history: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 0,
            acked: None,
            ghost: None,
            smoothing: 0.2,
            corrections: 0,
            overflowed: 0,
        }
    }

    /// Sets how much of a correction is shown per tick, in `(0, 1]` (1:
    /// snap at once).
    pub fn with_smoothing(mut self, per_tick: f32) -> Prediction<S, I> {
        self.smoothing = per_tick.clamp(f32::EPSILON, 1.0);
        self
    }

    /// Applies `input` to the predicted state now and keeps it; returns its
    /// sequence number (from 0, one per input).
    pub fn predict(&mut self, input: I, mut step: impl FnMut(&mut S, &I)) -> u32 {
        step(&mut self.state, &input);
        if let Some((ghost, weight)) = self.ghost.as_mut() {
            step(ghost, &input);
            *weight *= 1.0 - self.smoothing;
            if *weight < 1e-3 {
                self.ghost = None;
            }
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        if self.history.len() == self.capacity {
            self.history.pop_front();
            self.overflowed += 1;
        }
        self.history.push_back((seq, input));
        seq
    }

    /// Takes the server's state after it applied input `acked` (`None`: no
    /// input yet): drops the acknowledged inputs, restarts from
    /// `authoritative` and replays the others. A state older than one
    /// already taken (reordered) is ignored: returns false.
    pub fn reconcile(&mut self, acked: Option<u32>, authoritative: S, mut step: impl FnMut(&mut S, &I)) -> bool
    where
        S: PartialEq + Interpolate,
    {
        if acked < self.acked {
            return false;
        }
        self.acked = acked;
        if let Some(a) = acked {
            while self.history.front().is_some_and(|(seq, _)| *seq <= a) {
                self.history.pop_front();
            }
        }
        let mut state = authoritative;
        for (_, input) in &self.history {
            step(&mut state, input);
        }
        if state != self.state {
            self.corrections += 1;
            let shown = self.display();
            self.ghost = Some((shown, 1.0));
        }
        self.state = state;
        true
    }

    /// The predicted state (what the game logic uses).
    pub fn state(&self) -> &S {
        &self.state
    }

    /// What to draw: the predicted state, still blended with where the
    /// player was drawn before a recent correction.
    pub fn display(&self) -> S
    where
        S: Interpolate,
    {
        match &self.ghost {
            Some((ghost, weight)) => self.state.interpolate(ghost, *weight),
            None => self.state.clone(),
        }
    }

    /// The inputs the server has not acknowledged, oldest first, with their
    /// numbers: send them all with each new input.
    pub fn unacked(&self) -> impl Iterator<Item = (u32, &I)> {
        self.history.iter().map(|(seq, i)| (*seq, i))
    }

    /// The last input the server acknowledged.
    pub fn acked(&self) -> Option<u32> {
        self.acked
    }

    /// Reconciliations that changed the predicted state.
    pub fn corrections(&self) -> u64 {
        self.corrections
    }

    /// Inputs dropped from a full history (never acknowledged in time).
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }
}

/// The server's side of a predicted client's input stream: inputs arrive
/// numbered, repeated (each datagram carries every unacknowledged one),
/// reordered or not at all; [`accept`](InputReceiver::accept) returns each
/// new one once, in order, skipping any that can no longer come in time.
#[derive(Clone, Debug, Default)]
pub struct InputReceiver {
    last: Option<u32>,
    repeated: u64,
    skipped: u64,
}

impl InputReceiver {
    /// Expects input 0 first.
    pub fn new() -> InputReceiver {
        InputReceiver::default()
    }

    /// The inputs of `batch` not seen before, in order. An input older than
    /// one already returned is a repeat; a gap (a lost input that no later
    /// batch repeated) is skipped and counted.
    pub fn accept<I>(&mut self, batch: impl IntoIterator<Item = (u32, I)>) -> Vec<(u32, I)> {
        let mut new: Vec<(u32, I)> = Vec::new();
        for (seq, input) in batch {
            if self.last.is_some_and(|l| seq <= l) {
                self.repeated += 1;
            } else {
                new.push((seq, input));
            }
        }
        new.sort_by_key(|(seq, _)| *seq);
        new.dedup_by_key(|(seq, _)| *seq);
        if let Some(&(first, _)) = new.first() {
            let expected = self.last.map_or(0, |l| l.wrapping_add(1));
            self.skipped += u64::from(first - expected);
        }
        for w in new.windows(2) {
            self.skipped += u64::from(w[1].0 - w[0].0 - 1);
        }
        if let Some(&(last, _)) = new.last() {
            self.last = Some(last);
        }
        new
    }

    /// The number of the last input returned: send it back with the state.
    pub fn last_applied(&self) -> Option<u32> {
        self.last
    }

    /// Inputs received again after they were returned.
    pub fn repeated(&self) -> u64 {
        self.repeated
    }

    /// Inputs never received before a later one was returned.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    fn step(x: &mut f32, v: &i8) {
        *x += f32::from(*v) * 0.5;
    }

    #[test]
    fn reconciliation_replays_what_the_server_has_not_applied() {
        let mut p = Prediction::new(0.0f32, 64).with_smoothing(1.0);
        for _ in 0..5 {
            p.predict(2, step);
        }
        assert_eq!(*p.state(), 5.0);
        // The server applied 0..=2 and agrees: nothing changes.
        assert!(p.reconcile(Some(2), 3.0, step));
        assert_eq!((*p.state(), p.corrections(), p.unacked().count()), (5.0, 0, 2));
        // The server was pushed back by 1: the prediction follows.
        assert!(p.reconcile(Some(3), 3.0, step));
        assert_eq!((*p.state(), p.corrections()), (4.0, 1));
        // A reordered older state is ignored.
        assert!(!p.reconcile(Some(1), 100.0, step));
        assert_eq!(*p.state(), 4.0);
    }

    #[test]
    fn corrections_fade_in_instead_of_snapping() {
        let mut p: Prediction<f32, i8> = Prediction::new(0.0, 64).with_smoothing(0.5);
        p.predict(0, step);
        p.reconcile(Some(0), 8.0, step);
        assert_eq!(*p.state(), 8.0);
        assert_eq!(p.display(), 0.0, "drawn where it was");
        p.predict(0, step);
        assert_eq!(p.display(), 4.0);
        p.predict(0, step);
        assert_eq!(p.display(), 6.0);
        for _ in 0..20 {
            p.predict(0, step);
        }
        assert_eq!(p.display(), 8.0);
    }

    #[test]
    fn the_history_is_bounded() {
        let mut p: Prediction<f32, i8> = Prediction::new(0.0, 3);
        for _ in 0..5 {
            p.predict(1, step);
        }
        assert_eq!(p.unacked().map(|(s, _)| s).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(p.overflowed(), 2);
    }

    #[test]
    fn the_receiver_returns_each_input_once_in_order() {
        let mut r = InputReceiver::new();
        assert_eq!(r.accept([(1, 'b'), (0, 'a')]), [(0, 'a'), (1, 'b')]);
        assert_eq!(r.accept([(0, 'a'), (1, 'b'), (2, 'c'), (2, 'c')]), [(2, 'c')]);
        assert_eq!(r.accept([(4, 'e')]), [(4, 'e')]);
        assert_eq!((r.last_applied(), r.repeated(), r.skipped()), (Some(4), 2, 1));
        assert!(r.accept([(3, 'd')]).is_empty(), "too late");
    }

    quickcheck! {
        // Whatever subset of the (redundant) input datagrams arrives, in any
        // order: once the last one arrives with every unacked input, the
        // prediction equals the server's state.
        fn prediction_converges_to_the_server(inputs: Vec<i8>, delivered: Vec<bool>) -> bool {
            let mut p = Prediction::new(0.0f32, 1024);
            let mut r = InputReceiver::new();
            let mut server = 0.0f32;
            for (k, &v) in inputs.iter().enumerate() {
                p.predict(v, step);
                let batch: Vec<(u32, i8)> = p.unacked().map(|(s, i)| (s, *i)).collect();
                if delivered.get(k).copied().unwrap_or(true) || k + 1 == inputs.len() {
                    for (_, i) in r.accept(batch) {
                        step(&mut server, &i);
                    }
                    p.reconcile(r.last_applied(), server, step);
                }
            }
            *p.state() == server && p.unacked().count() == 0 && r.skipped() == 0
        }
    }
}
