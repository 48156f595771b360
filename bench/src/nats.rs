//! The same workloads against `nats-server`, for comparison: one subject,
//! one async-nats connection per client, each subscribing to the subject
//! and publishing to it. Bodies, counting and the report are the relay's.
//!
//! Core NATS has no acknowledgement of a publish (a publish is done once
//! the client has written it to its socket) and the server keeps nothing.
//! fanout bounds what is in flight end to end instead: a publish counts as
//! in flight until it comes back on the publisher's own subscription, and a
//! client with `window` in flight flushes and waits. That is the nearest
//! thing to the relay's ack, which comes once the message is committed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use async_nats::{Client, ConnectOptions, Subject, Subscriber};
use futures_util::StreamExt;
use rand::distributions::{Alphanumeric, DistString};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::measure::Measurements;
use crate::stamp::{now_ns, Stamp};
use crate::workload::{drain, progress, watch_relay, Params, Workload};

/// How long a client may take to connect.
const CONNECT: Duration = Duration::from_secs(10);

/// What the message a client sends to itself before the clock starts
/// begins with: once it comes back, the server has its subscription.
const PROBE: &str = "ready ";

/// How many of its own messages a client has received back; its publisher
/// waits on it to bound what is in flight.
#[derive(Debug, Default)]
struct Echoes {
    count: AtomicU32,
    changed: Notify,
}

impl Echoes {
    fn add(&self) {
        self.count.fetch_add(1, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Returns once at least `n` have come back.
    async fn wait_for(&self, n: u32) {
        loop {
            let changed = self.changed.notified();
            if self.count.load(Ordering::Acquire) >= n {
                return;
            }
            changed.await;
        }
    }
}

/// The NATS server under test.
#[derive(Debug, Clone)]
pub struct NatsTarget {
    /// `nats://host:port` or `tls://host:port`.
    pub url: String,
    /// The certificate (or CA) the server's TLS certificate must chain
    /// to; with it, clients require TLS.
    pub ca: Option<PathBuf>,
    /// The server's process id, for CPU and memory.
    pub pid: Option<u32>,
}

impl NatsTarget {
    /// The report's `broker`: `nats` or `nats-tls`.
    pub fn broker(&self) -> &'static str {
        if self.ca.is_some() || self.url.starts_with("tls://") {
            "nats-tls"
        } else {
            "nats"
        }
    }

    fn options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::new()
            .name(concat!("confab-loadgen/", env!("CARGO_PKG_VERSION")))
            .connection_timeout(CONNECT)
            // Every delivery is counted; none may be dropped on the floor
            // of a full subscription buffer (the server may still cut a
            // slow consumer, which shows up as lost).
            .subscription_capacity(1 << 20);
        if let Some(ca) = &self.ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        options
    }
}

/// Runs `params` against the NATS server at `target`, recording into `m`;
/// like [`crate::workload::run`] for the relay.
pub async fn run(params: &Params, target: &NatsTarget, m: &Arc<Measurements>) -> Result<()> {
    match m.relay() {
        Some(server) => tokio::select! {
            result = drive(params, target, m) => result,
            () = watch_relay(server, m) => bail!("nats-server (pid {}) exited during the run", server.pid()),
        },
        None => drive(params, target, m).await,
    }
}

async fn drive(params: &Params, target: &NatsTarget, m: &Arc<Measurements>) -> Result<()> {
    let mut background = JoinSet::new();
    // A fresh subject, so a server shared with others is no bother.
    let subject: Subject = format!(
        "confab.bench.{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 8)
    )
    .into();
    let (clients, echoes) =
        connect_all(params.clients, target, &subject, m, &mut background).await?;
    m.start();
    tracing::info!(
        "{} clients on {subject}; {} {} messages each of {} bytes",
        params.clients,
        params.workload.name(),
        params.messages(),
        params.bytes,
    );
    background.spawn(progress(m.clone()));
    let mut senders = JoinSet::new();
    let start = Instant::now();
    for (sender, (client, echoes)) in clients.iter().zip(&echoes).enumerate() {
        let (client, subject, echoes) = (client.clone(), subject.clone(), echoes.clone());
        let sender = sender as u32;
        let bytes = params.bytes;
        match params.workload {
            Workload::Fanout { messages, window } => senders.spawn(publish_fast(
                client, subject, echoes, sender, messages, window, bytes,
            )),
            Workload::Rate { rate, .. } => senders.spawn(publish_steadily(
                client,
                subject,
                sender,
                params.clients,
                rate,
                params.messages(),
                bytes,
                start,
            )),
            // main offers nats only for fanout and rate.
            Workload::Ack { .. } | Workload::Slow { .. } => {
                bail!(
                    "{} does not run against nats-server",
                    params.workload.name()
                )
            }
        };
    }
    while let Some(result) = senders.join_next().await {
        result.context("a publisher failed")??;
    }
    tracing::info!(
        "all publishes flushed after {:.2} s; waiting for deliveries",
        start.elapsed().as_secs_f64()
    );
    drain(m).await;
    m.finish();
    Ok(())
}

/// Connects and subscribes every client, starts its receiver, and returns
/// once the server has every subscription (each client got its own probe).
async fn connect_all(
    clients: u32,
    target: &NatsTarget,
    subject: &Subject,
    m: &Arc<Measurements>,
    background: &mut JoinSet<()>,
) -> Result<(Vec<Client>, Vec<Arc<Echoes>>)> {
    tracing::info!("connecting {clients} clients to {}", target.url);
    let mut connecting = JoinSet::new();
    for i in 0..clients as usize {
        let (options, url, subject) = (target.options(), target.url.clone(), subject.clone());
        connecting.spawn(async move {
            let client = options
                .connect(url.as_str())
                .await
                .with_context(|| format!("client {i} cannot connect to {url}"))?;
            let sub = client
                .subscribe(subject)
                .await
                .with_context(|| format!("client {i} cannot subscribe"))?;
            anyhow::Ok((i, client, sub))
        });
    }
    let (ready, mut readied) = mpsc::unbounded_channel();
    let mut all: Vec<Option<Client>> = vec![None; clients as usize];
    let echoes: Vec<Arc<Echoes>> = (0..clients).map(|_| Arc::default()).collect();
    while let Some(joined) = connecting.join_next().await {
        let (i, client, sub) = joined.context("a connecting task failed")??;
        background.spawn(receive(i, sub, m.clone(), echoes[i].clone(), ready.clone()));
        all[i] = Some(client);
    }
    drop(ready);
    let all: Vec<Client> = all.into_iter().flatten().collect();
    for (i, client) in all.iter().enumerate() {
        client
            .publish(subject.clone(), format!("{PROBE}{i}").into())
            .await
            .with_context(|| format!("client {i} cannot publish"))?;
        client.flush().await.context("flush")?;
    }
    for _ in 0..clients {
        if readied.recv().await.is_none() {
            bail!("every subscription ended before the clock started");
        }
    }
    Ok((all, echoes))
}

/// Receiver `i`: counts every stamped message and its own echoes; says
/// when its own probe came back.
async fn receive(
    i: usize,
    mut sub: Subscriber,
    m: Arc<Measurements>,
    echoes: Arc<Echoes>,
    ready: mpsc::UnboundedSender<()>,
) {
    let own_probe = format!("{PROBE}{i}");
    while let Some(msg) = sub.next().await {
        let Ok(body) = std::str::from_utf8(&msg.payload) else {
            continue;
        };
        match Stamp::decode(body) {
            Some(stamp) => {
                m.record(i, stamp);
                if stamp.sender as usize == i {
                    echoes.add();
                }
            }
            None if body == own_probe => {
                let _ = ready.send(());
            }
            None => {}
        }
    }
    tracing::warn!("client {i}: subscription ended");
}

/// fanout: `messages` publishes as fast as they come back, with at most
/// `window` not back yet.
async fn publish_fast(
    client: Client,
    subject: Subject,
    echoes: Arc<Echoes>,
    sender: u32,
    messages: u32,
    window: usize,
    bytes: usize,
) -> Result<()> {
    let window = u32::try_from(window).unwrap_or(u32::MAX);
    for index in 0..messages {
        if index >= window && echoes.count.load(Ordering::Acquire) < index - window + 1 {
            client.flush().await?;
            echoes.wait_for(index - window + 1).await;
        }
        let body = Stamp {
            sender,
            index,
            sent_ns: now_ns(),
        }
        .encode(bytes);
        client.publish(subject.clone(), body.into()).await?;
    }
    client.flush().await?;
    Ok(())
}

/// rate: one publish every 1/`rate` s until `messages` are sent, spread
/// like the relay's senders; then a flush.
#[allow(clippy::too_many_arguments)]
async fn publish_steadily(
    client: Client,
    subject: Subject,
    sender: u32,
    clients: u32,
    rate: u32,
    messages: u32,
    bytes: usize,
    start: Instant,
) -> Result<()> {
    let period = Duration::from_secs(1) / rate;
    let offset = period.mul_f64(f64::from(sender) / f64::from(clients));
    let mut ticks = tokio::time::interval_at(start + offset, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    for index in 0..messages {
        ticks.tick().await;
        let body = Stamp {
            sender,
            index,
            sent_ns: now_ns(),
        }
        .encode(bytes);
        client.publish(subject.clone(), body.into()).await?;
    }
    client.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_named_in_the_report() {
        let plain = NatsTarget {
            url: "nats://127.0.0.1:4222".into(),
            ca: None,
            pid: None,
        };
        assert_eq!(plain.broker(), "nats");
        let tls = NatsTarget {
            ca: Some("cert.pem".into()),
            ..plain.clone()
        };
        assert_eq!(tls.broker(), "nats-tls");
    }
}
