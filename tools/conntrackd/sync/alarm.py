"""ALARM, the periodic-refresh sync mode, as a pure state machine (wire-compatible with 1.4.7).

Public API (:class:`AlarmMachine`; shared parts in :mod:`.common`)::

    m = AlarmMachine(source, seq=int(time.time()), refresh_time=60, cache_timeout=180,
                     rng=random.Random())
    m.enqueue(ref, now)              # an object was added or updated: send, (re)arm its refresh
    m.enqueue(ref, now, dead=True)   # destroyed: send its DEL, stop refreshing it
    actions = m.receive(datagram, now)   # CacheOp / Heard
    m.tick(now)                      # refresh timers and external cache expiry
    for d in m.flush(now): channel.send(d)
    m.next_deadline()

As in the C daemon (conntrackd.md §5.12): no control messages at all; every internal
object has a refresh timer, armed when it is added, re-armed on every update and every
firing, to ``random() % RefreshTime + 1`` seconds plus ``(random() % 5 + 1) * 200000 - 1``
microseconds; when it fires the object is sent again (its type from its state, so
usually NEW). A received message with any flag set is ignored; anything else is data
(a type above EXP_DEL counts as "Bad message type"); sequence numbers are not tracked
(1.4.7 never records one, so its counters stay 0). Each external entry expires
``CacheTimeout`` seconds after its last NEW or UPDATE: :meth:`tick` returns a
``CacheOp("delete", ..., expired=True)`` for it. ``-n`` and ``-B`` do nothing.
"""
from __future__ import annotations

import heapq
import random

from .common import DATA, CTL, DEFAULT_BUFFER, CacheOp, Machine

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .common import Action, Source

CT_KEY = (0, 1, 2, 3, 22, 23, 24, 32)
"""Attributes that identify a conntrack: the original tuple (ICMP id/type/code) and zone."""
EXP_KEY = (0, 1, 2, 3, 4, 5, 6, 7)
"""Attributes that identify an expectation: the master and expected tuples."""


def entry_key(op: CacheOp) -> tuple:
    """The identity of the entry a message is about, from its unpacked values."""
    slots = op.shape.slots
    v = op.values
    key: list = [op.expect]
    for a in (EXP_KEY if op.expect else CT_KEY):
        s = slots.get(a)
        key.append(None if s is None else v[s.index:s.index + s.count])
    return tuple(key)


class AlarmMachine(Machine):
    """The ALARM protocol of one node (see the module docstring)."""

    mode = "alarm"

    def __init__(self, source: Source | None = None, *, seq: int = 0, refresh_time: int = 60,
                 cache_timeout: int = 180, disable_external_cache: bool = False,
                 buffer_size: int = DEFAULT_BUFFER, rng: random.Random | None = None) -> None:
        super().__init__(source, seq=seq, buffer_size=buffer_size,
                         disable_external_cache=disable_external_cache)
        self.refresh_time = max(1, refresh_time)
        self.cache_timeout = cache_timeout
        self.rng = rng if rng is not None else random.Random()
        self._refresh: dict = {}            # ref -> deadline
        self._rheap: list = []              # (deadline, n, ref), stale entries skipped
        self._expiry: dict = {}             # entry key -> (deadline, last CacheOp)
        self._eheap: list = []              # (deadline, n, key)
        self._n = 0

    @classmethod
    def from_config(cls, sync, source: Source | None = None, **kw) -> "AlarmMachine":
        return cls(source, refresh_time=sync.refresh_time, cache_timeout=sync.cache_timeout, **kw)

    def delay(self) -> float:
        """The refresh delay of the C daemon (seconds)."""
        r = self.rng.randrange
        return r(self.refresh_time) + 1 + ((r(5) + 1) * 200000 - 1) / 1e6

    # --- local objects ------------------------------------------------------------------------
    def enqueue(self, ref, now: float | None = None, dead: bool = False) -> None:
        if dead:
            self._refresh.pop(ref, None)
        elif now is not None:
            self._arm(ref, now + self.delay())
        super().enqueue(ref)

    def forget(self, ref) -> None:
        """The object left the internal cache without a message (a flush)."""
        self._refresh.pop(ref, None)

    def _arm(self, ref, when: float) -> None:
        self._refresh[ref] = when
        self._n += 1
        heapq.heappush(self._rheap, (when, self._n, ref))

    # --- receiving ---------------------------------------------------------------------------
    def _recv(self, msg, now: float, out: list[Action]) -> str:
        return CTL if msg.flags else DATA

    def _apply(self, op: CacheOp, now: float, out: list[Action]) -> None:
        out.append(op)
        if op.inject:
            return
        key = entry_key(op)
        if op.op == "delete":
            self._expiry.pop(key, None)
            return
        when = now + self.cache_timeout
        self._expiry[key] = (when, op)
        self._n += 1
        heapq.heappush(self._eheap, (when, self._n, key))

    # --- sending ------------------------------------------------------------------------------
    def _transmit(self, entry, now: float) -> bytes | None:
        seq = self.seq
        msg = self._render(entry, seq, 0)
        self.source.release(entry)
        if msg is not None:
            self.next_seq()
        return msg

    # --- timers -------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        t = None
        while self._rheap:
            when, _, ref = self._rheap[0]
            if self._refresh.get(ref) == when:
                t = when
                break
            heapq.heappop(self._rheap)
        while self._eheap:
            when, _, key = self._eheap[0]
            cur = self._expiry.get(key)
            if cur is not None and cur[0] == when:
                t = when if t is None else min(t, when)
                break
            heapq.heappop(self._eheap)
        return t

    def tick(self, now: float) -> list[Action]:
        out: list[Action] = []
        while self._rheap and self._rheap[0][0] <= now:
            when, _, ref = heapq.heappop(self._rheap)
            if self._refresh.get(ref) != when:
                continue
            self._arm(ref, now + self.delay())
            super().enqueue(ref)
        while self._eheap and self._eheap[0][0] <= now:
            when, _, key = heapq.heappop(self._eheap)
            cur = self._expiry.get(key)
            if cur is None or cur[0] != when:
                continue
            del self._expiry[key]
            last = cur[1]
            out.append(CacheOp("delete", last.expect, False, last.payload, last.shape,
                               last.values, expired=True))
        return out
