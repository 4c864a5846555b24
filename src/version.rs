//! Which protocol a datagram speaks, from its invariant first byte
//! (MPGS2.md §2.2). Every version keeps its first byte in its own range for
//! ever, so the endpoint can route a datagram before parsing anything else.

/// A protocol version the endpoint can route to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    /// MPGS/1: every datagram starts with its magic `FSOS` or `FSOC`.
    Mpgs1,
}

/// The first byte of every MPGS/1 datagram (`F`).
pub(crate) const MPGS1_FIRST_BYTE: u8 = b'F';

/// The version `datagram` speaks, or `None` when no version this endpoint
/// knows starts with its first byte (MPGS/2's `0x80..=0xFF` included, until
/// it plugs in here); such a datagram is dropped and counted as malformed.
#[inline]
pub(crate) fn classify(datagram: &[u8]) -> Option<Version> {
    match datagram.first()? {
        &MPGS1_FIRST_BYTE => Some(Version::Mpgs1),
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
        for b in (0..=255u8).filter(|&b| b != b'F') {
            assert_eq!(classify(&[b, b'S', b'O', b'S']), None, "first byte {b:#04x}");
        }
    }
}
