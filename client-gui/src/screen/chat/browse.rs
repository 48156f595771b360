//! Rooms beyond the sidebar: the browser of public rooms (filter, member
//! counts, join with a click), inviting someone to the current room, and
//! the invitations the user was sent, accepted or declined from the
//! sidebar.

use common::frame::{Invitation, RoomInfo, RoomKind};
use common::names;

use super::{view, Chat, Message, Outcome};
use crate::connection::{Command, RoomList};

/// The room browser's state.
#[derive(Debug, Clone, Default)]
pub struct Browser {
    /// What the list is filtered by, as typed.
    pub filter: String,
    /// The relay's list, once it answered.
    pub list: Option<RoomList>,
    /// A request for the list is under way.
    pub loading: bool,
    /// Why the list could not be loaded, or the room not joined.
    pub error: Option<String>,
    /// The room being joined, which opens when the relay says yes.
    pub joining: Option<String>,
}

/// A public room as the browser lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed<'a> {
    pub room: &'a RoomInfo,
    /// The user is a member already.
    pub joined: bool,
}

impl Browser {
    /// The public rooms whose name contains the filter (ignoring case and a
    /// leading `#`), in the relay's order; `member_of` says which rooms the
    /// window knows the user is in, besides those the relay listed.
    pub fn shown(&self, member_of: impl Fn(&str) -> bool) -> Vec<Listed<'_>> {
        let Some(list) = &self.list else {
            return Vec::new();
        };
        let filter = self.filter.trim().trim_start_matches('#').to_lowercase();
        list.public
            .iter()
            .filter(|room| room.name.to_lowercase().contains(&filter))
            .map(|room| Listed {
                room,
                joined: member_of(&room.name) || list.joined.iter().any(|j| j.name == room.name),
            })
            .collect()
    }
}

/// Where "Decline all" is.
#[derive(Debug, Clone, Default)]
pub struct DeclineAll {
    /// The question is shown.
    pub asked: bool,
    /// Declines sent and not answered yet.
    pub outstanding: usize,
    /// Of those answered, how many were refused, and the last reason.
    pub failed: usize,
    pub why: Option<String>,
}

/// The form that invites someone to a room.
#[derive(Debug, Clone, Default)]
pub struct Invite {
    /// The room the form was opened for.
    pub room: String,
    /// The user name, as typed.
    pub user: String,
    /// An invitation is under way.
    pub sending: bool,
    /// What came of the last invitation: what to do next, or why it failed.
    pub result: Option<Result<String, String>>,
}

/// An invitation the user has not answered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingInvitation {
    pub room: String,
    pub kind: RoomKind,
    /// Who invited.
    pub by: String,
    /// Accept or Decline was pressed and the relay has not answered yet.
    pub answering: bool,
}

impl From<Invitation> for PendingInvitation {
    fn from(i: Invitation) -> Self {
        PendingInvitation {
            room: i.room.name,
            kind: i.room.kind,
            by: i.by,
            answering: false,
        }
    }
}

impl Chat {
    /// Whether the current room takes invitations: a channel other than
    /// the lobby, which everyone is in already.
    pub fn can_invite(&self) -> bool {
        self.current != names::LOBBY && names::dm_users(&self.current).is_none()
    }

    pub(super) fn browse(&mut self, message: Message) -> Outcome {
        match message {
            Message::BrowseRooms => {
                self.browser = Some(Browser::default());
                Outcome {
                    focus: Some(view::FILTER),
                    ..self.refresh_rooms()
                }
            }
            Message::RefreshRooms => self.refresh_rooms(),
            Message::CloseBrowser => {
                self.browser = None;
                Outcome::default()
            }
            Message::BrowserFilter(text) => {
                if let Some(b) = &mut self.browser {
                    b.filter = text;
                }
                Outcome::default()
            }
            Message::BrowserSubmit => {
                let only = self.browser.as_ref().and_then(|b| {
                    match &b.shown(|room| self.rooms.contains_key(room))[..] {
                        [one] => Some(one.room.name.clone()),
                        _ => None,
                    }
                });
                match only {
                    Some(room) => self.browse(Message::JoinListed(room)),
                    None => Outcome::default(),
                }
            }
            Message::JoinListed(room) => {
                if self.rooms.contains_key(&room) {
                    self.browser = None;
                    return self.select(room);
                }
                let Some(b) = &mut self.browser else {
                    return Outcome::default();
                };
                b.joining = Some(room.clone());
                b.error = None;
                Outcome::command(Command::Join(room))
            }
            Message::InviteOpen => {
                if !self.can_invite() {
                    return Outcome::default();
                }
                self.invite = Some(Invite {
                    room: self.current.clone(),
                    ..Invite::default()
                });
                Outcome {
                    focus: Some(view::INVITE_USER),
                    ..Outcome::default()
                }
            }
            Message::InviteUser(user) => {
                if let Some(form) = &mut self.invite {
                    form.user = user;
                }
                Outcome::default()
            }
            Message::InviteSend => self.send_invite(),
            Message::InviteClose => {
                self.invite = None;
                Outcome::default()
            }
            Message::AcceptInvitation(room) => self.answer(room, true),
            Message::DeclineInvitation(room) => self.answer(room, false),
            Message::DeclineAllInvitations => {
                self.decline_all.asked = true;
                Outcome::default()
            }
            Message::ConfirmDeclineAll(false) => {
                self.decline_all.asked = false;
                Outcome::default()
            }
            Message::ConfirmDeclineAll(true) => {
                let rooms: Vec<String> = self.invitations.iter().map(|i| i.room.clone()).collect();
                let mut out = Outcome::default();
                for room in rooms {
                    out.commands.extend(self.answer(room, false).commands);
                }
                self.decline_all = DeclineAll {
                    asked: false,
                    outstanding: out.commands.len(),
                    ..DeclineAll::default()
                };
                out
            }
            Message::ShowAllInvitations(all) => {
                self.all_invitations = all;
                Outcome::default()
            }
            _ => Outcome::default(),
        }
    }

    /// Accepts (joins) or declines an invitation of the sidebar.
    fn answer(&mut self, room: String, accept: bool) -> Outcome {
        if self.rooms.contains_key(&room) {
            // Joined meanwhile (on another device): a decline, which is a
            // leave, would take the user out of it.
            self.forget_invitation(&room);
            return if accept {
                self.select(room)
            } else {
                Outcome::default()
            };
        }
        let Some(pending) = self.invitations.iter_mut().find(|i| i.room == room) else {
            return Outcome::default();
        };
        if pending.answering {
            return Outcome::default();
        }
        pending.answering = true;
        Outcome::command(if accept {
            Command::Join(room)
        } else {
            Command::Decline(room)
        })
    }

    fn forget_invitation(&mut self, room: &str) {
        self.invitations.retain(|i| i.room != room);
    }

    /// Someone invited the user, just now: newest first, once per room.
    pub(super) fn invitation(&mut self, invitation: Invitation) {
        if self.rooms.contains_key(&invitation.room.name) {
            return;
        }
        self.forget_invitation(&invitation.room.name);
        self.invitations.insert(0, invitation.into());
    }

    /// The relay's list of the user's invitations replaces the one shown;
    /// one being answered stays marked so.
    pub(super) fn invitations_listed(&mut self, list: Vec<Invitation>) {
        let answering: Vec<String> = self
            .invitations
            .iter()
            .filter(|i| i.answering)
            .map(|i| i.room.clone())
            .collect();
        self.invitations = list
            .into_iter()
            .filter(|i| !self.rooms.contains_key(&i.room.name))
            .map(|i| PendingInvitation {
                answering: answering.contains(&i.room.name),
                ..i.into()
            })
            .collect();
    }

    /// The user is in `room` now: its invitation is answered.
    pub(super) fn accepted(&mut self, room: &str) {
        self.forget_invitation(room);
    }

    /// The relay answered a decline.
    pub(super) fn declined(&mut self, room: &str, result: Result<(), String>) {
        let of_all = self.decline_all.outstanding > 0;
        if of_all {
            self.decline_all.outstanding -= 1;
        }
        match result {
            Ok(()) => self.forget_invitation(room),
            Err(why) => {
                if let Some(i) = self.invitations.iter_mut().find(|i| i.room == room) {
                    i.answering = false;
                }
                if !of_all {
                    self.notice = Some(why);
                } else {
                    self.decline_all.failed += 1;
                    self.decline_all.why = Some(why);
                }
            }
        }
        // One notice for the lot, once every answer is in, naming how
        // many are left (the relay paces room changes: 20 at once).
        if of_all && self.decline_all.outstanding == 0 && self.decline_all.failed > 0 {
            let failed = self.decline_all.failed;
            let why = self.decline_all.why.take().unwrap_or_default();
            self.notice = Some(format!(
                "{failed} of the invitations are still there. The last refusal: {why} Press Decline all again in a moment."
            ));
            self.decline_all.failed = 0;
        }
    }

    fn refresh_rooms(&mut self) -> Outcome {
        let Some(b) = &mut self.browser else {
            return Outcome::default();
        };
        if b.loading {
            return Outcome::default();
        }
        b.loading = true;
        b.error = None;
        Outcome::command(Command::ListRooms)
    }

    fn send_invite(&mut self) -> Outcome {
        let Some(form) = &mut self.invite else {
            return Outcome::default();
        };
        if form.sending {
            return Outcome::default();
        }
        let user = form.user.trim().to_owned();
        if let Err(e) = names::check_user(&user) {
            form.result = Some(Err(format!("User names: {e}.")));
            return Outcome::default();
        }
        form.sending = true;
        form.result = None;
        Outcome::command(Command::Invite {
            room: form.room.clone(),
            user,
        })
    }

    /// The relay answered the browser's request for the list.
    pub(super) fn listed(&mut self, list: Result<RoomList, String>) {
        let Some(b) = &mut self.browser else {
            return;
        };
        b.loading = false;
        match list {
            Ok(list) => {
                let invited = list.invited.clone();
                b.list = Some(list);
                b.error = None;
                self.invitations_listed(invited);
            }
            Err(why) => b.error = Some(why),
        }
    }

    /// A room opened: if the browser was joining it, its work is done, and
    /// an invitation to it is answered.
    pub(super) fn joined_listed(&mut self, room: &str) {
        self.accepted(room);
        if self
            .browser
            .as_ref()
            .is_some_and(|b| b.joining.as_deref() == Some(room))
        {
            self.browser = None;
        }
    }

    /// A join failed: said in the browser if it asked, else in the notice;
    /// an invitation to the room may be answered again.
    pub(super) fn join_refused(&mut self, room: String, why: String) {
        if let Some(i) = self.invitations.iter_mut().find(|i| i.room == room) {
            i.answering = false;
        }
        match &mut self.browser {
            Some(b) if b.joining.as_deref() == Some(room.as_str()) => {
                b.joining = None;
                b.error = Some(why);
            }
            _ => self.notice = Some(why),
        }
    }

    pub(super) fn invited(&mut self, room: String, user: String, result: Result<(), String>) {
        let said = match result {
            Ok(()) => Ok(format!(
                "Invited {user} to #{room}. They are told at once, or when they next \
                 log in, and can accept."
            )),
            Err(why) => Err(why),
        };
        match &mut self.invite {
            Some(form) if form.room == room => {
                form.sending = false;
                if said.is_ok() {
                    form.user.clear();
                }
                form.result = Some(said);
            }
            // The form was closed or moved on: the notice says it.
            _ => {
                self.notice = Some(match said {
                    Ok(text) | Err(text) => text,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, members: u32) -> RoomInfo {
        RoomInfo {
            name: name.into(),
            kind: RoomKind::Public,
            members,
            latest: 0,
            topic: String::new(),
        }
    }

    #[test]
    fn the_browser_filters_by_name_and_marks_joined_rooms() {
        let browser = Browser {
            filter: " #DE".into(),
            list: Some(RoomList {
                joined: vec![info("lobby", 3), info("design", 2)],
                public: vec![
                    info("design", 2),
                    info("dev", 5),
                    info("lobby", 3),
                    info("random", 1),
                ],
                invited: vec![],
            }),
            ..Browser::default()
        };
        let shown: Vec<(&str, bool)> = browser
            .shown(|room| room == "dev")
            .iter()
            .map(|l| (l.room.name.as_str(), l.joined))
            .collect();
        assert_eq!(shown, [("design", true), ("dev", true)]);
        let none = Browser {
            filter: "zzz".into(),
            ..browser.clone()
        };
        assert!(none.shown(|_| false).is_empty());
        assert_eq!(Browser::default().shown(|_| true), Vec::new());
    }
}
