"""The kernel end of replayed netlink sockets: a recorded conversation answering requests.

A :class:`FakeKernel` splits a recording (see :mod:`nfnl.conversation`) into *exchanges* —
one sent datagram and the datagrams received after it until the next send — plus *events*,
received datagrams that answer no request (``seq`` 0, or before the first send), which are
served to sockets bound to multicast groups. When code sends a datagram, the first unused
exchange whose request is the same (message types, flags, nfgenmsg and the attributes
decoded with the registered schema, in any order; seq, portid and padding ignored) is
consumed and its replies are queued with seq/portid rewritten to the new request and
socket; a request that matches nothing raises :class:`ReplayMismatch`, showing the request
decoded and the closest recorded ones. :meth:`FakeKernel.raw_socket` gives the
``socket.socket`` stand-in (:class:`FakeKernelSocket`) a :class:`nfnl.socket.NetlinkSocket`
drives; ``fileno()`` is a pipe that is readable while replies are queued. With
``NFNL_REPLAY=FILE.pcap`` every ``NetlinkSocket`` a program opens talks to the process-wide
:func:`env_replay`. This module sits below :mod:`nfnl.socket`; :mod:`nfnl.replay` builds the
user-facing API (``Replay``, ``ReplaySocket``, ``install``) on it.
"""
from __future__ import annotations

import collections
import difflib
import errno as _errno
import os
import socket as _real_socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable

from .constants import (
    NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP, NETLINK_NETFILTER, NLM_F_ACK, NLM_F_CAPPED,
    NLM_F_DUMP, NLMSG_DONE, NLMSG_ERROR, SOL_NETLINK,
)
from .conversation import Recording, datagram_key, describe, load
from .errors import NetlinkDecodeError
from .message import NLMSGHDR, iter_messages
from .pcap import RECEIVED, SENT, Packet

_SEQ_PID = struct.Struct("=II")


class ReplayMismatch(AssertionError):
    """The code sent a request that the recording does not answer (the conversation diverged)."""


class ReplayExhausted(EOFError):
    """A blocking ``recv`` found nothing to serve: the recording holds no more for this socket."""


@dataclass
class Exchange:
    """One recorded request datagram and the replies that followed it."""

    index: int
    family: int
    request: bytes
    replies: list[bytes] = field(default_factory=list)
    used: bool = False
    portid: int | None = None  # of the recorded socket, learnt from the replies
    open: bool = True  # still waiting for replies (see FakeKernel._owner)
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


class FakeKernel:
    """A recorded conversation served to the sockets a program opens (see the module
    docstring); :class:`nfnl.replay.Replay` adds NetlinkSockets on top.

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

    def __init__(self, replay: FakeKernel, protocol: int, portid: int) -> None:
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


_env_replay: tuple[str, FakeKernel] | None = None


def env_replay() -> FakeKernel | None:
    """The process-wide replay named by ``NFNL_REPLAY`` (loaded on first use, and anew
    when the variable names another file), or None. Raises ``OSError`` or
    :class:`~nfnl.pcap.PcapError` when the file cannot be read."""
    global _env_replay
    path = os.environ.get("NFNL_REPLAY")
    if not path:
        return None
    if _env_replay is None or _env_replay[0] != path:
        strict = os.environ.get("NFNL_REPLAY_STRICT", "") not in ("", "0")
        _env_replay = (path, FakeKernel(path, strict=strict))
    return _env_replay[1]
