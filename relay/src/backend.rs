//! Which store a relay or an administration command runs on, chosen once
//! from the arguments: the programs open a [`Backend`] and from then on
//! hold one type, [`AnyStore`], whatever lies behind it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use common::frame::{Message, Page, RoomKind};
use futures_util::future::Either;
use tokio::sync::{mpsc, watch};

use crate::store::nats::{NatsOptions, NatsStore};
use crate::store::sqlite::SqliteStore;
use crate::store::{Appended, Invited, NewMessage, RoomRow, Store, StoreError, StoredUser};

/// Where the store lives.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The data folder of the embedded store.
    Sqlite(PathBuf),
    /// A NATS JetStream cluster shared by several relays.
    Nats(NatsOptions),
}

/// Says where the data is, as the relay's start line does.
impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Sqlite(data) => write!(f, "data in {}", data.display()),
            Backend::Nats(opts) => write!(f, "store on NATS at {}", opts.urls),
        }
    }
}

/// The store a [`Backend`] names, open.
pub enum AnyStore {
    /// The embedded store of one relay.
    Sqlite(SqliteStore),
    /// The store several relays share (boxed: its JetStream handles make
    /// it much larger than the SQLite store).
    Nats(Box<NatsStore>),
}

/// Opens the store `backend` names; committed messages are sent on
/// `committed` when it is given (see [`SqliteStore::open`] and
/// [`NatsStore::open`]).
pub async fn open(
    backend: &Backend,
    committed: Option<mpsc::UnboundedSender<Arc<Message>>>,
) -> anyhow::Result<AnyStore> {
    Ok(match backend {
        Backend::Sqlite(data) => AnyStore::Sqlite(
            SqliteStore::open(data, committed)
                .with_context(|| format!("cannot open the store in {}", data.display()))?,
        ),
        Backend::Nats(opts) => AnyStore::Nats(Box::new(NatsStore::open(opts, committed).await?)),
    })
}

impl AnyStore {
    /// The connection to NATS and its count of (re)connections, for the
    /// link to the other relays sharing the store; `None` on SQLite, where
    /// the relay is alone.
    pub fn nats(&self) -> Option<(async_nats::Client, watch::Receiver<u64>)> {
        match self {
            AnyStore::Sqlite(_) => None,
            AnyStore::Nats(s) => Some((s.client(), s.connections())),
        }
    }
}

/// Calls the same method on whichever store is open.
macro_rules! each {
    ($store:expr, $s:ident => $call:expr) => {
        match $store {
            AnyStore::Sqlite($s) => $call,
            AnyStore::Nats($s) => $call,
        }
    };
}

impl Store for AnyStore {
    async fn create_user(&self, name: &str, phc: &str) -> Result<(), StoreError> {
        each!(self, s => s.create_user(name, phc).await)
    }

    async fn lookalike(&self, name: &str) -> Result<Option<String>, StoreError> {
        each!(self, s => s.lookalike(name).await)
    }

    async fn user(&self, name: &str) -> Result<Option<StoredUser>, StoreError> {
        each!(self, s => s.user(name).await)
    }

    async fn set_password(&self, name: &str, phc: &str) -> Result<(), StoreError> {
        each!(self, s => s.set_password(name, phc).await)
    }

    async fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        each!(self, s => s.delete_user(name).await)
    }

    async fn list_users(&self) -> Result<Vec<StoredUser>, StoreError> {
        each!(self, s => s.list_users().await)
    }

    async fn account_changes(
        &self,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<String>, StoreError> {
        each!(self, s => s.account_changes().await)
    }

    async fn create_room(
        &self,
        name: &str,
        kind: RoomKind,
        creator: &str,
    ) -> Result<RoomRow, StoreError> {
        each!(self, s => s.create_room(name, kind, creator).await)
    }

    async fn open_dm(&self, a: &str, b: &str) -> Result<RoomRow, StoreError> {
        each!(self, s => s.open_dm(a, b).await)
    }

    async fn room(&self, name: &str) -> Result<Option<RoomRow>, StoreError> {
        each!(self, s => s.room(name).await)
    }

    async fn add_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        each!(self, s => s.add_member(room, user).await)
    }

    async fn remove_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        each!(self, s => s.remove_member(room, user).await)
    }

    async fn room_count(&self, user: &str) -> Result<usize, StoreError> {
        each!(self, s => s.room_count(user).await)
    }

    async fn members(&self, room: &str) -> Result<Vec<String>, StoreError> {
        each!(self, s => s.members(room).await)
    }

    async fn is_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        each!(self, s => s.is_member(room, user).await)
    }

    async fn rooms_of(&self, user: &str) -> Result<Vec<RoomRow>, StoreError> {
        each!(self, s => s.rooms_of(user).await)
    }

    async fn public_rooms(&self) -> Result<Vec<RoomRow>, StoreError> {
        each!(self, s => s.public_rooms().await)
    }

    async fn invite(
        &self,
        room: &str,
        user: &str,
        by: &str,
        keep: usize,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.invite(room, user, by, keep).await)
    }

    async fn decline(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        each!(self, s => s.decline(room, user).await)
    }

    async fn invitations(&self, user: &str) -> Result<Vec<Invited>, StoreError> {
        each!(self, s => s.invitations(user).await)
    }

    async fn set_topic(
        &self,
        room: &str,
        by: &str,
        topic: &str,
    ) -> Result<Option<u64>, StoreError> {
        each!(self, s => s.set_topic(room, by, topic).await)
    }

    async fn is_invited(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        each!(self, s => s.is_invited(room, user).await)
    }

    fn append(
        &self,
        msg: NewMessage,
    ) -> impl std::future::Future<Output = Result<Appended, StoreError>> + Send + 'static {
        // Not an `async fn`: the write must be queued now, in call order,
        // not when the future is first polled.
        match self {
            AnyStore::Sqlite(s) => Either::Left(s.append(msg)),
            AnyStore::Nats(s) => Either::Right(s.append(msg)),
        }
    }

    async fn history(
        &self,
        room: &str,
        page: Page,
        limit: u16,
    ) -> Result<(Vec<Message>, bool), StoreError> {
        each!(self, s => s.history(room, page, limit).await)
    }

    async fn close(&self) {
        each!(self, s => s.close().await)
    }
}
