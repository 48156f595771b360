//! Names in NATS: the message subject of a room and the keys of the
//! key-value bucket. Keys allow `[-/_=.a-zA-Z0-9]` and subjects no `.`, so
//! names are mapped into those sets one to one: a channel keeps its name
//! behind `c_`, a DM `@x+y` becomes `d=x=y` (`=` is in no user or room name).

use common::names::{skeleton, DM_PREFIX};

/// Stream of every room's messages.
pub const STREAM: &str = "CONFAB_MESSAGES";
/// Subjects the stream holds, one per room.
pub const SUBJECTS: &str = "confab.msg.>";
const SUBJECT_PREFIX: &str = "confab.msg.";
/// Key-value bucket of accounts, rooms, memberships and invites.
pub const BUCKET: &str = "confab";
/// Core NATS subject on which relays tell each other of membership and
/// presence.
pub const EVENTS: &str = "confab.events";

/// One token standing for a room name.
pub fn room_token(room: &str) -> String {
    match room.strip_prefix(DM_PREFIX) {
        Some(pair) => format!("d={}", pair.replace('+', "=")),
        None => format!("c_{room}"),
    }
}

/// The room a token stands for; `None` for anything [`room_token`] never makes.
pub fn room_of_token(token: &str) -> Option<String> {
    if let Some(name) = token.strip_prefix("c_") {
        return Some(name.to_owned());
    }
    let (a, b) = token.strip_prefix("d=")?.split_once('=')?;
    Some(format!("{DM_PREFIX}{a}+{b}"))
}

/// User names ignore ASCII case, so their keys are lower case.
pub fn user_token(user: &str) -> String {
    user.to_ascii_lowercase()
}

pub fn subject(room: &str) -> String {
    format!("{SUBJECT_PREFIX}{}", room_token(room))
}

pub fn room_of_subject(subject: &str) -> Option<String> {
    room_of_token(subject.strip_prefix(SUBJECT_PREFIX)?)
}

pub fn user_key(user: &str) -> String {
    format!("u.{}", user_token(user))
}

/// The key that reserves every name drawn like `user`'s (PROTOCOL §9.1);
/// its value is the name it was made for. Skeletons are `[a-z0-9_]`, so
/// they need no mapping.
pub fn skeleton_key(user: &str) -> String {
    format!("s.{}", skeleton(user))
}

pub fn room_key(room: &str) -> String {
    format!("r.{}", room_token(room))
}

pub fn member_key(room: &str, user: &str) -> String {
    format!("m.{}.{}", room_token(room), user_token(user))
}

pub fn invite_key(room: &str, user: &str) -> String {
    format!("i.{}.{}", room_token(room), user_token(user))
}

/// Deduplication id of a message: ids are unique per room only.
pub fn msg_id(room: &str, id: &[u8; 16]) -> String {
    let mut s = room_token(room);
    s.push('/');
    for b in id {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::names::dm_room;

    #[test]
    fn names_map_one_to_one_into_tokens() {
        for room in ["lobby", "dev-ops_2", &dm_room("Alice", "bob"), "c_x", "d"] {
            let token = room_token(room);
            assert!(!token.contains(['.', '*', '>', ' ', '@', '+']), "{token}");
            assert_eq!(room_of_token(&token).as_deref(), Some(room));
            assert_eq!(room_of_subject(&subject(room)).as_deref(), Some(room));
        }
        assert_ne!(room_token("d=a=b"), room_token(&dm_room("a", "b")));
        assert_eq!(user_key("Alice"), user_key("aLICE"));
        assert_eq!(skeleton_key("aIice"), skeleton_key("alice"));
        assert_eq!(skeleton_key("Mo-w"), "s.rno_vv");
        assert_eq!(room_of_token("x_lobby"), None);
    }
}
