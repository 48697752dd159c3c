"""Shared benchmark plumbing: a private network namespace and a fast table filler.

Every benchmark builds its table inside its own namespace (deleted afterwards) and runs
the reference ``conntrack`` and ours alternately, printing medians and ratios.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import statistics
import subprocess
import sys
import time
import uuid
from typing import Iterator, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def netns(prefix: str = "bench") -> Iterator[str]:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def in_ns(ns: str, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], **kw)


FILL = r"""
import sys, ipaddress
from ctnetlink.client import Conntrack
from ctnetlink.model import Flow, Tuple
n, proto, start = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
zone_every = int(sys.argv[4]) if len(sys.argv) > 4 else 0
base = int(ipaddress.IPv4Address("10.0.0.0"))
def flows():
    for i in range(start, start + n):
        src = ipaddress.IPv4Address(base + i)
        dport = 53 if i % 100 == 0 else 1000 + i % 50000
        p = 17 if proto == "udp" else 6
        o = Tuple(src, "10.255.0.1", p, 1024 + i % 60000, dport)
        f = Flow(family=2, orig=o, reply=o.reversed(), timeout=3600)
        if zone_every and i % zone_every == 0:
            f.zone = 7
        yield f
with Conntrack(rcvbuf=8 << 20) as ct:
    errs = [e for e in ct.create_many(flows()) if e is not None]
    if errs:
        sys.exit(f"{len(errs)} creations failed: {errs[0]}")
"""


def fill(ns: str, n: int, proto: str = "udp", start: int = 0, zone_every: int = 0) -> None:
    """Create ``n`` entries in ``ns`` with our batched client (seconds, not minutes)."""
    in_ns(ns, [sys.executable, "-c", FILL, str(n), proto, str(start), str(zone_every)],
          check=True, cwd=ROOT)


def timed(ns: str, argv: Sequence[str], stdout=subprocess.DEVNULL) -> float:
    t0 = time.perf_counter()
    r = in_ns(ns, argv, stdout=stdout, stderr=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        raise RuntimeError(f"{argv} exited {r.returncode}")
    return dt


def compare(ns: str, cases: dict[str, tuple[Sequence[str], Sequence[str]]], rounds: int = 7) -> dict:
    """Run reference and ours alternately; print and return medians and ratios."""
    results = {}
    for label, (ref, ours) in cases.items():
        rt, ot = [], []
        for _ in range(rounds):
            rt.append(timed(ns, ref))
            ot.append(timed(ns, ours))
        r, o = statistics.median(rt), statistics.median(ot)
        results[label] = (r, o, o / r)
        print(f"{label:<40} reference {r * 1000:8.1f} ms   ours {o * 1000:8.1f} ms   ratio {o / r:5.2f}x",
              flush=True)
    return results
