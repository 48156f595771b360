//! Exactly-once, in-order delivery per room across reconnects and lags,
//! without I/O: fed what the relay said, it says what to deliver and which
//! history pages to ask for.
//!
//! Per room it keeps the highest sequence delivered. While a room catches
//! up from history its live messages are held back; when the history ends
//! they are released, dropping what history already delivered. This works
//! because the relay subscribes a session before it answers anything, so a
//! message is either in the pages or arrives live (or both).

use std::collections::{HashMap, HashSet};

use crate::frame::{Message, Page, RoomInfo, Seq};
use crate::limits::{DEFAULT_PAGE, MAX_PAGE};

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
    /// Ask for this page of the room's history.
    Fetch {
        room: String,
        page: Page,
        limit: u16,
    },
    /// Resubscribe (`Join`): the room lagged. A `Fetch` follows, now or when
    /// the catch-up under way ends.
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
}

impl Room {
    fn fresh(held: Vec<Message>) -> Room {
        Room {
            held: Some(held),
            fresh: true,
            ..Room::default()
        }
    }
}

/// Sync state of every room of the session.
#[derive(Debug, Default)]
pub struct RoomSync {
    rooms: HashMap<String, Room>,
}

fn fetch_after(room: &str, last: Seq) -> Step {
    Step::Fetch {
        room: room.to_owned(),
        page: Page::After(last),
        limit: MAX_PAGE,
    }
}

fn fetch_latest(room: &str) -> Step {
    Step::Fetch {
        room: room.to_owned(),
        page: Page::Latest,
        limit: DEFAULT_PAGE,
    }
}

impl RoomSync {
    /// The highest sequence delivered in a room.
    pub fn last_seen(&self, room: &str) -> Option<Seq> {
        self.rooms.get(room).map(|r| r.last)
    }

    /// The rooms known, in no order.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    /// A (re)login happened: hold every room's live messages until the room
    /// list says how to catch each up.
    pub fn logged_in(&mut self) {
        for room in self.rooms.values_mut() {
            room.held = Some(Vec::new());
            room.relagged = false;
        }
    }

    /// The relay's list of the user's rooms after a login.
    pub fn room_list(&mut self, joined: &[RoomInfo]) -> Vec<Step> {
        let mut steps = Vec::new();
        let names: HashSet<&str> = joined.iter().map(|r| r.name.as_str()).collect();
        let gone: Vec<String> = self
            .rooms
            .keys()
            .filter(|r| !names.contains(r.as_str()))
            .cloned()
            .collect();
        for room in gone {
            steps.extend(self.left(&room));
        }
        for info in joined {
            let room = self
                .rooms
                .entry(info.name.clone())
                .or_insert_with(|| Room::fresh(Vec::new()));
            room.held.get_or_insert_with(Vec::new);
            steps.push(if room.fresh {
                fetch_latest(&info.name)
            } else {
                fetch_after(&info.name, room.last)
            });
        }
        steps
    }

    /// The user joined a room (here or on another device).
    pub fn joined(&mut self, room: &str) -> Vec<Step> {
        if self.rooms.contains_key(room) {
            return Vec::new();
        }
        self.rooms.insert(room.to_owned(), Room::fresh(Vec::new()));
        vec![fetch_latest(room)]
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
        let Some(r) = self.rooms.get_mut(room) else {
            return Vec::new();
        };
        let resubscribe = Step::Resubscribe {
            room: room.to_owned(),
        };
        if r.held.is_some() {
            r.relagged = true;
            return vec![resubscribe];
        }
        r.held = Some(Vec::new());
        // Sent after the Join on the same stream, so the relay reads the
        // history only once the session is subscribed again.
        vec![resubscribe, fetch_after(room, r.last)]
    }

    /// A live message.
    pub fn live(&mut self, msg: Message) -> Vec<Step> {
        let Some(room) = self.rooms.get_mut(&msg.room) else {
            // A room we were added to without hearing of it yet.
            let name = msg.room.clone();
            self.rooms.insert(name.clone(), Room::fresh(vec![msg]));
            return vec![fetch_latest(&name)];
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

    /// A history page this type asked for.
    pub fn page(
        &mut self,
        room_name: &str,
        page: Page,
        messages: Vec<Message>,
        more: bool,
    ) -> Vec<Step> {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return Vec::new();
        };
        if room.held.is_none() {
            return Vec::new();
        }
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
                    steps.push(fetch_after(room_name, room.last));
                    return steps;
                }
            }
            Page::Before(_) => return steps,
        }
        if room.relagged {
            room.relagged = false;
            steps.push(fetch_after(room_name, room.last));
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
    fn info(name: &str) -> RoomInfo {
        RoomInfo {
            name: name.into(),
            kind: RoomKind::Public,
            members: 1,
            latest: 0,
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

    #[test]
    fn first_login_shows_latest_then_live_without_doubles() {
        let mut s = RoomSync::default();
        s.logged_in();
        let steps = s.room_list(&[info("lobby")]);
        assert_eq!(
            steps,
            vec![Step::Fetch {
                room: "lobby".into(),
                page: Page::Latest,
                limit: DEFAULT_PAGE
            }]
        );
        // Live messages race the page: 5 is in both, 6 only live.
        assert!(s.live(m("lobby", 5)).is_empty());
        assert!(s.live(m("lobby", 6)).is_empty());
        let steps = s.page(
            "lobby",
            Page::Latest,
            vec![m("lobby", 4), m("lobby", 5)],
            true,
        );
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
        s.room_list(&[info("lobby")]);
        s.page("lobby", Page::Latest, vec![m("lobby", 3)], false);
        // Connection lost; messages 4..=9 committed meanwhile.
        s.logged_in();
        assert!(s.live(m("lobby", 9)).is_empty());
        let steps = s.room_list(&[info("lobby")]);
        assert_eq!(
            steps,
            vec![Step::Fetch {
                room: "lobby".into(),
                page: Page::After(3),
                limit: MAX_PAGE
            }]
        );
        let steps = s.page(
            "lobby",
            Page::After(3),
            vec![m("lobby", 4), m("lobby", 5)],
            true,
        );
        assert_eq!(delivered(&steps), vec![4, 5]);
        assert_eq!(
            steps.last(),
            Some(&Step::Fetch {
                room: "lobby".into(),
                page: Page::After(5),
                limit: MAX_PAGE
            })
        );
        assert!(s.live(m("lobby", 10)).is_empty(), "still held");
        let steps = s.page(
            "lobby",
            Page::After(5),
            vec![m("lobby", 7), m("lobby", 9)],
            false,
        );
        assert_eq!(delivered(&steps), vec![7, 9, 10]);
    }

    #[test]
    fn rooms_gone_from_the_list_are_left_and_new_ones_joined() {
        let mut s = RoomSync::default();
        s.joined("dev");
        s.page("dev", Page::Latest, vec![], false);
        s.logged_in();
        let steps = s.room_list(&[info("ops")]);
        assert!(steps.contains(&Step::Left { room: "dev".into() }));
        assert!(steps.contains(&Step::Fetch {
            room: "ops".into(),
            page: Page::Latest,
            limit: DEFAULT_PAGE
        }));
    }

    #[test]
    fn lag_rejoins_from_the_last_delivered() {
        let mut s = RoomSync::default();
        s.joined("r");
        s.page("r", Page::Latest, vec![m("r", 1)], false);
        assert_eq!(delivered(&s.live(m("r", 2))), vec![2]);
        assert_eq!(
            s.lagged("r"),
            vec![Step::Resubscribe { room: "r".into() }, fetch_after("r", 2)]
        );
        assert!(s.live(m("r", 8)).is_empty());
        let steps = s.page("r", Page::After(2), vec![m("r", 3), m("r", 8)], false);
        assert_eq!(delivered(&steps), vec![3, 8]);
    }

    #[test]
    fn lagging_again_during_catch_up_takes_one_more_pass() {
        let mut s = RoomSync::default();
        s.joined("r");
        s.page("r", Page::Latest, vec![m("r", 1)], false);
        s.lagged("r");
        // Lagged again before the first pass ended: 6 and 7 were dropped
        // after that pass's page was read.
        assert_eq!(s.lagged("r"), vec![Step::Resubscribe { room: "r".into() }]);
        assert!(s.live(m("r", 5)).is_empty());
        let steps = s.page("r", Page::After(1), vec![m("r", 2), m("r", 3)], false);
        assert_eq!(
            delivered(&steps),
            vec![2, 3],
            "nothing held is released yet"
        );
        assert_eq!(steps.last(), Some(&fetch_after("r", 3)));
        assert!(s.live(m("r", 8)).is_empty());
        let steps = s.page(
            "r",
            Page::After(3),
            vec![m("r", 4), m("r", 5), m("r", 6), m("r", 7)],
            false,
        );
        assert_eq!(delivered(&steps), vec![4, 5, 6, 7, 8]);
    }

    #[test]
    fn a_message_for_an_unknown_room_fetches_it() {
        let mut s = RoomSync::default();
        let steps = s.live(m("@a+b", 1));
        assert_eq!(
            steps,
            vec![Step::Fetch {
                room: "@a+b".into(),
                page: Page::Latest,
                limit: DEFAULT_PAGE
            }]
        );
        let steps = s.page("@a+b", Page::Latest, vec![m("@a+b", 1)], false);
        assert!(
            matches!(&steps[..], [Step::Joined { .. }]),
            "1 came with the page, not twice"
        );
    }
}
