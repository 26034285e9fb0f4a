"""Under abuse: honest players' latency while attackers flood, stop reading, trickle and churn, each cut off by its documented limit.

    .venv/bin/python bench/abuse.py [--json] [--quick] [--frame-timeout 5] [--max-per-address 50]

Starts a real `twistd -n gameframe` (demo rooms, 127.0.0.1, a free port, pinned to CPU 0)
and puts 10 honest players in one chat room, each saying a timestamp 10 times a second
and timing the echo of its own `said` (this process, CPU 1). Then, in turn, a quiet
baseline and four attacks run from a second process (CPU 1, nice 10, so the measuring
players are not starved):

  flood    one client in the same room sends `say` as fast as it can
           (documented: `rate_limited` errors, then disconnect `flooding`)
  slow     200 clients join arenas, keep moving, and never read
           (documented: dropped once their backlog passes the bound, log line `slow_client`)
  trickle  1000 connections send one byte a second of a line they never end
           (documented: disconnect `frame_timeout` after --frame-timeout)
  churn    5000 connections open and close from one address, up to 2x the
           per-address limit at once (documented: `welcome`, or disconnect
           `too_many_connections` past --max-per-address)

Attackers connect from other loopback addresses (127.0.x.y) than the honest players
(127.0.0.1), so --max-per-address applies to them alone. Every phase has a time limit;
the server is stopped by its PID whatever happens. Target: honest p99 within 2x of the
baseline measured in the same run, and under 50 ms.
"""

from __future__ import annotations

import argparse
import errno
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import select
import selectors
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))
import liveserver  # noqa: E402
from liveserver import HOST, LiveServer  # noqa: E402

ACTION = re.compile(rb'"action":"(\w+)"')
CODE = re.compile(rb'"code":"(\w+)"')
# Kernel receive timestamps (Linux; not exported by the socket module): the time the
# server's bytes reached the honest player's socket, before this process ran to read them.
SO_TIMESTAMPNS = 35
P99_FACTOR = 2.0
P99_CEILING_MS = 50.0

Result = dict[str, Any]


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank) of C{values}, or None if there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def connect(source: str, port: int, timeout: float = 5.0, rcvbuf: int | None = None) -> socket.socket:
    """A blocking TCP connection from C{source} (a loopback address) to the server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.connect((HOST, port))
    except BaseException:
        sock.close()
        raise
    return sock


def read_until(sock: socket.socket, buffer: bytearray, action: bytes, deadline: float) -> dict[str, Any]:
    """Blocking: read lines until one with this action (returned, parsed); others are dropped."""
    while True:
        end = buffer.find(b"\n")
        if end >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            found = ACTION.search(line)
            if found and found.group(1) == action:
                message: dict[str, Any] = json.loads(line)
                return message
            if b'"disconnect"' in line or b'"error"' in line:
                raise ConnectionError(line.decode(errors="replace"))
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {action.decode()} in time")
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        buffer += data


def sources(prefix: str, count: int, per_address: int) -> list[str]:
    """C{count} source addresses C{prefix}.1, .2, ... with at most C{per_address} on each."""
    per = max(1, per_address)
    return [f"{prefix}.{1 + (i // per) % 254}" for i in range(count)]


# -- the honest players (this process) ------------------------------------------------


@attrs.define
class Honest:
    """One measuring player: its socket, its unread bytes, its player id."""

    sock: socket.socket
    player_id: str
    inbox: bytearray = attrs.Factory(bytearray)


@attrs.define
class PhaseSamples:
    sent: int = 0
    latencies_ms: list[float] = attrs.Factory(list)  # send → the kernel's receive timestamp
    read_ms: list[float] = attrs.Factory(list)  # send → this process read it
    sent_at: list[float] = attrs.Factory(list)  # monotonic seconds, one per latency


class HonestRoom:
    """
    Ten players (by default) in one chat room, each saying its send time
    C{hz} times a second, staggered, and timing its own echo.
    """

    def __init__(self, port: int, players: int, hz: float) -> None:
        self.hz = hz
        self.players: list[Honest] = []
        self.selector = selectors.DefaultSelector()
        self.phase: int | None = None
        self.samples: dict[int, PhaseSamples] = {}
        self.problems: list[str] = []
        self.room_id = ""
        for i in range(players):
            sock = connect(HOST, port, timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            buffer = bytearray()
            deadline = time.monotonic() + 10
            welcome = read_until(sock, buffer, b"welcome", deadline)
            if i == 0:
                request = {"action": "create", "room": "chat", "id": 1}
            else:
                request = {"action": "join", "room_id": self.room_id, "id": 1}
            sock.sendall(json.dumps(request).encode() + b"\n")
            joined = read_until(sock, buffer, b"joined", deadline)
            self.room_id = joined["room_id"]
            sock.setblocking(False)
            player = Honest(sock, welcome["player_id"], buffer)
            self.players.append(player)
            self.selector.register(sock, selectors.EVENT_READ, player)
        self.start = time.monotonic()
        self.period = 1.0 / hz
        self.sends = 0  # every player's sends so far, in schedule order

    def next_send(self) -> float:
        n = len(self.players)
        return self.start + self.sends * self.period / n

    def send_due(self, now: float) -> None:
        n = len(self.players)
        while self.next_send() <= now:
            player = self.players[self.sends % n]
            self.sends += 1
            if self.phase is None:
                continue  # between phases: keep the schedule, measure nothing
            text = f"{self.phase}:{time.monotonic_ns()}:{time.time_ns()}"
            line = b'{"action":"say","text":"' + text.encode() + b'"}\n'
            try:
                player.sock.send(line)
            except OSError as e:
                self.problems.append(f"{player.player_id} send failed: {e}")
                continue
            self.samples.setdefault(self.phase, PhaseSamples()).sent += 1
            if now - self.next_send() > 1.0:  # far behind (the process was starved): skip ahead
                self.sends += int((now - self.next_send()) / self.period * n)

    def read(self, player: Honest) -> None:
        try:
            data, ancillary, _, _ = player.sock.recvmsg(262144, socket.CMSG_SPACE(16))
        except BlockingIOError:
            return
        except OSError as e:
            self.problems.append(f"{player.player_id}: {e}")
            self.selector.unregister(player.sock)
            return
        now_ns = time.monotonic_ns()
        arrived_ns: int | None = None
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                sec, nsec = struct.unpack("qq", value[:16])
                arrived_ns = sec * 1_000_000_000 + nsec  # of the last packet read: conservative
        if not data:
            self.problems.append(f"{player.player_id}: closed by the server")
            self.selector.unregister(player.sock)
            return
        player.inbox += data
        end = player.inbox.rfind(b"\n")
        if end < 0:
            return
        lines = bytes(player.inbox[:end]).split(b"\n")
        del player.inbox[: end + 1]
        mine = f'"player_id":"{player.player_id}"'.encode()
        for line in lines:
            if line.startswith(b'{"action":"said"'):
                if mine not in line:
                    continue
                message = json.loads(line)
                phase, sent_ns, sent_wall_ns = message["text"].split(":")
                samples = self.samples.setdefault(int(phase), PhaseSamples())
                read_ms = (now_ns - int(sent_ns)) / 1e6
                samples.read_ms.append(read_ms)
                samples.latencies_ms.append(
                    read_ms if arrived_ns is None else (arrived_ns - int(sent_wall_ns)) / 1e6
                )
                samples.sent_at.append(int(sent_ns) / 1e9)
            elif line.startswith((b'{"action":"error"', b'{"action":"disconnect"')):
                self.problems.append(f"{player.player_id} got {line.decode(errors='replace')}")

    def pump(self, until: float, done: Callable[[], bool], tick: Callable[[], None]) -> None:
        """Play until C{until} or C{done()}; C{tick()} about every 0.25 s."""
        next_tick = 0.0
        while True:
            now = time.monotonic()
            if now >= until or done():
                return
            if now >= next_tick:
                tick()
                next_tick = now + 0.25
            self.send_due(now)
            timeout = max(0.0, min(self.next_send(), next_tick, until) - time.monotonic())
            for key, _ in self.selector.select(timeout):
                self.read(key.data)

    def close(self) -> None:
        for player in self.players:
            player.sock.close()
        self.selector.close()


# -- the attackers (a second process) -------------------------------------------------


def lines_of(buffer: bytearray, data: bytes) -> list[bytes]:
    """Append C{data}; return the complete lines and keep the rest."""
    buffer += data
    end = buffer.rfind(b"\n")
    if end < 0:
        return []
    lines = bytes(buffer[:end]).split(b"\n")
    del buffer[: end + 1]
    return lines


def count_line(line: bytes, codes: Counter[str]) -> str | None:
    """Count an error or disconnect line's code (as C{error:CODE} / C{disconnect:CODE}); its action."""
    found = ACTION.search(line)
    action = found.group(1).decode() if found else "?"
    if action in ("error", "disconnect"):
        code = CODE.search(line)
        codes[f"{action}:{code.group(1).decode() if code else '?'}"] += 1
    return action


def attack_flood(port: int, room_id: str, limit_s: float) -> Result:
    """One client in the honest room sends `say` as fast as the socket takes it, reading everything."""
    codes: Counter[str] = Counter()
    sock = connect("127.0.0.2", port)
    buffer = bytearray()
    deadline = time.monotonic() + 10
    read_until(sock, buffer, b"welcome", deadline)
    sock.sendall(json.dumps({"action": "join", "room_id": room_id, "id": 1}).encode() + b"\n")
    read_until(sock, buffer, b"joined", deadline)
    sock.setblocking(False)
    line = b'{"action":"say","text":"flood"}\n'
    block = line * 2048
    offset = 0
    sent_bytes = 0
    t0 = time.monotonic()
    first_limited: float | None = None
    cut_after: float | None = None
    how = "not cut off"
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    writing = True
    try:
        while time.monotonic() - t0 < limit_s and cut_after is None:
            for _, events in selector.select(0.1):
                if events & selectors.EVENT_READ:
                    try:
                        data = sock.recv(262144)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        cut_after, how = time.monotonic() - t0, f"reset ({errno.errorcode.get(e.errno or 0, e)})"
                        break
                    if not data:
                        cut_after, how = time.monotonic() - t0, "closed"
                        break
                    for got in lines_of(buffer, data):
                        count_line(got, codes)
                        if first_limited is None and b"rate_limited" in got:
                            first_limited = time.monotonic() - t0
                if writing and events & selectors.EVENT_WRITE:
                    try:
                        n = sock.send(block[offset:])
                    except BlockingIOError:
                        n = 0
                    except OSError:
                        writing = False  # the server closed its side; read what is left
                        selector.modify(sock, selectors.EVENT_READ)
                        n = 0
                    sent_bytes += n
                    offset = (offset + n) % len(block)
    finally:
        selector.close()
        sock.close()
    return {
        "attackers": 1,
        "cut_off": int(cut_after is not None),
        "codes": dict(codes),
        "messages_sent": sent_bytes // len(line),
        "first_rate_limited_s": round(first_limited, 2) if first_limited is not None else None,
        "cut_off_after_s": round(cut_after, 2) if cut_after is not None else None,
        "how": how,
        "documented": int(codes["disconnect:flooding"] == 1),
    }


def attack_slow(port: int, count: int, per_address: int, room_size: int, say_every_s: float,
                limit_s: float) -> Result:
    """
    C{count} clients with a small receive buffer join chat rooms of
    C{room_size}, then each says a 1000-character text every C{say_every_s}
    and never reads again (the text is control characters, which the server
    escapes to 6 KB per C{said}: the backlog grows fast). Each is watched
    for the server closing it. (Arenas would not do: state patches are
    skipped for a client that does not read.)
    """
    addresses = sources("127.0.1", count, per_address)
    socks: list[socket.socket] = []
    failed: Counter[str] = Counter()
    room_id = ""
    for i, source in enumerate(addresses):
        if i % room_size == 0:
            request = {"action": "create", "room": "chat", "id": 1}
        else:
            request = {"action": "join", "room_id": room_id, "id": 1}
        try:
            sock = connect(source, port, rcvbuf=4096)
            buffer = bytearray()
            deadline = time.monotonic() + 10
            read_until(sock, buffer, b"welcome", deadline)
            sock.sendall(json.dumps(request).encode() + b"\n")
            joined = read_until(sock, buffer, b"joined", deadline)
        except (OSError, ConnectionError) as e:
            failed[type(e).__name__ + ": " + str(e)[:60]] += 1
            continue
        room_id = joined["room_id"]
        sock.setblocking(False)
        socks.append(sock)
    poller = select.poll()
    by_fd = {sock.fileno(): sock for sock in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLRDHUP | select.POLLERR | select.POLLHUP)  # never POLLIN
    say = b'{"action":"say","text":"' + b"\\u0001" * 1000 + b'"}\n'
    fds = list(by_fd)
    slots = 10  # each client says once per say_every_s, in one of 10 slots
    t0 = time.monotonic()
    dropped: dict[int, tuple[float, str]] = {}
    tick = 0
    try:
        while time.monotonic() - t0 < limit_s and len(dropped) < len(socks):
            due = t0 + tick * say_every_s / slots
            now = time.monotonic()
            if now >= due:
                for fd in fds[tick % slots :: slots]:
                    if fd in dropped:
                        continue
                    try:
                        by_fd[fd].send(say)
                    except BlockingIOError:
                        pass
                    except OSError as e:
                        dropped[fd] = (now - t0, f"send: {errno.errorcode.get(e.errno or 0, '?')}")
                        poller.unregister(fd)
                tick += 1
                continue
            for fd, event in poller.poll(max(0, int((due - now) * 1000))):
                if fd in dropped:
                    continue
                how = "reset" if event & select.POLLERR else "closed"
                dropped[fd] = (time.monotonic() - t0, how)
                poller.unregister(fd)
    finally:
        for sock in socks:
            sock.close()
    times = sorted(t for t, _ in dropped.values())
    return {
        "attackers": count,
        "joined": len(socks),
        "join_failed": dict(failed),
        "cut_off": len(dropped),
        "how": dict(Counter(how for _, how in dropped.values())),
        "first_cut_off_s": round(times[0], 1) if times else None,
        "median_cut_off_s": round(statistics.median(times), 1) if times else None,
        "last_cut_off_s": round(times[-1], 1) if times else None,
        "codes": {},
    }


def attack_trickle(port: int, count: int, per_address: int, limit_s: float) -> Result:
    """C{count} connections each send one byte a second of a line they never finish."""
    addresses = sources("127.0.2", count, per_address)
    selector = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    buffers: dict[int, bytearray] = {}
    failed: Counter[str] = Counter()
    for source in addresses:
        try:
            sock = connect(source, port)
        except OSError as e:
            failed[type(e).__name__] += 1
            continue
        sock.setblocking(False)
        socks.append(sock)
        buffers[sock.fileno()] = bytearray()
        selector.register(sock, selectors.EVENT_READ)
    payload = b'{"action":"say","text":"' + b"x" * 4096
    codes: Counter[str] = Counter()
    sent = dict.fromkeys(buffers, 0)
    first_byte: dict[int, float] = {}
    cut: dict[int, float] = {}
    how: Counter[str] = Counter()
    slots = 20  # each socket is written once per second, in one of 20 slots
    t0 = time.monotonic()
    tick = 0
    try:
        while time.monotonic() - t0 < limit_s and len(cut) < len(socks):
            due = t0 + tick / slots
            if time.monotonic() >= due:
                now = time.monotonic()
                for i in range(tick % slots, len(socks), slots):
                    sock = socks[i]
                    fd = sock.fileno()
                    if fd < 0 or fd in cut:
                        continue
                    try:
                        sock.send(payload[sent[fd] % len(payload) : sent[fd] % len(payload) + 1])
                        sent[fd] += 1
                        first_byte.setdefault(fd, now)
                    except OSError:
                        pass  # the read side reports the close
                tick += 1
                continue
            for key, _ in selector.select(max(0.0, due - time.monotonic())):
                sock = key.fileobj  # type: ignore[assignment]
                fd = sock.fileno()
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                    how["reset"] += 1
                else:
                    if not data:
                        how["closed"] += 1
                for line in lines_of(buffers[fd], data):
                    count_line(line, codes)
                if not data:
                    cut[fd] = time.monotonic() - first_byte.get(fd, t0)
                    selector.unregister(sock)
    finally:
        selector.close()
        for sock in socks:
            sock.close()
    times = sorted(cut.values())
    return {
        "attackers": count,
        "connected": len(socks),
        "connect_failed": dict(failed),
        "cut_off": len(cut),
        "how": dict(how),
        "codes": dict(codes),
        "median_cut_off_after_first_byte_s": round(statistics.median(times), 1) if times else None,
        "max_cut_off_after_first_byte_s": round(times[-1], 1) if times else None,
        "documented": codes["disconnect:frame_timeout"],
    }


@attrs.define
class Churner:
    sock: socket.socket
    mode: int
    opened: float
    buffer: bytearray = attrs.Factory(bytearray)
    state: str = "connecting"
    close_at: float | None = None


def attack_churn(port: int, total: int, concurrency: int, hold_s: float, limit_s: float) -> Result:
    """
    C{total} connections from 127.0.3.1, up to C{concurrency} open at once,
    in three kinds: close at once; read the first message, hold C{hold_s},
    close; read it, join a chat room, close.
    """
    selector = selectors.DefaultSelector()
    outcome: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    live: dict[int, Churner] = {}
    started = 0
    t0 = time.monotonic()
    join = b'{"action":"join_or_create","room":"chat","id":1}\n'

    def finish(churner: Churner, what: str) -> None:
        outcome[what] += 1
        fd = churner.sock.fileno()
        try:
            selector.unregister(churner.sock)
        except (KeyError, ValueError):
            pass
        churner.sock.close()
        live.pop(fd, None)

    try:
        while time.monotonic() - t0 < limit_s and (started < total or live):
            while started < total and len(live) < concurrency:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    sock.bind(("127.0.3.1", 0))
                    err = sock.connect_ex((HOST, port))
                except OSError as e:
                    outcome[f"connect_error:{errno.errorcode.get(e.errno or 0, '?')}"] += 1
                    sock.close()
                    started += 1
                    continue
                started += 1
                churner = Churner(sock, started % 3, time.monotonic())
                if err not in (0, errno.EINPROGRESS):
                    outcome[f"connect_error:{errno.errorcode.get(err, err)}"] += 1
                    sock.close()
                    continue
                live[sock.fileno()] = churner
                selector.register(sock, selectors.EVENT_WRITE, churner)
            now = time.monotonic()
            for churner in list(live.values()):
                if churner.close_at is not None and now >= churner.close_at:
                    finish(churner, "held_then_closed")
                elif now - churner.opened > 10:
                    finish(churner, f"timeout_{churner.state}")
            for key, events in selector.select(0.05):
                churner = key.data
                sock = churner.sock
                if churner.state == "connecting":
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        finish(churner, f"connect_error:{errno.errorcode.get(err, err)}")
                        continue
                    if churner.mode == 0:
                        finish(churner, "closed_at_once")
                        continue
                    churner.state = "first"
                    selector.modify(sock, selectors.EVENT_READ, churner)
                    continue
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as e:
                    finish(churner, f"reset_{churner.state}:{errno.errorcode.get(e.errno or 0, '?')}")
                    continue
                if not data:
                    finish(churner, f"eof_{churner.state}")
                    continue
                for line in lines_of(churner.buffer, data):
                    action = count_line(line, codes)
                    if churner.state == "first":
                        codes[f"first:{action}"] += 1
                        if action == "disconnect":
                            churner.state = "refused"
                        elif churner.mode == 1:
                            churner.state = "holding"
                            churner.close_at = time.monotonic() + hold_s
                        else:
                            churner.state = "joining"
                            sock.send(join)
                    elif churner.state == "joining" and action in ("joined", "error"):
                        finish(churner, "joined_then_closed" if action == "joined" else "join_refused")
                        break
                if churner.state == "refused" and sock.fileno() >= 0:
                    finish(churner, "refused")
        for churner in list(live.values()):
            finish(churner, f"unfinished_{churner.state}")
    finally:
        selector.close()
    return {
        "attackers": total,
        "started": started,
        "seconds": round(time.monotonic() - t0, 1),
        "outcome": dict(outcome),
        "codes": dict(codes),
        "cut_off": codes["disconnect:too_many_connections"],
        "documented": codes["disconnect:too_many_connections"],
    }


ATTACKS: dict[str, Callable[..., Result]] = {
    "flood": attack_flood,
    "slow": attack_slow,
    "trickle": attack_trickle,
    "churn": attack_churn,
}


def attacker_process(conn: multiprocessing.connection.Connection, cpu: int | None, fds: int) -> None:
    """The attackers' process: runs one attack per request, answers its result; None ends it."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    os.nice(10)
    liveserver.raise_fd_limit(fds)
    while True:
        request = conn.recv()
        if request is None:
            return
        kind, params = request
        try:
            result = ATTACKS[kind](**params)
        except Exception as e:  # reported in the table, not hidden
            result = {"failed": f"{type(e).__name__}: {e}", "attackers": 0, "cut_off": 0, "codes": {}}
        conn.send(result)


# -- phases -------------------------------------------------------------------------


@attrs.define
class Phase:
    name: str
    attack: str
    expected: str
    request: tuple[str, dict[str, Any]] | None
    limit_s: float


def run_phase(
    index: int,
    phase: Phase,
    room: HonestRoom,
    server: LiveServer,
    conn: multiprocessing.connection.Connection,
    min_window_s: float,
) -> Result:
    log_offset = server.log_size()
    before = server.sample()
    peak = before.rss_kib
    t0 = time.monotonic()

    def tick() -> None:
        nonlocal peak
        if server.alive():
            peak = max(peak, server.sample().rss_kib)

    room.phase = index
    attack: Result = {}
    if phase.request is not None:
        conn.send(phase.request)

        def done() -> bool:
            return time.monotonic() - t0 >= min_window_s and conn.poll()

        room.pump(t0 + phase.limit_s + 15, done, tick)
        attack = conn.recv() if conn.poll(30) else {"failed": "the attacker did not answer in time"}
    else:
        room.pump(t0 + phase.limit_s, lambda: False, tick)
    room.phase = None
    alive = server.alive()
    after = server.sample() if alive else before
    # Let the last echoes of this phase arrive (they are counted to it).
    room.pump(time.monotonic() + 0.5, lambda: False, tick)
    samples = room.samples.get(index, PhaseSamples())
    log = server.log_since(log_offset)
    seconds = after.at - before.at
    return {
        "phase": phase.name,
        "attack": phase.attack,
        "expected": phase.expected,
        "seconds": round(time.monotonic() - t0, 1),
        "sent": samples.sent,
        "echoed": len(samples.latencies_ms),
        "p50_ms": percentile(samples.latencies_ms, 50),
        "p99_ms": percentile(samples.latencies_ms, 99),
        "max_ms": max(samples.latencies_ms, default=None),
        "read_p50_ms": percentile(samples.read_ms, 50),
        "read_p99_ms": percentile(samples.read_ms, 99),
        "over_10ms_at_s": over_10ms(samples, t0),
        "rss_start_mib": round(before.rss_kib / 1024, 1),
        "rss_peak_mib": round(peak / 1024, 1),
        "rss_end_mib": round(after.rss_kib / 1024, 1),
        "cpu_pct": round((after.cpu_s - before.cpu_s) / seconds * 100, 1) if seconds > 0 else None,
        "server_alive": alive,
        "log_slow_client": log.count("slow_client"),
        "log_tracebacks": log.count("Traceback"),
        "attack_result": attack,
        "honest_problems": list(room.problems),
    }


def over_10ms(samples: PhaseSamples, t0: float) -> dict[str, int]:
    """How many echoes took over 10 ms, by the second of the phase they were sent in."""
    seconds: Counter[str] = Counter()
    for latency, at in zip(samples.latencies_ms, samples.sent_at):
        if latency > 10:
            seconds[str(int(at - t0))] += 1
    return dict(sorted(seconds.items(), key=lambda kv: int(kv[0])))


def verdict(row: Result, baseline_p99: float | None) -> None:
    """Add C{p99_ratio}, C{latency_ok} and C{cut_off_ok} to a phase's row."""
    p99 = row["p99_ms"]
    ratio = p99 / baseline_p99 if p99 is not None and baseline_p99 else None
    row["p99_ratio"] = round(ratio, 2) if ratio is not None else None
    row["latency_ok"] = (
        p99 is not None and ratio is not None and ratio <= P99_FACTOR and p99 < P99_CEILING_MS
        and row["echoed"] >= row["sent"] * 0.99 and not row["honest_problems"]
    )
    result = row["attack_result"]
    codes: dict[str, int] = result.get("codes", {})
    name = row["phase"]
    if name in ("baseline", "quiet again"):
        row["cut_off_ok"] = None
    elif name == "flood":
        row["cut_off_ok"] = bool(
            codes.get("error:rate_limited") and codes.get("disconnect:flooding") == 1
            and result.get("cut_off") == 1
        )
    elif name == "slow":
        joined = result.get("joined", 0)
        row["cut_off_ok"] = bool(
            joined and result.get("cut_off") == joined and row["log_slow_client"] >= joined
        )
    elif name == "trickle":
        row["cut_off_ok"] = bool(
            result.get("connected") and codes.get("disconnect:frame_timeout") == result["connected"]
        )
    elif name == "churn":
        outcome: dict[str, int] = result.get("outcome", {})
        bad = {k: v for k, v in outcome.items()
               if k not in ("closed_at_once", "held_then_closed", "joined_then_closed", "refused")}
        first_codes = {k: v for k, v in codes.items() if k.startswith("disconnect:")}
        row["cut_off_ok"] = bool(
            not bad and result.get("started") == result.get("attackers")
            and set(first_codes) <= {"disconnect:too_many_connections"}
            and (codes.get("disconnect:too_many_connections", 0) > 0 or not row.get("per_address_limited"))
        )


def cut_off_cell(row: Result) -> str:
    result = row["attack_result"]
    if "failed" in result:
        return f"attacker failed: {result['failed']}"
    name = row["phase"]
    codes: dict[str, int] = result.get("codes", {})
    if name in ("baseline", "quiet again"):
        return "-"
    if name == "flood":
        return (f"{result['cut_off']}/1 cut off after {result.get('cut_off_after_s')} s "
                f"({result.get('how')}); {result.get('messages_sent', 0):,} sent; "
                + ", ".join(f"{k} ×{v}" for k, v in sorted(codes.items())))
    if name == "slow":
        return (f"{result.get('cut_off')}/{result.get('joined')} dropped "
                f"({', '.join(f'{k} ×{v}' for k, v in result.get('how', {}).items())}; "
                f"first {result.get('first_cut_off_s')} s, last {result.get('last_cut_off_s')} s); "
                f"log `slow_client` ×{row['log_slow_client']}")
    if name == "trickle":
        shown = ", ".join(f"{k} ×{v}" for k, v in sorted(codes.items()))
        return (f"{result.get('cut_off')}/{result.get('connected')} cut off, median "
                f"{result.get('median_cut_off_after_first_byte_s')} s after the first byte; {shown or 'no codes'}")
    if name == "churn":
        outcome = result.get("outcome", {})
        first = {k[6:]: v for k, v in codes.items() if k.startswith("first:")}
        return (f"{result.get('started'):,} in {result.get('seconds')} s; first message "
                + ", ".join(f"{k} ×{v}" for k, v in sorted(first.items()))
                + "; " + ", ".join(f"{k} ×{v}" for k, v in sorted(outcome.items())))
    return "?"


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def limits_in_effect(frame_timeout: float, max_per_address: int) -> str:
    """The server's limits this run meets, read from the library (defaults unless passed)."""
    try:
        from gameframe import _limits
        from gameframe._link import DEFAULT_MAX_PENDING
        from gameframe._sendpath import DEFAULT_MAX_PENDING_MESSAGES
    except ImportError as e:
        return f"(the library's limits could not be read: {e})"
    return (
        f"--rate {_limits.DEFAULT_RATE:g} --burst {_limits.DEFAULT_BURST} (flooding after "
        f"{_limits.FLOOD_GRACE:g} s over the rate), --frame-timeout {frame_timeout:g}, --idle-timeout "
        f"{_limits.DEFAULT_IDLE_TIMEOUT:g}, --max-connections {_limits.DEFAULT_MAX_CONNECTIONS}, "
        f"--max-per-address {max_per_address}, slow client past {DEFAULT_MAX_PENDING // 1024 // 1024} MiB "
        f"or {DEFAULT_MAX_PENDING_MESSAGES:,} messages waiting"
    )


def markdown(rows: list[Result]) -> str:
    head = ("| phase | attack | honest p50 ms | p99 ms | p99 vs baseline | p99 as read (ms) | echoed/sent | "
            "server RSS MiB start → peak → end | server CPU % | attackers cut off, codes received | "
            "latency target | cut off as documented |")
    out = [head, "|" + "---|" * 12]
    for row in rows:
        ok = {True: "yes", False: "**no**", None: "-"}
        out.append(
            f"| {row['phase']} | {row['attack']} | {fmt(row['p50_ms'])} | {fmt(row['p99_ms'])} | "
            f"{fmt(row.get('p99_ratio'), 2)}× | {fmt(row['read_p99_ms'])} | {row['echoed']}/{row['sent']} | "
            f"{row['rss_start_mib']} → {row['rss_peak_mib']} → {row['rss_end_mib']} | "
            f"{fmt(row['cpu_pct'])} | {cut_off_cell(row)} | {ok[row.get('latency_ok')]} | "
            f"{ok[row.get('cut_off_ok')]} |"
        )
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="also print a JSON summary")
    ap.add_argument("--quick", action="store_true", help="small counts, for trying the bench out")
    ap.add_argument("--players", type=int, default=10)
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--baseline", type=float, default=10.0, help="seconds of the quiet phase")
    ap.add_argument("--min-window", type=float, default=8.0, help="least seconds measured per attack")
    ap.add_argument("--slow", type=int, default=200)
    ap.add_argument("--slow-room", type=int, default=50, help="non-readers per chat room")
    ap.add_argument("--slow-every", type=float, default=1.0, help="seconds between a non-reader's says")
    ap.add_argument("--trickle", type=int, default=1000)
    ap.add_argument("--churn", type=int, default=5000)
    ap.add_argument("--frame-timeout", type=float, default=5.0)
    ap.add_argument("--max-per-address", type=int, default=50)
    ap.add_argument("--phases", default="flood,slow,trickle,churn")
    ap.add_argument("--keep-log", action="store_true", help="keep the server's log (its path is printed)")
    ap.add_argument("--python", default=liveserver.default_python(), help="the venv's python (its twistd runs the server)")
    a = ap.parse_args()
    if a.quick:
        a.slow, a.trickle, a.churn, a.baseline, a.min_window = 50, 100, 500, 4.0, 4.0
    per_address = a.max_per_address if a.max_per_address > 0 else 50
    fds = liveserver.raise_fd_limit(a.trickle + a.slow + 4 * per_address + 1000)

    supported = liveserver.supported_options(a.python)
    server_args: list[str] = []
    skipped: list[str] = []
    for option, value in (("--frame-timeout", a.frame_timeout), ("--max-per-address", a.max_per_address)):
        (server_args.extend([option, str(value)]) if option in supported else skipped.append(option))

    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (str(cpus[0]), cpus[1]) if len(cpus) >= 2 else (None, None)
    placement = (
        f"server: twistd pinned to CPU {server_cpu}; honest players: this process, CPU {client_cpu}; "
        f"attackers: a second process, CPU {client_cpu}, nice 10"
        if server_cpu is not None else "one CPU: nothing pinned; attackers in a second process at nice 10"
    )
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})

    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe()
    attacker = ctx.Process(target=attacker_process, args=(there, client_cpu, fds), daemon=True)
    attacker.start()
    workdir = Path(tempfile.mkdtemp(prefix="gameframe-abuse-"))
    server: LiveServer | None = None
    room: HonestRoom | None = None
    rows: list[Result] = []
    load_before = os.getloadavg()
    try:
        server = liveserver.start(a.python, server_args, workdir / "server.log", cwd=workdir, cpu=server_cpu)
        port = server.port
        room = HonestRoom(port, a.players, a.hz)
        room.pump(time.monotonic() + 1.0, lambda: False, lambda: None)  # warm up
        phases = [Phase("baseline", "none (quiet)", "-", None, a.baseline)]
        wanted = a.phases.split(",")
        if "flood" in wanted:
            phases.append(Phase("flood", "1 client sends `say` as fast as it can, in the honest room",
                                "`rate_limited` errors, then disconnect `flooding`",
                                ("flood", {"port": port, "room_id": room.room_id, "limit_s": 30.0}), 30.0))
        if "slow" in wanted:
            phases.append(Phase("slow", f"{a.slow} clients in chat rooms of {a.slow_room} (4 KiB receive buffer) "
                                f"each say 6 KB every {a.slow_every:g} s, never read",
                                "dropped once the backlog passes the bound; log `slow_client`",
                                ("slow", {"port": port, "count": a.slow, "per_address": per_address // 2,
                                          "room_size": a.slow_room, "say_every_s": a.slow_every,
                                          "limit_s": 90.0}), 90.0))
        if "trickle" in wanted:
            limit = a.frame_timeout * 3 + 20
            phases.append(Phase("trickle", f"{a.trickle} connections send 1 byte/s of an unending line",
                                f"disconnect `frame_timeout` after {a.frame_timeout:g} s",
                                ("trickle", {"port": port, "count": a.trickle,
                                             "per_address": per_address // 2, "limit_s": limit}), limit))
        if "churn" in wanted:
            phases.append(Phase("churn", f"{a.churn} connect/close from one address, {2 * per_address} at once",
                                "`welcome`, or disconnect `too_many_connections` past the per-address limit",
                                ("churn", {"port": port, "total": a.churn, "concurrency": 2 * per_address,
                                           "hold_s": 0.5, "limit_s": 60.0}), 60.0))
        # Quiet again at the end: how noisy the machine was, and whether the server recovered.
        phases.append(Phase("quiet again", "none (after the attacks)", "-", None, a.baseline))
        load_before = os.getloadavg()
        for index, phase in enumerate(phases):
            row = run_phase(index, phase, room, server, here, a.min_window if phase.request else 0)
            row["per_address_limited"] = "--max-per-address" in server_args
            rows.append(row)
            print(f"# {phase.name}: p50 {fmt(row['p50_ms'])} ms, p99 {fmt(row['p99_ms'])} ms, "
                  f"peak RSS {row['rss_peak_mib']} MiB; {json.dumps(row['attack_result'])}", file=sys.stderr)
            if not row["server_alive"]:
                print("# the server died; stopping", file=sys.stderr)
                break
            room.pump(time.monotonic() + 2.0, lambda: False, lambda: None)  # settle
    finally:
        here.send(None)
        attacker.join(10)
        if attacker.is_alive():
            attacker.kill()
        if room is not None:
            room.close()
        if server is not None:
            server.stop()
        if a.keep_log:
            print(f"# server log: {workdir / 'server.log'}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    baseline_p99 = rows[0]["p99_ms"] if rows else None
    for row in rows:
        verdict(row, baseline_p99)
    command = " ".join(["bench/abuse.py", *sys.argv[1:]])
    print(f"\n## Under abuse ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    print(f"`{command}`; server: `twistd -n gameframe {' '.join(server_args)}` (demo rooms); "
          f"{a.players} honest players at {a.hz:g} Hz in one chat room timing the echo of their own `say`.")
    print(f"Limits in effect: {limits_in_effect(a.frame_timeout, a.max_per_address)}.")
    print(f"Placement: {placement}. Load average (1 min) before/after: "
          f"{load_before[0]:.2f}/{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs.")
    if skipped:
        print(f"Not supported by this server yet (not passed): {', '.join(skipped)}.")
    print()
    print(markdown(rows))
    print(f"\nLatency: a `say` from its send to the kernel's receive timestamp of its `said` on the "
          f"sender's socket (SO_TIMESTAMPNS: the server and the network, not this process's scheduling); "
          f"*as read*: to when this process read it. Target: honest p99 within {P99_FACTOR:g}× of the "
          f"baseline and under {P99_CEILING_MS:g} ms, nothing lost, no honest player disturbed.")
    problems = sorted({p for row in rows for p in row["honest_problems"]})
    if problems:
        print("Honest players' problems: " + "; ".join(problems[:10]))
    if a.json:
        print(json.dumps({
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": command,
            "server_args": server_args,
            "not_supported": skipped,
            "placement": placement,
            "loadavg_before_after": [load_before[0], os.getloadavg()[0]],
            "targets": {"p99_vs_baseline_max": P99_FACTOR, "p99_ms_max": P99_CEILING_MS},
            "phases": rows,
        }, indent=1))
    ok = all(row.get("latency_ok") is not False and row.get("cut_off_ok") is not False for row in rows[1:])
    return 0 if ok and rows and rows[0]["p99_ms"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
