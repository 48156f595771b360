//! How the chat screen looks.

use chrono::{Local, TimeZone};
use common::frame::RoomKind;
use iced::keyboard::{key::Named, Key};
use iced::widget::{
    button, column, container, row, rule, scrollable, space, text, text_editor, text_input, Column,
};
use iced::{Center, Element, Fill, Font, Length, Theme};

use super::{Chat, Line, Message, Status};

/// Id of the conversation's scrollable, for following new lines.
pub const CONVERSATION: &str = "conversation";
/// Id of the composer.
pub const COMPOSER: &str = "composer";

const SIDEBAR: f32 = 220.0;
const MEMBERS: f32 = 180.0;

impl Chat {
    pub fn view(&self) -> Element<'_, Message> {
        let mut layout = row![self.sidebar(), rule::vertical(1), self.main()].height(Fill);
        if self.show_members {
            layout = layout.push(rule::vertical(1)).push(self.member_list());
        }
        layout.into()
    }

    fn sidebar(&self) -> Element<'_, Message> {
        let mut channels = Column::new().spacing(2);
        let mut dms = Column::new().spacing(2);
        for (name, room) in &self.rooms {
            let label = self.display_name(name);
            let selected = *name == self.current;
            let mut entry = row![text(label).width(Fill)].align_y(Center);
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
                .on_press(Message::SelectRoom(name.clone()));
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
        let body = column![
            header,
            section("Rooms"),
            channels,
            section("Direct messages"),
            dms,
            space::vertical().height(Fill),
            join
        ]
        .spacing(8)
        .padding(10);
        container(scrollable(body).height(Fill))
            .width(SIDEBAR)
            .height(Fill)
            .into()
    }

    fn main(&self) -> Element<'_, Message> {
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
        let notice = self.notice.as_ref().map(|n| {
            container(
                row![
                    text(n.clone()).width(Fill),
                    button(text("Dismiss").size(13))
                        .on_press(Message::DismissNotice)
                        .padding([2, 8])
                ]
                .align_y(Center)
                .spacing(8),
            )
            .padding(8)
            .style(container::warning)
        });
        let room = self.room();
        let new_below = room.is_some_and(|r| r.new_below).then(|| {
            button(text("New messages below").size(13))
                .on_press(Message::JumpToBottom)
                .padding([4, 12])
        });
        column![top]
            .push(notice)
            .push(self.conversation())
            .push(new_below.map(|b| container(b).center_x(Fill)))
            .push(self.composer_view())
            .spacing(8)
            .padding(10)
            .width(Fill)
            .into()
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
            Status::Offline(why) => text(format!("○ offline: {why}"))
                .size(13)
                .style(text::danger)
                .into(),
        }
    }

    fn conversation(&self) -> Element<'_, Message> {
        let Some(room) = self.room() else {
            return container(text("Pick a room")).center(Fill).into();
        };
        let mut lines = Column::new().spacing(4).padding([4, 12]);
        if room.loading_older {
            lines = lines.push(
                container(
                    text("Loading older messages…")
                        .size(12)
                        .style(text::secondary),
                )
                .center_x(Fill),
            );
        } else if !room.more_before && !room.lines.is_empty() {
            lines = lines.push(
                container(
                    text("This is the beginning of the room.")
                        .size(12)
                        .style(text::secondary),
                )
                .center_x(Fill),
            );
        }
        let mut last_day = None;
        for line in &room.lines {
            let ts = match line {
                Line::Message(m) => Some(m.ts),
                Line::Notice { ts, .. } => Some(*ts),
                Line::Pending { .. } => None,
            };
            if let Some(day) = ts
                .and_then(|ts| Local.timestamp_millis_opt(ts).single())
                .map(|t| t.date_naive())
            {
                if last_day != Some(day) {
                    last_day = Some(day);
                    lines = lines.push(
                        row![
                            rule::horizontal(1),
                            text(day.format("%A, %-d %B %Y").to_string())
                                .size(12)
                                .style(text::secondary),
                            rule::horizontal(1)
                        ]
                        .spacing(8)
                        .align_y(Center),
                    );
                }
            }
            lines = lines.push(self.line(line));
        }
        scrollable(lines)
            .id(CONVERSATION)
            .anchor_bottom()
            .on_scroll(Message::Scrolled)
            .height(Fill)
            .width(Fill)
            .into()
    }

    fn line<'a>(&'a self, line: &'a Line) -> Element<'a, Message> {
        match line {
            Line::Message(m) => {
                let own = m.from == self.user;
                let time = Local
                    .timestamp_millis_opt(m.ts)
                    .single()
                    .map(|t| t.format("%H:%M").to_string())
                    .unwrap_or_default();
                let body = row![
                    text(time).size(12).style(text::secondary).width(44),
                    text(m.from.as_str()).font(Font {
                        weight: iced::font::Weight::Bold,
                        ..Font::DEFAULT
                    }),
                    text(m.body.as_str()).width(Fill),
                ]
                .spacing(8);
                let c = container(body).padding([3, 6]).width(Fill);
                if own {
                    c.style(own_line).into()
                } else {
                    c.into()
                }
            }
            Line::Pending {
                local,
                body,
                failed,
            } => {
                let status: Element<'a, Message> = match failed {
                    Some(why) => row![
                        text(format!("not sent: {why}"))
                            .size(12)
                            .style(text::danger),
                        button(text("Retry").size(12))
                            .on_press(Message::Retry(*local))
                            .padding([1, 8]),
                    ]
                    .spacing(6)
                    .align_y(Center)
                    .into(),
                    None => text("sending…").size(12).style(text::secondary).into(),
                };
                container(
                    row![
                        status,
                        text(self.user.as_str()),
                        text(body.as_str()).width(Fill).style(text::secondary)
                    ]
                    .spacing(8)
                    .align_y(Center),
                )
                .padding([3, 6])
                .width(Fill)
                .style(own_line)
                .into()
            }
            Line::Notice { text: t, .. } => text(format!("— {t}"))
                .size(13)
                .style(text::secondary)
                .font(Font {
                    style: iced::font::Style::Italic,
                    ..Font::DEFAULT
                })
                .into(),
        }
    }

    fn composer_view(&self) -> Element<'_, Message> {
        let placeholder = format!("Message {}", self.display_name(&self.current));
        let editor = text_editor(&self.composer)
            .id(COMPOSER)
            .placeholder(placeholder)
            .on_action(Message::Composer)
            .height(Length::Shrink)
            .min_height(40)
            .max_height(160)
            .padding(8)
            .key_binding(|press| {
                // Enter sends; Shift+Enter starts a new line.
                if matches!(press.key, Key::Named(Named::Enter)) {
                    return Some(if press.modifiers.shift() {
                        text_editor::Binding::Enter
                    } else {
                        text_editor::Binding::Custom(Message::Send)
                    });
                }
                text_editor::Binding::from_key_press(press)
            });
        let send = button(text("Send"))
            .on_press(Message::Send)
            .padding([10, 18]);
        let hint = self
            .hint
            .as_ref()
            .map(|h| text(h.clone()).size(12).style(text::danger));
        column![row![editor, send].spacing(8).align_y(iced::Alignment::End)]
            .push(hint)
            .spacing(4)
            .into()
    }

    fn member_list(&self) -> Element<'_, Message> {
        let mut list = Column::new()
            .spacing(2)
            .padding(10)
            .push(section("Members"));
        if let Some(members) = self.members.get(&self.current) {
            for m in members {
                let dot = if m.online {
                    text("●").style(text::success)
                } else {
                    text("○").style(text::secondary)
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
        container(scrollable(list).height(Fill))
            .width(MEMBERS)
            .height(Fill)
            .into()
    }
}

fn section(title: &str) -> Element<'_, Message> {
    text(title.to_uppercase())
        .size(11)
        .style(text::secondary)
        .into()
}

fn badge(theme: &Theme) -> container::Style {
    let palette = theme.extended_palette();
    container::Style::default()
        .background(palette.primary.base.color)
        .color(palette.primary.base.text)
        .border(iced::border::rounded(9))
}

fn own_line(theme: &Theme) -> container::Style {
    let palette = theme.extended_palette();
    container::Style::default()
        .background(palette.background.weak.color)
        .border(iced::border::rounded(4))
}
