//! The room browser: public rooms with their member counts, the ones the
//! user is in marked, a filter, and a click to join. It opens over the
//! chat, as does the invitation form.

use iced::widget::{
    button, center, column, container, mouse_area, opaque, row, scrollable, space, stack, text,
    text_input, Column,
};
use iced::{Center, Color, Element, Fill, Font, Shrink};

use super::good;
use crate::reachable::{coverable, press, reachable};
use crate::screen::chat::{Browser, Chat, Message};

/// Id of the browser's filter input.
pub const FILTER: &str = "room-filter";

impl Chat {
    /// The chat with the browser, the invitation form or the topic dialog
    /// over it, when open.
    pub(super) fn with_dialogs<'a>(&'a self, chat: Element<'a, Message>) -> Element<'a, Message> {
        let (dialog, close) = match (&self.browser, &self.invite) {
            _ if self.topic_dialog.is_some() => (self.topic_view(), Message::TopicClose),
            (Some(browser), _) => (self.browser_view(browser), Message::CloseBrowser),
            (None, Some(_)) => (self.invite_view(), Message::InviteClose),
            (None, None) => return chat,
        };
        let card = container(dialog)
            .padding(20)
            .max_width(520)
            .style(container::rounded_box);
        // A click beside the dialog closes it, as in most programs; the
        // chat under it takes no clicks meanwhile.
        let backdrop = mouse_area(center(opaque(card)).padding(24).style(|_theme| {
            container::Style::default().background(Color {
                a: 0.6,
                ..Color::BLACK
            })
        }))
        .on_press(close);
        stack![coverable(chat, true), opaque(backdrop)].into()
    }

    fn browser_view<'a>(&'a self, browser: &'a Browser) -> Element<'a, Message> {
        let small = |label: &'static str, message: Option<Message>| {
            let b = button(text(label).size(13))
                .on_press_maybe(message.clone())
                .padding([3, 8])
                .style(button::secondary);
            reachable(b, message)
        };
        let refresh = small(
            "Refresh",
            (!browser.loading).then_some(Message::RefreshRooms),
        );
        let title = row![
            text("Public rooms").size(20).font(Font {
                weight: iced::font::Weight::Bold,
                ..Font::DEFAULT
            }),
            space::horizontal().width(Fill),
            refresh,
            small("Close", Some(Message::CloseBrowser)),
        ]
        .spacing(6)
        .align_y(Center);
        let filter = text_input("filter by name", &browser.filter)
            .id(FILTER)
            .on_input(Message::BrowserFilter)
            .on_submit(Message::BrowserSubmit)
            .padding(6)
            .size(14);
        let mut page = column![title, filter].spacing(10);
        if browser.loading {
            page = page.push(
                text("Loading the room list…")
                    .size(13)
                    .style(text::secondary),
            );
        }
        if let Some(error) = &browser.error {
            page = page.push(text(error.clone()).size(13).style(text::danger));
        }
        let shown = browser.shown(|room| self.rooms.contains_key(room));
        let mut list = Column::new().spacing(2);
        for listed in &shown {
            let name = &listed.room.name;
            let members = match listed.room.members {
                1 => "1 member".to_owned(),
                n => format!("{n} members"),
            };
            let state = if browser.joining.as_deref() == Some(name.as_str()) {
                text("joining…").size(12).style(text::secondary)
            } else if listed.joined {
                text("✓ joined").size(12).style(good)
            } else {
                text("join").size(12).style(text::primary)
            };
            // What the room is for, under its name, when it says.
            let topic = crate::screen::chat::shown::shown(&listed.room.topic);
            let title = column![text(format!("#{name}"))]
                .push(
                    (!topic.is_empty())
                        .then(|| text(topic.into_owned()).size(12).style(text::secondary)),
                )
                .width(Fill);
            let entry = row![
                title,
                text(members).size(12).style(text::secondary),
                container(state).width(70).align_right(70),
            ]
            .spacing(10)
            .align_y(Center);
            let b = button(entry)
                .width(Fill)
                .padding([5, 8])
                .style(button::text);
            list = list.push(if browser.joining.is_none() {
                press(b, Message::JoinListed(name.clone()))
            } else {
                b.into()
            });
        }
        let empty = match &browser.list {
            Some(list) if list.public.is_empty() => {
                Some("No public rooms yet: create one with the box in the sidebar.".to_owned())
            }
            Some(_) if shown.is_empty() => Some(format!(
                "No public room's name contains \"{}\".",
                browser.filter.trim()
            )),
            _ => None,
        };
        page = page.push(empty.map(|e| text(e).size(13).style(text::secondary)));
        page.push(scrollable(list).height(Shrink))
            .push(
                text("Private rooms are not listed: a member invites you, and the invitation shows in the sidebar.")
                    .size(12)
                    .style(text::secondary),
            )
            .into()
    }
}
