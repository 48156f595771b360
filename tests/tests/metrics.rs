//! `relay serve --metrics`: what happened shows up at /metrics.

use std::io::{Read, Write};

use confab_tests::Relay;

fn get(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics port");
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn value(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_count_logins_messages_and_deliveries() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relay = Relay::start_with(&["--metrics", &format!("127.0.0.1:{port}")], &[]);
    let mut alice = relay.register("alice").await;
    let mut bob = relay.register("bob").await;
    alice.joined("lobby").await;
    bob.joined("lobby").await;
    alice.client.send("lobby", "counted").await.unwrap();
    bob.message_in("lobby").await;
    alice.message_in("lobby").await;

    let response = get(port, "/metrics");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("content-type: text/plain; version=0.0.4"));
    assert_eq!(value(&response, "confab_registrations_total"), 2);
    assert_eq!(value(&response, "confab_messages_stored_total"), 1);
    assert_eq!(value(&response, "confab_sessions"), 2);
    assert_eq!(
        value(&response, "confab_deliveries_total"),
        2,
        "to alice and bob"
    );
    assert!(value(&response, "confab_connections_accepted_total") >= 2);
    assert!(get(port, "/nope").starts_with("HTTP/1.1 404"));
}
