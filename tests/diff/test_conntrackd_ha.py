"""keepalived failover of a conntrackd pair (spec §10): the backup takes over the VIPs,
``primary-backup.sh primary`` commits its external cache, and every established TCP
connection through the pair keeps passing data.

The topology (:mod:`helpers.hatopo`): client, server, two routers masquerading towards
the server, VRRP in the namespaces, FTFW over a dedicated link, ``nf_conntrack_tcp_loose=0``
and invalid packets dropped on the routers. The primary crashes (SIGKILL of keepalived's
VRRP process, keepalived and conntrackd, then its links go down). The negative control
runs the same scenario without conntrackd on the backup: every connection must die, so
the positive test proves the replication, not a lenient kernel.

Parametrized by (primary, backup) implementation: the C pair, ours, and both mixed
pairs (:func:`helpers.hatopo.ours_pairs`).
"""
from __future__ import annotations

import subprocess

import pytest

from helpers.hatopo import HATopo, ours_pairs

PAIRS = [("c", "c"), *ours_pairs()]
CONNECTIONS = 20


@pytest.mark.parametrize("primary,backup", PAIRS, ids=lambda v: str(v))
def test_failover_keeps_every_connection(primary: str, backup: str) -> None:
    with HATopo(primary, backup) as topo:
        assert topo.open_connections(CONNECTIONS) == CONNECTIONS
        topo.wait_backup_learned(CONNECTIONS)
        assert topo.r2.kernel_flows() == 0  # nothing committed before the failover
        result = topo.failover(timeout=20.0)
        info = f"{result}\n{topo.diagnostics()}"
        assert result.kept == CONNECTIONS, info
        assert topo.r2.kernel_flows() == CONNECTIONS, info
        # the connections keep working through the new primary
        assert topo.client.probe(5.0) == [True] * CONNECTIONS, info


@pytest.mark.parametrize("primary", ["c", "ours"])
def test_failover_without_backup_daemon_loses_every_connection(primary: str) -> None:
    """Negative control: no conntrackd on the backup, so nothing is committed there and
    the kernel drops the connections' packets as invalid."""
    with HATopo(primary, None) as topo:
        assert topo.open_connections(CONNECTIONS) == CONNECTIONS
        result = topo.failover(timeout=5.0)
        info = f"{result}\n{topo.diagnostics()}"
        assert result.kept == 0, info
        assert result.dropped > 0, info
        assert topo.r2.kernel_flows() == 0, info


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_teardown_kills_every_process_and_deletes_the_namespaces() -> None:
    """Including a daemon the script started itself: the backup's conntrackd is killed,
    ``primary-backup.sh backup`` finds none and starts ``conntrackd -d``."""
    topo = HATopo("c", "c")
    try:
        topo.create()
        topo.r2.conntrackd.kill()
        topo.r2.conntrackd.wait()
        r = topo.r2.ns.run(topo.r2.notify_command(), "backup", check=False)
        assert r.returncode == 0
        stray = [int(p) for p in topo.r2.ns.run("ip", "netns", "pids", topo.r2.ns.name).stdout.split()]
        cmdlines = [open(f"/proc/{p}/cmdline").read() for p in stray if _alive(p)]
        assert any("conntrackd" in c and "-d" in c.split("\0") for c in cmdlines), cmdlines
        pids = stray + [p.pid for p in (topo.r1.keepalived, topo.r1.conntrackd, topo.server,
                                        topo.client.proc)]
        names = [ns.name for ns in topo.namespaces]
    finally:
        topo.close()
    assert [p for p in pids if _alive(p)] == []
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert [n for n in names if n in listed] == []
