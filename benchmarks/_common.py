"""Shared benchmark plumbing: a private network namespace and a fast table filler.

Every benchmark builds its table inside its own namespace (deleted afterwards) and runs
the reference ``conntrack`` and ours alternately, printing medians and ratios.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from typing import Iterator, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# measure an installed program as it runs for users: with its bytecode cached
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
subprocess.run([sys.executable, "-m", "compileall", "-q", "nfnl", "ctnetlink", "tools"],
               cwd=ROOT, check=False, stdout=subprocess.DEVNULL)


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
base = int(ipaddress.IPv4Address("10.0.0.0"))
def flows():
    for i in range(start, start + n):
        # 1% each: source 10.99.0.1 (i % 100 == 0), udp to port 53 (== 1), zone 7 (== 2)
        src = "10.99.0.1" if i % 100 == 0 else ipaddress.IPv4Address(base + i)
        p = {"udp": 17, "tcp": 6}.get(proto) or (6 if i % 2 else 17)
        if i % 100 == 1:
            p, dport = 17, 53
        else:
            dport = 1000 + i % 50000
        sport = 1024 + (i // 100) % 60000 if i % 100 == 0 else 1024 + i % 60000
        o = Tuple(src=src, dst="10.255.0.1", proto=p, sport=sport, dport=dport)
        f = Flow(family=2, orig=o, timeout=3600)
        if i % 100 == 2:
            f.zone = 7
        yield f
with Conntrack(rcvbuf=8 << 20) as ct:
    errs = [e for e in ct.create_many(flows()) if e is not None]
    if errs:
        sys.exit(f"{len(errs)} creations failed: {errs[0]}")
"""


def rss_of(pid: int) -> int:
    """The resident set of a process, bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    return 0


def fill(ns: str, n: int, proto: str = "udp", start: int = 0) -> None:
    """Create ``n`` entries in ``ns`` with our batched client (seconds, not minutes).

    ``proto`` is udp, tcp or mixed (half each). 1% of the entries have source
    10.99.0.1, 1% are udp to port 53, 1% are in zone 7.
    """
    in_ns(ns, [sys.executable, "-c", FILL, str(n), proto, str(start)], check=True, cwd=ROOT)


def timed(ns: str, argv: Sequence[str], stdout=subprocess.DEVNULL) -> float:
    return timed_cpu(ns, argv, stdout)[0]


def timed_cpu(ns: str, argv: Sequence[str], stdout=subprocess.DEVNULL) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the command and its children)."""
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = in_ns(ns, argv, stdout=stdout, stderr=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"{argv} exited {r.returncode}")
    return dt, (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)


def compare(ns: str, cases: dict[str, tuple[Sequence[str], Sequence[str]]], rounds: int = 7) -> dict:
    """Run reference and ours alternately; print and return medians and ratios (of the
    wall-clock times, and of the CPU times, which the machine's other load inflates
    less; ``ip netns exec`` is counted on both sides)."""
    results = {}
    for label, (ref, ours) in cases.items():
        rt, ot, rc, oc = [], [], [], []
        for _ in range(rounds):
            for argv, wall, cpu in ((ref, rt, rc), (ours, ot, oc)):
                w, c = timed_cpu(ns, argv)
                wall.append(w)
                cpu.append(c)
        r, o = statistics.median(rt), statistics.median(ot)
        r_c, o_c = statistics.median(rc), statistics.median(oc)
        results[label] = (r, o, o / r)
        print(f"{label:<40} reference {r * 1000:8.1f} ms   ours {o * 1000:8.1f} ms   ratio {o / r:5.2f}x"
              f"   CPU {r_c * 1000:6.0f} / {o_c * 1000:6.0f} ms   ratio {o_c / r_c:5.2f}x", flush=True)
    return results
