//! The hub driven through real outboxes, reading what each session's
//! writer would send.

use std::sync::Arc;

use bytes::Bytes;
use common::codec;
use common::frame::{Message, Presence, PresenceKind, Seq, ServerFrame};
use tokio::sync::mpsc;

use super::{Hub, Outbox};

fn attach(hub: &Hub, outbox: Arc<Outbox>, rooms: &[&str]) {
    let id = outbox.id;
    let epoch = hub.attach(outbox);
    let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
    hub.subscribe_all(id, &rooms, epoch).unwrap();
    hub.announce_online(id);
}

#[test]
fn a_membership_change_during_login_is_not_missed() {
    let hub = Hub::default();
    let (s, _rx) = Outbox::new(1, "alice".into(), 16);
    let epoch = hub.attach(s);
    // The rooms were read from the store here; then another device joins.
    hub.joined("alice", "dev");
    assert!(hub.is_subscribed(1, "dev"), "the attached session hears it");
    assert!(
        hub.subscribe_all(1, &["lobby".to_string()], epoch).is_err(),
        "stale room list refused"
    );
}

fn decode(b: Bytes) -> ServerFrame {
    codec::decode(&b[4..]).unwrap()
}

fn drain(rx: &mut mpsc::Receiver<Bytes>) -> Vec<ServerFrame> {
    let mut out = vec![];
    while let Ok(b) = rx.try_recv() {
        out.push(decode(b));
    }
    out
}

fn msg(room: &str, seq: Seq) -> Message {
    Message {
        room: room.into(),
        seq,
        id: [seq as u8; 16],
        ts: 0,
        from: "a".into(),
        body: "hi".into(),
    }
}

#[test]
fn fanout_reaches_room_members_only_and_presence_flows() {
    let hub = Hub::default();
    let (a, mut ra) = Outbox::new(1, "alice".into(), 16);
    let (b, mut rb) = Outbox::new(2, "bob".into(), 16);
    let (a2, mut ra2) = Outbox::new(3, "alice".into(), 16);
    attach(&hub, a, &["lobby", "dev"]);
    attach(&hub, b, &["lobby"]);
    assert!(
        matches!(
            &drain(&mut ra)[..],
            [ServerFrame::Presence(Presence {
                kind: PresenceKind::Online,
                room: None,
                user,
            })] if user == "bob"
        ),
        "alice hears bob come online"
    );
    attach(&hub, a2, &["lobby", "dev"]);
    assert!(drain(&mut rb).is_empty(), "a second device is not news");

    hub.publish(&msg("dev", 1));
    assert!(matches!(&drain(&mut ra)[..], [ServerFrame::Message(m)] if m.seq == 1));
    assert_eq!(drain(&mut ra2).len(), 1, "every device of the user");
    assert!(drain(&mut rb).is_empty(), "bob is not in dev");

    hub.joined("bob", "dev");
    assert!(hub.is_subscribed(2, "dev"));
    assert!(matches!(
        &drain(&mut ra)[..],
        [ServerFrame::Presence(Presence {
            kind: PresenceKind::Joined,
            room: Some(room),
            user,
        })] if room == "dev" && user == "bob"
    ));
    hub.publish(&msg("dev", 2));
    assert!(drain(&mut rb)
        .iter()
        .any(|f| matches!(f, ServerFrame::Message(_))));

    hub.left("bob", "dev");
    assert!(!hub.is_subscribed(2, "dev"));
    assert!(
        matches!(
            &drain(&mut rb)[..],
            [ServerFrame::Presence(Presence {
                kind: PresenceKind::Left,
                ..
            })]
        ),
        "the leaver's own sessions hear it too"
    );
    drain(&mut ra);
    hub.detach(1);
    assert!(drain(&mut rb).is_empty(), "alice still has a device");
    hub.detach(3);
    assert!(matches!(
        &drain(&mut rb)[..],
        [ServerFrame::Presence(Presence {
            kind: PresenceKind::Offline,
            ..
        })]
    ));
    assert!(!hub.is_online("alice"));
}

#[tokio::test]
async fn a_full_queue_lags_that_room_until_resubscribed() {
    let hub = Hub::default();
    let (slow, mut rx) = Outbox::new(1, "slow".into(), 2);
    attach(&hub, slow.clone(), &["lobby"]);
    for seq in 1..=5 {
        hub.publish(&msg("lobby", seq));
    }
    assert_eq!(
        slow.lags.next().await,
        vec![ServerFrame::Lagged {
            room: "lobby".into(),
            from: 3
        }]
    );
    let got: Vec<Seq> = drain(&mut rx)
        .into_iter()
        .filter_map(|f| {
            if let ServerFrame::Message(m) = f {
                Some(m.seq)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(got, vec![1, 2]);
    hub.publish(&msg("lobby", 6));
    assert!(
        drain(&mut rx).is_empty(),
        "nothing live while lagging: the gap is paged"
    );
    slow.lags.resubscribed("lobby");
    hub.publish(&msg("lobby", 7));
    assert_eq!(drain(&mut rx).len(), 1);
}

/// What the writer sends now: the queue as batches through `take`.
fn written(outbox: &Outbox, rx: &mut mpsc::Receiver<Bytes>) -> Vec<ServerFrame> {
    let mut batch = Vec::new();
    while let Ok(b) = rx.try_recv() {
        batch.push(b);
    }
    outbox.lags.take(&mut batch);
    batch.into_iter().map(decode).collect()
}

fn own_membership(frames: &[ServerFrame]) -> Vec<(String, PresenceKind)> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Presence(Presence {
                room: Some(r),
                user,
                kind,
            }) if user == "alice" => Some((r.clone(), *kind)),
            _ => None,
        })
        .collect()
}

// Found by fuzzing the client's room sync: a dropped `Joined` of the
// user's own other device left the client not knowing a room it is in.
#[test]
fn own_membership_changes_pass_a_full_queue_in_order() {
    let hub = Hub::default();
    let (alice, mut rx) = Outbox::new(1, "alice".into(), 1);
    attach(&hub, alice.clone(), &["lobby"]);
    hub.publish(&msg("lobby", 1)); // the queue (depth 1) is now full
    hub.joined("alice", "dev");
    hub.left("alice", "dev");
    hub.joined("alice", "dev");
    assert!(hub.is_subscribed(1, "dev"));

    let frames = written(&alice, &mut rx);
    assert!(matches!(&frames[0], ServerFrame::Message(m) if m.seq == 1));
    assert_eq!(
        own_membership(&frames),
        vec![
            ("dev".into(), PresenceKind::Joined),
            ("dev".into(), PresenceKind::Left),
            ("dev".into(), PresenceKind::Joined),
        ]
    );
    hub.publish(&msg("dev", 1));
    assert!(matches!(&written(&alice, &mut rx)[..], [ServerFrame::Message(m)] if m.room == "dev"));
}

#[test]
fn a_held_change_keeps_its_place_among_frames_queued_around_it() {
    let hub = Hub::default();
    let (alice, mut rx) = Outbox::new(1, "alice".into(), 2);
    attach(&hub, alice.clone(), &["lobby"]);
    hub.publish(&msg("lobby", 1));
    hub.left("alice", "lobby"); // queued: Message 1, Left
    hub.joined("alice", "lobby"); // full: held after 2 frames
                                  // The writer takes one frame; room opens for a later message.
    let first = rx.try_recv().unwrap();
    let mut batch = vec![first];
    alice.lags.take(&mut batch);
    assert_eq!(batch.len(), 1, "nothing held belongs after frame 1");
    hub.publish(&msg("lobby", 2));
    let frames = written(&alice, &mut rx);
    assert!(matches!(&frames[0], ServerFrame::Presence(p) if p.kind == PresenceKind::Left));
    assert!(matches!(&frames[1], ServerFrame::Presence(p) if p.kind == PresenceKind::Joined));
    assert!(matches!(&frames[2], ServerFrame::Message(m) if m.seq == 2));
}

#[test]
fn resync_applies_membership_changes_that_were_missed() {
    let hub = Hub::default();
    let (alice, mut rx) = Outbox::new(1, "alice".into(), 16);
    attach(&hub, alice.clone(), &["lobby", "old"]);
    hub.resync("alice", &["lobby".to_string(), "new".to_string()]);
    assert!(hub.is_subscribed(1, "new"));
    assert!(!hub.is_subscribed(1, "old"));
    let mut told = own_membership(&written(&alice, &mut rx));
    told.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        told,
        vec![
            ("new".into(), PresenceKind::Joined),
            ("old".into(), PresenceKind::Left)
        ]
    );
    hub.resync("nobody", &["lobby".to_string()]);
}

#[test]
fn an_invitation_reaches_the_invitees_sessions_here_and_goes_to_the_other_relays() {
    use common::frame::{Invitation, RoomInfo, RoomKind};

    use super::HubEvent;

    let hub = Hub::default();
    let (events, mut sent) = mpsc::unbounded_channel();
    hub.set_events(events);
    let (a, mut ra) = Outbox::new(1, "alice".into(), 16);
    let (a2, mut ra2) = Outbox::new(2, "alice".into(), 16);
    let (b, mut rb) = Outbox::new(3, "bob".into(), 16);
    for s in [a, a2, b] {
        attach(&hub, s, &["lobby"]);
    }
    for rx in [&mut ra, &mut ra2, &mut rb] {
        drain(rx);
    }
    while sent.try_recv().is_ok() {}
    let invitation = Invitation {
        room: RoomInfo {
            name: "ops".into(),
            kind: RoomKind::Private,
            members: 2,
            latest: 9,
            topic: String::new(),
        },
        by: "bob".into(),
    };
    let told = ServerFrame::Invited(invitation.clone());

    hub.invited("alice", invitation.clone());
    assert_eq!(drain(&mut ra), std::slice::from_ref(&told));
    assert_eq!(drain(&mut ra2), std::slice::from_ref(&told));
    assert_eq!(drain(&mut rb), [], "only the invitee's sessions");
    let event = HubEvent::Invited {
        user: "alice".into(),
        invitation: invitation.clone(),
    };
    assert_eq!(
        sent.try_recv().ok(),
        Some(event.clone()),
        "for the other relays"
    );

    // Another relay's invitation reaches the sessions here, and is not
    // sent back out.
    hub.apply_remote(event);
    assert_eq!(drain(&mut ra), std::slice::from_ref(&told));
    assert_eq!(drain(&mut ra2), [told]);
    assert!(sent.try_recv().is_err());
    hub.apply_remote(HubEvent::Invited {
        user: "carol".into(),
        invitation,
    });
    assert_eq!(drain(&mut rb), [], "nobody here to tell");
}

#[test]
fn a_topic_reaches_the_rooms_sessions_here_and_elsewhere_newest_last() {
    use super::HubEvent;

    let hub = Hub::default();
    let (events, mut sent) = mpsc::unbounded_channel();
    hub.set_events(events);
    let (a, mut ra) = Outbox::new(1, "alice".into(), 16);
    let (a2, mut ra2) = Outbox::new(2, "alice".into(), 16);
    let (b, mut rb) = Outbox::new(3, "bob".into(), 16);
    let (c, mut rc) = Outbox::new(4, "carol".into(), 16);
    attach(&hub, a, &["lobby", "ops"]);
    attach(&hub, a2, &["lobby", "ops"]);
    attach(&hub, b, &["lobby", "ops"]);
    attach(&hub, c, &["lobby"]);
    for rx in [&mut ra, &mut ra2, &mut rb, &mut rc] {
        drain(rx);
    }
    while sent.try_recv().is_ok() {}
    let told = |topic: &str, by: &str| ServerFrame::Topic {
        room: "ops".into(),
        topic: topic.into(),
        by: by.into(),
    };

    hub.topic("ops", "pages", "alice", 5);
    let pages = told("pages", "alice");
    for rx in [&mut ra, &mut ra2, &mut rb] {
        assert_eq!(
            drain(rx),
            std::slice::from_ref(&pages),
            "every session in ops"
        );
    }
    assert_eq!(drain(&mut rc), [], "not a session outside the room");
    let event = HubEvent::Topic {
        room: "ops".into(),
        topic: "pages".into(),
        by: "alice".into(),
        order: 5,
    };
    assert_eq!(sent.try_recv().ok(), Some(event), "for the other relays");

    // Another relay's change, newer: told here, not sent back out.
    hub.apply_remote(HubEvent::Topic {
        room: "ops".into(),
        topic: "deploys".into(),
        by: "bob".into(),
        order: 9,
    });
    assert_eq!(drain(&mut rb), [told("deploys", "bob")]);
    assert!(sent.try_recv().is_err());
    drain(&mut ra);
    drain(&mut ra2);
    // Older than what was told, from here or elsewhere: dropped, so no
    // session is left with a topic the store overwrote.
    hub.topic("ops", "stale", "alice", 7);
    hub.apply_remote(HubEvent::Topic {
        room: "ops".into(),
        topic: "staler".into(),
        by: "bob".into(),
        order: 9,
    });
    for rx in [&mut ra, &mut ra2, &mut rb] {
        assert_eq!(drain(rx), []);
    }
    assert!(
        matches!(sent.try_recv(), Ok(HubEvent::Topic { order: 7, .. })),
        "the other relays decide for themselves"
    );
    // Another room has an order of its own.
    hub.topic("lobby", "hello", "carol", 1);
    assert_eq!(drain(&mut rc).len(), 1);
}
