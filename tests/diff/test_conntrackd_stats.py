"""Statistics mode, reference vs ours (spec §8): the C conntrackd 1.4.7 and our stats
mode watch the same namespace at the same time (same start-up table, same events from
real loopback traffic with accounting on); their replies to the same control requests
and their destroyed-flow logs are byte-compared, after normalising only what must
differ (``[active since Ns]`` ages, and the log lines' time stamp)."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conntrack_tools.conntrackd import handlers as H  # noqa: E402
from conntrack_tools.conntrackd.stats import FlowLog, StatsMode  # noqa: E402
from helpers.cdaemon import OURS, CDaemon  # noqa: E402
from helpers.ftp import enable_tracking  # noqa: E402
from helpers.netns import CONNTRACK, NetNS  # noqa: E402
from helpers.ourdaemon import Daemon  # noqa: E402

ACTIVE = re.compile(rb"\[active since -?\d+s\]")


def normal(reply: bytes, sort: bool = True) -> bytes:
    """Ages masked; dumps sorted (the reference prints in its hash order)."""
    reply = ACTIVE.sub(b"[active since Ns]", reply)
    if sort:
        lines = reply.split(b"\n")
        reply = b"\n".join(sorted(lines[:-1]) + lines[-1:])
    return reply


class Pair:
    def __init__(self, ns: NetNS, tmp: Path) -> None:
        self.ns = ns
        self.c = CDaemon(ns, "Stats {\n\tLogFile @STATSLOG@\n}\n").start()
        self.our_log_path = tmp / "ours-stats.log"
        self.our_log = open(self.our_log_path, "a", buffering=1)
        try:
            self.ours = Daemon(ns, StatsMode(flow_log=FlowLog(self.our_log)))
        except BaseException:
            self.c.close()
            raise

    def both(self, code: int) -> tuple[bytes, bytes]:
        return self.c.request(code), self.ours.request(code)

    def settle(self) -> None:
        """Run our loop until both caches agree on their counters (and a bit more)."""
        def same() -> bool:
            self.ours.loop.run_once(0.02)
            return self.c.request(H.STATS) == self.ours.request(H.STATS)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not same():
            pass
        self.ours.settle(0.1)

    def close(self) -> None:
        self.c.close()
        self.ours.close()
        self.our_log.close()


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Iterator[Pair]:
    if os.geteuid() != 0:
        pytest.fail("the differential suite needs root (network namespaces)")
    with NetNS("dcore") as ns:
        enable_tracking(ns)
        ns.sysctl("net.netfilter.nf_conntrack_acct", 1)
        # entries that exist before both daemons start: known through the start-up dump
        ns.run(CONNTRACK, "-I", "-p", "tcp", "-s", "10.1.1.1", "-d", "10.2.2.2", "--sport", "10",
               "--dport", "20", "--state", "ESTABLISHED", "-t", "500", "-u", "ASSURED", "-m", "5")
        ns.run(CONNTRACK, "-I", "-p", "udp", "-s", "2001:db8::1", "-d", "2001:db8::2",
               "--sport", "11", "--dport", "21", "-t", "500", "-w", "3")
        ns.run(CONNTRACK, "-I", "-p", "icmp", "-s", "10.1.1.1", "-d", "10.2.2.2", "-t", "500",
               "--icmp-type", "8", "--icmp-code", "0", "--icmp-id", "77")
        p = Pair(ns, tmp_path_factory.mktemp("dcore-stats"))
        try:
            yield p
        finally:
            p.close()


def traffic(ns: NetNS, port: int, packets: int = 3) -> None:
    """UDP packets over loopback in ``ns`` with an echoing peer (counters both ways)."""
    with ns.enter():
        srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        srv.bind(("127.0.0.1", port))
        cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cli.bind(("127.0.0.1", port + 1))
    try:
        for i in range(packets):
            cli.sendto(b"x" * (10 + i), ("127.0.0.1", port))
            data, addr = srv.recvfrom(100)
            srv.sendto(data, addr)
            cli.recvfrom(100)
    finally:
        srv.close()
        cli.close()


def tcp_session(ns: NetNS, port: int) -> None:
    with ns.enter():
        srv = socket.socket()
        srv.bind(("127.0.0.1", port))
        srv.listen(1)
        cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    cli.sendall(b"hello")
    conn.recv(10)
    conn.sendall(b"world!")
    cli.recv(10)
    cli.close()
    conn.close()
    srv.close()


def test_startup_dump(pair: Pair) -> None:
    pair.settle()
    for code in (H.CT_DUMP_INTERNAL, H.CT_DUMP_INT_XML):
        c, ours = pair.both(code)
        assert normal(ours) == normal(c)
        assert c.count(b"\n") == 3


def test_traffic_and_destroyed_flow_log(pair: Pair) -> None:
    traffic(pair.ns, 7000)
    traffic(pair.ns, 7100, packets=5)
    tcp_session(pair.ns, 7200)
    pair.settle()
    for code in (H.CT_DUMP_INTERNAL, H.CT_DUMP_INT_XML, H.STATS, H.STATS_CACHE):
        c, ours = pair.both(code)
        assert normal(ours) == normal(c), code
    # destroy everything that was seen through events: the DESTROY events carry the
    # counters; both log the same lines and add the same traffic totals
    pair.ns.run(CONNTRACK, "-D", "-s", "127.0.0.1", check=False)
    pair.settle()
    c, ours = pair.both(H.STATS)
    assert ours == c
    assert b"      0 Bytes" not in ours  # accounting reached the totals
    c_lines = Path(pair.c.stats_log).read_text().splitlines()
    our_lines = pair.our_log_path.read_text().splitlines()
    assert len(c_lines) >= 3
    strip = [line.split("\t", 1) for line in c_lines], [line.split("\t", 1) for line in our_lines]
    assert sorted(t for _, t in strip[1]) == sorted(t for _, t in strip[0])
    for stamp, _ in strip[1]:
        time.strptime(stamp, "%a %b %d %H:%M:%S %Y")


def test_resync_flush_and_kernel_flush(pair: Pair) -> None:
    # -R merges the kernel table: entries the events never showed appear
    pair.ns.run(CONNTRACK, "-I", "-p", "udp", "-s", "10.5.5.5", "-d", "10.6.6.6", "--sport", "1",
                "--dport", "2", "-t", "500")
    pair.settle()
    for code in (H.CT_FLUSH_INT_CACHE, H.STATS, H.CT_DUMP_INTERNAL, H.ALL_RESYNC_MASTER,
                 H.STATS, H.CT_DUMP_INTERNAL, H.STATS_CACHE, H.ALL_FLUSH_CACHE, H.STATS):
        c, ours = pair.both(code)
        assert normal(ours) == normal(c), code
    # -F: the kernel table is flushed (by each daemon; the second finds nothing left)
    pair.c.request(H.ALL_FLUSH_MASTER)
    pair.ours.request(H.ALL_FLUSH_MASTER)
    pair.settle()
    for code in (H.CT_DUMP_INTERNAL, H.STATS, H.STATS_CACHE):
        c, ours = pair.both(code)
        assert normal(ours) == normal(c), code
    assert pair.ns.run(CONNTRACK, "-L").stdout == ""


def test_requests_stats_mode_ignores(pair: Pair) -> None:
    """Codes that stats mode does not handle produce no output in both."""
    for code in (H.CT_DUMP_EXTERNAL, H.STATS_NETWORK, H.STATS_LINK, H.STATS_QUEUE,
                 H.STATS_RSQUEUE, H.EXP_STATS, H.REQUEST_DUMP, H.SEND_BULK, H.RESET_TIMERS,
                 H.CT_COMMIT, H.DEBUG_INFO, 99):
        c, ours = pair.both(code)
        assert ours == c == b"", code


def test_ready_when_the_control_socket_appears(tmp_path) -> None:
    """A script that waits for our control socket, then makes traffic and flushes at once
    (no pause) finds every destroyed flow in the Stats log (ours once lost them: its mode
    code, ~80 ms of imports, was loaded only after the control socket was open). The
    reference opens the socket before its netlink set-up too (spec §1.2 step 10), but its
    window is microseconds: not asserted here, it fails under load."""
    program = OURS
    with NetNS("dcore-ready") as ns:
        enable_tracking(ns)
        d = CDaemon(ns, "Stats {\n\tLogFile @STATSLOG@\n}\n", program=program)
        try:
            d.proc = ns.popen(*program, "-C", d.config, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while not os.path.exists(d.ctl):
                assert d.proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.005)
            traffic(ns, 7300, packets=1)
            traffic(ns, 7400, packets=1)
            ns.run(CONNTRACK, "-F")
            lines: list[str] = []
            while len(lines) < 2 and time.monotonic() < deadline:
                if os.path.exists(d.stats_log):
                    lines = Path(d.stats_log).read_text().splitlines()
                time.sleep(0.01)
            assert len(lines) == 2, lines
            assert all("dport=7300" in line or "dport=7400" in line for line in lines)
        finally:
            d.close()
