//! Accounts, rooms, memberships, invites and DMs.

use super::*;

#[tokio::test]
async fn user_names_ignore_ascii_case() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user("Alice", "phc-a").await.unwrap();
    assert_eq!(
        store.create_user("alice", "phc-b").await,
        Err(StoreError::NameTaken)
    );
    assert_eq!(
        store.create_user("ALICE", "phc-b").await,
        Err(StoreError::NameTaken)
    );

    let found = store.user("aLiCe").await.unwrap().unwrap();
    assert_eq!(
        (found.name.as_str(), found.phc.as_str()),
        ("Alice", "phc-a")
    );
    assert!(found.created > 1_600_000_000);
    assert_eq!(store.user("bob").await.unwrap(), None);

    store.create_user("bob", "phc-c").await.unwrap();
    assert!(store.is_member(LOBBY, "alice").await.unwrap());
    assert!(store.is_member(LOBBY, "BOB").await.unwrap());
    assert_eq!(store.members(LOBBY).await.unwrap(), ["Alice", "bob"]);
    let names: Vec<_> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["Alice", "bob"]);
    let lobby = store.room(LOBBY).await.unwrap().unwrap();
    assert_eq!(
        (lobby.kind, lobby.created_by.as_str(), lobby.members),
        (RoomKind::Public, "", 2)
    );
}

#[tokio::test]
async fn passwords_change_and_users_leave() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user("alice", "old").await.unwrap();
    store.create_user("bob", "b").await.unwrap();
    store.set_password("ALICE", "new").await.unwrap();
    assert_eq!(store.user("alice").await.unwrap().unwrap().phc, "new");
    assert_eq!(
        store.set_password("carol", "x").await,
        Err(StoreError::NoSuchUser)
    );

    store
        .create_room("dev", RoomKind::Private, "bob")
        .await
        .unwrap();
    store.invite("dev", "alice", "bob", 100).await.unwrap();
    store.append(msg(LOBBY, 1)).await.unwrap();
    store.delete_user("Alice").await.unwrap();

    assert_eq!(store.user("alice").await.unwrap(), None);
    assert!(!store.is_member(LOBBY, "alice").await.unwrap());
    assert!(!store.is_invited("dev", "alice").await.unwrap());
    assert_eq!(store.members(LOBBY).await.unwrap(), ["bob"]);
    let (kept, _) = store.history(LOBBY, Page::Latest, 10).await.unwrap();
    assert_eq!(kept[0].from, "alice");
    assert_eq!(
        store.delete_user("alice").await,
        Err(StoreError::NoSuchUser)
    );
    // The name stays taken, so nobody inherits alice's DMs or her history.
    assert_eq!(store.user("alice").await.unwrap(), None);
    assert_eq!(
        store.create_user("ALICE", "again").await,
        Err(StoreError::NameTaken)
    );
    assert_eq!(
        store.set_password("alice", "x").await,
        Err(StoreError::NoSuchUser)
    );
    assert!(store
        .list_users()
        .await
        .unwrap()
        .iter()
        .all(|u| u.name != "alice"));
}

#[tokio::test]
async fn names_that_look_alike_are_taken_even_once_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user("alice", "phc").await.unwrap();
    for lookalike in ["aIice", "AL1CE", "a1ice"] {
        assert_eq!(
            store.create_user(lookalike, "x").await,
            Err(StoreError::LooksLike("alice".into())),
            "{lookalike}"
        );
        assert_eq!(
            store.lookalike(lookalike).await,
            Ok(Some("alice".into())),
            "{lookalike}"
        );
    }
    assert_eq!(
        store.create_user("ALICE", "x").await,
        Err(StoreError::NameTaken),
        "the name itself, in any case, is plainly taken"
    );
    assert_eq!(store.lookalike("Alice").await, Ok(None));
    assert_eq!(store.lookalike("alicia").await, Ok(None));
    assert_eq!(
        store.user("aIice").await,
        Ok(None),
        "nothing was left behind"
    );
    assert_eq!(store.members(LOBBY).await.unwrap(), ["alice"]);
    store.create_user("alicia", "phc").await.unwrap();

    // As its name does, a deleted account's look stays taken: nobody may
    // be taken for alice in the history she left.
    store.delete_user("alice").await.unwrap();
    assert_eq!(
        store.create_user("aIice", "x").await,
        Err(StoreError::LooksLike("alice".into()))
    );
}

#[test]
fn lookalikes_in_one_batch_make_one_account() {
    let dir = tempfile::tempdir().unwrap();
    let conn = schema::open_writer(&dir.path().join(DB_FILE), 0).unwrap();
    let mut writer = Writer::new(conn, None, None, Default::default());
    let create = |name: &str| Op::CreateUser {
        name: name.into(),
        phc: "phc".into(),
    };
    let results: Vec<_> = batch(
        &mut writer,
        vec![create("b0b"), create("BOB"), create("bob2")],
    )
    .into_iter()
    .map(|r| r.and_then(Outcome::done))
    .collect();
    assert_eq!(
        results,
        [Ok(()), Err(StoreError::LooksLike("b0b".into())), Ok(())]
    );
}

#[test]
fn the_lookalike_check_reads_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let conn = schema::open_writer(&dir.path().join(DB_FILE), 0).unwrap();
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {}", reads::LOOKALIKE))
        .unwrap();
    let plan: Vec<String> = stmt
        .query_map(rusqlite::params!["allce", "aIice"], |row| row.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter()
            .any(|step| step.starts_with("SEARCH users USING INDEX users_by_skeleton (skeleton=?)")),
        "{plan:?}"
    );
}

#[tokio::test]
async fn rooms_members_and_invites() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for name in ["alice", "bob", "carol"] {
        store.create_user(name, "phc").await.unwrap();
    }
    let dev = store
        .create_room("dev", RoomKind::Public, "Alice")
        .await
        .unwrap();
    assert_eq!(
        (dev.name.as_str(), dev.kind, dev.created_by.as_str()),
        ("dev", RoomKind::Public, "alice")
    );
    assert_eq!((dev.latest, dev.members), (0, 1));
    assert_eq!(
        store.create_room("dev", RoomKind::Private, "bob").await,
        Err(StoreError::RoomExists)
    );
    assert_eq!(
        store.create_room("ops", RoomKind::Public, "dave").await,
        Err(StoreError::NoSuchUser)
    );
    assert_eq!(
        store.room("ops").await.unwrap(),
        None,
        "a refused creation leaves nothing"
    );
    store
        .create_room("secret", RoomKind::Private, "bob")
        .await
        .unwrap();

    assert_eq!(
        store.add_member("nope", "bob").await,
        Err(StoreError::NoSuchRoom)
    );
    assert_eq!(
        store.add_member("dev", "dave").await,
        Err(StoreError::NoSuchUser)
    );
    assert!(store.add_member("dev", "bob").await.unwrap());
    assert!(!store.add_member("dev", "BOB").await.unwrap());
    assert_eq!(store.members("dev").await.unwrap(), ["alice", "bob"]);
    assert_eq!(store.members("nope").await, Err(StoreError::NoSuchRoom));

    assert_eq!(
        store.invite("nope", "carol", "bob", 100).await,
        Err(StoreError::NoSuchRoom)
    );
    assert_eq!(
        store.invite("secret", "dave", "bob", 100).await,
        Err(StoreError::NoSuchUser)
    );
    assert_eq!(store.invite("secret", "carol", "bob", 100).await, Ok(true));
    assert_eq!(store.invite("secret", "carol", "bob", 100).await, Ok(true));
    assert_eq!(
        store.invite("secret", "bob", "bob", 100).await,
        Ok(false),
        "a member is not invited"
    );
    assert!(store.is_invited("secret", "Carol").await.unwrap());
    assert!(!store.is_invited("secret", "alice").await.unwrap());
    assert!(store.add_member("secret", "carol").await.unwrap());
    assert!(
        !store.is_invited("secret", "carol").await.unwrap(),
        "joining uses up the invite"
    );

    let mine: Vec<_> = store
        .rooms_of("bob")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(mine, ["dev", LOBBY, "secret"]);
    let public: Vec<_> = store
        .public_rooms()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(public, ["dev", LOBBY]);

    assert!(store.remove_member("dev", "Bob").await.unwrap());
    assert!(!store.remove_member("dev", "bob").await.unwrap());
    assert!(!store.is_member("dev", "bob").await.unwrap());

    store.append(msg("dev", 1)).await.unwrap();
    store.append(msg("dev", 2)).await.unwrap();
    let dev = store.room("dev").await.unwrap().unwrap();
    assert_eq!((dev.latest, dev.members), (2, 1));
    assert_eq!(
        store.room("Dev").await.unwrap(),
        None,
        "room names are exact"
    );
}

#[tokio::test]
async fn direct_rooms() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user("Alice", "phc").await.unwrap();
    store.create_user("bob", "phc").await.unwrap();

    let dm = store.open_dm("bob", "alice").await.unwrap();
    assert_eq!(dm.name, common::names::dm_room("Alice", "bob"));
    assert_eq!((dm.kind, dm.members), (RoomKind::Direct, 2));
    assert_eq!(store.open_dm("ALICE", "Bob").await.unwrap(), dm);
    assert_eq!(store.members(&dm.name).await.unwrap(), ["Alice", "bob"]);
    assert_eq!(
        store.open_dm("alice", "carol").await,
        Err(StoreError::NoSuchUser)
    );
    assert_eq!(
        store.open_dm("carol", "alice").await,
        Err(StoreError::NoSuchUser)
    );

    store.remove_member(&dm.name, "bob").await.unwrap();
    assert_eq!(
        store.open_dm("alice", "bob").await.unwrap().members,
        1,
        "the other side cannot bring back one who left"
    );
    assert_eq!(
        store.open_dm("bob", "alice").await.unwrap().members,
        2,
        "who left comes back by opening it again"
    );
    assert!(store
        .public_rooms()
        .await
        .unwrap()
        .iter()
        .all(|r| r.name != dm.name));
}

#[tokio::test]
async fn odd_input_is_stored_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let names = [
        "o'brien\"; DROP TABLE users; --",
        "ünïcødé",
        "",
        "a\0b",
        "%_*",
    ];
    for name in names {
        store.create_user(name, "phc'\"").await.unwrap();
        assert_eq!(store.user(name).await.unwrap().unwrap().name, name);
        store
            .create_room(&format!("room {name}"), RoomKind::Public, name)
            .await
            .unwrap();
    }
    assert_eq!(store.user("%").await.unwrap(), None);
    assert_eq!(
        store.user("ÜNÏCØDÉ").await.unwrap(),
        None,
        "only ASCII case is ignored"
    );
    let dm = store.open_dm(names[0], names[1]).await.unwrap();
    for body in ["", "💬 hällo\n\t\"'`\\", "\0", &"x".repeat(4096)] {
        let new = NewMessage {
            room: dm.name.clone(),
            from: names[0].into(),
            id: id(body.len() as u128),
            body: body.into(),
        };
        let seq = store.append(new).await.unwrap().seq;
        let (page, _) = store
            .history(&dm.name, Page::After(seq - 1), 1)
            .await
            .unwrap();
        assert_eq!(page[0].body, body);
    }
    assert_eq!(store.list_users().await.unwrap().len(), names.len());
}

#[tokio::test]
async fn invitations_are_listed_newest_first_capped_and_declined() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for name in ["alice", "bob", "carol"] {
        store.create_user(name, "phc").await.unwrap();
    }
    for room in ["a", "b", "c", "d"] {
        store
            .create_room(room, RoomKind::Private, "bob")
            .await
            .unwrap();
    }
    let listed = |list: Vec<Invited>| {
        list.into_iter()
            .map(|i| (i.room.name, i.by))
            .collect::<Vec<_>>()
    };
    let s = |x: &str| x.to_owned();
    store.invite("a", "alice", "bob", 3).await.unwrap();
    store.invite("b", "ALICE", "bob", 3).await.unwrap();
    store.invite("c", "alice", "carol", 3).await.unwrap();
    assert_eq!(
        listed(store.invitations("Alice").await.unwrap()),
        [(s("c"), s("carol")), (s("b"), s("bob")), (s("a"), s("bob"))]
    );
    // Invited again, by someone else: the newest, from them.
    store.invite("a", "alice", "carol", 3).await.unwrap();
    // One more than the cap: the oldest goes.
    store.invite("d", "alice", "bob", 3).await.unwrap();
    assert_eq!(
        listed(store.invitations("alice").await.unwrap()),
        [
            (s("d"), s("bob")),
            (s("a"), s("carol")),
            (s("c"), s("carol"))
        ]
    );
    assert!(!store.is_invited("b", "alice").await.unwrap());
    let row = &store.invitations("alice").await.unwrap()[0].room;
    assert_eq!((row.kind, row.members), (RoomKind::Private, 1));

    assert_eq!(store.decline("c", "alice").await, Ok(true));
    assert_eq!(store.decline("c", "alice").await, Ok(false));
    assert_eq!(store.decline("b", "carol").await, Ok(false));
    assert!(store.add_member("a", "alice").await.unwrap());
    assert_eq!(
        listed(store.invitations("alice").await.unwrap()),
        [(s("d"), s("bob"))],
        "declined and accepted are gone"
    );
    assert_eq!(store.invitations("carol").await.unwrap(), []);
    store.delete_user("alice").await.unwrap();
    assert_eq!(store.invitations("alice").await.unwrap(), []);
}
