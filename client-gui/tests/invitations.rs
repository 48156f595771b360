//! Invitations in the window: listed in the sidebar at login and as they
//! come, each with who sent it, accepted (joined) or declined with a click.

mod window;

use client_gui::connection::{Command, Event as NetEvent};
use common::client::Event as SessionEvent;
use common::frame::{Invitation, RoomInfo, RoomKind};
use window::Window;

fn invitation(room: &str, kind: RoomKind, by: &str) -> Invitation {
    Invitation {
        room: RoomInfo {
            name: room.into(),
            kind,
            members: 3,
            latest: 12,
            topic: String::new(),
        },
        by: by.into(),
    }
}

fn ops() -> Invitation {
    invitation("ops", RoomKind::Private, "bob")
}

fn dev() -> Invitation {
    invitation("dev", RoomKind::Public, "carol")
}

/// A chat told at login of an invitation to `ops` from bob and, newer, to
/// `dev` from carol.
fn invited() -> Window {
    let mut w = Window::chatting();
    assert!(!w.shows("INVITATIONS"), "no section while there are none");
    w.session(SessionEvent::Invitations(vec![dev(), ops()]));
    w
}

#[test]
fn invitations_waiting_at_login_are_in_the_sidebar_with_who_sent_them() {
    let w = invited();
    assert!(w.shows("INVITATIONS"), "texts: {:?}", w.texts());
    let texts = w.texts();
    let at = |t: &str| {
        texts
            .iter()
            .position(|x| x == t)
            .unwrap_or_else(|| panic!("no {t:?} in {texts:?}"))
    };
    assert!(at("#dev") < at("from carol") && at("from carol") < at("#ops"));
    assert!(at("#ops") < at("from bob") && at("from bob") < at("ROOMS"));
    assert_eq!(w.count("Accept"), 2);
    assert_eq!(w.count("Decline"), 2);
}

#[test]
fn accept_joins_the_room_and_opens_it() {
    let mut w = invited();
    // The first is the newest: carol's.
    w.click("Accept");
    assert_eq!(w.take_commands(), vec![Command::Join("dev".into())]);
    w.click("Accept");
    assert_eq!(
        w.take_commands(),
        vec![],
        "pressed once, until the relay answers"
    );
    w.net(NetEvent::Opened(dev().room));
    assert_eq!(w.chat().current, "dev");
    assert!(!w.shows("from carol"), "answered: {:?}", w.texts());
    assert!(w.shows("from bob"));

    // A refusal says why, and the invitation can be answered again.
    w.take_commands();
    w.click("Accept");
    assert_eq!(w.take_commands(), vec![Command::Join("ops".into())]);
    w.net(NetEvent::JoinRefused {
        room: "ops".into(),
        why: "Could not join #ops: the relay cannot answer right now.".into(),
    });
    assert!(w.shows("Could not join #ops: the relay cannot answer right now."));
    w.click("Accept");
    assert_eq!(w.take_commands(), vec![Command::Join("ops".into())]);
}

#[test]
fn decline_says_no_and_the_section_goes_with_the_last_one() {
    let mut w = invited();
    w.click("Decline");
    assert_eq!(w.take_commands(), vec![Command::Decline("dev".into())]);
    w.net(NetEvent::Declined {
        room: "dev".into(),
        result: Ok(()),
    });
    assert!(!w.shows("#dev") && w.shows("#ops"));

    w.click("Decline");
    assert_eq!(w.take_commands(), vec![Command::Decline("ops".into())]);
    w.net(NetEvent::Declined {
        room: "ops".into(),
        result: Err("Could not decline the invitation to #ops: not connected.".into()),
    });
    assert!(
        w.shows("Could not decline the invitation to #ops: not connected."),
        "texts: {:?}",
        w.texts()
    );
    assert!(w.shows("#ops"), "still waiting for an answer");
    w.click("Decline");
    assert_eq!(w.take_commands(), vec![Command::Decline("ops".into())]);
    w.net(NetEvent::Declined {
        room: "ops".into(),
        result: Ok(()),
    });
    assert!(!w.shows("INVITATIONS"), "texts: {:?}", w.texts());
    assert_eq!(w.chat().current, "lobby", "declining opens nothing");
}

#[test]
fn an_invitation_arriving_live_goes_on_top_once() {
    let mut w = invited();
    w.session(SessionEvent::Invited(invitation(
        "music",
        RoomKind::Public,
        "dave",
    )));
    let texts = w.texts();
    let first = texts.iter().position(|t| t.starts_with('#')).unwrap();
    assert_eq!(texts[first], "#music", "newest on top: {texts:?}");
    // Invited again by someone else: one entry, on top, from them.
    w.session(SessionEvent::Invited(invitation(
        "ops",
        RoomKind::Private,
        "eve",
    )));
    assert_eq!(w.count("#ops"), 1, "texts: {:?}", w.texts());
    assert!(w.shows("from eve") && !w.shows("from bob"));
    // The newest two, and the third behind "1 more".
    assert_eq!(w.count("Accept"), 2);
    assert!(w.shows("1 more"), "texts: {:?}", w.texts());
    // An invitation to a room the user is in is no news.
    w.session(SessionEvent::Invited(invitation(
        "lobby",
        RoomKind::Public,
        "bob",
    )));
    assert_eq!(w.chat().invitations.len(), 3);
}

#[test]
fn a_room_joined_on_another_device_answers_its_invitation() {
    let mut w = invited();
    assert!(w.shows("from bob"), "texts: {:?}", w.texts());
    w.session(SessionEvent::Joined {
        room: "ops".into(),
        recent: vec![],
        more: false,
    });
    assert!(!w.shows("from bob"), "texts: {:?}", w.texts());
    // A list from before the join does not bring it back, nor does a
    // decline take the user out of the room.
    w.session(SessionEvent::Invitations(vec![dev(), ops()]));
    assert!(!w.shows("from bob"));
    w.update(client_gui::app::Message::Chat(
        client_gui::screen::chat::Message::DeclineInvitation("ops".into()),
    ));
    assert_eq!(w.take_commands(), vec![]);
    assert!(w.chat().rooms.contains_key("ops"));
}

#[test]
fn the_next_login_replaces_the_list_but_keeps_an_answer_under_way() {
    let mut w = invited();
    w.click("Decline");
    w.take_commands();
    // Reconnected: ops was accepted elsewhere meanwhile, music is new.
    w.session(SessionEvent::Invitations(vec![
        invitation("music", RoomKind::Public, "dave"),
        dev(),
    ]));
    assert!(w.shows("#music") && !w.shows("#ops"));
    assert_eq!(w.count("Decline"), 2);
    w.click("Decline");
    assert_eq!(
        w.take_commands(),
        vec![Command::Decline("music".into())],
        "dev's decline is still under way"
    );
}

#[test]
fn the_room_browser_refreshes_the_invitations_too() {
    let mut w = invited();
    w.click("Browse rooms");
    assert_eq!(w.take_commands(), vec![Command::ListRooms]);
    w.net(NetEvent::Rooms(Ok(client_gui::connection::RoomList {
        joined: vec![],
        public: vec![dev().room],
        invited: vec![ops()],
    })));
    w.click("Close");
    assert!(w.shows("from bob") && !w.shows("from carol"));
}

#[test]
fn a_flood_of_invitations_leaves_the_rooms_in_reach_and_can_be_declined_at_once() {
    let mut w = Window::chatting();
    let flood: Vec<Invitation> = (0..20)
        .map(|i| invitation(&format!("spam{i}"), RoomKind::Private, "mallory"))
        .collect();
    w.session(SessionEvent::Invitations(flood));
    assert_eq!(w.count("Accept"), 2, "texts: {:?}", w.texts());
    assert!(w.shows("18 more"), "texts: {:?}", w.texts());
    // The rooms are still near the top of the sidebar.
    let lobby = {
        let mut ui = w.ui();
        ui.find("#lobby").expect("#lobby").bounds()
    };
    assert!(lobby.y < 450.0, "#lobby pushed down to y = {}", lobby.y);

    w.click("18 more");
    assert!(w.chat().all_invitations);
    w.click("Decline all");
    // Final (a private room hides again): asked first.
    assert!(w.take_commands().is_empty());
    assert!(w.shows("Decline all 20?"), "texts: {:?}", w.texts());
    w.click("Keep");
    assert!(!w.shows("Decline all 20?"));
    w.click("Decline all");
    w.click("Decline all");
    let declined: Vec<String> = w
        .take_commands()
        .into_iter()
        .filter_map(|c| match c {
            Command::Decline(room) => Some(room),
            _ => None,
        })
        .collect();
    assert_eq!(declined.len(), 20, "{declined:?}");
    // The relay refuses some (it paces room changes): one notice says how
    // many are left, once every answer is in.
    for (i, room) in declined.iter().enumerate() {
        w.net(NetEvent::Declined {
            room: room.clone(),
            result: if i < 15 {
                Ok(())
            } else {
                Err("the relay is limiting your requests just now.".into())
            },
        });
    }
    assert_eq!(w.chat().invitations.len(), 5);
    assert!(
        w.chat()
            .notice
            .as_deref()
            .is_some_and(|n| n.starts_with("5 of the invitations")),
        "{:?}",
        w.chat().notice
    );
}
