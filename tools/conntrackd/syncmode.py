"""Sync mode's caches and control requests (spec §6.1-§6.10, §7): everything but the
replication protocol itself.

:class:`SyncMode` keeps the internal cache (this node's kernel table, fed by
:mod:`.kernel` with the event -> action table of §6.5) and the external cache (what peers
advertised), and the same pair for expectations with ``ExpectationSync``. What must be
told to peers goes through :attr:`SyncMode.send` (``send(cache, key, msg_type)``): the
replication stage plugs its transmit queue there (holding a reference on the entry,
:meth:`.cache.Cache.hold`, until the message is out); without replication nothing is
queued and dead entries go at once. The request handler answers every code of §4.4 that
does not need the replication protocol, in the reference's words and layout; the
network, link and queue figures come from :attr:`SyncMode.links` (zeros until channels
exist).
"""
from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

from . import entry as E
from . import handlers as H
from . import output as O
from .cache import DEAD, Cache, ExpectCache
from .kernel import DESTROY, DROP_ALWAYS, NEW, ORIGIN_INJECT, ORIGIN_NOT_ME, UPDATE

# state message types (spec §5.4), what send() is told
NET_T_STATE_CT_NEW = 0
NET_T_STATE_CT_UPD = 1
NET_T_STATE_CT_DEL = 2
NET_T_STATE_EXP_NEW = 3
NET_T_STATE_EXP_UPD = 4
NET_T_STATE_EXP_DEL = 5

CTA_EXPECT_MASTER = 1
CTA_EXPECT_HELP_NAME = 6
CTA_EXPECT_ZONE = 7


class SyncSettings:
    """The ``Sync`` settings the caches and handlers use (spec §3.6)."""

    __slots__ = ("mode", "purge_timeout", "disable_internal_cache", "disable_external_cache",
                 "expectation_sync", "expectation_helpers", "resend_queue_size",
                 "error_queue_length", "channels", "default_channel", "cache_timeout")

    def __init__(self, mode: str = "ftfw", purge_timeout: int = 60,
                 disable_internal_cache: bool = False, disable_external_cache: bool = False,
                 expectation_sync: bool = False, expectation_helpers: tuple[str, ...] | None = None,
                 resend_queue_size: int = 131072, error_queue_length: int = 128,
                 channels: tuple = (), default_channel: int = 0, cache_timeout: int = 180) -> None:
        self.mode = mode
        self.purge_timeout = purge_timeout or 60
        self.disable_internal_cache = disable_internal_cache
        self.disable_external_cache = disable_external_cache
        self.expectation_sync = expectation_sync
        self.expectation_helpers = expectation_helpers
        self.resend_queue_size = resend_queue_size
        self.error_queue_length = error_queue_length
        self.channels = tuple(channels)
        self.default_channel = default_channel
        self.cache_timeout = cache_timeout

    @classmethod
    def from_config(cls, sync: Any) -> "SyncSettings":
        return cls(mode=sync.mode, purge_timeout=sync.purge_timeout,
                   disable_internal_cache=sync.disable_internal_cache,
                   disable_external_cache=sync.disable_external_cache,
                   expectation_sync=sync.expectation_sync,
                   expectation_helpers=sync.expectation_helpers,
                   resend_queue_size=sync.resend_queue_size,
                   error_queue_length=sync.error_queue_length, channels=sync.channels,
                   default_channel=sync.default_channel, cache_timeout=sync.cache_timeout)


class NoLinks:
    """Channel figures before the replication stage exists: every counter 0, device
    names, status and roles from the configuration and the interfaces."""

    def __init__(self, settings: SyncSettings) -> None:
        self.settings = settings

    def _counters(self, i: int) -> tuple[int, int, int, int, int, int]:
        return (0, 0, 0, 0, 0, 0)

    def _tcp_state(self, i: int) -> tuple[str, str]:
        return ("disconnected", "disconnected")

    def channel_block(self) -> str:
        chans = self.settings.channels
        if not chans:
            return ""
        i = self.settings.default_channel
        return O.channel_block(chans[i].transport, chans[i].interface, self._counters(i),
                               self._tcp_state(i))

    def link_blocks(self) -> str:
        out = []
        for i, ch in enumerate(self.settings.channels):
            role = "ACTIVE" if i == self.settings.default_channel else "BACKUP"
            out.append(O.link_block(ch.transport, ch.interface, O.link_status(ch.interface),
                                    role, self._counters(i)))
        return "".join(out)

    def network_stats(self) -> str:
        return O.network_stats() + self.channel_block()

    def message_tracking(self) -> str:
        return O.message_tracking(0, 0)

    def queue_stats(self) -> str:
        s = self.settings
        queues = [("txqueue", 0, 2147483647, 0), ("errorq", 0, s.error_queue_length, 0)]
        if s.mode == "ftfw":
            queues.append(("rsqueue", 0, s.resend_queue_size, 0))
        return O.queue_stats(0, queues)

    def rsqueue(self) -> str | None:
        return "resent queue (len=0)\n" if self.settings.mode == "ftfw" else None


class SyncMode:
    """Sync mode state: internal/external caches (+ expectations) and their requests."""

    name = "sync"

    def __init__(self, settings: SyncSettings | None = None, *, limit: int = 0,
                 hashsize: int = 0, log: Callable[[str, str], None] | None = None,
                 loop: Any = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = s = settings or SyncSettings()
        self.log = log or (lambda level, msg: None)
        self.loop = loop
        self.clock = clock
        self.internal = Cache("internal", limit=limit, hashsize=hashsize, drop=DROP_ALWAYS,
                              clock=clock)
        self.external = Cache("external", limit=limit, hashsize=hashsize, drop=DROP_ALWAYS,
                              clock=clock)
        self.internal_exp = ExpectCache("internal", limit=limit, hashsize=hashsize, clock=clock)
        self.external_exp = ExpectCache("external", limit=limit, hashsize=hashsize, clock=clock)
        self.traffic_bytes = 0
        self.traffic_packets = 0
        # DisableInternalCache / DisableExternalCache counters (§7.4)
        self.bypass = [0, 0, 0]
        self.inject = [0, 0, 0, 0, 0, 0]
        self.kernel = None
        self.links: Any = NoLinks(s)
        self.commit_running = False
        #: the :class:`~.commit.Committer` (set up with the kernel side)
        self.committer: Any = None
        self._purge_timer = None
        self.helpers = tuple(h.lower() for h in s.expectation_helpers) \
            if s.expectation_helpers else None

    # --- transmission hook (the replication stage replaces it) -------------------------------
    def send(self, cache: Cache, key: bytes, msg_type: int) -> None:
        """Queue a state message about ``key`` for the peers (nothing without replication)."""

    def send_bypass(self, msg_type: int, p: E.Parsed) -> None:
        """``DisableInternalCache``: send an event's flow at once (replication stage)."""

    # --- fed by the kernel side (§6.2, §6.4, §6.5) --------------------------------------------
    def populate(self, p: E.Parsed) -> None:
        self.internal.update_force(p)

    def resync_entry(self, p: E.Parsed) -> None:
        known = p.key in self.internal and self.internal.status(p.key) != DEAD
        if self.internal.update_force(p):
            self.send(self.internal, p.key, NET_T_STATE_CT_UPD if known else NET_T_STATE_CT_NEW)

    def purge(self, seen: set[bytes]) -> int:
        n = 0
        for key in self.internal:
            if key in seen or self.internal.status(key) == DEAD:
                continue
            self._dead(key, ORIGIN_NOT_ME)
            n += 1
        return n

    def _dead(self, key: bytes, origin: int) -> None:
        cache = self.internal
        cache.hold(key)
        cache.mark_dead(key)
        if origin == ORIGIN_NOT_ME:
            self.send(cache, key, NET_T_STATE_CT_DEL)
        cache.put(key)

    def event(self, etype: int, p: E.Parsed, origin: int, buf: bytes, off: int, ln: int) -> bool:
        if origin == ORIGIN_INJECT:
            return False
        if self.settings.disable_internal_cache:
            if origin == ORIGIN_NOT_ME:
                i = etype - 1
                self.bypass[i] += 1
                self.send_bypass((NET_T_STATE_CT_NEW, NET_T_STATE_CT_UPD, NET_T_STATE_CT_DEL)[i], p)
            if etype == DESTROY:
                nbytes, npkts = E.counters(p.attrs)
                self.traffic_bytes += nbytes
                self.traffic_packets += npkts
                return True
            return False
        cache = self.internal
        key = p.key
        if etype == NEW:
            if key in cache:
                cache.delete(key)
            if cache.add(p) and origin == ORIGIN_NOT_ME:
                self.send(cache, key, NET_T_STATE_CT_NEW)
            return False
        if etype == UPDATE:
            if cache.update_force(p) and origin == ORIGIN_NOT_ME:
                self.send(cache, key, NET_T_STATE_CT_UPD)
            return False
        if etype == DESTROY:
            st = cache.status(key)
            if st is None:
                return False
            if st != DEAD:
                self._dead(key, origin)
            nbytes, npkts = E.counters(p.attrs)
            self.traffic_bytes += nbytes
            self.traffic_packets += npkts
            return True
        return False

    # --- expectations ----------------------------------------------------------------------------
    def _exp_wanted(self, p: E.Parsed) -> bool:
        if self.helpers is not None:
            name = p.attrs.get(CTA_EXPECT_HELP_NAME)
            if name is None:
                return False
            text = name[4:].split(b"\0", 1)[0].decode("ascii", "replace").lower()
            if not any(text.startswith(h) for h in self.helpers):
                return False
        master = p.attrs.get(CTA_EXPECT_MASTER)
        if master is None:
            self.log("error", "no master tuple in expectation")
            return False
        zone = p.attrs.get(CTA_EXPECT_ZONE)
        key = E.tuple_key(master, zone)
        return key in self.internal and self.internal.status(key) != DEAD

    def expect_populate(self, p: E.Parsed) -> None:
        if self._exp_wanted(p):
            self.internal_exp.update_force(p)

    def expect_event(self, etype: int, p: E.Parsed, origin: int) -> None:
        if origin == ORIGIN_INJECT:
            return
        cache = self.internal_exp
        if etype == DESTROY:
            if p.key in cache and cache.status(p.key) != DEAD:
                cache.hold(p.key)
                cache.mark_dead(p.key)
                if origin == ORIGIN_NOT_ME:
                    self.send(cache, p.key, NET_T_STATE_EXP_DEL)
                cache.put(p.key)
            return
        if not self._exp_wanted(p):
            return
        if etype == NEW:
            if p.key in cache:
                cache.delete(p.key)
            if cache.add(p) and origin == ORIGIN_NOT_ME:
                self.send(cache, p.key, NET_T_STATE_EXP_NEW)
        elif cache.update_force(p) and origin == ORIGIN_NOT_ME:
            self.send(cache, p.key, NET_T_STATE_EXP_UPD)

    # --- commit (-c, §6.7) -------------------------------------------------------------------------
    def commit(self, code: int, conn: Any) -> bool:
        """Commit requests (18, 42, 46) go to the committer, which keeps ``conn`` open
        until the commit is complete; False for other codes."""
        if code not in (H.CT_COMMIT, H.EXP_COMMIT, H.ALL_COMMIT) or self.committer is None:
            return False
        return self.committer.request(code, conn)

    # --- purge timer (-t, §6.10) -----------------------------------------------------------------
    def cancel_purge(self) -> None:
        if self._purge_timer is not None:
            self._purge_timer.cancel()
            self._purge_timer = None

    def _purge_fired(self) -> None:
        self._purge_timer = None
        self.log("notice", "flushing kernel conntrack table (scheduled)")
        if self.kernel is not None:
            self.kernel.flush_master()
        self.internal.flush()

    # --- control requests (§4.4) -------------------------------------------------------------------
    def handle(self, code: int) -> Iterable[bytes] | None:
        """The reply chunks for ``code`` (``()`` = handled, nothing to write), or None."""
        s = self.settings
        ftfw = s.mode == "ftfw"
        exp = s.expectation_sync
        json_req = bool(code & H.JSON)
        base = code & ~H.JSON
        if json_req:
            return self._handle_json(base)
        if code in (H.CT_DUMP_INTERNAL, H.CT_DUMP_INT_XML):
            if s.disable_internal_cache:
                return self._kernel_dump()
            return O.dump_cache(self.internal, xml=code == H.CT_DUMP_INT_XML, hide_dead=ftfw,
                                now=self.clock())
        if code in (H.CT_DUMP_EXTERNAL, H.CT_DUMP_EXT_XML):
            if s.disable_external_cache:
                return ()
            return O.dump_cache(self.external, xml=code == H.CT_DUMP_EXT_XML, hide_dead=ftfw,
                                now=self.clock(), expires=self.expires)
        if code in (H.EXP_DUMP_INTERNAL, H.EXP_DUMP_INT_XML):
            if code == H.EXP_DUMP_INTERNAL and not exp:
                return ()
            return O.dump_cache(self.internal_exp, xml=code == H.EXP_DUMP_INT_XML,
                                hide_dead=ftfw, now=self.clock())
        if code in (H.EXP_DUMP_EXTERNAL, H.EXP_DUMP_EXT_XML):
            if (code == H.EXP_DUMP_EXTERNAL and not exp) or s.disable_external_cache:
                return ()
            return O.dump_cache(self.external_exp, xml=code == H.EXP_DUMP_EXT_XML,
                                hide_dead=ftfw, now=self.clock(), expires=self.expires)
        if code == H.RESET_TIMERS:
            if self._purge_timer is None and self.loop is not None:
                self.log("notice", f"flushing conntrack table in {s.purge_timeout} secs")
                self._purge_timer = self.loop.call_later(s.purge_timeout, self._purge_fired)
            return ()
        if code in (H.CT_FLUSH_CACHE, H.ALL_FLUSH_CACHE):
            if self.commit_running:
                self.log("error", "ignoring flush command, commit still in progress")
                return ()
            self.cancel_purge()
            self.log("notice", "flushing caches")
            self._flush_internal()
            self.external.flush()
            if code == H.ALL_FLUSH_CACHE and exp:
                self.internal_exp.flush()
                self.external_exp.flush()
            return ()
        if code == H.CT_FLUSH_INT_CACHE:
            self.cancel_purge()
            self.log("notice", "flushing internal cache")
            self._flush_internal()
            return ()
        if code == H.CT_FLUSH_EXT_CACHE:
            if self.commit_running:
                self.log("error", "ignoring flush command, commit still in progress")
                return ()
            self.log("notice", "flushing external cache")
            if not s.disable_external_cache:
                self.external.flush()
            return ()
        if code == H.STATS:
            return [self._stats(self.internal, self.external).encode()]
        if code == H.EXP_STATS:
            if not exp:
                return ()
            return [self._stats(self.internal_exp, self.external_exp).encode()]
        if code == H.STATS_NETWORK:
            return [self.links.network_stats().encode()]
        if code == H.STATS_CACHE:
            return [self._cache_extended().encode()]
        if code == H.STATS_LINK:
            return [self.links.link_blocks().encode()]
        if code == H.STATS_QUEUE:
            return [self.links.queue_stats().encode()]
        if code == H.STATS_RSQUEUE:
            text = self.links.rsqueue()
            return None if text is None else [text.encode()]
        return None

    def expires(self, key: bytes) -> int | None:
        """Seconds left before an external entry expires (ALARM only; replication)."""
        return None

    def _flush_internal(self) -> None:
        if self.settings.disable_internal_cache:
            if self.kernel is not None:
                self.kernel.flush_master()
            return
        self.internal.flush()

    def _kernel_dump(self) -> Iterable[bytes]:
        """``-i`` with DisableInternalCache: the kernel table (filtered), conntrack -L style."""
        if self.kernel is None:
            return ()
        out = [O.flow_text(bytes(buf[off:off + ln])) + "\n"
               for buf, off, ln in self.kernel.filtered_dump()]
        return ["".join(out).encode()] if out else ()

    def _stats(self, internal: Cache, external: Cache) -> str:
        s = self.settings
        text = (O.bypass_stats(*self.bypass) if s.disable_internal_cache
                else O.cache_stats(internal))
        text += (O.inject_stats(*self.inject) if s.disable_external_cache
                 else O.cache_stats(external))
        text += O.traffic_stats(self.traffic_bytes, self.traffic_packets)
        text += self.links.channel_block()
        text += self.links.message_tracking()
        return text

    def _cache_extended(self) -> str:
        s = self.settings
        text = (O.bypass_stats(*self.bypass) if s.disable_internal_cache
                else O.cache_stats_extended(self.internal))
        text += (O.inject_stats(*self.inject) if s.disable_external_cache
                 else O.cache_stats_extended(self.external))
        return text

    def _handle_json(self, code: int) -> Iterable[bytes] | None:
        ftfw = self.settings.mode == "ftfw"
        if code == H.CT_DUMP_INTERNAL:
            return O.dump_cache_json(self.internal, hide_dead=ftfw, now=self.clock())
        if code == H.CT_DUMP_EXTERNAL:
            return O.dump_cache_json(self.external, hide_dead=ftfw, now=self.clock())
        if code == H.EXP_DUMP_INTERNAL:
            return O.dump_cache_json(self.internal_exp, hide_dead=ftfw, now=self.clock())
        if code == H.EXP_DUMP_EXTERNAL:
            return O.dump_cache_json(self.external_exp, hide_dead=ftfw, now=self.clock())
        if code in (H.STATS, H.STATS_CACHE, H.EXP_STATS):
            caches = ((self.internal_exp, self.external_exp) if code == H.EXP_STATS
                      else (self.internal, self.external))
            doc = {"mode": "sync", "sync_mode": self.settings.mode,
                   "cache": {c.name: O.cache_json(c) for c in caches},
                   "traffic": {"bytes": self.traffic_bytes, "packets": self.traffic_packets}}
            return [O.to_json(doc)]
        return None

    def metrics(self) -> dict[str, Any]:
        caches = {"internal": self.internal, "external": self.external}
        if self.settings.expectation_sync:
            caches.update({"internal_expect": self.internal_exp,
                           "external_expect": self.external_exp})
        return {"caches": caches, "traffic_bytes": self.traffic_bytes,
                "traffic_packets": self.traffic_packets}

