"""Our conntrackd's mode code in the test process: the kernel side and a mode (stats or
sync) on a test loop, sockets opened in a namespace. Requests are answered by calling
the mode's handlers directly (the process shell and its control socket are tested on
their own)."""
from __future__ import annotations

from conntrack_tools.conntrackd import handlers as H
from conntrack_tools.conntrackd.kernel import Kernel, KernelSettings

from .miniloop import MiniLoop
from .netns import NetNS


class Daemon:
    def __init__(self, ns: NetNS, mode, settings: KernelSettings | None = None) -> None:
        self.ns = ns
        self.loop = MiniLoop()
        self.logs: list[tuple[str, str]] = []
        self.mode = mode
        if getattr(mode, "log", None) is not None:
            mode.log = self.log
        if hasattr(mode, "loop"):
            mode.loop = self.loop
        with ns.enter():
            self.kernel = Kernel(settings or KernelSettings(), mode, loop=self.loop, log=self.log)
            self.kernel.open()
        mode.kernel = self.kernel

    def log(self, level: str, msg: str) -> None:
        self.logs.append((level, msg))

    def request(self, code: int) -> bytes:
        """The reply to ``code``: the kernel-table step, then the mode (spec §4.3)."""
        with self.ns.enter():
            H.kernel_request(code, self.kernel, self.log,
                             expectations=self.kernel.settings.expectations)
            out = self.mode.handle(code)
        return b"".join(out) if out else b""

    def settle(self, seconds: float = 0.2) -> None:
        self.loop.run_for(seconds)

    def close(self) -> None:
        self.kernel.close()
        self.loop.close()
