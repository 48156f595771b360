//! The account of other relays, applied to a real hub with a local
//! session attached: what that session is told is what a client here sees.

use std::time::Duration;

use bytes::Bytes;
use common::codec;
use common::frame::{Presence, PresenceKind, ServerFrame};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Remotes, GONE_AFTER};
use crate::cluster::wire::{Envelope, Wire};
use crate::hub::{Hub, HubEvent, Outbox};

const ME: u64 = 1;

/// A hub with carol online here, in the lobby, and what her session reads.
fn hub_with_carol() -> (Hub, mpsc::Receiver<Bytes>) {
    let hub = Hub::default();
    let (carol, rx) = Outbox::new(1, "carol".into(), 64);
    let epoch = hub.attach(carol);
    hub.subscribe_all(1, &["lobby".to_string()], epoch).unwrap();
    hub.announce_online(1);
    (hub, rx)
}

fn said(relay: u64, wire: Wire) -> Vec<u8> {
    Envelope { relay, wire }.encode().unwrap()
}

fn online(user: &str) -> Wire {
    Wire::Event(HubEvent::Online {
        user: user.into(),
        rooms: vec!["lobby".into()],
    })
}

fn roster(users: &[&str]) -> Wire {
    Wire::Roster(
        users
            .iter()
            .map(|u| (u.to_string(), vec!["lobby".to_string()]))
            .collect(),
    )
}

/// Takes in a message and applies what it changes, as the link does.
fn receive(hub: &Hub, remotes: &mut Remotes, payload: &[u8], now: Instant) {
    for event in remotes.receive(payload, now).unwrap() {
        hub.apply_remote(event);
    }
}

fn drop_silent(hub: &Hub, remotes: &mut Remotes, now: Instant) {
    for event in remotes.drop_silent(now) {
        hub.apply_remote(event);
    }
}

/// Presence changes carol's session was told, as (user, kind).
fn told(rx: &mut mpsc::Receiver<Bytes>) -> Vec<(String, PresenceKind)> {
    let mut out = Vec::new();
    while let Ok(b) = rx.try_recv() {
        if let Ok(ServerFrame::Presence(Presence { user, kind, .. })) = codec::decode(&b[4..]) {
            out.push((user, kind));
        }
    }
    out
}

fn presence(user: &str, kind: PresenceKind) -> (String, PresenceKind) {
    (user.into(), kind)
}

#[test]
fn an_online_event_marks_a_user_online_once() {
    let (hub, mut rx) = hub_with_carol();
    let mut remotes = Remotes::new(ME);
    let now = Instant::now();
    receive(&hub, &mut remotes, &said(2, online("alice")), now);
    assert!(hub.is_online("alice"));
    assert_eq!(told(&mut rx), vec![presence("alice", PresenceKind::Online)]);

    assert!(remotes
        .receive(&said(2, online("alice")), now)
        .unwrap()
        .is_empty());
    receive(&hub, &mut remotes, &said(2, roster(&["alice"])), now);
    assert!(
        told(&mut rx).is_empty(),
        "already known to be on that relay"
    );

    let offline = Wire::Event(HubEvent::Offline {
        user: "alice".into(),
        rooms: vec![],
    });
    receive(&hub, &mut remotes, &said(2, offline), now);
    assert!(!hub.is_online("alice"));
    assert_eq!(
        told(&mut rx),
        vec![presence("alice", PresenceKind::Offline)]
    );
}

#[test]
fn a_roster_that_omits_a_user_turns_them_offline() {
    let (hub, mut rx) = hub_with_carol();
    let mut remotes = Remotes::new(ME);
    let now = Instant::now();
    receive(&hub, &mut remotes, &said(2, roster(&["alice", "bob"])), now);
    assert!(hub.is_online("alice") && hub.is_online("bob"));
    told(&mut rx);

    receive(&hub, &mut remotes, &said(2, roster(&["bob"])), now);
    assert!(!hub.is_online("alice"));
    assert!(hub.is_online("bob"));
    assert_eq!(
        told(&mut rx),
        vec![presence("alice", PresenceKind::Offline)]
    );
}

#[test]
fn a_relay_silent_too_long_is_dropped_and_one_heard_from_is_kept() {
    let (hub, mut rx) = hub_with_carol();
    let mut remotes = Remotes::new(ME);
    let start = Instant::now();
    receive(&hub, &mut remotes, &said(2, roster(&["alice"])), start);
    receive(&hub, &mut remotes, &said(3, roster(&["bob"])), start);
    let later = start + Duration::from_secs(10);
    receive(&hub, &mut remotes, &said(3, roster(&["bob"])), later);
    told(&mut rx);

    drop_silent(&hub, &mut remotes, start + GONE_AFTER);
    assert!(hub.is_online("alice"), "silent for exactly the limit: kept");

    drop_silent(
        &hub,
        &mut remotes,
        start + GONE_AFTER + Duration::from_secs(1),
    );
    assert!(!hub.is_online("alice"));
    assert!(hub.is_online("bob"), "heard from within the limit");
    assert_eq!(
        told(&mut rx),
        vec![presence("alice", PresenceKind::Offline)]
    );

    // Heard from again: a new relay as far as this one knows.
    receive(&hub, &mut remotes, &said(2, roster(&["alice"])), later);
    assert!(hub.is_online("alice"));
}

#[test]
fn bye_drops_a_relay_at_once() {
    let (hub, mut rx) = hub_with_carol();
    let mut remotes = Remotes::new(ME);
    let now = Instant::now();
    receive(&hub, &mut remotes, &said(2, roster(&["alice", "bob"])), now);
    told(&mut rx);

    receive(&hub, &mut remotes, &said(2, Wire::Bye), now);
    assert!(!hub.is_online("alice") && !hub.is_online("bob"));
    let mut offline = told(&mut rx);
    offline.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        offline,
        vec![
            presence("alice", PresenceKind::Offline),
            presence("bob", PresenceKind::Offline)
        ]
    );
    assert!(remotes.drop_silent(now + 2 * GONE_AFTER).is_empty());
}

#[test]
fn a_user_online_on_two_relays_stays_online_until_both_drop_them() {
    let (hub, mut rx) = hub_with_carol();
    let mut remotes = Remotes::new(ME);
    let now = Instant::now();
    receive(&hub, &mut remotes, &said(2, online("alice")), now);
    receive(&hub, &mut remotes, &said(3, online("alice")), now);
    assert_eq!(told(&mut rx), vec![presence("alice", PresenceKind::Online)]);

    receive(&hub, &mut remotes, &said(2, Wire::Bye), now);
    assert!(hub.is_online("alice"));
    assert!(told(&mut rx).is_empty());
    receive(&hub, &mut remotes, &said(3, Wire::Bye), now);
    assert!(!hub.is_online("alice"));
}

#[test]
fn membership_changes_pass_through_to_the_hub() {
    let (hub, _rx) = hub_with_carol();
    let mut remotes = Remotes::new(ME);
    let joined = Wire::Event(HubEvent::Joined {
        user: "carol".into(),
        room: "dev".into(),
    });
    receive(&hub, &mut remotes, &said(2, joined), Instant::now());
    assert!(hub.is_subscribed(1, "dev"), "carol joined on another relay");
}

#[test]
fn an_invitation_made_on_another_relay_reaches_the_invitee_here() {
    use common::frame::{Invitation, RoomInfo, RoomKind};

    let (hub, mut rx) = hub_with_carol();
    let mut remotes = Remotes::new(ME);
    let invitation = Invitation {
        room: RoomInfo {
            name: "ops".into(),
            kind: RoomKind::Private,
            members: 1,
            latest: 0,
            topic: String::new(),
        },
        by: "bob".into(),
    };
    let invited = Wire::Event(HubEvent::Invited {
        user: "carol".into(),
        invitation: invitation.clone(),
    });
    while rx.try_recv().is_ok() {}
    receive(&hub, &mut remotes, &said(2, invited), Instant::now());
    let frame = rx.try_recv().expect("carol is told");
    assert_eq!(
        codec::decode::<ServerFrame>(&frame[4..]).unwrap(),
        ServerFrame::Invited(invitation)
    );
}

#[test]
fn a_topic_set_on_another_relay_reaches_the_rooms_sessions_here() {
    let (hub, mut rx) = hub_with_carol();
    let mut remotes = Remotes::new(ME);
    let topic = Wire::Event(HubEvent::Topic {
        room: "lobby".into(),
        topic: "say hello".into(),
        by: "bob".into(),
        order: 3,
    });
    while rx.try_recv().is_ok() {}
    receive(&hub, &mut remotes, &said(2, topic), Instant::now());
    let frame = rx.try_recv().expect("carol is told");
    assert_eq!(
        codec::decode::<ServerFrame>(&frame[4..]).unwrap(),
        ServerFrame::Topic {
            room: "lobby".into(),
            topic: "say hello".into(),
            by: "bob".into()
        }
    );
}

#[test]
fn events_from_this_relay_itself_are_ignored() {
    let (hub, mut rx) = hub_with_carol();
    let mut remotes = Remotes::new(ME);
    let now = Instant::now();
    for wire in [online("alice"), roster(&["alice"]), Wire::Bye] {
        assert!(remotes.receive(&said(ME, wire), now).unwrap().is_empty());
    }
    assert!(!hub.is_online("alice"));
    assert!(told(&mut rx).is_empty());
    assert!(remotes.drop_silent(now + 2 * GONE_AFTER).is_empty());
}

#[test]
fn an_unreadable_envelope_is_ignored() {
    let (hub, mut rx) = hub_with_carol();
    let mut remotes = Remotes::new(ME);
    let now = Instant::now();
    receive(&hub, &mut remotes, &said(2, online("alice")), now);
    told(&mut rx);

    let mut cut = said(2, Wire::Bye);
    cut.pop();
    for garbage in [
        &b""[..],
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        &cut,
    ] {
        assert!(remotes.receive(garbage, now).is_err());
    }
    assert!(hub.is_online("alice"), "nothing changed");
    assert!(told(&mut rx).is_empty());
    receive(&hub, &mut remotes, &said(2, Wire::Bye), now);
    assert!(!hub.is_online("alice"), "and later messages still count");
}

#[test]
fn the_envelope_keeps_its_wire_format() {
    // Relays of different builds share a subject: this layout must not move.
    let bytes = said(0x0102, Wire::Bye);
    assert_eq!(bytes, vec![0xfb, 0x02, 0x01, 2]);
    let bytes = said(7, online("a"));
    assert_eq!(
        bytes,
        vec![7, 0, 2, 1, b'a', 1, 5, b'l', b'o', b'b', b'b', b'y']
    );
    assert_eq!(
        Envelope::decode(&bytes).unwrap(),
        Envelope {
            relay: 7,
            wire: online("a")
        }
    );
}
