//! The confab relay as a library: the `relay` binary is a thin shell over
//! these modules, and tests drive them directly.
//!
//! accept loop (`server`) → one task per connection (`conn`, then
//! `session`) → `hub` (subscriptions, fan-out, presence) → `store`.

pub mod admin;
pub mod auth;
pub mod cert;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod defaults;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod rate;
pub mod server;
pub mod session;
pub mod state;
pub mod store;
