//! The link between relays that share a NATS cluster.
//!
//! Messages need no link: every relay follows the message stream. What the
//! stream does not carry travels on a core NATS subject: membership changes
//! (so a relay subscribes its own sessions of a user who joined elsewhere)
//! and who is online where. Each relay also sends its roster every few
//! seconds; a relay not heard from for a while is taken to be gone and its
//! users offline, which also repairs anything missed while NATS was away
//! (see `remotes`, which keeps that account; `wire` is what is said).

mod remotes;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use self::remotes::Remotes;
use self::wire::{Envelope, Wire};
use crate::hub::{Hub, HubEvent};
use crate::store::nats::EVENTS;
use crate::store::Store;

/// How often a relay tells the others who is online on it.
const ROSTER_EVERY: Duration = Duration::from_secs(5);

/// This relay's side of the link.
pub struct Link {
    client: async_nats::Client,
    id: u64,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    /// Starts forwarding `hub`'s events to the other relays and applying
    /// theirs to it. `connections` counts NATS (re)connections (see
    /// `store::nats::connect`); after each, memberships are read again from
    /// `store`.
    pub async fn start<S: Store>(
        client: async_nats::Client,
        connections: watch::Receiver<u64>,
        hub: Arc<Hub>,
        store: Arc<S>,
    ) -> anyhow::Result<Link> {
        let id = rand::random::<u64>();
        let incoming = client.subscribe(EVENTS).await?;
        let (tx, outgoing) = mpsc::unbounded_channel();
        hub.set_events(tx);
        let task = tokio::spawn(run(
            client.clone(),
            id,
            hub,
            store,
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
    let bytes = Envelope { relay, wire }.encode()?;
    client.publish(EVENTS, bytes.into()).await?;
    Ok(())
}

fn apply(hub: &Hub, events: Vec<HubEvent>) {
    for event in events {
        hub.apply_remote(event);
    }
}

async fn run<S: Store>(
    client: async_nats::Client,
    id: u64,
    hub: Arc<Hub>,
    store: Arc<S>,
    mut incoming: async_nats::Subscriber,
    mut outgoing: mpsc::UnboundedReceiver<HubEvent>,
    mut connections: watch::Receiver<u64>,
) {
    connections.mark_unchanged();
    let mut remotes = Remotes::new(id);
    let mut tick = tokio::time::interval(ROSTER_EVERY);
    loop {
        tokio::select! {
            Some(event) = outgoing.recv() => {
                if let Err(e) = publish(&client, id, Wire::Event(event)).await {
                    tracing::warn!("cannot tell the other relays: {e}");
                }
            }
            Some(m) = incoming.next() => match remotes.receive(&m.payload, Instant::now()) {
                Ok(events) => apply(&hub, events),
                Err(_) => {
                    tracing::warn!(subject = %m.subject, "ignoring an unreadable cluster event");
                }
            },
            Ok(()) = connections.changed() => {
                // Events sent while NATS was away are lost: read every local
                // user's rooms again.
                let users = hub.local_users();
                tracing::info!(users = users.len(), "back on NATS; checking memberships");
                for (user, _) in users {
                    match store.rooms_of(&user).await {
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
                apply(&hub, remotes.drop_silent(Instant::now()));
            }
        }
    }
}
