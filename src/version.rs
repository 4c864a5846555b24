//! Which protocol a datagram speaks, from its invariant first byte
//! (MPGS2.md §2.2). Every version keeps its first byte in its own range for
//! ever, so the endpoint can route a datagram before parsing anything else.

/// A protocol version the endpoint can route to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    /// MPGS/1: every datagram starts with its magic `FSOS` or `FSOC`
    /// (a HELLO2 too: it travels in the MPGS/1 CLIENT_HELLO frame).
    Mpgs1,
    /// MPGS/2 short header (`0x80–0xBF`): routed by connection id.
    Mpgs2Short,
    /// MPGS/2 long header (`0xC0–0xFF`): server replies to a client's hello.
    Mpgs2Long,
}

/// The first byte of every MPGS/1 datagram (`F`).
pub(crate) const MPGS1_FIRST_BYTE: u8 = b'F';

/// The version `datagram` speaks, or `None` when no version this endpoint
/// knows starts with its first byte; such a datagram is dropped and counted
/// as malformed.
#[inline]
pub(crate) fn classify(datagram: &[u8]) -> Option<Version> {
    match datagram.first()? {
        &MPGS1_FIRST_BYTE => Some(Version::Mpgs1),
        0x80..=0xBF => Some(Version::Mpgs2Short),
        0xC0..=0xFF => Some(Version::Mpgs2Long),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_byte_decides() {
        assert_eq!(classify(b"FSOS"), Some(Version::Mpgs1));
        assert_eq!(classify(b"FSOC"), Some(Version::Mpgs1));
        assert_eq!(classify(b""), None);
        assert_eq!(classify(&[0x80]), Some(Version::Mpgs2Short));
        assert_eq!(classify(&[0xBF]), Some(Version::Mpgs2Short));
        assert_eq!(classify(&[0xC0]), Some(Version::Mpgs2Long));
        assert_eq!(classify(&[0xFF]), Some(Version::Mpgs2Long));
        for b in (0..0x80u8).filter(|&b| b != b'F') {
            assert_eq!(classify(&[b, b'S', b'O', b'S']), None, "first byte {b:#04x}");
        }
    }
}
