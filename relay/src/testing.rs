//! A relay for unit tests: the real state on a real SQLite store in a
//! temporary folder, with no socket anywhere.

use std::sync::Arc;

use bytes::Bytes;
use common::codec;
use common::frame::ServerFrame;
use tempfile::TempDir;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::state::Relay;
use crate::store::sqlite::SqliteStore;
use crate::store::Store;

/// A relay on a fresh store; the folder lives as long as the value.
pub struct TestRelay {
    pub relay: Arc<Relay<SqliteStore>>,
    _dir: TempDir,
}

impl TestRelay {
    /// A relay with settings `cfg` and no accounts.
    pub fn new(cfg: Config) -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let store = SqliteStore::open(dir.path(), None).expect("store opens");
        TestRelay {
            relay: Arc::new(Relay::new(store, cfg)),
            _dir: dir,
        }
    }

    /// Creates accounts whose password hash is `phc`.
    pub async fn users(&self, names: &[&str], phc: &str) {
        for name in names {
            self.relay
                .store
                .create_user(name, phc)
                .await
                .expect("account created");
        }
    }
}

/// The frames queued for a session so far, decoded.
pub fn drain(rx: &mut mpsc::Receiver<Bytes>) -> Vec<ServerFrame> {
    let mut frames = Vec::new();
    while let Ok(bytes) = rx.try_recv() {
        frames.push(codec::decode(&bytes[4..]).expect("the relay encodes what it queues"));
    }
    frames
}

/// A QUIC connection over loopback between a relay-configured server
/// endpoint (its certificate generated for the test) and a client with the
/// transport a test picks: for the drivers that move bytes on streams.
pub struct QuicPair {
    /// The relay's side of the connection.
    pub server: quinn::Connection,
    /// The client's side.
    pub client: quinn::Connection,
    _endpoints: (quinn::Endpoint, quinn::Endpoint),
    _dir: TempDir,
}

impl QuicPair {
    /// Connects a client with `transport` to a fresh server endpoint.
    pub async fn new(transport: quinn::TransportConfig) -> Self {
        use rustls::pki_types::{pem::PemObject, CertificateDer};

        let dir = tempfile::tempdir().expect("temporary folder");
        let made = crate::cert::generate(&crate::cert::GenCert {
            out: dir.path().to_owned(),
            sans: vec![],
            days: 1,
            force: false,
        })
        .expect("certificate");
        let (config, _) =
            crate::cert::load_server_config(&made.cert_path, &made.key_path).expect("config");
        let server =
            quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).expect("server");
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&made.cert_path).expect("cert");
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.expect("pem")).expect("root");
        }
        let config =
            common::wire::raw_config(roots, common::frame::ALPN, transport).expect("client config");
        let addr = server.local_addr().expect("address");
        let client = common::wire::endpoint_for(addr).expect("client endpoint");
        let (dialled, accepted) = tokio::join!(
            common::wire::dial(&client, config, addr, "localhost"),
            async { server.accept().await.expect("incoming").await }
        );
        QuicPair {
            server: accepted.expect("server side"),
            client: dialled.expect("client side"),
            _endpoints: (server, client),
            _dir: dir,
        }
    }
}
