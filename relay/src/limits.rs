//! Admission of new connections: caps on connections in all, on those not
//! logged in yet, and on those not logged in yet from one address. Checked
//! before the TLS handshake, so a refusal costs one packet.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The caps, shared by the accept loop.
pub struct Admission {
    total: Arc<Semaphore>,
    pre_login: Arc<Semaphore>,
    per_addr: usize,
    by_addr: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A place among all connections; held for the connection's life.
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

/// A place among connections not logged in yet; dropped at login.
pub struct PreLogin {
    _permit: OwnedSemaphorePermit,
    addr: IpAddr,
    by_addr: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for PreLogin {
    fn drop(&mut self) {
        let mut map = self.by_addr.lock().expect("admission lock");
        if let Some(n) = map.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.addr);
            }
        }
    }
}

impl Admission {
    pub fn new(total: usize, pre_login: usize, per_addr: usize) -> Self {
        Admission {
            total: Arc::new(Semaphore::new(total)),
            pre_login: Arc::new(Semaphore::new(pre_login)),
            per_addr: per_addr.max(1),
            by_addr: Arc::default(),
        }
    }

    /// Places for a new connection from `addr`, or `None` when a cap is reached.
    pub fn admit(&self, addr: IpAddr) -> Option<(Slot, PreLogin)> {
        let mut map = self.by_addr.lock().expect("admission lock");
        let from_addr = map.get(&addr).copied().unwrap_or(0);
        if from_addr >= self.per_addr {
            return None;
        }
        let slot = self.total.clone().try_acquire_owned().ok()?;
        let permit = self.pre_login.clone().try_acquire_owned().ok()?;
        map.insert(addr, from_addr + 1);
        Some((
            Slot(slot),
            PreLogin {
                _permit: permit,
                addr,
                by_addr: self.by_addr.clone(),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_cannot_take_every_pre_login_place() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
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
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let admission = Admission::new(2, 1, 5);
        let (slot, pre_login) = admission.admit(a).unwrap();
        assert!(admission.admit(a).is_none(), "one pre-login place");
        drop(pre_login);
        let second = admission.admit(a).expect("freed at login");
        assert!(admission.admit(a).is_none(), "two slots in all");
        drop((slot, second));
    }
}
