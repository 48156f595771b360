//! Regressions found by the `room_sync` fuzz target (fuzz/fuzz_targets/room_sync.rs).
//! Crate `confab-common`: drop in as `common/tests/room_sync_regressions.rs`.
//!
//! Each test replays, through the public `RoomSync` API, what the worker
//! feeds it in a sequence the fuzzer found against a model relay that
//! follows docs/PROTOCOL.md §9–13. The names say what must hold.

use common::client::sync::{RoomSync, Step, Token};
use common::frame::{Message, Page, RoomInfo, RoomKind, Seq};

fn m(room: &str, seq: Seq) -> Message {
    Message {
        room: room.into(),
        seq,
        id: [seq as u8; 16],
        ts: 0,
        from: "bob".into(),
        body: format!("{seq}"),
    }
}

fn msgs(room: &str, seqs: impl IntoIterator<Item = Seq>) -> Vec<Message> {
    seqs.into_iter().map(|s| m(room, s)).collect()
}

fn info(name: &str) -> RoomInfo {
    RoomInfo {
        name: name.into(),
        kind: RoomKind::Public,
        members: 2,
        latest: 0,
    }
}

/// The page and token of the (only) fetch for `room` among `steps`.
fn fetch(steps: &[Step], room: &str) -> (Page, Token) {
    steps
        .iter()
        .find_map(|s| match s {
            Step::Fetch {
                room: r,
                page,
                token,
                ..
            } if r == room => Some((*page, *token)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no fetch for {room} in {steps:?}"))
}

fn fetches(steps: &[Step], room: &str) -> usize {
    steps
        .iter()
        .filter(|s| matches!(s, Step::Fetch { room: r, .. } if r == room))
        .count()
}

/// What the application is shown of `room`, in order: `Joined.recent`
/// and `Deliver`ed messages.
fn shown(steps: &[Step], room: &str) -> Vec<Seq> {
    let mut out = Vec::new();
    for s in steps {
        match s {
            Step::Joined {
                room: r, recent, ..
            } if r == room => out.extend(recent.iter().map(|m| m.seq)),
            Step::Deliver(msg) if msg.room == room => out.push(msg.seq),
            _ => {}
        }
    }
    out
}

fn joined_count(steps: &[Step], room: &str) -> usize {
    steps
        .iter()
        .filter(|s| matches!(s, Step::Joined { room: r, .. } if r == room))
        .count()
}

fn resubscribe(room: &str) -> Step {
    Step::Resubscribe { room: room.into() }
}

/// Minimized fuzz input: Connect; Commit lobby (queued); Commit lobby (queue
/// full: Lagged); settle. At the first login a live message for a room not
/// yet listed asks for `Latest`, and so did the room list, which arrives on
/// its own stream afterwards. A `Lagged` between the two answers kept the
/// room held, so the second `Latest` page was taken as a new first screen:
/// `Joined` twice, the same messages shown twice.
#[test]
fn a_second_latest_page_does_not_show_the_room_again() {
    let mut s = RoomSync::default();
    let mut all = Vec::new();
    s.logged_in();
    let first = s.live(m("lobby", 1));
    let (page, t1) = fetch(&first, "lobby");
    assert_eq!(page, Page::Latest);
    assert_eq!(s.lagged("lobby"), vec![resubscribe("lobby")]);
    // The room list, answered on its own stream, lists lobby too. Asking
    // again is allowed; two answers must not both count.
    let listed = s.room_list(&[info("lobby")]);
    let second = (fetches(&listed, "lobby") == 1).then(|| fetch(&listed, "lobby").1);

    let steps = s.page("lobby", t1, Page::Latest, msgs("lobby", [1, 3]), false);
    let (page, t3) = fetch(&steps, "lobby");
    assert_eq!(page, Page::After(3), "one more pass after the lag");
    all.extend(steps);
    if let Some(t2) = second {
        all.extend(s.page("lobby", t2, Page::Latest, msgs("lobby", [1, 3, 4]), false));
    }
    all.extend(s.page("lobby", t3, Page::After(3), msgs("lobby", [4]), false));

    assert_eq!(joined_count(&all, "lobby"), 1, "{all:#?}");
    assert_eq!(shown(&all, "lobby"), vec![1, 3, 4], "{all:#?}");
}

/// Same race, in a room with more history than one `Latest` page: the
/// second `Latest` page (the newest 50 of 60, `more: true`) released the
/// room before the `After` pass that covers the lag had come back, and that
/// pass was then ignored: 2..=10 never shown. (The fuzzer found it with
/// pages capped at 1 message: Connect, Handle, Commit, Read, Handle,
/// Commit lagged, Commit.)
#[test]
fn a_stale_latest_page_does_not_end_the_catch_up_early() {
    let mut s = RoomSync::default();
    let mut all = Vec::new();
    s.logged_in();
    let (_, t1) = fetch(&s.live(m("lobby", 1)), "lobby");
    s.lagged("lobby"); // 2..=60 were not sent
    let listed = s.room_list(&[info("lobby")]);
    let second = (fetches(&listed, "lobby") == 1).then(|| fetch(&listed, "lobby").1);
    let steps = s.page("lobby", t1, Page::Latest, msgs("lobby", [1]), false);
    let (page, t3) = fetch(&steps, "lobby");
    assert_eq!(page, Page::After(1));
    all.extend(steps);
    if let Some(t2) = second {
        // Read by the relay once 60 was committed.
        all.extend(s.page("lobby", t2, Page::Latest, msgs("lobby", 11..=60), true));
    }
    all.extend(s.page("lobby", t3, Page::After(1), msgs("lobby", 2..=60), false));

    let seen = shown(&all, "lobby");
    assert!(
        (2..=10).all(|seq| seen.contains(&seq)),
        "2..=10 were lost: shown {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "shown twice: {seen:?}"
    );
}

/// A catch-up page requested before the room was left (on another device)
/// and joined again arrived after the new join: it was delivered into the
/// fresh room before its `Joined`, and the `Joined` then repeated it.
/// (Fuzz input: join r1, lag, Joined page, leave, join with presence
/// dropped, settle.)
#[test]
fn a_page_from_before_leaving_is_not_delivered_after_rejoining() {
    let mut s = RoomSync::default();
    let (_, t) = fetch(&s.joined("dev"), "dev");
    s.page("dev", t, Page::Latest, msgs("dev", [1]), false);
    let lag = s.lagged("dev");
    assert_eq!(lag[0], resubscribe("dev"));
    let (page, t_old) = fetch(&lag, "dev");
    assert_eq!(page, Page::After(1));
    assert_eq!(s.left("dev"), vec![Step::Left { room: "dev".into() }]);
    let (page, t_new) = fetch(&s.joined("dev"), "dev");
    assert_eq!(page, Page::Latest);

    let mut all = s.page("dev", t_old, Page::After(1), msgs("dev", [2]), false);
    assert!(
        !all.iter().any(|s| matches!(s, Step::Deliver(_))),
        "delivered into a room the application was told it left: {all:#?}"
    );
    all.extend(s.page("dev", t_new, Page::Latest, msgs("dev", [1, 2]), false));
    assert_eq!(shown(&all, "dev"), vec![1, 2], "{all:#?}");
}

/// A full queue dropped both the `Presence` that tells of a room joined on
/// another device and that room's first message, so the first the client
/// heard of the room was `Lagged`. PROTOCOL §12 resumes it (`Resume`, then
/// history); `RoomSync::lagged` ignored rooms it did not know, so the
/// session stayed lagged there and the room was not shown until the next
/// login. (Fuzz input: Connect, Handle, Join r1 with presence dropped,
/// Commit r1 lagged.)
#[test]
fn lagged_for_a_room_not_yet_known_catches_it_up() {
    let mut s = RoomSync::default();
    s.logged_in();
    let (_, t) = fetch(&s.room_list(&[info("lobby")]), "lobby");
    s.page("lobby", t, Page::Latest, vec![], false);

    let steps = s.lagged("dev");
    assert!(
        steps.contains(&resubscribe("dev")),
        "no Resume for dev: {steps:?}"
    );
    let (_, t) = fetch(&steps, "dev");
    let steps = s.page("dev", t, Page::Latest, msgs("dev", [1]), false);
    assert_eq!(shown(&steps, "dev"), vec![1], "{steps:#?}");
}

/// The room list answers a `ListRooms` sent at login and travels on its own
/// stream; a room joined on another device after the relay read the list
/// can be announced (`Presence`) before the list arrives. That list is no
/// evidence that the user left: `room_list` reported `Left`, forgot the
/// room, and with a lag under way its missed messages were never paged.
/// (Fuzz input: Connect, Handle ListRooms, Join r1, Commit r1 lagged, ...)
#[test]
fn a_room_list_older_than_a_join_does_not_leave_the_room() {
    let mut s = RoomSync::default();
    s.logged_in(); // ListRooms sent; the relay reads ["lobby"]
    let (_, t) = fetch(&s.joined("dev"), "dev"); // Presence: joined since
    s.lagged("dev");
    let steps = s.room_list(&[info("lobby")]);
    assert!(
        !steps.contains(&Step::Left { room: "dev".into() }),
        "dev left on a stale room list: {steps:?}"
    );
    let steps = s.page("dev", t, Page::Latest, msgs("dev", [1]), false);
    assert_eq!(joined_count(&steps, "dev"), 1, "{steps:#?}");
}
