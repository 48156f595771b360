//! The room switcher (Ctrl+K): type part of a room's or a person's name,
//! pick with Up/Down, open with Enter; a name that is none of the user's
//! rooms is joined.

use common::names;

use super::{view, Chat, Message, Outcome};
use crate::connection::Command;

/// The switcher while open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Switcher {
    pub query: String,
    /// Index into [`Chat::switcher_matches`].
    pub selected: usize,
}

impl Chat {
    pub(super) fn switch(&mut self, message: Message) -> Outcome {
        match message {
            Message::ToggleSwitcher => {
                self.panel = None;
                if self.switcher.take().is_some() {
                    return Outcome::focus(view::COMPOSER);
                }
                self.switcher = Some(Switcher::default());
                Outcome::focus(view::SWITCHER)
            }
            Message::SwitcherInput(query) => {
                if let Some(s) = &mut self.switcher {
                    s.query = query;
                    s.selected = 0;
                }
                Outcome::default()
            }
            Message::SwitcherMove(step) => {
                let count = self.switcher_matches().len() as i32;
                if let Some(s) = self.switcher.as_mut().filter(|_| count > 0) {
                    s.selected = (s.selected as i32 + step).rem_euclid(count) as usize;
                }
                Outcome::default()
            }
            Message::SwitcherOpen => {
                let picked = self
                    .switcher
                    .as_ref()
                    .and_then(|s| self.switcher_matches().get(s.selected).cloned());
                match (picked, self.switcher_goes()) {
                    (Some(room), _) => self.select(room),
                    // Nothing of the user's by that name: go in, as the
                    // room box's Join (or a member's name) would.
                    (None, Some(command)) => {
                        self.switcher = None;
                        Outcome::command(command)
                    }
                    (None, None) => Outcome::default(),
                }
            }
            _ => Outcome::default(),
        }
    }

    /// Where Enter goes when no room or DM of the user's matches what was
    /// typed: `@name` opens a conversation with that person, anything
    /// else that can be a room's name joins that room.
    pub fn switcher_goes(&self) -> Option<Command> {
        let query = self.switcher.as_ref()?.query.trim();
        if !self.switcher_matches().is_empty() {
            return None;
        }
        if let Some(user) = query.strip_prefix('@') {
            return (names::check_user(user).is_ok() && !user.eq_ignore_ascii_case(&self.user))
                .then(|| Command::OpenDm(user.to_owned()));
        }
        let room = query.trim_start_matches('#').to_lowercase();
        names::check_room(&room)
            .is_ok()
            .then_some(Command::Join(room))
    }

    /// The rooms and DMs whose shown name holds what was typed, ignoring
    /// case and the `#`/`@`: names that start with it first, then the
    /// rest, each in the sidebar's order.
    pub fn switcher_matches(&self) -> Vec<String> {
        let query = self
            .switcher
            .as_ref()
            .map(|s| s.query.trim().trim_start_matches(['#', '@']).to_lowercase())
            .unwrap_or_default();
        let (starts, contains): (Vec<_>, Vec<_>) = self
            .room_order()
            .into_iter()
            .filter_map(|room| {
                let shown = self.display_name(room);
                let name = shown[1..].to_lowercase();
                name.contains(&query)
                    .then(|| (name.starts_with(&query), room.to_owned()))
            })
            .partition(|(start, _)| *start);
        starts
            .into_iter()
            .chain(contains)
            .map(|(_, room)| room)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Event as NetEvent;
    use crate::screen::chat::{view, Message};
    use common::client::Event as SessionEvent;

    fn chat_with(rooms: &[&str]) -> Chat {
        let mut c = Chat::new(
            "alice".into(),
            "127.0.0.1:4433".into(),
            "127.0.0.1:4433".into(),
        );
        for room in rooms {
            c.on_event(NetEvent::Session(SessionEvent::Joined {
                room: (*room).into(),
                recent: vec![],
                more: false,
            }));
        }
        c
    }

    fn typed(c: &mut Chat, query: &str) {
        c.update(Message::SwitcherInput(query.into()));
    }

    #[test]
    fn matches_are_found_by_any_part_of_the_shown_name() {
        let mut c = chat_with(&["dev", "design", "ops", "@alice+bob", "@alice+devon"]);
        c.update(Message::ToggleSwitcher);
        assert_eq!(
            c.switcher_matches(),
            [
                "design",
                "dev",
                "lobby",
                "ops",
                "@alice+bob",
                "@alice+devon"
            ],
            "everything, channels first, when nothing is typed"
        );
        typed(&mut c, "DE");
        assert_eq!(c.switcher_matches(), ["design", "dev", "@alice+devon"]);
        typed(&mut c, "@de");
        assert_eq!(c.switcher_matches(), ["design", "dev", "@alice+devon"]);
        // Names that start with it come before names that only hold it.
        typed(&mut c, "o");
        assert_eq!(
            c.switcher_matches(),
            ["ops", "lobby", "@alice+bob", "@alice+devon"]
        );
        typed(&mut c, "alice");
        assert!(
            c.switcher_matches().is_empty(),
            "a DM is named by the other person"
        );
    }

    #[test]
    fn up_down_and_enter_open_the_picked_room_and_give_the_composer_the_cursor() {
        let mut c = chat_with(&["dev", "design"]);
        assert_eq!(
            c.update(Message::ToggleSwitcher).focus,
            Some(view::SWITCHER)
        );
        typed(&mut c, "de");
        c.update(Message::SwitcherMove(1));
        c.update(Message::SwitcherMove(1));
        assert_eq!(c.switcher.as_ref().unwrap().selected, 0, "wraps around");
        c.update(Message::SwitcherMove(-1));
        let out = c.update(Message::SwitcherOpen);
        assert_eq!(c.current, "dev");
        assert_eq!(out.focus, Some(view::COMPOSER));
        assert!(out.follow);
        assert!(c.switcher.is_none(), "closed once a room is open");

        // Nothing matches and it cannot be a room: Enter does nothing and
        // the switcher stays.
        c.update(Message::ToggleSwitcher);
        typed(&mut c, "no such room!");
        c.update(Message::SwitcherMove(1));
        assert_eq!(c.update(Message::SwitcherOpen), Default::default());
        assert_eq!(c.current, "dev");
        assert!(c.switcher.is_some());
        let out = c.update(Message::Close);
        assert!(c.switcher.is_none());
        assert_eq!(out.focus, Some(view::COMPOSER), "back to typing");
    }

    #[test]
    fn a_name_none_of_the_users_rooms_match_is_joined() {
        let mut c = chat_with(&["dev"]);
        c.update(Message::ToggleSwitcher);
        typed(&mut c, "#Ops");
        assert_eq!(c.switcher_goes(), Some(Command::Join("ops".into())));
        let out = c.update(Message::SwitcherOpen);
        assert_eq!(out.commands, [Command::Join("ops".into())]);
        assert!(c.switcher.is_none());
        // Someone to talk to, without a DM yet.
        c.update(Message::ToggleSwitcher);
        typed(&mut c, "@dave");
        let out = c.update(Message::SwitcherOpen);
        assert_eq!(out.commands, [Command::OpenDm("dave".into())]);
        c.update(Message::ToggleSwitcher);
        typed(&mut c, "@alice");
        assert_eq!(c.switcher_goes(), None, "not a conversation with oneself");
        c.update(Message::Close);
        // A match opens, never joins.
        c.update(Message::ToggleSwitcher);
        typed(&mut c, "de");
        assert_eq!(c.switcher_goes(), None);
        let out = c.update(Message::SwitcherOpen);
        assert!(
            !out.commands.iter().any(|c| matches!(c, Command::Join(_))),
            "{:?}",
            out.commands
        );
        assert_eq!(c.current, "dev");
    }
}
