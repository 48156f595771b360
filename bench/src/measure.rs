//! Everything a run has measured so far. It lives outside the run's future,
//! so a run cut short by its time limit still reports what it saw.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use hdrhistogram::Histogram;

use crate::procfs::Proc;
use crate::stamp::{now_ns, Stamp};
use crate::tally::{Tally, Totals, PHASES};

/// The measurements of one run of `clients` clients that each send
/// `messages` messages to all of them (and, in some workloads, to a few
/// receivers that do not send).
#[derive(Debug)]
pub struct Measurements {
    clients: u32,
    messages: u32,
    /// One per receiver, made up front: a receiver that never connects
    /// still counts, with everything lost. The senders' own come first.
    tallies: Vec<Mutex<Tally>>,
    /// When the later phases of a run began, for runs that compare them.
    splits: [OnceLock<u64>; PHASES - 1],
    /// Send-to-ack latency in microseconds, for workloads that time acks.
    acks: Mutex<Histogram<u64>>,
    relay: Option<Proc>,
    start_ns: OnceLock<u64>,
    cpu_start: OnceLock<f64>,
    cpu_end: OnceLock<f64>,
    /// 0 until sampled.
    rss_peak_kib: AtomicU64,
}

/// A tally stays consistent across a panic of its receiver (each record is
/// a few plain writes), so a poisoned lock is still worth reading.
fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Measurements {
    /// Empty measurements; `relay` is the relay process when known.
    pub fn new(clients: u32, messages: u32, relay: Option<Proc>) -> Measurements {
        Measurements::with_receivers(clients, clients, messages, relay)
    }

    /// Like [`Measurements::new`], with `receivers` (at least `clients`)
    /// receivers: the clients, then receivers that only listen.
    pub fn with_receivers(
        clients: u32,
        receivers: u32,
        messages: u32,
        relay: Option<Proc>,
    ) -> Measurements {
        Measurements {
            clients,
            messages,
            tallies: (0..receivers.max(clients))
                .map(|_| Mutex::new(Tally::new(clients, messages)))
                .collect(),
            splits: Default::default(),
            acks: Mutex::new(Histogram::new(3).expect("3 significant digits")),
            relay,
            start_ns: OnceLock::new(),
            cpu_start: OnceLock::new(),
            cpu_end: OnceLock::new(),
            rss_peak_kib: AtomicU64::new(0),
        }
    }

    /// Number of clients (each both sender and receiver).
    pub fn clients(&self) -> u32 {
        self.clients
    }

    /// Messages each client sends.
    pub fn messages(&self) -> u32 {
        self.messages
    }

    /// The relay process, when known.
    pub fn relay(&self) -> Option<Proc> {
        self.relay
    }

    /// Receiver `receiver` got a message stamped `stamp` just now.
    pub fn record(&self, receiver: usize, stamp: Stamp) {
        let now = now_ns();
        let splits = self.splits.each_ref().map(|s| s.get().copied());
        lock(&self.tallies[receiver]).record(stamp, now, splits);
    }

    /// Starts the next phase: messages sent from now on count in it. The
    /// last phase goes on to the end of the run.
    pub fn next_phase(&self) {
        let now = now_ns();
        let _ = self
            .splits
            .iter()
            .find(|s| s.get().is_none())
            .map(|s| s.set(now));
    }

    /// A send was acknowledged `micros` after it was made.
    pub fn record_ack(&self, micros: u64) {
        // An auto-resizing histogram grows to any u64, so this cannot fail.
        let _ = self
            .acks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(micros);
    }

    /// Send-to-ack latencies, when any were recorded.
    pub fn acks(&self) -> Option<Histogram<u64>> {
        let acks = self.acks.lock().unwrap_or_else(PoisonError::into_inner);
        (!acks.is_empty()).then(|| acks.clone())
    }

    /// Whether receiver `receiver` has every message.
    pub fn receiver_complete(&self, receiver: usize) -> bool {
        lock(&self.tallies[receiver]).complete()
    }

    /// Starts the clock and the relay's CPU count.
    pub fn start(&self) {
        let _ = self.start_ns.set(now_ns());
        if let Some(cpu) = self.relay.and_then(|p| p.cpu_s()) {
            let _ = self.cpu_start.set(cpu);
        }
        self.sample_rss();
    }

    /// Stops the relay's CPU count (the first call counts).
    pub fn finish(&self) {
        if let Some(cpu) = self.relay.and_then(|p| p.cpu_s()) {
            let _ = self.cpu_end.set(cpu);
        }
        self.sample_rss();
    }

    /// Notes the relay's resident memory if it is a new peak.
    pub fn sample_rss(&self) {
        if let Some(kib) = self.relay.and_then(|p| p.rss_kib()) {
            self.rss_peak_kib.fetch_max(kib, Ordering::Relaxed);
        }
    }

    /// When the clock started, if it has.
    pub fn start_ns(&self) -> Option<u64> {
        self.start_ns.get().copied()
    }

    /// Relay CPU seconds from [`start`](Self::start) to
    /// [`finish`](Self::finish), or to now when the run did not finish.
    pub fn relay_cpu_s(&self) -> Option<f64> {
        let start = *self.cpu_start.get()?;
        let end = match self.cpu_end.get() {
            Some(end) => *end,
            None => self.relay?.cpu_s()?,
        };
        Some(end - start)
    }

    /// The highest resident memory sampled, in KiB.
    pub fn relay_rss_peak_kib(&self) -> Option<u64> {
        match self.rss_peak_kib.load(Ordering::Relaxed) {
            0 => None,
            kib => Some(kib),
        }
    }

    /// Deliveries so far, duplicates included.
    pub fn deliveries(&self) -> u64 {
        self.tallies.iter().map(|t| lock(t).total()).sum()
    }

    /// Whether every receiver has every message.
    pub fn complete(&self) -> bool {
        self.tallies.iter().all(|t| lock(t).complete())
    }

    /// Deliveries every receiver together should get.
    pub fn expected_deliveries(&self) -> u64 {
        self.tallies.len() as u64 * u64::from(self.clients) * u64::from(self.messages)
    }

    /// Every receiver's tally added up.
    pub fn totals(&self) -> Totals {
        self.totals_of(0..self.tallies.len())
    }

    /// The tallies of receivers `receivers` added up.
    pub fn totals_of(&self, receivers: Range<usize>) -> Totals {
        let tallies: Vec<Tally> = self.tallies[receivers.clone()]
            .iter()
            .map(|t| lock(t).clone())
            .collect();
        Totals::sum(
            &tallies,
            receivers.len() as u64,
            u64::from(self.clients) * u64::from(self.messages),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_that_heard_nothing_count_as_lost() {
        let m = Measurements::new(2, 3, None);
        m.start();
        for index in 0..3 {
            m.record(
                0,
                Stamp {
                    sender: 1,
                    index,
                    sent_ns: 0,
                },
            );
        }
        let totals = m.totals();
        assert_eq!(m.expected_deliveries(), 12);
        assert_eq!(
            (totals.deliveries, totals.lost, totals.duplicated),
            (3, 9, 0)
        );
        assert!(!m.complete());
        assert_eq!(m.relay_cpu_s(), None);
    }

    #[test]
    fn this_process_as_the_relay_has_cpu_and_memory() {
        let m = Measurements::new(1, 1, Some(Proc::new(std::process::id())));
        m.start();
        m.finish();
        assert!(m.relay_cpu_s().unwrap() >= 0.0);
        assert!(m.relay_rss_peak_kib().unwrap() > 0);
    }
}
