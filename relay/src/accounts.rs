//! What the sessions of one account on this relay share: how many there
//! are, and the rate limits. A limit per session alone multiplies with the
//! sessions one account may open; shared, an account gets the same budget
//! whether it has one device or sixteen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::defaults::{BULK_REPLIES_PER_USER, ROOM_CREATION_BURST};
use crate::rate::TokenBucket;

/// The accounts with sessions on this relay.
pub struct Accounts {
    max_sessions: usize,
    send_rate: u32,
    change_rate: u32,
    creations_per_hour: u32,
    quota_bytes: f64,
    open: Mutex<HashMap<String, Share>>,
    /// Every account's bytes stored today, kept when its sessions end so
    /// that logging out and in again does not refill it: one bucket per
    /// account that posted since the relay started.
    quotas: Mutex<HashMap<String, Shared>>,
}

struct Share {
    sessions: usize,
    buckets: Arc<Buckets>,
}

/// One account's rate limits, shared by its sessions.
pub struct Buckets {
    /// Sends; each session's `SendGate` keeps its own order over it.
    pub sends: Shared,
    /// Room changes (create, join, leave, invite, open a DM).
    pub changes: Shared,
    /// Rooms created (channels and new DMs).
    pub creations: Shared,
    /// Bulk replies its sessions have in progress.
    pub bulk: Arc<Semaphore>,
    /// Bytes of message bodies stored, per day.
    pub bytes: Shared,
}

/// Places for bulk replies, relay-wide and for one account. A reply holds
/// one of each from before the store is read until its stream ends.
#[derive(Clone)]
pub struct BulkBudget {
    pub relay: Arc<Semaphore>,
    pub account: Arc<Semaphore>,
}

impl BulkBudget {
    /// Places for one more reply, waiting at most `wait`; `None` if the
    /// account or the relay has none free by then.
    pub async fn take(
        self,
        wait: Duration,
    ) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        tokio::time::timeout(wait, async move {
            // The account's first, so one busy account queues on its own
            // places instead of on the relay's.
            let account = self.account.acquire_owned().await.ok()?;
            let relay = self.relay.acquire_owned().await.ok()?;
            Some((account, relay))
        })
        .await
        .ok()
        .flatten()
    }
}

/// A token bucket several sessions take from.
pub type Shared = Arc<Mutex<TokenBucket>>;

/// A session's place among its account's; given back when dropped.
pub struct Seat {
    accounts: Arc<Accounts>,
    user: String,
    pub buckets: Arc<Buckets>,
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut open = lock(&self.accounts.open);
        if let Some(share) = open.get_mut(&self.user) {
            share.sessions -= 1;
            if share.sessions == 0 {
                open.remove(&self.user);
            }
        }
    }
}

impl Accounts {
    /// At most `max_sessions` sessions per account, sharing `send_rate`
    /// sends and `change_rate` room changes per second (bursts of twice),
    /// and `creations_per_hour` new rooms (after a burst).
    pub fn new(
        max_sessions: usize,
        send_rate: u32,
        change_rate: u32,
        creations_per_hour: u32,
    ) -> Self {
        Accounts {
            max_sessions: max_sessions.max(1),
            send_rate,
            change_rate,
            creations_per_hour,
            quota_bytes: f64::from(crate::defaults::DAILY_QUOTA_MIB) * 1_048_576.0,
            open: Mutex::default(),
            quotas: Mutex::default(),
        }
    }

    /// At most `mib` MiB of message bodies per account and day.
    pub fn with_daily_quota(mut self, mib: u32) -> Self {
        self.quota_bytes = f64::from(mib.max(1)) * 1_048_576.0;
        self
    }

    fn quota(&self, user: &str, now: Instant) -> Shared {
        lock(&self.quotas)
            .entry(user.to_owned())
            .or_insert_with(|| {
                Arc::new(Mutex::new(TokenBucket::with(
                    self.quota_bytes / 86_400.0,
                    self.quota_bytes,
                    now,
                )))
            })
            .clone()
    }

    /// The most sessions one account may have here.
    pub fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    /// Whether `user` (a canonical name) may open one more session.
    pub fn has_room(&self, user: &str) -> bool {
        lock(&self.open)
            .get(user)
            .is_none_or(|s| s.sessions < self.max_sessions)
    }

    /// A seat for a new session of `user`, or `None` when the account has
    /// as many as it may. A new account's buckets start full.
    pub fn seat(self: &Arc<Self>, user: &str, now: Instant) -> Option<Seat> {
        let bytes = self.quota(user, now);
        let mut open = lock(&self.open);
        let share = open.entry(user.to_owned()).or_insert_with(|| Share {
            sessions: 0,
            buckets: Arc::new(Buckets {
                sends: Arc::new(Mutex::new(TokenBucket::new(self.send_rate, now))),
                changes: Arc::new(Mutex::new(TokenBucket::new(self.change_rate, now))),
                creations: Arc::new(Mutex::new(TokenBucket::with(
                    f64::from(self.creations_per_hour) / 3600.0,
                    f64::from(ROOM_CREATION_BURST),
                    now,
                ))),
                bulk: Arc::new(Semaphore::new(BULK_REPLIES_PER_USER)),
                bytes,
            }),
        });
        if share.sessions >= self.max_sessions {
            return None;
        }
        share.sessions += 1;
        Some(Seat {
            accounts: self.clone(),
            user: user.to_owned(),
            buckets: share.buckets.clone(),
        })
    }
}

/// New accounts per client network (an IPv4 address or an IPv6 /64) and
/// hour, after a first burst: every account brings its own budgets, so
/// with registration open the number of accounts one host can make is
/// what bounds what it can make the relay hold. Loopback clients (bots
/// and tools on the relay's own machine) are not counted.
pub struct Registrations {
    per_hour: u32,
    by_network: Mutex<HashMap<std::net::IpAddr, TokenBucket>>,
}

/// Networks remembered before those whose budget is full again are dropped.
const REGISTRATIONS_PRUNE_AT: usize = 10_000;

impl Registrations {
    pub fn new(per_hour: u32) -> Self {
        Registrations {
            per_hour: per_hour.max(1),
            by_network: Mutex::default(),
        }
    }

    /// Takes one registration for `addr`'s network; `false` when it has
    /// made as many as it may for now.
    pub fn take(&self, addr: std::net::IpAddr, now: Instant) -> bool {
        if addr.to_canonical().is_loopback() {
            return true;
        }
        let per_hour = f64::from(self.per_hour);
        let mut map = lock(&self.by_network);
        if map.len() >= REGISTRATIONS_PRUNE_AT {
            map.retain(|_, bucket| !bucket.is_full(now));
        }
        map.entry(crate::auth::network(addr))
            .or_insert_with(|| TokenBucket::with(per_hour / 3600.0, per_hour, now))
            .take(now)
    }

    /// Gives back a registration that did not happen (the name was taken).
    pub fn give_back(&self, addr: std::net::IpAddr) {
        if let Some(bucket) = lock(&self.by_network).get_mut(&crate::auth::network(addr)) {
            bucket.give_back(1.0);
        }
    }
}

/// One membership change of a user at a time on this relay. A change is a
/// store write and then the hub's mirror of it; two devices joining and
/// leaving one room at once could otherwise commit in one order and
/// reach the hub in the other, leaving sessions subscribed to a room the
/// store has the user out of (and a client told `Joined` after `Left`).
#[derive(Default)]
pub struct MembershipLocks {
    by_user: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while a user's membership changes; given back when dropped.
pub struct MembershipGuard<'a> {
    locks: &'a MembershipLocks,
    users: Vec<String>,
    guards: Vec<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for MembershipGuard<'_> {
    fn drop(&mut self) {
        self.guards.clear();
        let mut map = lock(&self.locks.by_user);
        for user in &self.users {
            // Nobody holds or awaits it any more: forget the user.
            if map.get(user).is_some_and(|m| Arc::strong_count(m) == 1) {
                map.remove(user);
            }
        }
    }
}

impl MembershipLocks {
    /// Waits until no other membership change of any of `users` is under
    /// way here, then holds them all. Taken in name order, so two changes
    /// of the same two users (a DM) cannot wait on each other.
    pub async fn lock(&self, users: &[&str]) -> MembershipGuard<'_> {
        let mut users: Vec<String> = users.iter().map(|u| u.to_ascii_lowercase()).collect();
        users.sort();
        users.dedup();
        let mutexes: Vec<_> = {
            let mut map = lock(&self.by_user);
            users
                .iter()
                .map(|u| map.entry(u.clone()).or_default().clone())
                .collect()
        };
        let mut guards = Vec::with_capacity(mutexes.len());
        for m in mutexes {
            guards.push(m.lock_owned().await);
        }
        MembershipGuard {
            locks: self,
            users,
            guards,
        }
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked:
/// every critical section here is a counter update or one bucket take.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_has_at_most_its_seats_and_gets_them_back() {
        let accounts = Arc::new(Accounts::new(2, 10, 10, 60));
        let now = Instant::now();
        let a = accounts.seat("alice", now).expect("first");
        let b = accounts.seat("alice", now).expect("second");
        assert!(!accounts.has_room("alice"));
        assert!(accounts.seat("alice", now).is_none(), "third");
        assert!(accounts.seat("bob", now).is_some(), "others unaffected");
        drop(a);
        assert!(accounts.has_room("alice"));
        let c = accounts.seat("alice", now).expect("a seat came back");
        drop((b, c));
        assert!(lock(&accounts.open).is_empty(), "forgotten with the last");
    }

    #[test]
    fn the_sessions_of_an_account_share_one_budget() {
        let accounts = Arc::new(Accounts::new(16, 10, 5, 60));
        let now = Instant::now();
        let seats: Vec<_> = (0..16)
            .map(|_| accounts.seat("alice", now).unwrap())
            .collect();
        let sent = (0..100)
            .filter(|i| lock(&seats[i % 16].buckets.sends).take(now))
            .count();
        assert_eq!(sent, 20, "a burst of twice the rate, across 16 sessions");
        let changed = (0..100)
            .filter(|i| lock(&seats[i % 16].buckets.changes).take(now))
            .count();
        assert_eq!(changed, 10);
    }

    #[tokio::test]
    async fn one_membership_change_of_a_user_at_a_time() {
        let locks = MembershipLocks::default();
        let alice = locks.lock(&["Alice"]).await;
        let again = tokio::time::timeout(Duration::from_millis(50), locks.lock(&["alice"])).await;
        assert!(
            again.is_err(),
            "a second change of alice waits, whatever the case"
        );
        let bob = tokio::time::timeout(Duration::from_millis(50), locks.lock(&["bob"])).await;
        assert!(bob.is_ok(), "bob's does not");
        drop(bob);
        let dm = locks.lock(&["carol", "bob"]);
        let dm = tokio::time::timeout(Duration::from_millis(50), dm).await;
        assert!(dm.is_ok(), "a DM locks both of its users");
        let waiting = tokio::time::timeout(Duration::from_millis(50), locks.lock(&["bob"])).await;
        assert!(waiting.is_err());
        drop((alice, dm));
        assert!(lock(&locks.by_user).is_empty(), "users are forgotten");
    }
}
