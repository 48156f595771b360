//! Faults on purpose: the relay killed again and again while clients send
//! at full speed. Every message a sender saw acknowledged must be stored
//! exactly once, in one order that every reader sees.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use common::client::{Client, Event, RequestError};
use common::frame::{Message, Page};
use confab_tests::{Relay, Session};

/// A page of history, retried while the session is still reconnecting.
async fn page(client: &Client, room: &str, page: Page) -> (Vec<Message>, bool) {
    for _ in 0..100 {
        match client.history(room, page, 200).await {
            Err(RequestError::NotConnected) => tokio::time::sleep(Duration::from_millis(100)).await,
            other => return other.expect("history page"),
        }
    }
    panic!("still not reconnected after 10 s");
}

/// Every message of a room, oldest first, paged back from the newest.
async fn whole_history(client: &Client, room: &str) -> Vec<Message> {
    let (mut all, mut more) = page(client, room, Page::Latest).await;
    while more {
        let before = all[0].seq;
        let (mut page, m) = page(client, room, Page::Before(before)).await;
        more = m;
        page.append(&mut all);
        all = page;
    }
    all
}

/// Sends `count` numbered lines as fast as acks allow (a window in
/// flight), riding out relay deaths; returns the acknowledged sequence of
/// each line.
async fn send_all(session: Session, name: String, count: usize) -> (Session, Vec<(String, u64)>) {
    let mut in_flight = VecDeque::new();
    let mut acked = Vec::new();
    for i in 0..count {
        let body = format!("{name}-{i:04}");
        in_flight.push_back((
            body.clone(),
            tokio::spawn(session.client.send("lobby", &body)),
        ));
        if in_flight.len() >= 16 {
            let (body, ack) = in_flight.pop_front().unwrap();
            acked.push((
                body,
                ack.await
                    .unwrap()
                    .expect("every send is acknowledged in the end")
                    .seq,
            ));
        }
    }
    for (body, ack) in in_flight {
        acked.push((
            body,
            ack.await
                .unwrap()
                .expect("every send is acknowledged in the end")
                .seq,
        ));
    }
    (session, acked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_sigkill_under_load_loses_no_acknowledged_message() {
    const SENDERS: usize = 3;
    const EACH: usize = 250;
    let mut relay = Relay::start_with(&["--rate-limit", "100000"], &[]);
    let mut reader = relay.register("reader").await;
    reader.joined("lobby").await;
    let mut senders = Vec::new();
    for k in 0..SENDERS {
        let mut s = relay.register(&format!("s{k}")).await;
        s.joined("lobby").await;
        senders.push(tokio::spawn(send_all(s, format!("s{k}"), EACH)));
    }

    // Kill the relay three times while the senders are at it; each time it
    // comes back on the same port and data folder.
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(300 + 150 * round)).await;
        relay.kill();
        tokio::time::sleep(Duration::from_millis(200)).await;
        relay.restart();
    }

    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut per_sender = Vec::new();
    for s in senders {
        let (_session, list) = tokio::time::timeout(Duration::from_secs(120), s)
            .await
            .expect("senders finish")
            .unwrap();
        per_sender.push(list.clone());
        acked.extend(list);
    }
    assert_eq!(acked.len(), SENDERS * EACH);

    let history = whole_history(&reader.client, "lobby").await;
    let mut seen: HashMap<&str, u64> = HashMap::new();
    for m in &history {
        assert!(
            seen.insert(m.body.as_str(), m.seq).is_none(),
            "{} stored twice",
            m.body
        );
    }
    for (body, seq) in &acked {
        assert_eq!(
            seen.get(body.as_str()),
            Some(seq),
            "{body} was acknowledged as #{seq}"
        );
    }
    assert_eq!(
        history.len(),
        acked.len(),
        "nothing stored that nobody sent"
    );
    assert!(history.windows(2).all(|w| w[0].seq < w[1].seq));
    for list in &per_sender {
        assert!(
            list.windows(2).all(|w| w[0].1 < w[1].1),
            "each sender's lines keep their order"
        );
    }

    // The reader, reconnecting through every crash, saw the same thing.
    let mut live = Vec::new();
    while live.len() < history.len() {
        match tokio::time::timeout(Duration::from_secs(30), reader.events.recv()).await {
            Ok(Some(Event::Message(m))) => live.push(m.seq),
            Ok(Some(_)) => {}
            other => panic!(
                "reader stopped after {} of {} messages: {other:?}",
                live.len(),
                history.len()
            ),
        }
    }
    let stored: Vec<u64> = history.iter().map(|m| m.seq).collect();
    assert_eq!(live, stored, "the reader saw every message once, in order");
}
