"""Our ``conntrack`` against the C tool, measured side by side (medians of alternating runs).

Usage (root): ``python3 benchmarks/bench_cli.py [--flows N] [--rounds R] [--only NAME]``.
In a private namespace with a 100,000-entry table it times ``-L`` in every output
format, filtered listings where 1% matches (``-s``, ``-p udp --dport 53``, ``-w``),
``-D`` of 50,000 of 100,000 entries (table rebuilt before every run), and the start-up
cost of one-flow commands (``-C``, ``-I``, ``-D``) over a bare ``python3 -c pass``.
Targets (issue 3): listing <= 1.5x, filtered <= 0.5x, -D <= 1.0x, start-up <= 40 ms.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from _common import compare, fill, in_ns, netns, timed

REF = ["/usr/sbin/conntrack"]
OURS = [sys.executable, "-m", "conntrack_tools.conntrack"]

LISTINGS = {
    "-L": ["-L"],
    "-L -o save": ["-L", "-o", "save"],
    "-L -o extended": ["-L", "-o", "extended"],
    "-L -o xml": ["-L", "-o", "xml"],
}
FILTERED = {
    "-L -s 10.99.0.1 (1%)": ["-L", "-s", "10.99.0.1"],
    "-L -p udp --dport 53 (1%)": ["-L", "-p", "udp", "--dport", "53"],
    "-L -w 7 (1%)": ["-L", "-w", "7"],
}


def delete_case(ns: str, flows: int, rounds: int) -> None:
    rt, ot = [], []
    for i in range(rounds):
        for tool, acc in ((REF, rt), (OURS, ot)):
            in_ns(ns, REF + ["-F"], stderr=subprocess.DEVNULL, check=True)
            fill(ns, flows, "mixed")
            acc.append(timed(ns, tool + ["-D", "-p", "tcp"]))
    r, o = statistics.median(rt), statistics.median(ot)
    print(f"{'-D -p tcp (50% of the table)':<40} reference {r * 1000:8.1f} ms   ours {o * 1000:8.1f} ms"
          f"   ratio {o / r:5.2f}x", flush=True)


def startup_case(ns: str, rounds: int) -> None:
    base = [sys.executable, "-c", "pass"]
    one = ["-s", "192.0.2.1", "-d", "192.0.2.2", "-p", "tcp", "--sport", "1", "--dport", "2"]
    cases = {
        "-C": (["-C"], None),
        "-I (one flow)": (["-I", *one, "--state", "ESTABLISHED", "-t", "60"], ["-D", *one]),
        "-D (one flow)": (["-D", *one], ["-I", *one, "--state", "ESTABLISHED", "-t", "60"]),
    }
    bare = statistics.median(timed(ns, base) for _ in range(rounds * 2))
    print(f"{'python3 -c pass':<40} {bare * 1000:8.1f} ms")
    for label, (args, prepare) in cases.items():
        rt, ot = [], []
        for _ in range(rounds):
            for tool, acc in ((REF, rt), (OURS, ot)):
                if prepare:
                    in_ns(ns, REF + prepare, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
                acc.append(timed(ns, tool + args))
        r, o = statistics.median(rt), statistics.median(ot)
        print(f"{label:<40} reference {r * 1000:8.1f} ms   ours {o * 1000:8.1f} ms"
              f"   ours - python3 -c pass {(o - bare) * 1000:6.1f} ms", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", choices=["list", "filtered", "delete", "startup"])
    a = ap.parse_args()
    with netns("bcli") as ns:
        if a.only in (None, "startup"):
            startup_case(ns, a.rounds)
        if a.only in (None, "list", "filtered"):
            fill(ns, a.flows, "mixed")
            print(f"{a.flows} flows")
        if a.only in (None, "list"):
            compare(ns, {k: (REF + v, OURS + v) for k, v in LISTINGS.items()}, a.rounds)
        if a.only in (None, "filtered"):
            compare(ns, {k: (REF + v, OURS + v) for k, v in FILTERED.items()}, a.rounds)
        if a.only in (None, "delete"):
            delete_case(ns, a.flows, max(3, a.rounds // 2))


if __name__ == "__main__":
    main()
