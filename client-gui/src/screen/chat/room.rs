//! What the window keeps of one room: its lines in order, unread count,
//! and where the view stands in it.

use common::frame::{Message as ChatMessage, Seq};

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
    /// Presence and other events, at the local time they were seen.
    Notice { ts: i64, text: String },
}

/// One room as shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Room {
    pub lines: Vec<Line>,
    pub unread: u32,
    /// Older messages exist before the first one shown.
    pub more_before: bool,
    pub loading_older: bool,
    /// The view is scrolled to the end, so new lines are followed.
    pub at_bottom: bool,
    /// New lines arrived while scrolled up.
    pub new_below: bool,
}

impl Default for Room {
    fn default() -> Self {
        Room {
            lines: Vec::new(),
            unread: 0,
            more_before: false,
            loading_older: false,
            at_bottom: true,
            new_below: false,
        }
    }
}

impl Room {
    pub(super) fn first_seq(&self) -> Option<Seq> {
        self.lines.iter().find_map(|l| {
            if let Line::Message(m) = l {
                Some(m.seq)
            } else {
                None
            }
        })
    }

    pub(super) fn has_seq(&self, seq: Seq) -> bool {
        self.lines
            .iter()
            .any(|l| matches!(l, Line::Message(m) if m.seq == seq))
    }

    /// Inserts a message in sequence order, before pending lines; false if
    /// it was already there.
    pub(super) fn insert(&mut self, msg: ChatMessage) -> bool {
        if self.has_seq(msg.seq) {
            return false;
        }
        let at = self
            .lines
            .iter()
            .rposition(|l| match l {
                Line::Message(m) => m.seq < msg.seq,
                Line::Notice { .. } => true,
                Line::Pending { .. } => false,
            })
            .map_or(0, |i| i + 1);
        self.lines.insert(at, Line::Message(msg));
        true
    }

    pub(super) fn notice(&mut self, ts: i64, text: String) {
        let at = self
            .lines
            .iter()
            .position(|l| matches!(l, Line::Pending { .. }))
            .unwrap_or(self.lines.len());
        self.lines.insert(at, Line::Notice { ts, text });
    }
}
