//! How a session reaches and logs in to its relays, and how it retries.

use std::time::Duration;

use crate::trust::TrustMode;

/// How to reach and log in to a relay. Its `Debug` leaves the password out.
#[derive(Clone)]
pub struct Config {
    /// `host:port` (port 4433 when left out), or several separated by
    /// commas: relays sharing one store, tried in order (see
    /// [`RelayList`](super::RelayList)). Each address's certificate is
    /// checked on its own, as `trust` says.
    pub server: String,
    pub trust: TrustMode,
    pub user: String,
    pub password: String,
    /// Create the account on the first connection.
    pub register: bool,
    /// Sent in `Hello`, for the relay's logs.
    pub client_name: String,
    /// First reconnect delay; doubles up to `reconnect_max`. It is waited
    /// once per round over every address, not once per address.
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("server", &self.server)
            .field("trust", &self.trust)
            .field("user", &self.user)
            .field("register", &self.register)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A configuration with the default reconnect policy.
    pub fn new(server: &str, trust: TrustMode, user: &str, password: &str) -> Self {
        Config {
            server: server.to_owned(),
            trust,
            user: user.to_owned(),
            password: password.to_owned(),
            register: false,
            client_name: concat!("confab-common/", env!("CARGO_PKG_VERSION")).to_owned(),
            reconnect_initial: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(10),
        }
    }
}
