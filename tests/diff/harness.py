"""Running the reference ``conntrack`` and ours side by side inside a private namespace,
and comparing what they print.

Both programs run as real child processes of the test process, started with
``fork()`` + ``setns()`` into the namespace: the reference is ``exec``'d
(``/usr/sbin/conntrack``, always by absolute path, ``argv[0]`` = ``conntrack``), ours
runs :func:`conntrack_tools.conntrack.main.main` in the forked child of the already
warmed-up test process (a fresh process in every respect that matters — own pid, netlink
port id, fds 0/1/2, signal dispositions — without paying the interpreter start-up for
each of hundreds of command lines). ``PYCT_DIFF_EXEC=1`` runs ours as
``python3 -m conntrack_tools.conntrack`` instead (a check of the real start-up path; the
unprivileged cases then need an interpreter that uid 65534 can run).

:func:`normalize` removes only what legitimately changes between two runs over the same
kernel state (remaining timeouts, ``delta-time``, event timestamps); the numbers taken
out are compared with a small tolerance instead of being dropped.
"""
from __future__ import annotations

import ctypes
import io
import os
import re
import select
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

REFERENCE = "/usr/sbin/conntrack"
PREFIX = b"conntrack v1.4.7 (conntrack-tools): "
CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 1 << 18
_libc = ctypes.CDLL(None, use_errno=True)
EXEC_OURS = os.environ.get("PYCT_DIFF_EXEC") == "1"


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _private_mounts() -> None:
    """A private mount namespace for the calling (forked) process."""
    if _libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
    if _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")


def _private_xtables(directory: str) -> None:
    """Show ``directory`` as ``/etc/xtables`` (the label map both programs read:
    ``/etc/xtables/connlabel.conf``)."""
    if _libc.mount(os.fsencode(directory), b"/etc/xtables", None, MS_BIND, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --bind /etc/xtables")


def _without_protocols(mnt: str) -> None:
    """In the (already private) mount namespace: /etc without /etc/protocols."""
    if _libc.mount(b"pyct", os.fsencode(mnt), b"tmpfs", 0, None) != 0:
        raise OSError(ctypes.get_errno(), "mount tmpfs")
    upper, work = os.path.join(mnt, "upper"), os.path.join(mnt, "work")
    os.mkdir(upper)
    os.mkdir(work)
    os.mknod(os.path.join(upper, "protocols"), 0o600 | 0o020000, 0)  # whiteout
    opts = f"lowerdir=/etc,upperdir={upper},workdir={work}".encode()
    if _libc.mount(b"pyct", b"/etc", b"overlay", 0, opts) != 0:
        raise OSError(ctypes.get_errno(), "mount overlay /etc")


def warm_up() -> None:
    """Import what our command imports lazily, once, before forking children."""
    import conntrack_tools.conntrack.commands  # noqa: F401
    import conntrack_tools.conntrack.main  # noqa: F401
    import conntrack_tools.conntrack.parse  # noqa: F401
    import conntrack_tools.conntrack.progname  # noqa: F401
    import conntrack_tools.conntrack.usage  # noqa: F401
    from ctnetlink.formats import expect, json, save, stats, text, xml  # noqa: F401


def _run_ours_in_child(argv: list[str]) -> int:
    """Body of a forked child: behave like ``python3 -m conntrack_tools.conntrack``."""
    from conntrack_tools.conntrack.main import main

    def std(fd: int, mode: str, **kw):
        try:  # like the interpreter at start-up: None for a closed descriptor
            return io.TextIOWrapper(io.FileIO(fd, mode, closefd=False), **kw)
        except OSError:
            return None

    sys.stdin = std(0, "r", errors="surrogateescape")
    sys.stdout = std(1, "w", errors="surrogateescape")
    sys.stderr = std(2, "w", errors="backslashreplace", write_through=True)
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL)
    status = main(argv)
    for f in (sys.stdout, sys.stderr):
        if f is not None:
            try:
                f.flush()
            except OSError:
                pass
    return status


class Proc:
    """A child process in the namespace; stdout/stderr are collected by threads."""

    def __init__(self, nsfd: int, which: str, args: list[str], stdin: bytes | None = None,
                 env: dict[str, str] | None = None, cwd: str | None = None,
                 xtables: str | None = None, nobody: bool = False, merge: bool = False,
                 stdout: str | None = None, stderr: str | None = None,
                 hide_protocols: str | None = None, hide: tuple[str, ...] = (),
                 binds: tuple[tuple[str, str], ...] = (), nofile: int | None = None,
                 exec_ours: bool = False) -> None:
        """``merge``: stderr goes to the stdout pipe (``2>&1``); ``stdout``/``stderr``:
        ``"closed"`` (``>&-``), ``"full"`` (``>/dev/full``) or ``"broken"`` (a pipe whose
        reader is gone: SIGPIPE); ``hide_protocols``: an empty directory on which the child
        mounts the tmpfs that makes /etc/protocols disappear (overlay whiteout); ``hide``:
        directories covered by an empty tmpfs (their files vanish); ``binds``: (source,
        target) bind mounts (``("/dev/null", FILE)`` empties FILE); ``nofile``: the
        RLIMIT_NOFILE of the program (3: no socket can be opened); ``exec_ours``: ours
        runs as ``python3 -m conntrack_tools.conntrack`` (as with ``PYCT_DIFF_EXEC=1``: the
        interpreter starts, reads the environment and decodes argv itself)."""
        self.which = which
        self.args = list(args)
        self.out = bytearray()
        self.err = bytearray()
        self._cond = threading.Condition()
        r_in, w_in = os.pipe()
        r_out, w_out = os.pipe()
        r_err, w_err = os.pipe()
        argv = ["conntrack", *args]
        child_env = dict(os.environ)
        child_env.pop("POSIXLY_CORRECT", None)
        child_env.update(env or {})
        pid = os.fork()
        if pid == 0:  # child: never returns
            code = 127
            try:
                _setns(nsfd)
                if xtables or hide_protocols or hide or binds:
                    _private_mounts()
                for src, dst in binds:
                    if _libc.mount(os.fsencode(src), os.fsencode(dst), None, MS_BIND, None):
                        raise OSError(ctypes.get_errno(), f"mount --bind {src} {dst}")
                for d in hide:
                    if _libc.mount(b"pyct", os.fsencode(d), b"tmpfs", 0, None) != 0:
                        raise OSError(ctypes.get_errno(), f"mount tmpfs on {d}")
                if hide_protocols:
                    _without_protocols(hide_protocols)
                if xtables:
                    _private_xtables(xtables)
                os.dup2(r_in, 0)
                os.dup2(w_out, 1)
                os.dup2(w_out if merge else w_err, 2)
                for fd, how in ((1, stdout), (2, stderr)):
                    if how == "closed":
                        os.close(fd)
                    elif how == "full":
                        full = os.open("/dev/full", os.O_WRONLY)
                        os.dup2(full, fd)
                        os.close(full)
                    elif how == "broken":
                        r, w = os.pipe()
                        os.dup2(w, fd)
                        os.close(r)
                        os.close(w)
                os.closerange(3, 1 << 16)
                # as a shell or subprocess leaves it (Python itself ignores SIGPIPE)
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                if nofile is not None:
                    import resource
                    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
                if cwd:
                    os.chdir(cwd)
                if nobody:  # uid/gid 65534 without any capability
                    os.setgroups([])
                    os.setgid(65534)
                    os.setuid(65534)
                if which == "ref":
                    os.execve(REFERENCE, argv, child_env)
                elif EXEC_OURS or exec_ours:
                    os.execve(sys.executable, [sys.executable, "-m", "conntrack_tools.conntrack",
                                               *args], child_env)
                else:
                    os.environ.clear()
                    os.environ.update(child_env)
                    code = _run_ours_in_child(argv)
            except BaseException:  # noqa: BLE001 - report through the exit status
                try:
                    import traceback
                    traceback.print_exc()
                except BaseException:  # noqa: BLE001
                    pass
            finally:
                os._exit(code)
        self.pid = pid
        for fd in (r_in, w_out, w_err):
            os.close(fd)
        self.status: int | None = None
        self._readers = [threading.Thread(target=self._pump, args=(r_out, self.out), daemon=True),
                         threading.Thread(target=self._pump, args=(r_err, self.err), daemon=True)]
        for t in self._readers:
            t.start()
        if stdin:
            try:
                os.write(w_in, stdin)
            except BrokenPipeError:
                pass
        os.close(w_in)

    def _pump(self, fd: int, buf: bytearray) -> None:
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                with self._cond:
                    buf += chunk
                    self._cond.notify_all()
        finally:
            os.close(fd)

    def wait(self, timeout: float = 20) -> "Result":
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(st)
                break
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"{self.which} {self.args} did not finish")
            time.sleep(0.002)
        for t in self._readers:
            t.join(5)
        return Result(self.status, bytes(self.out), bytes(self.err))

    def signal(self, sig: int = signal.SIGINT) -> None:
        if self.status is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass

    def wait_for(self, predicate, timeout: float = 10, what: str = "output") -> None:
        """Block until ``predicate(stdout_bytes)`` holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(bytes(self.out)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.which} {self.args}: no {what}; got "
                                       f"{bytes(self.out)[-2000:]!r} / {bytes(self.err)!r}")
                self._cond.wait(min(left, 0.05))

    def wait_listening(self, groups: int, timeout: float = 10) -> None:
        """Block until the process holds a NETLINK_NETFILTER socket bound to ``groups``
        and sleeps in a receive call (the event loop is reached)."""
        deadline = time.monotonic() + timeout
        while True:
            if _bound_to_groups(self.pid, groups) and _blocked_in_recv(self.pid):
                return
            if self.status is None and os.waitpid(self.pid, os.WNOHANG)[0]:
                self.status = -1
                raise RuntimeError(f"{self.which} {self.args} exited (stderr {bytes(self.err)!r})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.which} {self.args} never listened "
                                   f"(stderr {bytes(self.err)!r})")
            time.sleep(0.005)


def _socket_inodes(pid: int) -> set[int]:
    out = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for n in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{n}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def _bound_to_groups(pid: int, groups: int) -> bool:
    inodes = _socket_inodes(pid)
    try:
        with open(f"/proc/{pid}/net/netlink") as f:
            next(f)
            for line in f:
                p = line.split()
                if p[1] == "12" and int(p[3], 16) == groups and int(p[9]) in inodes:
                    return True
    except (OSError, StopIteration, IndexError, ValueError):
        return False
    return False


_RECV_SYSCALLS = {"45", "47", "7", "232", "281", "299"}  # recvfrom recvmsg poll epoll_wait ...


def _blocked_in_recv(pid: int) -> bool:
    """Every thread of the process that is not the main thread is irrelevant; the main
    thread must be asleep in a receive (or poll) system call."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            nr = f.read().split()[0]
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return nr in _RECV_SYSCALLS and state == "S"


@dataclass
class Result:
    status: int | None
    out: bytes
    err: bytes

    def text(self) -> str:
        return (f"exit {self.status}\n--- stdout\n{self.out.decode('utf8', 'replace')}"
                f"--- stderr\n{self.err.decode('utf8', 'replace')}")


class Namespace:
    """Runs both programs inside one network namespace (given by its /run/netns path)."""

    def __init__(self, path: str, cwd: str | None = None, xtables: str | None = None) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.cwd = cwd
        self.xtables = xtables

    def close(self) -> None:
        os.close(self.fd)

    def spawn(self, which: str, args: list[str], stdin: bytes | None = None,
              env: dict[str, str] | None = None, **kw) -> Proc:
        """``kw``: the process options of :class:`Proc` (``nobody``, ``merge``, ...)."""
        return Proc(self.fd, which, args, stdin, env, self.cwd, self.xtables, **kw)

    def run(self, which: str, args: list[str], stdin: bytes | None = None,
            env: dict[str, str] | None = None, timeout: float = 20, **kw) -> Result:
        return self.spawn(which, args, stdin, env, **kw).wait(timeout)

    def ref(self, *args: str, stdin: bytes | None = None, check: bool = False) -> Result:
        r = self.run("ref", list(args), stdin)
        if check and r.status != 0:
            raise AssertionError(f"reference {args} failed:\n{r.text()}")
        return r

    def ours(self, *args: str, stdin: bytes | None = None) -> Result:
        return self.run("ours", list(args), stdin)


# --- normalisation ------------------------------------------------------------------------

# The volatile numbers of each format, as (regex, group index of the number).
_FLOW_TIMEOUT = re.compile(r"^((?:\[[0-9. ]+\]\t)?(?: *\[(?:NEW|UPDATE|DESTROY)\] )?"
                           r"(?:\S+ +\d+ )?\S+ +\d+ )(\d+)( )", re.M)
_EXP_TIMEOUT = re.compile(r"^((?:\[[0-9. ]+\]\t)?(?: *\[(?:NEW|UPDATE|DESTROY)\] )?)(\d+)"
                          r"( proto=)", re.M)
_SAVE_TIMEOUT = re.compile(r"^(-[ADU] -t )(\d+)( )", re.M)
_PATTERNS = [
    (re.compile(r"(delta-time=)(\d+)()"), 2),
    (re.compile(r"(<timeout>)(\d+)(</timeout>)"), 2),
    (re.compile(r"(<deltatime>)(\d+)(</deltatime>)"), 2),
    (re.compile(r'("timeout":)(\d+)()'), 2),
    (re.compile(r'("delta_time":)(\d+)()'), 2),
]
EVENT_TIME = re.compile(r"^\[\d{8,}\.[0-9 ]+\]\t", re.M)
XML_WHEN = re.compile(r"<when>.*?</when>")
PROGNAME = re.compile(r" progname=[^ \n]*")


def _digits(m: re.Match) -> str:
    return re.sub(r"\d", "D", m.group(0))


def _time_style(m: re.Match) -> str:
    """``[SEC.USEC]`` -> ``[TIME]`` when it has the reference's layout: zero-padded
    microseconds for conntrack events (``%.6ld``), left-aligned space-padded ones for
    expectations (``%-6ld``, recognised by the ``proto=`` that follows); anything else
    stays as it is (and so differs)."""
    stamp = m.group(0)[:-1]
    sec, usec = stamp[1:-1].split(".")
    rest = m.string[m.end():m.string.find("\n", m.end())]
    expectation = " proto=" in rest[:30]
    if not sec.isdigit() or len(sec) < 8 or len(usec) != 6:
        return m.group(0)
    if expectation:
        digits = usec.rstrip(" ")
        ok = digits.isdigit() and (digits == "0" or not digits.startswith("0"))
    else:
        ok = usec.isdigit()
    return "[TIME]\t" if ok else m.group(0)


@dataclass
class Normalized:
    text: str
    numbers: list[int] = field(default_factory=list)


IDS = re.compile(r"(?<=[ >])id=\d+|<id>\d+</id>|\"id\":\d+")


def normalize(data: bytes, *, ids: bool = False, progname: bool = False) -> Normalized:
    """Replace volatile numbers by ``#`` (kept in ``numbers``, in order of appearance);
    ``ids``: conntrack ids too (entries re-created for the second program get new ids)."""
    text = data.decode("utf8", "surrogateescape")
    nums: list[int] = []
    if ids:
        text = IDS.sub("ID", text)
    # event and -o timestamp times: digits become D (widths and padding still compared)
    text = EVENT_TIME.sub(_time_style, text)
    text = XML_WHEN.sub(_digits, text)
    if progname:  # the process that caused an event may be gone when a listener looks
        text = PROGNAME.sub("", text)

    def sub(rx: re.Pattern, t: str) -> str:
        def repl(m: re.Match) -> str:
            nums.append(int(m.group(2)))
            return m.group(1) + "#" + m.group(3)
        return rx.sub(repl, t)

    for rx in (_FLOW_TIMEOUT, _EXP_TIMEOUT, _SAVE_TIMEOUT):
        text = sub(rx, text)
    for rx, _ in _PATTERNS:
        text = sub(rx, text)
    return Normalized(text, nums)


def _close(a: list[int], b: list[int], slack: int) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= slack for x, y in zip(a, b))


def same_output(ref: bytes, ours: bytes, *, unordered: bool = False, ids: bool = False,
                progname: bool = False, slack: int = 3) -> bool:
    """Whether two outputs are equal up to the volatile numbers (within ``slack``)."""
    if ref == ours:
        return True
    a = normalize(ref, ids=ids, progname=progname)
    b = normalize(ours, ids=ids, progname=progname)
    if a.text == b.text and _close(a.numbers, b.numbers, slack):
        return True
    if unordered:
        la = sorted(normalize(line, ids=ids, progname=progname).text
                    for line in ref.splitlines())
        lb = sorted(normalize(line, ids=ids, progname=progname).text
                    for line in ours.splitlines())
        return la == lb
    return False


def explain(ref: Result, ours: Result) -> str:
    import difflib

    parts = []
    if ref.status != ours.status:
        parts.append(f"exit status: reference {ref.status}, ours {ours.status}")
    for name in ("out", "err"):
        a = getattr(ref, name).decode("utf8", "replace").splitlines()
        b = getattr(ours, name).decode("utf8", "replace").splitlines()
        if a != b:
            diff = list(difflib.unified_diff(a, b, "reference", "ours", lineterm="", n=1))
            parts.append(f"std{name}:\n" + "\n".join(diff[:60]))
    return "\n".join(parts)


def assert_same(ref: Result, ours: Result, **kw) -> None:
    ok = (ref.status == ours.status and same_output(ref.out, ours.out, **kw)
          and same_output(ref.err, ours.err, **{k: v for k, v in kw.items() if k != "unordered"}))
    if not ok:
        raise AssertionError("outputs differ\n" + explain(ref, ours))


def sorted_lines(data: bytes) -> list[str]:
    return sorted(normalize(line).text for line in data.splitlines())


_ = select
