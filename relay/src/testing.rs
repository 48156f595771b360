//! A relay for unit tests: the real state on a real SQLite store in a
//! temporary folder, with no socket anywhere.

use std::sync::Arc;

use bytes::Bytes;
use common::codec;
use common::frame::ServerFrame;
use tempfile::TempDir;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::state::Relay;
use crate::store::sqlite::SqliteStore;
use crate::store::Store;

/// A relay on a fresh store; the folder lives as long as the value.
pub struct TestRelay {
    pub relay: Arc<Relay<SqliteStore>>,
    _dir: TempDir,
}

impl TestRelay {
    /// A relay with settings `cfg` and no accounts.
    pub fn new(cfg: Config) -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let store = SqliteStore::open(dir.path(), None).expect("store opens");
        TestRelay {
            relay: Arc::new(Relay::new(store, cfg)),
            _dir: dir,
        }
    }

    /// Creates accounts whose password hash is `phc`.
    pub async fn users(&self, names: &[&str], phc: &str) {
        for name in names {
            self.relay
                .store
                .create_user(name, phc)
                .await
                .expect("account created");
        }
    }
}

/// The frames queued for a session so far, decoded.
pub fn drain(rx: &mut mpsc::Receiver<Bytes>) -> Vec<ServerFrame> {
    let mut frames = Vec::new();
    while let Ok(bytes) = rx.try_recv() {
        frames.push(codec::decode(&bytes[4..]).expect("the relay encodes what it queues"));
    }
    frames
}
