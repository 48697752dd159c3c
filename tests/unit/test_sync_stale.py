"""The bounded external cache rule of FTFW/NOTRACK (:mod:`...sync.stale`), in virtual
time: candidates after TIMEOUT + grace, a resync only while the peer talks, the sweep
once its bulk is over, and nothing swept for a silent peer."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from conntrack_tools.conntrackd.sync.stale import StaleTracker


def tracker() -> StaleTracker:
    return StaleTracker(grace=10, interval=100, quiet=2, alive_window=5)


def test_fresh_entries_are_no_candidates() -> None:
    t = tracker()
    t.refreshed(b"a", 0, 30)
    t.heard(39, False)
    assert not t.want_resync(39)
    assert t.next_deadline(39) == 40


def test_stale_entry_is_swept_after_a_resync_that_does_not_bring_it() -> None:
    t = tracker()
    t.refreshed(b"gone", 0, 30)
    t.refreshed(b"live", 0, 30)
    t.heard(41, False)
    assert t.want_resync(41)
    assert not t.want_resync(41.5)       # one request at a time
    t.refreshed(b"live", 41.2, 30)        # the bulk brings it again
    t.heard(41.2, True)
    assert t.sweep(42) == []             # the bulk may still be running
    assert t.next_deadline(42) == 43.2
    assert t.sweep(43.3) == [b"gone"]
    assert list(t.last) == [b"live"]
    assert t.swept == 1


def test_a_silent_peer_keeps_its_entries() -> None:
    t = tracker()
    t.refreshed(b"a", 0, 30)
    t.heard(1, True)
    assert not t.want_resync(1000)       # nothing heard for long: the peer is gone
    assert t.sweep(1000) == []
    assert len(t) == 1


def test_deleted_entries_are_forgotten() -> None:
    t = tracker()
    t.refreshed(b"a", 0, 30)
    t.removed(b"a")
    t.heard(100, False)
    assert not t.want_resync(100)
    assert t.next_deadline(100) is None


def test_requests_are_rate_limited_and_retried_without_answer() -> None:
    t = tracker()
    t.refreshed(b"a", 0, 0)
    t.heard(20, False)
    assert t.want_resync(20)
    t.heard(60, False)                    # only ALIVEs: no answer to the RESYNC
    assert t.sweep(60) == []
    assert t.sweep(121) == []             # given up after `interval`
    t.heard(121, False)
    assert t.want_resync(121)


def test_entry_refreshed_after_the_request_survives() -> None:
    t = tracker()
    t.refreshed(b"a", 0, 0)
    t.heard(20, False)
    assert t.want_resync(20)
    t.refreshed(b"a", 20.5, 0)
    t.heard(20.5, True)
    assert t.sweep(30) == []
    assert b"a" in t.last


def test_heap_stays_bounded_under_many_updates() -> None:
    t = tracker()
    for i in range(10000):
        t.refreshed(b"a", i, 1000)
    assert len(t._heap) <= 2 * len(t.last) + 1025


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([b"a", b"b", b"c", b"d"]), st.integers(0, 50),
                          st.none() | st.integers(0, 100), st.booleans()), max_size=60))
def test_first_candidate_is_the_earliest_due_time(ops) -> None:
    """Refreshes that move a due time later push nothing on the heap: the earliest due
    time is still found, whatever the order of refreshes, removals and lookups, and the
    timer deadline is never after it."""
    t = tracker()
    for key, now, timeout, remove in ops:
        if remove:
            t.removed(key)
        else:
            t.refreshed(key, now, timeout)
        want = min((due for due in t.last.values()), default=None)
        deadline = t.next_deadline(now)  # may be early (a lower bound), never late
        if want is not None:
            assert deadline is not None and deadline <= max(want, now + 1.0)
        assert t._first_candidate() == want
