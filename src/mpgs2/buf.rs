//! Bounded big-endian reader and writer for MPGS/2 formats.
//!
//! A read either consumes exactly its field or fails with
//! [`WireError::Truncated`] and consumes nothing; a write either writes its
//! field or fails and writes nothing. Neither allocates.

use super::{WireError, varint};

/// A bounded reader over a byte slice.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    start_len: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    #[inline]
    pub const fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, start_len: buf.len() }
    }

    /// Bytes not yet read.
    #[inline]
    pub const fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Whether everything has been read.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes read so far.
    #[inline]
    pub const fn consumed(&self) -> usize {
        self.start_len - self.buf.len()
    }

    /// The unread bytes, without consuming them.
    #[inline]
    pub const fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// The next `n` bytes.
    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    #[inline]
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let (head, tail) = self.buf.split_first_chunk::<N>().ok_or(WireError::Truncated)?;
        self.buf = tail;
        Ok(*head)
    }

    /// A u8.
    #[inline]
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    /// A big-endian u16.
    #[inline]
    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// A big-endian u32.
    #[inline]
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A big-endian u64.
    #[inline]
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A varint in its shortest form.
    #[inline]
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let (v, n) = varint::decode(self.buf)?;
        self.buf = &self.buf[n..];
        Ok(v)
    }
}

/// A bounded writer into a caller-owned buffer.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    #[inline]
    pub fn new(buf: &'a mut [u8]) -> Writer<'a> {
        Writer { buf, len: 0 }
    }

    /// Bytes written so far.
    #[inline]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left.
    #[inline]
    pub const fn remaining(&self) -> usize {
        self.buf.len() - self.len
    }

    /// The bytes written so far.
    #[inline]
    pub fn written(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The next `n` bytes of the buffer, marked written, for the caller to fill.
    #[inline]
    pub fn reserve(&mut self, n: usize) -> Result<&mut [u8], WireError> {
        if n > self.remaining() {
            return Err(WireError::Truncated);
        }
        let start = self.len;
        self.len += n;
        Ok(&mut self.buf[start..start + n])
    }

    /// Writes `b`.
    #[inline]
    pub fn put_bytes(&mut self, b: &[u8]) -> Result<(), WireError> {
        self.reserve(b.len())?.copy_from_slice(b);
        Ok(())
    }

    /// Writes a u8.
    #[inline]
    pub fn put_u8(&mut self, v: u8) -> Result<(), WireError> {
        *self.buf.get_mut(self.len).ok_or(WireError::Truncated)? = v;
        self.len += 1;
        Ok(())
    }

    /// Writes a big-endian u16.
    #[inline]
    pub fn put_u16(&mut self, v: u16) -> Result<(), WireError> {
        self.put_bytes(&v.to_be_bytes())
    }

    /// Writes a big-endian u32.
    #[inline]
    pub fn put_u32(&mut self, v: u32) -> Result<(), WireError> {
        self.put_bytes(&v.to_be_bytes())
    }

    /// Writes a big-endian u64.
    #[inline]
    pub fn put_u64(&mut self, v: u64) -> Result<(), WireError> {
        self.put_bytes(&v.to_be_bytes())
    }

    /// Writes a varint in its shortest form ([`WireError::BadValue`] above
    /// 2^62 − 1).
    #[inline]
    pub fn put_varint(&mut self, v: u64) -> Result<(), WireError> {
        let n = varint::encode(v, &mut self.buf[self.len..])?;
        self.len += n;
        Ok(())
    }

    /// Writes `n` zero bytes.
    #[inline]
    pub fn put_zeros(&mut self, n: usize) -> Result<(), WireError> {
        self.reserve(n)?.fill(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_and_writer_are_bounded() {
        let mut out = [0u8; 7];
        let mut w = Writer::new(&mut out);
        w.put_u16(0x0102).expect("room");
        w.put_varint(300).expect("room");
        assert_eq!(w.put_u32(1), Err(WireError::Truncated));
        assert_eq!(w.len(), 4, "a failed write writes nothing");
        assert!(!w.is_empty());
        w.put_u8(9).expect("room");
        w.put_zeros(2).expect("room");
        assert_eq!(w.remaining(), 0);
        assert_eq!(w.written(), &[1, 2, 0x41, 0x2c, 9, 0, 0]);

        let mut r = Reader::new(&out);
        assert_eq!(r.u16(), Ok(0x0102));
        assert_eq!(r.varint(), Ok(300));
        assert_eq!(r.u32(), Err(WireError::Truncated));
        assert_eq!(r.consumed(), 4, "a failed read consumes nothing");
        assert_eq!(r.bytes(3), Ok(&[9u8, 0, 0][..]));
        assert!(r.is_empty());
        assert_eq!(r.u8(), Err(WireError::Truncated));

        let mut b8 = [0u8; 8];
        let mut w = Writer::new(&mut b8);
        assert!(w.is_empty());
        w.put_u64(0x0102_0304_0506_0708).expect("room");
        assert_eq!(Reader::new(&b8).u64(), Ok(0x0102_0304_0506_0708));
    }
}
