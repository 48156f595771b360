//! The form that invites someone to the current room, shown over the chat.

use iced::widget::{button, column, row, text, text_input};
use iced::{Element, Font};

use super::good;
use crate::reachable::{press, reachable};
use crate::screen::chat::{Chat, Message};

/// Id of the form's user name input.
pub const INVITE_USER: &str = "invite-user";

impl Chat {
    pub(super) fn invite_view(&self) -> Element<'_, Message> {
        let Some(form) = &self.invite else {
            return column![].into();
        };
        let mut input = text_input("user name", &form.user)
            .id(INVITE_USER)
            .padding(6)
            .size(14);
        let mut invite = button(text(if form.sending {
            "Inviting…"
        } else {
            "Invite"
        }))
        .padding([4, 14]);
        if !form.sending {
            input = input
                .on_input(Message::InviteUser)
                .on_submit(Message::InviteSend);
            invite = invite.on_press(Message::InviteSend);
        }
        let invite = reachable(invite, (!form.sending).then_some(Message::InviteSend));
        let result = form.result.as_ref().map(|r| match r {
            Ok(done) => text(done.clone()).size(13).style(good),
            Err(why) => text(why.clone()).size(13).style(text::danger),
        });
        column![
            text(format!("Invite to #{}", form.room))
                .size(20)
                .font(Font {
                    weight: iced::font::Weight::Bold,
                    ..Font::DEFAULT
                }),
            text(
                "Whoever you invite is told (at once, or when they next log in) \
                 and may then join this room."
            )
            .size(13)
            .style(text::secondary),
            input,
            row![
                invite,
                press(
                    button(text("Close"))
                        .padding([4, 14])
                        .style(button::secondary),
                    Message::InviteClose
                ),
            ]
            .spacing(8),
        ]
        .push(result)
        .spacing(10)
        .into()
    }
}
