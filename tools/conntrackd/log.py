"""The reference's log lines: ``[ctime] (pid=N) [level] message``, where they go, and
the flow log.

:class:`Logger` is conntrackd's ``dlog``: before logging is set up (configuration,
client mode) and always in console mode a line goes to the console (``info``/``notice``
on stdout, ``warning``/``ERROR`` on stderr); once :meth:`Logger.open` ran it also goes
to the General ``LogFile`` (opened ``a+``, line buffered) and to syslog when General
``Syslog`` is set. :meth:`Logger.flow` writes ``ctime<TAB>text`` lines (destroyed flows
in statistics mode, objects attached to commit errors) to the Stats log / syslog.
"""
from __future__ import annotations

import os
import sys
import time

INFO, NOTICE, WARNING, ERROR = 6, 5, 4, 3  # syslog priorities
LEVEL_NAMES = {INFO: "info", NOTICE: "notice", WARNING: "warning", ERROR: "ERROR"}
LEVELS = {"info": INFO, "notice": NOTICE, "warning": WARNING, "ERROR": ERROR}


def ctime(t: float | None = None) -> str:
    """C ``ctime()`` without its newline (local time): ``Wed Nov 25 17:01:13 2026``."""
    return time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(t))


def line(priority: int, message: str, *, pid: int | None = None, t: float | None = None) -> str:
    """One log line as the reference formats it (newline included)."""
    return (f"[{ctime(t)}] (pid={os.getpid() if pid is None else pid}) "
            f"[{LEVEL_NAMES.get(priority, '?')}] {message}\n")


def _write(f, text: str) -> None:
    """Write to a text stream, losing the text (never the program) when it fails."""
    if f is None:
        return
    try:
        f.write(text)
        f.flush()
    except (OSError, ValueError):
        pass


class LogOpenError(Exception):
    """``ERROR: can't open logfile `PATH'.Reason: TEXT`` (printed bare, exit 1)."""


class Logger:
    """conntrackd's logging state (``dlog`` and the stats flow log)."""

    def __init__(self) -> None:
        self.console = True
        self.file = None
        self.stats_file = None
        self.syslog = False
        self.stats_syslog = False
        self._syslog_open = False

    # --- set-up and tear-down ---
    def open(self, logfile: str | None, stats_logfile: str | None,
             facility: int | None, stats_facility: int | None) -> None:
        """Open the log files (``a+``, line buffered) and syslog as the reference's
        ``init_log`` does; raises :class:`LogOpenError` with its message."""
        for path, attr in ((logfile, "file"), (stats_logfile, "stats_file")):
            if not path:
                continue
            try:
                f = open(path, "a+", buffering=1, encoding="utf-8", errors="surrogateescape")
            except OSError as e:
                raise LogOpenError(f"ERROR: can't open logfile `{path}'."
                                   f"Reason: {os.strerror(e.errno or 0)}") from None
            setattr(self, attr, f)
        self.syslog = facility is not None
        self.stats_syslog = stats_facility is not None
        if self.syslog or self.stats_syslog:
            import syslog

            # openlog gets the General facility; with only Stats syslog the C passes -1,
            # which glibc ignores (LOG_USER stays)
            syslog.openlog("conntrackd", syslog.LOG_PID,
                           facility if facility is not None else syslog.LOG_USER)
            self._syslog_open = True

    def close(self) -> None:
        for attr in ("file", "stats_file"):
            f = getattr(self, attr)
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
                setattr(self, attr, None)
        if self._syslog_open:
            import syslog

            syslog.closelog()
            self._syslog_open = False

    # --- dlog ---
    def log(self, priority: int, message: str) -> None:
        text = line(priority, message)
        if self.file is not None:
            _write(self.file, text)
        if self.syslog:
            import syslog

            syslog.syslog(priority, message)
        if self.console:
            _write(sys.stdout if priority in (INFO, NOTICE) else sys.stderr, text)

    def info(self, message: str) -> None:
        self.log(INFO, message)

    def notice(self, message: str) -> None:
        self.log(NOTICE, message)

    def warning(self, message: str) -> None:
        self.log(WARNING, message)

    def error(self, message: str) -> None:
        self.log(ERROR, message)

    def diagnostics(self, items) -> None:
        """Log ``(level name, text)`` pairs (the configuration's warnings)."""
        for level, text in items:
            self.log(LEVELS.get(level, WARNING), text)

    # --- flows ---
    def flow(self, text: str, *, priority: int = INFO, t: float | None = None) -> None:
        """``ctime<TAB>text`` to the Stats log, ``text`` to syslog when Stats syslog is on
        (destroyed flows; commit errors pass ``ERROR`` and go to the General log)."""
        out = f"{ctime(t)}\t{text}\n"
        target = self.stats_file if priority == INFO else self.file
        if target is not None:
            _write(target, out)
        if (self.stats_syslog if priority == INFO else self.syslog):
            import syslog

            syslog.syslog(priority, text)
