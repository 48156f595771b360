#!/usr/bin/env python3
"""Independent confab client, written from docs/PROTOCOL.md alone.

It exists to check that the protocol document is complete enough to build a
client without the Rust sources. Two modes:

  confab_client.py --self-test
      byte-exact checks of the encoder/decoder against PROTOCOL.md §4 and §15
      (no network).

  confab_client.py --server HOST:PORT --ca CERT --user U --password P
                   [--register] [--peer OTHER_USER [--peer-password P2]] scenario
      runs a scripted session against a live relay and prints one line per
      step, `ok <step>` or `FAIL <step>: why`. Exit status 0 only if every
      step passed.

Python 3.11, asyncio + aioquic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

# --------------------------------------------------------------------------
# Limits (PROTOCOL.md §14) and constants
# --------------------------------------------------------------------------

PROTOCOL_VERSION = 1
ALPN = "confab/1"
MAX_CONTROL_FRAME = 65_536
MAX_BULK_FRAME = 1_048_576
MAX_BODY = 4096
MAX_TOPIC = 256
MAX_NAME = 32
MAX_CLIENT_NAME = 64
DEFAULT_PAGE = 50
MAX_PAGE = 200
KEEP_ALIVE = 3.0
IDLE_TIMEOUT = 10.0

# Close codes (§7)
CLOSE_NORMAL, CLOSE_PROTOCOL, CLOSE_LOGIN_TIMEOUT = 0, 1, 2
CLOSE_SHUTDOWN, CLOSE_BUSY, CLOSE_VERSION = 3, 4, 5


class CodecError(ValueError):
    pass


class UnknownVariant(CodecError):
    """A variant index past the last known one (§16: a client may skip)."""


# --------------------------------------------------------------------------
# bincode 2, config::standard() (§4)
# --------------------------------------------------------------------------

def enc_uvar(n: int, bits: int = 64) -> bytes:
    """Unsigned varint, shortest form (§4.1)."""
    if n < 0 or n >= 1 << bits:
        raise CodecError(f"{n} does not fit u{bits}")
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfb" + n.to_bytes(2, "little")
    if n < 1 << 32:
        return b"\xfc" + n.to_bytes(4, "little")
    if n < 1 << 64:
        return b"\xfd" + n.to_bytes(8, "little")
    return b"\xfe" + n.to_bytes(16, "little")


def zigzag(n: int) -> int:
    return 2 * n if n >= 0 else -2 * n - 1


def unzigzag(z: int) -> int:
    return (z >> 1) ^ -(z & 1)


def enc_ivar(n: int, bits: int = 64) -> bytes:
    """Signed integer: zigzag, then unsigned varint of the same width (§4.2)."""
    if not -(1 << (bits - 1)) <= n < 1 << (bits - 1):
        raise CodecError(f"{n} does not fit i{bits}")
    return enc_uvar(zigzag(n), bits)


def enc_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return enc_uvar(len(b)) + b


class Reader:
    def __init__(self, b: bytes):
        self.b, self.i = bytes(b), 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.i + n > len(self.b):
            raise CodecError("payload ends early")
        v = self.b[self.i:self.i + n]
        self.i += n
        return v

    def uvar(self, bits: int) -> int:
        t = self.take(1)[0]
        if t < 251:
            return t
        width = {251: 2, 252: 4, 253: 8, 254: 16}.get(t)
        if width is None:
            raise CodecError(f"bad varint marker 0x{t:02x}")
        if width * 8 > bits:
            raise CodecError(f"varint marker 0x{t:02x} too wide for u{bits}")
        return int.from_bytes(self.take(width), "little")

    def ivar(self, bits: int) -> int:
        return unzigzag(self.uvar(bits))

    def boolean(self) -> bool:
        v = self.take(1)[0]
        if v > 1:
            raise CodecError(f"bad bool byte 0x{v:02x}")
        return v == 1

    def string(self) -> str:
        n = self.uvar(64)
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError as e:
            raise CodecError(f"invalid UTF-8: {e}") from None

    def end(self) -> None:
        if self.i != len(self.b):
            raise CodecError(f"{len(self.b) - self.i} trailing bytes")


# --------------------------------------------------------------------------
# Schema (§5). Types are strings:
#   u16 u32 u64 i64 bool str id   primitives
#   vec:T  opt:T                  containers
#   any name in STRUCTS / ENUMS   nested types
# Values: struct -> dict; enum -> dict {"t": variant, ...fields} for struct
# variants, {"t": variant, "v": inner} for newtype variants, {"t": variant}
# for unit variants; unit-only enums (RoomKind, ...) -> the variant name (str).
# --------------------------------------------------------------------------

UNIT = None          # marker: unit variant
NEWTYPE = "newtype"  # marker key for newtype variants

STRUCTS: dict[str, list[tuple[str, str]]] = {
    "Message": [("room", "str"), ("seq", "u64"), ("id", "id"), ("ts", "i64"),
                ("from", "str"), ("body", "str")],
    "RoomInfo": [("name", "str"), ("kind", "RoomKind"), ("members", "u32"),
                 ("latest", "u64"), ("topic", "str")],
    "Member": [("user", "str"), ("online", "bool")],
    "Presence": [("room", "opt:str"), ("user", "str"), ("kind", "PresenceKind")],
    "Invitation": [("room", "RoomInfo"), ("by", "str")],
}

# enum name -> list of (variant, fields | UNIT | (NEWTYPE, type))
ENUMS: dict[str, list[tuple[str, Any]]] = {
    "ClientFrame": [
        ("Hello", [("version", "u16"), ("client", "str")]),
        ("Register", [("req", "u32"), ("user", "str"), ("password", "str")]),
        ("Login", [("req", "u32"), ("user", "str"), ("password", "str")]),
        ("CreateRoom", [("req", "u32"), ("room", "str"), ("private", "bool")]),
        ("Join", [("req", "u32"), ("room", "str")]),
        ("Leave", [("req", "u32"), ("room", "str")]),
        ("Invite", [("req", "u32"), ("room", "str"), ("user", "str")]),
        ("ListRooms", [("req", "u32")]),
        ("Members", [("req", "u32"), ("room", "str")]),
        ("OpenDm", [("req", "u32"), ("user", "str")]),
        ("Send", [("req", "u32"), ("room", "str"), ("id", "id"), ("body", "str")]),
        ("History", [("req", "u32"), ("room", "str"), ("page", "Page"),
                     ("limit", "u16")]),
        ("Ping", [("req", "u32")]),
        ("Bye", UNIT),
        ("Resume", [("req", "u32"), ("room", "str")]),
        ("SetTopic", [("req", "u32"), ("room", "str"), ("topic", "str")]),
    ],
    "ServerFrame": [
        ("Welcome", [("version", "u16"), ("server", "str"),
                     ("registration_open", "bool")]),
        ("LoggedIn", [("req", "u32"), ("user", "str")]),
        ("Joined", [("req", "u32"), ("room", "RoomInfo")]),
        ("Left", [("req", "u32"), ("room", "str")]),
        ("Done", [("req", "u32")]),
        ("Rooms", [("req", "u32"), ("joined", "vec:RoomInfo"),
                   ("public", "vec:RoomInfo"), ("invited", "vec:Invitation")]),
        ("Members", [("req", "u32"), ("room", "str"), ("members", "vec:Member")]),
        ("Ack", [("req", "u32"), ("room", "str"), ("id", "id"), ("seq", "u64"),
                 ("ts", "i64")]),
        ("Message", (NEWTYPE, "Message")),
        ("HistoryPage", [("req", "u32"), ("room", "str"),
                         ("messages", "vec:Message"), ("more", "bool")]),
        ("Presence", (NEWTYPE, "Presence")),
        ("Lagged", [("room", "str"), ("from", "u64")]),
        ("Pong", [("req", "u32")]),
        ("Error", [("req", "u32"), ("code", "ErrorCode"), ("message", "str")]),
        ("Shutdown", [("reason", "str")]),
        ("Invited", (NEWTYPE, "Invitation")),
        ("Topic", [("room", "str"), ("topic", "str"), ("by", "str")]),
    ],
    "Page": [
        ("Latest", UNIT),
        ("Before", (NEWTYPE, "u64")),
        ("After", (NEWTYPE, "u64")),
    ],
    "RoomKind": [("Public", UNIT), ("Private", UNIT), ("Direct", UNIT)],
    "PresenceKind": [("Joined", UNIT), ("Left", UNIT), ("Online", UNIT),
                     ("Offline", UNIT)],
    "ErrorCode": [(n, UNIT) for n in (
        "Malformed", "FrameTooLarge", "Unexpected", "VersionMismatch",
        "BadCredentials", "NameTaken", "InvalidName", "RegistrationClosed",
        "Throttled", "RateLimited", "NoSuchRoom", "NoSuchUser", "NotMember",
        "Forbidden", "RoomExists", "BadBody", "BadPassword", "Unavailable",
        "LoginTimeout", "TooManyConnections", "BadLimit", "BadTopic")],
}

# enums whose variants are all unit: represented as plain strings
UNIT_ENUMS = {name for name, vs in ENUMS.items() if all(v is UNIT for _, v in vs)}
INT_BITS = {"u16": 16, "u32": 32, "u64": 64}


def _variant(enum: str, name: str) -> tuple[int, Any]:
    for i, (vname, spec) in enumerate(ENUMS[enum]):
        if vname == name:
            return i, spec
    raise CodecError(f"{enum} has no variant {name}")


def encode(ty: str, v: Any) -> bytes:
    if ty in INT_BITS:
        if not isinstance(v, int) or isinstance(v, bool):
            raise CodecError(f"{ty} needs an int, got {v!r}")
        return enc_uvar(v, INT_BITS[ty])
    if ty == "i64":
        return enc_ivar(v, 64)
    if ty == "bool":
        if not isinstance(v, bool):
            raise CodecError(f"bool needs a bool, got {v!r}")
        return b"\x01" if v else b"\x00"
    if ty == "str":
        return enc_str(v)
    if ty == "id":
        v = bytes(v)
        if len(v) != 16:
            raise CodecError("MsgId must be exactly 16 bytes")
        return v  # [u8; 16]: raw bytes, no length prefix
    if ty.startswith("vec:"):
        inner = ty[4:]
        return enc_uvar(len(v)) + b"".join(encode(inner, x) for x in v)
    if ty.startswith("opt:"):
        return b"\x00" if v is None else b"\x01" + encode(ty[4:], v)
    if ty in STRUCTS:
        return b"".join(encode(fty, v[fname]) for fname, fty in STRUCTS[ty])
    if ty in ENUMS:
        name = v if ty in UNIT_ENUMS else v["t"]
        idx, spec = _variant(ty, name)
        out = enc_uvar(idx, 32)  # variant index: u32 varint
        if spec is UNIT:
            return out
        if isinstance(spec, tuple) and spec[0] == NEWTYPE:
            return out + encode(spec[1], v["v"])
        return out + b"".join(encode(fty, v[fname]) for fname, fty in spec)
    raise CodecError(f"unknown type {ty}")


def decode_value(ty: str, r: Reader) -> Any:
    if ty in INT_BITS:
        return r.uvar(INT_BITS[ty])
    if ty == "i64":
        return r.ivar(64)
    if ty == "bool":
        return r.boolean()
    if ty == "str":
        return r.string()
    if ty == "id":
        return r.take(16)
    if ty.startswith("vec:"):
        n = r.uvar(64)
        # every item takes at least one byte: refuse absurd counts early
        if n > len(r.b) - r.i:
            raise CodecError(f"vec length {n} exceeds the remaining payload")
        return [decode_value(ty[4:], r) for _ in range(n)]
    if ty.startswith("opt:"):
        tag = r.take(1)[0]
        if tag == 0:
            return None
        if tag == 1:
            return decode_value(ty[4:], r)
        raise CodecError(f"bad Option tag 0x{tag:02x}")
    if ty in STRUCTS:
        return {fname: decode_value(fty, r) for fname, fty in STRUCTS[ty]}
    if ty in ENUMS:
        idx = r.uvar(32)
        variants = ENUMS[ty]
        if idx >= len(variants):
            raise UnknownVariant(f"{ty} variant index {idx} out of range")
        name, spec = variants[idx]
        if ty in UNIT_ENUMS:
            return name
        if spec is UNIT:
            return {"t": name}
        if isinstance(spec, tuple) and spec[0] == NEWTYPE:
            return {"t": name, "v": decode_value(spec[1], r)}
        out = {"t": name}
        for fname, fty in spec:
            out[fname] = decode_value(fty, r)
        return out
    raise CodecError(f"unknown type {ty}")


def decode_payload(ty: str, payload: bytes) -> Any:
    """Decode exactly one frame; trailing bytes are an error (§3)."""
    if len(payload) == 0:
        raise CodecError("empty payload")
    r = Reader(payload)
    v = decode_value(ty, r)
    r.end()
    return v


def frame(payload: bytes) -> bytes:
    """4-byte big-endian length prefix + payload (§3)."""
    return len(payload).to_bytes(4, "big") + payload


def client_frame(t: str, **fields: Any) -> bytes:
    return frame(encode("ClientFrame", {"t": t, **fields}))


def server_frame(t: str, **fields: Any) -> bytes:
    return frame(encode("ServerFrame", {"t": t, **fields}))


# --------------------------------------------------------------------------
# Self-test against PROTOCOL.md §4 and §15
# --------------------------------------------------------------------------

def h(s: str) -> bytes:
    return bytes.fromhex(s.replace("|", " "))


def self_test() -> int:
    failures = 0

    def check(name: str, cond: bool, detail: str = "") -> None:
        nonlocal failures
        if cond:
            print(f"ok {name}")
        else:
            failures += 1
            print(f"FAIL {name}: {detail}")

    def check_bytes(name: str, got: bytes, want: bytes) -> None:
        check(name, got == want, f"got {got.hex(' ')} want {want.hex(' ')}")

    def check_raises(name: str, ty: str, payload: bytes) -> None:
        try:
            v = decode_payload(ty, payload)
        except CodecError:
            check(name, True)
        else:
            check(name, False, f"decoded {v!r} instead of failing")

    # §4.1 varint examples
    for n, want in [(0, "00"), (250, "fa"), (251, "fb fb 00"), (300, "fb 2c 01"),
                    (1000, "fb e8 03"), (65535, "fb ff ff"),
                    (65536, "fc 00 00 01 00"),
                    (1 << 32, "fd 00 00 00 00 01 00 00 00")]:
        check_bytes(f"uvar({n})", enc_uvar(n), h(want))
        check(f"uvar({n}) decode", Reader(h(want)).uvar(64) == n)
    # longer form accepted by decoder (§4.1 note), never produced
    check("uvar long form FB 05 00 decodes to 5", Reader(h("fb 05 00")).uvar(16) == 5)
    # §4.2 zigzag
    for n, z in [(0, 0), (-1, 1), (1, 2), (-2, 3), (1_700_000_000_000, 3_400_000_000_000)]:
        check(f"zigzag({n}) = {z}", zigzag(n) == z and unzigzag(z) == n)
    check_bytes("ivar(1700000000000)", enc_ivar(1_700_000_000_000),
                h("fd 00 d0 ca 9f 17 03 00 00"))

    # §15 worked examples
    ids = bytes(range(16))
    examples = [
        ("Hello", client_frame("Hello", version=1, client="cli"),
         "00 00 00 06 | 00 01 03 63 6c 69", "ClientFrame"),
        ("Ping", client_frame("Ping", req=300), "00 00 00 04 | 0c fb 2c 01",
         "ClientFrame"),
        ("Send", client_frame("Send", req=1000, room="lobby", id=ids, body="héllo"),
         "00 00 00 21 | 0a fb e8 03 05 6c 6f 62 62 79"
         " 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f"
         " 06 68 c3 a9 6c 6c 6f", "ClientFrame"),
        ("History", client_frame("History", req=5, room="lobby",
                                 page={"t": "Before", "v": 1000}, limit=50),
         "00 00 00 0d | 0b 05 05 6c 6f 62 62 79 01 fb e8 03 32", "ClientFrame"),
        ("Ack", server_frame("Ack", req=1000, room="lobby", id=ids, seq=300,
                             ts=1_700_000_000_000),
         "00 00 00 26 | 07 fb e8 03 05 6c 6f 62 62 79"
         " 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f"
         " fb 2c 01 fd 00 d0 ca 9f 17 03 00 00", "ServerFrame"),
        ("Presence", server_frame("Presence", v={"room": None, "user": "bob",
                                                 "kind": "Offline"}),
         "00 00 00 07 | 0a 00 03 62 6f 62 03", "ServerFrame"),
        ("Invited", server_frame("Invited", v={
            "room": {"name": "ops", "kind": "Private", "members": 2, "latest": 0,
                     "topic": ""},
            "by": "bob"}),
         "00 00 00 0d | 0f 03 6f 70 73 01 02 00 00 03 62 6f 62", "ServerFrame"),
        ("Rooms", server_frame("Rooms", req=7, joined=[], public=[], invited=[{
            "room": {"name": "ops", "kind": "Private", "members": 2, "latest": 0,
                     "topic": ""},
            "by": "bob"}]),
         "00 00 00 11 | 05 07 00 00 01 03 6f 70 73 01 02 00 00 03 62 6f 62",
         "ServerFrame"),
        ("SetTopic", client_frame("SetTopic", req=9, room="ops", topic="pages"),
         "00 00 00 0c | 0f 09 03 6f 70 73 05 70 61 67 65 73", "ClientFrame"),
        ("Topic", server_frame("Topic", room="ops", topic="pages", by="bob"),
         "00 00 00 0f | 10 03 6f 70 73 05 70 61 67 65 73 03 62 6f 62", "ServerFrame"),
        ("Joined", server_frame("Joined", req=3, room={
            "name": "ops", "kind": "Public", "members": 2, "latest": 0,
            "topic": "pages"}),
         "00 00 00 0f | 02 03 03 6f 70 73 00 02 00 05 70 61 67 65 73", "ServerFrame"),
        ("Error", server_frame("Error", req=9, code="BadTopic", message=""),
         "00 00 00 04 | 0d 09 15 00", "ServerFrame"),
        ("Error", server_frame("Error", req=0, code="FrameTooLarge", message=""),
         "00 00 00 04 | 0d 00 01 00", "ServerFrame"),
        ("Bye", client_frame("Bye"), "00 00 00 01 | 0d", "ClientFrame"),
    ]
    for name, got, want, ty in examples:
        check_bytes(f"§15 {name} encode", got, h(want))
        # and back: decode the document's bytes, re-encode, compare
        wb = h(want)
        try:
            v = decode_payload(ty, wb[4:])
            again = frame(encode(ty, v))
            check(f"§15 {name} decode+re-encode", again == wb and v["t"] == name,
                  f"{v!r}")
        except CodecError as e:
            check(f"§15 {name} decode+re-encode", False, str(e))

    # extra: every frame type round-trips
    msg = {"room": "lobby", "seq": 7, "id": ids, "ts": -5, "from": "Zed", "body": "x"}
    ri = {"name": "@Zed+amy", "kind": "Direct", "members": 2, "latest": 70000,
          "topic": ""}
    ops = {"name": "ops", "kind": "Private", "members": 3, "latest": 9,
           "topic": "pages, déploys ☕"}
    samples = {
        "ClientFrame": [
            {"t": "Register", "req": 1, "user": "u", "password": "p" * 8},
            {"t": "Login", "req": 2, "user": "u", "password": "pw"},
            {"t": "CreateRoom", "req": 3, "room": "r", "private": True},
            {"t": "Join", "req": 4, "room": "r"},
            {"t": "Leave", "req": 5, "room": "r"},
            {"t": "Invite", "req": 6, "room": "r", "user": "u"},
            {"t": "ListRooms", "req": 7},
            {"t": "Members", "req": 8, "room": "r"},
            {"t": "OpenDm", "req": 9, "user": "u"},
            {"t": "History", "req": 10, "room": "r", "page": {"t": "Latest"}, "limit": 200},
            {"t": "History", "req": 11, "room": "r", "page": {"t": "After", "v": 1 << 40},
             "limit": 1},
            {"t": "Resume", "req": 12, "room": "r"},
            {"t": "SetTopic", "req": 13, "room": "r", "topic": "t" * MAX_TOPIC},
            {"t": "SetTopic", "req": 14, "room": "r", "topic": ""},
        ],
        "ServerFrame": [
            {"t": "Welcome", "version": 1, "server": "s", "registration_open": False},
            {"t": "LoggedIn", "req": 1, "user": "u"},
            {"t": "Joined", "req": 2, "room": ri},
            {"t": "Left", "req": 3, "room": "r"},
            {"t": "Done", "req": 4},
            {"t": "Rooms", "req": 5, "joined": [ri, ops], "public": [ops],
             "invited": [{"room": ri, "by": "Zed"}]},
            {"t": "Members", "req": 6, "room": "r",
             "members": [{"user": "a", "online": True}]},
            {"t": "Message", "v": msg},
            {"t": "HistoryPage", "req": 7, "room": "r", "messages": [msg], "more": True},
            {"t": "Presence", "v": {"room": "r", "user": "u", "kind": "Joined"}},
            {"t": "Lagged", "room": "r", "from": 12},
            {"t": "Pong", "req": 8},
            {"t": "Shutdown", "reason": "bye"},
            {"t": "Invited", "v": {"room": ri, "by": "u"}},
            {"t": "Topic", "room": "ops", "topic": "pages, déploys ☕", "by": "u"},
            {"t": "Error", "req": 9, "code": "BadTopic", "message": "too long"},
        ],
    }
    for ty, vals in samples.items():
        for v in vals:
            try:
                ok = decode_payload(ty, encode(ty, v)) == v
            except CodecError as e:
                ok = False
            check(f"round-trip {ty}::{v['t']}", ok, repr(v))

    # decoder must reject (§3, §4)
    check_raises("reject trailing bytes", "ClientFrame", h("0c 05 00"))
    check_raises("reject bad variant index", "ClientFrame", h("10"))
    check_raises("reject bad ServerFrame index", "ServerFrame", h("11"))
    check_raises("reject bad ErrorCode index", "ServerFrame", h("0d 09 16 00"))
    check_raises("reject 0xFF marker", "ClientFrame", h("0c ff"))
    check_raises("reject 0xFC in u16", "ClientFrame", h("00 fc 01 00 00 00 00"))
    check_raises("reject 0xFD in u32", "ClientFrame", h("0c fd 01 00 00 00 00 00 00 00"))
    check_raises("reject 0xFE in u64", "ServerFrame",
                 h("0b 00 fe" + " 00" * 16))
    check_raises("reject bool 2", "ClientFrame", h("03 01 01 72 02"))
    check_raises("reject Option tag 2", "ServerFrame", h("0a 02 03 62 6f 62 03"))
    check_raises("reject invalid UTF-8", "ClientFrame", h("04 01 02 c3 28"))
    check_raises("reject early end", "ClientFrame", h("0a 01 05 6c 6f"))
    check_raises("reject empty payload", "ClientFrame", b"")
    try:
        encode("ClientFrame", {"t": "Send", "req": 1, "room": "r", "id": b"x", "body": ""})
        check("refuse 15-byte id", False, "encoded")
    except CodecError:
        check("refuse 15-byte id", True)

    print(f"{'ok' if failures == 0 else 'FAIL'} self-test: {failures} failure(s)")
    return 0 if failures == 0 else 1


# --------------------------------------------------------------------------
# QUIC connection (§2, §17.2)
# --------------------------------------------------------------------------

from aioquic.asyncio import QuicConnectionProtocol, connect  # noqa: E402
from aioquic.quic.configuration import QuicConfiguration  # noqa: E402
from aioquic.quic.events import (  # noqa: E402
    ConnectionTerminated, QuicEvent, StreamDataReceived, StreamReset,
)


class StepFail(Exception):
    pass


@dataclass
class Received:
    frame: dict
    stream_id: int
    at: float


class ConfabProtocol(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.owner: Client | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if self.owner is not None:
            self.owner._on_event(event)


class Client:
    """One QUIC connection to the relay, one control stream."""

    def __init__(self, host: str, port: int, cafile: str, server_name: str,
                 verbose: bool = False):
        self.host, self.port = host, port
        self.cafile, self.server_name = cafile, server_name
        self.verbose = verbose
        self.stack = contextlib.AsyncExitStack()
        self.proto: ConfabProtocol | None = None
        self.control_id: int | None = None
        self.control_buf = bytearray()
        self.bulk_bufs: dict[int, bytearray] = {}
        self.log: list[Received] = []       # every frame ever received
        self.inbox: list[Received] = []     # frames not yet consumed by expect()
        self.violations: list[str] = []     # relay behaviour contrary to the doc
        self.closed: asyncio.Future | None = None
        # (error_code, frame_type, reason). aioquic reports a peer's
        # APPLICATION close (frame 0x1d, the relay's close codes of §7) with
        # frame_type None; local closes (idle timeout: error_code 1!) and
        # transport closes carry a frame type. Only the former is a §7 code.
        self.close_info: tuple[int, int | None, str] | None = None
        self.changed = asyncio.Event()
        self.next_req = 1
        self.keepalive: asyncio.Task | None = None

    # ---- connection lifecycle
    async def open(self) -> None:
        cfg = QuicConfiguration(
            is_client=True,
            alpn_protocols=[ALPN],
            server_name=self.server_name,
            idle_timeout=30.0,                       # relay's 10 s wins (§17.2)
            max_stream_data=MAX_BULK_FRAME * 2,      # a full bulk frame fits
        )
        cfg.load_verify_locations(cafile=self.cafile)  # pin the relay cert
        self.closed = asyncio.get_running_loop().create_future()

        def make_protocol(*args: Any, **kwargs: Any) -> ConfabProtocol:
            proto = ConfabProtocol(*args, **kwargs)
            proto.owner = self  # sees ConnectionTerminated during the handshake too
            return proto

        cm = connect(self.host, self.port, configuration=cfg,
                     create_protocol=make_protocol, wait_connected=True)
        try:
            self.proto = await asyncio.wait_for(self.stack.enter_async_context(cm), 5)
        except (ConnectionError, asyncio.TimeoutError) as e:
            why = self.close_info[2] if self.close_info else (type(e).__name__ or "timeout")
            raise StepFail(f"QUIC/TLS handshake failed: {why}") from None
        self.control_id = self.proto._quic.get_next_available_stream_id(
            is_unidirectional=False)
        if self.control_id != 0:
            raise StepFail(f"control stream id is {self.control_id}, expected 0")
        self.keepalive = asyncio.create_task(self._keepalive())

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEP_ALIVE)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proto.ping(), KEEP_ALIVE)

    async def close(self) -> None:
        if self.keepalive:
            self.keepalive.cancel()
            with contextlib.suppress(BaseException):
                await self.keepalive
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.stack.aclose(), 3)

    # ---- sending
    def req(self) -> int:
        r = self.next_req
        self.next_req += 1
        return r

    def send_raw(self, data: bytes, end_stream: bool = False) -> None:
        if self.verbose:
            print(f"  -> {data.hex(' ')[:200]}", file=sys.stderr)
        self.proto._quic.send_stream_data(self.control_id, data, end_stream=end_stream)
        self.proto.transmit()

    def send(self, t: str, **fields: Any) -> None:
        payload = encode("ClientFrame", {"t": t, **fields})
        if len(payload) > MAX_CONTROL_FRAME:
            raise StepFail(f"{t} payload {len(payload)} bytes over MAX_CONTROL_FRAME")
        if self.verbose:
            shown = {k: v for k, v in fields.items() if k != "password"}
            print(f"  -> {t} {shown}"[:300], file=sys.stderr)
        self.send_raw(frame(payload))

    # ---- receiving
    def _deliver(self, f: dict, sid: int) -> None:
        if self.verbose:
            print(f"  <- [{sid}] {f}"[:400], file=sys.stderr)
        rec = Received(f, sid, time.monotonic())
        self.log.append(rec)
        self.inbox.append(rec)
        self.changed.set()

    def _decode(self, payload: bytes, sid: int) -> None:
        try:
            f = decode_payload("ServerFrame", payload)
        except UnknownVariant as e:
            # §16: a client may skip a frame it cannot decode
            self.violations.append(f"stream {sid}: skipped unknown frame ({e})")
            return
        except CodecError as e:
            self.violations.append(f"stream {sid}: undecodable frame {payload[:40].hex()}: {e}")
            return
        # §2: replies that can grow (history pages, room and member lists)
        # travel on bulk streams; everything else on the control stream.
        bulk = ("HistoryPage", "Rooms", "Members")
        if sid == self.control_id and f["t"] in bulk:
            self.violations.append(f"{f['t']} arrived on the control stream")
        if sid != self.control_id and f["t"] not in bulk:
            self.violations.append(f"{f['t']} arrived on bulk stream {sid}")
        self._deliver(f, sid)

    def _on_event(self, ev: QuicEvent) -> None:
        if isinstance(ev, StreamDataReceived):
            sid = ev.stream_id
            if sid == self.control_id:
                self.control_buf += ev.data
                while len(self.control_buf) >= 4:
                    n = int.from_bytes(self.control_buf[:4], "big")
                    if n == 0 or n > MAX_CONTROL_FRAME:
                        self.violations.append(f"control frame length {n} invalid")
                        self.control_buf.clear()
                        self.proto.close(error_code=CLOSE_PROTOCOL,
                                         reason_phrase="bad frame length")
                        self.proto.transmit()
                        return
                    if len(self.control_buf) < 4 + n:
                        break
                    payload = bytes(self.control_buf[4:4 + n])
                    del self.control_buf[:4 + n]
                    self._decode(payload, sid)
                if ev.end_stream and self.control_buf:
                    self.violations.append("control stream truncated inside a frame")
            elif sid % 4 == 3:  # server-initiated unidirectional: bulk stream
                buf = self.bulk_bufs.setdefault(sid, bytearray())
                buf += ev.data
                if len(buf) > 4 + MAX_BULK_FRAME:
                    self.violations.append(f"bulk stream {sid} over MAX_BULK_FRAME")
                    buf.clear()
                if ev.end_stream:
                    data = bytes(self.bulk_bufs.pop(sid))
                    if len(data) < 4:
                        self.violations.append(f"bulk stream {sid}: FIN inside prefix")
                        return
                    n = int.from_bytes(data[:4], "big")
                    if n == 0 or n > MAX_BULK_FRAME or len(data) != 4 + n:
                        self.violations.append(
                            f"bulk stream {sid}: prefix {n}, {len(data) - 4} bytes; discarded")
                        return
                    self._decode(data[4:], sid)
            else:
                self.violations.append(f"data on unexpected stream {sid}")
        elif isinstance(ev, StreamReset):
            self.violations.append(f"stream {ev.stream_id} reset, code {ev.error_code}")
            self.bulk_bufs.pop(ev.stream_id, None)
        elif isinstance(ev, ConnectionTerminated):
            self.close_info = (ev.error_code, ev.frame_type, ev.reason_phrase)
            if self.verbose:
                print(f"  <- closed {self.close_info}", file=sys.stderr)
            if self.closed and not self.closed.done():
                self.closed.set_result(self.close_info)
            self.changed.set()

    async def expect(self, pred: Callable[[dict], bool], what: str,
                     timeout: float = 5.0) -> Received:
        deadline = time.monotonic() + timeout
        while True:
            for rec in self.inbox:
                if pred(rec.frame):
                    self.inbox.remove(rec)
                    return rec
            if self.close_info is not None:
                raise StepFail(f"connection closed (code {self.close_info[0]}, "
                               f"{self.close_info[2]!r}) while waiting for {what}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise StepFail(f"timed out waiting for {what}")
            self.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    async def reply(self, req: int, t: str, timeout: float = 5.0) -> dict:
        """The answer to request `req`: either frame `t` or Error (which fails)."""
        rec = await self.expect(
            lambda f: f.get("req") == req and f["t"] in (t, "Error"),
            f"{t} for req {req}", timeout)
        if rec.frame["t"] == "Error":
            e = rec.frame
            raise StepFail(f"got Error {e['code']} ({e['message']!r}) instead of {t}")
        return rec.frame

    async def error(self, req: int, code: str, timeout: float = 5.0) -> dict:
        rec = await self.expect(lambda f: f.get("req") == req, f"Error {code}", timeout)
        f = rec.frame
        if f["t"] != "Error":
            raise StepFail(f"got {f['t']} instead of Error {code}")
        if f["code"] != code:
            raise StepFail(f"got Error {f['code']} ({f['message']!r}), expected {code}")
        return f

    async def wait_closed(self, timeout: float = 5.0) -> tuple[int, int | None, str]:
        try:
            return await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except asyncio.TimeoutError:
            raise StepFail("connection was not closed") from None

    async def roundtrip(self) -> None:
        """Ping/Pong. Note: the relay may answer a Ping before an earlier Send's
        Ack (replies are not in request order), so this is no barrier for Sends."""
        r = self.req()
        self.send("Ping", req=r)
        await self.reply(r, "Pong")


# --------------------------------------------------------------------------
# Scenario
# --------------------------------------------------------------------------

def dm_name(a: str, b: str) -> str:
    x, y = sorted([a, b], key=lambda s: s.encode("utf-8"))  # byte order (§9.1)
    return f"@{x}+{y}"


class Scenario:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        host, _, port = args.server.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.server_name = args.server_name or self.host
        self.failures = 0
        self.c: Client | None = None
        self.peer: Client | None = None
        self.peer_name = ""
        self.me = args.user
        self.state: dict[str, Any] = {}

    def new_client(self) -> Client:
        return Client(self.host, self.port, self.args.ca, self.server_name,
                      self.args.verbose)

    async def step(self, name: str, fn: Callable, fatal: bool = False) -> bool:
        try:
            note = await fn()
        except StepFail as e:
            self.failures += 1
            print(f"FAIL {name}: {e}", flush=True)
            if fatal:
                raise
            return False
        except Exception as e:  # a bug in this client or an aioquic error
            self.failures += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            if fatal:
                raise StepFail(str(e)) from e
            return False
        print(f"ok {name}" + (f" ({note})" if note else ""), flush=True)
        return True

    # ---- main connection steps
    async def s_connect(self) -> str:
        self.c = self.new_client()
        await self.c.open()
        alpn = self.c.proto._quic.tls.alpn_negotiated
        if alpn != ALPN:
            raise StepFail(f"ALPN negotiated {alpn!r}")
        return f"ALPN {alpn}, control stream {self.c.control_id}"

    async def s_hello(self) -> str:
        c = self.c
        c.send("Hello", version=PROTOCOL_VERSION, client="confab-py-interop/0.1")
        rec = await c.expect(lambda f: f["t"] in ("Welcome", "Error"), "Welcome")
        w = rec.frame
        if w["t"] == "Error":
            raise StepFail(f"Error {w['code']}: {w['message']!r}")
        if w["version"] != PROTOCOL_VERSION:
            raise StepFail(f"Welcome.version {w['version']}")
        self.state["registration_open"] = w["registration_open"]
        return f"server {w['server']!r}, registration_open={w['registration_open']}"

    async def s_ping_before_login(self) -> str:
        await self.c.roundtrip()
        return ""

    async def s_login(self) -> str:
        c, a = self.c, self.args
        note = ""
        if a.register:
            r = c.req()
            c.send("Register", req=r, user=a.user, password=a.password)
            rec = await c.expect(lambda f: f.get("req") == r, "LoggedIn")
            f = rec.frame
            if f["t"] == "Error" and f["code"] == "NameTaken":
                note = "NameTaken, logged in instead; "
            elif f["t"] == "Error":
                raise StepFail(f"Register: Error {f['code']} ({f['message']!r})")
            else:
                self.me = f["user"]
                if f["user"].lower() != a.user.lower():
                    raise StepFail(f"LoggedIn.user {f['user']!r}")
                return f"registered as {f['user']!r}"
        r = c.req()
        c.send("Login", req=r, user=a.user, password=a.password)
        f = await c.reply(r, "LoggedIn")
        if f["user"].lower() != a.user.lower():
            raise StepFail(f"LoggedIn.user {f['user']!r}")
        self.me = f["user"]
        return note + f"logged in as {f['user']!r}"

    async def s_login_again(self) -> str:
        # §8.1: Hello/Register/Login after login -> Unexpected, connection stays open
        c = self.c
        r = c.req()
        c.send("Login", req=r, user=self.args.user, password=self.args.password)
        await c.error(r, "Unexpected")
        await c.roundtrip()
        return "Unexpected, connection still open"

    async def s_list_rooms(self) -> str:
        c = self.c
        r = c.req()
        c.send("ListRooms", req=r)
        f = await c.reply(r, "Rooms")
        joined = {ri["name"]: ri for ri in f["joined"]}
        public = {ri["name"]: ri for ri in f["public"]}
        if "lobby" not in joined:
            raise StepFail(f"lobby not in joined {sorted(joined)}")
        if "lobby" not in public:
            raise StepFail(f"lobby not in public {sorted(public)}")
        if joined["lobby"]["kind"] != "Public":
            raise StepFail(f"lobby kind {joined['lobby']['kind']}")
        self.state["lobby_latest"] = joined["lobby"]["latest"]
        return (f"joined={sorted(joined)} public={len(public)} "
                f"lobby latest={joined['lobby']['latest']}")

    async def s_send(self) -> str:
        c = self.c
        mid = secrets.token_bytes(16)
        body = f"interop test {mid.hex()[:8]} héllo ✓"
        self.state.update(mid=mid, body=body)
        r = c.req()
        t0 = time.time()
        c.send("Send", req=r, room="lobby", id=mid, body=body)
        ack = await c.reply(r, "Ack")
        if ack["room"] != "lobby" or ack["id"] != mid:
            raise StepFail(f"Ack room/id mismatch: {ack}")
        if not ack["seq"] > 0:
            raise StepFail(f"Ack seq {ack['seq']} not > 0")
        if ack["seq"] <= self.state.get("lobby_latest", 0):
            raise StepFail(f"Ack seq {ack['seq']} not above RoomInfo.latest "
                           f"{self.state.get('lobby_latest')}")
        if abs(ack["ts"] - t0 * 1000) > 600_000:
            raise StepFail(f"Ack ts {ack['ts']} is not ms since epoch near now")
        rec = await c.expect(lambda f: f["t"] == "Message" and f["v"]["id"] == mid,
                             "Message echo")
        m = rec.frame["v"]
        if rec.stream_id != c.control_id:
            raise StepFail("Message echo not on the control stream")
        want = dict(room="lobby", seq=ack["seq"], ts=ack["ts"], body=body, **{"from": self.me})
        bad = {k: (m[k], v) for k, v in want.items() if m[k] != v}
        if bad:
            raise StepFail(f"Message echo differs from Ack/request: {bad}")
        self.state.update(seq=ack["seq"], ts=ack["ts"])
        return f"seq={ack['seq']} ts={ack['ts']}"

    async def s_resend(self) -> str:
        c, mid = self.c, self.state["mid"]
        r = c.req()
        c.send("Send", req=r, room="lobby", id=mid, body=self.state["body"])
        ack = await c.reply(r, "Ack")
        if ack["seq"] != self.state["seq"] or ack["ts"] != self.state["ts"]:
            raise StepFail(f"resend Ack seq/ts {ack['seq']}/{ack['ts']}, original "
                           f"{self.state['seq']}/{self.state['ts']}")
        await c.roundtrip()
        await asyncio.sleep(0.5)
        n = sum(1 for rec in c.log
                if rec.frame["t"] == "Message" and rec.frame["v"]["id"] == mid)
        if n != 1:
            raise StepFail(f"{n} Message frames with this id (expected 1)")
        return f"same seq={ack['seq']}, no second Message"

    async def s_history(self) -> str:
        c, mid = self.c, self.state["mid"]
        r = c.req()
        c.send("History", req=r, room="lobby", page={"t": "Latest"}, limit=DEFAULT_PAGE)
        rec = await c.expect(lambda f: f.get("req") == r, "HistoryPage")
        p = rec.frame
        if p["t"] == "Error":
            raise StepFail(f"Error {p['code']} ({p['message']!r})")
        if p["t"] != "HistoryPage":
            raise StepFail(f"got {p['t']}")
        if rec.stream_id == c.control_id or rec.stream_id % 4 != 3:
            raise StepFail(f"HistoryPage on stream {rec.stream_id}, not a bulk stream")
        seqs = [m["seq"] for m in p["messages"]]
        if seqs != sorted(seqs) or len(set(seqs)) != len(seqs):
            raise StepFail(f"messages not strictly ascending: {seqs}")
        if len(seqs) > DEFAULT_PAGE:
            raise StepFail(f"{len(seqs)} messages > limit")
        n = sum(1 for m in p["messages"] if m["id"] == mid)
        if n != 1:
            raise StepFail(f"our message appears {n} times")
        m = next(m for m in p["messages"] if m["id"] == mid)
        if (m["seq"], m["ts"], m["from"], m["room"]) != (
                self.state["seq"], self.state["ts"], self.me, "lobby"):
            raise StepFail(f"stored message differs: {m}")
        if seqs[-1] != self.state["seq"]:
            raise StepFail(f"newest seq {seqs[-1]} is not ours ({self.state['seq']})")
        return (f"bulk stream {rec.stream_id}, {len(seqs)} messages, "
                f"more={p['more']}")

    async def s_history_paging(self) -> str:
        # Before(our seq) must not contain ours; After(our seq - 1)... not contiguous
        # seqs, so use After(previous message's seq) if any.
        c, seq = self.c, self.state["seq"]
        r = c.req()
        c.send("History", req=r, room="lobby", page={"t": "Before", "v": seq}, limit=1)
        rec = await c.expect(lambda f: f.get("req") == r, "HistoryPage Before")
        p = rec.frame
        if p["t"] != "HistoryPage":
            raise StepFail(f"Before: got {p}")
        if any(m["seq"] >= seq for m in p["messages"]) or len(p["messages"]) > 1:
            raise StepFail(f"Before({seq}) returned {[m['seq'] for m in p['messages']]}")
        prev = p["messages"][0]["seq"] if p["messages"] else 0
        r = c.req()
        c.send("History", req=r, room="lobby", page={"t": "After", "v": prev}, limit=1)
        rec = await c.expect(lambda f: f.get("req") == r, "HistoryPage After")
        q = rec.frame
        if q["t"] != "HistoryPage" or [m["seq"] for m in q["messages"]] != [seq]:
            raise StepFail(f"After({prev}) limit 1 returned {q}")
        if q["more"]:
            raise StepFail("After: more=true although ours is the newest message")
        return f"Before({seq})->{[m['seq'] for m in p['messages']]} more={p['more']}, After({prev})->[{seq}]"

    async def s_bad_limit(self) -> str:
        c = self.c
        r = c.req()
        c.send("History", req=r, room="lobby", page={"t": "Latest"}, limit=0)
        rec = await c.expect(lambda f: f.get("req") == r, "Error BadLimit")
        if rec.frame["t"] != "Error" or rec.frame["code"] != "BadLimit":
            raise StepFail(f"got {rec.frame}")
        if rec.stream_id != c.control_id:
            raise StepFail("error came on a bulk stream")
        return "Error BadLimit on the control stream"

    async def s_create_room(self) -> str:
        c = self.c
        name = "interop-" + secrets.token_hex(4)
        self.state["room"] = name
        r = c.req()
        c.send("CreateRoom", req=r, room=name, private=False)
        f = await c.reply(r, "Joined")
        ri = f["room"]
        if (ri["name"], ri["kind"], ri["members"], ri["latest"], ri["topic"]) != (
                name, "Public", 1, 0, ""):
            raise StepFail(f"Joined.room = {ri}")
        await c.expect(lambda f: f["t"] == "Presence" and f["v"] == {
            "room": name, "user": self.me, "kind": "Joined"},
            "Presence{room, self, Joined}")
        return f"{name}: Joined + Presence(self, Joined)"

    async def s_members(self) -> str:
        c, name = self.c, self.state["room"]
        r = c.req()
        c.send("Members", req=r, room=name)
        f = await c.reply(r, "Members")
        if f["room"] != name or f["members"] != [{"user": self.me, "online": True}]:
            raise StepFail(f"Members = {f}")
        return f"{f['members']}"

    async def s_open_dm(self) -> str:
        c, peer = self.c, self.args.peer
        r = c.req()
        c.send("OpenDm", req=r, user=peer)
        f = await c.reply(r, "Joined")
        ri = f["room"]
        # the peer's canonical spelling is not known to us; compare ignoring case
        exp = dm_name(self.me, peer)
        if ri["name"].lower() != exp.lower() or ri["kind"] != "Direct" or ri["members"] != 2:
            raise StepFail(f"Joined.room = {ri}, expected name like {exp!r}, Direct, 2")
        parts = ri["name"][1:].split("+")
        if parts != sorted(parts, key=lambda s: s.encode()) or self.me not in parts:
            raise StepFail(f"DM name {ri['name']!r} not @a+b in byte order")
        self.state["dm"] = ri["name"]
        return f"{ri['name']}"

    # ---- invitations (§9.4), with a second connection as the peer
    async def s_peer_login(self) -> str:
        p = self.new_client()
        self.peer = p
        await p.open()
        p.send("Hello", version=PROTOCOL_VERSION, client="confab-py-interop/0.1")
        await p.expect(lambda f: f["t"] == "Welcome", "Welcome")
        r = p.req()
        p.send("Login", req=r, user=self.args.peer, password=self.args.peer_password)
        f = await p.reply(r, "LoggedIn")
        self.peer_name = f["user"]
        return f"{self.peer_name} logged in on a second connection"

    async def _peer_rooms(self) -> dict:
        p = self.peer
        r = p.req()
        p.send("ListRooms", req=r)
        return await p.reply(r, "Rooms")

    async def _invite_peer(self, room: str) -> dict:
        c = self.c
        r = c.req()
        c.send("Invite", req=r, room=room, user=self.args.peer)
        await c.reply(r, "Done")
        rec = await self.peer.expect(
            lambda f: f["t"] == "Invited" and f["v"]["room"]["name"] == room,
            f"Invited to {room}")
        if rec.stream_id != self.peer.control_id:
            raise StepFail("Invited not on the control stream")
        return rec.frame["v"]

    async def s_invite(self) -> str:
        c = self.c
        room = "interop-p-" + secrets.token_hex(3)
        self.state["private"] = room
        r = c.req()
        c.send("CreateRoom", req=r, room=room, private=True)
        await c.reply(r, "Joined")
        inv = await self._invite_peer(room)
        ri = inv["room"]
        if (inv["by"], ri["kind"], ri["members"]) != (self.me, "Private", 1):
            raise StepFail(f"Invited = {inv}")
        await c.roundtrip()
        if any(rec.frame["t"] == "Invited" for rec in c.log):
            raise StepFail("the inviter was sent Invited too")
        return f"{self.peer_name} told: {inv}"

    async def s_invitation_listed(self) -> str:
        room = self.state["private"]
        f = await self._peer_rooms()
        names = [i["room"]["name"] for i in f["invited"]]
        if not names or names[0] != room or f["invited"][0]["by"] != self.me:
            raise StepFail(f"Rooms.invited = {f['invited']}")
        if room in {ri["name"] for ri in f["joined"] + f["public"]}:
            raise StepFail(f"{room} listed as joined or public")
        return f"newest first: {names}"

    async def s_decline(self) -> str:
        p, room = self.peer, self.state["private"]
        r = p.req()
        p.send("Leave", req=r, room=room)
        f = await p.reply(r, "Left")
        if f["room"] != room:
            raise StepFail(f"Left = {f}")
        f = await self._peer_rooms()
        if any(i["room"]["name"] == room for i in f["invited"]):
            raise StepFail(f"still invited: {f['invited']}")
        r = p.req()
        p.send("Join", req=r, room=room)
        await p.error(r, "NoSuchRoom")
        return "Left, gone from Rooms.invited, the room hidden again (NoSuchRoom)"

    async def s_accept(self) -> str:
        p, room = self.peer, self.state["private"]
        await self._invite_peer(room)
        r = p.req()
        p.send("Join", req=r, room=room)
        f = await p.reply(r, "Joined")
        if (f["room"]["name"], f["room"]["kind"], f["room"]["members"]) != (room, "Private", 2):
            raise StepFail(f"Joined = {f}")
        f = await self._peer_rooms()
        if room not in {ri["name"] for ri in f["joined"]} or f["invited"]:
            raise StepFail(f"after Join: joined {f['joined']}, invited {f['invited']}")
        # A member is not invited: Done, and nothing sent.
        c = self.c
        r = c.req()
        c.send("Invite", req=r, room=room, user=self.args.peer)
        await c.reply(r, "Done")
        await p.roundtrip()
        await asyncio.sleep(0.3)
        n = sum(1 for rec in p.log if rec.frame["t"] == "Invited")
        if n != 2:
            raise StepFail(f"{n} Invited frames (expected 2: none for a member)")
        return "invited again, Joined, nothing listed; a member is not invited"

    # ---- topics (§9.5): alice and the peer are both in the private room
    async def _told_topic(self, client: Client, room: str, topic: str) -> None:
        rec = await client.expect(
            lambda f: f["t"] == "Topic" and f["room"] == room and f["topic"] == topic,
            f"Topic {topic!r} of {room}")
        if rec.frame["by"] != self.me or rec.stream_id != client.control_id:
            raise StepFail(f"Topic = {rec.frame} on stream {rec.stream_id}")

    async def s_topic(self) -> str:
        c, p, room = self.c, self.peer, self.state["private"]
        topic = "pages, déploys ☕"
        r = c.req()
        c.send("SetTopic", req=r, room=room, topic=topic)
        await c.reply(r, "Done")
        # Told to every member's sessions, the setter's own included.
        await self._told_topic(c, room, topic)
        await self._told_topic(p, room, topic)
        f = await self._peer_rooms()
        listed = {ri["name"]: ri["topic"] for ri in f["joined"]}
        if listed.get(room) != topic:
            raise StepFail(f"Rooms.joined topics = {listed}")
        # The same again: Done, and nothing sent.
        r = c.req()
        c.send("SetTopic", req=r, room=room, topic=topic)
        await c.reply(r, "Done")
        await c.roundtrip()
        await p.roundtrip()
        await asyncio.sleep(0.3)
        n = sum(1 for rec in p.log if rec.frame["t"] == "Topic")
        if n != 1:
            raise StepFail(f"{n} Topic frames after setting the same topic again")
        # Refused, in the documented order: the topic before the room.
        nowhere = "no-such-room-" + secrets.token_hex(3)
        refusals = [(room, "x" * (MAX_TOPIC + 1), "BadTopic"),
                    (room, "two\nlines", "BadTopic"),
                    (nowhere, "a\tb", "BadTopic"),
                    (nowhere, "x", "NoSuchRoom")]
        if "dm" in self.state:
            refusals.append((self.state["dm"], "x", "Forbidden"))
        for target, text, code in refusals:
            r = c.req()
            c.send("SetTopic", req=r, room=target, topic=text)
            await c.error(r, code)
        # Cleared by the peer: an empty topic, told to alice.
        r = p.req()
        p.send("SetTopic", req=r, room=room, topic="")
        await p.reply(r, "Done")
        rec = await c.expect(lambda f: f["t"] == "Topic" and f["room"] == room
                             and f["topic"] == "", "Topic cleared")
        if rec.frame["by"] != self.peer_name:
            raise StepFail(f"cleared by {rec.frame['by']!r}, expected {self.peer_name!r}")
        p.send("Bye")
        await p.wait_closed()
        return f"set {topic!r}, told to both, listed, cleared by {self.peer_name}"

    async def s_list_rooms_after(self) -> str:
        c = self.c
        r = c.req()
        c.send("ListRooms", req=r)
        f = await c.reply(r, "Rooms")
        joined = {ri["name"]: ri for ri in f["joined"]}
        public = {ri["name"]: ri for ri in f["public"]}
        room = self.state.get("room")
        if room and (room not in joined or room not in public):
            raise StepFail(f"{room} missing from joined or public")
        dm = self.state.get("dm")
        if dm and (dm not in joined or dm in public):
            raise StepFail(f"{dm}: in joined={dm in joined}, in public={dm in public}")
        if joined["lobby"]["latest"] < self.state["seq"]:
            raise StepFail(f"lobby latest {joined['lobby']['latest']} < {self.state['seq']}")
        return f"{len(joined)} joined, {len(public)} public"

    async def s_bad_body(self) -> str:
        c = self.c
        r = c.req()
        c.send("Send", req=r, room="lobby", id=secrets.token_bytes(16), body="x" * (MAX_BODY + 1))
        await c.error(r, "BadBody")
        r = c.req()
        c.send("Send", req=r, room="lobby", id=secrets.token_bytes(16), body=" \t\n")
        await c.error(r, "BadBody")
        await c.roundtrip()
        return "4097-byte and whitespace-only bodies: BadBody, connection still open"

    async def s_no_such_room(self) -> str:
        c = self.c
        r = c.req()
        c.send("Send", req=r, room="no-such-room-" + secrets.token_hex(3),
               id=secrets.token_bytes(16), body="x")
        await c.error(r, "NoSuchRoom")
        return ""

    async def s_bye(self) -> str:
        c = self.c
        c.send("Bye")
        code, ftype, reason = await c.wait_closed()
        if ftype is not None or code != CLOSE_NORMAL:
            raise StepFail(f"closed with code {code} ({reason!r}, frame type {ftype}), "
                           "expected application close 0")
        if c.violations:
            raise StepFail("; ".join(c.violations))
        return f"closed with code 0, reason {reason!r}"

    # ---- extra connections: errors that close the connection
    async def _bad_conn(self, frames: list[bytes], want_code: str, want_req: int,
                        want_close: int, hello: bool = True) -> str:
        c = self.new_client()
        try:
            await c.open()
            if hello:
                c.send("Hello", version=PROTOCOL_VERSION, client="confab-py-interop/0.1")
                await c.expect(lambda f: f["t"] == "Welcome", "Welcome")
            for fr in frames:
                c.send_raw(fr)
            code, ftype, reason = await c.wait_closed()
            errs = [rec.frame for rec in c.log if rec.frame["t"] == "Error"]
            note = f"close code {code}"
            if ftype is not None or code != want_close:
                raise StepFail(f"close code {code} ({reason!r}), expected {want_close}; errors {errs}")
            if errs:
                e = errs[0]
                if (e["code"], e["req"]) != (want_code, want_req):
                    raise StepFail(f"got Error{{req {e['req']}, {e['code']}}}, "
                                   f"expected {{req {want_req}, {want_code}}}")
                note += f", Error{{req: {e['req']}, {e['code']}}}"
            else:
                note += ", Error frame not seen (doc allows the close to drop it)"
            return note
        finally:
            await c.close()

    async def s_malformed(self) -> str:
        # Ping{req: 5} plus one trailing byte (§3)
        return await self._bad_conn([frame(h("0c 05 00"))], "Malformed", 0, CLOSE_PROTOCOL)

    async def s_too_large(self) -> str:
        return await self._bad_conn([(MAX_CONTROL_FRAME + 1).to_bytes(4, "big")],
                                    "FrameTooLarge", 0, CLOSE_PROTOCOL)

    async def s_version(self) -> str:
        return await self._bad_conn([client_frame("Hello", version=2, client="x")],
                                    "VersionMismatch", 0, CLOSE_VERSION, hello=False)

    async def s_unexpected_first(self) -> str:
        return await self._bad_conn([client_frame("Ping", req=7)],
                                    "Unexpected", 7, CLOSE_PROTOCOL, hello=False)

    async def run(self) -> int:
        try:
            await self.step("connect", self.s_connect, fatal=True)
            await self.step("hello", self.s_hello, fatal=True)
            await self.step("ping_before_login", self.s_ping_before_login)
            await self.step("login" if not self.args.register else "register",
                            self.s_login, fatal=True)
            await self.step("login_again_unexpected", self.s_login_again)
            await self.step("list_rooms", self.s_list_rooms)
            if await self.step("send", self.s_send):
                await self.step("resend_same_id", self.s_resend)
                await self.step("history_latest", self.s_history)
                await self.step("history_before_after", self.s_history_paging)
            await self.step("history_bad_limit", self.s_bad_limit)
            if await self.step("create_room", self.s_create_room):
                await self.step("members", self.s_members)
            if self.args.peer:
                await self.step("open_dm", self.s_open_dm)
            if self.args.peer and self.args.peer_password:
                if await self.step("peer_login", self.s_peer_login):
                    if await self.step("invite", self.s_invite):
                        await self.step("invitation_listed", self.s_invitation_listed)
                        await self.step("decline_by_leave", self.s_decline)
                        if await self.step("accept_by_join", self.s_accept):
                            await self.step("topic", self.s_topic)
            await self.step("list_rooms_after", self.s_list_rooms_after)
            await self.step("bad_body", self.s_bad_body)
            await self.step("no_such_room", self.s_no_such_room)
            await self.step("bye", self.s_bye)
        except StepFail:
            print("FAIL scenario: stopped after a fatal step", flush=True)
        finally:
            if self.c:
                await self.c.close()
            if self.peer:
                await self.peer.close()
        await self.step("malformed_frame_closes_1", self.s_malformed)
        await self.step("oversized_prefix_closes_1", self.s_too_large)
        await self.step("version_mismatch_closes_5", self.s_version)
        await self.step("unexpected_first_frame_closes_1", self.s_unexpected_first)
        print(f"{'ok' if self.failures == 0 else 'FAIL'} scenario: "
              f"{self.failures} failure(s)", flush=True)
        return 0 if self.failures == 0 else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--self-test", action="store_true",
                    help="check the codec against PROTOCOL.md §15 and exit")
    ap.add_argument("--server", help="HOST:PORT of the relay")
    ap.add_argument("--ca", help="PEM file with the relay certificate to trust")
    ap.add_argument("--server-name", help="TLS server name (default: HOST)")
    ap.add_argument("--user")
    ap.add_argument("--password", default=os.environ.get("CONFAB_PASSWORD"))
    ap.add_argument("--register", action="store_true")
    ap.add_argument("--peer", help="another existing user to OpenDm with")
    ap.add_argument("--peer-password", default=os.environ.get("CONFAB_PEER_PASSWORD"),
                    help="the peer's password: it logs in too, to be invited")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="print every frame to stderr")
    ap.add_argument("mode", nargs="?", choices=["scenario"])
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if args.mode != "scenario":
        ap.error("give --self-test or the `scenario` mode")
    for opt in ("server", "ca", "user", "password"):
        if not getattr(args, opt):
            ap.error(f"--{opt.replace('_', '-')} is required for scenario")
    return asyncio.run(Scenario(args).run())


if __name__ == "__main__":
    sys.exit(main())
