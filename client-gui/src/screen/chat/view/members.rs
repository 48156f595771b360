//! The member list with online dots; a click opens a DM.

use iced::widget::{button, container, row, scrollable, text, Column};
use iced::{Center, Element, Fill};

use super::good;
use super::{section, section_owned};
use crate::reachable::press;
use crate::screen::chat::{Chat, Message, Status};

pub(super) const WIDTH: f32 = 180.0;

impl Chat {
    pub(super) fn member_list(&self) -> Element<'_, Message> {
        // Dots from before a disconnect are guesses: grey until the list
        // is asked again.
        let known = self.presence_known();
        let members = self.members.get(&self.current);
        let count = members.map_or(0, Vec::len);
        let online = members.map_or(0, |list| list.iter().filter(|m| m.online).count());
        let title = match (self.status == Status::Connected, members) {
            (false, _) => section("Members — offline"),
            (true, None) => section("Members"),
            (true, Some(_)) if known => {
                section_owned(format!("Members · {count}, {online} online"))
            }
            (true, Some(_)) => section_owned(format!("Members · {count}")),
        };
        let mut list = Column::new().spacing(2).padding(10).push(title);
        if let Some(members) = members {
            for m in members {
                let dot = match (known, m.online) {
                    (false, _) => text("◌").style(text::secondary),
                    (true, true) => text("●").style(good),
                    (true, false) => text("○").style(text::secondary),
                };
                let entry = row![dot.size(12), text(m.user.as_str())]
                    .spacing(6)
                    .align_y(Center);
                let b = button(entry)
                    .width(Fill)
                    .padding([4, 6])
                    .style(button::text);
                // One's own name opens nothing, and is not a stop for Tab.
                list = list.push(if m.user == self.user {
                    b.into()
                } else {
                    press(b, Message::OpenDm(m.user.clone()))
                });
            }
        }
        list = list.push(self.can_invite().then(|| {
            press(
                button(text("Invite…").size(13))
                    .padding([3, 8])
                    .style(button::secondary),
                Message::InviteOpen,
            )
        }));
        container(scrollable(list).height(Fill))
            .width(WIDTH)
            .height(Fill)
            .into()
    }
}
