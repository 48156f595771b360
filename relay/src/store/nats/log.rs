//! The message log: one JetStream stream with a subject per room.
//!
//! A message's stream sequence is its room sequence (increasing per room,
//! with gaps, which the protocol allows). Appends go to one publisher task
//! in call order, so a sender's lines keep their order; a client's resend
//! carries the original id, and JetStream's deduplication by message id
//! answers it with the original sequence. Every relay follows the stream
//! with an ordered consumer and fans out what any relay committed, in
//! stream order, which is each room's sequence order.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind, StorageType};
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use common::frame::{Message, MsgId, Page, Seq};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::connection::NatsOptions;
use super::directory::Directory;
use super::keys;
use super::read;
use super::record::{db, decode, encode, now_ms};
use crate::store::{Appended, NewMessage, StoreError, FAULT_ABORT_AFTER_COMMIT};

/// What the stream holds per message; the room is the subject and the
/// sequence is the stream's.
#[derive(Serialize, Deserialize)]
struct Stored {
    id: MsgId,
    ts: i64,
    from: String,
    body: String,
}

struct Publish {
    msg: NewMessage,
    answer: oneshot::Sender<Result<Appended, StoreError>>,
}

/// The stream, its publisher and, on a serving relay, the task following it.
pub struct MessageLog {
    stream: stream::Stream,
    /// Appends in call order; `None` once closed.
    publish: Mutex<Option<mpsc::UnboundedSender<Publish>>>,
    publisher: Mutex<Option<JoinHandle<()>>>,
    feed: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Opens the stream, creating it if it is missing, and repairs a stream
/// made elsewhere whose deduplication window is shorter than ours: with a
/// short window a client's resend after a reconnect would be stored twice.
pub async fn open_stream(js: &Context, opts: &NatsOptions) -> anyhow::Result<stream::Stream> {
    let mut stream = get_or_create_stream(js, opts).await?;
    let config = stream.cached_info().config.clone();
    if config.duplicate_window < opts.dedup_window {
        tracing::warn!(
            stream = keys::STREAM,
            was = ?config.duplicate_window,
            now = ?opts.dedup_window,
            "the message stream forgot message ids too soon; widening its deduplication window"
        );
        js.update_stream(stream::Config {
            duplicate_window: opts.dedup_window,
            ..config
        })
        .await
        .map_err(|e| {
            anyhow!(
                "the message stream in NATS at {} keeps message ids for less than {:?} and cannot be changed: {e}",
                opts.urls,
                opts.dedup_window
            )
        })?;
        stream = js.get_stream(keys::STREAM).await.map_err(|e| {
            anyhow!(
                "cannot reopen the message stream in NATS at {}: {e}",
                opts.urls
            )
        })?;
    }
    Ok(stream)
}

async fn get_or_create_stream(js: &Context, opts: &NatsOptions) -> anyhow::Result<stream::Stream> {
    js.get_or_create_stream(stream::Config {
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
    })
}

impl MessageLog {
    /// Starts publishing appends to `stream` (refusing rooms `directory`
    /// does not hold, and senders it does not list as members) and, when `committed` is given, follows the stream
    /// from its end, handing every message on, in order.
    pub async fn start(
        js: Context,
        stream: stream::Stream,
        directory: Directory,
        committed: Option<mpsc::UnboundedSender<Arc<Message>>>,
        connections: watch::Receiver<u64>,
    ) -> anyhow::Result<MessageLog> {
        let (tx, rx) = mpsc::unbounded_channel();
        let publisher = tokio::spawn(publisher(js, stream.clone(), directory, rx));
        let log = MessageLog {
            stream,
            publish: Mutex::new(Some(tx)),
            publisher: Mutex::new(Some(publisher)),
            feed: Mutex::new(None),
        };
        if let Some(committed) = committed {
            let mut stream = log.stream.clone();
            let last = stream
                .info()
                .await
                .context("cannot read the stream")?
                .state
                .last_sequence;
            *lock(&log.feed) = Some(tokio::spawn(follow(
                stream,
                last + 1,
                committed,
                connections,
            )));
        }
        Ok(log)
    }

    /// Sequence of the room's newest message, 0 if none.
    pub async fn latest(&self, room: &str) -> Result<Seq, StoreError> {
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

    /// See [`Store::append`](crate::store::Store::append).
    pub fn append(
        &self,
        msg: NewMessage,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send + 'static {
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

    /// See [`Store::history`](crate::store::Store::history).
    pub async fn history(
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
        let messages = raw.iter().map(message).collect::<Result<Vec<_>, _>>()?;
        Ok((messages, more))
    }

    /// Refuses new appends, waits for those queued to be answered, and
    /// stops following the stream.
    pub async fn close(&self) {
        lock(&self.publish).take();
        let publisher = lock(&self.publisher).take();
        if let Some(p) = publisher {
            let _ = p.await;
        }
        if let Some(feed) = lock(&self.feed).take() {
            feed.abort();
        }
    }
}

fn message(m: &async_nats::jetstream::Message) -> Result<Message, StoreError> {
    let seq = m.info().map_err(db)?.stream_sequence;
    let room = keys::room_of_subject(&m.subject)
        .ok_or_else(|| StoreError::Db(format!("nats: unexpected subject {}", m.subject)))?;
    to_message(room, seq, &m.payload)
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

/// Checks each append's sender against the room's members, many at once,
/// and hands the appends on in the order they were made, each with the
/// outcome of its check: a round trip to the bucket per message, without
/// serialising them.
async fn checker(
    directory: Directory,
    mut rx: mpsc::UnboundedReceiver<Publish>,
    checked: mpsc::UnboundedSender<(JoinHandle<Result<(), StoreError>>, Publish)>,
) {
    while let Some(publish) = rx.recv().await {
        let directory = directory.clone();
        let (room, from) = (publish.msg.room.clone(), publish.msg.from.clone());
        let check = tokio::spawn(async move {
            if !directory.room_exists(&room).await {
                return Err(StoreError::NoSuchRoom);
            }
            // Read when the message is written, not when the session
            // subscribed: a leave or an account deletion always wins.
            match directory.is_member(&room, &from).await? {
                true => Ok(()),
                false => Err(StoreError::NotMember),
            }
        });
        if checked.send((check, publish)).is_err() {
            return;
        }
    }
}

/// Publishes appends in the order they were made, and answers each once
/// JetStream has stored it.
async fn publisher(
    js: Context,
    stream: stream::Stream,
    directory: Directory,
    rx: mpsc::UnboundedReceiver<Publish>,
) {
    let (checked_tx, mut checked) = mpsc::unbounded_channel();
    let checks = tokio::spawn(checker(directory, rx, checked_tx));
    let mut acks = tokio::task::JoinSet::new();
    // The same crash point as the SQLite writer's: stored, nobody told.
    let abort_after = std::env::var(FAULT_ABORT_AFTER_COMMIT).ok();
    while let Some((check, Publish { msg, answer })) = checked.recv().await {
        let check = check
            .await
            .unwrap_or_else(|e| Err(StoreError::Db(format!("membership check failed: {e}"))));
        if let Err(e) = check {
            let _ = answer.send(Err(e));
            continue;
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
                            "{FAULT_ABORT_AFTER_COMMIT}: aborting after storing the message"
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
    let _ = checks.await;
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
