//! `relay user …`: account administration on the relay's store, the SQLite
//! data folder or NATS. Safe while relays run: SQLite serialises the
//! processes' writes and NATS compares and sets; a changed password or a
//! deleted account takes effect at the next login.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use common::names;

use crate::auth;
use crate::auth::check_password;
use crate::store::nats::{NatsOptions, NatsStore};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};

/// Where the accounts live.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The data folder of the embedded store.
    Sqlite(PathBuf),
    Nats(NatsOptions),
}

/// Creates an account.
pub async fn add(backend: &Backend, user: &str, password: &str) -> Result<()> {
    names::check_user(user).with_context(|| format!("invalid user name {user:?}"))?;
    check_password(password).map_err(|r| anyhow::anyhow!(r.message))?;
    let phc = hash(password).await?;
    let store = open(backend).await?;
    let result = match &store {
        Opened::Sqlite(s) => s.create_user(user, &phc).await,
        Opened::Nats(s) => s.create_user(user, &phc).await,
    };
    store.close().await;
    match result {
        Err(StoreError::NameTaken) => bail!("the name {user:?} is taken (names ignore case)"),
        other => other.context("cannot create the account"),
    }
}

/// Replaces an account's password.
pub async fn passwd(backend: &Backend, user: &str, password: &str) -> Result<()> {
    check_password(password).map_err(|r| anyhow::anyhow!(r.message))?;
    let phc = hash(password).await?;
    let store = open(backend).await?;
    let result = match &store {
        Opened::Sqlite(s) => s.set_password(user, &phc).await,
        Opened::Nats(s) => s.set_password(user, &phc).await,
    };
    store.close().await;
    match result {
        Err(StoreError::NoSuchUser) => bail!("there is no user {user:?}; see `relay user list`"),
        other => other.context("cannot change the password"),
    }
}

/// Deletes an account; its messages stay in history.
pub async fn del(backend: &Backend, user: &str) -> Result<()> {
    let store = open(backend).await?;
    let result = match &store {
        Opened::Sqlite(s) => s.delete_user(user).await,
        Opened::Nats(s) => s.delete_user(user).await,
    };
    store.close().await;
    match result {
        Err(StoreError::NoSuchUser) => bail!("there is no user {user:?}; see `relay user list`"),
        other => other.context("cannot delete the account"),
    }
}

/// Lists accounts as (name, created unix seconds).
pub async fn list(backend: &Backend) -> Result<Vec<(String, i64)>> {
    let store = open(backend).await?;
    let users = match &store {
        Opened::Sqlite(s) => s.list_users().await,
        Opened::Nats(s) => s.list_users().await,
    };
    store.close().await;
    Ok(users
        .context("cannot list accounts")?
        .into_iter()
        .map(|u| (u.name, u.created))
        .collect())
}

enum Opened {
    Sqlite(SqliteStore),
    Nats(Box<NatsStore>),
}

impl Opened {
    async fn close(&self) {
        match self {
            Opened::Sqlite(s) => s.close().await,
            Opened::Nats(s) => s.close().await,
        }
    }
}

async fn open(backend: &Backend) -> Result<Opened> {
    Ok(match backend {
        Backend::Sqlite(data) => Opened::Sqlite(
            SqliteStore::open(data, None)
                .with_context(|| format!("cannot open the store in {}", data.display()))?,
        ),
        Backend::Nats(opts) => Opened::Nats(Box::new(NatsStore::open(opts, None).await?)),
    })
}

async fn hash(password: &str) -> Result<String> {
    let password = password.to_owned();
    Ok(tokio::task::spawn_blocking(move || auth::hash_password(&password)).await?)
}
