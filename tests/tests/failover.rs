//! Clients given several relays: a dead address costs a moment, not a
//! timeout, and a session whose relay goes away moves to the next one by
//! itself and says where it went.
//!
//! The relays here are independent (each its own SQLite folder), so only
//! the connection behaviour is checked; relays sharing one store resume
//! rooms across the move exactly as one relay does across a reconnect.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::client::{Config, Event, ATTEMPT_DELAY, CONNECT_TIMEOUT};
use common::trust::TrustMode;
use confab_tests::{bin, Relay, Session, PASSWORD, PATIENCE};

/// A loopback address with nothing listening: packets sent there are never
/// answered.
fn dead_address() -> String {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    let addr = socket.local_addr().expect("local address");
    drop(socket);
    addr.to_string()
}

/// One PEM file pinning every relay's certificate.
fn pin_all(relays: &[&Relay], dir: &Path) -> PathBuf {
    let mut pem = String::new();
    for relay in relays {
        pem.push_str(&std::fs::read_to_string(relay.cert()).expect("relay cert"));
    }
    let file = dir.join("relays.pem");
    std::fs::write(&file, pem).expect("write pins");
    file
}

/// A session configuration for `user` at `servers`, trusting `pins`, with
/// the harness's quick reconnects.
fn config(relay: &Relay, user: &str, servers: &str, pins: &Path) -> Config {
    let mut cfg = relay.config(user);
    cfg.server = servers.to_owned();
    cfg.trust = TrustMode::Pinned(pins.to_owned());
    cfg
}

/// The next `Connected` event's relay, failing on `Failed`.
async fn connected_to(session: &mut Session) -> String {
    session
        .wait_for("a connection", |e| match e {
            Event::Connected { server, .. } => Some(server.clone()),
            Event::Failed(e) => panic!("the session gave up: {e}"),
            _ => None,
        })
        .await
}

#[tokio::test]
async fn a_dead_first_address_costs_only_a_moment() {
    let live = Relay::start();
    live.register("alice").await.client.close().await;
    let dead = dead_address();
    let servers = format!("{dead},{}", live.server());

    let started = Instant::now();
    let mut alice = Session::connect(config(&live, "alice", &servers, &live.cert())).await;
    let took = started.elapsed();
    eprintln!("connected past a dead address in {took:?}");
    // No lower bound: where the system reports the refusal, the dead
    // address costs nothing at all.
    assert!(
        took < ATTEMPT_DELAY + CONNECT_TIMEOUT / 5,
        "connected in {took:?}: the dead address should cost about {ATTEMPT_DELAY:?}"
    );
    assert_eq!(connected_to(&mut alice).await, live.server());
    assert_eq!(alice.client.relay(), Some(live.server()));
    alice.joined("lobby").await;
    alice
        .client
        .send("lobby", "through the live one")
        .await
        .unwrap();
}

#[test]
fn client_cli_sends_through_the_live_relay_of_a_list_promptly() {
    let live = Relay::start();
    let home = tempfile::tempdir().expect("temp dir");
    let dead = dead_address();
    let run = |extra: &[&str]| {
        let started = Instant::now();
        let out = Command::new(bin("client-cli"))
            .env_remove("CONFAB_USER")
            .env("CONFAB_SERVER", format!("{dead},{}", live.server()))
            .env("CONFAB_PASSWORD", PASSWORD)
            .env("CONFAB_KNOWN_RELAYS", home.path().join("known_relays"))
            .env("RUST_LOG", "warn")
            .args(["--user", "bob", "--ca"])
            .arg(live.cert())
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .expect("run client-cli");
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "client-cli {extra:?}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        (String::from_utf8_lossy(&out.stdout).into_owned(), took)
    };

    let (_, took) = run(&["--register", "--send", "via the list"]);
    eprintln!("client-cli registered and sent past a dead address in {took:?}");
    assert!(
        took < CONNECT_TIMEOUT / 2,
        "registering and sending took {took:?}: the dead address held it up"
    );
    let (tail, took) = run(&["--tail", "1"]);
    assert!(tail.contains("bob: via the list"), "{tail}");
    assert!(took < CONNECT_TIMEOUT / 2, "tail took {took:?}");
}

#[test]
fn client_cli_help_mentions_several_relays() {
    let out = Command::new(bin("client-cli"))
        .arg("--help")
        .output()
        .expect("run client-cli");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("separated by commas"), "{help}");

    let out = Command::new(bin("client-cli"))
        .env_remove("CONFAB_SERVER")
        .args(["--server", "hostA:4433 hostB:4433", "--user", "x"])
        .output()
        .expect("run client-cli");
    assert_eq!(out.status.code(), Some(2), "a bad list is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("commas"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_to_the_next_relay_when_its_relay_goes_away() {
    let mut a = Relay::start();
    let mut b = Relay::start();
    // Independent stores: the account must exist on both.
    for relay in [&a, &b] {
        relay.register("alice").await.client.close().await;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let pins = pin_all(&[&a, &b], dir.path());
    let servers = format!("{},{}", a.server(), b.server());
    let mut alice = Session::connect(config(&a, "alice", &servers, &pins)).await;
    assert_eq!(connected_to(&mut alice).await, a.server());
    alice.joined("lobby").await;

    // Killed without a word: the session notices by its idle timeout.
    a.kill();
    let during = alice.client.send("lobby", "sent while moving");
    let (lost, next) = alice
        .wait_for("the move", |e| match e {
            Event::Reconnecting { lost, next, .. } => Some((lost.clone(), next.clone())),
            _ => None,
        })
        .await;
    assert_eq!(lost, Some(a.server()), "names the relay that went away");
    assert_eq!(next, b.server(), "and the one it tries next");
    assert_eq!(connected_to(&mut alice).await, b.server());
    assert_eq!(alice.client.relay(), Some(b.server()));
    tokio::time::timeout(PATIENCE, during)
        .await
        .expect("the send finished")
        .expect("a send made during the move is stored after it");
    let ack = alice.client.send("lobby", "on b").await.unwrap();
    let (page, _) = alice
        .client
        .history("lobby", common::frame::Page::Latest, 10)
        .await
        .unwrap();
    assert!(
        page.iter().any(|m| m.seq == ack.seq && m.body == "on b"),
        "b stored it: {page:?}"
    );

    // Round robin: with a back and b shutting down, the session returns to a.
    a.restart();
    let status = b.terminate().await;
    assert!(status.success(), "{status:?}");
    let (lost, next) = alice
        .wait_for("the move back", |e| match e {
            Event::Reconnecting { lost, next, .. } => Some((lost.clone(), next.clone())),
            _ => None,
        })
        .await;
    assert_eq!((lost, next), (Some(b.server()), a.server()));
    assert_eq!(connected_to(&mut alice).await, a.server());
    alice.client.send("lobby", "back on a").await.unwrap();
}

#[tokio::test]
async fn one_address_reconnects_as_it_always_did() {
    let mut relay = Relay::start();
    let mut alice = relay.register("alice").await;
    assert_eq!(connected_to(&mut alice).await, relay.server());
    alice.joined("lobby").await;
    relay.restart();
    alice.client.reconnect();
    let (lost, next) = alice
        .wait_for("a reconnect", |e| match e {
            Event::Reconnecting { lost, next, .. } => Some((lost.clone(), next.clone())),
            _ => None,
        })
        .await;
    assert_eq!((lost, next), (Some(relay.server()), relay.server()));
    assert_eq!(connected_to(&mut alice).await, relay.server());
}

#[tokio::test]
async fn a_requested_reconnect_stays_with_the_same_relay() {
    let a = Relay::start();
    let b = Relay::start();
    for relay in [&a, &b] {
        relay.register("alice").await.client.close().await;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let pins = pin_all(&[&a, &b], dir.path());
    // b first: the relay used need not be the first of the list.
    let servers = format!("{},{}", b.server(), a.server());
    let mut alice = Session::connect(config(&a, "alice", &servers, &pins)).await;
    assert_eq!(connected_to(&mut alice).await, b.server());
    alice.client.reconnect();
    let next = alice
        .wait_for("a reconnect", |e| match e {
            Event::Reconnecting { next, .. } => Some(next.clone()),
            _ => None,
        })
        .await;
    assert_eq!(next, b.server(), "b did not go away");
    assert_eq!(connected_to(&mut alice).await, b.server());
}
