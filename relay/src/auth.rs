//! Passwords (argon2id PHC strings) and login throttling.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

use common::frame::ErrorCode;
use common::limits::{MAX_PASSWORD, MIN_PASSWORD};

use crate::defaults::{
    ACCOUNT_FAILURES, ACCOUNT_REFILL, FAILURE_DELAY, FAILURE_WINDOW, FREE_FAILURES, KNOWN_FOR,
    LOCKOUT, LOCK_AFTER, MAX_FAILURE_DELAY, MAX_KNOWN,
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

/// An account, lower-cased, and the network it is tried from (see
/// [`network`]).
type Pair = (String, IpAddr);

/// Failed-login bookkeeping, at two levels.
///
/// Per (account, address) pair: a few free failures, then growing delays,
/// then a lockout. That alone let a guesser with many addresses make ten
/// guesses per address every five minutes: from 100 addresses, hundreds a
/// minute at one account.
///
/// Per account: every attempt from an address the account has not logged
/// in from lately draws on one budget of [`ACCOUNT_FAILURES`] failures,
/// refilled one per [`ACCOUNT_REFILL`]; with the budget spent, such
/// attempts are refused (`Throttled`) before their password is checked. So
/// a guesser gets a few guesses a minute at an account however many
/// addresses it has. The budget refuses rather than delays: delayed
/// attempts in parallel would still add up to any rate.
///
/// What a per-account limit costs is that anyone can spend an account's
/// budget. The addresses an account logged in from within [`KNOWN_FOR`]
/// (the last [`MAX_KNOWN`] of them) are therefore outside it: the owner
/// logs in from home or the office as usual, held only by the per-pair
/// limit, and a guesser cannot make an address known without the
/// password. Exempting addresses with no failures instead would hand a
/// guesser one free guess per fresh address. The known addresses live in
/// memory: after a restart the owner's first login from each place draws
/// on the budget like anyone's.
#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<Pair, Failures>>,
    /// Lower-cased account name → its budget and known addresses. Locked
    /// after `failures`, never around it.
    accounts: Mutex<HashMap<String, Account>>,
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

/// One account's failures from addresses it has not logged in from, and
/// the addresses it has.
struct Account {
    /// Attempts left before the budget is spent, with fractions refilled;
    /// at most [`ACCOUNT_FAILURES`].
    budget: f64,
    /// When `budget` was last refilled.
    at: Instant,
    /// Networks a login succeeded from and when it last did, oldest first.
    known: Vec<(IpAddr, Instant)>,
}

impl Account {
    fn new(now: Instant) -> Self {
        Account {
            budget: f64::from(ACCOUNT_FAILURES),
            at: now,
            known: Vec::new(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at);
        self.at = now;
        self.budget = (self.budget + elapsed.as_secs_f64() / ACCOUNT_REFILL.as_secs_f64())
            .min(f64::from(ACCOUNT_FAILURES));
    }

    fn knows(&self, net: IpAddr, now: Instant) -> bool {
        self.known
            .iter()
            .any(|(n, at)| *n == net && now.saturating_duration_since(*at) < KNOWN_FOR)
    }

    /// Whether forgetting the entry would lose nothing.
    fn idle(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.known
            .retain(|(_, at)| now.saturating_duration_since(*at) < KNOWN_FOR);
        self.known.is_empty() && self.budget >= f64::from(ACCOUNT_FAILURES)
    }
}

/// The verdict on a login attempt before the password is checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Go ahead.
    Open,
    /// The (account, address) pair is locked out: refuse without checking;
    /// retry after this long.
    Locked(Duration),
    /// The account's budget for addresses it has not logged in from is
    /// spent: refuse without checking; retry after this long.
    AccountLocked(Duration),
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
    /// password checked. Call it during the pair's [`Throttle::turn`]. An
    /// attempt from an address the account has not logged in from takes
    /// its place in the account's budget here, before the check, so
    /// attempts from many addresses at once cannot overdraw it; a good
    /// login gives it back.
    pub fn begin(&self, user: &str, addr: IpAddr, now: Instant) -> Gate {
        match self.begin_pair(user, addr, now) {
            Gate::Open => self.begin_account(user, addr, now),
            locked => locked,
        }
    }

    fn begin_account(&self, user: &str, addr: IpAddr, now: Instant) -> Gate {
        let mut accounts = self.accounts.lock().expect("accounts lock");
        // Entries for names that are only guessed refill and go.
        if accounts.len() > PRUNE_AT {
            accounts.retain(|_, a| !a.idle(now));
        }
        let account = accounts
            .entry(user.to_ascii_lowercase())
            .or_insert_with(|| Account::new(now));
        if account.knows(network(addr), now) {
            return Gate::Open;
        }
        account.refill(now);
        if account.budget >= 1.0 {
            account.budget -= 1.0;
            if account.budget < 1.0 {
                tracing::warn!(
                    user,
                    %addr,
                    "login attempts at this account from addresses it is not used from are refused for now: {ACCOUNT_FAILURES} taken, one more every {}s",
                    ACCOUNT_REFILL.as_secs()
                );
            }
            return Gate::Open;
        }
        let wait = ACCOUNT_REFILL.mul_f64(1.0 - account.budget);
        Gate::AccountLocked(wait)
    }

    fn begin_pair(&self, user: &str, addr: IpAddr, now: Instant) -> Gate {
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

    /// After a good login: forgets the failures of the pair, gives back
    /// what the attempt took from the account's budget, and remembers the
    /// address as one the account logs in from.
    pub fn succeeded(&self, user: &str, addr: IpAddr, now: Instant) {
        let (name, net) = key(user, addr);
        self.failures
            .lock()
            .expect("throttle lock")
            .remove(&(name.clone(), net));
        let mut accounts = self.accounts.lock().expect("accounts lock");
        let account = accounts.entry(name).or_insert_with(|| Account::new(now));
        if !account.knows(net, now) {
            account.refill(now);
            account.budget = (account.budget + 1.0).min(f64::from(ACCOUNT_FAILURES));
        }
        account.known.retain(|(n, _)| *n != net);
        account.known.push((net, now));
        if account.known.len() > MAX_KNOWN {
            account.known.remove(0);
        }
    }
}

/// Entries tracked before expired ones are pruned (on the next attempt).
const PRUNE_AT: usize = 10_000;

fn key(user: &str, addr: IpAddr) -> Pair {
    (user.to_ascii_lowercase(), network(addr))
}

/// What the throttle counts as one address: an IPv4 address, or an IPv6
/// address's /64. A host or home usually has a whole /64, so counting its
/// addresses one by one would give a guesser 2^64 fresh addresses.
pub fn network(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
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
        t.succeeded("alice", ip, now);
        assert_eq!(t.begin("alice", ip, now), Gate::Open);
    }

    fn addr(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i))
    }

    #[test]
    fn every_address_draws_on_one_budget_per_account() {
        let t = Throttle::default();
        let now = Instant::now();
        // One failure from each of many addresses: no pair comes near its
        // own limit, but together they spend the account's budget.
        for i in 0..ACCOUNT_FAILURES {
            assert_eq!(t.begin("carol", addr(i), now), Gate::Open, "attempt {i}");
            assert_eq!(t.failed("carol", addr(i), now), Duration::ZERO);
        }
        assert_eq!(
            t.begin("Carol", addr(1000), now),
            Gate::AccountLocked(ACCOUNT_REFILL),
            "a fresh address is refused too"
        );
        assert_eq!(t.begin("dave", addr(1000), now), Gate::Open, "per account");
        // The budget comes back one attempt per ACCOUNT_REFILL.
        let later = now + ACCOUNT_REFILL / 2;
        assert_eq!(
            t.begin("carol", addr(1001), later),
            Gate::AccountLocked(ACCOUNT_REFILL / 2)
        );
        let later = now + ACCOUNT_REFILL;
        assert_eq!(t.begin("carol", addr(1001), later), Gate::Open);
        t.failed("carol", addr(1001), later);
        assert!(matches!(
            t.begin("carol", addr(1002), later),
            Gate::AccountLocked(_)
        ));
        // A pair's own lockout is still its own, and comes first.
        for _ in 0..LOCK_AFTER {
            t.begin("erin", addr(7), now);
            t.failed("erin", addr(7), now);
        }
        assert_eq!(t.begin("erin", addr(7), now), Gate::Locked(LOCKOUT));
    }

    #[test]
    fn addresses_the_account_logged_in_from_are_outside_its_budget() {
        let t = Throttle::default();
        let now = Instant::now();
        let (home, office) = (addr(1), addr(2));
        for place in [home, office] {
            assert_eq!(t.begin("carol", place, now), Gate::Open);
            t.succeeded("carol", place, now);
        }
        // A good login gave back what its attempt took: the whole budget
        // is left for the guesser.
        for i in 100..100 + ACCOUNT_FAILURES {
            assert_eq!(t.begin("carol", addr(i), now), Gate::Open, "attempt {i}");
            t.failed("carol", addr(i), now);
        }
        assert!(matches!(
            t.begin("carol", addr(999), now),
            Gate::AccountLocked(_)
        ));
        // The owner still gets in from home and the office, and typos
        // there cost the budget nothing.
        assert_eq!(t.begin("carol", home, now), Gate::Open);
        t.failed("carol", home, now);
        assert_eq!(t.begin("carol", office, now), Gate::Open);
        // Known for a while, not for ever.
        let much_later = now + KNOWN_FOR;
        for i in 200..200 + ACCOUNT_FAILURES {
            assert_eq!(t.begin("carol", addr(i), much_later), Gate::Open);
            t.failed("carol", addr(i), much_later);
        }
        assert!(matches!(
            t.begin("carol", office, much_later),
            Gate::AccountLocked(_)
        ));
    }

    #[test]
    fn only_the_latest_addresses_are_known() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..=MAX_KNOWN as u32 {
            t.succeeded("carol", addr(i), now + Duration::from_secs(i.into()));
        }
        let accounts = t.accounts.lock().unwrap();
        let known = &accounts["carol"].known;
        assert_eq!(known.len(), MAX_KNOWN);
        assert!(!known.iter().any(|(n, _)| *n == addr(0)), "the oldest goes");
    }

    #[test]
    fn an_ipv6_address_counts_as_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(network(a), network(b));
        assert_ne!(network(a), network(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(network(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());

        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..LOCK_AFTER {
            let host = IpAddr::V6(Ipv6Addr::from(
                (0x2001_0db8_0001_0002u128 << 64) | u128::from(i + 1),
            ));
            t.begin("frank", host, now);
            t.failed("frank", host, now);
        }
        let neighbour = IpAddr::V6(Ipv6Addr::from((0x2001_0db8_0001_0002u128 << 64) | 0xffff));
        assert_eq!(t.begin("frank", neighbour, now), Gate::Locked(LOCKOUT));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attempts_from_many_addresses_at_once_cannot_overdraw_the_budget() {
        let t = Arc::new(Throttle::default());
        let now = Instant::now();
        let attempts: Vec<_> = (0..200)
            .map(|i| {
                let t = t.clone();
                tokio::spawn(async move {
                    let _turn = t.turn("grace", addr(i)).await;
                    if t.begin("grace", addr(i), now) != Gate::Open {
                        return false;
                    }
                    tokio::task::yield_now().await;
                    t.failed("grace", addr(i), now);
                    true
                })
            })
            .collect();
        let mut checked = 0;
        for a in attempts {
            checked += u32::from(a.await.unwrap());
        }
        assert_eq!(checked, ACCOUNT_FAILURES);
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
