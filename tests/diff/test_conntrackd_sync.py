"""Sync mode's internal cache and requests, reference vs ours (spec §6, §7): the C
conntrackd 1.4.7 (FTFW over UDP on the namespace's loopback, no peer) and our sync mode
watch the same namespace; their replies are byte-compared. Replication is not part of
this comparison: the figures of the channel blocks (bytes and packets sent) are masked,
everything else must be equal."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conntrack_tools.conntrackd import handlers as H  # noqa: E402
from conntrack_tools.conntrackd.syncmode import SyncMode, SyncSettings  # noqa: E402
from helpers.cdaemon import CDaemon  # noqa: E402
from helpers.netns import CONNTRACK, NetNS  # noqa: E402
from helpers.ourdaemon import Daemon  # noqa: E402

SYNC = """Sync {
\tMode FTFW { PurgeTimeout 2 }
\tUDP {
\t\tIPv4_address 127.0.0.1
\t\tIPv4_Destination_Address 127.0.0.2
\t\tPort 3780
\t\tInterface lo
\t}
}
"""
ACTIVE = re.compile(rb"\[active since -?\d+s\]")
TRAFFIC = re.compile(rb"^( *\d+) (Bytes|Pckts|Error) (sent|send) +\d+ ", re.M)


def normal(reply: bytes) -> bytes:
    reply = ACTIVE.sub(b"[active since Ns]", reply)
    reply = re.sub(rb"(?m)^ *\d+ (Bytes sent|Pckts sent|Error send) +\d+ (Bytes recv|Pckts recv|Error recv)$",
                   rb"N \1 N \2", reply)
    lines = reply.split(b"\n")
    return b"\n".join(sorted(lines[:-1]) + lines[-1:]) if b"cache" not in reply else reply


def sorted_lines(reply: bytes) -> list[bytes]:
    return sorted(ACTIVE.sub(b"[active since Ns]", reply).splitlines())


class Pair:
    def __init__(self, ns: NetNS) -> None:
        self.ns = ns
        self.c = CDaemon(ns, SYNC).start()
        channel = SimpleNamespace(transport="udp", interface="lo", default=True)
        try:
            self.ours = Daemon(ns, SyncMode(SyncSettings(mode="ftfw", purge_timeout=2,
                                                         channels=(channel,))))
        except BaseException:
            self.c.close()
            raise

    def both(self, code: int) -> tuple[bytes, bytes]:
        return self.c.request(code), self.ours.request(code)

    def settle(self) -> None:
        def counts(b: bytes) -> bytes:
            return b.split(b"traffic processed")[0]
        for _ in range(200):
            self.ours.loop.run_once(0.02)
            if counts(self.c.request(H.STATS)) == counts(self.ours.request(H.STATS)):
                break
        self.ours.settle(0.1)

    def close(self) -> None:
        self.c.close()
        self.ours.close()


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    if os.geteuid() != 0:
        pytest.fail("the differential suite needs root (network namespaces)")
    with NetNS("dcore") as ns:
        for i in range(5):
            ns.run(CONNTRACK, "-I", "-p", "tcp", "-s", f"10.1.1.{i + 1}", "-d", "10.2.2.2",
                   "--sport", "10", "--dport", "20", "--state", "ESTABLISHED", "-t", "500",
                   "-u", "ASSURED", "-m", str(i))
        ns.run(CONNTRACK, "-I", "-p", "udp", "-s", "10.1.1.1", "-d", "10.2.2.2", "--sport", "1",
               "--dport", "2", "-t", "500", "-w", "5")
        ns.run(CONNTRACK, "-I", "-p", "gre", "-s", "10.1.1.1", "-d", "10.2.2.2", "--srckey", "0x11",
               "--dstkey", "0x22", "-t", "500")
        ns.run(CONNTRACK, "-I", "-p", "icmpv6", "-s", "2001:db8::5", "-d", "2001:db8:1::6",
               "--icmpv6-type", "128", "--icmpv6-code", "0", "--icmpv6-id", "77", "-t", "500")
        p = Pair(ns)
        try:
            yield p
        finally:
            p.close()


def test_internal_cache_dumps(pair: Pair) -> None:
    pair.settle()
    for code in (H.CT_DUMP_INTERNAL, H.CT_DUMP_INT_XML):
        c, ours = pair.both(code)
        assert sorted_lines(ours) == sorted_lines(c)
        assert len(c.splitlines()) == 8
    for code in (H.CT_DUMP_EXTERNAL, H.CT_DUMP_EXT_XML, H.EXP_DUMP_INTERNAL, H.EXP_STATS):
        c, ours = pair.both(code)
        assert ours == c == b""


def test_statistics(pair: Pair) -> None:
    pair.ns.run(CONNTRACK, "-I", "-p", "udp", "-s", "10.3.3.3", "-d", "10.2.2.2", "--sport", "1",
                "--dport", "2", "-t", "500")
    pair.ns.run(CONNTRACK, "-U", "-s", "10.3.3.3", "-p", "udp", "-m", "42")
    pair.settle()
    for code in (H.STATS, H.STATS_CACHE, H.STATS_NETWORK, H.STATS_LINK):
        c, ours = pair.both(code)
        assert normal(ours) == normal(c), code
    # queue contents belong to replication: the layout and the limits must agree
    c, ours = pair.both(H.STATS_QUEUE)
    mask = re.compile(rb"(current elements:\t\t|allocated queue nodes:\t\t) *\d+")
    assert mask.sub(rb"\1N", ours) == mask.sub(rb"\1N", c)
    c, ours = pair.both(H.STATS_RSQUEUE)
    assert c.startswith(b"resent queue (len=") and ours == b"resent queue (len=0)\n"
    c, ours = pair.both(H.CT_DUMP_INTERNAL)
    assert sorted_lines(ours) == sorted_lines(c)
    assert b"mark=42" in ours


def test_flushes_and_resync(pair: Pair) -> None:
    for code in (H.CT_FLUSH_INT_CACHE, H.STATS, H.CT_RESYNC_MASTER, H.STATS, H.CT_DUMP_INTERNAL,
                 H.ALL_FLUSH_CACHE, H.STATS, H.ALL_RESYNC_MASTER, H.STATS_CACHE):
        c, ours = pair.both(code)
        if code == H.CT_DUMP_INTERNAL:
            assert sorted_lines(ours) == sorted_lines(c)
        else:
            assert normal(ours) == normal(c), code
    ours_log = [m for _, m in pair.ours.logs]
    for line in ("flushing internal cache", "resync with master conntrack table", "flushing caches"):
        assert line in ours_log
        assert any(entry.endswith("[notice] " + line) for entry in pair.c.log_lines())


def test_purge_timer(pair: Pair) -> None:
    """-t: the kernel table is flushed PurgeTimeout seconds later (here 2), by both."""
    pair.ours.request(H.RESET_TIMERS)
    pair.ours.request(H.RESET_TIMERS)  # a second -t while pending does nothing
    assert [m for _, m in pair.ours.logs].count("flushing conntrack table in 2 secs") == 1
    pair.ours.loop.run_until(
        lambda: "flushing kernel conntrack table (scheduled)" in [m for _, m in pair.ours.logs],
        timeout=5)
    pair.settle()
    assert pair.ns.run(CONNTRACK, "-L").stdout == ""
    assert len(pair.ours.mode.internal) == 0
    c, ours = pair.both(H.STATS)
    assert b"current active connections:\t           0" in ours
