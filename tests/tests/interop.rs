//! An independent client, written in Python from docs/PROTOCOL.md alone,
//! against the real relay: proof that the document is enough to build a
//! client without reading our sources.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use confab_tests::{bin, Relay};

/// The interpreter with aioquic installed; `make test` provides it.
const PYTHON_ENV: &str = "CONFAB_INTEROP_PYTHON";

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/confab_client.py")
}

fn run(python: &std::ffi::OsStr, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut child = Command::new(python)
        .arg(script())
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the python client");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_python_client_written_from_the_protocol_document_works() {
    let Some(python) = std::env::var_os(PYTHON_ENV) else {
        let how = format!("set {PYTHON_ENV} to a python with aioquic (`make test` does)");
        confab_tests::skip_without("Python with aioquic", &how);
        return;
    };
    let (ok, out) = run(&python, &["--self-test"], &[]);
    assert!(ok, "codec self-test against PROTOCOL.md's examples:\n{out}");

    let relay = Relay::start();
    let added = Command::new(bin("relay"))
        .args(["user", "add", "bob"])
        .args(relay.store_args())
        .env("CONFAB_PASSWORD", "bobpassword1")
        .output()
        .expect("relay user add");
    assert!(added.status.success(), "{added:?}");
    let cert = relay.cert();
    let args = [
        "--server",
        &relay.server(),
        "--ca",
        cert.to_str().unwrap(),
        "--user",
        "alice",
        "--register",
        "--peer",
        "bob",
        "scenario",
    ];
    let env = [
        ("CONFAB_PASSWORD", "alicepassword1"),
        ("CONFAB_PEER_PASSWORD", "bobpassword1"),
    ];
    let (ok, out) = run(&python, &args, &env);
    assert!(ok, "scenario:\n{out}\nrelay log:\n{}", relay.log());
    assert!(out.contains("ok scenario: 0 failure(s)"), "{out}");
    for step in [
        "invite",
        "invitation_listed",
        "decline_by_leave",
        "accept_by_join",
        "topic",
    ] {
        assert!(
            out.contains(&format!("ok {step} (")),
            "{step} did not run:\n{out}"
        );
    }
}
