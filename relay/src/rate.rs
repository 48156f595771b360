//! The per-session send rate limit: a token bucket, and a gate over it
//! that keeps one sender's messages in the order sent.

use std::time::{Duration, Instant};

use common::frame::MsgId;

/// Allows `rate` events per second on average and bursts of twice that.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, now: Instant) -> Self {
        let rate = f64::from(rate.max(1));
        TokenBucket {
            rate,
            burst: rate * 2.0,
            tokens: rate * 2.0,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How long a refused message holds back the sender's later ones. A client
/// that never resends it cannot block its own session for longer.
pub const HOLD_LIMIT: Duration = Duration::from_secs(10);

/// Admits sends at the rate limit without reordering them. Once a message
/// is refused, every other message of the session is refused too until that
/// one is sent again: otherwise a later message could take a refilled token
/// and be stored before it.
#[derive(Debug)]
pub struct SendGate {
    bucket: TokenBucket,
    held: Option<(MsgId, Instant)>,
}

impl SendGate {
    /// A gate allowing `rate` sends per second, bursts of twice that.
    pub fn new(rate: u32, now: Instant) -> Self {
        SendGate {
            bucket: TokenBucket::new(rate, now),
            held: None,
        }
    }

    /// Whether the message with this id may be stored now.
    pub fn admit(&mut self, id: MsgId, now: Instant) -> bool {
        if let Some((first, since)) = self.held {
            if id != first && now.saturating_duration_since(since) < HOLD_LIMIT {
                return false;
            }
        }
        if self.bucket.take(now) {
            self.held = None;
            return true;
        }
        match self.held {
            Some((first, since))
                if first == id || now.saturating_duration_since(since) < HOLD_LIMIT => {}
            _ => self.held = Some((id, now)),
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, t0);
        assert_eq!((0..30).filter(|_| b.take(t0)).count(), 20);
        assert!(!b.take(t0));
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..30).filter(|_| b.take(t1)).count(), 5);
    }

    #[test]
    fn a_refused_message_holds_back_later_ones_until_resent() {
        let t0 = Instant::now();
        let mut g = SendGate::new(1, t0);
        assert!(g.admit([1; 16], t0));
        assert!(g.admit([2; 16], t0));
        assert!(!g.admit([3; 16], t0), "bucket empty");
        let t1 = t0 + Duration::from_secs(2);
        assert!(
            !g.admit([4; 16], t1),
            "4 may not overtake 3 even with tokens"
        );
        assert!(g.admit([3; 16], t1), "the resend of 3 goes first");
        assert!(g.admit([4; 16], t1));
    }

    #[test]
    fn a_hold_that_is_never_resolved_expires() {
        let t0 = Instant::now();
        let mut g = SendGate::new(1, t0);
        g.admit([1; 16], t0);
        g.admit([2; 16], t0);
        assert!(!g.admit([3; 16], t0));
        assert!(g.admit([4; 16], t0 + HOLD_LIMIT), "3 was abandoned");
    }
}
