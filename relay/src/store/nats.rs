//! The cluster store: several relays share one NATS JetStream cluster.
//!
//! Messages live in one stream with a subject per room; a message's stream
//! sequence is its room sequence (increasing per room, with gaps, which
//! the protocol allows). A client's resend carries the original id, and
//! JetStream's deduplication by message id answers it with the original
//! sequence. Accounts, rooms, memberships and invites are keys of one
//! key-value bucket, changed with create-if-absent and compare-and-set so
//! relays racing on the same name agree. Every relay follows the stream
//! with an ordered consumer and fans out what any relay committed, in
//! stream order, which is each room's sequence order.

mod keys;
mod read;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _};
use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::kv::{self, CreateErrorKind};
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind, StorageType};
use async_nats::jetstream::{self, Context};
use async_nats::HeaderMap;
use bytes::Bytes;
use common::frame::{Message, MsgId, Page, RoomKind, Seq};
use common::names::{dm_room, LOBBY};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use self::keys::EVENTS;
use super::{Appended, NewMessage, RoomRow, Store, StoreError, StoredUser};

/// How to reach NATS and how to lay out the store there.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Server URLs, comma-separated (`nats://host:4222,tls://other:4222`).
    pub urls: String,
    /// A `.creds` file (JWT and NKey seed).
    pub creds: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// CA certificate to verify the servers' TLS certificates with.
    pub ca: Option<PathBuf>,
    /// Client certificate and key for servers that ask for one.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Copies of the stream and the bucket (1 on a single server, 3 in a cluster).
    pub replicas: usize,
    /// How long a message id is remembered for deduplicating resends.
    pub dedup_window: Duration,
}

impl NatsOptions {
    pub fn new(urls: impl Into<String>) -> Self {
        NatsOptions {
            urls: urls.into(),
            creds: None,
            user: None,
            password: None,
            ca: None,
            tls_cert: None,
            tls_key: None,
            replicas: 1,
            dedup_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// What the stream holds per message; the room is the subject and the
/// sequence is the stream's.
#[derive(Serialize, Deserialize)]
struct Stored {
    id: MsgId,
    ts: i64,
    from: String,
    body: String,
}

#[derive(Serialize, Deserialize)]
struct UserRecord {
    name: String,
    /// Empty once deleted: the name stays taken, as with SQLite.
    phc: String,
    created: i64,
}

#[derive(Serialize, Deserialize)]
struct RoomRecord {
    name: String,
    kind: RoomKind,
    created_by: String,
    created: i64,
}

struct Publish {
    msg: NewMessage,
    answer: oneshot::Sender<Result<Appended, StoreError>>,
}

/// The JetStream store.
pub struct NatsStore {
    client: async_nats::Client,
    kv: kv::Store,
    stream: stream::Stream,
    /// Appends in call order; `None` once closed.
    publish: Mutex<Option<mpsc::UnboundedSender<Publish>>>,
    publisher: Mutex<Option<JoinHandle<()>>>,
    feed: Mutex<Option<JoinHandle<()>>>,
    /// Rooms known to exist; rooms are never deleted, so this only grows.
    rooms: Arc<Mutex<HashSet<String>>>,
    connections: watch::Receiver<u64>,
}

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(format!("nats: {e}"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn encode<T: Serialize>(value: &T) -> Bytes {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("plain structs encode")
        .into()
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| StoreError::Db(format!("nats: unreadable record: {e}")))
}

/// Connects to NATS with the options' credentials and TLS. The receiver
/// counts (re)connections: consumers the server lost while the link was
/// down are re-created as soon as it is back.
pub async fn connect(
    opts: &NatsOptions,
) -> anyhow::Result<(async_nats::Client, watch::Receiver<u64>)> {
    let (connected, connections) = watch::channel(0u64);
    let mut options = async_nats::ConnectOptions::new()
        .name("confab-relay")
        .connection_timeout(Duration::from_secs(5))
        // Forever: a relay outlives NATS restarts and failovers.
        .max_reconnects(None)
        .event_callback(move |event| {
            match &event {
                async_nats::Event::Connected => {
                    tracing::info!("connected to NATS");
                    connected.send_modify(|n| *n += 1);
                }
                async_nats::Event::Disconnected => {
                    tracing::warn!("lost the connection to NATS; reconnecting")
                }
                async_nats::Event::ClientError(_) => tracing::debug!("nats: {event}"),
                _ => tracing::warn!("nats: {event}"),
            }
            async {}
        });
    if let Some(creds) = &opts.creds {
        options = options
            .credentials_file(creds)
            .await
            .with_context(|| format!("cannot read NATS credentials {}", creds.display()))?;
    }
    if let (Some(user), Some(password)) = (&opts.user, &opts.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(ca) = &opts.ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&opts.tls_cert, &opts.tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let addrs: Vec<async_nats::ServerAddr> = opts
        .urls
        .split(',')
        .map(|u| u.trim().parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("invalid NATS URL in {:?}", opts.urls))?;
    let client = options.connect(addrs).await.map_err(|e| {
        anyhow!(
            "cannot reach NATS at {}: {e}; is nats-server running there, and are the credentials right?",
            opts.urls
        )
    })?;
    Ok((client, connections))
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
        let stream = js
            .get_or_create_stream(stream::Config {
                name: keys::STREAM.into(),
                subjects: vec![keys::SUBJECTS.into()],
                storage: StorageType::File,
                num_replicas: opts.replicas,
                duplicate_window: opts.dedup_window,
                max_message_size: 64 * 1024,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                // Without JetStream nobody answers its API ("no
                // responders"); newer servers may say so in words.
                let text = e.to_string();
                let lower = text.to_ascii_lowercase();
                if lower.contains("no responders")
                    || lower.contains("jetstream unavailable")
                    || lower.contains("jetstream not enabled")
                {
                    anyhow!(
                        "NATS at {} does not offer JetStream ({text}); start nats-server with -js (or enable jetstream in its config)",
                        opts.urls
                    )
                } else {
                    anyhow!("cannot open the message stream in NATS at {}: {text}", opts.urls)
                }
            })?;
        let kv = open_bucket(&js, opts.replicas).await?;
        let store = NatsStore {
            client,
            kv,
            stream,
            publish: Mutex::new(None),
            publisher: Mutex::new(None),
            feed: Mutex::new(None),
            rooms: Arc::default(),
            connections: connections.clone(),
        };
        store
            .create_room_record(LOBBY, RoomKind::Public, "")
            .await
            .or_else(|e| match e {
                StoreError::RoomExists => Ok(()),
                e => Err(e),
            })
            .context("cannot create the lobby in NATS")?;
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&store.publish) = Some(tx);
        *lock(&store.publisher) = Some(tokio::spawn(publisher(
            js,
            store.stream.clone(),
            store.kv.clone(),
            store.rooms.clone(),
            rx,
        )));
        if let Some(committed) = committed {
            let mut stream = store.stream.clone();
            let last = stream
                .info()
                .await
                .context("cannot read the stream")?
                .state
                .last_sequence;
            *lock(&store.feed) = Some(tokio::spawn(follow(
                stream,
                last + 1,
                committed,
                connections,
            )));
        }
        tracing::info!(urls = %opts.urls, "store on NATS JetStream");
        Ok(store)
    }

    /// The connection to NATS, shared with the link to the other relays.
    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// Counts (re)connections to NATS.
    pub fn connections(&self) -> watch::Receiver<u64> {
        self.connections.clone()
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

    async fn room_record(&self, name: &str) -> Result<Option<RoomRecord>, StoreError> {
        match self.kv.get(keys::room_key(name)).await.map_err(db)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    async fn require_room(&self, name: &str) -> Result<(), StoreError> {
        if lock(&self.rooms).contains(name) {
            return Ok(());
        }
        match self.room_record(name).await? {
            Some(_) => {
                lock(&self.rooms).insert(name.to_owned());
                Ok(())
            }
            None => Err(StoreError::NoSuchRoom),
        }
    }

    async fn latest(&self, room: &str) -> Result<Seq, StoreError> {
        match self
            .stream
            .get_last_raw_message_by_subject(&keys::subject(room))
            .await
        {
            Ok(m) => Ok(m.sequence),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(e) => Err(db(e)),
        }
    }

    async fn row(&self, record: RoomRecord) -> Result<RoomRow, StoreError> {
        let latest = self.latest(&record.name).await?;
        let members = self.members(&record.name).await?.len() as u32;
        Ok(RoomRow {
            name: record.name,
            kind: record.kind,
            created_by: record.created_by,
            latest,
            members,
        })
    }

    /// Live values of the keys matching `filter` (a key with wildcards).
    async fn scan(&self, filter: &str) -> Result<Vec<(String, Bytes)>, StoreError> {
        let prefix = format!("$KV.{}.", keys::BUCKET);
        let cursor = read::Cursor::open(
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

    fn message(&self, m: &async_nats::jetstream::Message) -> Result<Message, StoreError> {
        let seq = m.info().map_err(db)?.stream_sequence;
        let room = keys::room_of_subject(&m.subject)
            .ok_or_else(|| StoreError::Db(format!("nats: unexpected subject {}", m.subject)))?;
        to_message(room, seq, &m.payload)
    }
}

fn to_message(room: String, seq: Seq, payload: &[u8]) -> Result<Message, StoreError> {
    let s: Stored = decode(payload)?;
    Ok(Message {
        room,
        seq,
        id: s.id,
        ts: s.ts,
        from: s.from,
        body: s.body,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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

/// Publishes appends in the order they were made, and answers each once
/// JetStream has stored it.
async fn publisher(
    js: Context,
    stream: stream::Stream,
    kv: kv::Store,
    rooms: Arc<Mutex<HashSet<String>>>,
    mut rx: mpsc::UnboundedReceiver<Publish>,
) {
    let mut acks = tokio::task::JoinSet::new();
    // The same crash point as the SQLite writer's: stored, nobody told.
    let abort_after = std::env::var(crate::store::sqlite::FAULT_ABORT_AFTER_COMMIT).ok();
    while let Some(Publish { msg, answer }) = rx.recv().await {
        if !lock(&rooms).contains(&msg.room) {
            let exists = matches!(kv.get(keys::room_key(&msg.room)).await, Ok(Some(_)));
            if !exists {
                let _ = answer.send(Err(StoreError::NoSuchRoom));
                continue;
            }
            lock(&rooms).insert(msg.room.clone());
        }
        let ts = now_ms();
        let crash = abort_after.as_deref() == Some(msg.body.as_str());
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", keys::msg_id(&msg.room, &msg.id).as_str());
        let payload = encode(&Stored {
            id: msg.id,
            ts,
            from: msg.from,
            body: msg.body,
        });
        match js
            .publish_with_headers(keys::subject(&msg.room), headers, payload)
            .await
        {
            Ok(ack) => {
                let stream = stream.clone();
                let room = msg.room;
                acks.spawn(async move {
                    let acked = ack.await;
                    if crash && acked.is_ok() {
                        tracing::error!(
                            "{}: aborting after storing the message",
                            crate::store::sqlite::FAULT_ABORT_AFTER_COMMIT
                        );
                        std::process::abort();
                    }
                    let result = match acked {
                        Ok(a) if a.duplicate => original(&stream, &room, a.sequence).await,
                        Ok(a) => Ok(Appended {
                            seq: a.sequence,
                            ts,
                            duplicate: false,
                        }),
                        Err(e) => Err(db(e)),
                    };
                    let _ = answer.send(result);
                });
            }
            Err(e) => {
                let _ = answer.send(Err(db(e)));
            }
        }
        while acks.try_join_next().is_some() {}
    }
    while acks.join_next().await.is_some() {}
}

/// The stored time of a message JetStream recognised as a resend.
async fn original(stream: &stream::Stream, room: &str, seq: Seq) -> Result<Appended, StoreError> {
    let m = stream.get_raw_message(seq).await.map_err(db)?;
    let msg = to_message(room.to_owned(), seq, &m.payload)?;
    Ok(Appended {
        seq,
        ts: msg.ts,
        duplicate: true,
    })
}

/// Follows the stream from `from` and hands every message on, in order.
/// The ordered consumer re-creates itself after gaps and reconnects.
async fn follow(
    stream: stream::Stream,
    from: Seq,
    committed: mpsc::UnboundedSender<Arc<Message>>,
    mut connections: watch::Receiver<u64>,
) {
    let mut next = from;
    loop {
        connections.mark_unchanged();
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: keys::SUBJECTS.into(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: next,
                },
                ..Default::default()
            })
            .await;
        let messages = match consumer {
            Ok(c) => c.messages().await,
            Err(e) => {
                tracing::warn!("cannot follow the message stream: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("cannot follow the message stream: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let m = tokio::select! {
                m = messages.next() => m,
                // The server may have lost the consumer (it lives in
                // memory); start a new one where this one stopped.
                _ = connections.changed() => break,
            };
            let m = match m {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::warn!("following the message stream: {e}");
                    break;
                }
                None => break,
            };
            let Ok(info) = m.info() else { continue };
            let seq = info.stream_sequence;
            if seq < next {
                continue;
            }
            next = seq + 1;
            let Some(room) = keys::room_of_subject(&m.subject) else {
                continue;
            };
            match to_message(room, seq, &m.payload) {
                Ok(msg) => {
                    if committed.send(Arc::new(msg)).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(seq, "skipping a message: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Store for NatsStore {
    async fn create_user(&self, name: &str, phc: &str) -> Result<(), StoreError> {
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

    async fn user(&self, name: &str) -> Result<Option<StoredUser>, StoreError> {
        Ok(match self.user_record(name).await? {
            Some((u, _)) if !u.phc.is_empty() => Some(StoredUser {
                name: u.name,
                phc: u.phc,
                created: u.created,
            }),
            _ => None,
        })
    }

    async fn set_password(&self, name: &str, phc: &str) -> Result<(), StoreError> {
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

    async fn delete_user(&self, name: &str) -> Result<(), StoreError> {
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

    async fn list_users(&self) -> Result<Vec<StoredUser>, StoreError> {
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

    async fn create_room(
        &self,
        name: &str,
        kind: RoomKind,
        creator: &str,
    ) -> Result<RoomRow, StoreError> {
        let creator = self.canonical(creator).await?;
        self.create_room_record(name, kind, &creator).await?;
        self.create_key(
            keys::member_key(name, &creator),
            Bytes::from(creator.clone()),
        )
        .await?;
        Ok(RoomRow {
            name: name.to_owned(),
            kind,
            created_by: creator,
            latest: 0,
            members: 1,
        })
    }

    async fn open_dm(&self, a: &str, b: &str) -> Result<RoomRow, StoreError> {
        let a = self.canonical(a).await?;
        let b = self.canonical(b).await?;
        let name = dm_room(&a, &b);
        match self.create_room_record(&name, RoomKind::Direct, &a).await {
            Ok(()) | Err(StoreError::RoomExists) => {}
            Err(e) => return Err(e),
        }
        // Also when it exists: one of them may have left it.
        for user in [&a, &b] {
            self.create_key(keys::member_key(&name, user), Bytes::from(user.clone()))
                .await?;
        }
        let record = self
            .room_record(&name)
            .await?
            .ok_or(StoreError::NoSuchRoom)?;
        self.row(record).await
    }

    async fn room(&self, name: &str) -> Result<Option<RoomRow>, StoreError> {
        match self.room_record(name).await? {
            Some(record) => Ok(Some(self.row(record).await?)),
            None => Ok(None),
        }
    }

    async fn add_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        self.require_room(room).await?;
        let user = self.canonical(user).await?;
        let added = self
            .create_key(keys::member_key(room, &user), Bytes::from(user.clone()))
            .await?;
        self.purge_if_present(&keys::invite_key(room, &user))
            .await?;
        Ok(added)
    }

    async fn remove_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        self.purge_if_present(&keys::member_key(room, user)).await
    }

    async fn members(&self, room: &str) -> Result<Vec<String>, StoreError> {
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

    async fn is_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        Ok(self
            .kv
            .get(keys::member_key(room, user))
            .await
            .map_err(db)?
            .is_some())
    }

    async fn rooms_of(&self, user: &str) -> Result<Vec<RoomRow>, StoreError> {
        let filter = format!("m.*.{}", keys::user_token(user));
        let mut rows = Vec::new();
        for (key, _) in self.scan(&filter).await? {
            let Some(room) = key.split('.').nth(1).and_then(keys::room_of_token) else {
                continue;
            };
            if let Some(record) = self.room_record(&room).await? {
                rows.push(self.row(record).await?);
            }
        }
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }

    async fn public_rooms(&self) -> Result<Vec<RoomRow>, StoreError> {
        let mut rows = Vec::new();
        for (_, value) in self.scan("r.*").await? {
            let record: RoomRecord = decode(&value)?;
            if record.kind == RoomKind::Public {
                rows.push(self.row(record).await?);
            }
        }
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }

    async fn invite(&self, room: &str, user: &str) -> Result<(), StoreError> {
        self.require_room(room).await?;
        let user = self.canonical(user).await?;
        self.kv
            .put(keys::invite_key(room, &user), Bytes::new())
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn is_invited(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        Ok(self
            .kv
            .get(keys::invite_key(room, user))
            .await
            .map_err(db)?
            .is_some())
    }

    fn append(
        &self,
        msg: NewMessage,
    ) -> impl std::future::Future<Output = Result<Appended, StoreError>> + Send + 'static {
        let (answer, rx) = oneshot::channel();
        let queued = match lock(&self.publish).as_ref() {
            Some(tx) => tx.send(Publish { msg, answer }).is_ok(),
            None => false,
        };
        async move {
            if !queued {
                return Err(StoreError::Closed);
            }
            rx.await.unwrap_or(Err(StoreError::Closed))
        }
    }

    async fn history(
        &self,
        room: &str,
        page: Page,
        limit: u16,
    ) -> Result<(Vec<Message>, bool), StoreError> {
        let subject = keys::subject(room);
        let limit = u64::from(limit);
        let (raw, more) = match page {
            Page::After(seq) => read::after(&self.stream, &subject, seq, limit).await?,
            Page::Before(seq) => {
                let above = read::count_from(&self.stream, &subject, seq.max(1)).await?;
                read::before(&self.stream, &subject, seq, above, limit).await?
            }
            Page::Latest => {
                let latest = self.latest(room).await?;
                read::before(&self.stream, &subject, latest + 1, 0, limit).await?
            }
        };
        let messages = raw
            .iter()
            .map(|m| self.message(m))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((messages, more))
    }

    async fn close(&self) {
        lock(&self.publish).take();
        let publisher = lock(&self.publisher).take();
        if let Some(p) = publisher {
            let _ = p.await;
        }
        if let Some(feed) = lock(&self.feed).take() {
            feed.abort();
        }
        let _ = self.client.flush().await;
    }
}
