"""The reference ``conntrackd`` (1.4.7) as an oracle for configuration and command-line
tests, and ours rendered the same way.

Client mode parses the whole configuration and then fails to connect without starting
anything: ``conntrackd -C FILE -s`` prints the configuration's diagnostics and then
either its fatal error or ``can't connect`` (exit 1). :func:`reference_diagnostics`
runs that in the calling thread's network namespace (enter a private one first: the
interface names resolve there) and strips the time and pid of each line;
:func:`our_diagnostics` produces the same text from our parser in-process. A
configuration given here never names a UNIX path that exists, so nothing is ever
connected to.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile

from conntrack_tools.conntrackd import config as C

REFERENCE_CONNTRACKD = "/usr/sbin/conntrackd"
PREFIX = re.compile(rb"^\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \d{4}\] \(pid=\d+\) ",
                    re.M)
CANT_CONNECT = b"[ERROR] can't connect: is conntrackd running? appropriate permissions?\n"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "TZ": "UTC"}


def strip_prefixes(data: bytes) -> bytes:
    """Remove ``[ctime] (pid=N) `` from every log line."""
    return PREFIX.sub(b"", data)


def reference_diagnostics(text: bytes, workdir: str) -> tuple[bytes, int]:
    """stderr (prefixes stripped) and exit status of ``conntrackd -C FILE -s``."""
    fd, path = tempfile.mkstemp(dir=workdir, suffix=".conf")
    try:
        os.write(fd, text)
        os.close(fd)
        r = subprocess.run([REFERENCE_CONNTRACKD, "-C", path, "-s"], capture_output=True,
                           env=ENV, timeout=20)
    finally:
        os.unlink(path)
    assert r.stdout == b"", r.stdout
    return strip_prefixes(r.stderr), r.returncode


def our_diagnostics(text: bytes) -> tuple[bytes, int]:
    """What our client mode prints for the same file (parsed in-process)."""
    try:
        cfg = C.parse(text, "x.conf")
        warnings, end, status = cfg.warnings, CANT_CONNECT, 1
    except C.ConfigError as e:
        warnings, status = e.warnings, e.status
        end = (e.message + "\n" if e.raw else f"[ERROR] {e.message}\n").encode(
            "utf-8", "surrogateescape")
    out = b"".join(f"[{level}] {msg}\n".encode("utf-8", "surrogateescape")
                   for level, msg in warnings)
    return out + end, status
