//! Keypress-to-frame latency and memory of the window in big rooms.
//!
//! The real window code (`App::update`, `App::view`) runs through iced's own
//! `UserInterface` with the tiny-skia renderer, drawing each frame to
//! pixels as the window does; the bench plays the relay. For each room size
//! a person scrolls with the mouse wheel from the newest line back to the
//! very first (older pages answered as the relay would), then back down,
//! and then types while lines arrive at 50 a second. What is measured:
//! - keypress to frame: event handling, `update`, `view`, layout, drawing
//!   and rasterising of the frame that shows the letter;
//! - heap in use (a counting allocator) after the walk through the room.
//!
//! `cargo bench -p client-gui --bench window -- [SIZES…] [--keys N]
//! [--walk-seconds S] [--json]`; sizes default to 1000 10000 100000.
//! `bench/window.sh` (part of `make bench`) runs it three times and writes
//! the medians to docs/BENCH.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use client_gui::app::{self, App, Options};
use client_gui::connection::{Command, Event as NetEvent, Handle};
use client_gui::settings::{Settings, SETTINGS_ENV};
use common::client::Event as SessionEvent;
use common::frame::Message as ChatMessage;
use iced::{Size, Task, Theme};
use iced_test::core::renderer::Headless;
use iced_test::core::{mouse, renderer, Event, Point};
use iced_test::runtime::user_interface::{self, UserInterface};
use iced_test::runtime::Action;
use tokio::sync::mpsc::UnboundedReceiver;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const ROOM: &str = "lobby";
const WINDOW: Size = Size::new(1280.0, 800.0);
const SENDERS: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];
/// One of these per line, round robin: short, medium, long enough to wrap.
const BODIES: [&str; 4] = [
    "ok",
    "did anyone look at the build from this morning?",
    "the relay restarted at 09:14 and every client came back within two seconds; \
     I checked the history of #ops and nothing was lost, but the window took a \
     while to draw the room again, which is what this is about",
    "see https://example.org/notes/42 for the plan 🙂",
];

fn line(seq: u64) -> ChatMessage {
    ChatMessage {
        room: ROOM.into(),
        seq,
        id: seq.to_be_bytes().repeat(2).try_into().unwrap(),
        ts: 1_760_000_000_000 + seq as i64 * 1_000,
        from: SENDERS[(seq as usize / 3) % SENDERS.len()].into(),
        body: BODIES[seq as usize % BODIES.len()].into(),
    }
}

/// The window, its renderer and the relay's side of the session.
struct Bench {
    app: App,
    renderer: iced::Renderer,
    cache: user_interface::Cache,
    commands: UnboundedReceiver<Command>,
    /// The newest line the relay has, growing as lines arrive.
    newest: u64,
}

impl Bench {
    fn new(size: u64) -> Bench {
        let options = Options {
            ca: None,
            known_relays: std::env::temp_dir().join("confab-bench-known-relays"),
            server: Some("127.0.0.1:4433".into()),
            user: Some("me".into()),
        };
        let renderer = iced_test::futures::futures::executor::block_on(
            <iced::Renderer as Headless>::new(iced::Font::DEFAULT, 16.into(), Some("tiny-skia")),
        )
        .expect("a tiny-skia renderer");
        let (handle, commands) = Handle::pair();
        let mut bench = Bench {
            app: App::new(options, Settings::default()),
            renderer,
            cache: user_interface::Cache::default(),
            commands,
            newest: size,
        };
        bench.net(NetEvent::Connected {
            user: "me".into(),
            relay: "127.0.0.1:4433".into(),
            handle,
        });
        let recent = (size.saturating_sub(49).max(1)..=size).map(line).collect();
        bench.net(NetEvent::Session(SessionEvent::Joined {
            room: ROOM.into(),
            recent,
            more: size > 50,
        }));
        bench.frame(&[]);
        bench
    }

    fn net(&mut self, event: NetEvent) {
        let task = self.app.update(app::Message::Net(event));
        self.run(task);
    }

    /// Carries out a task's widget operations (focus, scrolling) on the
    /// current interface, as the runtime does.
    fn run(&mut self, task: Task<app::Message>) {
        let Some(stream) = iced_test::runtime::task::into_stream(task) else {
            return;
        };
        let actions: Vec<_> = iced_test::futures::futures::executor::block_on(
            iced_test::futures::futures::StreamExt::collect(stream),
        );
        let mut ui = UserInterface::build(
            self.app.view(),
            WINDOW,
            std::mem::take(&mut self.cache),
            &mut self.renderer,
        );
        for action in actions {
            if let Action::Widget(mut operation) = action {
                ui.operate(&self.renderer, operation.as_mut());
            }
        }
        self.cache = ui.into_cache();
    }

    /// One turn of the event loop: the events reach the widgets, their
    /// messages reach `update`, and the next frame is laid out, drawn and
    /// rasterised.
    fn frame(&mut self, events: &[Event]) {
        let cursor = mouse::Cursor::Available(Point::new(WINDOW.width / 2.0, WINDOW.height / 2.0));
        let mut messages = Vec::new();
        let mut ui = UserInterface::build(
            self.app.view(),
            WINDOW,
            std::mem::take(&mut self.cache),
            &mut self.renderer,
        );
        let _ = ui.update(
            events,
            cursor,
            &mut self.renderer,
            &mut iced_test::core::clipboard::Null,
            &mut messages,
        );
        self.cache = ui.into_cache();
        for m in messages {
            let task = self.app.update(m);
            self.run(task);
        }
        self.answer();
        let mut ui = UserInterface::build(
            self.app.view(),
            WINDOW,
            std::mem::take(&mut self.cache),
            &mut self.renderer,
        );
        let redraw = Event::Window(iced::window::Event::RedrawRequested(Instant::now()));
        let _ = ui.update(
            &[redraw],
            cursor,
            &mut self.renderer,
            &mut iced_test::core::clipboard::Null,
            &mut Vec::new(),
        );
        let theme = Theme::Light;
        ui.draw(
            &mut self.renderer,
            &theme,
            &renderer::Style {
                text_color: theme.palette().text,
            },
            cursor,
        );
        self.cache = ui.into_cache();
        let pixels = self.renderer.screenshot(
            Size::new(WINDOW.width as u32, WINDOW.height as u32),
            1.0,
            theme.palette().background,
        );
        std::hint::black_box(pixels);
    }

    /// Plays the relay: answers the history requests the window made.
    fn answer(&mut self) {
        let page = client_gui::connection::OLDER_PAGE as u64;
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Older { room, before } => {
                    let end = before.min(self.newest + 1);
                    let start = end.saturating_sub(page).max(1);
                    let messages = (start..end).map(line).collect();
                    self.net(NetEvent::Older {
                        room,
                        messages,
                        more: start > 1,
                    });
                }
                Command::Newer { room, after } => {
                    let end = (after + page).min(self.newest);
                    let messages = (after + 1..=end).map(line).collect();
                    self.net(NetEvent::Newer {
                        room,
                        messages,
                        more: end < self.newest,
                    });
                }
                _ => {}
            }
        }
    }

    fn wheel(&mut self, lines: f32) {
        self.frame(&[Event::Mouse(mouse::Event::WheelScrolled {
            delta: mouse::ScrollDelta::Lines { x: 0.0, y: lines },
        })]);
    }

    /// Scrolls up until the first line of the room is reached, or time is up.
    /// Returns how many frames it took and whether the start was reached.
    fn walk_up(&mut self, limit: Duration) -> (u64, bool) {
        let deadline = Instant::now() + limit;
        let mut frames = 0;
        while Instant::now() < deadline {
            self.wheel(20.0);
            frames += 1;
            if std::env::var_os("WINDOW_BENCH_TRACE").is_some() && frames % 500 == 0 {
                let room = self.chat().room().unwrap();
                eprintln!(
                    "frame {frames}: heap {:.1} MiB, {} lines kept, {} heights, first {:?}",
                    LIVE.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
                    room.lines.len(),
                    room.heights.len(),
                    room.first_seq()
                );
            }
            if self.shows_beginning() {
                return (frames, true);
            }
        }
        (frames, false)
    }

    fn walk_down(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && !self.at_bottom() {
            self.wheel(-20.0);
        }
    }

    fn chat(&self) -> &client_gui::screen::chat::Chat {
        match &self.app.screen {
            app::Screen::Chat(c) => c,
            _ => panic!("not chatting"),
        }
    }

    /// Every older page is loaded: the first line of the room is in the view.
    fn shows_beginning(&self) -> bool {
        self.chat()
            .room()
            .is_some_and(|r| !r.more_before && !r.loading_older)
    }

    fn at_bottom(&self) -> bool {
        self.chat().room().is_some_and(|r| r.at_bottom)
    }

    /// A line from someone else arrives.
    fn arrive(&mut self) {
        self.newest += 1;
        let m = line(self.newest);
        let task = self
            .app
            .update(app::Message::Net(NetEvent::Session(SessionEvent::Message(
                m,
            ))));
        self.run(task);
        self.frame(&[]);
    }

    fn key(&mut self, c: char) -> Duration {
        let events: Vec<Event> = iced_test::simulator::typewrite(&c.to_string()).collect();
        let start = Instant::now();
        self.frame(&events[..1]);
        let took = start.elapsed();
        self.frame(&events[1..]);
        took
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn main() {
    let mut sizes = Vec::new();
    let mut keys = 200usize;
    let mut json = false;
    let mut walk = Duration::from_secs(300);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--keys" => keys = args.next().and_then(|v| v.parse().ok()).expect("--keys N"),
            "--walk-seconds" => {
                walk = Duration::from_secs(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .expect("--walk-seconds S"),
                )
            }
            "--bench" => {}
            "--json" => json = true,
            other => sizes.push(other.parse::<u64>().unwrap_or_else(|_| {
                eprintln!("window bench: {other:?} is not a room size; sizes are numbers of lines");
                std::process::exit(2)
            })),
        }
    }
    if sizes.is_empty() {
        sizes = vec![1_000, 10_000, 100_000];
    }
    // The fonts the window ships with, as it draws in real use.
    client_gui::fonts::install();
    // Settings are saved on login; keep them out of the user's folder.
    let dir = std::env::temp_dir().join(format!("confab-window-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::env::set_var(SETTINGS_ENV, dir.join("gui.json"));

    if !json {
        println!("| lines in room | walked to the first line | frames | heap after walk (MiB) | peak heap (MiB) | keypress→frame p50 (ms) | p99 (ms) | max (ms) |");
        println!("|---:|:--|---:|---:|---:|---:|---:|---:|");
    }
    for size in sizes {
        let mut bench = Bench::new(size);
        let started = Instant::now();
        let (frames, reached) = bench.walk_up(walk);
        let walked = started.elapsed();
        bench.walk_down(walk);
        eprintln!(
            "{size} lines: walk up {frames} frames in {:.1} s ({}), down done",
            walked.as_secs_f64(),
            if reached {
                "reached the first line"
            } else {
                "time up"
            }
        );
        let heap = LIVE.load(Ordering::Relaxed);
        let mut taken = Vec::with_capacity(keys);
        // 10 keys a second while 50 lines a second arrive: 5 lines a key.
        for i in 0..keys {
            for _ in 0..5 {
                bench.arrive();
            }
            taken.push(bench.key(char::from(b'a' + (i % 26) as u8)));
        }
        taken.sort();
        let mib = |b: usize| b as f64 / (1 << 20) as f64;
        let (heap, peak) = (mib(heap), mib(PEAK.load(Ordering::Relaxed)));
        let (p50, p99, max) = (
            quantile(&taken, 0.5),
            quantile(&taken, 0.99),
            *taken.last().unwrap(),
        );
        if json {
            println!(
                "{{\"lines\":{size},\"reached_first\":{reached},\"frames\":{frames},\"heap_mib\":{heap:.2},\"peak_mib\":{peak:.2},\"p50_ms\":{},\"p99_ms\":{},\"max_ms\":{},\"keys\":{keys}}}",
                ms(p50),
                ms(p99),
                ms(max)
            );
        } else {
            println!(
                "| {size} | {} | {frames} | {heap:.1} | {peak:.1} | {} | {} | {} |",
                if reached { "yes" } else { "no (time up)" },
                ms(p50),
                ms(p99),
                ms(max),
            );
        }
        drop(bench);
        PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
