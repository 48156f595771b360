//! history: a room with a million stored messages, and how long a user
//! waits for its newest lines after connecting, and for older pages when
//! scrolling back.
//!
//! The store is filled before the relay starts, through SQLite rather
//! than the network: the relay's own code makes the schema (opening a
//! `SqliteStore`), then one transaction per batch inserts the rows as the
//! relay's writer would. Reading is all through the real client:
//! `common::client` connects, logs in, lists its rooms and fetches the
//! newest page, exactly as the applications do.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use common::client::{Client, Config, Event};
use common::frame::{Message, Page};
use common::limits::{DEFAULT_PAGE, MAX_BODY, MAX_PAGE};
use common::trust::TrustMode;
use hdrhistogram::Histogram;
use relay::store::sqlite::{SqliteStore, DB_FILE};
use rusqlite::params;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::procfs::Proc;
use crate::report::{round, Latency};
use crate::stamp::now_ns;
use crate::target::Target;
use crate::workload::{account_names, watch_relay_rss, PASSWORD, ROOM};

/// Rows per fill transaction: big enough that commits cost nothing, small
/// enough that the WAL stays a fraction of the file.
const FILL_BATCH: u64 = 100_000;

/// How long the newest page may take to appear after a login.
const SHOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct HistoryParams {
    /// Messages stored in the room before the relay starts.
    pub messages: u64,
    /// Body size of each, in bytes.
    pub bytes: usize,
    /// Logins timed, one after another.
    pub logins: u32,
    /// Pages paged back after each login.
    pub pages: u32,
    /// Messages per page paged back.
    pub page: u16,
    /// Newest-page requests timed on one logged-in session.
    pub requests: u32,
}

impl HistoryParams {
    /// Refuses parameters no run can satisfy.
    pub fn check(&self) -> Result<()> {
        ensure!(self.logins > 0, "--logins must be at least 1");
        ensure!(
            (1..=MAX_PAGE).contains(&self.page),
            "--page must be between 1 and {MAX_PAGE}"
        );
        let needed = u64::from(DEFAULT_PAGE) + u64::from(self.pages) * u64::from(self.page);
        ensure!(
            self.messages >= needed,
            "--messages must be at least {needed}: the newest page and --pages pages of --page"
        );
        ensure!(
            (1..=MAX_BODY).contains(&self.bytes),
            "--bytes must be between 1 and {MAX_BODY}"
        );
        Ok(())
    }
}

/// The line a history run prints. `loadgen history --help` explains each
/// field.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryReport {
    pub broker: &'static str,
    pub workload: &'static str,
    pub messages: u64,
    pub bytes: usize,
    pub fill_s: Option<f64>,
    pub db_mib: Option<f64>,
    pub logins: u64,
    pub login_us: Latency,
    pub shown_us: Latency,
    pub shown_after_login_us: Latency,
    pub pages: u32,
    pub page: u16,
    pub page_back_us: Latency,
    pub pages_back_us: Latency,
    pub requests: u64,
    pub latest_us: Latency,
    pub wrong: u64,
    pub relay_rss_kib: Option<u64>,
    pub timed_out: bool,
}

impl HistoryReport {
    /// Whether every login and request happened and showed what the store
    /// holds, in time.
    pub fn ok(&self, p: &HistoryParams) -> bool {
        !self.timed_out
            && self.wrong == 0
            && self.logins == u64::from(p.logins)
            && self.requests == u64::from(p.requests)
    }
}

/// What a history run has measured so far; it outlives a run cut short.
#[derive(Debug)]
pub struct HistoryFigures {
    relay: Option<Proc>,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    fill_s: Option<f64>,
    db_mib: Option<f64>,
    login: Histogram<u64>,
    shown: Histogram<u64>,
    after_login: Histogram<u64>,
    page_back: Histogram<u64>,
    pages_back: Histogram<u64>,
    latest: Histogram<u64>,
    wrong: u64,
    rss_peak_kib: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits")
}

impl HistoryFigures {
    /// Nothing measured yet; `relay` is the relay process when known.
    pub fn new(relay: Option<Proc>) -> HistoryFigures {
        HistoryFigures {
            relay,
            inner: Mutex::new(Inner {
                fill_s: None,
                db_mib: None,
                login: histogram(),
                shown: histogram(),
                after_login: histogram(),
                page_back: histogram(),
                pages_back: histogram(),
                latest: histogram(),
                wrong: 0,
                rss_peak_kib: 0,
            }),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes how long the fill took and how big the store became.
    pub fn filled(&self, seconds: f64, data: &Path) {
        let mut inner = self.inner();
        inner.fill_s = Some(round(seconds, 2));
        inner.db_mib = std::fs::metadata(data.join(DB_FILE))
            .ok()
            .map(|m| round(m.len() as f64 / 1_048_576.0, 1));
    }

    fn sample_rss(&self) {
        if let Some(kib) = self.relay.and_then(|p| p.rss_kib()) {
            let mut inner = self.inner();
            inner.rss_peak_kib = inner.rss_peak_kib.max(kib);
        }
    }

    fn wrong(&self, what: &str) {
        tracing::warn!("{what}");
        self.inner().wrong += 1;
    }

    /// The report of a run of `p`.
    pub fn report(&self, p: &HistoryParams, timed_out: bool) -> HistoryReport {
        let inner = self.inner();
        HistoryReport {
            broker: "confab",
            workload: "history",
            messages: p.messages,
            bytes: p.bytes,
            fill_s: inner.fill_s,
            db_mib: inner.db_mib,
            logins: inner.shown.len(),
            login_us: Latency::of(&inner.login),
            shown_us: Latency::of(&inner.shown),
            shown_after_login_us: Latency::of(&inner.after_login),
            pages: p.pages,
            page: p.page,
            page_back_us: Latency::of(&inner.page_back),
            pages_back_us: Latency::of(&inner.pages_back),
            requests: inner.latest.len(),
            latest_us: Latency::of(&inner.latest),
            wrong: inner.wrong,
            relay_rss_kib: (inner.rss_peak_kib > 0).then_some(inner.rss_peak_kib),
            timed_out,
        }
    }
}

/// Fills `room` in a fresh store in `data` with `messages` messages of
/// `bytes` bytes from `sender`, numbered 1, 2, … and one millisecond
/// apart up to now. The ids follow the sequence, so the id index grows at
/// its end as it would under random ids only more slowly.
pub fn fill(data: &Path, room: &str, messages: u64, bytes: usize, sender: &str) -> Result<()> {
    drop(SqliteStore::open(data, None).context("cannot create the store")?);
    let mut conn = rusqlite::Connection::open(data.join(DB_FILE))?;
    // The relay has not started: a crash here loses nothing worth keeping.
    conn.pragma_update(None, "synchronous", "OFF")?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let first_ms = now_ms - messages as i64;
    let mut seq = 1;
    while seq <= messages {
        let end = (seq + FILL_BATCH).min(messages + 1);
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (room, seq, id, sender, ts, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for s in seq..end {
                let id = u128::from(s).to_be_bytes();
                insert.execute(params![
                    room,
                    s as i64,
                    &id[..],
                    sender,
                    first_ms + s as i64,
                    body(s, bytes)
                ])?;
            }
        }
        tx.commit()?;
        seq = end;
    }
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// Message `seq`'s body: its number, padded to `bytes`.
fn body(seq: u64, bytes: usize) -> String {
    let mut body = format!("history line {seq} ");
    let pad = bytes.saturating_sub(body.len());
    body.extend(std::iter::repeat_n('x', pad));
    body
}

/// The account the messages come from and every login uses.
pub fn account(shared: bool) -> String {
    account_names("bench", 1, shared).remove(0)
}

/// Times `p.logins` logins, each followed by `p.pages` pages back, then
/// `p.requests` newest-page requests on one session, against a relay whose
/// store [`fill`] filled for `user`.
pub async fn run(
    p: &HistoryParams,
    target: &Target,
    user: &str,
    f: &Arc<HistoryFigures>,
) -> Result<()> {
    let work = async {
        register(target, user).await?;
        for i in 0..p.logins {
            login_and_page(p, target, user, f).await?;
            f.sample_rss();
            if (i + 1) % 50 == 0 {
                tracing::info!("{} of {} logins", i + 1, p.logins);
            }
        }
        latest_requests(p, target, user, f).await
    };
    match f.relay {
        Some(relay) => tokio::select! {
            result = work => result,
            () = watch_relay_rss(relay, || f.sample_rss()) => {
                bail!("the relay (pid {}) exited during the run", relay.pid())
            }
        },
        None => work.await,
    }
}

fn config(target: &Target, user: &str, register: bool) -> Config {
    let mut cfg = Config::new(
        &target.server,
        TrustMode::Pinned(target.ca.clone()),
        user,
        PASSWORD,
    );
    cfg.register = register;
    cfg.client_name = concat!("confab-loadgen/", env!("CARGO_PKG_VERSION")).to_owned();
    cfg
}

async fn register(target: &Target, user: &str) -> Result<()> {
    let (client, _events) = Client::connect(config(target, user, true))
        .await
        .with_context(|| format!("cannot register {user}"))?;
    client.close().await;
    Ok(())
}

/// One login: time to logged in, to the newest page shown, then each page
/// back.
async fn login_and_page(
    p: &HistoryParams,
    target: &Target,
    user: &str,
    f: &HistoryFigures,
) -> Result<()> {
    let started = now_ns();
    let (client, mut events) = Client::connect(config(target, user, false))
        .await
        .with_context(|| format!("cannot log in as {user}"))?;
    let logged_in = now_ns();
    let recent = tokio::time::timeout(SHOWN_TIMEOUT, shown(&mut events))
        .await
        .with_context(|| format!("no newest page within {SHOWN_TIMEOUT:?} of login"))??;
    let shown_at = now_ns();
    {
        let mut inner = f.inner();
        let _ = inner.login.record((logged_in - started) / 1_000);
        let _ = inner.shown.record((shown_at - started) / 1_000);
        let _ = inner.after_login.record((shown_at - logged_in) / 1_000);
    }
    let newest = usize::from(DEFAULT_PAGE);
    if let Some(why) = check(&recent, newest, p.messages) {
        f.wrong(&format!("the newest page is wrong: {why}"));
    }
    let mut oldest = recent.first().map_or(p.messages + 1, |m| m.seq);
    let paging = now_ns();
    for _ in 0..p.pages {
        let asked = now_ns();
        let (page, _more) = client
            .history(ROOM, Page::Before(oldest), p.page)
            .await
            .context("a page back failed")?;
        let _ = f.inner().page_back.record((now_ns() - asked) / 1_000);
        if let Some(why) = check(&page, usize::from(p.page), oldest - 1) {
            f.wrong(&format!("a page before {oldest} is wrong: {why}"));
        }
        oldest = page.first().map_or(oldest, |m| m.seq);
    }
    let _ = f.inner().pages_back.record((now_ns() - paging) / 1_000);
    client.close().await;
    Ok(())
}

/// Waits for the room's newest page, as the applications show it.
async fn shown(events: &mut mpsc::UnboundedReceiver<Event>) -> Result<Vec<Message>> {
    while let Some(event) = events.recv().await {
        match event {
            Event::Joined { room, recent, .. } if room == ROOM => return Ok(recent),
            Event::Failed(e) => bail!("the session failed: {e}"),
            _ => {}
        }
    }
    bail!("the session ended before showing {ROOM}")
}

/// What is wrong with `page` if it is not `len` messages in a row, oldest
/// first, ending at sequence `last`.
fn check(page: &[Message], len: usize, last: u64) -> Option<String> {
    let seqs: Vec<u64> = page.iter().map(|m| m.seq).collect();
    let expected: Vec<u64> = (last + 1 - len as u64..=last).collect();
    (seqs != expected).then(|| {
        format!(
            "{} messages, {:?}..{:?}, expected {len} ending at {last}",
            seqs.len(),
            seqs.first(),
            seqs.last()
        )
    })
}

/// Times newest-page requests on one logged-in session, one at a time.
async fn latest_requests(
    p: &HistoryParams,
    target: &Target,
    user: &str,
    f: &HistoryFigures,
) -> Result<()> {
    let (client, mut events) = Client::connect(config(target, user, false)).await?;
    // The client's own catch-up first, so it does not share the timing.
    tokio::time::timeout(SHOWN_TIMEOUT, shown(&mut events)).await??;
    for _ in 0..p.requests {
        let asked = now_ns();
        let (page, _) = client
            .history(ROOM, Page::Latest, DEFAULT_PAGE)
            .await
            .context("a newest-page request failed")?;
        let _ = f.inner().latest.record((now_ns() - asked) / 1_000);
        if let Some(why) = check(&page, usize::from(DEFAULT_PAGE), p.messages) {
            f.wrong(&format!("a newest page is wrong: {why}"));
        }
    }
    client.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64) -> Message {
        Message {
            room: ROOM.into(),
            seq,
            id: [0; 16],
            ts: 0,
            from: "x".into(),
            body: body(seq, 20),
        }
    }

    #[test]
    fn a_page_must_be_the_run_of_sequences_asked_for() {
        let page: Vec<Message> = (8..=10).map(msg).collect();
        assert_eq!(check(&page, 3, 10), None);
        assert!(check(&page, 3, 11).is_some());
        assert!(check(&page[1..], 3, 10).is_some());
    }

    #[test]
    fn bodies_are_padded_and_numbered() {
        assert_eq!(body(7, 20), "history line 7 xxxxx");
        assert_eq!(body(123_456, 1), "history line 123456 ");
    }

    #[test]
    fn a_fill_is_what_the_relay_reads() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), ROOM, 250, 40, "bench-0").unwrap();
        let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
        let (count, max): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), MAX(seq) FROM messages WHERE room = ?1",
                [ROOM],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((count, max), (250, 250));
        drop(conn);
        // The relay opens it as its own.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            use relay::store::Store;
            let store = SqliteStore::open(dir.path(), None).unwrap();
            let (page, more) = store.history(ROOM, Page::Latest, 50).await.unwrap();
            assert!(more);
            assert_eq!(page.last().unwrap().seq, 250);
            assert_eq!(page.last().unwrap().body.len(), 40);
            store.close().await;
        });
    }
}
