//! The accept loop, the fan-out task and the orderly shutdown.

use std::future::Future;
use std::sync::Arc;

use common::frame::{close, Message, ServerFrame};
use quinn::Endpoint;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{timeout_at, Instant};

use crate::config::Config;
use crate::conn;
use crate::defaults::DRAIN_TIMEOUT;
use crate::limits::{Admission, PreLogin};
use crate::metrics::inc;
use crate::state::Relay;
use crate::store::Store;

/// Serves `endpoint` until `stop` completes, then shuts down in order: stop
/// accepting, tell every client, let sessions finish their in-flight sends,
/// flush the store, close the endpoint.
///
/// `committed` is the store's channel of committed messages; the one task
/// that drains it is what keeps every room's fan-out in sequence order.
/// `cluster` links this relay to the others sharing a NATS store.
#[allow(clippy::too_many_arguments)]
pub async fn serve<S: Store>(
    endpoint: Endpoint,
    store: S,
    mut committed: mpsc::UnboundedReceiver<Arc<Message>>,
    cfg: Config,
    metrics: Option<tokio::net::TcpListener>,
    cluster: Option<(async_nats::Client, tokio::sync::watch::Receiver<u64>)>,
    stop: impl Future<Output = ()>,
) {
    let relay = Arc::new(Relay::new(store, cfg));
    // Made now, not by the first login with an unknown name, whose slower
    // answer would tell that the name does not exist.
    let _ = relay.hash(|| crate::auth::dummy_hash().len()).await;
    // Owned here, so it ends with the relay.
    let _metrics = metrics.map(|listener| {
        let relay = relay.clone();
        let render = std::sync::Arc::new(move || relay.metrics.render(relay.hub.sessions()));
        AbortOnDrop(tokio::spawn(crate::metrics::serve(listener, render)))
    });
    // Sessions of a deleted or re-passworded account end at once, on every
    // relay sharing the store.
    let _accounts = match relay.store.account_changes().await {
        Ok(mut changes) => {
            let relay = relay.clone();
            Some(AbortOnDrop(tokio::spawn(async move {
                while let Some(user) = changes.recv().await {
                    relay.revoke_changed(&user).await;
                }
            })))
        }
        Err(e) => {
            tracing::error!("cannot follow account changes: {e}; a deleted account keeps its open sessions until they end");
            None
        }
    };
    let fanout = {
        let relay = relay.clone();
        tokio::spawn(async move {
            while let Some(msg) = committed.recv().await {
                relay.fan_out(&msg);
            }
        })
    };
    let link = match cluster {
        Some((client, connections)) => {
            match crate::cluster::Link::start(
                client,
                connections,
                relay.hub.clone(),
                relay.store.clone(),
            )
            .await
            {
                Ok(link) => Some(link),
                Err(e) => {
                    tracing::error!("cannot link to the other relays: {e}");
                    None
                }
            }
        }
        None => None,
    };
    let admission = Admission::new(
        relay.cfg.max_connections,
        relay.cfg.max_unauthenticated,
        relay.cfg.max_unauthenticated_per_addr,
    );
    let mut conns = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                if !incoming.remote_address_validated() && admission.crowded() {
                    // Stateless, one packet: the client comes back with a
                    // token that proves it receives at its address, so a
                    // forged source never gets a place.
                    inc(&relay.metrics.address_validations);
                    if let Err(e) = incoming.retry() {
                        e.into_incoming().refuse();
                    }
                    continue;
                }
                let Some((slot, place)) = admission.admit(incoming.remote_address().ip()) else {
                    inc(&relay.metrics.connections_refused);
                    // Refused before the TLS handshake: costs us one packet.
                    tracing::warn!(addr = %incoming.remote_address(), "connection refused: limit reached");
                    incoming.refuse();
                    continue;
                };
                inc(&relay.metrics.connections_accepted);
                let relay = relay.clone();
                conns.spawn(async move {
                    handshake(relay, incoming, place).await;
                    drop(slot);
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }

    tracing::info!(sessions = relay.hub.sessions(), "shutting down");
    endpoint.set_server_config(None);
    relay.hub.broadcast(&ServerFrame::Shutdown {
        reason: "the relay is shutting down; reconnect shortly".into(),
    });
    relay.shut_down();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT * 3, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some connections did not close in time");
        conns.abort_all();
    }
    if let Some(link) = link {
        link.bye().await;
    }
    relay.store.close().await;
    fanout.abort();
    endpoint.close(close::SHUTDOWN.into(), b"relay shutting down");
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, endpoint.wait_idle()).await;
    tracing::info!("stopped");
}

/// Completes the handshake of an admitted connection and serves it. The
/// handshake has a deadline of its own, shorter than the login deadline
/// (which counts from now too), and gives up when the connection's
/// pre-login place goes to a newcomer.
async fn handshake<S: Store>(relay: Arc<Relay<S>>, incoming: quinn::Incoming, mut place: PreLogin) {
    let arrived = Instant::now();
    let deadline = arrived + relay.cfg.login_timeout;
    let handshake_deadline = (arrived + relay.cfg.handshake_timeout).min(deadline);
    let done = tokio::select! {
        done = timeout_at(handshake_deadline, incoming) => Some(done),
        _ = place.evicted() => None,
    };
    match done {
        Some(Ok(Ok(conn))) => conn::serve(relay, conn, deadline, place).await,
        Some(Ok(Err(e))) => tracing::debug!("handshake failed: {e}"),
        Some(Err(_)) => tracing::debug!("handshake timed out"),
        // Dropping the handshake closes it: no application close code can
        // be sent before the handshake completes.
        None => inc(&relay.metrics.connections_evicted),
    }
}

/// A task that ends when its owner does.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
