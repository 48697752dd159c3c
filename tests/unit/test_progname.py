"""The ``progname=`` cache of ``conntrack -E`` on a made-up ``/proc`` (no kernel).

The cache must give the reference's answers: the owner of the port id's socket, found
through ``/proc/net/netlink`` and the processes' fd links, a new answer when the port id
is bound by another socket, the old one while the socket is the same (the reference
caches on (port id, inode)); and it must not read ``/proc/net/netlink`` while an
answer's fd link still names the socket.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from conntrack_tools.conntrack.progname import ProgName

HEADER = "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode\n"


class FakeProc:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "net").mkdir(parents=True)
        self.sockets: dict[int, int] = {}
        self.write_table()

    def write_table(self) -> None:
        lines = [f"0000000000000000 12  {portid:<10} 00000000 0        0        0     2        0"
                 f"        {inode}\n" for portid, inode in self.sockets.items()]
        (self.root / "net" / "netlink").write_text(HEADER + "".join(lines))

    def process(self, pid: int, comm: str, fds: dict[int, int]) -> None:
        d = self.root / str(pid)
        (d / "fd").mkdir(parents=True)
        (d / "stat").write_text(f"{pid} ({comm}) S 1 1 1 0 -1\n")
        for fd, inode in fds.items():
            os.symlink(f"socket:[{inode}]", d / "fd" / str(fd))

    def exit(self, pid: int) -> None:
        shutil.rmtree(self.root / str(pid))


def test_lookup_reuse_and_batches(tmp_path: Path) -> None:
    proc = FakeProc(tmp_path)
    proc.process(100, "alpha", {3: 555})
    proc.process(7, "other", {4: 999})
    proc.sockets = {100: 555, 4242: 999}
    proc.write_table()
    names = ProgName(str(tmp_path))
    assert names.lookup(100) == "alpha"
    assert names.lookup(4242) == "other"  # not /proc/4242: found among all processes
    assert names.lookup(5) is None        # no such socket

    # while the fd link names the socket, /proc/net/netlink is not read again
    (tmp_path / "net" / "netlink").unlink()
    names.refresh()
    assert names.lookup(100) == "alpha" and names.lookup(4242) == "other"

    # alpha exits and beta binds the same port id: a new socket (inode)
    proc.exit(100)
    proc.process(300, "beta", {5: 777})
    proc.sockets = {100: 777, 4242: 999}
    proc.write_table()
    assert names.lookup(100) == "alpha"  # within a batch the answer holds
    names.refresh()
    assert names.lookup(100) == "beta"

    # the same socket, now held by another process only: the answer stays (as the
    # reference's cache on (port id, inode))
    proc.exit(300)
    proc.process(301, "child", {6: 777})
    names.refresh()
    assert names.lookup(100) == "beta"

    # the socket is gone
    proc.sockets = {4242: 999}
    proc.write_table()
    names.refresh()
    assert names.lookup(100) is None and names.lookup(4242) == "other"
