//! Invitations through the real relay, on whichever store the suite runs
//! on (and across two relays on NATS): the invitee's sessions are told at
//! once, the invitations wait in the room list for a session that was
//! away, `Join` accepts and `Leave` declines, nobody else learns of a
//! private room, and a user's pending invitations are capped.

use std::time::Duration;

use common::client::{Event, RequestError};
use common::frame::{ErrorCode, Invitation, Page, RoomKind};
use confab_tests::nats::NatsServer;
use confab_tests::{Relay, Session};

/// The next live invitation, as (room, kind, inviter).
async fn invited(s: &mut Session) -> (String, RoomKind, String) {
    s.wait_for("an invitation", |e| match e {
        Event::Invited(i) => Some((i.room.name.clone(), i.room.kind, i.by.clone())),
        _ => None,
    })
    .await
}

/// No invitation arrives within a moment.
async fn not_invited(s: &mut Session) {
    let events = s.drain(Duration::from_millis(500)).await;
    assert!(
        !events.iter().any(|e| matches!(e, Event::Invited(_))),
        "{}: {events:?}",
        s.client.user()
    );
}

/// The pending invitations as the room list has them: (room, inviter).
async fn listed(s: &Session) -> Vec<(String, String)> {
    let list = s.client.room_list().await.expect("room list");
    names(&list.invited)
}

fn names(invited: &[Invitation]) -> Vec<(String, String)> {
    invited
        .iter()
        .map(|i| (i.room.name.clone(), i.by.clone()))
        .collect()
}

fn refused_with(result: Result<impl std::fmt::Debug, RequestError>, code: ErrorCode) {
    match result {
        Err(RequestError::Refused { code: c, .. }) if c == code => {}
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

fn pair(room: &str, by: &str) -> (String, String) {
    (room.to_owned(), by.to_owned())
}

#[tokio::test]
async fn an_invitation_reaches_every_session_of_the_invitee_waits_for_one_away_and_is_answered() {
    let relay = Relay::start();
    let mut alice = relay.register("alice").await;
    let mut phone = relay.register("bob").await;
    let mut laptop = relay.login("bob").await;
    let mut carol = relay.register("carol").await;
    for s in [&mut alice, &mut phone, &mut laptop, &mut carol] {
        s.joined("lobby").await;
    }
    alice.client.create_room("ops", true).await.unwrap();
    alice.client.send("ops", "the plan").await.unwrap();

    alice.client.invite("ops", "BOB").await.unwrap();
    let told = (
        String::from("ops"),
        RoomKind::Private,
        String::from("alice"),
    );
    assert_eq!(invited(&mut phone).await, told);
    assert_eq!(invited(&mut laptop).await, told);
    assert_eq!(listed(&phone).await, [pair("ops", "alice")]);

    // Nobody else is told, and to them the room stays hidden.
    not_invited(&mut carol).await;
    not_invited(&mut alice).await;
    assert_eq!(listed(&carol).await, []);
    refused_with(carol.client.join("ops").await, ErrorCode::NoSuchRoom);
    refused_with(carol.client.members("ops").await, ErrorCode::NoSuchRoom);
    refused_with(
        carol.client.history("ops", Page::Latest, 10).await,
        ErrorCode::NoSuchRoom,
    );
    refused_with(carol.client.decline("ops").await, ErrorCode::NoSuchRoom);

    // Invited while away: listed at the next login, newest first.
    phone.client.close().await;
    laptop.client.close().await;
    drop((phone, laptop));
    alice.client.create_room("dev", false).await.unwrap();
    alice.client.invite("dev", "bob").await.unwrap();
    let mut bob = relay.login("bob").await;
    let at_login = bob
        .wait_for("the invitations at login", |e| match e {
            Event::Invitations(list) => Some(names(list)),
            _ => None,
        })
        .await;
    assert_eq!(at_login, [pair("dev", "alice"), pair("ops", "alice")]);

    // Declined: gone, and the private room hidden again.
    bob.client.decline("ops").await.unwrap();
    assert_eq!(listed(&bob).await, [pair("dev", "alice")]);
    refused_with(bob.client.join("ops").await, ErrorCode::NoSuchRoom);

    // Invited again, told again; joining accepts it.
    alice.client.invite("ops", "bob").await.unwrap();
    assert_eq!(invited(&mut bob).await, told);
    let info = bob.client.join("ops").await.unwrap();
    assert_eq!((info.kind, info.members), (RoomKind::Private, 2));
    let recent = bob.joined("ops").await;
    assert_eq!(recent[0].body, "the plan");
    assert_eq!(listed(&bob).await, [pair("dev", "alice")]);
    // A member is not invited.
    alice.client.invite("ops", "bob").await.unwrap();
    not_invited(&mut bob).await;
    assert_eq!(listed(&bob).await, [pair("dev", "alice")]);
}

#[tokio::test]
async fn a_user_keeps_only_the_newest_invitations_up_to_the_cap() {
    let relay = Relay::start_with(&["--max-invitations", "3"], &[]);
    let alice = relay.register("alice").await;
    let mut bob = relay.register("bob").await;
    bob.joined("lobby").await;
    for n in 0..5 {
        let room = format!("p{n}");
        alice.client.create_room(&room, true).await.unwrap();
        alice.client.invite(&room, "bob").await.unwrap();
    }
    // Every one was told as it came.
    for n in 0..5 {
        assert_eq!(invited(&mut bob).await.0, format!("p{n}"));
    }
    assert_eq!(
        listed(&bob).await,
        [
            pair("p4", "alice"),
            pair("p3", "alice"),
            pair("p2", "alice")
        ]
    );
    // The oldest went, with the way into their rooms.
    refused_with(bob.client.join("p0").await, ErrorCode::NoSuchRoom);
    refused_with(bob.client.join("p1").await, ErrorCode::NoSuchRoom);
    bob.client.join("p2").await.unwrap();
}

#[tokio::test]
async fn an_invitation_made_on_one_relay_reaches_the_invitee_on_another() {
    let nats = NatsServer::start();
    let relays = Relay::cluster(&nats, 2, &[]);
    let (a, b) = (&relays[0], &relays[1]);
    let mut alice = a.register("alice").await;
    alice.joined("lobby").await;
    let mut here = a.register("bob").await;
    let mut there = b.login("bob").await;
    let mut carol = b.register("carol").await;
    for s in [&mut here, &mut there, &mut carol] {
        s.joined("lobby").await;
    }
    alice.client.create_room("ops", true).await.unwrap();
    alice.client.invite("ops", "bob").await.unwrap();
    let told = (
        String::from("ops"),
        RoomKind::Private,
        String::from("alice"),
    );
    assert_eq!(invited(&mut here).await, told, "on the inviter's relay");
    assert_eq!(invited(&mut there).await, told, "on the other relay");
    not_invited(&mut carol).await;
    assert_eq!(listed(&there).await, [pair("ops", "alice")]);

    // Declined on one relay, gone on both; accepted on the other.
    there.client.decline("ops").await.unwrap();
    assert_eq!(listed(&here).await, []);
    refused_with(here.client.join("ops").await, ErrorCode::NoSuchRoom);
    alice.client.invite("ops", "bob").await.unwrap();
    assert_eq!(invited(&mut there).await, told);
    there.client.join("ops").await.unwrap();
    assert_eq!(listed(&here).await, []);
    alice.client.send("ops", "welcome, bob").await.unwrap();
    // Live, or in the first page of the room joined on the other device.
    let heard = here
        .wait_for("alice's line in ops", |e| match e {
            Event::Message(m) if m.room == "ops" => Some(m.body.clone()),
            Event::Joined { room, recent, .. } if room == "ops" && !recent.is_empty() => {
                recent.last().map(|m| m.body.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(heard, "welcome, bob");
}
