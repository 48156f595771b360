//! The connection to NATS: where the servers are, the credentials and TLS
//! to reach them with, and a count of (re)connections for the tasks that
//! must start over when the server forgot them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use tokio::sync::watch;

/// How to reach NATS and how to lay out the store there.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Server URLs, comma-separated (`nats://host:4222,tls://other:4222`).
    pub urls: String,
    /// A `.creds` file (JWT and NKey seed).
    pub creds: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// CA certificate to verify the servers' TLS certificates with.
    pub ca: Option<PathBuf>,
    /// Client certificate and key for servers that ask for one.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Copies of the stream and the bucket (1 on a single server, 3 in a cluster).
    pub replicas: usize,
    /// How long a message id is remembered for deduplicating resends.
    pub dedup_window: Duration,
}

impl NatsOptions {
    /// The servers at `urls`, without credentials or TLS settings, one
    /// copy of everything and a day's deduplication window.
    pub fn new(urls: impl Into<String>) -> Self {
        NatsOptions {
            urls: urls.into(),
            creds: None,
            user: None,
            password: None,
            ca: None,
            tls_cert: None,
            tls_key: None,
            replicas: 1,
            dedup_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// Connects to NATS with the options' credentials and TLS. The receiver
/// counts (re)connections: consumers the server lost while the link was
/// down are re-created as soon as it is back.
pub async fn connect(
    opts: &NatsOptions,
) -> anyhow::Result<(async_nats::Client, watch::Receiver<u64>)> {
    let (connected, connections) = watch::channel(0u64);
    let mut options = async_nats::ConnectOptions::new()
        .name("confab-relay")
        .connection_timeout(Duration::from_secs(5))
        // Forever: a relay outlives NATS restarts and failovers.
        .max_reconnects(None)
        .event_callback(move |event| {
            match &event {
                async_nats::Event::Connected => {
                    tracing::info!("connected to NATS");
                    connected.send_modify(|n| *n += 1);
                }
                async_nats::Event::Disconnected => {
                    tracing::warn!("lost the connection to NATS; reconnecting")
                }
                async_nats::Event::ClientError(_) => tracing::debug!("nats: {event}"),
                _ => tracing::warn!("nats: {event}"),
            }
            async {}
        });
    if let Some(creds) = &opts.creds {
        options = options
            .credentials_file(creds)
            .await
            .with_context(|| format!("cannot read NATS credentials {}", creds.display()))?;
    }
    if let (Some(user), Some(password)) = (&opts.user, &opts.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(ca) = &opts.ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&opts.tls_cert, &opts.tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let addrs: Vec<async_nats::ServerAddr> = opts
        .urls
        .split(',')
        .map(|u| u.trim().parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("invalid NATS URL in {:?}", opts.urls))?;
    let client = options.connect(addrs).await.map_err(|e| {
        anyhow!(
            "cannot reach NATS at {}: {e}; is nats-server running there, and are the credentials right?",
            opts.urls
        )
    })?;
    Ok((client, connections))
}
