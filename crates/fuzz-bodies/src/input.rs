//! Reading structured input from the fuzzer's bytes: a cursor that never fails (missing bytes
//! read as zero or empty), so every byte string is some input and mutations stay meaningful.

use std::borrow::Cow;

/// Bytes read front to back.
pub struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { rest: data }
    }

    /// One byte (0 once the input is used up).
    pub fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((b, rest)) => {
                self.rest = rest;
                *b
            }
            None => 0,
        }
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        u64::from_le_bytes(b)
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        head
    }

    /// A field of up to 255 bytes, its length in the first byte.
    pub fn short(&mut self) -> &'a [u8] {
        let n = self.byte() as usize;
        self.take(n)
    }

    /// Bytes up to the next `\n` (or the end), the `\n` consumed.
    pub fn line(&mut self) -> &'a [u8] {
        match self.rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let line = &self.rest[..i];
                self.rest = &self.rest[i + 1..];
                line
            }
            None => self.take(self.rest.len()),
        }
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.rest.len())
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// Bytes as text, invalid UTF-8 replaced, so every input reaches the string parsers.
pub fn text(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}
