"""Replay recorded netlink conversations: a socket that answers with the kernel's recorded replies.

A :class:`Replay` splits a recording (a pcap read with :func:`nfnl.pcap.read_pcap`, or a list of
``(direction, bytes)``) into *exchanges* — one sent datagram and the datagrams received after it
until the next send — plus *events*, received datagrams that answer no request (``seq`` 0, or
before the first send), which are served to sockets bound to multicast groups.  When code sends
a datagram, the first unused exchange whose request is the same (message types, flags, nfgenmsg
and the attributes decoded with the registered schema, in any order; seq, portid and padding
ignored) is consumed and its replies are queued with seq/portid rewritten to the new request and
socket; a request that matches nothing raises :class:`ReplayMismatch`, showing the request
decoded and the closest recorded ones.  :class:`ReplaySocket` is a real
:class:`nfnl.socket.NetlinkSocket` over a fake kernel end (``sock=``), so ``request``/``dump``/
``batch`` run unchanged and ``fileno()`` is a pipe that is readable while replies are queued.
:func:`install` makes every ``NetlinkSocket`` a program opens talk to a replay (it patches the
``socket`` module that :mod:`nfnl.socket` uses); ``python -m nfnl.replay FILE.pcap -m MODULE ...``
runs a whole program that way.  :func:`describe` and :func:`conversation_diff` print and compare
conversations the way humans read them (see also :mod:`nfnl.pytest_plugin`).
"""
from __future__ import annotations

import collections
import contextlib
import difflib
import errno as _errno
import os
import socket as _real_socket
import struct
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Union

from .codec import AttrList
from .constants import (
    NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP, NETLINK_NETFILTER, NLM_F_ACK, NLM_F_CAPPED,
    NLM_F_DUMP, NLMSG_DONE, NLMSG_ERROR, NLMSG_MIN_TYPE, SOL_NETLINK,
)
from .errors import NetlinkDecodeError
from .message import NLMSGHDR, decode_message, iter_messages, message_spec, register_message
from .pcap import RECEIVED, SENT, Packet, read_pcap
from .socket import NetlinkSocket

Recording = Union[str, "os.PathLike[str]", Iterable[Union[Packet, tuple]]]
"""A pcap path (or binary file object) or datagrams: Packets, (direction, bytes) or
(direction, bytes, netlink protocol)."""

_SEQ_PID = struct.Struct("=II")


class ReplayMismatch(AssertionError):
    """The code sent a request that the recording does not answer (the conversation diverged)."""


class ReplayExhausted(EOFError):
    """A blocking ``recv`` found nothing to serve: the recording holds no more for this socket."""


# --- reading and describing conversations ----------------------------------------------------

def ensure_schemas() -> None:
    """Register ctnetlink's message schemas with :mod:`nfnl.message` if nobody has yet."""
    try:
        from ctnetlink import _compiled as ct
    except ImportError:  # pragma: no cover - nfnl used without ctnetlink
        return
    for mtype, (name, set_name) in ct.MESSAGES.items():
        if message_spec(mtype) is None:
            register_message(mtype, name, ct.ATTRS, set_name)


def load(recording: Recording) -> list[Packet]:
    """The datagrams of a recording as :class:`~nfnl.pcap.Packet` objects, in order."""
    if isinstance(recording, (str, os.PathLike)) or hasattr(recording, "read"):
        return list(read_pcap(recording))  # type: ignore[arg-type]
    out = []
    for i, item in enumerate(recording):
        if isinstance(item, Packet):
            out.append(item)
        else:
            direction, data, *rest = item
            if direction not in (SENT, RECEIVED):
                raise ValueError(f"direction must be {SENT!r} or {RECEIVED!r}, not {direction!r}")
            out.append(Packet(i, direction, rest[0] if rest else NETLINK_NETFILTER, bytes(data)))
    return out


_FLAG_LOW = ((0x1, "REQUEST"), (0x2, "MULTI"), (0x4, "ACK"), (0x8, "ECHO"), (0x10, "DUMP_INTR"),
             (0x20, "DUMP_FILTERED"))
_FLAG_GET = ((0x100, "ROOT"), (0x200, "MATCH"), (0x400, "ATOMIC"))
_FLAG_NEW = ((0x100, "REPLACE"), (0x200, "EXCL"), (0x400, "CREATE"), (0x800, "APPEND"))
_FLAG_ACK = ((0x100, "CAPPED"), (0x200, "ACK_TLVS"))


def flag_names(mtype: int, flags: int) -> str:
    """``nlmsg_flags`` as ``REQUEST|ACK|CREATE|EXCL`` (the high bits' meaning depends on the
    message: CAPPED/ACK_TLVS on errors, DUMP on dump requests, else the NEW modifiers)."""
    if mtype == NLMSG_ERROR:
        high = _FLAG_ACK
    elif flags & 0x301 == 0x301:
        high = _FLAG_GET
    else:
        high = _FLAG_NEW
    names, rest = [], flags
    for bit, name in _FLAG_LOW + high:
        if flags & bit:
            names.append(name)
            rest &= ~bit
    if flags & 0x300 == 0x300 and high is _FLAG_GET:
        names = [n for n in names if n not in ("ROOT", "MATCH")] + ["DUMP"]
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


def type_name(mtype: int) -> str:
    spec = message_spec(mtype)
    if spec:
        return spec[0]
    if mtype < NLMSG_MIN_TYPE:
        return {1: "NLMSG_NOOP", 2: "NLMSG_ERROR", 3: "NLMSG_DONE", 4: "NLMSG_OVERRUN"}.get(
            mtype, f"type {mtype}")
    return f"nfnl subsys {mtype >> 8} msg {mtype & 0xFF}"


def _family(f: int) -> str:
    try:
        return _real_socket.AddressFamily(f).name
    except ValueError:
        return str(f)


def _value(v: Any) -> str:
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex() if v else "b''"
    if isinstance(v, str):
        return repr(v)
    return str(v)


def _attr_lines(attrs: AttrList, depth: int) -> list[str]:
    out = []
    pad = "  " * depth
    for a in attrs:
        label = a.name or f"type {a.type} (unknown)"
        nested = isinstance(a.value, AttrList)
        odd = a.flags != (0x8000 if nested else 0)
        flags = f" [nla flags {a.flags:#06x}]" if odd else ""
        if nested:
            out.append(f"{pad}{label}{flags}")
            out += _attr_lines(a.value, depth + 1)
        else:
            out.append(f"{pad}{label} = {_value(a.value)}{flags}")
    return out


def describe_message(buf: bytes, off: int = 0) -> list[str]:
    """Human-readable lines for one message (seq and portid left out on purpose)."""
    ensure_schemas()
    try:
        m = decode_message(buf, off)
    except NetlinkDecodeError as e:
        return [f"undecodable message ({e}): {bytes(buf[off:]).hex()}"]
    head = f"{type_name(m.type)} flags={flag_names(m.type, m.flags)}"
    if m.error is not None:
        e = m.error
        what = "ACK" if e.errno == 0 else f"errno {e.errno} ({_errno.errorcode.get(e.errno, '?')})"
        head = f"NLMSG_ERROR {what} flags={flag_names(m.type, m.flags)}"
        head += f" for {type_name(e.request_header[1])} flags={flag_names(e.request_header[1], e.request_header[2])}"
        lines = [head] + _attr_lines(e.ext_ack, 1)
        return lines
    if m.family is not None:
        head += f" family={_family(m.family)} version={m.version} res_id={m.res_id}"
        return [head] + _attr_lines(m.attrs or AttrList(), 1)
    body = m.raw[16:]
    if body:
        head += " payload=" + body.hex()
    return [head]


def describe(datagram: bytes) -> list[str]:
    """Human-readable lines for every message of a datagram."""
    try:
        offsets = [off for off, *_ in iter_messages(datagram)]
    except NetlinkDecodeError as e:
        return [f"undecodable datagram ({e}): {datagram.hex()}"]
    return [line for off in offsets for line in describe_message(datagram, off)]


def _attrs_key(attrs: AttrList, ordered: bool) -> tuple:
    items = [(a.type, a.flags,
              _attrs_key(a.value, ordered) if isinstance(a.value, AttrList) else a.value)
             for a in attrs]
    if not ordered:
        items.sort(key=lambda t: (t[0], repr(t)))
    return tuple(items)


def message_key(buf: bytes, off: int = 0, *, ordered: bool = True) -> tuple:
    """What makes two messages "the same": everything but seq, portid and padding
    (``ordered=False`` also ignores the order of attributes)."""
    ensure_schemas()
    try:
        m = decode_message(buf, off)
    except NetlinkDecodeError:
        ln = NLMSGHDR.unpack_from(buf, off)[0] if len(buf) - off >= 16 else len(buf) - off
        return ("raw", bytes(buf[off + 4:off + 8]), bytes(buf[off + 16:off + ln]))
    if m.error is not None:
        e = m.error
        echoed = message_key(e.request, ordered=ordered) if len(e.request) > 16 else ()
        return (m.type, m.flags, e.errno, e.request_header[1], e.request_header[2], echoed,
                _attrs_key(e.ext_ack, ordered))
    if m.family is not None:
        return (m.type, m.flags, m.family, m.version, m.res_id,
                _attrs_key(m.attrs or AttrList(), ordered))
    return (m.type, m.flags, m.raw[16:])


def datagram_key(datagram: bytes, *, ordered: bool = True) -> tuple:
    try:
        offsets = [off for off, *_ in iter_messages(datagram)]
    except NetlinkDecodeError:
        return ("raw datagram", datagram)
    return tuple(message_key(datagram, off, ordered=ordered) for off in offsets)


def _flat(packets: Iterable[Packet], ordered: bool) -> tuple[list[tuple], list[str]]:
    keys, lines = [], []
    for p in packets:
        arrow = ">" if p.direction == SENT else "<"
        try:
            offsets = [off for off, *_ in iter_messages(p.data)]
        except NetlinkDecodeError:
            keys.append((p.direction, "raw", p.data))
            lines += [f"{arrow} {line}" for line in describe(p.data)]
            continue
        for off in offsets:
            keys.append((p.direction, p.family, message_key(p.data, off, ordered=ordered)))
            msg = describe_message(p.data, off)
            lines += [f"{arrow} {msg[0]}"] + [f"  {line}" for line in msg[1:]]
    return keys, lines


def conversation_diff(a: Recording, b: Recording, *, ordered_attrs: bool = True,
                      requests_only: bool = False) -> str:
    """An empty string if the conversations are equivalent, else a unified diff of them decoded.

    Equivalent means the same messages in the same directions and order, ignoring seq, portid,
    timestamps, padding and how messages were packed into datagrams (``ordered_attrs=False``
    also ignores attribute order; ``requests_only`` compares only what was sent).
    """
    pa, pb = load(a), load(b)
    if requests_only:
        pa = [p for p in pa if p.direction == SENT]
        pb = [p for p in pb if p.direction == SENT]
    ka, la = _flat(pa, ordered_attrs)
    kb, lb = _flat(pb, ordered_attrs)
    if ka == kb:
        return ""
    diff = list(difflib.unified_diff(la, lb, "first", "second", lineterm="", n=4))
    if not diff:  # differences that the description does not show (e.g. attribute order)
        diff = ["(the decoded texts are equal; the messages differ in attribute order or "
                "raw bytes)"]
    return "\n".join(diff)


# --- the replay --------------------------------------------------------------------------------

@dataclass
class Exchange:
    """One recorded request datagram and the replies that followed it."""

    index: int
    family: int
    request: bytes
    replies: list[bytes] = field(default_factory=list)
    used: bool = False
    portid: int | None = None  # of the recorded socket, learnt from the replies
    open: bool = True  # still waiting for replies (see Replay._owner)
    _key: tuple | None = None
    _dump: bool | None = None

    def see_reply(self, data: bytes) -> None:
        headers = _safe_headers(data)
        if self.portid is None:
            self.portid = next((pid for *_, pid in headers if pid), None)
        if self._dump is None:
            self._dump = any(f & NLM_F_DUMP == NLM_F_DUMP for *_, f, _, _ in
                             _safe_headers(self.request))
        if not self._dump or any(t in (NLMSG_DONE, NLMSG_ERROR) for _, _, t, *_ in headers):
            self.open = False

    def key(self) -> tuple:
        if self._key is None:
            self._key = datagram_key(self.request, ordered=False)
        return self._key

    def seqs(self) -> list[int]:
        try:
            return [seq for *_, seq, _ in iter_messages(self.request)]
        except NetlinkDecodeError:
            return []


def _is_event(data: bytes, request_seqs: list[int]) -> bool:
    try:
        msgs = list(iter_messages(data))
    except NetlinkDecodeError:
        return False
    return bool(msgs) and all(seq == 0 and pid == 0 and t not in (NLMSG_ERROR, NLMSG_DONE)
                              for _, _, t, _, seq, pid in msgs) and any(request_seqs)


class Replay:
    """A recorded conversation served to replay sockets (see the module docstring).

    ``strict=True`` requires requests in recorded order (each must match the next unused
    exchange); otherwise the first unused matching exchange answers. ``exhausted`` is the
    exception (class or instance) a blocking ``recv`` raises when nothing is left to serve.
    ``complete_acks`` adds the ACK the kernel sends for an ``NLM_F_ACK`` request when the
    recorded program did not read it (libnetfilter_conntrack stops reading after the data),
    and the NLMSG_DONE of a dump it stopped reading. :meth:`equivalent` and
    :meth:`replies_for` let a subclass answer requests that differ from the recorded ones.
    ``sent`` lists every datagram sent to the replay, ``played`` the conversation as played.
    """

    def __init__(self, recording: Recording, *, strict: bool = False,
                 exhausted: type[BaseException] | BaseException = ReplayExhausted,
                 complete_acks: bool = True) -> None:
        ensure_schemas()
        self.strict = strict
        self.exhausted = exhausted
        self.exchanges: list[Exchange] = []
        self.events: list[Packet] = []
        self.sent: list[bytes] = []
        self.played: list[Packet] = []
        self._lock = threading.RLock()
        self._portids: list[int] = []
        for p in load(recording):
            if p.direction == SENT:
                self.exchanges.append(Exchange(len(self.exchanges), p.family, p.data))
                continue
            ex = self._owner(p)
            if ex is None or _is_event(p.data, ex.seqs()):
                self.events.append(p)
            else:
                ex.replies.append(p.data)
                ex.see_reply(p.data)
                if not self._portids:
                    self._portids = [pid for *_, pid in _safe_headers(p.data) if pid][:1]
        if complete_acks:
            for ex in self.exchanges:
                ex.replies += _missing_acks(ex)
        self._next_portid = 0x7E000000 + os.getpid() % 0x10000 * 16

    def _owner(self, p: Packet) -> Exchange | None:
        """The exchange a received datagram answers. A program may talk on several sockets
        at once (the reference ``conntrack -D`` deletes on a second socket while its dump is
        still running), so replies go to the latest still open exchange of the socket they
        are addressed to (``nlmsg_pid``), or else to the latest open one whose socket is not
        known yet; a dump stays open until its DONE or error, any other request until its
        first reply; failing that, the latest exchange of that socket, or simply the latest."""
        pool = [ex for ex in reversed(self.exchanges) if ex.family == p.family]
        if not pool:
            return None
        headers = _safe_headers(p.data)
        pids = {pid for *_, pid in headers if pid}
        seqs = {seq for *_, seq, _ in headers}
        if seqs - {0}:
            pool = [ex for ex in pool if seqs & set(ex.seqs())] or pool
        for good in (lambda ex: ex.open and ex.portid in pids,
                     lambda ex: ex.open and ex.portid is None,
                     lambda ex: ex.portid in pids):
            ex = next((ex for ex in pool if good(ex)), None)
            if ex is not None:
                return ex
        return pool[0]

    @property
    def unused(self) -> list[Exchange]:
        return [ex for ex in self.exchanges if not ex.used]

    def assert_complete(self) -> None:
        """Raise :class:`ReplayMismatch` if some recorded requests were never sent."""
        if self.unused:
            text = "\n".join(f"  #{ex.index}: {line}" for ex in self.unused for line in describe(ex.request))
            raise ReplayMismatch(f"{len(self.unused)} recorded request(s) were never sent:\n{text}")

    def socket(self, protocol: int = NETLINK_NETFILTER, groups: int = 0, **kw: Any) -> "ReplaySocket":
        """A :class:`ReplaySocket` on this replay (keywords as for ``NetlinkSocket``)."""
        return ReplaySocket(self, protocol, groups, **kw)

    def raw_socket(self, protocol: int = NETLINK_NETFILTER) -> "FakeKernelSocket":
        """The fake ``socket.socket`` end that :class:`NetlinkSocket` drives."""
        with self._lock:
            if self._portids:
                portid = self._portids.pop()
            else:
                portid = self._next_portid
                self._next_portid += 1
        return FakeKernelSocket(self, protocol, portid)

    # called by FakeKernelSocket
    def _on_send(self, sock: "FakeKernelSocket", data: bytes) -> None:
        with self._lock:
            self.sent.append(data)
            self.played.append(Packet(len(self.played), SENT, sock.protocol, data))
            key = datagram_key(data, ordered=False)
            candidates = [ex for ex in self.exchanges if ex.family == sock.protocol and not ex.used]
            if self.strict:
                candidates = candidates[:1]
            match = self._find(data, key, candidates, ())
            if match is not None:
                self._serve(sock, match, data)
                return
            # a batch (many requests in one datagram) replays a recording of one request
            # per datagram: each message must match an exchange of its own
            parts = [data[off:off + ln] for off, ln, *_ in _safe_headers(data)]
            matches: list[Exchange] = []
            for part in parts if len(parts) > 1 else ():
                ex = self._find(part, datagram_key(part, ordered=False), candidates, matches)
                if ex is None:
                    break
                matches.append(ex)
            if not parts or len(matches) != len(parts):
                raise ReplayMismatch(self._mismatch(data, sock.protocol))
            for ex, part in zip(matches, parts):
                self._serve(sock, ex, part)

    def _find(self, data: bytes, key: tuple, candidates: list[Exchange],
              taken: Iterable[Exchange]) -> Exchange | None:
        exact = next((ex for ex in candidates if ex.key() == key and ex not in taken), None)
        if exact is not None:
            return exact
        return next((ex for ex in candidates
                     if ex not in taken and self.equivalent(data, ex)), None)

    def equivalent(self, request: bytes, exchange: Exchange) -> bool:
        """Whether a sent request that differs from the recorded ``exchange.request`` may be
        answered by its replies anyway. The base class says no; subclasses replaying one
        program's recording for another (known, documented differences) say yes where it
        is safe, and may adapt the answer in :meth:`replies_for`."""
        return False

    def replies_for(self, exchange: Exchange, request: bytes) -> list[bytes]:
        """The recorded replies served for ``request`` (by default all, unchanged)."""
        return exchange.replies

    def _serve(self, sock: "FakeKernelSocket", match: Exchange, data: bytes) -> None:
        """Queue the recorded replies of ``match`` for the request ``data`` on ``sock``."""
        match.used = True
        new = {}
        try:
            ours = [(seq, pid) for *_, seq, pid in iter_messages(data)]
        except NetlinkDecodeError:
            ours = []
        for old, (seq, pid) in zip(match.seqs(), ours):
            new[old] = (seq, pid)
        for reply in self.replies_for(match, data):
            sock._enqueue(_rewrite(reply, new, sock.portid))

    def _on_recv(self, sock: "FakeKernelSocket", data: bytes) -> None:
        self.played.append(Packet(len(self.played), RECEIVED, sock.protocol, data))

    def _exhausted(self, sock: "FakeKernelSocket") -> BaseException:
        if isinstance(self.exhausted, BaseException):
            return self.exhausted
        left = len([ex for ex in self.unused if ex.family == sock.protocol])
        return self.exhausted(
            f"nfnl.replay: socket {sock.portid} waits for a datagram, but the recording holds no "
            f"more for it ({left} recorded request(s) not yet sent)")

    def _mismatch(self, data: bytes, protocol: int) -> str:
        mine = describe(data)
        out = ["nfnl.replay: the recording has no " + ("next " if self.strict else "unused ")
               + "exchange answering this request", "sent:"]
        out += ["  " + line for line in mine]
        pool = [ex for ex in self.exchanges if ex.family == protocol]
        if self.strict and self.unused:
            nxt = next((ex for ex in self.unused if ex.family == protocol), None)
            pool = [nxt] if nxt else []
        if not pool:
            out.append("the recording holds no (more) requests on this protocol")
            return "\n".join(out)

        def score(ex: Exchange) -> float:
            return difflib.SequenceMatcher(None, describe(ex.request), mine).ratio()

        best = sorted(pool, key=lambda ex: (-score(ex), ex.used, ex.index))[:3]
        out.append("expected (next recorded request):" if self.strict else "closest recorded requests:")
        for ex in best:
            state = "already used" if ex.used else "unused"
            out.append(f"  recorded request #{ex.index} ({state}):")
            diff = difflib.unified_diff(describe(ex.request), mine, f"recorded #{ex.index}", "sent",
                                        lineterm="", n=2)
            out += ["    " + line for line in diff] or ["    (identical text)"]
        return "\n".join(out)


def _missing_acks(ex: Exchange) -> list[bytes]:
    """ACKs (capped NLMSG_ERROR 0) for the exchange's non-dump ``NLM_F_ACK`` requests that
    have no NLMSG_ERROR among the recorded replies, and NLMSG_DONE for dumps whose end the
    recorded program never read (the reference ``conntrack -U`` exits on an error in the
    middle of its dump): what the kernel had sent without anyone reading it."""
    answered = {seq for reply in ex.replies for _, _, t, _, seq, _ in _safe_headers(reply)
                if t == NLMSG_ERROR}
    ended = {seq for reply in ex.replies for _, _, t, _, seq, _ in _safe_headers(reply)
             if t in (NLMSG_ERROR, NLMSG_DONE)}
    out = []
    for off, _, mtype, flags, seq, pid in _safe_headers(ex.request):
        if flags & NLM_F_DUMP == NLM_F_DUMP and ex.replies and seq not in ended:
            out.append(NLMSGHDR.pack(20, NLMSG_DONE, 0x2, seq, 1) + struct.pack("=i", 0))
        if flags & NLM_F_ACK and flags & NLM_F_DUMP != NLM_F_DUMP and seq not in answered:
            echo = ex.request[off:off + 16]
            # pid 1: any non-zero pid is rewritten to the replaying socket's portid
            out.append(NLMSGHDR.pack(36, NLMSG_ERROR, NLM_F_CAPPED, seq, 1)
                       + struct.pack("=i", 0) + echo)
    return out


def _safe_headers(data: bytes) -> list[tuple[int, int, int, int, int, int]]:
    try:
        return list(iter_messages(data))
    except NetlinkDecodeError:
        return []


def _rewrite(data: bytes, seqs: dict[int, tuple[int, int]], portid: int) -> bytes:
    """A recorded reply with its seq numbers (also those echoed in NLMSG_ERROR) and portid
    rewritten for the new request."""
    out = bytearray(data)
    for off, ln, mtype, _, seq, pid in _safe_headers(data):
        if seq in seqs:
            struct.pack_into("=I", out, off + 8, seqs[seq][0])
        if pid:
            struct.pack_into("=I", out, off + 12, portid)
        if mtype == NLMSG_ERROR and ln >= 36:
            eseq, _ = _SEQ_PID.unpack_from(data, off + 28)
            if eseq in seqs:
                _SEQ_PID.pack_into(out, off + 28, *seqs[eseq])
    return bytes(out)


class FakeKernelSocket:
    """The subset of ``socket.socket`` that :class:`NetlinkSocket` uses, answered by a replay.

    ``fileno()`` is the read end of a pipe holding one byte while datagrams are queued, so
    selectors and asyncio readers work. Binding or joining a multicast group queues the
    recording's events (once per socket).
    """

    def __init__(self, replay: Replay, protocol: int, portid: int) -> None:
        self.replay = replay
        self.protocol = protocol
        self.portid = portid
        self.groups = 0
        self._queue: collections.deque[bytes] = collections.deque()
        self._rfd, self._wfd = os.pipe()
        os.set_blocking(self._rfd, False)
        self._timeout: float | None = None
        self._rcvbuf = 212992
        self._events_served = False
        self._closed = False

    # queueing
    def _enqueue(self, data: bytes) -> None:
        if not self._queue:
            os.write(self._wfd, b"x")
        self._queue.append(data)

    def _subscribe(self) -> None:
        if not self._events_served:
            self._events_served = True
            for ev in self.replay.events:
                if ev.family == self.protocol:
                    self._enqueue(ev.data)

    # the socket.socket interface
    def bind(self, address: tuple[int, int]) -> None:
        pid, groups = address
        if pid:
            self.portid = pid
        self.groups = groups
        if groups:
            self._subscribe()

    def getsockname(self) -> tuple[int, int]:
        return (self.portid, self.groups)

    def setsockopt(self, level: int, option: int, value: Any, *rest: Any) -> None:
        if level == SOL_NETLINK and option == NETLINK_ADD_MEMBERSHIP:
            self.groups |= 1 << (int(value) - 1)
            self._subscribe()
        elif level == SOL_NETLINK and option == NETLINK_DROP_MEMBERSHIP:
            self.groups &= ~(1 << (int(value) - 1))
        elif level == _real_socket.SOL_SOCKET and option in (_real_socket.SO_RCVBUF, 33):
            self._rcvbuf = 2 * int(value)

    def getsockopt(self, level: int, option: int, buflen: int | None = None) -> int:
        if level == _real_socket.SOL_SOCKET and option == _real_socket.SO_RCVBUF:
            return self._rcvbuf
        return 0

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def settimeout(self, value: float | None) -> None:
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def fileno(self) -> int:
        return -1 if self._closed else self._rfd

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._rfd)
            os.close(self._wfd)

    def sendto(self, data: bytes, *args: Any) -> int:
        if self._closed:
            raise OSError(_errno.EBADF, os.strerror(_errno.EBADF))
        self.replay._on_send(self, bytes(data))
        return len(data)

    def send(self, data: bytes, flags: int = 0) -> int:
        return self.sendto(data)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self._closed:
            raise OSError(_errno.EBADF, os.strerror(_errno.EBADF))
        with self.replay._lock:
            if not self._queue:
                if self._timeout == 0.0:
                    raise BlockingIOError(_errno.EAGAIN, "no replayed datagram queued")
                raise self.replay._exhausted(self)
            data = self._queue.popleft()
            if not self._queue:
                os.read(self._rfd, 1)
            self.replay._on_recv(self, data)
        return data[:bufsize]


class ReplaySocket(NetlinkSocket):
    """A :class:`NetlinkSocket` whose kernel is a :class:`Replay` (or a recording to load).

    Usable wherever a ``NetlinkSocket`` is, e.g. ``Conntrack(sock=ReplaySocket("x.pcap"))``;
    ``replay`` is the :class:`Replay` it talks to.
    """

    def __init__(self, replay: Replay | Recording, protocol: int = NETLINK_NETFILTER,
                 groups: int = 0, **kw: Any) -> None:
        self.replay = replay if isinstance(replay, Replay) else Replay(replay)
        raw = self.replay.raw_socket(protocol)
        raw.bind((0, groups))
        kw.pop("sock", None)
        super().__init__(protocol, groups, sock=raw, **kw)  # type: ignore[arg-type]


# --- whole programs on a replay ------------------------------------------------------------------

class _SocketModule:
    """Stands in for the ``socket`` module inside :mod:`nfnl.socket`: AF_NETLINK sockets come
    from the replay, everything else from the real module."""

    def __init__(self, real: Any, replay: Replay) -> None:
        self._real = real
        self.replay = replay

    def socket(self, family: int = -1, type: int = -1, proto: int = -1, fileno: Any = None) -> Any:
        if family == _real_socket.AF_NETLINK and fileno is None:
            return self.replay.raw_socket(NETLINK_NETFILTER if proto == -1 else proto)
        return self._real.socket(family, type, proto, fileno)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def install(recording: Replay | Recording, **kw: Any) -> Replay:
    """Make every :class:`NetlinkSocket` created from now on talk to a replay; returns it.

    Works for code that opens its own sockets (``Conntrack()``): it replaces the ``socket``
    module that :mod:`nfnl.socket` uses, so the sockets are genuine ``NetlinkSocket`` objects.
    Undo with :func:`uninstall` (installs nest). Keywords go to :class:`Replay`.
    """
    from . import socket as nsock

    replay = recording if isinstance(recording, Replay) else Replay(recording, **kw)
    nsock._socket = _SocketModule(nsock._socket, replay)  # type: ignore[attr-defined]
    return replay


def uninstall() -> None:
    """Undo the latest :func:`install`."""
    from . import socket as nsock

    current = nsock._socket  # type: ignore[attr-defined]
    if isinstance(current, _SocketModule):
        nsock._socket = current._real  # type: ignore[attr-defined]


@contextlib.contextmanager
def installed(recording: Replay | Recording, **kw: Any) -> Iterator[Replay]:
    """``with installed("x.pcap") as replay:`` — :func:`install` for the block."""
    replay = install(recording, **kw)
    try:
        yield replay
    finally:
        uninstall()


_env_replay: tuple[str, Replay] | None = None


def env_replay() -> Replay | None:
    """The process-wide replay named by ``NFNL_REPLAY`` (loaded on first use, and anew
    when the variable names another file), or None. Raises ``OSError`` or
    :class:`~nfnl.pcap.PcapError` when the file cannot be read."""
    global _env_replay
    path = os.environ.get("NFNL_REPLAY")
    if not path:
        return None
    if _env_replay is None or _env_replay[0] != path:
        strict = os.environ.get("NFNL_REPLAY_STRICT", "") not in ("", "0")
        _env_replay = (path, Replay(path, strict=strict))
    return _env_replay[1]


def main(argv: list[str] | None = None) -> int:
    """``python -m nfnl.replay FILE.pcap (-m MODULE | SCRIPT) [ARGS...]``: run a program on a replay."""
    import runpy

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or (argv[1] == "-m" and len(argv) < 3):
        print(main.__doc__, file=sys.stderr)
        return 2
    install(argv[0])
    if argv[1] == "-m":
        sys.argv = [argv[2], *argv[3:]]
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv[1:]
        runpy.run_path(argv[1], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
