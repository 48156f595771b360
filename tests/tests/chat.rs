//! Conversations through the real relay: the original program's lobby,
//! rooms, private rooms, DMs, presence and several devices per user.

use common::client::{Event, RequestError};
use common::frame::{ErrorCode, Page, PresenceKind};
use confab_tests::{messages, Relay};
use std::time::Duration;

#[tokio::test]
async fn three_users_in_lobby_everyone_hears_everyone_and_a_leaver_is_announced() {
    let relay = Relay::start();
    let mut alice = relay.register("alice").await;
    alice.joined("lobby").await;
    let mut bob = relay.register("bob").await;
    bob.joined("lobby").await;
    let mut carol = relay.register("carol").await;
    carol.joined("lobby").await;

    let senders = [
        ("alice", "hi all"),
        ("bob", "hello alice"),
        ("carol", "hey both"),
    ];
    for (who, text) in senders {
        let s = match who {
            "alice" => &alice,
            "bob" => &bob,
            _ => &carol,
        };
        s.client.send("lobby", text).await.expect("acked");
        for reader in [&mut alice, &mut bob, &mut carol] {
            let m = reader.message_in("lobby").await;
            assert_eq!((m.from.as_str(), m.body.as_str()), (who, text));
        }
    }

    bob.client.close().await;
    for reader in [&mut alice, &mut carol] {
        reader
            .wait_for("bob has left", |e| match e {
                Event::Presence(p) if p.user == "bob" && p.kind == PresenceKind::Offline => {
                    Some(())
                }
                _ => None,
            })
            .await;
    }
    alice.client.send("lobby", "bye bob").await.unwrap();
    assert_eq!(carol.message_in("lobby").await.body, "bye bob");
}

#[tokio::test]
async fn rooms_and_dms_reach_members_only() {
    let relay = Relay::start();
    let mut alice = relay.register("alice").await;
    let mut bob = relay.register("bob").await;
    let mut eve = relay.register("eve").await;
    for s in [&mut alice, &mut bob, &mut eve] {
        s.joined("lobby").await;
    }

    alice.client.create_room("dev", false).await.unwrap();
    alice.joined("dev").await;
    bob.client.join("dev").await.unwrap();
    bob.joined("dev").await;
    alice.client.send("dev", "standup in 5").await.unwrap();
    assert_eq!(bob.message_in("dev").await.body, "standup in 5");

    let dm = alice.client.open_dm("bob").await.unwrap();
    assert_eq!(dm.name, "@alice+bob");
    alice.client.send(&dm.name, "psst").await.unwrap();
    let got = bob
        .wait_for("the DM", |e| match e {
            Event::Message(m) if m.room == "@alice+bob" => Some(m.body.clone()),
            Event::Joined { room, recent, .. } if room == "@alice+bob" && !recent.is_empty() => {
                Some(recent[0].body.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(got, "psst");

    let heard = eve.drain(Duration::from_millis(500)).await;
    assert!(messages(&heard).is_empty(), "eve heard {heard:?}");

    // Nor can eve read either room; the DM of others is not even said to
    // exist, so nobody can map who writes to whom.
    for (room, code) in [
        ("dev", ErrorCode::NotMember),
        ("@alice+bob", ErrorCode::NoSuchRoom),
    ] {
        let err = eve
            .client
            .history(room, Page::Latest, 50)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RequestError::Refused { code: c, .. } if c == code),
            "{room}: {err:?}"
        );
    }
    let err = eve.client.send("dev", "let me in").await.unwrap_err();
    assert!(
        matches!(
            err,
            RequestError::Refused {
                code: ErrorCode::NotMember,
                ..
            }
        ),
        "{err:?}"
    );
    let err = eve.client.join("@alice+bob").await.unwrap_err();
    assert!(
        matches!(
            err,
            RequestError::Refused {
                code: ErrorCode::NoSuchRoom,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn private_rooms_need_an_invite() {
    let relay = Relay::start();
    let mut alice = relay.register("alice").await;
    let mut bob = relay.register("bob").await;
    alice.joined("lobby").await;
    bob.joined("lobby").await;
    alice.client.create_room("secret", true).await.unwrap();
    alice.client.send("secret", "the plan").await.unwrap();

    // Until invited, bob is answered about "secret" exactly as about a
    // room that does not exist: code and message.
    let refused = |err: RequestError| match err {
        RequestError::Refused { code, message } => (code, message.replace("nowhere", "secret")),
        other => panic!("{other:?}"),
    };
    let missing = refused(bob.client.join("nowhere").await.unwrap_err());
    assert_eq!(missing.0, ErrorCode::NoSuchRoom);
    assert_eq!(
        refused(bob.client.join("secret").await.unwrap_err()),
        missing
    );
    let missing = refused(
        bob.client
            .history("nowhere", Page::Latest, 10)
            .await
            .unwrap_err(),
    );
    let err = bob
        .client
        .history("secret", Page::Latest, 10)
        .await
        .unwrap_err();
    assert_eq!(refused(err), missing);
    let missing = refused(bob.client.members("nowhere").await.unwrap_err());
    assert_eq!(
        refused(bob.client.members("secret").await.unwrap_err()),
        missing
    );
    let missing = refused(bob.client.send("nowhere", "hi").await.unwrap_err());
    assert_eq!(
        refused(bob.client.send("secret", "hi").await.unwrap_err()),
        missing
    );
    let (_, public) = bob.client.rooms().await.unwrap();
    assert!(
        public.iter().all(|r| r.name != "secret"),
        "private rooms are not listed"
    );

    alice.client.invite("secret", "bob").await.unwrap();
    bob.client.join("secret").await.unwrap();
    let recent = bob.joined("secret").await;
    assert_eq!(
        recent.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["the plan"]
    );
    let members = alice.client.members("secret").await.unwrap();
    assert_eq!(
        members
            .iter()
            .map(|m| (m.user.as_str(), m.online))
            .collect::<Vec<_>>(),
        [("alice", true), ("bob", true)]
    );

    bob.client.leave("secret").await.unwrap();
    alice
        .wait_for("bob left secret", |e| match e {
            Event::Presence(p) if p.user == "bob" && p.kind == PresenceKind::Left => p.room.clone(),
            _ => None,
        })
        .await;
    let err = bob.client.leave("lobby").await.unwrap_err();
    assert!(
        matches!(
            err,
            RequestError::Refused {
                code: ErrorCode::Forbidden,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn every_device_of_a_user_gets_everything() {
    let relay = Relay::start();
    let mut phone = relay.register("alice").await;
    let mut laptop = relay.login("alice").await;
    let mut bob = relay.register("bob").await;
    for s in [&mut phone, &mut laptop, &mut bob] {
        s.joined("lobby").await;
    }
    phone.client.send("lobby", "from my phone").await.unwrap();
    for s in [&mut phone, &mut laptop, &mut bob] {
        assert_eq!(s.message_in("lobby").await.body, "from my phone");
    }
    // A room joined on one device appears on the other.
    laptop.client.create_room("ops", false).await.unwrap();
    phone.joined("ops").await;
}

#[tokio::test]
async fn history_pages_back_to_the_first_message() {
    let relay = Relay::start_with(&["--rate-limit", "1000"], &[]);
    let mut alice = relay.register("alice").await;
    alice.joined("lobby").await;
    let sends: Vec<_> = (1..=120)
        .map(|i| alice.client.send("lobby", &format!("m{i}")))
        .collect();
    for s in sends {
        s.await.unwrap();
    }
    let bob = relay.register("bob").await;
    let (latest, more) = bob.client.history("lobby", Page::Latest, 50).await.unwrap();
    assert!(more);
    assert_eq!(latest.len(), 50);
    assert_eq!(latest.last().unwrap().body, "m120");
    let mut all = latest;
    let mut more = true;
    while more {
        let before = all[0].seq;
        let (mut page, m) = bob
            .client
            .history("lobby", Page::Before(before), 50)
            .await
            .unwrap();
        more = m;
        page.append(&mut all);
        all = page;
    }
    let bodies: Vec<String> = all.iter().map(|m| m.body.clone()).collect();
    let expected: Vec<String> = (1..=120).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, expected, "in order, complete, once each");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
}

/// A client that vanishes without a goodbye (killed, unplugged) is noticed
/// by the idle timeout, and the others hear that it left.
#[tokio::test]
async fn a_vanished_client_is_noticed_within_seconds() {
    let relay = Relay::start();
    relay.register("ghost").await.client.close().await;
    let mut alice = relay.register("alice").await;
    alice.joined("lobby").await;

    let mut ghost = std::process::Command::new(confab_tests::bin("client-cli"))
        .args([
            "--server",
            &relay.server(),
            "--user",
            "ghost",
            "--interactive",
            "--ca",
        ])
        .arg(relay.cert())
        .env("CONFAB_PASSWORD", confab_tests::PASSWORD)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start client-cli");
    alice
        .wait_for("ghost online", |e| match e {
            Event::Presence(p) if p.user == "ghost" && p.kind == PresenceKind::Online => Some(()),
            _ => None,
        })
        .await;
    // SIGKILL: the process sends nothing more, not even a QUIC close.
    ghost.kill().unwrap();
    ghost.wait().unwrap();
    let killed = std::time::Instant::now();
    alice
        .wait_for("ghost offline", |e| match e {
            Event::Presence(p) if p.user == "ghost" && p.kind == PresenceKind::Offline => Some(()),
            _ => None,
        })
        .await;
    let noticed = killed.elapsed();
    assert!(
        noticed >= common::limits::IDLE_TIMEOUT / 2
            && noticed < common::limits::IDLE_TIMEOUT + Duration::from_secs(4),
        "noticed after {noticed:?}; the idle timeout is {:?}",
        common::limits::IDLE_TIMEOUT
    );
}

/// Runs `relay user ARGS` on the relay's store, beside the running relay,
/// as an operator would; the new password, if any, from the environment.
fn operator(relay: &Relay, args: &[&str], password: Option<&str>) {
    let mut cmd = std::process::Command::new(confab_tests::bin("relay"));
    cmd.arg("user").args(args).args(relay.store_args());
    for var in ["CONFAB_DATA", "CONFAB_NATS", "CONFAB_PASSWORD"] {
        cmd.env_remove(var);
    }
    if let Some(p) = password {
        cmd.env("CONFAB_PASSWORD", p);
    }
    let out = cmd.output().expect("relay user runs");
    assert!(
        out.status.success(),
        "relay user {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How a connection ended: its application close code, within `within`.
async fn closed_with(wire: &common::wire::Wire, within: Duration) -> Option<u64> {
    match tokio::time::timeout(within, wire.conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => Some(close.error_code.into_inner()),
        Ok(other) => panic!("closed otherwise: {other}"),
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_changed_password_or_a_deleted_account_ends_its_open_sessions() {
    use common::frame::{close, ClientFrame, ServerFrame};
    let relay = Relay::start();
    let phone = relay.wire_logged_in("bob", true).await;
    let laptop = relay.wire_logged_in("bob", false).await;
    let mut carol = relay.wire_logged_in("carol", true).await;

    operator(&relay, &["passwd", "bob"], Some("a brand new password"));
    let changed = std::time::Instant::now();
    for wire in [&phone, &laptop] {
        assert_eq!(
            closed_with(wire, Duration::from_secs(5)).await,
            Some(close::ACCOUNT_CHANGED.into()),
            "bob's sessions end with the close code that says why"
        );
    }
    eprintln!(
        "sessions ended {:?} after relay user passwd returned",
        changed.elapsed()
    );
    carol
        .write_frame(&ClientFrame::Ping { req: 9 })
        .await
        .unwrap();
    loop {
        // bob going offline may come first.
        match carol.read_frame().await.expect("carol's session stays") {
            Some(ServerFrame::Pong { req: 9 }) => break,
            Some(ServerFrame::Presence(_)) => {}
            other => panic!("carol got {other:?}"),
        }
    }

    let mut again = relay.wire().await;
    again
        .login("confab-tests", "bob", "a brand new password", false)
        .await
        .expect("the new password works");
    operator(&relay, &["del", "bob"], None);
    assert_eq!(
        closed_with(&again, Duration::from_secs(5)).await,
        Some(close::ACCOUNT_CHANGED.into())
    );
    assert_eq!(closed_with(&carol, Duration::from_millis(200)).await, None);
}

#[tokio::test]
async fn leaving_a_dm_refuses_it_until_one_opens_it_again() {
    let relay = Relay::start();
    let mut alice = relay.register("alice").await;
    let mut bob = relay.register("bob").await;
    alice.joined("lobby").await;
    bob.joined("lobby").await;
    let dm = alice.client.open_dm("bob").await.unwrap().name;
    alice.client.send(&dm, "hi bob").await.unwrap();
    bob.wait_for("the DM", |e| match e {
        Event::Joined { room, .. } if *room == dm => Some(()),
        _ => None,
    })
    .await;

    bob.client.leave(&dm).await.unwrap();
    alice.client.open_dm("bob").await.unwrap();
    alice.client.send(&dm, "are you there?").await.unwrap();
    let heard = bob.drain(Duration::from_millis(500)).await;
    assert!(
        messages(&heard).iter().all(|m| m.body != "are you there?"),
        "bob left; alice cannot bring him back: {heard:?}"
    );
    let (joined, _) = bob.client.rooms().await.unwrap();
    assert!(joined.iter().all(|r| r.name != dm));

    bob.client.open_dm("alice").await.unwrap();
    let recent = bob.joined(&dm).await;
    assert_eq!(
        recent.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["hi bob", "are you there?"],
        "back by his own choice, with the history"
    );
}
