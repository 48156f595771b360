//! One session's outgoing queue as the hub sees it: the bounded queue its
//! writer drains, the rooms in which it fell behind, and the frames about
//! its own user's memberships held past a full queue.
//!
//! Live messages are never waited for: a full queue marks the session
//! lagged in the room, and it resumes from history. Presence is dropped
//! when there is no room. A change of the user's own membership is never
//! dropped: it is held and slotted into the stream where it would have
//! been queued, so the client learns of every room it must fetch.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::codec;
use common::frame::{Seq, ServerFrame};
use tokio::sync::{mpsc, Notify};

/// Identifies one connection's session.
pub type SessionId = u64;

/// The hub's side of a session: its queue and lag marks.
pub struct Outbox {
    pub id: SessionId,
    pub user: String,
    tx: mpsc::Sender<Bytes>,
    /// Shared with the session's writer, which must not hold `tx` (the
    /// queue closes when the hub and the session drop their outboxes).
    pub lags: Arc<Lags>,
    /// The password hash the user logged in with: the session lasts only
    /// while the account still has it.
    credential: std::sync::OnceLock<String>,
    revoked: Notify,
}

impl Outbox {
    /// Creates an outbox and the receiver its writer drains.
    pub fn new(id: SessionId, user: String, depth: usize) -> (Arc<Self>, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(depth);
        (
            Arc::new(Outbox {
                id,
                user,
                tx,
                lags: Arc::default(),
                credential: std::sync::OnceLock::new(),
                revoked: Notify::new(),
            }),
            rx,
        )
    }

    /// Records the password hash the session logged in with; only the first
    /// call counts.
    pub fn set_credential(&self, phc: String) {
        let _ = self.credential.set(phc);
    }

    /// The password hash the session logged in with, once set.
    pub fn credential(&self) -> Option<&str> {
        self.credential.get().map(String::as_str)
    }

    /// Ends the session: its account changed under it.
    pub fn revoke(&self) {
        // A stored permit: a connection between two reads still sees it.
        self.revoked.notify_one();
    }

    /// Completes once [`Outbox::revoke`] was called.
    pub async fn revoked(&self) {
        self.revoked.notified().await;
    }

    /// Queues a reply, waiting for room: replies are never dropped, and a
    /// client that does not read only slows its own requests.
    pub async fn reply(&self, frame: &ServerFrame) -> bool {
        let Ok(permit) = self.tx.reserve().await else {
            return false;
        };
        let mut held = self.lags.held.lock().expect("held lock");
        permit.send(codec::encode(frame));
        held.queued += 1;
        true
    }

    /// Puts a frame on the queue if it has room, counting it so held
    /// frames can be placed after it.
    fn try_queue(&self, frame: &Bytes) -> bool {
        let mut held = self.lags.held.lock().expect("held lock");
        let ok = self.tx.try_send(frame.clone()).is_ok();
        held.queued += u64::from(ok);
        ok
    }

    /// Queues a change of the session's own user's membership, never
    /// losing it: with a full queue (or frames already held, to keep their
    /// order) it is held until the writer reaches its place in the stream.
    pub(super) fn offer_own(&self, frame: &Bytes) {
        let mut held = self.lags.held.lock().expect("held lock");
        if held.frames.is_empty() && self.tx.try_send(frame.clone()).is_ok() {
            held.queued += 1;
            return;
        }
        if held.frames.len() >= MAX_HELD {
            // Only a client that never reads gets here; it is dropped by
            // its idle timeout long before it could miss anything else.
            tracing::warn!(user = %self.user, "own membership change dropped: the session does not read");
            return;
        }
        let at = held.queued;
        held.frames.push_back((at, frame.clone()));
    }

    /// Queues a live message unless the session lags in its room. Returns
    /// whether it was queued, and whether this made the session lag.
    pub(super) fn offer_message(&self, room: &str, seq: Seq, frame: &Bytes) -> (bool, bool) {
        let mut marks = self.lags.marks.lock().expect("lag lock");
        if marks.contains_key(room) {
            return (false, false);
        }
        if !self.try_queue(frame) {
            marks.insert(
                room.to_owned(),
                Lag {
                    from: seq,
                    told: false,
                },
            );
            drop(marks);
            self.lags.signal.notify_one();
            return (false, true);
        }
        (true, false)
    }

    /// Queues a frame that may be lost when the queue is full (presence:
    /// the member list answers the same question on demand).
    pub(super) fn offer(&self, frame: &Bytes) {
        let _ = self.try_queue(frame);
    }
}

/// Own-membership frames held past a full queue; see [`Outbox::offer_own`].
const MAX_HELD: usize = 1024;

/// Rooms in which a session fell behind.
#[derive(Default)]
pub struct Lags {
    marks: Mutex<HashMap<String, Lag>>,
    signal: Notify,
    held: Mutex<Held>,
}

/// Frames that belong at a given place in the queue's stream.
#[derive(Default)]
struct Held {
    /// Frames ever put on the queue.
    queued: u64,
    /// Frames the writer has taken off it.
    taken: u64,
    /// Each with the number of queued frames it goes after, ascending.
    frames: VecDeque<(u64, Bytes)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lag {
    from: Seq,
    told: bool,
}

impl Lags {
    /// Clears the lag mark of a room once the client has resubscribed: from
    /// here it gets live messages again and pages history for the gap.
    pub fn resubscribed(&self, room: &str) {
        self.marks.lock().expect("lag lock").remove(room);
    }

    /// Called by the writer with each batch it took off the queue, in
    /// order: slots held frames into the batch where they belong.
    pub fn take(&self, batch: &mut Vec<Bytes>) {
        let mut held = self.held.lock().expect("held lock");
        let first = held.taken;
        held.taken += batch.len() as u64;
        let mut inserted = 0;
        while let Some(&(at, _)) = held.frames.front() {
            if at > held.taken {
                break;
            }
            let (at, frame) = held.frames.pop_front().expect("front");
            let index = (at.saturating_sub(first) as usize + inserted).min(batch.len());
            batch.insert(index, frame);
            inserted += 1;
        }
    }

    /// Waits until some room lags and returns the `Lagged` frames not yet
    /// sent. The writer sends them past the full queue.
    pub async fn next(&self) -> Vec<ServerFrame> {
        loop {
            let notified = self.signal.notified();
            let frames: Vec<_> = {
                let mut marks = self.marks.lock().expect("lag lock");
                marks
                    .iter_mut()
                    .filter(|(_, l)| !l.told)
                    .map(|(room, l)| {
                        l.told = true;
                        ServerFrame::Lagged {
                            room: room.clone(),
                            from: l.from,
                        }
                    })
                    .collect()
            };
            if !frames.is_empty() {
                return frames;
            }
            notified.await;
        }
    }
}
