//! `relay serve --metrics`: what happened shows up at /metrics, and the
//! listener stays cheap when it is flooded or out of file descriptors.

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use confab_tests::{skip_without, Relay};

fn get(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics port");
    // Bounds every scrape of these tests.
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn value(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
        .parse()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn metrics_count_logins_messages_and_deliveries() {
    let port = free_port();
    let relay = Relay::start_with(&["--metrics", &format!("127.0.0.1:{port}")], &[]);
    let mut alice = relay.register("alice").await;
    let mut bob = relay.register("bob").await;
    alice.joined("lobby").await;
    bob.joined("lobby").await;
    alice.client.send("lobby", "counted").await.unwrap();
    bob.message_in("lobby").await;
    alice.message_in("lobby").await;

    let response = get(port, "/metrics");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("content-type: text/plain; version=0.0.4"));
    assert_eq!(value(&response, "confab_registrations_total"), 2);
    assert_eq!(value(&response, "confab_messages_stored_total"), 1);
    assert_eq!(value(&response, "confab_sessions"), 2);
    assert_eq!(
        value(&response, "confab_deliveries_total"),
        2,
        "to alice and bob"
    );
    assert!(value(&response, "confab_connections_accepted_total") >= 2);
    assert!(get(port, "/nope").starts_with("HTTP/1.1 404"));
}

/// CPU seconds the process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name, which is in parentheses: utime and
    // stime are the 12th and 13th, in clock ticks.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    ticks as f64 / per_second
}

/// At its file limit, the metrics listener's accept fails (EMFILE) while
/// connections wait; it pauses between attempts instead of retrying in a
/// loop that kept a core busy, and scrapes are answered again once the
/// connections are gone.
#[tokio::test]
async fn the_metrics_listener_at_the_file_limit_does_not_spin() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        return skip_without("prlimit", "install util-linux");
    }
    let port = free_port();
    let relay = Relay::start_with(&["--metrics", &format!("127.0.0.1:{port}")], &[]);
    assert!(get(port, "/metrics").starts_with("HTTP/1.1 200 OK"));
    let pid = relay.pid();
    // Room for a few connections more than the relay has open now.
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let limit = open + 4;
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={limit}:")])
        .status()
        .expect("run prlimit");
    assert!(status.success(), "prlimit --nofile={limit}");

    let silent: Vec<_> = (0..40)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (cpu, wall) = (cpu_seconds(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy = (cpu_seconds(pid) - cpu) / wall.elapsed().as_secs_f64();
    assert!(
        busy < 0.2,
        "the relay used {:.0}% of a core with its metrics listener at the file limit",
        busy * 100.0
    );

    drop(silent);
    let started = Instant::now();
    let response = get(port, "/metrics");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "scrape answered after {:?}",
        started.elapsed()
    );
    assert!(
        relay.log().contains("metrics: accept failed"),
        "the failure is logged"
    );
}
