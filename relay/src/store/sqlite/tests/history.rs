//! History pages.

use super::*;

#[tokio::test]
async fn history_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user("alice", "phc").await.unwrap();
    store
        .create_room("empty", RoomKind::Public, "alice")
        .await
        .unwrap();
    for n in 1..=25 {
        store.append(msg(LOBBY, n)).await.unwrap();
    }
    let page = |p, limit| {
        let store = &store;
        async move {
            let (messages, more) = store.history(LOBBY, p, limit).await.unwrap();
            (seqs(&messages), more)
        }
    };
    assert_eq!(page(Page::Latest, 10).await, ((16..=25).collect(), true));
    assert_eq!(page(Page::Before(16), 10).await, ((6..=15).collect(), true));
    assert_eq!(page(Page::Before(6), 10).await, ((1..=5).collect(), false));
    assert_eq!(
        page(Page::Before(11), 10).await,
        ((1..=10).collect(), false)
    );
    assert_eq!(page(Page::Before(1), 10).await, (vec![], false));
    assert_eq!(page(Page::Latest, 25).await, ((1..=25).collect(), false));
    assert_eq!(page(Page::Latest, 200).await, ((1..=25).collect(), false));
    assert_eq!(page(Page::After(0), 10).await, ((1..=10).collect(), true));
    assert_eq!(
        page(Page::After(15), 10).await,
        ((16..=25).collect(), false)
    );
    assert_eq!(
        page(Page::After(20), 10).await,
        ((21..=25).collect(), false)
    );
    assert_eq!(page(Page::After(25), 10).await, (vec![], false));
    assert_eq!(page(Page::After(u64::MAX), 10).await, (vec![], false));
    assert_eq!(
        page(Page::Before(u64::MAX), 3).await,
        (vec![23, 24, 25], true)
    );
    assert_eq!(page(Page::Latest, 0).await, (vec![], true));

    // Paging back from the newest reaches the first message exactly once.
    let mut seen = Vec::new();
    let (mut messages, mut more) = store.history(LOBBY, Page::Latest, 7).await.unwrap();
    loop {
        seen.splice(0..0, seqs(&messages));
        if !more {
            break;
        }
        (messages, more) = store
            .history(LOBBY, Page::Before(messages[0].seq), 7)
            .await
            .unwrap();
    }
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());

    let (first, _) = store.history(LOBBY, Page::After(0), 1).await.unwrap();
    assert_eq!(
        (first[0].room.as_str(), first[0].id, first[0].from.as_str()),
        (LOBBY, id(1), "alice")
    );
    assert_eq!(
        store.history("empty", Page::Latest, 10).await.unwrap(),
        (vec![], false)
    );
    assert_eq!(
        store.history("nope", Page::Latest, 10).await,
        Err(StoreError::NoSuchRoom)
    );
    assert_eq!(
        store.history("nope", Page::After(3), 0).await,
        Err(StoreError::NoSuchRoom)
    );
}

#[test]
fn history_reads_a_primary_key_range() {
    let dir = tempfile::tempdir().unwrap();
    let conn = schema::open_writer(&dir.path().join(DB_FILE), 0).unwrap();
    for sql in [reads::LATEST, reads::BEFORE, reads::AFTER] {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
        let plan: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(nulls), |row| row.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(plan.len(), 1, "{sql}: {plan:?}");
        assert!(
            plan[0].starts_with("SEARCH messages USING PRIMARY KEY (room=?"),
            "{sql}: {plan:?}"
        );
    }
}

#[tokio::test]
async fn history_is_fast_in_a_big_room() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    {
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch(
            "INSERT INTO rooms (name, kind, created_by, created) VALUES ('big', 0, '', 0);
             INSERT INTO users (name, phc, created) VALUES ('alice', 'phc', 0);
             INSERT INTO members VALUES ('big', 'alice', 0);
             WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1000000)
             INSERT INTO messages SELECT 'big', x, CAST(printf('%016d', x) AS BLOB), 'u', x, 'body' FROM n;",
        )
        .unwrap();
    }
    let started = Instant::now();
    for _ in 0..100 {
        let (latest, more) = store.history("big", Page::Latest, 200).await.unwrap();
        assert_eq!((latest[0].seq, more), (999_801, true));
        let (middle, _) = store
            .history("big", Page::Before(500_000), 200)
            .await
            .unwrap();
        assert_eq!(middle[199].seq, 499_999);
        let (start, _) = store.history("big", Page::After(0), 200).await.unwrap();
        assert_eq!(start[0].seq, 1);
    }
    assert_eq!(store.room("big").await.unwrap().unwrap().latest, 1_000_000);
    assert_eq!(
        store
            .append(NewMessage {
                room: "big".into(),
                ..msg("big", 1)
            })
            .await
            .unwrap()
            .seq,
        1_000_001
    );
    // Each page is an index range: far below a scan of the room, even unoptimised.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
