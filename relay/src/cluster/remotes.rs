//! Who is online on the other relays, as far as this one has heard.
//!
//! Online and Offline events and the rosters relays send every few seconds
//! are turned into the hub events that change this relay's view: a user
//! is announced once per relay they are on, and withdrawn when that relay
//! says so, leaves them out of its roster, says `Bye` or falls silent.
//! Nothing here reads a clock or touches the network: the caller passes
//! the time and applies the events it gets back.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::wire::{Envelope, Wire};
use crate::hub::HubEvent;

/// Silence after which a relay counts as gone: more than three of its
/// rosters missed.
pub const GONE_AFTER: Duration = Duration::from_secs(16);

/// What this relay knows of another.
struct Remote {
    seen: Instant,
    users: HashMap<String, Vec<String>>,
}

/// The other relays heard from, with their online users.
pub struct Remotes {
    /// This relay's id: its own messages come back on the subject.
    me: u64,
    relays: HashMap<u64, Remote>,
}

impl Remotes {
    /// Nothing heard yet by relay `me`.
    pub fn new(me: u64) -> Self {
        Remotes {
            me,
            relays: HashMap::new(),
        }
    }

    /// Takes in one message of the events subject received at `now` and
    /// returns what it changes for this relay's hub. An unreadable message
    /// changes nothing.
    pub fn receive(
        &mut self,
        payload: &[u8],
        now: Instant,
    ) -> Result<Vec<HubEvent>, bincode::error::DecodeError> {
        let env = Envelope::decode(payload)?;
        if env.relay == self.me {
            return Ok(Vec::new());
        }
        if matches!(env.wire, Wire::Bye) {
            return Ok(self.drop_relay(env.relay));
        }
        let remote = self.relays.entry(env.relay).or_insert_with(|| Remote {
            seen: now,
            users: HashMap::new(),
        });
        remote.seen = now;
        let mut events = Vec::new();
        match env.wire {
            Wire::Event(HubEvent::Online { user, rooms }) => {
                if !remote.users.contains_key(&user) {
                    remote.users.insert(user.clone(), rooms.clone());
                    events.push(HubEvent::Online { user, rooms });
                }
            }
            Wire::Event(HubEvent::Offline { user, .. }) => {
                if let Some(rooms) = remote.users.remove(&user) {
                    events.push(HubEvent::Offline { user, rooms });
                }
            }
            Wire::Event(event) => events.push(event),
            Wire::Roster(list) => {
                let listed: HashSet<&String> = list.iter().map(|(u, _)| u).collect();
                let left: Vec<String> = remote
                    .users
                    .keys()
                    .filter(|u| !listed.contains(u))
                    .cloned()
                    .collect();
                for user in left {
                    let rooms = remote.users.remove(&user).unwrap_or_default();
                    events.push(HubEvent::Offline { user, rooms });
                }
                for (user, rooms) in list {
                    if !remote.users.contains_key(&user) {
                        remote.users.insert(user.clone(), rooms.clone());
                        events.push(HubEvent::Online { user, rooms });
                    }
                }
            }
            Wire::Bye => {}
        }
        Ok(events)
    }

    /// Forgets every relay not heard from for longer than [`GONE_AFTER`]
    /// before `now`; their users go offline here.
    pub fn drop_silent(&mut self, now: Instant) -> Vec<HubEvent> {
        let gone: Vec<u64> = self
            .relays
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.seen) > GONE_AFTER)
            .map(|(id, _)| *id)
            .collect();
        let mut events = Vec::new();
        for relay in gone {
            tracing::info!(relay = format!("{relay:016x}"), "another relay went silent");
            events.extend(self.drop_relay(relay));
        }
        events
    }

    fn drop_relay(&mut self, relay: u64) -> Vec<HubEvent> {
        self.relays
            .remove(&relay)
            .into_iter()
            .flat_map(|remote| remote.users)
            .map(|(user, rooms)| HubEvent::Offline { user, rooms })
            .collect()
    }
}

#[cfg(test)]
mod tests;
