"""A conntrackd (C 1.4.7 or ours) whose external cache holds given sync messages, for
commit (``-c``) tests and the commit benchmark.

:class:`CommitRig` is a private namespace (prefix ``commit``) with a sync link ``sy0``
(``10.239.0.1/24``, one end of a veth pair: this kernel has no dummy device; the sync
traffic is not tracked) and a daemon in NOTRACK mode over UDP on it, with its own
config, lock, log and control socket in a temporary directory. Its external cache is
filled the way a peer fills it: NOTRACK datagrams built with our wire codec are sent
over UDP from a socket inside the namespace (re-sent until ``-s`` counts every flow:
NOTRACK has no retransmission).

:func:`datagrams` packs state messages into datagrams of the C channel buffer size;
:func:`table` reads ``conntrack -L -o extended`` with the timeouts normalised.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .cdaemon import CONNTRACKD, OURS, request, terminate
from .netns import NetNS

ADDR = "10.239.0.1"
PEER = "10.239.0.2"
PORT = 3780
BUFFER = 1500 - 28
"""The C channel buffer of a UDP channel on a 1500-byte MTU (spec §5.2.4)."""
NOTRACK_SYNC = f"""
table inet commitrig {{
    chain out {{ type filter hook output priority raw; udp dport {PORT} notrack; }}
    chain pre {{ type filter hook prerouting priority raw; udp dport {PORT} notrack; }}
}}
"""
"""The sync traffic is not tracked (as on a real sync link): the tables hold the flows
under test only."""
STATS_EXTERNAL = re.compile(r"cache external:\s*\ncurrent active connections:\s+(\d+)")
COMMIT_TOOK = re.compile(r"commit has taken (\d+\.\d+) seconds")


def datagrams(messages: list[bytes], size: int = BUFFER) -> list[bytes]:
    """Messages packed back to back into datagrams of at most ``size`` bytes."""
    out: list[bytes] = []
    cur: list[bytes] = []
    n = 0
    for m in messages:
        if n + len(m) > size and cur:
            out.append(b"".join(cur))
            cur, n = [], 0
        cur.append(m)
        n += len(m)
    if cur:
        out.append(b"".join(cur))
    return out


_TIMEOUT = re.compile(r"^(\S+\s+\d+\s+\S+\s+\d+\s+)\d+ ")


def table(ns: NetNS) -> list[str]:
    """``conntrack -L -o extended`` of ``ns``, sorted, timeouts replaced by ``T``."""
    out = ns.conntrack("-L", "-o", "extended").stdout
    return sorted(_TIMEOUT.sub(r"\1T ", line) for line in out.splitlines() if line.strip())


def timeouts(ns: NetNS) -> list[int]:
    out = ns.conntrack("-L", "-o", "extended").stdout
    return [int(line.split()[4]) for line in out.splitlines() if line.strip()]


class CommitRig:
    """See the module docstring. ``ours`` selects our daemon; ``general``, ``sync`` and
    ``mode`` add lines to the ``General``, ``Sync`` and ``Mode NOTRACK`` sections."""

    def __init__(self, ours: bool, *, general: str = "", sync: str = "", mode: str = "",
                 hashsize: int = 65536, limit: int = 262144) -> None:
        self.ours = ours
        self.ns = NetNS("commit")
        self.dir = tempfile.mkdtemp(prefix="commit-rig-")
        self.config = os.path.join(self.dir, "conntrackd.conf")
        self.ctl = os.path.join(self.dir, "ctl")
        self.log = os.path.join(self.dir, "log")
        self.proc: subprocess.Popen | None = None
        with open(self.config, "w") as f:
            f.write(f"General {{\n\tLockFile {self.dir}/lock\n\tLogFile {self.log}\n"
                    f"\tUNIX {{ Path {self.ctl} }}\n\tSystemd off\n\tHashSize {hashsize}\n"
                    f"\tHashLimit {limit}\n\tNetlinkBufferSize 2097152\n"
                    f"\tNetlinkBufferSizeMaxGrowth 8388608\n{general}}}\n"
                    f"Sync {{\n\tMode NOTRACK {{ {mode} }}\n"
                    f"\tUDP {{\n\t\tIPv4_address {ADDR}\n\t\tIPv4_Destination_Address {PEER}\n"
                    f"\t\tPort {PORT}\n\t\tInterface sy0\n\t\tRcvSocketBuffer 16777216\n\t}}\n"
                    f"{sync}}}\n")

    # --- life cycle ------------------------------------------------------------------------
    def start(self, grams: list[bytes], expected: int, timeout: float = 120.0) -> "CommitRig":
        """Create the namespace, start the daemon and fill its external cache with
        ``grams`` until it holds ``expected`` flows."""
        self.ns.create()
        self.ns.run("ip", "link", "add", "sy0", "type", "veth", "peer", "name", "sy1")
        self.ns.run("ip", "addr", "add", f"{ADDR}/24", "dev", "sy0")
        for dev in ("sy0", "sy1"):
            self.ns.run("ip", "link", "set", dev, "up")
        self.ns.nft(NOTRACK_SYNC)
        program = OURS if self.ours else (CONNTRACKD,)
        self.proc = self.ns.popen(*program, "-C", self.config, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while "initialization completed" not in self.log_text():
            if self.proc.poll() is not None:
                raise RuntimeError(f"conntrackd exited: {self.log_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError("conntrackd did not start")
            time.sleep(0.02)
        if grams:
            self._feed(grams, expected, deadline)
        return self

    def _feed(self, grams: list[bytes], expected: int, deadline: float) -> None:
        with self.ns.enter():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((ADDR, 0))
            while True:
                for i, g in enumerate(grams):
                    sock.sendto(g, (ADDR, PORT))
                    if i % 64 == 63:
                        time.sleep(0.001)  # NOTRACK has no retransmission: do not flood
                wait_until = time.monotonic() + 5
                while time.monotonic() < wait_until:
                    n = self.external_count()
                    if n >= expected:
                        return
                    time.sleep(0.05)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"external cache holds {n} of {expected}")
        finally:
            sock.close()

    def external_count(self) -> int:
        m = STATS_EXTERNAL.search(request(self.ctl, 21).decode())
        return int(m.group(1)) if m else -1

    def log_text(self) -> str:
        try:
            return Path(self.log).read_text()
        except FileNotFoundError:
            return ""

    def log_lines(self) -> list[str]:
        """The log lines without their time stamp and pid."""
        return [re.sub(r"^\[[^]]*\] \(pid=\d+\) ", "", line)
                for line in self.log_text().splitlines()]

    def client(self, *args: str, program: tuple[str, ...] = (CONNTRACKD,),
               timeout: float = 300) -> tuple[subprocess.CompletedProcess, float]:
        """A client command (the C client by default) and its wall time."""
        t0 = time.perf_counter()
        r = self.ns.run(*program, "-C", self.config, *args, check=False, timeout=timeout)
        return r, time.perf_counter() - t0

    def commit_took(self) -> float | None:
        """The last ``commit has taken`` figure of the log."""
        found = COMMIT_TOOK.findall(self.log_text())
        return float(found[-1]) if found else None

    def stop(self) -> None:
        terminate(self.proc, 20)
        self.proc = None

    def close(self) -> None:
        self.stop()
        self.ns.delete()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "CommitRig":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["CommitRig", "datagrams", "table", "timeouts", "OURS", "CONNTRACKD"]
