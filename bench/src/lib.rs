//! confab's load generator as a library: the relay under test (or a
//! `nats-server` to compare it with), the message stamps, what each
//! receiver saw, the workloads and the report. The `loadgen` binary only
//! parses flags and prints the report.
//!
//! Every client lives in this one process, so send and receive times come
//! from the same monotonic clock ([`stamp::now_ns`]) and latency needs no
//! clock synchronisation.

pub mod dialer;
pub mod history;
pub mod idle;
pub mod measure;
pub mod nats;
pub mod procfs;
pub mod report;
pub mod run;
pub mod slow;
pub mod stamp;
pub mod tally;
pub mod target;
pub mod workload;
