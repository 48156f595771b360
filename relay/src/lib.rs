//! The confab relay as a library: the `relay` binary is a thin shell over
//! these modules, and tests drive them directly.
//!
//! accept loop (`server`) → one task per connection (`conn`, which moves
//! the bytes and drives the cores `login` and `session`) → `hub`
//! (subscriptions, fan-out, presence) → `store`. What every connection
//! shares is in `state`.

pub mod accounts;
pub mod admin;
pub mod auth;
pub mod backend;
pub mod cert;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod defaults;
pub mod hub;
pub mod limits;
pub mod login;
pub mod metrics;
pub mod rate;
pub mod reply;
pub mod server;
pub mod session;
pub mod state;
pub mod store;
#[cfg(test)]
mod testing;
