//! The interactive loop: events print as they come; a line is a message to
//! the current room or a `/command`.

use std::collections::HashSet;

use common::client::{Client, Event};
use common::frame::Page;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::exit;
use crate::output::Printer;

/// `/topic -` clears the current room's topic (a topic of just `-` cannot
/// be set from here).
const CLEAR_TOPIC: &str = "-";

const HELP: &str =
    "commands: /join ROOM  /create ROOM [private]  /leave  /invite USER  /decline ROOM  /rooms  \
/topic [TEXT|-]  /who  /dm USER TEXT  /history N  /room ROOM  /quit";

pub async fn run(
    client: &Client,
    mut events: UnboundedReceiver<Event>,
    room: &str,
    printer: &Printer,
) -> u8 {
    let mut current = room.to_owned();
    // The rooms the user is in, so that declining one of them does not
    // leave it (a decline is a `Leave`).
    let mut rooms = HashSet::new();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    printer.info("help", HELP, HELP);
    loop {
        if printer.gone() {
            return exit::STDOUT_GONE;
        }
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Failed(e)) => {
                    printer.event(&Event::Failed(e.clone()));
                    return match e {
                        common::client::ConnectError::Auth { .. } => exit::AUTH,
                        _ => exit::CONNECTION,
                    };
                }
                Some(event) => {
                    match &event {
                        Event::Joined { room, .. } => {
                            rooms.insert(room.clone());
                        }
                        Event::Left { room } => {
                            rooms.remove(room);
                        }
                        _ => {}
                    }
                    printer.event(&event);
                }
                None => return exit::CONNECTION,
            },
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    if !command(client, printer, &mut current, &rooms, line.trim_end()).await {
                        return exit::OK;
                    }
                }
                _ => return exit::OK,
            },
        }
    }
}

/// Handles one input line; false means quit.
async fn command(
    client: &Client,
    printer: &Printer,
    current: &mut String,
    rooms: &HashSet<String>,
    line: &str,
) -> bool {
    let (cmd, rest) = match line.strip_prefix('/') {
        Some(c) => c
            .split_once(' ')
            .map(|(c, r)| (c, r.trim()))
            .unwrap_or((c, "")),
        None => {
            if !line.trim().is_empty() {
                report(printer, client.send(current, line).await.map(|_| ()));
            }
            return true;
        }
    };
    match cmd {
        "quit" | "exit" => return false,
        "join" if !rest.is_empty() => match client.join(rest).await {
            Ok(info) => switch(printer, current, info.name),
            Err(e) => report(printer, Err(e)),
        },
        "create" if !rest.is_empty() => {
            let (name, private) = match rest.split_once(' ') {
                Some((n, flag)) => (n, flag.trim() == "private"),
                None => (rest, false),
            };
            match client.create_room(name, private).await {
                Ok(info) => switch(printer, current, info.name),
                Err(e) => report(printer, Err(e)),
            }
        }
        "room" if !rest.is_empty() => switch(printer, current, rest.to_owned()),
        "leave" => {
            let room = if rest.is_empty() {
                current.clone()
            } else {
                rest.to_owned()
            };
            report(printer, client.leave(&room).await);
            if room == *current {
                *current = common::names::LOBBY.to_owned();
            }
        }
        "invite" if !rest.is_empty() => report(printer, client.invite(current, rest).await),
        "decline" if !rest.is_empty() => {
            let room = rest.trim_start_matches('#');
            if rooms.contains(room) {
                let text = format!("you are in #{room}; /leave {room} to leave it");
                printer.info("error", &text, &text);
                return true;
            }
            match client.decline(room).await {
                Ok(()) => printer.info("declined", room, &format!("declined #{room}")),
                Err(e) => report(printer, Err(e)),
            }
        }
        "rooms" => match client.room_list().await {
            Ok(list) => printer.rooms(&list),
            Err(e) => report(printer, Err(e)),
        },
        // The change itself is printed when the relay tells every member,
        // this session included.
        "topic" if rest == CLEAR_TOPIC => report(printer, client.set_topic(current, "").await),
        "topic" if !rest.is_empty() => report(printer, client.set_topic(current, rest).await),
        "topic" => match client.room_list().await {
            Ok(list) => match list.joined.iter().find(|r| r.name == *current) {
                Some(room) => printer.current_topic(room),
                None => {
                    let text = format!("you are not in #{current}; /join {current} first");
                    printer.info("error", &text, &text);
                }
            },
            Err(e) => report(printer, Err(e)),
        },
        "who" => match client.members(current).await {
            Ok(members) => {
                let list: Vec<String> = members
                    .iter()
                    .map(|m| {
                        if m.online {
                            format!("{}*", m.user)
                        } else {
                            m.user.clone()
                        }
                    })
                    .collect();
                let text = format!("{current}: {} (* online)", list.join(" "));
                printer.info("who", &text, &text);
            }
            Err(e) => report(printer, Err(e)),
        },
        "dm" => match rest.split_once(' ') {
            Some((user, text)) => match client.open_dm(user).await {
                Ok(info) => report(printer, client.send(&info.name, text).await.map(|_| ())),
                Err(e) => report(printer, Err(e)),
            },
            None => printer.info("error", "usage", "usage: /dm USER TEXT"),
        },
        "history" => {
            let n = rest
                .parse::<u16>()
                .unwrap_or(common::limits::DEFAULT_PAGE)
                .clamp(1, common::limits::MAX_PAGE);
            match client.history(current, Page::Latest, n).await {
                Ok((messages, _)) => messages.iter().for_each(|m| printer.message(m)),
                Err(e) => report(printer, Err(e)),
            }
        }
        _ => printer.info("help", HELP, HELP),
    }
    true
}

fn switch(printer: &Printer, current: &mut String, room: String) {
    printer.info("room", &room, &format!("now talking in {room}"));
    *current = room;
}

fn report(printer: &Printer, r: Result<(), common::client::RequestError>) {
    if let Err(e) = r {
        printer.info("error", &e.to_string(), &format!("error: {e}"));
    }
}
