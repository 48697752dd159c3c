"""The daemon's kernel side (spec §6.2-§6.4, §6.8): dumps, events, overruns, polling.

:class:`Kernel` owns the netlink sockets of a sync or stats daemon: the event socket
(conntrack groups, plus the expectation groups with ``ExpectationSync``), sized from
``NetlinkBufferSize``/``NetlinkBufferSizeMaxGrowth`` with the reference's log lines and
doubling on ``ENOBUFS``, optionally reliable (``NetlinkEventsReliable``) and filtered in
the kernel by a BPF program (``Filter From Kernelspace``); and a request socket for
dumps, resyncs, lookups and flushes. It splits every message once (:mod:`.entry`),
applies the user-space filter, tells the event's origin from the sender's port id, and
hands the result to the *mode* (stats or sync), which owns the caches::

    mode.populate(parsed)                # start-up dump and -R: merge, nothing sent
    mode.event(etype, parsed, origin, msg)   # NEW=1 UPDATE=2 DESTROY=3 -> bool (known)
    mode.resync_entry(parsed)            # overrun/polling dump: merge (and send)
    mode.purge(seen_keys)                # after such a dump: drop what the kernel lost
    mode.expect_event(etype, parsed, origin)  / mode.expect_populate(parsed)

After an overrun the resync runs once the event socket has been quiet for
:data:`QUIET` seconds (the backlog of events is applied first), and at the latest
``NetlinkOverrunResync`` seconds after the overrun, as in the reference.
"""
from __future__ import annotations

import errno
import struct
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator

from . import entry as E
from .cache import parse_expect
from .filter import FilterSpec, attach, bpf_program, compile_filter

NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE, NFNLGRP_CONNTRACK_DESTROY = 1, 2, 3
NFNLGRP_EXP_NEW, NFNLGRP_EXP_UPDATE, NFNLGRP_EXP_DESTROY = 4, 5, 6
CT_GROUPS = (1 << 0) | (1 << 1) | (1 << 2)
EXP_GROUPS = (1 << 3) | (1 << 4) | (1 << 5)
NLM_F_CREATE = 0x400
NEW, UPDATE, DESTROY = 1, 2, 3

ORIGIN_NOT_ME = 0
ORIGIN_COMMIT = 1
ORIGIN_FLUSH = 2
ORIGIN_INJECT = 3

QUIET = 0.25
"""Seconds without events after which a pending overrun resync runs."""

DROP_ALWAYS = (E.CTA_COUNTERS_ORIG, E.CTA_COUNTERS_REPLY, E.CTA_USE)
"""Attributes never cached (the reference unsets counters and use before caching)."""

_HDR = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")

MSG_MISSING_L3 = "missing layer 3 protocol"


class KernelSettings:
    """The ``General`` settings the kernel side uses (names of spec §3.8, snake_case)."""

    __slots__ = ("netlink_buffer_size", "netlink_buffer_size_max_growth",
                 "netlink_overrun_resync", "netlink_events_reliable", "poll_secs",
                 "event_iteration_limit", "filter", "expectations")

    def __init__(self, netlink_buffer_size: int = 0, netlink_buffer_size_max_growth: int = 0,
                 netlink_overrun_resync: int = 30, netlink_events_reliable: bool = False,
                 poll_secs: int = 0, event_iteration_limit: int = 100,
                 filter: FilterSpec | None = None, expectations: bool = False) -> None:
        self.netlink_buffer_size = netlink_buffer_size or 0
        self.netlink_buffer_size_max_growth = netlink_buffer_size_max_growth or 0
        self.netlink_overrun_resync = netlink_overrun_resync or 0
        self.netlink_events_reliable = bool(netlink_events_reliable)
        self.poll_secs = poll_secs or 0
        self.event_iteration_limit = event_iteration_limit or 100
        self.filter = filter
        self.expectations = bool(expectations)

    @classmethod
    def from_config(cls, cfg: Any) -> "KernelSettings":
        """From the daemon's Config (``cfg.general``, ``cfg.sync``)."""
        from .filter import from_config

        g = cfg.general
        sync = cfg.sync
        resync = g.netlink_overrun_resync
        return cls(
            netlink_buffer_size=g.netlink_buffer_size,
            netlink_buffer_size_max_growth=g.netlink_buffer_size_max_growth,
            netlink_overrun_resync=resync if resync and resync > 0 else 0,
            netlink_events_reliable=g.netlink_events_reliable,
            poll_secs=g.poll_secs or 0,
            event_iteration_limit=g.event_iteration_limit,
            filter=from_config(g.filter),
            expectations=bool(sync is not None and sync.expectation_sync),
        )


class KernelStats:
    """The ``netlink stats`` of ``-s runtime`` (and a few figures for metrics)."""

    __slots__ = ("events_received", "events_filtered", "events_unknown_type",
                 "catch_event_failed", "dump_unknown_type", "netlink_overrun",
                 "flush_kernel_table", "resync_kernel_table", "buffer_size",
                 "overrun_resyncs", "purged")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class Kernel:
    """The kernel side of a daemon; ``mode`` receives what it learns (module docstring).

    ``loop`` needs ``add_reader(fd, callback)``, ``remove_reader(fd)`` and
    ``call_later(seconds, callback) -> handle`` (``handle.cancel()``); ``log(level,
    message)`` writes the daemon's log (levels ``notice``, ``warning``, ``error``).
    """

    def __init__(self, settings: KernelSettings, mode: Any, *, loop: Any,
                 log: Callable[[str, str], None], resync_enabled: bool = True,
                 socket_factory: Callable[..., Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.mode = mode
        self.loop = loop
        self.log = log
        self.clock = clock
        self.stats = KernelStats()
        self.resync_enabled = resync_enabled
        self._factory = socket_factory
        self.keep = compile_filter(settings.filter)
        #: whether the user-space filter runs on events (not with From Kernelspace)
        self.filter_events = self.keep is not None and not (settings.filter is not None
                                                            and settings.filter.kernelspace)
        self.events_sock = None
        self.ct = None              # request client (dumps, lookups, flushes)
        self.origins: dict[int, int] = {}
        self._warned = False
        self._resync_timer = None
        self._quiet_timer = None
        self._poll_timer = None
        self._last_event = 0.0
        self._resync_pending = False
        self.drop = DROP_ALWAYS

    # --- set-up ------------------------------------------------------------------------
    def _socket(self, **kw):
        if self._factory is not None:
            return self._factory(**kw)
        from nfnl.socket import NetlinkSocket

        return NetlinkSocket(**kw)

    def open(self) -> None:
        """Open the sockets (events first, so nothing is missed during the dump), log
        the reference's start-up lines, and dump the tables into the mode."""
        from ctnetlink.client import Conntrack

        s = self.settings
        self.ct = Conntrack(self._socket(rcvbuf=4 << 20))
        self.origins[self.ct.sock.portid] = ORIGIN_FLUSH
        spec = s.filter
        if spec is not None and not spec.empty:
            self.log("notice", "using kernel-space event filtering" if spec.kernelspace
                     else "using user-space event filtering")
        if s.poll_secs:
            self.log("notice", "running in polling mode")
        else:
            self._open_events()
        self.populate()
        if s.poll_secs:
            self._poll_timer = self.loop.call_later(s.poll_secs, self._poll)

    def open_without_cache(self) -> None:
        """``DisableInternalCache``: the sockets without the start-up dump (events go to the
        mode as they come; there is nothing to resync)."""
        from ctnetlink.client import Conntrack

        self.resync_enabled = False
        self.ct = Conntrack(self._socket(rcvbuf=4 << 20))
        self.origins[self.ct.sock.portid] = ORIGIN_FLUSH
        spec = self.settings.filter
        if spec is not None and not spec.empty:
            self.log("notice", "using kernel-space event filtering" if spec.kernelspace
                     else "using user-space event filtering")
        self._open_events()

    def _open_events(self) -> None:
        s = self.settings
        groups = CT_GROUPS | (EXP_GROUPS if s.expectations else 0)
        sock = self._socket(groups=groups, nonblocking=True)
        self.events_sock = sock
        if s.netlink_buffer_size and s.netlink_buffer_size <= s.netlink_buffer_size_max_growth:
            self.stats.buffer_size = sock.set_rcvbuf(s.netlink_buffer_size // 2)
        else:
            self.log("notice", "NetlinkBufferSize is either not set or is greater than "
                     "NetlinkBufferSizeMaxGrowth. Using current system buffer size")
            self.stats.buffer_size = sock.rcvbuf
        self.log("notice", "netlink event socket buffer size has been set to "
                 f"{self.stats.buffer_size} bytes")
        if s.netlink_events_reliable:
            from nfnl.constants import SOL_NETLINK

            NETLINK_BROADCAST_SEND_ERROR = 4
            raw = getattr(sock, "_sock", None)
            if raw is not None:
                raw.setsockopt(SOL_NETLINK, NETLINK_BROADCAST_SEND_ERROR, 1)
            sock.set_no_enobufs(True)
            self.log("notice", "reliable ctnetlink event delivery is ENABLED.")
        if s.filter is not None and s.filter.kernelspace and not s.filter.empty:
            try:
                attach(sock, bpf_program(s.filter))
            except (OSError, ValueError) as e:
                self.log("error", f"cannot set event filtering: {getattr(e, 'strerror', None) or e}")
                self.filter_events = self.keep is not None
        self.loop.add_reader(sock.fileno(), self.on_readable)

    def close(self) -> None:
        for t in (self._resync_timer, self._quiet_timer, self._poll_timer):
            if t is not None:
                t.cancel()
        self._resync_timer = self._quiet_timer = self._poll_timer = None
        if self.events_sock is not None:
            try:
                self.loop.remove_reader(self.events_sock.fileno())
            except (KeyError, ValueError, OSError):
                pass
            self.events_sock.close()
            self.events_sock = None
        if self.ct is not None:
            self.ct.close()
            self.ct = None

    def register_origin(self, portid: int, origin: int) -> None:
        """Events caused by requests on socket ``portid`` have ``origin`` (§6.5)."""
        self.origins[portid] = origin

    # --- dumps ------------------------------------------------------------------------
    def _dump(self, on_entry: Callable[[E.Parsed], None]) -> set[bytes]:
        """Dump the conntrack table; every entry that passes the filter goes to
        ``on_entry``; returns the keys seen (filtered ones included)."""
        parse = E.parse
        keep = self.keep
        drop = self.drop
        seen: set[bytes] = set()
        # one datagram at a time: a read-ahead thread would queue the whole table's
        # datagrams while entries are parsed, and the heap would keep that size
        for items in self.ct.dump_batches(0, pipeline=False):
            for buf, off, ln in items:
                try:
                    p = parse(buf, off, ln, drop)
                except E.DecodeError:
                    self.stats.dump_unknown_type += 1
                    continue
                seen.add(p.key)
                if keep is not None and not keep(p):
                    continue
                on_entry(p)
        return seen

    def _dump_expect(self, on_entry: Callable[[E.Parsed], None]) -> None:
        from nfnl.constants import NLM_F_DUMP, NLM_F_REQUEST
        from nfnl.message import build_nfnl

        msg = build_nfnl(0x201, NLM_F_REQUEST | NLM_F_DUMP, 0, b"", self.ct.sock.next_seq())
        for buf, off, ln in self.ct.sock.dump(msg):
            try:
                on_entry(parse_expect(buf, off, ln))
            except E.DecodeError:
                self.stats.dump_unknown_type += 1

    def populate(self) -> None:
        """The start-up dump (§6.2): every entry merged into the mode, nothing sent."""
        self._dump(self.mode.populate)
        if self.settings.expectations:
            self._dump_expect(self.mode.expect_populate)

    def resync_master(self) -> None:
        """``-R`` (§6.4): dump and merge, nothing removed, nothing sent."""
        self.stats.resync_kernel_table += 1
        self._dump(self.mode.populate)

    def resync_master_expect(self) -> None:
        self._dump_expect(self.mode.expect_populate)

    def resync_and_purge(self) -> None:
        """Overrun resync and polling (§6.4): dump, merge (the mode may send), then purge
        what the kernel no longer has."""
        seen = self._dump(self.mode.resync_entry)
        self.stats.purged += self.mode.purge(seen) or 0
        if self.settings.expectations and hasattr(self.mode, "expect_resync"):
            self.mode.expect_resync(self)

    # --- flush (-F) ---------------------------------------------------------------------------
    def filtered_dump(self) -> Iterator[tuple[Any, int, int]]:
        """``(buffer, offset, length)`` of every kernel conntrack that passes the filter
        (an entry the filter cannot parse does not pass)."""
        keep = self.keep
        for items in self.ct.dump_batches(0):
            for buf, off, ln in items:
                if keep is not None:
                    try:
                        if not keep(E.parse(buf, off, ln)):
                            continue
                    except E.DecodeError:
                        continue
                yield buf, off, ln

    def flush_master(self) -> int:
        """``-F``/``-F ct`` (§6.8): delete every kernel entry that passes the filter."""
        self.stats.flush_kernel_table += 1
        from ctnetlink.decode import decode_flow

        victims = [decode_flow(buf, off, ln) for buf, off, ln in self.filtered_dump()]
        if not victims:
            return 0
        results = self.ct.delete_many(victims)
        return sum(1 for r in results if r is None)

    def flush_master_expect(self) -> None:
        try:
            self.ct.flush_expect(0)
        except OSError:
            pass

    # --- events ------------------------------------------------------------------------------
    def on_readable(self) -> None:
        """Read up to ``EventIterationLimit`` events (the loop calls again while ready)."""
        sock = self.events_sock
        if sock is None:
            return
        limit = self.settings.event_iteration_limit
        n = 0
        while n < limit:
            before = sock.overruns
            try:
                data = sock.recv()
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.EAGAIN):
                    self.stats.catch_event_failed += 1
                break
            if data is None:
                if sock.overruns != before:
                    self._overrun()
                    continue
                break
            n += self._events(data)
        if n:
            self._last_event = self.clock()
        if self._resync_pending:
            self._arm_quiet()

    def _events(self, data: bytes) -> int:
        """Process the messages of one datagram; returns how many."""
        unpack = _HDR.unpack_from
        end = len(data)
        off = 0
        n = 0
        stats = self.stats
        keep = self.keep if self.filter_events else None
        origins = self.origins
        drop = self.drop
        mode = self.mode
        while off + 20 <= end:
            ln, mtype, flags, _seq, pid = unpack(data, off)
            if ln < 16 or off + ln > end:
                break
            n += 1
            stats.events_received += 1
            sub, msg = mtype >> 8, mtype & 0xFF
            if msg == 0:
                etype = NEW if flags & NLM_F_CREATE else UPDATE
            elif msg == 2:
                etype = DESTROY
            else:
                stats.events_unknown_type += 1
                off += (ln + 3) & ~3
                continue
            origin = origins.get(pid, ORIGIN_NOT_ME) if pid else ORIGIN_NOT_ME
            try:
                if sub == 1:
                    p = E.parse(data, off, ln, drop if etype != DESTROY else ())
                    if keep is not None and not keep(p):
                        stats.events_filtered += 1
                    else:
                        mode.event(etype, p, origin, data, off, ln)
                elif sub == 2 and self.settings.expectations:
                    mode.expect_event(etype, parse_expect(data, off, ln), origin)
                else:
                    stats.events_unknown_type += 1
            except E.DecodeError as e:
                stats.events_unknown_type += 1
                if str(e) == "no original tuple":
                    self.log("error", MSG_MISSING_L3)
            off += (ln + 3) & ~3
        return n

    # --- overruns and resync ---------------------------------------------------------------
    def _overrun(self) -> None:
        self.stats.netlink_overrun += 1
        self.stats.catch_event_failed += 1
        self._schedule_resync()
        self._grow()

    def _schedule_resync(self) -> bool:
        """A resync at the latest after ``NetlinkOverrunResync`` seconds (the timer
        restarted; False: none configured)."""
        s = self.settings
        if not (s.netlink_overrun_resync > 0 and self.resync_enabled):
            return False
        self._resync_pending = True
        if self._resync_timer is not None:
            self._resync_timer.cancel()
        self._resync_timer = self.loop.call_later(s.netlink_overrun_resync, self._resync_due)
        return True

    def _grow(self) -> None:
        if self._warned:
            return
        size = self.stats.buffer_size
        if size > self.settings.netlink_buffer_size_max_growth // 2:
            self.log("warning", "netlink event socket buffer size cannot be doubled further "
                     "since it will exceed NetlinkBufferSizeMaxGrowth. We are likely to be "
                     "losing events, this may lead to unsynchronized replicas. Please, "
                     "consider increasing netlink socket buffer size via NetlinkBufferSize "
                     "and NetlinkBufferSizeMaxGrowth clauses in conntrackd.conf")
            self._warned = True
            return
        self.stats.buffer_size = self.events_sock.set_rcvbuf(size)
        self.log("notice", "netlink event socket buffer size has been doubled to "
                 f"{self.stats.buffer_size} bytes")

    def _arm_quiet(self) -> None:
        if self._quiet_timer is not None:
            self._quiet_timer.cancel()
        self._quiet_timer = self.loop.call_later(QUIET, self._quiet_check)

    def _quiet_check(self) -> None:
        self._quiet_timer = None
        if not self._resync_pending:
            return
        if self.clock() - self._last_event < QUIET * 0.9:
            self._arm_quiet()
            return
        self._resync_due()

    def _resync_due(self) -> None:
        if not self._resync_pending:
            return
        self._resync_pending = False
        for t in (self._resync_timer, self._quiet_timer):
            if t is not None:
                t.cancel()
        self._resync_timer = self._quiet_timer = None
        # apply what is still queued first: the dump must be newer than every event
        if self.events_sock is not None:
            self.on_readable_all()
            if self._resync_pending:  # overrun again while draining: wait for quiet
                return
        self.stats.overrun_resyncs += 1
        self.resync_and_purge()

    def on_readable_all(self) -> None:
        """Read every queued event (no iteration limit)."""
        limit = self.settings.event_iteration_limit
        self.settings.event_iteration_limit = 1 << 30
        try:
            self.on_readable()
        finally:
            self.settings.event_iteration_limit = limit

    def _poll(self) -> None:
        self._poll_timer = self.loop.call_later(self.settings.poll_secs, self._poll)
        self.resync_and_purge()

    @property
    def resync_pending(self) -> bool:
        return self._resync_pending

    # --- pause (large commits) ---------------------------------------------------------------
    def _groups(self) -> list[int]:
        return [1, 2, 3] + ([4, 5, 6] if self.settings.expectations else [])

    def pause_events(self) -> None:
        """Leave the event groups and stop reading: the kernel then builds no events for
        the daemon (a large commit would overrun the socket anyway, and the kernel's work
        per created entry is smaller without listeners)."""
        sock = self.events_sock
        if sock is None:
            return
        for g in self._groups():
            sock.drop_membership(g)
        self.loop.remove_reader(sock.fileno())
        self.on_readable_all()  # what was queued before the pause

    def resume_events(self) -> None:
        """Join the groups again; what was missed meanwhile is recovered as after an
        overrun (spec §6.4: a resync once quiet, at the latest after
        ``NetlinkOverrunResync`` seconds; nothing without it)."""
        sock = self.events_sock
        if sock is None:
            return
        for g in self._groups():
            sock.add_membership(g)
        self.loop.add_reader(sock.fileno(), self.on_readable)
        if self._schedule_resync():
            self._arm_quiet()
