//! A fixed number of messages through the core path, for profilers and
//! instruction counters (`benches/datagram.rs` times the same path, but for
//! a time, not a count).
//!
//! `cargo run --release --example core_loop -- v2 100 100000` sends 100,000
//! unreliable 100 B messages client → server over MPGS/2 (`v1`: MPGS/1;
//! `raw`: AES-128-GCM seal+open of the payload only; `v2ch`: MPGS/2 with
//! four active channels, the messages spread over channel 0 and three
//! configured unreliable channels of two priorities and weights 1–3;
//! `v2wire`: MPGS/2's wire format alone, see [`wire_floor`]), as the
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
    let usage = "usage: core_loop v1|v2|v2ch|v2wire|raw SIZE COUNT";
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
        "v2wire" => wire_floor(&msg, count),
        _ => panic!("{usage}"),
    }
}

/// What any implementation of MPGS/2's wire format must do per message, and
/// nothing more: the client writes a short header, one MESSAGE frame and
/// seals; the server opens (packet number recovery, replay window), parses
/// the frame, copies the message out for the application and records the
/// packet for its ACK; every 8 messages one ACK-only packet goes back and is
/// opened and parsed. No queues, records, loss detection, congestion control,
/// events or routing: the floor that the protocol's bookkeeping adds to, for
/// comparing with `v2` (same message size, same ACK cadence, the crate's own
/// header, frame and protection code).
fn wire_floor(msg: &[u8], count: u64) {
    use mpgameserver::_internal::mpgs2::{ack, buf, frame, keys, protect};
    use mpgameserver::{Duration, Instant, MAX_DATAGRAM};

    let suite = keys::Suite::Aes128Gcm;
    let (c2s, s2c) = ([0x11u8; 32], [0x22u8; 32]);
    let dir = |s: &[u8; 32]| keys::DirectionKeys::new(suite, s);
    let server_cid = Some([0x5Au8; mpgameserver::_internal::mpgs2::CID_LEN]);
    // The client sends to the server's 8-byte id; the server's packets to
    // the client carry none (a client's id is zero-length).
    let mut client = protect::Protection::new(keys::KeyPair { local: dir(&c2s), remote: dir(&s2c) }, server_cid, 0);
    let mut server = protect::Protection::new(keys::KeyPair { local: dir(&s2c), remote: dir(&c2s) }, None, 8);
    let mut server_acks = ack::AckState::new(Duration::from_millis(25));
    let pto = Duration::from_millis(100);
    let mut now = Instant::ZERO;
    let mut largest_acked_by_server = None;
    let mut dgram = [0u8; MAX_DATAGRAM];
    let message = frame::Frame::Message { kind: frame::ChannelKind::Unreliable, channel: 0, id: None, data: msg };
    for i in 1..=count {
        now += Duration::from_micros(500);
        // Client → server: one MESSAGE frame.
        let out = &mut dgram[..1200];
        let begun = client.begin(largest_acked_by_server, out).unwrap();
        let mut w = buf::Writer::new(&mut out[begun.header_len..begun.header_len + begun.max_payload]);
        message.emit(&mut w).unwrap();
        let n = w.len();
        let len = client.finish(begun, out, n).unwrap();
        let opened = server.open(now, pto, &mut dgram[..len]).unwrap();
        for f in frame::Frames::new(&dgram[opened.payload.clone()]) {
            if let frame::Frame::Message { data, .. } = f.unwrap() {
                black_box(data.to_vec());
            }
        }
        server_acks.on_packet(now, opened.pn, true);
        if i % 8 == 0 {
            // Server → client: an ACK-only packet.
            let out = &mut dgram[..1200];
            let begun = server.begin(None, out).unwrap();
            let mut w = buf::Writer::new(&mut out[begun.header_len..begun.header_len + begun.max_payload]);
            let largest = server_acks.write(now, &mut w).unwrap();
            let n = w.len();
            let len = server.finish(begun, out, n).unwrap();
            // ACK-only packets are not ack-eliciting: the client never acks
            // them, as in the `v2` run.
            black_box(largest);
            let opened = client.open(now, pto, &mut dgram[..len]).unwrap();
            for f in frame::Frames::new(&dgram[opened.payload.clone()]) {
                if let frame::Frame::Ack(a) = f.unwrap() {
                    largest_acked_by_server = Some(a.largest);
                    black_box(a.ranges().count());
                }
            }
        }
    }
}
