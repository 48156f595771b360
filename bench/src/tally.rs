//! What one receiver saw: which benchmark messages, how many deliveries in
//! all, and their latencies; and the sum over every receiver.

use hdrhistogram::Histogram;

use crate::stamp::Stamp;

/// Phases a run's latencies can be split into, by send time (slow has a
/// warm-up and three more).
pub const PHASES: usize = 4;

/// One receiver's count of a run in which `senders` clients each send
/// `messages` messages.
#[derive(Debug, Clone)]
pub struct Tally {
    senders: u32,
    messages: u32,
    /// `seen[sender * messages + index]`.
    seen: Vec<bool>,
    unique: u64,
    total: u64,
    /// Delivery latency in microseconds, by the phase the message was
    /// sent in (see [`Tally::record`]).
    latency: [Histogram<u64>; PHASES],
    last_ns: Option<u64>,
}

/// New histograms: 3 significant digits, growing to whatever latency
/// comes, so a pathological run is measured rather than clipped.
fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is a valid precision")
}

impl Tally {
    /// A receiver that expects `messages` messages from each of `senders`.
    pub fn new(senders: u32, messages: u32) -> Tally {
        Tally {
            senders,
            messages,
            seen: vec![false; senders as usize * messages as usize],
            unique: 0,
            total: 0,
            latency: std::array::from_fn(|_| histogram()),
            last_ns: None,
        }
    }

    /// Counts one delivery received at `now_ns`. Its latency counts in
    /// the phase it was sent in: one more for each of `splits` (the times
    /// later phases began) at or before its send time. A stamp outside the
    /// run's senders and indices is not one of ours and is ignored.
    pub fn record(&mut self, stamp: Stamp, now_ns: u64, splits: [Option<u64>; PHASES - 1]) {
        if stamp.sender >= self.senders || stamp.index >= self.messages {
            return;
        }
        self.total += 1;
        let slot = stamp.sender as usize * self.messages as usize + stamp.index as usize;
        if !std::mem::replace(&mut self.seen[slot], true) {
            self.unique += 1;
        }
        let micros = now_ns.saturating_sub(stamp.sent_ns) / 1_000;
        let phase = splits
            .iter()
            .flatten()
            .filter(|&&split| stamp.sent_ns >= split)
            .count();
        // An auto-resizing histogram grows to any u64, so this cannot fail.
        let _ = self.latency[phase].record(micros);
        self.last_ns = Some(self.last_ns.map_or(now_ns, |t| t.max(now_ns)));
    }

    /// Different messages received.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// Messages this receiver should get: every sender's every message.
    pub fn expected(&self) -> u64 {
        u64::from(self.senders) * u64::from(self.messages)
    }

    /// Whether every expected message has arrived.
    pub fn complete(&self) -> bool {
        self.unique == self.expected()
    }

    /// Deliveries, duplicates included.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// When the last delivery arrived, on [`crate::stamp::now_ns`]'s clock.
    pub fn last_ns(&self) -> Option<u64> {
        self.last_ns
    }
}

/// Every receiver's tallies added up.
#[derive(Debug, Clone)]
pub struct Totals {
    /// Deliveries, duplicates included.
    pub deliveries: u64,
    /// Expected deliveries that never came.
    pub lost: u64,
    /// Deliveries of a message the receiver already had.
    pub duplicated: u64,
    /// Latency of every delivery, in microseconds.
    pub latency: Histogram<u64>,
    /// The same by the phase the message was sent in; runs without
    /// phases have all in the first.
    pub phases: [Histogram<u64>; PHASES],
    /// When the last delivery arrived.
    pub last_ns: Option<u64>,
}

impl Totals {
    /// Adds up `tallies`. `receivers` is how many receivers the run has, so
    /// a receiver that never connected (and has no tally) counts all of its
    /// messages as lost; `expected` is what each receiver should get.
    pub fn sum<'a>(
        tallies: impl IntoIterator<Item = &'a Tally>,
        receivers: u64,
        expected: u64,
    ) -> Totals {
        let mut totals = Totals {
            deliveries: 0,
            lost: receivers * expected,
            duplicated: 0,
            latency: histogram(),
            phases: std::array::from_fn(|_| histogram()),
            last_ns: None,
        };
        for tally in tallies {
            totals.deliveries += tally.total;
            totals.duplicated += tally.total - tally.unique;
            totals.lost = totals.lost.saturating_sub(tally.unique);
            for (sum, h) in totals.phases.iter_mut().zip(&tally.latency) {
                sum.add(h).expect("auto-resizing histograms always merge");
                totals
                    .latency
                    .add(h)
                    .expect("auto-resizing histograms always merge");
            }
            totals.last_ns = totals.last_ns.max(tally.last_ns);
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(sender: u32, index: u32, sent_ns: u64) -> Stamp {
        Stamp {
            sender,
            index,
            sent_ns,
        }
    }

    #[test]
    fn counts_unique_duplicate_and_latency() {
        let mut t = Tally::new(2, 3);
        t.record(stamp(0, 0, 1_000), 3_000, [None; PHASES - 1]);
        t.record(stamp(1, 2, 1_000), 11_000, [None; PHASES - 1]);
        t.record(stamp(1, 2, 1_000), 12_000, [None; PHASES - 1]);
        assert_eq!((t.unique(), t.total(), t.expected()), (2, 3, 6));
        assert!(!t.complete());
        assert_eq!(t.last_ns(), Some(12_000));
        assert_eq!(t.latency[0].max(), 11);
        assert_eq!(t.latency[0].min(), 2);
        t.record(stamp(0, 1, 0), 3_600_000_000_000, [None; PHASES - 1]);
        assert_eq!(
            t.latency[0].max(),
            t.latency[0].highest_equivalent(3_600_000_000)
        );
    }

    #[test]
    fn a_split_sorts_latencies_by_send_time() {
        let mut t = Tally::new(1, 3);
        let splits = [Some(5_000), Some(8_000), None];
        t.record(stamp(0, 0, 1_000), 2_000, splits);
        t.record(stamp(0, 1, 5_000), 9_000, splits);
        t.record(stamp(0, 2, 9_000), 19_000, splits);
        let sum = Totals::sum([&t], 1, 3);
        assert_eq!(sum.phases.each_ref().map(|h| h.len()), [1, 1, 1, 0]);
        assert_eq!(sum.phases[2].max(), 10);
        assert_eq!(sum.latency.len(), 3);
        t.record(stamp(0, 0, 1_000), 2_000, [Some(5_000), None, None]);
        assert_eq!(t.latency[0].len(), 2);
    }

    #[test]
    fn foreign_stamps_are_ignored() {
        let mut t = Tally::new(2, 3);
        t.record(stamp(2, 0, 0), 1, [None; PHASES - 1]);
        t.record(stamp(0, 3, 0), 1, [None; PHASES - 1]);
        assert_eq!((t.unique(), t.total(), t.last_ns()), (0, 0, None));
    }

    #[test]
    fn a_complete_run_sums_to_nothing_lost() {
        let mut tallies = vec![Tally::new(2, 2), Tally::new(2, 2)];
        for t in &mut tallies {
            for s in 0..2 {
                for i in 0..2 {
                    t.record(stamp(s, i, 0), 5_000, [None; PHASES - 1]);
                }
            }
        }
        assert!(tallies.iter().all(Tally::complete));
        let sum = Totals::sum(&tallies, 2, 4);
        assert_eq!((sum.deliveries, sum.lost, sum.duplicated), (8, 0, 0));
        assert_eq!(sum.latency.len(), 8);
        assert_eq!(sum.last_ns, Some(5_000));
    }

    #[test]
    fn missing_receivers_and_messages_count_as_lost() {
        let mut t = Tally::new(2, 2);
        t.record(stamp(0, 0, 0), 1, [None; PHASES - 1]);
        t.record(stamp(0, 0, 0), 2, [None; PHASES - 1]);
        let sum = Totals::sum([&t], 3, 4);
        assert_eq!((sum.deliveries, sum.lost, sum.duplicated), (2, 11, 1));
    }
}
