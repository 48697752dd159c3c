"""``conntrack -E > file``: how fast ours writes events, in every output format, against the C tool.

Usage (root): ``python3 benchmarks/bench_event_write.py [--flows N] [--formats a,b]``.
In a private namespace a generator process creates N entries and flushes them on one
socket (2N events, all with ``[USERSPACE] portid=... progname=python3``: the generator
stays alive until the listeners are done, so every event needs its program name).

* **write rate**: our listener is stopped (SIGSTOP) while the burst is queued in its
  128 MiB receive buffer, then continued; rate = 2N / time until the file holds every
  line. Also its CPU time per event.
* **the C tool**: ``/usr/sbin/conntrack -E`` in the same format listens during the burst
  (its ``-b`` applies to another socket, so it loses events with the default buffer):
  its CPU time per event written is compared with ours (ratio = ours / C). CPU times
  count from the moment a listener listens (start-up excluded), from
  ``/proc/PID/schedstat``; the machine's other load does not inflate them as it does
  the wall-clock rates.
* **burst completion**: ours (plain format) listens while the burst is generated; the
  time from the generator's last event (its flush returned) until the file is complete.
Targets (issue 7): >= 100,000 events/s in every format; completion <= 2 s.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from _common import netns
from _events import Burst, Listener

REF = ["/usr/sbin/conntrack"]
OURS = [sys.executable, "-m", "conntrack_tools.conntrack"]
FORMATS = {
    "plain": [], "extended": ["-o", "extended"], "id": ["-o", "id"],
    "timestamp": ["-o", "timestamp"], "ktimestamp": ["-o", "ktimestamp"],
    "labels": ["-o", "labels"], "save": ["-o", "save"], "xml": ["-o", "xml"],
    "xml+timestamp": ["-o", "xml,timestamp"], "extended+id+timestamp": ["-o", "extended,id,timestamp"],
    "json": ["-o", "json"],
}

def write_rate(ns: str, fmt: list[str], flows: int) -> tuple[float, float, int]:
    """Ours, stopped while the burst is queued: (events/s, CPU s per event, lines)."""
    burst = Burst(ns, flows)
    ours = Listener(ns, OURS + fmt)
    try:
        os.kill(ours.proc.pid, signal.SIGSTOP)
        burst.fire()
        t0 = time.perf_counter()
        os.kill(ours.proc.pid, signal.SIGCONT)
        t1 = ours.wait_lines(2 * flows)
        cpu, n, _ = ours.stop()
    finally:
        burst.end()
        ours.proc.kill()
    return n / (t1 - t0), cpu / max(n, 1), n


def reference_cost(ns: str, fmt: list[str], flows: int) -> tuple[float, int]:
    """The C tool listening during the burst: (CPU s per event written, lines)."""
    burst = Burst(ns, flows)
    ref = Listener(ns, REF + fmt)
    try:
        burst.fire()
        ref.wait_lines(2 * flows)
        cpu, n, _ = ref.stop()
    finally:
        burst.end()
        ref.proc.kill()
    return cpu / max(n, 1), n


def completion(ns: str, flows: int) -> tuple[float, float, int]:
    """Ours listening during the burst: (burst duration, seconds after its last event
    until the file is complete, lines)."""
    burst = Burst(ns, flows)
    ours = Listener(ns, OURS)
    try:
        t0 = time.perf_counter()
        t_last = burst.fire()
        t_done = ours.wait_lines(2 * flows)
        _, n, _ = ours.stop()
    finally:
        burst.end()
        ours.proc.kill()
    return t_last - t0, t_done - t_last, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=50_000)
    ap.add_argument("--formats", default=",".join(FORMATS), help="comma-separated names (%(default)s)")
    a = ap.parse_args()
    names = [n for n in FORMATS if n in a.formats.split(",")] if a.formats else []
    with netns("evw") as ns:
        for name in names:
            fmt = FORMATS[name]
            rate, ours_cpu, n = write_rate(ns, fmt, a.flows)
            if name == "json":
                ref_cpu, rn = reference_cost(ns, [], a.flows)
                ref_label = "C plain"
            else:
                ref_cpu, rn = reference_cost(ns, fmt, a.flows)
                ref_label = "C"
            ok = "" if n >= 2 * a.flows else f"  (only {n} of {2 * a.flows} lines!)"
            print(f"-E {name:<22} ours {rate:9,.0f} events/s  {ours_cpu * 1e6:6.2f} us/event CPU"
                  f" ({1 / ours_cpu:8,.0f}/s of CPU)"
                  f"   {ref_label} {ref_cpu * 1e6:6.2f} us/event CPU ({rn} of {2 * a.flows} received)"
                  f"   ratio {ours_cpu / ref_cpu:5.2f}x{ok}", flush=True)
        gen, after, n = completion(ns, a.flows)
        print(f"burst of {2 * a.flows} events generated in {gen:.2f} s; ours wrote {n} lines, "
              f"complete {after:.2f} s after the last event", flush=True)


if __name__ == "__main__":
    main()
