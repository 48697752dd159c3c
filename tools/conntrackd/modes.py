"""The mode code's entry point for the process shell: ``start(daemon)``.

Called during initialisation when the configuration has a ``Sync`` or ``Stats`` section
(:mod:`.daemon`): builds the :class:`~.core.Core` on the daemon's loop, opens the
netlink sockets and dumps the kernel table (failures log the reference's lines and
raise ``InitError``), makes the kernel side's counters the ones ``-s runtime`` prints,
registers the control handler (steps 2 and 3 of spec §4.3, after the shell's generic
step) and the clean-up. No thread is started here: in daemon mode the process forks
after ``start`` returns.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from . import handlers as H

_LEVELS = ("info", "notice", "warning", "error")


class InitError(Exception):
    """A mode could not start (its reasons are already logged)."""


def start(daemon: Any) -> Any:
    """Start the sync or stats mode of ``daemon`` (None for a helper-only config)."""
    from .core import Core

    cfg = daemon.config
    if cfg.sync is None and cfg.stats is None:
        return None
    logger = daemon.log

    def log(level: str, msg: str) -> None:
        getattr(logger, level if level in _LEVELS else "notice")(msg)

    if cfg.sync is not None and not cfg.sync.mode_given:
        log("warning", "No synchronization mode specified. Defaulting to FT-FW mode.")
    core = Core(cfg, daemon.loop, log, flow_writer=getattr(logger, "flow", None))
    try:
        core.open()
    except OSError as e:
        from nfnl.errors import NetlinkError

        if isinstance(e, NetlinkError) or getattr(e, "errno", None) is None:
            log("error", "can't get kernel conntrack table")
        else:
            log("error", f"can't open netlink handler: {e.strerror or e}")
            log("error", "no ctnetlink kernel support?")
        core.close()
        raise InitError(str(e)) from None
    except Exception as e:  # a bug must not leave half a daemon behind
        core.close()
        log("error", f"can't get kernel conntrack table: {type(e).__name__}: {e}")
        raise InitError(str(e)) from None
    daemon.netlink = core.kernel.stats
    if cfg.sync is not None:
        from .channels import ChannelError
        from .replication import Replication

        rep = Replication(core.mode, cfg.sync, daemon.loop, log, kernel=core.kernel,
                          iteration_limit=cfg.general.event_iteration_limit,
                          on_error=daemon.internal_error)
        try:
            rep.open()
        except ChannelError as e:  # already logged in the reference's words
            core.close()
            raise InitError(str(e)) from None
        core.replication = rep
        daemon.on_shutdown(core.close)
        daemon.on_shutdown(rep.close)
    else:
        daemon.on_shutdown(core.close)

    def handler(code: int, conn: Any) -> None:
        if code == H.STATS_RUNTIME | H.JSON:
            runtime = _Runtime(daemon)
            conn.write(core.runtime_json(runtime))
            return None
        if core.commit(code, conn):  # the committer closes the connection when done
            return None
        chunks = core.handle(code)
        if chunks:
            for chunk in chunks:
                if not conn.write(chunk):
                    break
        return None

    daemon.control.add_handler(handler)
    committer = getattr(core.mode, "committer", None)
    if committer is not None:  # commit workers appear in -s process, SIGCHLD reaps them
        committer.children = daemon.children
    return core


class _Runtime:
    """The shell's runtime counters under the names of :data:`.output.RUNTIME_COUNTERS`."""

    def __init__(self, daemon: Any) -> None:
        c = daemon.children
        r = daemon.control.stats
        self.child_process_failed = c.failed
        self.child_process_segfault = c.segfault
        self.child_process_termsig = c.termsig
        self.select_failed = daemon.select_failed
        self.wait_failed = c.wait_failed
        self.local_read_failed = r.read_failed
        self.local_unknown_request = r.unknown_request
