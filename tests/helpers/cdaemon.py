"""The reference conntrackd (1.4.7) in a private namespace, for differential tests.

:class:`CDaemon` writes a config with its own LockFile, LogFile and UNIX path in a
temporary directory (never the host's /etc/conntrackd/conntrackd.conf), starts the
daemon in the foreground under ``ip netns exec`` (``ip`` execs the daemon, so the pid is
the daemon's), waits for ``initialization completed`` and kills it by that pid.
:func:`request` sends one control request code straight over a UNIX socket (as the
C client does: a native ``int``) and returns the reply bytes.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

from .netns import NetNS

CONNTRACKD = "/usr/sbin/conntrackd"
OURS = (sys.executable, "-m", "conntrack_tools.conntrackd")
"""Our conntrackd (the same command line as the reference's)."""


def terminate(proc: subprocess.Popen | None, wait: float) -> None:
    """SIGTERM to a daemon still running, SIGKILL if it has not exited after ``wait`` s."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def request(path: str, code: int, timeout: float = 30.0) -> bytes:
    """Send request ``code`` to the control socket at ``path``; the whole reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(struct.pack("=i", code))
        chunks = []
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks)


class CDaemon:
    """A C conntrackd in ``ns`` with ``general`` settings and a mode ``section``
    (``program`` = :data:`OURS` runs ours the same way)."""

    def __init__(self, ns: NetNS, section: str, general: str = "",
                 program: tuple[str, ...] = (CONNTRACKD,)) -> None:
        self.ns = ns
        self.program = program
        self.dir = tempfile.mkdtemp(prefix="dcore-cd-")
        self.config = os.path.join(self.dir, "conntrackd.conf")
        self.ctl = os.path.join(self.dir, "ctl")
        self.log = os.path.join(self.dir, "log")
        self.stats_log = os.path.join(self.dir, "stats.log")
        section = section.replace("@STATSLOG@", self.stats_log)
        with open(self.config, "w") as f:
            f.write(f"General {{\n\tLockFile {self.dir}/lock\n\tLogFile {self.log}\n"
                    f"\tUNIX {{ Path {self.ctl} }}\n\tSystemd off\n{general}}}\n{section}")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "CDaemon":
        self.proc = self.ns.popen(*self.program, "-C", self.config, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.log) and "initialization completed" in open(self.log).read():
                return self
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(f"conntrackd exited: {open(self.log).read() if os.path.exists(self.log) else ''}")
            time.sleep(0.02)
        self.stop()
        raise TimeoutError("conntrackd did not start")

    def request(self, code: int) -> bytes:
        return request(self.ctl, code)

    def client(self, *args: str, program: tuple[str, ...] = (CONNTRACKD,)) -> subprocess.CompletedProcess:
        """A client request (``conntrackd -C cfg ARGS``, the reference's by default):
        never starts a daemon."""
        return self.ns.run(*program, "-C", self.config, *args, check=False)

    def log_lines(self) -> list[str]:
        try:
            with open(self.log) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def stop(self) -> None:
        terminate(self.proc, 10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "CDaemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
