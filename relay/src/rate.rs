//! The send rate limit: a token bucket (shared by an account's sessions,
//! see `accounts`), and a gate over it that keeps one session's messages
//! in the order they first arrived.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
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
        Self::with(rate, rate * 2.0, now)
    }

    /// A full bucket of `burst` tokens refilled at `rate` per second.
    pub fn with(rate: f64, burst: f64, now: Instant) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.take_n(1.0, now)
    }

    /// Takes `n` tokens if there are as many.
    pub fn take_n(&mut self, n: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full at `now`: nothing taken is still missing.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.take_n(0.0, now);
        self.tokens >= self.burst
    }

    /// Puts back `n` tokens taken for something that did not happen.
    pub fn give_back(&mut self, n: f64) {
        self.tokens = (self.tokens + n).min(self.burst);
    }
}

/// Which budget refused a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// Messages per second.
    Rate,
    /// An earlier refused message of this session must be stored first.
    Order,
    /// Bytes stored per day.
    Bytes,
}

/// How long a refused message holds back the sender's later ones. A client
/// that never resends it cannot block its own session for longer.
pub const HOLD_LIMIT: Duration = Duration::from_secs(10);

/// Refused messages a session's gate remembers in order. A standard client
/// waits for its refused messages before sending new ones, so it never
/// comes near this; past it, a refused message is not recorded and its
/// place in the order is where its resend arrives. 16 bytes each.
pub const MAX_HELD: usize = 1024;

/// Admits sends at the rate limit without reordering them. Every message
/// refused is remembered in the order it arrived, and while any is, only
/// the oldest of them may be stored: a message sent later, or a later
/// refused one resent sooner, is refused too, even with tokens to spare.
/// Otherwise a message could take a refilled token and be stored before
/// one sent ahead of it.
#[derive(Debug)]
pub struct SendGate {
    bucket: Arc<Mutex<TokenBucket>>,
    /// Bytes of bodies, when the account has a storage budget.
    bytes: Option<Arc<Mutex<TokenBucket>>>,
    /// Refused ids, oldest first, each once.
    held: VecDeque<MsgId>,
    /// When the oldest held message became the one to wait for.
    since: Instant,
}

impl SendGate {
    /// A gate allowing `rate` sends per second, bursts of twice that.
    pub fn new(rate: u32, now: Instant) -> Self {
        Self::over(Arc::new(Mutex::new(TokenBucket::new(rate, now))), now)
    }

    /// A gate taking its tokens from `bucket`, which other gates may share.
    pub fn over(bucket: Arc<Mutex<TokenBucket>>, now: Instant) -> Self {
        SendGate {
            bucket,
            bytes: None,
            held: VecDeque::new(),
            since: now,
        }
    }

    /// Also takes a message's body length from `bytes`, which other gates
    /// may share: a message is stored only when both allow it.
    pub fn with_bytes(mut self, bytes: Arc<Mutex<TokenBucket>>) -> Self {
        self.bytes = Some(bytes);
        self
    }

    /// Whether the message with this id may be stored now.
    pub fn admit(&mut self, id: MsgId, now: Instant) -> bool {
        self.admit_sized(id, 0, now).is_ok()
    }

    /// Whether the message with this id and a body of `len` bytes may be
    /// stored now, and if not, which budget said no. Either way it keeps
    /// its place in the order, as [`SendGate::admit`] says.
    pub fn admit_sized(&mut self, id: MsgId, len: usize, now: Instant) -> Result<(), Over> {
        // A message never resent loses its turn, one per HOLD_LIMIT.
        if !self.held.is_empty() && now.saturating_duration_since(self.since) >= HOLD_LIMIT {
            self.held.pop_front();
            self.since = now;
        }
        match self.held.iter().position(|held| *held == id) {
            Some(0) => {}
            Some(_) => return Err(Over::Order),
            None if self.held.is_empty() => {}
            None => {
                self.hold(id, now);
                return Err(Over::Order);
            }
        }
        let len = len as f64;
        if let Some(bytes) = &self.bytes {
            if !crate::accounts::lock(bytes).take_n(len, now) {
                self.hold(id, now);
                return Err(Over::Bytes);
            }
        }
        if !crate::accounts::lock(&self.bucket).take(now) {
            if let Some(bytes) = &self.bytes {
                crate::accounts::lock(bytes).give_back(len);
            }
            self.hold(id, now);
            return Err(Over::Rate);
        }
        if self.held.front() == Some(&id) {
            self.held.pop_front();
            self.since = now;
        }
        Ok(())
    }

    /// Remembers a refused message behind those refused before it.
    fn hold(&mut self, id: MsgId, now: Instant) {
        if self.held.contains(&id) || self.held.len() >= MAX_HELD {
            return;
        }
        if self.held.is_empty() {
            self.since = now;
        }
        self.held.push_back(id);
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
    fn refused_messages_are_stored_in_the_order_they_arrived() {
        let t0 = Instant::now();
        let mut g = SendGate::new(1, t0);
        assert!(g.admit([1; 16], t0));
        assert!(g.admit([2; 16], t0));
        for id in 3..=5 {
            assert!(!g.admit([id; 16], t0), "{id}: bucket empty");
        }
        let t1 = t0 + Duration::from_secs(3);
        assert!(g.admit([3; 16], t1), "the oldest refused goes first");
        assert!(
            !g.admit([6; 16], t1),
            "a new message may not overtake 4 and 5, though tokens are left"
        );
        assert!(!g.admit([5; 16], t1), "5 may not overtake 4");
        assert!(g.admit([4; 16], t1), "the second of two tokens");
        let t2 = t1 + Duration::from_secs(2);
        assert!(!g.admit([6; 16], t2), "6 waits for 5");
        assert!(g.admit([5; 16], t2));
        assert!(g.admit([6; 16], t2), "6 took its turn behind 5");
        assert!(
            g.admit([7; 16], t2 + Duration::from_secs(2)),
            "nothing held any more"
        );
    }

    #[test]
    fn the_held_list_is_bounded() {
        let t0 = Instant::now();
        let mut g = SendGate::new(1, t0);
        assert!(g.admit([0; 16], t0));
        assert!(g.admit([1; 16], t0));
        for n in 0..MAX_HELD as u32 + 10 {
            let mut id = [0xff; 16];
            id[..4].copy_from_slice(&n.to_be_bytes());
            assert!(!g.admit(id, t0));
        }
        assert_eq!(g.held.len(), MAX_HELD);
    }

    #[test]
    fn a_byte_budget_refuses_in_order_and_a_rate_refusal_costs_no_bytes() {
        let t0 = Instant::now();
        let bytes = Arc::new(Mutex::new(TokenBucket::with(100.0, 1000.0, t0)));
        let mut g = SendGate::new(1, t0).with_bytes(bytes.clone());
        assert_eq!(g.admit_sized([1; 16], 600, t0), Ok(()));
        assert_eq!(
            g.admit_sized([2; 16], 600, t0),
            Err(Over::Bytes),
            "400 left"
        );
        assert_eq!(
            g.admit_sized([3; 16], 10, t0),
            Err(Over::Order),
            "3 may not overtake 2"
        );
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(g.admit_sized([2; 16], 600, t1), Ok(()), "refilled");
        assert_eq!(g.admit_sized([3; 16], 10, t1), Ok(()));
        assert_eq!(
            g.admit_sized([4; 16], 10, t1),
            Err(Over::Rate),
            "the message bucket is empty"
        );
        let left = bytes.lock().unwrap().tokens;
        assert!(
            (left - 290.0).abs() < 1e-6,
            "the refused send took no bytes: {left}"
        );
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
