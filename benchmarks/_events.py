"""Shared plumbing of the event benchmarks: a burst generator and a ``conntrack -E``
listener writing to a file, both inside a private namespace.

The generator creates N entries and flushes them on one socket (2N events, all with
``[USERSPACE] portid=... progname=python3``) and stays alive until told, so that every
event needs its program name.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

from _common import ROOT

BURST = r"""
import sys
from ctnetlink.client import Conntrack
from ctnetlink.model import Flow, Tuple
n = int(sys.argv[1])
def flows():
    for i in range(n):
        o = Tuple(src=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", dst="10.255.0.1", proto=17,
                  sport=1024 + i % 60000, dport=53)
        yield Flow(family=2, orig=o, reply=o.reversed(), timeout=3600)
sys.stdin.readline()
with Conntrack(rcvbuf=8 << 20) as ct:
    errs = [e for e in ct.create_many(flows()) if e is not None]
    ct.flush()
    print(f"done {len(errs)}", flush=True)
    sys.stdin.readline()  # keep the socket (and so progname=) alive until told
"""


def _netlink_sockets(pid: int) -> dict[int, tuple[int, int]]:
    """inode -> (groups, rmem) of the NETLINK_NETFILTER sockets in ``pid``'s namespace."""
    out = {}
    try:
        with open(f"/proc/{pid}/net/netlink") as f:
            next(f)
            for line in f:
                p = line.split()
                if p[1] == "12":
                    out[int(p[9])] = (int(p[3], 16), int(p[4]))
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    return out


def _event_socket(pid: int) -> int | None:
    """The inode of ``pid``'s socket bound to the conntrack groups."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    mine = set()
    for fd in fds:
        try:
            t = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if t.startswith("socket:["):
            mine.add(int(t[8:-1]))
    for inode, (groups, _) in _netlink_sockets(pid).items():
        if inode in mine and groups & 7 == 7:
            return inode
    return None


def _asleep(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "S"
    except (OSError, IndexError):
        return False


class Listener:
    """A ``conntrack -E`` writing to a temporary file inside the namespace."""

    def __init__(self, ns: str, argv: list[str], startup: float = 20) -> None:
        self.file = tempfile.NamedTemporaryFile(prefix="bench-events-", delete=False)
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv, "-E"], stdout=self.file,
                                     stderr=subprocess.PIPE, cwd=ROOT)
        deadline = time.monotonic() + startup
        while True:
            self.inode = _event_socket(self.proc.pid)
            if self.inode is not None and _asleep(self.proc.pid):
                break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{argv} never listened")
            time.sleep(0.005)
        self.cpu0 = self.cpu()

    def cpu(self) -> float:
        """CPU seconds the listener used so far (``/proc/PID/schedstat``, nanoseconds)."""
        with open(f"/proc/{self.proc.pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9

    def lines(self) -> int:
        with open(self.file.name, "rb") as f:
            return f.read().count(b"\n")

    def wait_lines(self, n: int, timeout: float = 600) -> float:
        """Until the file holds ``n`` lines (or the socket is empty and the file stops
        growing); returns the time that happened."""
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            size = os.stat(self.file.name).st_size
            rmem = _netlink_sockets(self.proc.pid).get(self.inode, (0, 0))[1]
            if rmem == 0 and size == last and _asleep(self.proc.pid):
                if self.lines() >= n:
                    return time.perf_counter()
                return time.perf_counter()  # idle: it got what it got
            last = size
            time.sleep(0.01)
        raise TimeoutError("listener never finished")

    def stop(self) -> tuple[float, int, bytes]:
        """SIGINT; returns (CPU seconds since it listened: start-up excluded, lines
        written, stderr)."""
        cpu = self.cpu() - self.cpu0
        os.kill(self.proc.pid, signal.SIGINT)
        err = self.proc.stderr.read()
        self.proc.wait()
        n = self.lines()
        os.unlink(self.file.name)
        return cpu, n, err


class Burst:
    """The generator: started and waiting; ``fire()`` runs the burst and returns when
    its last event was produced (the flush returned)."""

    def __init__(self, ns: str, flows: int) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", BURST, str(flows)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def fire(self) -> float:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().split()
        if line != ["done", "0"]:
            raise RuntimeError(f"burst failed: {line}")
        return time.perf_counter()

    def end(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
