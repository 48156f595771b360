//! The sidebar: who is logged in where, the box to join or create a room,
//! and rooms and DMs with unread counts.

use common::frame::RoomKind;
use iced::widget::{
    button, checkbox, column, container, row, scrollable, text, text_input, Column,
};
use iced::{Center, Element, Fill};

use super::{badge, section};
use crate::screen::chat::{Chat, Message};

pub(super) const WIDTH: f32 = 220.0;

impl Chat {
    pub(super) fn sidebar(&self) -> Element<'_, Message> {
        let mut channels = Column::new().spacing(2);
        let mut dms = Column::new().spacing(2);
        for name in self.room_order() {
            let Some(room) = self.rooms.get(name) else {
                continue;
            };
            let selected = name == self.current;
            let mut entry = row![text(self.display_name(name)).width(Fill)].align_y(Center);
            if room.unread > 0 {
                entry = entry.push(
                    container(text(room.unread.to_string()).size(12))
                        .padding([1, 7])
                        .style(badge),
                );
            }
            let b = button(entry)
                .width(Fill)
                .padding([5, 8])
                .style(if selected {
                    button::primary
                } else {
                    button::text
                })
                .on_press(Message::SelectRoom(name.to_owned()));
            match Chat::kind(name) {
                RoomKind::Direct => dms = dms.push(b),
                _ => channels = channels.push(b),
            }
        }
        let join = column![
            text_input("room name", &self.join_input)
                .on_input(Message::JoinInput)
                .on_submit(Message::Join)
                .padding(6)
                .size(14),
            row![
                button(text("Join").size(14))
                    .on_press(Message::Join)
                    .padding([4, 10]),
                button(text("Create").size(14))
                    .on_press(Message::Create)
                    .padding([4, 10])
                    .style(button::secondary),
            ]
            .spacing(6),
            checkbox(self.create_private)
                .label("private (invite only)")
                .on_toggle(Message::CreatePrivate)
                .size(14)
                .text_size(13),
            button(text("Browse rooms").size(14))
                .on_press(Message::BrowseRooms)
                .padding([4, 10])
                .style(button::secondary),
        ]
        .spacing(6);
        let header = column![
            text("confab").size(22),
            text(format!("{} @ {}", self.user, self.server))
                .size(12)
                .style(text::secondary),
            row![
                button(text("Theme").size(13))
                    .on_press(Message::ToggleTheme)
                    .padding([3, 8])
                    .style(button::secondary),
                button(text("Log out").size(13))
                    .on_press(Message::Logout)
                    .padding([3, 8])
                    .style(button::secondary),
            ]
            .spacing(6),
        ]
        .spacing(6);
        let list = column![section("Rooms"), channels, section("Direct messages"), dms]
            .spacing(8)
            .padding([0, 10]);
        // The join box above the list, so it stays where it is however
        // many rooms there are; only the list scrolls.
        let body = column![
            column![header, join].spacing(12).padding(10),
            scrollable(list).height(Fill)
        ]
        .spacing(4);
        container(body).width(WIDTH).height(Fill).into()
    }
}
