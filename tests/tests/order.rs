//! A sender's messages are stored in the order sent, also when the rate
//! limit refuses some of them while new ones keep coming, other users are
//! busy, and the sender writes to several rooms.

use std::time::Duration;

use common::frame::Page;
use confab_tests::Relay;

/// Lines per room, sent as a piped `client-cli` sends them: one at a time,
/// faster than the rate limit, without waiting for acks.
const LINES: usize = 120;

#[tokio::test]
async fn lines_sent_faster_than_the_rate_limit_are_stored_in_the_order_sent() {
    let relay = Relay::start_with(&["--rate-limit", "20"], &[]);
    let alice = relay.register("alice").await;
    let bob = relay.register("bob").await;
    for room in ["ord-a", "ord-b"] {
        alice.client.create_room(room, false).await.unwrap();
    }

    // bob keeps the relay busy in the lobby the whole time.
    let noise = tokio::spawn(async move {
        for i in 0..400 {
            // Queued when called; nobody needs its ack.
            drop(bob.client.send("lobby", &format!("noise {i}")));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let mut sends = Vec::new();
    for i in 0..LINES {
        for room in ["ord-a", "ord-b"] {
            sends.push(alice.client.send(room, &format!("{i:03}")));
        }
        // Four lines every 10 ms: ten times the limit, so refusals and new
        // lines interleave for seconds.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all = tokio::time::timeout(Duration::from_secs(60), async {
        for s in sends {
            s.await.expect("every line is stored in the end");
        }
    })
    .await;
    all.expect("240 lines at 20/s within 60 s");
    noise.abort();

    let expected: Vec<String> = (0..LINES).map(|i| format!("{i:03}")).collect();
    for room in ["ord-a", "ord-b"] {
        let mut bodies = Vec::new();
        let mut page = Page::After(0);
        loop {
            let (messages, more) = alice.client.history(room, page, 200).await.unwrap();
            let Some(last) = messages.last().map(|m| m.seq) else {
                break;
            };
            bodies.extend(messages.into_iter().map(|m| m.body));
            if !more {
                break;
            }
            page = Page::After(last);
        }
        assert_eq!(bodies, expected, "{room}: stored in the order sent");
    }
}
