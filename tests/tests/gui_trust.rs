//! A relay's certificate replaced while a person chats in the window: the
//! real window under Xvfb, the real relay restarted with a new certificate,
//! the real known-relays file. Buttons are found where the window's own
//! code lays them out (the same screen, built headless at the window's
//! size), then clicked with xdotool. Screenshots land in target/gui-e2e/.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use client_gui::screen::chat::{self, Chat};
use client_gui::screen::trust::Trust;
use common::client::{ConnectError, Event};
use common::trust::TrustFailure;
use confab_tests::gui::{shots, Gui, Xvfb};
use confab_tests::{bin, Relay, PASSWORD};
use iced_test::core::widget::Id;
use iced_test::core::{Font, Rectangle, Settings};
use iced_test::selector::Bounded;
use iced_test::{Selector, Simulator};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The fingerprint clients compute for the first certificate of a PEM file.
fn file_fingerprint(cert: &Path) -> String {
    let der = CertificateDer::pem_file_iter(cert)
        .expect("cert file")
        .next()
        .expect("a certificate")
        .expect("PEM certificate");
    common::trust::fingerprint(&der)
}

/// Waits until the window's log has `what`, failing after 30 s.
fn wait_log(gui: &Gui, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gui.log().contains(what) {
        assert!(
            Instant::now() < deadline,
            "no {what:?} in the window's log:\n{}",
            gui.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The window's size, as X reports it.
fn window_size(gui: &Gui) -> (f32, f32) {
    let geometry = gui.xdotool(&["getwindowgeometry", &gui.window]);
    let size = geometry
        .lines()
        .find_map(|l| l.trim().strip_prefix("Geometry: "))
        .unwrap_or_else(|| panic!("no geometry in {geometry:?}"));
    let (w, h) = size.split_once('x').expect("WxH");
    (w.parse().expect("width"), h.parse().expect("height"))
}

/// Clicks, in the real window, the widget `target` of the screen it
/// shows, laid out headless at the window's size by `screen`.
///
/// Where a widget lands depends on the default font: the headless layout
/// takes Fira Sans, and the window whatever its settings and the system
/// give (DejaVu Sans here). The click goes where the widget is in both.
fn click<'a, M, S>(gui: &Gui, screen: impl Fn(Settings) -> Simulator<'a, M>, target: S)
where
    S: Selector + Clone + Send,
    S::Output: Bounded + Clone + Send + std::fmt::Debug,
{
    let system = Settings {
        default_font: Font::with_name("DejaVu Sans"),
        ..Settings::default()
    };
    let bounds: Vec<Rectangle> = [Settings::default(), system]
        .into_iter()
        .map(|settings| {
            let found = screen(settings)
                .find(target.clone())
                .expect("the widget to click");
            found
                .visible_bounds()
                .unwrap_or_else(|| panic!("off screen: {found:?}"))
        })
        .collect();
    let at = bounds[0]
        .intersection(&bounds[1])
        .unwrap_or_else(|| panic!("the fonts put the widget in different places: {bounds:?}"))
        .center();
    let (x, y) = (at.x.round().to_string(), at.y.round().to_string());
    gui.xdotool(&["mousemove", "--window", &gui.window, &x, &y, "click", "1"]);
    // Drawn a frame later.
    std::thread::sleep(Duration::from_millis(400));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_replaced_while_chatting_is_looked_into_trusted_and_the_chat_goes_on() {
    let mut relay = Relay::start();
    drop(relay.register("alice").await);
    let server = relay.server();
    let old = file_fingerprint(&relay.cert());

    let x = Xvfb::start();
    let gui = Gui::start(
        &x,
        &[
            "--server".as_ref(),
            server.as_ref(),
            "--user".as_ref(),
            "alice".as_ref(),
        ],
    );
    // Trusted on first use some time ago.
    let known = gui.home.path().join("known_relays");
    std::fs::write(&known, format!("{server} {old}\n")).expect("known_relays");
    gui.log_in("alice", PASSWORD);
    let size = window_size(&gui);
    let dir = shots();

    // The operator replaces the relay's certificate and restarts it.
    let out = Command::new(bin("relay"))
        .args(["gen-cert", "--force", "--out"])
        .arg(relay.dir.path().join("certs"))
        .output()
        .expect("relay gen-cert");
    assert!(out.status.success(), "{out:?}");
    relay.restart();
    let new = file_fingerprint(&relay.cert());
    assert_ne!(old, new);

    // The session reconnects, meets the new certificate and stops.
    wait_log(&gui, "client_gui::screen::chat: offline");
    std::thread::sleep(Duration::from_millis(400));
    gui.screenshot(&dir.join("trust-offline.png"));
    let failure = TrustFailure::Changed {
        server: server.clone(),
        known: old.clone(),
        presented: new.clone(),
        file: known.clone(),
    };
    let mut offline = Chat::new("alice".into(), server.clone(), server.clone());
    offline.stopped(&ConnectError::Trust(failure.clone()));
    click(
        &gui,
        |fonts| Simulator::with_size(fonts, size, offline.view()),
        "Details",
    );
    gui.screenshot(&dir.join("trust-details.png"));

    // In a small window the page scrolls to its buttons.
    gui.xdotool(&["windowsize", &gui.window, "640", "480"]);
    std::thread::sleep(Duration::from_millis(600));
    gui.screenshot(&dir.join("trust-details-640x480.png"));
    gui.xdotool(&["mousemove", "--window", &gui.window, "320", "240"]);
    gui.xdotool(&["click", "--repeat", "10", "--delay", "30", "5"]);
    std::thread::sleep(Duration::from_millis(400));
    gui.screenshot(&dir.join("trust-details-640x480-scrolled.png"));
    let (w, h) = (size.0.to_string(), size.1.to_string());
    gui.xdotool(&["windowsize", &gui.window, &w, &h]);
    std::thread::sleep(Duration::from_millis(600));

    let mut trust = Trust::new(failure);
    click(
        &gui,
        |fonts| Simulator::with_size(fonts, size, trust.view()),
        "I confirmed the new fingerprint with the operator: trust it",
    );
    gui.screenshot(&dir.join("trust-confirm.png"));
    assert_eq!(
        std::fs::read_to_string(&known).unwrap(),
        format!("{server} {old}\n"),
        "nothing written before the second step"
    );
    trust.confirming = true;
    click(
        &gui,
        |fonts| Simulator::with_size(fonts, size, trust.view()),
        "Replace the remembered fingerprint",
    );

    // Connected again, with the password kept in memory, into the same chat.
    wait_log(&gui, "back online");
    assert_eq!(
        std::fs::read_to_string(&known).unwrap(),
        format!("{server} {new}\n")
    );
    let mut bob = relay.register("bob").await;
    bob.joined("lobby").await;
    let chatting = Chat::new("alice".into(), server.clone(), server.clone());
    click(
        &gui,
        |fonts| Simulator::with_size(fonts, size, chatting.view()),
        Id::new(chat::view::COMPOSER),
    );
    gui.xdotool(&[
        "type",
        "--delay",
        "15",
        "still here after the new certificate",
    ]);
    gui.xdotool(&["key", "Return"]);
    let got = bob
        .wait_for("alice's line", |e| match e {
            Event::Message(m) if m.from == "alice" => Some(m.body.clone()),
            _ => None,
        })
        .await;
    assert_eq!(got, "still here after the new certificate");
    assert_eq!(
        gui.xdotool(&["getwindowname", &gui.window]),
        "confab — alice"
    );
    std::thread::sleep(Duration::from_millis(400));
    gui.screenshot(&dir.join("trust-chat-again.png"));
}
