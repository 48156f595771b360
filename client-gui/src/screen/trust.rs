//! Trust on first use, in the window: an unknown relay's fingerprint with
//! Trust / Cancel, and a full-screen refusal when a known relay's
//! certificate has changed.

use std::path::PathBuf;

use common::trust::TrustFailure;
use iced::widget::{button, center, column, container, row, text};
use iced::{Element, Fill};

/// What the user did.
#[derive(Debug, Clone)]
pub enum Message {
    Trust,
    Cancel,
}

/// What the app must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Remember this fingerprint for this server, then connect again.
    Trusted {
        server: String,
        fingerprint: String,
        file: PathBuf,
    },
    Back,
}

/// A trust decision to make, or a refusal to read.
#[derive(Debug, Clone)]
pub struct Trust {
    pub failure: TrustFailure,
}

impl Trust {
    pub fn update(&self, message: Message) -> Event {
        match (message, &self.failure) {
            (
                Message::Trust,
                TrustFailure::Unknown {
                    server,
                    fingerprint,
                    file,
                },
            ) => Event::Trusted {
                server: server.clone(),
                fingerprint: fingerprint.clone(),
                file: file.clone(),
            },
            _ => Event::Back,
        }
    }

    pub fn view(&self) -> Element<'_, Message> {
        let body: Element<'_, Message> = match &self.failure {
            TrustFailure::Unknown { server, fingerprint, .. } => column![
                text("New relay").size(26),
                text(format!("This is the first time you connect to {server}. Its certificate fingerprint is:")),
                container(fingerprint_lines(fingerprint)).padding(10).style(container::rounded_box),
                text("Compare it with the fingerprint the relay's operator sees (`relay serve` prints it at start). Trust it only if they match; confab will remember it and refuse if it ever changes."),
                row![
                    button(text("Trust")).on_press(Message::Trust).padding([8, 24]),
                    button(text("Cancel")).on_press(Message::Cancel).padding([8, 24]).style(button::secondary),
                ]
                .spacing(12),
            ]
            .spacing(16)
            .into(),
            TrustFailure::Changed { server, known, presented, file } => column![
                text("Connection refused: the relay's certificate changed").size(26).style(text::danger),
                text(format!("The relay at {server} presented a different certificate from the one remembered.")),
                container(
                    column![
                        text(format!("remembered  {known}")).font(iced::Font::MONOSPACE).size(13),
                        text(format!("presented   {presented}")).font(iced::Font::MONOSPACE).size(13),
                    ]
                    .spacing(6)
                )
                .padding(10)
                .style(container::rounded_box),
                text("Someone may be intercepting your connection, or the relay's certificate was replaced. Nothing was sent. Ask the relay's operator which fingerprint is right."),
                text(format!(
                    "If they confirm the new one, remove the line for {server} from {} and connect again.",
                    file.display()
                )),
                button(text("Back")).on_press(Message::Cancel).padding([8, 24]),
            ]
            .spacing(16)
            .into(),
            other => column![
                text("Connection refused: the relay's certificate is not trusted").size(26).style(text::danger),
                text(other.to_string()),
                button(text("Back")).on_press(Message::Cancel).padding([8, 24]),
            ]
            .spacing(16)
            .into(),
        };
        center(container(body).max_width(640).padding(24))
            .width(Fill)
            .height(Fill)
            .into()
    }
}

/// A fingerprint on two lines of 16 bytes, so it fits and is easy to compare.
fn fingerprint_lines(fingerprint: &str) -> Element<'static, Message> {
    let hex = fingerprint.strip_prefix("SHA256:").unwrap_or(fingerprint);
    let bytes: Vec<&str> = hex.split(':').collect();
    let mut lines = column![text("SHA256").font(iced::Font::MONOSPACE).size(13)].spacing(2);
    for chunk in bytes.chunks(16) {
        lines = lines.push(text(chunk.join(":")).font(iced::Font::MONOSPACE).size(13));
    }
    lines.into()
}
