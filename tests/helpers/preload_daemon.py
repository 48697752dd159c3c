"""Our conntrackd (console mode) with its external cache preloaded from sync datagrams.

Usage: ``preload_daemon.py CONFIG DATAGRAMS`` (run under ``ip netns exec``). The
datagrams (:func:`helpers.commitrig.write_datagrams`) go through a NOTRACK machine and
:func:`~conntrack_tools.conntrackd.sync.source.apply` into the sync mode's external
caches during start-up, before ``initialization completed``: what the replication
receive path does with the same datagrams, for tests written before it exists.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conntrack_tools.conntrackd import main, modes  # noqa: E402
from conntrack_tools.conntrackd.sync.common import CacheOp  # noqa: E402
from conntrack_tools.conntrackd.sync.notrack import NotrackMachine  # noqa: E402
from conntrack_tools.conntrackd.sync.source import apply  # noqa: E402
from helpers.commitrig import read_datagrams  # noqa: E402


def preload(mode, path: str) -> None:
    machine = NotrackMachine()
    now = time.time()
    for gram in read_datagrams(path):
        for action in machine.receive(gram, now):
            if isinstance(action, CacheOp):
                apply(action, mode.external, mode.external_exp)


def run(config: str, data: str) -> int:
    start = modes.start

    def start_and_preload(daemon):
        core = start(daemon)
        if core is not None:
            preload(core.mode, data)
        return core

    modes.start = start_and_preload
    return main.run(["conntrackd", "-C", config])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2]))
