"""Bytes per cached flow: the C conntrackd 1.4.7 and ours, side by side.

For each table size (default 100,000 and 1,000,000 flows) and each mode (stats, and sync
with its internal cache), the same kernel table is loaded by both daemons; the figure is
the daemon's RSS growth after the start-up dump over the RSS of the same daemon started
on an empty table, divided by the number of flows. Run as root:

    python benchmarks/bench_conntrackd_memory.py [--sizes 100000,1000000]

Each namespace can hold at most the host's ``nf_conntrack_max`` entries (a namespace
cannot raise its own limit above it); sizes above it are skipped with a note unless
``--raise-host-max`` is given, which raises the host limit for the run and restores it.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks._common import ROOT, fill, netns, rss_of  # noqa: E402

C_DAEMON = "/usr/sbin/conntrackd"
HOST_MAX = "/proc/sys/net/netfilter/nf_conntrack_max"

SYNC_SECTION = """Sync {
    Mode FTFW { }
    UDP {
        IPv4_address 127.0.0.1
        IPv4_Destination_Address 127.0.0.2
        Port 3780
        Interface lo
    }
}
"""

# Our daemon until the process shell runs it from a config: the kernel side and the
# mode on a minimal loop, RSS printed after the start-up dump.
OURS = r"""
import os, sys, time, selectors
sys.path.insert(0, sys.argv[3])
mode_name, limit = sys.argv[1], int(sys.argv[2])
def rss():
    for l in open("/proc/self/status"):
        if l.startswith("VmRSS"):
            return int(l.split()[1]) * 1024
from conntrack_tools.conntrackd.kernel import Kernel, KernelSettings
from conntrack_tools.conntrackd.stats import StatsMode
from conntrack_tools.conntrackd.syncmode import SyncMode
class Loop:
    def add_reader(self, fd, cb): pass
    def remove_reader(self, fd): pass
    def call_later(self, s, cb):
        class H:
            def cancel(self): pass
        return H()
mode = StatsMode(limit=limit) if mode_name == "stats" else SyncMode(limit=limit)
import gc
k = Kernel(KernelSettings(), mode, loop=Loop(), log=lambda l, m: None)
k.open()
gc.collect()
after = rss()
n = len(mode.cache if mode_name == "stats" else mode.internal)
print(after, n)
"""


def c_daemon_rss(ns: str, mode: str, limit: int) -> tuple[int, int]:
    """(RSS after start-up, cached flows) of the C daemon in ``ns``."""
    with tempfile.TemporaryDirectory(prefix="dcore-bench-") as d:
        section = "Stats {\n}\n" if mode == "stats" else SYNC_SECTION
        with open(f"{d}/c.conf", "w") as f:
            f.write(f"General {{\n HashLimit {limit}\n LockFile {d}/lock\n LogFile {d}/log\n"
                    f" UNIX {{ Path {d}/ctl }}\n Systemd off\n}}\n{section}")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, C_DAEMON, "-C", f"{d}/c.conf"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 600
            while time.time() < deadline:
                if os.path.exists(f"{d}/log") and "initialization completed" in open(f"{d}/log").read():
                    break
                if proc.poll() is not None:
                    raise RuntimeError("the C daemon exited")
                time.sleep(0.05)
            time.sleep(0.3)
            rss = rss_of(proc.pid)
            out = subprocess.run(["ip", "netns", "exec", ns, C_DAEMON, "-C", f"{d}/c.conf", "-s"],
                                 capture_output=True, text=True).stdout
            n = int(out.splitlines()[1].split()[-1]) if out else -1
        finally:
            proc.terminate()
            proc.wait()
        return rss, n


def our_rss(ns: str, mode: str, limit: int) -> tuple[int, int]:
    """(RSS after start-up, cached flows) of ours in ``ns``."""
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", OURS, mode, str(limit), ROOT],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    after, n = (int(x) for x in out.split())
    return after, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--raise-host-max", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    host_max = int(open(HOST_MAX).read())
    old_max = host_max
    if args.raise_host_max and max(sizes) > host_max:
        with open(HOST_MAX, "w") as f:
            f.write(str(max(sizes) + 1000))
        host_max = max(sizes) + 1000
    try:
        print(f"{'flows':>9} {'mode':<6} {'C B/flow':>9} {'ours B/flow':>11} {'ratio':>6}")
        for n in sizes:
            if n > host_max:
                print(f"{n:>9} skipped: nf_conntrack_max of the host is {host_max} "
                      f"(--raise-host-max raises it for the run)")
                continue
            limit = max(262144, n + 1000)
            with netns("dcore-bench") as ns:
                empty = {m: c_daemon_rss(ns, m, limit)[0] for m in ("stats", "sync")}
                ours_empty = {m: our_rss(ns, m, limit)[0] for m in ("stats", "sync")}
                fill(ns, n)
                for m in ("stats", "sync"):
                    c_full, c_n = c_daemon_rss(ns, m, limit)
                    o_full, o_n = our_rss(ns, m, limit)
                    c_per = (c_full - empty[m]) / max(c_n, 1)
                    o_per = (o_full - ours_empty[m]) / max(o_n, 1)
                    print(f"{n:>9} {m:<6} {c_per:9.0f} {o_per:11.0f} {o_per / c_per:6.2f}"
                          f"   (C {c_n} flows, ours {o_n})", flush=True)
    finally:
        if host_max != old_max:
            with open(HOST_MAX, "w") as f:
                f.write(str(old_max))


if __name__ == "__main__":
    main()
