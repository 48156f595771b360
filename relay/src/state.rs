//! What every connection of a running relay shares: the store, the hub,
//! the login throttle, the settings, the hashing threads, the counters and
//! the shutdown signal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::frame::Message;
use tokio::sync::watch;

use crate::accounts::{Accounts, MembershipLocks, Registrations};
use crate::auth::{Hasher, Throttle};
use crate::config::Config;
use crate::hub::{Hub, SessionId};
use crate::metrics::Metrics;

/// State shared by every connection of a running relay.
pub struct Relay<S> {
    /// Shared with the cluster link, which reads memberships on its own.
    pub store: Arc<S>,
    /// Shared with the cluster link, which applies the other relays' events.
    pub hub: Arc<Hub>,
    pub throttle: Throttle,
    /// Sessions per account and the rate limits they share.
    pub accounts: Arc<Accounts>,
    /// New accounts per client network.
    pub registrations: Registrations,
    /// One membership change of a user at a time.
    pub membership: MembershipLocks,
    /// Password checks in progress per client network.
    pub password_checks: Arc<crate::limits::PasswordChecks>,
    /// Places for bulk replies in progress, all sessions together.
    pub bulk_replies: Arc<tokio::sync::Semaphore>,
    pub cfg: Config,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
    hasher: Hasher,
}

impl<S> Relay<S> {
    /// A relay on `store` with settings `cfg`, one hashing thread per core.
    pub fn new(store: S, cfg: Config) -> Self {
        Relay {
            store: Arc::new(store),
            hub: Arc::default(),
            throttle: Throttle::default(),
            accounts: Arc::new(
                Accounts::new(
                    cfg.max_sessions_per_user,
                    cfg.rate_limit,
                    cfg.request_rate,
                    cfg.room_creations_per_hour,
                )
                .with_daily_quota(cfg.daily_quota_mib),
            ),
            registrations: Registrations::new(cfg.registrations_per_hour),
            membership: MembershipLocks::default(),
            password_checks: crate::limits::PasswordChecks::new(
                crate::defaults::CHECKS_PER_NETWORK,
            ),
            bulk_replies: Arc::new(tokio::sync::Semaphore::new(cfg.bulk_replies.max(1))),
            cfg,
            metrics: Metrics::default(),
            next_id: AtomicU64::new(1),
            shutdown: watch::channel(false).0,
            hasher: Hasher::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
        }
    }

    /// A fresh id for a logged-in session.
    pub fn next_session_id(&self) -> SessionId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Becomes true when the relay starts shutting down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Tells every connection that the relay is shutting down.
    pub fn shut_down(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Offers a committed message to every session subscribed to its room
    /// and counts the deliveries and the sessions it left lagging. Called
    /// by one task only, in commit order: that keeps each room in order.
    pub fn fan_out(&self, msg: &Message) {
        let (queued, lagged) = self.hub.publish(msg);
        self.metrics.deliveries.fetch_add(queued, Ordering::Relaxed);
        self.metrics.lagged.fetch_add(lagged, Ordering::Relaxed);
    }

    /// Runs argon2 work on the relay's hashing threads, a few at a time:
    /// logins and registrations queue instead of taking every core.
    pub async fn hash<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        self.hasher.run(work).await
    }
}

impl<S: crate::store::Store> Relay<S> {
    /// Ends the sessions of `user` here whose password hash is no longer
    /// the account's (the password changed, or the account was deleted).
    /// Returns how many it ended.
    pub async fn revoke_changed(&self, user: &str) -> usize {
        let sessions = self.hub.sessions_of(user);
        if sessions.is_empty() {
            return 0;
        }
        let current = match self.store.user(user).await {
            Ok(found) => found.map(|u| u.phc),
            Err(e) => {
                tracing::warn!(%user, "cannot check the account after a change: {e}");
                return 0;
            }
        };
        let mut ended = 0;
        for session in sessions {
            if session.credential() != current.as_deref() {
                session.revoke();
                ended += 1;
            }
        }
        if ended > 0 {
            tracing::info!(%user, sessions = ended, "account changed: sessions ended");
        }
        ended
    }
}

/// Completes once the relay is shutting down.
pub async fn until_shutdown(signal: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, never held across an await.
    let _ = signal.wait_for(|stopping| *stopping).await;
}
