//! `relay::rate::SendGate` fed arbitrary (message id, time step) sequences.
//!
//! Checked:
//! - rate: over any window [a, b] of admissions, at most
//!   `burst + rate * (b - a)` are admitted (burst = 2 × rate, full at start);
//! - order (PROTOCOL §10): refused messages are remembered in the order
//!   they arrived (up to `MAX_HELD`), and while any is, only the oldest may
//!   be admitted; the oldest loses its turn once `HOLD_LIMIT` has passed
//!   since it became the oldest;
//! - the first message ever offered to a fresh gate is admitted.
#![no_main]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use relay::rate::{SendGate, HOLD_LIMIT, MAX_HELD};

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
    // The holds the protocol describes: refused ids, oldest first, and
    // since when the oldest has been the one to wait for.
    let mut held: VecDeque<[u8; 16]> = VecDeque::new();
    let mut since = t0;
    for (i, &(id, step)) in input.sends.iter().take(300).enumerate() {
        now += step.duration();
        let id = [id % 4; 16];
        let ok = gate.admit(id, now);
        if i == 0 {
            assert!(ok, "a full bucket refused the first send");
        }
        if !held.is_empty() && now.duration_since(since) >= HOLD_LIMIT {
            held.pop_front();
            since = now;
        }
        if ok {
            if let Some(&x) = held.front() {
                assert!(
                    x == id,
                    "send #{i} {:?} admitted {:?} while {:?} waits since {:?}",
                    id[0],
                    now - t0,
                    x[0],
                    since - t0
                );
                held.pop_front();
                since = now;
            }
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
        } else if !held.contains(&id) && held.len() < MAX_HELD {
            if held.is_empty() {
                since = now;
            }
            held.push_back(id);
        }
    }
});
