"""Private network namespaces for kernel tests.

:class:`NetNS` creates a namespace with a unique name (``ip netns add``), runs the
reference tools inside it (``ip netns exec``) and lets the test process itself enter it
with ``setns(2)`` (through ctypes: ``os.setns`` needs Python 3.12). Sockets opened while
inside stay bound to the namespace after leaving it, so one test process can drive the
library against many namespaces without forking. Nothing here ever touches the
namespace the tests were started in: :meth:`NetNS.enter` refuses to return while the
thread is still in the host namespace.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import uuid
from typing import Iterator

CLONE_NEWNET = 0x40000000
CONNTRACK = "/usr/sbin/conntrack"
"""The reference binary (conntrack-tools 1.4.7); ``conntrack`` on PATH may be ours."""

_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """setns(2) for the calling thread."""
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def current_netns() -> str:
    """The calling thread's network namespace (``net:[inode]``)."""
    return os.readlink("/proc/thread-self/ns/net")


class NetNS:
    """A private network namespace: ``with NetNS() as ns: ...`` creates and deletes it."""

    def __init__(self, prefix: str = "pyct") -> None:
        self.name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path = f"/run/netns/{self.name}"
        self.inode: str | None = None
        self.created = False

    # --- lifetime ---------------------------------------------------------------
    def create(self) -> "NetNS":
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.created = True
        self.run("ip", "link", "set", "lo", "up")
        with open(self.path) as f:
            self.inode = f"net:[{os.fstat(f.fileno()).st_ino}]"
        return self

    def delete(self) -> None:
        if self.created:
            subprocess.run(["ip", "netns", "del", self.name], check=True)
            self.created = False

    def __enter__(self) -> "NetNS":
        return self.create()

    def __exit__(self, *exc) -> None:
        self.delete()

    # --- entering ---------------------------------------------------------------
    @contextlib.contextmanager
    def enter(self) -> Iterator["NetNS"]:
        """Move the calling thread into the namespace for the duration of the block."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                setns(target)
            finally:
                os.close(target)
            if current_netns() != self.inode:
                raise RuntimeError(f"setns into {self.name} did not take effect")
            try:
                yield self
            finally:
                setns(home)
        finally:
            os.close(home)

    # --- running programs inside --------------------------------------------------
    def run(self, *argv: str, check: bool = True, input: str | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], check=check,
                              capture_output=True, text=True, input=input, timeout=timeout)

    def popen(self, *argv: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **kw)

    def conntrack(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the reference ``conntrack`` inside the namespace."""
        return self.run(CONNTRACK, *args, check=check)

    def sysctl(self, key: str, value: int | str) -> None:
        self.run("sysctl", "-q", "-w", f"{key}={value}")

    def nft(self, ruleset: str) -> None:
        self.run("nft", "-f", "-", input=ruleset)


# --- running code with fewer privileges -------------------------------------------------

CAP_DAC_READ_SEARCH = 2
CAP_NET_ADMIN = 12
_CAP_V3 = 0x20080522
PR_SET_KEEPCAPS = 8


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_capability(cap: int) -> None:
    """Remove ``cap`` from the calling thread's effective, permitted and inheritable sets."""
    hdr = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(hdr), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    word, bit = divmod(cap, 32)
    for name in ("effective", "permitted", "inheritable"):
        setattr(data[word], name, getattr(data[word], name) & ~(1 << bit))
    if _libc.capset(ctypes.byref(hdr), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def set_capabilities(caps: set[int]) -> None:
    """Make ``caps`` the calling thread's effective and permitted sets (none inheritable)."""
    hdr = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    for cap in caps:
        word, bit = divmod(cap, 32)
        data[word].effective |= 1 << bit
        data[word].permitted |= 1 << bit
    if _libc.capset(ctypes.byref(hdr), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def become_nobody() -> None:
    """uid/gid 65534 without capabilities, except that files stay readable
    (CAP_DAC_READ_SEARCH: Python may import lazily from a root-only prefix)."""
    if _libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    set_capabilities({CAP_DAC_READ_SEARCH})


def has_capability(cap: int) -> bool:
    with open("/proc/thread-self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> cap & 1)
    return False


def run_in_child(fn, *, privileges: str, timeout: float = 30):
    """Run ``fn()`` in a forked child of the calling thread (so in its network namespace)
    with reduced ``privileges`` — ``"nobody"`` (uid/gid 65534, no capability but
    CAP_DAC_READ_SEARCH, see :func:`become_nobody`) or ``"no-net-admin"`` (still root, without CAP_NET_ADMIN) — and return its result
    (or raise the exception it raised). Results travel back pickled through a pipe."""
    import pickle
    import select

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into the test runner
        status = 0
        try:
            os.close(r)
            if privileges == "nobody":
                become_nobody()
                assert os.getuid() == os.geteuid() == 65534
            elif privileges == "no-net-admin":
                drop_capability(CAP_NET_ADMIN)
            else:
                raise ValueError(privileges)
            assert not has_capability(CAP_NET_ADMIN)
            try:
                payload = pickle.dumps((True, fn()))
            except BaseException as e:  # noqa: BLE001 - shipped to the parent
                payload = pickle.dumps((False, e))
            with os.fdopen(w, "wb") as f:
                f.write(payload)
        except BaseException:  # noqa: BLE001
            status = 1
        finally:
            os._exit(status)
    os.close(w)
    try:
        chunks = []
        while True:
            ready, _, _ = select.select([r], [], [], timeout)
            if not ready:
                os.kill(pid, 9)
                raise TimeoutError("child did not answer")
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if not chunks:
        raise RuntimeError(f"child failed (wait status {status})")
    ok, value = pickle.loads(b"".join(chunks))
    if ok:
        return value
    raise value
