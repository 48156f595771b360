//! `relay user …`: account administration on the relay's store, the SQLite
//! data folder or NATS. Safe while relays run: SQLite serialises the
//! processes' writes and NATS compares and sets; a changed password or a
//! deleted account takes effect at the next login.

use anyhow::{bail, Context, Result};
use common::names;

use crate::auth;
use crate::auth::check_password;
use crate::backend::{open, Backend};
use crate::store::{Store, StoreError};

/// Creates an account.
pub async fn add(backend: &Backend, user: &str, password: &str) -> Result<()> {
    names::check_user(user).with_context(|| format!("invalid user name {user:?}"))?;
    check_password(password).map_err(|r| anyhow::anyhow!(r.message))?;
    let phc = hash(password).await?;
    let store = open(backend, None).await?;
    let result = store.create_user(user, &phc).await;
    store.close().await;
    match result {
        Err(StoreError::NameTaken) => bail!("the name {user:?} is taken (names ignore case)"),
        Err(StoreError::LooksLike(existing)) => bail!(
            "the name {user:?} looks like an existing user's ({existing:?}), so readers could take one for the other; choose another"
        ),
        other => other.context("cannot create the account"),
    }
}

/// Replaces an account's password.
pub async fn passwd(backend: &Backend, user: &str, password: &str) -> Result<()> {
    check_password(password).map_err(|r| anyhow::anyhow!(r.message))?;
    let phc = hash(password).await?;
    let store = open(backend, None).await?;
    let result = store.set_password(user, &phc).await;
    store.close().await;
    match result {
        Err(StoreError::NoSuchUser) => bail!("there is no user {user:?}; see `relay user list`"),
        other => other.context("cannot change the password"),
    }
}

/// Deletes an account; its messages stay in history.
pub async fn del(backend: &Backend, user: &str) -> Result<()> {
    let store = open(backend, None).await?;
    let result = store.delete_user(user).await;
    store.close().await;
    match result {
        Err(StoreError::NoSuchUser) => bail!("there is no user {user:?}; see `relay user list`"),
        other => other.context("cannot delete the account"),
    }
}

/// Lists accounts as (name, created unix seconds).
pub async fn list(backend: &Backend) -> Result<Vec<(String, i64)>> {
    let store = open(backend, None).await?;
    let users = store.list_users().await;
    store.close().await;
    Ok(users
        .context("cannot list accounts")?
        .into_iter()
        .map(|u| (u.name, u.created))
        .collect())
}

async fn hash(password: &str) -> Result<String> {
    let password = password.to_owned();
    Ok(tokio::task::spawn_blocking(move || auth::hash_password(&password)).await?)
}
