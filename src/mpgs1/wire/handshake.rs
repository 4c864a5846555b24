//! Handshake bodies (PROTOCOL.md §10.2, §10.3, §10.6) and the tagged-value
//! encoding they use (§11).
//!
//! These functions parse and emit the message *data* of CLIENT_HELLO,
//! SERVER_HELLO and CHALLENGE_RESP, and the signed blob inside SERVER_HELLO.
//! They do no cryptography: keys, the signature and the blob are returned as
//! byte slices for the caller to check.
//!
//! Parsers walk the tags rather than rely on fixed offsets, accept every
//! integer width (tags 3–6) where an integer is expected, and report:
//! [`WireError::Truncated`] when the data ends early (or a byte-string
//! length exceeds what remains), [`WireError::BadType`] for a wrong object
//! type id, [`WireError::BadValue`] for a wrong tag or an out-of-range
//! value, and [`WireError::BadFraming`] for bytes after the last field
//! (except the hello padding). Emitters produce exactly the layouts of §10.

use super::{Reader, SPKI_LEN, WireError, Writer};

/// Tag of an `i8` integer.
const TAG_I8: u16 = 3;
/// Tag of an `i16` integer.
const TAG_I16: u16 = 4;
/// Tag of an `i32` integer.
const TAG_I32: u16 = 5;
/// Tag of an `i64` integer.
const TAG_I64: u16 = 6;
/// Tag of a byte string.
const TAG_BYTES: u16 = 14;

/// Object type id of the client hello.
const ID_CLIENT_HELLO: u16 = 130;
/// Object type id of the server hello.
const ID_SERVER_HELLO: u16 = 131;
/// Object type id of the challenge response.
const ID_CHALLENGE_RESP: u16 = 132;

/// The protocol version carried in CLIENT_HELLO (MPGS/1).
pub const PROTOCOL_VERSION: i64 = 1;

/// Length of the fixed part of CLIENT_HELLO data: type id (2), key field
/// (5 + 91) and version field (3). The padding follows.
pub const CLIENT_HELLO_FIXED_LEN: usize = 101;

/// Length of the signed blob of SERVER_HELLO as our server emits it.
pub const SERVER_BLOB_LEN: usize = 123;

/// Length of SERVER_HELLO data up to the signature bytes: type id (2), root
/// key field (5 + 91), blob field (5 + 123) and the signature's tag and
/// length (5). The message data is this plus the signature length.
pub const SERVER_HELLO_FIXED_LEN: usize = 231;

/// Length of CHALLENGE_RESP data.
pub const CHALLENGE_RESP_LEN: usize = 11;

/// Largest valid token: tokens are non-negative `i32` values (§10.6).
pub const MAX_TOKEN: u32 = i32::MAX as u32;

/// Number of bytes [`write_int`] uses for `v`: the 2-byte tag and a width
/// chosen by `|v|` (§11).
#[inline]
pub const fn int_encoded_len(v: i64) -> usize {
    let a = v.unsigned_abs();
    2 + if a <= 0x7F {
        1
    } else if a <= 0x7FFF {
        2
    } else if a <= 0x7FFF_FFFF {
        4
    } else {
        8
    }
}

/// Number of bytes [`write_bytes`] uses for a byte string of `n` bytes.
#[inline]
pub const fn bytes_encoded_len(n: usize) -> usize {
    // A slice length never exceeds `isize::MAX`, so it fits an i64.
    (2 + int_encoded_len(n as i64)).saturating_add(n)
}

/// Reads a tagged integer: tag 3, 4, 5 or 6 followed by an `i8`, `i16`,
/// `i32` or `i64`. Any width is accepted. On error nothing is consumed.
#[inline]
pub fn read_int(r: &mut Reader) -> Result<i64, WireError> {
    let mut t = r.clone();
    let v = match t.u16()? {
        TAG_I8 => i64::from(t.i8()?),
        TAG_I16 => i64::from(t.i16()?),
        TAG_I32 => i64::from(t.i32()?),
        TAG_I64 => t.i64()?,
        _ => return Err(WireError::BadValue),
    };
    *r = t;
    Ok(v)
}

/// Reads a tagged byte string: tag 14, a tagged integer length, then that
/// many bytes. A negative length is [`WireError::BadValue`]; one larger
/// than what remains is [`WireError::Truncated`]. On error nothing is
/// consumed.
#[inline]
pub fn read_bytes<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], WireError> {
    let mut t = r.clone();
    if t.u16()? != TAG_BYTES {
        return Err(WireError::BadValue);
    }
    let len = read_int(&mut t)?;
    let len = usize::try_from(len).map_err(|_| WireError::BadValue)?;
    let b = t.bytes(len)?;
    *r = t;
    Ok(b)
}

/// Writes a tagged integer, its width chosen by magnitude exactly as §11:
/// `|v| ≤ 0x7F` tag 3, `≤ 0x7FFF` tag 4, `≤ 0x7FFF_FFFF` tag 5, else tag 6
/// (so −128 uses tag 4). Writes nothing if it does not fit.
#[inline]
pub fn write_int(w: &mut Writer, v: i64) -> Result<(), WireError> {
    if w.remaining() < int_encoded_len(v) {
        return Err(WireError::Truncated);
    }
    // Each narrowing below is lossless: `|v|` is within the type's range.
    match int_encoded_len(v) - 2 {
        1 => {
            w.put_u16(TAG_I8)?;
            w.put_i8(v as i8)
        }
        2 => {
            w.put_u16(TAG_I16)?;
            w.put_i16(v as i16)
        }
        4 => {
            w.put_u16(TAG_I32)?;
            w.put_i32(v as i32)
        }
        _ => {
            w.put_u16(TAG_I64)?;
            w.put_i64(v)
        }
    }
}

/// Writes a tagged byte string: tag 14, the length as a tagged integer,
/// then `b`. Writes nothing if it does not fit.
#[inline]
pub fn write_bytes(w: &mut Writer, b: &[u8]) -> Result<(), WireError> {
    if w.remaining() < bytes_encoded_len(b.len()) {
        return Err(WireError::Truncated);
    }
    w.put_u16(TAG_BYTES)?;
    // A slice length never exceeds `isize::MAX`, so it fits an i64.
    write_int(w, b.len() as i64)?;
    w.put_bytes(b)
}

/// Reads the object type id and checks it.
#[inline]
fn expect_type_id(r: &mut Reader, id: u16) -> Result<(), WireError> {
    if r.u16()? == id { Ok(()) } else { Err(WireError::BadType) }
}

/// Reads a tagged byte string of exactly `SPKI_LEN` bytes.
#[inline]
fn read_spki<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], WireError> {
    let key = read_bytes(r)?;
    if key.len() == SPKI_LEN { Ok(key) } else { Err(WireError::BadValue) }
}

/// Reads a tagged integer token in `0..=MAX_TOKEN`.
#[inline]
fn read_token(r: &mut Reader) -> Result<u32, WireError> {
    let v = read_int(r)?;
    match u32::try_from(v) {
        Ok(t) if t <= MAX_TOKEN => Ok(t),
        _ => Err(WireError::BadValue),
    }
}

/// Fails with [`WireError::BadFraming`] if bytes remain.
#[inline]
fn expect_end(r: &Reader) -> Result<(), WireError> {
    if r.is_empty() { Ok(()) } else { Err(WireError::BadFraming) }
}

/// The CLIENT_HELLO padding length our client sends and our server requires:
/// `max_payload − 2 − 20 − 99 − 2` (1311 at MTU 1500, §10.2).
#[inline]
pub const fn client_hello_padding(max_payload: usize) -> usize {
    max_payload.saturating_sub(2 + 20 + 99 + 2)
}

/// The fields of CLIENT_HELLO data (§10.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientHello<'a> {
    /// The client's ephemeral P-256 key as DER SPKI; always [`SPKI_LEN`] bytes.
    pub key_spki: &'a [u8],
    /// The protocol version. The server MUST ignore a hello whose version is
    /// not [`PROTOCOL_VERSION`]; the parser leaves that to the caller.
    pub version: i64,
}

/// Parses CLIENT_HELLO message data: type id 130 (no field count), the key
/// as a tagged byte string of exactly [`SPKI_LEN`] bytes, the version as a
/// tagged integer, then at least `min_padding` bytes of padding
/// ([`WireError::Truncated`] if fewer). Longer padding is accepted.
pub fn parse_client_hello(data: &[u8], min_padding: usize) -> Result<ClientHello<'_>, WireError> {
    let mut r = Reader::new(data);
    expect_type_id(&mut r, ID_CLIENT_HELLO)?;
    let key_spki = read_spki(&mut r)?;
    let version = read_int(&mut r)?;
    if r.remaining() < min_padding {
        return Err(WireError::Truncated);
    }
    Ok(ClientHello { key_spki, version })
}

/// Writes CLIENT_HELLO message data into `out`: type id 130, `key_spki`,
/// version 1, then `padding` verbatim (the caller supplies
/// [`client_hello_padding`] random bytes). Returns the length written,
/// `101 + padding.len()`; [`WireError::Truncated`] if `out` is too short.
pub fn emit_client_hello(out: &mut [u8], key_spki: &[u8; SPKI_LEN], padding: &[u8]) -> Result<usize, WireError> {
    let mut w = Writer::new(out);
    w.put_u16(ID_CLIENT_HELLO)?;
    write_bytes(&mut w, key_spki)?;
    write_int(&mut w, PROTOCOL_VERSION)?;
    w.put_bytes(padding)?;
    Ok(w.len())
}

/// The fields of SERVER_HELLO data (§10.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerHello<'a> {
    /// The server's long-term root key as DER SPKI; always [`SPKI_LEN`] bytes.
    pub root_spki: &'a [u8],
    /// The signed blob, exactly as serialized; parse it with
    /// [`parse_server_blob`] after checking the signature over it.
    pub blob: &'a [u8],
    /// The DER ECDSA signature over `blob` (length not checked here).
    pub signature: &'a [u8],
}

/// Parses SERVER_HELLO message data: type id 131 (no field count), then
/// three tagged byte strings (root key of exactly [`SPKI_LEN`] bytes, blob,
/// signature) and nothing after them.
pub fn parse_server_hello(data: &[u8]) -> Result<ServerHello<'_>, WireError> {
    let mut r = Reader::new(data);
    expect_type_id(&mut r, ID_SERVER_HELLO)?;
    let root_spki = read_spki(&mut r)?;
    let blob = read_bytes(&mut r)?;
    let signature = read_bytes(&mut r)?;
    expect_end(&r)?;
    Ok(ServerHello { root_spki, blob, signature })
}

/// Writes SERVER_HELLO message data into `out`. Returns the length written,
/// [`SERVER_HELLO_FIXED_LEN`] + `signature.len()` for a 123-byte blob and a
/// signature shorter than 128 bytes; [`WireError::Truncated`] if `out` is
/// too short.
pub fn emit_server_hello(
    out: &mut [u8],
    root_spki: &[u8; SPKI_LEN],
    blob: &[u8],
    signature: &[u8],
) -> Result<usize, WireError> {
    let mut w = Writer::new(out);
    w.put_u16(ID_SERVER_HELLO)?;
    write_bytes(&mut w, root_spki)?;
    write_bytes(&mut w, blob)?;
    write_bytes(&mut w, signature)?;
    Ok(w.len())
}

/// The fields of the signed blob inside SERVER_HELLO (§10.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerBlob<'a> {
    /// The server's ephemeral P-256 key as DER SPKI; always [`SPKI_LEN`] bytes.
    pub ephemeral_spki: &'a [u8],
    /// The HKDF salt (§10.5).
    pub salt: [u8; 16],
    /// The challenge token, in `0..=MAX_TOKEN`.
    pub token: u32,
}

/// Parses the signed blob: the ephemeral key (tagged bytes, exactly
/// [`SPKI_LEN`]), the salt (tagged bytes, exactly 16) and the token (a
/// tagged integer of any width in `0..=0x7FFF_FFFF`), with nothing after.
pub fn parse_server_blob(blob: &[u8]) -> Result<ServerBlob<'_>, WireError> {
    let mut r = Reader::new(blob);
    let ephemeral_spki = read_spki(&mut r)?;
    let salt = read_bytes(&mut r)?.try_into().map_err(|_| WireError::BadValue)?;
    let token = read_token(&mut r)?;
    expect_end(&r)?;
    Ok(ServerBlob { ephemeral_spki, salt, token })
}

/// Writes the 123-byte signed blob, the token always with tag 5.
///
/// `token` must be at most [`MAX_TOKEN`] (our server draws it from
/// `0x4000_0000..=0x7FFF_FFFF`, §10.6); a larger value would be written as a
/// negative `i32` that parsers reject.
pub fn emit_server_blob(out: &mut [u8; SERVER_BLOB_LEN], ephemeral_spki: &[u8; SPKI_LEN], salt: &[u8; 16], token: u32) {
    debug_assert!(token <= MAX_TOKEN, "token above 0x7FFF_FFFF");
    let mut w = Writer::new(out);
    let r = write_bytes(&mut w, ephemeral_spki)
        .and_then(|()| write_bytes(&mut w, salt))
        .and_then(|()| w.put_u16(TAG_I32))
        .and_then(|()| w.put_u32(token));
    debug_assert!(r.is_ok() && w.remaining() == 0, "the blob is 123 bytes");
}

/// Parses CHALLENGE_RESP message data: type id 132, a field count (tagged
/// integer) that must be 1, the token (tagged integer of any width in
/// `0..=0x7FFF_FFFF`), and nothing after.
pub fn parse_challenge_resp(data: &[u8]) -> Result<u32, WireError> {
    let mut r = Reader::new(data);
    expect_type_id(&mut r, ID_CHALLENGE_RESP)?;
    if read_int(&mut r)? != 1 {
        return Err(WireError::BadValue);
    }
    let token = read_token(&mut r)?;
    expect_end(&r)?;
    Ok(token)
}

/// Writes the 11-byte CHALLENGE_RESP data: type id 132, field count 1, and
/// the token with tag 5. `token` must be at most [`MAX_TOKEN`], as in
/// [`emit_server_blob`].
pub fn emit_challenge_resp(out: &mut [u8; CHALLENGE_RESP_LEN], token: u32) {
    debug_assert!(token <= MAX_TOKEN, "token above 0x7FFF_FFFF");
    let [i0, i1] = ID_CHALLENGE_RESP.to_be_bytes();
    let [c0, c1] = TAG_I8.to_be_bytes();
    let [t0, t1] = TAG_I32.to_be_bytes();
    let [v0, v1, v2, v3] = token.to_be_bytes();
    *out = [i0, i1, c0, c1, 1, t0, t1, v0, v1, v2, v3];
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{hex, to_hex, vectors};
    use super::*;
    use quickcheck::quickcheck;
    use std::vec;
    use std::vec::Vec;

    const MAX: usize = 1434;

    fn spki(name: &str) -> [u8; SPKI_LEN] {
        let v = vectors();
        hex(v["kdf"][name].as_str().expect("hex")).try_into().expect("91-byte SPKI")
    }

    fn int_hex(v: i64) -> std::string::String {
        let mut buf = [0u8; 10];
        let mut w = Writer::new(&mut buf);
        write_int(&mut w, v).expect("fits");
        assert_eq!(w.len(), int_encoded_len(v));
        to_hex(w.written())
    }

    /// §11 examples, the magnitude rule at every width boundary, and
    /// read-back of each.
    #[test]
    fn integer_examples() {
        for (v, want) in [
            (1, "000301"),
            (91, "00035b"),
            (200, "000400c8"),
            (0x4ABC_DEF0, "00054abcdef0"),
            (0, "000300"),
            (127, "00037f"),
            (-127, "000381"),
            (-128, "0004ff80"),
            (128, "00040080"),
            (0x7FFF, "00047fff"),
            (-0x7FFF, "00048001"),
            (-0x8000, "0005ffff8000"),
            (0x8000, "000500008000"),
            (0x7FFF_FFFF, "00057fffffff"),
            (-0x8000_0000, "0006ffffffff80000000"),
            (0x8000_0000, "00060000000080000000"),
            (i64::MIN, "00068000000000000000"),
            (i64::MAX, "00067fffffffffffffff"),
        ] {
            assert_eq!(int_hex(v), want, "{v}");
            let b = hex(want);
            let mut r = Reader::new(&b);
            assert_eq!(read_int(&mut r), Ok(v));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn integers_of_any_width_are_accepted() {
        for b in ["000301", "00040001", "000500000001", "00060000000000000001"] {
            let b = hex(b);
            assert_eq!(read_int(&mut Reader::new(&b)), Ok(1));
        }
        let bad = hex("000701");
        let mut r = Reader::new(&bad);
        assert_eq!(read_int(&mut r), Err(WireError::BadValue));
        assert_eq!(r.remaining(), 3, "nothing consumed on error");
        let short = hex("000500");
        assert_eq!(read_int(&mut Reader::new(&short)), Err(WireError::Truncated));
    }

    #[test]
    fn byte_strings() {
        let salt: Vec<u8> = (0x20..0x30).collect();
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        write_bytes(&mut w, &salt).expect("fits");
        assert_eq!(to_hex(w.written()), std::format!("000e0003 10{}", to_hex(&salt)).replace(' ', ""));
        let enc = w.written().to_vec();
        let mut r = Reader::new(&enc);
        assert_eq!(read_bytes(&mut r), Ok(&salt[..]));
        assert!(r.is_empty());
        // Length wider than needed is fine; negative or too long is not.
        let b = hex("000e 0005 00000002 aabb cc");
        let mut r = Reader::new(&b);
        assert_eq!(read_bytes(&mut r), Ok(&[0xaa, 0xbb][..]));
        assert_eq!(r.rest(), &[0xcc]);
        let neg = hex("000e 0003 ff aabb");
        assert_eq!(read_bytes(&mut Reader::new(&neg)), Err(WireError::BadValue));
        let long = hex("000e 0003 03 aabb");
        let mut r = Reader::new(&long);
        assert_eq!(read_bytes(&mut r), Err(WireError::Truncated));
        assert_eq!(r.remaining(), long.len(), "nothing consumed on error");
        let tag = hex("000d 0003 01 aa");
        assert_eq!(read_bytes(&mut Reader::new(&tag)), Err(WireError::BadValue));
        // An empty string.
        let empty = hex("000e 0003 00");
        assert_eq!(read_bytes(&mut Reader::new(&empty)), Ok(&[][..]));
        // Writes are all-or-nothing.
        let mut small = [0u8; 20];
        let mut w = Writer::new(&mut small);
        assert_eq!(write_bytes(&mut w, &salt), Err(WireError::Truncated));
        assert!(w.is_empty());
        let mut tiny = [0u8; 2];
        let mut w = Writer::new(&mut tiny);
        assert_eq!(write_int(&mut w, 5), Err(WireError::Truncated));
        assert!(w.is_empty());
    }

    /// §10.6 / §17: the challenge body vector.
    #[test]
    fn challenge_resp_vector() {
        let v = vectors();
        let want = hex(v["challenge_response_body_token_0x4ABCDEF0"].as_str().expect("hex"));
        assert_eq!(want, hex("0084 000301 0005 4abcdef0"));
        let mut out = [0u8; CHALLENGE_RESP_LEN];
        emit_challenge_resp(&mut out, 0x4ABC_DEF0);
        assert_eq!(&out[..], &want[..]);
        assert_eq!(parse_challenge_resp(&want), Ok(0x4ABC_DEF0));
    }

    #[test]
    fn challenge_resp_rejects() {
        let p = |s: &str| parse_challenge_resp(&hex(s));
        assert_eq!(p("0084 000301 0003 05"), Ok(5), "any width");
        assert_eq!(p("0083 000301 0005 4abcdef0"), Err(WireError::BadType));
        assert_eq!(p("0084 000302 0005 4abcdef0"), Err(WireError::BadValue));
        assert_eq!(p("0084 000301 0005 8abcdef0"), Err(WireError::BadValue));
        assert_eq!(p("0084 000301 0006 000000008abcdef0"), Err(WireError::BadValue));
        assert_eq!(p("0084 000301 0005 4abcdef0 00"), Err(WireError::BadFraming));
        assert_eq!(p("0084 000301 0005 4abcde"), Err(WireError::Truncated));
        assert_eq!(p("0084 000e0003 01"), Err(WireError::BadValue));
        assert_eq!(p(""), Err(WireError::Truncated));
    }

    /// §10.2 and §17: the hello at MTU 1500, its prefix and length.
    #[test]
    fn client_hello_layout() {
        let key = spki("client_pub_der_spki");
        let pad_len = client_hello_padding(MAX);
        assert_eq!(pad_len, 1311);
        let padding: Vec<u8> = (0..pad_len).map(|i| (i * 7) as u8).collect();
        let mut out = [0u8; MAX];
        let n = emit_client_hello(&mut out, &key, &padding).expect("fits");
        assert_eq!(n, 1412);
        assert_eq!(n, CLIENT_HELLO_FIXED_LEN + pad_len);
        // Data plus msgseq is the header `length` 1414 of §10.7; the
        // datagram is 1438 = MAX_PAYLOAD_SIZE + 4.
        assert_eq!(n + 2, 1414);
        assert_eq!(20 + 2 + n + 4, 1438);
        let prefix = hex("0082 000e 0003 5b 3059301306072a8648ce3d020106082a8648ce3d030107034200");
        assert_eq!(&out[..prefix.len()], &prefix[..]);
        assert_eq!(&out[7..98], &key[..]);
        assert_eq!(&out[98..101], &hex("000301")[..]);
        assert_eq!(&out[101..n], &padding[..]);

        let h = parse_client_hello(&out[..n], pad_len).expect("valid");
        assert_eq!(h.key_spki, &key[..]);
        assert_eq!(h.version, PROTOCOL_VERSION);
        // One byte short of the required padding is rejected; more is fine.
        assert_eq!(parse_client_hello(&out[..n - 1], pad_len), Err(WireError::Truncated));
        assert!(parse_client_hello(&out[..n], pad_len - 1).is_ok());
        // Too small an output buffer.
        assert_eq!(emit_client_hello(&mut out[..1411], &key, &padding), Err(WireError::Truncated));
    }

    #[test]
    fn client_hello_rejects() {
        let key = spki("client_pub_der_spki");
        let mut out = [0u8; 200];
        let n = emit_client_hello(&mut out, &key, &[0; 10]).expect("fits");
        let good = out[..n].to_vec();
        // Another version is returned, for the caller to ignore.
        let mut v2 = good.clone();
        v2[100] = 2;
        assert_eq!(parse_client_hello(&v2, 10).map(|h| h.version), Ok(2));
        // Wrong type id.
        let mut bad = good.clone();
        bad[1] = 0x83;
        assert_eq!(parse_client_hello(&bad, 10), Err(WireError::BadType));
        // A 90-byte key.
        let mut short_key = hex("0082 000e 0003 5a");
        short_key.extend_from_slice(&key[..90]);
        short_key.extend_from_slice(&hex("000301"));
        assert_eq!(parse_client_hello(&short_key, 0), Err(WireError::BadValue));
        // A wrong tag for the version.
        let mut tag = good.clone();
        tag[99] = 14;
        assert_eq!(parse_client_hello(&tag, 0), Err(WireError::BadValue));
        // §17 datagram 4's body.
        assert!(parse_client_hello(&hex("0082616263"), 0).is_err());
        assert!(parse_client_hello(&hex("0082616263"), 1311).is_err());
    }

    /// §10.3: server hello and blob, lengths and round trips.
    #[test]
    fn server_hello_round_trip() {
        let root = spki("client_pub_der_spki");
        let eph = spki("server_pub_der_spki");
        let salt: [u8; 16] = hex("202122232425262728292a2b2c2d2e2f").try_into().expect("16 bytes");
        let mut blob = [0u8; SERVER_BLOB_LEN];
        emit_server_blob(&mut blob, &eph, &salt, 0x4ABC_DEF0);
        assert_eq!(&blob[..5], &hex("000e00035b")[..]);
        assert_eq!(&blob[5..96], &eph[..]);
        assert_eq!(&blob[96..101], &hex("000e000310")[..]);
        assert_eq!(&blob[101..117], &salt[..]);
        assert_eq!(&blob[117..], &hex("00054abcdef0")[..]);
        let b = parse_server_blob(&blob).expect("valid");
        assert_eq!(b, ServerBlob { ephemeral_spki: &eph[..], salt, token: 0x4ABC_DEF0 });

        for sig_len in [0usize, 8, 46, 70, 71, 72] {
            let sig: Vec<u8> = (0..sig_len).map(|i| i as u8 ^ 0x30).collect();
            let mut out = [0u8; 400];
            let n = emit_server_hello(&mut out, &root, &blob, &sig).expect("fits");
            assert_eq!(n, SERVER_HELLO_FIXED_LEN + sig_len);
            assert_eq!(&out[..7], &hex("0083000e00035b")[..]);
            assert_eq!(&out[98..103], &hex("000e00037b")[..]);
            assert_eq!(&out[226..230], &hex("000e0003")[..]);
            assert_eq!(usize::from(out[230]), sig_len);
            let h = parse_server_hello(&out[..n]).expect("valid");
            assert_eq!(h.root_spki, &root[..]);
            assert_eq!(h.blob, &blob[..]);
            assert_eq!(h.signature, &sig[..]);
            // Trailing bytes, truncation.
            assert_eq!(parse_server_hello(&out[..n + 1]), Err(WireError::BadFraming));
            assert_eq!(parse_server_hello(&out[..n - 1]), Err(WireError::Truncated));
        }
        let mut out = [0u8; 300];
        assert_eq!(emit_server_hello(&mut out, &root, &blob, &[0; 72]), Err(WireError::Truncated));
    }

    #[test]
    fn server_blob_rejects() {
        let eph = spki("server_pub_der_spki");
        let mut blob = [0u8; SERVER_BLOB_LEN];
        emit_server_blob(&mut blob, &eph, &[9; 16], 0x7FFF_FFFF);
        assert_eq!(parse_server_blob(&blob).map(|b| b.token), Ok(0x7FFF_FFFF));
        // Token with another width, and small tokens, are accepted.
        let mut alt = blob[..117].to_vec();
        alt.extend_from_slice(&hex("000300"));
        assert_eq!(parse_server_blob(&alt).map(|b| b.token), Ok(0));
        // Negative or too large tokens are not.
        let mut neg = blob[..117].to_vec();
        neg.extend_from_slice(&hex("0003ff"));
        assert_eq!(parse_server_blob(&neg), Err(WireError::BadValue));
        let mut big = blob[..117].to_vec();
        big.extend_from_slice(&hex("00060000000080000000"));
        assert_eq!(parse_server_blob(&big), Err(WireError::BadValue));
        // A 15-byte salt.
        let mut salt15 = blob[..96].to_vec();
        salt15.extend_from_slice(&hex("000e00030f"));
        salt15.extend_from_slice(&[0; 15]);
        salt15.extend_from_slice(&blob[117..]);
        assert_eq!(parse_server_blob(&salt15), Err(WireError::BadValue));
        let mut trailing = blob.to_vec();
        trailing.push(0);
        assert_eq!(parse_server_blob(&trailing), Err(WireError::BadFraming));
        assert_eq!(parse_server_blob(&blob[..122]), Err(WireError::Truncated));
    }

    /// Applies `edits` (position, xor) and a truncation to a valid encoding.
    fn mutate(valid: &[u8], edits: &[(u16, u8)], cut: u16) -> Vec<u8> {
        let mut b = valid.to_vec();
        for &(pos, x) in edits {
            if let Some(byte) = b.get_mut(usize::from(pos) % valid.len()) {
                *byte ^= x;
            }
        }
        let keep = b.len().saturating_sub(usize::from(cut % 8));
        b.truncate(keep);
        b
    }

    fn valid_bodies() -> Vec<Vec<u8>> {
        let key = spki("client_pub_der_spki");
        let mut ch = [0u8; 200];
        let n = emit_client_hello(&mut ch, &key, &[1; 20]).expect("fits");
        let mut blob = [0u8; SERVER_BLOB_LEN];
        emit_server_blob(&mut blob, &key, &[2; 16], 0x4000_0001);
        let mut sh = [0u8; 400];
        let m = emit_server_hello(&mut sh, &key, &blob, &[3; 71]).expect("fits");
        let mut cr = [0u8; CHALLENGE_RESP_LEN];
        emit_challenge_resp(&mut cr, 0x4000_0001);
        vec![ch[..n].to_vec(), sh[..m].to_vec(), blob.to_vec(), cr.to_vec()]
    }

    fn parse_all(b: &[u8], min_padding: usize) {
        let _ = parse_client_hello(b, min_padding);
        if let Ok(h) = parse_server_hello(b) {
            assert_eq!(h.root_spki.len(), SPKI_LEN);
            let _ = parse_server_blob(h.blob);
        }
        if let Ok(bl) = parse_server_blob(b) {
            assert_eq!(bl.ephemeral_spki.len(), SPKI_LEN);
            assert!(bl.token <= MAX_TOKEN);
        }
        if let Ok(t) = parse_challenge_resp(b) {
            assert!(t <= MAX_TOKEN);
        }
        let mut r = Reader::new(b);
        while read_int(&mut r).is_ok() || read_bytes(&mut r).is_ok() {}
    }

    quickcheck! {
        fn parsers_never_panic(data: Vec<u8>, min_padding: u16) -> bool {
            parse_all(&data, usize::from(min_padding));
            true
        }

        fn parsers_never_panic_on_mutated_bodies(edits: Vec<(u16, u8)>, cut: u16) -> bool {
            for body in valid_bodies() {
                parse_all(&mutate(&body, &edits, cut), 20);
            }
            true
        }

        fn int_round_trip(v: i64, shift: u8) -> bool {
            // Spread the values over every width.
            let v = v >> (shift % 64);
            let mut buf = [0u8; 10];
            let mut w = Writer::new(&mut buf);
            if write_int(&mut w, v).is_err() {
                return false;
            }
            let n = w.len();
            let mut r = Reader::new(&buf[..n]);
            read_int(&mut r) == Ok(v) && r.is_empty() && n == int_encoded_len(v)
        }

        fn bytes_round_trip(b: Vec<u8>) -> bool {
            let mut buf = vec![0u8; b.len() + 16];
            let mut w = Writer::new(&mut buf);
            if write_bytes(&mut w, &b).is_err() {
                return false;
            }
            let n = w.len();
            let mut r = Reader::new(&buf[..n]);
            read_bytes(&mut r) == Ok(&b[..]) && r.is_empty() && n == bytes_encoded_len(b.len())
        }

        fn tokens_round_trip(token: u32) -> bool {
            let token = token & MAX_TOKEN;
            let mut cr = [0u8; CHALLENGE_RESP_LEN];
            emit_challenge_resp(&mut cr, token);
            let mut blob = [0u8; SERVER_BLOB_LEN];
            emit_server_blob(&mut blob, &[4; SPKI_LEN], &[5; 16], token);
            parse_challenge_resp(&cr) == Ok(token)
                && parse_server_blob(&blob).map(|b| b.token) == Ok(token)
        }
    }
}
