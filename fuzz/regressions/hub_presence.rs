//! Regression found by the `room_sync` fuzz target, at its root in the hub.
//! Crate `relay`: drop in as `relay/tests/hub_presence_regressions.rs`.
//!
//! Fuzz input (minimized): Connect; Join r1; Leave r1; Join r1 with its
//! Presence dropped (full queue); Handle ListRooms; Rooms; Commit r1 with a
//! full queue (Lagged); Read Presence Joined, Lagged, Presence Left; Commit
//! r1. The client applies the `Left` of the first membership after the room
//! list already showed the second one, forgets the room while the user is
//! in it, and the messages committed while it lagged are not shown until
//! the room's next live message (then only the newest page) or the next
//! login. The same dropped `Presence{Joined}` is what makes the first news
//! of a room a `Lagged` (see room_sync.rs, `lagged_for_a_room_not_yet_known…`).
//!
//! `Hub::joined` offers the user's own sessions the `Presence` with
//! `try_send` and drops it when the queue is full (hub.rs `presence_to` →
//! `Outbox::offer`), as for anyone's presence. Of all presence, only this
//! one changes what the client must fetch; this test asks that a session's
//! writer can still learn of its own user's new membership with a full
//! queue: from the queue once it drains, or past it (like `Lagged`).

use std::future::Future;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use common::codec;
use common::frame::{Message, Presence, PresenceKind, ServerFrame};
use relay::hub::{Hub, Outbox};
use tokio::sync::mpsc;

fn msg(room: &str, seq: u64) -> Message {
    Message {
        room: room.into(),
        seq,
        id: [seq as u8; 16],
        ts: 0,
        from: "bob".into(),
        body: "hi".into(),
    }
}

/// Everything the session's writer can get now: its queue, then the
/// frames `Lags::next` has ready (polled once, without blocking).
fn writer_frames(outbox: &Outbox, rx: &mut mpsc::Receiver<Bytes>) -> Vec<ServerFrame> {
    let mut out = Vec::new();
    while let Ok(b) = rx.try_recv() {
        out.push(codec::decode(&b[4..]).unwrap());
    }
    let next = outbox.lags.next();
    let mut next = std::pin::pin!(next);
    if let Poll::Ready(frames) = next.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        out.extend(frames);
    }
    while let Ok(b) = rx.try_recv() {
        out.push(codec::decode(&b[4..]).unwrap());
    }
    out
}

#[test]
fn a_full_queue_does_not_hide_a_new_membership_from_the_users_own_session() {
    let hub = Hub::default();
    let (alice, mut rx) = Outbox::new(1, "alice".into(), 1);
    let epoch = hub.attach(alice.clone());
    hub.subscribe_all(1, &["lobby".to_string()], epoch).unwrap();
    hub.publish(&msg("lobby", 1)); // the queue (depth 1) is now full
    hub.joined("alice", "dev"); // another device of alice joined dev
    assert!(hub.is_subscribed(1, "dev"));

    let frames = writer_frames(&alice, &mut rx);
    let told = frames.iter().any(|f| {
        matches!(f, ServerFrame::Presence(Presence { room: Some(r), user, kind: PresenceKind::Joined })
            if r == "dev" && user == "alice")
    });
    assert!(
        told,
        "alice's session is subscribed to dev but was never told: {frames:?}"
    );
}
