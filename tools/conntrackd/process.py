"""Process-level helpers of the daemon: the lock file, systemd notification, the
scheduler and the child-process registry (spec §1.2, §1.5, §6.12).

* :func:`create_lock` — ``O_CREAT|O_EXCL|O_TRUNC`` mode 0600: an existence test, as in
  the reference (a stale file blocks every later start until removed).
* :class:`Notifier` — ``sd_notify`` over ``NOTIFY_SOCKET`` (a path, or ``@name`` for
  an abstract socket) with ``READY=1``, ``STOPPING=1``, ``MAINPID=``, and the watchdog
  (``WATCHDOG=1`` every half ``WATCHDOG_USEC``), stdlib only.
* :func:`set_scheduler` — SCHED_RR at the maximum priority unless ``Scheduler`` says
  otherwise; a refusal is a warning.
* :class:`Children` — forked children (dumps, flushes, commits): ``-s process`` lists
  them, SIGCHLD reaps them with the reference's messages and counters.
"""
from __future__ import annotations

import errno
import os
import signal
import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable


class LockError(Exception):
    pass


def create_lock(path: str) -> None:
    """Create the lock file or raise :class:`LockError` with the reference's message."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_WRONLY | os.O_CLOEXEC,
                     0o600)
    except OSError:
        raise LockError(f"lockfile `{path}' exists, perhaps conntrackd already running?") \
            from None
    os.close(fd)


def remove_file(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# --- systemd ------------------------------------------------------------------------------

class Notifier:
    """sd_notify for ``Systemd on`` (inactive without ``NOTIFY_SOCKET``)."""

    def __init__(self, enabled: bool, environ=None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "") if enabled else ""
        self.address: str | bytes | None = None
        if path.startswith("@"):
            self.address = b"\0" + os.fsencode(path[1:])
        elif path.startswith("/"):
            self.address = path
        self.watchdog_usec = 0
        if self.address is not None:
            try:
                usec = int(env.get("WATCHDOG_USEC", "0"))
                wpid = env.get("WATCHDOG_PID")
                if usec > 0 and (wpid is None or int(wpid) == os.getpid()):
                    self.watchdog_usec = usec
            except ValueError:
                pass

    def notify(self, state: str) -> bool:
        if self.address is None:
            return False
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            s.sendto(state.encode(), self.address)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def ready(self) -> None:
        self.notify("READY=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def mainpid(self, pid: int) -> None:
        self.notify(f"MAINPID={pid}")

    def start_watchdog(self, loop) -> None:
        """Send ``WATCHDOG=1`` every half watchdog interval from the loop."""
        if not self.watchdog_usec:
            return
        interval = self.watchdog_usec / 2e6

        def tick() -> None:
            self.notify("WATCHDOG=1")
            loop.call_later(interval, tick)

        loop.call_later(interval, tick)


# --- scheduler ------------------------------------------------------------------------------

def set_scheduler(policy: str | None, priority: int) -> str | None:
    """Apply the scheduler; returns the reference's warning text when it is refused."""
    if policy is None:
        pol = os.SCHED_RR
        priority = os.sched_get_priority_max(os.SCHED_RR)
    else:
        pol = os.SCHED_FIFO if policy == "FIFO" else os.SCHED_RR
    try:
        os.sched_setscheduler(0, pol, os.sched_param(priority))
    except OSError as e:
        return (f"scheduler configuration failed: {os.strerror(e.errno or 0)}. Likely a bug "
                "in conntrackd, please report it. Continuing with system default scheduler.")
    return None


# --- children -------------------------------------------------------------------------------

class Children:
    """Live forked children of the daemon: ``pid -> (type, on_exit)``.

    :meth:`reap` (on SIGCHLD) collects every finished child, logs a signal death as the
    reference does, counts it, and calls the child's ``on_exit(pid, status)``."""

    def __init__(self, log) -> None:
        self.log = log
        self.live: dict[int, tuple[str, "Callable[[int, int], Any] | None"]] = {}
        self.failed = 0
        self.segfault = 0
        self.termsig = 0
        self.wait_failed = 0

    def add(self, pid: int, kind: str, on_exit: "Callable[[int, int], Any] | None" = None) -> None:
        """Register a child (``kind``: ``any``, ``flush`` or ``commit``)."""
        self.live[pid] = (kind, on_exit)

    def listing(self) -> str:
        """``-s process``: ``PID=<pid> type=<kind>`` per live child."""
        return "".join(f"PID={pid} type={kind}\n" for pid, (kind, _) in self.live.items())

    def reap(self, _signum: int = 0) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno not in (errno.EINTR, errno.ECHILD):
                    self.wait_failed += 1
                return
            if pid == 0:
                return
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
                self.failed += 1
                if sig == signal.SIGSEGV:
                    self.segfault += 1
                    self.log.error(f"child process (pid={pid}) has aborted, received signal "
                                   "SIGSEGV (crashed)")
                elif sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                    self.termsig += 1
                    self.log.error(f"child process (pid={pid}) has aborted, received "
                                   f"termination signal ({sig})")
                else:
                    self.log.notice(f"child process (pid={pid}) received signal ({sig})")
            entry = self.live.pop(pid, None)
            if entry is not None and entry[1] is not None:
                entry[1](pid, status)
