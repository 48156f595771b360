//! Accounts, rooms, memberships and invites: keys of one key-value bucket
//! (see `keys` for their names).
//!
//! Creation is create-if-absent and changes compare and set, so relays
//! racing on the same name agree. Lists are scans of the keys matching a
//! wildcard, read through the bucket's own stream.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::{anyhow, Context as _};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::kv::{self, CreateErrorKind};
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::Context;
use bytes::Bytes;
use common::frame::RoomKind;
use common::names::{dm_room, LOBBY};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::keys;
use super::read::Cursor;
use super::record::{db, decode, encode, now_ms};
use crate::store::{StoreError, StoredUser};

#[derive(Serialize, Deserialize)]
struct UserRecord {
    name: String,
    /// Empty once deleted: the name stays taken, as with SQLite.
    phc: String,
    created: i64,
}

/// An invitation as the bucket holds it, under the key of its room and
/// invitee.
#[derive(Serialize, Deserialize)]
struct InviteRecord {
    by: String,
    /// Milliseconds since the Unix epoch.
    at: i64,
}

/// A room as the bucket holds it.
#[derive(Debug, Serialize, Deserialize)]
pub struct RoomRecord {
    pub name: String,
    pub kind: RoomKind,
    pub created_by: String,
    created: i64,
    /// Empty for none. Appended: records written before rooms had topics
    /// end before it (see [`RoomRecord::decode`]).
    pub topic: String,
}

/// A room as the bucket held it before rooms had topics.
#[derive(Serialize, Deserialize)]
struct RoomRecordWithoutTopic {
    name: String,
    kind: RoomKind,
    created_by: String,
    created: i64,
}

impl RoomRecord {
    /// A record from the bucket, of either shape. Records are bincode,
    /// which has no field names: one written before the topic was
    /// appended simply ends early. `#[serde(default)]` would not mend that
    /// (bincode reports the early end rather than asking for the default;
    /// tried), so such a record is read in its old shape, with no topic.
    pub fn decode(bytes: &[u8]) -> Result<RoomRecord, StoreError> {
        match decode::<RoomRecord>(bytes) {
            Ok(record) => Ok(record),
            Err(e) => match decode::<RoomRecordWithoutTopic>(bytes) {
                Ok(old) => Ok(RoomRecord {
                    name: old.name,
                    kind: old.kind,
                    created_by: old.created_by,
                    created: old.created,
                    topic: String::new(),
                }),
                Err(_) => Err(e),
            },
        }
    }
}

/// The bucket, and the rooms known to exist in it.
#[derive(Clone)]
pub struct Directory {
    kv: kv::Store,
    /// Rooms are never deleted, so this only grows.
    rooms: Arc<Mutex<HashSet<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Directory {
    /// Opens the bucket, creating it if it is missing, and reserves the
    /// skeletons of accounts made before names were compared by skeleton.
    pub async fn open(js: &Context, replicas: usize) -> anyhow::Result<Directory> {
        let directory = Directory {
            kv: open_bucket(js, replicas).await?,
            rooms: Arc::default(),
        };
        directory
            .reserve_skeletons()
            .await
            .context("cannot reserve the accounts' name skeletons in NATS")?;
        Ok(directory)
    }

    /// Makes the skeleton key of every account, deleted ones too, that has
    /// none: accounts made by a relay from before skeletons (or during a
    /// rolling upgrade, by one still running the old version) would
    /// otherwise not stop a lookalike. Run at every open, so it also
    /// mends what such a relay made since: it reads every account, as
    /// `relay user list` does, and writes only the keys that are missing.
    /// Of two old accounts that already look alike, the first read gets
    /// the key; either blocks further lookalikes, and both stay.
    async fn reserve_skeletons(&self) -> Result<(), StoreError> {
        let reserved: HashSet<String> = self
            .scan("s.*")
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        for (_, value) in self.scan("u.*").await? {
            let u: UserRecord = decode(&value)?;
            let key = keys::skeleton_key(&u.name);
            if !reserved.contains(&key) {
                self.create_key(key, Bytes::from(u.name)).await?;
            }
        }
        Ok(())
    }

    /// Creates the lobby unless it exists.
    pub async fn create_lobby(&self) -> Result<(), StoreError> {
        match self.create_room_record(LOBBY, RoomKind::Public, "").await {
            Ok(()) | Err(StoreError::RoomExists) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether a room exists; a failed lookup counts as no.
    pub async fn room_exists(&self, room: &str) -> bool {
        if lock(&self.rooms).contains(room) {
            return true;
        }
        let exists = matches!(self.kv.get(keys::room_key(room)).await, Ok(Some(_)));
        if exists {
            lock(&self.rooms).insert(room.to_owned());
        }
        exists
    }

    async fn create_room_record(
        &self,
        name: &str,
        kind: RoomKind,
        created_by: &str,
    ) -> Result<(), StoreError> {
        let record = RoomRecord {
            name: name.to_owned(),
            kind,
            created_by: created_by.to_owned(),
            created: now_ms() / 1000,
            topic: String::new(),
        };
        match self.kv.create(keys::room_key(name), encode(&record)).await {
            Ok(_) => {
                lock(&self.rooms).insert(name.to_owned());
                Ok(())
            }
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Err(StoreError::RoomExists),
            Err(e) => Err(db(e)),
        }
    }

    /// Creates a key if absent; `Ok(false)` if it exists.
    async fn create_key(&self, key: String, value: Bytes) -> Result<bool, StoreError> {
        match self.kv.create(key, value).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(db(e)),
        }
    }

    async fn user_record(&self, name: &str) -> Result<Option<(UserRecord, u64)>, StoreError> {
        let entry = self.kv.entry(keys::user_key(name)).await.map_err(db)?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                Ok(Some((decode::<UserRecord>(&e.value)?, e.revision)))
            }
            _ => Ok(None),
        }
    }

    /// The registered spelling of a live account.
    async fn canonical(&self, name: &str) -> Result<String, StoreError> {
        match self.user_record(name).await? {
            Some((u, _)) if !u.phc.is_empty() => Ok(u.name),
            _ => Err(StoreError::NoSuchUser),
        }
    }

    /// A room by exact name.
    pub async fn room(&self, name: &str) -> Result<Option<RoomRecord>, StoreError> {
        match self.kv.get(keys::room_key(name)).await.map_err(db)? {
            Some(bytes) => Ok(Some(RoomRecord::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    async fn require_room(&self, name: &str) -> Result<(), StoreError> {
        if lock(&self.rooms).contains(name) {
            return Ok(());
        }
        match self.room(name).await? {
            Some(_) => {
                lock(&self.rooms).insert(name.to_owned());
                Ok(())
            }
            None => Err(StoreError::NoSuchRoom),
        }
    }

    /// Live values of the keys matching `filter` (a key with wildcards).
    async fn scan(&self, filter: &str) -> Result<Vec<(String, Bytes)>, StoreError> {
        let prefix = format!("$KV.{}.", keys::BUCKET);
        let cursor = Cursor::open(
            &self.kv.stream,
            &format!("{prefix}{filter}"),
            DeliverPolicy::LastPerSubject,
        )
        .await?;
        let n = cursor.pending;
        let read = cursor.read(n).await;
        cursor.close();
        Ok(read?
            .into_iter()
            .filter(|m| {
                // Deleted and purged keys leave a marker as their last value.
                !m.headers
                    .as_ref()
                    .and_then(|h| h.get("KV-Operation"))
                    .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"))
            })
            .filter_map(|m| {
                let key = m.subject.strip_prefix(&prefix)?.to_owned();
                Some((key, m.payload.clone()))
            })
            .collect())
    }

    /// Purges a key if it holds a value; whether it did.
    async fn purge_if_present(&self, key: &str) -> Result<bool, StoreError> {
        match self.kv.entry(key).await.map_err(db)? {
            Some(e) if e.operation == kv::Operation::Put => {
                match self.kv.purge_expect_revision(key, Some(e.revision)).await {
                    Ok(()) => Ok(true),
                    // Someone else removed (or re-added) it meanwhile.
                    Err(_) => Ok(false),
                }
            }
            _ => Ok(false),
        }
    }

    /// Who holds the skeleton key of `name`, if anyone.
    async fn skeleton_holder(&self, name: &str) -> Result<Option<String>, StoreError> {
        let value = self.kv.get(keys::skeleton_key(name)).await.map_err(db)?;
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// See [`Store::lookalike`](crate::store::Store::lookalike).
    pub async fn lookalike(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .skeleton_holder(name)
            .await?
            .filter(|holder| !holder.eq_ignore_ascii_case(name)))
    }

    /// See [`Store::create_user`](crate::store::Store::create_user). The
    /// skeleton key is created first, atomically, as the user key is: of
    /// two lookalikes registered at once on two relays only one gets it.
    /// It is kept if the user key then fails (and deleted accounts keep
    /// theirs, as they keep their name): a name's own registration gets
    /// past its key, so a key left by a failed attempt refuses only its
    /// lookalikes, the safe side to err on.
    pub async fn create_user(&self, name: &str, phc: &str) -> Result<(), StoreError> {
        let reserved = self
            .create_key(keys::skeleton_key(name), Bytes::from(name.to_owned()))
            .await?;
        if !reserved {
            if let Some(holder) = self.lookalike(name).await? {
                // The name itself, taken too, is the plainer answer.
                if self.user_record(name).await?.is_some() {
                    return Err(StoreError::NameTaken);
                }
                return Err(StoreError::LooksLike(holder));
            }
        }
        let record = UserRecord {
            name: name.to_owned(),
            phc: phc.to_owned(),
            created: now_ms() / 1000,
        };
        if !self
            .create_key(keys::user_key(name), encode(&record))
            .await?
        {
            return Err(StoreError::NameTaken);
        }
        self.create_key(keys::member_key(LOBBY, name), Bytes::from(name.to_owned()))
            .await?;
        Ok(())
    }

    /// See [`Store::user`](crate::store::Store::user).
    pub async fn user(&self, name: &str) -> Result<Option<StoredUser>, StoreError> {
        Ok(match self.user_record(name).await? {
            Some((u, _)) if !u.phc.is_empty() => Some(StoredUser {
                name: u.name,
                phc: u.phc,
                created: u.created,
            }),
            _ => None,
        })
    }

    /// See [`Store::set_password`](crate::store::Store::set_password).
    pub async fn set_password(&self, name: &str, phc: &str) -> Result<(), StoreError> {
        loop {
            let Some((mut u, revision)) = self.user_record(name).await? else {
                return Err(StoreError::NoSuchUser);
            };
            if u.phc.is_empty() {
                return Err(StoreError::NoSuchUser);
            }
            u.phc = phc.to_owned();
            match self
                .kv
                .update(keys::user_key(name), encode(&u), revision)
                .await
            {
                Ok(_) => return Ok(()),
                // Changed meanwhile: read it again.
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(db(e)),
            }
        }
    }

    /// See [`Store::delete_user`](crate::store::Store::delete_user).
    pub async fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        loop {
            let Some((mut u, revision)) = self.user_record(name).await? else {
                return Err(StoreError::NoSuchUser);
            };
            if u.phc.is_empty() {
                return Err(StoreError::NoSuchUser);
            }
            u.phc.clear();
            match self
                .kv
                .update(keys::user_key(name), encode(&u), revision)
                .await
            {
                Ok(_) => break,
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(db(e)),
            }
        }
        let user = keys::user_token(name);
        for filter in [format!("m.*.{user}"), format!("i.*.{user}")] {
            for (key, _) in self.scan(&filter).await? {
                self.kv.purge(&key).await.map_err(db)?;
            }
        }
        Ok(())
    }

    /// See [`Store::account_changes`](crate::store::Store::account_changes):
    /// a watch of the accounts' keys. A lost watch is made again with the
    /// last value of every account, since changes made meanwhile were missed.
    pub fn account_changes(&self) -> tokio::sync::mpsc::UnboundedReceiver<String> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let kv = self.kv.clone();
        tokio::spawn(async move {
            let mut lost = false;
            loop {
                let watch = if lost {
                    kv.watch_with_history("u.*").await
                } else {
                    kv.watch("u.*").await
                };
                match watch {
                    Ok(mut watch) => loop {
                        let entry = tokio::select! {
                            entry = watch.next() => entry,
                            _ = tx.closed() => return,
                        };
                        let entry = match entry {
                            Some(Ok(entry)) => entry,
                            Some(Err(e)) => {
                                tracing::warn!("watch of accounts lost: {e}");
                                break;
                            }
                            None => break,
                        };
                        let name = match decode::<UserRecord>(&entry.value) {
                            Ok(u) => u.name,
                            Err(_) => entry.key.trim_start_matches("u.").to_owned(),
                        };
                        if tx.send(name).is_err() {
                            return;
                        }
                    },
                    Err(e) => tracing::warn!("cannot watch accounts: {e}"),
                }
                lost = true;
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        rx
    }

    /// See [`Store::list_users`](crate::store::Store::list_users).
    pub async fn list_users(&self) -> Result<Vec<StoredUser>, StoreError> {
        let mut users = Vec::new();
        for (_, value) in self.scan("u.*").await? {
            let u: UserRecord = decode(&value)?;
            if !u.phc.is_empty() {
                users.push(StoredUser {
                    name: u.name,
                    phc: u.phc,
                    created: u.created,
                });
            }
        }
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }

    /// Creates a channel with its creator as first member; returns the
    /// creator's registered spelling.
    pub async fn create_room(
        &self,
        name: &str,
        kind: RoomKind,
        creator: &str,
    ) -> Result<String, StoreError> {
        let creator = self.canonical(creator).await?;
        self.create_room_record(name, kind, &creator).await?;
        self.create_key(
            keys::member_key(name, &creator),
            Bytes::from(creator.clone()),
        )
        .await?;
        Ok(creator)
    }

    /// See [`Store::open_dm`](crate::store::Store::open_dm).
    pub async fn open_dm(&self, a: &str, b: &str) -> Result<RoomRecord, StoreError> {
        let a = self.canonical(a).await?;
        let b = self.canonical(b).await?;
        let name = dm_room(&a, &b);
        let created = match self.create_room_record(&name, RoomKind::Direct, &a).await {
            Ok(()) => true,
            Err(StoreError::RoomExists) => false,
            Err(e) => return Err(e),
        };
        // The other joins only a new DM: one who left it stays out.
        let joining = if created { vec![&a, &b] } else { vec![&a] };
        for user in joining {
            self.create_key(keys::member_key(&name, user), Bytes::from(user.clone()))
                .await?;
        }
        self.room(&name).await?.ok_or(StoreError::NoSuchRoom)
    }

    /// See [`Store::add_member`](crate::store::Store::add_member).
    pub async fn add_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        self.require_room(room).await?;
        let user = self.canonical(user).await?;
        let added = self
            .create_key(keys::member_key(room, &user), Bytes::from(user.clone()))
            .await?;
        self.purge_if_present(&keys::invite_key(room, &user))
            .await?;
        Ok(added)
    }

    /// See [`Store::remove_member`](crate::store::Store::remove_member).
    pub async fn remove_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        let removed = self.purge_if_present(&keys::member_key(room, user)).await?;
        if removed {
            // An invitation that raced the join on another relay would
            // otherwise outlive the membership and let the user back in.
            self.purge_if_present(&keys::invite_key(room, user)).await?;
        }
        Ok(removed)
    }

    /// See [`Store::members`](crate::store::Store::members).
    pub async fn members(&self, room: &str) -> Result<Vec<String>, StoreError> {
        let filter = format!("m.{}.*", keys::room_token(room));
        let mut names: Vec<String> = self
            .scan(&filter)
            .await?
            .into_iter()
            .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// See [`Store::is_member`](crate::store::Store::is_member).
    pub async fn is_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        Ok(self
            .kv
            .get(keys::member_key(room, user))
            .await
            .map_err(db)?
            .is_some())
    }

    /// See [`Store::room_count`](crate::store::Store::room_count).
    pub async fn room_count(&self, user: &str) -> Result<usize, StoreError> {
        let filter = format!("m.*.{}", keys::user_token(user));
        Ok(self.scan(&filter).await?.len())
    }

    /// The rooms `user` is a member of, in no order.
    pub async fn rooms_of(&self, user: &str) -> Result<Vec<RoomRecord>, StoreError> {
        let filter = format!("m.*.{}", keys::user_token(user));
        let mut records = Vec::new();
        for (key, _) in self.scan(&filter).await? {
            let Some(room) = key.split('.').nth(1).and_then(keys::room_of_token) else {
                continue;
            };
            if let Some(record) = self.room(&room).await? {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Every public channel, in no order.
    pub async fn public_rooms(&self) -> Result<Vec<RoomRecord>, StoreError> {
        let mut records = Vec::new();
        for (_, value) in self.scan("r.*").await? {
            let record = RoomRecord::decode(&value)?;
            if record.kind == RoomKind::Public {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// See [`Store::invite`](crate::store::Store::invite).
    pub async fn invite(
        &self,
        room: &str,
        user: &str,
        by: &str,
        keep: usize,
    ) -> Result<bool, StoreError> {
        self.require_room(room).await?;
        let user = self.canonical(user).await?;
        if self.is_member(room, &user).await? {
            return Ok(false);
        }
        let record = InviteRecord {
            by: by.to_owned(),
            at: now_ms(),
        };
        // A put goes to the end of the bucket's stream, so an invitation
        // made again is the newest however old the first one was.
        self.kv
            .put(keys::invite_key(room, &user), encode(&record))
            .await
            .map_err(db)?;
        let all = self.invites_of(&user).await?;
        let over = all.len().saturating_sub(keep);
        for (key, _) in all.into_iter().take(over) {
            self.kv.purge(&key).await.map_err(db)?;
        }
        Ok(true)
    }

    /// The keys and records of `user`'s invitations, oldest first.
    async fn invites_of(&self, user: &str) -> Result<Vec<(String, InviteRecord)>, StoreError> {
        let filter = format!("i.*.{}", keys::user_token(user));
        // By when they were made; the scan's order (the bucket's stream,
        // the order they were put in) stays between equal times.
        let mut invites: Vec<(String, InviteRecord)> = self
            .scan(&filter)
            .await?
            .into_iter()
            .map(|(key, value)| {
                // Invitations written before they named their inviter.
                let record = decode(&value).unwrap_or(InviteRecord {
                    by: String::new(),
                    at: 0,
                });
                (key, record)
            })
            .collect();
        invites.sort_by_key(|(_, r)| r.at);
        Ok(invites)
    }

    /// `user`'s invitations to rooms they are not a member of, newest
    /// first: each room's record and who invited.
    pub async fn invitations(&self, user: &str) -> Result<Vec<(RoomRecord, String)>, StoreError> {
        let mut out = Vec::new();
        for (key, record) in self.invites_of(user).await?.into_iter().rev() {
            let Some(room) = key.split('.').nth(1).and_then(keys::room_of_token) else {
                continue;
            };
            // A join on another relay may have raced the invitation.
            if self.is_member(&room, user).await? {
                continue;
            }
            if let Some(room) = self.room(&room).await? {
                out.push((room, record.by));
            }
        }
        Ok(out)
    }

    /// See [`Store::decline`](crate::store::Store::decline).
    pub async fn decline(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        self.purge_if_present(&keys::invite_key(room, user)).await
    }

    /// See [`Store::set_topic`](crate::store::Store::set_topic): the order
    /// is the room record's revision in the bucket, which every relay
    /// sharing it sees grow with each write.
    pub async fn set_topic(
        &self,
        room: &str,
        by: &str,
        topic: &str,
    ) -> Result<Option<u64>, StoreError> {
        let key = keys::room_key(room);
        loop {
            let entry = self.kv.entry(key.as_str()).await.map_err(db)?;
            let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
                return Err(StoreError::NoSuchRoom);
            };
            let mut record = RoomRecord::decode(&entry.value)?;
            // Read when the topic is written, as an append's: a leave or an
            // account deletion made before it wins.
            if !self.is_member(room, by).await? {
                return Err(StoreError::NotMember);
            }
            if record.topic == topic {
                return Ok(None);
            }
            record.topic = topic.to_owned();
            match self
                .kv
                .update(key.as_str(), encode(&record), entry.revision)
                .await
            {
                Ok(revision) => return Ok(Some(revision)),
                // Changed meanwhile (another topic): read it again.
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(db(e)),
            }
        }
    }

    /// See [`Store::is_invited`](crate::store::Store::is_invited).
    pub async fn is_invited(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        Ok(self
            .kv
            .get(keys::invite_key(room, user))
            .await
            .map_err(db)?
            .is_some())
    }
}

async fn open_bucket(js: &Context, replicas: usize) -> anyhow::Result<kv::Store> {
    if let Ok(kv) = js.get_key_value(keys::BUCKET).await {
        return Ok(kv);
    }
    // The bucket's stream is made by hand, as the key-value layer would,
    // with only settings every server since 2.9 reads.
    let created = js
        .create_stream(stream::Config {
            name: format!("KV_{}", keys::BUCKET),
            subjects: vec![format!("$KV.{}.>", keys::BUCKET)],
            max_messages_per_subject: 1,
            max_message_size: 64 * 1024,
            storage: StorageType::File,
            num_replicas: replicas,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await;
    match created {
        Ok(_) => js
            .get_key_value(keys::BUCKET)
            .await
            .context("cannot open the key-value bucket in NATS"),
        // Another relay may have created it first.
        Err(e) => js.get_key_value(keys::BUCKET).await.map_err(|_| {
            anyhow!(
                "cannot create the key-value bucket {:?} in NATS: {e}",
                keys::BUCKET
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_record_from_before_topics_reads_as_a_room_without_one() {
        let old = encode(&RoomRecordWithoutTopic {
            name: "ops".into(),
            kind: RoomKind::Private,
            created_by: "bob".into(),
            created: 1_700_000_000,
        });
        let read = RoomRecord::decode(&old).expect("an old record");
        assert_eq!(
            (read.name.as_str(), read.kind, read.created_by.as_str()),
            ("ops", RoomKind::Private, "bob")
        );
        assert_eq!((read.created, read.topic.as_str()), (1_700_000_000, ""));

        let new = RoomRecord {
            topic: "pages, deploys".into(),
            ..read
        };
        let again = RoomRecord::decode(&encode(&new)).expect("a new record");
        assert_eq!(again.topic, "pages, deploys");
        assert!(
            RoomRecord::decode(&[0xff, 1]).is_err(),
            "garbage is an error"
        );
    }
}
