"""Library dump-to-Flow time on a 100,000-entry table, as a ratio to ``conntrack -L``.

Usage (root): ``python3 benchmarks/bench_dump.py [--flows N] [--rounds R]``. Builds the
table in a private namespace, then alternates ``conntrack -L > /dev/null`` (the C tool)
with a Python process that iterates ``Conntrack().dump()`` into Flow objects, and prints
median wall times and the ratio.
"""
from __future__ import annotations

import argparse
import sys

from _common import compare, fill, netns

DUMP = "from ctnetlink.client import Conntrack\nn = sum(1 for _ in Conntrack().dump())\nassert n >= {n}, n\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    with netns("bdump") as ns:
        fill(ns, a.flows)
        print(f"{a.flows} flows")
        compare(ns, {
            "dump to Flow objects vs conntrack -L": (
                ["/usr/sbin/conntrack", "-L"], [sys.executable, "-c", DUMP.format(n=a.flows)]),
        }, a.rounds)


if __name__ == "__main__":
    main()
