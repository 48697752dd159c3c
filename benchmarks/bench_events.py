"""The library's event rates: ``Conntrack.events()`` decoding to Event objects, and
``Listener.read_raw()`` (undecoded), against the C tool's per-event cost.

Usage (root): ``python3 benchmarks/bench_events.py [--flows N]``. In a private namespace,
for each mode a listener process binds its event socket (128 MiB buffer) and waits while
a burst of 2N events (N creations, then a flush) is queued; then it drains the queue and
reports events/s and CPU time per event. The C ``conntrack -E`` (writing to a file)
listens during the burst and its CPU time per event shown is the reference cost (its
default buffer loses events: the cost is per event it printed).
Target (issue 7): ``Conntrack.events()`` >= 150,000 events/s.
"""
from __future__ import annotations

import argparse
import subprocess
import sys

from _common import ROOT, netns
from _events import Burst, Listener

LISTEN = r"""
import sys, time
from ctnetlink.client import Conntrack
mode, n = sys.argv[1], int(sys.argv[2])
ct = Conntrack()
if mode == "events":
    it = ct.events()            # bound now: the burst is queued
else:
    lst = ct.listen()
print("ready", flush=True)
sys.stdin.readline()
t0, c0 = time.perf_counter(), time.process_time()
got = 0
if mode == "events":
    for ev in it:
        got += 1
        if got == n:
            break
else:
    while got < n:
        got += len(lst.read_raw(4096, block=True))
dt, dc = time.perf_counter() - t0, time.process_time() - c0
print(f"{got} {dt} {dc}", flush=True)
"""


def library(ns: str, mode: str, flows: int) -> tuple[float, float]:
    """(events/s, CPU seconds per event) of one library listener draining a queued burst."""
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", LISTEN, mode,
                          str(2 * flows)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, cwd=ROOT)
    burst = Burst(ns, flows)
    try:
        assert p.stdout.readline().strip() == "ready"
        burst.fire()
        p.stdin.write("go\n")
        p.stdin.flush()
        got, dt, dc = p.stdout.readline().split()
        assert int(got) == 2 * flows, got
    finally:
        burst.end()
        p.kill()
        p.wait()
    return int(got) / float(dt), float(dc) / int(got)


def reference(ns: str, flows: int) -> tuple[float, int]:
    """The C tool listening during a burst: (CPU seconds per event printed, events)."""
    burst = Burst(ns, flows)
    ref = Listener(ns, ["/usr/sbin/conntrack"])
    try:
        burst.fire()
        ref.wait_lines(2 * flows)
        cpu, n, _ = ref.stop()
    finally:
        burst.end()
        ref.proc.kill()
    return cpu / max(n, 1), n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=50_000)
    ap.add_argument("--modes", default="events,raw", help="events (Event objects), raw (RawEvent)")
    a = ap.parse_args()
    with netns("evl") as ns:
        ref_cpu, rn = reference(ns, a.flows)
        print(f"C conntrack -E: {ref_cpu * 1e6:6.2f} us/event CPU ({rn} of {2 * a.flows} events printed)",
              flush=True)
        for mode, label in (("events", "Conntrack.events() -> Event"),
                            ("raw", "Listener.read_raw() -> RawEvent")):
            if mode not in a.modes.split(","):
                continue
            rate, cpu = library(ns, mode, a.flows)
            print(f"{label:<34} {rate:9,.0f} events/s   {cpu * 1e6:6.2f} us/event CPU"
                  f" ({1 / cpu:9,.0f} events/s of CPU)   ratio to C {cpu / ref_cpu:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
