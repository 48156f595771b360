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

/// A viewport of 500 px over 10,000 px of lines, at `y` (0 = top, 1 = bottom).
fn view_at(y: f32) -> Scroll {
    Scroll {
        from_top: y * 9_500.0,
        from_bottom: (1.0 - y) * 9_500.0,
        height: 500.0,
        width: 700.0,
        content: 10_000.0,
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
    c.scrolled(view_at(0.5));
    let out = live(&mut c, msg("lobby", 3, "bob", "while you read"));
    assert!(!out.follow, "do not yank the view");
    assert!(c.rooms["lobby"].new_below);
    let out = c.update(Message::JumpToBottom);
    assert!(out.follow);
    assert!(!c.rooms["lobby"].new_below);

    let out = c.scrolled(view_at(0.0));
    assert_eq!(
        out.commands,
        vec![Command::Older {
            room: "lobby".into(),
            before: 1
        }]
    );
    assert!(c.rooms["lobby"].loading_older);
    assert!(
        c.scrolled(view_at(0.0)).commands.is_empty(),
        "one page at a time"
    );
    c.on_event(NetEvent::Older {
        room: "lobby".into(),
        messages: vec![],
        more: false,
    });
    assert!(
        c.scrolled(view_at(0.0)).commands.is_empty(),
        "nothing before the first message"
    );

    c.scrolled(view_at(1.0));
    assert!(live(&mut c, msg("lobby", 4, "bob", "at the bottom")).follow);
}

#[test]
fn presence_is_state_and_joins_are_folded_into_one_notice() {
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
    let before = c.rooms["lobby"].lines.len();
    for kind in [
        PresenceKind::Offline,
        PresenceKind::Online,
        PresenceKind::Offline,
    ] {
        c.on_event(NetEvent::Session(SessionEvent::Presence(Presence {
            room: None,
            user: "bob".into(),
            kind,
        })));
    }
    assert_eq!(
        c.rooms["lobby"].lines.len(),
        before,
        "going on- or offline is not a line"
    );
    assert!(
        !c.members["lobby"]
            .iter()
            .find(|m| m.user == "bob")
            .unwrap()
            .online
    );
    let presence = |user: &str, kind| {
        NetEvent::Session(SessionEvent::Presence(Presence {
            room: Some("lobby".into()),
            user: user.into(),
            kind,
        }))
    };
    for user in ["carol", "dave", "erin", "frank"] {
        c.on_event(presence(user, PresenceKind::Joined));
    }
    c.on_event(presence("dave", PresenceKind::Left));
    c.on_event(presence("gus", PresenceKind::Left));
    let notices: Vec<_> = c.rooms["lobby"]
        .lines
        .iter()
        .filter_map(|l| match l {
            Line::Notice {
                joined,
                left,
                passed,
                ..
            } => Some((joined.clone(), left.clone(), passed.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        notices,
        vec![(
            vec!["carol".to_string(), "erin".into(), "frank".into()],
            vec!["gus".to_string()],
            vec!["dave".to_string()]
        )],
        "one notice, which says dave came and went"
    );
    // Someone who left and came back is a member as before: not mentioned.
    c.on_event(presence("gus", PresenceKind::Joined));
    // Came, went and came again: joined.
    c.on_event(presence("dave", PresenceKind::Joined));
    match c.rooms["lobby"].lines.last() {
        Some(Line::Notice {
            joined,
            left,
            passed,
            ..
        }) => {
            assert_eq!(joined, &["carol", "erin", "frank", "dave"]);
            assert!(left.is_empty() && passed.is_empty(), "{left:?} {passed:?}");
        }
        other => panic!("{other:?}"),
    }
    // A message in between starts a new notice.
    live(&mut c, msg("lobby", 9, "bob", "hi all"));
    c.on_event(presence("hal", PresenceKind::Joined));
    assert!(matches!(
        c.rooms["lobby"].lines.last(),
        Some(Line::Notice { joined, .. }) if joined == &["hal".to_string()]
    ));
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
    assert!(
        c.join_hint
            .as_deref()
            .is_some_and(|h| h.starts_with("Room names")),
        "{:?}",
        c.join_hint
    );
    assert_eq!(c.notice, None, "said by the box, not over the conversation");
    c.update(Message::JoinInput("Dev".into()));
    assert_eq!(c.join_hint, None, "gone once the name is edited");
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
        topic: String::new(),
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

fn page(room: &str, seqs: std::ops::Range<u64>) -> Vec<ChatMessage> {
    seqs.map(|s| msg(room, s, "bob", "a line of a long room"))
        .collect()
}

fn seqs(c: &Chat) -> Vec<u64> {
    c.rooms["lobby"]
        .lines
        .iter()
        .filter_map(|l| match l {
            Line::Message(m) => Some(m.seq),
            _ => None,
        })
        .collect()
}

#[test]
fn following_a_busy_room_keeps_a_bounded_number_of_lines() {
    let mut c = chat();
    for seq in 10..10 + 5 * KEEP as u64 {
        live(&mut c, msg("lobby", seq, "bob", "busy"));
    }
    let kept = seqs(&c);
    assert!(kept.len() <= KEEP, "{} lines kept", kept.len());
    assert_eq!(*kept.last().unwrap(), 9 + 5 * KEEP as u64);
    assert!(
        c.rooms["lobby"].more_before,
        "the rest can be paged back in"
    );
    // The heights of lines let go are forgotten too.
    assert!(c.rooms["lobby"].heights.len() <= KEEP);
}

#[test]
fn reading_far_back_lets_the_newest_lines_go_and_pages_them_back_in() {
    let mut c = chat();
    c.rooms.insert("lobby".into(), Room::default());
    let top = 100_000;
    c.on_event(NetEvent::Session(SessionEvent::Joined {
        room: "lobby".into(),
        recent: page("lobby", top - 50..top),
        more: true,
    }));
    // Scroll back page by page, as the wheel does.
    let mut before = top - 50;
    let at_top = Scroll {
        from_top: 0.0,
        from_bottom: 1e7,
        height: 500.0,
        width: 700.0,
        content: 1e7 + 500.0,
    };
    for _ in 0..20 {
        let out = c.scrolled(at_top);
        assert_eq!(
            out.commands,
            vec![Command::Older {
                room: "lobby".into(),
                before
            }]
        );
        c.on_event(NetEvent::Older {
            room: "lobby".into(),
            messages: page("lobby", before - 50..before),
            more: true,
        });
        before -= 50;
    }
    let room = &c.rooms["lobby"];
    assert!(room.lines.len() <= KEEP, "{} lines kept", room.lines.len());
    assert!(room.more_after, "newer lines were let go");
    assert!(room.below > 0.0, "their room on screen stays");
    let last = room.last_seq().unwrap();
    assert!(last < top - 1);

    // A line arriving now is not shown at the far end; the button says so.
    live(&mut c, msg("lobby", top, "carol", "meanwhile"));
    assert!(!seqs(&c).contains(&top));
    assert!(c.rooms["lobby"].new_below);

    // Scrolling down to the end of what is kept pages newer lines in.
    let mut end = view_at(1.0);
    end.from_bottom = c.rooms["lobby"].below;
    let out = c.scrolled(end);
    assert_eq!(
        out.commands,
        vec![Command::Newer {
            room: "lobby".into(),
            after: last
        }]
    );
    assert!(c.scrolled(end).commands.is_empty(), "one page at a time");
    c.on_event(NetEvent::Newer {
        room: "lobby".into(),
        messages: page("lobby", last + 1..last + 51),
        more: true,
    });
    assert_eq!(c.rooms["lobby"].last_seq(), Some(last + 50));
    assert!(c.rooms["lobby"].more_after);
    assert!(
        c.rooms["lobby"].lines.len() <= KEEP,
        "coming back down lets the oldest go"
    );

    // "New messages below" starts again from the newest page.
    let out = c.update(Message::JumpToBottom);
    assert!(out.commands.contains(&Command::Older {
        room: "lobby".into(),
        before: Seq::MAX
    }));
    let room = &c.rooms["lobby"];
    assert!(room.lines.is_empty() && !room.more_after && room.at_bottom);
    c.on_event(NetEvent::Older {
        room: "lobby".into(),
        messages: page("lobby", top - 49..top + 1),
        more: true,
    });
    assert_eq!(c.rooms["lobby"].last_seq(), Some(top));
    live(&mut c, msg("lobby", top + 1, "carol", "and now"));
    assert_eq!(c.rooms["lobby"].last_seq(), Some(top + 1));
}

#[test]
fn sending_while_far_back_goes_to_the_newest_lines() {
    let mut c = chat();
    {
        let r = c.rooms.get_mut("lobby").unwrap();
        r.more_after = true;
        r.at_bottom = false;
    }
    type_text(&mut c, "back to the present");
    let out = c.update(Message::Send);
    assert_eq!(
        out.commands[0],
        Command::Older {
            room: "lobby".into(),
            before: Seq::MAX
        }
    );
    assert!(matches!(out.commands[1], Command::Send { .. }));
    assert!(matches!(
        c.rooms["lobby"].lines.as_slice(),
        [Line::Pending { .. }]
    ));
}

#[test]
fn a_double_clicked_line_is_selected_whole_and_copied() {
    let mut c = chat();
    let key = c.rooms["lobby"].lines[0].key();
    let out = c.update(Message::Select(key));
    assert_eq!(out.focus, Some(view::SELECTION));
    // Typing into it changes nothing: it is read-only.
    c.update(Message::SelectionAction(Action::Edit(Edit::Insert('x'))));
    let out = c.update(Message::CopySelection);
    assert_eq!(out.copy.as_deref(), Some("hi"));
    let out = c.update(Message::Deselect);
    assert!(c.selection.is_none());
    assert_eq!(out.focus, Some(view::COMPOSER));
    // Escape ends a selection too.
    c.update(Message::Select(key));
    let escape = c.shortcut(
        &iced::keyboard::Key::Named(iced::keyboard::key::Named::Escape),
        iced::keyboard::Modifiers::default(),
        true,
    );
    assert!(matches!(escape, Some(Message::Close)));
    let out = c.update(Message::Close);
    assert!(c.selection.is_none());
    assert_eq!(out.focus, Some(view::COMPOSER));
    assert_eq!(
        c.update(Message::OpenLink("https://example.org".into()))
            .open
            .as_deref(),
        Some("https://example.org")
    );
}

#[test]
fn each_room_keeps_its_own_draft() {
    let mut c = chat();
    c.rooms.insert("dev".into(), Room::default());
    type_text(&mut c, "meant for the lobby");
    c.update(Message::SelectRoom("dev".into()));
    assert_eq!(c.composer.text().trim_end(), "", "not carried to #dev");
    type_text(&mut c, "for dev");
    c.update(Message::SelectRoom("lobby".into()));
    assert_eq!(c.composer.text().trim_end(), "meant for the lobby");
    // Typing goes on at the end of the draft.
    type_text(&mut c, "!");
    assert_eq!(c.composer.text().trim_end(), "meant for the lobby!");
    c.update(Message::SelectRoom("dev".into()));
    assert_eq!(c.composer.text().trim_end(), "for dev");
}

#[test]
fn lines_the_stopped_session_had_not_confirmed_say_so_and_can_be_retried() {
    let mut c = chat();
    type_text(&mut c, "in flight");
    c.update(Message::Send);
    c.on_event(NetEvent::Session(SessionEvent::Failed(
        common::client::ConnectError::Auth {
            code: ErrorCode::BadCredentials,
            message: "wrong password".into(),
        },
    )));
    let failed = |c: &Chat| -> Vec<(u64, Option<String>)> {
        c.rooms["lobby"]
            .lines
            .iter()
            .filter_map(|l| match l {
                Line::Pending { local, failed, .. } => Some((*local, failed.clone())),
                _ => None,
            })
            .collect()
    };
    let lines = failed(&c);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].1.as_deref().unwrap().contains("Retry"),
        "{lines:?}"
    );

    // Typed while offline: kept, marked, never handed to a dead session.
    type_text(&mut c, "typed while offline");
    let out = c.update(Message::Send);
    assert!(out.commands.is_empty(), "{:?}", out.commands);
    assert_eq!(failed(&c).len(), 2);
    // The login was refused: logging in again is the way back, not Reconnect.
    assert!(failed(&c)[1].1.as_deref().unwrap().contains("log in again"));
    assert!(c.update(Message::Retry(lines[0].0)).commands.is_empty());

    // Connected again: Retry sends it.
    c.reconnecting();
    c.on_event(NetEvent::Session(SessionEvent::Connected {
        user: "alice".into(),
        server: "127.0.0.1:4433".into(),
    }));
    let out = c.update(Message::Retry(lines[0].0));
    assert!(matches!(
        out.commands.as_slice(),
        [Command::Send { body, .. }] if body == "in flight"
    ));
}

#[test]
fn lines_arriving_below_a_reader_do_not_move_what_they_read() {
    let mut c = chat();
    c.scrolled(view_at(0.5));
    let out = live(&mut c, msg("lobby", 3, "bob", "while you read"));
    assert!(!out.follow);
    // The next report shows the content grown below, the view not yet moved.
    let mut grown = view_at(0.5);
    grown.content += 42.0;
    let out = c.scrolled(grown);
    assert_eq!(out.scroll_by, Some(42.0), "back onto what was read");
    // Another line before the view has moved: held from where it will be.
    live(&mut c, msg("lobby", 5, "bob", "and another"));
    let mut again = grown;
    again.content += 30.0;
    assert_eq!(c.scrolled(again).scroll_by, Some(72.0));
    // Once moved, nothing more.
    again.from_bottom += 72.0;
    assert_eq!(c.scrolled(again).scroll_by, None);
    let mut grown = again;
    // The reader scrolling on their own is never corrected.
    grown.from_bottom -= 300.0;
    assert_eq!(c.scrolled(grown).scroll_by, None);
    // At the bottom, new lines are followed instead.
    c.scrolled(view_at(1.0));
    let out = live(&mut c, msg("lobby", 4, "bob", "at the bottom"));
    assert!(out.follow);
    assert!(c.rooms["lobby"].hold.is_none());
}

#[test]
fn escape_closes_the_dialog_on_top_and_otherwise_brings_back_the_cursor() {
    use iced::keyboard::{key::Named, Key as K, Modifiers};
    let mut c = chat();
    let escape = |c: &Chat| c.shortcut(&K::Named(Named::Escape), Modifiers::default(), true);
    c.update(Message::BrowseRooms);
    assert!(c.browser.is_some());
    let m = escape(&c).expect("Escape is a shortcut");
    let out = c.update(m);
    assert!(c.browser.is_none(), "the browser closes");
    assert_eq!(out.focus, Some(view::COMPOSER));
    c.update(Message::InviteOpen);
    if c.invite.is_some() {
        let m = escape(&c).unwrap();
        c.update(m);
        assert!(c.invite.is_none(), "the invitation form closes");
    }
    // Nothing open: the cursor goes back to the composer.
    let m = escape(&c).unwrap();
    assert_eq!(c.update(m).focus, Some(view::COMPOSER));
}

#[test]
fn a_mention_in_another_room_is_counted_apart_until_it_is_opened() {
    let mut c = chat();
    c.rooms.insert("dev".into(), Room::default());
    live(&mut c, msg("dev", 1, "bob", "build is red"));
    live(&mut c, msg("dev", 2, "bob", "@alice can you look?"));
    live(&mut c, msg("dev", 3, "alice", "@alice note to self"));
    assert_eq!((c.rooms["dev"].unread, c.rooms["dev"].mentions), (2, 1));
    c.update(Message::SelectRoom("dev".into()));
    assert_eq!((c.rooms["dev"].unread, c.rooms["dev"].mentions), (0, 0));
}

#[test]
fn the_reconnect_countdown_starts_at_the_delay_however_long_ago_the_last_tick_was() {
    let mut c = chat();
    // Ticks run only while reconnecting: after an hour online the last
    // one is an hour old.
    c.now = Instant::now() - Duration::from_secs(3600);
    c.on_event(NetEvent::Session(SessionEvent::Reconnecting {
        attempt: 1,
        delay: Duration::from_secs(4),
        reason: "connection lost".into(),
        lost: None,
        next: "127.0.0.1:4433".into(),
    }));
    // The first tick after it.
    c.now = Instant::now();
    let left = c.retry_in().expect("reconnecting");
    assert!(left > Duration::from_secs(3), "{left:?}");
}

#[test]
fn a_room_opened_by_keys_is_brought_into_sight_in_the_sidebar_and_a_clicked_one_is_left_alone() {
    let mut c = chat();
    for room in ["a", "b", "c", "d"] {
        c.rooms.entry(room.into()).or_default();
    }
    // Order: a b c d lobby.
    let out = c.update(Message::StepRoom(-1));
    assert_eq!(c.current, "d");
    assert_eq!(out.reveal, Some(0.75));
    let out = c.update(Message::StepRoom(1));
    assert_eq!(c.current, "lobby");
    assert_eq!(out.reveal, Some(1.0));
    let out = c.update(Message::SelectRoom("a".into()));
    assert_eq!(c.current, "a");
    assert_eq!(out.reveal, None);
}
