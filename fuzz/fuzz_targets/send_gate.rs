//! `relay::rate::SendGate` fed arbitrary (message id, time step) sequences.
//!
//! Checked:
//! - rate: over any window [a, b] of admissions, at most
//!   `burst + rate * (b - a)` are admitted (burst = 2 × rate, full at start);
//! - order (PROTOCOL §10): once a message X is refused, no other id is
//!   admitted until X is admitted, unless `HOLD_LIMIT` has passed since the
//!   refusal that started the hold;
//! - the first message ever offered to a fresh gate is admitted.
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use relay::rate::{SendGate, HOLD_LIMIT};

#[derive(Arbitrary, Debug)]
struct Input {
    rate: u8,
    sends: Vec<(u8, Step)>,
}

/// Time before a send.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Step {
    Micros(u16),
    Millis(u16),
    /// Whole seconds (up to 15, past `HOLD_LIMIT`).
    Secs(u8),
}

impl Step {
    fn duration(self) -> Duration {
        match self {
            Step::Micros(n) => Duration::from_micros(u64::from(n)),
            Step::Millis(n) => Duration::from_millis(u64::from(n)),
            Step::Secs(n) => Duration::from_secs(u64::from(n % 16)),
        }
    }
}

fuzz_target!(|input: Input| {
    let rate = u32::from(input.rate.max(1));
    let burst = 2.0 * f64::from(rate);
    let t0 = Instant::now();
    let mut gate = SendGate::new(u32::from(input.rate), t0);
    let mut now = t0;
    let mut admitted: Vec<Instant> = Vec::new();
    // The hold the protocol describes: (id, since).
    let mut hold: Option<([u8; 16], Instant)> = None;
    for (i, &(id, step)) in input.sends.iter().take(300).enumerate() {
        now += step.duration();
        let id = [id % 4; 16];
        let ok = gate.admit(id, now);
        if i == 0 {
            assert!(ok, "a full bucket refused the first send");
        }
        let lapsed = |since: Instant| now.duration_since(since) >= HOLD_LIMIT;
        if ok {
            if let Some((x, since)) = hold {
                assert!(
                    x == id || lapsed(since),
                    "send #{i} {:?} admitted {:?} after the refusal of {:?} at {:?}",
                    id[0],
                    now - t0,
                    x[0],
                    since - t0
                );
            }
            hold = None;
            // Rate: every window ending here.
            admitted.push(now);
            let n = admitted.len();
            for (k, &start) in admitted.iter().enumerate() {
                let count = (n - k) as f64;
                let allowed = burst + f64::from(rate) * (now - start).as_secs_f64();
                assert!(
                    count <= allowed + 1e-6,
                    "{count} sends admitted in {:?} at {rate}/s (burst {burst})",
                    now - start
                );
            }
        } else {
            // The first refusal starts a hold; a refusal while a hold stands
            // (its own message's included) leaves it as it is.
            match hold {
                Some((_, since)) if !lapsed(since) => {}
                _ => hold = Some((id, now)),
            }
        }
    }
});
