//! confab's shared library: the wire protocol, its codec and limits, name
//! rules, TLS trust, and the async client session every client is built on.

pub mod atomic_file;
pub mod child;
pub mod client;
pub mod codec;
pub mod frame;
pub mod limits;
pub mod names;
pub mod trust;
pub mod wire;
