//! The session core fed frames directly: every request kind and every
//! error code a logged-in session can get (PROTOCOL §6), on a real store.

use std::time::{Duration, Instant};

use common::frame::{
    ClientFrame, ErrorCode, Invitation, Page, Presence, PresenceKind, RoomKind, ServerFrame,
};
use common::limits::{MAX_BODY, MAX_PAGE, MAX_TOPIC};
use common::names::{dm_room, LOBBY};

use super::*;
use crate::config::Config;
use crate::defaults::{MAX_LISTED_PUBLIC, ROOM_CREATION_BURST};
use crate::store::sqlite::SqliteStore;
use crate::testing::{drain, TestRelay};

/// alice is the user under test. bob owns public `dev`, private `ops` and
/// private `club` (alice invited); bob and carol share a DM.
async fn world(cfg: Config) -> TestRelay {
    let t = TestRelay::new(cfg);
    t.users(&["alice", "bob", "carol"], "unused").await;
    let store = &t.relay.store;
    store
        .create_room("dev", RoomKind::Public, "bob")
        .await
        .unwrap();
    store
        .create_room("ops", RoomKind::Private, "bob")
        .await
        .unwrap();
    store
        .create_room("club", RoomKind::Private, "bob")
        .await
        .unwrap();
    store.invite("club", "alice", "bob", 100).await.unwrap();
    store.open_dm("bob", "carol").await.unwrap();
    t
}

async fn login(
    t: &TestRelay,
    user: &str,
    now: Instant,
) -> (Session<SqliteStore>, tokio::sync::mpsc::Receiver<Bytes>) {
    let account = crate::login::Account {
        name: user.into(),
        phc: "unused".into(),
    };
    Session::start(t.relay.clone(), account, now)
        .await
        .expect("session starts")
}

/// What an answer is, reduced to what a table can state.
#[derive(Debug, PartialEq)]
enum Got {
    Refused(ErrorCode),
    Pong,
    Joined(String),
    Left(String),
    Done,
    Append(String),
    Bulk,
    Bye,
    Other(String),
}

fn got(answer: &Answer) -> Got {
    match answer {
        Answer::Reply(ServerFrame::Error { code, .. }) => Got::Refused(*code),
        Answer::Reply(ServerFrame::Pong { .. }) => Got::Pong,
        Answer::Reply(ServerFrame::Joined { room, .. }) => Got::Joined(room.name.clone()),
        Answer::Reply(ServerFrame::Left { room, .. }) => Got::Left(room.clone()),
        Answer::Reply(ServerFrame::Done { .. }) => Got::Done,
        Answer::Reply(other) => Got::Other(format!("{other:?}")),
        Answer::Append { msg, .. } => Got::Append(msg.room.clone()),
        Answer::Bulk { .. } => Got::Bulk,
        Answer::Bye => Got::Bye,
    }
}

/// [`got`], with a bulk reply's work run: a refusal found while reading
/// is stated like one found at once.
async fn settled(answer: Answer) -> Got {
    match answer {
        Answer::Bulk { work, .. } => match work.await {
            Ok(_) => Got::Bulk,
            Err(refusal) => Got::Refused(refusal.code),
        },
        other => got(&other),
    }
}

fn req_of(answer: &Answer) -> Option<RequestId> {
    match answer {
        Answer::Reply(frame) => Some(frame.req()),
        Answer::Append { req, .. } | Answer::Bulk { req, .. } => Some(*req),
        Answer::Bye => None,
    }
}

fn send(room: &str, body: &str) -> ClientFrame {
    ClientFrame::Send {
        req: 7,
        room: room.into(),
        id: rand::random(),
        body: body.into(),
    }
}

fn history(room: &str, limit: u16) -> ClientFrame {
    ClientFrame::History {
        req: 7,
        room: room.into(),
        page: Page::Latest,
        limit,
    }
}

fn s(x: &str) -> String {
    x.to_owned()
}

fn set_topic(room: &str, topic: &str) -> ClientFrame {
    ClientFrame::SetTopic {
        req: 7,
        room: room.into(),
        topic: topic.into(),
    }
}

#[tokio::test]
async fn every_request_kind_gets_its_answer_or_refusal() {
    use ClientFrame as C;
    use ErrorCode as E;
    let bob_carol = dm_room("bob", "carol");
    let alice_bob = dm_room("alice", "bob");
    #[rustfmt::skip]
    let cases: Vec<(&str, ClientFrame, Got)> = vec![
        ("ping", C::Ping { req: 7 }, Got::Pong),
        ("hello again", C::Hello { version: 1, client: s("x") }, Got::Refused(E::Unexpected)),
        ("register again", C::Register { req: 7, user: s("x"), password: "password".into() }, Got::Refused(E::Unexpected)),
        ("login again", C::Login { req: 7, user: s("x"), password: "password".into() }, Got::Refused(E::Unexpected)),
        ("send to lobby", send(LOBBY, "hi"), Got::Append(s(LOBBY))),
        ("empty body", send(LOBBY, ""), Got::Refused(E::BadBody)),
        ("blank body", send(LOBBY, " \n\t"), Got::Refused(E::BadBody)),
        ("body over the limit", send(LOBBY, &"x".repeat(MAX_BODY + 1)), Got::Refused(E::BadBody)),
        ("body at the limit", send(LOBBY, &"x".repeat(MAX_BODY)), Got::Append(s(LOBBY))),
        ("send to a room not joined", send("dev", "hi"), Got::Refused(E::NotMember)),
        ("send to no room", send("nowhere", "hi"), Got::Refused(E::NoSuchRoom)),
        ("send to a private room not invited to", send("ops", "hi"), Got::Refused(E::NoSuchRoom)),
        ("send to a private room invited to", send("club", "hi"), Got::Refused(E::NotMember)),
        ("send to a DM of others", send(&bob_carol, "hi"), Got::Refused(E::NoSuchRoom)),
        ("history", history(LOBBY, 50), Got::Bulk),
        ("history of zero", history(LOBBY, 0), Got::Refused(E::BadLimit)),
        ("history over the page", history(LOBBY, MAX_PAGE + 1), Got::Refused(E::BadLimit)),
        ("history at the page", history(LOBBY, MAX_PAGE), Got::Bulk),
        ("history not joined", history("dev", 5), Got::Refused(E::NotMember)),
        ("history of no room", history("nowhere", 5), Got::Refused(E::NoSuchRoom)),
        ("history of a private room not invited to", history("ops", 5), Got::Refused(E::NoSuchRoom)),
        ("history of a private room invited to", history("club", 5), Got::Refused(E::NotMember)),
        ("history of a DM of others", history(&bob_carol, 5), Got::Refused(E::NoSuchRoom)),
        ("room list", C::ListRooms { req: 7 }, Got::Bulk),
        ("members of a public room not joined", C::Members { req: 7, room: s("dev") }, Got::Bulk),
        ("members of a private room not invited to", C::Members { req: 7, room: s("ops") }, Got::Refused(E::NoSuchRoom)),
        ("members of a private room invited to", C::Members { req: 7, room: s("club") }, Got::Refused(E::NotMember)),
        ("members of a DM of others", C::Members { req: 7, room: bob_carol.clone() }, Got::Refused(E::NoSuchRoom)),
        ("members of no room", C::Members { req: 7, room: s("nowhere") }, Got::Refused(E::NoSuchRoom)),
        ("resume lobby", C::Resume { req: 7, room: s(LOBBY) }, Got::Done),
        ("resume not joined", C::Resume { req: 7, room: s("dev") }, Got::Refused(E::NotMember)),
        ("resume no room", C::Resume { req: 7, room: s("nowhere") }, Got::Refused(E::NoSuchRoom)),
        ("resume a private room not invited to", C::Resume { req: 7, room: s("ops") }, Got::Refused(E::NoSuchRoom)),
        ("set the lobby's topic", set_topic(LOBBY, "say hello"), Got::Done),
        ("set it again", set_topic(LOBBY, "say hello"), Got::Done),
        ("clear it", set_topic(LOBBY, ""), Got::Done),
        ("topic at the limit", set_topic(LOBBY, &"x".repeat(MAX_TOPIC)), Got::Done),
        ("topic over the limit", set_topic(LOBBY, &"x".repeat(MAX_TOPIC + 1)), Got::Refused(E::BadTopic)),
        ("topic of two lines", set_topic(LOBBY, "one\ntwo"), Got::Refused(E::BadTopic)),
        ("topic with an escape", set_topic(LOBBY, "\u{1b}[2J"), Got::Refused(E::BadTopic)),
        ("bad topic of no room", set_topic("nowhere", "a\tb"), Got::Refused(E::BadTopic)),
        ("topic of no room", set_topic("nowhere", "x"), Got::Refused(E::NoSuchRoom)),
        ("topic of a public room not joined", set_topic("mine2", "x"), Got::Refused(E::NotMember)),
        ("topic of a private room not invited to", set_topic("ops", "x"), Got::Refused(E::NoSuchRoom)),
        ("topic of a private room invited to", set_topic("club", "x"), Got::Refused(E::NotMember)),
        ("topic of a DM of others", set_topic(&bob_carol, "x"), Got::Refused(E::NoSuchRoom)),
        ("create", C::CreateRoom { req: 7, room: s("mine"), private: false }, Got::Joined(s("mine"))),
        ("create taken", C::CreateRoom { req: 7, room: s("dev"), private: false }, Got::Refused(E::RoomExists)),
        ("create bad name", C::CreateRoom { req: 7, room: s("no spaces"), private: true }, Got::Refused(E::InvalidName)),
        ("create a DM name", C::CreateRoom { req: 7, room: alice_bob.clone(), private: false }, Got::Refused(E::InvalidName)),
        ("join public", C::Join { req: 7, room: s("dev") }, Got::Joined(s("dev"))),
        ("join public again", C::Join { req: 7, room: s("dev") }, Got::Joined(s("dev"))),
        ("join private uninvited", C::Join { req: 7, room: s("ops") }, Got::Refused(E::NoSuchRoom)),
        ("join private invited", C::Join { req: 7, room: s("club") }, Got::Joined(s("club"))),
        ("join a DM of others", C::Join { req: 7, room: bob_carol.clone() }, Got::Refused(E::NoSuchRoom)),
        ("join no room", C::Join { req: 7, room: s("nowhere") }, Got::Refused(E::NoSuchRoom)),
        ("leave lobby", C::Leave { req: 7, room: s(LOBBY) }, Got::Refused(E::Forbidden)),
        ("leave a public room not joined", C::Leave { req: 7, room: s("mine2") }, Got::Refused(E::NotMember)),
        ("leave a private room not invited to", C::Leave { req: 7, room: s("ops") }, Got::Refused(E::NoSuchRoom)),
        ("leave a DM of others", C::Leave { req: 7, room: bob_carol.clone() }, Got::Refused(E::NoSuchRoom)),
        ("leave no room", C::Leave { req: 7, room: s("nowhere") }, Got::Refused(E::NoSuchRoom)),
        ("leave joined", C::Leave { req: 7, room: s("dev") }, Got::Left(s("dev"))),
        ("invite to a public room not joined", C::Invite { req: 7, room: s("mine2"), user: s("carol") }, Got::Refused(E::NotMember)),
        ("invite to a private room not invited to", C::Invite { req: 7, room: s("ops"), user: s("carol") }, Got::Refused(E::NoSuchRoom)),
        ("invite to a DM of others", C::Invite { req: 7, room: bob_carol.clone(), user: s("alice") }, Got::Refused(E::NoSuchRoom)),
        ("invite to no room", C::Invite { req: 7, room: s("nowhere"), user: s("carol") }, Got::Refused(E::NoSuchRoom)),
        ("invite nobody", C::Invite { req: 7, room: s("club"), user: s("nobody") }, Got::Refused(E::NoSuchUser)),
        ("invite", C::Invite { req: 7, room: s("club"), user: s("CAROL") }, Got::Done),
        ("open a DM", C::OpenDm { req: 7, user: s("Bob") }, Got::Joined(alice_bob.clone())),
        ("open a DM with nobody", C::OpenDm { req: 7, user: s("nobody") }, Got::Refused(E::NoSuchUser)),
        ("invite to a DM", C::Invite { req: 7, room: alice_bob.clone(), user: s("carol") }, Got::Refused(E::Forbidden)),
        ("topic of one's DM", set_topic(&alice_bob, "x"), Got::Refused(E::Forbidden)),
        ("leave a DM", C::Leave { req: 7, room: alice_bob.clone() }, Got::Left(alice_bob.clone())),
        ("leave a DM left", C::Leave { req: 7, room: alice_bob.clone() }, Got::Refused(E::NotMember)),
        ("history of a DM left", history(&alice_bob, 5), Got::Refused(E::NotMember)),
        ("topic of one's DM left", set_topic(&alice_bob, "x"), Got::Refused(E::Forbidden)),
        ("join a DM left", C::Join { req: 7, room: alice_bob.clone() }, Got::Joined(alice_bob.clone())),
        ("leave it again", C::Leave { req: 7, room: alice_bob.clone() }, Got::Left(alice_bob.clone())),
        ("open a DM left", C::OpenDm { req: 7, user: s("bob") }, Got::Joined(alice_bob.clone())),
        ("bye", C::Bye, Got::Bye),
    ];
    let cfg = Config {
        request_rate: 1000,
        rate_limit: 1000,
        ..Config::default()
    };
    let t = world(cfg).await;
    let now = Instant::now();
    let (mut alice, _rx) = login(&t, "alice", now).await;
    t.relay
        .store
        .create_room("mine2", RoomKind::Public, "bob")
        .await
        .unwrap();
    for (what, frame, want) in cases {
        let req = frame.req();
        let answer = alice.handle(frame, now).await;
        if want != Got::Bye {
            assert_eq!(
                req_of(&answer),
                Some(req),
                "{what}: the answer names the request"
            );
        }
        assert_eq!(settled(answer).await, want, "{what}");
    }
}

#[tokio::test]
async fn membership_answers_change_what_the_session_hears() {
    let t = world(Config::default()).await;
    let now = Instant::now();
    let (mut alice, _a) = login(&t, "alice", now).await;
    let (_bob, mut b) = login(&t, "bob", now).await;
    let hub = &t.relay.hub;
    let id = alice.outbox().id;
    assert!(hub.is_subscribed(id, LOBBY), "subscribed at login");
    assert!(!hub.is_subscribed(id, "dev"));
    drain(&mut b);

    alice
        .handle(
            ClientFrame::Join {
                req: 1,
                room: "dev".into(),
            },
            now,
        )
        .await;
    assert!(hub.is_subscribed(id, "dev"));
    assert!(t.relay.store.is_member("dev", "alice").await.unwrap());
    let presence = |kind| {
        ServerFrame::Presence(Presence {
            room: Some("dev".into()),
            user: "alice".into(),
            kind,
        })
    };
    assert_eq!(drain(&mut b), vec![presence(PresenceKind::Joined)]);

    alice
        .handle(
            ClientFrame::Leave {
                req: 2,
                room: "dev".into(),
            },
            now,
        )
        .await;
    assert!(!hub.is_subscribed(id, "dev"));
    assert!(!t.relay.store.is_member("dev", "alice").await.unwrap());
    assert_eq!(drain(&mut b), vec![presence(PresenceKind::Left)]);

    alice.end();
    let offline = ServerFrame::Presence(Presence {
        room: None,
        user: "alice".into(),
        kind: PresenceKind::Offline,
    });
    assert_eq!(drain(&mut b), vec![offline]);
    assert!(!hub.is_online("alice"));
}

#[tokio::test]
async fn an_append_is_acked_with_its_sequence_and_a_resend_with_the_same_one() {
    let t = world(Config::default()).await;
    let now = Instant::now();
    let (mut alice, _rx) = login(&t, "alice", now).await;
    let id = [9; 16];
    let frame = |req| ClientFrame::Send {
        req,
        room: LOBBY.into(),
        id,
        body: "hello".into(),
    };
    let mut seqs = Vec::new();
    for req in [1, 2] {
        let Answer::Append { req: r, msg } = alice.handle(frame(req), now).await else {
            panic!("an append");
        };
        assert_eq!(
            (r, msg.from.as_str(), msg.body.as_str()),
            (req, "alice", "hello")
        );
        let (room, id) = (msg.room.clone(), msg.id);
        let result = t.relay.store.append(msg).await;
        let ServerFrame::Ack {
            req: r,
            seq,
            id: acked_id,
            ..
        } = acked(&t.relay, req, room, id, result)
        else {
            panic!("an ack");
        };
        assert_eq!((r, acked_id), (req, id));
        seqs.push(seq);
    }
    assert_eq!(seqs[0], seqs[1], "a resend is not stored twice");
    let m = &t.relay.metrics;
    assert_eq!(
        m.messages_stored.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        m.messages_duplicate
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn bulk_work_reads_the_store_when_run() {
    let t = world(Config::default()).await;
    let now = Instant::now();
    let (mut alice, _rx) = login(&t, "alice", now).await;
    let Answer::Bulk { work, .. } = alice.handle(ClientFrame::ListRooms { req: 3 }, now).await
    else {
        panic!("bulk");
    };
    let Ok(ServerFrame::Rooms {
        req,
        joined,
        public,
        invited,
    }) = work.await
    else {
        panic!("a room list");
    };
    assert_eq!(req, 3);
    let names = |rooms: &[RoomInfo]| rooms.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&joined), [LOBBY]);
    assert_eq!(names(&public), ["dev", LOBBY]);
    let club = t.relay.store.room("club").await.unwrap().unwrap();
    assert_eq!(
        invited,
        [Invitation {
            room: info(&club),
            by: "bob".into()
        }],
        "with who invited, though the room is private"
    );

    let Answer::Bulk { work, .. } = alice
        .handle(
            ClientFrame::Members {
                req: 4,
                room: "dev".into(),
            },
            now,
        )
        .await
    else {
        panic!("bulk");
    };
    let Ok(ServerFrame::Members { members, .. }) = work.await else {
        panic!("members");
    };
    let bob = members
        .iter()
        .find(|m| m.user == "bob")
        .expect("bob is in dev");
    assert!(!bob.online);
}

#[tokio::test]
async fn sends_past_the_rate_are_refused_until_time_passes_and_keep_their_order() {
    let cfg = Config {
        rate_limit: 5,
        ..Config::default()
    };
    let t = world(cfg).await;
    let t0 = Instant::now();
    let (mut alice, _rx) = login(&t, "alice", t0).await;
    let send_id = |id: u8| ClientFrame::Send {
        req: u32::from(id),
        room: LOBBY.into(),
        id: [id; 16],
        body: "x".into(),
    };
    for id in 0..10 {
        assert!(
            matches!(alice.handle(send_id(id), t0).await, Answer::Append { .. }),
            "burst of twice the rate"
        );
    }
    assert_eq!(
        got(&alice.handle(send_id(10), t0).await),
        Got::Refused(ErrorCode::RateLimited)
    );
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(
        got(&alice.handle(send_id(11), t1).await),
        Got::Refused(ErrorCode::RateLimited),
        "a later message may not overtake the refused one"
    );
    assert_eq!(
        got(&alice.handle(send_id(10), t1).await),
        Got::Append(LOBBY.into())
    );
    assert_eq!(
        got(&alice.handle(send_id(11), t1).await),
        Got::Append(LOBBY.into())
    );
    assert!(
        t.relay
            .metrics
            .rate_limited
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
}

#[tokio::test]
async fn room_changes_past_the_rate_are_refused_and_change_nothing() {
    let cfg = Config {
        request_rate: 2,
        ..Config::default()
    };
    let t = world(cfg).await;
    let t0 = Instant::now();
    let (mut alice, _rx) = login(&t, "alice", t0).await;
    let create = |n: u32| ClientFrame::CreateRoom {
        req: n,
        room: format!("room-{n}"),
        private: false,
    };
    for n in 0..4 {
        assert_eq!(
            got(&alice.handle(create(n), t0).await),
            Got::Joined(format!("room-{n}"))
        );
    }
    assert_eq!(
        got(&alice.handle(create(4), t0).await),
        Got::Refused(ErrorCode::RateLimited)
    );
    assert!(
        t.relay.store.room("room-4").await.unwrap().is_none(),
        "nothing created"
    );
    // Reads are not room changes.
    assert_eq!(
        got(&alice.handle(ClientFrame::Ping { req: 9 }, t0).await),
        Got::Pong
    );
    let later = t0 + Duration::from_secs(1);
    assert_eq!(
        got(&alice.handle(create(4), later).await),
        Got::Joined("room-4".into())
    );
}

#[tokio::test]
async fn a_store_that_is_gone_is_unavailable_and_says_to_retry() {
    let t = world(Config::default()).await;
    let now = Instant::now();
    let (mut alice, _rx) = login(&t, "alice", now).await;
    t.relay.store.close().await;
    let answer = alice
        .handle(
            ClientFrame::CreateRoom {
                req: 5,
                room: "late".into(),
                private: false,
            },
            now,
        )
        .await;
    let Answer::Reply(ServerFrame::Error { req, code, message }) = answer else {
        panic!("a refusal, got {answer:?}");
    };
    assert_eq!((req, code), (5, ErrorCode::Unavailable));
    assert!(message.contains("try again"), "{message}");

    let Answer::Append { req, msg } = alice.handle(send(LOBBY, "late"), now).await else {
        panic!("an append");
    };
    let (room, id) = (msg.room.clone(), msg.id);
    let frame = acked(&t.relay, req, room, id, t.relay.store.append(msg).await);
    assert!(
        matches!(
            frame,
            ServerFrame::Error {
                code: ErrorCode::Unavailable,
                ..
            }
        ),
        "{frame:?}"
    );
}

#[test]
fn a_bulk_reply_over_the_limit_becomes_unavailable_on_the_control_stream() {
    let big = ServerFrame::Members {
        req: 8,
        room: "r".into(),
        members: (0..60_000)
            .map(|i| Member {
                user: format!("user-{i:024}"),
                online: false,
            })
            .collect(),
    };
    let Err(ServerFrame::Error { req, code, .. }) = bulk_bytes(8, Ok(big)) else {
        panic!("refused");
    };
    assert_eq!((req, code), (8, ErrorCode::Unavailable));

    let small = ServerFrame::Pong { req: 8 };
    let bytes = bulk_bytes(8, Ok(small.clone())).expect("fits");
    assert_eq!(codec::decode::<ServerFrame>(&bytes[4..]).unwrap(), small);

    let refusal = Refusal::new(ErrorCode::NotMember, "no");
    assert_eq!(
        bulk_bytes(8, Err(refusal.clone())),
        Err(refusal.into_frame(8)),
        "a refusal goes on the control stream"
    );
}

#[test]
fn a_bulk_reply_not_delivered_is_answered_unavailable_once() {
    assert_eq!(bulk_undelivered(8, Delivery::Delivered), None);
    for how in [Delivery::Stopped, Delivery::TimedOut, Delivery::Lost] {
        let answer = bulk_undelivered(8, how);
        let Some(ServerFrame::Error { req, code, message }) = answer else {
            panic!("{how:?}: an error, got {answer:?}");
        };
        assert_eq!((req, code), (8, ErrorCode::Unavailable), "{how:?}");
        assert!(message.ends_with("ask again"), "{how:?}: {message}");
    }
}

#[tokio::test]
async fn an_unreadable_frame_is_malformed_or_too_large_and_counted() {
    let t = world(Config::default()).await;
    let (alice, _rx) = login(&t, "alice", Instant::now()).await;
    let e = common::codec::FrameError::TooLarge {
        len: 1 << 20,
        max: 1 << 16,
    };
    let ServerFrame::Error { code, req, .. } = alice.bad_frame(&e) else {
        panic!("an error");
    };
    assert_eq!((code, req), (ErrorCode::FrameTooLarge, 0));
    let e = common::codec::FrameError::Malformed("junk".into());
    let ServerFrame::Error { code, .. } = alice.bad_frame(&e) else {
        panic!("an error");
    };
    assert_eq!(code, ErrorCode::Malformed);
    assert_eq!(
        t.relay
            .metrics
            .protocol_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

/// A `Resume` on one device racing a `Leave` on another: whichever way
/// they interleave, the room left is not heard, posted to or read on
/// either device afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leave_on_another_device_wins_over_a_racing_resume() {
    let cfg = Config {
        request_rate: 100_000,
        ..Config::default()
    };
    let t = world(cfg).await;
    let now = Instant::now();
    let (mut phone, _p) = login(&t, "alice", now).await;
    let (mut laptop, _l) = login(&t, "alice", now).await;
    let dev = || "dev".to_owned();
    let mut subscribed_after_leaving = 0;
    for _ in 0..100 {
        let joined = laptop
            .handle(
                ClientFrame::Join {
                    req: 1,
                    room: dev(),
                },
                now,
            )
            .await;
        assert_eq!(got(&joined), Got::Joined(dev()));
        let (_, left) = tokio::join!(
            phone.handle(
                ClientFrame::Resume {
                    req: 2,
                    room: dev()
                },
                now
            ),
            laptop.handle(
                ClientFrame::Leave {
                    req: 3,
                    room: dev()
                },
                now
            ),
        );
        assert_eq!(got(&left), Got::Left(dev()));
        if t.relay.hub.is_subscribed(phone.outbox().id, "dev") {
            subscribed_after_leaving += 1;
        }
    }
    assert_eq!(subscribed_after_leaving, 0, "of 100 races");
    // A resume that read the membership before the leave and subscribes
    // after it: the hub's epoch turns it away.
    let epoch = t.relay.hub.epoch("alice");
    laptop
        .handle(
            ClientFrame::Join {
                req: 4,
                room: dev(),
            },
            now,
        )
        .await;
    let stale = t.relay.hub.epoch("alice");
    laptop
        .handle(
            ClientFrame::Leave {
                req: 5,
                room: dev(),
            },
            now,
        )
        .await;
    assert!(epoch != stale);
    assert!(t
        .relay
        .hub
        .subscribe_all(phone.outbox().id, &[dev()], stale)
        .is_err());
    assert!(!t.relay.hub.is_subscribed(phone.outbox().id, "dev"));
    // Even a session the hub still counted in the room is refused by the
    // store, where the message would be written and the history read.
    t.relay.hub.subscribe(phone.outbox().id, "dev");
    let Answer::Append { msg, .. } = phone.handle(send("dev", "still here?"), now).await else {
        panic!("passes the session's own check");
    };
    assert_eq!(t.relay.store.append(msg).await, Err(StoreError::NotMember));
    assert_eq!(
        settled(phone.handle(history("dev", 5), now).await).await,
        Got::Refused(ErrorCode::NotMember)
    );
}

#[tokio::test]
async fn a_changed_account_ends_its_sessions_and_only_those() {
    let t = world(Config::default()).await;
    let now = Instant::now();
    let (phone, _p) = login(&t, "alice", now).await;
    let (laptop, _l) = login(&t, "alice", now).await;
    let (bob, _b) = login(&t, "bob", now).await;
    let ended = |s: &Session<SqliteStore>| {
        let outbox = s.outbox().clone();
        async move {
            tokio::time::timeout(Duration::from_millis(100), outbox.revoked())
                .await
                .is_ok()
        }
    };
    assert_eq!(t.relay.revoke_changed("alice").await, 0, "nothing changed");
    assert!(!ended(&phone).await);

    t.relay.store.set_password("alice", "new").await.unwrap();
    assert_eq!(t.relay.revoke_changed("alice").await, 2);
    assert!(ended(&phone).await && ended(&laptop).await);
    assert!(!ended(&bob).await, "bob's account did not change");

    // A login checked against the old hash that attaches after the change
    // was noticed still ends at once.
    let (late, _late) = login(&t, "alice", now).await;
    assert!(
        ended(&late).await,
        "logged in with a password no longer the account's"
    );

    t.relay.store.delete_user("bob").await.unwrap();
    assert_eq!(t.relay.revoke_changed("bob").await, 1);
    assert!(ended(&bob).await);
}

#[tokio::test]
async fn an_account_has_one_budget_and_a_cap_on_sessions_however_many_it_opens() {
    let cfg = Config {
        rate_limit: 10,
        request_rate: 5,
        max_sessions_per_user: 4,
        ..Config::default()
    };
    let t = world(cfg).await;
    let now = Instant::now();
    let mut devices = Vec::new();
    for _ in 0..4 {
        devices.push(login(&t, "alice", now).await);
    }
    let refused = Session::start(
        t.relay.clone(),
        crate::login::Account {
            name: "alice".into(),
            phc: "unused".into(),
        },
        now,
    )
    .await
    .err()
    .expect("a fifth session is refused");
    assert_eq!(refused.code, ErrorCode::TooManyConnections);
    let (_bob, _b) = login(&t, "bob", now).await;

    let mut stored = 0;
    for n in 0..100 {
        let (session, _) = &mut devices[n % 4];
        if let Answer::Append { .. } = session.handle(send(LOBBY, "flood"), now).await {
            stored += 1;
        }
    }
    assert_eq!(
        stored, 20,
        "a burst of twice the rate for the account, not per session"
    );
    let mut changed = 0;
    for n in 0..40 {
        let (session, _) = &mut devices[n % 4];
        let room = format!("r{n}");
        let frame = ClientFrame::CreateRoom {
            req: 1,
            room,
            private: false,
        };
        if got(&session.handle(frame, now).await) != Got::Refused(ErrorCode::RateLimited) {
            changed += 1;
        }
    }
    assert_eq!(changed, 10);

    let (gone, _) = devices.pop().unwrap();
    gone.end();
    let (_again, _a) = login(&t, "alice", now).await;
}

#[tokio::test]
async fn room_creation_and_membership_are_bounded_per_account() {
    let cfg = Config {
        request_rate: 100_000,
        max_rooms_per_user: 30,
        ..Config::default()
    };
    let t = world(cfg).await;
    let now = Instant::now();
    let (mut alice, _a) = login(&t, "alice", now).await;
    let (mut phone, _p) = login(&t, "alice", now).await;
    let create = |n: usize| ClientFrame::CreateRoom {
        req: 1,
        room: format!("room{n}"),
        private: n.is_multiple_of(2),
    };
    let mut created = 0;
    for n in 0..40 {
        let device = if n % 2 == 0 { &mut alice } else { &mut phone };
        match got(&device.handle(create(n), now).await) {
            Got::Joined(_) => created += 1,
            Got::Refused(ErrorCode::RateLimited) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        created, ROOM_CREATION_BURST as usize,
        "both devices together"
    );
    // An hour later the account may create more, until it is in 30 rooms
    // (lobby, club's invite aside, and the 20 it made: 21 so far).
    let later = now + Duration::from_secs(3600);
    let mut refused = None;
    for n in 100..120 {
        match got(&alice.handle(create(n), later).await) {
            Got::Joined(_) => created += 1,
            Got::Refused(code) => {
                refused = Some(code);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((created, refused), (29, Some(ErrorCode::Forbidden)));
    assert_eq!(t.relay.store.room_count("alice").await.unwrap(), 30);
    // At her cap, hidden rooms still answer exactly as missing ones: the
    // cap is checked only for rooms she could enter.
    for (room, want) in [
        ("ops", Got::Refused(ErrorCode::NoSuchRoom)),
        (
            dm_room("bob", "carol").as_str(),
            Got::Refused(ErrorCode::NoSuchRoom),
        ),
        ("nowhere", Got::Refused(ErrorCode::NoSuchRoom)),
        ("dev", Got::Refused(ErrorCode::Forbidden)),
    ] {
        let joined = alice
            .handle(
                ClientFrame::Join {
                    req: 4,
                    room: room.into(),
                },
                later,
            )
            .await;
        assert_eq!(got(&joined), want, "{room}");
    }
    // Others cannot push alice past her cap with DMs either.
    let (mut carol, _c) = login(&t, "carol", now).await;
    let dm = carol
        .handle(
            ClientFrame::OpenDm {
                req: 2,
                user: "alice".into(),
            },
            now,
        )
        .await;
    assert_eq!(got(&dm), Got::Refused(ErrorCode::Forbidden));
}

#[tokio::test]
async fn the_room_list_holds_the_busiest_public_rooms_and_stays_small() {
    let t = world(Config::default()).await;
    let store = &t.relay.store;
    for n in 0..MAX_LISTED_PUBLIC + 100 {
        store
            .create_room(&format!("spam{n:04}"), RoomKind::Public, "carol")
            .await
            .unwrap();
        // carol leaves them empty, as a script would.
        store
            .remove_member(&format!("spam{n:04}"), "carol")
            .await
            .unwrap();
    }
    let now = Instant::now();
    let (mut alice, _a) = login(&t, "alice", now).await;
    let Answer::Bulk { req, work } = alice.handle(ClientFrame::ListRooms { req: 3 }, now).await
    else {
        panic!("a bulk reply");
    };
    let reply = work.await;
    let ServerFrame::Rooms { public, joined, .. } = reply.clone().unwrap() else {
        panic!("Rooms");
    };
    assert_eq!(public.len(), MAX_LISTED_PUBLIC);
    for busy in [LOBBY, "dev"] {
        assert!(public.iter().any(|r| r.name == busy), "{busy} is listed");
    }
    assert!(public.windows(2).all(|w| w[0].name < w[1].name), "by name");
    assert!(joined.iter().any(|r| r.name == LOBBY));
    let bytes = bulk_bytes(req, reply).expect("fits a bulk stream");
    assert!(bytes.len() < 100 * 1024, "{} bytes", bytes.len());
}

#[tokio::test]
async fn an_account_stores_at_most_its_daily_quota_whatever_its_sessions() {
    let cfg = Config {
        rate_limit: 100_000,
        daily_quota_mib: 1,
        ..Config::default()
    };
    let t = world(cfg).await;
    let now = Instant::now();
    let body = "q".repeat(4000);
    let mut stored = 0;
    let mut refusal = None;
    for round in 0..3 {
        // Each round on a fresh session: logging in again refills nothing.
        let (mut s, _q) = login(&t, "alice", now).await;
        for _ in 0..150 {
            match s.handle(send(LOBBY, &body), now).await {
                Answer::Append { .. } => stored += 1,
                Answer::Reply(ServerFrame::Error { code, message, .. }) => {
                    refusal.get_or_insert((round, code, message));
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        s.end();
    }
    assert_eq!(stored, 1_048_576 / 4000, "1 MiB of 4000-byte bodies");
    let (round, code, message) = refusal.expect("refused");
    assert_eq!((round, code), (1, ErrorCode::RateLimited));
    assert!(message.contains("1 MiB for today"), "{message}");
    let (mut bob, _b) = login(&t, "bob", now).await;
    assert!(matches!(
        bob.handle(send(LOBBY, &body), now).await,
        Answer::Append { .. }
    ));
}

#[tokio::test]
async fn dms_opened_by_others_fill_at_most_half_of_a_users_rooms() {
    let cfg = Config {
        max_rooms_per_user: 10,
        ..Config::default()
    };
    let t = TestRelay::new(cfg);
    let crowd: Vec<String> = (0..8).map(|n| format!("fan{n}")).collect();
    let names: Vec<&str> = crowd.iter().map(String::as_str).chain(["star"]).collect();
    t.users(&names, "unused").await;
    let now = Instant::now();
    let mut opened = 0;
    for fan in &crowd {
        let (mut s, _q) = login(&t, fan, now).await;
        let dm = s
            .handle(
                ClientFrame::OpenDm {
                    req: 1,
                    user: "star".into(),
                },
                now,
            )
            .await;
        match got(&dm) {
            Got::Joined(_) => opened += 1,
            Got::Refused(ErrorCode::Forbidden) => {}
            other => panic!("{other:?}"),
        }
    }
    // lobby + 4 DMs = 5, half of 10.
    assert_eq!(opened, 4);
    let (mut star, _s) = login(&t, "star", now).await;
    for n in 0..5 {
        let frame = ClientFrame::CreateRoom {
            req: 2,
            room: format!("mine{n}"),
            private: false,
        };
        assert!(
            matches!(got(&star.handle(frame, now).await), Got::Joined(_)),
            "{n}"
        );
    }
}

/// The invitations in `user`'s room list, as (room, inviter).
async fn invitations_of(session: &mut Session<SqliteStore>) -> Vec<(String, String)> {
    let Answer::Bulk { work, .. } = session
        .handle(ClientFrame::ListRooms { req: 9 }, Instant::now())
        .await
    else {
        panic!("a bulk reply");
    };
    let Ok(ServerFrame::Rooms { invited, .. }) = work.await else {
        panic!("a room list");
    };
    invited.into_iter().map(|i| (i.room.name, i.by)).collect()
}

fn invite(room: &str, user: &str) -> ClientFrame {
    ClientFrame::Invite {
        req: 5,
        room: room.into(),
        user: user.into(),
    }
}

fn join(room: &str) -> ClientFrame {
    ClientFrame::Join {
        req: 6,
        room: room.into(),
    }
}

fn leave(room: &str) -> ClientFrame {
    ClientFrame::Leave {
        req: 8,
        room: room.into(),
    }
}

#[tokio::test]
async fn an_invitation_reaches_the_invitees_sessions_only_and_joining_accepts_it() {
    let t = world(Config::default()).await;
    let now = Instant::now();
    let (mut bob, mut b) = login(&t, "bob", now).await;
    let (mut phone, mut p) = login(&t, "alice", now).await;
    let (_laptop, mut l) = login(&t, "alice", now).await;
    let (mut carol, mut c) = login(&t, "carol", now).await;
    for rx in [&mut b, &mut p, &mut l, &mut c] {
        drain(rx);
    }

    assert_eq!(
        got(&bob.handle(invite("ops", "ALICE"), now).await),
        Got::Done
    );
    let ops = t.relay.store.room("ops").await.unwrap().unwrap();
    let told = ServerFrame::Invited(Invitation {
        room: info(&ops),
        by: "bob".into(),
    });
    assert_eq!(
        drain(&mut p),
        std::slice::from_ref(&told),
        "the phone is told"
    );
    assert_eq!(drain(&mut l), std::slice::from_ref(&told), "and the laptop");
    assert_eq!(drain(&mut b), [], "not the inviter");
    assert_eq!(drain(&mut c), [], "nor anyone else");

    // The invitations wait in the room list, newest first; to anyone else
    // the private room stays hidden.
    assert_eq!(
        invitations_of(&mut phone).await,
        [(s("ops"), s("bob")), (s("club"), s("bob"))]
    );
    assert_eq!(invitations_of(&mut carol).await, []);
    for frame in [join("ops"), leave("ops"), invite("ops", "bob")] {
        let what = format!("{frame:?}");
        let answer = carol.handle(frame, now).await;
        assert_eq!(got(&answer), Got::Refused(ErrorCode::NoSuchRoom), "{what}");
    }

    // Invited again, told again.
    assert_eq!(
        got(&bob.handle(invite("ops", "alice"), now).await),
        Got::Done
    );
    assert_eq!(drain(&mut p), [told]);
    // Joining accepts it: gone from the list, and a member is not invited.
    assert_eq!(
        got(&phone.handle(join("ops"), now).await),
        Got::Joined(s("ops"))
    );
    assert_eq!(invitations_of(&mut phone).await, [(s("club"), s("bob"))]);
    drain(&mut p);
    drain(&mut l);
    assert_eq!(
        got(&bob.handle(invite("ops", "alice"), now).await),
        Got::Done
    );
    assert_eq!(drain(&mut p), [], "already a member");
    assert_eq!(
        got(&phone.handle(invite("dev", "alice"), now).await),
        Got::Refused(ErrorCode::NotMember),
        "only members invite"
    );
}

#[tokio::test]
async fn leaving_a_room_one_is_only_invited_to_declines_the_invitation() {
    let cfg = Config {
        request_rate: 2,
        ..Config::default()
    };
    let t = world(cfg).await;
    let now = Instant::now();
    let (mut alice, mut a) = login(&t, "alice", now).await;
    let (mut bob, _b) = login(&t, "bob", now).await;
    drain(&mut a);

    assert_eq!(
        got(&alice.handle(leave("club"), now).await),
        Got::Left(s("club"))
    );
    assert_eq!(invitations_of(&mut alice).await, []);
    assert!(!t.relay.store.is_invited("club", "alice").await.unwrap());
    assert_eq!(drain(&mut a), [], "nobody is told of a decline");
    // Declined, the room is hidden again, as if never invited.
    let later = now + Duration::from_secs(1);
    for frame in [join("club"), leave("club")] {
        let answer = alice.handle(frame, later).await;
        assert_eq!(got(&answer), Got::Refused(ErrorCode::NoSuchRoom));
    }

    // Inviting again goes as fast as the inviter's room changes allow, no
    // faster: a burst of twice the rate, then refusals that tell nobody.
    let mut done = 0;
    for _ in 0..10 {
        match got(&bob.handle(invite("club", "alice"), later).await) {
            Got::Done => done += 1,
            Got::Refused(ErrorCode::RateLimited) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(done, 4);
    let told = drain(&mut a);
    assert_eq!(told.len(), 4, "{told:?}");
    assert!(told
        .iter()
        .all(|f| matches!(f, ServerFrame::Invited(i) if i.room.name == "club" && i.by == "bob")));
    assert_eq!(invitations_of(&mut alice).await, [(s("club"), s("bob"))]);
}

#[tokio::test]
async fn a_user_keeps_the_newest_invitations_up_to_the_cap() {
    let cfg = Config {
        request_rate: 1000,
        max_invitations: 3,
        ..Config::default()
    };
    let t = world(cfg).await;
    let now = Instant::now();
    let (mut bob, _b) = login(&t, "bob", now).await;
    let (mut carol, _c) = login(&t, "carol", now).await;
    for n in 0..4 {
        let room = format!("p{n}");
        t.relay
            .store
            .create_room(&room, RoomKind::Private, "bob")
            .await
            .unwrap();
        assert_eq!(
            got(&bob.handle(invite(&room, "alice"), now).await),
            Got::Done
        );
    }
    // carol's public room counts the same as bob's private ones.
    t.relay
        .store
        .create_room("open", RoomKind::Public, "carol")
        .await
        .unwrap();
    assert_eq!(
        got(&carol.handle(invite("open", "alice"), now).await),
        Got::Done
    );
    let (mut alice, _a) = login(&t, "alice", now).await;
    assert_eq!(
        invitations_of(&mut alice).await,
        [
            (s("open"), s("carol")),
            (s("p3"), s("bob")),
            (s("p2"), s("bob"))
        ]
    );
    // The oldest went, and with it the way into their private rooms.
    for room in ["club", "p0", "p1"] {
        let answer = alice.handle(join(room), now).await;
        assert_eq!(got(&answer), Got::Refused(ErrorCode::NoSuchRoom), "{room}");
    }
    assert_eq!(
        got(&alice.handle(join("p2"), now).await),
        Got::Joined(s("p2"))
    );
}

/// The topics of `session`'s rooms as its room list has them.
async fn topics_of(session: &mut Session<SqliteStore>) -> Vec<(String, String)> {
    let Answer::Bulk { work, .. } = session
        .handle(ClientFrame::ListRooms { req: 9 }, Instant::now())
        .await
    else {
        panic!("a bulk reply");
    };
    let Ok(ServerFrame::Rooms { joined, .. }) = work.await else {
        panic!("a room list");
    };
    joined.into_iter().map(|r| (r.name, r.topic)).collect()
}

#[tokio::test]
async fn a_topic_reaches_every_session_in_the_room_and_stays_with_it() {
    let t = world(Config::default()).await;
    let now = Instant::now();
    let (mut bob, mut b) = login(&t, "bob", now).await;
    let (mut phone, mut p) = login(&t, "alice", now).await;
    let (_laptop, mut l) = login(&t, "alice", now).await;
    let (_carol, mut c) = login(&t, "carol", now).await;
    assert_eq!(
        got(&phone.handle(join("dev"), now).await),
        Got::Joined(s("dev"))
    );
    for rx in [&mut b, &mut p, &mut l, &mut c] {
        drain(rx);
    }

    let frame = set_topic("dev", "builds, reviews");
    assert_eq!(got(&phone.handle(frame, now).await), Got::Done);
    let told = ServerFrame::Topic {
        room: s("dev"),
        topic: s("builds, reviews"),
        by: s("alice"),
    };
    assert_eq!(
        drain(&mut p),
        std::slice::from_ref(&told),
        "the setter's session"
    );
    assert_eq!(
        drain(&mut l),
        std::slice::from_ref(&told),
        "its other sessions"
    );
    assert_eq!(
        drain(&mut b),
        std::slice::from_ref(&told),
        "the other members"
    );
    assert_eq!(drain(&mut c), [], "not someone outside the room");

    // The same again: done, nothing sent.
    assert_eq!(
        got(&bob.handle(set_topic("dev", "builds, reviews"), now).await),
        Got::Done
    );
    assert_eq!(drain(&mut p), []);
    // Kept by the room: in the room list, and in the reply to a join.
    let dev = (s("dev"), s("builds, reviews"));
    assert!(topics_of(&mut phone).await.contains(&dev));
    assert!(topics_of(&mut bob).await.contains(&dev));
    let Answer::Reply(ServerFrame::Joined { room, .. }) = phone.handle(join("dev"), now).await
    else {
        panic!("joined");
    };
    assert_eq!(room.topic, "builds, reviews");
    assert_eq!(
        t.relay.store.room("dev").await.unwrap().unwrap().topic,
        "builds, reviews"
    );

    // Cleared by anyone in the room (there are no roles).
    assert_eq!(got(&bob.handle(set_topic("dev", ""), now).await), Got::Done);
    let cleared = ServerFrame::Topic {
        room: s("dev"),
        topic: String::new(),
        by: s("bob"),
    };
    assert_eq!(drain(&mut l), [cleared]);
    assert!(topics_of(&mut phone)
        .await
        .contains(&(s("dev"), String::new())));
}

#[tokio::test]
async fn a_topic_is_written_only_by_a_member_as_the_store_says_when_it_writes() {
    let t = world(Config::default()).await;
    let now = Instant::now();
    let (mut alice, mut a) = login(&t, "alice", now).await;
    let (_bob, mut b) = login(&t, "bob", now).await;
    assert_eq!(
        got(&alice.handle(join("dev"), now).await),
        Got::Joined(s("dev"))
    );
    drain(&mut a);
    drain(&mut b);
    // Left on another relay: this session has not heard yet, the store has.
    assert!(t.relay.store.remove_member("dev", "alice").await.unwrap());
    assert!(t.relay.hub.is_subscribed(alice.outbox().id, "dev"));
    assert_eq!(
        got(&alice.handle(set_topic("dev", "mine now"), now).await),
        Got::Refused(ErrorCode::NotMember)
    );
    assert_eq!(t.relay.store.room("dev").await.unwrap().unwrap().topic, "");
    assert_eq!(drain(&mut b), [], "nobody is told");
}

#[tokio::test]
async fn topics_take_from_the_room_change_budget() {
    let cfg = Config {
        request_rate: 2,
        ..Config::default()
    };
    let t = world(cfg).await;
    let t0 = Instant::now();
    let (mut alice, _a) = login(&t, "alice", t0).await;
    let (mut phone, _p) = login(&t, "alice", t0).await;
    // A burst of twice the rate, topics and joins together, from both of
    // the account's sessions.
    assert_eq!(
        got(&alice.handle(join("dev"), t0).await),
        Got::Joined(s("dev"))
    );
    for n in 0..3 {
        let session = if n == 1 { &mut phone } else { &mut alice };
        let frame = set_topic("dev", &format!("topic {n}"));
        assert_eq!(got(&session.handle(frame, t0).await), Got::Done, "{n}");
    }
    for frame in [set_topic("dev", "one too many"), join("club")] {
        assert_eq!(
            got(&phone.handle(frame, t0).await),
            Got::Refused(ErrorCode::RateLimited)
        );
    }
    assert_eq!(
        t.relay.store.room("dev").await.unwrap().unwrap().topic,
        "topic 2"
    );
    // Refused for the rate before anything else is looked at.
    let bad = set_topic("nowhere", &"x".repeat(MAX_TOPIC + 1));
    assert_eq!(
        got(&alice.handle(bad, t0).await),
        Got::Refused(ErrorCode::RateLimited)
    );
    let later = t0 + Duration::from_secs(1);
    assert_eq!(
        got(&alice.handle(set_topic("dev", "one too many"), later).await),
        Got::Done
    );
}
