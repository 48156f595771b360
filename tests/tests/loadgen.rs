//! `loadgen` as `make bench` runs it, at small sizes: it starts its own
//! relay, speaks the real protocol, and prints one JSON line that says
//! nothing was lost or duplicated (or, for idle and history, that every
//! connection and page was what it should be).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use confab_tests::bin;
use serde_json::Value;

/// loadgen bounds itself with `--timeout 60`; this only catches a loadgen
/// that ignores its own limit.
const LIMIT: Duration = Duration::from_secs(90);

/// Runs loadgen with `args`; returns its exit code and its JSON line.
fn loadgen(args: &[&str]) -> (Option<i32>, Value) {
    let mut child = Command::new(bin("loadgen"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start loadgen");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    // Both pipes are drained on threads so a chatty run cannot block.
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for loadgen") {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "loadgen {args:?} ran past {LIMIT:?}; stderr:\n{}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().expect("stdout thread");
    let stderr = err.join().expect("stderr thread");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "loadgen {args:?} must print one line ({status}):\n{stdout}\n--- stderr\n{stderr}"
    );
    let report = serde_json::from_str(lines[0])
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n--- stderr\n{stderr}", lines[0]));
    if !status.success() {
        eprintln!("--- loadgen stderr\n{stderr}");
    }
    (status.code(), report)
}

#[track_caller]
fn assert_clean(code: Option<i32>, report: &Value) {
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicated"], 0, "{report}");
    assert_eq!(report["timed_out"], false, "{report}");
    assert_eq!(code, Some(0), "{report}");
    for p in ["p50", "p99", "p999", "max"] {
        assert!(report["latency_us"][p].is_u64(), "latency_us.{p}: {report}");
    }
    assert!(report["relay_cpu_s"].is_f64(), "{report}");
    assert!(
        report["relay_rss_kib"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
}

#[test]
fn fanout_delivers_every_message_to_every_client_once() {
    let (code, report) = loadgen(&[
        "fanout",
        "--clients",
        "4",
        "--messages",
        "25",
        "--bytes",
        "64",
        "--timeout",
        "60",
    ]);
    assert_clean(code, &report);
    assert_eq!(report["workload"], "fanout");
    assert_eq!(report["deliveries"], 4 * 4 * 25, "{report}");
    assert_eq!(report["bytes"], 64);
    assert!(
        report["deliveries_per_s"].as_f64().unwrap() > 0.0,
        "{report}"
    );
}

#[test]
fn rate_sends_for_the_time_asked_and_loses_nothing() {
    let (code, report) = loadgen(&[
        "rate",
        "--clients",
        "3",
        "--rate",
        "20",
        "--seconds",
        "2",
        "--timeout",
        "60",
    ]);
    assert_clean(code, &report);
    assert_eq!(report["workload"], "rate");
    assert_eq!(report["messages"], 40, "{report}");
    assert_eq!(report["deliveries"], 3 * 3 * 40, "{report}");
    assert!(report["seconds"].as_f64().unwrap() >= 1.9, "{report}");
    // Every send was acknowledged, after it was made.
    let ack = &report["ack_us"];
    assert!(ack["p50"].as_u64().unwrap() > 0, "{report}");
    assert!(ack["max"].as_u64() >= ack["p50"].as_u64(), "{report}");
}

#[test]
fn slow_member_stalls_and_catches_up_with_nothing_lost() {
    let (code, report) = loadgen(&[
        "slow",
        "--clients",
        "3",
        "--rate",
        "20",
        "--seconds",
        "1",
        "--timeout",
        "60",
    ]);
    assert_clean(code, &report);
    assert_eq!(report["workload"], "slow");
    // 2 s of warm-up and three phases of 1 s, 20 a second.
    assert_eq!(report["messages"], 100, "{report}");
    assert_eq!(report["deliveries"], 3 * 3 * 100, "{report}");
    let slow = &report["slow"];
    assert_eq!(slow["deliveries"], 3 * 100, "{report}");
    assert_eq!(slow["lost"], 0, "{report}");
    assert_eq!(slow["duplicated"], 0, "{report}");
    assert!(slow["paused_s"].as_f64().unwrap() >= 0.9, "{report}");
    for phase in ["before_us", "stalled_us", "catching_up_us"] {
        assert!(
            report[phase]["p99"].as_u64().unwrap() > 0,
            "{phase}: {report}"
        );
    }
}

#[test]
fn idle_connections_log_in_and_stay() {
    let (code, report) = loadgen(&[
        "idle",
        "--connections",
        "40",
        "--accounts",
        "3",
        "--per-endpoint",
        "16",
        "--hold",
        "1",
        "--timeout",
        "60",
    ]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["workload"], "idle");
    assert_eq!(report["accounts_made"], "store");
    assert_eq!(report["endpoints"], 3, "{report}");
    assert_eq!(report["connected"], 40, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["dropped"], 0, "{report}");
    assert!(report["connects_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        report["relay_rss_idle_kib"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(report["relay_rss_per_conn_kib"].is_f64(), "{report}");
    assert!(report["relay_cpu_idle_s"].is_f64(), "{report}");
}

#[test]
fn history_shows_the_newest_page_and_pages_back_in_order() {
    let (code, report) = loadgen(&[
        "history",
        "--messages",
        "3000",
        "--logins",
        "3",
        "--pages",
        "4",
        "--requests",
        "20",
        "--timeout",
        "60",
    ]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["workload"], "history");
    assert_eq!(report["messages"], 3000);
    assert_eq!(report["logins"], 3, "{report}");
    assert_eq!(report["requests"], 20, "{report}");
    assert_eq!(report["wrong"], 0, "{report}");
    assert!(report["fill_s"].is_f64(), "{report}");
    for figure in ["login_us", "shown_us", "latest_us", "page_back_us"] {
        assert!(
            report[figure]["p50"].as_u64().unwrap() > 0,
            "{figure}: {report}"
        );
    }
    // Showing the newest page includes logging in.
    assert!(
        report["shown_us"]["p50"].as_u64() >= report["login_us"]["p50"].as_u64(),
        "{report}"
    );
}

#[test]
fn a_run_that_cannot_finish_in_time_says_so_and_fails() {
    let (code, report) = loadgen(&[
        "rate",
        "--clients",
        "2",
        "--rate",
        "10",
        "--seconds",
        "30",
        "--timeout",
        "3",
    ]);
    assert_eq!(report["timed_out"], true, "{report}");
    assert!(report["lost"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(code, Some(1), "{report}");
}
