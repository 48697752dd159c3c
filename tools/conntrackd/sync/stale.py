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

No bookkeeping per message: an entry's due time comes from the cache itself (its
``lastupdate`` stamp, set by every NEW/UPD applied, and the TIMEOUT it stores;
:func:`entry_due`), on the cache's clock, which every time given here is on too. The
candidates are found by scanning the cache every ``scan_every`` seconds (120), in steps of a
bounded number of entries so that the daemon's loop never stops for long
(:class:`Scan`); the sweep is one pass over the cache after the peer's bulk.

:class:`StaleTracker` holds the decisions: :meth:`heard` for every valid message
(``data``: a state message), :meth:`want_scan` / :meth:`scanned`, :meth:`want_resync`
and :meth:`sweep_before` at the times :meth:`next_deadline` returns.
"""
from __future__ import annotations

from itertools import islice

import struct

from ..cache import META, META_SIZE
from ..entry import _HH, CTA_TIMEOUT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..cache import Cache

GRACE = 120.0
INTERVAL = 600.0
QUIET = 5.0
ALIVE_WINDOW = 5.0
SCAN_EVERY = 120.0
_BE32 = struct.Struct(">I")
SCAN_STEP = 20000
"""Entries looked at per scan step (about 20 ms of the loop)."""


def entry_due(value: bytes, grace: float) -> float:
    """When a stored entry becomes a candidate: its ``lastupdate`` plus the TIMEOUT it
    stores (0 without one) plus ``grace``."""
    _, _, last = META.unpack_from(value)
    p = META_SIZE
    end = len(value) - 4
    while p <= end:  # the stored attributes, sorted by type
        ln, t = _HH.unpack_from(value, p)
        t &= 0x7FFF
        if t >= CTA_TIMEOUT:
            if t == CTA_TIMEOUT and ln == 8 and p + 8 <= len(value):
                return last + _BE32.unpack_from(value, p + 4)[0] + grace
            break
        if ln < 4:
            break
        p += (ln + 3) & ~3
    return last + grace


class Scan:
    """A scan of a cache in steps: the earliest due time of its entries (None: empty)."""

    __slots__ = ("_cache", "_keys", "_grace", "first")

    def __init__(self, cache: Cache, grace: float) -> None:
        self._cache = cache
        self._keys = iter(list(cache._d))
        self._grace = grace
        self.first: float | None = None

    def step(self, n: int = SCAN_STEP) -> bool:
        """Look at up to ``n`` more entries; True when the scan is complete."""
        get = self._cache._d.get
        grace = self._grace
        first = self.first
        seen = 0
        for key in islice(self._keys, n):
            seen += 1
            value = get(key)
            if value is None:
                continue
            due = entry_due(value, grace)
            if first is None or due < first:
                first = due
        self.first = first
        return seen < n


def stale_keys(cache: Cache, grace: float, before: float) -> list:
    """The keys of the entries whose due time is not after ``before``."""
    return [k for k, v in cache._d.items() if entry_due(v, grace) <= before]


class StaleTracker:
    """The decisions of the rule (see the module docstring); times on the cache's clock."""

    def __init__(self, *, grace: float = GRACE, interval: float = INTERVAL,
                 quiet: float = QUIET, alive_window: float = ALIVE_WINDOW,
                 scan_every: float = SCAN_EVERY) -> None:
        if grace <= 0:
            raise ValueError("grace must be positive")
        self.grace = grace
        self.interval = interval
        self.quiet = quiet
        self.alive_window = alive_window
        self.scan_every = scan_every
        #: the earliest due time the last complete scan found (None: no entry)
        self.first_due: float | None = None
        self.scanned_at: float | None = None
        self.heard_at: float | None = None
        self.data_at: float | None = None
        self.requested_at: float | None = None
        self._last_request: float | None = None
        self.swept = 0

    # --- input --------------------------------------------------------------------------
    def heard(self, now: float, data: bool) -> None:
        """A valid message arrived (``data``: a state message)."""
        self.heard_at = now
        if data:
            self.data_at = now

    def scanned(self, now: float, first_due: float | None) -> None:
        """A scan of the cache completed at ``now`` (:class:`Scan`)."""
        self.scanned_at = now
        self.first_due = first_due

    def clear(self) -> None:
        """The cache was emptied."""
        self.first_due = None

    # --- decisions ----------------------------------------------------------------------
    def want_scan(self, now: float) -> bool:
        """Whether a scan is due (none while a request waits for its sweep)."""
        return self.requested_at is None and (
            self.scanned_at is None or now - self.scanned_at >= self.scan_every)

    def want_resync(self, now: float) -> bool:
        """Whether to ask the peer for a resync now (and remember that we did)."""
        if self.requested_at is not None:
            return False
        if self.first_due is None or self.first_due > now:
            return False
        if self.heard_at is None or now - self.heard_at > self.alive_window:
            return False
        if self._last_request is not None and now - self._last_request < self.interval:
            return False
        self.requested_at = now
        self._last_request = now
        return True

    def sweep_before(self, now: float) -> float | None:
        """After a resync request, once the peer's bulk is over: the request's time (every
        entry due by then was not refreshed since: :func:`stale_keys`); else None."""
        t = self.requested_at
        if t is None:
            return None
        if self.data_at is None or self.data_at < t:
            if now - t > self.interval:  # no answer at all: try again later
                self.requested_at = None
            return None
        if now - self.data_at < self.quiet:
            return None
        self.requested_at = None
        self.scanned_at = None  # what is left is scanned again
        return t

    def removed(self, n: int) -> None:
        """``n`` entries were swept."""
        self.swept += n

    def next_deadline(self, now: float) -> float | None:
        """When :meth:`want_scan`, :meth:`want_resync` or :meth:`sweep_before` may change
        their answer."""
        if self.requested_at is not None:
            if self.data_at is not None and self.data_at >= self.requested_at:
                return self.data_at + self.quiet
            return self.requested_at + self.interval
        at = now if self.scanned_at is None else self.scanned_at + self.scan_every
        first = self.first_due
        if first is not None:
            if self._last_request is not None:
                first = max(first, self._last_request + self.interval)
            at = min(at, max(first, now + 1.0) if first <= now else first)
        return at
