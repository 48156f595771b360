//! Reads: a pool of read-only connections and the queries run on them.
//! The writer reuses [`room_row`], [`canonical_user`] and [`lookalike`]
//! inside its transactions.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use common::frame::{Message, Page};
use common::names::skeleton;
use rusqlite::{params, Connection, OptionalExtension, Row};
use tokio::sync::Semaphore;

use super::fail::Fail;
use super::schema::{self, kind_from_sql};
use crate::store::{RoomRow, StoreError, StoredUser};

/// Read-only connections, each used by one blocking task at a time.
pub(super) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection: waiting for a free connection happens
    /// here, in async code, rather than by parking a blocking thread.
    permits: Arc<Semaphore>,
}

impl ReadPool {
    pub(super) fn open(path: &Path, size: usize) -> Result<Arc<Self>, StoreError> {
        let idle = (0..size)
            .map(|_| schema::open_reader(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Self {
            path: path.to_owned(),
            idle: Mutex::new(idle),
            permits: Arc::new(Semaphore::new(size)),
        }))
    }

    /// Runs `query` on a free connection in a blocking task.
    pub(super) async fn run<T, F>(self: &Arc<Self>, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Fail> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = Arc::clone(self);
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = pool.take()?;
            let result = query(&conn);
            pool.give_back(conn);
            result.map_err(StoreError::from)
        });
        task.await
            .map_err(|e| StoreError::Db(format!("read task failed: {e}")))?
    }

    /// A free connection. The permit guarantees one is idle, unless a query
    /// panicked and took its connection down: then a new one replaces it.
    fn take(&self) -> Result<Connection, StoreError> {
        let idle = lock(&self.idle).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => schema::open_reader(&self.path),
        }
    }

    fn give_back(&self, conn: Connection) {
        // Checked under the lock that `close` clears with, so a connection
        // given back while closing cannot outlive the close.
        let mut idle = lock(&self.idle);
        if !self.permits.is_closed() {
            idle.push(conn);
        }
    }

    /// Refuses further reads and closes the idle connections; busy ones are
    /// closed when their query ends.
    pub(super) fn close(&self) {
        self.permits.close();
        lock(&self.idle).clear();
    }
}

/// The columns of a [`RoomRow`], for a `FROM rooms r` query. Both
/// subqueries are index seeks: the newest message is the last entry of the
/// room's `(room, seq)` range, never a count of its messages.
macro_rules! room_query {
    ($rest:literal) => {
        concat!(
            "SELECT r.name, r.kind, r.created_by,
                COALESCE((SELECT m.seq FROM messages m WHERE m.room = r.name
                          ORDER BY m.seq DESC LIMIT 1), 0),
                (SELECT COUNT(*) FROM members x WHERE x.room = r.name),
                r.topic
             FROM rooms r ",
            $rest
        )
    };
}

fn to_room(row: &Row<'_>) -> rusqlite::Result<RoomRow> {
    let kind: i64 = row.get(1)?;
    Ok(RoomRow {
        name: row.get(0)?,
        kind: kind_from_sql(kind).ok_or(rusqlite::Error::IntegralValueOutOfRange(1, kind))?,
        created_by: row.get(2)?,
        latest: row.get(3)?,
        members: row.get(4)?,
        topic: row.get(5)?,
    })
}

/// A room by exact name.
pub(super) fn room_row(conn: &Connection, name: &str) -> rusqlite::Result<Option<RoomRow>> {
    conn.prepare_cached(room_query!("WHERE r.name = ?1"))?
        .query_row([name], to_room)
        .optional()
}

/// The registered spelling of a user name, if the user exists.
pub(super) fn canonical_user(conn: &Connection, name: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT name FROM users WHERE name = ?1 AND phc != ''")?
        .query_row([name], |row| row.get(0))
        .optional()
}

/// The first registered account, deleted ones too, whose name looks like
/// `name` (the same skeleton) without being it ignoring case.
pub(super) fn lookalike(conn: &Connection, name: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(LOOKALIKE)?
        .query_row(params![skeleton(name), name], |row| row.get(0))
        .optional()
}

/// `name` compares ignoring case, as the column does.
pub(super) const LOOKALIKE: &str =
    "SELECT name FROM users WHERE skeleton = ?1 AND name != ?2 ORDER BY created, name LIMIT 1";

pub(super) fn room_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM rooms WHERE name = ?1")?
        .exists([name])
}

pub(super) fn room(conn: &Connection, name: &str) -> Result<Option<RoomRow>, Fail> {
    Ok(room_row(conn, name)?)
}

fn to_user(row: &Row<'_>) -> rusqlite::Result<StoredUser> {
    Ok(StoredUser {
        name: row.get(0)?,
        phc: row.get(1)?,
        created: row.get(2)?,
    })
}

pub(super) fn user(conn: &Connection, name: &str) -> Result<Option<StoredUser>, Fail> {
    let mut stmt =
        conn.prepare_cached("SELECT name, phc, created FROM users WHERE name = ?1 AND phc != ''")?;
    Ok(stmt.query_row([name], to_user).optional()?)
}

pub(super) fn list_users(conn: &Connection) -> Result<Vec<StoredUser>, Fail> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, phc, created FROM users WHERE phc != '' ORDER BY name COLLATE BINARY",
    )?;
    let users = stmt.query_map([], to_user)?.collect::<Result<_, _>>()?;
    Ok(users)
}

/// Member names; `NoSuchRoom` rather than an empty list for a room that
/// does not exist, since an existing room may have no members.
pub(super) fn members(conn: &Connection, room: &str) -> Result<Vec<String>, Fail> {
    let mut stmt = conn
        .prepare_cached("SELECT user FROM members WHERE room = ?1 ORDER BY user COLLATE BINARY")?;
    let names: Vec<String> = stmt
        .query_map([room], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    if names.is_empty() && !room_exists(conn, room)? {
        return Err(Fail::Refused(StoreError::NoSuchRoom));
    }
    Ok(names)
}

pub(super) fn is_member(conn: &Connection, room: &str, user: &str) -> Result<bool, Fail> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM members WHERE room = ?1 AND user = ?2")?;
    Ok(stmt.exists([room, user])?)
}

pub(super) fn room_count(conn: &Connection, user: &str) -> Result<usize, Fail> {
    let mut stmt = conn.prepare_cached("SELECT count(*) FROM members WHERE user = ?1")?;
    let n: i64 = stmt.query_row([user], |row| row.get(0))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

pub(super) fn rooms_of(conn: &Connection, user: &str) -> Result<Vec<RoomRow>, Fail> {
    let mut stmt = conn.prepare_cached(room_query!(
        "JOIN members j ON j.room = r.name WHERE j.user = ?1 ORDER BY r.name"
    ))?;
    let rooms = stmt.query_map([user], to_room)?.collect::<Result<_, _>>()?;
    Ok(rooms)
}

pub(super) fn public_rooms(conn: &Connection) -> Result<Vec<RoomRow>, Fail> {
    let mut stmt = conn.prepare_cached(room_query!("WHERE r.kind = 0 ORDER BY r.name"))?;
    let rooms = stmt.query_map([], to_room)?.collect::<Result<_, _>>()?;
    Ok(rooms)
}

/// The newest row of `account_changes`, 0 if none.
pub(super) fn last_account_change(conn: &Connection) -> Result<i64, Fail> {
    let mut stmt = conn.prepare_cached("SELECT coalesce(max(id), 0) FROM account_changes")?;
    Ok(stmt.query_row([], |row| row.get(0))?)
}

/// Rows of `account_changes` after `id`, oldest first.
pub(super) fn account_changes_after(
    conn: &Connection,
    id: i64,
) -> Result<Vec<(i64, String)>, Fail> {
    let mut stmt =
        conn.prepare_cached("SELECT id, name FROM account_changes WHERE id > ?1 ORDER BY id")?;
    let rows = stmt
        .query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub(super) fn is_invited(conn: &Connection, room: &str, user: &str) -> Result<bool, Fail> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM invites WHERE room = ?1 AND user = ?2")?;
    Ok(stmt.exists([room, user])?)
}

/// `user`'s invitations to rooms they are not in, newest first, each
/// with its inviter.
pub(super) fn invitations(conn: &Connection, user: &str) -> Result<Vec<(RoomRow, String)>, Fail> {
    let mut stmt = conn.prepare_cached(
        "SELECT i.room, i.inviter FROM invites i WHERE i.user = ?1 AND NOT EXISTS
            (SELECT 1 FROM members m WHERE m.room = i.room AND m.user = i.user)
         ORDER BY i.id DESC",
    )?;
    let named: Vec<(String, String)> = stmt
        .query_map([user], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut rows = Vec::with_capacity(named.len());
    for (room, by) in named {
        // Rooms are never deleted; a missing one is skipped, not an error.
        if let Some(row) = room_row(conn, &room)? {
            rows.push((row, by));
        }
    }
    Ok(rows)
}

// History reads one row past the page to learn whether more lie beyond it;
// each is a range of the `(room, seq)` primary key, whatever the room's size.
pub(super) const LATEST: &str =
    "SELECT seq, id, ts, sender, body FROM messages WHERE room = ?1 ORDER BY seq DESC LIMIT ?2";
pub(super) const BEFORE: &str =
    "SELECT seq, id, ts, sender, body FROM messages WHERE room = ?1 AND seq < ?3 ORDER BY seq DESC LIMIT ?2";
pub(super) const AFTER: &str =
    "SELECT seq, id, ts, sender, body FROM messages WHERE room = ?1 AND seq > ?3 ORDER BY seq ASC LIMIT ?2";

pub(super) fn history(
    conn: &Connection,
    room: &str,
    page: Page,
    limit: u16,
) -> Result<(Vec<Message>, bool), Fail> {
    let fetch = i64::from(limit) + 1;
    let to_message = |row: &Row<'_>| -> rusqlite::Result<Message> {
        Ok(Message {
            room: room.to_owned(),
            seq: row.get(0)?,
            id: row.get(1)?,
            ts: row.get(2)?,
            from: row.get(3)?,
            body: row.get(4)?,
        })
    };
    let (sql, bound) = match page {
        Page::Latest => (LATEST, None),
        Page::Before(seq) => (BEFORE, Some(seq)),
        Page::After(seq) => (AFTER, Some(seq)),
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = match bound {
        None => stmt.query_map(params![room, fetch], to_message)?,
        // Sequences beyond SQLite's integers cannot exist; clamping keeps
        // `Before(u64::MAX)` meaning "the newest".
        Some(seq) => {
            let seq = i64::try_from(seq).unwrap_or(i64::MAX);
            stmt.query_map(params![room, fetch, seq], to_message)?
        }
    };
    let mut messages = rows.collect::<Result<Vec<_>, _>>()?;
    let more = messages.len() > usize::from(limit);
    // Rows come nearest-the-bound first, so the extra one is last.
    messages.truncate(usize::from(limit));
    if !matches!(page, Page::After(_)) {
        messages.reverse();
    }
    if messages.is_empty() && !more && !room_exists(conn, room)? {
        return Err(Fail::Refused(StoreError::NoSuchRoom));
    }
    Ok((messages, more))
}

/// Locks a mutex whose data stays consistent even if a holder panicked:
/// the critical sections here only take, push, clear or send.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
