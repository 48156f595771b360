//! A real window for end-to-end tests of `client-gui`: an X server of our
//! own (Xvfb), xdotool to type and click, ImageMagick's `import` for
//! screenshots.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::child::KillOnDrop;

/// An X server of our own, on a display it picks itself.
pub struct Xvfb {
    _child: KillOnDrop,
    pub display: String,
}

impl Xvfb {
    /// Fails (never skips) when the tools are missing: `make test`
    /// installs them.
    pub fn start() -> Xvfb {
        for tool in ["Xvfb", "xdotool", "import"] {
            require(tool);
        }
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Xvfb");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("Xvfb display number");
        Xvfb {
            _child: KillOnDrop(child),
            display: format!(":{}", line.trim()),
        }
    }
}

pub fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success());
    assert!(
        found.unwrap_or(false),
        "the GUI end-to-end test needs {tool}: `make test` installs it (scripts/test-deps.sh)"
    );
}

/// Runs xdotool on the display, returning its output.
pub fn xdotool(display: &str, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .output()
        .expect("run xdotool");
    assert!(
        out.status.success(),
        "xdotool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn screenshot(display: &str, window: &str, path: &Path) {
    let status = Command::new("import")
        .args(["-window", window])
        .arg(path)
        .env("DISPLAY", display)
        .status()
        .expect("run import");
    assert!(status.success(), "screenshot {}", path.display());
}

/// Polls the window title until `want` holds, failing after 20 s.
pub fn wait_title(display: &str, window: &str, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let title = xdotool(display, &["getwindowname", window]);
        if want(&title) {
            return title;
        }
        assert!(Instant::now() < deadline, "window title stuck at {title:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn shots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/gui-e2e");
    std::fs::create_dir_all(&dir).expect("target/gui-e2e");
    dir
}

/// A `client-gui` process on an X server, with a home folder of its own
/// (settings, known relays, logs in `home/gui.log`).
pub struct Gui {
    pub window: String,
    pub display: String,
    pub home: tempfile::TempDir,
    _child: KillOnDrop,
}

impl Gui {
    /// Starts the window with `args` and waits until it is mapped and
    /// focused (there is no window manager to focus it).
    pub fn start(x: &Xvfb, args: &[&std::ffi::OsStr]) -> Gui {
        Gui::start_with(x, args, None)
    }

    /// [`Gui::start`] with the window's settings file written first (e.g.
    /// `{"server": "…", "user": "alice", "theme": "Dark"}`).
    pub fn start_with(x: &Xvfb, args: &[&std::ffi::OsStr], settings: Option<&str>) -> Gui {
        let home = tempfile::tempdir().expect("temp dir");
        if let Some(json) = settings {
            std::fs::write(home.path().join("gui.json"), json).expect("settings file");
        }
        let log = std::fs::File::create(home.path().join("gui.log")).expect("gui.log");
        let child = Command::new(crate::bin("client-gui"))
            .args(args)
            .env("DISPLAY", &x.display)
            .env_remove("WAYLAND_DISPLAY")
            .env("XDG_RUNTIME_DIR", home.path())
            .env("XDG_CACHE_HOME", home.path())
            .env("CONFAB_GUI_SETTINGS", home.path().join("gui.json"))
            .env("CONFAB_KNOWN_RELAYS", home.path().join("known_relays"))
            .env("RUST_LOG", "warn,client_gui=debug")
            .stdout(log.try_clone().expect("gui.log"))
            .stderr(log)
            .spawn()
            .expect("start client-gui");
        let pid = child.id().to_string();
        let child = KillOnDrop(child);
        let found = xdotool(
            &x.display,
            &["search", "--sync", "--onlyvisible", "--pid", &pid],
        );
        let window = found.lines().next().expect("a window").to_owned();
        // Mapped a moment before the first frame.
        std::thread::sleep(Duration::from_millis(700));
        xdotool(&x.display, &["windowfocus", "--sync", &window]);
        Gui {
            window,
            display: x.display.clone(),
            home,
            _child: child,
        }
    }

    /// Runs xdotool against this window's display.
    pub fn xdotool(&self, args: &[&str]) -> String {
        xdotool(&self.display, args)
    }

    pub fn screenshot(&self, path: &Path) {
        screenshot(&self.display, &self.window, path)
    }

    pub fn wait_title(&self, want: impl Fn(&str) -> bool) -> String {
        wait_title(&self.display, &self.window, want)
    }

    /// The window's size, as X reports it.
    pub fn size(&self) -> (f32, f32) {
        let geometry = self.xdotool(&["getwindowgeometry", &self.window]);
        let size = geometry
            .lines()
            .find_map(|l| l.trim().strip_prefix("Geometry: "))
            .unwrap_or_else(|| panic!("no geometry in {geometry:?}"));
        let (w, h) = size.split_once('x').expect("WxH");
        (w.parse().expect("width"), h.parse().expect("height"))
    }

    /// What the window logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("gui.log")).unwrap_or_default()
    }

    /// Asks the window to close as a window manager's close button does
    /// (a `WM_DELETE_WINDOW` message; there is no window manager here).
    pub fn request_close(&self) {
        use x11rb::protocol::xproto::{ClientMessageEvent, ConnectionExt, EventMask};
        let (conn, _) = x11rb::connect(Some(&self.display)).expect("connect to the X server");
        let atom = |name: &[u8]| {
            conn.intern_atom(false, name)
                .expect("ask for an atom")
                .reply()
                .expect("intern an atom")
                .atom
        };
        let (protocols, delete) = (atom(b"WM_PROTOCOLS"), atom(b"WM_DELETE_WINDOW"));
        let window: u32 = self.window.parse().expect("a window id");
        let event = ClientMessageEvent::new(32, window, protocols, [delete, 0, 0, 0, 0]);
        conn.send_event(false, window, EventMask::NO_EVENT, event)
            .expect("send the close request")
            .check()
            .expect("the X server took the close request");
    }

    /// Sends a signal (`TERM`, `INT`) to the window's process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self._child.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name}");
    }

    /// The window process's exit status, once it has ended within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self._child.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The window's settings file as it is now.
    pub fn settings(&self) -> String {
        std::fs::read_to_string(self.home.path().join("gui.json")).unwrap_or_default()
    }
}

/// An account made on the relay's side, as an operator would
/// (`relay user add`).
pub fn add_user(relay: &crate::Relay, user: &str, password: &str) {
    let added = Command::new(crate::bin("relay"))
        .args(["user", "add", user])
        .args(relay.store_args())
        .env("CONFAB_PASSWORD", password)
        .output()
        .expect("relay user add");
    assert!(added.status.success(), "{added:?}");
}

impl Gui {
    /// The window for `user` at `relay`, trusting exactly its certificate.
    pub fn pinned(x: &Xvfb, relay: &crate::Relay, user: &str) -> Gui {
        let server = relay.server();
        let cert = relay.cert();
        Gui::start(
            x,
            &[
                "--server".as_ref(),
                server.as_ref(),
                "--user".as_ref(),
                user.as_ref(),
                "--ca".as_ref(),
                cert.as_os_str(),
            ],
        )
    }

    /// Types the password into the form (where the cursor waits when the
    /// name is filled in), presses Return and waits for the chat.
    pub fn log_in(&self, user: &str, password: &str) {
        self.xdotool(&["type", "--delay", "15", password]);
        self.xdotool(&["key", "Return"]);
        let want = format!("confab — {user}");
        self.wait_title(|t| t == want);
    }
}
