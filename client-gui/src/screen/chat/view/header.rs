//! The header above the conversation: the room's name, the connection
//! state and the room's buttons.

use iced::widget::{button, container, row, text, tooltip};
use iced::{Center, Element, Fill, Font};

use super::good;
use super::Fold;
use crate::reachable::press;
use crate::screen::chat::{Chat, Message, Panel, Status};

impl Chat {
    /// Buttons keep their width at any window size: the room's name and
    /// topic take what is left and are cut, never them.
    pub(super) fn header(&self, fold: Fold) -> Element<'_, Message> {
        // A long name (or topic) is cut rather than crowd out the buttons.
        let title = container(
            row![text(self.display_name(&self.current))
                .size(20)
                .font(Font {
                    weight: iced::font::Weight::Bold,
                    ..Font::DEFAULT
                })
                .wrapping(text::Wrapping::None)]
            .push(self.header_topic())
            .spacing(8)
            .align_y(Center),
        )
        .width(Fill)
        .clip(true);
        let mut top = row![].spacing(12).align_y(Center);
        if fold.rooms {
            // Folded away, the rooms still say that something is waiting.
            let waiting = self.unread_total();
            let mentioned = self.rooms.values().any(|r| r.mentions > 0);
            let label = match (waiting, mentioned) {
                (0, _) => "Rooms".to_owned(),
                (n, true) => format!("Rooms · @{n}"),
                (n, false) => format!("Rooms · {n}"),
            };
            top = top.push(header_button_owned(
                label,
                Message::TogglePanel(Panel::Rooms),
            ));
        }
        // The state is a few words (all of it on hover), so it takes what
        // it needs up to a cap, and the title (with the topic) the rest.
        top = top.push(title).push(
            container(self.status_view())
                .max_width(STATUS_MAX)
                .clip(true),
        );
        // A DM can be left too: that is how one refuses it.
        if self.current != common::names::LOBBY {
            top = top.push(header_button("Leave", Message::Leave(self.current.clone())));
        }
        top = top.push(if fold.members {
            header_button("Members", Message::TogglePanel(Panel::Members))
        } else if self.show_members {
            header_button("Hide members", Message::ToggleMembers)
        } else {
            header_button("Members", Message::ToggleMembers)
        });
        top.into()
    }

    fn status_view(&self) -> Element<'_, Message> {
        match &self.status {
            Status::Connected => {
                let (short, full) = self.status_words();
                hover(text(short).size(13).style(good), full)
            }
            Status::Reconnecting { .. } => {
                let (short, full) = self.status_words();
                hover(text(short).size(13).style(text::warning), full)
            }
            // Short, with the reason on hover (the notice says it in full).
            Status::Offline(why) => {
                let small = |label, message| {
                    press(
                        button(text(label).size(13))
                            .padding([3, 8])
                            .style(button::secondary),
                        message,
                    )
                };
                let why = container(text(why.clone()).size(13))
                    .padding(8)
                    .max_width(360)
                    .style(container::rounded_box);
                row![
                    tooltip(
                        text("○ offline").size(13).style(text::danger),
                        why,
                        tooltip::Position::Bottom
                    ),
                    // A refused login is refused again: the password
                    // is asked for on the form.
                    if self.login_refused {
                        small("Log in again", Message::Logout)
                    } else {
                        small("Reconnect", Message::Reconnect)
                    },
                ]
                .push(
                    self.trust_failure
                        .is_some()
                        .then(|| small("Details", Message::Details)),
                )
                .spacing(6)
                .align_y(Center)
                .into()
            }
        }
    }

    /// The connection state in a few words, for the header, and in full,
    /// for the tooltip over them.
    pub fn status_words(&self) -> (String, String) {
        match &self.status {
            Status::Connected => (
                "● connected".to_owned(),
                format!("● connected to {}", self.relay),
            ),
            Status::Reconnecting {
                attempt,
                reason,
                lost,
                next,
                ..
            } => {
                // With one relay, or back to the same one, it reads as it
                // always did; a move names both ends.
                let what = match lost {
                    Some(lost) if lost != next => format!("relay {lost} went away; trying {next}"),
                    _ if *next != self.relay => format!("trying {next}"),
                    _ => "reconnecting".to_owned(),
                };
                let secs = self.retry_in().map_or(0, |d| d.as_secs_f32().ceil() as u64);
                let (when, short) = match secs {
                    0 => (format!("{what}…"), "reconnecting…".to_owned()),
                    s => (format!("{what} in {s} s"), format!("reconnecting in {s} s")),
                };
                (
                    format!("◌ {short}"),
                    format!("◌ {when} (attempt {attempt}): {reason}"),
                )
            }
            Status::Offline(why) => ("○ offline".to_owned(), format!("○ offline: {why}")),
        }
    }
}

/// The widest the connection state gets: with the header's buttons, it
/// still fits the narrowest conversation (`CONVERSATION_MIN`).
const STATUS_MAX: f32 = 220.0;

fn header_button(label: &str, on_press: Message) -> Element<'_, Message> {
    press(
        button(text(label).size(13).wrapping(text::Wrapping::None))
            .padding([3, 8])
            .style(button::secondary),
        on_press,
    )
}

/// The state in a few words, all of it when the pointer rests on them.
fn hover(short: iced::widget::Text<'_>, full: String) -> Element<'_, Message> {
    tooltip(
        short.wrapping(text::Wrapping::None),
        container(text(full).size(13))
            .padding(8)
            .max_width(420)
            .style(container::bordered_box),
        tooltip::Position::Bottom,
    )
    .into()
}

fn header_button_owned<'a>(label: String, on_press: Message) -> Element<'a, Message> {
    press(
        button(text(label).size(13).wrapping(text::Wrapping::None))
            .padding([3, 8])
            .style(button::secondary),
        on_press,
    )
}
