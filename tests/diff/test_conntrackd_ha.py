"""keepalived failover of a conntrackd pair (spec §10): the backup takes over the VIPs,
``primary-backup.sh primary`` commits its external cache, and every established TCP
connection through the pair keeps passing data.

The topology (:mod:`helpers.hatopo`): client, server, two routers masquerading towards
the server, VRRP in the namespaces, FTFW over a dedicated link, ``nf_conntrack_tcp_loose=0``
and invalid packets dropped on the routers. The primary crashes (SIGKILL of keepalived's
VRRP process, keepalived and conntrackd, then its links go down). The negative control
runs the same scenario without conntrackd on the backup: every connection must die, so
the positive test proves the replication, not a lenient kernel.

Parametrized by (primary, backup) implementation. Only the C pair runs for now: our
daemon's replication and commit are being wired on other branches; the pairs with ours
are :func:`helpers.hatopo.ours_pairs`, to be added to ``PAIRS`` when they land.
"""
from __future__ import annotations

import pytest

from helpers.hatopo import HATopo

PAIRS = [("c", "c")]
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


def test_failover_without_backup_daemon_loses_every_connection() -> None:
    """Negative control: no conntrackd on the backup, so nothing is committed there and
    the kernel drops the connections' packets as invalid."""
    with HATopo("c", None) as topo:
        assert topo.open_connections(CONNECTIONS) == CONNECTIONS
        result = topo.failover(timeout=5.0)
        info = f"{result}\n{topo.diagnostics()}"
        assert result.kept == 0, info
        assert result.dropped > 0, info
        assert topo.r2.kernel_flows() == 0, info
