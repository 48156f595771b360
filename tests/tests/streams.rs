//! How the relay answers when a client stops, resets or finishes one of the
//! connection's streams (PROTOCOL.md §2): every request still gets exactly
//! one answer, and a control stream that can no longer carry answers ends
//! the connection with the documented close code.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use common::frame::{
    close, ClientFrame, ErrorCode, Page, RequestId, ServerFrame, PROTOCOL_VERSION,
};
use common::wire::Wire;
use confab_tests::{Relay, PATIENCE};
use quinn::{ConnectionError, VarInt};

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {PATIENCE:?} waiting for {what}"))
}

/// Stores `n` messages of 4000 bytes in the lobby from `wire`'s session
/// and waits for their acks, so a page of them spans many packets.
async fn fill_lobby(wire: &mut Wire, n: u32) {
    for i in 0..n {
        let mut id = [7u8; 16];
        id[..4].copy_from_slice(&i.to_le_bytes());
        let send = ClientFrame::Send {
            req: 1000 + i,
            room: "lobby".into(),
            id,
            body: "x".repeat(4000),
        };
        wire.write_frame(&send).await.expect("send");
    }
    let mut acks = 0;
    within("the acks", async {
        while acks < n {
            match wire.read_frame().await.expect("read").expect("open") {
                ServerFrame::Ack { .. } => acks += 1,
                ServerFrame::Error { code, message, .. } => panic!("{code:?}: {message}"),
                _ => {}
            }
        }
    })
    .await;
}

fn history(req: RequestId, limit: u16) -> ClientFrame {
    ClientFrame::History {
        req,
        room: "lobby".into(),
        page: Page::Latest,
        limit,
    }
}

/// Reads the control stream until a `Pong` for `ping`, collecting the
/// answers (replies and errors with a `req`) to the requests in `reqs`.
async fn answers_until_pong(
    wire: &mut Wire,
    reqs: &[RequestId],
    ping: RequestId,
) -> HashMap<RequestId, Vec<ServerFrame>> {
    let mut got: HashMap<RequestId, Vec<ServerFrame>> = HashMap::new();
    within("the Pong", async {
        loop {
            let frame = wire.read_frame().await.expect("read").expect("open");
            match &frame {
                ServerFrame::Pong { req } if *req == ping => return,
                ServerFrame::Error { req, .. } if reqs.contains(req) => {
                    got.entry(*req).or_default().push(frame)
                }
                _ => {}
            }
        }
    })
    .await;
    got
}

/// A client that stops a bulk stream (QUIC STOP_SENDING) before it has the
/// whole reply gets `Unavailable` on the control stream instead, once per
/// request; a reply read in full gets no second answer.
#[tokio::test]
async fn a_stopped_bulk_stream_is_answered_unavailable() {
    let relay = Relay::start_with(&["--rate-limit", "1000"], &[]);
    // A stream window of 32 KiB: the relay cannot finish a page the client
    // does not read, so each stop lands before the page is delivered (with
    // a window the size of the page, loopback sometimes delivered all of
    // it before the stop, which then rightly counted as delivered).
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(VarInt::from_u32(32 * 1024));
    let conn = relay
        .raw_connection_with(confab_tests::GOOD_ALPN, transport)
        .await
        .expect("handshake");
    let mut wire = Wire::open(conn).await.expect("control stream");
    within(
        "login",
        wire.login("streams", "alice", confab_tests::PASSWORD, true),
    )
    .await
    .expect("login");
    // 100 messages of 4000 bytes: a page of ~400 KB, far more than one
    // packet and than the window, so the client stops each stream while
    // most of it is still with the relay.
    fill_lobby(&mut wire, 100).await;

    let stopped: Vec<RequestId> = vec![1, 2, 3];
    for req in &stopped {
        wire.write_frame(&history(*req, 100))
            .await
            .expect("History");
        let mut stream = within("a bulk stream", wire.conn.accept_uni())
            .await
            .expect("bulk stream");
        stream.stop(VarInt::from_u32(0)).expect("stop");
    }
    // The wait for the Pong is long enough for every answer: the relay
    // notices a stopped stream within a round trip. Every late answer
    // would still show up before the next Pong below.
    tokio::time::sleep(Duration::from_millis(500)).await;
    wire.write_frame(&ClientFrame::Ping { req: 9 })
        .await
        .expect("Ping");
    let mut got = answers_until_pong(&mut wire, &stopped, 9).await;
    for req in &stopped {
        let answers = got.remove(req).unwrap_or_default();
        assert!(
            matches!(
                answers.as_slice(),
                [ServerFrame::Error {
                    code: ErrorCode::Unavailable,
                    ..
                }]
            ),
            "History {req} with its bulk stream stopped: answers {answers:?}"
        );
    }

    // A page read to its end is the one answer: no error follows.
    wire.write_frame(&history(4, 100)).await.expect("History");
    let mut stream = within("a bulk stream", wire.conn.accept_uni())
        .await
        .expect("bulk stream");
    let page = within("the page", common::wire::read_bulk_frame(&mut stream))
        .await
        .expect("page");
    assert!(
        matches!(&page, Some(ServerFrame::HistoryPage { req: 4, messages, .. }) if messages.len() == 100),
        "{page:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    wire.write_frame(&ClientFrame::Ping { req: 10 })
        .await
        .expect("Ping");
    let got = answers_until_pong(&mut wire, &[4], 10).await;
    assert!(got.is_empty(), "a delivered page answered again: {got:?}");
}

fn hello() -> ClientFrame {
    ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        client: "streams".into(),
    }
}

async fn closed_with(conn: &quinn::Connection, code: u32, what: &str) {
    match within(what, conn.closed()).await {
        ConnectionError::ApplicationClosed(c) => assert_eq!(
            c.error_code,
            VarInt::from_u32(code),
            "{what}: close reason {:?}",
            String::from_utf8_lossy(&c.reason)
        ),
        other => panic!("{what}: expected an application close with code {code}, got {other:?}"),
    }
}

/// The control stream's endings, before and after login: the client's FIN
/// is `Bye` (close 0), its reset leaves the connection (close 0), and a
/// client that stops the relay's side can get no answers, so the relay
/// closes with code 1 rather than serve requests it cannot answer.
#[tokio::test]
async fn the_control_stream_ending_ends_the_connection() {
    let relay = Relay::start();
    relay.register("bob").await.client.close().await;

    for logged_in in [false, true] {
        let when = if logged_in {
            "after login"
        } else {
            "before login"
        };
        let open = || async {
            match logged_in {
                true => relay.wire_logged_in("bob", false).await,
                false => relay.wire().await,
            }
        };

        let mut fin = open().await;
        fin.send.finish().expect("finish");
        closed_with(&fin.conn, close::NORMAL, &format!("FIN {when}")).await;

        let mut reset = open().await;
        // Something on the stream first: a stream the relay never saw is
        // not there to reset.
        if !logged_in {
            reset.write_frame(&hello()).await.expect("Hello");
            let welcome = within("Welcome", reset.read_frame()).await;
            assert!(matches!(welcome, Ok(Some(ServerFrame::Welcome { .. }))));
        }
        reset.send.reset(VarInt::from_u32(7)).expect("reset");
        closed_with(&reset.conn, close::NORMAL, &format!("reset {when}")).await;

        let mut stop = open().await;
        stop.recv.stop(VarInt::from_u32(7)).expect("stop");
        closed_with(&stop.conn, close::PROTOCOL, &format!("stop {when}")).await;
    }
}
