use std::time::Duration;

use common::client::{Acked, Event as SessionEvent, RequestError};
use common::frame::{ErrorCode, Message as ChatMessage, Presence, PresenceKind};
use iced::widget::text_editor::{Action, Edit};

use super::*;
use crate::connection::{Command, Event as NetEvent};

fn msg(room: &str, seq: u64, from: &str, body: &str) -> ChatMessage {
    ChatMessage {
        room: room.into(),
        seq,
        id: [seq as u8; 16],
        ts: 1_764_000_000_000 + seq as i64,
        from: from.into(),
        body: body.into(),
    }
}

fn live(chat: &mut Chat, m: ChatMessage) -> Outcome {
    chat.on_event(NetEvent::Session(SessionEvent::Message(m)))
}

fn type_text(chat: &mut Chat, s: &str) {
    for c in s.chars() {
        chat.update(Message::Composer(Action::Edit(Edit::Insert(c))));
    }
}

fn chat() -> Chat {
    let mut c = Chat::new(
        "alice".into(),
        "127.0.0.1:4433".into(),
        "127.0.0.1:4433".into(),
    );
    c.on_event(NetEvent::Session(SessionEvent::Joined {
        room: "lobby".into(),
        recent: vec![
            msg("lobby", 1, "bob", "hi"),
            msg("lobby", 2, "alice", "hello"),
        ],
        more: true,
    }));
    c
}

#[test]
fn sending_shows_a_pending_line_until_the_ack_then_exactly_once() {
    let mut c = chat();
    type_text(&mut c, "how are you");
    let out = c.update(Message::Send);
    assert_eq!(
        out.commands,
        vec![Command::Send {
            local: 1,
            room: "lobby".into(),
            body: "how are you".into()
        }]
    );
    assert!(out.follow);
    assert_eq!(c.composer.text().trim(), "", "the composer is cleared");
    assert!(matches!(
        c.rooms["lobby"].lines.last(),
        Some(Line::Pending {
            local: 1,
            failed: None,
            ..
        })
    ));

    // The echo comes first, then the ack: one line, not pending.
    live(&mut c, msg("lobby", 3, "alice", "how are you"));
    c.on_event(NetEvent::Sent {
        local: 1,
        room: "lobby".into(),
        result: Ok(Acked { seq: 3, ts: 0 }),
    });
    let lines = &c.rooms["lobby"].lines;
    assert_eq!(
        lines
            .iter()
            .filter(|l| matches!(l, Line::Message(m) if m.body == "how are you"))
            .count(),
        1
    );
    assert!(!lines.iter().any(|l| matches!(l, Line::Pending { .. })));

    // Ack first, then the echo: still once.
    type_text(&mut c, "second");
    c.update(Message::Send);
    c.on_event(NetEvent::Sent {
        local: 2,
        room: "lobby".into(),
        result: Ok(Acked { seq: 4, ts: 0 }),
    });
    live(&mut c, msg("lobby", 4, "alice", "second"));
    let count = c.rooms["lobby"]
        .lines
        .iter()
        .filter(|l| matches!(l, Line::Message(m) if m.seq == 4))
        .count();
    assert_eq!(count, 1);
}

#[test]
fn empty_and_oversized_input_is_refused_with_a_hint() {
    let mut c = chat();
    type_text(&mut c, "   ");
    assert!(c.update(Message::Send).commands.is_empty());
    assert!(c.hint.as_deref().unwrap().contains("Type a message"));
    c.composer = text_editor::Content::with_text(&"x".repeat(4097));
    assert!(c.update(Message::Send).commands.is_empty());
    assert!(c.hint.as_deref().unwrap().contains("4096"), "{:?}", c.hint);
    assert_eq!(
        c.composer.text().len(),
        4097,
        "the text is kept to be edited"
    );
    type_text(&mut c, "");
    c.update(Message::Composer(Action::Edit(Edit::Backspace)));
    assert!(c.hint.is_none(), "editing clears the hint");
}

#[test]
fn multi_line_messages_are_sent_whole() {
    let mut c = chat();
    c.composer = text_editor::Content::with_text("line one\nline two");
    let out = c.update(Message::Send);
    assert_eq!(
        out.commands,
        vec![Command::Send {
            local: 1,
            room: "lobby".into(),
            body: "line one\nline two".into()
        }]
    );
}

#[test]
fn a_refused_send_stays_visible_with_the_reason() {
    let mut c = chat();
    type_text(&mut c, "nope");
    c.update(Message::Send);
    let refused = RequestError::Refused {
        code: ErrorCode::NotMember,
        message: "you are not a member of lobby".into(),
    };
    c.on_event(NetEvent::Sent {
        local: 1,
        room: "lobby".into(),
        result: Err(refused),
    });
    assert!(
        matches!(c.rooms["lobby"].lines.last(), Some(Line::Pending { failed: Some(why), .. }) if why.contains("not a member"))
    );
}

#[test]
fn unread_counts_grow_in_other_rooms_and_clear_on_switch() {
    let mut c = chat();
    c.on_event(NetEvent::Session(SessionEvent::Joined {
        room: "dev".into(),
        recent: vec![],
        more: false,
    }));
    live(&mut c, msg("dev", 1, "bob", "build is red"));
    live(&mut c, msg("dev", 2, "bob", "fixed"));
    live(&mut c, msg("dev", 3, "alice", "thanks (from my phone)"));
    assert_eq!(
        c.rooms["dev"].unread, 2,
        "own messages from other devices are not unread"
    );
    assert_eq!(c.unread_total(), 2);
    live(&mut c, msg("lobby", 3, "bob", "here"));
    assert_eq!(c.rooms["lobby"].unread, 0, "the current room is being read");

    let out = c.update(Message::SelectRoom("dev".into()));
    assert_eq!(c.current, "dev");
    assert_eq!(c.rooms["dev"].unread, 0);
    assert!(out.follow);
    assert_eq!(out.commands, vec![Command::Members("dev".into())]);
}

#[test]
fn repeated_and_out_of_order_messages_are_placed_once_in_sequence() {
    let mut c = chat();
    live(&mut c, msg("lobby", 5, "bob", "five"));
    live(&mut c, msg("lobby", 5, "bob", "five"));
    c.on_event(NetEvent::Older {
        room: "lobby".into(),
        messages: vec![msg("lobby", 0, "bob", "zero")],
        more: false,
    });
    let seqs: Vec<u64> = c.rooms["lobby"]
        .lines
        .iter()
        .filter_map(|l| {
            if let Line::Message(m) = l {
                Some(m.seq)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(seqs, vec![0, 1, 2, 5]);
    assert!(!c.rooms["lobby"].more_before);
}

#[test]
fn scrolling_up_marks_new_messages_and_the_top_loads_older_pages() {
    let mut c = chat();
    c.scrolled(0.5, true);
    let out = live(&mut c, msg("lobby", 3, "bob", "while you read"));
    assert!(!out.follow, "do not yank the view");
    assert!(c.rooms["lobby"].new_below);
    let out = c.update(Message::JumpToBottom);
    assert!(out.follow);
    assert!(!c.rooms["lobby"].new_below);

    let out = c.scrolled(0.0, true);
    assert_eq!(
        out.commands,
        vec![Command::Older {
            room: "lobby".into(),
            before: 1
        }]
    );
    assert!(c.rooms["lobby"].loading_older);
    assert!(
        c.scrolled(0.0, true).commands.is_empty(),
        "one page at a time"
    );
    c.on_event(NetEvent::Older {
        room: "lobby".into(),
        messages: vec![],
        more: false,
    });
    assert!(
        c.scrolled(0.0, true).commands.is_empty(),
        "nothing before the first message"
    );

    c.scrolled(1.0, true);
    assert!(live(&mut c, msg("lobby", 4, "bob", "at the bottom")).follow);
}

#[test]
fn presence_is_shown_inline_and_updates_members() {
    let mut c = chat();
    c.on_event(NetEvent::Members {
        room: "lobby".into(),
        members: vec![
            common::frame::Member {
                user: "alice".into(),
                online: true,
            },
            common::frame::Member {
                user: "bob".into(),
                online: true,
            },
        ],
    });
    c.on_event(NetEvent::Session(SessionEvent::Presence(Presence {
        room: None,
        user: "bob".into(),
        kind: PresenceKind::Offline,
    })));
    assert!(
        matches!(c.rooms["lobby"].lines.last(), Some(Line::Notice { text, .. }) if text == "bob has left the chat")
    );
    assert!(
        !c.members["lobby"]
            .iter()
            .find(|m| m.user == "bob")
            .unwrap()
            .online
    );
}

#[test]
fn connection_state_follows_the_session() {
    let mut c = chat();
    c.on_event(NetEvent::Session(SessionEvent::Reconnecting {
        attempt: 2,
        delay: Duration::from_secs(4),
        reason: "relay shutting down".into(),
        lost: Some("127.0.0.1:4433".into()),
        next: "127.0.0.1:4433".into(),
    }));
    assert!(matches!(c.status, Status::Reconnecting { attempt: 2, .. }));
    assert_eq!(c.retry_in().map(|d| d.as_secs()), Some(4));
    c.now += Duration::from_secs(3);
    assert_eq!(c.retry_in().map(|d| d.as_secs_f32().ceil() as u64), Some(1));
    let out = c.on_event(NetEvent::Session(SessionEvent::Connected {
        user: "alice".into(),
        server: "127.0.0.1:4433".into(),
    }));
    assert_eq!(c.status, Status::Connected);
    assert_eq!(
        out.commands,
        vec![Command::Members("lobby".into())],
        "member list refreshed after a reconnect"
    );
}

#[test]
fn a_move_to_another_relay_changes_the_relay_in_use() {
    let mut c = chat();
    c.server = "127.0.0.1:4433,127.0.0.2:4433".into();
    c.on_event(NetEvent::Session(SessionEvent::Reconnecting {
        attempt: 1,
        delay: Duration::from_millis(300),
        reason: "relay shutting down".into(),
        lost: Some("127.0.0.1:4433".into()),
        next: "127.0.0.2:4433".into(),
    }));
    assert_eq!(
        c.relay, "127.0.0.1:4433",
        "the last one used, until connected"
    );
    c.on_event(NetEvent::Session(SessionEvent::Connected {
        user: "alice".into(),
        server: "127.0.0.2:4433".into(),
    }));
    assert_eq!(c.status, Status::Connected);
    assert_eq!(c.relay, "127.0.0.2:4433");
    assert_eq!(
        c.server, "127.0.0.1:4433,127.0.0.2:4433",
        "the list is kept"
    );
}

#[test]
fn joining_validates_names_and_leaving_returns_to_lobby() {
    let mut c = chat();
    c.update(Message::JoinInput("Bad Name!".into()));
    assert!(c.update(Message::Join).commands.is_empty());
    assert!(c.notice.is_some());
    c.update(Message::JoinInput("Dev".into()));
    assert_eq!(
        c.update(Message::Join).commands,
        vec![Command::Join("dev".into())],
        "lower-cased"
    );
    c.on_event(NetEvent::Opened(common::frame::RoomInfo {
        name: "dev".into(),
        kind: common::frame::RoomKind::Public,
        members: 2,
        latest: 0,
    }));
    assert_eq!(c.current, "dev");
    c.on_event(NetEvent::Session(SessionEvent::Left { room: "dev".into() }));
    assert_eq!(c.current, "lobby");
    assert!(!c.rooms.contains_key("dev"));
}

#[test]
fn dms_are_named_after_the_other_person() {
    let c = chat();
    assert_eq!(c.display_name("@alice+bob"), "@bob");
    assert_eq!(c.display_name("@alice+zed"), "@zed");
    assert_eq!(c.display_name("lobby"), "#lobby");
}

#[test]
fn a_refused_line_can_be_retried_as_it_was() {
    let mut c = chat();
    type_text(&mut c, "try me");
    c.update(Message::Send);
    c.on_event(NetEvent::Sent {
        local: 1,
        room: "lobby".into(),
        result: Err(RequestError::NotConnected),
    });
    let out = c.update(Message::Retry(1));
    assert_eq!(
        out.commands,
        vec![Command::Send {
            local: 1,
            room: "lobby".into(),
            body: "try me".into()
        }]
    );
    assert!(matches!(
        c.rooms["lobby"].lines.last(),
        Some(Line::Pending {
            local: 1,
            failed: None,
            ..
        })
    ));
    assert!(
        c.update(Message::Retry(1)).commands.is_empty(),
        "only refused lines are retried"
    );
}

#[test]
fn someone_new_coming_online_refreshes_the_member_list() {
    let mut c = chat();
    c.on_event(NetEvent::Members {
        room: "lobby".into(),
        members: vec![common::frame::Member {
            user: "alice".into(),
            online: true,
        }],
    });
    let online = |user: &str| {
        NetEvent::Session(SessionEvent::Presence(Presence {
            room: None,
            user: user.into(),
            kind: PresenceKind::Online,
        }))
    };
    assert_eq!(
        c.on_event(online("dave")).commands,
        vec![Command::Members("lobby".into())]
    );
    assert!(
        c.on_event(online("alice")).commands.is_empty(),
        "already listed: updated in place"
    );
}

#[test]
fn a_relay_of_the_list_not_trusted_yet_says_so() {
    let mut c = chat();
    c.on_event(NetEvent::Session(SessionEvent::Failed(
        common::client::ConnectError::Trust(common::trust::TrustFailure::Unknown {
            server: "127.0.0.2:4433".into(),
            fingerprint: "SHA256:00".into(),
            file: "known_relays".into(),
        }),
    )));
    match &c.status {
        Status::Offline(why) => assert!(
            why.contains("127.0.0.2:4433 is not trusted yet") && !why.contains("changed"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
}
