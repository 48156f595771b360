//! Passwords (argon2id PHC strings) and login throttling.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

use common::frame::ErrorCode;
use common::limits::{MAX_PASSWORD, MIN_PASSWORD};

use crate::defaults::{
    FAILURE_DELAY, FAILURE_WINDOW, FREE_FAILURES, LOCKOUT, LOCK_AFTER, MAX_FAILURE_DELAY,
};
use crate::reply::Refusal;

/// Hashes a password with argon2id and a random salt. Slow on purpose: call
/// it off the async threads.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters accepts any password")
        .to_string()
}

/// Checks a password against a PHC string. A damaged hash never matches.
pub fn verify_password(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// Checks the password rules shared by registration and `relay user`.
pub fn check_password(password: &str) -> Result<(), Refusal> {
    if password.len() < MIN_PASSWORD || password.len() > MAX_PASSWORD {
        return Err(Refusal::new(
            ErrorCode::BadPassword,
            format!("a password must be {MIN_PASSWORD} to {MAX_PASSWORD} bytes long"),
        ));
    }
    Ok(())
}

/// A hash to verify against when the user does not exist, so that an
/// unknown name takes as long as a wrong password and names cannot be probed
/// by timing.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a real password"))
}

/// A fixed pool of threads for argon2 work. Fixed on purpose: each thread's
/// allocator keeps the ~19 MiB a hash needs after it is freed, so tokio's
/// blocking pool (up to hundreds of threads) left hundreds of MiB behind
/// after a burst of logins, where a pool the size of the core count keeps
/// a few dozen. The threads end when the pool is dropped.
pub struct Hasher {
    jobs: std::sync::mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce() + Send>;

impl Hasher {
    /// Starts `threads` hashing threads.
    pub fn new(threads: usize) -> Self {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = std::sync::Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next job.
                    let job = queue.lock().expect("hasher queue").recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })
                .expect("spawn a hashing thread");
        }
        Hasher { jobs }
    }

    /// Runs `work` on a hashing thread; `None` if the pool is gone.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(work());
            }))
            .ok()?;
        result.await.ok()
    }
}

/// An account, lower-cased, and the address it is tried from.
type Pair = (String, IpAddr);

/// Failed-login bookkeeping per (account, address) pair.
#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<Pair, Failures>>,
    /// One attempt of a pair at a time, so parallel attempts cannot outrun
    /// the lockout; those that wait hold nothing but their pre-login slot.
    turns: Mutex<HashMap<Pair, Arc<tokio::sync::Mutex<()>>>>,
}

/// A pair's turn to try a password: from before the lockout check until
/// the verdict is recorded.
pub struct Turn<'a> {
    throttle: &'a Throttle,
    key: Pair,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut turns = self.throttle.turns.lock().expect("turns lock");
        // Nobody holds or awaits it any more: forget the pair.
        if turns
            .get(&self.key)
            .is_some_and(|turn| Arc::strong_count(turn) == 1)
        {
            turns.remove(&self.key);
        }
    }
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

/// The verdict on a login attempt before the password is checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Go ahead.
    Open,
    /// Refuse without checking; retry after this long.
    Locked(Duration),
}

impl Throttle {
    /// Waits until no other attempt of `user` from `addr` is being checked.
    /// Holding the turn through [`Throttle::begin`] and the verdict keeps
    /// parallel attempts from outrunning the lockout without counting an
    /// attempt as a failure before its password is checked (which locked
    /// out a user whose devices logged in at once).
    pub async fn turn(&self, user: &str, addr: IpAddr) -> Turn<'_> {
        let key = key(user, addr);
        let turn = self
            .turns
            .lock()
            .expect("turns lock")
            .entry(key.clone())
            .or_default()
            .clone();
        Turn {
            throttle: self,
            key,
            guard: Some(turn.lock_owned().await),
        }
    }

    /// Says whether a login attempt of `user` from `addr` may have its
    /// password checked. Call it during the pair's [`Throttle::turn`].
    pub fn begin(&self, user: &str, addr: IpAddr, now: Instant) -> Gate {
        let mut map = self.failures.lock().expect("throttle lock");
        // Expired entries would otherwise pile up for every name tried.
        if map.len() > PRUNE_AT {
            map.retain(|_, f| {
                now.duration_since(f.first) < FAILURE_WINDOW
                    || f.locked_until.is_some_and(|u| u > now)
            });
        }
        let fresh = Failures {
            count: 0,
            first: now,
            locked_until: None,
        };
        let Some(f) = map.get_mut(&key(user, addr)) else {
            return Gate::Open;
        };
        match f.locked_until {
            Some(until) if until > now => return Gate::Locked(until - now),
            Some(_) => *f = fresh,
            None if now.duration_since(f.first) >= FAILURE_WINDOW => *f = fresh,
            None => {}
        }
        Gate::Open
    }

    /// The attempt failed: counts it, locks the pair at the limit, and says
    /// how long to wait before answering.
    pub fn failed(&self, user: &str, addr: IpAddr, now: Instant) -> Duration {
        let mut map = self.failures.lock().expect("throttle lock");
        let f = map.entry(key(user, addr)).or_insert(Failures {
            count: 0,
            first: now,
            locked_until: None,
        });
        f.count += 1;
        if f.count >= LOCK_AFTER {
            f.locked_until = Some(now + LOCKOUT);
            tracing::warn!(user, %addr, attempts = f.count, "login locked for {}s after repeated failures", LOCKOUT.as_secs());
        }
        delay_for(f.count)
    }

    /// Forgets the failures of a pair after a good login.
    pub fn succeeded(&self, user: &str, addr: IpAddr) {
        self.failures
            .lock()
            .expect("throttle lock")
            .remove(&key(user, addr));
    }
}

/// Entries tracked before expired ones are pruned (on the next attempt).
const PRUNE_AT: usize = 10_000;

fn key(user: &str, addr: IpAddr) -> Pair {
    (user.to_ascii_lowercase(), addr)
}

fn delay_for(count: u32) -> Duration {
    if count <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (count - FREE_FAILURES - 1).min(16);
    (FAILURE_DELAY * 2u32.pow(doublings)).min(MAX_FAILURE_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_hasher_runs_work_off_the_async_threads() {
        let hasher = Hasher::new(2);
        let name = hasher
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("argon2-"));
        let phc = hasher.run(|| hash_password("correct horse")).await.unwrap();
        assert!(hasher
            .run(move || verify_password(&phc, "correct horse"))
            .await
            .unwrap());
    }

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash_password("correct horse");
        let b = hash_password("correct horse");
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password(&a, "correct horse"));
        assert!(!verify_password(&a, "wrong"));
        assert!(!verify_password("garbage", "x"));
    }

    #[test]
    fn throttle_delays_then_locks_then_forgets() {
        let t = Throttle::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let now = Instant::now();
        let fail = |user: &str| {
            assert_eq!(t.begin(user, ip, now), Gate::Open);
            t.failed(user, ip, now)
        };
        for _ in 0..FREE_FAILURES {
            assert_eq!(fail("Alice"), Duration::ZERO);
        }
        assert_eq!(fail("alice"), FAILURE_DELAY);
        let mut last = FAILURE_DELAY;
        for _ in FREE_FAILURES + 1..LOCK_AFTER {
            let delay = fail("alice");
            assert_eq!(
                delay,
                (last * 2).min(MAX_FAILURE_DELAY),
                "doubles to the cap"
            );
            last = delay;
        }
        assert_eq!(last, MAX_FAILURE_DELAY, "the delay reaches its cap");
        assert_eq!(t.begin("ALICE", ip, now), Gate::Locked(LOCKOUT));
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(t.begin("alice", other, now), Gate::Open, "per address");
        assert_eq!(
            t.begin("alice", ip, now + LOCKOUT),
            Gate::Open,
            "lock expires"
        );
        t.succeeded("alice", ip);
        assert_eq!(t.begin("alice", ip, now), Gate::Open);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_attempts_cannot_outrun_the_lockout() {
        let t = Arc::new(Throttle::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        // Many wrong attempts at once, each failing after a moment.
        let attempts: Vec<_> = (0..100)
            .map(|_| {
                let t = t.clone();
                tokio::spawn(async move {
                    let _turn = t.turn("bob", ip).await;
                    if t.begin("bob", ip, now) != Gate::Open {
                        return false;
                    }
                    tokio::task::yield_now().await;
                    t.failed("bob", ip, now);
                    true
                })
            })
            .collect();
        let mut checked = 0;
        for a in attempts {
            checked += u32::from(a.await.unwrap());
        }
        assert_eq!(checked, LOCK_AFTER);
        assert!(t.turns.lock().unwrap().is_empty(), "turns are forgotten");
    }
}
