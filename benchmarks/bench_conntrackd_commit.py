"""Commit (``conntrackd -c``) of a large external cache: the C conntrackd 1.4.7 and ours.

Each daemon runs in its own namespace (NOTRACK over UDP on a dummy link, see
``tests/helpers/commitrig.py``) with the same external cache: ``--flows`` flows (IPv4
TCP established with marks, every 10th with source NAT, every 7th UDP) received as
NOTRACK datagrams built with our wire codec, received over UDP. Then the reference client runs ``-c`` against
each, alternately, ``--rounds`` times (the table is flushed before each round, so
every round creates every flow, and both daemons are left to handle the flush's events
before the next commit; no overrun resync, which would run in a later round). Printed per daemon: the client's wall time (what
keepalived's ``primary-backup.sh`` waits for) and the daemon's own ``commit has taken``
figure, as min / median / max, and the ratio of the medians.

    python benchmarks/bench_conntrackd_commit.py [--flows 100000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import benchmarks._common  # noqa: E402,F401  (byte-compiles the tree, as installed)
from tests.helpers.commitrig import CommitRig, datagrams  # noqa: E402

from conntrack_tools.conntrackd.wire.codec import flow_message  # noqa: E402
from ctnetlink.model import Flow, TcpInfo, Tuple  # noqa: E402

SERVER = ipaddress.IPv4Address("10.200.0.1")
NAT = ipaddress.IPv4Address("10.201.0.9")


def flows(n: int) -> list[Flow]:
    out = []
    base = int(ipaddress.IPv4Address("10.100.0.0"))
    for i in range(n):
        src = ipaddress.IPv4Address(base + i)
        proto = 17 if i % 7 == 0 else 6
        # NAT flows (every 10th) get distinct ports: their reply tuples never clash, and
        # the kernel keeps every port (the tables compare equal whatever the order)
        dport = 1000 + (i // 10) % 50000 if i % 10 == 0 else 80 + i % 3
        o = Tuple(src=src, dst=SERVER, proto=proto, sport=1024 + i % 60000, dport=dport)
        reply = o.reversed()
        status = 0x18E if proto == 6 else 0x18A  # seen reply, assured, confirmed, NAT done
        if i % 10 == 0:
            reply = reply.replace(dst=NAT)
            status |= 0x10
        out.append(Flow(family=2, orig=o, reply=reply, status=status, timeout=3600,
                        mark=i & 0xFFFF, tcp=TcpInfo(state=3) if proto == 6 else None))
    return out


def messages(n: int) -> list[bytes]:
    return [flow_message(0, f, i) for i, f in enumerate(flows(n))]


def count(rig: CommitRig) -> int:
    out = rig.ns.run("conntrack", "-C", check=False).stdout.strip()
    return int(out or 0)


def cpu_time(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (ticks)


def settle(rig: CommitRig, quiet: float = 0.5, limit: float = 120.0) -> None:
    """Wait until the daemon has used no CPU for ``quiet`` seconds (the flush's
    DESTROY events, a resync after an overrun: handled before the next commit)."""
    deadline = time.monotonic() + limit
    last = cpu_time(rig.proc.pid)
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = cpu_time(rig.proc.pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def one(rig: CommitRig, n: int, others: list[CommitRig]) -> tuple[float, float | None]:
    rig.ns.run("conntrack", "-F", check=False)
    for r in others:  # the other daemon must not take a CPU meanwhile either
        settle(r)
    r, wall = rig.client("-c")
    if r.returncode != 0:
        raise RuntimeError(f"-c failed: {r.stderr}")
    got = count(rig)
    if got != n:
        raise RuntimeError(f"{'ours' if rig.ours else 'C'}: {got} of {n} flows in the table")
    return wall, rig.commit_took()


def spread(values: list[float]) -> str:
    return (f"min {min(values):.3f}  median {statistics.median(values):.3f}  "
            f"max {max(values):.3f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    n = args.flows
    grams = datagrams(messages(n))
    size = 1 << max(16, (n - 1).bit_length())
    # no resync after the overruns of a commit: it would run in the middle of a later
    # round (the C daemon's 30 s after its commit), measured with the wrong daemon
    general = "\tNetlinkOverrunResync Off\n"
    rigs = {"C": CommitRig(False, hashsize=65536, limit=4 * size, general=general),
            "ours": CommitRig(True, hashsize=65536, limit=4 * size, general=general)}
    results: dict[str, list[tuple[float, float | None]]] = {k: [] for k in rigs}
    try:
        for name, rig in rigs.items():
            t0 = time.perf_counter()
            rig.start(grams, n)
            print(f"{name}: external cache of {n} flows filled in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
        for r in range(args.rounds):
            for name, rig in rigs.items():
                wall, took = one(rig, n, list(rigs.values()))
                results[name].append((wall, took))
                print(f"round {r + 1} {name:4}: client {wall:.3f} s, daemon log {took} s",
                      flush=True)
    finally:
        for rig in rigs.values():
            rig.close()
    print(f"\ncommit of {n} flows ({args.rounds} rounds)")
    for name, res in results.items():
        print(f"  {name:4} client wall: {spread([w for w, _ in res])}")
        logged = [t for _, t in res if t is not None]
        if logged:
            print(f"  {name:4} daemon log : {spread(logged)}")
    c = statistics.median(w for w, _ in results["C"])
    o = statistics.median(w for w, _ in results["ours"])
    print(f"  ours / C (client wall, medians): {o / c:.2f}x")
    c_log = [t for _, t in results["C"] if t is not None]
    o_log = [t for _, t in results["ours"] if t is not None]
    if c_log and o_log:
        print(f"  ours / C (daemon log, medians): "
              f"{statistics.median(o_log) / statistics.median(c_log):.2f}x")


if __name__ == "__main__":
    main()
