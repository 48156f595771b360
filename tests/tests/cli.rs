//! The `relay` and `client-cli` command lines as users and scripts run them:
//! real processes, real exit codes, real messages. Every process is bounded
//! by a deadline so a hang fails the test instead of stalling the suite.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::child::KillOnDrop;
use confab_tests::{bin, Relay, PASSWORD};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tempfile::TempDir;

/// Long enough for a debug build doing a login (argon2 included), short
/// enough that a hang is noticed.
const LIMIT: Duration = Duration::from_secs(15);

/// What a finished process left behind.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "exit {:?} after {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.took, self.stdout, self.stderr
        )
    }

    #[track_caller]
    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "{}", self.describe());
        self
    }

    #[track_caller]
    fn expect_failure(&self) -> &Self {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "expected a non-zero exit: {}",
            self.describe()
        );
        self
    }

    #[track_caller]
    fn expect_stderr(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {}",
            self.describe()
        );
        self
    }

    #[track_caller]
    fn expect_stdout(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}: {}",
            self.describe()
        );
        self
    }
}

/// Runs `cmd` to completion with `input` on stdin (closed right after), or
/// kills it and fails the test once `limit` has passed. Stdin is never
/// inherited: a terminal there would make client-cli interactive.
fn run_with(cmd: &mut Command, input: Option<&[u8]>, limit: Duration) -> Run {
    let start = Instant::now();
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        // A writer thread, so a child that stops reading cannot block us.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    let out = Run {
        code: status.and_then(|s| s.code()),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        took,
    };
    assert!(
        status.is_some(),
        "{cmd:?} did not finish within {limit:?}: {}",
        out.describe()
    );
    out
}

fn run(cmd: &mut Command) -> Run {
    run_with(cmd, None, LIMIT)
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// `relay` with none of the environment that would change its defaults.
fn relay_cmd() -> Command {
    let mut cmd = Command::new(bin("relay"));
    for var in [
        "CONFAB_CERT",
        "CONFAB_KEY",
        "CONFAB_LISTEN",
        "CONFAB_DATA",
        "CONFAB_PASSWORD",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// `client-cli` for `user` at `server` with [`PASSWORD`], its known-relays
/// file inside `home` so the real one is never read or written.
fn client(server: &str, user: &str, home: &Path) -> Command {
    let mut cmd = Command::new(bin("client-cli"));
    cmd.env_remove("CONFAB_USER")
        .env_remove("CONFAB_SERVER")
        .env("CONFAB_PASSWORD", PASSWORD)
        .env("CONFAB_KNOWN_RELAYS", home.join("known_relays"))
        .env("RUST_LOG", "warn")
        .args(["--server", server, "--user", user]);
    cmd
}

/// `client-cli` that pins `relay`'s certificate.
fn pinned(relay: &Relay, user: &str, home: &Path) -> Command {
    let mut cmd = client(&relay.server(), user, home);
    cmd.arg("--ca").arg(relay.cert());
    cmd
}

/// Runs `relay gen-cert --out DIR EXTRA…`.
fn gen_cert(out: &Path, extra: &[&str]) -> Run {
    run(relay_cmd().args(["gen-cert", "--out"]).arg(out).args(extra))
}

/// The fingerprint clients compute for the first certificate of a PEM file.
fn file_fingerprint(cert: &Path) -> String {
    let der = CertificateDer::pem_file_iter(cert)
        .expect("cert file")
        .next()
        .expect("a certificate")
        .expect("PEM certificate");
    common::trust::fingerprint(&der)
}

/// The value of the `fingerprint SHA256:…` line gen-cert prints.
fn printed_fingerprint(out: &Run) -> String {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint "))
        .unwrap_or_else(|| panic!("no fingerprint line: {}", out.describe()))
        .trim()
        .to_owned()
}

fn temp() -> TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// A `relay serve` process of the test's own, for the cases that need its
/// pid, its stdout or a fixed port. Killed when dropped.
struct Served {
    child: KillOnDrop,
    lines: Receiver<String>,
    addr: String,
}

impl Served {
    fn start(cert_dir: &Path, listen: &str, data: &Path, extra: &[&str]) -> Served {
        let mut child = KillOnDrop(
            relay_cmd()
                .arg("serve")
                .arg("--cert")
                .arg(cert_dir.join("cert.pem"))
                .arg("--key")
                .arg(cert_dir.join("key.pem"))
                .args(["--listen", listen])
                .arg("--data")
                .arg(data)
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start relay serve"),
        );
        let lines = lines_of(child.stdout.take().expect("stdout"));
        let mut seen = Vec::new();
        let addr = match wait_line(&lines, &mut seen, LIMIT, |l| {
            l.starts_with("confab relay listening on ")
        }) {
            Some(line) => line["confab relay listening on ".len()..]
                .split_whitespace()
                .next()
                .expect("address")
                .to_owned(),
            None => panic!("relay did not start; stdout: {seen:?}"),
        };
        Served { child, lines, addr }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

fn lines_of(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The first line (recorded in `seen` with all before it) that `want`
/// accepts within `limit`, or `None`.
fn wait_line(
    lines: &Receiver<String>,
    seen: &mut Vec<String>,
    limit: Duration,
    want: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).ok()?;
        seen.push(line.clone());
        if want(&line) {
            return Some(line);
        }
    }
}

/// Waits up to `limit` for `child` to exit.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// One `[room] #seq HH:MM:SS user: body` line, split into its fields.
struct Line {
    room: String,
    seq: u64,
    from: String,
    body: String,
}

fn parse_line(line: &str) -> Line {
    fn fields(line: &str) -> Option<Line> {
        let mut parts = line.splitn(4, ' ');
        let room = parts.next()?.strip_prefix('[')?.strip_suffix(']')?;
        let seq = parts.next()?.strip_prefix('#')?.parse().ok()?;
        let time = parts.next()?;
        let clock = time.len() == 8
            && time.char_indices().all(|(i, c)| match i {
                2 | 5 => c == ':',
                _ => c.is_ascii_digit(),
            });
        let (from, body) = parts.next()?.split_once(": ")?;
        clock.then(|| Line {
            room: room.to_owned(),
            seq,
            from: from.to_owned(),
            body: body.to_owned(),
        })
    }
    fields(line).unwrap_or_else(|| panic!("not a `[room] #seq HH:MM:SS user: body` line: {line:?}"))
}

/// A port on loopback that nothing listens on (very likely: it was free a
/// moment ago).
fn silent_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    socket.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------- gen-cert

#[test]
fn gen_cert_writes_a_private_key_prints_the_fingerprint_and_refuses_to_overwrite_without_force() {
    use std::os::unix::fs::PermissionsExt;

    let dir = temp();
    let out = dir.path().join("certs");
    let cert = out.join("cert.pem");
    let key = out.join("key.pem");

    let first = gen_cert(&out, &[]);
    first.expect_code(0);
    assert!(cert.is_file() && key.is_file(), "{}", first.describe());
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key.pem mode {mode:o}");
    let fp = printed_fingerprint(&first);
    assert_eq!(fp, file_fingerprint(&cert));

    let cert_before = std::fs::read(&cert).unwrap();
    let key_before = std::fs::read(&key).unwrap();
    gen_cert(&out, &[])
        .expect_failure()
        .expect_stderr("--force");
    assert_eq!(std::fs::read(&cert).unwrap(), cert_before);
    assert_eq!(std::fs::read(&key).unwrap(), key_before);

    let forced = gen_cert(&out, &["--force"]);
    forced.expect_code(0);
    let new_fp = printed_fingerprint(&forced);
    assert_ne!(new_fp, fp);
    assert_eq!(new_fp, file_fingerprint(&cert));
    assert_ne!(std::fs::read(&key).unwrap(), key_before);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "replaced key.pem mode {mode:o}");
}

#[test]
fn gen_cert_accepts_custom_names() {
    let dir = temp();
    let out = dir.path().join("custom");
    let made = gen_cert(
        &out,
        &[
            "--san",
            "chat.example.org",
            "--san",
            "192.0.2.7",
            "--san",
            "::1",
        ],
    );
    made.expect_code(0);
    assert_eq!(
        printed_fingerprint(&made),
        file_fingerprint(&out.join("cert.pem"))
    );
}

// ------------------------------------------------------------------- serve

#[test]
fn serve_without_a_certificate_fails_at_once_naming_the_file_and_gen_cert() {
    let dir = temp();
    let missing = dir.path().join("nowhere/cert.pem");
    let out = run(relay_cmd()
        .arg("serve")
        .arg("--cert")
        .arg(&missing)
        .arg("--key")
        .arg(dir.path().join("nowhere/key.pem"))
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(dir.path().join("data")));
    out.expect_failure()
        .expect_stderr(&missing.display().to_string())
        .expect_stderr("relay gen-cert");
    assert!(out.took < Duration::from_secs(5), "{}", out.describe());
    let said: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(said.len(), 1, "one line expected: {}", out.describe());
}

#[test]
fn serve_without_a_certificate_states_the_os_error_once() {
    let dir = temp();
    let out = run(relay_cmd()
        .arg("serve")
        .arg("--cert")
        .arg(dir.path().join("cert.pem"))
        .arg("--key")
        .arg(dir.path().join("key.pem"))
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(dir.path().join("data")));
    out.expect_failure();
    assert_eq!(
        out.stderr.matches("os error 2").count(),
        1,
        "{}",
        out.describe()
    );
}

// -------------------------------------------------------------------- help

#[test]
fn help_of_relay_serve_and_client_cli_exits_0_and_names_the_main_options() {
    let top = run(relay_cmd().arg("--help"));
    top.expect_code(0);
    for word in ["gen-cert", "serve", "user"] {
        top.expect_stdout(word);
    }

    let serve = run(relay_cmd().args(["serve", "--help"]));
    serve.expect_code(0);
    for flag in [
        "--cert",
        "--key",
        "--listen",
        "--data",
        "--registration",
        "--login-timeout",
        "--handshake-timeout",
        "--hello-timeout",
        "--rate-limit",
    ] {
        serve.expect_stdout(flag);
    }

    let dir = temp();
    let mut cli = Command::new(bin("client-cli"));
    cli.env("CONFAB_KNOWN_RELAYS", dir.path().join("known_relays"));
    let help = run(cli.arg("--help"));
    help.expect_code(0);
    for flag in [
        "--server",
        "--user",
        "--register",
        "--ca",
        "--accept-new",
        "--room",
        "--send",
        "--tail",
        "--json",
    ] {
        help.expect_stdout(flag);
    }
}

#[test]
fn client_cli_without_user_is_a_usage_error() {
    let dir = temp();
    let mut cli = Command::new(bin("client-cli"));
    cli.env_remove("CONFAB_USER")
        .env("CONFAB_PASSWORD", PASSWORD)
        .env("CONFAB_KNOWN_RELAYS", dir.path().join("known_relays"));
    run(cli.args(["--send", "hi"]))
        .expect_code(2)
        .expect_stderr("--user");
}

// --------------------------------------------------------------- scripting

#[test]
fn send_then_tail_prints_the_messages_in_order_as_text_and_json() {
    let relay = Relay::start();
    let home = temp();
    run(pinned(&relay, "alice", home.path()).args(["--register", "--send", "hello"]))
        .expect_code(0);
    run(pinned(&relay, "alice", home.path()).args(["--send", "hello again"])).expect_code(0);

    let text = run(pinned(&relay, "alice", home.path()).args(["--tail", "5"]));
    text.expect_code(0);
    let lines: Vec<_> = text.stdout.lines().map(parse_line).collect();
    assert_eq!(lines.len(), 2, "{}", text.describe());
    let bodies: Vec<_> = lines.iter().map(|l| l.body.as_str()).collect();
    assert_eq!(bodies, ["hello", "hello again"]);
    for l in &lines {
        assert_eq!((l.room.as_str(), l.from.as_str()), ("lobby", "alice"));
    }
    assert!(lines[0].seq < lines[1].seq, "{}", text.describe());

    let json = run(pinned(&relay, "alice", home.path()).args(["--json", "--tail", "5"]));
    json.expect_code(0);
    let values: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(values.len(), 2, "{}", json.describe());
    for (v, l) in values.iter().zip(&lines) {
        assert_eq!(v["type"], "message", "{v}");
        assert_eq!(v["room"], "lobby", "{v}");
        assert_eq!(v["seq"].as_u64(), Some(l.seq), "{v}");
        assert!(v["ts"].as_i64().is_some_and(|ts| ts > 0), "{v}");
        assert_eq!(v["from"], "alice", "{v}");
        assert_eq!(v["body"].as_str(), Some(l.body.as_str()), "{v}");
    }
}

#[test]
fn piped_lines_are_all_sent_before_exit_and_stored_once_in_order() {
    let relay = Relay::start();
    let home = temp();
    let input: String = (1..=30).map(|i| format!("line {i}\n")).collect();
    let sent = run_with(
        pinned(&relay, "alice", home.path()).arg("--register"),
        Some(input.as_bytes()),
        LIMIT,
    );
    sent.expect_code(0);

    let tail = run(pinned(&relay, "alice", home.path()).args(["--tail", "40"]));
    tail.expect_code(0);
    let lines: Vec<_> = tail.stdout.lines().map(parse_line).collect();
    let bodies: Vec<_> = lines.iter().map(|l| l.body.clone()).collect();
    let expected: Vec<_> = (1..=30).map(|i| format!("line {i}")).collect();
    assert_eq!(bodies, expected, "{}", tail.describe());
    assert!(
        lines.windows(2).all(|w| w[0].seq < w[1].seq),
        "{}",
        tail.describe()
    );
}

#[test]
fn wrong_password_exits_4_and_says_so() {
    let relay = Relay::start();
    let home = temp();
    run(pinned(&relay, "alice", home.path()).args(["--register", "--send", "hi"])).expect_code(0);
    run(pinned(&relay, "alice", home.path())
        .env("CONFAB_PASSWORD", "not the password")
        .args(["--send", "hi"]))
    .expect_code(4)
    .expect_stderr("wrong user name or password");
}

#[test]
fn unreachable_relay_exits_3_after_the_connect_timeout_asking_if_it_runs() {
    let dir = temp();
    gen_cert(&dir.path().join("certs"), &[]).expect_code(0);
    let server = format!("127.0.0.1:{}", silent_port());
    let out = run(client(&server, "alice", dir.path())
        .arg("--ca")
        .arg(dir.path().join("certs/cert.pem"))
        .args(["--send", "anyone?"]));
    out.expect_code(3).expect_stderr("is the relay running");
    assert!(out.stderr.contains("no answer"), "{}", out.describe());
    assert!(out.took < Duration::from_secs(14), "{}", out.describe());
}

#[test]
fn tail_of_a_room_the_user_is_not_in_exits_1() {
    let relay = Relay::start();
    let home = temp();
    // bob makes a room alice never joins.
    run_with(
        pinned(&relay, "bob", home.path()).args(["--register", "--interactive"]),
        Some(b"/create dev\n/quit\n"),
        LIMIT,
    )
    .expect_code(0);
    run(pinned(&relay, "alice", home.path()).args(["--register", "--send", "hi"])).expect_code(0);

    run(pinned(&relay, "alice", home.path()).args(["--room", "dev", "--tail", "5"])).expect_code(1);
    run(pinned(&relay, "alice", home.path()).args(["--room", "nosuchroom", "--tail", "5"]))
        .expect_code(1);
}

// ------------------------------------------------------------------- trust

#[test]
fn pinning_another_certificate_is_refused_with_exit_3() {
    let relay = Relay::start();
    let home = temp();
    let other = home.path().join("other");
    gen_cert(&other, &[]).expect_code(0);
    let out = run(client(&relay.server(), "alice", home.path())
        .arg("--ca")
        .arg(other.join("cert.pem"))
        .args(["--register", "--send", "hi"]));
    out.expect_code(3)
        .expect_stderr("does not match the pinned certificates")
        .expect_stderr(&file_fingerprint(&relay.cert()))
        .expect_stderr(&file_fingerprint(&other.join("cert.pem")));
}

#[test]
fn trust_on_first_use_asks_remembers_and_refuses_a_changed_certificate() {
    let mut relay = Relay::start();
    let server = relay.server();
    let home = temp();
    let known = home.path().join("known_relays");
    let fp = file_fingerprint(&relay.cert());

    // No terminal to ask on and no --accept-new: refused, with what to do.
    let out = run(client(&server, "alice", home.path()).args(["--register", "--send", "hi"]));
    out.expect_code(3)
        .expect_stderr(&fp)
        .expect_stderr("is not known yet")
        .expect_stderr("--accept-new");
    assert!(!known.exists(), "nothing accepted, nothing remembered");

    run(client(&server, "alice", home.path()).args(["--accept-new", "--register", "--send", "hi"]))
        .expect_code(0);
    let text = std::fs::read_to_string(&known).expect("known_relays written");
    let entries: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(entries, [format!("{server} {fp}")], "{text}");
    run(client(&server, "alice", home.path()).args(["--send", "known now"])).expect_code(0);

    // The same address, another certificate: what an interception looks like.
    relay.kill();
    let new_certs = home.path().join("new");
    gen_cert(&new_certs, &[]).expect_code(0);
    let new_fp = file_fingerprint(&new_certs.join("cert.pem"));
    let _imposter = Served::start(&new_certs, &server, &home.path().join("data"), &[]);
    let before = std::fs::read(&known).unwrap();
    for extra in [&[][..], &["--accept-new"][..]] {
        let out = run(client(&server, "alice", home.path())
            .args(extra)
            .args(["--send", "hi"]));
        out.expect_code(3)
            .expect_stderr("presented a different certificate")
            .expect_stderr(&fp)
            .expect_stderr(&new_fp);
        assert_eq!(std::fs::read(&known).unwrap(), before, "file changed");
    }
}

// ---------------------------------------------------------- administration

#[test]
fn user_admin_works_while_the_relay_runs() {
    let relay = Relay::start();
    let home = temp();
    let store = relay.store_args();
    let user = |args: &[&str], password: Option<&str>| {
        let mut cmd = relay_cmd();
        cmd.arg("user").args(args).args(&store);
        if let Some(p) = password {
            cmd.env("CONFAB_PASSWORD", p);
        }
        run(&mut cmd)
    };
    let login = |password: &str| {
        run(pinned(&relay, "bob", home.path())
            .env("CONFAB_PASSWORD", password)
            .args(["--send", "hi"]))
    };

    user(&["add", "bob"], Some(PASSWORD)).expect_code(0);
    let list = user(&["list"], None);
    list.expect_code(0);
    assert!(
        list.stdout
            .lines()
            .any(|l| l.split('\t').next() == Some("bob")),
        "{}",
        list.describe()
    );
    login(PASSWORD).expect_code(0);

    let changed = "a brand new password";
    user(&["passwd", "bob"], Some(changed)).expect_code(0);
    login(PASSWORD)
        .expect_code(4)
        .expect_stderr("wrong user name or password");
    login(changed).expect_code(0);

    user(&["add", "BOB"], Some(PASSWORD))
        .expect_failure()
        .expect_stderr("taken");
    user(&["add", "B0B"], Some(PASSWORD))
        .expect_failure()
        .expect_stderr(r#"the name "B0B" looks like an existing user's ("bob")"#);
    user(&["add", "carol"], Some("short"))
        .expect_failure()
        .expect_stderr("password must be 8");
    let list = user(&["list"], None);
    assert!(!list.stdout.contains("carol"), "{}", list.describe());

    user(&["del", "bob"], None).expect_code(0);
    login(changed).expect_code(4);
    let list = user(&["list"], None);
    list.expect_code(0);
    assert!(!list.stdout.contains("bob"), "{}", list.describe());
    // Like the name, its look stays taken: nobody may pass for bob in the
    // history he left.
    user(&["add", "b0b"], Some(PASSWORD))
        .expect_failure()
        .expect_stderr("looks like");
}

#[test]
fn closed_registration_refuses_clients_but_not_the_operator() {
    let relay = Relay::start_with(&["--registration", "closed"], &[]);
    let home = temp();
    run(pinned(&relay, "dave", home.path()).args(["--register", "--send", "hi"]))
        .expect_code(4)
        .expect_stderr("registration is closed");

    run(relay_cmd()
        .args(["user", "add", "dave"])
        .args(relay.store_args())
        .env("CONFAB_PASSWORD", PASSWORD))
    .expect_code(0);
    run(pinned(&relay, "dave", home.path()).args(["--send", "hi"])).expect_code(0);
}

// --------------------------------------------------------------- shutdown

#[test]
fn sigterm_stops_the_relay_cleanly_and_an_interactive_client_starts_reconnecting() {
    let dir = temp();
    let certs = dir.path().join("certs");
    gen_cert(&certs, &[]).expect_code(0);
    let mut relay = Served::start(&certs, "127.0.0.1:0", &dir.path().join("data"), &[]);
    let server = relay.addr.clone();
    let cert = certs.join("cert.pem");
    let mut register = client(&server, "alice", dir.path());
    register
        .arg("--ca")
        .arg(&cert)
        .args(["--register", "--send", "hi"]);
    run(&mut register).expect_code(0);

    let mut child = client(&server, "alice", dir.path())
        .arg("--ca")
        .arg(&cert)
        .arg("--interactive")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start client-cli");
    let out = lines_of(child.stdout.take().expect("stdout"));
    // Held so the client's stdin stays open: EOF would make it quit.
    let _stdin = child.stdin.take();
    let _client = KillOnDrop(child);
    let mut seen = Vec::new();
    assert!(
        wait_line(&out, &mut seen, LIMIT, |l| l
            .starts_with("-- you are in lobby"))
        .is_some(),
        "client never joined the lobby: {seen:?}"
    );

    run(Command::new("kill").args(["-TERM", &relay.pid()])).expect_code(0);
    let status = wait_exit(&mut relay.child, Duration::from_secs(5))
        .expect("relay still running 5 s after SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
    let mut said = Vec::new();
    while let Ok(line) = relay.lines.recv_timeout(Duration::from_secs(1)) {
        said.push(line);
    }
    assert!(
        said.iter().any(|l| l == "confab relay stopped"),
        "relay stdout after SIGTERM: {said:?}"
    );

    assert!(
        wait_line(&out, &mut seen, LIMIT, |l| l
            .starts_with("-- connection lost ("))
        .is_some(),
        "client did not report the lost connection: {seen:?}"
    );
}

#[test]
fn admin_commands_refuse_a_data_folder_without_a_store() {
    let dir = temp();
    let missing = dir.path().join("typo");
    for args in [&["list"][..], &["del", "bob"][..]] {
        run(relay_cmd()
            .arg("user")
            .args(args)
            .arg("--data")
            .arg(&missing))
        .expect_failure()
        .expect_stderr("there is no store in");
    }
    assert!(!missing.exists(), "nothing was made");
    run(relay_cmd()
        .args(["user", "add", "bob", "--data"])
        .arg(&missing)
        .env("CONFAB_PASSWORD", PASSWORD))
    .expect_code(0)
    .expect_stderr("made a new one");
}

#[test]
fn an_empty_send_is_a_usage_error() {
    for text in ["", "   "] {
        run(Command::new(bin("client-cli")).args(["--user", "x", "--send", text]))
            .expect_code(2)
            .expect_stderr("nothing to send");
    }
}

// ------------------------------------------------------------ closed stdout

/// What `client-cli` must leave behind when its reader went away: no panic
/// (`println!` panics on a closed pipe), and 141, what a shell reports for
/// `cat` ended by SIGPIPE under `head`.
#[track_caller]
fn expect_quiet_end_of_output(code: Option<i32>, stderr: &str, what: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{what}: stderr after the reader closed stdout:\n{stderr}"
    );
    assert_eq!(code, Some(141), "{what}: exit code; stderr:\n{stderr}");
}

#[test]
fn tail_into_a_reader_that_closed_ends_quietly_as_text_and_json() {
    let relay = Relay::start();
    let home = temp();
    let input: String = (1..=40).map(|i| format!("line {i}\n")).collect();
    run_with(
        pinned(&relay, "alice", home.path()).arg("--register"),
        Some(input.as_bytes()),
        LIMIT,
    )
    .expect_code(0);

    for args in [&["--tail", "200"][..], &["--json", "--tail", "200"][..]] {
        let start = Instant::now();
        let mut child = pinned(&relay, "alice", home.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start client-cli");
        // `| head -n 0`: the reader is gone before the first line, so the
        // very first write fails, whatever the pipe's buffer would hold.
        drop(child.stdout.take());
        let stderr = drain(child.stderr.take().expect("stderr"));
        let status = wait_exit(&mut child, LIMIT);
        let _ = child.kill();
        let stderr = stderr.join().expect("stderr reader");
        assert!(
            status.is_some(),
            "{args:?} still running after {:?}; stderr:\n{stderr}",
            start.elapsed()
        );
        expect_quiet_end_of_output(status.and_then(|s| s.code()), &stderr, &args.join(" "));
    }
}

#[test]
fn follow_mode_ends_quietly_when_its_reader_goes_away() {
    let relay = Relay::start();
    let home = temp();
    run(pinned(&relay, "alice", home.path()).args(["--register", "--send", "hi"])).expect_code(0);
    run(pinned(&relay, "bob", home.path()).args(["--register", "--send", "hello"])).expect_code(0);

    let mut child = pinned(&relay, "alice", home.path())
        .arg("--interactive")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start client-cli");
    let out = lines_of(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    // Held so the client's stdin stays open: EOF would make it quit.
    let _stdin = child.stdin.take();
    let mut seen = Vec::new();
    assert!(
        wait_line(&out, &mut seen, LIMIT, |l| l
            .starts_with("-- you are in lobby"))
        .is_some(),
        "client never joined the lobby: {seen:?}"
    );
    // The reader stops: dropping the receiver ends the thread that holds
    // the pipe's read end once the next line reaches it.
    drop(out);
    for i in 0..3 {
        run(pinned(&relay, "bob", home.path()).args(["--send", &format!("are you there? {i}")]))
            .expect_code(0);
    }
    let status = wait_exit(&mut child, LIMIT);
    let _ = child.kill();
    let stderr = stderr.join().expect("stderr reader");
    assert!(
        status.is_some(),
        "follow mode still running after its reader went away; stderr:\n{stderr}"
    );
    expect_quiet_end_of_output(status.and_then(|s| s.code()), &stderr, "--interactive");
}

// ------------------------------------------------------------ invitations

#[test]
fn an_invitation_is_printed_at_once_listed_in_rooms_and_declined_or_accepted() {
    let relay = Relay::start();
    let home = temp();
    for user in ["alice", "bob"] {
        run(pinned(&relay, user, home.path()).args(["--register", "--send", "hi"])).expect_code(0);
    }
    let mut child = pinned(&relay, "bob", home.path())
        .arg("--interactive")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start client-cli");
    let out = lines_of(child.stdout.take().expect("stdout"));
    let mut stdin = child.stdin.take().expect("stdin");
    let _bob = KillOnDrop(child);
    let mut seen = Vec::new();
    let expect = |seen: &mut Vec<String>, what: &str, want: &dyn Fn(&str) -> bool| {
        assert!(
            wait_line(&out, seen, LIMIT, want).is_some(),
            "bob's client never printed {what}: {seen:?}"
        );
    };
    expect(&mut seen, "the lobby", &|l| {
        l.starts_with("-- you are in lobby")
    });

    // alice, in a client of her own, makes a private room and invites bob.
    let alice = |commands: &str| {
        run_with(
            pinned(&relay, "alice", home.path()).arg("--interactive"),
            Some(commands.as_bytes()),
            LIMIT,
        )
    };
    alice("/create ops private\n/invite bob\n")
        .expect_code(0)
        .expect_stdout("now talking in ops");
    let invited = "* alice invited you to #ops — /join ops to accept, /decline ops to decline";
    expect(&mut seen, "the invitation", &|l| l == invited);
    stdin.write_all(b"/rooms\n").unwrap();
    expect(&mut seen, "the invitation among the rooms", &|l| {
        l.starts_with("-- your rooms: lobby;") && l.ends_with("; invited to: ops (by alice)")
    });

    // Declined, it is gone, and the room is as hidden as before.
    stdin
        .write_all(b"/decline ops\n/rooms\n/join ops\n")
        .unwrap();
    expect(&mut seen, "the decline", &|l| l == "-- declined #ops");
    expect(&mut seen, "the rooms after the decline", &|l| {
        l.starts_with("-- your rooms:")
    });
    assert!(!seen.last().unwrap().contains("invited"), "{seen:?}");
    expect(&mut seen, "the refused join", &|l| {
        l == "-- error: there is no room ops"
    });

    // Invited again, told again; joining accepts.
    alice("/room ops\n/invite bob\n").expect_code(0);
    expect(&mut seen, "the second invitation", &|l| l == invited);
    stdin.write_all(b"/join ops\n/rooms\n").unwrap();
    expect(&mut seen, "the join", &|l| l == "-- now talking in ops");
    expect(&mut seen, "the rooms after joining", &|l| {
        l.starts_with("-- your rooms:")
    });
    let rooms = seen.last().unwrap();
    assert!(
        rooms.contains(" ops") && !rooms.contains("invited"),
        "{seen:?}"
    );
}

#[test]
fn invitations_in_json_name_the_room_its_kind_and_who_invited_live_and_at_login() {
    let relay = Relay::start();
    let home = temp();
    for user in ["alice", "bob"] {
        run(pinned(&relay, user, home.path()).args(["--register", "--send", "hi"])).expect_code(0);
    }
    let alice = |commands: &str| {
        run_with(
            pinned(&relay, "alice", home.path()).arg("--interactive"),
            Some(commands.as_bytes()),
            LIMIT,
        )
        .expect_code(0);
    };
    let bob = || {
        let mut child = pinned(&relay, "bob", home.path())
            .args(["--interactive", "--json"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start client-cli");
        let out = lines_of(child.stdout.take().expect("stdout"));
        let stdin = child.stdin.take().expect("stdin");
        (KillOnDrop(child), stdin, out)
    };
    let json_line = |out: &Receiver<String>, seen: &mut Vec<String>, kind: &str| {
        let line = wait_line(out, seen, LIMIT, |l| {
            l.contains(&format!("\"type\":\"{kind}\""))
        })
        .unwrap_or_else(|| panic!("no {kind} line: {seen:?}"));
        serde_json::from_str::<serde_json::Value>(&line).expect("a JSON line")
    };

    let (child, stdin, out) = bob();
    let mut seen = Vec::new();
    json_line(&out, &mut seen, "joined");
    alice("/create ops private\n/invite bob\n");
    let v = json_line(&out, &mut seen, "invited");
    assert_eq!(
        v,
        serde_json::json!({"type": "invited", "room": "ops", "kind": "private", "by": "alice"})
    );
    drop((stdin, child));

    // Made while bob is away: said once he is back, newest first.
    alice("/create dev\n/invite bob\n");
    let (_child, _stdin, out) = bob();
    let mut seen = Vec::new();
    let v = json_line(&out, &mut seen, "invitations");
    assert_eq!(
        v["invitations"],
        serde_json::json!([
            {"room": "dev", "kind": "public", "by": "alice"},
            {"room": "ops", "kind": "private", "by": "alice"},
        ])
    );
}

// ----------------------------------------------------------------- topics

#[test]
fn a_topic_is_set_shown_listed_escaped_and_cleared_from_the_terminal() {
    let relay = Relay::start();
    let home = temp();
    for user in ["alice", "bob"] {
        run(pinned(&relay, user, home.path()).args(["--register", "--send", "hi"])).expect_code(0);
    }
    let alice = |commands: &str| {
        run_with(
            pinned(&relay, "alice", home.path()).arg("--interactive"),
            Some(commands.as_bytes()),
            LIMIT,
        )
    };
    alice("/create ops\n").expect_code(0);
    let mut child = pinned(&relay, "bob", home.path())
        .arg("--interactive")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start client-cli");
    let out = lines_of(child.stdout.take().expect("stdout"));
    let mut stdin = child.stdin.take().expect("stdin");
    let _bob = KillOnDrop(child);
    let mut seen = Vec::new();
    let expect = |seen: &mut Vec<String>, what: &str, want: &dyn Fn(&str) -> bool| {
        assert!(
            wait_line(&out, seen, LIMIT, want).is_some(),
            "bob's client never printed {what}: {seen:?}"
        );
    };
    expect(&mut seen, "the lobby", &|l| {
        l.starts_with("-- you are in lobby")
    });
    stdin.write_all(b"/join ops\n/topic\n").unwrap();
    expect(&mut seen, "that ops has none", &|l| {
        l == "-- #ops has no topic; /topic TEXT sets one"
    });

    // Set by alice, in a client of her own: told at once.
    alice("/room ops\n/topic pages, deploys, on-call\n")
        .expect_code(0)
        .expect_stdout("* alice set the topic of #ops: pages, deploys, on-call");
    expect(&mut seen, "the new topic", &|l| {
        l == "* alice set the topic of #ops: pages, deploys, on-call"
    });
    stdin.write_all(b"/topic\n/rooms\n").unwrap();
    expect(&mut seen, "the topic asked for", &|l| {
        l == "-- topic of #ops: pages, deploys, on-call"
    });
    expect(&mut seen, "the rooms", &|l| l.starts_with("-- your rooms:"));
    expect(&mut seen, "the topic under the rooms", &|l| {
        l == "-- topic of #ops: pages, deploys, on-call"
    });

    // A control character is refused before it leaves; a bidi override is
    // taken, and escaped on the terminal as in a message.
    alice("/room ops\n/topic a\tb\n")
        .expect_code(0)
        .expect_stdout("error: the topic holds the control character U+0009");
    alice("/room ops\n/topic abc\u{202e}fed\n").expect_code(0);
    expect(&mut seen, "the escaped topic", &|l| {
        l == "* alice set the topic of #ops: abc\\u{202e}fed"
    });

    // `/topic -` clears it, told to the one who cleared it too.
    stdin.write_all(b"/topic -\n").unwrap();
    expect(&mut seen, "the clearing", &|l| {
        l == "* bob cleared the topic of #ops"
    });
}

#[test]
fn topics_in_json_are_events_of_their_own_and_part_of_the_room_list() {
    let relay = Relay::start();
    let home = temp();
    for user in ["alice", "bob"] {
        run(pinned(&relay, user, home.path()).args(["--register", "--send", "hi"])).expect_code(0);
    }
    run_with(
        pinned(&relay, "alice", home.path()).arg("--interactive"),
        Some(b"/create ops\n"),
        LIMIT,
    )
    .expect_code(0);
    let mut child = pinned(&relay, "bob", home.path())
        .args(["--interactive", "--json", "--room", "ops"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start client-cli");
    let out = lines_of(child.stdout.take().expect("stdout"));
    let mut stdin = child.stdin.take().expect("stdin");
    let _bob = KillOnDrop(child);
    let mut seen = Vec::new();
    let json_line = |seen: &mut Vec<String>, kind: &str| {
        let line = wait_line(&out, seen, LIMIT, |l| {
            l.contains(&format!("\"type\":\"{kind}\""))
        })
        .unwrap_or_else(|| panic!("no {kind} line: {seen:?}"));
        serde_json::from_str::<serde_json::Value>(&line).expect("a JSON line")
    };
    json_line(&mut seen, "joined");
    stdin.write_all(b"/join ops\n/topic builds\n").unwrap();
    let v = json_line(&mut seen, "topic");
    assert_eq!(
        v,
        serde_json::json!({"type": "topic", "room": "ops", "topic": "builds", "by": "bob"})
    );
    stdin.write_all(b"/topic\n/rooms\n").unwrap();
    let v = json_line(&mut seen, "room_topic");
    assert_eq!(
        v,
        serde_json::json!({"type": "room_topic", "room": "ops", "topic": "builds"})
    );
    let v = json_line(&mut seen, "rooms");
    let ops = serde_json::json!({"room": "ops", "kind": "public", "members": 2, "topic": "builds"});
    assert!(
        v["joined"].as_array().unwrap().contains(&ops),
        "joined: {}",
        v["joined"]
    );
    assert!(v["public"].as_array().unwrap().contains(&ops));
    assert!(v["detail"].as_str().unwrap().starts_with("your rooms:"));
}
