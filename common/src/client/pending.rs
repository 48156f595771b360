//! Messages sent but not yet acknowledged, without I/O. Each keeps the id
//! it was given when queued, so every resend names the same message and
//! the relay stores it once.

use std::collections::HashMap;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::command::Acked;
use super::error::RequestError;
use crate::frame::{ClientFrame, MsgId, RequestId};

struct PendingSend {
    /// Queue order: resends go out in the order the application sent.
    order: u64,
    room: String,
    body: String,
    reply: oneshot::Sender<Result<Acked, RequestError>>,
    /// Set while waiting out a rate-limit refusal.
    retry_at: Option<Instant>,
}

/// The unacknowledged messages of a session, each with the future that
/// waits for it.
#[derive(Default)]
pub(crate) struct Pending {
    sends: HashMap<MsgId, PendingSend>,
    next_order: u64,
    /// The earliest `retry_at` of all sends: asked for on every send and
    /// every turn of the worker, so kept rather than found by a scan of a
    /// table that a piped file can fill with many thousands.
    earliest: Option<Instant>,
}

impl Pending {
    /// Queues a message under `id`.
    pub(crate) fn insert(
        &mut self,
        id: MsgId,
        room: String,
        body: String,
        reply: oneshot::Sender<Result<Acked, RequestError>>,
    ) {
        let order = self.next_order;
        self.next_order += 1;
        self.sends.insert(
            id,
            PendingSend {
                order,
                room,
                body,
                reply,
                retry_at: None,
            },
        );
    }

    /// The `Send` frame for message `id` as request `req`, if it is still
    /// pending.
    pub(crate) fn frame(&self, id: MsgId, req: RequestId) -> Option<ClientFrame> {
        let p = self.sends.get(&id)?;
        Some(ClientFrame::Send {
            req,
            room: p.room.clone(),
            id,
            body: p.body.clone(),
        })
    }

    /// Every message, in the order it was queued, to send again now (after
    /// a login): a rate-limit wait ends with the connection it was for.
    pub(crate) fn take_all(&mut self) -> Vec<MsgId> {
        self.take(|_| true)
    }

    /// Once the first rate-limit wait is over at `now`, every waiting
    /// message, in queue order: the relay holds back whatever follows its
    /// first refused message anyway, so they go together and in order.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<MsgId> {
        if self.next_retry().is_none_or(|t| t > now) {
            return Vec::new();
        }
        self.take(|p| p.retry_at.is_some())
    }

    fn take(&mut self, due: impl Fn(&PendingSend) -> bool) -> Vec<MsgId> {
        // Both callers take every waiting message, so none is left waiting.
        self.earliest = None;
        let mut ids: Vec<(u64, MsgId)> = self
            .sends
            .iter_mut()
            .filter(|(_, p)| due(p))
            .map(|(id, p)| {
                p.retry_at = None;
                (p.order, *id)
            })
            .collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// The earliest end of a rate-limit wait.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.earliest
    }

    /// The relay refused message `id` for now: send it again at `at`.
    pub(crate) fn retry_at(&mut self, id: MsgId, at: Instant) {
        if let Some(p) = self.sends.get_mut(&id) {
            p.retry_at = Some(at);
            self.earliest = Some(self.earliest.map_or(at, |e| e.min(at)));
        }
    }

    /// Resolves message `id` and forgets it.
    pub(crate) fn resolve(&mut self, id: MsgId, result: Result<Acked, RequestError>) {
        if let Some(p) = self.sends.remove(&id) {
            if p.retry_at.is_some() {
                // Rare: acked while waiting (a resend raced its refusal).
                self.earliest = self.sends.values().filter_map(|p| p.retry_at).min();
            }
            let _ = p.reply.send(result);
        }
    }

    /// Fails every message with `error` and forgets them all.
    pub(crate) fn fail_all(&mut self, error: RequestError) {
        self.earliest = None;
        for (_, p) in self.sends.drain() {
            let _ = p.reply.send(Err(error.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(p: &mut Pending, n: u8) -> MsgId {
        let (reply, _) = oneshot::channel();
        p.insert([n; 16], "lobby".into(), format!("{n}"), reply);
        [n; 16]
    }

    #[test]
    fn the_earliest_wait_follows_what_is_waiting() {
        let t0 = Instant::now();
        let sec = std::time::Duration::from_secs(1);
        let mut p = Pending::default();
        let (a, b, c) = (queued(&mut p, 1), queued(&mut p, 2), queued(&mut p, 3));
        assert_eq!(p.next_retry(), None);
        p.retry_at(b, t0 + 2 * sec);
        p.retry_at(a, t0 + sec);
        assert_eq!(p.next_retry(), Some(t0 + sec));
        p.resolve(a, Err(RequestError::Closed));
        assert_eq!(p.next_retry(), Some(t0 + 2 * sec), "b waits on");
        p.resolve(c, Err(RequestError::Closed));
        assert_eq!(p.next_retry(), Some(t0 + 2 * sec), "c never waited");
        assert!(p.take_due(t0 + sec).is_empty(), "not yet");
        assert_eq!(p.take_due(t0 + 2 * sec), [b]);
        assert_eq!(p.next_retry(), None);
    }
}
