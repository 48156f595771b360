//! A session that stops reading falls behind without slowing anyone down,
//! is told it lagged, and catches up from history with nothing lost.

use std::time::Duration;

use common::codec::{encode, read_frame};
use common::frame::{ClientFrame, Page, ServerFrame, PROTOCOL_VERSION};
use common::limits::{MAX_BULK_FRAME, MAX_CONTROL_FRAME, MAX_PAGE};
use confab_tests::{Relay, GOOD_ALPN, PASSWORD, PATIENCE};
use tokio::time::timeout;

const MESSAGES: usize = 400;

#[tokio::test]
async fn a_reader_that_stops_reading_lags_then_catches_up_from_history() {
    let relay = Relay::start_with(&["--queue-depth", "16", "--rate-limit", "100000"], &[]);
    relay.register("slow").await.client.close().await;
    let mut fast = relay.register("fast").await;
    fast.joined("lobby").await;
    let writer = relay.register("writer").await;

    // The slow reader logs in by hand and then reads nothing.
    let conn = relay.raw_connection(GOOD_ALPN).await.expect("connect");
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let hello = ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        client: "test".into(),
    };
    let login = ClientFrame::Login {
        req: 1,
        user: "slow".into(),
        password: PASSWORD.into(),
    };
    send.write_all(&encode(&hello)).await.unwrap();
    send.write_all(&encode(&login)).await.unwrap();
    loop {
        match read(&mut recv).await {
            ServerFrame::LoggedIn { .. } => break,
            ServerFrame::Welcome { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    // Big bodies fill the slow reader's QUIC window and then its queue.
    let body = "x".repeat(4000);
    let sends: Vec<_> = (0..MESSAGES)
        .map(|i| writer.client.send("lobby", &format!("{i:04}{body}")))
        .collect();
    for s in sends {
        // Generous: the page traffic of catch-ups is heavy for a debug build
        // on a shared machine; what matters is that acks keep coming.
        timeout(PATIENCE * 2, s)
            .await
            .expect("acks keep coming while one reader stalls")
            .unwrap();
    }

    // Everyone who reads got everything, once, in order (lagging or not).
    let mut got = Vec::new();
    while got.len() < MESSAGES {
        got.push(fast.message_in("lobby").await.body[..4].to_owned());
    }
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("{i:04}")).collect();
    assert_eq!(got, expected);

    // The slow reader now reads: some live messages, then the lag notice.
    let mut seen = Vec::new();
    let from = loop {
        match read(&mut recv).await {
            ServerFrame::Message(m) => seen.push(m.seq),
            ServerFrame::Lagged { room, from } => {
                assert_eq!(room, "lobby");
                break from;
            }
            ServerFrame::Presence(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(seen.len() < MESSAGES, "the slow reader must have lagged");
    assert!(
        seen.iter().all(|&s| s < from),
        "Lagged names the first message not sent"
    );

    // Catch up as PROTOCOL.md §13 says: Join, then page After(last seen).
    let mut last = seen.last().copied().unwrap_or(0);
    send.write_all(&encode(&ClientFrame::Join {
        req: 2,
        room: "lobby".into(),
    }))
    .await
    .unwrap();
    let mut req = 3;
    loop {
        let page = ClientFrame::History {
            req,
            room: "lobby".into(),
            page: Page::After(last),
            limit: MAX_PAGE,
        };
        send.write_all(&encode(&page)).await.unwrap();
        let mut bulk = timeout(PATIENCE, conn.accept_uni())
            .await
            .expect("history page")
            .unwrap();
        let frame = timeout(
            PATIENCE,
            read_frame::<ServerFrame, _>(&mut bulk, MAX_BULK_FRAME),
        )
        .await
        .unwrap();
        let Some(ServerFrame::HistoryPage { messages, more, .. }) = frame.unwrap() else {
            panic!("not a page")
        };
        for m in messages {
            assert!(m.seq > last, "pages continue where the reader stopped");
            last = m.seq;
            seen.push(m.seq);
        }
        if !more {
            break;
        }
        req += 1;
    }
    assert_eq!(seen.len(), MESSAGES, "every message once");
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    // Live delivery is back after the Join. Messages queued before the lag
    // may still trail in (the notice jumps the queue); they are old news.
    writer.client.send("lobby", "live again").await.unwrap();
    loop {
        match read(&mut recv).await {
            ServerFrame::Message(m) if m.body == "live again" => break,
            ServerFrame::Message(m) => {
                assert!(m.seq <= last, "only old messages trail the lag notice")
            }
            _ => continue,
        }
    }
}

async fn read(recv: &mut quinn::RecvStream) -> ServerFrame {
    timeout(
        Duration::from_secs(15),
        read_frame::<ServerFrame, _>(recv, MAX_CONTROL_FRAME),
    )
    .await
    .expect("a frame in time")
    .expect("a valid frame")
    .expect("stream open")
}
