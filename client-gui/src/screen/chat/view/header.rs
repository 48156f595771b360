//! The header above the conversation: the room's name, the connection
//! state and the room's buttons.

use iced::widget::{button, container, row, space, text, tooltip};
use iced::{Center, Element, Fill, Font};

use crate::screen::chat::{Chat, Message, Status};

impl Chat {
    pub(super) fn header(&self) -> Element<'_, Message> {
        let title = text(self.display_name(&self.current)).size(20).font(Font {
            weight: iced::font::Weight::Bold,
            ..Font::DEFAULT
        });
        let mut top = row![title, space::horizontal().width(Fill), self.status_view()]
            .spacing(12)
            .align_y(Center);
        // A DM can be left too: that is how one refuses it.
        if self.current != common::names::LOBBY {
            top = top.push(
                button(text("Leave").size(13))
                    .on_press(Message::Leave(self.current.clone()))
                    .padding([3, 8])
                    .style(button::secondary),
            );
        }
        top = top.push(
            button(
                text(if self.show_members {
                    "Hide members"
                } else {
                    "Members"
                })
                .size(13),
            )
            .on_press(Message::ToggleMembers)
            .padding([3, 8])
            .style(button::secondary),
        );
        top.into()
    }

    fn status_view(&self) -> Element<'_, Message> {
        match &self.status {
            Status::Connected => text(format!("● connected to {}", self.relay))
                .size(13)
                .style(text::success)
                .into(),
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
                let when = match secs {
                    0 => format!("{what}…"),
                    s => format!("{what} in {s} s"),
                };
                text(format!("◌ {when} (attempt {attempt}): {reason}"))
                    .size(13)
                    .style(text::warning)
                    .into()
            }
            // Short, with the reason on hover (the notice says it in full).
            Status::Offline(why) => {
                let small = |label, message| {
                    button(text(label).size(13))
                        .on_press(message)
                        .padding([3, 8])
                        .style(button::secondary)
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
                    small("Reconnect", Message::Reconnect),
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
}
