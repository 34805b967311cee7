//! The TCP listener's framing (`listener::FrameDecoder`) on arbitrary byte streams split at
//! arbitrary points, checked against a straightforward model of RFC 1035 §4.2.2; every
//! frame then goes through ingress (`request::parse`) as the listener would.
//!
//! Input: two seed bytes choosing the split points, then the stream.
//! Invariants: nothing panics; the frames are exactly the model's, whatever the splits; the
//! decoder never holds more than one partial frame plus the last chunk.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use zonegate::listener::FrameDecoder;
use zonegate::policy::Transport;
use zonegate::request;

fuzz_target!(|data: &[u8]| {
    let [a, b, stream @ ..] = data else {
        return;
    };
    let mut seed = u32::from(u16::from_be_bytes([*a, *b])) | 1;
    let mut decoder = FrameDecoder::new();
    let mut got = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        // Mostly small pieces, sometimes large ones.
        let max = if seed >> 28 == 0 { 70_000 } else { 7 };
        let n = (((seed >> 8) as usize) % max + 1).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        decoder.push(chunk);
        while let Some(frame) = decoder.next_frame() {
            got.push(frame);
        }
        assert!(
            decoder.buffered() < 2 + 65_535 + n,
            "held {}",
            decoder.buffered()
        );
    }
    let (want, left) = model(stream);
    assert_eq!(got, want);
    assert_eq!(decoder.buffered(), left);
    let client = SocketAddr::from(([127, 0, 0, 1], 40000));
    for frame in &got {
        let _ = request::parse(frame, client, Transport::Tcp);
    }
});

/// Frames of a whole stream, and the bytes left over.
fn model(mut s: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut frames = Vec::new();
    while s.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([s[0], s[1]]));
        if s.len() < 2 + len {
            break;
        }
        frames.push(s[2..2 + len].to_vec());
        s = &s[2 + len..];
    }
    (frames, s.len())
}
