"""The daemon's life cycle (spec §1.2-§1.4): log files, lock, scheduler, control socket,
mode start-up, console or daemon mode, systemd notification, the main loop, shutdown.

:class:`Daemon` holds what every part of the running daemon shares: the
:class:`~.config.Config`, the :class:`~.log.Logger`, the :class:`~.loop.Loop`, the
:class:`~.control.ControlServer`, the :class:`~.process.Children`, the runtime counters
(:class:`NetlinkStats` for the kernel side to fill) and the shutdown hooks.

Modes plug in through a module ``conntrack_tools.conntrackd.modes`` with a function
``start(daemon)``, called during initialisation when the configuration has a ``Sync``,
``Stats`` or ``Helper`` section: it opens its sockets, dumps the kernel table, registers
readers and timers with ``daemon.loop``, control handlers with
``daemon.control.add_handler`` (they run after the generic handler: ``-k``,
``-s runtime``, ``-s process``) and clean-up with ``daemon.on_shutdown``. It raises
:class:`~.modes.InitError` (after logging its reasons) when it cannot start; the daemon then
logs ``conntrackd cannot start, please review your configuration``, removes the lock
and exits 1. ``start`` must not start threads: in daemon mode the process forks after
it returns.
"""
from __future__ import annotations

import os
import sys
import time

from . import control
from .log import Logger, LogOpenError
from .loop import Loop
from .process import Children, LockError, Notifier, create_lock, remove_file, set_scheduler

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from .config import Config


class NetlinkStats:
    """The ``netlink stats:`` counters of ``-s runtime`` (the kernel side updates them)."""
    __slots__ = ("events_received", "events_filtered", "events_unknown_type",
                 "catch_event_failed", "dump_unknown_type", "netlink_overrun",
                 "flush_kernel_table", "resync_kernel_table", "buffer_size")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)


def uptime_text(seconds: float) -> str:
    """``-s runtime`` uptime: ``[D day(s) ][H h ]M min``."""
    secs = int(seconds)
    days, rest = divmod(secs, 86400)
    hours = rest // 3600 % 24
    minutes = rest // 60 % 60
    out = ""
    if days:
        out = f"{days} day " if days == 1 else f"{days} days "
    if hours:
        out += f"{hours} h {minutes} min"
    else:
        out += f"{minutes} min"
    return out


class Daemon:
    """One daemon process (see the module docstring)."""

    def __init__(self, config: "Config", log: Logger, *, daemon_mode: bool) -> None:
        self.config = config
        self.log = log
        self.daemon_mode = daemon_mode
        self.loop = Loop()
        self.loop.on_error = self.internal_error
        self.control = control.ControlServer(config.general.unix.path, self.loop,
                                             on_error=self.internal_error)
        self.children = Children(log)
        self.notifier = Notifier(config.general.systemd)
        self.netlink = NetlinkStats()
        self.select_failed = 0
        self.start_time = time.time()
        self.shutdown_hooks: list["Callable[[], Any]"] = []
        self.killers: list[control.Connection] = []
        self.lock_taken = False
        self.mode: "Any" = None

    def on_shutdown(self, hook: "Callable[[], Any]") -> None:
        """Run ``hook()`` at shutdown (before the lock file is removed)."""
        self.shutdown_hooks.append(hook)

    def internal_error(self, exc: BaseException) -> None:
        """A callback failed: one ERROR line, and the daemon goes on."""
        if os.environ.get("CONNTRACKD_DEBUG"):
            import traceback

            traceback.print_exception(exc)
        self.log.error(f"internal error: {type(exc).__name__}: {exc}")

    # --- the generic control handler (spec §4.3 step 1) ---
    def runtime_stats(self) -> str:
        n, c, r = self.netlink, self.children, self.control.stats
        return (f"daemon uptime: {uptime_text(time.time() - self.start_time)}\n\n"
                "netlink stats:\n"
                f"\tevents received:\t{n.events_received:20d}\n"
                f"\tevents filtered:\t{n.events_filtered:20d}\n"
                f"\tevents unknown type:\t\t{n.events_unknown_type:12d}\n"
                f"\tcatch event failed:\t\t{n.catch_event_failed:12d}\n"
                f"\tdump unknown type:\t\t{n.dump_unknown_type:12d}\n"
                f"\tnetlink overrun:\t\t{n.netlink_overrun:12d}\n"
                f"\tflush kernel table:\t\t{n.flush_kernel_table:12d}\n"
                f"\tresync with kernel table:\t{n.resync_kernel_table:12d}\n"
                f"\tcurrent buffer size (in bytes):\t{n.buffer_size:12d}\n\n"
                "runtime stats:\n"
                f"\tchild process failed:\t\t{c.failed:12d}\n"
                f"\t\tchild process segfault:\t{c.segfault:12d}\n"
                f"\t\tchild process termsig:\t{c.termsig:12d}\n"
                f"\tselect failed:\t\t\t{self.select_failed:12d}\n"
                f"\twait failed:\t\t\t{c.wait_failed:12d}\n"
                f"\tlocal read failed:\t\t{r.read_failed:12d}\n"
                f"\tlocal unknown request:\t\t{r.unknown_request:12d}\n\n")

    def generic_handler(self, code: int, conn: control.Connection) -> bool | None:
        if code == control.KILL:
            conn.detach()  # closed once the shutdown is complete
            self.killers.append(conn)
            self.loop.stop()
            return True
        if code == control.STATS_RUNTIME:
            conn.write(self.runtime_stats())
        elif code == control.STATS_PROCESS:
            conn.write(self.children.listing())
        return None

    # --- life cycle ---
    def start(self) -> int:
        """Steps 8-16 of the start-up (spec §1.2) and the main loop; returns the exit
        status (0 after an orderly shutdown). Messages are the reference's."""
        cfg = self.config
        stats = cfg.stats
        try:
            self.log.open(cfg.general.logfile, stats.logfile if stats else None,
                          cfg.general.syslog_facility, stats.syslog_facility if stats else None)
        except LogOpenError as e:
            _raw_stderr(f"{e}\n")
            return 1
        if self.daemon_mode:  # from here on -d logs to the log file and syslog only
            self.log.console = False
        try:
            create_lock(cfg.general.lockfile)
        except LockError as e:
            self.log.error(str(e))
            self.log.close()
            return 1
        self.lock_taken = True
        try:
            ok = self.initialise()
        except BaseException:  # interrupted or a bug: nothing half-started stays behind
            self.release()
            raise
        if not ok:
            self.log.error("conntrackd cannot start, please review your configuration")
            self.release()
            self.log.close()
            return 1
        try:
            os.chdir("/")
        except OSError as e:
            self.log.warning(f"Cannot change current directory to /: {os.strerror(e.errno or 0)}")
        _to_devnull(0)
        self.notifier.start_watchdog(self.loop)
        if self.daemon_mode:
            pid = os.fork()
            if pid:
                self.notifier.mainpid(pid)
                os._exit(0)
            os.setsid()
            _to_devnull(1)
            _to_devnull(2)
            self.log.console = False
            self.log.notice("-- starting in daemon mode --")
        else:
            self.log.notice("-- starting in console mode --")
        self.notifier.ready()
        if self.mode is not None and hasattr(self.mode, "running"):
            self.mode.running()
        self.loop.run()
        self.shutdown()
        return 0

    def initialise(self) -> bool:
        """Step 10: scheduler, control socket, modes, signals (False: cannot start)."""
        sched = self.config.general.scheduler
        warning = set_scheduler(sched.policy, sched.priority)
        if warning:
            self.log.warning(warning)
        if self.config.sync is not None or self.config.stats is not None:
            # The mode code and the netlink client (tens of ms of imports) are loaded
            # before the control socket appears: a client that waits for the socket and
            # then makes traffic must not find the event socket still unsubscribed (its
            # events would be lost).
            import ctnetlink.client  # noqa: F401
            import nfnl.socket  # noqa: F401

            from . import core, modes  # noqa: F401
        try:
            self.control.open()
        except OSError:
            self.log.error("can't open unix socket!")
            return False
        self.control.add_handler(self.generic_handler)
        import signal

        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.loop.add_signal(signal.SIGINT, self._terminate)
        self.loop.add_signal(signal.SIGTERM, self._terminate)
        self.loop.add_signal(signal.SIGCHLD, self.children.reap)
        cfg = self.config
        if cfg.sync is not None or cfg.stats is not None or cfg.helper is not None:
            from importlib.util import find_spec

            if find_spec(f"{__package__}.modes") is None:
                which = "Sync" if cfg.sync is not None else \
                    "Stats" if cfg.stats is not None else "Helper"
                self.log.warning(f"`{which}' mode is not available in this build: "
                                 "only the control socket runs")
            else:
                from . import modes  # provided by the mode code

                try:
                    self.mode = modes.start(self)
                except modes.InitError:
                    return False
                except Exception as e:  # noqa: BLE001 - a bug: cannot start, cleanly
                    self.internal_error(e)
                    return False
        self.start_time = time.time()
        self.log.notice("initialization completed")
        return True

    def _terminate(self, _signum: int) -> None:
        self.loop.stop()

    def release(self) -> None:
        """Close the control socket, run the shutdown hooks, remove the lock."""
        self.control.close()
        for hook in reversed(self.shutdown_hooks):
            try:
                hook()
            except Exception as e:  # noqa: BLE001 - shutting down regardless
                self.internal_error(e)
        self.shutdown_hooks.clear()
        if self.lock_taken:
            remove_file(self.config.general.lockfile)
            self.lock_taken = False

    def shutdown(self) -> None:
        """The orderly shutdown of SIGINT, SIGTERM and ``-k`` (spec §1.4)."""
        self.release()
        self.log.notice("---- shutdown received ----")
        self.log.close()
        self.notifier.stopping()
        for conn in self.killers:
            conn.close()
        self.killers.clear()
        self.loop.close()


def _to_devnull(fd: int) -> None:
    try:
        null = os.open(os.devnull, os.O_RDWR)
    except OSError:
        return
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def _raw_stderr(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
