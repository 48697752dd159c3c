"""Which program owns a netlink port id: the ``progname=`` of ``[USERSPACE]`` (spec §8.3).

``/proc/net/netlink`` maps (protocol 12, port id) to a socket inode; the process holding
that inode is searched first as ``/proc/<portid>`` (a port id is usually the pid),
then among all processes. The last answer is cached, as in the reference.
"""
from __future__ import annotations

import os


class ProgName:
    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self._last: tuple[int, int, str | None] | None = None

    def _inode(self, portid: int) -> int | None:
        try:
            with open(f"{self.proc}/net/netlink") as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) >= 10 and parts[1] == "12" and parts[2] == str(portid):
                        return int(parts[9])
        except (OSError, ValueError):
            return None
        return None

    def _holds(self, pid: str, target: str) -> bool:
        fd_dir = f"{self.proc}/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            return False
        for n in names:
            try:
                if os.readlink(f"{fd_dir}/{n}") == target:
                    return True
            except OSError:
                continue
        return False

    def _comm(self, pid: str) -> str | None:
        try:
            with open(f"{self.proc}/{pid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            return None
        start = data.find(b"(")
        end = data.find(b")", start + 1)
        if start < 0 or end < 0:
            return None
        return data[start + 1:end].decode("utf8", "replace")

    def lookup(self, portid: int) -> str | None:
        inode = self._inode(portid)
        if inode is None:
            return None
        if self._last is not None and self._last[:2] == (portid, inode):
            return self._last[2]
        target = f"socket:[{inode}]"
        name = None
        if self._holds(str(portid), target):
            name = self._comm(str(portid))
        else:
            try:
                pids = sorted((int(p) for p in os.listdir(self.proc) if p.isdigit()))
            except OSError:
                pids = []
            for pid in pids:
                if pid <= 1 or pid == portid:
                    continue
                if self._holds(str(pid), target):
                    name = self._comm(str(pid))
                    break
        self._last = (portid, inode, name)
        return name
