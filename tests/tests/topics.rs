//! Room topics through the real relay, on whichever store the suite runs
//! on (and across two relays on NATS): a topic set is told at once to every
//! session of every member, the setter's included, and to nobody else; it
//! stays with the room across reconnects and relay restarts; refusals say
//! why in the documented order; topics take from the room-change budget.
//! Then the same checks of the store itself on SQLite and on a real
//! nats-server.

use std::time::Duration;

use common::client::{Event, RequestError};
use common::frame::{ClientFrame, ErrorCode, RoomInfo, RoomKind, ServerFrame};
use common::limits::MAX_TOPIC;
use common::wire::Wire;
use confab_tests::nats::NatsServer;
use confab_tests::{Relay, Session, PATIENCE};
use relay::store::nats::{NatsOptions, NatsStore};
use relay::store::sqlite::SqliteStore;
use relay::store::{Store, StoreError};

/// Who set `room`'s topic to `topic`, once `s` is told.
async fn told(s: &mut Session, room: &str, topic: &str) -> String {
    s.wait_for(&format!("the topic {topic:?} of {room}"), |e| match e {
        Event::Topic {
            room: r,
            topic: t,
            by,
        } if r == room && t == topic => Some(by.clone()),
        _ => None,
    })
    .await
}

/// No topic arrives within a moment.
async fn no_topic(s: &mut Session) {
    let events = s.drain(Duration::from_millis(500)).await;
    assert!(
        !events.iter().any(|e| matches!(e, Event::Topic { .. })),
        "{}: {events:?}",
        s.client.user()
    );
}

/// The topic of `room` among `rooms`.
fn listed<'a>(rooms: &'a [RoomInfo], room: &str) -> Option<&'a str> {
    rooms
        .iter()
        .find(|r| r.name == room)
        .map(|r| r.topic.as_str())
}

fn refused_with(result: Result<impl std::fmt::Debug, RequestError>, code: ErrorCode) {
    match result {
        Err(RequestError::Refused { code: c, .. }) if c == code => {}
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_topic_is_told_to_every_session_in_the_room_and_kept_with_it() {
    let relay = Relay::start();
    let mut laptop = relay.register("alice").await;
    let mut phone = relay.login("alice").await;
    let mut bob = relay.register("bob").await;
    let mut carol = relay.register("carol").await;
    for s in [&mut laptop, &mut phone, &mut bob, &mut carol] {
        s.joined("lobby").await;
    }
    laptop.client.create_room("ops", false).await.unwrap();
    bob.client.join("ops").await.unwrap();
    bob.joined("ops").await;

    let topic = "pages, deploys, on-call ☕";
    laptop.client.set_topic("ops", topic).await.unwrap();
    assert_eq!(told(&mut laptop, "ops", topic).await, "alice", "the setter");
    assert_eq!(told(&mut phone, "ops", topic).await, "alice", "her phone");
    assert_eq!(told(&mut bob, "ops", topic).await, "alice", "a member");
    no_topic(&mut carol).await;

    // The same again: nothing to tell.
    bob.client.set_topic("ops", topic).await.unwrap();
    no_topic(&mut phone).await;

    // The room keeps it: in the lists, and in the reply to a join.
    let (joined, _) = bob.client.rooms().await.unwrap();
    assert_eq!(listed(&joined, "ops"), Some(topic));
    let (joined, public) = carol.client.rooms().await.unwrap();
    assert_eq!(listed(&public, "ops"), Some(topic), "a directory of rooms");
    assert_eq!(listed(&joined, "ops"), None);
    let info = carol.client.join("ops").await.unwrap();
    assert_eq!(info.topic, topic);

    // Any member may change or clear it.
    carol.client.set_topic("ops", "").await.unwrap();
    assert_eq!(told(&mut bob, "ops", "").await, "carol");
    assert_eq!(told(&mut laptop, "ops", "").await, "carol");
    let (joined, _) = laptop.client.rooms().await.unwrap();
    assert_eq!(listed(&joined, "ops"), Some(""));
}

#[tokio::test]
async fn a_topic_is_listed_after_a_reconnect_and_after_the_relay_restarts() {
    let mut relay = Relay::start();
    let mut alice = relay.register("alice").await;
    let mut bob = relay.register("bob").await;
    alice.joined("lobby").await;
    bob.joined("lobby").await;
    alice.client.create_room("design", true).await.unwrap();
    alice.client.invite("design", "bob").await.unwrap();
    alice
        .client
        .set_topic("design", "mockups first")
        .await
        .unwrap();
    alice.client.set_topic("lobby", "say hello").await.unwrap();
    told(&mut bob, "lobby", "say hello").await;

    // Away while it was set: the rooms of the next login carry it.
    bob.client.close().await;
    drop(bob);
    let mut bob = relay.login("bob").await;
    let rooms = bob
        .wait_for("the rooms at login", |e| match e {
            Event::Rooms(rooms) => Some(rooms.clone()),
            _ => None,
        })
        .await;
    assert_eq!(listed(&rooms, "lobby"), Some("say hello"));
    assert_eq!(listed(&rooms, "design"), None, "invited, not in it");
    let invited = bob.client.room_list().await.unwrap().invited;
    assert_eq!(invited[0].room.topic, "mockups first", "what it is for");
    let info = bob.client.join("design").await.unwrap();
    assert_eq!(info.topic, "mockups first");

    // Durable: the relay killed and started again.
    relay.restart();
    let rooms = bob
        .wait_for("the rooms after the restart", |e| match e {
            Event::Rooms(rooms) => Some(rooms.clone()),
            _ => None,
        })
        .await;
    assert_eq!(listed(&rooms, "design"), Some("mockups first"));
    assert_eq!(listed(&rooms, "lobby"), Some("say hello"));
    // alice reconnects on her own schedule: ask until she is back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let public = loop {
        match alice.client.rooms().await {
            Ok((_, public)) => break public,
            Err(RequestError::NotConnected) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("alice's room list after the restart: {e}"),
        }
    };
    assert_eq!(listed(&public, "lobby"), Some("say hello"));
}

/// Sends `SetTopic` on a raw connection and reads its answer: `Ok` for
/// `Done`, else the refusal's code and message.
async fn set_raw(
    wire: &mut Wire,
    req: u32,
    room: &str,
    topic: &str,
) -> Result<(), (ErrorCode, String)> {
    let frame = ClientFrame::SetTopic {
        req,
        room: room.into(),
        topic: topic.into(),
    };
    wire.write_frame(&frame).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let read = tokio::time::timeout_at(deadline, wire.read_frame()).await;
        match read.expect("an answer in time").unwrap() {
            Some(ServerFrame::Done { req: r }) if r == req => return Ok(()),
            Some(ServerFrame::Error {
                req: r,
                code,
                message,
            }) if r == req => return Err((code, message)),
            Some(_) => {}
            None => panic!("the relay ended the stream"),
        }
    }
}

#[tokio::test]
async fn refused_topics_get_the_documented_code_in_the_documented_order() {
    let relay = Relay::start();
    let bob = relay.register("bob").await;
    bob.client.create_room("vault", true).await.unwrap();
    bob.client.create_room("club", true).await.unwrap();
    bob.client.create_room("dev", false).await.unwrap();
    let mut carol = relay.wire_logged_in("carol", true).await;
    bob.client.invite("club", "carol").await.unwrap();
    let dm = bob.client.open_dm("carol").await.unwrap().name;
    let theirs = bob.client.open_dm("bob").await.unwrap().name;

    let mut req = 0;
    let mut set = |room: &str, topic: &str| {
        req += 1;
        (req, room.to_owned(), topic.to_owned())
    };
    let cases = [
        (
            set("lobby", &"x".repeat(MAX_TOPIC + 1)),
            ErrorCode::BadTopic,
        ),
        (set("lobby", "two\nlines"), ErrorCode::BadTopic),
        (set("lobby", "\u{1b}]0;owned\u{7}"), ErrorCode::BadTopic),
        (set("nowhere", "tab\there"), ErrorCode::BadTopic),
        (set("nowhere", "x"), ErrorCode::NoSuchRoom),
        (set("vault", "x"), ErrorCode::NoSuchRoom),
        (set(&theirs, "x"), ErrorCode::NoSuchRoom),
        (set(&dm, "x"), ErrorCode::Forbidden),
        (set("dev", "x"), ErrorCode::NotMember),
        (set("club", "x"), ErrorCode::NotMember),
    ];
    let mut hidden = Vec::new();
    for ((req, room, topic), code) in cases {
        let answer = set_raw(&mut carol, req, &room, &topic).await;
        match answer {
            Err((c, message)) if c == code => {
                if code == ErrorCode::NoSuchRoom {
                    hidden.push(message.replace(&room, "ROOM"));
                }
            }
            other => panic!("{room} {topic:?}: expected {code:?}, got {other:?}"),
        }
    }
    // A hidden room is answered exactly as one that does not exist.
    assert_eq!(hidden.len(), 3);
    assert!(hidden.iter().all(|m| *m == hidden[0]), "{hidden:?}");
    // At the limit, the topic is taken; the room kept nothing refused.
    let at_limit = "é".repeat(MAX_TOPIC / 2);
    assert_eq!(set_raw(&mut carol, 99, "lobby", &at_limit).await, Ok(()));
    let (joined, _) = bob.client.rooms().await.unwrap();
    assert_eq!(listed(&joined, "lobby"), Some(at_limit.as_str()));
}

#[tokio::test]
async fn topics_take_from_the_room_change_budget_of_the_account() {
    let relay = Relay::start_with(&["--request-rate", "2"], &[]);
    let bob = relay.register("bob").await;
    for room in ["r1", "r2", "ops"] {
        bob.client.create_room(room, false).await.unwrap();
    }
    let mut carol = relay.register("carol").await;
    let phone = relay.login("carol").await;
    carol.joined("lobby").await;
    // A burst of twice the rate, from both of the account's sessions.
    carol.client.join("ops").await.unwrap();
    carol.client.set_topic("ops", "one").await.unwrap();
    phone.client.set_topic("ops", "two").await.unwrap();
    phone.client.join("r1").await.unwrap();
    refused_with(
        carol.client.set_topic("ops", "three").await,
        ErrorCode::RateLimited,
    );
    refused_with(phone.client.join("r2").await, ErrorCode::RateLimited);
    let (joined, _) = bob.client.rooms().await.unwrap();
    assert_eq!(listed(&joined, "ops"), Some("two"), "nothing changed");
    // A token comes back every half second.
    tokio::time::sleep(Duration::from_millis(600)).await;
    carol.client.set_topic("ops", "three").await.unwrap();
    assert_eq!(told(&mut carol, "ops", "three").await, "carol");
}

#[tokio::test]
async fn a_topic_set_on_one_relay_reaches_the_room_on_another() {
    let nats = NatsServer::start();
    let relays = Relay::cluster(&nats, 2, &[]);
    let (a, b) = (&relays[0], &relays[1]);
    let mut alice = a.register("alice").await;
    let mut here = a.register("bob").await;
    let mut there = b.login("bob").await;
    let mut carol = b.register("carol").await;
    for s in [&mut alice, &mut here, &mut there, &mut carol] {
        s.joined("lobby").await;
    }
    alice.client.create_room("ops", false).await.unwrap();
    there.client.join("ops").await.unwrap();
    for s in [&mut here, &mut there] {
        s.joined("ops").await;
    }

    alice
        .client
        .set_topic("ops", "pages, deploys")
        .await
        .unwrap();
    let topic = "pages, deploys";
    assert_eq!(
        told(&mut here, "ops", topic).await,
        "alice",
        "on the setter's relay"
    );
    assert_eq!(
        told(&mut there, "ops", topic).await,
        "alice",
        "on the other relay"
    );
    no_topic(&mut carol).await;
    let (joined, _) = there.client.rooms().await.unwrap();
    assert_eq!(listed(&joined, "ops"), Some("pages, deploys"));
    assert_eq!(
        carol.client.join("ops").await.unwrap().topic,
        "pages, deploys"
    );

    // Set on the other relay, told back here; a new login there lists it.
    there.client.set_topic("ops", "deploys only").await.unwrap();
    assert_eq!(told(&mut alice, "ops", "deploys only").await, "bob");
    let mut later = b.login("alice").await;
    let rooms = later
        .wait_for("the rooms at login", |e| match e {
            Event::Rooms(rooms) => Some(rooms.clone()),
            _ => None,
        })
        .await;
    assert_eq!(listed(&rooms, "ops"), Some("deploys only"));
}

/// What a session relies on from `set_topic`, on any store: only a member
/// writes, the same topic again writes nothing, each write is numbered
/// after the last, and rooms carry their topic wherever they are listed.
async fn store_topics<S: Store>(s: &S) {
    for user in ["alice", "bob", "carol"] {
        s.create_user(user, "phc").await.unwrap();
    }
    s.create_room("ops", RoomKind::Public, "alice")
        .await
        .unwrap();
    s.create_room("vault", RoomKind::Private, "bob")
        .await
        .unwrap();
    assert_eq!(s.room("ops").await.unwrap().unwrap().topic, "", "none yet");

    let first = s.set_topic("ops", "ALICE", "pages").await.unwrap();
    assert!(first.is_some(), "written");
    assert_eq!(
        s.set_topic("ops", "alice", "pages").await,
        Ok(None),
        "the same"
    );
    let second = s.set_topic("ops", "alice", "deploys").await.unwrap();
    assert!(
        second > first,
        "numbered in order: {first:?} then {second:?}"
    );
    let third = s.set_topic("vault", "bob", "secrets").await.unwrap();
    assert!(third > second, "across rooms too");

    for (room, user, err) in [
        ("ops", "bob", StoreError::NotMember),
        ("vault", "alice", StoreError::NotMember),
        ("ops", "nobody", StoreError::NotMember),
        ("nowhere", "alice", StoreError::NoSuchRoom),
    ] {
        assert_eq!(
            s.set_topic(room, user, "x").await,
            Err(err),
            "{room} {user}"
        );
    }
    assert_eq!(s.room("ops").await.unwrap().unwrap().topic, "deploys");

    // Listed with the room everywhere.
    let topic = |rows: Vec<relay::store::RoomRow>, room: &str| {
        rows.into_iter().find(|r| r.name == room).map(|r| r.topic)
    };
    assert_eq!(
        topic(s.rooms_of("alice").await.unwrap(), "ops").as_deref(),
        Some("deploys")
    );
    assert_eq!(
        topic(s.public_rooms().await.unwrap(), "ops").as_deref(),
        Some("deploys")
    );
    s.invite("vault", "carol", "bob", 100).await.unwrap();
    let invited = s.invitations("carol").await.unwrap();
    assert_eq!(invited[0].room.topic, "secrets");

    // A leave, or a deleted account, wins over a later write.
    assert!(s.add_member("ops", "carol").await.unwrap());
    assert!(s.set_topic("ops", "carol", "mine").await.unwrap().is_some());
    assert!(s.remove_member("ops", "carol").await.unwrap());
    assert_eq!(
        s.set_topic("ops", "carol", "again").await,
        Err(StoreError::NotMember)
    );
    s.delete_user("alice").await.unwrap();
    assert_eq!(
        s.set_topic("ops", "alice", "gone").await,
        Err(StoreError::NotMember)
    );
    assert_eq!(s.room("ops").await.unwrap().unwrap().topic, "mine");

    // Cleared, and as exactly as it was given.
    assert!(s.set_topic("vault", "bob", "").await.unwrap().is_some());
    assert_eq!(s.room("vault").await.unwrap().unwrap().topic, "");
    let odd = "  spaced\u{202e} out  ";
    assert!(s.set_topic("vault", "bob", odd).await.unwrap().is_some());
    assert_eq!(s.room("vault").await.unwrap().unwrap().topic, odd);
    s.close().await;
}

#[tokio::test]
async fn sqlite_store_topics() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), None).unwrap();
    store_topics(&store).await;
}

#[tokio::test]
async fn nats_store_topics() {
    let nats = NatsServer::start();
    let store = NatsStore::open(&NatsOptions::new(nats.url()), None)
        .await
        .unwrap();
    store_topics(&store).await;
}
