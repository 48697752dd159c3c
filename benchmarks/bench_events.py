"""Event burst: 50,000 creations then a flush (100,000 events) received by ``events()``.

Usage (root): ``python3 benchmarks/bench_events.py [--flows N]``. In a private namespace
our listener (``Conntrack().events()``, default 128 MiB buffer) and the reference
``conntrack -E`` listen side by side while the burst is generated; prints how many
events each received and how many the library reports as lost.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from _common import ROOT, fill, netns

LISTEN = r"""
import sys, time
from ctnetlink.client import Conntrack
from nfnl.socket import NetlinkSocket
from ctnetlink.client import EVENT_RCVBUF
sock = NetlinkSocket(groups=7, rcvbuf=EVENT_RCVBUF)
print("ready", flush=True)
sock.settimeout(float(sys.argv[1]))
n = lost = 0
reported = []
t0 = None
try:
    for ev in Conntrack().events(sock=sock, on_overrun=reported.append):
        if t0 is None:
            t0 = time.perf_counter()
        n += 1
except TimeoutError:
    pass
print(f"received {n} lost {sum(reported)} overruns {len(reported)} rcvbuf {sock.rcvbuf}", flush=True)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=50_000)
    ap.add_argument("--idle", type=float, default=3.0)
    a = ap.parse_args()
    with netns("bevt") as ns:
        ours = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", LISTEN, str(a.idle)],
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert ours.stdout.readline().strip() == "ready"
        ref = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/sbin/conntrack", "-E"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # the reference prints nothing when it is ready; give it a moment
        t0 = time.perf_counter()
        fill(ns, a.flows)
        subprocess.run(["ip", "netns", "exec", ns, "/usr/sbin/conntrack", "-F"],
                       stderr=subprocess.DEVNULL, check=True)
        gen = time.perf_counter() - t0
        out = ours.stdout.read().strip()
        ours.wait()
        time.sleep(a.idle)
        os.kill(ref.pid, signal.SIGINT)
        _, err = ref.communicate()
        print(f"{2 * a.flows} events generated in {gen:.2f} s")
        print(f"ours:      {out}")
        print(f"reference: {err.strip().splitlines()[-1] if err.strip() else '?'}")


if __name__ == "__main__":
    main()
