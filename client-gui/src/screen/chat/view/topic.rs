//! A channel's topic on screen: after the room's name in the header (cut
//! when long, all of it on hover, a click to change it), and the dialog
//! that changes it, shown over the chat.

use iced::widget::{button, column, container, row, text, text_input, tooltip};
use iced::{Element, Font};

use crate::reachable::{press, reachable};
use crate::screen::chat::{Chat, Message};

/// Id of the dialog's topic input.
pub const TOPIC_INPUT: &str = "topic-input";

impl Chat {
    /// The current room's topic for the header, to click to change it;
    /// "Topic…" for a channel without one, nothing for a DM.
    pub(super) fn header_topic(&self) -> Option<Element<'_, Message>> {
        if !Chat::has_topic(&self.current) {
            return None;
        }
        let topic = self.topic(&self.current);
        let (label, hint) = if topic.is_empty() {
            ("Topic…", "Say what this room is for".to_owned())
        } else {
            (topic, format!("{topic}\n\nClick to change it."))
        };
        let shown = press(
            button(
                text(label)
                    .size(14)
                    .style(text::secondary)
                    .wrapping(text::Wrapping::None),
            )
            .padding([2, 4])
            .style(button::text),
            Message::TopicOpen,
        );
        Some(
            tooltip(
                shown,
                container(text(hint).size(13))
                    .padding(8)
                    .max_width(420)
                    .style(container::bordered_box),
                tooltip::Position::Bottom,
            )
            .into(),
        )
    }

    pub(super) fn topic_view(&self) -> Element<'_, Message> {
        let Some(form) = &self.topic_dialog else {
            return column![].into();
        };
        let mut input = text_input("what this room is for", &form.text)
            .id(TOPIC_INPUT)
            .padding(6)
            .size(14);
        let mut save = button(text(if form.saving { "Saving…" } else { "Save" })).padding([4, 14]);
        if !form.saving {
            input = input
                .on_input(Message::TopicInput)
                .on_submit(Message::TopicSave);
            save = save.on_press(Message::TopicSave);
        }
        let save = reachable(save, (!form.saving).then_some(Message::TopicSave));
        let error = form
            .error
            .as_ref()
            .map(|why| text(why.clone()).size(13).style(text::danger));
        column![
            text(format!("Topic of #{}", form.room))
                .size(20)
                .font(Font {
                    weight: iced::font::Weight::Bold,
                    ..Font::DEFAULT
                }),
            text(
                "One line that everyone in the room sees beside its name. \
                 Leave it empty to clear it."
            )
            .size(13)
            .style(text::secondary),
            input,
            row![
                save,
                press(
                    button(text("Cancel"))
                        .padding([4, 14])
                        .style(button::secondary),
                    Message::TopicClose
                ),
            ]
            .spacing(8),
        ]
        .push(error)
        .spacing(10)
        .into()
    }
}
