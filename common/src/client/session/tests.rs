//! Every rule of the session in virtual time: `now` is a value the tests
//! move forward, and nothing here opens a socket or needs a runtime.

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::oneshot::{self, error::TryRecvError};

use super::*;
use crate::frame::{Invitation, Message, Presence, RoomInfo, RoomKind};
use crate::trust::TrustMode;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

type SendReply = oneshot::Receiver<Result<Acked, RequestError>>;
type RequestReply = oneshot::Receiver<Result<ServerFrame, RequestError>>;

/// A session and the virtual time and chance it is fed.
struct Test {
    s: Session,
    now: Instant,
    rng: StdRng,
}

impl Test {
    /// A session over `servers`, logged in at the first, with its login's
    /// frames and events taken.
    fn new(servers: &str) -> Test {
        let cfg = Config::new(servers, TrustMode::Roots, "alice", "pw");
        let relays = RelayList::parse(&cfg.server).unwrap();
        let mut t = Test {
            s: Session::new(&cfg, relays),
            now: Instant::now(),
            rng: StdRng::seed_from_u64(1),
        };
        t.s.connected(0, "alice".into(), t.now);
        t.frames();
        t.events();
        t
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.s.timeout(self.now);
    }

    fn frames(&mut self) -> Vec<ClientFrame> {
        std::iter::from_fn(|| self.s.poll_transmit()).collect()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.s.poll_event()).collect()
    }

    fn send(&mut self, room: &str, body: &str) -> SendReply {
        let (reply, rx) = oneshot::channel();
        let command = Command::Send {
            room: room.into(),
            body: body.into(),
            reply,
        };
        self.s.command(command, self.now, &mut self.rng);
        rx
    }

    fn request(&mut self, frame: ClientFrame) -> RequestReply {
        let (reply, rx) = oneshot::channel();
        self.s
            .command(Command::Request { frame, reply }, self.now, &mut self.rng);
        rx
    }

    fn reply(&mut self, frame: ServerFrame) {
        self.s.frame(frame, self.now, &mut self.rng);
    }

    fn lose(&mut self, reason: &str) {
        self.s.lost(reason.into(), self.now, &mut self.rng);
    }

    fn fail_round(&mut self, e: ConnectError) {
        self.s.connect_failed(e, self.now, &mut self.rng);
    }

    /// Waits out the backoff; the session then wants a round of attempts.
    fn wait_out_backoff(&mut self) {
        let Phase::Waiting { until } = self.s.phase() else {
            panic!("not waiting: {:?}", self.s.phase());
        };
        self.advance(until - self.now);
        assert_eq!(self.s.phase(), Phase::Dialing);
    }

    /// Waits out the backoff and logs in at `addrs()[at]`; returns the
    /// frames of the login.
    fn reconnect_at(&mut self, at: usize) -> Vec<ClientFrame> {
        self.wait_out_backoff();
        self.s.connected(at, "alice".into(), self.now);
        self.frames()
    }
}

/// The `(req, id, body)` of every `Send` among `frames`.
fn sends(frames: &[ClientFrame]) -> Vec<(RequestId, MsgId, String)> {
    frames
        .iter()
        .filter_map(|f| match f {
            ClientFrame::Send { req, id, body, .. } => Some((*req, *id, body.clone())),
            _ => None,
        })
        .collect()
}

fn only_send(frames: &[ClientFrame]) -> (RequestId, MsgId) {
    match sends(frames)[..] {
        [(req, id, _)] => (req, id),
        _ => panic!("not one send: {frames:?}"),
    }
}

fn ack(req: RequestId, id: MsgId, seq: u64) -> ServerFrame {
    ServerFrame::Ack {
        req,
        room: "lobby".into(),
        id,
        seq,
        ts: 1000 + seq as i64,
    }
}

fn error(req: RequestId, code: ErrorCode) -> ServerFrame {
    ServerFrame::Error {
        req,
        code,
        message: format!("{code:?}"),
    }
}

fn reconnecting(events: &[Event]) -> (u32, Duration, String, Option<String>, String) {
    match events {
        [Event::Reconnecting {
            attempt,
            delay,
            reason,
            lost,
            next,
        }] => (*attempt, *delay, reason.clone(), lost.clone(), next.clone()),
        other => panic!("not one Reconnecting: {other:?}"),
    }
}

fn unreachable() -> ConnectError {
    ConnectError::Unreachable("no answer".into())
}

fn msg(room: &str, seq: u64) -> Message {
    Message {
        room: room.into(),
        seq,
        id: [seq as u8; 16],
        ts: 0,
        from: "bob".into(),
        body: format!("{seq}"),
    }
}

fn info(name: &str) -> RoomInfo {
    RoomInfo {
        name: name.into(),
        kind: RoomKind::Public,
        members: 2,
        latest: 0,
        topic: String::new(),
    }
}

// Login.

#[test]
fn a_login_announces_the_relay_and_asks_for_the_room_list() {
    let cfg = Config::new("a,b", TrustMode::Roots, "alice", "pw");
    let mut s = Session::new(&cfg, RelayList::parse(&cfg.server).unwrap());
    s.connected(1, "Alice".into(), Instant::now());
    assert!(matches!(
        s.poll_event(),
        Some(Event::Connected { user, server }) if user == "Alice" && server == "b:4433"
    ));
    assert!(matches!(
        s.poll_transmit(),
        Some(ClientFrame::ListRooms { req: 2 })
    ));
    assert!(s.poll_transmit().is_none());
    assert_eq!(s.relays().next(), "b:4433", "a reconnect starts there");
}

// The pending table.

#[test]
fn a_send_is_written_at_once_while_connected() {
    let mut t = Test::new("a");
    let mut rx = t.send("lobby", "hi");
    let frames = t.frames();
    let [ClientFrame::Send { room, body, .. }] = &frames[..] else {
        panic!("{frames:?}");
    };
    assert_eq!((room.as_str(), body.as_str()), ("lobby", "hi"));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn an_ack_resolves_the_send_and_it_is_not_sent_again() {
    let mut t = Test::new("a");
    let mut rx = t.send("lobby", "hi");
    let (req, id) = only_send(&t.frames());
    t.reply(ack(req, id, 7));
    assert_eq!(rx.try_recv(), Ok(Ok(Acked { seq: 7, ts: 1007 })));
    t.lose("gone");
    assert!(sends(&t.reconnect_at(0)).is_empty());
}

#[test]
fn a_send_keeps_its_id_when_resent_after_a_reconnect() {
    let mut t = Test::new("a");
    let mut rx = t.send("lobby", "hi");
    let (req, id) = only_send(&t.frames());
    t.lose("gone");
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "still pending");
    let frames = t.reconnect_at(0);
    assert!(matches!(frames[0], ClientFrame::ListRooms { .. }));
    let (again, same) = only_send(&frames[1..]);
    assert_eq!(same, id);
    assert_ne!(again, req, "a new request on the new connection");
    t.reply(ack(again, id, 3));
    assert_eq!(rx.try_recv(), Ok(Ok(Acked { seq: 3, ts: 1003 })));
}

#[test]
fn resends_go_out_in_the_order_sent() {
    let mut t = Test::new("a");
    let _rxs: Vec<SendReply> = (0..20).map(|i| t.send("lobby", &i.to_string())).collect();
    let first: Vec<(MsgId, String)> = sends(&t.frames())
        .into_iter()
        .map(|(_, id, b)| (id, b))
        .collect();
    t.lose("gone");
    let again: Vec<(MsgId, String)> = sends(&t.reconnect_at(0))
        .into_iter()
        .map(|(_, id, b)| (id, b))
        .collect();
    assert_eq!(again, first);
}

#[test]
fn sends_made_while_disconnected_wait_for_the_login() {
    let mut t = Test::new("a");
    t.lose("gone");
    let mut rx = t.send("lobby", "queued");
    assert!(t.frames().is_empty());
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    let frames = t.reconnect_at(0);
    assert_eq!(sends(&frames).len(), 1);
    assert_eq!(sends(&frames)[0].2, "queued");
}

#[test]
fn frames_not_yet_written_die_with_their_connection() {
    let mut t = Test::new("a");
    let _rx = t.send("lobby", "hi");
    t.lose("gone");
    assert!(t.frames().is_empty());
    assert_eq!(sends(&t.reconnect_at(0)).len(), 1, "sent once, not twice");
}

#[test]
fn a_refused_send_fails_with_the_relay_s_error_and_is_forgotten() {
    let mut t = Test::new("a");
    let mut rx = t.send("lobby", "hi");
    let (req, _) = only_send(&t.frames());
    t.reply(error(req, ErrorCode::NotMember));
    assert_eq!(
        rx.try_recv(),
        Ok(Err(RequestError::Refused {
            code: ErrorCode::NotMember,
            message: "NotMember".into()
        }))
    );
    t.lose("gone");
    assert!(sends(&t.reconnect_at(0)).is_empty());
}

#[test]
fn a_rate_limited_send_is_resent_after_a_second_and_not_before() {
    let mut t = Test::new("a");
    let mut rx = t.send("lobby", "hi");
    let (req, id) = only_send(&t.frames());
    t.reply(error(req, ErrorCode::RateLimited));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "not failed");
    assert_eq!(t.s.poll_timeout(), Some(t.now + RATE_LIMIT_RETRY));
    t.advance(RATE_LIMIT_RETRY - MS);
    assert!(t.frames().is_empty());
    t.advance(MS);
    let (again, same) = only_send(&t.frames());
    assert_eq!((same, again != req), (id, true));
    assert_eq!(t.s.poll_timeout(), None, "resent once");
    t.advance(10 * SEC);
    assert!(t.frames().is_empty());
}

#[test]
fn a_send_made_while_others_wait_out_the_rate_limit_goes_after_them() {
    let mut t = Test::new("a");
    let _first = t.send("lobby", "1");
    let _second = t.send("lobby", "2");
    let written = sends(&t.frames());
    assert_eq!(written.len(), 2);
    t.reply(error(written[0].0, ErrorCode::RateLimited));
    t.advance(100 * MS);
    t.reply(error(written[1].0, ErrorCode::RateLimited));
    let _third = t.send("lobby", "3");
    assert!(t.frames().is_empty(), "3 waits behind 1 and 2");
    t.advance(RATE_LIMIT_RETRY - 100 * MS);
    let bodies: Vec<String> = sends(&t.frames()).into_iter().map(|s| s.2).collect();
    assert_eq!(bodies, ["1", "2", "3"], "all together, in the order sent");
    assert_eq!(t.s.poll_timeout(), None);
}

#[test]
fn a_login_resends_rate_limited_sends_at_once() {
    let mut t = Test::new("a");
    let _rx = t.send("lobby", "hi");
    let (req, id) = only_send(&t.frames());
    t.reply(error(req, ErrorCode::RateLimited));
    t.lose("gone");
    assert_eq!(only_send(&t.reconnect_at(0)).1, id);
    assert_eq!(t.s.poll_timeout(), None, "the old wait is over");
}

// Requests.

#[test]
fn a_reply_reaches_the_request_it_answers() {
    let mut t = Test::new("a");
    let mut ping = t.request(ClientFrame::Ping { req: 0 });
    let mut members = t.request(ClientFrame::Members {
        req: 0,
        room: "lobby".into(),
    });
    let reqs: Vec<RequestId> = t.frames().iter().map(ClientFrame::req).collect();
    assert!(reqs.iter().all(|&r| r >= 2), "0 and 1 are taken: {reqs:?}");
    t.reply(ServerFrame::Pong { req: reqs[0] });
    assert_eq!(ping.try_recv(), Ok(Ok(ServerFrame::Pong { req: reqs[0] })));
    assert_eq!(members.try_recv(), Err(TryRecvError::Empty));
    t.reply(error(reqs[1], ErrorCode::NoSuchRoom));
    assert_eq!(
        members.try_recv(),
        Ok(Err(RequestError::Refused {
            code: ErrorCode::NoSuchRoom,
            message: "NoSuchRoom".into()
        }))
    );
}

#[test]
fn request_ids_skip_0_and_1_when_they_wrap() {
    let mut t = Test::new("a");
    t.s.next_req = RequestId::MAX;
    assert_eq!(t.s.req(), RequestId::MAX);
    assert_eq!(t.s.req(), 2);
}

#[test]
fn requests_in_flight_fail_as_not_connected_when_the_connection_is_lost() {
    let mut t = Test::new("a");
    let mut ping = t.request(ClientFrame::Ping { req: 0 });
    let mut sent = t.send("lobby", "hi");
    t.lose("gone");
    assert_eq!(ping.try_recv(), Ok(Err(RequestError::NotConnected)));
    assert_eq!(sent.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn requests_while_reconnecting_fail_at_once_and_are_not_sent_later() {
    let mut t = Test::new("a");
    t.lose("gone");
    let mut ping = t.request(ClientFrame::Ping { req: 0 });
    assert_eq!(ping.try_recv(), Ok(Err(RequestError::NotConnected)));
    let frames = t.reconnect_at(0);
    assert!(!frames.iter().any(|f| matches!(f, ClientFrame::Ping { .. })));
}

#[test]
fn a_reply_from_before_a_reconnect_is_not_taken_for_a_new_request() {
    let mut t = Test::new("a");
    let _ping = t.request(ClientFrame::Ping { req: 0 });
    let old = t.frames()[0].req();
    t.lose("gone");
    t.reconnect_at(0);
    let mut ping = t.request(ClientFrame::Ping { req: 0 });
    t.frames();
    t.reply(ServerFrame::Pong { req: old });
    assert_eq!(ping.try_recv(), Err(TryRecvError::Empty));
}

// Connection loss, backoff and relays.

#[test]
fn a_lost_connection_waits_out_the_backoff_then_dials() {
    let mut t = Test::new("a");
    t.lose("the relay stopped answering");
    assert!(matches!(t.s.poll_hangup(), Some(Hangup::Lost)));
    let (attempt, delay, reason, lost, next) = reconnecting(&t.events());
    assert_eq!(attempt, 1);
    assert!((187 * MS..=313 * MS).contains(&delay), "{delay:?}");
    assert_eq!(reason, "the relay stopped answering");
    assert_eq!((lost.as_deref(), next.as_str()), (Some("a:4433"), "a:4433"));
    assert_eq!(t.s.poll_timeout(), Some(t.now + delay));
    t.advance(delay - MS);
    assert!(matches!(t.s.phase(), Phase::Waiting { .. }));
    t.advance(MS);
    assert_eq!(t.s.phase(), Phase::Dialing);
}

#[test]
fn each_failed_round_waits_longer_up_to_the_cap() {
    let mut t = Test::new("a");
    t.lose("gone");
    let mut seen = vec![reconnecting(&t.events())];
    for _ in 0..8 {
        t.wait_out_backoff();
        t.fail_round(unreachable());
        seen.push(reconnecting(&t.events()));
    }
    let attempts: Vec<u32> = seen.iter().map(|r| r.0).collect();
    assert_eq!(attempts, (1..=9).collect::<Vec<_>>());
    let bases = [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000];
    for ((_, delay, ..), base) in seen.iter().zip(bases) {
        let base = base * MS;
        assert!(
            *delay >= base.mul_f64(0.75) && *delay <= base.mul_f64(1.25),
            "{delay:?} for {base:?}"
        );
    }
    assert!(seen[1..]
        .iter()
        .all(|r| r.2 == "no answer" && r.3.is_none()));
}

#[test]
fn the_round_count_starts_over_only_after_30_s_up() {
    let mut t = Test::new("a");
    t.lose("gone");
    assert_eq!(reconnecting(&t.events()).0, 1);
    t.reconnect_at(0);
    t.events();
    t.advance(29 * SEC);
    t.lose("gone");
    assert_eq!(reconnecting(&t.events()).0, 2, "29 s up is not healthy");
    t.reconnect_at(0);
    t.events();
    t.advance(30 * SEC);
    t.lose("gone");
    assert_eq!(reconnecting(&t.events()).0, 1, "30 s up is");
}

#[test]
fn a_relay_that_goes_away_is_tried_last() {
    let mut t = Test::new("a,b,c");
    t.lose("gone");
    let (.., lost, next) = reconnecting(&t.events());
    assert_eq!((lost.as_deref(), next.as_str()), (Some("a:4433"), "b:4433"));
    assert_eq!(t.s.relays().round(), [1, 2, 0]);
    t.wait_out_backoff();
    t.fail_round(unreachable());
    let (.., lost, next) = reconnecting(&t.events());
    assert_eq!((lost, next.as_str()), (None, "c:4433"));
    t.reconnect_at(2);
    assert!(matches!(&t.events()[..], [Event::Connected { server, .. }] if server == "c:4433"));
    t.reply(ServerFrame::Shutdown {
        reason: "relay shutting down".into(),
    });
    let (_, _, reason, lost, next) = reconnecting(&t.events());
    assert_eq!(reason, "relay shutting down");
    assert_eq!((lost.as_deref(), next.as_str()), (Some("c:4433"), "a:4433"));
}

#[test]
fn a_requested_reconnect_starts_at_the_same_relay_and_cuts_the_wait_short() {
    let mut t = Test::new("a,b");
    let mut ping = t.request(ClientFrame::Ping { req: 0 });
    t.s.command(Command::Reconnect, t.now, &mut t.rng);
    assert!(matches!(t.s.poll_hangup(), Some(Hangup::Reconnect)));
    assert_eq!(ping.try_recv(), Ok(Err(RequestError::NotConnected)));
    let (.., reason, lost, next) = reconnecting(&t.events());
    assert_eq!(reason, "reconnect requested");
    assert_eq!((lost.as_deref(), next.as_str()), (Some("a:4433"), "a:4433"));
    t.s.command(Command::Reconnect, t.now, &mut t.rng);
    assert_eq!(t.s.phase(), Phase::Dialing, "no waiting when asked");
}

#[test]
fn a_fatal_error_ends_the_session_and_fails_what_waits() {
    let mut t = Test::new("a");
    let mut sent = t.send("lobby", "hi");
    t.lose("gone");
    t.events();
    t.wait_out_backoff();
    t.fail_round(ConnectError::Auth {
        code: ErrorCode::BadCredentials,
        message: "wrong password".into(),
    });
    assert!(matches!(
        &t.events()[..],
        [Event::Failed(ConnectError::Auth { .. })]
    ));
    assert_eq!(t.s.phase(), Phase::Closed);
    assert_eq!(t.s.poll_timeout(), None);
    assert_eq!(sent.try_recv(), Ok(Err(RequestError::Closed)));
    let mut late = t.send("lobby", "late");
    assert_eq!(late.try_recv(), Ok(Err(RequestError::Closed)));
}

#[test]
fn a_login_lockout_is_waited_out() {
    let mut t = Test::new("a");
    t.lose("gone");
    t.events();
    t.wait_out_backoff();
    t.fail_round(ConnectError::Auth {
        code: ErrorCode::Throttled,
        message: "too many attempts".into(),
    });
    assert_eq!(reconnecting(&t.events()).0, 2);
}

#[test]
fn closing_while_connected_says_bye_and_fails_what_waits() {
    let mut t = Test::new("a");
    let mut sent = t.send("lobby", "hi");
    let mut ping = t.request(ClientFrame::Ping { req: 0 });
    let (done, mut closed) = oneshot::channel();
    t.s.command(Command::Close { done }, t.now, &mut t.rng);
    assert!(t.frames().is_empty());
    let Some(Hangup::Close { bye: true, done }) = t.s.poll_hangup() else {
        panic!("no bye");
    };
    assert_eq!(sent.try_recv(), Ok(Err(RequestError::Closed)));
    assert_eq!(ping.try_recv(), Ok(Err(RequestError::NotConnected)));
    assert_eq!(
        closed.try_recv(),
        Err(TryRecvError::Empty),
        "the driver answers"
    );
    done.unwrap().send(()).unwrap();
    assert_eq!(t.s.phase(), Phase::Closed);
}

#[test]
fn closing_while_reconnecting_has_no_one_to_say_bye_to() {
    let mut t = Test::new("a");
    let mut sent = t.send("lobby", "hi");
    t.lose("gone");
    t.s.poll_hangup();
    let (done, _closed) = oneshot::channel();
    t.s.command(Command::Close { done }, t.now, &mut t.rng);
    assert!(matches!(
        t.s.poll_hangup(),
        Some(Hangup::Close { bye: false, .. })
    ));
    assert_eq!(sent.try_recv(), Ok(Err(RequestError::Closed)));
}

// Rooms.

#[test]
fn the_room_list_catches_rooms_up_and_live_messages_follow_once() {
    let mut t = Test::new("a");
    t.lose("gone");
    let [ClientFrame::ListRooms { req }] = t.reconnect_at(0)[..] else {
        panic!()
    };
    t.events();
    t.reply(ServerFrame::Rooms {
        req,
        joined: vec![info("lobby")],
        public: vec![],
        invited: vec![],
    });
    assert!(matches!(&t.events()[..],
        [Event::Rooms(rooms), Event::Invitations(none)] if *rooms == [info("lobby")] && none.is_empty()));
    let [ClientFrame::History {
        req,
        page: Page::Latest,
        ..
    }] = t.frames()[..]
    else {
        panic!()
    };
    t.reply(ServerFrame::Message(msg("lobby", 2)));
    t.reply(ServerFrame::Message(msg("lobby", 3)));
    assert!(t.events().is_empty(), "held while catching up");
    t.reply(ServerFrame::HistoryPage {
        req,
        room: "lobby".into(),
        messages: vec![msg("lobby", 1), msg("lobby", 2)],
        more: false,
    });
    let events = t.events();
    assert!(matches!(&events[0], Event::Joined { room, recent, .. }
        if room == "lobby" && recent.len() == 2));
    assert!(matches!(&events[1..], [Event::Message(m)] if m.seq == 3));
    t.reply(ServerFrame::Message(msg("lobby", 3)));
    assert!(t.events().is_empty(), "shown once");
}

fn invitation(room: &str, by: &str) -> Invitation {
    Invitation {
        room: RoomInfo {
            kind: RoomKind::Private,
            ..info(room)
        },
        by: by.into(),
    }
}

#[test]
fn an_invitation_is_told_to_the_application_and_the_room_list_hands_it_over() {
    let mut t = Test::new("a");
    let ops = invitation("ops", "bob");
    t.reply(ServerFrame::Invited(ops.clone()));
    assert!(
        matches!(&t.events()[..], [Event::Invited(i)] if *i == ops),
        "an event of its own"
    );
    assert!(t.frames().is_empty(), "nothing joined or asked");

    let mut listed = t.request(ClientFrame::ListRooms { req: 0 });
    let [ClientFrame::ListRooms { req }] = t.frames()[..] else {
        panic!()
    };
    let rooms = ServerFrame::Rooms {
        req,
        joined: vec![info("lobby")],
        public: vec![info("lobby")],
        invited: vec![ops],
    };
    t.reply(rooms.clone());
    assert_eq!(listed.try_recv(), Ok(Ok(rooms)), "handed over whole");
}

#[test]
fn each_login_lists_the_invitations_made_meanwhile_with_those_told_since() {
    let mut t = Test::new("a");
    t.lose("gone");
    let [ClientFrame::ListRooms { req }] = t.reconnect_at(0)[..] else {
        panic!()
    };
    t.events();
    // Told live after the list was read, before it arrived: kept, newest
    // first, once each.
    let (ops, dev, old) = (
        invitation("ops", "bob"),
        invitation("dev", "carol"),
        invitation("old", "dave"),
    );
    t.reply(ServerFrame::Invited(dev.clone()));
    t.reply(ServerFrame::Invited(ops.clone()));
    t.events();
    t.reply(ServerFrame::Rooms {
        req,
        joined: vec![info("lobby")],
        public: vec![],
        invited: vec![dev.clone(), old.clone()],
    });
    let events = t.events();
    let Some(Event::Invitations(list)) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(*list, [ops, dev, old.clone()]);

    // Next login: the list as the relay has it, even when empty.
    t.reply(ServerFrame::Invited(invitation("later", "bob")));
    t.lose("gone");
    let [ClientFrame::ListRooms { req }] = t.reconnect_at(0)[..] else {
        panic!()
    };
    t.events();
    t.reply(ServerFrame::Rooms {
        req,
        joined: vec![info("lobby")],
        public: vec![],
        invited: vec![],
    });
    assert!(matches!(t.events().last(), Some(Event::Invitations(l)) if l.is_empty()));
}

fn topic(room: &str, topic: &str, by: &str) -> ServerFrame {
    ServerFrame::Topic {
        room: room.into(),
        topic: topic.into(),
        by: by.into(),
    }
}

#[test]
fn a_topic_set_is_told_to_the_application_and_changes_nothing_else() {
    let mut t = Test::new("a");
    t.reply(topic("lobby", "say hello", "bob"));
    assert!(
        matches!(&t.events()[..], [Event::Topic { room, topic, by }]
            if room == "lobby" && topic == "say hello" && by == "bob"),
        "an event of its own"
    );
    assert!(t.frames().is_empty(), "nothing fetched or asked");

    let mut set = t.request(ClientFrame::SetTopic {
        req: 0,
        room: "lobby".into(),
        topic: String::new(),
    });
    let [ClientFrame::SetTopic { req, .. }] = t.frames()[..] else {
        panic!()
    };
    t.reply(ServerFrame::Done { req });
    assert_eq!(set.try_recv(), Ok(Ok(ServerFrame::Done { req })));
}

#[test]
fn each_login_lists_the_rooms_with_the_topics_told_since_the_list_was_asked() {
    let mut t = Test::new("a");
    t.lose("gone");
    let [ClientFrame::ListRooms { req }] = t.reconnect_at(0)[..] else {
        panic!()
    };
    t.events();
    // Set after the list was read, told before it arrived: the newer wins.
    t.reply(topic("dev", "builds", "bob"));
    t.reply(topic("dev", "builds and releases", "carol"));
    assert_eq!(t.events().len(), 2, "each told as it came");
    let listed = |name: &str, topic: &str| RoomInfo {
        topic: topic.into(),
        ..info(name)
    };
    t.reply(ServerFrame::Rooms {
        req,
        joined: vec![listed("dev", "builds"), listed("lobby", "say hello")],
        public: vec![],
        invited: vec![],
    });
    let events = t.events();
    let Some(Event::Rooms(rooms)) = events.first() else {
        panic!("{events:?}")
    };
    assert_eq!(
        *rooms,
        [
            listed("dev", "builds and releases"),
            listed("lobby", "say hello")
        ]
    );

    // The next login's list is the relay's, as it comes.
    t.reply(topic("dev", "older news", "bob"));
    t.lose("gone");
    let [ClientFrame::ListRooms { req }] = t.reconnect_at(0)[..] else {
        panic!()
    };
    t.events();
    t.reply(ServerFrame::Rooms {
        req,
        joined: vec![listed("dev", "")],
        public: vec![],
        invited: vec![],
    });
    assert!(matches!(&t.events()[0], Event::Rooms(r) if *r == [listed("dev", "")]));
}

#[test]
fn a_room_gone_during_catch_up_is_left() {
    let mut t = Test::new("a");
    t.reply(ServerFrame::Message(msg("dev", 1)));
    let [ClientFrame::History { req, .. }] = t.frames()[..] else {
        panic!()
    };
    t.reply(error(req, ErrorCode::NotMember));
    assert!(matches!(&t.events()[..], [Event::Left { room }] if room == "dev"));
    assert_eq!(
        t.s.phase(),
        Phase::Up {
            at: 0,
            since: t.now
        }
    );
}

#[test]
fn a_catch_up_the_relay_cannot_answer_starts_over_on_a_new_connection() {
    let mut t = Test::new("a");
    t.reply(ServerFrame::Message(msg("dev", 1)));
    let [ClientFrame::History { req, .. }] = t.frames()[..] else {
        panic!()
    };
    t.reply(error(req, ErrorCode::Unavailable));
    assert!(matches!(t.s.poll_hangup(), Some(Hangup::Lost)));
    let (_, _, reason, ..) = reconnecting(&t.events());
    assert!(
        reason.starts_with("catch-up failed (Unavailable"),
        "{reason}"
    );
}

#[test]
fn own_presence_joins_and_leaves_rooms_and_every_presence_is_shown() {
    let mut t = Test::new("a");
    let presence = |user: &str, kind| {
        ServerFrame::Presence(Presence {
            room: Some("dev".into()),
            user: user.into(),
            kind,
        })
    };
    t.reply(presence("bob", PresenceKind::Joined));
    assert!(t.frames().is_empty(), "someone else's join");
    assert!(matches!(&t.events()[..], [Event::Presence(_)]));
    t.reply(presence("alice", PresenceKind::Joined));
    assert!(matches!(
        &t.frames()[..],
        [ClientFrame::History { page: Page::Latest, room, .. }] if room == "dev"
    ));
    t.events();
    t.reply(presence("alice", PresenceKind::Left));
    let events = t.events();
    assert!(
        matches!(&events[..], [Event::Left { room }, Event::Presence(_)] if room == "dev"),
        "{events:?}"
    );
}

#[test]
fn a_joined_reply_answers_the_request_and_catches_the_room_up() {
    let mut t = Test::new("a");
    let mut join = t.request(ClientFrame::Join {
        req: 0,
        room: "dev".into(),
    });
    let req = t.frames()[0].req();
    let joined = ServerFrame::Joined {
        req,
        room: info("dev"),
    };
    t.reply(joined.clone());
    assert_eq!(join.try_recv(), Ok(Ok(joined)));
    assert!(matches!(
        &t.frames()[..],
        [ClientFrame::History { page: Page::Latest, room, .. }] if room == "dev"
    ));
}

#[test]
fn a_lag_resubscribes_then_pages_from_the_last_delivered() {
    let mut t = Test::new("a");
    t.reply(ServerFrame::Message(msg("dev", 1)));
    let [ClientFrame::History { req, .. }] = t.frames()[..] else {
        panic!()
    };
    t.reply(ServerFrame::HistoryPage {
        req,
        room: "dev".into(),
        messages: vec![msg("dev", 1)],
        more: false,
    });
    t.reply(ServerFrame::Lagged {
        room: "dev".into(),
        from: 5,
    });
    let frames = t.frames();
    assert!(
        matches!(
            &frames[..],
            [
                ClientFrame::Resume { room, .. },
                ClientFrame::History { page: Page::After(1), .. }
            ] if room == "dev"
        ),
        "{frames:?}"
    );
    let req = frames[0].req();
    t.reply(ServerFrame::Done { req });
    assert_eq!(
        t.s.phase(),
        Phase::Up {
            at: 0,
            since: t.now
        }
    );
}
