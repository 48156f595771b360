//! The sidebar: who is logged in where, the box to join or create a room,
//! invitations waiting for an answer, and rooms and DMs with unread counts.

use common::frame::RoomKind;
use iced::widget::{
    button, checkbox, column, container, row, scrollable, space, text, text_input, tooltip, Column,
};
use iced::{Center, Element, Fill, Length};

use super::{badge, mention_badge, section};
use crate::reachable::{press, reachable};
use crate::screen::chat::{Chat, Message};

pub(super) const WIDTH: f32 = 220.0;

/// The sidebar's list of rooms, scrolled to the room opened by keys.
pub const ROOM_LIST: &str = "room-list";

impl Chat {
    pub(super) fn sidebar(&self) -> Element<'_, Message> {
        let mut channels = Column::new().spacing(2);
        let mut dms = Column::new().spacing(2);
        for name in self.room_order() {
            let Some(room) = self.rooms.get(name) else {
                continue;
            };
            let selected = name == self.current;
            let shown = self.display_name(name);
            let badged = room.mentions > 0 || room.unread > 0;
            // iced cuts a line too long for its box without a mark: say
            // it was cut, and give the whole name on hover.
            let label: Element<'_, Message> = match cut(&shown, if badged { 16 } else { 20 }) {
                Some(short) => tooltip(
                    text(short).width(Fill),
                    container(text(shown).size(13))
                        .padding([4, 8])
                        .style(container::rounded_box),
                    tooltip::Position::Bottom,
                )
                .into(),
                None => text(shown).width(Fill).into(),
            };
            let mut entry = row![label].align_y(Center);
            if room.mentions > 0 {
                entry = entry.push(
                    container(text(format!("@{}", room.unread)).size(12))
                        .padding([1, 7])
                        .style(mention_badge),
                );
            } else if room.unread > 0 {
                entry = entry.push(
                    container(text(room.unread.to_string()).size(12))
                        .padding([1, 7])
                        .style(badge),
                );
            }
            let b = press(
                button(entry)
                    .width(Fill)
                    .padding([5, 8])
                    .style(if selected {
                        button::primary
                    } else {
                        button::text
                    }),
                Message::SelectRoom(name.to_owned()),
            );
            match Chat::kind(name) {
                RoomKind::Direct => dms = dms.push(b),
                _ => channels = channels.push(b),
            }
        }
        let mut join = column![text_input("room name", &self.join_input)
            .on_input(Message::JoinInput)
            .on_submit(Message::Join)
            .padding(6)
            .size(14)]
        .spacing(6);
        if let Some(hint) = &self.join_hint {
            join = join.push(text(hint).size(12).style(text::danger));
        }
        let join = join.extend([
            row![
                press(
                    button(text("Join").size(14)).padding([4, 10]),
                    Message::Join
                ),
                press(
                    button(text("Create").size(14))
                        .padding([4, 10])
                        .style(button::secondary),
                    Message::Create
                ),
            ]
            .spacing(6)
            .into(),
            reachable(
                checkbox(self.create_private)
                    .label("private (invite only)")
                    .on_toggle(Message::CreatePrivate)
                    .size(14)
                    .text_size(13),
                Some(Message::CreatePrivate(!self.create_private)),
            ),
            press(
                button(text("Browse rooms").size(14))
                    .padding([4, 10])
                    .style(button::secondary),
                Message::BrowseRooms,
            ),
        ]);
        let header = column![
            text("confab").size(22),
            text(format!("{} @ {}", self.user, self.server))
                .size(12)
                .style(text::secondary),
            row![
                press(
                    button(text("Theme").size(13))
                        .padding([3, 8])
                        .style(button::secondary),
                    Message::ToggleTheme
                ),
                press(
                    button(text("Log out").size(13))
                        .padding([3, 8])
                        .style(button::secondary),
                    Message::Logout
                ),
            ]
            .spacing(6),
        ]
        .spacing(6);
        let list = column![section("Rooms"), channels, section("Direct messages"), dms]
            .spacing(8)
            .padding([0, 10]);
        // The join box and the invitations above the list, so they stay
        // where they are however many rooms there are; only the rooms
        // scroll, which keeps the scroll to the room opened by keys exact.
        let body = column![column![header, join].spacing(12).padding(10)]
            .push(self.invitations_view())
            .push(scrollable(list).id(ROOM_LIST).height(Fill))
            .spacing(8);
        container(body).width(WIDTH).height(Fill).into()
    }

    /// The newest invitations with who sent them and their answers, the
    /// rest behind "N more"; nothing when there are none. Each is one
    /// line, and the section stays above the rooms without scrolling with
    /// them, so a flood of invitations cannot push the rooms out of reach.
    fn invitations_view(&self) -> Option<Element<'_, Message>> {
        if self.invitations.is_empty() {
            return None;
        }
        let shown = if self.all_invitations {
            self.invitations.len()
        } else {
            INVITATIONS_SHOWN
        };
        let mut list = Column::new().spacing(4);
        for i in self.invitations.iter().take(shown) {
            let answer =
                |label,
                 message: Message,
                 style: fn(&iced::Theme, button::Status) -> button::Style| {
                    let b = button(text(label).size(12)).padding([2, 6]).style(style);
                    // Pressed once: the relay's answer comes before another.
                    if i.answering {
                        b.into()
                    } else {
                        press(b, message)
                    }
                };
            let name = format!("#{}", i.room);
            let mut from = row![text(format!("from {}", i.by))
                .size(11)
                .style(text::secondary)];
            if i.kind == RoomKind::Private {
                from = from.push(text(" · private").size(11).style(text::secondary));
            }
            let who = column![
                text(cut(&name, 11).unwrap_or(name))
                    .size(13)
                    .wrapping(iced::widget::text::Wrapping::None),
                from,
            ]
            .width(Fill);
            let entry = row![
                who,
                answer(
                    "Accept",
                    Message::AcceptInvitation(i.room.clone()),
                    button::primary
                ),
                answer(
                    "Decline",
                    Message::DeclineInvitation(i.room.clone()),
                    button::secondary
                ),
            ]
            .spacing(4)
            .align_y(Center);
            list = list.push(container(entry).padding([3, 6]).width(Fill).style(card));
        }
        let more = self.invitations.len().saturating_sub(INVITATIONS_SHOWN);
        // Above the list, so they stay in sight however long it is.
        let controls = (more > 0).then(|| {
            let toggle = if self.all_invitations {
                press(
                    button(text("Show fewer").size(12))
                        .padding([2, 6])
                        .style(button::text),
                    Message::ShowAllInvitations(false),
                )
            } else {
                press(
                    button(text(format!("{more} more")).size(12))
                        .padding([2, 6])
                        .style(button::text),
                    Message::ShowAllInvitations(true),
                )
            };
            row![
                toggle,
                space::horizontal().width(Fill),
                press(
                    button(text("Decline all").size(12))
                        .padding([2, 6])
                        .style(button::secondary),
                    Message::DeclineAllInvitations,
                ),
            ]
            .align_y(Center)
        });
        // Declining is final (a private room hides again): asked first.
        let controls = if self.decline_all.asked {
            Some(
                row![
                    text(format!("Decline all {}?", self.invitations.len()))
                        .size(12)
                        .width(Fill),
                    press(
                        button(text("Decline all").size(12))
                            .padding([2, 6])
                            .style(button::danger),
                        Message::ConfirmDeclineAll(true),
                    ),
                    press(
                        button(text("Keep").size(12))
                            .padding([2, 6])
                            .style(button::secondary),
                        Message::ConfirmDeclineAll(false),
                    ),
                ]
                .spacing(4)
                .align_y(Center),
            )
        } else {
            controls
        };
        let list: Element<'_, Message> = if self.all_invitations {
            // Every one of a long list: it scrolls on its own, in a part
            // of the sidebar.
            scrollable(list.padding(iced::padding::right(12)))
                .height(Length::Fixed(INVITATIONS_HEIGHT))
                .into()
        } else {
            list.into()
        };
        Some(
            column![section("Invitations")]
                .push(controls)
                .push(list)
                .spacing(6)
                .padding([0, 10])
                .into(),
        )
    }
}

/// Invitations listed before "N more".
const INVITATIONS_SHOWN: usize = 2;

/// The height the whole list of invitations may take.
const INVITATIONS_HEIGHT: f32 = 220.0;

/// `name` cut to `max` characters with a mark that it was, if longer.
fn cut(name: &str, max: usize) -> Option<String> {
    if name.chars().count() <= max {
        return None;
    }
    let kept: String = name.chars().take(max - 1).collect();
    Some(format!("{kept}…"))
}

/// An invitation stands apart from the rooms: it waits for an answer.
fn card(theme: &iced::Theme) -> container::Style {
    let palette = theme.extended_palette();
    container::Style::default()
        .background(palette.background.weak.color)
        .border(iced::border::rounded(6))
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn long_names_are_cut_with_a_mark_and_short_ones_kept() {
        assert_eq!(cut("#ops", 20), None);
        assert_eq!(cut(&"#".repeat(20), 20), None);
        assert_eq!(
            cut("#a-very-long-room-name-for-planning", 20).as_deref(),
            Some("#a-very-long-room-n…")
        );
        assert_eq!(cut("@élodie-and-more", 8).as_deref(), Some("@élodie…"));
    }
}
