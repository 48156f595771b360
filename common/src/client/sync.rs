//! Exactly-once, in-order delivery per room across reconnects and lags,
//! without I/O: fed what the relay said, it says what to deliver and which
//! history pages to ask for.
//!
//! Per room it keeps the highest sequence delivered. While a room catches
//! up from history its live messages are held back; when the history ends
//! they are released, dropping what history already delivered. This works
//! because the relay subscribes a session before it answers anything, so a
//! message is either in the pages or arrives live (or both).
//!
//! Every page asked for carries a token, and a room accepts only the page
//! it is waiting for: pages travel on streams of their own, so an answer to
//! a request that was since superseded (a second lag, a leave and rejoin, a
//! room list that crossed a join) can arrive late and must not count.

use std::collections::{HashMap, HashSet};

use crate::frame::{Message, Page, RoomInfo, Seq};
use crate::limits::{DEFAULT_PAGE, MAX_PAGE};

/// Names the page request a room is waiting for.
pub type Token = u64;

/// What the session must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Hand a new message to the application.
    Deliver(Message),
    /// The user is in a room the application has not been told of: here are
    /// its latest messages.
    Joined {
        room: String,
        recent: Vec<Message>,
        more: bool,
    },
    /// The user is no longer in the room.
    Left { room: String },
    /// Ask for this page of the room's history; hand the answer back to
    /// [`RoomSync::page`] with the token.
    Fetch {
        room: String,
        page: Page,
        limit: u16,
        token: Token,
    },
    /// Resubscribe (`Resume`): the room lagged. A `Fetch` follows, now or
    /// when the catch-up under way ends.
    Resubscribe { room: String },
}

#[derive(Debug, Default)]
struct Room {
    last: Seq,
    /// Live messages held back while history catches up; `None` when live.
    held: Option<Vec<Message>>,
    /// Never synced: the application has not seen the room yet.
    fresh: bool,
    /// Lagged again during a catch-up: the pages under way may predate the
    /// new resubscription, so one more pass is needed before releasing.
    relagged: bool,
    /// The page request this room is waiting for, if any.
    waiting: Option<Token>,
    /// Known before the latest login: the next room list decides whether
    /// the user is still in it. Rooms heard of since are newer than the list.
    carried: bool,
}

/// Sync state of every room of the session.
#[derive(Debug, Default)]
pub struct RoomSync {
    rooms: HashMap<String, Room>,
    next_token: Token,
}

impl RoomSync {
    fn fetch(&mut self, room: &str, page: Page) -> Step {
        self.next_token += 1;
        let token = self.next_token;
        if let Some(r) = self.rooms.get_mut(room) {
            r.waiting = Some(token);
        }
        let limit = if page == Page::Latest {
            DEFAULT_PAGE
        } else {
            MAX_PAGE
        };
        Step::Fetch {
            room: room.to_owned(),
            page,
            limit,
            token,
        }
    }

    /// Starts catching up a room the application has not seen: hold live
    /// messages and ask for the newest page.
    fn start_fresh(&mut self, room: &str, held: Vec<Message>) -> Step {
        self.rooms.insert(
            room.to_owned(),
            Room {
                held: Some(held),
                fresh: true,
                ..Room::default()
            },
        );
        self.fetch(room, Page::Latest)
    }

    /// The highest sequence delivered in a room.
    pub fn last_seen(&self, room: &str) -> Option<Seq> {
        self.rooms.get(room).map(|r| r.last)
    }

    /// The rooms known, in no order.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    /// A (re)login happened: hold every room's live messages until the room
    /// list says how to catch each up. Pages asked for on the old
    /// connection will never come.
    pub fn logged_in(&mut self) {
        for room in self.rooms.values_mut() {
            room.held = Some(Vec::new());
            room.relagged = false;
            room.waiting = None;
            room.carried = true;
        }
    }

    /// The relay's list of the user's rooms after a login.
    pub fn room_list(&mut self, joined: &[RoomInfo]) -> Vec<Step> {
        let mut steps = Vec::new();
        let names: HashSet<&str> = joined.iter().map(|r| r.name.as_str()).collect();
        // Only rooms known before the login can be judged by the list: one
        // joined since may be newer than the list the relay read.
        let gone: Vec<String> = self
            .rooms
            .iter()
            .filter(|(n, r)| r.carried && !names.contains(n.as_str()))
            .map(|(n, _)| n.clone())
            .collect();
        for room in gone {
            steps.extend(self.left(&room));
        }
        for info in joined {
            let Some(room) = self.rooms.get_mut(&info.name) else {
                steps.push(self.start_fresh(&info.name, Vec::new()));
                continue;
            };
            room.carried = false;
            if room.waiting.is_some() {
                // A catch-up is already under way for it.
                continue;
            }
            room.held.get_or_insert_with(Vec::new);
            let page = if room.fresh {
                Page::Latest
            } else {
                Page::After(room.last)
            };
            steps.push(self.fetch(&info.name, page));
        }
        steps
    }

    /// The user joined a room (here or on another device).
    pub fn joined(&mut self, room: &str) -> Vec<Step> {
        if self.rooms.contains_key(room) {
            return Vec::new();
        }
        vec![self.start_fresh(room, Vec::new())]
    }

    /// The user left a room.
    pub fn left(&mut self, room: &str) -> Vec<Step> {
        match self.rooms.remove(room) {
            Some(_) => vec![Step::Left {
                room: room.to_owned(),
            }],
            None => Vec::new(),
        }
    }

    /// The relay stopped sending a room's live messages to this session.
    pub fn lagged(&mut self, room: &str) -> Vec<Step> {
        let resubscribe = Step::Resubscribe {
            room: room.to_owned(),
        };
        let Some(r) = self.rooms.get_mut(room) else {
            // A room whose first news (its join, its first message) was
            // lost to the full queue: catch it up from its newest page.
            return vec![resubscribe, self.start_fresh(room, Vec::new())];
        };
        if r.held.is_some() {
            r.relagged = true;
            return vec![resubscribe];
        }
        r.held = Some(Vec::new());
        let last = r.last;
        // Sent after the Resume on the same stream, so the relay reads the
        // history only once the session is subscribed again.
        vec![resubscribe, self.fetch(room, Page::After(last))]
    }

    /// A live message.
    pub fn live(&mut self, msg: Message) -> Vec<Step> {
        let Some(room) = self.rooms.get_mut(&msg.room) else {
            // A room we were added to without hearing of it yet.
            let name = msg.room.clone();
            return vec![self.start_fresh(&name, vec![msg])];
        };
        match &mut room.held {
            Some(held) => {
                held.push(msg);
                Vec::new()
            }
            None if msg.seq > room.last => {
                room.last = msg.seq;
                vec![Step::Deliver(msg)]
            }
            None => Vec::new(),
        }
    }

    /// The answer to a [`Step::Fetch`]. Answers the room is no longer
    /// waiting for are ignored.
    pub fn page(
        &mut self,
        room_name: &str,
        token: Token,
        page: Page,
        messages: Vec<Message>,
        more: bool,
    ) -> Vec<Step> {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return Vec::new();
        };
        if room.waiting != Some(token) || room.held.is_none() {
            return Vec::new();
        }
        room.waiting = None;
        let mut steps = Vec::new();
        match page {
            Page::Latest => {
                if let Some(top) = messages.last() {
                    room.last = room.last.max(top.seq);
                }
                room.fresh = false;
                steps.push(Step::Joined {
                    room: room_name.to_owned(),
                    recent: messages,
                    more,
                });
            }
            Page::After(_) => {
                for msg in messages {
                    if msg.seq > room.last {
                        room.last = msg.seq;
                        steps.push(Step::Deliver(msg));
                    }
                }
                if more {
                    let last = room.last;
                    steps.push(self.fetch(room_name, Page::After(last)));
                    return steps;
                }
            }
            Page::Before(_) => return steps,
        }
        if room.relagged {
            room.relagged = false;
            let last = room.last;
            steps.push(self.fetch(room_name, Page::After(last)));
            return steps;
        }
        let mut held = room.held.take().unwrap_or_default();
        held.sort_by_key(|m| m.seq);
        for msg in held {
            if msg.seq > room.last {
                room.last = msg.seq;
                steps.push(Step::Deliver(msg));
            }
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::RoomKind;

    fn m(room: &str, seq: Seq) -> Message {
        Message {
            room: room.into(),
            seq,
            id: [0; 16],
            ts: 0,
            from: "x".into(),
            body: format!("{seq}"),
        }
    }
    fn ms(room: &str, seqs: impl IntoIterator<Item = Seq>) -> Vec<Message> {
        seqs.into_iter().map(|s| m(room, s)).collect()
    }
    fn info(name: &str) -> RoomInfo {
        RoomInfo {
            name: name.into(),
            kind: RoomKind::Public,
            members: 1,
            latest: 0,
            topic: String::new(),
        }
    }
    fn delivered(steps: &[Step]) -> Vec<Seq> {
        steps
            .iter()
            .filter_map(|s| {
                if let Step::Deliver(m) = s {
                    Some(m.seq)
                } else {
                    None
                }
            })
            .collect()
    }
    /// What the application is shown of a room: `Joined` pages and deliveries.
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
    /// The page and token of the fetch for `room` among `steps`.
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

    #[test]
    fn first_login_shows_latest_then_live_without_doubles() {
        let mut s = RoomSync::default();
        s.logged_in();
        let steps = s.room_list(&[info("lobby")]);
        let (page, t) = fetch(&steps, "lobby");
        assert_eq!(page, Page::Latest);
        // Live messages race the page: 5 is in both, 6 only live.
        assert!(s.live(m("lobby", 5)).is_empty());
        assert!(s.live(m("lobby", 6)).is_empty());
        let steps = s.page("lobby", t, Page::Latest, ms("lobby", [4, 5]), true);
        assert!(matches!(&steps[0], Step::Joined { recent, more: true, .. } if recent.len() == 2));
        assert_eq!(delivered(&steps), vec![6]);
        assert_eq!(delivered(&s.live(m("lobby", 7))), vec![7]);
        assert!(s.live(m("lobby", 7)).is_empty(), "a repeat is dropped");
        assert_eq!(s.last_seen("lobby"), Some(7));
    }

    #[test]
    fn reconnect_pages_the_gap_then_releases_held_messages() {
        let mut s = RoomSync::default();
        s.logged_in();
        let (_, t) = fetch(&s.room_list(&[info("lobby")]), "lobby");
        s.page("lobby", t, Page::Latest, ms("lobby", [3]), false);
        // Connection lost; messages 4..=9 committed meanwhile.
        s.logged_in();
        assert!(s.live(m("lobby", 9)).is_empty());
        let (page, t) = fetch(&s.room_list(&[info("lobby")]), "lobby");
        assert_eq!(page, Page::After(3));
        let steps = s.page("lobby", t, Page::After(3), ms("lobby", [4, 5]), true);
        assert_eq!(delivered(&steps), vec![4, 5]);
        let (page, t) = fetch(&steps, "lobby");
        assert_eq!(page, Page::After(5));
        assert!(s.live(m("lobby", 10)).is_empty(), "still held");
        let steps = s.page("lobby", t, Page::After(5), ms("lobby", [7, 9]), false);
        assert_eq!(delivered(&steps), vec![7, 9, 10]);
    }

    #[test]
    fn rooms_gone_from_the_list_are_left_and_new_ones_joined() {
        let mut s = RoomSync::default();
        let (_, t) = fetch(&s.joined("dev"), "dev");
        s.page("dev", t, Page::Latest, vec![], false);
        s.logged_in();
        let steps = s.room_list(&[info("ops")]);
        assert!(steps.contains(&Step::Left { room: "dev".into() }));
        assert_eq!(fetch(&steps, "ops").0, Page::Latest);
    }

    #[test]
    fn lag_resumes_from_the_last_delivered() {
        let mut s = RoomSync::default();
        let (_, t) = fetch(&s.joined("r"), "r");
        s.page("r", t, Page::Latest, ms("r", [1]), false);
        assert_eq!(delivered(&s.live(m("r", 2))), vec![2]);
        let steps = s.lagged("r");
        assert_eq!(steps[0], Step::Resubscribe { room: "r".into() });
        let (page, t) = fetch(&steps, "r");
        assert_eq!(page, Page::After(2));
        assert!(s.live(m("r", 8)).is_empty());
        let steps = s.page("r", t, Page::After(2), ms("r", [3, 8]), false);
        assert_eq!(delivered(&steps), vec![3, 8]);
    }

    #[test]
    fn lagging_again_during_catch_up_takes_one_more_pass() {
        let mut s = RoomSync::default();
        let (_, t) = fetch(&s.joined("r"), "r");
        s.page("r", t, Page::Latest, ms("r", [1]), false);
        let (_, t) = fetch(&s.lagged("r"), "r");
        // Lagged again before the first pass ended: 6 and 7 were dropped
        // after that pass's page was read.
        assert_eq!(s.lagged("r"), vec![Step::Resubscribe { room: "r".into() }]);
        assert!(s.live(m("r", 5)).is_empty());
        let steps = s.page("r", t, Page::After(1), ms("r", [2, 3]), false);
        assert_eq!(
            delivered(&steps),
            vec![2, 3],
            "nothing held is released yet"
        );
        let (page, t) = fetch(&steps, "r");
        assert_eq!(page, Page::After(3));
        assert!(s.live(m("r", 8)).is_empty());
        let steps = s.page("r", t, Page::After(3), ms("r", [4, 5, 6, 7]), false);
        assert_eq!(delivered(&steps), vec![4, 5, 6, 7, 8]);
    }

    #[test]
    fn a_message_for_an_unknown_room_fetches_it() {
        let mut s = RoomSync::default();
        let steps = s.live(m("@a+b", 1));
        let (page, t) = fetch(&steps, "@a+b");
        assert_eq!(page, Page::Latest);
        let steps = s.page("@a+b", t, Page::Latest, ms("@a+b", [1]), false);
        assert!(
            matches!(&steps[..], [Step::Joined { .. }]),
            "1 came with the page, not twice"
        );
    }

    // Found by the room_sync fuzz target (fuzz/): answers to superseded
    // requests arrive late on their own streams.

    #[test]
    fn a_second_request_for_the_same_room_is_not_made_while_one_is_under_way() {
        let mut s = RoomSync::default();
        s.logged_in();
        let (_, t) = fetch(&s.live(m("lobby", 1)), "lobby");
        assert_eq!(
            s.lagged("lobby"),
            vec![Step::Resubscribe {
                room: "lobby".into()
            }]
        );
        assert!(
            s.room_list(&[info("lobby")]).is_empty(),
            "the catch-up under way covers it"
        );
        let mut all = s.page("lobby", t, Page::Latest, ms("lobby", [1, 3]), false);
        let (page, t) = fetch(&all, "lobby");
        assert_eq!(page, Page::After(3), "one more pass for the lag");
        all.extend(s.page("lobby", t, Page::After(3), ms("lobby", [4]), false));
        assert_eq!(
            all.iter()
                .filter(|s| matches!(s, Step::Joined { .. }))
                .count(),
            1
        );
        assert_eq!(shown(&all, "lobby"), vec![1, 3, 4]);
    }

    #[test]
    fn a_stale_page_does_not_end_the_catch_up_early() {
        let mut s = RoomSync::default();
        s.logged_in();
        let (_, first) = fetch(&s.live(m("lobby", 1)), "lobby");
        s.lagged("lobby"); // 2..=60 were not sent
        let mut all = s.page("lobby", first, Page::Latest, ms("lobby", [1]), false);
        let (page, t) = fetch(&all, "lobby");
        assert_eq!(page, Page::After(1));
        // A late answer to an older request for the room changes nothing.
        assert!(s
            .page("lobby", first, Page::Latest, ms("lobby", 11..=60), true)
            .is_empty());
        all.extend(s.page("lobby", t, Page::After(1), ms("lobby", 2..=60), false));
        assert_eq!(shown(&all, "lobby"), (1..=60).collect::<Vec<_>>());
    }

    #[test]
    fn a_page_from_before_leaving_is_not_delivered_after_rejoining() {
        let mut s = RoomSync::default();
        let (_, t) = fetch(&s.joined("dev"), "dev");
        s.page("dev", t, Page::Latest, ms("dev", [1]), false);
        let (_, old) = fetch(&s.lagged("dev"), "dev");
        assert_eq!(s.left("dev"), vec![Step::Left { room: "dev".into() }]);
        let (_, new) = fetch(&s.joined("dev"), "dev");
        assert!(
            s.page("dev", old, Page::After(1), ms("dev", [2]), false)
                .is_empty(),
            "stale"
        );
        let all = s.page("dev", new, Page::Latest, ms("dev", [1, 2]), false);
        assert_eq!(shown(&all, "dev"), vec![1, 2]);
    }

    #[test]
    fn lagged_for_a_room_not_yet_known_catches_it_up() {
        let mut s = RoomSync::default();
        s.logged_in();
        let (_, t) = fetch(&s.room_list(&[info("lobby")]), "lobby");
        s.page("lobby", t, Page::Latest, vec![], false);
        let steps = s.lagged("dev");
        assert_eq!(steps[0], Step::Resubscribe { room: "dev".into() });
        let (page, t) = fetch(&steps, "dev");
        assert_eq!(page, Page::Latest);
        let steps = s.page("dev", t, Page::Latest, ms("dev", [1, 2]), false);
        assert_eq!(shown(&steps, "dev"), vec![1, 2]);
    }

    #[test]
    fn a_room_list_older_than_a_join_does_not_leave_the_room() {
        let mut s = RoomSync::default();
        s.logged_in(); // ListRooms sent; the relay reads ["lobby"]
        let (_, t) = fetch(&s.joined("dev"), "dev"); // joined since
        s.lagged("dev");
        let steps = s.room_list(&[info("lobby")]);
        assert!(
            !steps.contains(&Step::Left { room: "dev".into() }),
            "{steps:?}"
        );
        let mut all = s.page("dev", t, Page::Latest, ms("dev", [1]), false);
        let (_, t) = fetch(&all, "dev");
        all.extend(s.page("dev", t, Page::After(1), vec![], false));
        assert_eq!(
            all.iter()
                .filter(|s| matches!(s, Step::Joined { .. }))
                .count(),
            1
        );
        assert_eq!(shown(&all, "dev"), vec![1]);
    }

    #[test]
    fn a_room_kept_across_a_login_is_still_left_when_the_list_omits_it() {
        let mut s = RoomSync::default();
        let (_, t) = fetch(&s.joined("dev"), "dev");
        s.page("dev", t, Page::Latest, vec![], false);
        s.logged_in();
        s.logged_in(); // a second reconnect before the list came
        assert!(s
            .room_list(&[info("lobby")])
            .contains(&Step::Left { room: "dev".into() }));
    }
}
