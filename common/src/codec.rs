//! The one place that turns frames into bytes and back. Every encode and
//! decode of the protocol goes through here, so the format can move to
//! another bincode-compatible crate by changing this file alone.
//!
//! Wire shape: a 4-byte big-endian payload length, then the payload, which
//! is the frame in bincode 2's standard configuration (little-endian,
//! variable-length integers).

use bytes::{BufMut, Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::limits::MAX_BULK_FRAME;

/// Byte limit handed to bincode: no decode may allocate past the largest
/// frame, whatever lengths the input claims.
const CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_BULK_FRAME>,
> = bincode::config::standard().with_limit::<MAX_BULK_FRAME>();

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix exceeds the limit for this stream.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    /// The payload is not a valid frame.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// Reading the stream failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes a frame with its length prefix, ready to write.
pub fn encode<T: Serialize>(frame: &T) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_u32(0);
    let mut writer = buf.writer();
    // Writing into memory cannot fail, and every frame we build is under the
    // limit by construction (bodies and lists are bounded before encoding).
    bincode::serde::encode_into_std_write(frame, &mut writer, CONFIG)
        .expect("encoding a frame into memory");
    let mut buf = writer.into_inner();
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

/// Decodes one payload (without its prefix). Trailing bytes are an error:
/// a frame that means something other than what it says is malformed.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (frame, used) = bincode::serde::decode_from_slice(payload, CONFIG)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes after the frame",
            payload.len() - used
        )));
    }
    Ok(frame)
}

/// Reads one length-prefixed payload. `Ok(None)` is a clean end of stream
/// between frames. The length is checked before anything is allocated.
pub async fn read_payload<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut prefix[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    })?;
    Ok(Some(payload))
}

/// Reads and decodes one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<T: DeserializeOwned, R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<T>, FrameError> {
    match read_payload(r, max).await? {
        Some(payload) => decode(&payload).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::*;
    use crate::limits::{MAX_BODY, MAX_CONTROL_FRAME, MAX_NAME, MAX_TOPIC};
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        "[a-z0-9_-]{0,32}"
    }
    fn text() -> impl Strategy<Value = String> {
        any::<String>().prop_map(|s| s.chars().take(MAX_BODY / 4).collect())
    }
    fn page() -> impl Strategy<Value = Page> {
        prop_oneof![
            Just(Page::Latest),
            any::<u64>().prop_map(Page::Before),
            any::<u64>().prop_map(Page::After)
        ]
    }
    fn message() -> impl Strategy<Value = Message> {
        (
            name(),
            any::<u64>(),
            any::<[u8; 16]>(),
            any::<i64>(),
            name(),
            text(),
        )
            .prop_map(|(room, seq, id, ts, from, body)| Message {
                room,
                seq,
                id,
                ts,
                from,
                body,
            })
    }
    fn kind() -> impl Strategy<Value = RoomKind> {
        prop_oneof![
            Just(RoomKind::Public),
            Just(RoomKind::Private),
            Just(RoomKind::Direct)
        ]
    }
    fn room_info() -> impl Strategy<Value = RoomInfo> {
        (name(), kind(), any::<u32>(), any::<u64>(), text()).prop_map(
            |(name, kind, members, latest, topic)| RoomInfo {
                name,
                kind,
                members,
                latest,
                topic,
            },
        )
    }
    fn invitation() -> impl Strategy<Value = Invitation> {
        (room_info(), name()).prop_map(|(room, by)| Invitation { room, by })
    }
    fn presence_kind() -> impl Strategy<Value = PresenceKind> {
        prop_oneof![
            Just(PresenceKind::Joined),
            Just(PresenceKind::Left),
            Just(PresenceKind::Online),
            Just(PresenceKind::Offline)
        ]
    }
    fn error_code() -> impl Strategy<Value = ErrorCode> {
        use ErrorCode::*;
        proptest::sample::select(vec![
            Malformed,
            FrameTooLarge,
            Unexpected,
            VersionMismatch,
            BadCredentials,
            NameTaken,
            InvalidName,
            RegistrationClosed,
            Throttled,
            RateLimited,
            NoSuchRoom,
            NoSuchUser,
            NotMember,
            Forbidden,
            RoomExists,
            BadBody,
            BadPassword,
            Unavailable,
            LoginTimeout,
            TooManyConnections,
            BadLimit,
            BadTopic,
        ])
    }

    fn client_frame() -> impl Strategy<Value = ClientFrame> {
        use ClientFrame::*;
        prop_oneof![
            (any::<u16>(), text()).prop_map(|(version, client)| Hello { version, client }),
            (any::<u32>(), name(), text()).prop_map(|(req, user, password)| Register {
                req,
                user,
                password: password.into()
            }),
            (any::<u32>(), name(), text()).prop_map(|(req, user, password)| Login {
                req,
                user,
                password: password.into()
            }),
            (any::<u32>(), name(), any::<bool>()).prop_map(|(req, room, private)| CreateRoom {
                req,
                room,
                private
            }),
            (any::<u32>(), name()).prop_map(|(req, room)| Join { req, room }),
            (any::<u32>(), name()).prop_map(|(req, room)| Leave { req, room }),
            (any::<u32>(), name(), name()).prop_map(|(req, room, user)| Invite { req, room, user }),
            any::<u32>().prop_map(|req| ListRooms { req }),
            (any::<u32>(), name()).prop_map(|(req, room)| Members { req, room }),
            (any::<u32>(), name()).prop_map(|(req, user)| OpenDm { req, user }),
            (any::<u32>(), name(), any::<[u8; 16]>(), text()).prop_map(|(req, room, id, body)| {
                Send {
                    req,
                    room,
                    id,
                    body,
                }
            }),
            (any::<u32>(), name(), page(), any::<u16>()).prop_map(|(req, room, page, limit)| {
                History {
                    req,
                    room,
                    page,
                    limit,
                }
            }),
            any::<u32>().prop_map(|req| Ping { req }),
            Just(Bye),
            (any::<u32>(), name()).prop_map(|(req, room)| Resume { req, room }),
            (any::<u32>(), name(), text()).prop_map(|(req, room, topic)| SetTopic {
                req,
                room,
                topic
            }),
        ]
    }

    fn server_frame() -> impl Strategy<Value = ServerFrame> {
        use ServerFrame::*;
        prop_oneof![
            (any::<u16>(), text(), any::<bool>()).prop_map(
                |(version, server, registration_open)| {
                    Welcome {
                        version,
                        server,
                        registration_open,
                    }
                }
            ),
            (any::<u32>(), name()).prop_map(|(req, user)| LoggedIn { req, user }),
            (any::<u32>(), room_info()).prop_map(|(req, room)| Joined { req, room }),
            (any::<u32>(), name()).prop_map(|(req, room)| Left { req, room }),
            any::<u32>().prop_map(|req| Done { req }),
            (
                any::<u32>(),
                prop::collection::vec(room_info(), 0..5),
                prop::collection::vec(room_info(), 0..5),
                prop::collection::vec(invitation(), 0..3)
            )
                .prop_map(|(req, joined, public, invited)| Rooms {
                    req,
                    joined,
                    public,
                    invited
                }),
            (
                any::<u32>(),
                name(),
                prop::collection::vec((name(), any::<bool>()), 0..5)
            )
                .prop_map(|(req, room, m)| Members {
                    req,
                    room,
                    members: m
                        .into_iter()
                        .map(|(user, online)| Member { user, online })
                        .collect()
                }),
            (
                any::<u32>(),
                name(),
                any::<[u8; 16]>(),
                any::<u64>(),
                any::<i64>()
            )
                .prop_map(|(req, room, id, seq, ts)| Ack {
                    req,
                    room,
                    id,
                    seq,
                    ts
                }),
            message().prop_map(Message),
            (
                any::<u32>(),
                name(),
                prop::collection::vec(message(), 0..4),
                any::<bool>()
            )
                .prop_map(|(req, room, messages, more)| HistoryPage {
                    req,
                    room,
                    messages,
                    more
                }),
            (proptest::option::of(name()), name(), presence_kind()).prop_map(
                |(room, user, kind)| Presence(crate::frame::Presence { room, user, kind })
            ),
            (name(), any::<u64>()).prop_map(|(room, from)| Lagged { room, from }),
            any::<u32>().prop_map(|req| Pong { req }),
            (any::<u32>(), error_code(), text()).prop_map(|(req, code, message)| Error {
                req,
                code,
                message
            }),
            text().prop_map(|reason| Shutdown { reason }),
            invitation().prop_map(Invited),
            (name(), text(), name()).prop_map(|(room, topic, by)| Topic { room, topic, by }),
        ]
    }

    fn roundtrip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(f: &T) {
        let bytes = encode(f);
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - 4);
        let back: T = decode(&bytes[4..]).unwrap();
        assert_eq!(&back, f);
    }

    proptest! {
        #[test]
        fn client_frames_roundtrip(f in client_frame()) { roundtrip(&f); }

        #[test]
        fn server_frames_roundtrip(f in server_frame()) { roundtrip(&f); }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<ClientFrame>(&bytes);
            let _ = decode::<ServerFrame>(&bytes);
        }
    }

    #[test]
    fn known_encoding_is_stable() {
        // Pinned bytes: an independent client built from PROTOCOL.md must
        // produce exactly these.
        let f = ClientFrame::Hello {
            version: 1,
            client: "cli".into(),
        };
        assert_eq!(&encode(&f)[..], &[0, 0, 0, 6, 0, 1, 3, b'c', b'l', b'i']);
        let f = ClientFrame::Ping { req: 300 };
        assert_eq!(&encode(&f)[..], &[0, 0, 0, 4, 12, 251, 44, 1]);
    }

    #[test]
    fn biggest_frames_fit_their_limits() {
        let body = "x".repeat(MAX_BODY);
        let name = "n".repeat(MAX_NAME);
        let send = ClientFrame::Send {
            req: u32::MAX,
            room: name.clone(),
            id: [0xff; 16],
            body: body.clone(),
        };
        assert!(encode(&send).len() - 4 <= MAX_CONTROL_FRAME);
        let msg = Message {
            room: name.clone(),
            seq: u64::MAX,
            id: [0xff; 16],
            ts: i64::MIN,
            from: name.clone(),
            body,
        };
        let page = ServerFrame::HistoryPage {
            req: u32::MAX,
            room: name.clone(),
            messages: vec![msg; crate::limits::MAX_PAGE as usize],
            more: true,
        };
        assert!(encode(&page).len() - 4 <= MAX_BULK_FRAME);

        let topic = "x".repeat(MAX_TOPIC);
        let set = ClientFrame::SetTopic {
            req: u32::MAX,
            room: name.clone(),
            topic: topic.clone(),
        };
        assert!(encode(&set).len() - 4 <= MAX_CONTROL_FRAME);
        let room = RoomInfo {
            name: name.clone(),
            kind: RoomKind::Private,
            members: u32::MAX,
            latest: u64::MAX,
            topic,
        };
        // The relay's defaults: 1000 rooms a user may be in, 1000 public
        // rooms listed, 100 invitations kept; every one with the longest
        // name and topic.
        let rooms = ServerFrame::Rooms {
            req: u32::MAX,
            joined: vec![room.clone(); 1000],
            public: vec![room.clone(); 1000],
            invited: vec![Invitation { room, by: name }; 100],
        };
        // PROTOCOL §9.2 says "at most about 650,000 bytes".
        let len = encode(&rooms).len() - 4;
        assert!((640_000..=650_000).contains(&len), "{len} bytes");
    }

    #[tokio::test]
    async fn reader_refuses_oversized_prefix_without_allocating() {
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let err = read_payload(&mut input, MAX_CONTROL_FRAME)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::TooLarge {
                    len: 4294967295,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn reader_tells_clean_end_from_truncation() {
        let mut empty: &[u8] = &[];
        assert!(read_payload(&mut empty, 10).await.unwrap().is_none());
        let mut half: &[u8] = &[0, 0];
        assert!(matches!(
            read_payload(&mut half, 10).await,
            Err(FrameError::Truncated)
        ));
        let mut short: &[u8] = &[0, 0, 0, 5, 1];
        assert!(matches!(
            read_payload(&mut short, 10).await,
            Err(FrameError::Truncated)
        ));
    }

    #[test]
    fn passwords_never_show_in_debug_output() {
        let f = ClientFrame::Login {
            req: 1,
            user: "alice".into(),
            password: "hunter22".into(),
        };
        let shown = format!("{f:?}");
        assert!(!shown.contains("hunter22"), "{shown}");
        assert!(shown.contains("Password(***)"));
        // The wire still carries it as a plain string.
        let back: ClientFrame = decode(&encode(&f)[4..]).unwrap();
        assert!(
            matches!(back, ClientFrame::Login { password, .. } if password.expose() == "hunter22")
        );
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut bytes = encode(&ClientFrame::Bye).to_vec();
        bytes.push(0);
        assert!(decode::<ClientFrame>(&bytes[4..]).is_err());
    }
}
