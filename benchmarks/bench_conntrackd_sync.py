"""Replication speed: the C conntrackd 1.4.7 pair and our pair, side by side, same run.

Each pair (primary ``a``, backup ``b``, FTFW over UDP on a dedicated veth link between
two private namespaces, :mod:`tests.helpers.syncpair`) runs:

1. **bulk resync**: the primary's table holds ``--flows`` entries (100,000), already
   replicated; the backup flushes its external cache (``-f external``) and asks for a
   resync (``-n``): time until its external cache holds them all again (and how many
   it has when ``--wait`` runs out); also the backup's RSS growth per flow once it
   first holds them (its external cache and what goes with it);
2. **burst**: on a fresh pair, ``--burst`` entries (50,000) are created as fast as the
   kernel takes them, then the table is flushed (as many DESTROY events): time until the
   backup's external cache holds every entry, then until it is empty again, and the
   entries missing or left over when ``--wait`` runs out (loss);
3. **loss**: with 20% random loss (nft ``numgen random mod 5 == 0 drop``) on the sync
   link in both directions from before the daemons start, 2,000 flows created in batches
   of 100: how many reach the backup within ``--wait`` seconds.

    python benchmarks/bench_conntrackd_sync.py [--flows 100000] [--burst 50000] [--wait 120]
        [--transport udp4|udp6|multicast4|tcp4|tcp6] [--only resync|burst|loss]
        [--netns-prefix NAME] [--mixed]
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))

from conntrack_tools.conntrackd import handlers as H  # noqa: E402
from benchmarks._common import rss_of  # noqa: E402
from helpers.syncpair import SyncPair, make_flows  # noqa: E402

GENERAL = ("\tHashSize 65536\n\tHashLimit 524288\n"
           "\tNetlinkBufferSize 2097152\n\tNetlinkBufferSizeMaxGrowth 16777216\n")


def active(p: SyncPair, side: str, cache: str) -> int:
    text = p.stats(side)
    m = re.search(rf"cache {cache}:\ncurrent active connections:\s+(\d+)", text)
    return int(m.group(1)) if m else -1


def fill(p: SyncPair, n: int, base: int = 0) -> None:
    for start in range(0, n, 10000):
        make_flows(p.ns("a"), min(10000, n - start), base=base + start)


def until(cond, wait: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < wait:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def fmt(t: float | None) -> str:
    return f"{t:7.2f} s" if t is not None else "  (never)"


TRANSPORT = "udp4"
PREFIX = "repl"


def bench_resync(kind: str, n: int, wait: float, backup: str | None = None) -> None:
    """``kind`` pair, or with ``backup`` a mixed pair (primary ``kind``)."""
    with SyncPair(kind, backup or kind, kind=TRANSPORT, general=GENERAL, prefix=PREFIX) as p:
        rss0 = rss_of(p.b.proc.pid)
        fill(p, n)
        until(lambda: active(p, "b", "external") >= n, wait)
        held = (rss_of(p.b.proc.pid) - rss0) / n
        p.b.request(H.CT_FLUSH_EXT_CACHE)
        t0 = time.monotonic()
        p.b.request(H.REQUEST_DUMP)
        t = until(lambda: active(p, "b", "external") >= n, wait)
        got = active(p, "b", "external")
        name = f"{kind}->{backup}" if backup else f"{kind:>5} pair"
        print(f"{name:>10}  resync of {n} flows (-n): {fmt(t)}  "
              f"external cache {got}/{n}  (total {time.monotonic() - t0:.2f} s); the backup "
              f"holding them: {held:.0f} bytes per flow", flush=True)


def bench_burst(kind: str, n: int, wait: float) -> None:
    with SyncPair(kind, kind, kind=TRANSPORT, general=GENERAL, prefix=PREFIX) as p:
        t0 = time.monotonic()
        fill(p, n, base=200000)
        t_fill = time.monotonic() - t0
        t = until(lambda: active(p, "b", "external") >= n, wait)
        peak = active(p, "b", "external")
        t1 = time.monotonic()
        p.ns("a").conntrack("-F", check=False)
        t_flush = time.monotonic() - t1
        t2 = until(lambda: active(p, "b", "external") == 0, wait)
        left = active(p, "b", "external")
        since = None if t is None else t + t_fill
        print(f"{kind:>5} pair  burst {n} creates ({t_fill:.2f} s in the kernel): all in "
              f"backup {fmt(since)} after the first create ({fmt(t)} after the last), "
              f"missing {n - peak}; flush ({t_flush:.2f} s): empty {fmt(t2)} after it, "
              f"left over {left}", flush=True)


def bench_loss(kind: str, n: int, wait: float) -> None:
    with SyncPair(kind, kind, kind=TRANSPORT, prefix=PREFIX, lossy=True) as p:
        for base in range(0, n, 100):
            make_flows(p.ns("a"), 100, base=base)
            time.sleep(0.05)
        t = until(lambda: active(p, "b", "external") >= n, wait)
        got = active(p, "b", "external")
        print(f"{kind:>5} pair  20% loss, {n} flows: {got}/{n} reached the backup "
              f"(lost {n - got}), complete after {fmt(t)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=100000)
    ap.add_argument("--burst", type=int, default=50000)
    ap.add_argument("--loss-flows", type=int, default=2000)
    ap.add_argument("--wait", type=float, default=120.0)
    ap.add_argument("--only", choices=("resync", "burst", "loss"))
    ap.add_argument("--transport", default="udp4",
                    choices=("udp4", "udp6", "multicast4", "tcp4", "tcp6"))
    ap.add_argument("--netns-prefix", default="repl",
                    help="prefix of the namespaces' names (one per helper on a shared host)")
    ap.add_argument("--mixed", action="store_true",
                    help="resync also with the mixed pairs (C primary and our backup: our "
                         "receiving side alone; our primary and a C backup)")
    a = ap.parse_args()
    global TRANSPORT, PREFIX
    TRANSPORT = a.transport
    PREFIX = a.netns_prefix
    for kind in ("c", "ours"):
        if a.only in (None, "resync"):
            bench_resync(kind, a.flows, a.wait)
        if a.only in (None, "burst"):
            bench_burst(kind, a.burst, a.wait)
        if a.only in (None, "loss"):
            bench_loss(kind, a.loss_flows, min(a.wait, 60.0))
    if a.mixed and a.only in (None, "resync"):
        bench_resync("c", a.flows, a.wait, backup="ours")
        bench_resync("ours", a.flows, a.wait, backup="c")


if __name__ == "__main__":
    main()
