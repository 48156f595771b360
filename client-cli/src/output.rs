//! How events look on stdout: `[room] #seq HH:MM:SS user: text`, or JSON lines.

use chrono::{Local, TimeZone};
use common::client::Event;
use common::frame::{Message, Presence, PresenceKind};
use serde_json::json;

/// Prints events in the chosen format.
pub struct Printer {
    json: bool,
}

impl Printer {
    pub fn new(json: bool) -> Self {
        Printer { json }
    }

    pub fn message(&self, m: &Message) {
        if self.json {
            let v = json!({"type": "message", "room": m.room, "seq": m.seq, "ts": m.ts, "from": m.from, "body": m.body});
            println!("{v}");
        } else {
            println!("{}", line(m));
        }
    }

    pub fn presence(&self, p: &Presence) {
        if self.json {
            let kind = format!("{:?}", p.kind).to_lowercase();
            println!(
                "{}",
                json!({"type": "presence", "room": p.room, "user": p.user, "kind": kind})
            );
            return;
        }
        let what = match p.kind {
            PresenceKind::Joined => "joined",
            PresenceKind::Left => "left",
            PresenceKind::Online => "is online",
            PresenceKind::Offline => "has left the chat",
        };
        match &p.room {
            Some(room) => println!("[{room}] * {} {what}", p.user),
            None => println!("* {} {what}", p.user),
        }
    }

    pub fn event(&self, e: &Event) {
        match e {
            Event::Message(m) => self.message(m),
            Event::Presence(p) => self.presence(p),
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
                    println!("{v}");
                } else {
                    println!("-- connected as {user} to {server}");
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
                    println!("{v}");
                    return;
                }
                let secs = delay.as_secs_f32();
                match lost {
                    Some(lost) if lost != next => println!(
                        "-- relay {lost} went away ({reason}); trying {next} in {secs:.1} s (attempt {attempt})"
                    ),
                    Some(_) => println!(
                        "-- connection lost ({reason}); reconnecting in {secs:.1} s (attempt {attempt})"
                    ),
                    None => println!(
                        "-- reconnect failed ({reason}); trying {next} in {secs:.1} s (attempt {attempt})"
                    ),
                }
            }
            Event::Failed(e) => self.info("failed", &e.to_string(), &format!("disconnected: {e}")),
        }
    }

    /// A status line: `-- text` for people, `{"type": kind, "detail": ...}` for JSON.
    pub fn info(&self, kind: &str, detail: &str, text: &str) {
        if self.json {
            println!("{}", json!({"type": kind, "detail": detail}));
        } else {
            println!("-- {text}");
        }
    }
}

/// `[room] #seq HH:MM:SS user: text`, in local time.
pub fn line(m: &Message) -> String {
    let time = Local
        .timestamp_millis_opt(m.ts)
        .single()
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_else(|| "??:??:??".into());
    format!("[{}] #{} {} {}: {}", m.room, m.seq, time, m.from, m.body)
}
