//! Moving around the screen: the sidebar's order, stepping through rooms,
//! panels over the conversation, and the keys that do it.

use common::frame::RoomKind;
use iced::keyboard::{key::Named, Key, Modifiers};

use super::{view, Chat, Message, Outcome, Page, Panel};
use crate::connection::Command;

impl Chat {
    /// Rooms and DMs in the sidebar's order: channels, then DMs.
    pub fn room_order(&self) -> Vec<&str> {
        let (channels, dms): (Vec<&str>, Vec<&str>) = self
            .rooms
            .keys()
            .map(String::as_str)
            .partition(|name| Chat::kind(name) != RoomKind::Direct);
        channels.into_iter().chain(dms).collect()
    }

    /// What a key pressed anywhere in the window does here. `captured`: a
    /// widget already acted on it (a text field took Enter or Escape).
    pub fn shortcut(&self, key: &Key, modifiers: Modifiers, captured: bool) -> Option<Message> {
        let open = self.switcher.is_some();
        match key.as_ref() {
            Key::Character("k") if modifiers.command() => Some(Message::ToggleSwitcher),
            // A focused text field takes Escape for itself, so it counts
            // whether or not captured. With nothing open it brings the
            // cursor back to the composer, so typing is never lost.
            Key::Named(Named::Escape) => Some(Message::Close),
            Key::Named(Named::ArrowUp) if open => Some(Message::SwitcherMove(-1)),
            Key::Named(Named::ArrowDown) if open => Some(Message::SwitcherMove(1)),
            Key::Named(Named::Enter) if open && !captured => Some(Message::SwitcherOpen),
            Key::Named(Named::ArrowUp) if modifiers.alt() && !captured => {
                Some(Message::StepRoom(-1))
            }
            Key::Named(Named::ArrowDown) if modifiers.alt() && !captured => {
                Some(Message::StepRoom(1))
            }
            Key::Named(Named::PageUp) if !open && !captured => Some(Message::Page(Page::Up)),
            Key::Named(Named::PageDown) if !open && !captured => Some(Message::Page(Page::Down)),
            _ => None,
        }
    }

    /// Keys the window's shortcuts own: text fields leave them alone.
    pub fn is_window_key(key: &Key, modifiers: Modifiers) -> bool {
        match key.as_ref() {
            Key::Character("k") => modifiers.command(),
            Key::Named(Named::ArrowUp | Named::ArrowDown) => modifiers.alt(),
            Key::Named(Named::PageUp | Named::PageDown) => true,
            _ => false,
        }
    }

    pub(super) fn navigate(&mut self, message: Message) -> Outcome {
        match message {
            Message::TogglePanel(panel) => {
                self.switcher = None;
                if self.panel == Some(panel) {
                    self.panel = None;
                    return Outcome::focus(view::COMPOSER);
                }
                self.panel = Some(panel);
                match panel {
                    Panel::Members => Outcome::command(Command::Members(self.current.clone())),
                    Panel::Rooms => Outcome::default(),
                }
            }
            Message::StepRoom(step) => {
                let order = self.room_order();
                let at = order.iter().position(|r| *r == self.current).unwrap_or(0) as i32;
                let next = (at + step).rem_euclid(order.len().max(1) as i32) as usize;
                match order.get(next).map(|r| r.to_string()) {
                    Some(room) => self.select(room),
                    None => Outcome::default(),
                }
            }
            Message::Page(page) => Outcome {
                page: Some(page),
                ..Outcome::default()
            },
            Message::Close => {
                // One thing at a time, the one on top first.
                if self.switcher.take().is_none()
                    && self.leaving.take().is_none()
                    && self.browser.take().is_none()
                    && self.invite.take().is_none()
                    && self.panel.take().is_none()
                    && self.notice.take().is_none()
                {
                    self.selection = None;
                }
                Outcome {
                    focus: Some(view::COMPOSER),
                    ..Outcome::default()
                }
            }
            _ => Outcome::default(),
        }
    }
}
