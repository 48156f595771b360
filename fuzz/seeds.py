#!/usr/bin/env python3
"""Writes seeds/frame_decode/: valid frames of both directions (encoded as in
docs/PROTOCOL.md §4), alone and as length-prefixed streams. Run from fuzz/."""
import os

def uvar(n):
    if n < 251: return bytes([n])
    if n < 1 << 16: return b"\xfb" + n.to_bytes(2, "little")
    if n < 1 << 32: return b"\xfc" + n.to_bytes(4, "little")
    return b"\xfd" + n.to_bytes(8, "little")

def ivar(n): return uvar(2 * n if n >= 0 else -2 * n - 1)
def string(s): b = s.encode(); return uvar(len(b)) + b
def frame(p): return len(p).to_bytes(4, "big") + p
def message(room, seq, body): return string(room) + uvar(seq) + bytes(range(16)) + ivar(1_700_000_000_000) + string("alice") + string(body)
def room_info(name, kind, members, latest, topic=""): return string(name) + uvar(kind) + uvar(members) + uvar(latest) + string(topic)

client = {
    "hello": uvar(0) + uvar(1) + string("cli"),
    "login": uvar(2) + uvar(1) + string("alice") + string("hunter22"),
    "create": uvar(3) + uvar(2) + string("dev") + b"\x01",
    "send": uvar(10) + uvar(300) + string("lobby") + bytes(16) + string("héllo"),
    "history_after": uvar(11) + uvar(4) + string("lobby") + uvar(2) + uvar(70000) + uvar(200),
    "history_latest": uvar(11) + uvar(4) + string("lobby") + uvar(0) + uvar(50),
    "ping": uvar(12) + uvar(300),
    "bye": uvar(13),
    "resume": uvar(14) + uvar(9) + string("lobby"),
    "set_topic": uvar(15) + uvar(9) + string("ops") + string("pages, deploys, on-call"),
}
server = {
    "welcome": uvar(0) + uvar(1) + string("relay") + b"\x01",
    "joined": uvar(2) + uvar(5) + room_info("dev", 1, 3, 2**40, "builds ☕"),
    "rooms": uvar(5) + uvar(6) + uvar(2) + room_info("lobby", 0, 2, 9, "say hello") + room_info("@a+b", 2, 2, 0) + uvar(1) + room_info("lobby", 0, 2, 9, "say hello") + uvar(1) + room_info("ops", 1, 2, 0) + string("bob"),
    "members": uvar(6) + uvar(7) + string("dev") + uvar(2) + string("alice") + b"\x01" + string("bob") + b"\x00",
    "ack": uvar(7) + uvar(8) + string("lobby") + bytes(16) + uvar(5) + ivar(-1),
    "message": uvar(8) + message("lobby", 5, "hi"),
    "page": uvar(9) + uvar(3) + string("lobby") + uvar(2) + message("lobby", 1, "a") + message("lobby", 300, "b") + b"\x01",
    "presence": uvar(10) + b"\x01" + string("dev") + string("bob") + uvar(1),
    "presence_online": uvar(10) + b"\x00" + string("bob") + uvar(2),
    "lagged": uvar(11) + string("lobby") + uvar(1024),
    "error": uvar(13) + uvar(1) + uvar(9) + string("slow down"),
    "shutdown": uvar(14) + string("bye"),
    "invited": uvar(15) + room_info("ops", 1, 2, 0) + string("bob"),
    "topic": uvar(16) + string("ops") + string("pages, deploys, on-call") + string("bob"),
}
out = "seeds/frame_decode"
os.makedirs(out, exist_ok=True)
for name, p in {**client, **server}.items():
    open(f"{out}/{name}", "wb").write(p)
open(f"{out}/stream_client", "wb").write(b"".join(frame(p) for p in client.values()))
open(f"{out}/stream_oversized", "wb").write(frame(client["ping"]) + (65537).to_bytes(4, "big") + b"x")

# seeds/session_frames/: op sequences in the byte format `arbitrary` reads
# for fuzz_targets/session_frames.rs (each op after a byte 01, "one more";
# an enum variant is a u32, LE, scaled to the variant count; u8/u16 as
# they are; bool one byte). Only variants
# without strings or vectors, whose lengths `arbitrary` takes from the end.
# The indices follow the order of the enums there (`Op`, `Req`, ...): keep
# them in step.
def tag(i, n): return (-(-(i << 32) // n)).to_bytes(4, "little")
ROOM = {r: i for i, r in enumerate(["lobby", "dev", "ops", "vault", "music", "x", "b-o_b9", "@alice+bob", "@alice+mallory"])}
USER = {u: i for i, u in enumerate(["mallory", "alice", "bob"])}
def room(r): return tag(0, 4) + bytes([ROOM[r]])
def user(u): return tag(0, 4) + bytes([USER[u]])
def body(i=0): return tag(0, 4) + bytes([i])
# Requests (`Req`), then the ops that carry them.
def rq(i, *fields): return tag(i, 11) + b"".join(fields)
def r_create(r, private=False): return rq(0, room(r), bytes([private]))
def r_join(r): return rq(1, room(r))
def r_leave(r): return rq(2, room(r))
def r_invite(r, u): return rq(3, room(r), user(u))
def r_list_rooms(): return rq(4)
def r_members(r): return rq(5, room(r))
def r_open_dm(u): return rq(6, user(u))
def r_send(r, fixed=None, b=body()): return rq(7, room(r), tag(0, 2) + bytes([fixed]) if fixed is not None else tag(1, 2), b)
def latest(limit): return tag(0, 5) + tag(0, 3) + bytes([limit])
def after_max_page(seq): return tag(2, 5) + seq.to_bytes(2, "little") + tag(1, 3) + b"\x00"
def r_history(r, page): return rq(8, room(r), page)
def r_ping(): return rq(9)
def r_resume(r): return rq(10, room(r))
def op(i, *fields): return tag(i, 11) + b"".join(fields)
def create(r, private=False): return op(0, r_create(r, private))
def join(r): return op(0, r_join(r))
def leave(r): return op(0, r_leave(r))
def invite(r, u): return op(0, r_invite(r, u))
def list_rooms(): return op(0, r_list_rooms())
def members(r): return op(0, r_members(r))
def open_dm(u): return op(0, r_open_dm(u))
def send(r, fixed=None, b=body()): return op(0, r_send(r, fixed, b))
def history(r, page): return op(0, r_history(r, page))
def ping(): return op(0, r_ping())
def resume(r): return op(0, r_resume(r))
# `first` from the current device, `second` from device `other`; bit i of
# `turns` (lowest first) gives turn i to the second.
def pair(first, second, other=1, turns=0, one_room=False): return op(1, bytes([other]), first, second, bytes([one_room]), turns.to_bytes(4, "little"))
def device(n): return op(2, bytes([n]))
def crowd(): return op(3)
def hello_again(): return op(4, tag(0, 3) + (1).to_bytes(2, "little"))
def login_again(right): return op(4, tag(2, 3) + bytes([right]))
def peer_send(i, b=body(1)): return op(5, bytes([i]), b)
def bye(): return op(7, tag(0, 5))
def wait(n): return op(8, bytes([n]))
def read(): return op(9)
def settle(): return op(10)

sessions = {
    "public": [join("dev"), send("dev", 1), history("dev", latest(5)), members("dev"), leave("dev")],
    "create": [create("music"), send("music"), history("music", after_max_page(0)), list_rooms(), leave("music")],
    "private": [create("x", True), invite("x", "alice"), members("x"), send("x"), leave("x"), join("x")],
    "dm": [open_dm("alice"), send("@alice+mallory"), peer_send(3), history("@alice+mallory", latest(7)), members("@alice+mallory")],
    "intrude": [send("vault"), history("vault", latest(5)), join("vault"), invite("vault", "bob"), resume("vault"),
                members("@alice+bob"), join("@alice+bob"), peer_send(1), peer_send(2), members("vault"), leave("lobby")],
    "again": [hello_again(), login_again(True), login_again(False), ping(), resume("lobby"),
              send("lobby", 2, tag(2, 4) + bytes([2])), history("lobby", latest(0)), peer_send(0)],
    "bye": [join("dev"), send("dev"), bye()],
    "lag": [peer_send(0) for _ in range(20)] + [settle(), read(), resume("lobby"), peer_send(0), settle()],
    "rate": [join("dev"), leave("dev")] * 12 + [wait(100), join("dev"), settle()],
    "pipeline": [join("dev"), send("dev"), send("dev"), leave("dev"), history("dev", latest(7)), list_rooms(), settle(), join("dev")],
    # Several devices of mallory's: a join on one, sends from the others,
    # one login too many, a leave on one with reads and a resend on another.
    "devices": [device(1), join("dev"), device(2), send("dev", 3), crowd(), device(0), send("dev", 4), leave("dev"),
                device(1), send("dev", 3), history("dev", latest(5)), members("x"), settle(), list_rooms(), settle()],
    # A leave on device 0 while device 1 resumes the room: it has read the
    # membership when the leave lands, then subscribes; its sends and reads
    # after that must be refused.
    "churn-resume": [join("dev"), settle(), pair(r_leave("dev"), r_resume("dev"), 1, 0b1),
                     device(1), send("dev"), history("dev", latest(5)), peer_send(4), settle()],
    # The same with a private room, its member list, and a send in flight.
    "churn-private": [create("x", True), send("x"), settle(), pair(r_leave("x"), r_send("x"), 1, 0b10),
                      pair(r_members("x"), r_history("x", latest(5)), 2, 0b1), device(1), resume("x"), send("x"), settle()],
    # A room change rate shared by the devices: changes from two at once.
    "churn-rate": [pair(r_join("dev"), r_leave("dev"), 1, 0b1010)] * 12 + [settle()],
}
out = "seeds/session_frames"
os.makedirs(out, exist_ok=True)
for name, ops in sessions.items():
    open(f"{out}/{name}", "wb").write(b"".join(b"\x01" + o for o in ops))

# `Raw` ops carry a payload, a Vec<u8>: `arbitrary` reads each byte after
# a byte 01 ("one more") and ends at a 00. SetTopic (ClientFrame 15) is not
# among the `Req`s, so this is how it reaches the relay: topics of a room
# she is in (twice the same, then cleared), of two lines, of her own DM,
# of a room hidden from her.
def raw(payload): return op(6, b"".join(b"\x01" + bytes([b]) for b in payload) + b"\x00")
def set_topic(r, topic): return uvar(15) + uvar(1) + string(r) + string(topic)
sessions_raw = {
    "topics": [join("dev"), open_dm("alice")] + [raw(set_topic(r, t)) for r, t in [
        ("dev", "pages, deploys"), ("lobby", "two\nlines"), ("@alice+mallory", "x"),
        ("vault", "x"), ("dev", "pages, deploys"), ("dev", "")]] + [settle()],
}
for name, ops in sessions_raw.items():
    open(f"{out}/{name}", "wb").write(b"".join(b"\x01" + o for o in ops))
