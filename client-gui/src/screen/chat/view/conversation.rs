//! The conversation: day separators, messages grouped by sender, lines
//! being sent, folded join/leave notices.
//!
//! Only the lines in and around the viewport are built and laid out; the
//! rest of the kept lines are stood in for by empty space of their last
//! measured height (or an estimate, before they were ever shown). So a
//! frame costs the same in a room of a hundred lines or a million.

use chrono::{DateTime, Local, TimeZone};
use iced::widget::text::Span;
use iced::widget::text::Wrapping;
use iced::widget::{
    button, column, container, mouse_area, rich_text, row, rule, scrollable, space, text,
    text_editor, tooltip, Column,
};
use iced::{Center, Color, Element, Fill, Font, Theme};

use super::measured::Measured;
use super::{own_line, CONVERSATION};
use crate::reachable::press;
use crate::screen::chat::room::{Key, Room};
use crate::screen::chat::{Chat, Line, Message};

/// Id of the read-only editor a double-clicked line turns into.
pub const SELECTION: &str = "selection";

/// Lines from one sender closer than this share one name and time.
const GROUP_MS: i64 = 5 * 60 * 1000;
/// Viewport assumed before the first scroll report.
const DEFAULT_HEIGHT: f32 = 800.0;
const DEFAULT_WIDTH: f32 = 700.0;
const BODY_SIZE: f32 = 15.0;
const LINE_HEIGHT: f32 = BODY_SIZE * 1.3;

/// A guess at a line's height before it was ever laid out.
pub fn estimate(line: &Line, width: f32) -> f32 {
    match line {
        Line::Message(m) => estimate_body(&m.body, width),
        Line::Pending { body, .. } => estimate_body(body, width),
        Line::Notice { .. } => LINE_HEIGHT + 8.0,
        Line::Topic { topic, .. } => estimate_body(topic, width) + 8.0,
    }
}

/// A guess at the height of a message with this body.
pub fn estimate_body(body: &str, width: f32) -> f32 {
    let width = if width > 0.0 { width } else { DEFAULT_WIDTH };
    // Roughly the average advance of the body font.
    let per_line = ((width - 90.0) / (BODY_SIZE * 0.5)).max(20.0) as usize;
    let rows: usize = body
        .split('\n')
        .map(|l| l.chars().count().div_ceil(per_line).max(1))
        .sum();
    rows as f32 * LINE_HEIGHT + 6.0
}

/// How a line is introduced, from the line before it.
struct Lead {
    /// A new day starts here.
    day: Option<chrono::NaiveDate>,
    /// A new sender (or a long pause) starts here: show name and time.
    header: bool,
}

fn local(ts: i64) -> Option<DateTime<Local>> {
    Local.timestamp_millis_opt(ts).single()
}

fn ts(line: &Line) -> Option<i64> {
    match line {
        Line::Message(m) => Some(m.ts),
        Line::Notice { ts, .. } | Line::Topic { ts, .. } => Some(*ts),
        Line::Pending { .. } => None,
    }
}

fn lead(prev: Option<&Line>, line: &Line, own: &str) -> Lead {
    let day_of = |l: &Line| ts(l).and_then(local).map(|t| t.date_naive());
    let day = day_of(line).filter(|d| prev.and_then(day_of) != Some(*d));
    let from = |l: &Line| match l {
        Line::Message(m) => Some((m.from.clone(), m.ts)),
        Line::Pending { .. } => Some((own.to_owned(), i64::MAX)),
        Line::Notice { .. } | Line::Topic { .. } => None,
    };
    let header = match (prev.and_then(from), from(line)) {
        (Some((a, at)), Some((b, bt))) => {
            a != b || day.is_some() || (bt != i64::MAX && at != i64::MAX && bt - at > GROUP_MS)
        }
        _ => true,
    };
    Lead { day, header }
}

/// The rows to build: those in the viewport, a screen above and below.
fn window(room: &Room, heights: &[f32]) -> (usize, usize, f32, f32) {
    let total: f32 = heights.iter().sum::<f32>() + room.below;
    let height = if room.scroll.height > 0.0 {
        room.scroll.height
    } else {
        DEFAULT_HEIGHT
    };
    let bottom = total - room.scroll.from_bottom.max(0.0) + height;
    let top = total - room.scroll.from_bottom.max(0.0) - 2.0 * height;
    let (mut lo, mut hi) = (heights.len(), 0);
    let (mut y, mut above) = (0.0, 0.0);
    for (i, h) in heights.iter().enumerate() {
        if y + h >= top && y <= bottom {
            if lo == heights.len() {
                lo = i;
                above = y;
            }
            hi = i + 1;
        }
        y += h;
    }
    if lo >= hi {
        // Nothing in view (an empty room, or a report from a bigger
        // room): show the newest lines.
        lo = heights.len().saturating_sub(30);
        hi = heights.len();
        above = heights[..lo].iter().sum();
    }
    let below: f32 = heights[hi..].iter().sum();
    (lo, hi, above, below)
}

/// A colour per sender that stays the same across sessions and machines,
/// readable on the light and the dark theme.
pub fn sender_colour(name: &str, theme: &Theme) -> Color {
    // FNV-1a: stable, unlike the standard hasher.
    let hash = name.bytes().fold(0x811c9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x01000193)
    });
    const LIGHT: [Color; 8] = [
        Color::from_rgb8(0xb0, 0x30, 0x30),
        Color::from_rgb8(0x1f, 0x6f, 0xb2),
        Color::from_rgb8(0x2e, 0x7d, 0x32),
        Color::from_rgb8(0x8e, 0x44, 0xad),
        Color::from_rgb8(0xb3, 0x5c, 0x00),
        Color::from_rgb8(0x00, 0x79, 0x7a),
        Color::from_rgb8(0xad, 0x14, 0x57),
        Color::from_rgb8(0x5d, 0x4c, 0x9e),
    ];
    const DARK: [Color; 8] = [
        Color::from_rgb8(0xff, 0x8a, 0x80),
        Color::from_rgb8(0x82, 0xb1, 0xff),
        Color::from_rgb8(0x8b, 0xd4, 0x8f),
        Color::from_rgb8(0xd1, 0x9c, 0xf0),
        Color::from_rgb8(0xff, 0xb7, 0x4d),
        Color::from_rgb8(0x64, 0xd8, 0xcb),
        Color::from_rgb8(0xf4, 0x8f, 0xb1),
        Color::from_rgb8(0xb3, 0xa6, 0xff),
    ];
    let palette = if theme.extended_palette().is_dark {
        &DARK
    } else {
        &LIGHT
    };
    palette[hash as usize % palette.len()]
}

/// A body cut into plain text and links (http, https), links clickable.
pub fn spans(body: &str) -> Vec<Span<'_, String>> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(at) = find_link(rest) {
        if at > 0 {
            out.push(Span::new(&rest[..at]));
        }
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
            .unwrap_or(tail.len());
        // Punctuation that ends a sentence is not part of the address, nor
        // a closing bracket the address did not open.
        let mut url = tail[..end].trim_end_matches(['.', ',', ';', ':', '!', '?', '\'']);
        while url.ends_with(')') && url.matches(')').count() > url.matches('(').count() {
            url = url[..url.len() - 1].trim_end_matches(['.', ',', ';', ':', '!', '?', '\'']);
        }
        out.push(
            Span::new(url)
                .link(url.to_owned())
                .underline(true)
                .color(Color::from_rgb8(0x3a, 0x7b, 0xd5)),
        );
        rest = &tail[url.len()..];
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(Span::new(rest));
    }
    out
}

fn find_link(s: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find("http") {
        let at = from + i;
        let tail = &s[at..];
        let boundary = at == 0 || !s[..at].ends_with(|c: char| c.is_alphanumeric());
        if boundary
            && (tail.starts_with("https://") || tail.starts_with("http://"))
            && tail
                .split_once("//")
                .is_some_and(|(_, host)| host.starts_with(|c: char| c.is_alphanumeric()))
        {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

/// Whether a body names `user` as `@user` (as a word, any case).
pub fn mentions(body: &str, user: &str) -> bool {
    let lower = body.to_lowercase();
    let want = format!("@{}", user.to_lowercase());
    lower.match_indices(&want).any(|(at, _)| {
        let before = lower[..at].chars().next_back();
        let after = lower[at + want.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric())
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-')
    })
}

fn mention_line(theme: &Theme) -> container::Style {
    let palette = theme.extended_palette();
    container::Style::default()
        .background(palette.warning.weak.color.scale_alpha(0.35))
        .border(
            iced::border::rounded(4)
                .color(palette.warning.base.color)
                .width(1),
        )
}

/// "alice set the topic: …", or "alice cleared the topic".
fn topic_text(by: &str, topic: &str) -> String {
    if topic.is_empty() {
        format!("{by} cleared the topic")
    } else {
        format!("{by} set the topic: {topic}")
    }
}

fn notice_text(joined: &[String], left: &[String], passed: &[String]) -> String {
    fn names(list: &[String]) -> String {
        match list {
            [] => String::new(),
            [a] => a.clone(),
            [a, b] => format!("{a} and {b}"),
            [a, b, c] => format!("{a}, {b} and {c}"),
            [a, b, rest @ ..] => format!("{a}, {b} and {} others", rest.len()),
        }
    }
    let parts = [
        (joined, "joined"),
        (passed, "joined and left"),
        (left, "left"),
    ];
    parts
        .iter()
        .filter(|(list, _)| !list.is_empty())
        .map(|(list, what)| format!("{} {what}", names(list)))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Said as the join and leave notices are.
fn topic_notice<'a>(by: &str, topic: &str) -> Element<'a, Message> {
    container(
        text(format!("→ {}", topic_text(by, topic)))
            .size(13)
            .style(text::secondary)
            .font(Font {
                style: iced::font::Style::Italic,
                ..Font::DEFAULT
            }),
    )
    .padding([3, 50])
    .into()
}

impl Chat {
    pub(super) fn conversation(&self) -> Element<'_, Message> {
        let Some(room) = self.room() else {
            return container(text("Pick a room")).center(Fill).into();
        };
        let width = room.scroll.width;
        let heights: Vec<f32> = room
            .lines
            .iter()
            .map(|l| {
                room.heights
                    .get(l.key())
                    .unwrap_or_else(|| estimate(l, width))
            })
            .collect();
        let (lo, hi, above, below) = window(room, &heights);
        let mut lines = Column::new().padding([4, 12]);
        if lo == 0 {
            lines = lines.push(self.beginning(room));
        } else {
            lines = lines.push(space().height(above));
        }
        for i in lo..hi {
            let line = &room.lines[i];
            let lead = lead(i.checked_sub(1).map(|p| &room.lines[p]), line, &self.user);
            let row = self.line(line, &lead);
            lines = lines.push(Measured::new(line.key(), &room.heights, row));
        }
        lines = lines.push(space().height(below + room.below));
        scrollable(lines)
            .id(CONVERSATION)
            .anchor_bottom()
            .on_scroll(Message::Scrolled)
            .height(Fill)
            .width(Fill)
            .into()
    }

    /// What is above the first line: more loading, or the room's start.
    fn beginning<'a>(&'a self, room: &'a Room) -> Element<'a, Message> {
        let said = if room.loading_older {
            "Loading older messages…".to_owned()
        } else if room.more_before || room.lines.is_empty() {
            // An empty room says so in the middle of the pane instead.
            String::new()
        } else {
            "This is the beginning of the room.".to_owned()
        };
        container(text(said).size(12).style(text::secondary))
            .center_x(Fill)
            .padding([6, 0])
            .into()
    }

    fn line<'a>(&'a self, line: &'a Line, lead: &Lead) -> Element<'a, Message> {
        let body: Element<'a, Message> = match line {
            Line::Message(m) => self.message_line(line.key(), &m.from, m.ts, &m.body, lead.header),
            Line::Pending {
                local,
                body,
                failed,
            } => self.pending(*local, body, failed.as_deref(), lead.header),
            Line::Notice {
                joined,
                left,
                passed,
                ..
            } => container(
                text(format!("→ {}", notice_text(joined, left, passed)))
                    .size(13)
                    .style(text::secondary)
                    .font(Font {
                        style: iced::font::Style::Italic,
                        ..Font::DEFAULT
                    }),
            )
            .padding([3, 50])
            .into(),
            Line::Topic { by, topic, .. } => topic_notice(by, topic),
        };
        match lead.day {
            Some(day) => column![
                row![
                    rule::horizontal(1),
                    text(day.format("%A, %-d %B %Y").to_string())
                        .size(12)
                        .style(text::secondary),
                    rule::horizontal(1)
                ]
                .spacing(8)
                .padding([6, 0])
                .align_y(Center),
                body
            ]
            .into(),
            None => body,
        }
    }

    fn message_line<'a>(
        &'a self,
        key: Key,
        from: &'a str,
        ts: i64,
        body: &'a str,
        header: bool,
    ) -> Element<'a, Message> {
        let when = local(ts);
        let short = when
            .map(|t| t.format("%H:%M").to_string())
            .unwrap_or_default();
        let full = when
            .map(|t| t.format("%A, %-d %B %Y at %H:%M:%S").to_string())
            .unwrap_or_default();
        let selected = self
            .selection
            .as_ref()
            .filter(|s| s.key == key && s.room == self.current);
        let content: Element<'a, Message> = match selected {
            Some(s) => row![
                text_editor(&s.content)
                    .id(SELECTION)
                    .on_action(Message::SelectionAction)
                    .size(BODY_SIZE)
                    .padding(4),
                press(
                    button(text("Copy").size(12))
                        .padding([2, 8])
                        .style(button::secondary),
                    Message::CopySelection
                ),
                press(
                    button(text("Done").size(12))
                        .padding([2, 8])
                        .style(button::text),
                    Message::Deselect
                ),
            ]
            .spacing(6)
            .align_y(Center)
            .into(),
            None => {
                let shown: Element<'a, Message> = if find_link(body).is_some() {
                    rich_text(spans(body))
                        .size(BODY_SIZE)
                        .on_link_click(Message::OpenLink)
                        .wrapping(Wrapping::WordOrGlyph)
                        .width(Fill)
                        .into()
                } else {
                    // Plain text where there is no link: cheaper to lay out.
                    // A word longer than the line (a hash, a log line) is
                    // broken where it must, never cut off.
                    text(body)
                        .size(BODY_SIZE)
                        .wrapping(Wrapping::WordOrGlyph)
                        .width(Fill)
                        .into()
                };
                mouse_area(shown)
            }
            .on_double_click(Message::Select(key))
            .on_right_press(Message::Select(key))
            .into(),
        };
        // Lines under one name show no time of their own; resting the
        // pointer beside one still tells when it was sent.
        let shown: Element<'a, Message> = if header {
            text(short).size(12).style(text::secondary).into()
        } else {
            space().width(44).height(LINE_HEIGHT).into()
        };
        let time: Element<'a, Message> = tooltip(
            shown,
            container(text(full).size(12))
                .padding(6)
                .style(container::rounded_box),
            tooltip::Position::Bottom,
        )
        .into();
        let gutter = container(time).width(44).padding([2, 0]);
        let main: Element<'a, Message> = if header {
            column![
                text(from)
                    .font(Font {
                        weight: iced::font::Weight::Bold,
                        ..Font::DEFAULT
                    })
                    .size(BODY_SIZE)
                    .style(move |theme: &Theme| text::Style {
                        color: Some(sender_colour(from, theme)),
                    }),
                content
            ]
            .spacing(1)
            .into()
        } else {
            content
        };
        let c = container(row![gutter, main].spacing(6))
            .padding(if header { [6, 6] } else { [1, 6] })
            .width(Fill);
        if from == self.user {
            c.style(own_line).into()
        } else if mentions(body, &self.user) {
            c.style(mention_line).into()
        } else {
            c.into()
        }
    }

    fn pending<'a>(
        &'a self,
        local: u64,
        body: &'a str,
        failed: Option<&'a str>,
        header: bool,
    ) -> Element<'a, Message> {
        // The gutter says the state in a word; why, and Retry, go under
        // the line, where there is room for them.
        let state = match failed {
            Some(_) => text("not sent").size(12).style(text::danger),
            None => text("sending…").size(12).style(text::secondary),
        };
        let why = failed.map(|why| {
            row![
                text(why.to_owned())
                    .size(12)
                    .style(text::danger)
                    .width(Fill),
                press(
                    button(text("Retry").size(12)).padding([1, 8]),
                    Message::Retry(local)
                ),
            ]
            .spacing(6)
            .align_y(Center)
        });
        let name: Element<'a, Message> = if header {
            text(self.user.as_str())
                .font(Font {
                    weight: iced::font::Weight::Bold,
                    ..Font::DEFAULT
                })
                .size(BODY_SIZE)
                .into()
        } else {
            space().width(0).into()
        };
        container(
            row![
                container(state).width(90),
                column![
                    name,
                    text(body)
                        .size(BODY_SIZE)
                        .wrapping(Wrapping::WordOrGlyph)
                        .width(Fill)
                        .style(text::secondary)
                ]
                .push(why)
                .spacing(2)
            ]
            .spacing(6)
            .align_y(Center),
        )
        .padding(if header { [6, 6] } else { [1, 6] })
        .width(Fill)
        .style(own_line)
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(spans: &[Span<'_, String>]) -> Vec<(String, Option<String>)> {
        spans
            .iter()
            .map(|s| (s.text.to_string(), s.link.clone()))
            .collect()
    }

    #[test]
    fn links_are_cut_out_of_bodies_without_trailing_punctuation() {
        assert_eq!(
            texts(&spans("see https://example.org/a?b=1. then http://x.io")),
            vec![
                ("see ".into(), None),
                (
                    "https://example.org/a?b=1".into(),
                    Some("https://example.org/a?b=1".into())
                ),
                (". then ".into(), None),
                ("http://x.io".into(), Some("http://x.io".into())),
            ]
        );
        assert_eq!(
            texts(&spans("no link: httpd, xhttp://a, http:// alone")),
            vec![("no link: httpd, xhttp://a, http:// alone".into(), None)]
        );
        assert_eq!(texts(&spans("")), vec![(String::new(), None)]);
        let wiki = "https://example.org/wiki/Foo_(bar)";
        assert_eq!(
            texts(&spans(&format!("({wiki}).")))[1],
            (wiki.to_string(), Some(wiki.to_string()))
        );
        assert_eq!(
            texts(&spans("(see https://example.org/x)"))[1],
            (
                "https://example.org/x".to_string(),
                Some("https://example.org/x".to_string())
            )
        );
    }

    #[test]
    fn the_connected_green_is_readable_on_both_themes() {
        fn luminance(c: Color) -> f32 {
            let f = |v: f32| {
                if v <= 0.03928 {
                    v / 12.92
                } else {
                    ((v + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b)
        }
        for theme in [Theme::Light, Theme::Dark] {
            let fg = super::super::good(&theme).color.unwrap();
            let bg = theme.extended_palette().background.base.color;
            let (a, b) = (luminance(fg), luminance(bg));
            let ratio = (a.max(b) + 0.05) / (a.min(b) + 0.05);
            assert!(ratio >= 3.0, "{theme:?}: {ratio:.2}:1");
        }
    }

    #[test]
    fn a_mention_is_the_name_as_a_word() {
        assert!(mentions("@erin could you look", "erin"));
        assert!(mentions("thanks, @Erin!", "erin"));
        assert!(!mentions("@erinn is someone else", "erin"));
        assert!(!mentions("mail erin@example.org", "erin"));
        assert!(!mentions("erin without the at", "erin"));
    }

    #[test]
    fn joins_and_leaves_are_said_in_one_sentence() {
        let v = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(notice_text(&v(&["ann"]), &[], &[]), "ann joined");
        assert_eq!(
            notice_text(&v(&["ann", "bob", "cy", "dee", "eve"]), &[], &[]),
            "ann, bob and 3 others joined"
        );
        assert_eq!(
            notice_text(&v(&["ann", "bob"]), &v(&["cy"]), &[]),
            "ann and bob joined · cy left"
        );
        assert_eq!(
            notice_text(&v(&["ann"]), &v(&["cy"]), &v(&["dee"])),
            "ann joined · dee joined and left · cy left"
        );
    }

    #[test]
    fn sender_colours_are_stable_and_differ_between_people() {
        let t = Theme::Light;
        assert_eq!(sender_colour("alice", &t), sender_colour("alice", &t));
        let distinct: std::collections::HashSet<String> = ["alice", "bob", "carol", "dave", "erin"]
            .iter()
            .map(|n| format!("{:?}", sender_colour(n, &t)))
            .collect();
        assert!(distinct.len() >= 3, "{distinct:?}");
    }

    #[test]
    fn estimates_grow_with_the_text_and_shrink_with_the_width() {
        let short = estimate_body("ok", 700.0);
        let long = estimate_body(&"word ".repeat(200), 700.0);
        assert!(long > 5.0 * short);
        assert!(estimate_body(&"word ".repeat(200), 1400.0) < long);
        assert!(estimate_body("a\nb\nc", 700.0) > 2.5 * short - 20.0);
    }
}
