"""The AF_NETLINK socket layer (stdlib only): it moves bytes, nothing more.

:class:`NetlinkSocket` opens a raw netlink socket (``NETLINK_NETFILTER`` by default),
numbers requests, waits for ACKs, follows dumps across many ``recv`` buffers until
``NLMSG_DONE``, maps ``NLMSG_ERROR`` to :class:`~nfnl.errors.NetlinkError`, joins
multicast groups, sizes the receive buffer, counts ``ENOBUFS`` overruns instead of
dying (and reads the kernel's count of dropped messages), receives a batch of
datagrams in one ``recvmmsg(2)`` (through ``ctypes``, which the ``socket`` module lacks),
works non-blocking for selectors and sends many requests in one datagram.
Every datagram can be recorded to a pcap (``tap=`` or the ``NFNL_PCAP`` environment
variable).
"""
from __future__ import annotations

import errno
import itertools
import os
import socket as _socket
import struct
import time
TYPE_CHECKING = False  # typing is not imported at run time: the CLI must start fast
if TYPE_CHECKING:
    from typing import Callable, Iterable, Iterator

from .constants import (
    NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP, NETLINK_EXT_ACK, NETLINK_NETFILTER,
    NETLINK_NO_ENOBUFS, NLM_F_ACK, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, SO_RCVBUFFORCE, SOL_NETLINK,
)
from .errors import NetlinkError
from .message import NLMSGHDR, DumpReader, iter_messages, parse_error

RECV_SIZE = 1 << 16
"""Receive buffer per ``recv`` call: the kernel caps one dump skb at 32 KiB."""
EVENT_RCVBUF = 128 << 20
"""Socket receive buffer for multicast (event) listeners: room for a burst of 100,000
conntrack events."""

_LEN_TYPE = struct.Struct("=IH")
_ERRNO = struct.Struct("=i")
_SEQ = struct.Struct("=II")
_FLAGS = struct.Struct("=H")
_FLAGS_SEQ = struct.Struct("=HI")
SO_MEMINFO = 55
"""``getsockopt`` returning ``sk_meminfo`` (Linux 4.12+); index 8 is the drop counter."""
_MEMINFO = struct.Struct("=9I")


def _ends_dump(data: bytes) -> bool:
    """Whether a datagram holds the NLMSG_DONE or NLMSG_ERROR ending a dump (a quick
    walk over the message headers; the consumer validates everything)."""
    off = 0
    end = len(data)
    unpack = _LEN_TYPE.unpack_from
    while off + 6 <= end:
        ln, mtype = unpack(data, off)
        if mtype == NLMSG_DONE or mtype == NLMSG_ERROR:
            return True
        if ln < 16:
            return True
        off += (ln + 3) & ~3
    return False


def _ready(sock) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])


def _proc_drops(protocol: int, portid: int) -> int:
    try:
        with open("/proc/net/netlink") as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) >= 9 and parts[1] == str(protocol) and int(parts[2]) == portid:
                    return int(parts[8])
    except (OSError, ValueError, StopIteration):
        pass
    return 0


class _MultiRecv:
    """``recvmmsg(2)`` through ctypes (the socket module has no binding for it): one
    system call for up to ``vlen`` datagrams, each received into its own
    :data:`RECV_SIZE` slot of one buffer and copied out at its length."""

    MSG_WAITFORONE = 0x10000

    def __init__(self, vlen: int) -> None:
        import ctypes

        class iovec(ctypes.Structure):
            _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]

        class msghdr(ctypes.Structure):
            _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                        ("msg_iov", ctypes.c_void_p), ("msg_iovlen", ctypes.c_size_t),
                        ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                        ("msg_flags", ctypes.c_int)]

        class mmsghdr(ctypes.Structure):
            _fields_ = [("msg_hdr", msghdr), ("msg_len", ctypes.c_uint)]

        libc = ctypes.CDLL(None, use_errno=True)
        self._call = libc.recvmmsg
        self._call.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                               ctypes.c_void_p]
        self._call.restype = ctypes.c_int
        self._get_errno = ctypes.get_errno
        self.vlen = vlen
        self._buf = ctypes.create_string_buffer(vlen * RECV_SIZE)
        self._iov = (iovec * vlen)()
        self._msgs = (mmsghdr * vlen)()
        base = ctypes.addressof(self._buf)
        for i in range(vlen):
            self._iov[i].iov_base = base + i * RECV_SIZE
            self._iov[i].iov_len = RECV_SIZE
            self._msgs[i].msg_hdr.msg_iov = ctypes.addressof(self._iov[i])
            self._msgs[i].msg_hdr.msg_iovlen = 1
        self._data = memoryview(self._buf).cast("B")
        words = memoryview(self._msgs).cast("B").cast("I")
        stride = ctypes.sizeof(mmsghdr) // 4
        self._lens = words[mmsghdr.msg_len.offset // 4::stride]
        self._flags = words[msghdr.msg_flags.offset // 4::stride]
        self.errno = 0

    def recv(self, fd: int, count: int, nowait: bool) -> list[bytes] | None:
        """The datagrams received, or None with ``self.errno`` set."""
        n = self._call(fd, self._msgs, min(count, self.vlen),
                       _socket.MSG_DONTWAIT if nowait else self.MSG_WAITFORONE, None)
        if n < 0:
            self.errno = self._get_errno()
            return None
        if any(self._flags[:n].tolist()) and any(f & _socket.MSG_TRUNC for f in self._flags[:n]):
            raise OSError(errno.EMSGSIZE, "netlink datagram larger than the receive buffer")
        data = self._data
        return [data[i * RECV_SIZE:i * RECV_SIZE + ln].tobytes()
                for i, ln in enumerate(self._lens[:n].tolist())]


class Tap:
    """Anything with ``write(data, direction, family=12, ts_ns=None)`` records datagrams
    (``nfnl.pcap.PcapWriter`` fits); this class only documents the interface."""

    def write(self, data: bytes, direction: str, family: int = 12, ts_ns: int | None = None) -> None:
        raise NotImplementedError


_env_tap: tuple[str, Tap] | None = None


def env_tap() -> Tap | None:
    """The process-wide tap named by ``NFNL_PCAP`` (opened on first use, and anew when
    the variable names another file), or None. Raises ``OSError`` when the file cannot
    be written."""
    global _env_tap
    path = os.environ.get("NFNL_PCAP")
    if not path:
        return None
    if _env_tap is None or _env_tap[0] != path:
        from .pcap import PcapWriter

        close_env_tap()
        _env_tap = (path, PcapWriter(path))
    return _env_tap[1]


def close_env_tap() -> None:
    """Close the file of :func:`env_tap` (a later socket opens it again, from scratch)."""
    global _env_tap
    if _env_tap is not None:
        tap, _env_tap = _env_tap[1], None
        tap.close()  # type: ignore[attr-defined]


def _open(protocol: int):
    """A raw netlink socket, or a replayed one when ``NFNL_REPLAY=FILE.pcap`` is set
    (see :mod:`nfnl.fakekernel`: the program then runs on a recorded conversation)."""
    if os.environ.get("NFNL_REPLAY"):
        from .fakekernel import env_replay

        return env_replay().raw_socket(protocol)
    return _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, protocol)


class NetlinkSocket:
    """A bound netlink socket.

    ``groups`` is an ``nl_groups`` bit mask bound at creation (groups 1..32);
    ``rcvbuf`` asks for a receive buffer size (``SO_RCVBUFFORCE`` when allowed, else
    ``SO_RCVBUF``). ``overruns`` counts ``ENOBUFS`` errors seen by :meth:`recv`.
    """

    def __init__(
        self, protocol: int = NETLINK_NETFILTER, groups: int = 0, *, rcvbuf: int | None = None,
        nonblocking: bool = False, no_enobufs: bool = False, ext_ack: bool = False,
        tap: Tap | None = None, sock: _socket.socket | None = None,
    ) -> None:
        self.protocol = protocol
        self._sock = sock or _open(protocol)
        try:
            if sock is None:
                self._sock.bind((0, groups))
            self.portid: int = self._sock.getsockname()[0]
            self.groups = groups
            if rcvbuf:
                self.set_rcvbuf(rcvbuf)
            if no_enobufs:
                self._sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
            if ext_ack:
                try:
                    self._sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
                except OSError:
                    pass
            if nonblocking:
                self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise
        self.tap = tap if tap is not None else env_tap()
        self._seq = itertools.count(int(time.time()) & 0x7FFFFFFF)
        self.overruns = 0
        self._mmsg: _MultiRecv | None | bool = None  # False: recvmmsg unavailable
        self._deferred: Exception | None = None

    # --- lifetime ---------------------------------------------------------------
    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    @property
    def closed(self) -> bool:
        return self._sock.fileno() < 0

    def __enter__(self) -> "NetlinkSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- options ----------------------------------------------------------------
    def set_rcvbuf(self, size: int) -> int:
        """Ask for a receive buffer of ``size`` bytes; returns what the kernel reports
        (normally twice the request)."""
        try:
            self._sock.setsockopt(_socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        except OSError:
            self._sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, size)
        return self.rcvbuf

    @property
    def rcvbuf(self) -> int:
        return self._sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF)

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def settimeout(self, value: float | None) -> None:
        self._sock.settimeout(value)

    def add_membership(self, group: int) -> None:
        """Join multicast group number ``group`` (1-based, e.g. NFNLGRP_CONNTRACK_NEW)."""
        self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)

    def drop_membership(self, group: int) -> None:
        self._sock.setsockopt(SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, group)

    def set_no_enobufs(self, flag: bool = True) -> None:
        self._sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, int(flag))

    # --- bytes in, bytes out ------------------------------------------------------
    def next_seq(self) -> int:
        return next(self._seq) & 0xFFFFFFFF

    def send(self, data: bytes) -> None:
        """Send one datagram (one or more complete messages) to the kernel."""
        if self.tap is not None:
            self.tap.write(data, "sent", self.protocol)
        self._sock.sendto(data, (0, 0))

    def recv(self, bufsize: int = RECV_SIZE, *, nowait: bool = False) -> bytes | None:
        """Receive one datagram. Returns None on ``ENOBUFS`` (counted in ``overruns``)
        and on ``EAGAIN`` for a non-blocking socket; ``nowait`` makes this call
        non-blocking whatever the socket's mode."""
        try:
            if nowait:
                timeout = self._sock.gettimeout()
                if timeout is None:
                    data = self._sock.recv(bufsize, _socket.MSG_DONTWAIT)
                elif timeout > 0 and not _ready(self._sock):
                    return None
                else:
                    data = self._sock.recv(bufsize)
            else:
                data = self._sock.recv(bufsize)
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno == errno.ENOBUFS:
                self.overruns += 1
                return None
            raise
        if self.tap is not None:
            self.tap.write(data, "received", self.protocol)
        return data

    def recv_many(self, count: int = 64, *, nowait: bool = False) -> list[bytes]:
        """Up to ``count`` datagrams: waits for the first (unless ``nowait``, or the socket
        is non-blocking), then takes only what is already queued. Empty on ``EAGAIN`` and
        on ``ENOBUFS`` (counted in ``overruns``: check it after every call, datagrams
        received before the overrun are returned first). A blocking socket receives them
        with one ``recvmmsg(2)``; others (timeouts, replays) with ``recv`` calls."""
        if (self._sock.gettimeout() is None and type(self._sock) is _socket.socket
                and self._mmsg is not False):
            if self._mmsg is None:
                try:
                    self._mmsg = _MultiRecv(64)
                except (ImportError, OSError, AttributeError):  # no ctypes, no recvmmsg
                    self._mmsg = False
                    return self.recv_many(count, nowait=nowait)
            while True:
                out = self._mmsg.recv(self._sock.fileno(), count, nowait)
                if out is not None:
                    break
                err = self._mmsg.errno
                if err == errno.EINTR:
                    continue  # a signal handler (run by the loop's next turn) may raise
                if err == errno.EAGAIN:
                    return []
                if err == errno.ENOBUFS:
                    self.overruns += 1
                    return []
                raise OSError(err, os.strerror(err))
            if self.tap is not None:
                for data in out:
                    self.tap.write(data, "received", self.protocol)
            return out
        if self._deferred is not None:
            exc, self._deferred = self._deferred, None
            raise exc
        out = []
        before = self.overruns
        data = self.recv(nowait=nowait)
        while data is not None:
            out.append(data)
            if len(out) >= count or self.overruns != before:
                break
            try:
                data = self.recv(nowait=True)
            except Exception as e:  # raised by the next call: what was received comes first
                self._deferred = e
                break
        return out

    @property
    def drops(self) -> int:
        """The kernel's count of messages dropped for this socket (``sk_drops``: the
        multicast messages lost to overruns), from ``SO_MEMINFO`` or, where that is not
        available, the Drops column of ``/proc/net/netlink``."""
        try:
            info = self._sock.getsockopt(_socket.SOL_SOCKET, SO_MEMINFO, _MEMINFO.size)
            if isinstance(info, bytes) and len(info) >= _MEMINFO.size:
                return _MEMINFO.unpack_from(info)[8]
        except OSError:
            pass
        return _proc_drops(self.protocol, self.portid)

    # --- request/response ------------------------------------------------------------
    def request(self, msg: bytes, *, on_data: Callable[[bytes, int, int], None] | None = None) -> None:
        """Send one request and process replies until its ACK/error (or DONE).

        ``msg`` must carry ``NLM_F_ACK`` unless it is a dump; its sequence number is
        used to match replies. Data messages go to ``on_data(buf, off, len)``. A kernel
        error raises :class:`NetlinkError` with the request attached.
        """
        ln, mtype, flags, seq, pid = NLMSGHDR.unpack_from(msg)
        self.send(msg)
        while True:
            buf = self._recv_blocking()
            got_data = False
            for off, mlen, rtype, rflags, rseq, rpid in iter_messages(buf):
                if rseq != seq and rseq != 0:
                    continue
                if rtype == NLMSG_ERROR:
                    err = parse_error(buf, off, mlen, rflags)
                    if err.errno:
                        raise NetlinkError(err.errno, msg, err.message)
                    return
                if rtype == NLMSG_DONE:
                    return
                if rtype in (NLMSG_NOOP, NLMSG_OVERRUN):
                    continue
                got_data = True
                if on_data is not None:
                    on_data(buf, off, mlen)
            if got_data and not (flags & NLM_F_ACK):
                # no ACK asked for: the answer is this datagram (libmnl reads one)
                return

    def dump(self, msg: bytes, *, pipeline: bool = False) -> Iterator[tuple[bytes, int, int]]:
        """Send a dump request; yield (datagram, offset, length) for every data message.

        Raises :class:`NetlinkError` for an error reply and :class:`DumpInterrupted`
        at the end of a dump whose messages carried ``NLM_F_DUMP_INTR``. If the caller
        stops early the rest of the dump is read and dropped, so the socket stays usable.
        With ``pipeline`` a helper thread keeps the kernel producing the next datagrams
        (the kernel fills them inside ``recv``) while the caller decodes the previous
        ones: on a multi-core machine large dumps finish sooner.
        """
        for items in self.dump_batches(msg, pipeline=pipeline):
            yield from items

    def dump_batches(self, msg: bytes, *, pipeline: bool = False) -> Iterator[list[tuple[bytes, int, int]]]:
        """Like :meth:`dump`, one list of (datagram, offset, length) per datagram (the
        fastest way to walk a large dump)."""
        reader = DumpReader(NLMSGHDR.unpack_from(msg)[3], msg)
        self.send(msg)
        if pipeline and self._sock.gettimeout() != 0.0:
            yield from self._dump_pipelined(reader)
            return
        try:
            while not reader.done:
                items = reader.feed(self._recv_blocking())
                if items:
                    yield items
        finally:
            self._drain(reader)

    def _drain(self, reader: DumpReader) -> None:
        try:
            while not reader.done:
                reader.feed(self._recv_blocking())
        except (NetlinkError, OSError):
            pass

    def _dump_pipelined(self, reader: DumpReader) -> Iterator[list[tuple[bytes, int, int]]]:
        """The reader thread only receives (the kernel builds each datagram inside
        ``recv``, with the GIL released); parsing stays in the caller's thread. The
        interpreter's switch interval is lowered meanwhile so that the reader gets the
        GIL back within a fraction of a millisecond and the kernel never waits long."""
        import queue
        import sys
        import threading

        q: queue.SimpleQueue = queue.SimpleQueue()
        stop = threading.Event()
        sock = self._sock
        tap = self.tap
        proto = self.protocol

        def produce() -> None:
            try:
                while not stop.is_set():
                    data = sock.recv(RECV_SIZE)
                    if tap is not None:
                        tap.write(data, "received", proto)
                    q.put(data)
                    if _ends_dump(data):
                        break
            except BaseException as e:  # handed to the consumer
                q.put(e)

        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, 0.0002))
        t = threading.Thread(target=produce, name="nfnl-dump", daemon=True)
        t.start()
        try:
            while not reader.done:
                data = q.get()
                if isinstance(data, BaseException):
                    if isinstance(data, OSError) and data.errno == errno.ENOBUFS:
                        self.overruns += 1
                        raise NetlinkError(errno.ENOBUFS)
                    raise data
                items = reader.feed(data)
                if items:
                    yield items
        finally:
            stop.set()
            t.join()
            sys.setswitchinterval(interval)
            # an abandoned dump: what the reader thread queued is read first, then the
            # rest (if the thread stopped before the end) from the socket
            try:
                while not reader.done:
                    data = q.get_nowait()
                    if isinstance(data, BaseException):
                        break
                    reader.feed(data)
            except (queue.Empty, NetlinkError):
                pass
            if not reader.done:
                self._drain(reader)

    def batch(self, msgs: Iterable[bytes], *, max_bytes: int = 1 << 16, max_msgs: int = 128,
              on_data: Callable[[bytes, int, int], None] | None = None,
              ack_last: bool = False) -> list[NetlinkError | None]:
        """Send many requests, packed into as few datagrams as fit in ``max_bytes``,
        and collect one result per message (None = success), in order.

        Messages get consecutive sequence numbers (the sequence field of the messages
        given is overwritten). Errors do not stop the batch: the caller decides what a
        failure means. Every ACK occupies receive buffer space until it is read, so at
        most ``max_msgs`` requests are in flight. With ``ack_last`` only the last
        message of each datagram asks for an ACK: the kernel reports errors of the
        others anyway, and answers in order, so that ACK ends the datagram's replies
        (one receive per datagram instead of one per message).
        """
        results: list[NetlinkError | None] = []
        chunk: list[bytes] = []
        size = 0
        errno_at = _ERRNO.unpack_from
        pack_into = _FLAGS_SEQ.pack_into
        flags_at = _FLAGS.unpack_from

        def flush() -> None:
            nonlocal chunk, size
            if not chunk:
                return
            data = bytearray(b"".join(chunk))
            first = len(results) - len(chunk)
            base = self.next_seq()
            for _ in range(len(chunk) - 1):
                self.next_seq()
            seqs: dict[int, tuple[int, int]] = {}  # seq -> (result index, offset)
            off = 0
            last = len(chunk) - 1
            for k, m in enumerate(chunk):
                (fl,) = flags_at(m, 6)
                if ack_last and k != last:
                    fl &= ~NLM_F_ACK  # its errors are reported all the same
                seq = (base + k) & 0xFFFFFFFF
                pack_into(data, off + 6, fl, seq)
                seqs[seq] = (first + k, off)
                off += len(m)
            awaited = {(base + k) & 0xFFFFFFFF for k in range(len(chunk))
                       if not ack_last or k == last}
            self.send(bytes(data))
            chunk = []
            size = 0
            while awaited:
                buf = self._recv_blocking()
                for roff, mlen, rtype, rflags, rseq, _ in iter_messages(buf):
                    hit = seqs.get(rseq)
                    if hit is None:
                        continue
                    if rtype == NLMSG_ERROR:
                        if mlen >= 20 and errno_at(buf, roff + 16)[0]:
                            err = parse_error(buf, roff, mlen, rflags)
                            idx, moff = hit
                            request = bytes(data[moff:moff + len(msgs_list[idx])])
                            results[idx] = NetlinkError(err.errno, request, err.message)
                        awaited.discard(rseq)
                    elif rtype == NLMSG_DONE:
                        awaited.discard(rseq)
                    elif on_data is not None:
                        on_data(buf, roff, mlen)

        msgs_list = msgs if isinstance(msgs, list) else list(msgs)
        for m in msgs_list:
            ln = len(m)
            if size + ln > max_bytes or len(chunk) >= max_msgs:
                flush()
            results.append(None)
            chunk.append(m)
            size += ln
        flush()
        return results

    def _recv_blocking(self) -> bytes:
        before = self.overruns
        data = self.recv()
        if data is not None:
            return data
        if self.overruns != before:
            # replies were dropped: waiting for them could hang forever
            raise NetlinkError(errno.ENOBUFS)
        raise BlockingIOError(errno.EAGAIN, "netlink socket would block")
