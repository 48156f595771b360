//! Settings of a running relay, from `relay serve` flags.

use std::time::Duration;

use crate::defaults;

/// What `relay serve` was told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time from connecting to logging in.
    pub login_timeout: Duration,
    /// Time from a connection's first packet to the end of its handshake.
    pub handshake_timeout: Duration,
    /// Time from the end of the handshake to a complete `Hello`.
    pub hello_timeout: Duration,
    /// Whether anyone may create an account.
    pub registration_open: bool,
    /// Sustained sends per second per account, shared by its sessions;
    /// bursts reach twice this.
    pub rate_limit: u32,
    /// Room changes per second per account, shared by its sessions;
    /// bursts reach twice this.
    pub request_rate: u32,
    /// Sessions one account may have open on this relay at once.
    pub max_sessions_per_user: usize,
    /// Rooms one account may create per hour (after a burst).
    pub room_creations_per_hour: u32,
    /// Rooms one account may be a member of.
    pub max_rooms_per_user: usize,
    /// Pending invitations kept per account; past it the oldest goes.
    pub max_invitations: usize,
    /// Bulk replies the relay holds at once (each up to 1 MiB).
    pub bulk_replies: usize,
    /// MiB of message bodies one account may store per day.
    pub daily_quota_mib: u32,
    /// Accounts one client network may register per hour.
    pub registrations_per_hour: u32,
    /// Live frames queued per session before it lags.
    pub queue_depth: usize,
    /// Connections not yet logged in.
    pub max_unauthenticated: usize,
    /// Connections not logged in yet from one IPv4 address or IPv6 /64.
    pub max_unauthenticated_per_addr: usize,
    /// Connections in all.
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            login_timeout: common::limits::LOGIN_DEADLINE,
            handshake_timeout: defaults::HANDSHAKE_TIMEOUT,
            hello_timeout: defaults::HELLO_TIMEOUT,
            registration_open: true,
            rate_limit: defaults::RATE_LIMIT,
            request_rate: defaults::REQUEST_RATE,
            max_sessions_per_user: defaults::MAX_SESSIONS_PER_USER,
            room_creations_per_hour: defaults::ROOM_CREATIONS_PER_HOUR,
            max_rooms_per_user: defaults::MAX_ROOMS_PER_USER,
            max_invitations: defaults::MAX_INVITATIONS,
            bulk_replies: defaults::BULK_REPLIES,
            daily_quota_mib: defaults::DAILY_QUOTA_MIB,
            registrations_per_hour: defaults::REGISTRATIONS_PER_HOUR,
            queue_depth: defaults::QUEUE_DEPTH,
            max_unauthenticated: defaults::MAX_UNAUTHENTICATED,
            max_unauthenticated_per_addr: defaults::MAX_UNAUTHENTICATED_PER_ADDR,
            max_connections: defaults::MAX_CONNECTIONS,
        }
    }
}
