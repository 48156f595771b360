//! How the chat screen looks.

use iced::keyboard::{key::Named, Key};
use iced::widget::{button, column, container, row, rule, text, text_editor};
use iced::{Center, Element, Fill, Length, Theme};

mod browser;
mod conversation;
mod header;
mod invite;
mod measured;
mod members;
mod sidebar;

pub use browser::FILTER;
pub use invite::INVITE_USER;

use super::{Chat, Message};

/// Id of the conversation's scrollable, for following new lines.
pub const CONVERSATION: &str = "conversation";
/// Id of the composer.
pub const COMPOSER: &str = "composer";

pub use conversation::{estimate, estimate_body, SELECTION};

impl Chat {
    pub fn view(&self) -> Element<'_, Message> {
        let mut layout = row![self.sidebar(), rule::vertical(1), self.main()].height(Fill);
        if self.show_members {
            layout = layout.push(rule::vertical(1)).push(self.member_list());
        }
        self.with_dialogs(layout.into())
    }

    fn main(&self) -> Element<'_, Message> {
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
        column![self.header()]
            .push(notice)
            .push(self.conversation())
            .push(new_below.map(|b| container(b).center_x(Fill)))
            .push(self.composer_view())
            .spacing(8)
            .padding(10)
            .width(Fill)
            .into()
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
