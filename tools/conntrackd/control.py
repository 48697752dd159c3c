"""The UNIX control socket of conntrackd 1.4.7: request codes, server framing and
dispatch, and the client.

Framing (spec §4.1): one request per connection; the client writes exactly 4 bytes, a
C ``int`` in host byte order; the daemon answers with free-form text and closes the
connection (no length, no status). :func:`request` is the client (``conntrackd -s`` and
friends). :class:`ControlServer` is the daemon side: it binds the path (after unlinking
whatever is there), accepts on the :class:`~.loop.Loop`, reads the code without ever
blocking the loop on a silent client, and passes ``(code, Connection)`` to every handler
registered with :meth:`ControlServer.add_handler`, in registration order (the generic
handler first, then the mode's handlers: spec §4.3); a handler returning ``True`` ends
the chain for that request. A handler writes its reply with
:meth:`Connection.write`; one that must keep the connection open after it returns (a
commit in progress) calls :meth:`Connection.detach` and closes it later itself. A
handler that raises is logged and the daemon goes on.
"""
from __future__ import annotations

import errno
import os
import socket
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

# --- request codes (spec §4.2) ---
CT_FLUSH_MASTER = 0
CT_RESYNC_MASTER = 1
CT_DUMP_INTERNAL = 16
CT_DUMP_EXTERNAL = 17
CT_COMMIT = 18
CT_FLUSH_CACHE = 19
KILL = 20
STATS = 21
SEND_BULK = 22
REQUEST_DUMP = 23
CT_DUMP_INT_XML = 24
CT_DUMP_EXT_XML = 25
RESET_TIMERS = 26
DEBUG_INFO = 27
STATS_NETWORK = 28
STATS_CACHE = 29
STATS_RUNTIME = 30
STATS_LINK = 31
STATS_RSQUEUE = 32
CT_FLUSH_INT_CACHE = 33
CT_FLUSH_EXT_CACHE = 34
STATS_PROCESS = 35
STATS_QUEUE = 36
EXP_STATS = 37
EXP_FLUSH_MASTER = 38
EXP_RESYNC_MASTER = 39
EXP_DUMP_INTERNAL = 40
EXP_DUMP_EXTERNAL = 41
EXP_COMMIT = 42
ALL_FLUSH_MASTER = 43
ALL_RESYNC_MASTER = 44
ALL_FLUSH_CACHE = 45
ALL_COMMIT = 46
EXP_DUMP_INT_XML = 47
EXP_DUMP_EXT_XML = 48

NAMES = {v: k for k, v in globals().items() if k.isupper() and isinstance(v, int)}
"""Request code -> its name in the reference (``CT_DUMP_INTERNAL`` ...)."""

REQUEST = struct.Struct("=i")
BACKLOG = 100
CHUNK = 1023
"""The reference client reads the reply 1023 bytes at a time (``printf("%s")`` each)."""
READ_TIMEOUT = 10.0
"""Seconds a connected client may stay silent before the daemon drops it (the
reference blocks in ``read()`` meanwhile)."""
WRITE_TIMEOUT = 30.0
"""Seconds one reply write may block on a client that does not read."""


# --- client -----------------------------------------------------------------------------

class ConnectError(Exception):
    """The control socket cannot be reached (``can't connect: ...``)."""


def _address(path: str) -> str | bytes:
    return os.fsencode(path)


def request(path: str, code: int, write: "Callable[[bytes], Any]") -> None:
    """Send ``code`` to the daemon at ``path`` and pass the reply to ``write`` chunk by
    chunk until the daemon closes the connection (each chunk cut at its first NUL, as
    the reference's ``printf("%s")`` prints it). Raises :class:`ConnectError` when the
    socket cannot be connected or the request cannot be sent."""
    if not path:
        raise ConnectError("no path")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            s.connect(_address(path))
            s.sendall(REQUEST.pack(code))
        except OSError as e:
            raise ConnectError(str(e)) from None
        while True:
            try:
                data = s.recv(CHUNK)
            except InterruptedError:
                continue
            except OSError:
                break
            if not data:
                break
            nul = data.find(b"\0")
            write(data if nul < 0 else data[:nul])
    finally:
        s.close()


# --- server -----------------------------------------------------------------------------

class Connection:
    """One accepted client: its request code and a way to answer."""
    __slots__ = ("sock", "code", "detached", "broken", "server")

    def __init__(self, sock: socket.socket, server: "ControlServer") -> None:
        self.sock = sock
        self.server = server
        self.code: int | None = None
        self.detached = False
        self.broken = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def write(self, data: bytes | str) -> bool:
        """Send reply text; False (and nothing more is sent) once the client is gone or
        stopped reading for :data:`WRITE_TIMEOUT` seconds."""
        if self.broken:
            return False
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.broken = True
            return False

    def detach(self) -> socket.socket:
        """Keep the connection open after the handler returns; the caller closes it."""
        self.detached = True
        return self.sock

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class RequestStats:
    """The ``local ...`` counters of ``-s runtime``."""
    __slots__ = ("read_failed", "unknown_request")

    def __init__(self) -> None:
        self.read_failed = 0
        self.unknown_request = 0


class ControlServer:
    """The daemon's end of the control socket (see the module docstring)."""

    def __init__(self, path: str, loop, *, on_error: "Callable[[BaseException], Any] | None" = None) -> None:
        self.path = path
        self.loop = loop
        self.sock: socket.socket | None = None
        self.handlers: list["Callable[[int, Connection], Any]"] = []
        self.stats = RequestStats()
        self.on_error = on_error
        self.pending: dict[int, tuple[Connection, Any]] = {}

    def add_handler(self, handler: "Callable[[int, Connection], Any]") -> None:
        """``handler(code, connection)`` runs for every request, after the handlers
        registered before it (unless one of those returned ``True``)."""
        self.handlers.append(handler)

    def open(self) -> None:
        """unlink, bind, listen (raises OSError: the caller logs
        ``can't open unix socket!``). An empty path binds an autobound abstract address,
        which no client can find (as the reference)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.path:
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
                s.bind(_address(self.path))
            else:
                s.bind(b"")
            s.listen(BACKLOG)
            s.setblocking(False)
        except OSError:
            s.close()
            self._unlink()
            raise
        self.sock = s
        self.loop.add_reader(s, self._accept)

    def _unlink(self) -> None:
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def close(self) -> None:
        """Stop listening and remove the socket file (shutdown)."""
        for conn, timer in list(self.pending.values()):
            self._drop(conn, timer)
        if self.sock is not None:
            self.loop.remove_reader(self.sock)
            self.sock.close()
            self.sock = None
            self._unlink()

    def _accept(self) -> None:
        assert self.sock is not None
        while True:
            try:
                cs, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return
                return
            cs.setblocking(False)
            conn = Connection(cs, self)
            timer = self.loop.call_later(READ_TIMEOUT, self._silent, conn)
            self.pending[cs.fileno()] = (conn, timer)
            self.loop.add_reader(cs, lambda c=conn: self._readable(c))

    def _drop(self, conn: Connection, timer) -> None:
        self.pending.pop(conn.fileno(), None)
        timer.cancel()
        self.loop.remove_reader(conn.sock)
        conn.close()

    def _silent(self, conn: Connection) -> None:
        if conn.fileno() in self.pending:
            self.stats.read_failed += 1
            self._drop(conn, self.pending[conn.fileno()][1])

    def _readable(self, conn: Connection) -> None:
        fd = conn.fileno()
        entry = self.pending.pop(fd, None)
        if entry is None:
            return
        entry[1].cancel()
        self.loop.remove_reader(conn.sock)
        try:
            data = conn.sock.recv(REQUEST.size)
        except (BlockingIOError, InterruptedError):
            self.pending[fd] = entry
            self.loop.add_reader(conn.sock, lambda c=conn: self._readable(c))
            return
        except OSError:
            self.stats.read_failed += 1
            conn.close()
            return
        if len(data) < REQUEST.size:  # EOF, or a short read the reference would
            conn.close()               # mistake for garbage: nothing to do
            return
        conn.sock.setblocking(True)
        conn.sock.settimeout(WRITE_TIMEOUT)
        self.dispatch(REQUEST.unpack(data)[0], conn)

    def dispatch(self, code: int, conn: Connection) -> None:
        """Run every handler for ``code``, then close the connection unless a handler
        detached it."""
        conn.code = code
        try:
            for handler in self.handlers:
                if handler(code, conn) is True:  # the request ends here (KILL)
                    break
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - a request never ends the daemon
            if self.on_error is None:
                raise
            self.on_error(e)
        finally:
            if not conn.detached:
                conn.close()
