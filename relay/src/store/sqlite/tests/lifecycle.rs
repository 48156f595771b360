//! Opening, reopening, closing, locks and crashes.

use super::*;

#[tokio::test]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user("alice", "phc").await.unwrap();
    store
        .create_room("dev", RoomKind::Private, "alice")
        .await
        .unwrap();
    for n in 1..=3 {
        store.append(msg("dev", n)).await.unwrap();
    }
    store.close().await;
    drop(store);

    let store = open(&dir);
    assert_eq!(store.user("alice").await.unwrap().unwrap().phc, "phc");
    assert_eq!(store.room("dev").await.unwrap().unwrap().latest, 3);
    assert_eq!(store.append(msg("dev", 4)).await.unwrap().seq, 4);
    let (original, _) = store.history("dev", Page::After(1), 1).await.unwrap();
    let again = store.append(msg("dev", 2)).await.unwrap();
    assert_eq!(
        again,
        Appended {
            seq: 2,
            ts: original[0].ts,
            duplicate: true
        }
    );
    assert_eq!(store.members(LOBBY).await.unwrap(), ["alice"]);
}

#[cfg(unix)]
#[tokio::test]
async fn the_folder_and_the_database_files_are_the_relay_users_alone() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    let store = SqliteStore::open(&dir, None).unwrap();
    store.create_user("alice", "phc").await.unwrap();
    assert_eq!(mode(&dir), 0o700, "a new data folder");
    for file in [
        DB_FILE.to_owned(),
        format!("{DB_FILE}-wal"),
        format!("{DB_FILE}-shm"),
    ] {
        assert_eq!(mode(&dir.join(&file)), 0o600, "{file}");
    }
    store.close().await;
    drop(store);

    // A database left readable by an older relay is closed to others.
    std::fs::set_permissions(dir.join(DB_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = SqliteStore::open(&dir, None).unwrap();
    assert_eq!(mode(&dir.join(DB_FILE)), 0o600);
    store.close().await;
}

#[tokio::test]
async fn waits_for_another_process_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(&dir));
    store.create_user("alice", "phc").await.unwrap();
    let admin = Connection::open(dir.path().join(DB_FILE)).unwrap();
    admin.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..200 {
        let store = store.clone();
        tasks.spawn(async move { store.append(msg(LOBBY, n)).await });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    admin.execute_batch("COMMIT").unwrap();
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    // The first request waited for the lock while all the others queued.
    assert!(store.commits.load(Ordering::Relaxed) <= 4);
}

#[test]
fn open_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let Err(StoreError::Db(text)) = SqliteStore::open(&file.join("data"), None) else {
        panic!("opened below a file")
    };
    assert!(text.contains(&file.display().to_string()), "{text}");

    std::fs::write(dir.path().join(DB_FILE), vec![7u8; 4096]).unwrap();
    let Err(StoreError::Db(text)) = SqliteStore::open(dir.path(), None) else {
        panic!("opened a file that is not a database")
    };
    assert!(
        text.contains(&dir.path().join(DB_FILE).display().to_string()),
        "{text}"
    );
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path(), None).unwrap());
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.pragma_update(None, "user_version", schema::SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let Err(StoreError::Db(text)) = SqliteStore::open(dir.path(), None) else {
        panic!("opened")
    };
    assert!(text.contains("newer"), "{text}");
}

#[tokio::test]
async fn closed_store_refuses_calls() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user("alice", "phc").await.unwrap();
    store.close().await;
    assert_eq!(
        store.create_user("bob", "phc").await,
        Err(StoreError::Closed)
    );
    assert_eq!(store.user("alice").await, Err(StoreError::Closed));
    assert_eq!(store.append(msg(LOBBY, 1)).await, Err(StoreError::Closed));
    assert_eq!(
        store.history(LOBBY, Page::Latest, 5).await,
        Err(StoreError::Closed)
    );
    store.close().await;
}

#[tokio::test]
async fn dropping_stops_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user("alice", "phc").await.unwrap();
    let wal = dir.path().join(format!("{DB_FILE}-wal"));
    assert!(wal.exists());
    drop(store);
    // The last connection to close removes the log, so none is left open.
    assert!(!wal.exists());
}

/// Run by `abort_after_commit_keeps_the_message` in a child process.
#[tokio::test]
async fn abort_after_commit_child() {
    let Some(dir) = std::env::var_os("CONFAB_TEST_ABORT_DIR") else {
        return;
    };
    let store = SqliteStore::open(std::path::Path::new(&dir), None).unwrap();
    store.create_user("alice", "phc").await.unwrap();
    store.append(msg(LOBBY, 1)).await.unwrap();
    let boom = NewMessage {
        body: "boom".into(),
        ..msg(LOBBY, 2)
    };
    let _ = store.append(boom).await;
    unreachable!("the store should have aborted");
}

#[tokio::test]
async fn abort_after_commit_keeps_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let test = format!(
        "{}::abort_after_commit_child",
        module_path!().split_once("::").unwrap().1
    );
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test.as_str(), "--exact", "--test-threads=1"])
        .env("CONFAB_TEST_ABORT_DIR", dir.path())
        .env(FAULT_ABORT_AFTER_COMMIT, "boom")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(6), "SIGABRT");
    }
    let store = open(&dir);
    let (page, _) = store.history(LOBBY, Page::Latest, 10).await.unwrap();
    assert_eq!(
        page.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["message 1", "boom"]
    );
}

#[tokio::test]
async fn a_version_1_file_gains_account_changes_and_they_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    {
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch(
            "DROP TABLE account_changes;
             ALTER TABLE rooms DROP COLUMN topic;
             DROP INDEX users_by_skeleton;
             ALTER TABLE users DROP COLUMN skeleton;
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = open(&dir);
    store.create_user("alice", "phc").await.unwrap();
    store.create_user("bob", "phc").await.unwrap();
    let mut changes = store.account_changes().await.unwrap();
    // As `relay user passwd` does: another store on the same file.
    let admin = open(&dir);
    admin.set_password("ALICE", "new").await.unwrap();
    admin.delete_user("bob").await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let name = tokio::time::timeout(Duration::from_secs(5), changes.recv())
            .await
            .expect("seen within the poll interval");
        seen.push(name.unwrap());
    }
    assert_eq!(seen, ["alice", "bob"], "names as registered, in order");
}

#[tokio::test]
async fn a_version_2_file_keeps_its_invitations_in_order_with_no_inviter() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    {
        // A version 2 file, as it was: invitations without inviter or number.
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch(
            "DROP TABLE invites;
             ALTER TABLE rooms DROP COLUMN topic;
             DROP INDEX users_by_skeleton;
             ALTER TABLE users DROP COLUMN skeleton;
             CREATE TABLE invites (
                 room    TEXT NOT NULL REFERENCES rooms (name),
                 user    TEXT NOT NULL COLLATE NOCASE REFERENCES users (name),
                 invited INTEGER NOT NULL,
                 PRIMARY KEY (room, user)
             ) WITHOUT ROWID;
             CREATE INDEX invites_by_user ON invites (user);
             INSERT INTO users VALUES ('alice', 'phc', 0), ('bob', 'phc', 0);
             INSERT INTO rooms VALUES ('new', 1, 'bob', 0), ('old', 1, 'bob', 0);
             INSERT INTO invites VALUES ('new', 'alice', 20), ('old', 'alice', 10);
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let store = open(&dir);
    let listed: Vec<(String, String)> = store
        .invitations("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.room.name, i.by))
        .collect();
    assert_eq!(
        listed,
        [
            ("new".to_owned(), String::new()),
            ("old".to_owned(), String::new())
        ]
    );
    // New ones come after them.
    store
        .create_room("newer", RoomKind::Private, "bob")
        .await
        .unwrap();
    store.invite("newer", "alice", "bob", 100).await.unwrap();
    assert_eq!(
        store.invitations("alice").await.unwrap()[0].room.name,
        "newer"
    );
    assert!(store.add_member("old", "alice").await.unwrap());
}

/// A version 3 file as the relay before topics made it, written here by
/// hand so that the test keeps that shape whatever the schema code becomes.
const VERSION_3: &str = "
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
CREATE TABLE account_changes (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    at   INTEGER NOT NULL
);
CREATE TABLE invites (
    id      INTEGER PRIMARY KEY,
    room    TEXT NOT NULL REFERENCES rooms (name),
    user    TEXT NOT NULL COLLATE NOCASE REFERENCES users (name),
    inviter TEXT NOT NULL,
    invited INTEGER NOT NULL,
    UNIQUE (room, user)
);
CREATE INDEX invites_by_user ON invites (user, id);
INSERT INTO users VALUES ('alice', 'phc', 0), ('bob', 'phc', 0);
INSERT INTO rooms VALUES ('lobby', 0, '', 0), ('dev', 0, 'alice', 0),
    ('ops', 1, 'bob', 0), ('@alice+bob', 2, 'alice', 0);
INSERT INTO members VALUES ('lobby', 'alice', 0), ('lobby', 'bob', 0),
    ('dev', 'alice', 0), ('ops', 'bob', 0),
    ('@alice+bob', 'alice', 0), ('@alice+bob', 'bob', 0);
INSERT INTO messages VALUES ('dev', 1, x'00000000000000000000000000000001', 'alice', 5, 'hello');
INSERT INTO invites (room, user, inviter, invited) VALUES ('ops', 'alice', 'bob', 0);
PRAGMA user_version = 3;
";

#[tokio::test]
async fn a_version_3_file_keeps_every_room_which_has_no_topic_until_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch(VERSION_3).unwrap();
    }
    let store = open(&dir);
    let rooms = |rows: Vec<crate::store::RoomRow>| {
        rows.into_iter()
            .map(|r| (r.name, r.kind, r.members, r.latest, r.topic))
            .collect::<Vec<_>>()
    };
    let none = String::new;
    assert_eq!(
        rooms(store.rooms_of("alice").await.unwrap()),
        [
            ("@alice+bob".to_owned(), RoomKind::Direct, 2, 0, none()),
            ("dev".to_owned(), RoomKind::Public, 1, 1, none()),
            ("lobby".to_owned(), RoomKind::Public, 2, 0, none()),
        ]
    );
    assert_eq!(rooms(store.rooms_of("bob").await.unwrap()).len(), 3);
    let invited = store.invitations("alice").await.unwrap();
    assert_eq!(
        (invited[0].room.name.as_str(), invited[0].by.as_str()),
        ("ops", "bob")
    );
    let (page, _) = store.history("dev", Page::Latest, 10).await.unwrap();
    assert_eq!(page[0].body, "hello");

    // The room takes a topic now, which stays across a reopen.
    assert_eq!(store.set_topic("dev", "alice", "builds").await, Ok(Some(1)));
    drop(store);
    let store = open(&dir);
    assert_eq!(store.room("dev").await.unwrap().unwrap().topic, "builds");
    assert_eq!(store.room("ops").await.unwrap().unwrap().topic, "");
}

/// A version 4 file: version 3 with topics, holding two accounts that look
/// alike (registered before names were compared by their look) and a
/// deleted one.
fn version_4() -> String {
    VERSION_3.replace("PRAGMA user_version = 3;", "")
        + "
ALTER TABLE rooms ADD COLUMN topic TEXT NOT NULL DEFAULT '';
INSERT INTO users VALUES ('aIice', 'phc', 7), ('carol', '', 3);
INSERT INTO members VALUES ('lobby', 'aIice', 7);
PRAGMA user_version = 4;
"
}

#[tokio::test]
async fn a_version_4_file_with_lookalikes_keeps_them_and_refuses_more() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch(&version_4()).unwrap();
    }
    let store = open(&dir);
    for name in ["alice", "aIice", "bob"] {
        assert_eq!(
            store.user(name).await.unwrap().map(|u| u.name).as_deref(),
            Some(name),
            "{name} is still there"
        );
    }
    assert_eq!(
        store.members(LOBBY).await.unwrap(),
        ["aIice", "alice", "bob"]
    );
    // The first registered of the two is the one named.
    assert_eq!(
        store.create_user("al1ce", "phc").await,
        Err(StoreError::LooksLike("alice".into()))
    );
    assert_eq!(
        store.create_user("caro1", "phc").await,
        Err(StoreError::LooksLike("carol".into())),
        "a deleted account's look stays taken"
    );
    assert_eq!(
        store.create_user("B0B", "phc").await,
        Err(StoreError::LooksLike("bob".into()))
    );
    store.create_user("dave", "phc").await.unwrap();
    drop(store);

    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, schema::SCHEMA_VERSION);
    let mut stmt = conn
        .prepare("SELECT name, skeleton FROM users ORDER BY name COLLATE BINARY")
        .unwrap();
    let rows: Vec<(String, String)> = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let rows: Vec<(&str, &str)> = rows.iter().map(|(n, s)| (n.as_str(), s.as_str())).collect();
    assert_eq!(
        rows,
        [
            ("aIice", "allce"),
            ("alice", "allce"),
            ("bob", "bob"),
            ("carol", "carol"),
            ("dave", "dave"),
        ]
    );
    drop(stmt);
    drop(conn);
    // Opening again changes nothing and still refuses.
    let store = open(&dir);
    assert_eq!(
        store.create_user("ALlCE", "phc").await,
        Err(StoreError::LooksLike("alice".into()))
    );
}
