//! Reading ranges of a stream through short-lived consumers.
//!
//! JetStream reads forward only and counts cheaply: a consumer created at
//! a start sequence with a subject filter knows how many matching messages
//! lie at or after it. Pages backwards are found by counting from
//! candidate starts (widening, then narrowing), and read forwards from the
//! one chosen. This works on every server from 2.9 on; nothing needs the
//! batched direct gets of newer servers.

use async_nats::jetstream::consumer::{pull, AckPolicy, Consumer, DeliverPolicy};
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::Message as JsMessage;
use futures_util::StreamExt;

use super::record::db;
use crate::store::StoreError;

/// A consumer standing at some position, with how many matching messages
/// lie at or after it.
pub struct Cursor {
    stream: Stream,
    consumer: Consumer<pull::Config>,
    pub pending: u64,
}

impl Cursor {
    pub async fn open(
        stream: &Stream,
        filter: &str,
        deliver_policy: DeliverPolicy,
    ) -> Result<Cursor, StoreError> {
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject: filter.to_owned(),
                deliver_policy,
                ack_policy: AckPolicy::None,
                // Deleted right after use; this only cleans up after a
                // relay that died holding one.
                inactive_threshold: std::time::Duration::from_secs(30),
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(db)?;
        let pending = consumer.cached_info().num_pending;
        Ok(Cursor {
            stream: stream.clone(),
            consumer,
            pending,
        })
    }

    /// Opens at a sequence (1 for the start).
    pub async fn at(stream: &Stream, filter: &str, seq: u64) -> Result<Cursor, StoreError> {
        let policy = if seq <= 1 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: seq,
            }
        };
        Self::open(stream, filter, policy).await
    }

    /// Reads up to `n` messages, or fewer if the stream has no more now.
    pub async fn read(&self, n: u64) -> Result<Vec<JsMessage>, StoreError> {
        let mut out = Vec::with_capacity(n.min(4096) as usize);
        while (out.len() as u64) < n {
            let want = (n - out.len() as u64).min(1024) as usize;
            let mut batch = self
                .consumer
                .fetch()
                .max_messages(want)
                .messages()
                .await
                .map_err(db)?;
            let before = out.len();
            while let Some(m) = batch.next().await {
                out.push(m.map_err(db)?);
            }
            if out.len() == before {
                break;
            }
        }
        Ok(out)
    }

    /// Removes the consumer without waiting for the answer.
    pub fn close(self) {
        let name = self.consumer.cached_info().name.clone();
        let stream = self.stream;
        tokio::spawn(async move {
            let _ = stream.delete_consumer(&name).await;
        });
    }
}

/// Number of messages on `filter` at or after `seq`.
pub async fn count_from(stream: &Stream, filter: &str, seq: u64) -> Result<u64, StoreError> {
    let c = Cursor::at(stream, filter, seq).await?;
    let n = c.pending;
    c.close();
    Ok(n)
}

/// The newest `limit` messages on `filter` with sequence below `before`
/// (`above` of them lie at or after it), oldest first, and whether older
/// ones exist.
pub async fn before(
    stream: &Stream,
    filter: &str,
    before: u64,
    above: u64,
    limit: u64,
) -> Result<(Vec<JsMessage>, bool), StoreError> {
    let total = count_from(stream, filter, 1).await?;
    let below = total.saturating_sub(above);
    let want = limit.min(below);
    if want == 0 {
        return Ok((Vec::new(), false));
    }
    // Widen the window until it holds `want`, then narrow it while it
    // holds far more, so the read stays a small multiple of the page.
    let cursor = if below <= 2 * want {
        Cursor::at(stream, filter, 1).await?
    } else {
        let mut narrow = 0u64; // a span known to hold fewer than `want`
        let mut span = 2 * want;
        let mut found = loop {
            let c = Cursor::at(stream, filter, before.saturating_sub(span).max(1)).await?;
            if c.pending.saturating_sub(above) >= want || span >= before {
                break c;
            }
            c.close();
            narrow = span;
            span = span.saturating_mul(4);
        };
        while found.pending.saturating_sub(above) > 4 * want && span - narrow > 2 * want {
            let mid = narrow + (span - narrow) / 2;
            let c = Cursor::at(stream, filter, before.saturating_sub(mid).max(1)).await?;
            if c.pending.saturating_sub(above) >= want {
                found.close();
                found = c;
                span = mid;
            } else {
                c.close();
                narrow = mid;
            }
        }
        found
    };
    let n = cursor.pending.saturating_sub(above);
    let read = cursor.read(n).await;
    cursor.close();
    let mut got: Vec<JsMessage> = read?
        .into_iter()
        .filter(|m| m.info().is_ok_and(|i| i.stream_sequence < before))
        .collect();
    let skip = got.len().saturating_sub(want as usize);
    got.drain(..skip);
    Ok((got, below > want))
}

/// The oldest `limit` messages on `filter` with sequence above `after`, and
/// whether newer ones exist.
pub async fn after(
    stream: &Stream,
    filter: &str,
    after: u64,
    limit: u64,
) -> Result<(Vec<JsMessage>, bool), StoreError> {
    let cursor = Cursor::at(stream, filter, after.saturating_add(1)).await?;
    let n = cursor.pending.min(limit);
    let more = cursor.pending > limit;
    let read = cursor.read(n).await;
    cursor.close();
    Ok((read?, more))
}
