//! A session that stops reading falls behind without slowing anyone down,
//! is told it lagged, and catches up from history with nothing lost.

use std::time::Duration;

use common::frame::{ClientFrame, Page, ServerFrame};
use common::limits::MAX_PAGE;
use common::wire::Wire;
use confab_tests::{Relay, PATIENCE};
use tokio::time::timeout;

const MESSAGES: usize = 400;

#[tokio::test]
async fn a_reader_that_stops_reading_lags_then_catches_up_from_history() {
    let relay = Relay::start_with(&["--queue-depth", "16", "--rate-limit", "100000"], &[]);
    relay.register("slow").await.client.close().await;
    let mut fast = relay.register("fast").await;
    fast.joined("lobby").await;
    let writer = relay.register("writer").await;

    // The slow reader logs in by hand and then reads nothing. `LoggedIn`
    // may come before its rooms are subscribed; the relay reads the next
    // frame only after (PROTOCOL §8.2), so once a `Ping` is answered every
    // message committed from then on reaches it live.
    let mut slow = relay.wire_logged_in("slow", false).await;
    slow.write_frame(&ClientFrame::Ping { req: 1 })
        .await
        .unwrap();
    loop {
        match read(&mut slow).await {
            ServerFrame::Pong { req: 1 } => break,
            ServerFrame::Presence(_) => {}
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
        match read(&mut slow).await {
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
    slow.write_frame(&ClientFrame::Join {
        req: 2,
        room: "lobby".into(),
    })
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
        slow.write_frame(&page).await.unwrap();
        let frame = timeout(PATIENCE, slow.next_bulk())
            .await
            .expect("history page");
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
        match read(&mut slow).await {
            ServerFrame::Message(m) if m.body == "live again" => break,
            ServerFrame::Message(m) => {
                assert!(m.seq <= last, "only old messages trail the lag notice")
            }
            _ => continue,
        }
    }
}

async fn read(wire: &mut Wire) -> ServerFrame {
    timeout(Duration::from_secs(15), wire.read_frame())
        .await
        .expect("a frame in time")
        .expect("a valid frame")
        .expect("stream open")
}
