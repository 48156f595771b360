//! Regression tests for resource and framing defects: each drives the real
//! relay the way an attacker or an unlucky network would.

use std::sync::Arc;
use std::time::Duration;

use common::codec::{encode, read_frame};
use common::frame::{ClientFrame, Page, ServerFrame, PROTOCOL_VERSION};
use common::limits::MAX_CONTROL_FRAME;
use confab_tests::{Relay, GOOD_ALPN, PASSWORD};
use rustls::pki_types::pem::PemObject;

/// A raw QUIC connection with a chosen transport configuration.
async fn connect_with(
    relay: &Relay,
    transport: quinn::TransportConfig,
) -> (quinn::Endpoint, quinn::Connection) {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(relay.cert()).unwrap();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![GOOD_ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(Arc::new(transport));
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = endpoint
        .connect_with(cfg, relay.addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    (endpoint, conn)
}

async fn login(send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, user: &str) {
    send.write_all(&encode(&ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        client: "t".into(),
    }))
    .await
    .unwrap();
    send.write_all(&encode(&ClientFrame::Login {
        req: 1,
        user: user.into(),
        password: PASSWORD.into(),
    }))
    .await
    .unwrap();
    loop {
        let frame = tokio::time::timeout(
            Duration::from_secs(10),
            read_frame::<ServerFrame, _>(recv, MAX_CONTROL_FRAME),
        );
        if let ServerFrame::LoggedIn { .. } = frame.await.unwrap().unwrap().unwrap() {
            return;
        }
    }
}

/// Big frames split over many packets while acks complete: the relay must
/// never lose its place in the stream.
#[tokio::test]
async fn pipelined_large_sends_keep_the_stream_in_sync() {
    let relay = Relay::start_with(&["--rate-limit", "100000"], &[]);
    relay.register("w").await.client.close().await;
    let conn = relay.raw_connection(GOOD_ALPN).await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    login(&mut send, &mut recv, "w").await;
    let n = 600u32;
    let writer = tokio::spawn(async move {
        for i in 0..n {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_le_bytes());
            let frame = ClientFrame::Send {
                req: i + 2,
                room: "lobby".into(),
                id,
                body: "x".repeat(4000),
            };
            send.write_all(&encode(&frame)).await.unwrap();
            // Pauses let acks complete while the next frame is in flight.
            if i % 7 == 0 {
                tokio::time::sleep(Duration::from_micros(300)).await;
            }
        }
        send
    });
    let mut acks = 0;
    let outcome = tokio::time::timeout(Duration::from_secs(60), async {
        while acks < n {
            match read_frame::<ServerFrame, _>(&mut recv, MAX_CONTROL_FRAME).await {
                Ok(Some(ServerFrame::Ack { .. })) => acks += 1,
                Ok(Some(ServerFrame::Error { code, message, .. })) => {
                    return Err(format!("{code:?}: {message}"))
                }
                Ok(Some(_)) => {}
                other => return Err(format!("{other:?}")),
            }
        }
        Ok(())
    })
    .await;
    let _send = writer.await.unwrap();
    assert_eq!(outcome.expect("in time"), Ok(()), "acks so far: {acks}");
    assert!(!relay.log().contains("bad frame"));
}
