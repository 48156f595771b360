//! The writer thread: the only connection that changes the file. It takes
//! one request, then everything already queued behind it, applies them all
//! in one transaction and commits once: while one batch is being synced to
//! disk the next one gathers, so the busier the relay, the bigger the
//! batches, with no timer adding latency when it is quiet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use common::frame::{Message, RoomKind, Seq};
use common::names::{dm_room, skeleton, LOBBY};
use rusqlite::{params, Connection, OptionalExtension, Savepoint, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::fail::Fail;
use super::reads::{canonical_user, lookalike, room_exists, room_row};
use super::schema::kind_to_sql;
use crate::store::{Appended, NewMessage, RoomRow, StoreError};

/// Most requests committed in one transaction: bounds how long the first
/// request of a batch waits for the last to be applied.
pub(super) const MAX_BATCH: usize = 1024;

/// A change to make.
pub(super) enum Op {
    CreateUser {
        name: String,
        phc: String,
    },
    SetPassword {
        name: String,
        phc: String,
    },
    DeleteUser {
        name: String,
    },
    CreateRoom {
        name: String,
        kind: RoomKind,
        creator: String,
    },
    OpenDm {
        a: String,
        b: String,
    },
    AddMember {
        room: String,
        user: String,
    },
    RemoveMember {
        room: String,
        user: String,
    },
    Invite {
        room: String,
        user: String,
        by: String,
        keep: usize,
    },
    Decline {
        room: String,
        user: String,
    },
    SetTopic {
        room: String,
        by: String,
        topic: String,
    },
    Append(NewMessage),
}

/// What a change returns; each kind of [`Op`] always returns the same kind.
#[derive(Debug)]
pub(super) enum Outcome {
    Done,
    Changed(bool),
    Room(RoomRow),
    Appended(Appended),
    /// A topic written, with its order; `None` if the room had it already.
    Topic(Option<u64>),
}

impl Outcome {
    pub(super) fn done(self) -> Result<(), StoreError> {
        match self {
            Outcome::Done => Ok(()),
            other => Err(mismatch(other)),
        }
    }

    pub(super) fn changed(self) -> Result<bool, StoreError> {
        match self {
            Outcome::Changed(changed) => Ok(changed),
            other => Err(mismatch(other)),
        }
    }

    pub(super) fn room(self) -> Result<RoomRow, StoreError> {
        match self {
            Outcome::Room(room) => Ok(room),
            other => Err(mismatch(other)),
        }
    }

    pub(super) fn topic(self) -> Result<Option<u64>, StoreError> {
        match self {
            Outcome::Topic(order) => Ok(order),
            other => Err(mismatch(other)),
        }
    }

    pub(super) fn appended(self) -> Result<Appended, StoreError> {
        match self {
            Outcome::Appended(appended) => Ok(appended),
            other => Err(mismatch(other)),
        }
    }
}

/// A bug, not a storage failure, but reported as one rather than panicking.
fn mismatch(outcome: Outcome) -> StoreError {
    StoreError::Db(format!(
        "internal error: unexpected writer reply {outcome:?}"
    ))
}

/// A change and where to send its result once it is durable.
pub(super) struct Request {
    pub(super) op: Op,
    pub(super) reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

/// The writer's state; lives on its own thread.
pub(super) struct Writer {
    conn: Connection,
    /// Newest committed sequence of each room appended to since open, loaded
    /// on first use. Only this process appends, so it stays exact.
    last_seq: HashMap<String, Seq>,
    committed: Option<mpsc::UnboundedSender<Arc<Message>>>,
    /// See [`crate::store::FAULT_ABORT_AFTER_COMMIT`].
    abort_after: Option<String>,
    /// Requests in the queue; the store refuses writes when it is full.
    queued: Arc<AtomicUsize>,
    /// Topics written since open, which orders them (`Store::set_topic`):
    /// only this writer writes them, one after the other.
    topics: u64,
    #[cfg(test)]
    pub(super) commits: Arc<std::sync::atomic::AtomicU64>,
}

/// What one batch did inside its transaction.
#[derive(Default)]
struct Applied {
    /// One per request, in order.
    results: Vec<Result<Outcome, StoreError>>,
    /// New messages, in sequence order per room.
    stored: Vec<Message>,
    /// Newest sequence per room appended to in this batch.
    seqs: HashMap<String, Seq>,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        committed: Option<mpsc::UnboundedSender<Arc<Message>>>,
        abort_after: Option<String>,
        queued: Arc<AtomicUsize>,
    ) -> Self {
        Self {
            conn,
            last_seq: HashMap::new(),
            committed,
            abort_after,
            queued,
            topics: 0,
            #[cfg(test)]
            commits: Arc::default(),
        }
    }

    /// Commits batches until every sender is gone and the queue is empty.
    pub(super) fn run(mut self, mut queue: mpsc::UnboundedReceiver<Request>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = queue.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.queued.fetch_sub(batch.len(), Ordering::Relaxed);
            self.commit(batch.drain(..), now_ms());
        }
        tracing::debug!("store writer stopped");
    }

    /// Applies a batch in one transaction, then publishes what it stored and
    /// answers every request. Publishing comes first so that the fan-out has
    /// the message before its sender hears that it was stored.
    pub(super) fn commit(&mut self, batch: impl Iterator<Item = Request>, now_ms: i64) {
        let (ops, replies): (Vec<Op>, Vec<_>) = batch.map(|r| (r.op, r.reply)).unzip();
        let count = ops.len();
        match self.apply(ops, now_ms) {
            Ok(applied) => {
                #[cfg(test)]
                self.commits.fetch_add(1, Ordering::Relaxed);
                self.abort_if_asked(&applied.stored);
                self.last_seq.extend(applied.seqs);
                if let Some(committed) = &self.committed {
                    for message in applied.stored {
                        // Nobody listening is not our failure: the message is stored.
                        let _ = committed.send(Arc::new(message));
                    }
                }
                for (reply, result) in replies.into_iter().zip(applied.results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests = count, "store transaction failed; nothing in it was stored");
                // The file may hold other sequences than we assumed (a
                // failed commit may still have reached the disk): reload.
                self.last_seq.clear();
                let error = StoreError::Db(e.to_string());
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Each request runs in its own savepoint, so a refused one leaves
    /// nothing behind and does not spoil the others. An SQLite error that
    /// ends the whole transaction fails the whole batch.
    fn apply(&mut self, ops: Vec<Op>, now_ms: i64) -> rusqlite::Result<Applied> {
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut applied = Applied {
            results: Vec::with_capacity(ops.len()),
            ..Applied::default()
        };
        for op in ops {
            let sp = tx.savepoint()?;
            let mut seqs = Seqs {
                committed: &mut self.last_seq,
                batch: &applied.seqs,
            };
            match apply_op(&sp, &mut seqs, &mut self.topics, op, now_ms) {
                Ok((outcome, stored)) => {
                    sp.commit()?;
                    if let Some(message) = stored {
                        applied.seqs.insert(message.room.clone(), message.seq);
                        applied.stored.push(message);
                    }
                    applied.results.push(Ok(outcome));
                }
                Err(Fail::Refused(e)) => {
                    undo(sp)?;
                    applied.results.push(Err(e));
                }
                Err(Fail::Sql(e)) => {
                    if sp.is_autocommit() {
                        return Err(e);
                    }
                    undo(sp)?;
                    tracing::warn!(error = %e, "store request failed");
                    // Perhaps a sequence we assumed was wrong: reload them
                    // (this batch's own stay in `applied.seqs`).
                    self.last_seq.clear();
                    applied.results.push(Err(StoreError::Db(e.to_string())));
                }
            }
        }
        tx.commit()?;
        Ok(applied)
    }

    fn abort_if_asked(&self, stored: &[Message]) {
        if let Some(body) = &self.abort_after {
            if stored.iter().any(|m| &m.body == body) {
                tracing::error!(
                    "{}: aborting after commit",
                    crate::store::FAULT_ABORT_AFTER_COMMIT
                );
                std::process::abort();
            }
        }
    }
}

/// Rolls a savepoint back and releases it.
fn undo(mut sp: Savepoint<'_>) -> rusqlite::Result<()> {
    sp.rollback()?;
    sp.commit()
}

/// Milliseconds since the Unix epoch; 0 if the clock is before it.
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The newest sequence of a room as this transaction sees it.
struct Seqs<'a> {
    committed: &'a mut HashMap<String, Seq>,
    batch: &'a HashMap<String, Seq>,
}

impl Seqs<'_> {
    /// `None` if the room does not exist.
    fn last(&mut self, conn: &Connection, room: &str) -> rusqlite::Result<Option<Seq>> {
        if let Some(seq) = self.batch.get(room).or_else(|| self.committed.get(room)) {
            return Ok(Some(*seq));
        }
        // No earlier request of this batch appended here (it would be in
        // `batch`), so this is the committed value and may be cached.
        let loaded: Option<Option<Seq>> = conn
            .prepare_cached(
                "SELECT (SELECT seq FROM messages WHERE room = ?1 ORDER BY seq DESC LIMIT 1)
                 FROM rooms WHERE name = ?1",
            )?
            .query_row([room], |row| row.get(0))
            .optional()?;
        let Some(last) = loaded else { return Ok(None) };
        let last = last.unwrap_or(0);
        self.committed.insert(room.to_owned(), last);
        Ok(Some(last))
    }
}

/// Applies one change; returns its result and the message it stored, if any.
fn apply_op(
    conn: &Connection,
    seqs: &mut Seqs<'_>,
    topics: &mut u64,
    op: Op,
    now_ms: i64,
) -> Result<(Outcome, Option<Message>), Fail> {
    let now_s = now_ms.div_euclid(1000);
    let outcome = match op {
        Op::Append(msg) => return append(conn, seqs, msg, now_ms),
        Op::CreateUser { name, phc } => {
            let added = conn
                .prepare_cached("INSERT INTO users (name, phc, created, skeleton) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING")?
                .execute(params![name, phc, now_s, skeleton(&name)])?;
            if added == 0 {
                return Err(Fail::Refused(StoreError::NameTaken));
            }
            // In the same transaction as the insert, which the refusal
            // undoes: no other writer can slip a lookalike in between.
            if let Some(existing) = lookalike(conn, &name)? {
                return Err(Fail::Refused(StoreError::LooksLike(existing)));
            }
            insert_member(conn, LOBBY, &name, now_s)?;
            Outcome::Done
        }
        Op::SetPassword { name, phc } => {
            let changed = conn
                .prepare_cached("UPDATE users SET phc = ?2 WHERE name = ?1 AND phc != ''")?
                .execute([&name, &phc])?;
            if changed == 0 {
                return Err(Fail::Refused(StoreError::NoSuchUser));
            }
            account_changed(conn, &name, now_s)?;
            Outcome::Done
        }
        Op::DeleteUser { name } => {
            conn.prepare_cached("DELETE FROM members WHERE user = ?1")?
                .execute([&name])?;
            conn.prepare_cached("DELETE FROM invites WHERE user = ?1")?
                .execute([&name])?;
            // The row stays, with no password, as a tombstone: the name can
            // never be registered again, so nobody inherits the deleted
            // user's direct messages or is mistaken for them in history.
            let deleted = conn
                .prepare_cached("UPDATE users SET phc = '' WHERE name = ?1 AND phc != ''")?
                .execute([&name])?;
            if deleted == 0 {
                return Err(Fail::Refused(StoreError::NoSuchUser));
            }
            account_changed(conn, &name, now_s)?;
            Outcome::Done
        }
        Op::CreateRoom {
            name,
            kind,
            creator,
        } => {
            let creator = user_named(conn, &creator)?;
            if !insert_room(conn, &name, kind, &creator, now_s)? {
                return Err(Fail::Refused(StoreError::RoomExists));
            }
            insert_member(conn, &name, &creator, now_s)?;
            Outcome::Room(existing_room(conn, &name)?)
        }
        Op::OpenDm { a, b } => {
            // By registered spelling, so `Alice` and `alice` share one DM.
            let a = user_named(conn, &a)?;
            let b = user_named(conn, &b)?;
            let name = dm_room(&a, &b);
            // The other joins only a new DM: one who left it stays out.
            if insert_room(conn, &name, RoomKind::Direct, &a, now_s)? {
                insert_member(conn, &name, &b, now_s)?;
            }
            insert_member(conn, &name, &a, now_s)?;
            Outcome::Room(existing_room(conn, &name)?)
        }
        Op::AddMember { room, user } => {
            let user = room_and_user(conn, &room, &user)?;
            let added = insert_member(conn, &room, &user, now_s)?;
            conn.prepare_cached("DELETE FROM invites WHERE room = ?1 AND user = ?2")?
                .execute([&room, &user])?;
            Outcome::Changed(added)
        }
        Op::RemoveMember { room, user } => {
            let removed = conn
                .prepare_cached("DELETE FROM members WHERE room = ?1 AND user = ?2")?
                .execute([&room, &user])?;
            Outcome::Changed(removed > 0)
        }
        Op::Invite {
            room,
            user,
            by,
            keep,
        } => {
            let user = room_and_user(conn, &room, &user)?;
            let member = conn
                .prepare_cached("SELECT 1 FROM members WHERE room = ?1 AND user = ?2")?
                .exists([&room, &user])?;
            if member {
                return Ok((Outcome::Changed(false), None));
            }
            // Deleted and inserted, not updated: the new row takes the next
            // number, so an invitation made again counts as the newest.
            conn.prepare_cached("DELETE FROM invites WHERE room = ?1 AND user = ?2")?
                .execute([&room, &user])?;
            conn.prepare_cached(
                "INSERT INTO invites (room, user, inviter, invited) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![room, user, by, now_s])?;
            conn.prepare_cached(
                "DELETE FROM invites WHERE user = ?1 AND id NOT IN
                    (SELECT id FROM invites WHERE user = ?1 ORDER BY id DESC LIMIT ?2)",
            )?
            .execute(params![user, i64::try_from(keep).unwrap_or(i64::MAX)])?;
            Outcome::Changed(true)
        }
        Op::Decline { room, user } => {
            let declined = conn
                .prepare_cached("DELETE FROM invites WHERE room = ?1 AND user = ?2")?
                .execute([&room, &user])?;
            Outcome::Changed(declined > 0)
        }
        Op::SetTopic { room, by, topic } => {
            let Some(current) = conn
                .prepare_cached("SELECT topic FROM rooms WHERE name = ?1")?
                .query_row([&room], |row| row.get::<_, String>(0))
                .optional()?
            else {
                return Err(Fail::Refused(StoreError::NoSuchRoom));
            };
            // Checked in the transaction that writes the topic, as for a
            // message: a leave or an account deletion committed before it
            // always wins.
            let member = conn
                .prepare_cached("SELECT 1 FROM members WHERE room = ?1 AND user = ?2")?
                .exists([&room, &by])?;
            if !member {
                return Err(Fail::Refused(StoreError::NotMember));
            }
            if current == topic {
                return Ok((Outcome::Topic(None), None));
            }
            conn.prepare_cached("UPDATE rooms SET topic = ?2 WHERE name = ?1")?
                .execute([&room, &topic])?;
            *topics += 1;
            Outcome::Topic(Some(*topics))
        }
    };
    Ok((outcome, None))
}

fn append(
    conn: &Connection,
    seqs: &mut Seqs<'_>,
    msg: NewMessage,
    now_ms: i64,
) -> Result<(Outcome, Option<Message>), Fail> {
    let Some(last) = seqs.last(conn, &msg.room)? else {
        return Err(Fail::Refused(StoreError::NoSuchRoom));
    };
    // Checked in the transaction that writes the message: a leave or an
    // account deletion committed before it always wins.
    let member = conn
        .prepare_cached("SELECT 1 FROM members WHERE room = ?1 AND user = ?2")?
        .exists(params![msg.room, msg.from])?;
    if !member {
        return Err(Fail::Refused(StoreError::NotMember));
    }
    // Sees this batch's earlier inserts too: same transaction.
    let original: Option<(Seq, i64)> = conn
        .prepare_cached("SELECT seq, ts FROM messages WHERE room = ?1 AND id = ?2")?
        .query_row(params![msg.room, msg.id], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    if let Some((seq, ts)) = original {
        return Ok((
            Outcome::Appended(Appended {
                seq,
                ts,
                duplicate: true,
            }),
            None,
        ));
    }
    let seq = last + 1;
    conn.prepare_cached(
        "INSERT INTO messages (room, seq, id, sender, ts, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![msg.room, seq, msg.id, msg.from, now_ms, msg.body])?;
    let appended = Appended {
        seq,
        ts: now_ms,
        duplicate: false,
    };
    let message = Message {
        room: msg.room,
        seq,
        id: msg.id,
        ts: now_ms,
        from: msg.from,
        body: msg.body,
    };
    Ok((Outcome::Appended(appended), Some(message)))
}

/// Records that an account's credentials changed, for every relay on this
/// file to end its sessions (`Store::account_changes`).
fn account_changed(conn: &Connection, name: &str, now_s: i64) -> Result<(), Fail> {
    conn.prepare_cached(
        "INSERT INTO account_changes (name, at) SELECT name, ?2 FROM users WHERE name = ?1",
    )?
    .execute(params![name, now_s])?;
    Ok(())
}

/// The registered spelling of a user, or `NoSuchUser`.
fn user_named(conn: &Connection, name: &str) -> Result<String, Fail> {
    canonical_user(conn, name)?.ok_or(Fail::Refused(StoreError::NoSuchUser))
}

/// Checks that both exist; returns the user's registered spelling.
fn room_and_user(conn: &Connection, room: &str, user: &str) -> Result<String, Fail> {
    if !room_exists(conn, room)? {
        return Err(Fail::Refused(StoreError::NoSuchRoom));
    }
    user_named(conn, user)
}

fn existing_room(conn: &Connection, name: &str) -> Result<RoomRow, Fail> {
    // Just written in this transaction, so missing would be a bug; still no panic.
    room_row(conn, name)?.ok_or(Fail::Refused(StoreError::NoSuchRoom))
}

/// `false` if the name is taken.
fn insert_room(
    conn: &Connection,
    name: &str,
    kind: RoomKind,
    creator: &str,
    now_s: i64,
) -> rusqlite::Result<bool> {
    let added = conn
        .prepare_cached(
            "INSERT INTO rooms (name, kind, created_by, created) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )?
        .execute(params![name, kind_to_sql(kind), creator, now_s])?;
    Ok(added > 0)
}

/// `false` if already a member.
fn insert_member(conn: &Connection, room: &str, user: &str, now_s: i64) -> rusqlite::Result<bool> {
    let added = conn
        .prepare_cached(
            "INSERT INTO members (room, user, joined) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )?
        .execute(params![room, user, now_s])?;
    Ok(added > 0)
}
