//! The same checks against both stores: the embedded SQLite file and NATS
//! JetStream (a real nats-server). What a session relies on must hold for
//! each: names ignore case, names that look alike are taken (and so stay
//! when the account is deleted, as its name does), membership changes
//! report whether they changed anything, invitations are listed newest
//! first up to a cap, resends are recognised with their original sequence
//! and time, and history pages agree with the protocol.

use std::sync::Arc;
use std::time::Duration;

use common::frame::{Message, Page, RoomKind};
use common::names::{dm_room, LOBBY};
use confab_tests::nats::NatsServer;
use relay::store::nats::{NatsOptions, NatsStore};
use relay::store::sqlite::SqliteStore;
use relay::store::{NewMessage, Store, StoreError};
use tokio::sync::mpsc;

fn msg(room: &str, n: u128) -> NewMessage {
    NewMessage {
        room: room.into(),
        from: "alice".into(),
        id: n.to_be_bytes(),
        body: format!("message {n}"),
    }
}

fn bodies(page: &[Message]) -> Vec<String> {
    page.iter().map(|m| m.body.clone()).collect()
}

async fn accounts<S: Store>(s: &S) {
    s.create_user("Alice", "phc-a").await.unwrap();
    assert_eq!(
        s.create_user("alice", "x").await,
        Err(StoreError::NameTaken),
        "names ignore case"
    );
    for lookalike in ["AIice", "a1ice", "ALlCE"] {
        assert_eq!(
            s.create_user(lookalike, "x").await,
            Err(StoreError::LooksLike("Alice".into())),
            "{lookalike} looks like Alice"
        );
        assert_eq!(s.lookalike(lookalike).await, Ok(Some("Alice".into())));
    }
    assert_eq!(s.lookalike("aLiCe").await, Ok(None), "the name itself");
    assert_eq!(s.lookalike("alicia").await, Ok(None));
    assert_eq!(s.user("AIice").await, Ok(None), "nothing of it was kept");
    let alice = s.user("ALICE").await.unwrap().unwrap();
    assert_eq!(
        (alice.name.as_str(), alice.phc.as_str()),
        ("Alice", "phc-a")
    );
    s.set_password("alice", "phc-b").await.unwrap();
    assert_eq!(s.user("Alice").await.unwrap().unwrap().phc, "phc-b");
    assert_eq!(
        s.set_password("nobody", "x").await,
        Err(StoreError::NoSuchUser)
    );
    s.create_user("bob", "phc").await.unwrap();
    s.create_user("carol", "phc").await.unwrap();
    assert!(
        s.is_member(LOBBY, "bob").await.unwrap(),
        "new users join the lobby"
    );
    let names: Vec<String> = s
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["Alice", "bob", "carol"]);

    s.delete_user("carol").await.unwrap();
    assert_eq!(s.user("carol").await.unwrap(), None);
    assert!(!s.is_member(LOBBY, "carol").await.unwrap());
    assert_eq!(
        s.create_user("Carol", "x").await,
        Err(StoreError::NameTaken),
        "a tombstone"
    );
    assert_eq!(
        s.create_user("caro1", "x").await,
        Err(StoreError::LooksLike("carol".into())),
        "a tombstone's look"
    );
    assert_eq!(s.delete_user("carol").await, Err(StoreError::NoSuchUser));
}

async fn rooms<S: Store>(s: &S) {
    let dev = s
        .create_room("dev", RoomKind::Public, "alice")
        .await
        .unwrap();
    assert_eq!(
        (dev.created_by.as_str(), dev.members, dev.latest),
        ("Alice", 1, 0)
    );
    assert_eq!(
        s.create_room("dev", RoomKind::Private, "bob").await,
        Err(StoreError::RoomExists)
    );
    assert_eq!(
        s.create_room("x", RoomKind::Public, "nobody").await,
        Err(StoreError::NoSuchUser)
    );
    s.create_room("secret", RoomKind::Private, "bob")
        .await
        .unwrap();
    let public: Vec<String> = s
        .public_rooms()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(public, ["dev", "lobby"]);

    assert!(s.add_member("dev", "bob").await.unwrap());
    assert!(
        !s.add_member("dev", "BOB").await.unwrap(),
        "already a member"
    );
    assert_eq!(
        s.add_member("nowhere", "bob").await,
        Err(StoreError::NoSuchRoom)
    );
    assert_eq!(s.members("dev").await.unwrap(), ["Alice", "bob"]);
    let of_bob: Vec<String> = s
        .rooms_of("bob")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(of_bob, ["dev", "lobby", "secret"]);

    assert!(!s.is_invited("secret", "alice").await.unwrap());
    s.invite("secret", "alice", "bob", 100).await.unwrap();
    assert!(s.is_invited("secret", "Alice").await.unwrap());
    assert!(s.add_member("secret", "alice").await.unwrap());
    assert!(
        !s.is_invited("secret", "alice").await.unwrap(),
        "joining uses the invite"
    );

    assert!(s.remove_member("dev", "bob").await.unwrap());
    assert!(!s.remove_member("dev", "bob").await.unwrap());
    assert!(!s.is_member("dev", "bob").await.unwrap());
    assert!(s.add_member("dev", "bob").await.unwrap(), "may come back");

    let dm = s.open_dm("bob", "ALICE").await.unwrap();
    assert_eq!(dm.name, dm_room("Alice", "bob"));
    assert_eq!((dm.kind, dm.members), (RoomKind::Direct, 2));
    s.remove_member(&dm.name, "bob").await.unwrap();
    assert_eq!(
        s.open_dm("alice", "bob").await.unwrap().members,
        1,
        "who left stays out when the other reopens it"
    );
    assert_eq!(s.room_count("bob").await.unwrap(), 3, "lobby, dev, secret");
    assert_eq!(
        s.open_dm("bob", "alice").await.unwrap().members,
        2,
        "and comes back by reopening it"
    );
    assert_eq!(s.room_count("bob").await.unwrap(), 4);
    let row = s.room("dev").await.unwrap().unwrap();
    assert_eq!((row.kind, row.members), (RoomKind::Public, 2));
    assert_eq!(s.room("nowhere").await.unwrap(), None);
}

async fn messages<S: Store>(s: &S, published: &mut mpsc::UnboundedReceiver<Arc<Message>>) {
    // Two rooms interleaved: sequences per room increase, maybe with gaps.
    let mut seqs = Vec::new();
    for n in 1..=200u128 {
        let room = if n % 3 == 0 { "dev" } else { LOBBY };
        let a = s.append(msg(room, n)).await.unwrap();
        assert!(!a.duplicate);
        if room == LOBBY {
            seqs.push(a.seq);
        }
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let again = s.append(msg(LOBBY, 1)).await.unwrap();
    assert!(again.duplicate, "a resend is recognised");
    assert_eq!(again.seq, seqs[0], "with its original sequence");
    assert_eq!(
        s.append(msg("nowhere", 999)).await,
        Err(StoreError::NoSuchRoom)
    );
    // Membership is checked when the message is written: carol's account
    // was deleted, and bob is no longer in dev.
    for (room, from) in [(LOBBY, "carol"), (LOBBY, "nobody")] {
        let stray = NewMessage {
            from: from.into(),
            ..msg(room, 1000)
        };
        assert_eq!(s.append(stray).await, Err(StoreError::NotMember), "{from}");
    }
    assert!(s.is_member("dev", "bob").await.unwrap());
    s.remove_member("dev", "bob").await.unwrap();
    let from_bob = NewMessage {
        from: "bob".into(),
        ..msg("dev", 1001)
    };
    assert_eq!(s.append(from_bob).await, Err(StoreError::NotMember));
    s.add_member("dev", "bob").await.unwrap();

    let lobby: Vec<String> = (1..=200u128)
        .filter(|n| n % 3 != 0)
        .map(|n| format!("message {n}"))
        .collect();
    let (page, more) = s.history(LOBBY, Page::Latest, 50).await.unwrap();
    assert_eq!(bodies(&page), lobby[lobby.len() - 50..]);
    assert!(more);
    let (older, more) = s
        .history(LOBBY, Page::Before(page[0].seq), 50)
        .await
        .unwrap();
    assert_eq!(bodies(&older), lobby[lobby.len() - 100..lobby.len() - 50]);
    assert!(more);
    let (rest, more) = s
        .history(LOBBY, Page::Before(older[0].seq), 50)
        .await
        .unwrap();
    assert_eq!(bodies(&rest), lobby[..lobby.len() - 100]);
    assert!(!more);
    let (after, more) = s.history(LOBBY, Page::After(seqs[9]), 20).await.unwrap();
    assert_eq!(bodies(&after), lobby[10..30]);
    assert!(more);
    let (end, more) = s
        .history(LOBBY, Page::After(*seqs.last().unwrap()), 20)
        .await
        .unwrap();
    assert!(end.is_empty() && !more);
    let (none, more) = s.history("secret", Page::Latest, 50).await.unwrap();
    assert!(none.is_empty() && !more);
    assert_eq!(
        s.room(LOBBY).await.unwrap().unwrap().latest,
        *seqs.last().unwrap()
    );
    let row = page.last().unwrap();
    assert_eq!(
        (row.from.as_str(), row.id),
        ("alice", 200u128.to_be_bytes())
    );

    // Committed messages are published once each, in order per room.
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + confab_tests::PATIENCE;
    while got.len() < 200 {
        let m = tokio::time::timeout_at(deadline, published.recv())
            .await
            .expect("every committed message is published")
            .unwrap();
        got.push(m);
    }
    let lobby_published: Vec<u64> = got
        .iter()
        .filter(|m| m.room == LOBBY)
        .map(|m| m.seq)
        .collect();
    assert_eq!(lobby_published, seqs);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        published.try_recv().is_err(),
        "the resend was not published again"
    );
}

/// alice's invitations, as (room, inviter).
async fn listed<S: Store>(s: &S) -> Vec<(String, String)> {
    s.invitations("ALICE")
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.room.name, i.by))
        .collect()
}

/// After `rooms`: bob invites alice, who is in lobby, dev and secret.
async fn invitations<S: Store>(s: &S) {
    let by = |room: &str, by: &str| (room.to_owned(), by.to_owned());
    assert_eq!(listed(s).await, []);
    for room in ["i0", "i1", "i2", "i3"] {
        s.create_room(room, RoomKind::Private, "bob").await.unwrap();
    }
    assert_eq!(
        s.invite("dev", "alice", "bob", 3).await,
        Ok(false),
        "a member"
    );
    assert_eq!(
        s.invite("nowhere", "alice", "bob", 3).await,
        Err(StoreError::NoSuchRoom)
    );
    assert_eq!(
        s.invite("i0", "nobody", "bob", 3).await,
        Err(StoreError::NoSuchUser)
    );
    for room in ["i0", "i1", "i2"] {
        assert_eq!(s.invite(room, "alice", "bob", 3).await, Ok(true));
    }
    assert_eq!(
        listed(s).await,
        [by("i2", "bob"), by("i1", "bob"), by("i0", "bob")],
        "newest first"
    );
    // Again, from another: the newest. One over the cap: the oldest goes.
    s.invite("i0", "alice", "Alice", 3).await.unwrap();
    s.invite("i3", "alice", "bob", 3).await.unwrap();
    assert_eq!(
        listed(s).await,
        [by("i3", "bob"), by("i0", "Alice"), by("i2", "bob")]
    );
    assert!(!s.is_invited("i1", "alice").await.unwrap());
    let row = &s.invitations("alice").await.unwrap()[0].room;
    assert_eq!((row.kind, row.members), (RoomKind::Private, 1));

    assert_eq!(s.decline("i2", "alice").await, Ok(true));
    assert_eq!(s.decline("i2", "alice").await, Ok(false));
    assert!(s.add_member("i3", "alice").await.unwrap());
    assert_eq!(listed(s).await, [by("i0", "Alice")], "declined and joined");
    assert!(s.remove_member("i3", "alice").await.unwrap());
    assert!(!s.is_invited("i3", "alice").await.unwrap(), "used up");
    assert_eq!(s.invitations("bob").await.unwrap(), []);
}

async fn all<S: Store>(s: &S, published: &mut mpsc::UnboundedReceiver<Arc<Message>>) {
    accounts(s).await;
    rooms(s).await;
    invitations(s).await;
    messages(s, published).await;
    s.close().await;
    assert_eq!(s.append(msg(LOBBY, 500)).await, Err(StoreError::Closed));
}

/// Two handles on one store (two relays on NATS, a relay and `relay user
/// add` on one file) registering lookalikes at the same moment: one of
/// each pair is made, and the other is told which.
async fn lookalikes_at_once<S: Store>(a: &S, b: &S) {
    async fn register<S: Store>(s: &S, names: &[String]) -> Vec<Result<(), StoreError>> {
        let mut out = Vec::new();
        for name in names {
            out.push(s.create_user(name, "phc").await);
        }
        out
    }
    let pairs = 20;
    let wide = |n| format!("w{n}m");
    let narrow = |n| format!("VV{n}rn");
    let (wides, narrows): (Vec<String>, Vec<String>) =
        (0..pairs).map(|n| (wide(n), narrow(n))).unzip();
    let (by_a, by_b) = tokio::join!(register(a, &wides), register(b, &narrows));
    for n in 0..pairs {
        match (&by_a[n], &by_b[n]) {
            (Ok(()), Err(StoreError::LooksLike(first))) => assert_eq!(first, &wide(n)),
            (Err(StoreError::LooksLike(first)), Ok(())) => assert_eq!(first, &narrow(n)),
            other => panic!("pair {n}: one account, the other refused; got {other:?}"),
        }
    }
    assert_eq!(a.list_users().await.unwrap().len(), pairs);
}

#[tokio::test]
async fn sqlite_lookalikes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let relay = SqliteStore::open(dir.path(), None).unwrap();
    let admin = SqliteStore::open(dir.path(), None).unwrap();
    lookalikes_at_once(&relay, &admin).await;
}

#[tokio::test]
async fn nats_lookalikes_at_once() {
    let nats = NatsServer::start();
    let opts = NatsOptions::new(nats.url());
    let one = NatsStore::open(&opts, None).await.unwrap();
    let other = NatsStore::open(&opts, None).await.unwrap();
    lookalikes_at_once(&one, &other).await;
}

#[tokio::test]
async fn nats_accounts_from_before_skeletons_still_stop_lookalikes() {
    let nats = NatsServer::start();
    let opts = NatsOptions::new(nats.url());
    let old = NatsStore::open(&opts, None).await.unwrap();
    let kv = async_nats::jetstream::new(old.client())
        .get_key_value("confab")
        .await
        .unwrap();
    // What a relay from before skeletons left: accounts without skeleton
    // keys, two of them alike, one deleted.
    old.create_user("alice", "phc").await.unwrap();
    kv.purge("s.allce").await.unwrap();
    old.create_user("aIice", "phc").await.unwrap();
    old.create_user("carol", "phc").await.unwrap();
    old.delete_user("carol").await.unwrap();
    for key in ["s.allce", "s.carol"] {
        kv.purge(key).await.unwrap();
    }
    old.close().await;

    // The next relay to open the bucket reserves their looks.
    let store = NatsStore::open(&opts, None).await.unwrap();
    let first = match store.create_user("al1ce", "phc").await {
        Err(StoreError::LooksLike(first)) => first,
        other => panic!("al1ce: {other:?}"),
    };
    assert!(["alice", "aIice"].contains(&first.as_str()), "{first}");
    assert_eq!(
        store.create_user("caro1", "phc").await,
        Err(StoreError::LooksLike("carol".into()))
    );
    for name in ["alice", "aIice"] {
        assert!(store.user(name).await.unwrap().is_some(), "{name} stays");
    }
    assert_eq!(store.members(LOBBY).await.unwrap(), ["aIice", "alice"]);
    store.create_user("dave", "phc").await.unwrap();
    store.close().await;

    // Opening again changes nothing.
    let again = NatsStore::open(&opts, None).await.unwrap();
    assert_eq!(
        again.create_user("ALlCE", "phc").await,
        Err(StoreError::LooksLike(first))
    );
    assert_eq!(
        again.create_user("DAVE", "phc").await,
        Err(StoreError::NameTaken)
    );
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let store = SqliteStore::open(dir.path(), Some(tx)).unwrap();
    all(&store, &mut rx).await;
}

#[tokio::test]
async fn nats_store() {
    let nats = NatsServer::start();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let store = NatsStore::open(&NatsOptions::new(nats.url()), Some(tx))
        .await
        .unwrap();
    all(&store, &mut rx).await;
}

#[tokio::test]
async fn nats_history_finds_a_sparse_room_in_a_busy_stream() {
    let nats = NatsServer::start();
    let store = NatsStore::open(&NatsOptions::new(nats.url()), None)
        .await
        .unwrap();
    store.create_user("alice", "phc").await.unwrap();
    store
        .create_room("quiet", RoomKind::Public, "alice")
        .await
        .unwrap();
    let mut quiet = Vec::new();
    let mut pending = Vec::new();
    for n in 0..3000u128 {
        let room = if n % 97 == 0 { "quiet" } else { LOBBY };
        pending.push((room, store.append(msg(room, n))));
    }
    for (room, p) in pending {
        let a = p.await.unwrap();
        if room == "quiet" {
            quiet.push(a.seq);
        }
    }
    let (page, more) = store.history("quiet", Page::Latest, 10).await.unwrap();
    let seqs: Vec<u64> = page.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, quiet[quiet.len() - 10..]);
    assert!(more);
    let (older, _) = store
        .history("quiet", Page::Before(seqs[0]), 50)
        .await
        .unwrap();
    let older: Vec<u64> = older.iter().map(|m| m.seq).collect();
    assert_eq!(older, quiet[..quiet.len() - 10]);
    store.close().await;
}

/// A message stream made with a short deduplication window (by an older
/// or a hand-configured relay) is widened at start: a resend seconds later
/// is still recognised.
#[tokio::test]
async fn nats_widens_a_short_deduplication_window_at_start() {
    let nats = NatsServer::start();
    let mut short = NatsOptions::new(nats.url());
    short.dedup_window = Duration::from_secs(2);
    let first = NatsStore::open(&short, None).await.unwrap();
    first.create_user("alice", "phc").await.unwrap();
    first.close().await;
    drop(first);

    let store = NatsStore::open(&NatsOptions::new(nats.url()), None)
        .await
        .unwrap();
    let stored = store.append(msg(LOBBY, 7)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = store.append(msg(LOBBY, 7)).await.unwrap();
    assert!(again.duplicate, "a resend after 3 s is the same message");
    assert_eq!(again.seq, stored.seq);
    store.close().await;
}

#[tokio::test]
async fn nats_unreachable_or_without_jetstream_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = NatsStore::open(&NatsOptions::new(format!("nats://127.0.0.1:{port}")), None)
        .await
        .err()
        .expect("nothing listens there");
    let text = format!("{err:#}");
    assert!(
        text.contains("cannot reach NATS") && text.contains("nats-server running"),
        "{text}"
    );
}

/// Room lists on NATS read many rooms at once, and public ones from a
/// copy that changes made through the same relay refresh at once.
#[tokio::test]
async fn nats_room_lists_are_whole_and_fresh() {
    let nats = NatsServer::start();
    let store = NatsStore::open(&NatsOptions::new(nats.url()), None)
        .await
        .unwrap();
    for user in ["alice", "bob"] {
        store.create_user(user, "phc").await.unwrap();
    }
    const ROOMS: usize = 400;
    for n in 0..ROOMS {
        store
            .create_room(&format!("r{n:03}"), RoomKind::Public, "alice")
            .await
            .unwrap();
    }
    store.append(msg("r007", 1)).await.unwrap();
    let started = std::time::Instant::now();
    let public = store.public_rooms().await.unwrap();
    let listed = started.elapsed();
    assert_eq!(public.len(), ROOMS + 1);
    let r007 = public.iter().find(|r| r.name == "r007").unwrap();
    assert_eq!((r007.members, r007.latest > 0), (1, true));
    assert!(public.windows(2).all(|w| w[0].name < w[1].name));
    let started = std::time::Instant::now();
    let joined = store.rooms_of("alice").await.unwrap();
    eprintln!(
        "{} public rooms listed in {listed:?}, {} joined in {:?}",
        public.len(),
        joined.len(),
        started.elapsed()
    );
    assert_eq!(joined.len(), ROOMS + 1);

    store.add_member("r008", "bob").await.unwrap();
    store
        .create_room("fresh", RoomKind::Public, "bob")
        .await
        .unwrap();
    let public = store.public_rooms().await.unwrap();
    let r008 = public.iter().find(|r| r.name == "r008").unwrap();
    assert_eq!(r008.members, 2, "a join through this relay shows at once");
    assert!(public.iter().any(|r| r.name == "fresh"));
}
