//! The member list with online dots; a click opens a DM.

use iced::widget::{button, container, row, scrollable, text, Column};
use iced::{Center, Element, Fill};

use super::section;
use crate::screen::chat::{Chat, Message, Status};

pub(super) const WIDTH: f32 = 180.0;

impl Chat {
    pub(super) fn member_list(&self) -> Element<'_, Message> {
        let title = if self.status == Status::Connected {
            section("Members")
        } else {
            section("Members — offline")
        };
        // Dots from before a disconnect are guesses: grey until the list
        // is asked again.
        let known = self.presence_known();
        let mut list = Column::new().spacing(2).padding(10).push(title);
        if let Some(members) = self.members.get(&self.current) {
            for m in members {
                let dot = match (known, m.online) {
                    (false, _) => text("◌").style(text::secondary),
                    (true, true) => text("●").style(text::success),
                    (true, false) => text("○").style(text::secondary),
                };
                let entry = row![dot.size(12), text(m.user.as_str())]
                    .spacing(6)
                    .align_y(Center);
                let mut b = button(entry)
                    .width(Fill)
                    .padding([4, 6])
                    .style(button::text);
                if m.user != self.user {
                    b = b.on_press(Message::OpenDm(m.user.clone()));
                }
                list = list.push(b);
            }
        }
        list = list.push(self.can_invite().then(|| {
            button(text("Invite…").size(13))
                .on_press(Message::InviteOpen)
                .padding([3, 8])
                .style(button::secondary)
        }));
        container(scrollable(list).height(Fill))
            .width(WIDTH)
            .height(Fill)
            .into()
    }
}
