//! How values are kept in NATS: bincode records, stamped with the wall
//! clock, and NATS failures turned into store errors.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::StoreError;

/// A NATS failure as the store reports it.
pub fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(format!("nats: {e}"))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The bytes of a record, as stored in the stream or the bucket.
pub fn encode<T: Serialize>(value: &T) -> Bytes {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("plain structs encode")
        .into()
}

/// A record back from its bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| StoreError::Db(format!("nats: unreadable record: {e}")))
}
