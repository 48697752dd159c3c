"""TCP channels, IPv4 and IPv6 (``TCP`` blocks, spec §5.2.3), as conntrackd 1.4.7 runs
them (observed with strace against C peers):

* Every node is a client *and* a server: messages are sent on the connection our client
  made to the peer's ``Port`` and received on the one our server (``listen(1)``,
  ``SO_REUSEADDR``, ``SO_KEEPALIVE``, optional ``SO_RCVBUFFORCE``) accepted; a new
  incoming connection replaces the current one.
* The client is non-blocking (``SO_NO_CHECK`` and ``SO_SNDBUFFORCE`` set as for UDP) and
  connects at start-up; while it is not connected each send first calls ``connect()``
  again, at most once a second (the start-up attempt does not count). ``EINPROGRESS``
  is a silent failure, a refused or failed connect one send error; ``EPIPE`` or
  ``ECONNRESET`` on send (one error) closes the socket and opens a new one.
* A buffer that could not be sent goes to the shared error queue
  (:class:`~.base.ErrorQueue`) and is re-sent, oldest first, before anything newer.
* The byte stream is cut into complete messages by their ``len`` header field; a
  message split across reads waits for the rest (a read returns at most 65536 bytes
  including what waits); a header that cannot start a message hands the whole read to
  the receive pipeline, which counts the error, and nothing is kept (as the C receiver
  drops the rest of that read).

Better than the reference, still the same bytes on the wire: a partial ``send()`` keeps
the unsent rest and sends it before anything else (the C sender loses it and breaks the
stream), a connection that ends in the middle of a message does not glue its fragment
to the next connection's data, a re-created client socket does not pin the send
buffer to the previous socket's size, and an IPv6 link-local peer gets its scope (the
C client connects without one and fails).
"""
from __future__ import annotations

import errno
import socket
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

from .base import (
    NET_F_RANGE, NET_T_CTL, NETHDR_ACK_SIZ, NETHDR_SIZ, RECV_SIZE, SO_NO_CHECK, Channel,
    ErrorQueue, family_of, set_buffers, sockaddr,
)

RECONNECT_INTERVAL = 1.0
"""Seconds between two ``connect()`` attempts made to send."""

_CONNECTED = (0, errno.EISCONN)
_IN_PROGRESS = (errno.EINPROGRESS, errno.EALREADY)
_RESET = (errno.EPIPE, errno.ECONNRESET)
_MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)


def frame(buf: bytes | bytearray | memoryview, total: int) -> tuple[int, int]:
    """Where to cut the first ``total`` bytes of a stream buffer: ``(cut, keep)`` —
    ``buf[:cut]`` goes to the receive pipeline, ``buf[keep:total]`` waits for more data.

    Complete messages are handed over; an incomplete one at the end (fewer than 8 bytes,
    or a ``len`` beyond what arrived) is kept. A ``len`` that cannot be a message (0,
    below the header size, below 16 for ACK/NACK/RESYNC) hands everything over and keeps
    nothing, so the pipeline counts it as the C receiver does."""
    off = 0
    while True:
        remain = total - off
        if remain <= 0:
            return total, total
        if remain < NETHDR_SIZ:
            return off, off
        ln = (buf[off + 2] << 8) | buf[off + 3]
        if ln == 0:
            return total, total
        if ln > remain:
            return off, off
        if (buf[off] & 0x0F) == NET_T_CTL and buf[off + 1] & NET_F_RANGE:
            if ln < NETHDR_ACK_SIZ:
                return total, total
        elif ln < NETHDR_SIZ:
            return total, total
        off += ln


class TCPChannel(Channel):
    """A ``TCP`` block (see the module docstring)."""

    transport = "tcp"
    header_size = 40

    def __init__(self, conf: Any, index: int = 0, errorq: ErrorQueue | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(conf, index, errorq)
        self.clock = clock
        self.client: socket.socket | None = None
        self.server: socket.socket | None = None
        self.conn: socket.socket | None = None
        self.connected = False
        self.last_attempt: float | None = None
        self.resets = 0
        self._tail: bytes | None = None
        self._pending = 0
        self.family = 0
        self.peer: tuple = ()

    # --- sockets --------------------------------------------------------------------
    def _open(self) -> None:
        c = self.conf
        self.family = fam = family_of(c)
        scope = c.ifindex if fam == socket.AF_INET6 else 0
        # the C client connects without a scope id (so a link-local peer fails there);
        # ours gives one to link-local peers only: the same call for every other address
        link_local = (c.dest_address or "").lower().startswith(("fe8", "fe9", "fea", "feb"))
        self.peer = sockaddr(fam, c.dest_address, c.port, scope if link_local else 0)
        self._new_client()
        srv = self.make_socket(fam, socket.SOCK_STREAM)
        self.server = srv
        self._watched.append(srv)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.rcvbuf = set_buffers(srv, rcvbuf=c.rcvbuf) or \
            srv.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        srv.bind(sockaddr(fam, c.address, c.port, scope))
        srv.listen(1)
        self._watched.remove(srv)
        self._watch(srv, self._accept)

    def _new_client(self) -> None:
        """A fresh non-blocking client socket and its first ``connect()``."""
        c = self.conf
        sock = self.make_socket(self.family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 0 if c.checksum else 1)
            self.sndbuf = set_buffers(sock, sndbuf=c.sndbuf) or \
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            sock.setblocking(False)
            err = sock.connect_ex(self.peer)
        except OSError:
            sock.close()
            raise
        if err not in _CONNECTED and err not in _IN_PROGRESS and err != errno.ECONNREFUSED:
            sock.close()
            raise OSError(err, errno.errorcode.get(err, str(err)))
        self.client = sock
        self._watched.append(sock)
        self.connected = err in _CONNECTED

    def _reset_client(self) -> None:
        """``EPIPE``/``ECONNRESET``: a new socket (and its connect), the old data gone."""
        if self.client is not None:
            self._unwatch(self.client)
            self.client = None
        self.connected = False
        self._tail = None
        self.resets += 1
        try:
            self._new_client()
        except OSError:
            self.client = None  # retried at the next attempt to send

    def close(self) -> None:
        super().close()
        self.client = self.server = self.conn = None
        self.connected = False
        self._tail = None
        self._pending = 0

    # --- output -------------------------------------------------------------------------
    def _connect(self) -> bool:
        """Try to get connected (rate-limited); True when the client is connected."""
        now = self.clock()
        if self.last_attempt is not None and now - self.last_attempt < RECONNECT_INTERVAL:
            return False
        self.last_attempt = now
        if self.client is None:
            try:
                self._new_client()
            except OSError:
                self.stats.errors_send += 1
                return False
            if self.connected:
                return True
            return False
        err = self.client.connect_ex(self.peer)
        if err in _CONNECTED:
            self.connected = True
            return True
        if err not in _IN_PROGRESS:
            self.stats.errors_send += 1
        return False

    def _send(self, data: bytes) -> bool:
        """A new buffer: it waits behind anything not yet sent (a partial send's rest,
        the error queue), then leaves."""
        if self._tail is not None or self.errorq:
            return False
        return self._send_raw(data)

    def _send_raw(self, data: bytes) -> bool:
        if not self.connected and not self._connect():
            return False
        assert self.client is not None
        try:
            n = self.client.send(data, _MSG_NOSIGNAL)
        except OSError as e:
            self.stats.errors_send += 1
            if e.errno in _RESET:
                self._reset_client()
            return False
        self.stats.bytes_sent += n
        self.stats.packets_sent += 1
        if n < len(data):
            self._tail = data[n:]
        return True

    def _send_tail(self) -> bool:
        tail = self._tail
        assert tail is not None
        self._tail = None
        resets = self.resets
        if self._send_raw(tail):
            return self._tail is None
        if self.resets == resets:
            self._tail = tail
        return False

    def _handle_errors(self) -> bool:
        if self._tail is not None and not self._send_tail():
            return True
        q = self.errorq
        if not q:
            return False
        items = q.items
        while items:
            if not self._send_raw(items[0]):
                return True
            items.popleft()
            if self._tail is not None:
                return True
        return False

    def _enqueue_error(self, data: bytes) -> None:
        if self.errorq is not None:
            self.errorq.add(data)

    # --- input ------------------------------------------------------------------------
    def _accept(self) -> None:
        if self.conn is not None:
            self._close_conn()
        assert self.server is not None
        try:
            sock, _ = self.server.accept()
        except OSError:
            return
        self.conn = sock
        self._pending = 0
        self._watch(sock, self._readable)

    def _close_conn(self) -> None:
        if self.conn is not None:
            self._unwatch(self.conn)
            self.conn = None
        self._pending = 0

    def _readable(self) -> None:
        conn = self.conn
        if conn is None:
            return
        buf = self._rbuf
        view = self._rview
        stats = self.stats
        for _ in range(self.limit):
            pending = self._pending
            try:
                n = conn.recv_into(view[pending:RECV_SIZE])
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError as e:
                stats.errors_recv += 1
                if e.errno == errno.ENOTCONN:
                    self._close_conn()
                return
            stats.bytes_recv += n
            stats.packets_recv += 1
            if n == 0:
                self._close_conn()
                return
            total = pending + n
            cut, keep = frame(buf, total)
            rest = total - keep
            data = bytes(view[:cut]) if cut else None
            if rest:
                buf[:rest] = bytes(view[keep:total])
            self._pending = rest
            if data is not None:
                self._hand(data)
            if self.conn is not conn:
                return

    def tcp_state(self) -> tuple[str, str]:
        return ("connected" if self.conn is not None else "disconnected",
                "connected" if self.connected else "disconnected")
