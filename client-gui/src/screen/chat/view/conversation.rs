//! The conversation: day separators, messages, lines being sent, notices.

use chrono::{Local, TimeZone};
use iced::widget::{button, container, row, rule, scrollable, text, Column};
use iced::{Center, Element, Fill, Font};

use super::{own_line, CONVERSATION};
use crate::screen::chat::{Chat, Line, Message};

impl Chat {
    pub(super) fn conversation(&self) -> Element<'_, Message> {
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
}
