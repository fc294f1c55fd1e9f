//! A bounds-checked big-endian cursor over a [`Bytes`] buffer. Every read checks the length
//! first and reports the offset of the field it could not read; nothing here can panic.

use bytes::Bytes;

use super::error::{DecodeError, DecodeErrorKind};

pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
}

type Result<T> = std::result::Result<T, DecodeError>;

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The offset of the next byte to be read.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(kind, self.pos)
    }

    /// The next `n` bytes as a slice of the underlying buffer, advancing past them.
    fn advance(&mut self, n: usize, field: &'static str) -> Result<&[u8]> {
        let start = self.pos;
        let available = self.remaining();
        let range = start.checked_add(n).map(|end| start..end);
        match range.and_then(|range| self.buf.get(range)) {
            Some(bytes) => {
                self.pos = start.saturating_add(n);
                Ok(bytes)
            }
            None => Err(DecodeError::new(
                DecodeErrorKind::Truncated {
                    field,
                    needed: n,
                    available,
                },
                start,
            )),
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let slice = self.advance(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(u8::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    /// An Int32 length that must not be negative, as a `usize`.
    pub(crate) fn len32(&mut self, field: &'static str) -> Result<usize> {
        let at = self.pos;
        let value = self.i32(field)?;
        usize::try_from(value)
            .map_err(|_| DecodeError::new(DecodeErrorKind::NegativeLength { field, value }, at))
    }

    /// The next `n` bytes as a zero-copy slice of the input.
    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<Bytes> {
        let start = self.pos;
        self.advance(n, field)?;
        // `advance` succeeded, so `start..self.pos` lies within the buffer.
        Ok(self.buf.slice(start..self.pos))
    }

    /// Everything not yet read, as a zero-copy slice.
    pub(crate) fn rest(&mut self) -> Bytes {
        let n = self.remaining();
        let start = self.pos;
        self.pos = self.buf.len();
        if n == 0 {
            Bytes::new()
        } else {
            self.buf.slice(start..)
        }
    }

    /// A NUL-terminated UTF-8 string; the NUL is consumed and not returned.
    pub(crate) fn cstr(&mut self, field: &'static str) -> Result<String> {
        let start = self.pos;
        let tail = self.buf.get(start..).unwrap_or_default();
        let len = tail.iter().position(|&b| b == 0).ok_or_else(|| {
            DecodeError::new(DecodeErrorKind::UnterminatedString { field }, start)
        })?;
        let raw = tail.get(..len).unwrap_or_default();
        let s = std::str::from_utf8(raw)
            .map_err(|_| DecodeError::new(DecodeErrorKind::InvalidUtf8 { field }, start))?
            .to_owned();
        // len < tail.len() <= usize::MAX, so len + 1 cannot overflow; checked all the same.
        self.pos = start.saturating_add(len).saturating_add(1);
        Ok(s)
    }

    /// Succeeds only when every byte has been read.
    pub(crate) fn finish(&self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(self.error(DecodeErrorKind::TrailingBytes { count })),
        }
    }
}
