//! The relays a session may use and the order it tries them in, without
//! I/O: parsed from `host:port,host:port`, rotated when a relay goes away.
//!
//! Relays that share one store serve any user with the same history and
//! sequence numbers, so a session may move between them exactly as it
//! reconnects to one relay. Each round of attempts tries every address once,
//! starting from the one last used; when that relay goes away (connection
//! lost, shutting down, or a whole round failed) the next round starts at
//! the address after it, so sessions spread over the relays left instead of
//! waiting for a dead one.

use std::net::{IpAddr, SocketAddr};

/// Port used when the server address names none.
pub const DEFAULT_PORT: u16 = 4433;

/// The server address with the default port added when it has none.
pub fn with_port(server: &str) -> String {
    let s = server.trim();
    if s.parse::<SocketAddr>().is_ok() {
        return s.to_owned();
    }
    if let Ok(ip) = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return SocketAddr::new(ip, DEFAULT_PORT).to_string();
    }
    match s.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => s.to_owned(),
        _ => format!("{s}:{DEFAULT_PORT}"),
    }
}

/// Refuses a port that is a number but no port (`host:99999`, `host:0`),
/// which would otherwise be taken for part of the host name and end in
/// "cannot resolve host:99999:4433", and an IPv6 bracket left open, which
/// ended only after the connect timeout.
fn check_port(entry: &str) -> Result<(), String> {
    if entry.starts_with('[') != entry.contains(']') {
        return Err(format!(
            "\"{entry}\": an IPv6 address goes in brackets, as [::1]:4433"
        ));
    }
    let Some((host, port)) = entry.rsplit_once(':') else {
        return Ok(());
    };
    // An IPv6 address without brackets: its last group is no port.
    let ipv6 = host.contains(':') && !host.ends_with(']');
    if ipv6 || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!(
            "\"{entry}\": port {port} is not between 1 and 65535"
        )),
    }
}

/// The addresses of a session's relays and where the next round starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayList {
    addrs: Vec<String>,
    next: usize,
}

impl RelayList {
    /// Parses one address or several separated by commas. Each gets port
    /// 4433 when it names none; spaces around them and empty entries (a
    /// trailing comma) are ignored, and an address listed twice is tried
    /// once per round.
    pub fn parse(list: &str) -> Result<RelayList, String> {
        let mut addrs: Vec<String> = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry.chars().any(char::is_whitespace) {
                return Err(format!(
                    "\"{entry}\" is not a relay address: separate addresses with commas"
                ));
            }
            check_port(entry)?;
            let addr = with_port(entry);
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        if addrs.is_empty() {
            return Err(
                "no relay address given (host:port, or several separated by commas)".into(),
            );
        }
        Ok(RelayList { addrs, next: 0 })
    }

    /// Every address, in the order given, each with its port.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The address the next round tries first.
    pub fn next(&self) -> &str {
        &self.addrs[self.next]
    }

    /// The order of the next round, as indexes into [`addrs`](Self::addrs):
    /// every address once, starting with [`next`](Self::next).
    pub fn round(&self) -> Vec<usize> {
        let n = self.addrs.len();
        (0..n).map(|k| (self.next + k) % n).collect()
    }

    /// The session logged in at `addrs()[at]`: a reconnect that is not the
    /// relay's fault (the user asked for one) starts there again.
    pub fn connected(&mut self, at: usize) {
        self.next = at % self.addrs.len();
    }

    /// The relay at `addrs()[at]` went away: the next round starts after it.
    pub fn went_away(&mut self, at: usize) {
        self.next = (at + 1) % self.addrs.len();
    }

    /// No address of the last round answered: the next one starts one
    /// further on, so a relay that fails without ever answering is not
    /// always the one waited for first.
    pub fn round_failed(&mut self) {
        self.next = (self.next + 1) % self.addrs.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &str) -> Vec<String> {
        RelayList::parse(list).unwrap().addrs().to_vec()
    }

    #[test]
    fn one_address_parses_as_it_always_did() {
        assert_eq!(addrs("127.0.0.1:4433"), ["127.0.0.1:4433"]);
        assert_eq!(addrs("relay.example.org"), ["relay.example.org:4433"]);
        assert_eq!(addrs(" [::1]:5000 "), ["[::1]:5000"]);
        assert_eq!(addrs("::1"), ["[::1]:4433"]);
        for bad in ["[::1", "::1]:4433"] {
            let e = RelayList::parse(bad).unwrap_err();
            assert!(e.contains("in brackets"), "{bad}: {e}");
        }
    }

    #[test]
    fn several_addresses_keep_their_order_and_get_ports() {
        assert_eq!(
            addrs("hostA:4433,hostB, [::1]:7000 ,10.0.0.3"),
            ["hostA:4433", "hostB:4433", "[::1]:7000", "10.0.0.3:4433"]
        );
    }

    #[test]
    fn empty_entries_are_ignored_and_duplicates_tried_once() {
        assert_eq!(addrs("hostA,"), ["hostA:4433"]);
        assert_eq!(addrs(",hostA,,hostB"), ["hostA:4433", "hostB:4433"]);
        assert_eq!(
            addrs("hostA,hostA:4433,hostB"),
            ["hostA:4433", "hostB:4433"]
        );
    }

    #[test]
    fn a_port_out_of_range_is_refused_by_name() {
        for bad in ["127.0.0.1:99999", "host:0", "[::1]:70000"] {
            let e = RelayList::parse(bad).unwrap_err();
            assert!(e.contains("not between 1 and 65535"), "{bad}: {e}");
        }
        assert_eq!(addrs("::1"), ["[::1]:4433"]);
        for bad in ["[::1", "::1]:4433"] {
            let e = RelayList::parse(bad).unwrap_err();
            assert!(e.contains("in brackets"), "{bad}: {e}");
        }
        assert_eq!(addrs("host:65535"), ["host:65535"]);
    }

    #[test]
    fn no_address_or_a_space_separated_list_is_refused() {
        for bad in ["", "  ", ",", " , ,"] {
            let e = RelayList::parse(bad).unwrap_err();
            assert!(e.contains("no relay address"), "{bad:?}: {e}");
        }
        let e = RelayList::parse("hostA hostB").unwrap_err();
        assert!(e.contains("commas"), "{e}");
    }

    #[test]
    fn the_first_round_starts_at_the_first_address() {
        let list = RelayList::parse("a,b,c").unwrap();
        assert_eq!(list.round(), [0, 1, 2]);
        assert_eq!(list.next(), "a:4433");
    }

    #[test]
    fn a_relay_that_goes_away_is_tried_last() {
        let mut list = RelayList::parse("a,b,c").unwrap();
        list.connected(0);
        list.went_away(0);
        assert_eq!(list.round(), [1, 2, 0]);
        list.connected(1);
        list.went_away(1);
        assert_eq!(list.round(), [2, 0, 1]);
        list.connected(2);
        list.went_away(2);
        assert_eq!(list.round(), [0, 1, 2], "round robin wraps");
    }

    #[test]
    fn a_reconnect_without_fault_starts_at_the_relay_last_used() {
        let mut list = RelayList::parse("a,b,c").unwrap();
        list.connected(2);
        assert_eq!(list.round(), [2, 0, 1]);
        assert_eq!(list.next(), "c:4433");
    }

    #[test]
    fn each_failed_round_starts_one_further() {
        let mut list = RelayList::parse("a,b,c").unwrap();
        list.went_away(0);
        list.round_failed();
        assert_eq!(list.round(), [2, 0, 1]);
        list.round_failed();
        assert_eq!(list.round(), [0, 1, 2]);
    }

    #[test]
    fn one_address_is_always_the_next() {
        let mut list = RelayList::parse("a").unwrap();
        list.connected(0);
        list.went_away(0);
        assert_eq!(list.round(), [0]);
        list.round_failed();
        assert_eq!(list.round(), [0]);
    }
}
