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

/// What a user name looks like to a reader, for telling whether two names
/// could be taken for each other: the relay refuses a new name whose
/// skeleton equals an existing account's (PROTOCOL §9.1), so `aIice` (a
/// capital I) cannot sit beside `alice` in a member list.
///
/// Only the shapes common UI fonts draw alike are merged, because names are
/// ASCII and a wider net would refuse names nobody confuses:
///
/// - ASCII case is ignored, as for the name itself;
/// - `i`, `l` and `1` are one letter, written `l` (`I` and `l` are the
///   same stroke in sans-serif fonts, and since case is ignored `i` must
///   join them, or `ilice` would be free beside its own spelling `Ilice`);
/// - `0` and `o` are one letter, written `o`;
/// - `m` is written `rn` and `w` is written `vv`: spelling the wide letter
///   out, rather than folding pairs into it, gives every way of drawing
///   the same strokes one skeleton (`vvv`, `vw` and `wv` all end `vvv`);
/// - `_` and `-` are one separator, written `_`: at list sizes both are a
///   short horizontal line.
///
/// The skeleton is a comparison key, never shown; it is at most twice the
/// name's length and uses only `[a-z0-9_]`.
pub fn skeleton(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c.to_ascii_lowercase() {
            'i' | 'l' | '1' => out.push('l'),
            '0' | 'o' => out.push('o'),
            'm' => out.push_str("rn"),
            'w' => out.push_str("vv"),
            '-' | '_' => out.push('_'),
            other => out.push(other),
        }
    }
    out
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
    fn names_drawn_alike_have_one_skeleton() {
        let alike = [
            (
                "alice",
                &["aIice", "ALICE", "a1ice", "aiice", "AL1CE", "al1ce"][..],
            ),
            ("bob", &["b0b", "BOB", "B0B"]),
            ("mallory", &["rnallory", "rnaIl0ry", "MALLORY"]),
            ("walter", &["vvalter", "VVaIter"]),
            ("vvv", &["vw", "wv", "VW"]),
            ("ann-marie", &["ann_marie", "ann_rnarie", "ANN-MAR1E"]),
        ];
        for (name, lookalikes) in alike {
            for other in lookalikes {
                assert_eq!(skeleton(name), skeleton(other), "{name} / {other}");
            }
        }
        assert_eq!(skeleton("aIice"), "allce");
        assert_eq!(skeleton("Mo_W-1"), "rno_vv_l");
    }

    #[test]
    fn names_a_reader_tells_apart_keep_their_own_skeleton() {
        let apart = [
            ("alice", "alise"),
            ("bob", "bobb"),
            ("bob", "b-ob"),
            ("ann", "nn"),
            ("rn", "r"),
            ("u2", "uz"),
            ("al", "la"),
        ];
        for (a, b) in apart {
            assert_ne!(skeleton(a), skeleton(b), "{a} / {b}");
        }
    }

    #[test]
    fn a_skeleton_stays_in_a_small_alphabet_and_at_most_doubles() {
        let all: String = ('a'..='z')
            .chain('A'..='Z')
            .chain('0'..='9')
            .chain(['_', '-'])
            .collect();
        let s = skeleton(&all);
        assert!(
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{s}"
        );
        let widest = "w".repeat(crate::limits::MAX_NAME);
        assert_eq!(skeleton(&widest).len(), 2 * crate::limits::MAX_NAME);
    }

    #[test]
    fn dm_rooms_are_symmetric() {
        assert_eq!(dm_room("bob", "alice"), "@alice+bob");
        assert_eq!(dm_room("alice", "bob"), "@alice+bob");
        assert_eq!(dm_users("@alice+bob"), Some(("alice", "bob")));
        assert_eq!(dm_users("lobby"), None);
    }
}
