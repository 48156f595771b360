//! The one JSON line a run prints. `loadgen --help` explains each field.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::measure::Measurements;
use crate::stamp::now_ns;
use crate::workload::Params;

/// A run's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What carried the messages: `confab`, `nats` or `nats-tls`.
    pub broker: &'static str,
    /// `fanout` or `rate`.
    pub workload: &'static str,
    /// Clients, each sending and receiving.
    pub clients: u32,
    /// Messages each client sends.
    pub messages: u32,
    /// Body size in bytes.
    pub bytes: usize,
    /// Messages per second each client sends (`rate` only).
    pub rate: Option<u32>,
    /// From the start of the clock to the last delivery (or to the end of a
    /// run cut short).
    pub seconds: f64,
    /// Messages received by all clients, duplicates included.
    pub deliveries: u64,
    /// `deliveries / seconds`.
    pub deliveries_per_s: f64,
    /// Expected deliveries that never came.
    pub lost: u64,
    /// Deliveries of a message its receiver already had.
    pub duplicated: u64,
    /// Send-to-delivery latency over all deliveries.
    pub latency_us: Latency,
    /// Send-to-ack latency over all acknowledged sends, where timed (the
    /// steady workloads against the relay).
    pub ack_us: Option<Latency>,
    /// CPU seconds the relay used while the clock ran.
    pub relay_cpu_s: Option<f64>,
    /// The relay's peak resident memory, sampled every 100 ms.
    pub relay_rss_kib: Option<u64>,
    /// Whether the run hit its time limit.
    pub timed_out: bool,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Slowest delivery.
    pub max: u64,
}

impl Latency {
    /// The percentiles of `h` (all 0 when it is empty).
    pub fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Rounds to `places` decimals, so the line shows what was measured, not
/// float noise.
pub fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

impl Report {
    /// The report of a run of `params`, from what `m` measured.
    pub fn new(params: &Params, m: &Measurements, timed_out: bool) -> Report {
        let totals = m.totals();
        let seconds = match (m.start_ns(), totals.last_ns) {
            (Some(start), Some(last)) if !timed_out => last.saturating_sub(start),
            (Some(start), _) => now_ns().saturating_sub(start),
            (None, _) => 0,
        } as f64
            / 1e9;
        let per_s = if seconds > 0.0 {
            totals.deliveries as f64 / seconds
        } else {
            0.0
        };
        Report {
            broker: "confab",
            workload: params.workload.name(),
            clients: params.clients,
            messages: params.messages(),
            bytes: params.bytes,
            rate: params.workload.rate(),
            seconds: round(seconds, 3),
            deliveries: totals.deliveries,
            deliveries_per_s: round(per_s, 1),
            lost: totals.lost,
            duplicated: totals.duplicated,
            latency_us: Latency::of(&totals.latency),
            ack_us: m.acks().as_ref().map(Latency::of),
            relay_cpu_s: m.relay_cpu_s().map(|s| round(s, 2)),
            relay_rss_kib: m.relay_rss_peak_kib(),
            timed_out,
        }
    }

    /// Whether the run passed: nothing lost, nothing twice, in time.
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && !self.timed_out
    }

    /// The JSON line, without its newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::Stamp;
    use crate::workload::Workload;

    #[test]
    fn a_complete_run_reports_every_field() {
        let params = Params {
            clients: 2,
            bytes: 64,
            workload: Workload::Fanout {
                messages: 1,
                window: 1,
            },
        };
        let m = Measurements::new(2, 1, None);
        m.start();
        for receiver in 0..2 {
            for sender in 0..2 {
                m.record(
                    receiver,
                    Stamp {
                        sender,
                        index: 0,
                        sent_ns: 0,
                    },
                );
            }
        }
        let report = Report::new(&params, &m, false);
        assert!(report.ok());
        assert_eq!(report.deliveries, 4);
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        for field in [
            "broker",
            "workload",
            "clients",
            "messages",
            "bytes",
            "rate",
            "seconds",
            "deliveries",
            "deliveries_per_s",
            "lost",
            "duplicated",
            "latency_us",
            "ack_us",
            "relay_cpu_s",
            "relay_rss_kib",
            "timed_out",
        ] {
            assert!(json.get(field).is_some(), "{field} missing");
        }
        for p in ["p50", "p99", "p999", "max"] {
            assert!(json["latency_us"][p].is_u64(), "latency_us.{p}");
        }
        assert_eq!(json["workload"], "fanout");
        assert_eq!(json["broker"], "confab");
        assert!(json["rate"].is_null());
    }

    #[test]
    fn a_timed_out_run_fails() {
        let params = Params {
            clients: 1,
            bytes: 64,
            workload: Workload::Rate {
                rate: 1,
                seconds: 1,
            },
        };
        let m = Measurements::new(1, 1, None);
        let report = Report::new(&params, &m, true);
        assert!(!report.ok());
        assert_eq!((report.lost, report.rate), (1, Some(1)));
    }
}
