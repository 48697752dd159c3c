"""Which program owns a netlink port id: the ``progname=`` of ``[USERSPACE]`` (spec §8.3).

The reference, for every event: reads ``/proc/net/netlink`` for the socket inode bound to
(protocol 12, port id), and when (port id, inode) differs from its last answer, looks for
the process holding ``socket:[inode]``, first ``/proc/<portid>/fd`` then every process,
and takes the name from its ``/proc/<pid>/stat``. Here reading ``/proc/net/netlink``
costs about 0.2 ms (it walks every netlink socket of the machine) and would cap the
output at a few thousand events per second, so:

* answers are kept per port id (as the reference's one answer, keyed by (port id,
  inode): a port id reused by another socket gets a new inode, hence a new lookup), with
  the ``/proc/<pid>/fd/<n>`` link where the socket was found;
* :meth:`ProgName.refresh` is called after a batch of events was received: the first
  lookup of a port id after it checks the answer once: ``readlink`` of that link still
  naming the socket proves the socket alive, and a live socket keeps its port id (else
  ``/proc/net/netlink`` is read once for the whole batch and the reference's search runs).

So every name printed is the owner of the port id at a moment after the event was
received, as with the reference, at one check per port id and batch instead of a
``/proc/net/netlink`` scan per event.
"""
from __future__ import annotations

import os

MAX_KNOWN = 4096


class ProgName:
    """``lookup(portid) -> program name or None``, cached (see the module docstring)."""

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        # portid -> (inode, "/proc/<pid>/fd/<n>" holding it or None, name)
        self._known: dict[int, tuple[int, str | None, str | None]] = {}
        self._checked: dict[int, str | None] = {}
        self._table: dict[int, int] | None = None

    def refresh(self) -> None:
        """Events received until now are to be named: check every answer again once."""
        self._checked.clear()
        self._table = None

    def lookup(self, portid: int) -> str | None:
        try:
            return self._checked[portid]
        except KeyError:
            pass
        name = self._checked[portid] = self._resolve(portid)
        return name

    # --- the reference's steps, with the cache ------------------------------------------------
    def _resolve(self, portid: int) -> str | None:
        known = self._known.get(portid)
        if known is not None and known[1] is not None:
            try:
                if os.readlink(known[1]) == f"socket:[{known[0]}]":
                    return known[2]
            except OSError:
                pass
        inode = self._inode(portid)
        if inode is None:
            self._known.pop(portid, None)
            return None
        if known is not None and known[0] == inode:
            # the same socket (now held elsewhere): the reference keeps its answer too
            self._known[portid] = (inode, self._fd_link(str(portid), f"socket:[{inode}]"), known[2])
            return known[2]
        name, link = self._search(portid, inode)
        if len(self._known) >= MAX_KNOWN:
            self._known.clear()
        self._known[portid] = (inode, link, name)
        return name

    def _inode(self, portid: int) -> int | None:
        """Step 1, from one reading of ``/proc/net/netlink`` per batch."""
        if self._table is None:
            table: dict[int, int] = {}
            try:
                with open(f"{self.proc}/net/netlink") as f:
                    next(f, None)
                    for line in f:
                        parts = line.split()
                        if len(parts) >= 10 and parts[1] == "12":
                            table.setdefault(int(parts[2]), int(parts[9]))
            except (OSError, ValueError):
                pass
            self._table = table
        return self._table.get(portid)

    def _fd_link(self, pid: str, target: str) -> str | None:
        """The ``/proc/<pid>/fd/<n>`` that links to ``target``, if any."""
        fd_dir = f"{self.proc}/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            return None
        for n in names:
            link = f"{fd_dir}/{n}"
            try:
                if os.readlink(link) == target:
                    return link
            except OSError:
                continue
        return None

    def _search(self, portid: int, inode: int) -> tuple[str | None, str | None]:
        """Steps 2 and 3: (name, link) of the process holding the socket."""
        target = f"socket:[{inode}]"
        link = self._fd_link(str(portid), target)
        if link is not None:
            return self._comm(str(portid)), link
        try:
            pids = sorted(int(p) for p in os.listdir(self.proc) if p.isdigit())
        except OSError:
            pids = []
        for pid in pids:
            if pid <= 1 or pid == portid:
                continue
            link = self._fd_link(str(pid), target)
            if link is not None:
                return self._comm(str(pid)), link
        return None, None

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
