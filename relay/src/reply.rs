//! What the relay tells a client when it says no: a [`Refusal`] (an error
//! code and a message that says what to do), the `Error` frame it becomes,
//! and the refusals for frames that could not be read or stored.

use common::codec::FrameError;
use common::frame::{ErrorCode, RequestId, ServerFrame};

use crate::store::StoreError;

/// A request refused: the code a program acts on and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    /// A refusal with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }

    /// The `Error` frame answering request `req`.
    pub fn into_frame(self, req: RequestId) -> ServerFrame {
        ServerFrame::Error {
            req,
            code: self.code,
            message: self.message,
        }
    }
}

impl From<StoreError> for Refusal {
    /// What the client is told of a storage failure. Database errors are
    /// logged here, once, because the client is only told to retry.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoSuchUser => Refusal::new(ErrorCode::NoSuchUser, "no such user"),
            StoreError::NoSuchRoom => Refusal::new(ErrorCode::NoSuchRoom, "no such room"),
            StoreError::RoomExists => {
                Refusal::new(ErrorCode::RoomExists, "the room exists; join it instead")
            }
            StoreError::NameTaken => Refusal::new(ErrorCode::NameTaken, "the name is taken"),
            StoreError::LooksLike(existing) => Refusal::new(
                ErrorCode::NameTaken,
                format!("the name looks like an existing user's ({existing:?}); choose another"),
            ),
            StoreError::NotMember => Refusal::new(
                ErrorCode::NotMember,
                "you are not a member of this room; join it first",
            ),
            StoreError::Db(e) => {
                tracing::error!("store: {e}");
                Refusal::new(
                    ErrorCode::Unavailable,
                    "the relay could not store this; nothing was saved, try again later",
                )
            }
            StoreError::Closed => Refusal::new(
                ErrorCode::Unavailable,
                "the relay is shutting down; try again shortly",
            ),
        }
    }
}

/// An `Error` frame.
pub fn error(req: RequestId, code: ErrorCode, message: &str) -> ServerFrame {
    Refusal::new(code, message).into_frame(req)
}

/// The `Error` frame for a frame that could not be read (PROTOCOL §3):
/// connection-level, so `req` is 0.
pub fn frame_error(e: &FrameError) -> ServerFrame {
    let code = match e {
        FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
        _ => ErrorCode::Malformed,
    };
    error(0, code, &e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_prefix_is_frame_too_large_and_anything_else_malformed() {
        let too_large = FrameError::TooLarge {
            len: 70_000,
            max: 65_536,
        };
        let ServerFrame::Error { req, code, .. } = frame_error(&too_large) else {
            panic!("an error frame");
        };
        assert_eq!((req, code), (0, ErrorCode::FrameTooLarge));
        for e in [
            FrameError::Truncated,
            FrameError::Malformed("empty payload".into()),
        ] {
            let ServerFrame::Error { req, code, .. } = frame_error(&e) else {
                panic!("an error frame");
            };
            assert_eq!((req, code), (0, ErrorCode::Malformed), "{e}");
        }
    }

    #[test]
    fn storage_failures_say_nothing_was_saved_and_keep_their_kind() {
        let cases = [
            (StoreError::NoSuchUser, ErrorCode::NoSuchUser),
            (StoreError::NoSuchRoom, ErrorCode::NoSuchRoom),
            (StoreError::RoomExists, ErrorCode::RoomExists),
            (StoreError::NameTaken, ErrorCode::NameTaken),
            (StoreError::LooksLike("alice".into()), ErrorCode::NameTaken),
            (StoreError::NotMember, ErrorCode::NotMember),
            (StoreError::Db("disk full".into()), ErrorCode::Unavailable),
            (StoreError::Closed, ErrorCode::Unavailable),
        ];
        for (e, code) in cases {
            assert_eq!(Refusal::from(e.clone()).code, code, "{e}");
        }
        let db = Refusal::from(StoreError::Db("disk full".into()));
        assert!(db.message.contains("nothing was saved"), "{}", db.message);
        assert!(
            !db.message.contains("disk full"),
            "internals stay in the log"
        );
    }
}
