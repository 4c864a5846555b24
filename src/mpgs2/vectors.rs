//! Known-answer tests: every value of `testdata/mpgs2_vectors.json`, which
//! `tests/data/gen_mpgs2_vectors.py` computes independently in Python (PyPI
//! `cryptography` and the standard library) from the scalars 0x1111
//! (client ephemeral), 0x2222 (server ephemeral), 0x3333 (root) and fixed
//! randoms. Both sides compute each value from the specification; a
//! mismatch means one of them misreads it.

use alloc::vec::Vec;
use core::net::SocketAddr;

use p256::pkcs8::EncodePrivateKey;
use serde_json::Value;

use super::Side;
use super::buf::Writer;
use super::cookie::CookieKeys;
use super::hello::{HELLO2_LEN, Hello2, SERVER_HELLO_LEN, ServerHello, emit_hello2, hello2_message_data};
use super::keys::{
    self, Ephemeral, PacketKey, Schedule, Suite, next_secret, root_fingerprint, sign_transcript, signature_input,
    transcript_hash, verify_transcript,
};
use super::packet::{ShortHeader, pn_decode, pn_encode_len, pn_truncate};
use super::protect::Protection;
use super::reset::{ResetKey, default_reset_base};
use super::test_util::{hex, to_hex};
use super::tlv::{HelloTlvs, Identity, ServerHelloTlvs, TransportParams};
use super::varint;
use crate::{Duration, Instant, ServerKey};

fn vectors() -> Value {
    serde_json::from_str(include_str!("testdata/mpgs2_vectors.json")).expect("valid JSON")
}

fn h(v: &Value) -> Vec<u8> {
    hex(v.as_str().expect("hex string"))
}

fn arr<const N: usize>(v: &Value) -> [u8; N] {
    h(v).try_into().expect("length")
}

fn scalar(v: &Value) -> [u8; 32] {
    arr(v)
}

fn root_key(v: &Value) -> ServerKey {
    let secret = p256::SecretKey::from_slice(&scalar(&v["inputs"]["root_scalar"])).expect("scalar");
    ServerKey::from_pkcs8_der(secret.to_pkcs8_der().expect("encode").as_bytes()).expect("PKCS#8")
}

struct Parts {
    client: Ephemeral,
    server: Ephemeral,
    client_random: [u8; 16],
    server_random: [u8; 16],
}

fn parts(v: &Value) -> Parts {
    Parts {
        client: Ephemeral::from_scalar(&scalar(&v["inputs"]["client_scalar"])).expect("scalar"),
        server: Ephemeral::from_scalar(&scalar(&v["inputs"]["server_scalar"])).expect("scalar"),
        client_random: arr(&v["inputs"]["client_random"]),
        server_random: arr(&v["inputs"]["server_random"]),
    }
}

#[test]
fn public_keys() {
    let v = vectors();
    let p = parts(&v);
    assert_eq!(to_hex(&p.client.spki()), v["client_spki"]);
    assert_eq!(to_hex(p.server.sec1()), v["server_sec1"]);
    assert_eq!(to_hex(&root_key(&v).public_key().to_spki_der()), v["root_spki"]);
}

#[test]
fn cookies() {
    let v = vectors();
    let c = &v["cookie"];
    let keys = CookieKeys::with_key(
        u8::try_from(c["key_id"].as_u64().expect("id")).expect("u8"),
        arr(&c["secret"]),
        Instant::from_secs(c["issued"].as_u64().expect("issued")),
    );
    let now = Instant::from_secs(c["issued"].as_u64().expect("issued"));
    let cr = parts(&v).client_random;
    for (fam, text) in [("v4", "192.0.2.1:4433"), ("v6", "[2001:db8::1]:4433")] {
        let addr: SocketAddr = text.parse().expect("address");
        let cookie = keys.issue(now, addr, &cr);
        assert_eq!(to_hex(&cookie), c[fam]["cookie"], "{fam}");
        assert!(keys.check(now + Duration::from_secs(3), addr, &cr, &arr(&c[fam]["cookie"])));
    }
}

#[test]
fn hello2_datagram() {
    let v = vectors();
    let p = parts(&v);
    let tlv_bytes = h(&v["hello2_tlvs"]);
    let tlvs = HelloTlvs {
        protocol_id: v["inputs"]["protocol_id"].as_u64().expect("u64"),
        client_random: p.client_random,
        versions: &[2],
        suites: &[1, 2],
        recv_cid: None,
        cookie: Some(arr(&v["cookie"]["v4"]["cookie"])),
        connect_token: None,
        params: TransportParams { idle_timeout_ms: Some(10_000), max_ack_delay_ms: Some(25), ..Default::default() },
        extensions: &[],
    };
    let mut block = alloc::vec![0u8; tlvs.encoded_len()];
    tlvs.emit(&mut Writer::new(&mut block)).expect("emits");
    assert_eq!(block, tlv_bytes);
    let mut dg = [0u8; HELLO2_LEN];
    emit_hello2(&mut dg, &p.client.spki(), &tlvs, |pad| {
        for (i, b) in pad.iter_mut().enumerate() {
            *b = ((i * 7 + 3) & 0xFF) as u8;
        }
        Ok(())
    })
    .expect("emits");
    assert_eq!(to_hex(&dg), v["hello2_datagram"]);
    let data = hello2_message_data(&dg).expect("frame and CRC");
    assert_eq!(to_hex(data), v["hello2_message_data"]);
    let parsed = Hello2::parse(&dg).expect("parses");
    assert_eq!(parsed.tlvs, tlvs);
    assert_eq!(parsed.client_spki, &p.client.spki());
}

#[test]
fn server_hello_transcript_and_signature() {
    let v = vectors();
    let p = parts(&v);
    let root = root_key(&v);
    let sig_vec: [u8; 64] = arr(&v["signature"]);
    let sh = ServerHello {
        version: 2,
        suite: 1,
        client_random: p.client_random,
        server_random: p.server_random,
        server_key: p.server.sec1(),
        tlvs: ServerHelloTlvs {
            server_cid: arr(&v["inputs"]["server_cid"]),
            params: TransportParams::DEFAULTS,
            identity: Identity::Root { fingerprint: root_fingerprint(&root.public_key()) },
            extensions: &[],
        },
        signature: &sig_vec,
    };
    let mut out = [0u8; SERVER_HELLO_LEN];
    let n = sh.emit_signed_part(&mut out).expect("fits");
    let th = transcript_hash(&h(&v["hello2_message_data"]), &out[..n]);
    assert_eq!(to_hex(&th), v["th"]);
    assert_eq!(to_hex(&signature_input(&th)), v["signature_input"]);
    // Both sides use RFC 6979 nonces, so the signatures are equal.
    let sig = sign_transcript(&root, &th);
    assert_eq!(to_hex(&sig), v["signature"]);
    assert!(verify_transcript(&root.public_key(), &th, &sig_vec));
    sh.emit(&mut out).expect("fits");
    assert_eq!(to_hex(&out), v["server_hello"]);
    assert_eq!(to_hex(&out[..230]), v["server_hello_unpadded"]);
    let parsed = ServerHello::parse(&out).expect("parses");
    assert_eq!(parsed, sh);
    let mut tl = alloc::vec![0u8; sh.tlvs.encoded_len()];
    sh.tlvs.emit(&mut Writer::new(&mut tl)).expect("emits");
    assert_eq!(to_hex(&tl), v["server_hello_tlvs"]);
}

#[test]
fn key_schedule() {
    let v = vectors();
    let p = parts(&v);
    let z = p.client.agree_sec1(p.server.sec1()).expect("point");
    assert_eq!(*z, *p.server.agree_spki(&p.client.spki()).expect("point"));
    assert_eq!(to_hex(z.as_ref()), v["shared_secret"]);
    let th: [u8; 32] = arr(&v["th"]);
    let s = Schedule::derive(Side::Client, &z, &p.client_random, &p.server_random, &th, Suite::Aes128Gcm);
    assert_eq!(to_hex(s.prk()), v["prk"]);
    assert_eq!(to_hex(s.secrets.local.as_ref()), v["c2s"]["generations"][0]["secret"]);
    assert_eq!(to_hex(s.secrets.remote.as_ref()), v["s2c"]["generations"][0]["secret"]);
    let mut exported = [0u8; 32];
    s.export(v["exporter"]["label"].as_str().expect("label").as_bytes(), &mut exported).expect("exports");
    assert_eq!(to_hex(&exported), v["exporter"]["value"]);

    for dir in ["c2s", "s2c"] {
        let d = &v[dir];
        let mut secret: [u8; 32] = arr(&d["generations"][0]["secret"]);
        assert_eq!(to_hex(&keys::traffic_iv(&secret)), d["iv"]);
        let iv: [u8; 12] = arr(&d["iv"]);
        for g in d["generations"].as_array().expect("list") {
            assert_eq!(to_hex(&secret), g["secret"]);
            assert_eq!(to_hex(&keys::traffic_key(Suite::Aes128Gcm, &secret)[..16]), g["key128"]);
            assert_eq!(to_hex(&keys::traffic_key(Suite::Aes256Gcm, &secret)[..]), g["key256"]);
            secret = *next_secret(&secret);
        }
        for n in d["nonces"].as_array().expect("list") {
            let pn = n["pn"].as_u64().expect("pn");
            assert_eq!(to_hex(&keys::nonce(&iv, pn)), n["nonce"]);
        }
    }
    // The server's view is the mirror image.
    let s2 = Schedule::derive(Side::Server, &z, &p.client_random, &p.server_random, &th, Suite::Aes128Gcm);
    assert_eq!(to_hex(s2.secrets.local.as_ref()), v["s2c"]["generations"][0]["secret"]);
}

#[test]
fn sealed_short_packet() {
    let v = vectors();
    let sp = &v["short_packet"];
    let pn = sp["pn"].as_u64().expect("pn");
    let n = pn_encode_len(pn, sp["largest_acked"].as_u64()).expect("encodable");
    let header = ShortHeader {
        key_phase: false,
        dcid: Some(arr(&v["inputs"]["server_cid"])),
        pn_len: n,
        truncated_pn: pn_truncate(pn, n),
    };
    let mut buf = [0u8; 128];
    let hl = header.emit(&mut buf).expect("room");
    assert_eq!(to_hex(&buf[..hl]), sp["header"]);
    let c2s0: [u8; 32] = arr(&v["c2s"]["generations"][0]["secret"]);
    let key = PacketKey::new(Suite::Aes128Gcm, &c2s0, arr(&v["c2s"]["iv"]));
    assert_eq!(to_hex(&key.nonce(pn)), sp["nonce"]);
    let plain = h(&sp["plaintext"]);
    buf[hl..hl + plain.len()].copy_from_slice(&plain);
    let (head, rest) = buf.split_at_mut(hl);
    let tag = key.seal(pn, head, &mut rest[..plain.len()]);
    buf[hl + plain.len()..hl + plain.len() + 16].copy_from_slice(&tag);
    let total = hl + plain.len() + 16;
    assert_eq!(to_hex(&buf[..total]), sp["datagram"]);

    // The server's Protection opens the Python-sealed datagram.
    let p = parts(&v);
    let z = p.server.agree_spki(&p.client.spki()).expect("point");
    let th: [u8; 32] = arr(&v["th"]);
    let sched = Schedule::derive(Side::Server, &z, &p.client_random, &p.server_random, &th, Suite::Aes128Gcm);
    let mut server = Protection::new(sched.into_protection(), None, 8);
    let mut dg = h(&sp["datagram"]);
    let o = server.open(Instant::ZERO, Duration::from_millis(300), &mut dg).expect("opens");
    assert_eq!(o.pn, pn);
    assert_eq!(&dg[o.payload], &plain[..]);
}

#[test]
fn reset_tokens() {
    let v = vectors();
    let r = &v["reset"];
    let key = ResetKey::new(&arr(&r["base"]), r["endpoint_id"].as_u64().expect("id"));
    assert_eq!(to_hex(key.bytes()), r["key"]);
    assert_eq!(to_hex(&key.token(&arr(&r["cid"]))), r["token"]);
    assert_eq!(to_hex(default_reset_base(&root_key(&v)).as_ref()), r["default_base_from_root"]);
}

#[test]
fn packet_numbers_and_varints() {
    let v = vectors();
    for c in v["pn"].as_array().expect("list") {
        let pn = c["pn"].as_u64().expect("pn");
        let acked = c["largest_acked"].as_u64();
        let n = pn_encode_len(pn, acked).expect("encodable");
        assert_eq!(u64::from(n), c["len"].as_u64().expect("len"), "pn {pn:#x}");
        let t = pn_truncate(pn, n);
        assert_eq!(u64::from(t), c["truncated"].as_u64().expect("t"));
        assert_eq!(pn_decode(acked, t, n), c["decoded_at_largest_acked"].as_u64());
    }
    let a3 = &v["rfc9000_a3"];
    let t = u32::try_from(a3["truncated"].as_u64().expect("t")).expect("u32");
    assert_eq!(pn_decode(a3["largest"].as_u64(), t, 2), a3["pn"].as_u64());
    for c in v["varints"].as_array().expect("list") {
        let value = c["value"].as_u64().expect("value");
        let mut out = [0u8; 8];
        let n = varint::encode(value, &mut out).expect("in range");
        assert_eq!(to_hex(&out[..n]), c["hex"]);
        assert_eq!(varint::decode(&out[..n]), Ok((value, n)));
    }
}
