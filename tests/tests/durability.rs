//! Nothing acknowledged is ever lost, nothing is delivered twice: across
//! relay restarts, crashes between commit and ack, and orderly shutdowns.

use common::client::Event;
use common::frame::Page;
use confab_tests::{messages, Relay, PATIENCE};
use std::time::Duration;

#[tokio::test]
async fn history_survives_a_relay_restart() {
    let mut relay = Relay::start();
    {
        let alice = relay.register("alice").await;
        for i in 1..=10 {
            alice
                .client
                .send("lobby", &format!("line {i}"))
                .await
                .unwrap();
        }
        alice.client.create_room("dev", false).await.unwrap();
        alice.client.send("dev", "in dev").await.unwrap();
    }
    relay.restart();
    let alice = relay.login("alice").await;
    let (lobby, more) = alice
        .client
        .history("lobby", Page::Latest, 50)
        .await
        .unwrap();
    assert!(!more);
    let bodies: Vec<_> = lobby.iter().map(|m| m.body.as_str()).collect();
    let expected: Vec<String> = (1..=10).map(|i| format!("line {i}")).collect();
    assert_eq!(bodies, expected);
    let (dev, _) = alice.client.history("dev", Page::Latest, 50).await.unwrap();
    assert_eq!(dev[0].body, "in dev");
    // Sequences continue after the restart instead of starting over.
    let ack = alice.client.send("lobby", "after restart").await.unwrap();
    assert!(ack.seq > lobby.last().unwrap().seq);
}

/// The hardest case: the relay commits a message and dies before the ack
/// leaves. The sender must resend it (same id) after reconnecting, the relay
/// must recognise it, and every reader must see it exactly once.
#[tokio::test]
async fn clients_resume_after_a_crash_with_no_loss_and_no_duplicate() {
    let mut relay = Relay::start_with(&[], &[("CONFAB_FAULT_ABORT_AFTER_COMMIT", "boom")]);
    let mut alice = relay.register("alice").await;
    let mut bob = relay.register("bob").await;
    alice.joined("lobby").await;
    bob.joined("lobby").await;

    alice.client.send("lobby", "one").await.unwrap();
    assert_eq!(bob.message_in("lobby").await.body, "one");

    let unacked = tokio::spawn(alice.client.send("lobby", "boom"));
    assert!(
        relay.wait_exit(PATIENCE).await,
        "the relay should abort right after committing 'boom'"
    );
    // Sent while the relay is down: queued, delivered once it is back.
    let queued = tokio::spawn(alice.client.send("lobby", "while down"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !unacked.is_finished(),
        "no ack can have been seen for 'boom'"
    );

    relay.restart_with_env(&[]);
    let boom = tokio::time::timeout(PATIENCE, unacked)
        .await
        .expect("boom acked after reconnect")
        .unwrap()
        .unwrap();
    let down = tokio::time::timeout(PATIENCE, queued)
        .await
        .expect("queued line acked")
        .unwrap()
        .unwrap();
    assert!(down.seq > boom.seq);
    alice.client.send("lobby", "after").await.unwrap();

    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("after") {
        seen.push(bob.message_in("lobby").await.body);
    }
    assert_eq!(
        seen,
        ["boom", "while down", "after"],
        "bob: each once, in order"
    );
    let extra = messages(&bob.drain(Duration::from_millis(300)).await);
    assert!(extra.is_empty(), "nothing twice: {extra:?}");

    let (history, _) = bob.client.history("lobby", Page::Latest, 50).await.unwrap();
    let bodies: Vec<_> = history.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["one", "boom", "while down", "after"]);
    assert_eq!(
        history[1].seq, boom.seq,
        "the resend was acknowledged with the original sequence"
    );
}

#[tokio::test]
async fn a_reconnecting_reader_catches_up_on_everything_it_missed() {
    let mut relay = Relay::start_with(&["--rate-limit", "1000"], &[]);
    let mut reader = relay.register("reader").await;
    reader.joined("lobby").await;
    {
        let writer = relay.register("writer").await;
        writer.client.send("lobby", "before").await.unwrap();
    }
    assert_eq!(reader.message_in("lobby").await.body, "before");

    relay.restart();
    // Written by another client while the reader is still reconnecting.
    let writer = relay.login("writer").await;
    let sends: Vec<_> = (0..300)
        .map(|i| writer.client.send("lobby", &format!("gap {i}")))
        .collect();
    for s in sends {
        s.await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 300 {
        got.push(reader.message_in("lobby").await.body);
    }
    let expected: Vec<String> = (0..300).map(|i| format!("gap {i}")).collect();
    assert_eq!(got, expected, "more than one page of catch-up, in order");
    assert!(messages(&reader.drain(Duration::from_millis(300)).await).is_empty());
}

#[tokio::test]
async fn sigterm_tells_clients_and_exits_cleanly() {
    let mut relay = Relay::start();
    let mut alice = relay.register("alice").await;
    alice.joined("lobby").await;
    alice.client.send("lobby", "last words").await.unwrap();
    let status = relay.terminate().await;
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        relay.log()
    );
    let reason = alice
        .wait_for("reconnecting", |e| match e {
            Event::Reconnecting { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(
        reason.contains("shutting down"),
        "clients are told why: {reason}"
    );
    assert!(relay.log().contains("stopped"));
}
