#!/usr/bin/env python3
"""Known-answer vectors for MPGS/2 (docs/MPGS2.md), written independently of the Rust code.

Every value is computed here from the specification text alone, with the PyPI `cryptography`
package (P-256, ECDSA with RFC 6979 nonces, HKDF-Expand, AES-GCM) and the standard library
(hmac, hashlib, zlib). The Rust unit tests in src/mpgs2/ recompute each value and compare.

Inputs: client ephemeral scalar 0x1111, server ephemeral scalar 0x2222, server root scalar
0x3333, and the fixed randoms, ids and addresses below.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install cryptography
    /tmp/venv/bin/python tests/data/gen_mpgs2_vectors.py > tests/data/mpgs2_vectors.json
    cp tests/data/mpgs2_vectors.json src/mpgs2/testdata/
"""
import hashlib
import hmac
import json
import struct
import sys
import zlib

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand


def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def hkdf_extract(salt, ikm):
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk, info, n):
    return HKDFExpand(algorithm=hashes.SHA256(), length=n, info=info).derive(prk)


def key_of(scalar):
    return ec.derive_private_key(scalar, ec.SECP256R1())


def spki(pub):
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def sec1(pub):
    return pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def tlv(t, v):
    return bytes([t]) + u16(len(v)) + v


def varint(v):
    for n, prefix in ((1, 0), (2, 0x40), (4, 0x80), (8, 0xC0)):
        if v < 1 << (8 * n - 2):
            b = v.to_bytes(n, "big")
            return bytes([b[0] | prefix]) + b[1:]
    raise ValueError(v)


# --- fixed inputs -------------------------------------------------------------------------
client = key_of(0x1111)
server = key_of(0x2222)
root = key_of(0x3333)
client_random = bytes(range(0x00, 0x10))
server_random = bytes(range(0x10, 0x20))
protocol_id = 0x0123456789ABCDEF
server_cid = bytes.fromhex("a0a1a2a3a4a5a6a7")
suite = 1
cookie_secret = bytes(range(0x40, 0x60))
cookie_key_id = 7
cookie_issued = 1000
cookie_ip = bytes([192, 0, 2, 1])
cookie_port = 4433
cookie6_ip = bytes.fromhex("20010db8000000000000000000000001")
reset_base = bytes(range(0x60, 0x80))
endpoint_id = 0

# --- cookie (§2.4) ------------------------------------------------------------------------
def cookie(secret, key_id, family, ip, port, issued, cr):
    mac = hmac.new(secret, b"MPGS/2 cookie\0" + bytes([family]) + ip + u16(port) + u32(issued) + cr,
                   hashlib.sha256).digest()[:16]
    return bytes([key_id]) + u32(issued) + mac


cookie_v4 = cookie(cookie_secret, cookie_key_id, 4, cookie_ip, cookie_port, cookie_issued, client_random)
cookie_v6 = cookie(cookie_secret, cookie_key_id, 6, cookie6_ip, cookie_port, cookie_issued, client_random)

# --- HELLO2 (§2.3) ------------------------------------------------------------------------
tlvs = (tlv(0x01, u64(protocol_id)) + tlv(0x02, client_random) + tlv(0x03, bytes([2])) + tlv(0x04, bytes([1, 2]))
        + tlv(0x05, b"") + tlv(0x06, cookie_v4) + tlv(0x10, u32(10000)) + tlv(0x11, bytes([25])))
client_spki = spki(client.public_key())
assert len(client_spki) == 91
pad_len = 1174 - 103 - len(tlvs)
padding = bytes((i * 7 + 3) & 0xFF for i in range(pad_len))
hello_data = bytes.fromhex("0082000e00035b") + client_spki + bytes.fromhex("000302") + u16(len(tlvs)) + tlvs + padding
assert len(hello_data) == 1174
# MPGS/1 header: FSOS, ctime 0, seq 1, ack 0, type 1, length 1176, count 1, ack_bits 0; msgseq 1; CRC.
mpgs1_header = b"FSOS" + u32(0) + u16(1) + u16(0) + bytes([1]) + u16(1176) + bytes([1]) + u32(0)
body = mpgs1_header + u16(1) + hello_data
hello_datagram = body + u32(zlib.crc32(body) & 0xFFFFFFFF)
assert len(hello_datagram) == 1200

# --- SERVER_HELLO (§2.5) and the transcript (§2.6) ----------------------------------------
root_spki = spki(root.public_key())
identity = bytes([0]) + hashlib.sha256(root_spki).digest()[:8]
params = (tlv(0x10, u32(5000)) + tlv(0x11, bytes([10])) + tlv(0x12, u16(1472)) + tlv(0x13, u32(1 << 20))
          + tlv(0x14, u32(1 << 20)) + tlv(0x15, bytes([16])) + tlv(0x16, u32(4 << 20)))
sh_tlvs = tlv(0x05, server_cid) + params + tlv(0x20, identity)
sh_head = bytes([0xC1, 2, suite]) + client_random + server_random + sec1(server.public_key())
assert len(sh_head) == 100
sh_signed = sh_head + u16(len(sh_tlvs)) + sh_tlvs
th = hashlib.sha256(b"MPGS/2 transcript\0" + hello_data + sh_signed).digest()
sig_input = b"MPGS/2 server hello\0" + th
der = root.sign(sig_input, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
r, s = decode_dss_signature(der)
sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
server_hello_unpadded = sh_signed + sig
assert len(server_hello_unpadded) == 230
server_hello = server_hello_unpadded + bytes(1200 - len(server_hello_unpadded))

# --- key schedule (§2.7) ------------------------------------------------------------------
z = client.exchange(ec.ECDH(), server.public_key())
assert z == server.exchange(ec.ECDH(), client.public_key())
prk = hkdf_extract(b"MPGS/2\0" + client_random + server_random, z)
directions = {}
for name in ("c2s", "s2c"):
    s0 = hkdf_expand(prk, b"mpgs2 " + name.encode() + th, 32)
    iv = hkdf_expand(s0, b"mpgs2 iv", 12)
    gens = []
    s = s0
    for g in range(3):
        gens.append({"secret": s.hex(), "key128": hkdf_expand(s, b"mpgs2 key", 16).hex(),
                     "key256": hkdf_expand(s, b"mpgs2 key", 32).hex()})
        s = hkdf_expand(s, b"mpgs2 ku", 32)
    nonces = []
    for pn in (0, 1, 0xA82F9B32, (1 << 62) - 1):
        nonce = bytes(a ^ b for a, b in zip(iv, bytes(4) + u64(pn)))
        nonces.append({"pn": pn, "nonce": nonce.hex()})
    directions[name] = {"iv": iv.hex(), "generations": gens, "nonces": nonces}

exporter_label = b"game login"
exporter = hkdf_expand(prk, b"mpgs2 exp" + th + u16(32) + bytes([len(exporter_label)]) + exporter_label, 32)

# --- packet numbers (§3.2, RFC 9000 A.2 / A.3) --------------------------------------------
def pn_len(pn, largest_acked):
    if largest_acked is None:
        return 4
    for n in (1, 2, 3, 4):
        if 2 * (pn - largest_acked) < 1 << (8 * n):
            return n
    raise ValueError


def pn_decode(largest, truncated, n):
    expected = 0 if largest is None else largest + 1
    win = 1 << (8 * n)
    hwin = win // 2
    candidate = (expected & ~(win - 1)) | truncated
    if candidate <= expected - hwin and candidate < (1 << 62) - win:
        return candidate + win
    if candidate > expected + hwin and candidate >= win:
        return candidate - win
    return candidate


# --- one sealed short packet (§3.1, §3.3): C -> S, generation 0, AES-128-GCM ---------------
c2s = directions["c2s"]
pkt_pn = 0x1234
pkt_largest_acked = 0x1100
assert pn_len(pkt_pn, pkt_largest_acked) == 2
pkt_header = bytes([0x80 | 0x01]) + server_cid + u16(pkt_pn)      # K = 0, LL = 1 (2-byte PN)
pkt_plain = bytes([0x01]) + bytes([0x10, 0x00]) + varint(5) + b"hello" + bytes(4)   # PING, MESSAGE ch 0, PADDING
pkt_nonce = bytes(a ^ b for a, b in zip(bytes.fromhex(c2s["iv"]), bytes(4) + u64(pkt_pn)))
pkt_sealed = AESGCM(bytes.fromhex(c2s["generations"][0]["key128"])).encrypt(pkt_nonce, pkt_plain, pkt_header)
short_packet = pkt_header + pkt_sealed

# --- stateless reset (§6.4) ---------------------------------------------------------------
reset_key = hkdf_expand(reset_base, b"mpgs2 reset key" + u64(endpoint_id), 32)
reset_token = hmac.new(reset_key, b"mpgs2 reset" + server_cid, hashlib.sha256).digest()[:16]
# The default reset base (docs/MPGS2.md §6.4, Decision): from the root signing key's scalar.
root_scalar = root.private_numbers().private_value.to_bytes(32, "big")
default_reset_base = hkdf_expand(hkdf_extract(b"MPGS/2 reset\0", root_scalar), b"mpgs2 reset base", 32)

pn_cases = []
for pn, acked in ((0, None), (1, 0), (0x7F, 0), (0x80, 0), (0xAC5C02, 0xABE8B3), (0xACE8FE, 0xABE8B3),
                  (0x1000000, 0xFFFF00), (0x10000_0000, 0xFFFF_FF00), (0x12345678, None)):
    n = pn_len(pn, acked)
    trunc = pn & ((1 << (8 * n)) - 1)
    largest_received = acked
    pn_cases.append({"pn": pn, "largest_acked": acked, "len": n, "truncated": trunc,
                     "decoded_at_largest_acked": pn_decode(largest_received, trunc, n)})
    assert pn_cases[-1]["decoded_at_largest_acked"] == pn, pn_cases[-1]
rfc_a3 = {"largest": 0xA82F30EA, "truncated": 0x9B32, "len": 2, "pn": pn_decode(0xA82F30EA, 0x9B32, 2)}
assert rfc_a3["pn"] == 0xA82F9B32

varints = [{"value": v, "hex": varint(v).hex()} for v in
           (0, 37, 63, 64, 15293, 16383, 16384, 494878333, (1 << 30) - 1, 1 << 30, 151288809941952652, (1 << 62) - 1)]
assert varint(151288809941952652).hex() == "c2197c5eff14e88c"   # RFC 9000 A.1

out = {
    "inputs": {
        "client_scalar": "%064x" % 0x1111, "server_scalar": "%064x" % 0x2222, "root_scalar": "%064x" % 0x3333,
        "client_random": client_random.hex(), "server_random": server_random.hex(), "protocol_id": protocol_id,
        "server_cid": server_cid.hex(), "suite": suite, "padding_rule": "(i * 7 + 3) & 0xff",
    },
    "client_spki": client_spki.hex(),
    "server_sec1": sec1(server.public_key()).hex(),
    "root_spki": root_spki.hex(),
    "cookie": {"secret": cookie_secret.hex(), "key_id": cookie_key_id, "issued": cookie_issued,
               "v4": {"ip": "192.0.2.1", "port": cookie_port, "cookie": cookie_v4.hex()},
               "v6": {"ip": "2001:db8::1", "port": cookie_port, "cookie": cookie_v6.hex()}},
    "hello2_tlvs": tlvs.hex(),
    "hello2_message_data": hello_data.hex(),
    "hello2_datagram": hello_datagram.hex(),
    "server_hello_tlvs": sh_tlvs.hex(),
    "server_hello_unpadded": server_hello_unpadded.hex(),
    "server_hello": server_hello.hex(),
    "th": th.hex(),
    "signature_input": sig_input.hex(),
    "signature": sig.hex(),
    "shared_secret": z.hex(),
    "prk": prk.hex(),
    "c2s": directions["c2s"],
    "s2c": directions["s2c"],
    "exporter": {"label": exporter_label.decode(), "len": 32, "value": exporter.hex()},
    "short_packet": {"direction": "c2s", "pn": pkt_pn, "largest_acked": pkt_largest_acked, "header": pkt_header.hex(),
                     "plaintext": pkt_plain.hex(), "nonce": pkt_nonce.hex(), "datagram": short_packet.hex()},
    "reset": {"base": reset_base.hex(), "endpoint_id": endpoint_id, "key": reset_key.hex(),
              "cid": server_cid.hex(), "token": reset_token.hex(), "default_base_from_root": default_reset_base.hex()},
    "pn": pn_cases,
    "rfc9000_a3": rfc_a3,
    "varints": varints,
}
json.dump(out, sys.stdout, indent=1, sort_keys=True)
sys.stdout.write("\n")
