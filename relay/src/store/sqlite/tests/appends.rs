//! Appending: sequences, duplicates, group commit and publishing.

use std::collections::{BTreeMap, HashSet};

use super::*;

#[tokio::test]
async fn each_room_has_its_own_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user("alice", "phc").await.unwrap();
    store
        .create_room("dev", RoomKind::Public, "alice")
        .await
        .unwrap();
    let mut got = Vec::new();
    for n in 0..6 {
        let room = if n % 2 == 0 { LOBBY } else { "dev" };
        got.push(store.append(msg(room, n)).await.unwrap().seq);
    }
    assert_eq!(got, [1, 1, 2, 2, 3, 3]);
    assert_eq!(
        store.append(msg("nope", 99)).await,
        Err(StoreError::NoSuchRoom)
    );

    let before = writer::now_ms();
    let a = store.append(msg(LOBBY, 100)).await.unwrap();
    assert!(!a.duplicate);
    assert!(a.ts >= before && a.ts <= writer::now_ms());
}

#[tokio::test]
async fn only_members_can_append_whenever_they_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user("alice", "phc").await.unwrap();
    store.create_user("bob", "phc").await.unwrap();
    store
        .create_room("dev", RoomKind::Public, "alice")
        .await
        .unwrap();
    let from_bob = |room: &str, n| NewMessage {
        from: "bob".into(),
        ..msg(room, n)
    };
    assert_eq!(
        store.append(from_bob("dev", 1)).await,
        Err(StoreError::NotMember),
        "never joined"
    );
    assert!(store.add_member("dev", "bob").await.unwrap());
    let stored = store.append(from_bob("dev", 2)).await.unwrap();
    assert!(store.remove_member("dev", "bob").await.unwrap());
    assert_eq!(
        store.append(from_bob("dev", 3)).await,
        Err(StoreError::NotMember),
        "left"
    );
    assert_eq!(
        store.append(from_bob("dev", 2)).await,
        Err(StoreError::NotMember),
        "a resend after leaving gets the same answer as a new message"
    );
    store.delete_user("bob").await.unwrap();
    assert_eq!(
        store.append(from_bob(LOBBY, 4)).await,
        Err(StoreError::NotMember),
        "a deleted account posts nowhere"
    );
    let (page, _) = store.history("dev", Page::Latest, 10).await.unwrap();
    assert_eq!(seqs(&page), [stored.seq]);
}

#[tokio::test]
async fn duplicate_ids_return_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut published) = open_published(&dir);
    store.create_user("alice", "phc").await.unwrap();
    store
        .create_room("dev", RoomKind::Public, "alice")
        .await
        .unwrap();

    let first = store.append(msg(LOBBY, 7)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut resend = msg(LOBBY, 7);
    resend.body = "changed".into();
    let again = store.append(resend).await.unwrap();
    assert_eq!(
        again,
        Appended {
            duplicate: true,
            ..first
        }
    );
    // Ids are per room.
    assert_eq!(store.append(msg("dev", 7)).await.unwrap().seq, 1);
    assert_eq!(store.append(msg(LOBBY, 8)).await.unwrap().seq, 2);

    let out = drain(&mut published);
    let out: Vec<_> = out
        .iter()
        .map(|m| (m.room.as_str(), m.seq, m.body.as_str()))
        .collect();
    assert_eq!(
        out,
        [
            (LOBBY, 1, "message 7"),
            ("dev", 1, "message 7"),
            (LOBBY, 2, "message 8")
        ]
    );
    let (page, _) = store.history(LOBBY, Page::Latest, 10).await.unwrap();
    assert_eq!(page[0].body, "message 7");
}

/// Drives the writer directly, so that requests certainly share a batch.
fn writer_on(dir: &tempfile::TempDir) -> (Writer, Published) {
    let conn = schema::open_writer(&dir.path().join(DB_FILE), 0).unwrap();
    // The sender of `msg`, a member of the lobby, as an account would be.
    conn.execute_batch(
        "INSERT INTO users (name, phc, created) VALUES ('alice', 'phc', 0);
         INSERT INTO members VALUES ('lobby', 'alice', 0);",
    )
    .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    (Writer::new(conn, Some(tx), None, Default::default()), rx)
}

fn appended(result: &Result<Outcome, StoreError>) -> Result<(u64, bool), StoreError> {
    match result {
        Ok(Outcome::Appended(a)) => Ok((a.seq, a.duplicate)),
        Ok(other) => panic!("unexpected {other:?}"),
        Err(e) => Err(e.clone()),
    }
}

#[test]
fn duplicates_within_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, mut published) = writer_on(&dir);
    let ops = vec![
        Op::Append(msg(LOBBY, 1)),
        Op::Append(msg(LOBBY, 2)),
        Op::Append(msg(LOBBY, 1)),
        Op::Append(msg("nope", 3)),
        Op::Append(msg(LOBBY, 3)),
    ];
    let results: Vec<_> = batch(&mut writer, ops).iter().map(appended).collect();
    assert_eq!(
        results,
        [
            Ok((1, false)),
            Ok((2, false)),
            Ok((1, true)),
            Err(StoreError::NoSuchRoom),
            Ok((3, false))
        ]
    );
    assert_eq!(writer.commits.load(Ordering::Relaxed), 1);
    assert_eq!(
        drain(&mut published)
            .iter()
            .map(|m| m.seq)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
}

#[test]
fn failures_inside_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, mut published) = writer_on(&dir);
    // Stand-ins for storage errors: one that fails a statement, one that
    // makes SQLite roll the whole transaction back.
    let blocker = Connection::open(dir.path().join(DB_FILE)).unwrap();
    blocker
        .execute_batch(
            "CREATE TRIGGER fail_one BEFORE INSERT ON messages WHEN NEW.body = 'fail'
                 BEGIN SELECT RAISE(FAIL, 'injected'); END;
             CREATE TRIGGER fail_all BEFORE INSERT ON messages WHEN NEW.body = 'rollback'
                 BEGIN SELECT RAISE(ROLLBACK, 'injected'); END;",
        )
        .unwrap();
    let with_body = |n, body: &str| {
        Op::Append(NewMessage {
            body: body.into(),
            ..msg(LOBBY, n)
        })
    };

    let results = batch(
        &mut writer,
        vec![with_body(1, "a"), with_body(2, "fail"), with_body(3, "b")],
    );
    let results: Vec<_> = results.iter().map(appended).collect();
    assert_eq!(results[0], Ok((1, false)));
    assert!(matches!(results[1], Err(StoreError::Db(_))));
    assert_eq!(results[2], Ok((2, false)));

    let results = batch(
        &mut writer,
        vec![
            with_body(4, "c"),
            with_body(5, "rollback"),
            with_body(6, "d"),
        ],
    );
    assert!(
        results.iter().all(|r| matches!(r, Err(StoreError::Db(_)))),
        "{results:?}"
    );

    // The sequences given out in the failed batch were taken back.
    let results = batch(&mut writer, vec![with_body(4, "c")]);
    assert_eq!(appended(&results[0]), Ok((3, false)));
    assert_eq!(
        drain(&mut published)
            .iter()
            .map(|m| m.seq)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishing_follows_sequence_order() {
    const TASKS: u128 = 8;
    const EACH: u128 = 200;
    let dir = tempfile::tempdir().unwrap();
    let (store, mut published) = open_published(&dir);
    let store = std::sync::Arc::new(store);
    store.create_user("alice", "phc").await.unwrap();
    let rooms = [LOBBY, "a", "b"];
    for room in &rooms[1..] {
        store
            .create_room(room, RoomKind::Public, "alice")
            .await
            .unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.spawn(async move {
            let mut acks = Vec::new();
            for n in 0..EACH {
                let room = rooms[((task + n) % 3) as usize];
                let a = store.append(msg(room, task * 1000 + n)).await.unwrap();
                acks.push((room, a.seq));
            }
            acks
        });
    }
    let mut acked: BTreeMap<&str, HashSet<u64>> = BTreeMap::new();
    while let Some(acks) = tasks.join_next().await {
        for (room, seq) in acks.unwrap() {
            acked.entry(room).or_default().insert(seq);
        }
    }
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for m in drain(&mut published) {
        out.entry(m.room.clone()).or_default().push(m.seq);
    }
    assert_eq!(
        out.values().map(Vec::len).sum::<usize>(),
        (TASKS * EACH) as usize
    );
    for (room, seqs) in out {
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "room {room}: in order, none lost");
        assert_eq!(
            acked[room.as_str()],
            expected.into_iter().collect::<HashSet<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(&dir));
    store.create_user("alice", "phc").await.unwrap();
    let start = store.commits.load(Ordering::Relaxed);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..500 {
        let store = store.clone();
        tasks.spawn(async move { store.append(msg(LOBBY, n)).await.unwrap().seq });
    }
    let mut got = Vec::new();
    while let Some(seq) = tasks.join_next().await {
        got.push(seq.unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, (1..=500).collect::<Vec<_>>());
    let commits = store.commits.load(Ordering::Relaxed) - start;
    assert!(commits < 100, "{commits} commits for 500 appends");
}
