//! Trust on first use, in the window: an unknown relay's fingerprint with
//! Trust / Cancel, and a refusal when a known relay's certificate has
//! changed. From the refusal, a new fingerprint the user confirmed with the
//! relay's operator can replace the remembered one, after a second step
//! that names what is about to be trusted.

use std::path::PathBuf;

use common::trust::TrustFailure;
use iced::widget::{button, center, column, container, row, scrollable, text, Column};
use iced::{Element, Font, Shrink};

use crate::reachable::press;

/// What the user did.
#[derive(Debug, Clone)]
pub enum Message {
    Trust,
    Cancel,
    /// "I confirmed the new fingerprint with the operator": asks once more.
    Confirmed,
    /// The second step's yes.
    Replace,
    /// The second step's Back, to the refusal.
    Reconsider,
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
    /// Replace the remembered fingerprints `known` with `presented`, then
    /// connect again.
    Replace {
        server: String,
        known: Vec<String>,
        presented: String,
        file: PathBuf,
    },
    Back,
}

/// A trust decision to make, or a refusal to read.
#[derive(Debug, Clone)]
pub struct Trust {
    pub failure: TrustFailure,
    /// On the second step of replacing a changed certificate's fingerprint.
    pub confirming: bool,
    /// Why the decision could not be carried out (the file could not be
    /// written, or changed meanwhile).
    pub error: Option<String>,
}

impl Trust {
    pub fn new(failure: TrustFailure) -> Self {
        Trust {
            failure,
            confirming: false,
            error: None,
        }
    }

    /// Handles what the user did; `None` while the decision is not made.
    pub fn update(&mut self, message: Message) -> Option<Event> {
        match (message, &self.failure) {
            (
                Message::Trust,
                TrustFailure::Unknown {
                    server,
                    fingerprint,
                    file,
                },
            ) => Some(Event::Trusted {
                server: server.clone(),
                fingerprint: fingerprint.clone(),
                file: file.clone(),
            }),
            (Message::Confirmed, TrustFailure::Changed { .. }) => {
                self.confirming = true;
                self.error = None;
                None
            }
            (Message::Reconsider, _) => {
                self.confirming = false;
                self.error = None;
                None
            }
            (
                Message::Replace,
                TrustFailure::Changed {
                    server,
                    known,
                    presented,
                    file,
                },
            ) if self.confirming => Some(Event::Replace {
                server: server.clone(),
                known: remembered(known),
                presented: presented.clone(),
                file: file.clone(),
            }),
            (Message::Cancel, _) => Some(Event::Back),
            // A stale message for another step: nothing to do.
            _ => None,
        }
    }

    pub fn view(&self) -> Element<'_, Message> {
        let body: Column<'_, Message> = match &self.failure {
            TrustFailure::Unknown { server, fingerprint, .. } => column![
                text("New relay").size(26),
                text(format!("This is the first time you connect to {server}. Its certificate fingerprint is:")),
                boxed(fingerprint_lines(fingerprint)),
                text("Compare it with the fingerprint the relay's operator sees (`relay serve` prints it at start). Trust it only if they match; confab will remember it and refuse if it ever changes."),
                row![
                    press(button(text("Trust")).padding([8, 24]), Message::Trust),
                    press(button(text("Cancel")).padding([8, 24]).style(button::secondary), Message::Cancel),
                ]
                .spacing(12),
            ],
            TrustFailure::Changed { server, presented, file, .. } if self.confirming => column![
                text("Replace the remembered fingerprint?").size(26),
                text(format!(
                    "confab will trust the certificate the relay at {server} presents now, and no longer the one it remembered. Do this only if the relay's operator told you this fingerprint:"
                )),
                boxed(fingerprint_lines(presented)),
                text(format!(
                    "The line for {server} in {} is rewritten, and confab connects again.",
                    file.display()
                )),
                row![
                    press(
                        button(text("Replace the remembered fingerprint"))
                            .padding([8, 24])
                            .style(button::danger),
                        Message::Replace,
                    ),
                    press(
                        button(text("Back")).padding([8, 24]).style(button::secondary),
                        Message::Reconsider,
                    ),
                ]
                .spacing(12)
                .wrap()
                .vertical_spacing(12),
            ],
            TrustFailure::Changed { server, known, presented, file } => {
                let mut fingerprints = column![label("remembered")].spacing(6);
                for fp in remembered(known) {
                    fingerprints = fingerprints.push(fingerprint_lines(&fp));
                }
                fingerprints = fingerprints.push(label("presented now")).push(fingerprint_lines(presented));
                column![
                    text("Connection refused: the relay's certificate changed").size(26).style(text::danger),
                    text(format!("The relay at {server} presented a different certificate from the one remembered.")),
                    boxed(fingerprints.into()),
                    text("Someone may be intercepting your connection, or the relay's certificate was replaced. Nothing was sent. Ask the relay's operator which fingerprint is right (`relay serve` prints it at start)."),
                    text(format!(
                        "If they confirm the new one, confab can remember it instead of the old one (in {}).",
                        file.display()
                    )),
                    row![
                        press(
                            button(text("I confirmed the new fingerprint with the operator: trust it"))
                                .padding([8, 16])
                                .style(button::secondary),
                            Message::Confirmed,
                        ),
                        press(button(text("Back")).padding([8, 24]), Message::Cancel),
                    ]
                    .spacing(12)
                    .wrap()
                    .vertical_spacing(12),
                ]
            }
            other => column![
                text("Connection refused: the relay's certificate is not trusted").size(26).style(text::danger),
                text(other.to_string()),
                press(button(text("Back")).padding([8, 24]), Message::Cancel),
            ],
        };
        let body = body
            .push(
                self.error
                    .as_ref()
                    .map(|e| text(e.clone()).style(text::danger)),
            )
            .spacing(16);
        // Scrolls when the window is too small for the page, so every
        // button stays reachable; centred when it fits.
        center(scrollable(container(body).max_width(640).padding(24)).height(Shrink)).into()
    }
}

/// The fingerprints a `Changed` failure lists as remembered (joined by ", ").
fn remembered(known: &str) -> Vec<String> {
    known
        .split(',')
        .map(str::trim)
        .filter(|fp| !fp.is_empty())
        .map(str::to_owned)
        .collect()
}

fn label(what: &str) -> Element<'_, Message> {
    text(what).size(13).style(text::secondary).into()
}

fn boxed(content: Element<'_, Message>) -> Element<'_, Message> {
    container(content)
        .padding(10)
        .style(container::rounded_box)
        .into()
}

/// A fingerprint on two lines of 16 bytes, so it fits and is easy to compare.
pub fn fingerprint_lines(fingerprint: &str) -> Element<'static, Message> {
    let mut lines = column![text("SHA256").font(Font::MONOSPACE).size(13)].spacing(2);
    for line in fingerprint_rows(fingerprint) {
        lines = lines.push(text(line).font(Font::MONOSPACE).size(13));
    }
    lines.into()
}

/// The bytes of a fingerprint, 16 to a row.
pub fn fingerprint_rows(fingerprint: &str) -> Vec<String> {
    let hex = fingerprint.strip_prefix("SHA256:").unwrap_or(fingerprint);
    let bytes: Vec<&str> = hex.split(':').collect();
    bytes.chunks(16).map(|chunk| chunk.join(":")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed() -> Trust {
        Trust::new(TrustFailure::Changed {
            server: "relay:1".into(),
            known: "SHA256:AA, SHA256:BB".into(),
            presented: "SHA256:CC".into(),
            file: "known_relays".into(),
        })
    }

    #[test]
    fn a_changed_fingerprint_is_replaced_only_after_two_steps() {
        let mut t = changed();
        assert_eq!(t.update(Message::Replace), None, "not asked yet");
        assert_eq!(t.update(Message::Confirmed), None);
        assert!(t.confirming);
        assert_eq!(t.update(Message::Reconsider), None);
        assert!(
            !t.confirming,
            "Back on the second step returns to the refusal"
        );
        assert_eq!(t.update(Message::Replace), None);

        t.update(Message::Confirmed);
        assert_eq!(
            t.update(Message::Replace),
            Some(Event::Replace {
                server: "relay:1".into(),
                known: vec!["SHA256:AA".into(), "SHA256:BB".into()],
                presented: "SHA256:CC".into(),
                file: "known_relays".into(),
            })
        );
        assert_eq!(t.update(Message::Cancel), Some(Event::Back));
    }

    #[test]
    fn an_unknown_relay_has_no_second_step() {
        let mut t = Trust::new(TrustFailure::Unknown {
            server: "relay:1".into(),
            fingerprint: "SHA256:CC".into(),
            file: "known_relays".into(),
        });
        assert_eq!(t.update(Message::Confirmed), None);
        assert!(!t.confirming);
        assert_eq!(t.update(Message::Replace), None);
        assert!(matches!(
            t.update(Message::Trust),
            Some(Event::Trusted { .. })
        ));
    }
}
