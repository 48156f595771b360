//! Every size and time limit of the protocol, in one place, with the reason
//! beside each. Both sides import these; the relay enforces them.

use std::time::Duration;

/// Largest control-stream frame, payload only (the 4-byte prefix excluded).
/// A chat line is at most 4 KiB; 64 KiB leaves room to spare while keeping a
/// hostile peer from making us allocate much. Replies that grow with the
/// relay (history, room and member lists) go on bulk streams instead.
pub const MAX_CONTROL_FRAME: usize = 64 * 1024;

/// Largest frame on a bulk stream (history pages). A full page of
/// [`MAX_PAGE`] messages at [`MAX_BODY`] bytes each, plus headers, fits.
pub const MAX_BULK_FRAME: usize = 1024 * 1024;

/// Longest message body, in bytes of UTF-8.
pub const MAX_BODY: usize = 4096;

/// Longest room topic, in bytes of UTF-8: a line that says what a room
/// is for fits many times over, and a room's stored topic stays small.
pub const MAX_TOPIC: usize = 256;

/// Longest user or room name, in bytes. Names are ASCII, so also characters.
pub const MAX_NAME: usize = 32;

/// Shortest password accepted at registration. Short passwords fall to
/// offline guessing even behind argon2id.
pub const MIN_PASSWORD: usize = 8;

/// Longest password, in bytes: bounds the work one login can cause.
pub const MAX_PASSWORD: usize = 1024;

/// History page size when a client asks for "the latest".
pub const DEFAULT_PAGE: u16 = 50;

/// Largest history page a client may request.
pub const MAX_PAGE: u16 = 200;

/// Longest free-text field of a `Hello` (client name and version).
pub const MAX_CLIENT_NAME: usize = 64;

/// Time a connection has from its QUIC handshake to a successful login.
pub const LOGIN_DEADLINE: Duration = Duration::from_secs(10);

/// QUIC idle timeout. With the client's keep-alive below it, a vanished
/// peer is noticed within this many seconds.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Client keep-alive: well under the idle timeout, so one lost keep-alive
/// packet never ends a healthy connection.
pub const KEEP_ALIVE: Duration = Duration::from_secs(3);

/// Checks a message body: not empty or only whitespace, at most
/// [`MAX_BODY`] bytes. The error says what is wrong, for people.
pub fn check_body(body: &str) -> Result<(), String> {
    if body.len() > MAX_BODY {
        return Err(format!(
            "message is {} bytes; the limit is {MAX_BODY}",
            body.len()
        ));
    }
    if body.trim().is_empty() {
        return Err("message is empty".into());
    }
    Ok(())
}

/// Checks a room topic: at most [`MAX_TOPIC`] bytes, and no control
/// characters (Unicode category Cc, newline and tab included), so a topic
/// is one line wherever it is shown. Empty is allowed: it clears the
/// topic. The error says what is wrong, for people.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.len() > MAX_TOPIC {
        return Err(format!(
            "the topic is {} bytes; the limit is {MAX_TOPIC}",
            topic.len()
        ));
    }
    if let Some(c) = topic.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the topic holds the control character U+{:04X}; a topic is one line of text",
            u32::from(c)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_one_line_of_at_most_256_bytes() {
        for ok in [
            "",
            "pages, deploys, on-call",
            "naïve ☕ 日本語",
            &"x".repeat(MAX_TOPIC),
        ] {
            assert_eq!(check_topic(ok), Ok(()), "{ok:?}");
        }
        // 85 three-byte characters and one more byte: over in bytes, not
        // in characters.
        let wide = format!("{}xx", "語".repeat(85));
        assert!(check_topic(&wide).unwrap_err().contains("257 bytes"));
        for bad in [
            "two\nlines",
            "tab\there",
            "bell\u{7}",
            "esc\u{1b}[2J",
            "c1\u{9b}",
        ] {
            let why = check_topic(bad).unwrap_err();
            assert!(why.contains("control character"), "{bad:?}: {why}");
        }
    }
}
