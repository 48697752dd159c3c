"""The mode part of a running daemon, as the process shell sees it.

:class:`Core` builds, from a :class:`~.config.Config`, the statistics or sync mode, its
kernel side and (with a ``Metrics`` section) the Prometheus endpoint, all on the shell's
loop. The shell calls :meth:`Core.open` during initialisation (an exception means
"conntrackd cannot start"), passes every control request to :meth:`Core.handle` after
its generic step (kill, runtime statistics, child processes) and :meth:`Core.close` at
shutdown::

    core = Core(config, loop, log, flow_log_file=stats_log)
    core.open()
    ...
    chunks = core.handle(code)       # None: not for this mode; () handled, no text
"""
from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

from . import handlers as H
from . import output as O
from .kernel import Kernel, KernelSettings
from .stats import FlowLog, StatsMode
from .syncmode import SyncMode, SyncSettings


class Core:
    """Mode + kernel side (+ metrics) of a sync or stats daemon."""

    def __init__(self, config: Any, loop: Any, log: Callable[[str, str], None], *,
                 flow_log_file: Any = None, flow_syslog: bool | None = None,
                 flow_writer: Callable[..., Any] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.loop = loop
        self.log = log
        self.clock = clock
        self.started = clock()
        g = config.general
        self.mode: Any
        if config.sync is not None:
            s = SyncSettings.from_config(config.sync)
            self.mode = SyncMode(s, limit=g.hashlimit, hashsize=g.hashsize, log=log, loop=loop,
                                 clock=clock)
            populate = not s.disable_internal_cache
            if s.disable_internal_cache:
                log("notice", "disabling internal cache")
            if s.disable_external_cache:
                log("notice", "disabling external cache")
        else:
            if flow_syslog is None:
                flow_syslog = config.stats is not None and config.stats.syslog_facility is not None
            self.mode = StatsMode(limit=g.hashlimit, hashsize=g.hashsize, log=log, clock=clock,
                                  flow_log=FlowLog(flow_log_file, bool(flow_syslog), clock=clock,
                                                   writer=flow_writer))
            populate = True
        self.populate = populate
        self.kernel = Kernel(KernelSettings.from_config(config), self.mode, loop=loop, log=log,
                             resync_enabled=populate)
        self.mode.kernel = self.kernel
        self.metrics_server = None
        self.flow_writer = flow_writer
        self.commit_ct: Any = None

    def open(self) -> None:
        """Sockets, start-up dump, metrics endpoint (raises OSError on failure)."""
        if self.populate:
            self.kernel.open()
        else:
            self.kernel.open_without_cache()
        if isinstance(self.mode, SyncMode):
            self._open_committer()
        m = getattr(self.config, "metrics", None)
        if m is not None:
            from .metrics import MetricsServer, render

            self.metrics_server = MetricsServer(
                self.loop, lambda: render(self.mode, self.kernel, started=self.started),
                m.address, m.port, m.path)

    def _open_committer(self) -> None:
        """The commit socket (its events are the daemon's own, §6.5) and the committer."""
        from ctnetlink.client import Conntrack
        from nfnl.socket import NetlinkSocket

        from .commit import Committer, CommitSettings
        from .kernel import ORIGIN_COMMIT

        def open_socket() -> Conntrack:
            ct = Conntrack(NetlinkSocket(rcvbuf=8 << 20))
            self.kernel.register_origin(ct.sock.portid, ORIGIN_COMMIT)
            return ct

        def forget_socket(portid: int) -> None:
            self.kernel.origins.pop(portid, None)

        def pause_events(flag: bool) -> None:
            if flag:
                self.kernel.pause_events()
            else:
                self.kernel.resume_events()

        self.commit_ct = open_socket()
        self.mode.committer = Committer(self.mode, self.commit_ct, self.loop, self.log,
                                        settings=CommitSettings.from_config(self.config.sync),
                                        flow_log=self.flow_writer, clock=self.clock,
                                        open_socket=open_socket, forget_socket=forget_socket,
                                        pause_events=pause_events)

    def commit(self, code: int, conn: Any) -> bool:
        """Commit requests: handled (True) by the sync mode, which keeps ``conn``."""
        commit = getattr(self.mode, "commit", None)
        return bool(commit is not None and commit(code, conn))

    def handle(self, code: int) -> Iterable[bytes] | None:
        """Steps 2 and 3 of the dispatch (spec §4.3) for request ``code``."""
        exp = bool(self.kernel.settings.expectations)
        base = code & ~H.JSON
        if not code & H.JSON:
            H.kernel_request(base, self.kernel, self.log, populate=self.populate, expectations=exp)
        return self.mode.handle(code)

    def runtime_stats(self, runtime: Any = None) -> str:
        """The ``-s runtime`` text (the shell owns the runtime counters)."""
        return O.runtime_stats(int(self.clock() - self.started), self.kernel.stats, runtime)

    def runtime_json(self, runtime: Any = None) -> bytes:
        doc = {"uptime": int(self.clock() - self.started), "netlink": self.kernel.stats.as_dict()}
        if runtime is not None:
            doc["runtime"] = {n: int(getattr(runtime, n, 0) or 0) for n in O.RUNTIME_COUNTERS}
        return O.to_json(doc)

    def close(self) -> None:
        committer = getattr(self.mode, "committer", None)
        if committer is not None:
            committer.close()
            self.mode.committer = None
            self.commit_ct.close()
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None
        self.kernel.close()
