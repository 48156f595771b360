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
def room_info(name, kind, members, latest): return string(name) + uvar(kind) + uvar(members) + uvar(latest)

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
}
server = {
    "welcome": uvar(0) + uvar(1) + string("relay") + b"\x01",
    "joined": uvar(2) + uvar(5) + room_info("dev", 1, 3, 2**40),
    "rooms": uvar(5) + uvar(6) + uvar(2) + room_info("lobby", 0, 2, 9) + room_info("@a+b", 2, 2, 0) + uvar(1) + room_info("lobby", 0, 2, 9),
    "members": uvar(6) + uvar(7) + string("dev") + uvar(2) + string("alice") + b"\x01" + string("bob") + b"\x00",
    "ack": uvar(7) + uvar(8) + string("lobby") + bytes(16) + uvar(5) + ivar(-1),
    "message": uvar(8) + message("lobby", 5, "hi"),
    "page": uvar(9) + uvar(3) + string("lobby") + uvar(2) + message("lobby", 1, "a") + message("lobby", 300, "b") + b"\x01",
    "presence": uvar(10) + b"\x01" + string("dev") + string("bob") + uvar(1),
    "presence_online": uvar(10) + b"\x00" + string("bob") + uvar(2),
    "lagged": uvar(11) + string("lobby") + uvar(1024),
    "error": uvar(13) + uvar(1) + uvar(9) + string("slow down"),
    "shutdown": uvar(14) + string("bye"),
}
out = "seeds/frame_decode"
os.makedirs(out, exist_ok=True)
for name, p in {**client, **server}.items():
    open(f"{out}/{name}", "wb").write(p)
open(f"{out}/stream_client", "wb").write(b"".join(frame(p) for p in client.values()))
open(f"{out}/stream_oversized", "wb").write(frame(client["ping"]) + (65537).to_bytes(4, "big") + b"x")
