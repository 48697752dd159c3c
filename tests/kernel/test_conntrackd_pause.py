"""conntrackd's kernel side paused during a large commit, in a private namespace: while
paused the daemon is no member of the event groups (the kernel sends it nothing, not
even an overrun); after ``resume_events`` what happened meanwhile reaches the internal
cache through the overrun resync (spec §6.4), and events flow again."""
from __future__ import annotations

from conntrack_tools.conntrackd.kernel import KernelSettings
from conntrack_tools.conntrackd.syncmode import SyncMode
from ctnetlink.client import Conntrack
from ctnetlink.model import Flow, Tuple
from helpers.netns import CONNTRACK, NetNS
from helpers.ourdaemon import Daemon


def udp(i: int) -> Flow:
    o = Tuple(src=f"10.17.{i // 250}.{i % 250 + 1}", dst="10.18.0.1", proto=17,
              sport=1000 + i, dport=53)
    return Flow(family=2, orig=o, reply=o.reversed(), timeout=600, status=0x8)


def create(ns: NetNS, flows: list[Flow]) -> None:
    with ns.enter(), Conntrack() as ct:
        assert not [e for e in ct.create_many(flows) if e is not None]


def test_pause_and_resume() -> None:
    with NetNS("commit") as ns:
        d = Daemon(ns, SyncMode(), KernelSettings(netlink_overrun_resync=30))
        try:
            create(ns, [udp(i) for i in range(3)])
            assert d.loop.run_until(lambda: len(d.mode.internal) == 3)
            d.kernel.pause_events()
            received = d.kernel.stats.events_received
            create(ns, [udp(i) for i in range(3, 3000)])
            d.loop.run_for(0.3)
            st = d.kernel.stats
            assert (st.events_received, st.netlink_overrun) == (received, 0)
            assert len(d.mode.internal) == 3 and not d.kernel.resync_pending
            d.kernel.resume_events()
            assert d.kernel.resync_pending
            assert d.loop.run_until(lambda: len(d.mode.internal) == 3000, timeout=20)
            assert st.overrun_resyncs == 1 and st.netlink_overrun == 0
            ns.run(CONNTRACK, "-D", "-s", "10.17.0.1")
            assert d.loop.run_until(lambda: len(d.mode.internal) == 2999)
            assert st.events_received > received
        finally:
            d.close()
