//! What the window keeps of one room: a bounded run of its lines in order,
//! unread count, and where the view stands in it.
//!
//! A room on the relay can hold millions of lines; the window keeps at most
//! [`KEEP`] of them. Reading back pages older lines in and, past the bound,
//! lets the newest go (they are paged back in when scrolled to); at the
//! newest line, arriving lines push the oldest out. So memory and the cost
//! of a frame do not grow with the room.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use common::frame::{Message as ChatMessage, Seq};

/// Lines kept per room: several screens of margin on either side of the view.
pub const KEEP: usize = 300;

/// One line of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A stored message.
    Message(ChatMessage),
    /// Sent by this user and not acknowledged yet; `failed` once refused.
    Pending {
        local: u64,
        body: String,
        failed: Option<String>,
    },
    /// People who joined or left the room, folded together while nothing
    /// else happens in between; at the local time of the first.
    Notice {
        id: u64,
        ts: i64,
        joined: Vec<String>,
        left: Vec<String>,
        /// Joined and left again within the notice.
        passed: Vec<String>,
    },
    /// `by` set the room's topic (cleared it, when empty); at the local
    /// time it was told.
    Topic {
        id: u64,
        ts: i64,
        by: String,
        topic: String,
    },
}

/// What identifies a line for as long as it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    Seq(Seq),
    Pending(u64),
    Notice(u64),
}

impl Line {
    pub fn key(&self) -> Key {
        match self {
            Line::Message(m) => Key::Seq(m.seq),
            Line::Pending { local, .. } => Key::Pending(*local),
            // Numbered with the join and leave notices: one kind of key.
            Line::Notice { id, .. } | Line::Topic { id, .. } => Key::Notice(*id),
        }
    }

    fn seq(&self) -> Option<Seq> {
        match self {
            Line::Message(m) => Some(m.seq),
            _ => None,
        }
    }
}

/// Where the conversation's viewport stands, in pixels, from its last
/// scroll report.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scroll {
    /// Distance from the top of the content to the top of the viewport.
    pub from_top: f32,
    /// Distance from the bottom of the viewport to the bottom of the content.
    pub from_bottom: f32,
    pub height: f32,
    pub width: f32,
    /// Height of everything in the conversation.
    pub content: f32,
}

/// Heights of lines as last laid out, at one width. Written while the view
/// is laid out (hence the cell), read by the next view to stand in for the
/// lines it does not lay out.
#[derive(Debug, Default, Clone)]
pub struct Heights {
    width: Cell<f32>,
    known: RefCell<HashMap<Key, f32>>,
}

impl Heights {
    pub fn get(&self, key: Key) -> Option<f32> {
        self.known.borrow().get(&key).copied()
    }

    /// Records a height laid out at `width`; a new width forgets the rest.
    pub fn record(&self, key: Key, width: f32, height: f32) {
        if (self.width.get() - width).abs() > 0.5 {
            self.width.set(width);
            self.known.borrow_mut().clear();
        }
        self.known.borrow_mut().insert(key, height);
    }

    fn forget(&self, key: Key) -> Option<f32> {
        self.known.borrow_mut().remove(&key)
    }

    pub fn len(&self) -> usize {
        self.known.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One room as shown.
#[derive(Debug, Clone)]
pub struct Room {
    pub lines: Vec<Line>,
    pub unread: u32,
    /// Unread lines that mention this user (`@name`).
    pub mentions: u32,
    /// Older messages exist before the first one kept.
    pub more_before: bool,
    pub loading_older: bool,
    /// Newer messages exist after the last one kept (let go while reading
    /// back, or arrived meanwhile).
    pub more_after: bool,
    pub loading_newer: bool,
    /// The view is scrolled to the end, so new lines are followed.
    pub at_bottom: bool,
    /// New lines arrived while scrolled up.
    pub new_below: bool,
    pub scroll: Scroll,
    /// Room left below the last kept line for the newer lines let go, so
    /// that what is on screen stays put.
    pub below: f32,
    pub heights: Heights,
    /// Where the reader stood (distance from the bottom, content height)
    /// when lines were added below them; the next scroll report moves the
    /// view by what the content grew, so what they read stays put.
    pub hold: Option<(f32, f32)>,
    next_notice: u64,
}

impl Default for Room {
    fn default() -> Self {
        Room {
            lines: Vec::new(),
            unread: 0,
            mentions: 0,
            more_before: false,
            loading_older: false,
            more_after: false,
            loading_newer: false,
            at_bottom: true,
            new_below: false,
            scroll: Scroll::default(),
            below: 0.0,
            heights: Heights::default(),
            hold: None,
            next_notice: 1,
        }
    }
}

impl Room {
    pub fn first_seq(&self) -> Option<Seq> {
        self.lines.iter().find_map(Line::seq)
    }

    pub fn last_seq(&self) -> Option<Seq> {
        self.lines.iter().rev().find_map(Line::seq)
    }

    pub(super) fn has_seq(&self, seq: Seq) -> bool {
        self.lines.iter().any(|l| l.seq() == Some(seq))
    }

    /// Whether a message belongs after the kept lines, among those not
    /// kept: then it is not inserted, and is paged in when scrolled to.
    pub(super) fn beyond(&self, seq: Seq) -> bool {
        self.more_after && self.last_seq().is_some_and(|last| seq > last)
    }

    /// Inserts a message in sequence order, before pending lines; false if
    /// it was already there.
    pub(super) fn insert(&mut self, mut msg: ChatMessage) -> bool {
        if self.has_seq(msg.seq) {
            return false;
        }
        // Kept as it is drawn: copied text shows the same escapes.
        if let std::borrow::Cow::Owned(safe) = super::shown::shown(&msg.body) {
            msg.body = safe;
        }
        let at = self
            .lines
            .iter()
            .rposition(|l| match l {
                Line::Message(m) => m.seq < msg.seq,
                Line::Notice { .. } | Line::Topic { .. } => true,
                Line::Pending { .. } => false,
            })
            .map_or(0, |i| i + 1);
        self.lines.insert(at, Line::Message(msg));
        true
    }

    /// Someone joined (or left) the room: folded into the notice just
    /// before, when nothing else was said since.
    pub(super) fn membership(&mut self, ts: i64, user: &str, joined: bool) {
        let at = self
            .lines
            .iter()
            .position(|l| matches!(l, Line::Pending { .. }))
            .unwrap_or(self.lines.len());
        if let Some(Line::Notice {
            id,
            joined: ins,
            left: outs,
            passed,
            ..
        }) = at.checked_sub(1).and_then(|i| self.lines.get_mut(i))
        {
            let take = |list: &mut Vec<String>| {
                let i = list.iter().position(|u| u == user)?;
                Some(list.remove(i))
            };
            if joined {
                // Left and came back: a member as before, nothing to say.
                // Came, went and came again: simply joined.
                if take(outs).is_none() {
                    take(passed);
                    if !ins.iter().any(|u| u == user) {
                        ins.push(user.to_owned());
                    }
                }
            } else if let Some(name) = take(ins) {
                // Said as such: a reader may have seen them arrive.
                passed.push(name);
            } else if !outs.iter().any(|u| u == user) {
                outs.push(user.to_owned());
            }
            let empty = ins.is_empty() && outs.is_empty() && passed.is_empty();
            // Its text changed (or it goes): measure it again.
            self.heights.forget(Key::Notice(*id));
            if empty {
                self.lines.remove(at - 1);
            }
            return;
        }
        let id = self.next_notice;
        self.next_notice += 1;
        let (joined, left) = if joined {
            (vec![user.to_owned()], Vec::new())
        } else {
            (Vec::new(), vec![user.to_owned()])
        };
        self.lines.insert(
            at,
            Line::Notice {
                id,
                ts,
                joined,
                left,
                passed: Vec::new(),
            },
        );
    }

    /// Someone set the topic: said after the last line (before lines
    /// being sent), never folded with another.
    pub(super) fn topic_notice(&mut self, ts: i64, by: &str, topic: &str) {
        let at = self
            .lines
            .iter()
            .position(|l| matches!(l, Line::Pending { .. }))
            .unwrap_or(self.lines.len());
        let id = self.next_notice;
        self.next_notice += 1;
        self.lines.insert(
            at,
            Line::Topic {
                id,
                ts,
                by: by.to_owned(),
                topic: topic.to_owned(),
            },
        );
    }

    /// Lets the oldest lines go while following the newest ones.
    pub(super) fn trim_oldest(&mut self) {
        let excess = self.lines.len().saturating_sub(KEEP);
        if excess == 0 {
            return;
        }
        for line in self.lines.drain(..excess) {
            self.heights.forget(line.key());
        }
        self.more_before = true;
    }

    /// Lets the newest lines go while reading back; the room they took on
    /// screen stays, so the view does not move.
    pub(super) fn trim_newest(&mut self, estimate: impl Fn(&Line) -> f32) {
        let mut excess = self.lines.len().saturating_sub(KEEP);
        // Lines being sent stay: they are the user's own, and few.
        let mut at = self
            .lines
            .iter()
            .position(|l| matches!(l, Line::Pending { .. }))
            .unwrap_or(self.lines.len());
        while excess > 0 && at > 0 {
            at -= 1;
            let line = self.lines.remove(at);
            let height = self
                .heights
                .forget(line.key())
                .unwrap_or_else(|| estimate(&line));
            self.below += height;
            if line.seq().is_some() {
                self.more_after = true;
            }
            excess -= 1;
        }
    }

    /// Newer lines came back in: the room kept for them shrinks.
    pub(super) fn newer_in(&mut self, height: f32, more: bool) {
        self.below = if more {
            (self.below - height).max(0.0)
        } else {
            0.0
        };
        self.more_after = more;
    }

    /// Starts over from the newest page, as when the room is opened.
    pub(super) fn reset_to_latest(&mut self) {
        let pending: Vec<Line> = self
            .lines
            .drain(..)
            .filter(|l| matches!(l, Line::Pending { .. }))
            .collect();
        self.lines = pending;
        *self.heights.known.borrow_mut() = HashMap::new();
        self.more_after = false;
        self.loading_newer = false;
        self.loading_older = true;
        self.below = 0.0;
        self.at_bottom = true;
        self.new_below = false;
        self.hold = None;
    }

    /// Lines are being added below a reader who is not at the bottom: the
    /// conversation is anchored there, so without a correction what they
    /// read would slide up by what was added.
    pub(super) fn hold_view(&mut self) {
        if !self.at_bottom && self.hold.is_none() {
            self.hold = Some((self.scroll.from_bottom, self.scroll.content));
        }
    }
}
