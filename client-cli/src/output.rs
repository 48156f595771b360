//! How events look on stdout: `[room] #seq HH:MM:SS user: text`, or JSON lines.

use std::fmt::Display;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{Local, TimeZone};
use common::client::{Event, RoomList};
use common::frame::{Invitation, Message, Presence, PresenceKind, RoomInfo, RoomKind};
use serde_json::json;

/// Prints events in the chosen format.
pub struct Printer {
    json: bool,
    /// Set once a line could not be written: whoever read stdout has gone
    /// (`client-cli --tail 200 | head`), so the caller should stop.
    gone: AtomicBool,
}

impl Printer {
    pub fn new(json: bool) -> Self {
        Printer {
            json,
            gone: AtomicBool::new(false),
        }
    }

    /// True once stdout can take no more lines; nothing is printed after.
    pub fn gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// Writes one line. `println!` would panic when the reader has closed
    /// the pipe; a closed pipe is how `head` says it has enough, so it ends
    /// the output quietly. Any other failure (a full disk) is said once.
    fn out(&self, line: impl Display) {
        if self.gone() {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
            if e.kind() != ErrorKind::BrokenPipe {
                let _ = writeln!(std::io::stderr(), "client-cli: cannot write to stdout: {e}");
            }
            self.gone.store(true, Ordering::Relaxed);
        }
    }

    pub fn message(&self, m: &Message) {
        if self.json {
            let v = json!({"type": "message", "room": m.room, "seq": m.seq, "ts": m.ts, "from": m.from, "body": m.body});
            self.out(v);
        } else {
            self.out(line(m));
        }
    }

    pub fn presence(&self, p: &Presence) {
        if self.json {
            let kind = format!("{:?}", p.kind).to_lowercase();
            self.out(json!({"type": "presence", "room": p.room, "user": p.user, "kind": kind}));
            return;
        }
        let what = match p.kind {
            PresenceKind::Joined => "joined",
            PresenceKind::Left => "left",
            PresenceKind::Online => "is online",
            PresenceKind::Offline => "has left the chat",
        };
        match &p.room {
            Some(room) => self.out(format_args!("[{room}] * {} {what}", p.user)),
            None => self.out(format_args!("* {} {what}", p.user)),
        }
    }

    /// `* bob invited you to #ops — /join ops to accept, /decline ops to
    /// decline`.
    pub fn invitation(&self, i: &Invitation) {
        let room = &i.room.name;
        if self.json {
            let mut v = invitation_json(i);
            v["type"] = "invited".into();
            self.out(v);
            return;
        }
        self.out(format_args!(
            "* {} invited you to #{room} — /join {room} to accept, /decline {room} to decline",
            i.by
        ));
    }

    /// `* alice set the topic of #ops: pages, deploys`, or `* alice
    /// cleared the topic of #ops`.
    pub fn topic(&self, room: &str, topic: &str, by: &str) {
        if self.json {
            self.out(json!({"type": "topic", "room": room, "topic": topic, "by": by}));
        } else if topic.is_empty() {
            self.out(format_args!("* {by} cleared the topic of #{room}"));
        } else {
            self.out(format_args!(
                "* {by} set the topic of #{room}: {}",
                shown(topic)
            ));
        }
    }

    /// What `/topic` alone says of the current room.
    pub fn current_topic(&self, room: &RoomInfo) {
        let (name, topic) = (&room.name, &room.topic);
        if self.json {
            self.out(json!({"type": "room_topic", "room": name, "topic": topic}));
        } else if room.kind == RoomKind::Direct {
            self.out(format_args!(
                "-- {name} is a direct-message room, which has no topic"
            ));
        } else if topic.is_empty() {
            self.out(format_args!(
                "-- #{name} has no topic; /topic TEXT sets one"
            ));
        } else {
            self.out(format_args!("-- topic of #{name}: {}", shown(topic)));
        }
    }

    /// `/rooms`: one line naming the user's rooms, the public channels and
    /// the invitations, then a line for each of those rooms with a topic.
    /// In JSON, one object with every room's kind, member count and topic.
    pub fn rooms(&self, list: &RoomList) {
        let names =
            |rooms: &[RoomInfo]| -> Vec<String> { rooms.iter().map(|r| r.name.clone()).collect() };
        let mut text = format!(
            "your rooms: {}; public: {}",
            names(&list.joined).join(" "),
            names(&list.public).join(" ")
        );
        if !list.invited.is_empty() {
            let invited: Vec<_> = list
                .invited
                .iter()
                .map(|i| format!("{} (by {})", i.room.name, i.by))
                .collect();
            text.push_str(&format!("; invited to: {}", invited.join(" ")));
        }
        if self.json {
            let rooms = |rooms: &[RoomInfo]| -> Vec<serde_json::Value> {
                rooms.iter().map(room_json).collect()
            };
            let invited: Vec<_> = list.invited.iter().map(invitation_json).collect();
            self.out(json!({
                "type": "rooms",
                "detail": text,
                "joined": rooms(&list.joined),
                "public": rooms(&list.public),
                "invited": invited,
            }));
            return;
        }
        self.out(format_args!("-- {text}"));
        let mut topics: Vec<&RoomInfo> = list
            .joined
            .iter()
            .chain(&list.public)
            .filter(|r| !r.topic.is_empty())
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics.dedup_by(|a, b| a.name == b.name);
        for room in topics {
            self.out(format_args!(
                "-- topic of #{}: {}",
                room.name,
                shown(&room.topic)
            ));
        }
    }

    pub fn event(&self, e: &Event) {
        match e {
            Event::Topic { room, topic, by } => self.topic(room, topic, by),
            // Read with `/topic` and `/rooms` when wanted; every login
            // lists them, which would be noise here.
            Event::Rooms(_) => {}
            Event::Message(m) => self.message(m),
            Event::Presence(p) => self.presence(p),
            Event::Invited(i) => self.invitation(i),
            // Said at login only when some wait: most logins have none.
            Event::Invitations(list) if list.is_empty() => {}
            Event::Invitations(list) => {
                if self.json {
                    let list: Vec<_> = list.iter().map(invitation_json).collect();
                    self.out(json!({"type": "invitations", "invitations": list}));
                    return;
                }
                let rooms: Vec<String> = list
                    .iter()
                    .map(|i| format!("#{} (by {})", i.room.name, i.by))
                    .collect();
                self.out(format_args!(
                    "* invitations waiting: {} — /join ROOM to accept, /decline ROOM to decline",
                    rooms.join(", ")
                ));
            }
            Event::Joined { room, recent, .. } => {
                for m in recent {
                    self.message(m);
                }
                self.info(
                    "joined",
                    room,
                    &format!("you are in {room}; /room {room} to talk there"),
                );
            }
            Event::Left { room } => self.info("left", room, &format!("left {room}")),
            Event::Connected { user, server } => {
                if self.json {
                    let v = json!({"type": "connected", "detail": user, "relay": server});
                    self.out(v);
                } else {
                    self.out(format_args!("-- connected as {user} to {server}"));
                }
            }
            Event::Reconnecting {
                attempt,
                delay,
                reason,
                lost,
                next,
            } => {
                if self.json {
                    let v = json!({"type": "reconnecting", "detail": reason, "lost": lost, "relay": next});
                    self.out(v);
                    return;
                }
                let secs = delay.as_secs_f32();
                match lost {
                    Some(lost) if lost != next => self.out(format_args!(
                        "-- relay {lost} went away ({reason}); trying {next} in {secs:.1} s (attempt {attempt})"
                    )),
                    Some(_) => self.out(format_args!(
                        "-- connection lost ({reason}); reconnecting in {secs:.1} s (attempt {attempt})"
                    )),
                    None => self.out(format_args!(
                        "-- reconnect failed ({reason}); trying {next} in {secs:.1} s (attempt {attempt})"
                    )),
                }
            }
            Event::Failed(e) => self.info("failed", &e.to_string(), &format!("disconnected: {e}")),
        }
    }

    /// A status line: `-- text` for people, `{"type": kind, "detail": ...}` for JSON.
    pub fn info(&self, kind: &str, detail: &str, text: &str) {
        if self.json {
            self.out(json!({"type": kind, "detail": detail}));
        } else {
            self.out(format_args!("-- {text}"));
        }
    }
}

/// An invitation's fields for JSON output.
fn invitation_json(i: &Invitation) -> serde_json::Value {
    json!({"room": i.room.name, "kind": kind_name(i.room.kind), "by": i.by})
}

/// A listed room's fields for JSON output.
fn room_json(r: &RoomInfo) -> serde_json::Value {
    json!({"room": r.name, "kind": kind_name(r.kind), "members": r.members, "topic": r.topic})
}

fn kind_name(kind: RoomKind) -> &'static str {
    match kind {
        RoomKind::Public => "public",
        RoomKind::Private => "private",
        RoomKind::Direct => "direct",
    }
}

/// `[room] #seq HH:MM:SS user: text`, in local time.
pub fn line(m: &Message) -> String {
    let time = Local
        .timestamp_millis_opt(m.ts)
        .single()
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_else(|| "??:??:??".into());
    format!(
        "[{}] #{} {} {}: {}",
        m.room,
        m.seq,
        time,
        m.from,
        shown(&m.body)
    )
}

/// A body as it may reach a terminal: control characters and bidi
/// controls are written as escapes, so a message is one line that cannot
/// forge another (a newline and a fake `[room] #seq … admin:` prefix), move
/// the cursor, set the window title or the clipboard, or reorder what is
/// shown. Tabs stay. JSON output keeps bodies exact; JSON escapes controls.
pub fn shown(body: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{061c}' | '\u{200e}' | '\u{200f}')
    };
    if !body.chars().any(unsafe_char) {
        return body.into();
    }
    let mut out = String::with_capacity(body.len() + 8);
    for c in body.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> Message {
        Message {
            room: "lobby".into(),
            seq: 3,
            id: [0; 16],
            ts: 0,
            from: "mallory".into(),
            body: body.into(),
        }
    }

    #[test]
    fn a_body_cannot_forge_a_line_or_reach_the_terminal() {
        let forged = "hi\n[lobby] #99 12:00:00 admin: re-enter your password";
        let printed = line(&message(forged));
        assert_eq!(printed.lines().count(), 1, "{printed}");
        assert!(
            printed.ends_with("mallory: hi\\n[lobby] #99 12:00:00 admin: re-enter your password")
        );
        for (body, escaped) in [
            ("\u{1b}]0;owned\u{7}", "\\u{1b}]0;owned\\u{7}"),
            ("\u{1b}]52;c;cHduZWQ=\u{7}", "\\u{1b}]52;c;cHduZWQ=\\u{7}"),
            ("erase\r\u{1b}[2K", "erase\\r\\u{1b}[2K"),
            ("abc\u{202e}fed", "abc\\u{202e}fed"),
            ("c1\u{9b}31m", "c1\\u{9b}31m"),
        ] {
            assert_eq!(shown(body), escaped);
        }
    }

    #[test]
    fn a_topic_cannot_forge_a_line_or_reach_the_terminal() {
        // The relay refuses control characters in topics; a bidi override
        // is not one, and is escaped all the same.
        assert_eq!(shown("pages\u{202e}syaled"), "pages\\u{202e}syaled");
        assert_eq!(shown("a\nb"), "a\\nb", "had a relay let one through");
    }

    #[test]
    fn ordinary_text_is_shown_as_it_is() {
        for body in [
            "hello",
            "tab\there",
            "naïve café ☕ 日本語",
            "a\\nb is not a newline",
        ] {
            assert_eq!(shown(body), body);
        }
    }
}
