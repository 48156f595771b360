//! The database file: connection settings and the schema.

use std::path::Path;
use std::time::Duration;

use common::frame::RoomKind;
use common::names::{skeleton, LOBBY};
use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};

use crate::store::StoreError;

/// Schema version, kept in `PRAGMA user_version`: 0 is a new, empty file.
pub(super) const SCHEMA_VERSION: i64 = 5;

/// How long a connection waits for another's lock before giving up. Admin
/// commands (`relay user add`) write the same file from another process
/// while the relay runs; their transactions last milliseconds.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Messages are `WITHOUT ROWID` so that they are stored in `(room, seq)`
/// order: a history page is one contiguous range of the table, whatever the
/// room's size. User names compare ignoring ASCII case wherever they are
/// stored, so `Alice` and `alice` are one account everywhere.
const SCHEMA: &str = "
CREATE TABLE users (
    name    TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,
    phc     TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE rooms (
    name       TEXT NOT NULL PRIMARY KEY,
    kind       INTEGER NOT NULL CHECK (kind IN (0, 1, 2)),
    created_by TEXT NOT NULL,
    created    INTEGER NOT NULL
);
CREATE TABLE members (
    room   TEXT NOT NULL REFERENCES rooms (name),
    user   TEXT NOT NULL COLLATE NOCASE REFERENCES users (name),
    joined INTEGER NOT NULL,
    PRIMARY KEY (room, user)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members (user);
CREATE TABLE invites (
    room    TEXT NOT NULL REFERENCES rooms (name),
    user    TEXT NOT NULL COLLATE NOCASE REFERENCES users (name),
    invited INTEGER NOT NULL,
    PRIMARY KEY (room, user)
) WITHOUT ROWID;
CREATE INDEX invites_by_user ON invites (user);
CREATE TABLE messages (
    room   TEXT NOT NULL REFERENCES rooms (name),
    seq    INTEGER NOT NULL,
    id     BLOB NOT NULL CHECK (length(id) = 16),
    sender TEXT NOT NULL,
    ts     INTEGER NOT NULL,
    body   TEXT NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX messages_by_id ON messages (room, id);
";

/// Version 2: accounts whose password changed or which were deleted, by
/// any process (`relay user passwd` runs beside the relay), so the relay
/// can end their sessions. Rows are pruned after a day.
const ACCOUNT_CHANGES: &str = "
CREATE TABLE account_changes (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    at   INTEGER NOT NULL
);
";

/// Version 3: an invitation says who made it, and invitations are
/// numbered in the order made, so that a user's are listed newest first
/// and the oldest go past the cap (`Op::Invite`). Those made before keep
/// their order, with no inviter.
const INVITERS: &str = "
CREATE TABLE invites_v3 (
    id      INTEGER PRIMARY KEY,
    room    TEXT NOT NULL REFERENCES rooms (name),
    user    TEXT NOT NULL COLLATE NOCASE REFERENCES users (name),
    inviter TEXT NOT NULL,
    invited INTEGER NOT NULL,
    UNIQUE (room, user)
);
INSERT INTO invites_v3 (room, user, inviter, invited)
    SELECT room, user, '', invited FROM invites ORDER BY invited, room;
DROP TABLE invites;
ALTER TABLE invites_v3 RENAME TO invites;
CREATE INDEX invites_by_user ON invites (user, id);
";

/// Version 4: a room says what it is for, in one line its members set;
/// rooms made before have no topic.
const TOPICS: &str = "
ALTER TABLE rooms ADD COLUMN topic TEXT NOT NULL DEFAULT '';
";

/// Version 5: each account's skeleton (`names::skeleton`), so that a new
/// name that looks like an existing one is refused where it is written
/// (`Op::CreateUser`). Not unique: accounts made before may already look
/// alike, and they stay; the index serves the check. Accounts made before
/// get theirs in [`fill_skeletons`].
const SKELETONS: &str = "
ALTER TABLE users ADD COLUMN skeleton TEXT NOT NULL DEFAULT '';
CREATE INDEX users_by_skeleton ON users (skeleton);
";

/// How long a row of `account_changes` is kept: any relay running reads
/// it within a second; a day leaves room for a stalled one.
const ACCOUNT_CHANGES_KEPT_S: i64 = 86_400;

/// Opens the writer's connection, creating or checking the schema, and
/// makes sure the lobby exists.
pub(super) fn open_writer(path: &Path, now_ms: i64) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(db)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(db)?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Still correct, only slower: reads then wait for commits.
        tracing::warn!(path = %path.display(), mode = %mode, "cannot use WAL mode for the store");
    }
    // FULL: an acknowledged message must survive a power cut, not only a crash.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db)?;
    conn.pragma_update(None, "foreign_keys", true).map_err(db)?;
    migrate(&mut conn, now_ms)?;
    Ok(conn)
}

/// Opens a read-only connection for the read pool.
pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(db)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
    Ok(conn)
}

/// Brings the schema to [`SCHEMA_VERSION`]. `IMMEDIATE` so that two
/// processes opening a new file at once do not both create it.
fn migrate(conn: &mut Connection, now_ms: i64) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(db)?;
    match version {
        0..SCHEMA_VERSION => {
            // `steps[v]` brings a version `v` file to version `v + 1`.
            let steps = [SCHEMA, ACCOUNT_CHANGES, INVITERS, TOPICS, SKELETONS];
            for step in &steps[version as usize..] {
                tx.execute_batch(step).map_err(db)?;
            }
            fill_skeletons(&tx)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(db)?;
        }
        SCHEMA_VERSION => {}
        newer => {
            return Err(StoreError::Db(format!(
                "schema version {newer} is newer than this relay's ({SCHEMA_VERSION}); upgrade the relay"
            )))
        }
    }
    tx.execute(
        "INSERT INTO rooms (name, kind, created_by, created) VALUES (?1, 0, '', ?2)
         ON CONFLICT DO NOTHING",
        params![LOBBY, now_ms.div_euclid(1000)],
    )
    .map_err(db)?;
    tx.execute(
        "DELETE FROM account_changes WHERE at < ?1",
        [now_ms.div_euclid(1000) - ACCOUNT_CHANGES_KEPT_S],
    )
    .map_err(db)?;
    tx.commit().map_err(db)
}

/// Gives every account without a skeleton its own; the function lives in
/// Rust, so the migration cannot do this in SQL.
fn fill_skeletons(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let names: Vec<String> = tx
        .prepare("SELECT name FROM users WHERE skeleton = ''")
        .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
        .map_err(db)?;
    let mut set = tx
        .prepare("UPDATE users SET skeleton = ?2 WHERE name = ?1")
        .map_err(db)?;
    for name in names {
        set.execute(params![name, skeleton(&name)]).map_err(db)?;
    }
    Ok(())
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

/// Room kinds as stored: the wire order, so the file reads like the protocol.
pub(super) fn kind_to_sql(kind: RoomKind) -> i64 {
    match kind {
        RoomKind::Public => 0,
        RoomKind::Private => 1,
        RoomKind::Direct => 2,
    }
}

pub(super) fn kind_from_sql(value: i64) -> Option<RoomKind> {
    match value {
        0 => Some(RoomKind::Public),
        1 => Some(RoomKind::Private),
        2 => Some(RoomKind::Direct),
        _ => None,
    }
}
