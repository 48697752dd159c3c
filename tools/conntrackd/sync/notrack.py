"""NOTRACK, the best-effort sync mode, as a pure state machine (wire-compatible with 1.4.7).

Public API (:class:`NotrackMachine`; shared parts in :mod:`.common`)::

    m = NotrackMachine(source, seq=int(time.time()), startup_resync=False,
                       disable_internal_cache=False, disable_external_cache=False)
    m.tick(now)                      # call once at start-up, then at m.next_deadline()
    actions = m.receive(datagram, now)   # CacheOp / Log / KernelDump / Heard
    m.enqueue(ref)                   # an internal cache object changed
    m.enqueue_message(build)         # DisableInternalCache: build(seq, flags) -> bytes
    m.request_resync(); m.send_bulk()    # -n, -B
    for d in m.flush(now): channel.send(d)

As in the C daemon (conntrackd.md §5.11): no acknowledgements, no HELLO; every queued
object is sent once (its current state) and released; ALIVE 1 s after the last transmit
run; sequence numbers are tracked for the statistics only; a RESYNC is answered with a
bulk of the internal cache, or with ``DisableInternalCache`` with :class:`KernelDump`
(the integrator sends the kernel table, every entry as CT NEW, through
:meth:`~.common.Machine.enqueue_message`); anything but data, RESYNC and ALIVE (an
FTFW ACK, say) is a malformed header. Unlike 1.4.7, messages built outside the cache
leave at the next :meth:`flush` instead of waiting up to a second for the next run.
"""
from __future__ import annotations

from ..wire import constants as K
from .common import (
    ALIVE_INTERVAL, BAD, CTL, DATA, DEFAULT_BUFFER, SEQ_MASK, Ctl, Direct, KernelDump, Log, Machine,
    Packer, bulk, runs,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .common import Action, Source


class NotrackMachine(Machine):
    """The NOTRACK protocol of one node (see the module docstring)."""

    mode = "notrack"

    def __init__(self, source: Source | None = None, *, seq: int = 0,
                 startup_resync: bool = False, disable_internal_cache: bool = False,
                 disable_external_cache: bool = False,
                 buffer_size: int = DEFAULT_BUFFER) -> None:
        super().__init__(source, seq=seq, buffer_size=buffer_size,
                         disable_external_cache=disable_external_cache)
        self.bypass = disable_internal_cache
        self.alive_at: float | None = None
        self.startup_resync = startup_resync

    @classmethod
    def from_config(cls, sync, source: Source | None = None, **kw) -> "NotrackMachine":
        return cls(source, startup_resync=sync.startup_resync,
                   disable_internal_cache=sync.disable_internal_cache,
                   disable_external_cache=sync.disable_external_cache, **kw)

    def _recv(self, msg, now: float, out: list[Action]) -> str:
        self.tracker.classify(msg.seq)
        if msg.is_data:
            verdict = DATA
        elif msg.type == K.NET_T_CTL and msg.flags & K.NET_F_RESYNC:
            out.append(Log("notice", "resync requested by other node"))
            out.extend(self.send_bulk())
            verdict = CTL
        elif msg.type == K.NET_T_CTL and msg.flags & K.NET_F_ALIVE:
            verdict = CTL
        else:
            return BAD
        self.tracker.update(msg.seq)
        return verdict

    def request_resync(self) -> list[Action]:
        self._queue_ctl(K.NET_F_RESYNC)
        return [Log("notice", "resync requested")]

    def send_bulk(self) -> list[Action]:
        if self.bypass:
            return [Log("notice", "sending bulk update"), KernelDump()]
        bulk(self)
        return [Log("notice", "sending bulk update")]

    def _transmit(self, entry, now: float) -> bytes | None:
        if type(entry) is Ctl:
            return entry.encode(self.next_seq())
        if type(entry) is Direct:
            return entry.build(self.next_seq(), 0)
        seq = self.seq
        msg = self._render(entry, seq, 0)
        self.source.release(entry)
        if msg is not None:
            self.next_seq()
        return msg

    def _transmit_all(self, entries: list, now: float, packer: Packer) -> None:
        """:meth:`_transmit` of each entry; the runs of objects between other entries
        are rendered by the source's ``render_many`` and released together."""
        render_many = getattr(self.source, "render_many", None)
        if render_many is None:
            return super()._transmit_all(entries, now, packer)
        for run, entry in runs(entries):
            if run:
                msgs = render_many(run, self.seq, 0)
                sent = [m for m in msgs if m is not None]
                self.seq = (self.seq + len(sent)) & SEQ_MASK
                packer.add_many(sent)
                self._release_many(run)
            if entry is not None:
                msg = self._transmit(entry, now)
                if msg is not None:
                    packer.add(msg)

    def _after_run(self, now: float) -> None:
        self.alive_at = now + ALIVE_INTERVAL

    def next_deadline(self) -> float | None:
        return 0.0 if self.alive_at is None else self.alive_at

    def tick(self, now: float) -> list[Action]:
        if self.alive_at is None:  # start-up: the first ALIVE a second later
            self.alive_at = now + ALIVE_INTERVAL
            return self.request_resync() if self.startup_resync else []
        if now >= self.alive_at:
            self.alive_at = now + ALIVE_INTERVAL
            self._queue_ctl(K.NET_F_ALIVE)
        return []
