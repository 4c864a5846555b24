//! The fuzz entry points of mpgameserver. Each `fuzz_targets/*.rs` binary
//! calls one of them; `tests/smoke.rs` runs the same functions over
//! quickcheck inputs and over every saved crash input (`regressions/`), so
//! they also run on a stable toolchain without libFuzzer.
//!
//! Every entry point must never panic on any input. Besides "no panic",
//! they check properties that must hold for every input (round trips,
//! bounds), so logic errors show up as crashes too.
//!
//! The crate is built with the core's private `_fuzzing` feature: packet
//! protection is an identity "cipher" with a fixed tag (see
//! `mpgameserver::_internal::PacketKey`), so the endpoint targets reach the
//! message layer. **Never** enable that feature outside this crate.

use mpgameserver::_internal::wire::handshake::{self, CHALLENGE_RESP_LEN, SERVER_BLOB_LEN};
use mpgameserver::_internal::wire::{self, Direction, FragmentHeader, Header, MsgType, PayloadWriter, Reader};
use mpgameserver::{IpNet, PublicKey, ServerKey};

mod endpoint;
mod endpoint_v2;
pub mod heap;
mod mpgs2;
mod mpgs2_channels;
mod mpgs2_conn;
pub use endpoint::endpoint;
pub use endpoint_v2::endpoint_v2;
pub use mpgs2::{
    frames as mpgs2_frames, hello2 as mpgs2_hello, long_header as mpgs2_long_header, seeds as mpgs2_seeds,
};
pub use mpgs2_channels::mpgs2_channels;
pub use mpgs2_conn::mpgs2_conn;

/// Every allocation of a fuzz binary or test is counted per thread, so the
/// connection target can bound the memory of what it drives.
#[global_allocator]
static ALLOC: heap::Counting = heap::Counting;

/// Header and payload framing: `Header::parse` in both directions,
/// `payload_end`, `parse_payload`, fragment headers, and the encoders they
/// must round-trip with.
pub fn wire(data: &[u8]) {
    for dir in [Direction::ToServer, Direction::ToClient] {
        let Ok(h) = Header::parse(data, dir) else {
            continue;
        };
        // The header round-trips byte for byte.
        let mut head = [0u8; wire::HEADER_LEN];
        h.emit(&mut head);
        assert_eq!(&head[..], &data[..wire::HEADER_LEN], "header round trip");
        for trailer in [wire::CRC_LEN, wire::TAG_LEN] {
            let Ok(end) = h.payload_end(data.len(), trailer) else {
                continue;
            };
            assert_eq!(end, wire::HEADER_LEN + usize::from(h.length));
            assert!(end + trailer <= data.len());
            payload(h.ty, h.count, &data[wire::HEADER_LEN..end]);
        }
    }
    // Any bytes as a payload, with the type and count from the first two.
    if let [ty, count, rest @ ..] = data
        && let Some(ty) = MsgType::from_u8(*ty % 8)
    {
        payload(ty, *count, rest);
    }
}

/// A payload: if it parses, every message re-encodes to the same bytes.
fn payload(ty: MsgType, count: u8, payload: &[u8]) {
    let Ok(msgs) = wire::frame::parse_payload(ty, count, payload) else {
        return;
    };
    assert_eq!(msgs.len(), usize::from(count));
    let mut buf = vec![0u8; payload.len() + 8];
    let mut w = PayloadWriter::new(&mut buf, payload.len());
    for m in msgs.clone() {
        if m.ty == MsgType::AppFragment
            && let Ok((fh, chunk)) = FragmentHeader::parse(m.data)
        {
            let mut out = [0u8; wire::FRAGMENT_HEADER_LEN];
            fh.emit(&mut out);
            assert_eq!(&out[..], &m.data[..wire::FRAGMENT_HEADER_LEN]);
            assert_eq!(chunk.len(), m.data.len() - wire::FRAGMENT_HEADER_LEN);
        }
        w.push(m.msgseq, m.ty, m.data).expect("a parsed payload fits its own length");
    }
    let (len, n, first) = w.finish();
    assert_eq!((len, n), (payload.len(), count), "payload round trip");
    if count >= 1 {
        assert_eq!(Some(first), msgs.clone().next().map(|m| m.ty));
    }
    assert_eq!(&buf[..len], payload, "payload round trip");
}

/// Handshake bodies and tagged values: CLIENT_HELLO, SERVER_HELLO, the
/// signed blob, CHALLENGE_RESP, and the integer / byte-string readers.
pub fn handshake(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let min_padding = usize::from(sel) * 8;
    if let Ok(h) = handshake::parse_client_hello(body, min_padding) {
        assert_eq!(h.key_spki.len(), wire::SPKI_LEN);
        // A CLIENT_HELLO is re-emitted with its canonical encoding; the
        // re-encoding must parse to the same fields.
        let key: [u8; wire::SPKI_LEN] = h.key_spki.try_into().expect("checked above");
        let mut out = vec![0u8; handshake::CLIENT_HELLO_FIXED_LEN + min_padding];
        let n = handshake::emit_client_hello(&mut out, &key, &vec![0; min_padding]).expect("sized for it");
        let again = handshake::parse_client_hello(&out[..n], min_padding).expect("canonical hello parses");
        assert_eq!(again.key_spki, h.key_spki);
        assert_eq!(again.version, handshake::PROTOCOL_VERSION);
    }
    if let Ok(sh) = handshake::parse_server_hello(body) {
        assert_eq!(sh.root_spki.len(), wire::SPKI_LEN);
        let root: [u8; wire::SPKI_LEN] = sh.root_spki.try_into().expect("checked above");
        let mut out = vec![0u8; body.len() + 64];
        if let Ok(n) = handshake::emit_server_hello(&mut out, &root, sh.blob, sh.signature) {
            let again = handshake::parse_server_hello(&out[..n]).expect("canonical hello parses");
            assert_eq!((again.blob, again.signature), (sh.blob, sh.signature));
        }
        // What a client does with it, short of the signature check.
        let _ = PublicKey::from_spki_der(sh.root_spki);
        let _ = handshake::parse_server_blob(sh.blob);
    }
    if let Ok(blob) = handshake::parse_server_blob(body) {
        assert!(blob.token <= handshake::MAX_TOKEN);
        let spki: [u8; wire::SPKI_LEN] = blob.ephemeral_spki.try_into().expect("always SPKI_LEN");
        let mut out = [0u8; SERVER_BLOB_LEN];
        handshake::emit_server_blob(&mut out, &spki, &blob.salt, blob.token);
        assert_eq!(handshake::parse_server_blob(&out), Ok(blob), "blob round trip");
    }
    if let Ok(token) = handshake::parse_challenge_resp(body) {
        assert!(token <= handshake::MAX_TOKEN);
        let mut out = [0u8; CHALLENGE_RESP_LEN];
        handshake::emit_challenge_resp(&mut out, token);
        assert_eq!(handshake::parse_challenge_resp(&out), Ok(token), "challenge round trip");
    }
    // Tagged values one after another, as the bodies hold them.
    let mut r = Reader::new(body);
    for _ in 0..64 {
        let before = r.remaining();
        let read = if sel & 1 == 0 {
            handshake::read_int(&mut r).map(|v| {
                let mut out = [0u8; 10];
                let mut w = wire::Writer::new(&mut out);
                handshake::write_int(&mut w, v).expect("an integer fits 10 bytes");
                let n = w.len();
                assert_eq!(n, handshake::int_encoded_len(v));
                let mut back = Reader::new(&out[..n]);
                assert_eq!(handshake::read_int(&mut back), Ok(v), "integer round trip");
            })
        } else {
            handshake::read_bytes(&mut r).map(|b| assert!(b.len() <= before))
        };
        if read.is_err() || r.remaining() >= before {
            break;
        }
    }
}

/// Key files and key material: PKCS#8 / SPKI PEM and DER, and CIDR strings.
pub fn keys(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    match sel % 4 {
        0 => {
            if let Ok(k) = ServerKey::from_pkcs8_der(body) {
                let der = k.to_pkcs8_der();
                let again = ServerKey::from_pkcs8_der(&der).expect("our own DER loads");
                assert_eq!(again.public_key(), k.public_key());
            }
        }
        1 => {
            if let Ok(k) = PublicKey::from_spki_der(body) {
                assert_eq!(PublicKey::from_spki_der(&k.to_spki_der()), Ok(k.clone()));
                let pem = k.to_public_key_pem();
                assert_eq!(PublicKey::from_public_key_pem(&pem), Ok(k));
            }
        }
        _ => {
            let Ok(text) = core::str::from_utf8(body) else {
                return;
            };
            if sel % 4 == 2 {
                if let Ok(k) = ServerKey::from_pkcs8_pem(text) {
                    let pem = k.to_pkcs8_pem();
                    assert_eq!(ServerKey::from_pkcs8_pem(&pem).map(|k| k.public_key()), Ok(k.public_key()));
                }
                let _ = PublicKey::from_public_key_pem(text);
            } else if let Ok(net) = text.parse::<IpNet>() {
                let again: IpNet = net.to_string().parse().expect("Display of an IpNet parses");
                assert_eq!(again, net);
                assert!(net.contains(net.addr()));
            }
        }
    }
}
