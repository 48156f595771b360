//! Hostile and broken input against the real relay over real QUIC: each
//! test checks the documented answer (error frame, close code) and then
//! that the relay still serves the clients that behaved.

use std::future::Future;
use std::time::Duration;

use common::client::{Client, Config, ConnectError, Event, RequestError};
use common::codec;
use common::frame::{close, ClientFrame, ErrorCode, MsgId, Page, ServerFrame, PROTOCOL_VERSION};
use common::limits::{MAX_BODY, MAX_CLIENT_NAME, MAX_CONTROL_FRAME};
use common::wire::Wire;
use confab_tests::{Relay, Session, GOOD_ALPN, PASSWORD};
use quinn::{ConnectionError, VarInt};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use relay::defaults::{
    ACCOUNT_FAILURES, FAILURE_DELAY, FREE_FAILURES, LOCK_AFTER, MAX_FAILURE_DELAY,
};
use tokio::time::Instant;

/// Bound on any single step that should happen at once. Well under the
/// relay's 10 s idle timeout, so a hang shows up as a hang, not a close.
const WAIT: Duration = Duration::from_secs(5);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

/// A hand-driven connection: whatever bytes the test wants on the control
/// stream, and the relay's replies read back one frame at a time, each
/// step bounded by [`WAIT`].
struct Raw {
    wire: Wire,
}

impl Raw {
    async fn open(relay: &Relay) -> Raw {
        let wire = within("a control stream", relay.wire()).await;
        Raw { wire }
    }

    /// A connection past `Hello` and `Register`, as a well-behaved client
    /// would be before it turns bad.
    async fn logged_in(relay: &Relay, user: &str) -> Raw {
        let mut raw = Raw::open(relay).await;
        raw.hello().await;
        raw.frame(&ClientFrame::Register {
            req: 1,
            user: user.into(),
            password: PASSWORD.into(),
        })
        .await;
        match raw.reply().await {
            ServerFrame::LoggedIn { req: 1, user: u } => assert_eq!(u, user),
            other => panic!("expected LoggedIn, got {other:?}"),
        }
        raw
    }

    async fn write(&mut self, bytes: &[u8]) {
        within("a write", self.wire.write_raw(bytes))
            .await
            .expect("write to the control stream");
    }

    async fn frame(&mut self, frame: &ClientFrame) {
        self.write(&codec::encode(frame)).await;
    }

    async fn hello(&mut self) {
        self.frame(&ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            client: "bad_input".into(),
        })
        .await;
        match self.reply().await {
            ServerFrame::Welcome { version, .. } => assert_eq!(version, PROTOCOL_VERSION),
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// The next frame, or `None` when the relay ended the stream cleanly.
    async fn next(&mut self) -> Option<ServerFrame> {
        within("a frame from the relay", self.wire.read_frame())
            .await
            .unwrap_or_else(|e| panic!("reading the relay's reply: {e}"))
    }

    /// The next frame that answers something, skipping live traffic that
    /// other clients cause at any moment.
    async fn reply(&mut self) -> ServerFrame {
        loop {
            match self.next().await {
                Some(ServerFrame::Message(_) | ServerFrame::Presence(_)) => {}
                Some(frame) => return frame,
                None => panic!("the relay ended the control stream instead of replying"),
            }
        }
    }

    /// Asserts the next reply is `Error{code}` and returns its req and text.
    async fn error(&mut self, code: ErrorCode) -> (u32, String) {
        match self.reply().await {
            ServerFrame::Error {
                req,
                code: got,
                message,
            } => {
                assert_eq!(got, code, "error text: {message}");
                (req, message)
            }
            other => panic!("expected Error {code:?}, got {other:?}"),
        }
    }

    async fn ping(&mut self, req: u32) {
        self.frame(&ClientFrame::Ping { req }).await;
        match self.reply().await {
            ServerFrame::Pong { req: r } => assert_eq!(r, req),
            other => panic!("expected Pong, got {other:?}"),
        }
    }

    async fn closed_with(&self, code: u32) {
        closed_with(&self.wire.conn, code).await;
    }
}

async fn closed_with(conn: &quinn::Connection, code: u32) {
    match within("the relay to close the connection", conn.closed()).await {
        ConnectionError::ApplicationClosed(c) => assert_eq!(
            c.error_code,
            VarInt::from_u32(code),
            "close reason {:?}",
            String::from_utf8_lossy(&c.reason)
        ),
        other => panic!("expected an application close with code {code}, got {other:?}"),
    }
}

/// Two users who connect before the trouble starts.
async fn bystanders(relay: &Relay) -> (Session, Session) {
    let mut alice = relay.register("alice").await;
    alice.joined("lobby").await;
    let mut bob = relay.register("bob").await;
    bob.joined("lobby").await;
    (alice, bob)
}

/// The relay still relays between the bystanders, has not died, and has
/// not panicked in some task (tokio would keep the process alive).
async fn assert_still_serving(relay: &mut Relay, alice: &Session, bob: &mut Session, after: &str) {
    within("alice's ping", alice.client.ping())
        .await
        .unwrap_or_else(|e| panic!("ping after {after}: {e}"));
    let body = format!("still here after {after}");
    within("alice's send", alice.client.send("lobby", &body))
        .await
        .unwrap_or_else(|e| panic!("send after {after}: {e}"));
    bob.wait_for(&format!("alice's message after {after}"), |e| match e {
        Event::Message(m) if m.from == "alice" && m.body == body => Some(()),
        _ => None,
    })
    .await;
    assert!(
        !relay.wait_exit(Duration::from_millis(50)).await,
        "the relay exited after {after}; log:\n{}",
        relay.log()
    );
    let log = relay.log();
    assert!(!log.contains("panicked"), "relay panicked:\n{log}");
}

async fn refused(cfg: Config) -> ConnectError {
    let user = cfg.user.clone();
    match within("a refused connect", Client::connect(cfg)).await {
        Ok(_) => panic!("{user:?} connected but should have been refused"),
        Err(e) => e,
    }
}

fn auth_code(e: &ConnectError) -> ErrorCode {
    match e {
        ConnectError::Auth { code, .. } => *code,
        other => panic!("expected an Auth refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn random_bytes_on_the_control_stream_get_malformed_or_too_large_and_close_protocol() {
    let mut relay = Relay::start();
    let (alice, mut bob) = bystanders(&relay).await;

    for seed in 0..4u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut noise = vec![0u8; 4096];
        rng.fill_bytes(&mut noise);
        // Random prefixes are nearly always oversized; a second run with a
        // prefix that fits makes the relay decode the random payload too.
        for fit_prefix in [false, true] {
            let mut bytes = noise.clone();
            if fit_prefix {
                let len = (bytes.len() - 4) as u32;
                bytes[..4].copy_from_slice(&len.to_be_bytes());
            }
            let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
            let expected = if len > MAX_CONTROL_FRAME {
                ErrorCode::FrameTooLarge
            } else {
                // A prefix between what we send and the limit would leave the
                // relay waiting for the rest: pick another seed if so.
                assert!(len <= bytes.len() - 4, "seed {seed}: prefix {len} waits");
                assert!(
                    codec::decode::<ClientFrame>(&bytes[4..4 + len]).is_err(),
                    "seed {seed}: the noise happens to be a frame"
                );
                ErrorCode::Malformed
            };
            let mut raw = Raw::open(&relay).await;
            raw.write(&bytes).await;
            let (req, _) = raw.error(expected).await;
            assert_eq!(req, 0, "connection-level errors carry req 0");
            raw.closed_with(close::PROTOCOL).await;
        }
    }

    assert_still_serving(&mut relay, &alice, &mut bob, "random bytes").await;
}

#[tokio::test]
async fn a_four_gib_length_prefix_is_refused_before_reading() {
    let mut relay = Relay::start();
    let (alice, mut bob) = bystanders(&relay).await;

    let mut raw = Raw::open(&relay).await;
    // Only the prefix and a few bytes: a relay that trusted the prefix
    // would sit waiting for 4 GiB (or try to allocate it).
    raw.write(&[0xff, 0xff, 0xff, 0xff, 0, 1, 2, 3]).await;
    let (req, message) = raw.error(ErrorCode::FrameTooLarge).await;
    assert_eq!(req, 0);
    assert!(message.contains("4294967295"), "{message}");
    raw.closed_with(close::PROTOCOL).await;

    assert_still_serving(&mut relay, &alice, &mut bob, "a 4 GiB prefix").await;
}

#[tokio::test]
async fn a_frame_before_hello_is_unexpected_and_closes_protocol() {
    let mut relay = Relay::start();
    let (alice, mut bob) = bystanders(&relay).await;

    let mut raw = Raw::open(&relay).await;
    raw.frame(&ClientFrame::Login {
        req: 7,
        user: "alice".into(),
        password: PASSWORD.into(),
    })
    .await;
    let (req, _) = raw.error(ErrorCode::Unexpected).await;
    assert_eq!(req, 7, "the request id is echoed");
    raw.closed_with(close::PROTOCOL).await;

    // Between Hello and login only Register, Login, Ping and Bye are allowed.
    let mut raw = Raw::open(&relay).await;
    raw.hello().await;
    raw.frame(&ClientFrame::Join {
        req: 8,
        room: "lobby".into(),
    })
    .await;
    let (req, _) = raw.error(ErrorCode::Unexpected).await;
    assert_eq!(req, 8);
    raw.closed_with(close::PROTOCOL).await;

    assert_still_serving(&mut relay, &alice, &mut bob, "frames out of order").await;
}

#[tokio::test]
async fn login_frames_after_login_are_unexpected_but_keep_the_connection() {
    let mut relay = Relay::start();
    let (alice, mut bob) = bystanders(&relay).await;

    let mut raw = Raw::logged_in(&relay, "mallory").await;
    raw.frame(&ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        client: "again".into(),
    })
    .await;
    let (req, _) = raw.error(ErrorCode::Unexpected).await;
    assert_eq!(req, 0, "Hello has no req");
    raw.frame(&ClientFrame::Login {
        req: 9,
        user: "alice".into(),
        password: PASSWORD.into(),
    })
    .await;
    let (req, _) = raw.error(ErrorCode::Unexpected).await;
    assert_eq!(req, 9);
    raw.ping(10).await;

    assert_still_serving(&mut relay, &alice, &mut bob, "login frames after login").await;
}

#[tokio::test]
async fn a_wrong_alpn_fails_the_handshake() {
    let mut relay = Relay::start();
    let (alice, mut bob) = bystanders(&relay).await;

    let result = within("the refused handshake", relay.raw_connection(b"wrong/1")).await;
    match result {
        Ok(_) => panic!("a connection offering only wrong/1 was accepted"),
        // TLS alert no_application_protocol (120) as a QUIC crypto error.
        Err(ConnectionError::ConnectionClosed(c)) => {
            assert_eq!(u64::from(c.error_code), 0x100 + 120, "{c}")
        }
        Err(other) => panic!("expected the handshake to be refused, got {other:?}"),
    }

    assert_still_serving(&mut relay, &alice, &mut bob, "a wrong ALPN").await;
}

#[tokio::test]
async fn a_wrong_password_is_bad_credentials_and_the_right_one_still_works() {
    let mut relay = Relay::start();
    let (alice, mut bob) = bystanders(&relay).await;

    let mut cfg = relay.config("alice");
    cfg.password = "not the password at all".into();
    match refused(cfg).await {
        ConnectError::Auth {
            code: ErrorCode::BadCredentials,
            message,
        } => assert_eq!(message, "wrong user name or password"),
        other => panic!("expected BadCredentials, got {other:?}"),
    }
    // An unknown user gets the very same answer, so names cannot be probed.
    let mut cfg = relay.config("nobody");
    cfg.password = PASSWORD.into();
    match refused(cfg).await {
        ConnectError::Auth {
            code: ErrorCode::BadCredentials,
            message,
        } => assert_eq!(message, "wrong user name or password"),
        other => panic!("expected BadCredentials, got {other:?}"),
    }

    let mut laptop = within("alice's second login", relay.login("alice")).await;
    laptop.joined("lobby").await;
    within("ping", laptop.client.ping()).await.unwrap();

    assert_still_serving(&mut relay, &alice, &mut bob, "a wrong password").await;
}

#[tokio::test]
async fn registering_a_taken_name_in_any_case_is_name_taken() {
    let mut relay = Relay::start();
    let (alice, mut bob) = bystanders(&relay).await;

    for name in ["alice", "ALICE", "Alice"] {
        let mut cfg = relay.config(name);
        cfg.register = true;
        let err = refused(cfg).await;
        assert_eq!(auth_code(&err), ErrorCode::NameTaken, "{name}: {err}");
    }

    assert_still_serving(&mut relay, &alice, &mut bob, "taken names").await;
}

#[tokio::test]
async fn registering_a_name_that_looks_like_another_is_name_taken_and_says_whose() {
    let mut relay = Relay::start();
    let (alice, mut bob) = bystanders(&relay).await;

    for (name, existing) in [("aIice", "alice"), ("AL1CE", "alice"), ("b0b", "bob")] {
        let mut cfg = relay.config(name);
        cfg.register = true;
        match refused(cfg).await {
            ConnectError::Auth {
                code: ErrorCode::NameTaken,
                message,
            } => assert_eq!(
                message,
                format!(
                    "the name {name:?} looks like an existing user's ({existing:?}); choose another"
                )
            ),
            other => panic!("{name}: expected NameTaken, got {other:?}"),
        }
    }
    let mut members = within("lobby members", alice.client.members("lobby"))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.user)
        .collect::<Vec<_>>();
    members.sort();
    assert_eq!(members, ["alice", "bob"], "no lookalike joined");

    assert_still_serving(&mut relay, &alice, &mut bob, "lookalike names").await;
}

#[tokio::test]
async fn invalid_user_and_room_names_are_invalid_name() {
    let mut relay = Relay::start();
    let (alice, mut bob) = bystanders(&relay).await;

    let long = "x".repeat(33);
    for name in ["", "a b", long.as_str(), "-lead", "é"] {
        let mut cfg = relay.config(name);
        cfg.register = true;
        let err = refused(cfg).await;
        assert_eq!(auth_code(&err), ErrorCode::InvalidName, "{name:?}: {err}");
    }

    for room in ["Dev", "a/b", long.as_str(), "", "@alice+bob"] {
        let err = within("create_room", alice.client.create_room(room, false))
            .await
            .expect_err(room);
        assert!(
            matches!(
                err,
                RequestError::Refused {
                    code: ErrorCode::InvalidName,
                    ..
                }
            ),
            "{room:?}: {err:?}"
        );
    }
    let (_, public) = within("rooms", alice.client.rooms()).await.unwrap();
    let names: Vec<_> = public.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["lobby"], "no refused room was created");

    assert_still_serving(&mut relay, &alice, &mut bob, "invalid names").await;
}

#[tokio::test]
async fn an_oversized_message_is_bad_body_and_is_not_stored() {
    let mut relay = Relay::start();
    let (alice, mut bob) = bystanders(&relay).await;
    let big = "x".repeat(5 * 1024);

    // The library refuses before anything reaches the relay.
    let err = within("the local refusal", alice.client.send("lobby", &big))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RequestError::Refused {
                code: ErrorCode::BadBody,
                ..
            }
        ),
        "{err:?}"
    );

    // A client without that check meets the relay's.
    let mut raw = Raw::logged_in(&relay, "mallory").await;
    raw.frame(&ClientFrame::Send {
        req: 5,
        room: "lobby".into(),
        id: [5; 16],
        body: big.clone(),
    })
    .await;
    let (req, _) = raw.error(ErrorCode::BadBody).await;
    assert_eq!(req, 5);
    raw.ping(6).await;
    // The limit itself is allowed.
    raw.frame(&ClientFrame::Send {
        req: 7,
        room: "lobby".into(),
        id: [7; 16],
        body: "y".repeat(MAX_BODY),
    })
    .await;
    match raw.reply().await {
        ServerFrame::Ack { req: 7, .. } => {}
        other => panic!("expected Ack for a body of exactly MAX_BODY, got {other:?}"),
    }

    let (history, _) = within("history", bob.client.history("lobby", Page::Latest, 200))
        .await
        .unwrap();
    let from_mallory: Vec<_> = history.iter().filter(|m| m.from == "mallory").collect();
    assert_eq!(from_mallory.len(), 1, "only the in-limit message is stored");
    assert_eq!(from_mallory[0].id, [7; 16]);
    assert!(history.iter().all(|m| m.body.len() <= MAX_BODY));

    assert_still_serving(&mut relay, &alice, &mut bob, "an oversized message").await;
}

#[tokio::test]
async fn a_raw_flood_over_the_rate_limit_is_rate_limited_and_refills() {
    let mut relay = Relay::start_with(&["--rate-limit", "10"], &[]);
    let (alice, mut bob) = bystanders(&relay).await;
    let burst = 20; // twice the rate, and the bucket starts full

    let mut raw = Raw::logged_in(&relay, "flood").await;
    let mut bytes = Vec::new();
    for req in 1..=100u32 {
        let mut id: MsgId = [0; 16];
        id[..4].copy_from_slice(&req.to_be_bytes());
        bytes.extend_from_slice(&codec::encode(&ClientFrame::Send {
            req,
            room: "lobby".into(),
            id,
            body: format!("flood {req}"),
        }));
    }
    raw.write(&bytes).await;

    let mut answered = std::collections::HashSet::new();
    let (mut acks, mut limited) = (0, 0);
    let mut first_refused = u32::MAX;
    while answered.len() < 100 {
        match raw.reply().await {
            ServerFrame::Ack { req, .. } => {
                assert!(answered.insert(req), "req {req} answered twice");
                acks += 1;
            }
            ServerFrame::Error {
                req,
                code: ErrorCode::RateLimited,
                ..
            } => {
                assert!(answered.insert(req), "req {req} answered twice");
                limited += 1;
                first_refused = first_refused.min(req);
            }
            other => panic!("expected Ack or RateLimited, got {other:?}"),
        }
    }
    assert_eq!(acks + limited, 100);
    // Refill is 1 token per 100 ms: the slack covers a slow relay.
    assert!(
        (burst..=burst + 5).contains(&acks),
        "{acks} acked, {limited} rate limited"
    );

    let (history, _) = within("history", bob.client.history("lobby", Page::Latest, 200))
        .await
        .unwrap();
    let stored = history.iter().filter(|m| m.from == "flood").count();
    assert_eq!(stored, acks, "refused sends are not stored");

    assert_still_serving(&mut relay, &alice, &mut bob, "a flood").await;

    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Even with tokens again, a new message may not overtake the first
    // refused one: the sender's order is kept.
    raw.frame(&ClientFrame::Send {
        req: 101,
        room: "lobby".into(),
        id: [0xaa; 16],
        body: "after the pause".into(),
    })
    .await;
    match raw.reply().await {
        ServerFrame::Error {
            req: 101,
            code: ErrorCode::RateLimited,
            ..
        } => {}
        other => panic!("expected the refused message to hold this one back, got {other:?}"),
    }
    let mut id: MsgId = [0; 16];
    id[..4].copy_from_slice(&first_refused.to_be_bytes());
    let resend = ClientFrame::Send {
        req: 102,
        room: "lobby".into(),
        id,
        body: format!("flood {first_refused}"),
    };
    raw.frame(&resend).await;
    match raw.reply().await {
        ServerFrame::Ack { req: 102, .. } => {}
        other => panic!("expected the resend to be admitted after the refill, got {other:?}"),
    }
    // The other refused messages are still owed, oldest first: the new one
    // waits behind them too (they flow again as they are resent; see
    // relay::rate's tests and tests/order.rs).
    raw.frame(&ClientFrame::Send {
        req: 103,
        room: "lobby".into(),
        id: [0xaa; 16],
        body: "after the pause".into(),
    })
    .await;
    match raw.reply().await {
        ServerFrame::Error {
            req: 103,
            code: ErrorCode::RateLimited,
            ..
        } => {}
        other => panic!("expected the other refused messages to go first, got {other:?}"),
    }
}

#[tokio::test]
async fn a_pipelining_client_over_the_rate_limit_gets_everything_through_once() {
    let relay = Relay::start_with(&["--rate-limit", "10"], &[]);
    let (alice, mut bob) = bystanders(&relay).await;
    const N: usize = 60;

    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        let sends: Vec<_> = (1..=N)
            .map(|i| alice.client.send("lobby", &format!("p{i}")))
            .collect();
        let mut acked = Vec::new();
        for s in sends {
            acked.push(s.await.expect("every send is acked eventually").seq);
        }
        let mut seen = Vec::new();
        while seen.len() < N {
            match bob.events.recv().await {
                Some(Event::Message(m)) if m.from == "alice" => seen.push(m),
                Some(_) => {}
                None => panic!("bob's session ended"),
            }
        }
        (acked, seen)
    })
    .await;
    let (mut acked, seen) = outcome.expect("60 rate-limited sends within 20 s");

    assert!(
        seen.windows(2).all(|w| w[0].seq < w[1].seq),
        "delivered in sequence order"
    );
    let bodies: Vec<_> = seen.iter().map(|m| m.body.clone()).collect();
    let expected: Vec<_> = (1..=N).map(|i| format!("p{i}")).collect();
    assert_eq!(
        bodies, expected,
        "every message exactly once, in send order"
    );
    acked.sort_unstable();
    let seqs: Vec<_> = seen.iter().map(|m| m.seq).collect();
    assert_eq!(acked, seqs, "the acks name the delivered messages");
    let extra = bob.drain(Duration::from_millis(300)).await;
    assert!(
        !extra
            .iter()
            .any(|e| matches!(e, Event::Message(m) if m.from == "alice")),
        "duplicates after the {N}: {extra:?}"
    );
}

#[tokio::test]
async fn idling_before_login_hits_the_login_deadline() {
    let mut relay = Relay::start_with(&["--login-timeout", "1"], &[]);
    let (alice, mut bob) = bystanders(&relay).await;

    let started = Instant::now();
    let mut idle = Raw::open(&relay).await;
    let silent = within("a handshake", relay.raw_connection(GOOD_ALPN))
        .await
        .expect("handshake");
    idle.hello().await;

    let (req, _) = idle.error(ErrorCode::LoginTimeout).await;
    assert_eq!(req, 0);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "LoginTimeout after {waited:?}"
    );
    idle.closed_with(close::LOGIN_TIMEOUT).await;

    // Never opening a stream is no way around the deadline.
    closed_with(&silent, close::LOGIN_TIMEOUT).await;
    assert!(started.elapsed() < Duration::from_secs(3));

    assert_still_serving(&mut relay, &alice, &mut bob, "idle connections").await;
}

#[tokio::test]
async fn hello_with_another_version_is_version_mismatch_and_closes_version() {
    let mut relay = Relay::start();
    let (alice, mut bob) = bystanders(&relay).await;

    let mut raw = Raw::open(&relay).await;
    raw.frame(&ClientFrame::Hello {
        version: 99,
        client: "from the future".into(),
    })
    .await;
    let (req, message) = raw.error(ErrorCode::VersionMismatch).await;
    assert_eq!(req, 0);
    assert!(message.contains("99"), "{message}");
    raw.closed_with(close::VERSION).await;

    assert_still_serving(&mut relay, &alice, &mut bob, "a version mismatch").await;
}

#[tokio::test]
async fn a_truncated_frame_closes_that_connection_only() {
    let mut relay = Relay::start();
    let (alice, mut bob) = bystanders(&relay).await;

    let mut raw = Raw::open(&relay).await;
    let mut bytes = 100u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0; 10]);
    raw.write(&bytes).await;
    raw.wire.send.finish().expect("finish the control stream");
    let (req, _) = raw.error(ErrorCode::Malformed).await;
    assert_eq!(req, 0);
    raw.closed_with(close::PROTOCOL).await;

    // The same after login, where a different loop reads the stream.
    let mut raw = Raw::logged_in(&relay, "mallory").await;
    raw.write(&bytes).await;
    raw.wire.send.finish().expect("finish the control stream");
    raw.error(ErrorCode::Malformed).await;
    raw.closed_with(close::PROTOCOL).await;

    assert_still_serving(&mut relay, &alice, &mut bob, "a truncated frame").await;
}

#[tokio::test]
async fn trailing_bytes_inside_a_frame_are_malformed() {
    let mut relay = Relay::start();
    let (alice, mut bob) = bystanders(&relay).await;

    let hello = codec::encode(&ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        client: "bad_input".into(),
    });
    let mut bytes = ((hello.len() - 4 + 1) as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&hello[4..]);
    bytes.push(0);
    let mut raw = Raw::open(&relay).await;
    raw.write(&bytes).await;
    let (req, message) = raw.error(ErrorCode::Malformed).await;
    assert_eq!(req, 0);
    assert!(message.contains("trailing"), "{message}");
    raw.closed_with(close::PROTOCOL).await;

    // After login too: a Ping with one byte too many.
    let mut raw = Raw::logged_in(&relay, "mallory").await;
    let ping = codec::encode(&ClientFrame::Ping { req: 3 });
    let mut bytes = ((ping.len() - 4 + 1) as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&ping[4..]);
    bytes.push(0);
    raw.write(&bytes).await;
    raw.error(ErrorCode::Malformed).await;
    raw.closed_with(close::PROTOCOL).await;

    assert_still_serving(&mut relay, &alice, &mut bob, "trailing bytes").await;
}

#[tokio::test]
async fn an_overlong_client_name_in_hello_is_malformed() {
    let mut relay = Relay::start();
    let (alice, mut bob) = bystanders(&relay).await;

    let mut raw = Raw::open(&relay).await;
    raw.frame(&ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        client: "c".repeat(MAX_CLIENT_NAME + 1),
    })
    .await;
    let (req, _) = raw.error(ErrorCode::Malformed).await;
    assert_eq!(req, 0);
    raw.closed_with(close::PROTOCOL).await;

    assert_still_serving(&mut relay, &alice, &mut bob, "an overlong client name").await;
}

#[tokio::test]
async fn bye_before_login_closes_normally() {
    let mut relay = Relay::start();
    let (alice, mut bob) = bystanders(&relay).await;

    // PROTOCOL.md §8: `Bye` is allowed in CONNECTED and HELLO'D, and in any
    // state the relay closes with code 0.
    let mut first = Raw::open(&relay).await;
    first.frame(&ClientFrame::Bye).await;
    let mut after_hello = Raw::open(&relay).await;
    after_hello.hello().await;
    after_hello.frame(&ClientFrame::Bye).await;
    let mut wrong = Vec::new();
    for (when, raw) in [("first", &mut first), ("after Hello", &mut after_hello)] {
        let frame = raw.next().await;
        let closed = within("the close", raw.wire.conn.closed()).await;
        let code = match &closed {
            ConnectionError::ApplicationClosed(c) => Some(c.error_code),
            _ => None,
        };
        if frame.is_some() || code != Some(VarInt::from_u32(close::NORMAL)) {
            wrong.push(format!("Bye {when}: got {frame:?}, then {closed:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    assert_still_serving(&mut relay, &alice, &mut bob, "an early Bye").await;
}

/// How many variants `ClientFrame` has, asked of the decoder itself so that
/// the number follows the enum: refusing an index, serde names the valid
/// range ("expected variant index 0 <= i < 15").
fn client_frame_variants() -> u8 {
    let refusal = codec::decode::<ClientFrame>(&[250])
        .expect_err("no enum of ours has 250 variants")
        .to_string();
    let count = refusal
        .split_once("variant index 0 <= i < ")
        .and_then(|(_, rest)| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("no variant range in {refusal:?}"));
    let last = codec::decode::<ClientFrame>(&[count - 1]);
    assert!(
        !matches!(&last, Err(e) if e.to_string().contains("variant index")),
        "index {} is a variant: {last:?}",
        count - 1
    );
    count
}

#[test]
fn the_variant_count_is_past_every_client_frame() {
    let last = codec::encode(&ClientFrame::SetTopic {
        req: 1,
        room: "lobby".into(),
        topic: String::new(),
    });
    assert_eq!(last[4] + 1, client_frame_variants(), "SetTopic is the last");
}

#[tokio::test]
async fn random_frames_after_login_never_hurt_the_relay() {
    let mut relay = Relay::start();
    let (alice, mut bob) = bystanders(&relay).await;

    // Valid prefixes around random payloads: each connection is refused on
    // its first undecodable frame, whatever came before it.
    let variants = client_frame_variants();
    let mut rng = StdRng::seed_from_u64(42);
    for round in 0..3 {
        let mut raw = Raw::logged_in(&relay, &format!("fuzz{round}")).await;
        let mut bytes = Vec::new();
        let mut payload = vec![0u8; rng.gen_range(1..512)];
        rng.fill_bytes(&mut payload);
        // Variant index past the last ClientFrame: never decodable. Up to
        // 250, which bincode's varint still writes as a single byte.
        payload[0] = rng.gen_range(variants..=250);
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&payload);
        raw.write(&bytes).await;
        raw.error(ErrorCode::Malformed).await;
        raw.closed_with(close::PROTOCOL).await;
    }

    assert_still_serving(&mut relay, &alice, &mut bob, "random frames after login").await;
}

/// Guessing passwords gets slower and then locks that account from that
/// address for a while (and the relay says so in its log); the right
/// password from the same address is refused too until the lock ends.
#[tokio::test]
async fn repeated_wrong_passwords_slow_down_then_lock() {
    let relay = Relay::start();
    relay.register("victim").await.client.close().await;
    let mut cfg = relay.config("victim");
    cfg.password = "not the password".into();
    let mut took = Vec::new();
    for attempt in 1..=LOCK_AFTER {
        let started = std::time::Instant::now();
        let err = Client::connect(cfg.clone())
            .await
            .err()
            .expect("wrong password refused");
        assert!(
            matches!(
                err,
                ConnectError::Auth {
                    code: ErrorCode::BadCredentials,
                    ..
                }
            ),
            "attempt {attempt}: {err:?}"
        );
        took.push(started.elapsed());
    }
    let slow = took[9];
    assert!(
        slow >= Duration::from_secs(2),
        "the 10th failure is answered slowly: {slow:?}"
    );
    // PROTOCOL.md §8.3: past the free failures the answer waits
    // FAILURE_DELAY, doubling with each failure up to the cap, so no answer
    // comes sooner than its delay and each comes later than the one before.
    let mut delay = Duration::ZERO;
    for (i, t) in took.iter().enumerate().skip(FREE_FAILURES as usize) {
        delay = match delay.is_zero() {
            true => FAILURE_DELAY,
            false => (delay * 2).min(MAX_FAILURE_DELAY),
        };
        assert!(*t >= delay, "failure {} after {t:?}: {took:?}", i + 1);
    }
    let delayed = &took[FREE_FAILURES as usize..];
    assert!(
        delayed.windows(2).all(|w| w[1] > w[0]),
        "each failure is answered later than the one before: {took:?}"
    );
    let err = Client::connect(cfg.clone()).await.err().expect("locked");
    assert!(
        matches!(&err, ConnectError::Auth { code: ErrorCode::Throttled, message } if message.contains("try again in")),
        "{err:?}"
    );
    let err = Client::connect(relay.config("victim"))
        .await
        .err()
        .expect("locked even with the right password");
    assert!(
        matches!(
            err,
            ConnectError::Auth {
                code: ErrorCode::Throttled,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(relay.log().contains("login locked"), "the lock is logged");
    // Others are not affected.
    relay
        .register("bystander")
        .await
        .client
        .ping()
        .await
        .unwrap();
}

/// Logs in as an existing `user` over a raw connection.
async fn raw_login(relay: &Relay, user: &str) -> (Raw, ServerFrame) {
    let mut raw = Raw::open(relay).await;
    raw.hello().await;
    raw.frame(&ClientFrame::Login {
        req: 1,
        user: user.into(),
        password: PASSWORD.into(),
    })
    .await;
    let reply = raw.reply().await;
    (raw, reply)
}

#[tokio::test]
async fn the_sessions_of_one_account_share_its_limits_and_are_capped() {
    let mut relay = Relay::start_with(&["--rate-limit", "10", "--max-sessions-per-user", "4"], &[]);
    let (alice, mut bob) = bystanders(&relay).await;
    let mut sessions = vec![Raw::logged_in(&relay, "flood").await];
    for _ in 1..4 {
        let (raw, reply) = raw_login(&relay, "flood").await;
        assert!(matches!(reply, ServerFrame::LoggedIn { .. }), "{reply:?}");
        sessions.push(raw);
    }
    let (mut fifth, reply) = raw_login(&relay, "flood").await;
    match reply {
        ServerFrame::Error {
            req: 1,
            code: ErrorCode::TooManyConnections,
            message,
        } => assert!(message.contains("close one"), "{message}"),
        other => panic!("a fifth session: {other:?}"),
    }
    fifth.ping(2).await;

    // 4 sessions × 50 sends at once: one account's burst (20) in all.
    for (n, raw) in sessions.iter_mut().enumerate() {
        let mut bytes = Vec::new();
        for i in 0..50u32 {
            let req = 1000 + i;
            let mut id: MsgId = [n as u8 + 1; 16];
            id[..4].copy_from_slice(&req.to_be_bytes());
            bytes.extend_from_slice(&codec::encode(&ClientFrame::Send {
                req,
                room: "lobby".into(),
                id,
                body: format!("flood {n}/{i}"),
            }));
        }
        raw.write(&bytes).await;
    }
    let mut acks = 0;
    for raw in &mut sessions {
        for _ in 0..50 {
            match raw.reply().await {
                ServerFrame::Ack { .. } => acks += 1,
                ServerFrame::Error {
                    code: ErrorCode::RateLimited,
                    ..
                } => {}
                other => panic!("expected Ack or RateLimited, got {other:?}"),
            }
        }
    }
    // Refill is 1 token per 100 ms: the slack covers a slow relay.
    assert!((20..=26).contains(&acks), "{acks} of 200 stored");
    assert_still_serving(&mut relay, &alice, &mut bob, "a flood from 4 sessions").await;

    // A session ending gives its place back.
    drop(sessions.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_raw, reply) = raw_login(&relay, "flood").await;
        match reply {
            ServerFrame::LoggedIn { .. } => break,
            ServerFrame::Error {
                code: ErrorCode::TooManyConnections,
                ..
            } if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("after one left: {other:?}"),
        }
    }
}

/// Guesses at one account from many addresses share one budget
/// (PROTOCOL.md §8.3): each address stays far under its own limit, yet
/// once the account has taken its failures, a guess from yet another
/// address is refused unchecked, while the owner still logs in from the
/// address she registered from.
#[tokio::test]
async fn guesses_from_many_addresses_share_the_account_budget() {
    let mut relay = Relay::start();
    let (alice, mut bob) = bystanders(&relay).await;
    relay.register("victim").await.client.close().await;
    let login = |req, password: &str| ClientFrame::Login {
        req,
        user: "victim".into(),
        password: password.into(),
    };
    let from = |i: u8| std::net::Ipv4Addr::new(127, 0, 0, 2 + i);

    let mut answers = Vec::new();
    for i in 0..=ACCOUNT_FAILURES as u8 {
        let mut raw = Raw {
            wire: within("a connection", relay.wire_from(from(i))).await,
        };
        raw.hello().await;
        raw.frame(&login(1, "not the password")).await;
        answers.push(match raw.reply().await {
            ServerFrame::Error { code, message, .. } => (code, message),
            other => panic!("guess from {}: {other:?}", from(i)),
        });
    }
    let (last, checked) = answers.split_last().unwrap();
    assert!(
        checked.iter().all(|(c, _)| *c == ErrorCode::BadCredentials),
        "{checked:?}"
    );
    assert_eq!(last.0, ErrorCode::Throttled, "{last:?}");
    assert!(last.1.contains("try again in"), "{last:?}");

    // The right password from a new address is refused unchecked too ...
    let mut stranger = Raw {
        wire: relay
            .wire_from(std::net::Ipv4Addr::new(127, 0, 0, 200))
            .await,
    };
    stranger.hello().await;
    stranger.frame(&login(1, PASSWORD)).await;
    stranger.error(ErrorCode::Throttled).await;
    // ... but the owner's own address is not held by the account budget.
    let mut owner = Raw {
        wire: relay.wire_from(std::net::Ipv4Addr::LOCALHOST).await,
    };
    owner.hello().await;
    owner.frame(&login(1, PASSWORD)).await;
    match owner.reply().await {
        ServerFrame::LoggedIn { user, .. } => assert_eq!(user, "victim"),
        other => panic!("the owner from home: {other:?}"),
    }
    assert!(relay.log().contains("are refused for now"), "logged");
    assert_still_serving(&mut relay, &alice, &mut bob, "guesses from many addresses").await;
}
