"""keepalived failover of a conntrackd pair: the C pair and ours, side by side.

The topology of ``tests/helpers/hatopo.py`` (client, server, two masquerading routers
with keepalived driving ``contrib/primary-backup.sh``, FTFW on a dedicated link,
``nf_conntrack_tcp_loose=0`` and invalid packets dropped). Each round opens N TCP
connections through the VIP, waits until the backup's external cache holds them all,
crashes the primary (SIGKILL of keepalived and conntrackd, links down) and measures:

* ``vip``: crash -> both VIPs on the backup (keepalived's master-down interval, the
  same for every pair);
* ``idle``: VIP move -> every connection passed data again, the connections sending only
  from the VIP move on (the commit's latency as an application that was quiet sees it);
* ``busy``: the same with connections that send from the crash on, so their lost
  segments put TCP into retransmission backoff (a separate round);
* ``kept``: connections that passed data within the timeout, of N;
* ``script``: how long the backup's ``primary-backup.sh primary`` (-c, -f, -R, -B) took.

A pair whose daemon cannot run the scenario yet (ours before replication and commit are
wired) is reported as ``n/a`` with the reason.

    python benchmarks/bench_conntrackd_ha.py [--connections 100] [--rounds 3]
        [--pairs c:c,ours:ours,c:ours,ours:c]   (the default: every pairing)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import benchmarks._common  # noqa: E402,F401  (bytecode compiled as for users)
from tests.helpers.hatopo import HATopo  # noqa: E402


def one_round(primary: str, backup: str, n: int, busy: bool):
    with HATopo(primary, backup) as topo:
        if topo.open_connections(n) != n:
            raise RuntimeError("could not open the connections")
        topo.wait_backup_learned(n)
        return topo.failover(timeout=20.0, busy=busy)


def fmt(values: list[float], unit: float = 1000.0, suffix: str = " ms") -> str:
    if not values:
        return "n/a"
    v = [x * unit for x in values]
    return f"{statistics.median(v):.0f}{suffix} ({min(v):.0f}-{max(v):.0f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pairs", default="c:c,ours:ours,c:ours,ours:c")
    args = ap.parse_args()
    pairs = [tuple(p.split(":")) for p in args.pairs.split(",")]
    # rounds outermost, so every pair sees the same mix of machine load
    res = {pair: {"vip": [], "idle": [], "busy": [], "kept": [], "script": [], "error": None}
           for pair in pairs}
    for _ in range(args.rounds):
        for pair in pairs:
            r = res[pair]
            if r["error"]:
                continue
            try:
                for busy in (False, True):
                    f = one_round(*pair, args.connections, busy)
                    r["vip"].append(f.vip_after)
                    r["kept"].append(f.kept)
                    if f.script is not None:
                        r["script"].append(f.script)
                    if f.all_back_after is not None:
                        r["busy" if busy else "idle"].append(f.all_back_after)
            except Exception as e:  # noqa: BLE001 - reported in the table
                r["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    rows = [(f"{p} -> {b}", res[(p, b)]) for p, b in pairs]

    n = args.connections
    print(f"failover of {n} TCP connections, {args.rounds} rounds per mode; "
          "median (min-max); primary -> backup")
    head = f"{'pair':<14} {'vip moved':>20} {'idle: all data':>20} {'busy: all data':>20} " \
           f"{'kept':>14} {'script':>20}"
    print(head)
    for name, r in rows:
        if r["error"] and not r["vip"]:
            print(f"{name:<14} n/a ({r['error']})")
            continue
        kept = f"{min(r['kept'])}-{max(r['kept'])}/{n}" if r["kept"] else "n/a"
        print(f"{name:<14} {fmt(r['vip']):>20} {fmt(r['idle']):>20} {fmt(r['busy']):>20} "
              f"{kept:>14} {fmt(r['script']):>20}")
        if r["error"]:
            print(f"{'':<14} stopped: {r['error']}")


if __name__ == "__main__":
    main()
