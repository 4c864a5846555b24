//! Making a non-deterministic run loud: compare two traces and name the
//! first entry where they part ([`Trace::first_difference`]), or run a
//! scenario twice and panic with it ([`assert_deterministic`]).

use std::fmt;

use crate::sim::Sim;
use crate::trace::{Trace, TraceEntry, hex};

/// Where two traces first differ.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Divergence {
    /// The entry's position since the start of the runs (0 for the first
    /// entry ever recorded), if a kept entry differs.
    pub index: Option<u64>,
    /// The first run's entry there (`None`: the run had ended).
    pub left: Option<TraceEntry>,
    /// The second run's entry there.
    pub right: Option<TraceEntry>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show =
            |e: &Option<TraceEntry>| e.map_or_else(|| "(nothing: the run had ended)".to_string(), |e| e.to_string());
        match self.index {
            Some(i) => write!(f, "first difference at trace entry {i}:\n  run 1: {}\n  run 2: {}", show(&self.left), show(&self.right)),
            None => f.write_str(
                "the kept trace entries are equal, but the digests differ: the difference is in datagram bytes (a payload built from unordered or random data?) or before the kept entries (raise Sim::set_trace_capacity)",
            ),
        }
    }
}

impl Trace {
    /// Where this trace and `other` first differ, or `None` if their
    /// digests are equal. Compares the entries both kept (the most recent
    /// ones, see [`Sim::set_trace_capacity`]), by their position since the
    /// start.
    pub fn first_difference(&self, other: &Trace) -> Option<Divergence> {
        if self.digest() == other.digest() {
            return None;
        }
        let start_a = self.total() - self.entries().len() as u64;
        let start_b = other.total() - other.entries().len() as u64;
        let start = start_a.max(start_b);
        let end = self.total().max(other.total());
        let at = |t: &Trace, s: u64, i: u64| t.entries().nth(usize::try_from(i - s).ok()?).copied();
        for i in start..end {
            let (l, r) = (at(self, start_a, i), at(other, start_b, i));
            if l != r {
                return Some(Divergence { index: Some(i), left: l, right: r });
            }
        }
        Some(Divergence { index: None, left: None, right: None })
    }
}

/// Runs `scenario` twice with `seed` and returns the digest; panics, naming
/// the first trace entry where the two runs part, if they differ. The usual
/// causes are in the game logic: iterating a `HashMap`, reading the wall
/// clock, unseeded randomness.
///
/// ```
/// use mpgameserver::{Delivery, Duration, EndpointConfig, Rng, Seed, ServerKey};
/// use mpgameserver_sim::{LinkConfig, Sim, assert_deterministic};
///
/// let digest = assert_deterministic(7, |seed| {
///     let mut sim = Sim::new(seed);
///     sim.set_default_link(LinkConfig::wifi());
///     let server = sim.add_server(EndpointConfig::default(), ServerKey::generate(&mut Rng::new(Seed::from_u64(1)))).unwrap();
///     let client = sim.add_client(EndpointConfig::default()).unwrap();
///     let conn = sim.connect(client, server).unwrap();
///     sim.send(client, conn, b"hello", Delivery::Reliable).unwrap();
///     sim.run_for(Duration::from_secs(2));
///     sim
/// });
/// # let _ = digest;
/// ```
pub fn assert_deterministic(seed: u64, mut scenario: impl FnMut(u64) -> Sim) -> [u8; 32] {
    let a = scenario(seed);
    let b = scenario(seed);
    if let Some(d) = a.trace().first_difference(b.trace()) {
        panic!(
            "mpgameserver-sim: two runs with seed {seed} differ (digests {} and {}); {d}. \
             Look for HashMap iteration, the wall clock or unseeded randomness in the game logic.",
            hex(&a.digest()),
            hex(&b.digest())
        );
    }
    a.digest()
}

#[cfg(test)]
mod tests {
    use mpgameserver::{Delivery, Duration, EndpointConfig, Rng, Seed, ServerKey};

    use super::*;

    /// A run whose traffic depends on `extra`, as game logic reading a
    /// wall clock or a HashMap would make it.
    fn run(seed: u64, extra: usize) -> Sim {
        let mut sim = Sim::new(seed);
        let key = ServerKey::generate(&mut Rng::new(Seed::from_u64(1)));
        let server = sim.add_server(EndpointConfig::default(), key).unwrap();
        let client = sim.add_client(EndpointConfig::default()).unwrap();
        let conn = sim.connect(client, server).unwrap();
        sim.run_for(Duration::from_millis(500));
        sim.send(client, conn, &vec![0u8; 10 + extra], Delivery::Reliable).unwrap();
        sim.run_for(Duration::from_millis(500));
        sim
    }

    #[test]
    fn equal_runs_have_no_difference() {
        assert!(run(3, 0).trace().first_difference(run(3, 0).trace()).is_none());
        assert_eq!(assert_deterministic(3, |s| run(s, 0)), run(3, 0).digest());
    }

    #[test]
    fn the_first_differing_entry_is_named() {
        let (a, b) = (run(3, 0), run(3, 1));
        let d = a.trace().first_difference(b.trace()).unwrap();
        let (l, r) = (d.left.unwrap(), d.right.unwrap());
        assert_eq!(l.id, r.id);
        assert_eq!(l.len + 1, r.len, "the longer message's datagram");
        // Everything before it was equal.
        let i = usize::try_from(d.index.unwrap()).unwrap();
        assert!(a.trace().entries().take(i).eq(b.trace().entries().take(i)));
        assert!(d.to_string().contains("first difference at trace entry"));
    }

    #[test]
    #[should_panic(expected = "two runs with seed 5 differ")]
    fn a_scenario_that_changes_between_runs_panics() {
        let mut calls = 0;
        assert_deterministic(5, |s| {
            calls += 1;
            run(s, calls)
        });
    }
}
