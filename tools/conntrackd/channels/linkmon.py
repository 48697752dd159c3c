"""Interface state from RTNETLINK: the table the dedicated-link fail-over reads.

Like the C daemon's interface watcher (libnfnetlink's ``nlif``), :class:`LinkMonitor`
binds a ``NETLINK_ROUTE`` socket to the link group (``RTMGRP_LINK``), dumps the links
once (``RTM_GETLINK``) and keeps every interface's ``ifi_flags`` up to date from the
``RTM_NEWLINK``/``RTM_DELLINK`` notifications; after each notification it calls
``on_change()``. Only ``struct ifinfomsg`` (index and flags) and the
``IFLA_IFNAME`` attribute are read; an unknown index has flags 0 (down).
"""
from __future__ import annotations

import socket
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

from nfnl.message import build_message, iter_messages
from nfnl.socket import NetlinkSocket

NETLINK_ROUTE = 0
RTMGRP_LINK = 1
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_DONE = 3
NLMSG_ERROR = 2
IFF_UP = 0x1
IFF_RUNNING = 0x40
IFLA_IFNAME = 3
IFINFOMSG = struct.Struct("=BxHiII")
"""``struct ifinfomsg``: family, pad, type, index, flags, change."""
_HDR = 16
_RTA = struct.Struct("=HH")


def link_status(flags: int) -> str:
    """``-s link`` words (spec §7.7): ``RUNNING`` (up, carrier), ``NO-CARRIER``, ``DOWN``."""
    if not flags & IFF_UP:
        return "DOWN"
    return "RUNNING" if flags & IFF_RUNNING else "NO-CARRIER"


class LinkMonitor:
    """Interface flags by index, kept current from RTNETLINK (see the module docstring)."""

    def __init__(self, loop: Any = None, on_change: Callable[[], Any] | None = None, *,
                 sock: NetlinkSocket | None = None) -> None:
        self.flags: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.loop = loop
        self.on_change = on_change
        self.messages = 0
        self.sock = sock or NetlinkSocket(NETLINK_ROUTE, RTMGRP_LINK)
        try:
            self._dump()
            self.sock.setblocking(False)
            if loop is not None:
                loop.add_reader(self.sock, self._readable)
        except BaseException:
            self.sock.close()
            raise

    def get(self, ifindex: int) -> int:
        """The interface's flags (0 when it is unknown)."""
        return self.flags.get(ifindex, 0)

    def _dump(self) -> None:
        seq = self.sock.next_seq()
        req = build_message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP,
                            IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), seq)
        self.sock.send(req)
        while True:
            data = self.sock.recv()
            if data is None:
                continue
            if self._parse(data, seq):
                return

    def _parse(self, data: bytes, seq: int | None = None) -> bool:
        """Apply one datagram; True when it ends the dump numbered ``seq``."""
        done = False
        try:
            for off, ln, mtype, _flags, mseq, _pid in iter_messages(data):
                if mtype in (RTM_NEWLINK, RTM_DELLINK) and ln >= _HDR + IFINFOMSG.size:
                    _fam, _type, index, flags, _change = IFINFOMSG.unpack_from(data, off + _HDR)
                    if mtype == RTM_DELLINK:
                        self.flags.pop(index, None)
                        self.names.pop(index, None)
                    else:
                        self.flags[index] = flags
                        name = _ifname(data, off + _HDR + IFINFOMSG.size, off + ln)
                        if name is not None:
                            self.names[index] = name
                    self.messages += 1
                elif mtype in (NLMSG_DONE, NLMSG_ERROR) and mseq == seq:
                    done = True
        except ValueError:
            pass  # a malformed datagram: what was read before it is kept
        return done

    def _readable(self) -> None:
        """Each notification datagram updates the table, then ``on_change()`` runs (as
        the C handler checks after every ``nlif_catch``)."""
        for _ in range(64):
            try:
                data = self.sock.recv()
            except OSError:
                return
            if data is None:
                if not self.sock.overruns:
                    return
                # notifications were lost: read the whole table again
                self.sock.overruns = 0
                self.sock.setblocking(True)
                try:
                    self._dump()
                finally:
                    self.sock.setblocking(False)
            else:
                self._parse(data)
            if self.on_change is not None:
                self.on_change()

    def name(self, ifindex: int) -> str | None:
        """The interface's current name (None when unknown)."""
        return self.names.get(ifindex)

    def close(self) -> None:
        if self.loop is not None and not self.sock.closed:
            try:
                self.loop.remove_reader(self.sock)
            except (OSError, ValueError, KeyError):
                pass  # the loop is already closed (shutdown)
        self.sock.close()


def _ifname(data: bytes, off: int, end: int) -> str | None:
    """The ``IFLA_IFNAME`` attribute among the link message's attributes."""
    while off + 4 <= end:
        ln, atype = _RTA.unpack_from(data, off)
        if ln < 4 or off + ln > end:
            return None
        if atype & 0x3FFF == IFLA_IFNAME:
            return data[off + 4:off + ln].split(b"\0", 1)[0].decode(errors="replace")
        off += (ln + 3) & ~3
    return None
