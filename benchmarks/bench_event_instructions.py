"""Event costs in instructions (``valgrind --tool=callgrind``): load-independent figures
for ``Conntrack.events()`` and ``conntrack -E > file``, ours against the C tool.

Usage (root): ``python3 benchmarks/bench_event_instructions.py [--flows N] [--formats a,b]``.
CPU time per event swings by 2x on a machine shared with other jobs (caches and cores
are shared too); the number of user-space instructions executed does not. In a private
namespace, each listener runs under callgrind while a burst of 2N events (N creations,
then a flush, all with ``[USERSPACE] portid= progname=``) arrives:

* ``Conntrack.events()``: the instructions between two marks (``os.getppid()``) around
  the loop that takes the 2N events as Event objects;
* ``conntrack -E`` (ours and ``/usr/sbin/conntrack``, same format): the instructions of a
  run with the burst minus those of a run without, per line written. The C tool loses
  most events under valgrind (its receive buffer is small): its figure is per line it
  wrote, which is what a line costs it.

Kernel time (receiving, writing) is not counted: callgrind sees user space only.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from _common import ROOT, netns
from _events import Burst, Listener

VALGRIND = ["valgrind", "--tool=callgrind"]
REF = ["/usr/sbin/conntrack"]
OURS = [sys.executable, "-m", "conntrack_tools.conntrack"]
FORMATS = {
    "plain": [], "extended": ["-o", "extended"], "id": ["-o", "id"],
    "timestamp": ["-o", "timestamp"], "ktimestamp": ["-o", "ktimestamp"],
    "save": ["-o", "save"], "xml": ["-o", "xml"], "xml+timestamp": ["-o", "xml,timestamp"],
    "extended+id+timestamp": ["-o", "extended,id,timestamp"], "json": ["-o", "json"],
}

EVENTS = r"""
import os, sys
from ctnetlink.client import Conntrack
n = int(sys.argv[1])
it = Conntrack().events()
print("ready", flush=True)
sys.stdin.readline()
os.getppid()                      # mark: callgrind dumps the counts before this call
got = 0
for ev in it:
    got += 1
    if got == n:
        break
os.getppid()                      # mark
print(got, flush=True)
"""


def _summary(path: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def events_cost(ns: str, flows: int) -> float:
    """Instructions per event of ``Conntrack.events()`` taking a queued burst."""
    out = tempfile.mkdtemp(prefix="bench-cg-")
    try:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *VALGRIND, "--dump-before=os_getppid",
                              f"--callgrind-out-file={out}/cg.%p", sys.executable, "-c", EVENTS,
                              str(2 * flows)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        burst = Burst(ns, flows)
        try:
            assert p.stdout.readline().strip() == "ready"
            burst.fire()
            p.stdin.write("go\n")
            p.stdin.flush()
            got = int(p.stdout.readline())
            p.wait()
        finally:
            burst.end()
            if p.poll() is None:
                p.kill()
        assert got == 2 * flows, got
        (part,) = glob.glob(f"{out}/cg.*.2")  # between the marks
        return _summary(part) / got
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _listen_run(ns: str, argv: list[str], flows: int) -> tuple[int, int]:
    """(instructions, lines) of ``argv -E`` under callgrind, with a burst of ``flows``
    (0: none) while it listens."""
    out = tempfile.mkdtemp(prefix="bench-cg-")
    try:
        lst = Listener(ns, [*VALGRIND, f"--callgrind-out-file={out}/cg.%p", *argv], startup=120)
        burst = Burst(ns, flows) if flows else None
        try:
            if burst is not None:
                burst.fire()
                lst.wait_lines(2 * flows)
            os.kill(lst.proc.pid, signal.SIGINT)
            lst.proc.wait(timeout=120)
            n = lst.lines()
            os.unlink(lst.file.name)
        finally:
            if burst is not None:
                burst.end()
            if lst.proc.poll() is None:
                lst.proc.kill()
        (path,) = glob.glob(f"{out}/cg.*")
        return _summary(path), n
    finally:
        shutil.rmtree(out, ignore_errors=True)


def write_cost(ns: str, argv: list[str], flows: int) -> tuple[float, int]:
    """(instructions per line written, lines) of ``argv -E`` taking a burst."""
    base, _ = _listen_run(ns, argv, 0)
    total, n = _listen_run(ns, argv, flows)
    return (total - base) / max(n, 1), n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=5_000)
    ap.add_argument("--formats", default=",".join(FORMATS), help="comma-separated (%(default)s)")
    ap.add_argument("--no-library", action="store_true")
    a = ap.parse_args()
    with netns("evi") as ns:
        if not a.no_library:
            ours = events_cost(ns, a.flows)
            ref, rn = write_cost(ns, REF, a.flows)
            print(f"Conntrack.events() -> Event   {ours:9,.0f} instructions/event"
                  f"   C conntrack -E {ref:9,.0f}/line ({rn} lines)   ratio {ours / ref:5.2f}x",
                  flush=True)
        for name in [n for n in FORMATS if n in a.formats.split(",")]:
            fmt = FORMATS[name]
            ours, n = write_cost(ns, OURS + fmt, a.flows)
            ref, rn = write_cost(ns, REF + (fmt if name != "json" else []), a.flows)
            ok = "" if n >= 2 * a.flows else f"  (only {n} of {2 * a.flows} lines!)"
            print(f"-E {name:<22} ours {ours:9,.0f} instructions/line   C{' plain' if name == 'json' else ''}"
                  f" {ref:9,.0f}/line ({rn} lines)   ratio {ours / ref:5.2f}x{ok}", flush=True)


if __name__ == "__main__":
    main()
