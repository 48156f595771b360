//! The embedded store: one SQLite file in WAL mode.
//!
//! Every change goes through one writer thread (`writer`) that
//! group-commits whatever is queued: SQLite allows one writer at a time
//! anyway, and one `fsync` per batch instead of per message is what lets a
//! single file keep up with a busy relay. Reads run on a small pool of
//! read-only connections (`reads`); WAL lets them proceed while the writer
//! commits.
//!
//! Lists of names (`members`, `list_users`, ...) are sorted by byte order,
//! as `Vec::sort` would sort them.

mod fail;
mod reads;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use common::frame::{Message, Page, RoomKind};
use tokio::sync::{mpsc, oneshot};

use self::reads::{lock, ReadPool};
use self::writer::{Op, Outcome, Request, Writer, MAX_BATCH};
use super::{
    Appended, Invited, NewMessage, RoomRow, Store, StoreError, StoredUser, FAULT_ABORT_AFTER_COMMIT,
};

/// File name of the database inside the data folder.
pub const DB_FILE: &str = "confab.db";

/// Read-only connections. Reads are short index lookups, so a few cover
/// many sessions paging history at once without holding many file handles.
const READERS: usize = 4;

/// Requests waiting for the writer. Past this many, writes are refused
/// (`Db`, which clients see as "retry later") instead of growing memory:
/// at the 4 KiB body limit the queue holds at most 64 MiB. Sessions bound
/// their own sends in flight, so only a store far behind its disk gets here.
const QUEUE: usize = 16 * MAX_BATCH;

/// How often the account changes other processes wrote are looked for: a
/// one-row index lookup, and the most a deleted user's session outlives
/// the deletion.
const ACCOUNT_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// The SQLite store.
pub struct SqliteStore {
    /// `None` once closed: the writer then drains the queue and exits.
    /// Unbounded so that a write is queued the moment it is called, which
    /// `append` promises; `queued` does the bounding.
    requests: Mutex<Option<mpsc::UnboundedSender<Request>>>,
    /// Requests sent and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reads: Arc<ReadPool>,
    /// Transactions committed, so tests can tell that appends are batched.
    #[cfg(test)]
    commits: Arc<std::sync::atomic::AtomicU64>,
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/confab.db`. Committed messages are sent
    /// on `committed`, in commit order, when it is given.
    pub fn open(
        dir: &Path,
        committed: Option<mpsc::UnboundedSender<Arc<Message>>>,
    ) -> Result<Self, StoreError> {
        private_dir(dir)
            .map_err(|e| StoreError::Db(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(DB_FILE);
        private_file(&path)
            .map_err(|e| StoreError::Db(format!("cannot create {}: {e}", path.display())))?;
        let at_path = |e: StoreError| match e {
            StoreError::Db(m) => StoreError::Db(format!("{}: {m}", path.display())),
            other => other,
        };
        let conn = schema::open_writer(&path, writer::now_ms()).map_err(at_path)?;
        let reads = ReadPool::open(&path, READERS).map_err(at_path)?;

        let abort_after = std::env::var(FAULT_ABORT_AFTER_COMMIT).ok();
        if let Some(body) = &abort_after {
            tracing::warn!(
                body = %body,
                "{FAULT_ABORT_AFTER_COMMIT} is set: the relay will abort after committing that message"
            );
        }

        let (requests, queue) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let writer = Writer::new(conn, committed, abort_after, queued.clone());
        #[cfg(test)]
        let commits = writer.commits.clone();
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| {
                at_path(StoreError::Db(format!(
                    "cannot start the writer thread: {e}"
                )))
            })?;
        tracing::debug!(path = %path.display(), "store open");
        Ok(Self {
            requests: Mutex::new(Some(requests)),
            queued,
            writer: Mutex::new(Some(handle)),
            reads,
            #[cfg(test)]
            commits,
        })
    }

    /// Queues a change now; the future resolves once the transaction
    /// holding it is durable.
    fn write(&self, op: Op) -> impl Future<Output = Result<Outcome, StoreError>> + Send + 'static {
        let answer = self.enqueue(op);
        async move { answer?.await.map_err(|_| StoreError::Closed)? }
    }

    fn enqueue(
        &self,
        op: Op,
    ) -> Result<oneshot::Receiver<Result<Outcome, StoreError>>, StoreError> {
        let requests = lock(&self.requests);
        let requests = requests.as_ref().ok_or(StoreError::Closed)?;
        if self.queued.fetch_add(1, Ordering::Relaxed) >= QUEUE {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(StoreError::Db(format!(
                "overloaded: {QUEUE} writes are waiting"
            )));
        }
        let (reply, answer) = oneshot::channel();
        if requests.send(Request { op, reply }).is_err() {
            // The writer is gone (it only stops early if it panicked).
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(StoreError::Closed);
        }
        Ok(answer)
    }
}

impl Store for SqliteStore {
    async fn create_user(&self, name: &str, phc: &str) -> Result<(), StoreError> {
        let op = Op::CreateUser {
            name: name.into(),
            phc: phc.into(),
        };
        self.write(op).await?.done()
    }

    async fn lookalike(&self, name: &str) -> Result<Option<String>, StoreError> {
        let name = name.to_owned();
        self.reads
            .run(move |c| Ok(reads::lookalike(c, &name)?))
            .await
    }

    async fn user(&self, name: &str) -> Result<Option<StoredUser>, StoreError> {
        let name = name.to_owned();
        self.reads.run(move |c| reads::user(c, &name)).await
    }

    async fn set_password(&self, name: &str, phc: &str) -> Result<(), StoreError> {
        let op = Op::SetPassword {
            name: name.into(),
            phc: phc.into(),
        };
        self.write(op).await?.done()
    }

    async fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        self.write(Op::DeleteUser { name: name.into() })
            .await?
            .done()
    }

    async fn list_users(&self) -> Result<Vec<StoredUser>, StoreError> {
        self.reads.run(reads::list_users).await
    }

    async fn create_room(
        &self,
        name: &str,
        kind: RoomKind,
        creator: &str,
    ) -> Result<RoomRow, StoreError> {
        let op = Op::CreateRoom {
            name: name.into(),
            kind,
            creator: creator.into(),
        };
        self.write(op).await?.room()
    }

    async fn open_dm(&self, a: &str, b: &str) -> Result<RoomRow, StoreError> {
        self.write(Op::OpenDm {
            a: a.into(),
            b: b.into(),
        })
        .await?
        .room()
    }

    async fn room(&self, name: &str) -> Result<Option<RoomRow>, StoreError> {
        let name = name.to_owned();
        self.reads.run(move |c| reads::room(c, &name)).await
    }

    async fn add_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        let op = Op::AddMember {
            room: room.into(),
            user: user.into(),
        };
        self.write(op).await?.changed()
    }

    async fn remove_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        let op = Op::RemoveMember {
            room: room.into(),
            user: user.into(),
        };
        self.write(op).await?.changed()
    }

    async fn members(&self, room: &str) -> Result<Vec<String>, StoreError> {
        let room = room.to_owned();
        self.reads.run(move |c| reads::members(c, &room)).await
    }

    async fn is_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        let (room, user) = (room.to_owned(), user.to_owned());
        self.reads
            .run(move |c| reads::is_member(c, &room, &user))
            .await
    }

    async fn room_count(&self, user: &str) -> Result<usize, StoreError> {
        let user = user.to_owned();
        self.reads.run(move |c| reads::room_count(c, &user)).await
    }

    async fn rooms_of(&self, user: &str) -> Result<Vec<RoomRow>, StoreError> {
        let user = user.to_owned();
        self.reads.run(move |c| reads::rooms_of(c, &user)).await
    }

    async fn public_rooms(&self) -> Result<Vec<RoomRow>, StoreError> {
        self.reads.run(reads::public_rooms).await
    }

    async fn invite(
        &self,
        room: &str,
        user: &str,
        by: &str,
        keep: usize,
    ) -> Result<bool, StoreError> {
        let op = Op::Invite {
            room: room.into(),
            user: user.into(),
            by: by.into(),
            keep,
        };
        self.write(op).await?.changed()
    }

    async fn decline(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        let op = Op::Decline {
            room: room.into(),
            user: user.into(),
        };
        self.write(op).await?.changed()
    }

    async fn invitations(&self, user: &str) -> Result<Vec<Invited>, StoreError> {
        let user = user.to_owned();
        let rows = self
            .reads
            .run(move |c| reads::invitations(c, &user))
            .await?;
        Ok(rows
            .into_iter()
            .map(|(room, by)| Invited { room, by })
            .collect())
    }

    async fn set_topic(
        &self,
        room: &str,
        by: &str,
        topic: &str,
    ) -> Result<Option<u64>, StoreError> {
        let op = Op::SetTopic {
            room: room.into(),
            by: by.into(),
            topic: topic.into(),
        };
        self.write(op).await?.topic()
    }

    async fn is_invited(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        let (room, user) = (room.to_owned(), user.to_owned());
        self.reads
            .run(move |c| reads::is_invited(c, &room, &user))
            .await
    }

    fn append(
        &self,
        msg: NewMessage,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send + 'static {
        let appended = self.write(Op::Append(msg));
        async move { appended.await?.appended() }
    }

    async fn history(
        &self,
        room: &str,
        page: Page,
        limit: u16,
    ) -> Result<(Vec<Message>, bool), StoreError> {
        let room = room.to_owned();
        self.reads
            .run(move |c| reads::history(c, &room, page, limit))
            .await
    }

    async fn account_changes(&self) -> Result<mpsc::UnboundedReceiver<String>, StoreError> {
        let mut last = self.reads.run(reads::last_account_change).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let reads = self.reads.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ACCOUNT_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = tx.closed() => return,
                }
                match reads
                    .run(move |c| reads::account_changes_after(c, last))
                    .await
                {
                    Ok(rows) => {
                        for (id, name) in rows {
                            last = id;
                            if tx.send(name).is_err() {
                                return;
                            }
                        }
                    }
                    Err(StoreError::Closed) => return,
                    Err(e) => tracing::warn!("cannot read account changes: {e}"),
                }
            }
        });
        Ok(rx)
    }

    async fn close(&self) {
        self.reads.close();
        // Dropping the sender lets the writer drain the queue, commit and return.
        lock(&self.requests).take();
        let handle = lock(&self.writer).take();
        if let Some(handle) = handle {
            // A panicked writer has nothing left to finish.
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

impl Drop for SqliteStore {
    /// Stops the writer and waits for it: it only has the queued requests to
    /// commit, and a thread left running would still hold the file.
    fn drop(&mut self) {
        self.reads.close();
        self.requests
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = handle.join();
        }
    }
}

/// Creates the data folder readable by the relay's user alone: it holds
/// password hashes and every message. A folder that exists keeps its mode;
/// one that others can enter gets a warning.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                "the data folder is open to other users (mode {:o}); chmod 700 it",
                mode & 0o777
            );
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// Makes the database file the relay's user's alone before SQLite opens it:
/// SQLite gives the WAL and shared-memory files the database file's mode.
fn private_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}
