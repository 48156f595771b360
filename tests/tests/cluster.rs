//! Several relays on one NATS JetStream store (a real nats-server): users
//! on different relays chat as if on one; history, rooms, DMs and presence
//! agree; relays ride out a NATS restart without losing what they acked.

use common::client::Event;
use common::frame::{Page, PresenceKind};
use common::names::{dm_room, LOBBY};
use confab_tests::nats::NatsServer;
use confab_tests::{Relay, Session};

async fn line_from(s: &mut Session, room: &str, from: &str) -> String {
    s.wait_for(&format!("a line from {from} in {room}"), |e| match e {
        Event::Message(m) if m.room == room && m.from == from => Some(m.body.clone()),
        _ => None,
    })
    .await
}

async fn presence(s: &mut Session, user: &str, kind: PresenceKind) {
    s.wait_for(&format!("{user} {kind:?}"), |e| match e {
        Event::Presence(p) if p.user == user && p.kind == kind => Some(()),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn users_on_two_relays_share_rooms_dms_presence_and_history() {
    let nats = NatsServer::start();
    let relays = Relay::cluster(&nats, 2, &[]);
    let (a, b) = (&relays[0], &relays[1]);

    let mut alice = a.register("alice").await;
    alice.joined(LOBBY).await;
    let mut bob = b.register("bob").await;
    bob.joined(LOBBY).await;
    presence(&mut alice, "bob", PresenceKind::Online).await;

    // Lobby, both ways.
    alice
        .client
        .send(LOBBY, "hi bob, I am on relay A")
        .await
        .unwrap();
    assert_eq!(
        line_from(&mut bob, LOBBY, "alice").await,
        "hi bob, I am on relay A"
    );
    bob.client.send(LOBBY, "hi alice, B here").await.unwrap();
    assert_eq!(
        line_from(&mut alice, LOBBY, "bob").await,
        "hi alice, B here"
    );
    let members = alice.client.members(LOBBY).await.unwrap();
    assert!(
        members.iter().any(|m| m.user == "bob" && m.online),
        "bob is online, on the other relay: {members:?}"
    );

    // A channel made on A, joined from B.
    alice.client.create_room("dev", false).await.unwrap();
    alice.joined("dev").await;
    bob.client.join("dev").await.unwrap();
    bob.joined("dev").await;
    alice
        .wait_for("bob joined dev", |e| match e {
            Event::Presence(p)
                if p.kind == PresenceKind::Joined
                    && p.user == "bob"
                    && p.room.as_deref() == Some("dev") =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
    alice.client.send("dev", "deploy at five").await.unwrap();
    assert_eq!(line_from(&mut bob, "dev", "alice").await, "deploy at five");

    // A DM opened on B reaches alice's session on A.
    let dm = dm_room("alice", "bob");
    bob.client.open_dm("alice").await.unwrap();
    bob.joined(&dm).await;
    bob.client.send(&dm, "psst").await.unwrap();
    alice.joined(&dm).await;
    // The DM's first line arrives live or in the room's first page.
    let page = alice.client.history(&dm, Page::Latest, 10).await.unwrap();
    assert_eq!(
        page.0.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["psst"]
    );

    // History read through either relay is the same, in one order.
    let carol = b.register("carol").await;
    let via_b = carol
        .client
        .history(LOBBY, Page::Latest, 50)
        .await
        .unwrap()
        .0;
    let via_a = alice
        .client
        .history(LOBBY, Page::Latest, 50)
        .await
        .unwrap()
        .0;
    let bodies: Vec<&str> = via_b.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["hi bob, I am on relay A", "hi alice, B here"]);
    assert_eq!(
        via_a.iter().map(|m| (m.seq, &m.body)).collect::<Vec<_>>(),
        via_b.iter().map(|m| (m.seq, &m.body)).collect::<Vec<_>>()
    );
    let error = carol.client.history("dev", Page::Latest, 10).await;
    assert!(error.is_err(), "carol is not in dev: {error:?}");

    // bob leaves: alice's relay hears it.
    drop(bob);
    presence(&mut alice, "bob", PresenceKind::Offline).await;
}

#[tokio::test]
async fn relays_ride_out_a_nats_restart_and_lose_nothing_acknowledged() {
    let mut nats = NatsServer::start();
    let relays = Relay::cluster(&nats, 2, &[]);
    let mut alice = relays[0].register("alice").await;
    alice.joined(LOBBY).await;
    let mut bob = relays[1].register("bob").await;
    bob.joined(LOBBY).await;

    let mut acked = Vec::new();
    for i in 0..20 {
        acked.push(
            alice
                .client
                .send(LOBBY, &format!("before {i}"))
                .await
                .unwrap()
                .seq,
        );
    }
    nats.restart();
    // Sends during and after the restart: each is acknowledged once NATS
    // is back (the client resends what timed out, with the same id).
    let mut pending = Vec::new();
    for i in 0..20 {
        pending.push(alice.client.send(LOBBY, &format!("after {i}")));
    }
    for p in pending {
        acked.push(p.await.expect("acknowledged after NATS came back").seq);
    }
    let mut seen = Vec::new();
    while seen.len() < 40 {
        let m = bob.message_in(LOBBY).await;
        seen.push((m.seq, m.body));
    }
    let bodies: Vec<&str> = seen.iter().map(|(_, b)| b.as_str()).collect();
    let expected: Vec<String> = (0..20)
        .map(|i| format!("before {i}"))
        .chain((0..20).map(|i| format!("after {i}")))
        .collect();
    assert_eq!(bodies, expected, "bob saw every line once, in order");
    assert_eq!(seen.iter().map(|(s, _)| *s).collect::<Vec<_>>(), acked);

    let (history, _) = bob.client.history(LOBBY, Page::Latest, 100).await.unwrap();
    assert_eq!(history.len(), 40, "each acknowledged message stored once");
}

fn relay_cmd(args: &[&str]) -> std::process::Output {
    std::process::Command::new(confab_tests::bin("relay"))
        .args(args)
        .env("CONFAB_PASSWORD", confab_tests::PASSWORD)
        .output()
        .expect("run relay")
}

#[tokio::test]
async fn accounts_are_administered_on_nats_while_relays_run() {
    let nats = NatsServer::start();
    let relays = Relay::cluster(&nats, 2, &["--registration", "closed"]);
    let url = nats.url();
    let out = relay_cmd(&["user", "add", "dave", "--nats", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut dave = relays[1].login("dave").await;
    dave.joined(LOBBY).await;
    let out = relay_cmd(&["user", "add", "DAVE", "--nats", &url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is taken"));
    let out = relay_cmd(&["user", "list", "--nats", &url]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("dave\t"));
}

#[test]
fn a_missing_nats_or_one_without_jetstream_is_a_clear_error() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    assert!(relay_cmd(&["gen-cert", "--out", certs.to_str().unwrap()])
        .status
        .success());
    let serve = |url: &str| {
        relay_cmd(&[
            "serve",
            "--nats",
            url,
            "--listen",
            "127.0.0.1:0",
            "--cert",
            certs.join("cert.pem").to_str().unwrap(),
            "--key",
            certs.join("key.pem").to_str().unwrap(),
        ])
    };
    let out = serve(&format!("nats://127.0.0.1:{}", free()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("cannot reach NATS") && err.contains("is nats-server running"),
        "{err}"
    );

    let port = free();
    let mut plain = std::process::Command::new(confab_tests::nats::server_binary())
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + confab_tests::PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nats-server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = serve(&url);
    let _ = plain.kill();
    let _ = plain.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("does not offer JetStream") && err.contains("-js"),
        "{err}"
    );
}

#[tokio::test]
async fn relays_log_in_to_nats_with_a_password_and_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path().join("nats-tls");
    assert!(relay_cmd(&["gen-cert", "--out", dir.to_str().unwrap()])
        .status
        .success());
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let nats = NatsServer::start_with(&format!(
        "authorization {{ user: confab, password: \"nats secret 1\" }}\ntls {{ cert_file: {cert:?}, key_file: {key:?} }}"
    ));
    let url = format!("tls://127.0.0.1:{}", nats.port);
    let ca = cert.to_str().unwrap();

    let relay = Relay::start_with(
        &["--nats", &url, "--nats-user", "confab", "--nats-ca", ca],
        &[("CONFAB_NATS_PASSWORD", "nats secret 1")],
    );
    let mut alice = relay.register("alice").await;
    alice.joined(LOBBY).await;
    alice.client.send(LOBBY, "over TLS to NATS").await.unwrap();

    // A wrong password is refused, clearly, and the relay does not start.
    let out = std::process::Command::new(confab_tests::bin("relay"))
        .args([
            "user",
            "list",
            "--nats",
            &url,
            "--nats-user",
            "confab",
            "--nats-ca",
            ca,
        ])
        .env("CONFAB_NATS_PASSWORD", "wrong")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot reach NATS") && err.contains("credentials"),
        "{err}"
    );
    assert!(!err.contains("wrong"), "the password is not echoed: {err}");
}

/// A session given every relay of the cluster, first choice first.
async fn session_on(relays: &[&Relay], user: &str, register: bool) -> Session {
    let mut cfg = relays[0].config(user);
    cfg.server = relays
        .iter()
        .map(|r| r.server())
        .collect::<Vec<_>>()
        .join(",");
    cfg.register = register;
    Session::connect(cfg).await
}

#[tokio::test]
async fn clients_fail_over_when_their_relay_dies_and_resume_with_nothing_lost_or_doubled() {
    let nats = NatsServer::start();
    let mut relays = Relay::cluster(&nats, 2, &[]);
    let (a, b) = (relays[0].server(), relays[1].server());
    // alice writes and carol reads through A; bob reads through B.
    let mut alice = session_on(&[&relays[0], &relays[1]], "alice", true).await;
    let mut carol = session_on(&[&relays[0], &relays[1]], "carol", true).await;
    let mut bob = session_on(&[&relays[1], &relays[0]], "bob", true).await;
    for s in [&mut alice, &mut carol, &mut bob] {
        s.joined(LOBBY).await;
    }
    assert_eq!(alice.client.relay(), Some(a.clone()));
    assert_eq!(bob.client.relay(), Some(b.clone()));

    // A dies (SIGKILL) in the middle of alice's burst of 200 lines.
    const LINES: usize = 200;
    let mut pending = Vec::new();
    for i in 0..LINES {
        pending.push(alice.client.send(LOBBY, &format!("line {i}")));
        if i == LINES / 2 {
            relays[0].kill();
        }
    }
    let mut acked = Vec::new();
    for p in pending {
        let ack = tokio::time::timeout(3 * confab_tests::PATIENCE, p)
            .await
            .expect("every line is acknowledged after the move")
            .expect("acknowledged");
        acked.push(ack.seq);
    }
    assert!(
        acked.windows(2).all(|w| w[0] < w[1]),
        "one order: {acked:?}"
    );
    assert_eq!(alice.client.relay(), Some(b.clone()), "alice moved to B");

    // Every reader sees each line once, in order: bob live on B, carol
    // after her own move (catch-up from history, then live).
    let expected: Vec<String> = (0..LINES).map(|i| format!("line {i}")).collect();
    for (who, s) in [("bob", &mut bob), ("carol", &mut carol)] {
        let mut got = Vec::new();
        while got.len() < LINES {
            got.push(line_from(s, LOBBY, "alice").await);
        }
        assert_eq!(got, expected, "{who} saw every line once, in order");
        let extra = s.drain(std::time::Duration::from_millis(300)).await;
        assert!(
            !extra
                .iter()
                .any(|e| matches!(e, Event::Message(m) if m.from == "alice")),
            "{who} saw a line twice: {extra:?}"
        );
    }
    assert_eq!(carol.client.relay(), Some(b.clone()), "carol moved to B");

    let (history, _) = bob.client.history(LOBBY, Page::Latest, 200).await.unwrap();
    let stored: Vec<u64> = history.iter().map(|m| m.seq).collect();
    assert_eq!(stored, acked, "each acknowledged line stored exactly once");
}
