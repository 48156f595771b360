//! Regression tests for resource and framing defects: each drives the real
//! relay the way an attacker or an unlucky network would.

use std::time::Duration;

use common::codec::encode;
use common::frame::{ClientFrame, Page, ServerFrame, PROTOCOL_VERSION};
use common::wire::{self, Wire};
use confab_tests::{Relay, GOOD_ALPN, PASSWORD};

/// Logs `user` in by hand on `conn`, returning its control stream.
async fn login(conn: quinn::Connection, user: &str) -> Wire {
    let mut wire = Wire::open(conn).await.unwrap();
    let login = wire.login("t", user, PASSWORD, false);
    tokio::time::timeout(Duration::from_secs(10), login)
        .await
        .unwrap()
        .unwrap();
    wire
}

/// Big frames split over many packets while acks complete: the relay must
/// never lose its place in the stream.
#[tokio::test]
async fn pipelined_large_sends_keep_the_stream_in_sync() {
    let relay = Relay::start_with(&["--rate-limit", "100000"], &[]);
    relay.register("w").await.client.close().await;
    let conn = relay.raw_connection(GOOD_ALPN).await.unwrap();
    let Wire {
        mut send, mut recv, ..
    } = login(conn, "w").await;
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
            wire::write_frame(&mut send, &frame).await.unwrap();
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
            match wire::read_frame(&mut recv).await {
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

/// A client that stops reading before login still loses its connection at
/// the login deadline: writes are under the deadline too.
#[tokio::test]
async fn a_client_that_never_reads_is_still_cut_off_at_the_login_deadline() {
    let relay = Relay::start_with(&["--login-timeout", "2"], &[]);
    let mut transport = quinn::TransportConfig::default();
    // A 4-byte window: the relay's Welcome can never be delivered.
    transport
        .stream_receive_window(4u32.into())
        .keep_alive_interval(Some(Duration::from_secs(1)));
    let conn = relay
        .raw_connection_with(GOOD_ALPN, transport)
        .await
        .unwrap();
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&encode(&ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        client: "t".into(),
    }))
    .await
    .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(8), conn.closed()).await;
    assert!(
        closed.is_ok(),
        "still connected 8 s after a 2 s login deadline"
    );
}

/// Clients get one control stream: more streams are refused by flow
/// control, not buffered by the relay.
#[tokio::test]
async fn extra_streams_are_refused_not_buffered() {
    let relay = Relay::start();
    let before = relay.rss_kib();
    let conn = relay.raw_connection(GOOD_ALPN).await.unwrap();
    let (mut ctl, _ctl_recv) = conn.open_bi().await.unwrap();
    ctl.write_all(&encode(&ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        client: "t".into(),
    }))
    .await
    .unwrap();
    let uni = tokio::time::timeout(Duration::from_secs(1), conn.open_uni()).await;
    assert!(uni.is_err(), "a unidirectional stream must not be allowed");
    let bi = tokio::time::timeout(Duration::from_secs(1), conn.open_bi()).await;
    assert!(
        bi.is_err(),
        "a second bidirectional stream must not be allowed"
    );
    // What the one stream may carry is bounded by its window.
    let junk = vec![0u8; 2_000_000];
    let _ = tokio::time::timeout(Duration::from_secs(2), ctl.write_all(&junk)).await;
    let grown = relay.rss_kib().saturating_sub(before);
    assert!(
        grown < 20 * 1024,
        "relay grew by {grown} KiB for one connection"
    );
}

/// Stores 200 messages of 4000 bytes in the lobby: a full history page is
/// then ~800 KB.
async fn fill_lobby(writer: &confab_tests::Session) {
    let body = "z".repeat(4000);
    let sends: Vec<_> = (0..200)
        .map(|_| writer.client.send("lobby", &body))
        .collect();
    for s in sends {
        s.await.unwrap();
    }
}

/// A client asking for history faster than it reads cannot make the relay
/// hold page after page in memory.
#[tokio::test]
async fn a_history_flood_is_bounded() {
    let relay = Relay::start_with(&["--rate-limit", "100000"], &[]);
    let writer = relay.register("w").await;
    fill_lobby(&writer).await;
    let mut transport = quinn::TransportConfig::default();
    // Accepts no bulk streams: every page the relay makes is stuck.
    transport
        .max_concurrent_uni_streams(0u32.into())
        .keep_alive_interval(Some(Duration::from_secs(1)));
    let conn = relay
        .raw_connection_with(GOOD_ALPN, transport)
        .await
        .unwrap();
    let mut wire = login(conn, "w").await;
    let before = relay.rss_kib();
    let mut flood = Vec::new();
    for i in 0..20_000u32 {
        let frame = ClientFrame::History {
            req: i + 2,
            room: "lobby".into(),
            page: Page::Latest,
            limit: 200,
        };
        flood.extend_from_slice(&encode(&frame));
    }
    // The relay stops reading once its few bulk slots are taken.
    let _ = tokio::time::timeout(Duration::from_secs(4), wire.write_raw(&flood)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grown = relay.rss_kib().saturating_sub(before);
    assert!(
        grown < 40 * 1024,
        "relay grew by {grown} KiB serving one history flood"
    );
    // Everyone else is served meanwhile.
    writer.client.send("lobby", "still here").await.unwrap();
}

/// Replies that can grow with the relay (room and member lists) travel on
/// bulk streams, so a relay with many rooms does not break its clients;
/// the public directory lists the busiest 1000, so no account can make
/// it grow without bound for everyone.
#[tokio::test]
async fn a_room_list_bigger_than_a_control_frame_still_arrives() {
    let relay = Relay::start_with(
        &[
            "--request-rate",
            "100000",
            "--room-creations-per-hour",
            "100000000",
            "--max-rooms-per-user",
            "5000",
        ],
        &[],
    );
    let mut a = relay.register("a").await;
    let creates: Vec<_> = (0..1600)
        .map(|i| {
            let client = &a.client;
            async move { client.create_room(&format!("room-{i:026}"), false).await }
        })
        .collect();
    for c in creates {
        c.await.unwrap();
    }
    // Over 64 KiB: a's own 1601 rooms.
    a.joined("lobby").await;
    let (joined, _) = a.client.rooms().await.unwrap();
    assert_eq!(joined.len(), 1601);
    let mut v = relay.register("victim").await;
    v.joined("lobby").await;
    let (_, public) = v.client.rooms().await.unwrap();
    assert_eq!(public.len(), 1000);
    assert!(
        public.iter().any(|r| r.name == "lobby"),
        "the busiest is listed"
    );
    v.client.send("lobby", "hello").await.unwrap();
    let events = v.drain(Duration::from_millis(300)).await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, common::client::Event::Reconnecting { .. })),
        "{events:?}"
    );
}

/// Room changes are rate limited like sends: a script cannot fill the store
/// with rooms.
#[tokio::test]
async fn room_changes_are_rate_limited() {
    let relay = Relay::start_with(&["--request-rate", "5"], &[]);
    let a = relay.register("a").await;
    let mut limited = 0;
    for i in 0..30 {
        match a.client.create_room(&format!("r{i}"), false).await {
            Ok(_) => {}
            Err(common::client::RequestError::Refused {
                code: common::frame::ErrorCode::RateLimited,
                ..
            }) => limited += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(
        (15..=20).contains(&limited),
        "{limited} of 30 refused at 5/s with bursts of 10"
    );
    a.client
        .send("lobby", "sending is not affected")
        .await
        .unwrap();
}

/// Connections that have not logged in are capped per address, refused
/// before the TLS handshake; logging in frees the place.
#[tokio::test]
async fn pre_login_connections_are_capped_per_address() {
    let relay = Relay::start_with(&["--max-unauthenticated-per-addr", "2"], &[]);
    relay.register("w").await.client.close().await;
    let first = relay.raw_connection(GOOD_ALPN).await.expect("first");
    let _second = relay.raw_connection(GOOD_ALPN).await.expect("second");
    let third = relay.raw_connection(GOOD_ALPN).await;
    assert!(
        third.is_err(),
        "a third pre-login connection from one address must be refused"
    );

    let _first = login(first, "w").await;
    let fourth = relay.raw_connection(GOOD_ALPN).await;
    assert!(
        fourth.is_ok(),
        "a login frees its pre-login place: {fourth:?}"
    );
}

/// Clients of many accounts that ask for big pages and never read them
/// can make the relay hold only its budget of bulk replies, not a page per
/// request; everyone else keeps chatting meanwhile.
#[tokio::test]
async fn stalled_readers_of_many_accounts_hold_only_the_bulk_budget() {
    let relay = Relay::start_with(&["--rate-limit", "100000", "--bulk-replies", "8"], &[]);
    let writer = relay.register("w").await;
    fill_lobby(&writer).await;
    const ACCOUNTS: usize = 6;
    const SESSIONS: usize = 4;
    for a in 0..ACCOUNTS {
        relay.register(&format!("s{a}")).await.client.close().await;
    }
    let before = relay.rss_kib();
    let mut stalled = Vec::new();
    for a in 0..ACCOUNTS {
        for _ in 0..SESSIONS {
            let mut transport = quinn::TransportConfig::default();
            // A window of 16 KiB it never reads: each page stays with the relay.
            transport
                .stream_receive_window(16_384u32.into())
                .keep_alive_interval(Some(Duration::from_secs(1)));
            let conn = relay
                .raw_connection_with(GOOD_ALPN, transport)
                .await
                .unwrap();
            let mut wire = login(conn, &format!("s{a}")).await;
            for req in 2..6 {
                wire.write_frame(&ClientFrame::History {
                    req,
                    room: "lobby".into(),
                    page: Page::Latest,
                    limit: 200,
                })
                .await
                .unwrap();
            }
            stalled.push(wire);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = relay.rss_kib().saturating_sub(before);
    eprintln!(
        "{} stalled page requests of ~800 KB: the relay grew by {grown} KiB",
        ACCOUNTS * SESSIONS * 4
    );
    // 8 replies of ~800 KB, and the rest of what 24 sessions cost.
    assert!(grown < 32 * 1024, "relay grew by {grown} KiB");
    writer.client.send("lobby", "still chatting").await.unwrap();
    drop(stalled);
}

/// `Bye` ends a session at once even while a bulk reply it asked for sits
/// unread: the relay does not wait out the reply's delivery limit (10 s)
/// before closing, nor hold its own shutdown for it.
#[tokio::test]
async fn bye_closes_at_once_while_a_bulk_reply_is_unread() {
    let mut relay = Relay::start_with(&["--rate-limit", "100000"], &[]);
    let writer = relay.register("w").await;
    fill_lobby(&writer).await;
    writer.client.close().await;
    relay.register("s").await.client.close().await;
    let mut transport = quinn::TransportConfig::default();
    // A window of 16 KiB it never reads: the page cannot be delivered.
    transport
        .stream_receive_window(16_384u32.into())
        .keep_alive_interval(Some(Duration::from_secs(1)));
    let conn = relay
        .raw_connection_with(GOOD_ALPN, transport)
        .await
        .unwrap();
    let mut wire = login(conn.clone(), "s").await;
    wire.write_frame(&ClientFrame::History {
        req: 2,
        room: "lobby".into(),
        page: Page::Latest,
        limit: 200,
    })
    .await
    .unwrap();
    // The reply is on its way and stuck before the client says goodbye.
    tokio::time::sleep(Duration::from_millis(500)).await;
    wire.write_frame(&ClientFrame::Bye).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(3), conn.closed()).await;
    match closed {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(u64::from(c.error_code), 0, "{c:?}")
        }
        Ok(other) => panic!("closed otherwise than by the relay's code 0: {other}"),
        Err(_) => panic!("still connected 3 s after Bye"),
    }
    let started = std::time::Instant::now();
    let status = relay.terminate().await;
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the relay took {:?} to stop",
        started.elapsed()
    );
}
