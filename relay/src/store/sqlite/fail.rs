//! Why one operation failed inside the SQLite store, kept apart from the
//! error the rest of the relay sees so refusals and SQL failures are told
//! apart until the last moment.

use crate::store::StoreError;

/// Why one operation failed inside the store.
#[derive(Debug)]
pub(super) enum Fail {
    /// The rules refused it (no such user, name taken, ...); nothing changed.
    Refused(StoreError),
    /// SQLite failed.
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<Fail> for StoreError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Refused(e) => e,
            Fail::Sql(e) => StoreError::Db(e.to_string()),
        }
    }
}
