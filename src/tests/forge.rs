//! Helpers for the adversarial tests (`handshake_rules`, `bugs`): drop
//! counters, CRC-datagram parsing, raw AEAD forging, and silencing a client
//! so that forged packet sequence numbers are predictable.

use alloc::vec::Vec;
use core::net::SocketAddr;

use super::harness::*;
use crate::mpgs1::protect::{self, PacketKey, TAG_LEN};
use crate::mpgs1::seq;
use crate::mpgs1::wire::{CRC_LEN, Direction, HEADER_LEN, Header, MsgType};
use crate::{DropReason, Duration, Endpoint};

/// Every drop counter of `ep`, in `DropReason::ALL` order.
pub(super) fn drops(ep: &Endpoint) -> [u64; DropReason::ALL.len()] {
    DropReason::ALL.map(|r| ep.stats().dropped(r))
}

/// The counters that changed between two snapshots, with their increase.
pub(super) fn drop_delta(
    before: [u64; DropReason::ALL.len()],
    after: [u64; DropReason::ALL.len()],
) -> Vec<(DropReason, u64)> {
    DropReason::ALL
        .iter()
        .zip(before.iter().zip(after.iter()))
        .filter(|(_, (b, a))| a != b)
        .map(|(&r, (b, a))| (r, a - b))
        .collect()
}

/// A CRC-mode datagram: checks its trailer and returns its header and single
/// message `(msgseq, type, data)`.
pub(super) fn crc_message(d: &Datagram) -> (Header, u16, MsgType, Vec<u8>) {
    let hdr = d.header();
    let end = protect::open_crc(&hdr, &d.bytes).expect("CRC trailer");
    assert_eq!(d.bytes.len(), end + CRC_LEN, "exactly header, payload, CRC");
    let msgs: Vec<_> = crate::mpgs1::wire::frame::parse_payload(hdr.ty, hdr.count, &d.bytes[HEADER_LEN..end])
        .expect("valid framing")
        .collect();
    assert_eq!(msgs.len(), 1, "a hello is alone in its datagram");
    (hdr, msgs[0].msgseq, msgs[0].ty, msgs[0].data.to_vec())
}

/// Seals an arbitrary (possibly malformed) plaintext payload under `key`
/// behind `hdr`, whose `length` is set to the payload length.
pub(super) fn seal_raw(key: &PacketKey, hdr: Header, payload: &[u8]) -> Vec<u8> {
    let mut out = alloc::vec![0u8; HEADER_LEN + payload.len() + TAG_LEN];
    out[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
    let n = protect::seal(&mut out, hdr, payload.len(), Some(key));
    out.truncate(n);
    out
}

/// A client's CRC datagram `d` again under packet sequence number `seq`.
pub(super) fn reseal_crc(d: &[u8], seq: u16) -> Vec<u8> {
    let hdr = Header::parse(d, Direction::ToServer).expect("a valid header");
    let mut out = d.to_vec();
    let n = protect::seal(&mut out, Header { seq, ..hdr }, usize::from(hdr.length), None);
    out.truncate(n);
    out
}

/// A datagram from `from` to `to` with `bytes`, stamped now.
pub(super) fn dgram(net: &Net, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) -> Datagram {
    Datagram { from, to, bytes, sent: net.now }
}

/// The `ctime` our endpoints write now (the default Unix origin is 0).
pub(super) fn ctime_now(net: &Net) -> u32 {
    net.now.as_secs() as u32
}

/// An AEAD datagram forged under `key` from client endpoint `client` to the
/// server, with packet `seq`, no ack, and `msgs`.
pub(super) fn forge_to_server(
    net: &Net,
    key: &PacketKey,
    client: usize,
    seq: u16,
    msgs: &[(u16, MsgType, &[u8])],
) -> Datagram {
    let bytes = craft(Some(key), Direction::ToServer, ctime_now(net), seq, 0, 0, msgs);
    dgram(net, addr(client), addr(SERVER), bytes)
}

/// The newest packet seq among `datagrams`.
pub(super) fn newest_seq<'a>(datagrams: impl Iterator<Item = &'a Datagram>) -> u16 {
    datagrams.map(|d| d.header().seq).fold(0, |a, s| if a == 0 || seq::diff(s, a) > 0 { s } else { a })
}

/// Stops every datagram from client endpoint `client` to the server (other
/// traffic still flows), lets those already in flight land, and returns the
/// newest packet seq the server received from that client. Forged
/// datagrams can then continue the client's packet sequence.
pub(super) fn silence_client(net: &mut Net, client: usize) -> u16 {
    let from = addr(client);
    let delivered = net.wire_log.len();
    net.set_filter(move |d| if d.from == from && d.to == addr(SERVER) { Verdict::Drop } else { Verdict::Deliver });
    net.run_for(Duration::from_millis(50));
    newest_seq(net.wire_log[..delivered].iter().filter(|d| d.from == from))
}

/// Datagrams of `wire_log` from `from` to `to`, from index `start` on.
pub(super) fn sent_between(net: &Net, start: usize, from: SocketAddr, to: SocketAddr) -> Vec<Datagram> {
    net.wire_log[start..].iter().filter(|d| d.from == from && d.to == to).cloned().collect()
}
