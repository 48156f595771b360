//! Validation of user and room names, shared by the relay (which enforces
//! it) and the clients (which check before sending, for a better message).

use crate::limits::MAX_NAME;

/// The room every user belongs to: the original program's one broadcast room.
pub const LOBBY: &str = "lobby";

/// Prefix of direct-message rooms: user names never start with it, so a DM
/// room can never collide with a channel.
pub const DM_PREFIX: char = '@';

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME`] bytes.
    #[error("name is longer than {MAX_NAME} characters")]
    TooLong,
    /// The name holds a character outside the allowed set.
    #[error("name may only use {0}")]
    BadChar(&'static str),
}

const USER_CHARS: &str =
    "letters a-z A-Z, digits 0-9, '_' and '-', starting with a letter or digit";
const ROOM_CHARS: &str =
    "lower-case letters a-z, digits 0-9, '_' and '-', starting with a letter or digit";

/// Checks a user name: 1 to 32 ASCII letters, digits, `_` or `-`, starting
/// with a letter or digit.
pub fn check_user(name: &str) -> Result<(), NameError> {
    check(name, USER_CHARS, |c| c.is_ascii_alphanumeric())
}

/// Checks a channel name: like a user name but lower-case only, so `#Dev`
/// and `#dev` cannot be two rooms.
pub fn check_room(name: &str) -> Result<(), NameError> {
    check(name, ROOM_CHARS, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit()
    })
}

fn check(name: &str, allowed: &'static str, alnum: impl Fn(char) -> bool) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME {
        return Err(NameError::TooLong);
    }
    let mut chars = name.chars();
    let first = chars.next().expect("non-empty");
    if !alnum(first) || !chars.all(|c| alnum(c) || c == '_' || c == '-') {
        return Err(NameError::BadChar(allowed));
    }
    Ok(())
}

/// The room that holds the direct messages between two users. The order of
/// the arguments does not matter.
pub fn dm_room(a: &str, b: &str) -> String {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    format!("{DM_PREFIX}{x}+{y}")
}

/// The two users of a DM room name, if it is one.
pub fn dm_users(room: &str) -> Option<(&str, &str)> {
    room.strip_prefix(DM_PREFIX)?.split_once('+')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        assert!(check_user("alice").is_ok());
        assert!(check_user("Bob_2-x").is_ok());
        assert_eq!(check_user(""), Err(NameError::Empty));
        assert_eq!(check_user(&"a".repeat(33)), Err(NameError::TooLong));
        assert!(check_user(&"a".repeat(32)).is_ok());
        for bad in ["-x", "_x", "a b", "é", "a/b", "@a", "a+b", "a\n"] {
            assert!(
                matches!(check_user(bad), Err(NameError::BadChar(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn room_names() {
        assert!(check_room("lobby").is_ok());
        assert!(check_room("dev-ops_2").is_ok());
        assert!(check_room("Dev").is_err());
        assert!(check_room("@a+b").is_err());
    }

    #[test]
    fn dm_rooms_are_symmetric() {
        assert_eq!(dm_room("bob", "alice"), "@alice+bob");
        assert_eq!(dm_room("alice", "bob"), "@alice+bob");
        assert_eq!(dm_users("@alice+bob"), Some(("alice", "bob")));
        assert_eq!(dm_users("lobby"), None);
    }
}
