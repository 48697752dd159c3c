"""conntrackd's kernel side in a private namespace: the start-up dump, events into the
stats and internal caches, the kernel-space BPF filter (filtered events never reach
Python), and overruns with a tiny buffer followed by the resync that restores the cache."""
from __future__ import annotations

import os
from typing import Iterator

import pytest

from conntrack_tools.conntrackd.filter import FilterSpec
from conntrack_tools.conntrackd.kernel import Kernel, KernelSettings
from conntrack_tools.conntrackd.stats import StatsMode
from conntrack_tools.conntrackd.syncmode import SyncMode
from ctnetlink.client import Conntrack
from ctnetlink.model import Flow, Tuple
from helpers.ourdaemon import Daemon
from helpers.netns import CONNTRACK, NetNS


@pytest.fixture(scope="module")
def dns() -> Iterator[NetNS]:
    """One namespace for the module (tests flush its table first)."""
    if os.geteuid() != 0:
        pytest.fail("the kernel tests need root (network namespaces)")
    with NetNS("dcore") as n:
        yield n


@pytest.fixture
def clean(dns: NetNS) -> NetNS:
    dns.run(CONNTRACK, "-F", check=False)
    return dns


def udp(i: int, proto: int = 17) -> Flow:
    o = Tuple(src=f"10.7.{i // 250}.{i % 250 + 1}", dst="10.8.0.1", proto=proto, sport=1000 + i % 60000, dport=53)
    return Flow(family=2, orig=o, reply=o.reversed(), timeout=600,
                tcp=None, status=0x8)


def create(ns: NetNS, flows: list[Flow]) -> None:
    with ns.enter(), Conntrack() as ct:
        errs = [e for e in ct.create_many(flows) if e is not None]
    assert not errs, errs[:3]


def kernel_keys(ns: NetNS, kernel: Kernel) -> set[bytes]:
    from conntrack_tools.conntrackd import entry as E

    out = set()
    with ns.enter(), Conntrack() as ct:
        for buf, off, ln in ct.dump_raw(0):
            out.add(E.parse(buf, off, ln).key)
    return out


def test_startup_dump_and_events(clean: NetNS) -> None:
    create(clean, [udp(i) for i in range(10)])
    d = Daemon(clean, StatsMode(), KernelSettings())
    try:
        assert len(d.mode.cache) == 10
        create(clean, [udp(i) for i in range(10, 15)])
        assert d.loop.run_until(lambda: len(d.mode.cache) == 15)
        clean.run(CONNTRACK, "-D", "-s", "10.7.0.11")
        assert d.loop.run_until(lambda: len(d.mode.cache) == 14)
        assert d.kernel.stats.events_received == 6
        assert ("notice", "netlink event socket buffer size has been set to "
                f"{d.kernel.stats.buffer_size} bytes") in d.logs
    finally:
        d.close()


@pytest.mark.parametrize("kernelspace", [True, False])
def test_filter_tcp_only(clean: NetNS, kernelspace: bool) -> None:
    spec = FilterSpec(protocols=(True, [6]), kernelspace=kernelspace)
    d = Daemon(clean, StatsMode(), KernelSettings(filter=spec))
    try:
        create(clean, [udp(i) for i in range(20)])
        clean.run(CONNTRACK, "-I", "-p", "tcp", "-s", "10.9.0.1", "-d", "10.9.0.2", "--sport", "1",
                  "--dport", "2", "--state", "ESTABLISHED", "-t", "100")
        assert d.loop.run_until(lambda: len(d.mode.cache) == 1)
        d.loop.run_for(0.2)
        st = d.kernel.stats
        if kernelspace:
            # the 20 UDP events were dropped by the BPF program: Python never saw them
            assert (st.events_received, st.events_filtered) == (1, 0)
            assert ("notice", "using kernel-space event filtering") in d.logs
        else:
            assert (st.events_received, st.events_filtered) == (21, 20)
            assert ("notice", "using user-space event filtering") in d.logs
    finally:
        d.close()


@pytest.mark.parametrize("mode", ["stats", "sync"])
def test_overrun_then_resync_restores_the_cache(clean: NetNS, mode: str) -> None:
    settings = KernelSettings(netlink_buffer_size=8192, netlink_buffer_size_max_growth=16384)
    m = StatsMode() if mode == "stats" else SyncMode()
    cache = m.cache if mode == "stats" else m.internal
    d = Daemon(clean, m, settings)
    try:
        # the loop does not run while 3000 entries are created and 1000 deleted: the
        # 8 KiB buffer overflows for certain
        flows = [udp(i) for i in range(3000)]
        create(clean, flows)
        with clean.enter(), Conntrack() as ct:
            ct.delete_many(flows[:1000])
        assert d.loop.run_until(lambda: d.kernel.stats.overrun_resyncs >= 1, timeout=30)
        d.loop.run_for(0.5)
        assert set(cache) == kernel_keys(clean, d.kernel)
        assert len(cache) == 2000
        st = d.kernel.stats
        assert st.netlink_overrun >= 1 and st.catch_event_failed >= st.netlink_overrun
        assert ("notice", "netlink event socket buffer size has been set to 8192 bytes") in d.logs
        assert ("notice", "netlink event socket buffer size has been doubled to 16384 bytes") in d.logs
        # at 16 KiB a second overrun cannot double the buffer again: one warning
        warned = [msg for lvl, msg in d.logs if lvl == "warning" and msg.startswith(
            "netlink event socket buffer size cannot be doubled further")]
        assert len(warned) == (1 if st.netlink_overrun >= 2 else 0)
    finally:
        d.close()


def test_polling_mode(clean: NetNS) -> None:
    """PollSecs: no event socket; every N seconds a dump merges new entries and purges
    (and logs) the ones the kernel no longer has."""
    logged: list[bytes] = []
    mode = StatsMode()
    mode.flow_log.writer = lambda text, t=None: logged.append(text)
    d = Daemon(clean, mode, KernelSettings(poll_secs=1))
    try:
        assert d.kernel.events_sock is None
        assert ("notice", "running in polling mode") in d.logs
        create(clean, [udp(i) for i in range(5)])
        assert d.loop.run_until(lambda: len(mode.cache) == 5, timeout=5)
        clean.run(CONNTRACK, "-D", "-s", "10.7.0.1")
        assert d.loop.run_until(lambda: len(mode.cache) == 4, timeout=5)
        assert len(logged) == 1 and "src=10.7.0.1 " in logged[0]
        assert d.kernel.stats.events_received == 0
    finally:
        d.close()
