"""Statistics mode (spec §8): one cache of the kernel table and the destroyed-flow log.

:class:`StatsMode` is the *mode* the kernel side (:mod:`.kernel`) feeds: the start-up
dump and ``-R`` merge into the ``stats`` cache, NEW adds what is not cached, UPDATE
updates (or adds), DESTROY of a cached flow removes it, adds its counters to the
traffic totals and writes the flow (as the event carried it, counters included) to
the Stats ``LogFile`` and/or syslog. Timeouts, counters and use are never cached. After
an overrun or in polling mode the flows the kernel no longer has are purged and logged
the same way. :meth:`StatsMode.handle` answers the control requests of §8.2.
"""
from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

from . import entry as E
from . import output as O
from .cache import Cache
from .handlers import (
    CT_DUMP_INT_XML, CT_DUMP_INTERNAL, CT_FLUSH_CACHE, CT_FLUSH_INT_CACHE, JSON, STATS,
    STATS_CACHE,
)
from .kernel import DESTROY, DROP_ALWAYS, NEW, UPDATE


class FlowLog:
    """Where destroyed flows go: a file object (the Stats ``LogFile``, line buffered) and/or
    syslog (``Syslog`` in Stats: priority LOG_INFO), or a ``writer(text, t=seconds)``
    that adds the time stamp itself (the daemon's logger)."""

    def __init__(self, file: Any = None, syslog: bool = False,
                 clock: Callable[[], float] = time.time,
                 writer: Callable[..., Any] | None = None) -> None:
        self.file = file
        self.syslog = syslog
        self.clock = clock
        self.writer = writer

    def __bool__(self) -> bool:
        return self.file is not None or self.syslog or self.writer is not None

    def write(self, msg: bytes) -> None:
        now = self.clock()
        line = O.flow_log_line(msg, now)
        if self.writer is not None:
            self.writer(line.split("\t", 1)[1], t=now)
            return
        if self.file is not None:
            try:
                self.file.write(line + "\n")
                self.file.flush()
            except (OSError, ValueError):
                pass
        if self.syslog:
            import syslog

            syslog.syslog(syslog.LOG_INFO, line.split("\t", 1)[1])


class StatsMode:
    """The statistics-mode state: the ``stats`` cache, traffic totals, the flow log."""

    name = "stats"

    def __init__(self, *, limit: int = 0, hashsize: int = 0, flow_log: FlowLog | None = None,
                 log: Callable[[str, str], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cache = Cache("stats", limit=limit, hashsize=hashsize,
                           drop=(E.CTA_TIMEOUT,) + DROP_ALWAYS, clock=clock)
        self.flow_log = flow_log or FlowLog(clock=clock)
        self.log = log or (lambda level, msg: None)
        self.clock = clock
        self.traffic_bytes = 0
        self.traffic_packets = 0
        self.kernel = None  # set by the daemon: the Kernel that feeds this mode

    # --- fed by the kernel side -------------------------------------------------------------
    def populate(self, p: E.Parsed) -> None:
        self.cache.update_force(p)

    resync_entry = populate

    def event(self, etype: int, p: E.Parsed, origin: int, buf: bytes, off: int, ln: int) -> bool:
        cache = self.cache
        if etype == UPDATE:
            cache.update_force(p)
            return False
        if etype == NEW:
            if p.key not in cache:
                cache.add(p)
            return False
        if etype == DESTROY and p.key in cache:
            cache.delete(p.key)
            nbytes, npkts = E.counters(p.attrs)
            self.traffic_bytes += nbytes
            self.traffic_packets += npkts
            if self.flow_log:
                self.flow_log.write(bytes(buf[off:off + ln]))
            return True
        return False

    def purge(self, seen: set[bytes]) -> int:
        """Remove (and log) the cached flows that the last dump did not show."""
        n = 0
        for key in self.cache:
            if key in seen:
                continue
            if self.flow_log:
                self.flow_log.write(self.cache.message(key))
            self.cache.delete(key)
            n += 1
        return n

    def expect_event(self, etype: int, p: E.Parsed, origin: int) -> None:
        pass

    def expect_populate(self, p: E.Parsed) -> None:
        pass

    # --- control requests (§8.2) ---------------------------------------------------------------
    def handle(self, code: int) -> Iterable[bytes] | None:
        """The reply to ``code`` (chunks of bytes), or None when this mode ignores it."""
        cache = self.cache
        if code == CT_DUMP_INTERNAL:
            return O.dump_cache(cache, now=self.clock())
        if code == CT_DUMP_INT_XML:
            return O.dump_cache(cache, xml=True, now=self.clock())
        if code in (CT_FLUSH_CACHE, CT_FLUSH_INT_CACHE):
            self.log("notice", "flushing caches")
            cache.flush()
            return ()
        if code == STATS:
            return [(O.cache_stats(cache) + O.traffic_stats(self.traffic_bytes,
                                                            self.traffic_packets)).encode()]
        if code == STATS_CACHE:
            return [O.cache_stats_extended(cache).encode()]
        if code == CT_DUMP_INTERNAL | JSON:
            return O.dump_cache_json(cache, now=self.clock())
        if code == STATS | JSON:
            return [O.to_json({"mode": "stats", "cache": {"stats": O.cache_json(cache)},
                               "traffic": {"bytes": self.traffic_bytes,
                                           "packets": self.traffic_packets}})]
        if code == STATS_CACHE | JSON:
            return [O.to_json({"cache": {"stats": O.cache_json(cache)}})]
        return None

    def metrics(self) -> dict[str, Any]:
        """Figures for the Prometheus exposition (:mod:`.metrics`)."""
        return {"caches": {"stats": self.cache},
                "traffic_bytes": self.traffic_bytes, "traffic_packets": self.traffic_packets}
