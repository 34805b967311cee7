//! DNS over TCP framing (RFC 1035 §4.2.2, RFC 7766): a two-byte big-endian length, then the
//! message. A pure decoder, so the framing is testable (and fuzzable) without sockets.

use bytes::{Buf, BytesMut};

/// Splits a byte stream into messages. Holds at most one partial frame plus whatever the
/// last `push` added, so a caller that reads only when [`FrameDecoder::next_frame`] returns
/// `None` keeps it below 64 KiB plus one read.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    pub fn new() -> Self {
        FrameDecoder::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message (possibly empty: a zero length is a frame too), or `None`
    /// until more bytes arrive.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        let len = self.complete_len()?;
        self.buf.advance(2);
        Some(self.buf.split_to(len).to_vec())
    }

    /// Whether a complete message is buffered.
    pub fn has_frame(&self) -> bool {
        self.complete_len().is_some()
    }

    /// The length of the first message, if all of it is buffered.
    fn complete_len(&self) -> Option<usize> {
        let header = self.buf.get(..2)?;
        let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
        (self.buf.len() >= 2 + len).then_some(len)
    }

    /// Bytes held that do not yet form a frame (a stream that ends with any is cut short).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(msgs: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for m in msgs {
            v.extend_from_slice(&(m.len() as u16).to_be_bytes());
            v.extend_from_slice(m);
        }
        v
    }

    fn decode_in_chunks(stream: &[u8], chunk: usize) -> (Vec<Vec<u8>>, usize) {
        let mut d = FrameDecoder::new();
        let mut out = Vec::new();
        for piece in stream.chunks(chunk) {
            d.push(piece);
            while let Some(f) = d.next_frame() {
                out.push(f);
            }
        }
        (out, d.buffered())
    }

    #[test]
    fn frames_survive_any_split() {
        let big = vec![7u8; 65_535];
        let msgs: [&[u8]; 4] = [b"abc", b"", &big, b"z"];
        let stream = framed(&msgs);
        for chunk in [1, 2, 3, 5, 4096, stream.len()] {
            let (out, rest) = decode_in_chunks(&stream, chunk);
            assert_eq!(out, msgs.map(<[u8]>::to_vec), "chunk {chunk}");
            assert_eq!(rest, 0, "chunk {chunk}");
        }
    }

    #[test]
    fn partial_frames_wait() {
        let cases: &[(&[u8], usize)] = &[
            (&[], 0),
            (&[0], 1),
            (&[0, 5, 1, 2], 4),
            (&[0xff, 0xff, 1], 3),
            (&[0, 0], 0), // a complete empty frame
        ];
        for (stream, left) in cases {
            let mut d = FrameDecoder::new();
            d.push(stream);
            let frame = d.next_frame();
            assert_eq!(frame.is_some(), stream.len() == 2, "{stream:?}");
            assert_eq!(d.buffered(), *left, "{stream:?}");
        }
    }
}
