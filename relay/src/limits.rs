//! Admission of new connections: caps on connections in all, on those not
//! logged in yet, and on those not logged in yet from one network (an IPv4
//! address, or an IPv6 /64: one host owns a whole /64). Checked before the
//! TLS handshake, so a refusal costs one packet.
//!
//! A full set of pre-login places does not shut newcomers out. A newcomer
//! takes the place of a silent connection (one with no login being
//! checked): the oldest one of the network holding the most places, if
//! the newcomer's network holds none yet, or at least two fewer than that
//! one. Whoever fills the places without logging in thus loses them to
//! everyone else, and a real client, which sends its login right after the
//! handshake, is not silent long enough to lose its own.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::defaults::RETRY_ABOVE_PERCENT;

/// The caps, shared by the accept loop.
pub struct Admission {
    total: Arc<Semaphore>,
    places: Arc<Mutex<Places>>,
}

/// What a client's pre-login connections are counted under: its IPv4
/// address, or the /64 of its IPv6 address. An IPv4 address seen as an
/// IPv6-mapped one (a relay listening on `[::]`) counts as itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Network {
    V4(Ipv4Addr),
    /// The first 64 bits of the address.
    V6(u64),
}

impl From<IpAddr> for Network {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(a) => Network::V4(a),
            IpAddr::V6(a) => Network::V6((u128::from(a) >> 64) as u64),
        }
    }
}

/// A place among all connections; held for the connection's life.
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

/// A place among connections not logged in yet; dropped at login. It can
/// be taken away while its connection is silent: [`PreLogin::evicted`]
/// then completes, and the connection must be closed.
pub struct PreLogin {
    places: Arc<Mutex<Places>>,
    network: Network,
    age: u64,
    evicted: watch::Receiver<bool>,
}

/// While held, the connection's place cannot be taken: a login is being
/// checked.
pub struct Checking<'a>(&'a PreLogin);

/// The pre-login places, by network and, within one, by age.
struct Places {
    cap: usize,
    per_network: usize,
    held: usize,
    /// Admission order: lower is older.
    next_age: u64,
    networks: HashMap<Network, BTreeMap<u64, Place>>,
}

struct Place {
    checking: bool,
    evict: watch::Sender<bool>,
}

impl Places {
    fn lock(places: &Mutex<Places>) -> MutexGuard<'_, Places> {
        places.lock().expect("admission lock")
    }

    /// Frees a place for a newcomer whose network holds `own` places: the
    /// oldest silent connection's of the network holding the most. A
    /// network with no place yet takes one from any network; one that
    /// holds some only from a network holding at least two more, so that
    /// the move leaves the places spread more evenly, never just moves
    /// them around (networks at their cap would otherwise evict each other
    /// in turn, a handshake each time). Returns whether a place was freed.
    fn evict_for(&mut self, own: usize) -> bool {
        let enough = if own == 0 { 1 } else { own + 2 };
        let victim = self
            .networks
            .iter()
            .filter(|(_, places)| places.len() >= enough)
            .filter_map(|(network, places)| {
                let (age, _) = places.iter().find(|(_, p)| !p.checking)?;
                Some((places.len(), std::cmp::Reverse(*age), *network))
            })
            .max();
        let Some((_, std::cmp::Reverse(age), network)) = victim else {
            return false;
        };
        if let Some(place) = self.remove(network, age) {
            let _ = place.evict.send(true);
        }
        true
    }

    fn remove(&mut self, network: Network, age: u64) -> Option<Place> {
        let places = self.networks.get_mut(&network)?;
        let place = places.remove(&age)?;
        if places.is_empty() {
            self.networks.remove(&network);
        }
        self.held -= 1;
        Some(place)
    }

    fn set_checking(&mut self, network: Network, age: u64, checking: bool) {
        if let Some(place) = self
            .networks
            .get_mut(&network)
            .and_then(|places| places.get_mut(&age))
        {
            place.checking = checking;
        }
    }
}

impl Admission {
    /// Caps of `total` connections, `pre_login` of them not logged in, and
    /// `per_network` of those from one network.
    pub fn new(total: usize, pre_login: usize, per_network: usize) -> Self {
        Admission {
            total: Arc::new(Semaphore::new(total)),
            places: Arc::new(Mutex::new(Places {
                cap: pre_login,
                per_network: per_network.max(1),
                held: 0,
                next_age: 0,
                networks: HashMap::new(),
            })),
        }
    }

    /// Whether enough pre-login places are taken that a client must prove
    /// it can receive at its address (a QUIC Retry) before it gets one, so
    /// that packets with forged sources cannot take places.
    pub fn crowded(&self) -> bool {
        let places = Places::lock(&self.places);
        places.held * 100 > places.cap * RETRY_ABOVE_PERCENT
    }

    /// Places for a new connection from `addr`, or `None` when a cap is
    /// reached and no silent connection can give up its place.
    pub fn admit(&self, addr: IpAddr) -> Option<(Slot, PreLogin)> {
        let network = Network::from(addr);
        let mut places = Places::lock(&self.places);
        let own = places.networks.get(&network).map_or(0, BTreeMap::len);
        if own >= places.per_network {
            return None;
        }
        let slot = self.total.clone().try_acquire_owned().ok()?;
        if places.held >= places.cap && !places.evict_for(own) {
            return None;
        }
        let age = places.next_age;
        places.next_age += 1;
        places.held += 1;
        let (evict, evicted) = watch::channel(false);
        places.networks.entry(network).or_default().insert(
            age,
            Place {
                checking: false,
                evict,
            },
        );
        Some((
            Slot(slot),
            PreLogin {
                places: self.places.clone(),
                network,
                age,
                evicted,
            },
        ))
    }
}

impl PreLogin {
    /// Completes once the place has gone to a newcomer.
    pub async fn evicted(&mut self) {
        if self.evicted.wait_for(|evicted| *evicted).await.is_err() {
            // Never evicted: the place went another way.
            std::future::pending::<()>().await;
        }
    }

    /// Keeps the place until the guard is dropped, for a login being checked.
    pub fn checking(&self) -> Checking<'_> {
        Places::lock(&self.places).set_checking(self.network, self.age, true);
        Checking(self)
    }
}

impl Drop for Checking<'_> {
    fn drop(&mut self) {
        let PreLogin {
            places,
            network,
            age,
            ..
        } = self.0;
        Places::lock(places).set_checking(*network, *age, false);
    }
}

impl Drop for PreLogin {
    fn drop(&mut self) {
        Places::lock(&self.places).remove(self.network, self.age);
    }
}

/// Password checks (logins and registrations) of one client network in
/// progress at once. A check costs the relay tens of milliseconds of a
/// core and, while it runs, its connection keeps its pre-login place;
/// without a cap, a few networks pipelining logins with made-up names
/// would hold every place and every hashing thread.
pub struct PasswordChecks {
    per_network: usize,
    by_network: Mutex<HashMap<Network, Arc<Semaphore>>>,
}

/// A network's turn to have a password checked; given back when dropped.
pub struct CheckTurn {
    checks: Arc<PasswordChecks>,
    network: Network,
    _permit: OwnedSemaphorePermit,
}

impl Drop for CheckTurn {
    fn drop(&mut self) {
        let mut map = lock(&self.checks.by_network);
        // Forgotten once nobody holds or awaits a turn of that network:
        // the map's reference and this turn's permit's are the last.
        if let Some(sem) = map.get(&self.network) {
            if Arc::strong_count(sem) <= 2 && sem.available_permits() + 1 >= self.checks.per_network
            {
                map.remove(&self.network);
            }
        }
    }
}

impl PasswordChecks {
    pub fn new(per_network: usize) -> Arc<Self> {
        Arc::new(PasswordChecks {
            per_network: per_network.max(1),
            by_network: Mutex::default(),
        })
    }

    /// Waits for `addr`'s network to have a check free.
    pub async fn turn(self: &Arc<Self>, addr: IpAddr) -> CheckTurn {
        let network = Network::from(addr);
        let sem = lock(&self.by_network)
            .entry(network)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_network)))
            .clone();
        let permit = sem.acquire_owned().await.expect("never closed");
        CheckTurn {
            checks: self.clone(),
            network,
            _permit: permit,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn is_evicted(place: &PreLogin) -> bool {
        *place.evicted.borrow()
    }

    #[test]
    fn one_address_cannot_take_every_pre_login_place() {
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let admission = Admission::new(100, 10, 3);
        let held: Vec<_> = (0..3)
            .map(|_| admission.admit(a).expect("under the cap"))
            .collect();
        assert!(admission.admit(a).is_none(), "fourth from one address");
        assert!(admission.admit(b).is_some(), "others still get in");
        drop(held);
        assert!(admission.admit(a).is_some(), "places come back");
    }

    #[test]
    fn logging_in_frees_the_pre_login_place_but_not_the_slot() {
        let a = ip("10.0.0.1");
        let admission = Admission::new(2, 1, 5);
        let (slot, pre_login) = admission.admit(a).unwrap();
        let checking = pre_login.checking();
        assert!(admission.admit(a).is_none(), "one pre-login place");
        drop(checking);
        drop(pre_login);
        let second = admission.admit(a).expect("freed at login");
        assert!(admission.admit(a).is_none(), "two slots in all");
        drop((slot, second));
    }

    #[test]
    fn an_ipv6_slash_64_counts_as_one_address() {
        let admission = Admission::new(100, 100, 2);
        let _held = [
            admission.admit(ip("2001:db8:1:2::1")).unwrap(),
            admission
                .admit(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
                .unwrap(),
        ];
        assert!(
            admission.admit(ip("2001:db8:1:2:abcd::9")).is_none(),
            "a third from the same /64"
        );
        assert!(
            admission.admit(ip("2001:db8:1:3::1")).is_some(),
            "the next /64 is someone else"
        );
    }

    #[test]
    fn an_ipv4_mapped_address_counts_as_the_ipv4_address() {
        assert_eq!(
            Network::from(ip("::ffff:192.0.2.7")),
            Network::from(ip("192.0.2.7"))
        );
        assert_ne!(
            Network::from(ip("::ffff:192.0.2.7")),
            Network::from(ip("::ffff:192.0.2.8")),
            "mapped addresses share a /64 but are separate hosts"
        );
        let admission = Admission::new(100, 100, 1);
        let _v4 = admission.admit(ip("192.0.2.7")).unwrap();
        assert!(admission.admit(ip("::ffff:192.0.2.7")).is_none());
        assert!(admission.admit(ip("::ffff:192.0.2.8")).is_some());
    }

    #[test]
    fn a_newcomer_takes_the_oldest_silent_place_of_the_biggest_network() {
        let (a, b, c) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"));
        let admission = Admission::new(100, 5, 3);
        let (_, b_old) = admission.admit(b).unwrap();
        let (_, a_old) = admission.admit(a).unwrap();
        let (_, a_mid) = admission.admit(a).unwrap();
        let (_, a_new) = admission.admit(a).unwrap();
        let (_, b_new) = admission.admit(b).unwrap();
        let (_, first) = admission.admit(c).expect("evicts from a");
        assert!(is_evicted(&a_old), "a holds the most; its oldest goes");
        assert!(!is_evicted(&b_old), "b holds fewer, though older");
        let d = ip("10.0.0.4");
        let (_, second) = admission.admit(d).expect("a and b tie at two");
        assert!(
            is_evicted(&b_old),
            "on a tie the oldest silent connection goes"
        );
        assert!(![&a_mid, &a_new, &b_new, &first, &second]
            .iter()
            .any(|p| is_evicted(p)));
    }

    #[test]
    fn a_login_being_checked_keeps_its_place() {
        let (a, b, c) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"));
        let admission = Admission::new(100, 2, 2);
        let (_, old) = admission.admit(a).unwrap();
        let (_, young) = admission.admit(a).unwrap();
        let old_checking = old.checking();
        let (_, newcomer) = admission.admit(b).expect("young is silent");
        assert!(!is_evicted(&old) && is_evicted(&young));
        let newcomer_checking = newcomer.checking();
        assert!(
            admission.admit(c).is_none(),
            "every place is checking a login: the newcomer is refused"
        );
        drop(old_checking);
        assert!(admission.admit(c).is_some(), "old is silent again");
        assert!(is_evicted(&old) && !is_evicted(&newcomer));
        drop(newcomer_checking);
    }

    #[test]
    fn a_network_with_places_takes_one_only_to_even_them_out() {
        let (a, b, c) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"));
        let admission = Admission::new(100, 5, 4);
        let (_, a_old) = admission.admit(a).unwrap();
        let b_held: Vec<_> = (0..4).map(|_| admission.admit(b).unwrap()).collect();
        let (_, a_young) = admission.admit(a).expect("a (1) from b (4)");
        assert!(is_evicted(&b_held[0].1) && !is_evicted(&a_old));
        assert!(
            admission.admit(a).is_none(),
            "a (2) would only trade places with b (3)"
        );
        assert!(admission.admit(b).is_none(), "b (3) neither, with a (2)");
        let (_, c_first) = admission.admit(c).expect("a network with none");
        assert!(is_evicted(&b_held[1].1), "b still holds the most");
        assert!(![&a_old, &a_young].iter().any(|p| is_evicted(p)));
        drop(c_first);
    }

    #[tokio::test]
    async fn an_evicted_connection_is_told_and_its_place_counted_once() {
        let admission = Admission::new(100, 1, 1);
        let (_, mut first) = admission.admit(ip("10.0.0.1")).unwrap();
        let (_, second) = admission
            .admit(ip("10.0.0.2"))
            .expect("takes first's place");
        let told = tokio::time::timeout(std::time::Duration::from_secs(1), first.evicted()).await;
        assert!(told.is_ok(), "the evicted connection is told at once");
        drop(first);
        assert!(!is_evicted(&second));
        drop(second);
        assert!(!admission.crowded(), "no place is held any more");
    }

    #[test]
    fn addresses_need_validating_above_a_quarter_of_the_places() {
        let admission = Admission::new(100, 8, 8);
        let a = ip("10.0.0.1");
        let held: Vec<_> = (0..2).map(|_| admission.admit(a).unwrap()).collect();
        assert!(!admission.crowded(), "2 of 8");
        let third = admission.admit(a).unwrap();
        assert!(admission.crowded(), "3 of 8");
        drop((held, third));
        assert!(!admission.crowded());
    }

    #[tokio::test]
    async fn a_network_has_a_few_checks_at_once_and_others_are_not_held_up() {
        let checks = PasswordChecks::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = checks.turn(a).await;
        let second = checks.turn(a).await;
        let third = tokio::time::timeout(Duration::from_millis(50), checks.turn(a)).await;
        assert!(third.is_err(), "a third check of one network waits");
        let other = tokio::time::timeout(Duration::from_millis(50), checks.turn(b)).await;
        assert!(other.is_ok(), "another network does not");
        drop(other);
        drop(first);
        let third = tokio::time::timeout(Duration::from_millis(50), checks.turn(a)).await;
        assert!(third.is_ok(), "a turn comes back");
        drop((second, third));
        assert!(
            lock(&checks.by_network).is_empty(),
            "networks are forgotten"
        );
    }
}
