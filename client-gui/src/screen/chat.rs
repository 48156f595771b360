//! The chat screen: rooms and DMs in a sidebar, the conversation, the
//! composer, the member list and the connection state. `update` is pure:
//! it returns what the app must do (commands for the session, scrolling)
//! instead of doing it, so every rule here is tested without a window.

mod browse;
mod navigation;
pub mod room;
mod shown;
mod switcher;
mod topic;
mod unsent;
pub mod view;

pub use browse::{Browser, DeclineAll, Invite, PendingInvitation};
pub use room::{Key, Line, Room, Scroll, KEEP};
pub use switcher::Switcher;
pub use topic::{TopicForm, Topics};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use common::client::{Acked, ConnectError, Event as SessionEvent, RequestError};
use common::frame::{Member, Message as ChatMessage, Presence, PresenceKind, RoomKind, Seq};
use common::names::{self, LOBBY};
use common::trust::TrustFailure;
use iced::widget::{scrollable, text_editor};

use crate::connection::{Command, Event as NetEvent};

/// What the user did on this screen.
#[derive(Debug, Clone)]
pub enum Message {
    Composer(text_editor::Action),
    Send,
    SelectRoom(String),
    JoinInput(String),
    Join,
    Create,
    Leave(String),
    ToggleMembers,
    OpenDm(String),
    Scrolled(scrollable::Viewport),
    JumpToBottom,
    DismissNotice,
    /// Send a refused line again.
    Retry(u64),
    ToggleTheme,
    Logout,
    /// Open the room browser, which loads the relay's list.
    BrowseRooms,
    CloseBrowser,
    RefreshRooms,
    BrowserFilter(String),
    /// Enter in the browser's filter: the room it leaves, if only one.
    BrowserSubmit,
    /// Open a room listed in the browser, joining it first if need be.
    JoinListed(String),
    /// Whether Create makes a private (invite-only) room.
    CreatePrivate(bool),
    /// Open the form that invites someone to the current room.
    InviteOpen,
    InviteUser(String),
    InviteSend,
    InviteClose,
    /// Join the room of an invitation in the sidebar.
    AcceptInvitation(String),
    /// Say no to an invitation in the sidebar.
    DeclineInvitation(String),
    /// Asks whether to decline every invitation (a flood of them, say).
    DeclineAllInvitations,
    /// The answer to that question: decline them all, or keep them.
    ConfirmDeclineAll(bool),
    /// Shows every invitation, or only the newest few.
    ShowAllInvitations(bool),
    /// Start the session again after it stopped.
    Reconnect,
    /// Show why the session stopped on the trust screen.
    Details,
    /// Turn a line into selectable text (double or right click on it).
    Select(Key),
    SelectionAction(text_editor::Action),
    CopySelection,
    Deselect,
    /// A link in a message was clicked.
    OpenLink(String),
    /// Leave the room asked about.
    ConfirmLeave,
    CancelLeave,
    /// Show or hide a side panel over the conversation, where the window
    /// is too narrow to keep it beside.
    TogglePanel(Panel),
    /// Ctrl+K: the room switcher, or away with it.
    ToggleSwitcher,
    SwitcherInput(String),
    /// Up (-1) or down (+1) the switcher's list.
    SwitcherMove(i32),
    /// Open the room the switcher points at.
    SwitcherOpen,
    /// The previous (-1) or next (+1) room in the sidebar's order.
    StepRoom(i32),
    /// Page Up or Page Down in the conversation.
    Page(Page),
    /// Escape: close what is open over the conversation.
    Close,
    /// Open the dialog that sets the current room's topic.
    TopicOpen,
    TopicInput(String),
    TopicSave,
    TopicClose,
}

/// A side panel that a narrow window folds into a header button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    Rooms,
    Members,
}

/// A page of the conversation, up (older) or down (newer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Up,
    Down,
}

/// What the app must do after an update.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Commands for the session.
    pub commands: Vec<Command>,
    /// Scroll the conversation to its end.
    pub follow: bool,
    /// Leave this screen.
    pub logout: bool,
    /// Switch between light and dark.
    pub toggle_theme: bool,
    /// Start a new session with the same credentials.
    pub reconnect: bool,
    /// Open the trust screen for this failure.
    pub details: Option<TrustFailure>,
    /// Put the cursor in the input with this id.
    pub focus: Option<&'static str>,
    /// Put this text on the clipboard.
    pub copy: Option<String>,
    /// Open this address in the system's browser.
    pub open: Option<String>,
    /// Scroll the conversation by a page.
    pub page: Option<Page>,
    /// Scroll the conversation up by this much (pixels), to keep what is
    /// read in place.
    pub scroll_by: Option<f32>,
    /// Scroll the sidebar's list to this relative offset (0 top, 1
    /// bottom), so the room just opened is in sight there.
    pub reveal: Option<f32>,
}

impl Outcome {
    fn command(command: Command) -> Self {
        Outcome {
            commands: vec![command],
            ..Outcome::default()
        }
    }

    fn focus(id: &'static str) -> Self {
        Outcome {
            focus: Some(id),
            ..Outcome::default()
        }
    }
}

/// The state of the connection, always shown.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Connected to [`Chat::relay`].
    Connected,
    Reconnecting {
        attempt: u32,
        retry_at: Instant,
        reason: String,
        /// The relay that just went away, if this follows a lost connection.
        lost: Option<String>,
        /// The relay tried first.
        next: String,
    },
    Offline(String),
}

/// The chat screen.
pub struct Chat {
    pub user: String,
    /// The relay address, or addresses, as the user typed them.
    pub server: String,
    /// The relay in use, or last used while reconnecting.
    pub relay: String,
    pub rooms: BTreeMap<String, Room>,
    pub current: String,
    pub composer: text_editor::Content,
    /// Why the composer refused the last send.
    pub hint: Option<String>,
    pub join_input: String,
    pub status: Status,
    pub members: HashMap<String, Vec<Member>>,
    /// Rooms whose member list came since the session last connected: the
    /// only ones whose presence dots can be believed.
    fresh_members: HashSet<String>,
    pub show_members: bool,
    /// The side panel shown over the conversation in a narrow window.
    pub panel: Option<Panel>,
    /// The room switcher, while open.
    pub switcher: Option<Switcher>,
    /// A refusal or problem to show until dismissed.
    pub notice: Option<String>,
    /// The time the view counts down against; updated by ticks.
    pub now: Instant,
    next_local: u64,
    /// The room browser, while open.
    pub browser: Option<Browser>,
    /// Whether Create makes a private (invite-only) room.
    pub create_private: bool,
    /// The form inviting someone to the current room, while open.
    pub invite: Option<Invite>,
    /// Invitations to rooms the user is not in, newest first.
    pub invitations: Vec<PendingInvitation>,
    /// Whether the sidebar lists every invitation or only the newest few.
    pub all_invitations: bool,
    /// "Decline all": asked, and the declines it sent still unanswered.
    pub decline_all: DeclineAll,
    /// Why the session stopped, when the trust screen can tell more.
    pub trust_failure: Option<TrustFailure>,
    /// The session stopped because the relay refused the login (password
    /// changed, account removed): Reconnect would only be refused again.
    pub login_refused: bool,
    /// A line turned into selectable text.
    pub selection: Option<Selection>,
    /// What was typed in the composer of rooms not shown.
    pub drafts: HashMap<String, String>,
    /// The room whose Leave waits for a confirmation.
    pub leaving: Option<String>,
    /// Why the name in the join box cannot be a room, until it is edited.
    pub join_hint: Option<String>,
    /// Lines carried over from the last session of this account, by room,
    /// until the relay says the user is in that room.
    pub carried: HashMap<String, Vec<String>>,
    /// Counts changes to the set of unconfirmed lines, so the app saves
    /// them as they change: a crash then loses none, and a line the relay
    /// confirmed never comes back to be sent twice.
    pub unsent_changes: u64,
    /// The room the window showed when it was last closed: opened again
    /// once the relay says the user is still in it, unless the user has
    /// gone somewhere already.
    pub restore: Option<String>,
    /// Each room's topic, as the relay last said it.
    pub topics: Topics,
    /// The dialog setting a room's topic, while open.
    pub topic_dialog: Option<TopicForm>,
}

/// A line shown as read-only text that can be selected and copied.
#[derive(Debug)]
pub struct Selection {
    pub room: String,
    pub key: Key,
    pub content: text_editor::Content,
}

impl Chat {
    /// The screen right after logging in as `user` at `relay`, one of the
    /// addresses in `server`.
    pub fn new(user: String, server: String, relay: String) -> Self {
        let mut rooms = BTreeMap::new();
        rooms.insert(LOBBY.to_owned(), Room::default());
        Chat {
            user,
            server,
            relay,
            rooms,
            current: LOBBY.to_owned(),
            composer: text_editor::Content::new(),
            hint: None,
            join_input: String::new(),
            status: Status::Connected,
            members: HashMap::new(),
            fresh_members: HashSet::new(),
            show_members: true,
            panel: None,
            switcher: None,
            notice: None,
            now: Instant::now(),
            next_local: 1,
            browser: None,
            create_private: false,
            invite: None,
            invitations: Vec::new(),
            all_invitations: false,
            decline_all: DeclineAll::default(),
            trust_failure: None,
            login_refused: false,
            selection: None,
            drafts: HashMap::new(),
            leaving: None,
            join_hint: None,
            carried: HashMap::new(),
            unsent_changes: 0,
            restore: None,
            topics: Topics::default(),
            topic_dialog: None,
        }
    }

    /// Unread messages over every room: shown in the window title.
    pub fn unread_total(&self) -> u32 {
        self.rooms.values().map(|r| r.unread).sum()
    }

    /// The room being shown.
    pub fn room(&self) -> Option<&Room> {
        self.rooms.get(&self.current)
    }

    /// How a room is named in the sidebar: DMs by the other person.
    pub fn display_name(&self, room: &str) -> String {
        match names::dm_users(room) {
            Some((a, b)) => format!("@{}", if a == self.user { b } else { a }),
            None => format!("#{room}"),
        }
    }

    /// Whether the member list's dots say who is online now: not while
    /// disconnected, nor after a reconnect until the list is asked again.
    pub fn presence_known(&self) -> bool {
        self.status == Status::Connected && self.fresh_members.contains(&self.current)
    }

    /// Commands to send when the screen opens.
    pub fn opened(&self) -> Vec<Command> {
        vec![Command::Members(self.current.clone())]
    }

    /// Handles what the user did.
    pub fn update(&mut self, message: Message) -> Outcome {
        match message {
            Message::Composer(action) => {
                let edit = action.is_edit();
                self.composer.perform(action);
                if edit {
                    self.hint = None;
                }
                Outcome::default()
            }
            Message::Send => self.send(),
            Message::SelectRoom(room) => Outcome {
                // Clicked in the sidebar: it is in sight there already.
                reveal: None,
                ..self.select(room)
            },
            Message::JoinInput(text) => {
                self.join_input = text;
                self.join_hint = None;
                Outcome::default()
            }
            Message::Join | Message::Create => {
                let room = self.join_input.trim().to_lowercase();
                if let Err(e) = names::check_room(&room) {
                    // Said next to the box, about what is in it: it goes
                    // when the name is edited, not when a room is opened.
                    self.join_hint = Some(format!("Room names: {e}."));
                    return Outcome::default();
                }
                self.join_input.clear();
                self.join_hint = None;
                Outcome::command(if matches!(message, Message::Join) {
                    Command::Join(room)
                } else {
                    Command::Create {
                        room,
                        // Back to public: a private room is chosen each time.
                        private: std::mem::take(&mut self.create_private),
                    }
                })
            }
            // Leaving asks first: one click must not cost a private room
            // (coming back needs a new invitation) or a conversation.
            Message::Leave(room) => {
                self.leaving = Some(room);
                Outcome::default()
            }
            Message::ConfirmLeave => match self.leaving.take() {
                Some(room) => Outcome::command(Command::Leave(room)),
                None => Outcome::default(),
            },
            Message::CancelLeave => {
                self.leaving = None;
                Outcome {
                    focus: Some(view::COMPOSER),
                    ..Outcome::default()
                }
            }
            Message::ToggleMembers => {
                self.show_members = !self.show_members;
                if self.show_members {
                    return Outcome::command(Command::Members(self.current.clone()));
                }
                Outcome::default()
            }
            Message::OpenDm(user) => {
                self.panel = None;
                Outcome::command(Command::OpenDm(user))
            }
            // The conversation is anchored at the bottom (older pages grow
            // it upwards without moving what is read), so its offsets count
            // from the newest line.
            Message::Scrolled(viewport) => {
                let (bounds, content) = (viewport.bounds(), viewport.content_bounds());
                self.scrolled(Scroll {
                    from_top: viewport.absolute_offset_reversed().y,
                    from_bottom: viewport.absolute_offset().y,
                    height: bounds.height,
                    width: content.width,
                    content: content.height,
                })
            }
            Message::JumpToBottom => self.jump_to_bottom(),
            Message::Retry(local) => self.retry(local),
            Message::DismissNotice => {
                self.notice = None;
                Outcome::default()
            }
            Message::ToggleTheme => Outcome {
                toggle_theme: true,
                ..Outcome::default()
            },
            Message::Logout => Outcome {
                commands: vec![Command::Logout],
                logout: true,
                ..Outcome::default()
            },
            Message::CreatePrivate(private) => {
                self.create_private = private;
                Outcome::default()
            }
            Message::Reconnect => Outcome {
                reconnect: true,
                ..Outcome::default()
            },
            Message::Details => Outcome {
                details: self.trust_failure.clone(),
                ..Outcome::default()
            },
            Message::Select(key) => self.select_line(key),
            Message::SelectionAction(action) => {
                // Read-only: selection and movement, never an edit.
                if let Some(s) = &mut self.selection {
                    if !action.is_edit() {
                        s.content.perform(action);
                    }
                }
                Outcome::default()
            }
            Message::CopySelection => {
                let copy = self.selection.as_ref().map(|s| {
                    s.content
                        .selection()
                        .filter(|t| !t.is_empty())
                        .unwrap_or_else(|| s.content.text().trim_end_matches('\n').to_owned())
                });
                Outcome {
                    copy,
                    ..Outcome::default()
                }
            }
            Message::Deselect => {
                self.selection = None;
                Outcome {
                    focus: Some(view::COMPOSER),
                    ..Outcome::default()
                }
            }
            Message::OpenLink(url) => Outcome {
                open: Some(url),
                ..Outcome::default()
            },
            Message::BrowseRooms
            | Message::CloseBrowser
            | Message::RefreshRooms
            | Message::BrowserFilter(_)
            | Message::BrowserSubmit
            | Message::JoinListed(_)
            | Message::InviteOpen
            | Message::InviteUser(_)
            | Message::InviteSend
            | Message::InviteClose
            | Message::AcceptInvitation(_)
            | Message::DeclineInvitation(_)
            | Message::DeclineAllInvitations
            | Message::ConfirmDeclineAll(_)
            | Message::ShowAllInvitations(_) => self.browse(message),
            Message::ToggleSwitcher
            | Message::SwitcherInput(_)
            | Message::SwitcherMove(_)
            | Message::SwitcherOpen => self.switch(message),
            // The dialog is on top of everything else: Escape closes it first.
            Message::Close if self.topic_dialog.is_some() => self.topic_form(Message::TopicClose),
            Message::TopicOpen
            | Message::TopicInput(_)
            | Message::TopicSave
            | Message::TopicClose => self.topic_form(message),
            Message::TogglePanel(_) | Message::StepRoom(_) | Message::Page(_) | Message::Close => {
                self.navigate(message)
            }
        }
    }

    fn select_line(&mut self, key: Key) -> Outcome {
        let Some(body) = self.room().and_then(|r| {
            r.lines.iter().find_map(|l| match l {
                Line::Message(m) if l.key() == key => Some(m.body.clone()),
                _ => None,
            })
        }) else {
            return Outcome::default();
        };
        let mut content = text_editor::Content::with_text(&body);
        content.perform(text_editor::Action::SelectAll);
        self.selection = Some(Selection {
            room: self.current.clone(),
            key,
            content,
        });
        Outcome {
            focus: Some(view::SELECTION),
            ..Outcome::default()
        }
    }

    /// A new session is being started for this chat.
    pub fn reconnecting(&mut self) {
        self.status = Status::Reconnecting {
            attempt: 1,
            retry_at: self.now,
            reason: "starting a new session".into(),
            lost: None,
            next: self.relay.clone(),
        };
        self.trust_failure = None;
        self.login_refused = false;
        self.notice = None;
    }

    /// The session stopped for good: offline, with why and what to do.
    pub fn stopped(&mut self, e: &ConnectError) {
        let why = offline(e);
        // Lets an end-to-end test (and a curious user) see the window stop.
        tracing::debug!(%why, "offline");
        self.notice = Some(format!("You are offline: {why}"));
        self.status = Status::Offline(why);
        // The stopped session takes its queue with it: say so on every line
        // it had not confirmed, so none is lost unseen. Retry sends it again
        // once connected (a line the relay stored just before the stop
        // would then be there twice; one lost without a word is worse).
        for room in self.rooms.values_mut() {
            for line in &mut room.lines {
                if let Line::Pending {
                    failed: failed @ None,
                    ..
                } = line
                {
                    *failed = Some(
                        "the connection stopped before the relay confirmed it; Retry once connected"
                            .into(),
                    );
                }
            }
        }
        self.login_refused = matches!(e, ConnectError::Auth { .. });
        self.trust_failure = match e {
            ConnectError::Trust(
                failure @ (TrustFailure::Unknown { .. } | TrustFailure::Changed { .. }),
            ) => Some(failure.clone()),
            _ => None,
        };
    }

    fn send(&mut self) -> Outcome {
        let text = self.composer.text();
        let body = text.trim_end_matches('\n');
        if body.trim().is_empty() {
            self.hint = Some("Type a message first.".into());
            return Outcome::default();
        }
        if let Err(e) = common::limits::check_body(body) {
            self.hint = Some(format!(
                "Too long to send: {e}. Split it into several messages."
            ));
            return Outcome::default();
        }
        let local = self.next_local;
        self.next_local += 1;
        let body = body.to_owned();
        let room = self.current.clone();
        let hint = self.offline_hint();
        let r = self.rooms.entry(room.clone()).or_default();
        let mut commands = Vec::new();
        if r.more_after {
            // Sent while reading far back: the line goes under the newest
            // ones, so the view goes there too.
            r.reset_to_latest();
            commands.push(Command::Older {
                room: room.clone(),
                before: Seq::MAX,
            });
        }
        let offline = matches!(self.status, Status::Offline(_));
        self.unsent_changes += 1;
        r.lines.push(Line::Pending {
            local,
            body: body.clone(),
            failed: offline.then_some(hint),
        });
        r.at_bottom = true;
        self.composer = text_editor::Content::new();
        self.hint = None;
        if !offline {
            commands.push(Command::Send { local, room, body });
        }
        Outcome {
            commands,
            follow: true,
            ..Outcome::default()
        }
    }

    /// What a line typed while offline waits for.
    fn offline_hint(&self) -> String {
        if self.login_refused {
            "offline; log in again, then Retry".into()
        } else {
            "offline; Reconnect, then Retry".into()
        }
    }

    fn retry(&mut self, local: u64) -> Outcome {
        let hint = self.offline_hint();
        let room = self.current.clone();
        let Some(r) = self.rooms.get_mut(&room) else {
            return Outcome::default();
        };
        let Some(line) = r
            .lines
            .iter_mut()
            .find(|l| matches!(l, Line::Pending { local: l, failed: Some(_), .. } if *l == local))
        else {
            return Outcome::default();
        };
        let Line::Pending { body, failed, .. } = line else {
            return Outcome::default();
        };
        if matches!(self.status, Status::Offline(_)) {
            *failed = Some(hint);
            return Outcome::default();
        }
        *failed = None;
        let body = body.clone();
        Outcome::command(Command::Send { local, room, body })
    }

    fn select(&mut self, room: String) -> Outcome {
        let Some(r) = self.rooms.get_mut(&room) else {
            return Outcome::default();
        };
        r.unread = 0;
        r.mentions = 0;
        r.new_below = false;
        r.at_bottom = true;
        r.hold = None;
        // Each room keeps its own draft, so a line half-typed for one is
        // never sent to another.
        if room != self.current {
            let draft = self.drafts.remove(&room).unwrap_or_default();
            let mut restored = text_editor::Content::with_text(&draft);
            restored.perform(text_editor::Action::Move(text_editor::Motion::DocumentEnd));
            let left = std::mem::replace(&mut self.composer, restored);
            let text = left.text();
            let text = text.trim_end_matches('\n');
            if !text.trim().is_empty() {
                self.drafts.insert(self.current.clone(), text.to_owned());
            }
        }
        self.current = room.clone();
        self.switcher = None;
        self.panel = None;
        // The user went somewhere: last time's room is not reopened over it.
        self.restore = None;
        let order = self.room_order();
        let at = order.iter().position(|r| *r == room).unwrap_or(0);
        let mut out = Outcome {
            follow: true,
            // Typing goes on where the user went.
            focus: Some(view::COMPOSER),
            // With entries of one height, this offset shows entry `at`
            // whatever the list's and the viewport's heights.
            reveal: Some(at as f32 / order.len().saturating_sub(1).max(1) as f32),
            ..Outcome::default()
        };
        if self.show_members {
            out.commands.push(Command::Members(room));
        }
        out
    }

    /// The view moved: page older or newer lines in before the reader
    /// reaches the end of what is kept.
    pub fn scrolled(&mut self, scroll: Scroll) -> Outcome {
        let Some(room) = self.rooms.get_mut(&self.current) else {
            return Outcome::default();
        };
        let mut out = Outcome::default();
        if let Some((from_bottom, content)) = room.hold {
            let grown = scroll.content - content;
            if grown.abs() > 0.5 {
                // The lines added below are laid out now: move the view by
                // what they took, back onto what was being read.
                room.hold = None;
                let target = from_bottom + grown;
                let shift = target - scroll.from_bottom;
                if shift.abs() > 0.5 {
                    out.scroll_by = Some(shift);
                }
                // Where the view will be once moved: more lines arriving
                // before the next report are held from there.
                room.scroll = Scroll {
                    from_bottom: target,
                    from_top: scroll.from_top - shift,
                    ..scroll
                };
                return out;
            }
            // The reader moved (content unchanged): hold where they are now.
            room.hold = Some((scroll.from_bottom, scroll.content));
        }
        room.scroll = scroll;
        room.at_bottom = !room.more_after && scroll.from_bottom <= 2.0;
        if room.at_bottom {
            room.new_below = false;
        }
        // A screen ahead, so the next page is there before it is needed.
        let margin = scroll.height.max(200.0);
        if scroll.from_top <= margin && room.more_before && !room.loading_older {
            if let Some(before) = room.first_seq() {
                room.loading_older = true;
                out.commands.push(Command::Older {
                    room: self.current.clone(),
                    before,
                });
            }
        }
        if scroll.from_bottom - room.below <= margin && room.more_after && !room.loading_newer {
            if let Some(after) = room.last_seq() {
                room.loading_newer = true;
                out.commands.push(Command::Newer {
                    room: self.current.clone(),
                    after,
                });
            }
        }
        out
    }

    fn jump_to_bottom(&mut self) -> Outcome {
        let current = self.current.clone();
        let Some(room) = self.rooms.get_mut(&current) else {
            return Outcome::default();
        };
        let mut out = Outcome {
            follow: true,
            ..Outcome::default()
        };
        if room.more_after {
            // Far back in a long room: start again from the newest page
            // rather than paging through everything in between.
            room.reset_to_latest();
            out.commands.push(Command::Older {
                room: current,
                before: Seq::MAX,
            });
        } else {
            room.new_below = false;
            room.at_bottom = true;
        }
        out
    }

    /// Handles what the session said.
    pub fn on_event(&mut self, event: NetEvent) -> Outcome {
        match event {
            NetEvent::Session(e) => self.on_session(e),
            NetEvent::Sent {
                local,
                room,
                result,
            } => self.sent(local, &room, result),
            NetEvent::Opened(info) => {
                self.topic_opened(&info);
                self.joined_listed(&info.name);
                if self
                    .notice
                    .as_deref()
                    .is_some_and(|n| self.names_room(n, &info.name))
                {
                    self.notice = None;
                }
                self.rooms.entry(info.name.clone()).or_default();
                self.select(info.name)
            }
            NetEvent::JoinRefused { room, why } => {
                self.join_refused(room, why);
                Outcome::default()
            }
            NetEvent::Rooms(list) => {
                self.topics_from_list(&list);
                self.listed(list);
                Outcome::default()
            }
            NetEvent::Invited { room, user, result } => {
                self.invited(room, user, result);
                Outcome::default()
            }
            NetEvent::Declined { room, result } => {
                self.declined(&room, result);
                Outcome::default()
            }
            NetEvent::TopicSet { room, result } => self.topic_set(&room, result),
            NetEvent::Older {
                room,
                messages,
                more,
            } => {
                let Some(r) = self.rooms.get_mut(&room) else {
                    return Outcome::default();
                };
                r.loading_older = false;
                r.more_before = more;
                // Growth above the view does not move it: nothing to correct.
                r.hold = None;
                for m in messages {
                    r.insert(m);
                }
                let width = r.scroll.width;
                if r.at_bottom {
                    r.trim_oldest();
                } else {
                    r.trim_newest(|l| view::estimate(l, width));
                }
                Outcome {
                    follow: r.at_bottom && room == self.current,
                    ..Outcome::default()
                }
            }
            NetEvent::Newer {
                room,
                messages,
                more,
            } => {
                let Some(r) = self.rooms.get_mut(&room) else {
                    return Outcome::default();
                };
                r.loading_newer = false;
                let width = r.scroll.width;
                let mut height = 0.0;
                for m in messages {
                    let h = view::estimate_body(&m.body, width);
                    if r.insert(m) {
                        height += h;
                    }
                }
                r.newer_in(height, more);
                // Coming back down, the oldest lines go: they are above the
                // view, so nothing on screen moves.
                r.trim_oldest();
                if !more && room == self.current {
                    // Caught up: lines arriving from now on are shown.
                    r.new_below = false;
                }
                Outcome::default()
            }
            NetEvent::Members { room, members } => {
                self.fresh_members.insert(room.clone());
                self.members.insert(room, members);
                Outcome::default()
            }
            NetEvent::Refused(text) => {
                self.notice = Some(text);
                Outcome::default()
            }
            NetEvent::Connected { .. } | NetEvent::Failed(_) | NetEvent::LoggedOut => {
                Outcome::default()
            }
        }
    }

    fn on_session(&mut self, event: SessionEvent) -> Outcome {
        match event {
            SessionEvent::Connected { server, .. } => {
                self.relay = server;
                self.status = Status::Connected;
                self.fresh_members.clear();
                Outcome::command(Command::Members(self.current.clone()))
            }
            SessionEvent::Reconnecting {
                attempt,
                delay,
                reason,
                lost,
                next,
            } => {
                self.fresh_members.clear();
                // Ticks only run while reconnecting: the last one may be
                // long past, and the countdown would start at zero.
                self.now = Instant::now();
                self.status = Status::Reconnecting {
                    attempt,
                    retry_at: self.now + delay,
                    reason,
                    lost,
                    next,
                };
                Outcome::default()
            }
            SessionEvent::Failed(e) => {
                self.fresh_members.clear();
                self.stopped(&e);
                Outcome::default()
            }
            SessionEvent::Joined { room, recent, more } => {
                self.accepted(&room);
                let commands = self.topic_wanted(&room).into_iter().collect();
                let r = self.rooms.entry(room.clone()).or_default();
                r.more_before = more;
                for m in recent {
                    r.insert(m);
                }
                self.carried_in(&room);
                if self.restore.as_deref() == Some(room.as_str()) {
                    let mut out = self.select(room);
                    out.commands.extend(commands);
                    return out;
                }
                Outcome {
                    commands,
                    follow: room == self.current,
                    ..Outcome::default()
                }
            }
            SessionEvent::Left { room } => {
                self.rooms.remove(&room);
                self.unsent_changes += 1;
                if self.current == room {
                    return self.select(LOBBY.to_owned());
                }
                Outcome::default()
            }
            SessionEvent::Message(m) => self.message(m),
            SessionEvent::Presence(p) => self.presence(p),
            SessionEvent::Invited(invitation) => {
                self.invitation(invitation);
                Outcome::default()
            }
            SessionEvent::Invitations(list) => {
                self.invitations_listed(list);
                Outcome::default()
            }
            SessionEvent::Topic { room, topic, by } => self.topic_changed(room, topic, by),
            SessionEvent::Rooms(rooms) => {
                self.topics_listed(rooms);
                Outcome::default()
            }
        }
    }

    /// Online and offline are state (the member list's dots), never lines;
    /// joins and leaves of a room are folded notices in it.
    fn presence(&mut self, p: Presence) -> Outcome {
        for list in self.members.values_mut() {
            for m in list.iter_mut().filter(|m| m.user == p.user) {
                match p.kind {
                    PresenceKind::Online => m.online = true,
                    PresenceKind::Offline => m.online = false,
                    _ => {}
                }
            }
        }
        let room = p.room.clone().unwrap_or_else(|| LOBBY.to_owned());
        let mut out = Outcome::default();
        let joined = match p.kind {
            PresenceKind::Joined => Some(true),
            PresenceKind::Left => Some(false),
            PresenceKind::Online | PresenceKind::Offline => None,
        };
        if let (Some(joined), Some(r)) = (joined, self.rooms.get_mut(&room)) {
            // Said where it happened in the room's order; a reader far back
            // sees it when they come down.
            if !r.more_after {
                r.membership(chrono::Utc::now().timestamp_millis(), &p.user, joined);
                out.follow = room == self.current && r.at_bottom;
                if room == self.current {
                    r.hold_view();
                }
            }
        }
        // The list shown is stale if someone joined or left, or came
        // online without being on it (a newly registered user).
        let unlisted = self
            .members
            .get(&self.current)
            .is_some_and(|list| list.iter().all(|m| m.user != p.user));
        let stale = match p.kind {
            PresenceKind::Joined | PresenceKind::Left => room == self.current,
            PresenceKind::Online => unlisted,
            PresenceKind::Offline => false,
        };
        if stale && self.show_members {
            out.commands.push(Command::Members(self.current.clone()));
        }
        out
    }

    fn message(&mut self, m: ChatMessage) -> Outcome {
        let own = m.from == self.user;
        let room_name = m.room.clone();
        let is_current = room_name == self.current;
        let (seq, from) = (m.seq, m.from.clone());
        let mentioned = !own && view::mentions(&m.body, &self.user);
        let r = self.rooms.entry(room_name.clone()).or_default();
        if !is_current && mentioned {
            r.mentions += 1;
        }
        if r.beyond(seq) {
            // Among the newer lines let go while reading back: paged in
            // when scrolled to.
            if !own {
                if is_current {
                    r.new_below = true;
                } else {
                    r.unread += 1;
                }
            }
            return Outcome::default();
        }
        if !r.insert(m) {
            return Outcome::default();
        }
        if r.at_bottom {
            r.trim_oldest();
        }
        // Lets an end-to-end test (and a curious user) see what reached the view.
        tracing::debug!(room = %room_name, seq, from = %from, "message shown");
        if !is_current {
            if !own {
                r.unread += 1;
            }
            return Outcome::default();
        }
        if r.at_bottom || own {
            Outcome {
                follow: true,
                ..Outcome::default()
            }
        } else {
            r.new_below = true;
            r.hold_view();
            Outcome::default()
        }
    }

    fn sent(&mut self, local: u64, room: &str, result: Result<Acked, RequestError>) -> Outcome {
        let user = self.user.clone();
        let Some(r) = self.rooms.get_mut(room) else {
            return Outcome::default();
        };
        let Some(at) = r
            .lines
            .iter()
            .position(|l| matches!(l, Line::Pending { local: l, .. } if *l == local))
        else {
            return Outcome::default();
        };
        match result {
            Ok(acked) => {
                let Line::Pending { body, .. } = r.lines.remove(at) else {
                    unreachable!()
                };
                self.unsent_changes += 1;
                // The echo of the message may come before or after its ack:
                // whichever is first puts it in place, the other is a no-op.
                r.insert(ChatMessage {
                    room: room.to_owned(),
                    seq: acked.seq,
                    id: [0; 16],
                    ts: acked.ts,
                    from: user,
                    body,
                });
            }
            Err(e) => {
                if let Line::Pending { failed, .. } = &mut r.lines[at] {
                    *failed = Some(e.to_string());
                }
            }
        }
        Outcome::default()
    }

    /// Seconds until the next reconnect attempt, for the status line.
    pub fn retry_in(&self) -> Option<Duration> {
        match &self.status {
            Status::Reconnecting { retry_at, .. } => {
                Some(retry_at.saturating_duration_since(self.now))
            }
            _ => None,
        }
    }

    /// Whether a notice is about `room`. Refusals name a channel `#name`
    /// and a DM by the other person, "… with bob" (`connection::perform`).
    fn names_room(&self, notice: &str, room: &str) -> bool {
        let name = match names::dm_users(room) {
            Some((a, b)) => format!("with {}", if a == self.user { b } else { a }),
            None => format!("#{room}"),
        };
        notice.match_indices(&name).any(|(at, _)| {
            // #design is not #designers.
            !notice[at + name.len()..]
                .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
    }

    /// Whether a room is a DM or a channel, for grouping the sidebar.
    pub fn kind(room: &str) -> RoomKind {
        if room.starts_with(names::DM_PREFIX) {
            RoomKind::Direct
        } else {
            RoomKind::Public
        }
    }
}

/// Why the session stopped, said for someone in the middle of a chat.
fn offline(e: &ConnectError) -> String {
    match e {
        ConnectError::Auth { .. } => {
            "the relay no longer accepts your login (password changed or account removed). Log out and log in again.".into()
        }
        // Met when moving to a relay of the list that was never trusted.
        ConnectError::Trust(TrustFailure::Unknown { server, .. }) => format!(
            "the relay at {server} is not trusted yet, so confab stopped. Press Details to check its fingerprint."
        ),
        ConnectError::Trust(TrustFailure::Changed { server, .. }) => format!(
            "the certificate of the relay at {server} changed, so confab stopped. Press Details to compare the fingerprints."
        ),
        other => format!(
            "{}. Press Reconnect to try again.",
            crate::screen::login::describe(other).trim_end_matches('.')
        ),
    }
}

#[cfg(test)]
mod tests;
