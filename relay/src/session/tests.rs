//! The session core fed frames directly: every request kind and every
//! error code a logged-in session can get (PROTOCOL §6), on a real store.

use std::time::{Duration, Instant};

use common::frame::{ClientFrame, ErrorCode, Page, Presence, PresenceKind, RoomKind, ServerFrame};
use common::limits::{MAX_BODY, MAX_PAGE};
use common::names::{dm_room, LOBBY};

use super::*;
use crate::config::Config;
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
    store.invite("club", "alice").await.unwrap();
    store.open_dm("bob", "carol").await.unwrap();
    t
}

async fn login(
    t: &TestRelay,
    user: &str,
    now: Instant,
) -> (Session<SqliteStore>, tokio::sync::mpsc::Receiver<Bytes>) {
    Session::start(t.relay.clone(), user.into(), now)
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
        ("history", history(LOBBY, 50), Got::Bulk),
        ("history of zero", history(LOBBY, 0), Got::Refused(E::BadLimit)),
        ("history over the page", history(LOBBY, MAX_PAGE + 1), Got::Refused(E::BadLimit)),
        ("history at the page", history(LOBBY, MAX_PAGE), Got::Bulk),
        ("history not joined", history("dev", 5), Got::Refused(E::NotMember)),
        ("history of no room", history("nowhere", 5), Got::Refused(E::NoSuchRoom)),
        ("room list", C::ListRooms { req: 7 }, Got::Bulk),
        ("members of a public room not joined", C::Members { req: 7, room: s("dev") }, Got::Bulk),
        ("members of a private room not joined", C::Members { req: 7, room: s("ops") }, Got::Refused(E::NotMember)),
        ("members of a DM of others", C::Members { req: 7, room: bob_carol.clone() }, Got::Refused(E::NotMember)),
        ("members of no room", C::Members { req: 7, room: s("nowhere") }, Got::Refused(E::NoSuchRoom)),
        ("resume lobby", C::Resume { req: 7, room: s(LOBBY) }, Got::Done),
        ("resume not joined", C::Resume { req: 7, room: s("dev") }, Got::Refused(E::NotMember)),
        ("resume no room", C::Resume { req: 7, room: s("nowhere") }, Got::Refused(E::NoSuchRoom)),
        ("create", C::CreateRoom { req: 7, room: s("mine"), private: false }, Got::Joined(s("mine"))),
        ("create taken", C::CreateRoom { req: 7, room: s("dev"), private: false }, Got::Refused(E::RoomExists)),
        ("create bad name", C::CreateRoom { req: 7, room: s("no spaces"), private: true }, Got::Refused(E::InvalidName)),
        ("create a DM name", C::CreateRoom { req: 7, room: alice_bob.clone(), private: false }, Got::Refused(E::InvalidName)),
        ("join public", C::Join { req: 7, room: s("dev") }, Got::Joined(s("dev"))),
        ("join public again", C::Join { req: 7, room: s("dev") }, Got::Joined(s("dev"))),
        ("join private uninvited", C::Join { req: 7, room: s("ops") }, Got::Refused(E::Forbidden)),
        ("join private invited", C::Join { req: 7, room: s("club") }, Got::Joined(s("club"))),
        ("join a DM of others", C::Join { req: 7, room: bob_carol.clone() }, Got::Refused(E::Forbidden)),
        ("join no room", C::Join { req: 7, room: s("nowhere") }, Got::Refused(E::NoSuchRoom)),
        ("leave lobby", C::Leave { req: 7, room: s(LOBBY) }, Got::Refused(E::Forbidden)),
        ("leave not joined", C::Leave { req: 7, room: s("ops") }, Got::Refused(E::NotMember)),
        ("leave no room", C::Leave { req: 7, room: s("nowhere") }, Got::Refused(E::NoSuchRoom)),
        ("leave joined", C::Leave { req: 7, room: s("dev") }, Got::Left(s("dev"))),
        ("invite not a member", C::Invite { req: 7, room: s("ops"), user: s("carol") }, Got::Refused(E::NotMember)),
        ("invite to no room", C::Invite { req: 7, room: s("nowhere"), user: s("carol") }, Got::Refused(E::NoSuchRoom)),
        ("invite nobody", C::Invite { req: 7, room: s("club"), user: s("nobody") }, Got::Refused(E::NoSuchUser)),
        ("invite", C::Invite { req: 7, room: s("club"), user: s("CAROL") }, Got::Done),
        ("open a DM", C::OpenDm { req: 7, user: s("Bob") }, Got::Joined(alice_bob.clone())),
        ("open a DM with nobody", C::OpenDm { req: 7, user: s("nobody") }, Got::Refused(E::NoSuchUser)),
        ("invite to a DM", C::Invite { req: 7, room: alice_bob.clone(), user: s("carol") }, Got::Refused(E::Forbidden)),
        ("leave a DM", C::Leave { req: 7, room: alice_bob.clone() }, Got::Refused(E::Forbidden)),
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
    for (what, frame, want) in cases {
        let req = frame.req();
        let answer = alice.handle(frame, now).await;
        assert_eq!(got(&answer), want, "{what}");
        if want != Got::Bye {
            assert_eq!(
                req_of(&answer),
                Some(req),
                "{what}: the answer names the request"
            );
        }
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
    }) = work.await
    else {
        panic!("a room list");
    };
    assert_eq!(req, 3);
    let names = |rooms: &[RoomInfo]| rooms.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&joined), [LOBBY]);
    assert_eq!(names(&public), ["dev", LOBBY]);

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
