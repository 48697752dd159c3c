"""``Listener``: the event socket in an outside loop, and the repair of overruns.

A ``selectors`` loop multiplexes the listener with a pipe (both kinds of input arrive,
and an idle loop sleeps). A tiny receive buffer and a burst of creations, updates and
deletions force an overrun; with ``resync=True`` the consumer's view (events applied in
order) must end equal to the kernel's table, through the blocking iterator, the
non-blocking ``read_events`` and the asyncio iterator.
"""
from __future__ import annotations

import asyncio
import os
import selectors
import time

import pytest

from ctnetlink.aio import AsyncConntrack
from ctnetlink.client import Conntrack
from ctnetlink.constants import Group
from ctnetlink.events import EventReader
from ctnetlink.model import EventType, Flow, Tuple
from nfnl.socket import NetlinkSocket


def flow(i: int, net: int = 70) -> Flow:
    o = Tuple(src=f"10.{net}.{i // 250}.{i % 250 + 1}", dst="10.200.0.1", proto=17,
              sport=1000 + i % 60000, dport=53)
    return Flow(family=2, orig=o, reply=o.reversed(), timeout=300)


def key(f: Flow) -> tuple:
    return (f.family, f.orig, f.zone or 0)


class View:
    """What a consumer knows: events applied in order (NEW/UPDATE = present)."""

    def __init__(self) -> None:
        self.flows: dict[tuple, Flow] = {}
        self.lost = 0
        self.kinds: set[tuple[EventType, bool]] = set()

    def apply(self, ev) -> None:
        self.lost += ev.lost or 0
        self.kinds.add((ev.type, bool(ev.resync)))
        k = key(ev.flow)
        if ev.type is EventType.DESTROY:
            self.flows.pop(k, None)
        else:
            self.flows[k] = ev.flow

    def marks(self) -> dict[tuple, int]:
        return {k: f.mark or 0 for k, f in self.flows.items()}


def table(ct: Conntrack) -> dict[tuple, int]:
    return {key(f): f.mark or 0 for f in ct.dump()}


def burst(ct: Conntrack, known: list[Flow]) -> None:
    """Enough changes to overrun a tiny buffer, then changes that are certainly lost:
    deletions of flows the consumer knows, mark updates, more creations."""
    many = [flow(i, 71) for i in range(400)]
    assert ct.create_many(many) == [None] * len(many)
    assert ct.delete_many(known[:3]) == [None] * 3
    assert ct.delete_many(many[:150]) == [None] * 150
    assert ct.update_many([f.copy(mark=7) for f in many[150:200] + known[3:4]]) == [None] * 51
    assert ct.create_many([flow(i, 72) for i in range(20)]) == [None] * 20


def check(view: View, ct: Conntrack) -> None:
    assert view.lost > 0
    assert (EventType.DESTROY, True) in view.kinds  # the vanished known flows
    assert {(EventType.NEW, True), (EventType.UPDATE, True)} <= view.kinds
    assert view.marks() == table(ct)


# --- a selectors loop --------------------------------------------------------------------------

def test_selector_loop_multiplexes_events_and_a_pipe(ns, ct) -> None:
    src = ct.listen(Group.NEW | Group.DESTROY)
    r, w = os.pipe()
    sel = selectors.DefaultSelector()
    sel.register(src, selectors.EVENT_READ, "events")
    sel.register(r, selectors.EVENT_READ, "pipe")
    try:
        empty_wakeups = 0
        for i in range(5):
            ct.create(flow(i))
            os.write(w, b"%d" % i)
            got_event = got_pipe = False
            deadline = time.monotonic() + 5
            while not (got_event and got_pipe):
                assert time.monotonic() < deadline, "lost input"
                for skey, _ in sel.select(timeout=1):
                    if skey.data == "pipe":
                        assert os.read(r, 100) == b"%d" % i
                        got_pipe = True
                    else:
                        evs = src.read_events()
                        empty_wakeups += not evs
                        for ev in evs:
                            assert (ev.type, ev.flow.orig) == (EventType.NEW, flow(i).orig)
                            got_event = True
        assert empty_wakeups == 0
        # nothing happens: the loop sleeps (no readiness, no busy loop)
        t0 = time.process_time()
        assert sel.select(timeout=0.3) == []
        assert time.process_time() - t0 < 0.05
    finally:
        sel.close()
        os.close(r)
        os.close(w)
        src.close()


def test_a_resync_listener_in_a_selector_loop(ns, ct) -> None:
    """With ``resync`` the listener's fileno() also covers the dump socket: the loop
    gets every event, the repair included, and sleeps once it is done."""
    src = ct.listen(resync=True, rcvbuf=4096)
    sel = selectors.DefaultSelector()
    sel.register(src, selectors.EVENT_READ)
    view = View()
    try:
        known = [flow(i) for i in range(5)]
        assert ct.create_many(known) == [None] * 5
        while len(view.flows) < 5:
            assert sel.select(timeout=5), "the creations were not announced"
            for ev in src.read_events():
                view.apply(ev)
        burst(ct, known)
        while True:
            ready = sel.select(timeout=0.3)  # all changes were made: quiet means done
            if not ready:
                break
            for ev in src.read_events():
                view.apply(ev)
        check(view, ct)
        assert src.lost > 0 and src.overruns >= 1
        t0 = time.process_time()
        assert sel.select(timeout=0.3) == []
        assert time.process_time() - t0 < 0.05
    finally:
        sel.close()
        src.close()


# --- resync: non-blocking, blocking, asyncio ---------------------------------------------------------

def test_resync_with_read_events(ns, ct) -> None:
    src = ct.listen(resync=True, rcvbuf=4096)
    view = View()
    known = [flow(i) for i in range(5)]
    assert ct.create_many(known) == [None] * 5
    deadline = time.monotonic() + 5
    while len(view.flows) < 5:
        assert time.monotonic() < deadline
        for ev in src.read_events():
            view.apply(ev)
    burst(ct, known)
    while True:  # read_events() returns nothing once the queue and the repair are done
        got = src.read_events(max=64)
        if not got:
            break
        for ev in got:
            view.apply(ev)
    check(view, ct)
    src.close()


def test_resync_with_the_blocking_iterator(ns, ct) -> None:
    sock = NetlinkSocket(groups=Group.CONNTRACK, rcvbuf=4096)
    sock.settimeout(1.0)  # the iterator ends (TimeoutError) once all is quiet
    view = View()
    events = ct.events(sock=sock, resync=True)
    known = [flow(i) for i in range(5)]
    assert ct.create_many(known) == [None] * 5
    for _ in range(5):
        view.apply(next(events))
    burst(ct, known)
    with pytest.raises(TimeoutError):
        for ev in events:
            view.apply(ev)
    check(view, ct)
    sock.close()


def test_resync_refuses_a_socket_of_another_namespace(ns, ct) -> None:
    from helpers.netns import NetNS

    with NetNS("events") as other:
        with other.enter():
            sock = NetlinkSocket(groups=Group.CONNTRACK)
    with sock, pytest.raises(ValueError, match="another network namespace"):
        ct.listen(sock=sock, resync=True)
    with pytest.raises(ValueError, match="NEW and DESTROY"):
        ct.listen(Group.NEW | Group.UPDATE, resync=True)


def test_resync_with_asyncio(ns) -> None:
    async def main() -> None:
        async with AsyncConntrack() as act:
            with Conntrack() as ct:
                events = act.events(rcvbuf=4096, resync=True)
                view = View()
                known = [flow(i) for i in range(5)]
                assert ct.create_many(known) == [None] * 5
                while len(view.flows) < 5:
                    view.apply(await asyncio.wait_for(anext(events), 5))
                burst(ct, known)
                want = table(ct)
                while view.marks() != want or view.lost == 0:
                    view.apply(await asyncio.wait_for(anext(events), 5))
                check(view, ct)
                await events.aclose()

    asyncio.run(main())


def test_resync_with_raw_events_and_keys(ns, ct) -> None:
    """What a cache of attribute bytes sees: raw events keyed by ``RawEvent.key`` end
    equal to the keys of a dump (event and dump messages encode a flow alike)."""
    from ctnetlink.events import RawEvent

    src = ct.listen(resync=True, rcvbuf=4096)
    alive: set[bytes] = set()
    resynced = set()

    def apply(raws) -> None:
        for r in raws:
            resynced.add((r.type, r.resync))
            if r.type is EventType.DESTROY:
                alive.discard(r.key)
            else:
                alive.add(r.key)

    known = [flow(i) for i in range(5)]
    assert ct.create_many(known) == [None] * 5
    while len(alive) < 5:
        apply(src.read_raw(block=True))
    burst(ct, known)
    while True:
        got = src.read_raw()
        if not got:
            break
        apply(got)
    dumped = {RawEvent(EventType.NEW, b, o, n, b[o + 16]).key for b, o, n in ct.dump_raw()}
    assert alive == dumped and len(dumped) == 2 + 250 + 20
    assert (EventType.DESTROY, True) in resynced
    src.close()


@pytest.mark.parametrize("mmsg", [True, False], ids=["recvmmsg", "recv loop"])
def test_recv_many_takes_what_is_queued(ns, ct, mmsg: bool) -> None:
    sock = NetlinkSocket(groups=Group.NEW, rcvbuf=1 << 20)
    if not mmsg:
        sock._mmsg = False  # as without ctypes
    flows = [flow(i) for i in range(100)]
    assert ct.create_many(flows) == [None] * 100
    first = sock.recv_many(64)
    rest = sock.recv_many(64)
    assert (len(first), len(rest), sock.recv_many(64, nowait=True)) == (64, 36, [])
    got = [ev.flow.orig for data in first + rest for ev in EventReader().feed(data)]
    assert got == [f.orig for f in flows]
    sock.close()


def test_read_datagrams_hands_over_the_bytes_and_counts_losses(ns, ct) -> None:
    """``read_datagrams`` (what ``conntrack -E`` formats from): the datagrams as the
    reader would take them, and an overrun counted as for events."""
    lost: list[int] = []
    src = ct.listen(Group.NEW, rcvbuf=1 << 20, on_overrun=lost.append)
    flows = [flow(i) for i in range(100)]
    assert ct.create_many(flows) == [None] * 100
    got = []
    while len(got) < 100:
        got += src.read_datagrams(block=True)
    assert src.read_datagrams() == []
    assert [ev.flow.orig for d in got for ev in src.reader.feed(d)] == [f.orig for f in flows]
    src.close()
    # a tiny buffer: the loss is counted when the queue has been read empty
    src = ct.listen(Group.NEW, rcvbuf=4096, on_overrun=lost.append)
    more = [flow(i, 73) for i in range(300)]
    assert ct.create_many(more) == [None] * 300
    n = 0
    deadline = time.monotonic() + 10
    while not lost:
        assert time.monotonic() < deadline, "no overrun"
        n += len(src.read_datagrams())
    assert n + lost[0] == 300 and src.lost == lost[0] and src.overruns == 1
    src.close()
    with ct.listen(resync=True) as rs, pytest.raises(ValueError):
        rs.read_datagrams()
