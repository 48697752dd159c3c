"""What every transport shares: counters, the channel buffer and the receive loop.

A :class:`Channel` is one dedicated link of the ``Sync`` section (spec §5.2). It only
moves bytes: :meth:`Channel.send` appends whole sync messages (or datagrams of them) to
the channel buffer of ``MTU - 28`` bytes (``MTU - 40`` for TCP), which leaves as one
datagram when the next message would not fit (strictly: ``used + len < size``) and at
:meth:`Channel.flush`, exactly as the C daemon's ``channel_send``/``channel_flush``
(§5.2.4). Received datagrams (TCP: chunks of complete messages) go to the ``deliver``
callback, at most ``EventIterationLimit`` reads per wake-up (§5.2.5). The counters are
the reference's (``-s``, ``-s link``): bytes and packets per ``send``/``recv`` call,
send errors, receive errors except ``EAGAIN``. Nothing here ever raises into the loop.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

SO_NO_CHECK = 11
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
SIOCGIFMTU = 0x8921
RECV_SIZE = 65536
"""The C receive buffer (``char __net[65536]``): one read never returns more."""

NETHDR_SIZ = 8
NETHDR_ACK_SIZ = 16
NET_T_CTL = 10
NET_F_RANGE = 0x02 | 0x04 | 0x08
"""RESYNC, NACK, ACK: the control messages with the 16-byte header (spec §5.3)."""

_LEN = struct.Struct(">H")


class ChannelError(Exception):
    """A channel could not be opened; ``str()`` is the reference's log line."""


class ChannelStats:
    """One channel's figures (spec §7.4, §7.7): the sender's and the receiver's."""

    __slots__ = ("bytes_sent", "bytes_recv", "packets_sent", "packets_recv",
                 "errors_send", "errors_recv")

    def __init__(self) -> None:
        self.bytes_sent = self.bytes_recv = 0
        self.packets_sent = self.packets_recv = 0
        self.errors_send = self.errors_recv = 0

    def counters(self) -> tuple[int, int, int, int, int, int]:
        """(bytes sent, bytes recv, packets sent, packets recv, errors send, errors
        recv): the order :func:`~conntrack_tools.conntrackd.output.channel_block` prints."""
        return (self.bytes_sent, self.bytes_recv, self.packets_sent, self.packets_recv,
                self.errors_send, self.errors_recv)

    def as_dict(self) -> dict[str, int]:
        return {n: getattr(self, n) for n in self.__slots__}


def interface_mtu(name: str) -> int:
    """``SIOCGIFMTU`` of ``name`` on an AF_INET datagram socket, as the C daemon reads it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16si20x", name.encode()[:15], 0)
        out = fcntl.ioctl(s.fileno(), SIOCGIFMTU, ifr)
    return struct.unpack_from("i", out, 16)[0]


def set_buffers(sock: socket.socket, sndbuf: int = 0, rcvbuf: int = 0) -> int:
    """``SO_SNDBUFFORCE``/``SO_RCVBUFFORCE`` when configured; the size the kernel then
    reports (the reference reads it back the same way)."""
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, sndbuf)
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return 0


def message_length(data: bytes | bytearray | memoryview, off: int) -> int:
    """The ``len`` field of the sync message header at ``off`` (0 when absent)."""
    if len(data) - off < 4:
        return 0
    return _LEN.unpack_from(data, off + 2)[0]


class ErrorQueue:
    """The C daemon's ``errorq`` (TCP): buffers that could not be sent, re-sent oldest
    first before any new data; at most ``ErrorQueueLength`` entries, the oldest dropped
    (and "not enough space errors" counted) when full (spec §5.2.4, §7.9)."""

    __slots__ = ("items", "maximum", "enospc")

    def __init__(self, maximum: int = 128) -> None:
        from collections import deque

        self.items: Any = deque()
        self.maximum = maximum
        self.enospc = 0

    def __len__(self) -> int:
        return len(self.items)

    def add(self, data: bytes) -> None:
        if len(self.items) >= self.maximum:
            self.enospc += 1
            if not self.items:
                return
            self.items.popleft()
        self.items.append(data)

    def clear(self) -> None:
        self.items.clear()


class Channel:
    """A dedicated link (see the module docstring). Subclasses open the sockets
    (:meth:`_open`), send one buffer (:meth:`_send`, True when it left) and register
    their receive sockets with :meth:`_watch`."""

    transport = ""
    header_size = 28
    """What the MTU loses to the IP and UDP headers (TCP: 40)."""

    def __init__(self, conf: Any, index: int = 0, errorq: ErrorQueue | None = None) -> None:
        self.conf = conf
        self.index = index
        self.interface: str = conf.interface
        self.ifindex = 0
        self.mtu = 0
        self.buffer_size = 0
        self.stats = ChannelStats()
        self.errorq = errorq
        self.loop: Any = None
        self.deliver: Callable[[Channel, bytes], Any] = _ignore
        self.on_error: Callable[[BaseException], Any] | None = None
        self.limit = 100
        self._buf: list[bytes] = []
        self._used = 0
        self._rbuf = bytearray(RECV_SIZE)
        self._rview = memoryview(self._rbuf)
        self._watched: list[socket.socket] = []
        self.make_socket: Callable[..., socket.socket] = socket.socket
        """Creates every socket of the channel (also the TCP client re-created after a
        reset): a test that drives namespaces from one process binds it to one."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.index} {self.interface}>"

    # --- life cycle -----------------------------------------------------------------
    def open(self, loop: Any, deliver: Callable[["Channel", bytes], Any], *,
             iteration_limit: int = 100,
             on_error: Callable[[BaseException], Any] | None = None) -> None:
        """Open the sockets on ``loop``; raises OSError (the reference's reasons: no
        ``Interface`` is ``Success``, an unknown one ``No such device``)."""
        if not self.interface:
            raise OSError(0, os.strerror(0))
        self.mtu = interface_mtu(self.interface)
        self.ifindex = socket.if_nametoindex(self.interface)
        self.buffer_size = self.mtu - self.header_size
        self.loop = loop
        self.deliver = deliver
        self.on_error = on_error
        self.limit = max(1, iteration_limit)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Close every socket (and forget pending output)."""
        for sock in self._watched:
            self._unwatch(sock)
        self._watched = []
        self._buf = []
        self._used = 0

    def _watch(self, sock: socket.socket, callback: Callable[[], Any]) -> None:
        sock.setblocking(False)
        if self.loop is not None:
            self.loop.add_reader(sock, callback)
        self._watched.append(sock)

    def _unwatch(self, sock: socket.socket) -> None:
        if sock.fileno() >= 0:
            if self.loop is not None:
                try:
                    self.loop.remove_reader(sock)
                except (OSError, ValueError, KeyError):
                    pass  # the loop is already closed (shutdown)
            sock.close()
        if sock in self._watched:
            self._watched.remove(sock)

    # --- output -------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Append one or more complete messages to the channel buffer; a buffer that the
        next message would overflow leaves first (C ``channel_send``)."""
        pending = self._handle_errors()
        n = len(data)
        size = self.buffer_size
        if self._used + n < size:
            self._buf.append(data)
            self._used += n
            return
        off = 0
        while off < n:
            rest = n - off
            if self._used + rest < size:
                self._buf.append(data[off:] if off else data)
                self._used += rest
                return
            ln = message_length(data, off)
            if ln < NETHDR_SIZ or ln > rest:
                ln = rest  # not a message boundary we can trust: keep it whole
            if self._used and self._used + ln >= size:
                self._emit(pending)
            piece = data[off:off + ln] if (off or ln != n) else data
            if ln >= size:
                # one message larger than the buffer (the C sender would spin, spec
                # §12.2): it leaves alone
                self._emit_data(piece, pending)
            else:
                self._buf.append(piece)
                self._used += ln
            off += ln

    def flush(self) -> None:
        """Send what the buffer holds (end of a transmit run, C ``channel_flush``)."""
        pending = self._handle_errors()
        if self._buf:
            self._emit(pending)

    @property
    def buffered(self) -> int:
        """Bytes waiting in the channel buffer."""
        return self._used

    def _emit(self, pending: bool) -> None:
        data = self._buf[0] if len(self._buf) == 1 else b"".join(self._buf)
        self._buf = []
        self._used = 0
        self._emit_data(data, pending)

    def _emit_data(self, data: bytes, pending: bool) -> None:
        if pending:
            self._enqueue_error(data)
        elif not self._send(data):
            self._enqueue_error(data)

    def _enqueue_error(self, data: bytes) -> None:
        """Datagram transports drop what failed (counted by :meth:`_send`)."""

    def _handle_errors(self) -> bool:
        """Re-send queued failures first; True while some remain (TCP only)."""
        return False

    def _send(self, data: bytes) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _sendto(self, sock: socket.socket, data: bytes, addr: Any) -> bool:
        """One ``sendto``: counted as the reference counts it (any failure, EAGAIN and
        ENOBUFS included, is one send error)."""
        try:
            n = sock.sendto(data, addr)
        except OSError:
            self.stats.errors_send += 1
            return False
        self.stats.bytes_sent += n
        self.stats.packets_sent += 1
        return True

    # --- input ----------------------------------------------------------------------
    def _read_datagrams(self, sock: socket.socket) -> None:
        """Up to ``EventIterationLimit`` datagrams, each handed to ``deliver``."""
        view = self._rview
        stats = self.stats
        for _ in range(self.limit):
            try:
                n = sock.recv_into(view)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError:
                stats.errors_recv += 1
                return
            stats.bytes_recv += n
            stats.packets_recv += 1
            if not n:
                return  # an empty datagram ends the wake-up, as in the C receiver
            self._hand(bytes(view[:n]))
            if sock.fileno() < 0:
                return  # the consumer closed the channel

    def _hand(self, data: bytes) -> None:
        try:
            self.deliver(self, data)
        except Exception as e:  # noqa: BLE001 - a bad datagram never ends the daemon
            if self.on_error is None:
                raise
            self.on_error(e)

    # --- figures ------------------------------------------------------------------
    def tcp_state(self) -> tuple[str, str]:
        """``server=``/``client=`` words of the TCP channel block."""
        return ("disconnected", "disconnected")


def _ignore(channel: Channel, data: bytes) -> None:
    pass


def sockaddr(family: int, address: str | None, port: int, scope: int = 0) -> tuple:
    """The socket address tuple of ``address`` (the wildcard when None)."""
    if family == socket.AF_INET6:
        return (address or "::", port, 0, scope)
    return (address or "0.0.0.0", port)


def family_of(conf: Any) -> int:
    """The channel's address family; 0 (no address configured) fails like the
    reference's ``socket(0, ...)``."""
    fam = conf.family
    if fam not in (socket.AF_INET, socket.AF_INET6):
        raise OSError(errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT))
    return fam


class DatagramChannel(Channel):
    """What the UDP and multicast channels share (spec §5.2.1-§5.2.2, as 1.4.7's strace):
    an unbound, non-blocking sender with ``SO_NO_CHECK`` (``Checksum off``) and the
    optional ``SO_SNDBUFFORCE``, sending to :attr:`dest`; a non-blocking receiver with
    ``SO_REUSEADDR`` and the optional ``SO_RCVBUFFORCE``, bound to its address."""

    tx: socket.socket
    rx: socket.socket
    dest: Any = None

    def _open_tx(self, fam: int) -> socket.socket:
        """The sender, before its transport's own options and ``setblocking(False)``."""
        c = self.conf
        tx = self.tx = self.make_socket(fam, socket.SOCK_DGRAM)
        self._watched.append(tx)
        tx.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 0 if c.checksum else 1)
        self.sndbuf = set_buffers(tx, sndbuf=c.sndbuf) or \
            tx.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        return tx

    def _open_rx(self, fam: int, addr: Any) -> socket.socket:
        """The receiver, bound to ``addr`` (a :func:`sockaddr`); :meth:`_watch_rx` once
        the transport has set it up."""
        rx = self.rx = self.make_socket(fam, socket.SOCK_DGRAM)
        self._watched.append(rx)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.rcvbuf = set_buffers(rx, rcvbuf=self.conf.rcvbuf) or \
            rx.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        rx.bind(addr)
        return rx

    def _watch_rx(self) -> None:
        self._watched.remove(self.rx)
        self._watch(self.rx, self._readable)

    def _readable(self) -> None:
        self._read_datagrams(self.rx)

    def _send(self, data: bytes) -> bool:
        return self._sendto(self.tx, data, self.dest)
