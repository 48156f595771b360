//! How long a session waits before each round of reconnect attempts,
//! without I/O: the round count and the jitter source are its inputs.

use std::time::Duration;

use rand::Rng;

/// A connection up this long counts as healthy: the next loss starts the
/// backoff from the beginning again. A connection that dies sooner (say,
/// right after each login) keeps the delay growing, or a broken relay
/// would be hammered.
pub(crate) const STABLE: Duration = Duration::from_secs(30);

/// The reconnect delays of one session and the rounds tried since its
/// connection was last healthy.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays doubling from `initial` up to `max`.
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    /// A connection that stayed up for `up` was lost. Only one that was
    /// [`STABLE`] starts the count over.
    pub(crate) fn lost_after(&mut self, up: Duration) {
        if up >= STABLE {
            self.attempt = 0;
        }
    }

    /// Starts the next round: its number since the connection was last
    /// healthy (from 1) and the delay to wait before it.
    pub(crate) fn next_round(&mut self, rng: &mut impl Rng) -> (u32, Duration) {
        self.attempt += 1;
        (self.attempt, self.delay(self.attempt, rng))
    }

    /// Delay before round `attempt` (1-based): doubling from the initial
    /// delay to the cap, with ±25% jitter so that clients dropped together
    /// do not return together.
    fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let base = self
            .initial
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(self.max);
        base.mul_f64(rng.gen_range(0.75..=1.25))
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> Backoff {
        Backoff::new(250 * MS, 10_000 * MS)
    }

    /// The delays of many independent rounds `attempt`, each from a fresh
    /// count, so only the jitter differs.
    fn delays(attempt: u32) -> Vec<Duration> {
        let mut rng = StdRng::seed_from_u64(7);
        (0..1000)
            .map(|_| {
                let mut b = policy();
                for _ in 1..attempt {
                    b.next_round(&mut rng);
                }
                b.next_round(&mut rng).1
            })
            .collect()
    }

    fn within(d: Duration, base: Duration) -> bool {
        d >= base.mul_f64(0.75) && d <= base.mul_f64(1.25)
    }

    #[test]
    fn rounds_are_numbered_from_one() {
        let mut b = policy();
        let mut rng = StdRng::seed_from_u64(1);
        let attempts: Vec<u32> = (0..4).map(|_| b.next_round(&mut rng).0).collect();
        assert_eq!(attempts, [1, 2, 3, 4]);
    }

    #[test]
    fn the_delay_doubles_per_round_up_to_the_cap() {
        let bases = [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000];
        for (i, base) in bases.into_iter().enumerate() {
            let base = base * MS;
            for d in delays(i as u32 + 1) {
                assert!(within(d, base), "round {}: {d:?} vs {base:?}", i + 1);
            }
        }
    }

    #[test]
    fn a_very_long_outage_stays_at_the_cap() {
        let mut b = policy();
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..10_000 {
            let (_, d) = b.next_round(&mut rng);
            assert!(d <= 12_500 * MS, "{d:?}");
        }
    }

    #[test]
    fn the_jitter_spreads_over_a_quarter_either_way() {
        let ds = delays(1);
        let (lo, hi) = (ds.iter().min().unwrap(), ds.iter().max().unwrap());
        assert!(*lo >= 187 * MS && *hi <= 313 * MS, "{lo:?}..{hi:?}");
        // Clients dropped together must not come back together.
        assert!(*lo < 200 * MS && *hi > 300 * MS, "{lo:?}..{hi:?}");
    }

    #[test]
    fn only_a_connection_up_for_30_s_starts_the_count_over() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut b = policy();
        b.next_round(&mut rng);
        b.next_round(&mut rng);
        b.lost_after(Duration::from_secs(29));
        assert_eq!(b.next_round(&mut rng).0, 3, "29 s up is not healthy");
        b.lost_after(STABLE);
        let (attempt, d) = b.next_round(&mut rng);
        assert_eq!(attempt, 1);
        assert!(within(d, 250 * MS), "{d:?}");
    }
}
