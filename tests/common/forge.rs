//! Datagrams built by hand from header fields and messages, for the tests
//! whose hostile peers speak the wire directly (`tests/memory_bound.rs`,
//! `tests/sim/hostile.rs`, `tests/sim/adversarial.rs`). Sealing is the
//! core's own ([`protect::seal`]).

#![allow(dead_code, reason = "each test binary uses its part")]

use mpgameserver::_internal::protect::{self, PacketKey};
use mpgameserver::_internal::wire::{Direction, HEADER_LEN, Header, MsgType, PayloadWriter};
use mpgameserver::Instant;

/// Largest payload of a forged datagram (a 1500-byte MTU's).
const MAX_PAYLOAD: usize = 1434;
/// Room for header, payload and trailer.
const MAX_LEN: usize = HEADER_LEN + MAX_PAYLOAD + 16;

/// Replaces `out` with a datagram behind `hdr` (its type, length and count
/// come from `msgs`) carrying `msgs`: CRC without a key, AEAD under `key`
/// otherwise. With `out`'s capacity reserved beforehand, nothing is
/// allocated.
pub fn seal_into(out: &mut Vec<u8>, hdr: Header, key: Option<&PacketKey>, msgs: &[(u16, MsgType, &[u8])]) {
    out.clear();
    out.resize(MAX_LEN, 0);
    let mut w = PayloadWriter::new(&mut out[HEADER_LEN..HEADER_LEN + MAX_PAYLOAD], MAX_PAYLOAD);
    for &(msgseq, ty, data) in msgs {
        w.push(msgseq, ty, data).expect("the messages fit one datagram");
    }
    let (len, count, ty) = w.finish();
    let n = protect::seal(out, Header { ty, count, ..hdr }, len, key);
    out.truncate(n);
}

/// Replaces `out` with a datagram to the server carrying `msgs`, stamped
/// `now`, with `ack = 0`, so it acknowledges nothing (see [`seal_into`]).
pub fn write_datagram(
    out: &mut Vec<u8>,
    key: Option<&PacketKey>,
    now: Instant,
    seq: u16,
    msgs: &[(u16, MsgType, &[u8])],
) {
    seal_into(out, to_server(now.as_secs() as u32, seq, 0, 0), key, msgs);
}

/// A client-to-server header; type, length and count are filled in by [`seal_into`].
pub fn to_server(ctime: u32, seq: u16, ack: u16, ack_bits: u32) -> Header {
    Header { dir: Direction::ToServer, ctime, seq, ack, ty: MsgType::Unknown, length: 0, count: 0, ack_bits }
}
