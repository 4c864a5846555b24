//! A fixed number of messages through the core path, for profilers and
//! instruction counters (`benches/datagram.rs` times the same path, but for
//! a time, not a count).
//!
//! `cargo run --release --example core_loop -- v2 100 100000` sends 100,000
//! unreliable 100 B messages client → server over MPGS/2 (`v1`: MPGS/1;
//! `raw`: AES-128-GCM seal+open of the payload only; `v2ch`: MPGS/2 with
//! four active channels, the messages spread over channel 0 and three
//! configured unreliable channels of two priorities and weights 1–3), as the
//! bench does:
//! `send` → `poll_transmit` → `handle_datagram` → `poll_event`, the server's
//! acks fed back every 8 (MPGS/2) or 16 (MPGS/1) messages. Run it under
//! `valgrind --tool=cachegrind --cache-sim=no` at two counts: the difference
//! of the instruction totals over the difference of the counts is the
//! per-message cost, free of the machine's load.
#![allow(clippy::unwrap_used)] // a profiling loop that cannot set up should stop loudly

use std::hint::black_box;

use mpgameserver::_internal::PacketKey;
use mpgameserver::ProtocolVersion;

// The same pair as `benches/datagram.rs`'s `core/*` benchmarks.
#[path = "../benches/support/pair.rs"]
mod pair;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: core_loop v1|v2|v2ch|raw SIZE COUNT";
    let (which, size, count) = match &args[1..] {
        [w, s, c] => (w.as_str(), s.parse::<usize>().expect(usage), c.parse::<u64>().expect(usage)),
        _ => panic!("{usage}"),
    };
    // MPGS/2 at 1200 as in the bench: the largest message that leaves in
    // one 1,200 B datagram beside an ACK frame.
    let size = if which.starts_with("v2") { size.min(pair::V2_UNFRAGMENTED) } else { size };
    let msg = vec![0x5Au8; size];
    match which {
        "raw" => {
            let key = PacketKey::new(&[7u8; 16]);
            let header = [0x42u8; 20];
            let mut payload = msg;
            for _ in 0..count {
                let tag = key.seal(black_box(&header), &mut payload);
                key.open(&header, &mut payload, &tag).unwrap();
                black_box(&payload);
            }
        }
        "v1" | "v2" | "v2ch" => {
            let protocol = if which == "v1" { ProtocolVersion::V1 } else { ProtocolVersion::V2 };
            let mut pair = pair::Pair::new(protocol, which == "v2ch");
            for _ in 0..count {
                pair.one(&msg);
            }
        }
        _ => panic!("{usage}"),
    }
}
