//! A channel's topic: what each room is for, as the relay says it (at
//! login, in the reply to a join, and live as members change it), the
//! notice a change leaves in the conversation, and the dialog that sets
//! it.

use std::collections::HashMap;

use common::frame::RoomInfo;
use common::limits::check_topic;
use common::names;

use super::{view, Chat, Message, Outcome};
use crate::connection::{Command, RoomList};

/// What the window knows of its rooms' topics.
#[derive(Debug, Clone, Default)]
pub struct Topics {
    /// As the relay last said them; empty for none.
    by_room: HashMap<String, String>,
    /// The relay listed the user's rooms (at login): a channel joined
    /// since without a topic known was joined on another device, and the
    /// room list is asked for it. Before, the list is on its way.
    listed: bool,
}

/// The dialog that sets the topic of a room.
#[derive(Debug, Clone, Default)]
pub struct TopicForm {
    /// The room the dialog was opened for.
    pub room: String,
    /// The topic as typed, at first the room's own.
    pub text: String,
    /// The relay has not answered yet.
    pub saving: bool,
    /// Why the last save failed, with what to do.
    pub error: Option<String>,
}

impl Chat {
    /// The topic of `room`; empty for none, or not known yet.
    pub fn topic(&self, room: &str) -> &str {
        self.topics.by_room.get(room).map_or("", String::as_str)
    }

    /// Whether `room` can have a topic: a channel, not a DM.
    pub fn has_topic(room: &str) -> bool {
        names::dm_users(room).is_none()
    }

    pub(super) fn topic_form(&mut self, message: Message) -> Outcome {
        match message {
            Message::TopicOpen => {
                if !Chat::has_topic(&self.current) {
                    return Outcome::default();
                }
                self.topic_dialog = Some(TopicForm {
                    room: self.current.clone(),
                    text: self.topic(&self.current).to_owned(),
                    ..TopicForm::default()
                });
                Outcome::focus(view::TOPIC_INPUT)
            }
            Message::TopicInput(text) => {
                if let Some(form) = &mut self.topic_dialog {
                    if !form.saving {
                        form.text = text;
                        form.error = None;
                    }
                }
                Outcome::default()
            }
            Message::TopicSave => self.save_topic(),
            Message::TopicClose => {
                self.topic_dialog = None;
                Outcome::focus(view::COMPOSER)
            }
            _ => Outcome::default(),
        }
    }

    fn save_topic(&mut self) -> Outcome {
        let Some(form) = &mut self.topic_dialog else {
            return Outcome::default();
        };
        if form.saving {
            return Outcome::default();
        }
        // Said in the dialog at once: the relay would refuse it the same.
        if let Err(why) = check_topic(&form.text) {
            form.error = Some(format!("{}.", capitalised(&why)));
            return Outcome::default();
        }
        let unchanged = self
            .topics
            .by_room
            .get(&form.room)
            .map_or("", String::as_str)
            == form.text;
        if unchanged {
            self.topic_dialog = None;
            return Outcome::focus(view::COMPOSER);
        }
        form.saving = true;
        form.error = None;
        Outcome::command(Command::SetTopic {
            room: form.room.clone(),
            topic: form.text.clone(),
        })
    }

    /// The relay answered a save: the dialog closes (the topic itself
    /// comes as every member's does, with [`Chat::topic_changed`]), or
    /// says why not and stays.
    pub(super) fn topic_set(&mut self, room: &str, result: Result<(), String>) -> Outcome {
        match (&mut self.topic_dialog, result) {
            (Some(form), Ok(())) if form.room == room => {
                self.topic_dialog = None;
                Outcome::focus(view::COMPOSER)
            }
            (Some(form), Err(why)) if form.room == room => {
                form.saving = false;
                form.error = Some(why);
                Outcome::default()
            }
            (_, Ok(())) => Outcome::default(),
            // The dialog was closed meanwhile: the notice says it.
            (_, Err(why)) => {
                self.notice = Some(why);
                Outcome::default()
            }
        }
    }

    /// A member set (or cleared) a room's topic: the header shows it, and
    /// the conversation says who did, where it happened in its order.
    pub(super) fn topic_changed(&mut self, room: String, topic: String, by: String) -> Outcome {
        // Drawn like a message: nothing in it may turn the header around.
        let topic = safe(topic);
        let mut out = Outcome::default();
        if let Some(r) = self.rooms.get_mut(&room) {
            // A reader far back sees it in the header; the line would land
            // among the newer lines let go, out of order.
            if !r.more_after {
                r.topic_notice(chrono::Utc::now().timestamp_millis(), &by, &topic);
                out.follow = room == self.current && r.at_bottom;
                if room == self.current {
                    r.hold_view();
                }
            }
        }
        self.topics.by_room.insert(room, topic);
        out
    }

    /// The relay listed the user's rooms (at login): their topics replace
    /// what was known.
    pub(super) fn topics_listed(&mut self, rooms: Vec<RoomInfo>) {
        self.topics = Topics {
            by_room: rooms.into_iter().map(|r| (r.name, safe(r.topic))).collect(),
            listed: true,
        };
    }

    /// A room the window is told it is in, without its topic (joined on
    /// another device): the relay's room list has it.
    pub(super) fn topic_wanted(&self, room: &str) -> Option<Command> {
        let unknown = self.topics.listed && !self.topics.by_room.contains_key(room);
        (unknown && Chat::has_topic(room)).then_some(Command::ListRooms)
    }

    /// A room list the relay sent: the topics of rooms not known yet. Known
    /// ones stay, since a change told live may be newer than the list.
    pub(super) fn topics_from_list(&mut self, list: &Result<RoomList, String>) {
        for room in list.iter().flat_map(|l| &l.joined) {
            self.topics
                .by_room
                .entry(room.name.clone())
                .or_insert_with(|| safe(room.topic.clone()));
        }
    }

    /// A room opened (joined, created): its topic as the relay sent it.
    pub(super) fn topic_opened(&mut self, info: &RoomInfo) {
        self.topics
            .by_room
            .insert(info.name.clone(), safe(info.topic.clone()));
    }
}

/// A topic as it may be drawn (see [`shown`](super::shown)).
fn safe(topic: String) -> String {
    match super::shown::shown(&topic) {
        std::borrow::Cow::Owned(safe) => safe,
        std::borrow::Cow::Borrowed(_) => topic,
    }
}

/// "the topic is …" → "The topic is …".
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Event as NetEvent;
    use common::client::Event as SessionEvent;
    use common::frame::RoomKind;

    fn chat() -> Chat {
        Chat::new("alice".into(), "relay".into(), "relay".into())
    }

    fn listed(name: &str, topic: &str) -> RoomInfo {
        RoomInfo {
            name: name.into(),
            kind: RoomKind::Public,
            members: 2,
            latest: 0,
            topic: topic.into(),
        }
    }

    #[test]
    fn the_dialog_sends_a_changed_topic_and_closes_on_an_unchanged_one() {
        let mut c = chat();
        c.on_event(NetEvent::Session(SessionEvent::Rooms(vec![listed(
            "lobby",
            "say hello",
        )])));
        let out = c.update(Message::TopicOpen);
        assert_eq!(out.focus, Some(view::TOPIC_INPUT));
        assert_eq!(
            c.topic_dialog.as_ref().unwrap().text,
            "say hello",
            "prefilled"
        );

        // Unchanged: nothing to ask.
        let out = c.update(Message::TopicSave);
        assert!(out.commands.is_empty() && c.topic_dialog.is_none());

        c.update(Message::TopicOpen);
        c.update(Message::TopicInput("two\nlines".into()));
        let out = c.update(Message::TopicSave);
        assert!(out.commands.is_empty(), "refused before asking");
        let why = c.topic_dialog.as_ref().unwrap().error.clone().unwrap();
        assert!(
            why.starts_with("The topic holds the control character"),
            "{why}"
        );

        c.update(Message::TopicInput("pages, deploys".into()));
        assert_eq!(
            c.topic_dialog.as_ref().unwrap().error,
            None,
            "cleared by typing"
        );
        let out = c.update(Message::TopicSave);
        assert_eq!(
            out.commands,
            [Command::SetTopic {
                room: "lobby".into(),
                topic: "pages, deploys".into()
            }]
        );
        assert!(c.update(Message::TopicSave).commands.is_empty(), "once");
        c.on_event(NetEvent::TopicSet {
            room: "lobby".into(),
            result: Ok(()),
        });
        assert!(c.topic_dialog.is_none());
    }

    #[test]
    fn a_dm_has_no_topic_to_set() {
        let mut c = chat();
        c.rooms.insert("@alice+bob".into(), Default::default());
        c.update(Message::SelectRoom("@alice+bob".into()));
        c.update(Message::TopicOpen);
        assert!(c.topic_dialog.is_none());
    }

    #[test]
    fn a_refused_save_stays_in_the_dialog_or_becomes_the_notice() {
        let mut c = chat();
        c.update(Message::TopicOpen);
        c.update(Message::TopicInput("x".into()));
        c.update(Message::TopicSave);
        let refused = "Could not set the topic of #lobby: wait a moment.".to_owned();
        c.on_event(NetEvent::TopicSet {
            room: "lobby".into(),
            result: Err(refused.clone()),
        });
        let form = c.topic_dialog.as_ref().unwrap();
        assert_eq!((form.saving, form.error.as_ref()), (false, Some(&refused)));
        assert_eq!(c.notice, None);

        c.update(Message::Close);
        assert!(c.topic_dialog.is_none(), "Escape closes it");
        c.on_event(NetEvent::TopicSet {
            room: "lobby".into(),
            result: Err(refused.clone()),
        });
        assert_eq!(c.notice, Some(refused));
    }
}
