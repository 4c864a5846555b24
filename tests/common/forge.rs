//! Client-to-server datagrams built by hand from header fields and
//! messages, for the tests whose hostile peers speak the public wire and
//! crypto API directly (`tests/memory_bound.rs`, `tests/sim/hostile.rs`).

use mpgameserver::Instant;
use mpgameserver::crypto::{self, PacketKey};
use mpgameserver::wire::{Direction, HEADER_LEN, Header, MsgType, PayloadWriter};

/// Replaces `out` with a datagram to the server carrying `msgs`: CRC
/// without a key, AEAD under `key` otherwise; `ack = 0`, so it acknowledges
/// nothing. `scratch` holds the payload while it is framed: with `out`'s
/// capacity reserved beforehand, nothing is allocated.
pub fn write_datagram(
    out: &mut Vec<u8>,
    scratch: &mut [u8],
    key: Option<&PacketKey>,
    now: Instant,
    seq: u16,
    msgs: &[(u16, MsgType, &[u8])],
) {
    let mut w = PayloadWriter::new(scratch, 1434);
    for &(msgseq, ty, data) in msgs {
        w.push(msgseq, ty, data).expect("the messages fit one datagram");
    }
    let (len, count, ty) = w.finish();
    let hdr = Header {
        dir: Direction::ToServer,
        ctime: now.as_secs() as u32,
        seq,
        ack: 0,
        ty,
        length: len as u16,
        count,
        ack_bits: 0,
    };
    let mut head = [0u8; HEADER_LEN];
    hdr.emit(&mut head);
    out.clear();
    out.extend_from_slice(&head);
    out.extend_from_slice(&scratch[..len]);
    match key {
        Some(k) => {
            let tag = k.seal(&head, &mut out[HEADER_LEN..]);
            out.extend_from_slice(&tag);
        }
        None => {
            let crc = crypto::crc32(out);
            out.extend_from_slice(&crc.to_be_bytes());
        }
    }
}
