//! Durable state: accounts, rooms (with their topics), memberships,
//! invites and messages.
//!
//! One trait, [`Store`], so the relay can run on the embedded SQLite file
//! (the default, [`sqlite::SqliteStore`]) or on a NATS JetStream cluster
//! shared by several relays ([`nats::NatsStore`]); `backend::open` opens the
//! one the arguments name, so the programs never choose again.
//! Appends are group-committed: a message's future resolves only after the
//! transaction holding it is durable, and committed messages are published,
//! in sequence order per room, on the channel given at open.

pub mod nats;
pub mod sqlite;

use std::future::Future;

use common::frame::{Message, MsgId, Page, RoomKind, Seq};

/// Fault injection for crash tests. When this environment variable is set
/// (it is read once, at open), the store calls `std::process::abort()`
/// right after a message whose body equals its value is durable (the
/// SQLite transaction committed, or JetStream acknowledged it), before
/// publishing or acknowledging it. That is the worst moment to crash: the
/// message is durable but nobody was told, so a test can check that a
/// client's resend after reconnecting is recognised as a duplicate.
pub const FAULT_ABORT_AFTER_COMMIT: &str = "CONFAB_FAULT_ABORT_AFTER_COMMIT";

/// An account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    /// The name as registered (lookups ignore ASCII case).
    pub name: String,
    /// argon2id PHC string.
    pub phc: String,
    /// Unix seconds.
    pub created: i64,
}

/// A room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRow {
    pub name: String,
    pub kind: RoomKind,
    pub created_by: String,
    /// Sequence of the newest message, 0 if none.
    pub latest: Seq,
    pub members: u32,
    /// What the room is for; empty for none.
    pub topic: String,
}

/// An invitation as stored, with its room as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invited {
    pub room: RoomRow,
    /// Who invited (the last to, if several did).
    pub by: String,
}

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub room: String,
    pub from: String,
    pub id: MsgId,
    pub body: String,
}

/// Result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: Seq,
    /// Milliseconds since the Unix epoch, as stored.
    pub ts: i64,
    /// The id was already stored in this room: `seq`/`ts` are the original
    /// ones and nothing new was written or published.
    pub duplicate: bool,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the name is taken")]
    NameTaken,
    /// A new account's name looks like an existing one's (the same
    /// `common::names::skeleton`): this is the existing one, as registered.
    /// Deleted accounts count, as their names stay taken.
    #[error("the name looks like {0:?}, which is taken")]
    LooksLike(String),
    #[error("no such user")]
    NoSuchUser,
    #[error("no such room")]
    NoSuchRoom,
    #[error("the room exists")]
    RoomExists,
    /// The sender of a message is not (or no longer) a member of its room.
    #[error("not a member of the room")]
    NotMember,
    #[error("storage failed: {0}")]
    Db(String),
    #[error("the store is shut down")]
    Closed,
}

/// Durable state behind the relay. Every method is safe to call from many
/// tasks at once.
pub trait Store: Send + Sync + 'static {
    /// Creates an account and makes it a member of the lobby. `NameTaken`
    /// if the name exists ignoring ASCII case, else `LooksLike` if a name
    /// that looks like it does, checked where the account is written, so
    /// two lookalikes registered at once cannot both succeed.
    fn create_user(
        &self,
        name: &str,
        phc: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// An account, live or deleted, whose name looks like `name` but is not
    /// it ignoring case, as registered: an early answer, before a password
    /// is hashed for a registration `create_user` would refuse anyway.
    /// Only an optimisation (`create_user` enforces the rule), so a store
    /// may find none.
    fn lookalike(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        let _ = name;
        async { Ok(None) }
    }
    /// Looks an account up, ignoring ASCII case.
    fn user(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<StoredUser>, StoreError>> + Send;
    /// Replaces an account's password hash.
    fn set_password(
        &self,
        name: &str,
        phc: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Deletes an account with its memberships and invites; its messages stay.
    fn delete_user(&self, name: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// All accounts, by name.
    fn list_users(&self) -> impl Future<Output = Result<Vec<StoredUser>, StoreError>> + Send;
    /// From now on, the names (as registered) of accounts whose password is
    /// changed or which are deleted, by this process or any other sharing
    /// the store (`relay user passwd` beside a running relay, another relay
    /// on NATS), within about a second. A name may come more than once, or
    /// for an account that did not change (after a lost watch on NATS every
    /// account is named again): the relay compares each session with the
    /// account as stored. Ends when the store closes.
    fn account_changes(
        &self,
    ) -> impl Future<Output = Result<tokio::sync::mpsc::UnboundedReceiver<String>, StoreError>> + Send;

    /// Creates a public or private channel with `creator` as its first member.
    fn create_room(
        &self,
        name: &str,
        kind: RoomKind,
        creator: &str,
    ) -> impl Future<Output = Result<RoomRow, StoreError>> + Send;
    /// Returns the DM room of two users, creating it (both as members) if
    /// needed. When it exists, only `a` becomes a member again: `b` may
    /// have left it on purpose, and `a` cannot bring them back.
    fn open_dm(&self, a: &str, b: &str)
        -> impl Future<Output = Result<RoomRow, StoreError>> + Send;
    /// Looks a room up by exact name.
    fn room(&self, name: &str) -> impl Future<Output = Result<Option<RoomRow>, StoreError>> + Send;
    /// Adds a member; `Ok(false)` if already one. Removes any invite.
    fn add_member(
        &self,
        room: &str,
        user: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Removes a member; `Ok(false)` if not one.
    fn remove_member(
        &self,
        room: &str,
        user: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Member names of a room, sorted.
    fn members(&self, room: &str) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// Whether `user` is a member of `room`.
    fn is_member(
        &self,
        room: &str,
        user: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// How many rooms `user` is a member of.
    fn room_count(&self, user: &str) -> impl Future<Output = Result<usize, StoreError>> + Send;
    /// The rooms `user` is a member of, by name.
    fn rooms_of(&self, user: &str)
        -> impl Future<Output = Result<Vec<RoomRow>, StoreError>> + Send;
    /// All public channels, by name.
    fn public_rooms(&self) -> impl Future<Output = Result<Vec<RoomRow>, StoreError>> + Send;
    /// Records that `by` invited `user` to `room`, so that `user` may join
    /// it if it is private; `Ok(false)`, recording nothing, when `user` is
    /// a member already. Inviting again makes the invitation the newest,
    /// from its new inviter. Of `user`'s invitations, the newest `keep`
    /// are kept and the others forgotten.
    fn invite(
        &self,
        room: &str,
        user: &str,
        by: &str,
        keep: usize,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Forgets `user`'s invitation to `room`; whether there was one.
    fn decline(
        &self,
        room: &str,
        user: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// `user`'s invitations to rooms they are not a member of, newest first.
    fn invitations(
        &self,
        user: &str,
    ) -> impl Future<Output = Result<Vec<Invited>, StoreError>> + Send;
    /// Sets `room`'s topic (empty clears it) for `by`, who must be a
    /// member when it is written: `NotMember` otherwise, checked where it
    /// is written as for [`Store::append`], so a topic can never outlive a
    /// leave; `NoSuchRoom` for a room that does not exist. `Ok(None)`,
    /// writing nothing, when the room has that topic already; otherwise
    /// `Ok(Some(order))`, where `order` grows with every topic this store
    /// writes (on NATS, whichever relay writes it), so that fan-out can
    /// tell the newer of two changes however they reach it.
    fn set_topic(
        &self,
        room: &str,
        by: &str,
        topic: &str,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
    /// Whether `user` has an open invite to `room`.
    fn is_invited(
        &self,
        room: &str,
        user: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores a message durably and returns its sequence; see [`Appended`].
    /// Fails with `NotMember` unless the sender is a member of the room
    /// when the message is written (checked before the resend check, so
    /// one rule holds on every store), so a post can never outlive a leave
    /// or an account deletion however requests interleave.
    ///
    /// The request is queued when `append` is called, before the returned
    /// future is first polled, and the future does not borrow the store:
    /// a session hands its sends over in arrival order (so one sender's
    /// messages commit in the order sent) and awaits each ack in a task.
    fn append(
        &self,
        msg: NewMessage,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send + 'static;
    /// A page of history, oldest first, and whether more lie beyond it in
    /// the page's direction (older for `Latest`/`Before`, newer for `After`).
    fn history(
        &self,
        room: &str,
        page: Page,
        limit: u16,
    ) -> impl Future<Output = Result<(Vec<Message>, bool), StoreError>> + Send;
    /// Finishes pending writes and stops the writer; later calls fail with `Closed`.
    fn close(&self) -> impl Future<Output = ()> + Send;
}
