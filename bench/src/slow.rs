//! slow: the rate load with one more member of the room that stops reading
//! for a while, as a client on a stalled link or a suspended laptop would.
//! The relay must not let it slow the others: its queue fills, it is told
//! it lagged, and once it reads again it catches up from history.
//!
//! After a short warm-up, three phases of equal length, the senders going
//! on throughout: before (everyone reads), stalled (the member reads
//! nothing), and catching up (it reads again, pages history, then goes
//! live). The others' latency is split by the phase a message was sent
//! in, so the three sit side by side from one run on one relay.
//!
//! The member is a lean connection (`dialer`) rather than `common::client`,
//! whose reader drains the socket into memory whatever the application
//! does; its catch-up is `common::client::sync::RoomSync`, the real
//! client's logic, fed by hand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::client::sync::{RoomSync, Step, Token};
use common::frame::{ClientFrame, Message, Page, RequestId, ServerFrame};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::dialer::{self, Dialer, Link};
use crate::measure::Measurements;
use crate::report::{round, Latency, Report};
use crate::stamp::{now_ns, Stamp};
use crate::target::Target;
use crate::workload::{
    account_names, close_all, connect_all, drain, progress, send_all_steadily, settle_all,
    watch_relay, Params, PASSWORD, ROOM, SLOW_WARMUP,
};

/// The stalled member's receive window on its control stream. quinn's
/// default (1.25 MB) holds about 8 s of this load, so a stall of one
/// phase would mostly fill the client's buffer; 64 KiB, a slow link's
/// worth, makes the relay's own queue take the stall within the phase.
const SLOW_WINDOW: u32 = 64 * 1024;

/// How long the member may take to join the room before the clock starts.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the stalled member did, beyond its tally in the measurements.
#[derive(Debug, Default)]
pub struct SlowFigures {
    lagged: AtomicU64,
    paused_ns: OnceLock<u64>,
    resumed_ns: OnceLock<u64>,
    caught_up_ns: OnceLock<u64>,
}

/// The stalled member's part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct SlowMember {
    /// Seconds it read nothing.
    pub paused_s: Option<f64>,
    /// `Lagged` notices the relay sent it.
    pub lagged: u64,
    /// Seconds from reading again to its first message sent after that:
    /// delivery is in sequence order, so by then it had every earlier one.
    pub caught_up_s: Option<f64>,
    pub deliveries: u64,
    pub lost: u64,
    pub duplicated: u64,
}

/// The line a slow run prints. `loadgen slow --help` explains each field.
#[derive(Debug, Clone, Serialize)]
pub struct SlowReport {
    #[serde(flatten)]
    pub others: Report,
    pub phase_s: u32,
    /// Whether the member stopped reading (false: a control run).
    pub stall: bool,
    pub before_us: Latency,
    pub stalled_us: Latency,
    pub catching_up_us: Latency,
    pub p99_change_pct: Option<f64>,
    pub slow: SlowMember,
}

impl SlowReport {
    /// The report of a slow run of `params`: `others` covers the senders'
    /// own receivers only.
    pub fn new(params: &Params, m: &Measurements, f: &SlowFigures, timed_out: bool) -> SlowReport {
        let clients = params.clients as usize;
        let mut others = Report::new(params, m, timed_out);
        let totals = m.totals_of(0..clients);
        others.deliveries = totals.deliveries;
        others.lost = totals.lost;
        others.duplicated = totals.duplicated;
        others.latency_us = Latency::of(&totals.latency);
        let [_warmup, before, stalled, catching_up] = totals.phases.each_ref().map(Latency::of);
        let worst = stalled.p99.max(catching_up.p99);
        let slow = m.totals_of(clients..clients + 1);
        let span = |a: &OnceLock<u64>, b: &OnceLock<u64>| {
            Some(round((*b.get()? - *a.get()?) as f64 / 1e9, 3))
        };
        let (phase, stall) = match params.workload {
            crate::workload::Workload::Slow { phase, stall, .. } => (phase, stall),
            _ => (0, false),
        };
        SlowReport {
            others,
            phase_s: phase,
            stall,
            before_us: before,
            stalled_us: stalled,
            catching_up_us: catching_up,
            p99_change_pct: (before.p99 > 0 && worst > 0)
                .then(|| round((worst as f64 / before.p99 as f64 - 1.0) * 100.0, 1)),
            slow: SlowMember {
                paused_s: span(&f.paused_ns, &f.resumed_ns),
                lagged: f.lagged.load(Ordering::Relaxed),
                caught_up_s: span(&f.resumed_ns, &f.caught_up_ns),
                deliveries: slow.deliveries,
                lost: slow.lost,
                duplicated: slow.duplicated,
            },
        }
    }

    /// Whether the run passed: nothing lost or twice, for the others and
    /// the stalled member alike, in time.
    pub fn ok(&self) -> bool {
        self.others.ok() && self.slow.lost == 0 && self.slow.duplicated == 0
    }

    /// The JSON line, without its newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }
}

/// Runs the slow workload of `params` against `target`, recording into
/// `m` (made with one receiver more than `params.clients`) and `f`.
pub async fn run(
    params: &Params,
    target: &Target,
    m: &Arc<Measurements>,
    f: &Arc<SlowFigures>,
) -> Result<()> {
    match m.relay() {
        Some(relay) => tokio::select! {
            result = drive(params, target, m, f) => result,
            () = watch_relay(relay, m) => bail!("the relay (pid {}) exited during the run", relay.pid()),
        },
        None => drive(params, target, m, f).await,
    }
}

async fn drive(
    params: &Params,
    target: &Target,
    m: &Arc<Measurements>,
    f: &Arc<SlowFigures>,
) -> Result<()> {
    let crate::workload::Workload::Slow { phase, stall, .. } = params.workload else {
        bail!("slow::run needs a slow workload");
    };
    let phase = Duration::from_secs(u64::from(phase));
    let mut all = account_names("bench", params.clients + 1, target.shared);
    let member_name = all.pop().expect("clients + 1 names");
    let names = Arc::new(all);
    let mut background = JoinSet::new();
    let clients = connect_all(target, &names, m, &mut background).await?;

    let mut dialer = Dialer::new(target, 1).await?;
    dialer.stream_window(SLOW_WINDOW);
    let link = dialer
        .open(0, &member_name, PASSWORD, true)
        .await
        .context("the slow member cannot connect")?;
    let (pause, paused) = watch::channel(false);
    let (joined_tx, joined) = oneshot::channel();
    let member = Member {
        receiver: params.clients as usize,
        names: names.clone(),
        m: m.clone(),
        f: f.clone(),
        joined: Some(joined_tx),
    };
    background.spawn(async move {
        if let Err(e) = member.run(link, paused).await {
            tracing::error!("the slow member stopped: {e:#}");
        }
    });
    tokio::time::timeout(JOIN_TIMEOUT, joined)
        .await
        .context("the slow member did not join in time")?
        .context("the slow member ended before joining")?;

    m.start();
    tracing::info!(
        "{} clients and one slow member in {ROOM}; {SLOW_WARMUP} s warm-up, then {} s before, stalled, catching up",
        params.clients,
        phase.as_secs()
    );
    background.spawn(progress(m.clone()));
    let start = Instant::now();
    let senders = send_all_steadily(params, &clients, m, start);
    let first = start + Duration::from_secs(u64::from(SLOW_WARMUP));
    tokio::time::sleep_until(first).await;
    m.next_phase();
    tokio::time::sleep_until(first + phase).await;
    m.next_phase();
    if stall {
        let _ = f.paused_ns.set(now_ns());
        pause.send_replace(true);
        tracing::info!("the slow member stops reading");
    }
    tokio::time::sleep_until(first + 2 * phase).await;
    m.next_phase();
    if stall {
        let _ = f.resumed_ns.set(now_ns());
        pause.send_replace(false);
        tracing::info!("the slow member reads again");
    }
    let refused = settle_all(senders).await?;
    tracing::info!(
        "all sends acknowledged after {:.2} s ({refused} refused); waiting for deliveries",
        start.elapsed().as_secs_f64()
    );
    drain(m).await;
    m.finish();
    // The member first, so the close below is not news to it.
    background.shutdown().await;
    close_all(clients).await;
    dialer.close().await;
    Ok(())
}

/// The member that stops reading, and what it reports to.
struct Member {
    receiver: usize,
    names: Arc<Vec<String>>,
    m: Arc<Measurements>,
    f: Arc<SlowFigures>,
    joined: Option<oneshot::Sender<()>>,
}

impl Member {
    /// Reads and syncs the room until the connection ends, taking nothing
    /// off the control stream while `paused` says so.
    async fn run(mut self, link: Link, mut paused: watch::Receiver<bool>) -> Result<()> {
        let Link {
            conn,
            send,
            recv,
            user,
        } = link;
        let mut link_send = Sender { send, next_req: 2 };
        // One frame of slack: a paused member stops the reading at once.
        let (control_tx, mut control) = mpsc::channel(1);
        let (bulk_tx, mut bulk) = mpsc::unbounded_channel();
        let mut readers = JoinSet::new();
        readers.spawn(dialer::read_control(recv, control_tx));
        readers.spawn(dialer::read_bulk(conn.clone(), bulk_tx));

        let mut sync = RoomSync::default();
        sync.logged_in();
        let rooms_req = link_send.req();
        link_send
            .write(&ClientFrame::ListRooms { req: rooms_req })
            .await?;
        let mut pages: HashMap<RequestId, (Page, Token)> = HashMap::new();
        let mut watching = true;
        loop {
            let reading = !*paused.borrow();
            let frame = tokio::select! {
                frame = control.recv(), if reading => frame.context("the control stream ended")?,
                frame = bulk.recv() => frame.context("the connection ended")?,
                changed = paused.changed(), if watching => {
                    // The run is over once its sender is gone: read on.
                    watching = changed.is_ok();
                    continue;
                }
            };
            let steps = match frame {
                ServerFrame::Rooms { req, joined, .. } if req == rooms_req => {
                    sync.room_list(&joined)
                }
                ServerFrame::HistoryPage {
                    req,
                    room,
                    messages,
                    more,
                } => match pages.remove(&req) {
                    Some((page, token)) => sync.page(&room, token, page, messages, more),
                    None => Vec::new(),
                },
                ServerFrame::Message(msg) => sync.live(msg),
                ServerFrame::Lagged { room, from } => {
                    self.f.lagged.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("the slow member lagged in {room} from {from}");
                    sync.lagged(&room)
                }
                ServerFrame::Error { code, message, .. } => {
                    bail!("{user}: the relay refused ({code:?}): {message}")
                }
                _ => Vec::new(),
            };
            for step in steps {
                match step {
                    Step::Deliver(msg) => self.deliver(&msg),
                    Step::Joined { room, recent, .. } if room == ROOM => {
                        for msg in &recent {
                            self.deliver(msg);
                        }
                        if let Some(joined) = self.joined.take() {
                            let _ = joined.send(());
                        }
                    }
                    Step::Fetch {
                        room,
                        page,
                        limit,
                        token,
                    } => {
                        let req = link_send.req();
                        pages.insert(req, (page, token));
                        let frame = ClientFrame::History {
                            req,
                            room,
                            page,
                            limit,
                        };
                        link_send.write(&frame).await?;
                    }
                    Step::Resubscribe { room } => {
                        let req = link_send.req();
                        link_send.write(&ClientFrame::Resume { req, room }).await?;
                    }
                    Step::Joined { .. } | Step::Left { .. } => {}
                }
            }
        }
    }

    /// Counts a benchmark message, and notes when the first one sent after
    /// the member read again arrives.
    fn deliver(&self, msg: &Message) {
        let Some(stamp) = Stamp::decode(&msg.body) else {
            return;
        };
        let ours = self
            .names
            .get(stamp.sender as usize)
            .is_some_and(|name| name.eq_ignore_ascii_case(&msg.from));
        if !ours {
            return;
        }
        self.m.record(self.receiver, stamp);
        if let Some(&resumed) = self.f.resumed_ns.get() {
            if stamp.sent_ns >= resumed {
                let _ = self.f.caught_up_ns.set(now_ns());
            }
        }
    }
}

/// The member's side of its control stream, with its request ids.
struct Sender {
    send: quinn::SendStream,
    next_req: RequestId,
}

impl Sender {
    fn req(&mut self) -> RequestId {
        let req = self.next_req;
        self.next_req += 1;
        req
    }

    async fn write(&mut self, frame: &ClientFrame) -> Result<()> {
        common::wire::write_frame(&mut self.send, frame)
            .await
            .context("the slow member's write failed")
    }
}
