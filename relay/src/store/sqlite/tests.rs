mod accounts;
mod appends;
mod history;
mod lifecycle;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::frame::{Message, Page, RoomKind};
use common::names::LOBBY;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::writer::{Op, Outcome, Request, Writer};
use super::{reads, schema, writer, SqliteStore, DB_FILE, FAULT_ABORT_AFTER_COMMIT};
use crate::store::{Appended, Invited, NewMessage, Store, StoreError};

type Published = mpsc::UnboundedReceiver<std::sync::Arc<Message>>;

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path(), None).unwrap()
}

fn open_published(dir: &tempfile::TempDir) -> (SqliteStore, Published) {
    let (tx, rx) = mpsc::unbounded_channel();
    (SqliteStore::open(dir.path(), Some(tx)).unwrap(), rx)
}

fn id(n: u128) -> [u8; 16] {
    n.to_be_bytes()
}

fn msg(room: &str, n: u128) -> NewMessage {
    NewMessage {
        room: room.into(),
        from: "alice".into(),
        id: id(n),
        body: format!("message {n}"),
    }
}

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

fn drain(rx: &mut Published) -> Vec<std::sync::Arc<Message>> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

/// Commits `ops` as one batch, as the writer thread would.
fn batch(writer: &mut Writer, ops: Vec<Op>) -> Vec<Result<Outcome, StoreError>> {
    let (requests, answers): (Vec<_>, Vec<_>) = ops
        .into_iter()
        .map(|op| {
            let (reply, answer) = oneshot::channel();
            (Request { op, reply }, answer)
        })
        .unzip();
    writer.commit(requests.into_iter(), 1_000);
    answers
        .into_iter()
        .map(|mut a| a.try_recv().unwrap())
        .collect()
}
