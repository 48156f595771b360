//! The cluster store: several relays share one NATS JetStream cluster.
//!
//! Messages live in one stream with a subject per room (`log`); accounts,
//! rooms, memberships and invites are keys of one key-value bucket
//! (`directory`). Both go through one connection (`connection`), which
//! the link between relays shares. `keys` names everything in NATS and
//! `read` pages through a stream with short-lived consumers.

mod connection;
mod directory;
mod keys;
mod log;
mod read;
mod record;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use common::frame::{Message, Page, RoomKind};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use self::directory::{Directory, RoomRecord};
use self::log::MessageLog;
use super::{Appended, Invited, NewMessage, RoomRow, Store, StoreError, StoredUser};

pub use self::connection::{connect, NatsOptions};
pub use self::keys::EVENTS;

/// Lookups of a room's newest sequence and member count in flight at once
/// while a list of rooms is read: each is a round trip to NATS, and one
/// after the other they made a login wait ~1.6 ms per public room.
const LOOKUPS: usize = 32;

/// How long the list of public rooms is served from memory: listing it
/// reads every public room, which every login would otherwise pay. Changes
/// made through this relay are seen at once; other relays' within this.
const DIRECTORY_TTL: Duration = Duration::from_secs(10);

/// The JetStream store.
pub struct NatsStore {
    client: async_nats::Client,
    connections: watch::Receiver<u64>,
    log: MessageLog,
    directory: Directory,
    /// The public rooms as last read, when, and at which `changes`.
    public: tokio::sync::Mutex<Option<(Instant, u64, Vec<RoomRow>)>>,
    /// Bumped by every change through this relay that a listing shows.
    changes: AtomicU64,
}

impl NatsStore {
    /// Connects, creates the stream and bucket if they are missing, and,
    /// when `committed` is given, follows the stream from now on.
    pub async fn open(
        opts: &NatsOptions,
        committed: Option<mpsc::UnboundedSender<Arc<Message>>>,
    ) -> anyhow::Result<Self> {
        let (client, connections) = connect(opts).await?;
        let js = jetstream::new(client.clone());
        let stream = log::open_stream(&js, opts).await?;
        let directory = Directory::open(&js, opts.replicas).await?;
        directory
            .create_lobby()
            .await
            .context("cannot create the lobby in NATS")?;
        let log = MessageLog::start(
            js,
            stream,
            directory.clone(),
            committed,
            connections.clone(),
        )
        .await?;
        tracing::info!(urls = %opts.urls, "store on NATS JetStream");
        Ok(NatsStore {
            client,
            connections,
            log,
            directory,
            public: tokio::sync::Mutex::new(None),
            changes: AtomicU64::new(0),
        })
    }

    /// The connection to NATS, shared with the link to the other relays.
    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// Counts (re)connections to NATS.
    pub fn connections(&self) -> watch::Receiver<u64> {
        self.connections.clone()
    }

    /// A room as listed: its record, with the newest sequence from the
    /// log and the member count from the bucket.
    async fn row(&self, record: RoomRecord) -> Result<RoomRow, StoreError> {
        let latest = self.log.latest(&record.name).await?;
        let members = self.directory.members(&record.name).await?.len() as u32;
        Ok(RoomRow {
            name: record.name,
            kind: record.kind,
            created_by: record.created_by,
            latest,
            members,
            topic: record.topic,
        })
    }

    /// Rows of `records`, by name, looked up [`LOOKUPS`] at a time.
    async fn rows(&self, records: Vec<RoomRecord>) -> Result<Vec<RoomRow>, StoreError> {
        let mut rows = futures_util::stream::iter(records.into_iter().map(|r| self.row(r)))
            .buffer_unordered(LOOKUPS)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }

    /// A change a room listing shows was made through this relay.
    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::Relaxed);
    }
}

impl Store for NatsStore {
    async fn create_user(&self, name: &str, phc: &str) -> Result<(), StoreError> {
        let done = self.directory.create_user(name, phc).await;
        // After the change: a listing read meanwhile is read again.
        self.changed();
        done
    }

    async fn lookalike(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.directory.lookalike(name).await
    }

    async fn user(&self, name: &str) -> Result<Option<StoredUser>, StoreError> {
        self.directory.user(name).await
    }

    async fn set_password(&self, name: &str, phc: &str) -> Result<(), StoreError> {
        self.directory.set_password(name, phc).await
    }

    async fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        let done = self.directory.delete_user(name).await;
        // After the change: a listing read meanwhile is read again.
        self.changed();
        done
    }

    async fn account_changes(
        &self,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<String>, StoreError> {
        Ok(self.directory.account_changes())
    }

    async fn list_users(&self) -> Result<Vec<StoredUser>, StoreError> {
        self.directory.list_users().await
    }

    async fn create_room(
        &self,
        name: &str,
        kind: RoomKind,
        creator: &str,
    ) -> Result<RoomRow, StoreError> {
        let creator = self.directory.create_room(name, kind, creator).await?;
        self.changed();
        Ok(RoomRow {
            name: name.to_owned(),
            kind,
            created_by: creator,
            latest: 0,
            members: 1,
            topic: String::new(),
        })
    }

    async fn open_dm(&self, a: &str, b: &str) -> Result<RoomRow, StoreError> {
        let record = self.directory.open_dm(a, b).await?;
        self.row(record).await
    }

    async fn room(&self, name: &str) -> Result<Option<RoomRow>, StoreError> {
        match self.directory.room(name).await? {
            Some(record) => Ok(Some(self.row(record).await?)),
            None => Ok(None),
        }
    }

    async fn add_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        let done = self.directory.add_member(room, user).await;
        // After the change: a listing read meanwhile is read again.
        self.changed();
        done
    }

    async fn remove_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        let done = self.directory.remove_member(room, user).await;
        // After the change: a listing read meanwhile is read again.
        self.changed();
        done
    }

    async fn members(&self, room: &str) -> Result<Vec<String>, StoreError> {
        self.directory.members(room).await
    }

    async fn is_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        self.directory.is_member(room, user).await
    }

    async fn room_count(&self, user: &str) -> Result<usize, StoreError> {
        self.directory.room_count(user).await
    }

    async fn rooms_of(&self, user: &str) -> Result<Vec<RoomRow>, StoreError> {
        let records = self.directory.rooms_of(user).await?;
        self.rows(records).await
    }

    async fn public_rooms(&self) -> Result<Vec<RoomRow>, StoreError> {
        // Held while reading, so logins at once read the rooms once.
        let mut cached = self.public.lock().await;
        let now = self.changes.load(Ordering::Relaxed);
        if let Some((at, seen, rows)) = &*cached {
            if *seen == now && at.elapsed() < DIRECTORY_TTL {
                return Ok(rows.clone());
            }
        }
        let records = self.directory.public_rooms().await?;
        let rows = self.rows(records).await?;
        *cached = Some((Instant::now(), now, rows.clone()));
        Ok(rows)
    }

    async fn invite(
        &self,
        room: &str,
        user: &str,
        by: &str,
        keep: usize,
    ) -> Result<bool, StoreError> {
        self.directory.invite(room, user, by, keep).await
    }

    async fn decline(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        self.directory.decline(room, user).await
    }

    async fn invitations(&self, user: &str) -> Result<Vec<Invited>, StoreError> {
        let records = self.directory.invitations(user).await?;
        let mut out = Vec::with_capacity(records.len());
        for (record, by) in records {
            out.push(Invited {
                room: self.row(record).await?,
                by,
            });
        }
        Ok(out)
    }

    async fn set_topic(
        &self,
        room: &str,
        by: &str,
        topic: &str,
    ) -> Result<Option<u64>, StoreError> {
        let done = self.directory.set_topic(room, by, topic).await;
        // After the change: a listing read meanwhile is read again.
        self.changed();
        done
    }

    async fn is_invited(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        self.directory.is_invited(room, user).await
    }

    fn append(
        &self,
        msg: NewMessage,
    ) -> impl std::future::Future<Output = Result<Appended, StoreError>> + Send + 'static {
        self.log.append(msg)
    }

    async fn history(
        &self,
        room: &str,
        page: Page,
        limit: u16,
    ) -> Result<(Vec<Message>, bool), StoreError> {
        self.log.history(room, page, limit).await
    }

    async fn close(&self) {
        self.log.close().await;
        let _ = self.client.flush().await;
    }
}
