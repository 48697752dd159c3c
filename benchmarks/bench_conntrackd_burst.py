"""Event burst catch-up: the C conntrackd 1.4.7 and ours, side by side.

Both daemons (sync mode, internal cache, default buffer settings) watch one namespace.
Phase 1 creates 50,000 entries as fast as the kernel takes them, phase 2 flushes the
table (50,000 DESTROY events). After each phase the benchmark prints, for each daemon,
how many events its socket lost (overruns), how far its internal cache was from the
kernel's table when the burst ended, and how long after the end of the burst its cache
equalled the table (the C daemon waits ``NetlinkOverrunResync``, 30 s by default, before
it resyncs; ours resyncs as soon as the event socket has been quiet for a moment).

    python benchmarks/bench_conntrackd_burst.py [--flows 50000] [--wait 45]
"""
from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks._common import ROOT, fill, in_ns, netns  # noqa: E402
from tests.helpers.cdaemon import request  # noqa: E402

C_DAEMON = "/usr/sbin/conntrackd"
CONNTRACK = "/usr/sbin/conntrack"
SYNC = """Sync {
    Mode FTFW { }
    UDP {
        IPv4_address 127.0.0.1
        IPv4_Destination_Address 127.0.0.2
        Port 3780
        Interface lo
    }
}
"""

# our daemon's kernel side and sync mode on a selectors loop; every 20 ms it prints
# "monotonic-time cached-flows overruns resyncs"
OURS = r"""
import sys, time, selectors, heapq, itertools
sys.path.insert(0, sys.argv[1])
from conntrack_tools.conntrackd.kernel import Kernel, KernelSettings
from conntrack_tools.conntrackd.syncmode import SyncMode
class Loop:
    def __init__(self):
        self.sel = selectors.DefaultSelector(); self.t = []; self.n = itertools.count()
    def add_reader(self, fd, cb): self.sel.register(fd, selectors.EVENT_READ, cb)
    def remove_reader(self, fd): self.sel.unregister(fd)
    def call_later(self, s, cb):
        h = [time.monotonic() + s, next(self.n), cb, False]
        class H:
            def cancel(self_): h[3] = True
        heapq.heappush(self.t, h); return H()
    def run(self):
        while True:
            now = time.monotonic()
            while self.t and self.t[0][0] <= now:
                h = heapq.heappop(self.t)
                if not h[3]: h[2]()
            timeout = max(0, self.t[0][0] - time.monotonic()) if self.t else None
            for key, _ in self.sel.select(timeout):
                key.data()
loop = Loop()
mode = SyncMode()
k = Kernel(KernelSettings(), mode, loop=loop, log=lambda l, m: print("#", l, m, flush=True))
k.open()
def report():
    print(time.monotonic(), len(mode.internal), k.stats.netlink_overrun, k.stats.overrun_resyncs, flush=True)
    loop.call_later(0.02, report)
report()
loop.run()
"""


def c_count(ctl: str) -> tuple[int, int]:
    """(cached flows, overruns) of the C daemon."""
    s = request(ctl, 21).decode()
    n = int(s.splitlines()[1].split()[-1])
    r = request(ctl, 30).decode()
    over = int(next(line for line in r.splitlines() if "netlink overrun" in line).split()[-1])
    return n, over


def kernel_count(ns: str) -> int:
    out = in_ns(ns, [CONNTRACK, "-C"], capture_output=True, text=True).stdout
    return int(out.strip() or 0)


class Ours:
    def __init__(self, ns: str) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", OURS, ROOT],
                                     stdout=subprocess.PIPE, text=True, bufsize=1, cwd=ROOT)
        self.last = (0.0, 0, 0, 0)

    def poll(self) -> tuple[float, int, int, int]:
        while select.select([self.proc.stdout], [], [], 0)[0]:
            line = self.proc.stdout.readline()
            if not line:
                break
            if not line.startswith("#"):
                t, n, o, r = line.split()
                self.last = (float(t), int(n), int(o), int(r))
        return self.last

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def phase(name: str, ns: str, action, expected_after: int, ctl: str, ours: Ours, wait: float) -> None:
    c_over0 = c_count(ctl)[1]
    o_over0 = ours.poll()[2]
    action()
    end = time.monotonic()
    kernel_n = kernel_count(ns)
    c_at_end = c_count(ctl)[0]
    o_at_end = ours.poll()[1]
    c_done = o_done = None
    deadline = end + wait
    while time.monotonic() < deadline and (c_done is None or o_done is None):
        now = time.monotonic()
        if c_done is None and c_count(ctl)[0] == kernel_n:
            c_done = now - end
        if o_done is None and ours.poll()[1] == kernel_n:
            o_done = now - end
        time.sleep(0.02)
    c_over = c_count(ctl)[1] - c_over0
    o_over = ours.poll()[2] - o_over0

    def fmt(done):
        return f"{done:7.2f} s" if done is not None else f"> {wait:.0f} s"

    print(f"{name}: kernel table {kernel_n} flows (expected {expected_after})")
    print(f"  C conntrackd : overruns {c_over:3d}, cache at burst end {c_at_end:6d} "
          f"(off by {abs(c_at_end - kernel_n):6d}), equal to the table after {fmt(c_done)}")
    print(f"  ours         : overruns {o_over:3d}, cache at burst end {o_at_end:6d} "
          f"(off by {abs(o_at_end - kernel_n):6d}), equal to the table after {fmt(o_done)}",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=50000)
    ap.add_argument("--wait", type=float, default=45.0)
    args = ap.parse_args()
    with netns("dcore-burst") as ns, tempfile.TemporaryDirectory(prefix="dcore-burst-") as d:
        with open(f"{d}/c.conf", "w") as f:
            f.write(f"General {{\n LockFile {d}/lock\n LogFile {d}/log\n UNIX {{ Path {d}/ctl }}\n"
                    f" Systemd off\n}}\n{SYNC}")
        c = subprocess.Popen(["ip", "netns", "exec", ns, C_DAEMON, "-C", f"{d}/c.conf"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ours = Ours(ns)
        try:
            while not (os.path.exists(f"{d}/log") and "initialization completed" in open(f"{d}/log").read()):
                time.sleep(0.05)
            while ours.poll()[0] == 0.0:
                time.sleep(0.05)
            print(f"burst of {2 * args.flows} events ({args.flows} creates, then a flush), "
                  "default NetlinkBufferSize, NetlinkOverrunResync 30 s", flush=True)
            phase("creates", ns, lambda: fill(ns, args.flows), args.flows, f"{d}/ctl", ours, args.wait)
            phase("flush", ns, lambda: in_ns(ns, [CONNTRACK, "-F"], capture_output=True), 0,
                  f"{d}/ctl", ours, args.wait)
        finally:
            ours.close()
            c.terminate()
            c.wait()


if __name__ == "__main__":
    main()
