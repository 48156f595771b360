//! `relay user …`: account administration on the data folder. Safe while the
//! relay runs: SQLite serialises the two processes' writes, and a changed
//! password or a deleted account takes effect at the next login.

use std::path::Path;

use anyhow::{bail, Context, Result};
use common::names;

use crate::auth;
use crate::conn::check_password;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};

/// Creates an account.
pub async fn add(data: &Path, user: &str, password: &str) -> Result<()> {
    names::check_user(user).with_context(|| format!("invalid user name {user:?}"))?;
    check_password(password).map_err(|(_, msg)| anyhow::anyhow!(msg))?;
    let store = open(data)?;
    let phc = hash(password).await?;
    let result = store.create_user(user, &phc).await;
    store.close().await;
    match result {
        Err(StoreError::NameTaken) => bail!("the name {user:?} is taken (names ignore case)"),
        other => other.context("cannot create the account"),
    }
}

/// Replaces an account's password.
pub async fn passwd(data: &Path, user: &str, password: &str) -> Result<()> {
    check_password(password).map_err(|(_, msg)| anyhow::anyhow!(msg))?;
    let store = open(data)?;
    let phc = hash(password).await?;
    let result = store.set_password(user, &phc).await;
    store.close().await;
    match result {
        Err(StoreError::NoSuchUser) => bail!("there is no user {user:?}; see `relay user list`"),
        other => other.context("cannot change the password"),
    }
}

/// Deletes an account; its messages stay in history.
pub async fn del(data: &Path, user: &str) -> Result<()> {
    let store = open(data)?;
    let result = store.delete_user(user).await;
    store.close().await;
    match result {
        Err(StoreError::NoSuchUser) => bail!("there is no user {user:?}; see `relay user list`"),
        other => other.context("cannot delete the account"),
    }
}

/// Lists accounts as (name, created unix seconds).
pub async fn list(data: &Path) -> Result<Vec<(String, i64)>> {
    let store = open(data)?;
    let users = store.list_users().await;
    store.close().await;
    Ok(users
        .context("cannot list accounts")?
        .into_iter()
        .map(|u| (u.name, u.created))
        .collect())
}

fn open(data: &Path) -> Result<SqliteStore> {
    SqliteStore::open(data, None)
        .with_context(|| format!("cannot open the store in {}", data.display()))
}

async fn hash(password: &str) -> Result<String> {
    let password = password.to_owned();
    Ok(tokio::task::spawn_blocking(move || auth::hash_password(&password)).await?)
}
