"""The replication stage of sync mode: channels, a protocol machine and the caches wired
together on the daemon's loop (conntrackd.md §5, §6.5-§6.13, §7).

:class:`Replication` is built after the kernel side has filled the internal cache::

    rep = Replication(mode, config.sync, loop, log, kernel=kernel,
                      iteration_limit=config.general.event_iteration_limit)
    rep.open()          # raises ChannelError (already logged) when a channel cannot open
    ...
    rep.close()

It replaces the hooks :class:`~.syncmode.SyncMode` leaves for it:

* ``mode.send(cache, key, type)`` queues the entry in the machine (which holds a cache
  reference on it until it is sent, or acknowledged in FTFW), ``mode.send_bypass``
  (NOTRACK ``DisableInternalCache``) queues a message built from the event at once;
* ``mode.links`` gives the real ``-s``/``-s network``/``-s link``/``-s queue``/
  ``-s rsqueue`` figures (:class:`~.channels.links.ChannelLinks`);
* ``mode.expires`` the ``[expires in Ns]`` of ALARM's ``-e``;
* ``mode.handle`` answers ``-n`` (23) and ``-B`` (22) first, and ``-e`` without reply
  tuples as 1.4.7 prints its external cache (a sync message carries none), then the
  mode's own handler.

Received datagrams (TCP: complete messages) go through the machine; its actions are
applied here: state messages to the external caches (:func:`.sync.source.apply`) or,
with ``DisableExternalCache``, to the kernel (:class:`.inject.Injector`); ``Heard``
makes the receiving channel the current one (link fail-over); log lines go to the
daemon's log. The machine's timers run from the loop clock: one loop timer at
:meth:`~.sync.common.Machine.next_deadline`, and a transmit run at the end of every loop
iteration in which something was queued (changes of one entry coalesce). A datagram
the machine cannot use is dropped and counted by it (``-s network``); an exception while
handling one goes to the daemon's error log and the daemon goes on.

External entries do not live forever: ALARM removes them ``CacheTimeout`` after their
last refresh (the machine's rule), FTFW and NOTRACK sweep those the peer no longer has
(:mod:`.sync.stale`).
"""
from __future__ import annotations

import socket
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

from . import entry as E
from . import handlers as H
from .channels import ChannelLinks, MultiChannel
from .kernel import ORIGIN_INJECT
from .sync.common import CacheOp, Heard, KernelDump, Log, StateBatch
from .sync.source import CacheSource, apply, apply_batch
from .sync.stale import Scan, StaleTracker, stale_keys
from .syncmode import NET_T_STATE_CT_DEL, NET_T_STATE_EXP_DEL
from .wire.ctsync import sync_message

SO_RCVBUFFORCE = 33
RCVBUF_DEFAULT = 32 << 20
"""The receive buffer of a datagram channel without ``RcvSocketBuffer``: 1.4.7 keeps the
system default (about 200 KiB, some 90 datagrams), which a bulk from a peer overflows at
once (a Python receiver is slower than a C sender); the kernel charges it only while
datagrams wait."""
TX_RUN = 2000
"""Queue entries sent per transmit run: a bulk (100,000 entries) leaves in parts, one
per loop iteration, so the peer processes a part while the next one is rendered, and
the peer's ACKs are read in between (1.4.7 renders and sends the whole queue in one
run; only where the channel buffer is cut at a part's end differs)."""
_LEVELS = {"ERROR": "error", "WARNING": "warning", "NOTICE": "notice"}


class _Source(CacheSource):
    """The internal caches as the machine's source; tells ALARM to stop refreshing an
    object that disappeared without a message (a flush)."""

    machine: Any = None

    def render(self, ref: tuple, seq: int, flags: int) -> bytes | None:
        msg = super().render(ref, seq, flags)
        if msg is None and self.machine is not None and hasattr(self.machine, "forget"):
            self.machine.forget(ref)
        return msg

    def render_many(self, refs: list[tuple], seq: int, flags: int) -> list[bytes | None]:
        """:meth:`render` of each (ALARM forgets the gone ones)."""
        out = super().render_many(refs, seq, flags)
        forget = getattr(self.machine, "forget", None)
        if forget is not None:
            for ref, msg in zip(refs, out):
                if msg is None:
                    forget(ref)
        return out


def make_machine(sync: Any, source: Any, *, buffer_size: int, seq: int | None = None) -> Any:
    """The protocol machine of the configured mode."""
    seq = int(time.time()) if seq is None else seq
    if sync.mode == "notrack":
        from .sync.notrack import NotrackMachine

        return NotrackMachine.from_config(sync, source, seq=seq, buffer_size=buffer_size)
    if sync.mode == "alarm":
        from .sync.alarm import AlarmMachine

        return AlarmMachine.from_config(sync, source, seq=seq, buffer_size=buffer_size,
                                        disable_external_cache=sync.disable_external_cache)
    from .sync.ftfw import FtfwMachine

    return FtfwMachine.from_config(sync, source, seq=seq, buffer_size=buffer_size)


class Replication:
    """Sync mode's replication on a loop (see the module docstring)."""

    def __init__(self, mode: Any, sync: Any, loop: Any, log: Callable[[str, str], None], *,
                 kernel: Any = None, iteration_limit: int = 100,
                 on_error: Callable[[BaseException], Any] | None = None,
                 socket_factory: Callable[..., Any] | None = None,
                 monitor: bool = True, stale: StaleTracker | None = None) -> None:
        self.mode = mode
        self.sync = sync
        self.loop = loop
        self.log = log
        self.kernel = kernel
        self.iteration_limit = iteration_limit
        self.on_error = on_error or getattr(loop, "on_error", None)
        self.socket_factory = socket_factory
        self.monitor = monitor
        s = mode.settings
        self.exp_sync = bool(s.expectation_sync)
        self.source = _Source(mode.internal, mode.internal_exp if self.exp_sync else None,
                              window_tracking=sync.tcp_window_tracking,
                              commit_timeout=bool(sync.commit_timeout))
        self.channels = MultiChannel.from_config(sync, clock=loop.time)
        self.machine: Any = None
        self.injector: Any = None
        self.alarm = sync.mode == "alarm"
        self._alarm_exp: dict[bytes, float] = {}
        self.stale = None if self.alarm or s.disable_external_cache else \
            (stale if stale is not None else StaleTracker())
        self._timer: Any = None
        self._timer_at: float | None = None
        self._kicked = False
        self._scan: Scan | None = None  # the stale rule's scan of the external cache
        self._closed = False

    # --- life cycle ---------------------------------------------------------------------------
    def open(self) -> None:
        """Open the channels (and the injection socket) and plug into the mode."""
        ch = self.channels
        ch.open(self.loop, self._deliver, log=self.log, iteration_limit=self.iteration_limit,
                on_error=self.on_error, monitor=self.monitor,
                socket_factory=self.socket_factory)
        for c in ch:
            rx = getattr(c, "rx", None)
            if rx is not None and not c.conf.rcvbuf:
                try:
                    rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_DEFAULT // 2)
                    c.rcvbuf = rx.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                except OSError:
                    pass  # without CAP_NET_ADMIN: the system default
        self.machine = m = make_machine(self.sync, self.source, buffer_size=ch.buffer_size)
        self.source.machine = m
        m.batch_states = not self.alarm
        ch.on_switch = self._switched
        mode = self.mode
        if mode.settings.disable_external_cache and self.kernel is not None:
            from ctnetlink.client import Conntrack

            from .inject import Injector

            client = Conntrack(self.kernel._socket())
            self.kernel.register_origin(client.sock.portid, ORIGIN_INJECT)
            self.injector = Injector(client, mode.inject, self.log,
                                     window_tracking=self.sync.tcp_window_tracking)
        mode.send = self.send
        mode.send_bypass = self.send_bypass
        mode.expires = self.expires
        mode.links = ChannelLinks(mode.settings, ch, m)
        handle = mode.handle
        mode.handle = lambda code: self.handle(code, handle)
        self._kick()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            if self.machine is not None and self.machine.pending():
                self.channels.send_all(self.machine.flush(self.loop.time()))
        except Exception:  # noqa: BLE001 - closing regardless
            pass
        self.channels.close()
        if self.injector is not None:
            self.injector.client.close()
            self.injector = None

    def _switched(self, channel: Any) -> None:
        if self.machine is not None and channel.buffer_size:
            self.machine.buffer_size = channel.buffer_size

    # --- hooks of SyncMode --------------------------------------------------------------------
    def send(self, cache: Any, key: bytes, msg_type: int) -> None:
        m = self.machine
        if m is None:
            return
        dead = msg_type in (NET_T_STATE_CT_DEL, NET_T_STATE_EXP_DEL)
        if cache.kind == "exp" and not self.exp_sync:
            return
        m.enqueue((cache, key), self.loop.time(), dead)
        self._kick()

    def send_bypass(self, msg_type: int, p: E.Parsed) -> None:
        m = self.machine
        if m is None:
            return
        msg = E.message(p.key, p.family, E.join(p.attrs), p.mirrored)
        m.enqueue_message(self._builder(msg, msg_type))
        self._kick()

    def _builder(self, msg: bytes, msg_type: int) -> Callable[[int, int], bytes]:
        wt = self.sync.tcp_window_tracking
        ct = bool(self.sync.commit_timeout)

        def build(seq: int, flags: int) -> bytes:
            return sync_message(msg, 0, len(msg), msg_type, seq, flags, window_tracking=wt,
                                commit_timeout=ct)
        return build

    def expires(self, key: bytes) -> int | None:
        when = self._alarm_exp.get(key)
        if when is None:
            return None
        return max(0, int(when - self.loop.time()))

    def handle(self, code: int, inner: Callable[[int], Iterable[bytes] | None]
               ) -> Iterable[bytes] | None:
        """``-B`` and ``-n`` (nothing in ALARM), then the mode's handler."""
        if code in (H.SEND_BULK, H.REQUEST_DUMP):
            if self.machine is not None and not self.alarm:
                if code == H.SEND_BULK:
                    self._actions(self.machine.send_bulk(), None)
                else:
                    self._actions(self.machine.request_resync(), None)
                self._kick()
            return ()
        if code in (H.CT_DUMP_EXTERNAL, H.CT_DUMP_EXT_XML) \
                and not self.mode.settings.disable_external_cache:
            from . import output as O

            mode = self.mode
            return O.dump_cache(mode.external, xml=code == H.CT_DUMP_EXT_XML,
                                hide_dead=self.sync.mode == "ftfw", now=mode.clock(),
                                expires=self.expires, reply=False)
        return inner(code)

    # --- receiving ----------------------------------------------------------------------------
    def _deliver(self, channel: Any, data: bytes) -> None:
        m = self.machine
        if m is None:
            return
        now = self.loop.time()
        self._actions(m.receive(data, now), channel, now)
        if m.pending():
            self._kick()
        self._arm()

    def _actions(self, actions: list, channel: Any, now: float | None = None) -> None:
        if not actions:
            return
        if now is None:
            now = self.loop.time()
        data = False
        for a in actions:
            t = type(a)
            if t is StateBatch:
                data = True
                self._apply_batch(a, now)
            elif t is CacheOp:
                data = True
                self._apply(a, now)
            elif t is Heard:
                if channel is not None:
                    self.channels.set_current(channel)
                if self.stale is not None:
                    self.stale.heard(self.mode.external.clock(), data)
            elif t is Log:
                self.log(_LEVELS.get(a.level, a.level), a.message)
            elif t is KernelDump:
                self._kernel_dump()

    def _apply(self, op: CacheOp, now: float) -> None:
        if op.inject:
            if self.injector is not None:
                self.injector.apply(op)
            return
        mode = self.mode
        key = apply(op, mode.external, mode.external_exp if self.exp_sync else None)
        if key is None or op.expect:
            return
        if self.alarm:
            if op.op == "delete":
                self._alarm_exp.pop(key, None)
            else:
                self._alarm_exp[key] = now + self.sync.cache_timeout
            return

    def _apply_batch(self, batch: StateBatch, now: float) -> None:
        """A batch of conntrack state messages (FTFW with an external cache)."""
        if self.alarm:  # (ALARM returns no batches)
            for op in batch.ops():
                self._apply(op, now)
            return
        apply_batch(batch.items, self.mode.external)

    def _kernel_dump(self) -> None:
        """NOTRACK ``DisableInternalCache`` answering a RESYNC: the kernel table, as NEW."""
        k = self.kernel
        if k is None or k.ct is None or self.machine is None:
            return
        for buf, off, ln in k.filtered_dump():
            self.machine.enqueue_message(self._builder(bytes(buf[off:off + ln]), 0))
        self._kick()

    # --- transmit runs and timers ---------------------------------------------------------------
    def _kick(self) -> None:
        """A transmit run at the end of this loop iteration."""
        if not self._kicked and not self._closed:
            self._kicked = True
            self.loop.call_later(0, self._service)

    def _service(self) -> None:
        self._kicked = False
        if self._closed or self.machine is None:
            return
        m = self.machine
        now = self.loop.time()
        due = m.next_deadline()
        if due is not None and due <= now:
            self._actions(m.tick(now), None, now)
        self._stale_check(now)
        if m.pending():
            out = m.flush(now, TX_RUN)
            if out:
                self.channels.send_all(out)
            if m.pending():  # a bulk: the rest in the next iterations, the peer starts
                self._kick()  # on this part meanwhile (and its ACKs are read)
        self._arm()

    def _stale_check(self, now: float) -> None:
        """The bounded external cache (:mod:`.sync.stale`), on the cache's clock: a scan
        step when one is due or running (the next one in the next loop iteration), the
        resync request, the sweep after the peer's bulk."""
        st = self.stale
        if st is None:
            return
        ext = self.mode.external
        wall = ext.clock()
        scan = self._scan
        if scan is None and st.want_scan(wall):
            scan = self._scan = Scan(ext, st.grace)
        if scan is not None:
            if scan.step():
                self._scan = None
                st.scanned(wall, scan.first)
            else:
                self._kick()
        if st.want_resync(wall):
            self.log("notice", "external cache: asking the peer which entries it still has")
            self._actions(self.machine.request_resync(), None, now)
        before = st.sweep_before(wall)
        if before is not None:
            n = sum(1 for key in stale_keys(ext, st.grace, before) if ext.delete(key))
            st.removed(n)
            if n:
                self.log("notice", f"external cache: {n} entries the peer no longer has "
                                   "removed")

    def _arm(self) -> None:
        if self._closed or self.machine is None:
            return
        due = self.machine.next_deadline()
        if self.stale is not None:
            wall = self.mode.external.clock()
            s = self.stale.next_deadline(wall)
            if s is not None:  # from the cache's clock to the loop's
                s = self.loop.time() + (s - wall)
                due = s if due is None else min(due, s)
        if due is None:
            return
        if self._timer is not None:
            if self._timer_at is not None and self._timer_at <= due:
                return
            self._timer.cancel()
        self._timer_at = due
        self._timer = self.loop.call_at(due, self._fired)

    def _fired(self) -> None:
        self._timer = None
        self._timer_at = None
        self._service()

    # --- figures --------------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        d = self.channels.as_dict()
        if self.machine is not None:
            d["network"] = self.machine.stats.as_dict()
        if self.stale is not None:
            d["external_swept"] = self.stale.swept
        return d
