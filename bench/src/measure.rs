//! Everything a run has measured so far. It lives outside the run's future,
//! so a run cut short by its time limit still reports what it saw.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use crate::procfs::Proc;
use crate::stamp::{now_ns, Stamp};
use crate::tally::{Tally, Totals};

/// The measurements of one run of `clients` clients that each send
/// `messages` messages to all of them.
#[derive(Debug)]
pub struct Measurements {
    clients: u32,
    messages: u32,
    /// One per receiver, made up front: a receiver that never connects
    /// still counts, with everything lost.
    tallies: Vec<Mutex<Tally>>,
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
        Measurements {
            clients,
            messages,
            tallies: (0..clients)
                .map(|_| Mutex::new(Tally::new(clients, messages)))
                .collect(),
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
        lock(&self.tallies[receiver]).record(stamp, now);
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
        u64::from(self.clients) * u64::from(self.clients) * u64::from(self.messages)
    }

    /// Every receiver's tally added up.
    pub fn totals(&self) -> Totals {
        let tallies: Vec<Tally> = self.tallies.iter().map(|t| lock(t).clone()).collect();
        Totals::sum(
            &tallies,
            u64::from(self.clients),
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
