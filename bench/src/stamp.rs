//! What a benchmark message carries: who sent it, its index, and when it
//! was sent, as text at the start of the body, padded to the size asked for.
//!
//! Text rather than bytes because a body must be UTF-8, and because a
//! person reading the relay's store can tell what a row is.

use std::sync::OnceLock;
use std::time::Instant;

/// The identity and send time of one benchmark message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the sending client (`bench-<sender>`).
    pub sender: u32,
    /// Index of the message among its sender's messages.
    pub index: u32,
    /// Send time, nanoseconds since [`now_ns`]'s base.
    pub sent_ns: u64,
}

/// The character bodies are padded with.
const PAD: char = 'x';

static BASE: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the first call in this process. Senders and receivers
/// share the base, so a difference of two readings is a latency.
pub fn now_ns() -> u64 {
    let base = *BASE.get_or_init(Instant::now);
    // u64 nanoseconds last 584 years.
    base.elapsed().as_nanos() as u64
}

impl Stamp {
    /// The body: `s=<sender> i=<index> t=<sent_ns> ` padded with `x` to
    /// `bytes` bytes. The header is never cut, so a body may be longer
    /// than `bytes` when `bytes` is smaller than the header.
    pub fn encode(&self, bytes: usize) -> String {
        let mut body = format!("s={} i={} t={} ", self.sender, self.index, self.sent_ns);
        let pad = bytes.saturating_sub(body.len());
        body.extend(std::iter::repeat_n(PAD, pad));
        body
    }

    /// Reads a body made by [`Stamp::encode`]; `None` for anything else
    /// (other people's messages on a shared relay).
    pub fn decode(body: &str) -> Option<Stamp> {
        let mut fields = body.split(' ');
        let mut field =
            |name: &str| -> Option<u64> { fields.next()?.strip_prefix(name)?.parse().ok() };
        let sender = field("s=")?.try_into().ok()?;
        let index = field("i=")?.try_into().ok()?;
        let sent_ns = field("t=")?;
        Some(Stamp {
            sender,
            index,
            sent_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_survives_encoding_at_the_requested_size() {
        let stamp = Stamp {
            sender: 3,
            index: 17,
            sent_ns: 123_456_789,
        };
        let body = stamp.encode(100);
        assert_eq!(body.len(), 100);
        assert!(body.starts_with("s=3 i=17 t=123456789 x"));
        assert_eq!(Stamp::decode(&body), Some(stamp));
    }

    #[test]
    fn a_small_size_keeps_the_whole_header() {
        let stamp = Stamp {
            sender: 49,
            index: 199,
            sent_ns: 9_999_999_999,
        };
        let body = stamp.encode(1);
        assert_eq!(body, "s=49 i=199 t=9999999999 ");
        assert_eq!(Stamp::decode(&body), Some(stamp));
    }

    #[test]
    fn other_bodies_are_not_stamps() {
        for body in ["hello", "s=1 i=2", "s=1 i=x t=3 ", "i=1 s=2 t=3 ", ""] {
            assert_eq!(Stamp::decode(body), None, "{body:?}");
        }
    }

    #[test]
    fn the_clock_moves_forward() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
    }
}
