//! The room switcher over the conversation (Ctrl+K).

use iced::widget::{
    button, column, container, mouse_area, opaque, space, stack, text, text_input, Column,
};
use iced::{padding, Element, Fill};

use super::{raised, veil, SWITCHER};
use crate::connection::Command;
use crate::screen::chat::{Chat, Message, Switcher};

/// Enough to pick from; typing narrows the rest down.
const SHOWN: usize = 8;

impl Chat {
    pub(super) fn switcher_view(&self, switcher: &Switcher) -> Element<'_, Message> {
        let matches = self.switcher_matches();
        let mut list = Column::new().spacing(2);
        for (i, room) in matches.iter().take(SHOWN).enumerate() {
            let unread = self.rooms.get(room).map_or(0, |r| r.unread);
            let label = match unread {
                0 => self.display_name(room),
                n => format!("{}  ({n})", self.display_name(room)),
            };
            list = list.push(
                button(text(label))
                    .width(Fill)
                    .padding([5, 8])
                    .style(if i == switcher.selected {
                        button::primary
                    } else {
                        button::text
                    })
                    .on_press(Message::SelectRoom(room.clone())),
            );
        }
        if matches.is_empty() {
            let said = match self.switcher_goes() {
                Some(Command::Join(room)) => {
                    format!("None of your rooms matches. Enter joins #{room}.")
                }
                Some(Command::OpenDm(user)) => {
                    format!("No conversation with {user} yet. Enter starts one.")
                }
                _ => format!("No room or DM matches \"{}\".", switcher.query),
            };
            list = list.push(text(said).style(text::secondary));
        }
        let panel = column![
            text_input("Go to a room or DM", &switcher.query)
                .id(SWITCHER)
                .on_input(Message::SwitcherInput)
                .on_submit(Message::SwitcherOpen)
                .padding(8),
            list,
            text("↑ ↓ to pick, Enter to open (or join), Esc to close")
                .size(12)
                .style(text::secondary),
        ]
        .spacing(8);
        let panel = container(opaque(
            container(panel).padding(10).width(360).style(raised),
        ))
        .center_x(Fill)
        .padding(padding::top(60));
        stack![
            mouse_area(container(space()).width(Fill).height(Fill).style(veil))
                .on_press(Message::Close),
            panel
        ]
        .into()
    }
}
