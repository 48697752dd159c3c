"""Prometheus text exposition over HTTP (our extension, stdlib only).

Enabled by a top-level ``Metrics { Address IP  Port N  Path /PATH }`` section in
conntrackd.conf (parsed by :mod:`.config`; the C daemon rejects the section with a
syntax error, so a file using it never silently runs on the reference). The server is a
non-blocking listening socket served from the daemon's own loop: each scrape is
answered from the live counters, nothing runs in a thread. :func:`render` builds the
exposition: cache sizes and operation counters per cache, kernel events, filtered
events, overruns, resyncs, the event buffer size, traffic totals and uptime; sync mode
adds per-link and per-queue figures when the replication stage provides them
(``mode.links.metrics()``).
"""
from __future__ import annotations

import socket
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST = 8192
CLIENT_TIMEOUT = 5.0


def _esc(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.seen: set[str] = set()

    def metric(self, name: str, kind: str, help: str, value: float,
               labels: dict[str, str] | None = None) -> None:
        if name not in self.seen:
            self.seen.add(name)
            self.lines.append(f"# HELP {name} {help}")
            self.lines.append(f"# TYPE {name} {kind}")
        lab = ""
        if labels:
            lab = "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items()) + "}"
        self.lines.append(f"{name}{lab} {value}")


def render(mode: Any, kernel: Any = None, *, started: float | None = None,
           now: float | None = None) -> str:
    """The exposition text for the daemon's ``mode`` (stats or sync) and kernel side."""
    out = _Out()
    now = time.time() if now is None else now
    if started is not None:
        out.metric("conntrackd_uptime_seconds", "gauge", "Seconds since the daemon started.",
                   int(now - started))
    info = mode.metrics() if mode is not None else {"caches": {}}
    out.metric("conntrackd_info", "gauge", "The daemon's mode.", 1,
               {"mode": getattr(mode, "name", "none")})
    for cname, cache in info.get("caches", {}).items():
        lab = {"cache": cname}
        s = cache.stats
        out.metric("conntrackd_cache_entries", "gauge",
                   "Objects in the cache (dead ones waiting for a queue included).", len(cache), lab)
        out.metric("conntrackd_cache_active", "gauge", "Live (not dead) objects in the cache.",
                   cache.active, lab)
        out.metric("conntrackd_cache_limit", "gauge", "HashLimit: the most objects the cache takes.",
                   cache.limit, lab)
        out.metric("conntrackd_cache_created_total", "counter", "Objects added.", s.add_ok, lab)
        out.metric("conntrackd_cache_create_failed_total", "counter",
                   "Objects that could not be added (cache full).", s.add_fail, lab)
        out.metric("conntrackd_cache_updated_total", "counter", "Objects updated.", s.upd_ok, lab)
        out.metric("conntrackd_cache_destroyed_total", "counter", "Objects destroyed.", s.del_ok, lab)
        out.metric("conntrackd_cache_flushes_total", "counter", "Flushes of the cache.", s.flush, lab)
    if "traffic_bytes" in info:
        out.metric("conntrackd_traffic_bytes_total", "counter",
                   "Bytes of destroyed flows (needs nf_conntrack_acct).", info["traffic_bytes"])
        out.metric("conntrackd_traffic_packets_total", "counter",
                   "Packets of destroyed flows (needs nf_conntrack_acct).", info["traffic_packets"])
    if kernel is not None:
        k = kernel.stats
        out.metric("conntrackd_events_received_total", "counter",
                   "Kernel events that reached the daemon.", k.events_received)
        out.metric("conntrackd_events_filtered_total", "counter",
                   "Kernel events dropped by the user-space filter.", k.events_filtered)
        out.metric("conntrackd_events_unknown_total", "counter",
                   "Kernel messages of unknown type.", k.events_unknown_type)
        out.metric("conntrackd_netlink_overruns_total", "counter",
                   "Event socket overruns (ENOBUFS): events were lost.", k.netlink_overrun)
        out.metric("conntrackd_netlink_buffer_bytes", "gauge",
                   "Receive buffer size of the event socket.", k.buffer_size)
        out.metric("conntrackd_resyncs_total", "counter",
                   "Resyncs with the kernel table.", k.overrun_resyncs, {"reason": "overrun"})
        out.metric("conntrackd_resyncs_total", "counter",
                   "Resyncs with the kernel table.", k.resync_kernel_table, {"reason": "request"})
        out.metric("conntrackd_purged_total", "counter",
                   "Cached flows found gone from the kernel by a resync.", k.purged)
        out.metric("conntrackd_kernel_flushes_total", "counter",
                   "Kernel table flushes requested from the daemon.", k.flush_kernel_table)
        out.metric("conntrackd_resync_pending", "gauge",
                   "1 while a resync after an overrun is scheduled.", int(kernel.resync_pending))
    links = getattr(mode, "links", None)
    extra = getattr(links, "metrics", None)
    if callable(extra):
        for name, kind, help, value, labels in extra():
            out.metric(name, kind, help, value, labels)
    return "\n".join(out.lines) + "\n"


class MetricsServer:
    """A tiny HTTP/1.0 server in the daemon's loop: ``GET path`` answers ``collect()``.

    ``loop`` needs ``add_reader``/``remove_reader`` and ``call_later`` (client timeouts).
    """

    def __init__(self, loop: Any, collect: Callable[[], str], address: str = "127.0.0.1",
                 port: int = 9466, path: str = "/metrics") -> None:
        self.loop = loop
        self.collect = collect
        self.path = path
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((address, port))
            self.sock.listen(16)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise
        self.clients: dict[int, tuple[socket.socket, bytearray, Any]] = {}
        loop.add_reader(self.sock.fileno(), self._accept)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        conn.setblocking(False)
        fd = conn.fileno()
        timer = self.loop.call_later(CLIENT_TIMEOUT, lambda: self._drop(fd))
        self.clients[fd] = (conn, bytearray(), timer)
        self.loop.add_reader(fd, lambda: self._read(fd))

    def _drop(self, fd: int) -> None:
        item = self.clients.pop(fd, None)
        if item is None:
            return
        conn, _, timer = item
        if timer is not None:
            timer.cancel()
        try:
            self.loop.remove_reader(fd)
        except (KeyError, ValueError):
            pass
        conn.close()

    def _read(self, fd: int) -> None:
        conn, buf, _ = self.clients[fd]
        try:
            data = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(fd)
            return
        buf += data
        if b"\r\n\r\n" not in buf and b"\n\n" not in buf:
            if len(buf) > MAX_REQUEST:
                self._respond(fd, 431, "Request Header Fields Too Large", "")
            return
        line = bytes(buf.split(b"\n", 1)[0]).decode("latin-1").strip().split()
        if len(line) < 2 or line[0] not in ("GET", "HEAD"):
            self._respond(fd, 405, "Method Not Allowed", "")
        elif line[1].split("?", 1)[0] != self.path:
            self._respond(fd, 404, "Not Found", "not found\n")
        else:
            try:
                body = self.collect()
            except Exception as e:  # never let a scrape take the daemon down
                self._respond(fd, 500, "Internal Server Error", f"{type(e).__name__}\n")
                return
            self._respond(fd, 200, "OK", body if line[0] == "GET" else "", len(body.encode()))

    def _respond(self, fd: int, code: int, reason: str, body: str, length: int | None = None) -> None:
        conn = self.clients[fd][0]
        data = body.encode()
        head = (f"HTTP/1.0 {code} {reason}\r\nContent-Type: {CONTENT_TYPE}\r\n"
                f"Content-Length: {len(data) if length is None else length}\r\n"
                "Connection: close\r\n\r\n").encode()
        try:
            conn.setblocking(True)
            conn.settimeout(CLIENT_TIMEOUT)
            conn.sendall(head + data)
        except OSError:
            pass
        self._drop(fd)

    def close(self) -> None:
        for fd in list(self.clients):
            self._drop(fd)
        try:
            self.loop.remove_reader(self.sock.fileno())
        except (KeyError, ValueError):
            pass
        self.sock.close()
