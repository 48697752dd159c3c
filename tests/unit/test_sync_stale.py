"""The bounded external cache rule of FTFW/NOTRACK (:mod:`...sync.stale`), in virtual
time: due times read from the cache's own entries, the scan in steps, candidates after
TIMEOUT + grace, a resync only while the peer talks, the sweep once its bulk is over,
and nothing swept for a silent peer."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conntrack_tools.conntrackd.cache import Cache
from conntrack_tools.conntrackd.entry import parse
from conntrack_tools.conntrackd.sync.stale import Scan, StaleTracker, entry_due, stale_keys
from ctnetlink.encode import encode_flow

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.syncsim import make_flow  # noqa: E402

GRACE = 10


class World:
    """An external cache on a virtual clock, as the replication keeps it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.cache = Cache("external", clock=lambda: self.now)
        self.tracker = StaleTracker(grace=GRACE, interval=100, quiet=2, alive_window=5)

    def refresh(self, i: int, timeout: int | None, at: float) -> bytes:
        """A NEW/UPD of flow ``i`` (TIMEOUT ``timeout``) applied at ``at``."""
        self.now = at
        body = encode_flow(make_flow(i).copy(timeout=timeout))
        raw = struct.pack("=IHHIIBBH", 20 + len(body), 0x100, 0, 0, 0, 2, 0, 0) + body
        p = parse(raw, 0, len(raw))
        self.cache.update_force(p)
        return p.key

    def scan(self, at: float) -> None:
        self.now = at
        s = Scan(self.cache, GRACE)
        while not s.step(2):
            pass
        self.tracker.scanned(at, s.first)

    def sweep(self, at: float) -> list:
        self.now = at
        before = self.tracker.sweep_before(at)
        return [] if before is None else stale_keys(self.cache, GRACE, before)


def test_an_entrys_due_time_is_its_last_update_plus_timeout_plus_grace() -> None:
    w = World()
    k = w.refresh(1, 30, 100.0)
    assert entry_due(w.cache.get(k), GRACE) == 100 + 30 + GRACE
    w.refresh(1, 50, 150.0)
    assert entry_due(w.cache.get(k), GRACE) == 150 + 50 + GRACE
    k2 = w.refresh(2, None, 160.0)
    assert entry_due(w.cache.get(k2), GRACE) == 160 + GRACE


def test_the_scan_finds_the_earliest_due_time_in_steps() -> None:
    w = World()
    for i, (timeout, at) in enumerate([(300, 0.0), (30, 5.0), (100, 1.0), (None, 7.0)]):
        w.refresh(i, timeout, at)
    s = Scan(w.cache, GRACE)
    assert not s.step(2)
    w.cache.delete(next(iter(w.cache)))  # removed while the scan runs: skipped
    assert s.step(2) or s.step(2)
    assert s.first == 7 + GRACE
    assert Scan(Cache("empty"), GRACE).step() and Scan(Cache("empty"), GRACE).first is None


def test_fresh_entries_are_no_candidates() -> None:
    w = World()
    w.refresh(1, 30, 0.0)
    assert w.tracker.want_scan(0.0)
    w.scan(0.0)
    assert not w.tracker.want_scan(1.0)
    w.tracker.heard(39, False)
    assert not w.tracker.want_resync(39)
    assert w.tracker.next_deadline(39) == 40


def test_stale_entry_is_swept_after_a_resync_that_does_not_bring_it() -> None:
    w = World()
    gone = w.refresh(1, 30, 0.0)
    live = w.refresh(2, 30, 0.0)
    w.scan(41)
    t = w.tracker
    t.heard(41, False)
    assert t.want_resync(41)
    assert not t.want_resync(41.5)       # one request at a time
    assert not t.want_scan(41.5)
    w.refresh(2, 30, 41.2)               # the bulk brings it again
    t.heard(41.2, True)
    assert w.sweep(42) == []             # the bulk may still be running
    assert t.next_deadline(42) == 43.2
    assert w.sweep(43.3) == [gone]
    assert live not in w.sweep(43.3)
    assert t.want_scan(43.3)             # what is left is scanned again


def test_a_silent_peer_keeps_its_entries() -> None:
    w = World()
    w.refresh(1, 30, 0.0)
    w.tracker.heard(1, True)
    w.scan(1000)
    assert not w.tracker.want_resync(1000)  # nothing heard for long: the peer is gone
    assert w.sweep(1000) == []


def test_an_empty_cache_asks_nothing() -> None:
    w = World()
    w.scan(100)
    w.tracker.heard(100, False)
    assert not w.tracker.want_resync(100)
    assert w.tracker.next_deadline(100) == 100 + w.tracker.scan_every


def test_requests_are_rate_limited_and_retried_without_answer() -> None:
    w = World()
    w.refresh(1, 0, 0.0)
    w.scan(20)
    t = w.tracker
    t.heard(20, False)
    assert t.want_resync(20)
    t.heard(60, False)                    # only ALIVEs: no answer to the RESYNC
    assert w.sweep(60) == []
    assert w.sweep(121) == []             # given up after `interval`
    t.heard(121, False)
    assert t.want_resync(121)


def test_entry_refreshed_after_the_request_survives() -> None:
    w = World()
    k = w.refresh(1, 0, 0.0)
    w.scan(20)
    w.tracker.heard(20, False)
    assert w.tracker.want_resync(20)
    w.refresh(1, 0, 20.5)
    w.tracker.heard(20.5, True)
    assert w.sweep(30) == []
    assert k in w.cache


def test_grace_must_be_positive() -> None:
    with pytest.raises(ValueError):
        StaleTracker(grace=0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.none() | st.integers(0, 100),
                          st.integers(0, 50), st.booleans()), max_size=40),
       st.integers(1, 4), st.integers(0, 200))
def test_scan_and_sweep_agree_with_the_entries(ops, step, before) -> None:
    """Whatever the refreshes and removals: the scan's first due time is the earliest of
    the entries', the deadline is never after it, and the sweep takes exactly the
    entries due by the request."""
    w = World()
    for i, timeout, at, remove in sorted(ops, key=lambda o: o[2]):
        key = w.refresh(i, timeout, float(at))
        if remove:
            w.cache.delete(key)
    dues = {k: entry_due(w.cache.get(k), GRACE) for k in w.cache}
    s = Scan(w.cache, GRACE)
    while not s.step(step):
        pass
    assert s.first == min(dues.values(), default=None)
    w.tracker.scanned(w.now, s.first)
    deadline = w.tracker.next_deadline(w.now)
    if s.first is not None:
        assert deadline <= max(s.first, w.now + 1.0)
    assert sorted(stale_keys(w.cache, GRACE, before)) == sorted(
        k for k, d in dues.items() if d <= before)
