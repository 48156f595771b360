//! The pre-login core fed frames directly: the handshake's order, every
//! refusal of `Register` and `Login` in the order PROTOCOL §8.2 gives, and
//! the throttle's delays and lockout (§8.3) in virtual time.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::frame::{ClientFrame, ErrorCode, ServerFrame, PROTOCOL_VERSION};

use super::*;
use crate::config::Config;
use crate::defaults::{FAILURE_DELAY, LOCKOUT, LOCK_AFTER, MAX_FAILURE_DELAY};
use crate::testing::TestRelay;

const ADDR: &str = "192.0.2.7";

fn hello() -> ClientFrame {
    ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        client: "test".into(),
    }
}

fn login_as(user: &str, password: &str) -> ClientFrame {
    ClientFrame::Login {
        req: 3,
        user: user.into(),
        password: password.into(),
    }
}

fn register(user: &str, password: &str) -> ClientFrame {
    ClientFrame::Register {
        req: 4,
        user: user.into(),
        password: password.into(),
    }
}

fn code(step: &Step) -> Option<ErrorCode> {
    match step {
        Step::Reply(ServerFrame::Error { code, .. })
        | Step::ReplyAfter(_, ServerFrame::Error { code, .. })
        | Step::Close(_, Some(ServerFrame::Error { code, .. })) => Some(*code),
        _ => None,
    }
}

async fn relay_with_alice(cfg: Config) -> TestRelay {
    let t = TestRelay::new(cfg);
    let phc = crate::auth::hash_password("correct horse");
    t.users(&["Alice"], &phc).await;
    t
}

async fn greeted<S: Store>(relay: &Relay<S>) -> Login<'_, S> {
    let mut login = Login::new(relay, ADDR.parse().unwrap());
    let step = login.handle(hello(), Instant::now()).await;
    assert!(
        matches!(step, Step::Reply(ServerFrame::Welcome { .. })),
        "{step:?}"
    );
    login
}

#[tokio::test]
async fn the_first_frame_must_be_hello_in_the_right_version() {
    let t = TestRelay::new(Config::default());
    let now = Instant::now();
    let addr: IpAddr = ADDR.parse().unwrap();
    #[rustfmt::skip]
    let cases: Vec<(&str, ClientFrame, Exit, Option<ErrorCode>)> = vec![
        (
            "ping first",
            ClientFrame::Ping { req: 1 },
            Exit::Protocol,
            Some(ErrorCode::Unexpected),
        ),
        (
            "login first",
            login_as("alice", "correct horse"),
            Exit::Protocol,
            Some(ErrorCode::Unexpected),
        ),
        ("bye first", ClientFrame::Bye, Exit::Normal, None),
        (
            "another version",
            ClientFrame::Hello {
                version: PROTOCOL_VERSION + 1,
                client: "x".into(),
            },
            Exit::Version,
            Some(ErrorCode::VersionMismatch),
        ),
        (
            "a client name over the limit",
            ClientFrame::Hello {
                version: PROTOCOL_VERSION,
                client: "x".repeat(MAX_CLIENT_NAME + 1),
            },
            Exit::Protocol,
            Some(ErrorCode::Malformed),
        ),
    ];
    for (what, frame, exit, want) in cases {
        let step = Login::new(&*t.relay, addr).handle(frame, now).await;
        let Step::Close(got, _) = &step else {
            panic!("{what}: closes, got {step:?}");
        };
        assert_eq!((*got, code(&step)), (exit, want), "{what}");
    }
    let ServerFrame::Error { req, .. } = unexpected_req(&t, addr).await else {
        panic!("an error");
    };
    assert_eq!(req, 1, "Unexpected echoes the request");
}

async fn unexpected_req(t: &TestRelay, addr: IpAddr) -> ServerFrame {
    match Login::new(&*t.relay, addr)
        .handle(ClientFrame::Ping { req: 1 }, Instant::now())
        .await
    {
        Step::Close(_, Some(frame)) => frame,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn after_hello_only_register_login_ping_and_bye() {
    let t = TestRelay::new(Config::default());
    let now = Instant::now();
    let mut login = greeted(&t.relay).await;
    assert_eq!(
        login.handle(ClientFrame::Ping { req: 9 }, now).await,
        Step::Reply(ServerFrame::Pong { req: 9 })
    );
    for frame in [hello(), ClientFrame::ListRooms { req: 2 }] {
        let mut login = greeted(&t.relay).await;
        let step = login.handle(frame.clone(), now).await;
        assert!(
            matches!(step, Step::Close(Exit::Protocol, _)),
            "{frame:?}: {step:?}"
        );
        assert_eq!(code(&step), Some(ErrorCode::Unexpected), "{frame:?}");
    }
    assert_eq!(
        login.handle(ClientFrame::Bye, now).await,
        Step::Close(Exit::Normal, None)
    );
}

#[tokio::test]
async fn register_checks_in_order_and_logs_in_under_the_name_given() {
    let t = relay_with_alice(Config::default()).await;
    let now = Instant::now();
    #[rustfmt::skip]
    let cases: Vec<(&str, ClientFrame, ErrorCode)> = vec![
        (
            "bad name and bad password",
            register("no spaces", "short"),
            ErrorCode::InvalidName,
        ),
        (
            "bad password",
            register("bob", "short"),
            ErrorCode::BadPassword,
        ),
        (
            "password over the limit",
            register("bob", &"p".repeat(MAX_PASSWORD + 1)),
            ErrorCode::BadPassword,
        ),
        (
            "taken in another case",
            register("ALICE", "a fine password"),
            ErrorCode::NameTaken,
        ),
    ];
    let mut login = greeted(&t.relay).await;
    for (what, frame, want) in cases {
        let step = login.handle(frame, now).await;
        assert!(
            matches!(step, Step::Reply(_)),
            "{what}: the connection stays, got {step:?}"
        );
        assert_eq!(code(&step), Some(want), "{what}");
    }
    let step = login.handle(register("Bob", "a fine password"), now).await;
    let Step::LoggedIn(account, frame) = step else {
        panic!("logged in: {step:?}");
    };
    assert_eq!(
        frame,
        ServerFrame::LoggedIn {
            req: 4,
            user: "Bob".into()
        }
    );
    let stored = t.relay.store.user("bob").await.unwrap().unwrap();
    assert_eq!(
        account,
        Account {
            name: "Bob".into(),
            phc: stored.phc
        }
    );

    let closed = TestRelay::new(Config {
        registration_open: false,
        ..Config::default()
    });
    let mut login = greeted(&closed.relay).await;
    let step = login.handle(register("no spaces", "short"), now).await;
    assert_eq!(
        code(&step),
        Some(ErrorCode::RegistrationClosed),
        "checked first"
    );
    let ServerFrame::Welcome {
        registration_open, ..
    } = welcome(&closed).await
    else {
        unreachable!()
    };
    assert!(!registration_open, "Welcome says so");
}

fn looks_like(name: &str, existing: &str) -> Step {
    Step::Reply(ServerFrame::Error {
        req: 4,
        code: ErrorCode::NameTaken,
        message: format!(
            "the name {name:?} looks like an existing user's ({existing:?}); choose another"
        ),
    })
}

#[tokio::test]
async fn a_name_that_looks_like_another_is_taken_before_the_hourly_allowance_is_asked() {
    let t = relay_with_alice(Config {
        registrations_per_hour: 1,
        ..Config::default()
    })
    .await;
    let now = Instant::now();
    let mut login = greeted(&t.relay).await;
    let step = login.handle(register("bob", "a fine password"), now).await;
    assert!(matches!(step, Step::LoggedIn(..)), "{step:?}");
    // The network's allowance is used up now, so only a refusal made
    // before it is asked for can still say NameTaken.
    let mut login = greeted(&t.relay).await;
    for name in ["aIice", "AL1CE", "a1ice"] {
        let step = login.handle(register(name, "a fine password"), now).await;
        assert_eq!(step, looks_like(name, "Alice"));
    }
    let step = login.handle(register("B0B", "a fine password"), now).await;
    assert_eq!(step, looks_like("B0B", "bob"));
    let step = login
        .handle(register("carol", "a fine password"), now)
        .await;
    assert_eq!(code(&step), Some(ErrorCode::Throttled), "{step:?}");
}

#[tokio::test]
async fn of_two_lookalikes_registering_at_once_one_is_made_and_the_other_told_why() {
    let t = TestRelay::new(Config::default());
    let now = Instant::now();
    let (mut first, mut second) = (greeted(&t.relay).await, greeted(&t.relay).await);
    // Both pass the early checks while their passwords are hashed; the
    // store's own check, where the account is written, decides.
    let (a, b) = tokio::join!(
        first.handle(register("mallory", "a fine password"), now),
        second.handle(register("rnaIlory", "a fine password"), now),
    );
    match (&a, &b) {
        (Step::LoggedIn(..), refused) => assert_eq!(refused, &looks_like("rnaIlory", "mallory")),
        (refused, Step::LoggedIn(..)) => assert_eq!(refused, &looks_like("mallory", "rnaIlory")),
        other => panic!("one account: {other:?}"),
    }
    assert_eq!(t.relay.store.list_users().await.unwrap().len(), 1);
}

async fn welcome(t: &TestRelay) -> ServerFrame {
    let mut login = Login::new(&*t.relay, ADDR.parse().unwrap());
    match login.handle(hello(), Instant::now()).await {
        Step::Reply(frame) => frame,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn login_ignores_case_and_answers_with_the_name_as_registered() {
    let t = relay_with_alice(Config::default()).await;
    let mut login = greeted(&t.relay).await;
    let step = login
        .handle(login_as("alice", "correct horse"), Instant::now())
        .await;
    let Step::LoggedIn(account, frame) = step else {
        panic!("logged in: {step:?}");
    };
    assert_eq!(
        frame,
        ServerFrame::LoggedIn {
            req: 3,
            user: "Alice".into()
        }
    );
    let stored = t.relay.store.user("alice").await.unwrap().unwrap();
    assert_eq!(
        account,
        Account {
            name: "Alice".into(),
            phc: stored.phc
        },
        "the hash checked is the session's credential"
    );
}

#[tokio::test]
async fn wrong_passwords_and_unknown_names_are_the_same_refusal() {
    let t = relay_with_alice(Config::default()).await;
    let now = Instant::now();
    let mut login = greeted(&t.relay).await;
    let wrong = login.handle(login_as("alice", "wrong horse"), now).await;
    let unknown = login.handle(login_as("nobody", "correct horse"), now).await;
    let invalid = login
        .handle(login_as("no spaces", "correct horse"), now)
        .await;
    assert_eq!(wrong, unknown, "no telling which names exist");
    assert_eq!(wrong, invalid);
    assert_eq!(code(&wrong), Some(ErrorCode::BadCredentials));
}

#[tokio::test]
async fn failed_logins_are_answered_later_and_later_then_locked_out() {
    let t = relay_with_alice(Config::default()).await;
    let t0 = Instant::now();
    let mut login = greeted(&t.relay).await;
    let mut delays = Vec::new();
    for _ in 0..LOCK_AFTER {
        let step = login.handle(login_as("alice", "wrong horse"), t0).await;
        assert_eq!(code(&step), Some(ErrorCode::BadCredentials));
        delays.push(match step {
            Step::ReplyAfter(delay, _) => delay,
            _ => Duration::ZERO,
        });
    }
    let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
    assert_eq!(
        ms,
        [0, 0, 0, 0, 0, 250, 500, 1000, 2000, 4000],
        "PROTOCOL §8.3"
    );
    assert_eq!(delays[5], FAILURE_DELAY);
    assert!(delays.iter().all(|d| *d <= MAX_FAILURE_DELAY));

    let locked = login.handle(login_as("alice", "correct horse"), t0).await;
    let Step::Reply(ServerFrame::Error {
        code: refused,
        message,
        ..
    }) = &locked
    else {
        panic!("refused at once, got {locked:?}");
    };
    assert_eq!(*refused, ErrorCode::Throttled, "even the right password");
    assert!(
        message.contains("try again in 301 s"),
        "rounded up: {message}"
    );

    let mut elsewhere = Login::new(&*t.relay, "192.0.2.8".parse().unwrap());
    elsewhere.handle(hello(), t0).await;
    let step = elsewhere
        .handle(login_as("alice", "correct horse"), t0)
        .await;
    assert!(matches!(step, Step::LoggedIn(..)), "per address: {step:?}");

    let later = t0 + LOCKOUT;
    let step = login
        .handle(login_as("alice", "correct horse"), later)
        .await;
    assert!(
        matches!(step, Step::LoggedIn(..)),
        "the lock ends: {step:?}"
    );
    let step = login.handle(login_as("alice", "wrong horse"), later).await;
    assert_eq!(code(&step), Some(ErrorCode::BadCredentials));
    assert!(
        matches!(step, Step::Reply(_)),
        "a good login cleared the count"
    );
}

#[tokio::test]
async fn the_deadline_and_unreadable_frames_close_with_their_codes() {
    let t = TestRelay::new(Config::default());
    let login = Login::new(&*t.relay, ADDR.parse().unwrap());
    let step = login.timed_out();
    assert_eq!(code(&step), Some(ErrorCode::LoginTimeout));
    assert!(matches!(step, Step::Close(Exit::LoginTimeout, _)));
    let step = login.hello_timed_out();
    assert_eq!(code(&step), Some(ErrorCode::LoginTimeout));
    assert!(matches!(step, Step::Close(Exit::LoginTimeout, _)));
    let e = common::codec::FrameError::TooLarge {
        len: 1 << 20,
        max: 1 << 16,
    };
    let step = login.bad_frame(&e);
    assert_eq!(code(&step), Some(ErrorCode::FrameTooLarge));
    assert!(matches!(step, Step::Close(Exit::Protocol, _)));
    assert_eq!(Exit::Version.code().0, common::frame::close::VERSION);
    assert_eq!(
        Exit::LoginTimeout.code().0,
        common::frame::close::LOGIN_TIMEOUT
    );
    assert_eq!(Exit::Protocol.code().0, common::frame::close::PROTOCOL);
    assert_eq!(Exit::Busy.code().0, common::frame::close::BUSY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_logging_in_at_once_are_not_locked_out() {
    let t = relay_with_alice(Config::default()).await;
    let now = Instant::now();
    let attempts = (0..16).map(|_| async {
        let mut login = greeted(&t.relay).await;
        login.handle(login_as("alice", "correct horse"), now).await
    });
    let steps = futures_util::future::join_all(attempts).await;
    for step in &steps {
        assert!(matches!(step, Step::LoggedIn(..)), "{step:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_at_once_still_stop_at_the_lockout() {
    let t = relay_with_alice(Config::default()).await;
    let now = Instant::now();
    let attempts = (0..25).map(|_| async {
        let mut login = greeted(&t.relay).await;
        code(&login.handle(login_as("alice", "wrong horse"), now).await)
    });
    let codes = futures_util::future::join_all(attempts).await;
    let count = |c| codes.iter().filter(|&&x| x == Some(c)).count() as u32;
    assert_eq!(count(ErrorCode::BadCredentials), LOCK_AFTER, "{codes:?}");
    assert_eq!(count(ErrorCode::Throttled), 25 - LOCK_AFTER);
}

#[tokio::test]
async fn a_full_account_is_refused_but_only_to_whoever_knows_its_password() {
    let t = relay_with_alice(Config {
        max_sessions_per_user: 1,
        ..Config::default()
    })
    .await;
    let now = Instant::now();
    let _seat = t.relay.accounts.seat("Alice", now).expect("one seat");
    let mut login = greeted(&t.relay).await;
    let step = login.handle(login_as("alice", "wrong horse"), now).await;
    assert_eq!(code(&step), Some(ErrorCode::BadCredentials));
    let step = login.handle(login_as("alice", "correct horse"), now).await;
    assert_eq!(code(&step), Some(ErrorCode::TooManyConnections), "{step:?}");
    assert!(
        matches!(step, Step::Reply(_)),
        "the connection stays: {step:?}"
    );
}

/// Guesses from 100 addresses, each trying once every 5 s for five
/// minutes: together they get the account's budget of failures, then a
/// few guesses a minute, while the owner still logs in from where she did
/// before.
#[tokio::test]
async fn a_guesser_with_many_addresses_gets_a_few_guesses_a_minute() {
    use crate::defaults::{ACCOUNT_FAILURES, ACCOUNT_REFILL};
    let t = relay_with_alice(Config::default()).await;
    let t0 = Instant::now();
    let home: IpAddr = "198.51.100.1".parse().unwrap();
    let mut owner = Login::new(&*t.relay, home);
    owner.handle(hello(), t0).await;
    let step = owner.handle(login_as("alice", "correct horse"), t0).await;
    assert!(matches!(step, Step::LoggedIn(..)), "{step:?}");

    let mut checked_per_minute = [0u32; 5];
    for tick in 0..60 {
        let now = t0 + Duration::from_secs(5 * tick);
        for i in 0..100u32 {
            let from = IpAddr::V4(std::net::Ipv4Addr::from(0xcb00_7100 + i));
            let mut guesser = Login::new(&*t.relay, from);
            guesser.handle(hello(), now).await;
            let step = guesser.handle(login_as("alice", "wrong horse"), now).await;
            match code(&step) {
                Some(ErrorCode::BadCredentials) => checked_per_minute[tick as usize / 12] += 1,
                Some(ErrorCode::Throttled) => {}
                other => panic!("{other:?}"),
            }
        }
    }
    let per_refill = (Duration::from_secs(60).as_secs_f64() / ACCOUNT_REFILL.as_secs_f64()) as u32;
    assert!(
        checked_per_minute[0] <= ACCOUNT_FAILURES + per_refill + 1,
        "{checked_per_minute:?}"
    );
    for minute in &checked_per_minute[1..] {
        assert!(*minute <= per_refill + 1, "{checked_per_minute:?}");
    }

    // Right after the last round of guesses.
    let end = t0 + Duration::from_secs(5 * 59);
    let mut owner = Login::new(&*t.relay, home);
    owner.handle(hello(), end).await;
    let step = owner.handle(login_as("alice", "correct horse"), end).await;
    assert!(matches!(step, Step::LoggedIn(..)), "from home: {step:?}");

    let mut travelling = Login::new(&*t.relay, "203.0.113.250".parse().unwrap());
    travelling.handle(hello(), end).await;
    let step = travelling
        .handle(login_as("alice", "correct horse"), end)
        .await;
    let Step::Reply(ServerFrame::Error { code, message, .. }) = &step else {
        panic!("refused before the check, got {step:?}");
    };
    assert_eq!(*code, ErrorCode::Throttled);
    assert!(message.contains("not used from"), "{message}");
}

#[tokio::test]
async fn a_network_registers_a_few_accounts_an_hour_and_loopback_any() {
    let t = TestRelay::new(Config {
        registrations_per_hour: 3,
        ..Config::default()
    });
    let now = Instant::now();
    let mut codes = Vec::new();
    for n in 0..5 {
        let mut login = greeted(&t.relay).await;
        let step = login
            .handle(register(&format!("user{n}"), "a fine password"), now)
            .await;
        codes.push(code(&step));
        if n == 0 {
            // A taken name uses nothing up.
            let mut again = greeted(&t.relay).await;
            let step = again
                .handle(register("USER0", "a fine password"), now)
                .await;
            assert_eq!(code(&step), Some(ErrorCode::NameTaken));
        }
    }
    assert_eq!(
        codes,
        [
            None,
            None,
            None,
            Some(ErrorCode::Throttled),
            Some(ErrorCode::Throttled)
        ]
    );
    let mut other = Login::new(&*t.relay, "192.0.2.99".parse().unwrap());
    other.handle(hello(), now).await;
    let step = other
        .handle(register("elsewhere", "a fine password"), now)
        .await;
    assert!(
        matches!(step, Step::LoggedIn(..)),
        "another network: {step:?}"
    );
    let later = now + Duration::from_secs(1200);
    let mut login = greeted(&t.relay).await;
    let step = login
        .handle(register("later", "a fine password"), later)
        .await;
    assert!(
        matches!(step, Step::LoggedIn(..)),
        "one back after 20 min: {step:?}"
    );
    for n in 0..10 {
        let mut local = Login::new(&*t.relay, "127.0.0.1".parse().unwrap());
        local.handle(hello(), now).await;
        let step = local
            .handle(register(&format!("bot{n}"), "a fine password"), now)
            .await;
        assert!(matches!(step, Step::LoggedIn(..)), "loopback: {step:?}");
    }
}
