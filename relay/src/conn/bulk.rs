//! One bulk reply on a unidirectional stream of its own, and how that
//! stream ended ([`Delivery`]); what the client is then owed is
//! `session::bulk_undelivered`.

use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, SendStream, VarInt, WriteError};

use crate::session::Delivery;

/// The RESET_STREAM code of a bulk stream the relay gave up on
/// (PROTOCOL §2).
pub const ABANDONED: VarInt = VarInt::from_u32(0);

/// Sends `bytes` on a new unidirectional stream, finishes it, and waits
/// until the client has acknowledged all of it, has stopped it, or the
/// connection fails. Past `limit` the stream is reset, so the client
/// discards what it got of it, and the reply counts as timed out.
pub async fn deliver(conn: &Connection, bytes: Bytes, limit: Duration) -> Delivery {
    let mut opened = None;
    match tokio::time::timeout(limit, send(conn, bytes, &mut opened)).await {
        Ok(delivery) => delivery,
        Err(_) => {
            if let Some(stream) = opened.as_mut() {
                let _ = stream.reset(ABANDONED);
            }
            Delivery::TimedOut
        }
    }
}

async fn send(conn: &Connection, bytes: Bytes, opened: &mut Option<SendStream>) -> Delivery {
    let Ok(stream) = conn.open_uni().await else {
        return Delivery::Lost;
    };
    let stream = opened.insert(stream);
    // Handed over, not copied: QUIC's buffer is then the only copy, and
    // it shrinks as the client acknowledges.
    match stream.write_all_chunks(&mut [bytes]).await {
        Ok(()) => {}
        Err(WriteError::Stopped(_)) => return Delivery::Stopped,
        Err(_) => return Delivery::Lost,
    }
    // A stop that has arrived already is reported by `stopped` below.
    if stream.finish().is_err() {
        return Delivery::Lost;
    }
    // `write_all` returns once QUIC holds the bytes, not once the client
    // has them: a page that fits the client's window is written at once,
    // and a STOP_SENDING that arrives after that would otherwise leave the
    // request without an answer. Only the acknowledgement of every byte
    // and of the end of the stream makes the reply the answer.
    match stream.stopped().await {
        Ok(None) => Delivery::Delivered,
        Ok(Some(_)) => Delivery::Stopped,
        Err(_) => Delivery::Lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::QuicPair;

    const PATIENCE: Duration = Duration::from_secs(10);

    /// Larger than a packet many times over, smaller than the windows.
    fn page() -> Bytes {
        vec![0x5a; 400 * 1024].into()
    }

    #[tokio::test]
    async fn a_stream_read_to_its_end_is_delivered() {
        let pair = QuicPair::new(quinn::TransportConfig::default()).await;
        let client = pair.client.clone();
        let reader = tokio::spawn(async move {
            let mut stream = client.accept_uni().await.expect("stream");
            stream.read_to_end(1 << 20).await.expect("read").len()
        });
        let delivery = deliver(&pair.server, page(), PATIENCE).await;
        assert_eq!(delivery, Delivery::Delivered);
        assert_eq!(reader.await.unwrap(), page().len());
    }

    #[tokio::test]
    async fn a_stream_stopped_while_in_flight_is_stopped() {
        // The client stops each stream as soon as it appears, with most of
        // the page still on its way: the relay has long finished writing.
        let pair = QuicPair::new(quinn::TransportConfig::default()).await;
        let client = pair.client.clone();
        let stopper = tokio::spawn(async move {
            for _ in 0..3 {
                let mut stream = client.accept_uni().await.expect("stream");
                stream.stop(VarInt::from_u32(9)).expect("stop");
            }
        });
        for _ in 0..3 {
            let delivery = deliver(&pair.server, page(), PATIENCE).await;
            assert_eq!(delivery, Delivery::Stopped);
        }
        stopper.await.unwrap();
    }

    #[tokio::test]
    async fn a_stream_the_client_does_not_read_times_out_and_is_reset() {
        let mut transport = quinn::TransportConfig::default();
        transport.stream_receive_window(VarInt::from_u32(16 * 1024));
        let pair = QuicPair::new(transport).await;
        let started = std::time::Instant::now();
        let delivery = deliver(&pair.server, page(), Duration::from_millis(300)).await;
        assert_eq!(delivery, Delivery::TimedOut);
        assert!(started.elapsed() < PATIENCE);
        let mut stream = pair.client.accept_uni().await.expect("stream");
        let read = tokio::time::timeout(PATIENCE, stream.read_to_end(1 << 20)).await;
        assert!(
            matches!(
                read,
                Ok(Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code)))) if code == ABANDONED
            ),
            "{read:?}"
        );
    }

    #[tokio::test]
    async fn a_stream_the_client_never_accepts_times_out() {
        let mut transport = quinn::TransportConfig::default();
        transport.max_concurrent_uni_streams(0u32.into());
        let pair = QuicPair::new(transport).await;
        let delivery = deliver(
            &pair.server,
            Bytes::from_static(b"small"),
            Duration::from_millis(300),
        )
        .await;
        assert_eq!(delivery, Delivery::TimedOut);
    }

    #[tokio::test]
    async fn a_stream_on_a_closed_connection_is_lost() {
        let pair = QuicPair::new(quinn::TransportConfig::default()).await;
        pair.client.close(0u32.into(), b"gone");
        let _ = tokio::time::timeout(PATIENCE, pair.server.closed()).await;
        let delivery = deliver(&pair.server, page(), PATIENCE).await;
        assert_eq!(delivery, Delivery::Lost);
    }
}
