"""The bounded external cache of FTFW and NOTRACK: a pure rule, no sockets, no clock.

1.4.7 never expires an external entry in FTFW or NOTRACK: a DEL that is lost for good
(a C peer's resend queue emptied by a HELLO, a peer that died or restarted before the DEL
left, NOTRACK loss) leaves the entry in the backup's external cache until a flush, and a
long-running pair grows without limit (openwrt/packages #17148). A received entry is
not simply expired after its TIMEOUT: ctnetlink reports no timeout refresh, so a
long-lived UDP stream or an established TCP connection with traffic stays alive on the
peer without a single message. The rule (documented in ``docs/conntrackd-sync.md``):

1. An entry becomes a *candidate* when no NEW/UPD refreshed it for longer than the
   TIMEOUT it last carried plus ``grace`` seconds.
2. When candidates exist and the peer is talking (it sent something within
   ``alive_window`` seconds), the replication asks it for a resync (a plain RESYNC
   control message a C peer answers with its bulk), at most once every ``interval``
   seconds.
3. Once the peer has sent no state message for ``quiet`` seconds after that request (its
   bulk is over) and at least one message arrived after the request, every candidate that
   was not refreshed since the request is removed: the peer no longer has it.

A silent (dead) peer's entries are never swept: they are what a commit needs.

:class:`StaleTracker` keeps the bookkeeping: :meth:`refreshed` / :meth:`removed` as
messages are applied, :meth:`heard` for every valid message (``data``: a state message),
:meth:`want_resync` and :meth:`sweep` at the times :meth:`next_deadline` returns.
"""
from __future__ import annotations

import heapq

_INF = float("inf")
GRACE = 120.0
INTERVAL = 600.0
QUIET = 5.0
ALIVE_WINDOW = 5.0


class StaleTracker:
    """External-entry freshness (see the module docstring)."""

    def __init__(self, *, grace: float = GRACE, interval: float = INTERVAL,
                 quiet: float = QUIET, alive_window: float = ALIVE_WINDOW) -> None:
        self.grace = grace
        self.interval = interval
        self.quiet = quiet
        self.alive_window = alive_window
        if grace <= 0:
            raise ValueError("grace must be positive")
        self.last: dict = {}          # key -> candidate from (its due time)
        self._heap: list = []         # (candidate from, key), stale pairs skipped
        #: keys added since the heap last took them in (a heap push per new key is most
        #: of the cost of a bulk's bookkeeping), and the earliest of their due times
        self._new: list = []
        self._new_min = _INF
        self.heard_at: float | None = None
        self.data_at: float | None = None
        self.requested_at: float | None = None
        self._last_request: float | None = None
        self.swept = 0

    def __len__(self) -> int:
        return len(self.last)

    # --- input --------------------------------------------------------------------------
    def refreshed(self, key, now: float, timeout: int | None) -> None:
        """A NEW/UPD for ``key`` was applied at ``now`` (``timeout``: its TIMEOUT, None
        when it carried none: then only ``grace`` counts)."""
        due = now + (timeout or 0) + self.grace
        last = self.last
        old = last.get(key)
        last[key] = due
        # the heap holds, for every key, an entry no later than its due time (one that
        # is earlier is pushed again with the due time when it comes up): a refresh
        # that moves the due time later, the common case, pushes nothing
        if old is None:
            self._new.append(key)
            if due < self._new_min:
                self._new_min = due
            if len(self._new) > len(last) + 1024:
                self.compact()
        elif due < old:
            heapq.heappush(self._heap, (due, id(key), key))
            self.compact()

    def compact(self) -> None:
        """Rebuild the heap when stale pairs (or keys removed and added again) make up
        most of it."""
        if len(self._heap) + len(self._new) > 2 * len(self.last) + 1024:
            self._heap = [(d, id(k), k) for k, d in self.last.items()]
            heapq.heapify(self._heap)
            self._new.clear()
            self._new_min = _INF

    def _merge(self) -> None:
        """The new keys into the heap (with their current due times)."""
        last = self.last
        self._heap.extend((last[k], id(k), k) for k in self._new if k in last)
        heapq.heapify(self._heap)
        self._new.clear()
        self._new_min = _INF

    def removed(self, key) -> None:
        self.last.pop(key, None)

    def clear(self) -> None:
        self.last.clear()
        self._heap.clear()
        self._new.clear()
        self._new_min = _INF

    def heard(self, now: float, data: bool) -> None:
        """A valid message arrived (``data``: a state message)."""
        self.heard_at = now
        if data:
            self.data_at = now

    # --- decisions ----------------------------------------------------------------------
    def _first_candidate(self, now: float | None = None) -> float | None:
        """The earliest due time; with ``now``, a due time still to come may be a
        lower bound (the heap is cleaned when it comes: one early wake-up at most,
        instead of work at every call while a bulk refreshes every entry)."""
        if self._new and (now is None or self._new_min <= now):
            self._merge()
        first = self._heap_first(now)
        if self._new and (first is None or self._new_min < first):
            return self._new_min  # (only with now: a lower bound still to come)
        return first

    def _heap_first(self, now: float | None) -> float | None:
        heap = self._heap
        while heap:
            due, _, key = heap[0]
            if now is not None and due > now:
                return due
            cur = self.last.get(key)
            if cur == due:
                return due
            if cur is not None and cur > due:  # refreshed since: its later due time
                heapq.heapreplace(heap, (cur, id(key), key))
            else:
                heapq.heappop(heap)
        return None

    def want_resync(self, now: float) -> bool:
        """Whether to ask the peer for a resync now (and remember that we did)."""
        if self.requested_at is not None:
            return False
        first = self._first_candidate(now)  # a lower bound when later than now
        if first is None or first > now:
            return False
        if self.heard_at is None or now - self.heard_at > self.alive_window:
            return False
        if self._last_request is not None and now - self._last_request < self.interval:
            return False
        self.requested_at = now
        self._last_request = now
        return True

    def sweep(self, now: float) -> list:
        """After a resync request: once the peer's bulk is over, the keys to remove."""
        t = self.requested_at
        if t is None:
            return []
        if self.data_at is None or self.data_at < t:
            if now - t > self.interval:  # no answer at all: try again later
                self.requested_at = None
            return []
        if now - self.data_at < self.quiet:
            return []
        self.requested_at = None
        out = []
        for key, due in self.last.items():
            if due <= t:  # (refreshed before t: a due time is later than its refresh)
                out.append(key)
        for key in out:
            del self.last[key]
        self.swept += len(out)
        return out

    def next_deadline(self, now: float) -> float | None:
        """When :meth:`want_resync` or :meth:`sweep` may change their answer."""
        if self.requested_at is not None:
            if self.data_at is not None and self.data_at >= self.requested_at:
                return self.data_at + self.quiet
            return self.requested_at + self.interval
        first = self._first_candidate(now)
        if first is None:
            return None
        if self._last_request is not None:
            first = max(first, self._last_request + self.interval)
        return max(first, now + 1.0) if first <= now else first
