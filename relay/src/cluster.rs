//! The link between relays that share a NATS cluster.
//!
//! Messages need no link: every relay follows the message stream. What the
//! stream does not carry travels on a core NATS subject: membership changes
//! (so a relay subscribes its own sessions of a user who joined elsewhere)
//! and who is online where. Each relay also sends its roster every few
//! seconds; a relay not heard from for a while is taken to be gone and its
//! users offline, which also repairs anything missed while NATS was away.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::hub::{Hub, HubEvent};
use crate::state::Relay;
use crate::store::nats::EVENTS;
use crate::store::Store;

/// How often a relay tells the others who is online on it.
const ROSTER_EVERY: Duration = Duration::from_secs(5);
/// Silence after which a relay counts as gone.
const GONE_AFTER: Duration = Duration::from_secs(16);

#[derive(Serialize, Deserialize)]
enum Wire {
    Event(HubEvent),
    /// Everyone online on the sender, with their rooms.
    Roster(Vec<(String, Vec<String>)>),
    /// The sender is shutting down.
    Bye,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    relay: u64,
    wire: Wire,
}

/// What this relay knows of another.
struct Remote {
    seen: Instant,
    users: HashMap<String, Vec<String>>,
}

/// This relay's side of the link.
pub struct Link {
    client: async_nats::Client,
    id: u64,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    /// Starts forwarding the relay's hub events to the other relays and
    /// applying theirs.
    /// `connections` counts NATS (re)connections (see `store::nats::connect`).
    pub async fn start<S: Store>(
        client: async_nats::Client,
        connections: watch::Receiver<u64>,
        relay: Arc<Relay<S>>,
    ) -> anyhow::Result<Link> {
        let id = rand::random::<u64>();
        let incoming = client.subscribe(EVENTS).await?;
        let (tx, outgoing) = mpsc::unbounded_channel();
        relay.hub.set_events(tx);
        let task = tokio::spawn(run(
            client.clone(),
            id,
            relay,
            incoming,
            outgoing,
            connections,
        ));
        Ok(Link { client, id, task })
    }

    /// Tells the other relays this one is going, so its users turn offline
    /// there at once rather than after the silence timeout.
    pub async fn bye(self) {
        self.task.abort();
        let _ = publish(&self.client, self.id, Wire::Bye).await;
        let _ = self.client.flush().await;
    }
}

async fn publish(client: &async_nats::Client, relay: u64, wire: Wire) -> anyhow::Result<()> {
    let bytes =
        bincode::serde::encode_to_vec(Envelope { relay, wire }, bincode::config::standard())?;
    client.publish(EVENTS, bytes.into()).await?;
    Ok(())
}

async fn run<S: Store>(
    client: async_nats::Client,
    id: u64,
    relay: Arc<Relay<S>>,
    mut incoming: async_nats::Subscriber,
    mut outgoing: mpsc::UnboundedReceiver<HubEvent>,
    mut connections: watch::Receiver<u64>,
) {
    connections.mark_unchanged();
    let hub = &relay.hub;
    let mut remotes: HashMap<u64, Remote> = HashMap::new();
    let mut tick = tokio::time::interval(ROSTER_EVERY);
    loop {
        tokio::select! {
            Some(event) = outgoing.recv() => {
                if let Err(e) = publish(&client, id, Wire::Event(event)).await {
                    tracing::warn!("cannot tell the other relays: {e}");
                }
            }
            Some(m) = incoming.next() => {
                let Ok((env, _)) = bincode::serde::decode_from_slice::<Envelope, _>(
                    &m.payload,
                    bincode::config::standard(),
                ) else {
                    tracing::warn!(subject = %m.subject, "ignoring an unreadable cluster event");
                    continue;
                };
                if env.relay != id {
                    receive(hub, &mut remotes, env);
                }
            }
            Ok(()) = connections.changed() => {
                // Events sent while NATS was away are lost: read every local
                // user's rooms again.
                let users = hub.local_users();
                tracing::info!(users = users.len(), "back on NATS; checking memberships");
                for (user, _) in users {
                    match relay.store.rooms_of(&user).await {
                        Ok(rows) => {
                            let rooms: Vec<String> = rows.into_iter().map(|r| r.name).collect();
                            hub.resync(&user, &rooms);
                        }
                        Err(e) => tracing::warn!(%user, "cannot check memberships: {e}"),
                    }
                }
            }
            _ = tick.tick() => {
                let roster = hub.local_users();
                if let Err(e) = publish(&client, id, Wire::Roster(roster)).await {
                    tracing::warn!("cannot tell the other relays: {e}");
                }
                let now = Instant::now();
                let gone: Vec<u64> = remotes
                    .iter()
                    .filter(|(_, r)| now - r.seen > GONE_AFTER)
                    .map(|(id, _)| *id)
                    .collect();
                for relay in gone {
                    tracing::info!(relay = format!("{relay:016x}"), "another relay went silent");
                    drop_remote(hub, &mut remotes, relay);
                }
            }
        }
    }
}

fn receive(hub: &Hub, remotes: &mut HashMap<u64, Remote>, env: Envelope) {
    if matches!(env.wire, Wire::Bye) {
        drop_remote(hub, remotes, env.relay);
        return;
    }
    let remote = remotes.entry(env.relay).or_insert_with(|| Remote {
        seen: Instant::now(),
        users: HashMap::new(),
    });
    remote.seen = Instant::now();
    match env.wire {
        Wire::Event(HubEvent::Online { user, rooms }) => {
            if !remote.users.contains_key(&user) {
                remote.users.insert(user.clone(), rooms.clone());
                hub.apply_remote(HubEvent::Online { user, rooms });
            }
        }
        Wire::Event(HubEvent::Offline { user, .. }) => {
            if let Some(rooms) = remote.users.remove(&user) {
                hub.apply_remote(HubEvent::Offline { user, rooms });
            }
        }
        Wire::Event(event) => hub.apply_remote(event),
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
                hub.apply_remote(HubEvent::Offline { user, rooms });
            }
            for (user, rooms) in list {
                if !remote.users.contains_key(&user) {
                    remote.users.insert(user.clone(), rooms.clone());
                    hub.apply_remote(HubEvent::Online { user, rooms });
                }
            }
        }
        Wire::Bye => {}
    }
}

fn drop_remote(hub: &Hub, remotes: &mut HashMap<u64, Remote>, relay: u64) {
    if let Some(remote) = remotes.remove(&relay) {
        for (user, rooms) in remote.users {
            hub.apply_remote(HubEvent::Offline { user, rooms });
        }
    }
}
