//! How the chat screen looks.

use iced::keyboard::{key::Named, Key};
use iced::widget::{
    button, column, container, mouse_area, opaque, responsive, row, rule, space, stack, text,
    text_editor,
};
use iced::{padding, Center, Element, Fill, Length, Theme};

mod browser;
mod conversation;
mod header;
mod invite;
mod measured;
mod members;
mod sidebar;
pub use sidebar::ROOM_LIST;
mod switcher;
mod topic;

pub use browser::FILTER;
pub use invite::INVITE_USER;
pub use topic::TOPIC_INPUT;

use super::{Chat, Message, Panel};
use crate::reachable::{coverable, press};

/// Id of the conversation's scrollable, for following new lines.
pub const CONVERSATION: &str = "conversation";
/// Id of the composer.
pub const COMPOSER: &str = "composer";
/// Id of the room switcher's search field.
pub const SWITCHER: &str = "switcher";

/// The narrowest conversation worth keeping a side panel beside: below
/// it, the panel folds into a header button.
const CONVERSATION_MIN: f32 = 480.0;

/// Which side panels the window is too narrow to show beside the
/// conversation; those open over it from a header button instead.
#[derive(Debug, Clone, Copy)]
struct Fold {
    rooms: bool,
    members: bool,
}

impl Fold {
    fn at(width: f32) -> Fold {
        Fold {
            rooms: width < sidebar::WIDTH + CONVERSATION_MIN,
            members: width < sidebar::WIDTH + members::WIDTH + CONVERSATION_MIN,
        }
    }
}

pub use conversation::{estimate, estimate_body, mentions, SELECTION};

impl Chat {
    pub fn view(&self) -> Element<'_, Message> {
        self.with_dialogs(responsive(move |size| self.layout(Fold::at(size.width))).into())
    }

    /// Always the same three columns, empty where a panel is hidden, so
    /// the conversation and the composer keep their state (scroll
    /// position, cursor) when panels come and go.
    fn layout(&self, fold: Fold) -> Element<'_, Message> {
        let left: Element<'_, Message> = if fold.rooms {
            space().into()
        } else {
            row![self.sidebar(), rule::vertical(1)].into()
        };
        let right: Element<'_, Message> = if !fold.members && self.show_members {
            row![rule::vertical(1), self.member_list()].into()
        } else {
            space().into()
        };
        let switching = self.switcher.is_some();
        let over = match self.panel {
            Some(Panel::Rooms) if fold.rooms => Some(drawer(self.sidebar(), true)),
            Some(Panel::Members) if fold.members => Some(drawer(self.member_list(), false)),
            _ => None,
        };
        // What is under the switcher or a drawer takes no keys and no
        // focus: Tab stays with what is on top.
        let main = coverable(self.main(fold), switching || over.is_some());
        let over = over.map(|o| coverable(o, switching));
        let center = stack![main]
            .push(over)
            .push(self.switcher.as_ref().map(|s| self.switcher_view(s)))
            .width(Fill)
            .height(Fill);
        row![
            coverable(left, switching),
            center,
            coverable(right, switching)
        ]
        .height(Fill)
        .into()
    }

    fn main(&self, fold: Fold) -> Element<'_, Message> {
        let notice: Element<'_, Message> = match &self.notice {
            Some(n) => container(
                container(
                    row![
                        text(n.clone()).width(Fill),
                        press(
                            button(text("Dismiss").size(13)).padding([2, 8]),
                            Message::DismissNotice
                        )
                    ]
                    .align_y(Center)
                    .spacing(8),
                )
                .padding(8)
                .style(container::warning),
            )
            .padding(padding::bottom(8))
            .into(),
            None => space().into(),
        };
        let leaving = self.leaving.as_ref().filter(|r| **r == self.current).map(|r| {
            let what = match common::names::dm_users(r) {
                Some(_) => format!(
                    "Leave your conversation with {}? It goes from your list until one of you opens it again.",
                    self.display_name(r)
                ),
                None => format!(
                    "Leave {}? If it is private, coming back needs a new invitation.",
                    self.display_name(r)
                ),
            };
            container(
                container(
                    row![
                        text(what).width(Fill),
                        press(
                            button(text("Yes, leave").size(13))
                                .padding([2, 8])
                                .style(button::danger),
                            Message::ConfirmLeave
                        ),
                        press(
                            button(text("Stay").size(13))
                                .padding([2, 8])
                                .style(button::secondary),
                            Message::CancelLeave
                        ),
                    ]
                    .align_y(Center)
                    .spacing(8),
                )
                .padding(8)
                .style(container::bordered_box),
            )
            .padding(padding::bottom(8))
        });
        let room = self.room();
        // Over the conversation, not under it: taking room from it would
        // shrink the view and move what is being read.
        let new_below = room.is_some_and(|r| r.new_below).then(|| {
            container(press(
                button(text("New messages below").size(13)).padding([4, 12]),
                Message::JumpToBottom,
            ))
            .center_x(Fill)
            .align_bottom(Fill)
            .padding(padding::bottom(8))
        });
        let conversation = stack![self.conversation()]
            .push(self.empty_state())
            .push(new_below);
        // Every child stays where it is whether a notice shows or not, so
        // the conversation keeps its scroll position and the composer the
        // cursor.
        column![
            self.header(fold),
            column![notice]
                .push(leaving)
                .push(conversation)
                .height(Fill),
            self.composer_view()
        ]
        .spacing(8)
        .padding(10)
        .width(Fill)
        .into()
    }

    /// Says whose conversation an empty room or DM is, instead of a blank pane.
    fn empty_state(&self) -> Option<Element<'_, Message>> {
        let room = self.room()?;
        if !room.lines.is_empty() || room.more_before || room.loading_older {
            return None;
        }
        let says = match common::names::dm_users(&self.current) {
            Some(_) => format!(
                "This is the start of your conversation with {}.",
                self.display_name(&self.current)
            ),
            None => format!("This is the start of {}.", self.display_name(&self.current)),
        };
        Some(
            container(text(says).style(text::secondary))
                .center(Fill)
                .padding(20)
                .into(),
        )
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
                // Asked about every key pressed in the window, focused or
                // not: only the focused composer acts, or Enter in the room
                // box would send the draft too.
                if !matches!(press.status, text_editor::Status::Focused { .. }) {
                    return None;
                }
                // Left to the window (Page Up scrolls the conversation, not
                // the composer).
                if Chat::is_window_key(&press.key, press.modifiers) {
                    return None;
                }
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
        let send = press(button(text("Send")).padding([10, 18]), Message::Send);
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

fn section_owned(title: String) -> Element<'static, Message> {
    text(title.to_uppercase())
        .size(11)
        .style(text::secondary)
        .into()
}

/// The success colour, lightened on a dark background where the theme's
/// own green is too dark to read (under 2:1 on the dark grey).
pub(crate) fn good(theme: &Theme) -> text::Style {
    let palette = theme.extended_palette();
    let base = palette.success.base.color;
    let color = if palette.is_dark {
        let lift = |c: f32| c + (1.0 - c) * 0.45;
        iced::Color {
            r: lift(base.r),
            g: lift(base.g),
            b: lift(base.b),
            a: 1.0,
        }
    } else {
        base
    };
    text::Style { color: Some(color) }
}

fn badge(theme: &Theme) -> container::Style {
    let palette = theme.extended_palette();
    container::Style::default()
        .background(palette.primary.base.color)
        .color(palette.primary.base.text)
        .border(iced::border::rounded(9))
}

/// A badge that stands out: someone mentioned this user there.
fn mention_badge(theme: &Theme) -> container::Style {
    let palette = theme.extended_palette();
    container::Style::default()
        .background(palette.danger.base.color)
        .color(palette.danger.base.text)
        .border(iced::border::rounded(9))
}

fn own_line(theme: &Theme) -> container::Style {
    let palette = theme.extended_palette();
    container::Style::default()
        .background(palette.background.weak.color)
        .border(iced::border::rounded(4))
}

/// A panel opened over the conversation: on its side, over a veil that
/// closes it when clicked.
fn drawer(panel: Element<'_, Message>, left: bool) -> Element<'_, Message> {
    let panel = opaque(container(panel).height(Fill).style(raised));
    let veil = mouse_area(container(space()).width(Fill).height(Fill).style(veil))
        .on_press(Message::Close);
    if left {
        row![panel, veil].into()
    } else {
        row![veil, panel].into()
    }
}

/// What floats over the conversation. No shadow: the CPU renderer redraws
/// only what changed and leaves shadows out of that, so they darken with
/// every caret blink.
fn raised(theme: &Theme) -> container::Style {
    let palette = theme.extended_palette();
    container::Style::default()
        .background(palette.background.base.color)
        .border(
            iced::border::rounded(6)
                .color(palette.background.strong.color)
                .width(1),
        )
}

/// Dims what is under an overlay.
fn veil(_theme: &Theme) -> container::Style {
    container::Style::default().background(iced::Color::BLACK.scale_alpha(0.25))
}
