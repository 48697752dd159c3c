"""conntrackd life cycle and control socket: ours against the 1.4.7 binary.

Every daemon here (the reference's or ours) runs in a private network namespace with its
own configuration, lock file, log file and UNIX socket in a temporary directory, and is
killed by its pid when a test ends, whatever happened. The configurations have no
``Sync``/``Stats`` section: the daemon opens its control socket and waits (the part of
the daemon this suite checks: start-up, log lines, lock, requests, signals, shutdown).
"""
from __future__ import annotations

import os
import re
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.conntrackd_ref import REFERENCE_CONNTRACKD, strip_prefixes  # noqa: E402
from helpers.netns import NetNS  # noqa: E402

OURS = [sys.executable, "-m", "conntrack_tools.conntrackd"]
REF = [REFERENCE_CONNTRACKD]
IMPLS = {"ref": REF, "ours": OURS}
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "TZ": "UTC"}
PID = re.compile(r"\(pid=(\d+)\)")


def wait_for(cond, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours is dead for this purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


class Setup:
    """A temporary directory with a configuration for one daemon."""

    def __init__(self, ns: NetNS, d: Path, *, extra: str = "", systemd: bool = False,
                 path: str | None = None, logfile: str | None = None) -> None:
        self.ns = ns
        self.dir = d
        self.lock = d / "lock"
        self.log = Path(logfile) if logfile else d / "log"
        self.ctl = Path(path) if path else d / "ctl"
        self.conf = d / "conntrackd.conf"
        self.conf.write_text(
            "General {\n"
            f"\tLockFile {self.lock}\n\tLogFile {self.log}\n"
            f"\tUNIX {{ Path {self.ctl} }}\n\tSystemd {'on' if systemd else 'off'}\n"
            f"{extra}}}\n")
        self.procs: list[subprocess.Popen] = []
        self.pids: list[int] = []

    def start(self, impl: str, *args: str, env: dict | None = None) -> subprocess.Popen:
        p = self.ns.popen(*IMPLS[impl], "-C", str(self.conf), *args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env={**ENV, **(env or {})})
        self.procs.append(p)
        self.pids.append(p.pid)
        return p

    def client(self, impl: str, *args: str) -> subprocess.CompletedProcess:
        return self.ns.run(*IMPLS[impl], "-C", str(self.conf), *args, check=False)

    def up(self) -> None:
        wait_for(lambda: self.ctl.exists(), what="the control socket")

    def log_lines(self) -> list[str]:
        return strip_prefixes(self.log.read_bytes()).decode().splitlines()

    def started_here(self) -> list[int]:
        """Every process running with this setup's configuration (daemons that forked
        away from the pids we know included)."""
        conf = str(self.conf).encode()
        found = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/cmdline", "rb") as f:
                        if conf in f.read().split(b"\0"):
                            found.append(int(d))
                except OSError:
                    pass
        return found

    def cleanup(self) -> None:
        for pid in self.pids + self.started_here():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()


@pytest.fixture(scope="module")
def ns():
    with NetNS(prefix="ctdlife") as n:
        yield n


@pytest.fixture
def setups(ns, tmp_path):
    made: list[Setup] = []

    def make(name: str = "d", **kw) -> Setup:
        d = tmp_path / name
        d.mkdir()
        s = Setup(ns, d, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.cleanup()


def raw_request(path: Path, payload: bytes, *, ns: NetNS) -> bytes:
    with ns.enter():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(10)
        s.connect(str(path))
        if payload:
            s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


def runtime_shape(text: str) -> str:
    return re.sub(r"daemon uptime: .*", "daemon uptime: X", text)


@pytest.mark.parametrize("server", ["ref", "ours"])
def test_requests_both_clients(setups, ns, server):
    """The same requests through both clients against one daemon: same bytes, same
    status; ``-k`` ends it with socket and lock removed and the reference's log."""
    s = setups()
    p = s.start(server)
    s.up()
    assert stat.S_IMODE(s.ctl.stat().st_mode) == 0o600
    assert stat.S_IMODE(s.lock.stat().st_mode) == 0o600
    assert stat.S_IMODE(s.log.stat().st_mode) == 0o600
    for args in (["-s", "runtime"], ["-s", "process"], ["-s"], ["-i"], ["-i", "-x"], ["-e"],
                 ["-s", "cache"], ["-f"], ["-c"], ["-R"], ["-B"], ["-n"], ["-t"], ["-F"],
                 ["-s", "m"]):
        ref = s.client("ref", *args)
        ours = s.client("ours", *args)
        assert (ours.returncode, runtime_shape(ours.stdout)) == \
               (ref.returncode, runtime_shape(ref.stdout)), args
        assert strip_prefixes(ours.stderr.encode()) == strip_prefixes(ref.stderr.encode())
        assert ref.returncode == 0
    runtime = s.client("ours", "-s", "runtime").stdout
    assert runtime.startswith("daemon uptime: 0 min\n\nnetlink stats:\n")
    # unknown codes, short and empty requests, a silent client: nothing, and it goes on
    assert raw_request(s.ctl, struct.pack("=i", 99), ns=ns) == b""
    assert raw_request(s.ctl, struct.pack("=i", -1), ns=ns) == b""
    assert raw_request(s.ctl, b"\x1e\x00", ns=ns) == b""
    assert raw_request(s.ctl, b"", ns=ns) == b""
    if server == "ours":  # the reference blocks in read() while a client stays silent
        with ns.enter():
            silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        silent.connect(str(s.ctl))
        try:
            r = s.client("ref", "-s", "runtime")
            assert r.returncode == 0 and "local read failed" in r.stdout
        finally:
            silent.close()
    k = s.client("ours" if server == "ref" else "ref", "-k")
    assert (k.returncode, k.stdout) == (0, "")
    assert p.wait(timeout=10) == 0
    assert not s.ctl.exists() and not s.lock.exists()
    assert s.log_lines() == ["[notice] initialization completed",
                             "[notice] -- starting in console mode --",
                             "[notice] ---- shutdown received ----"]
    out = strip_prefixes(p.stdout.read()).decode().splitlines()
    assert out == s.log_lines()  # console mode: the same lines on stdout
    assert p.stderr.read() == b""


@pytest.mark.parametrize("impl", ["ref", "ours"])
def test_sigterm_and_sigint_clean_up(setups, impl):
    for sig in (signal.SIGTERM, signal.SIGINT):
        s = setups(f"{impl}{sig}")
        p = s.start(impl)
        s.up()
        p.send_signal(sig)
        assert p.wait(timeout=10) == 0
        assert not s.ctl.exists() and not s.lock.exists()
        assert s.log_lines()[-1] == "[notice] ---- shutdown received ----"


def test_lock_contention_and_start_failures(setups, ns, tmp_path):
    """A second daemon on the same lock, an unwritable log file, a socket that cannot be
    bound: the reference's messages and exit status, and nothing left behind."""
    results = {}
    s = setups("lock")
    for impl in ("ref", "ours"):
        first = s.start(impl)
        s.up()
        second = s.client(impl)
        results[impl] = (second.returncode, strip_prefixes(second.stderr.encode()),
                         second.stdout)
        assert alive(first.pid)
        s.client(impl, "-k")
        assert first.wait(timeout=10) == 0
    assert results["ours"] == results["ref"]
    assert results["ref"][0] == 1
    assert b"exists, perhaps conntrackd already running?" in results["ref"][1]

    s = setups("log", logfile=str(tmp_path / "missing" / "x.log"))
    for impl in ("ref", "ours"):
        r = s.client(impl)
        results[impl] = (r.returncode, r.stdout, r.stderr)
        assert not s.lock.exists()
    assert results["ours"] == results["ref"]
    assert results["ref"][2].startswith("ERROR: can't open logfile `")

    # -d: after the log is open nothing reaches the console (here: not even the error)
    s = setups("quiet", extra="\tUNIX { Backlog 3 }\n")
    s.lock.touch()
    for impl in ("ref", "ours"):
        r = s.client(impl, "-d")
        results[impl] = (r.returncode, r.stdout, strip_prefixes(r.stderr.encode()))
    assert results["ours"] == results["ref"]
    assert results["ref"] == (1, "", b"[warning] deprecated unix backlog configuration, "
                                     b"ignoring.\n")
    assert [ln.split("] ", 1)[1] for ln in s.log_lines()] == \
        [f"lockfile `{s.lock}' exists, perhaps conntrackd already running?"] * 2

    s = setups("sock", path=str(tmp_path / "missing" / "ctl"))
    for impl in ("ref", "ours"):
        r = s.client(impl)
        results[impl] = (r.returncode, strip_prefixes(r.stdout.encode()),
                         strip_prefixes(r.stderr.encode()))
        assert not s.lock.exists()
        assert s.log_lines() == ["[ERROR] can't open unix socket!",
                                 "[ERROR] conntrackd cannot start, please review your "
                                 "configuration"]
        s.log.unlink()
    assert results["ours"] == results["ref"]
    assert results["ref"][0] == 1


@pytest.mark.parametrize("impl", ["ref", "ours"])
def test_daemon_mode(setups, impl):
    """``-d``: the parent exits 0 at once, the child runs in its own session (its pid is
    the one on the ``starting in daemon mode`` line) and ``-k`` ends it."""
    s = setups(impl)
    p = s.start(impl, "-d")
    assert p.wait(timeout=20) == 0
    # once its log is open a -d daemon writes nothing on the console
    assert (p.stdout.read(), p.stderr.read()) == (b"", b"")
    s.up()
    lines = wait_for(lambda: (ls := s.log.read_text().splitlines()) and len(ls) >= 2 and ls,
                     what="the start-up lines")
    assert strip_prefixes(lines[-1].encode()) == b"[notice] -- starting in daemon mode --"
    child = int(PID.search(lines[-1]).group(1))
    s.pids.append(child)
    assert child != p.pid and alive(child)
    assert os.getsid(child) == child
    assert s.client(impl, "-k").returncode == 0
    wait_for(lambda: not alive(child), what="the daemon to end")
    assert not s.ctl.exists() and not s.lock.exists()


def test_sd_notify(setups, ns, tmp_path):
    """``Systemd on`` with NOTIFY_SOCKET: the same messages from both daemons (MAINPID
    from the ``-d`` parent, READY, WATCHDOG every half interval, STOPPING)."""
    seen = {}
    for impl in ("ref", "ours"):
        sock_path = tmp_path / f"notify-{impl}"
        with ns.enter():
            rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        rx.bind(str(sock_path))
        rx.settimeout(10)
        try:
            s = setups(f"sd-{impl}", systemd=True)
            p = s.start(impl, "-d", env={"NOTIFY_SOCKET": str(sock_path),
                                         "WATCHDOG_USEC": "400000"})
            assert p.wait(timeout=20) == 0
            msgs = [rx.recv(4096).decode() for _ in range(4)]
            s.up()
            child = int(PID.search(s.log.read_text().splitlines()[-1]).group(1))
            s.pids.append(child)
            assert s.client(impl, "-k").returncode == 0
            while True:
                m = rx.recv(4096).decode()
                msgs.append(m)
                if m == "STOPPING=1":
                    break
            wait_for(lambda: not alive(child), what="the daemon to end")
        finally:
            rx.close()
        assert msgs[0] == f"MAINPID={child}"
        seen[impl] = [m for m in msgs if not m.startswith("MAINPID=")]
    for impl, msgs in seen.items():
        assert msgs[0] == "READY=1", (impl, msgs)
        assert set(msgs[1:-1]) == {"WATCHDOG=1"}, (impl, msgs)
        assert msgs[-1] == "STOPPING=1"


def test_our_client_against_reference_daemon_requests(setups, ns):
    """Our client speaks the reference daemon's protocol (4-byte host-order int), and
    says what the reference client says when nobody listens."""
    s = setups()
    for impl in ("ref", "ours"):
        r = s.client(impl, "-s")
        assert r.returncode == 1
        assert strip_prefixes(r.stderr.encode()) == \
            b"[ERROR] can't connect: is conntrackd running? appropriate permissions?\n"
    p = s.start("ref")
    s.up()
    assert s.client("ours", "-s", "runtime").stdout.startswith("daemon uptime: ")
    assert s.client("ours", "-k").returncode == 0
    assert p.wait(timeout=10) == 0
