"""IPv4 and IPv6 multicast channels (``Multicast`` blocks, spec §5.2.1).

Two sockets, set up as conntrackd 1.4.7 does (checked with strace): the sender is an
unbound datagram socket with ``SO_NO_CHECK`` (``Checksum off``), the optional
``SO_SNDBUFFORCE``, multicast loop off and the outgoing interface (``IPv4_interface``'s
address, or the IPv6 index of ``Interface``); TTL/hops stay the system default (1).
The receiver sets ``SO_REUSEADDR`` and the optional ``SO_RCVBUFFORCE``, binds the
wildcard address on port ``Group`` and joins the group on the interface (so it also
gets unicast datagrams sent to that port, as the reference's does). Both sockets are
non-blocking: a full send buffer is a counted send error, never a stall of the loop.
"""
from __future__ import annotations

import socket
import sys

from .base import DatagramChannel, family_of, sockaddr


class MulticastChannel(DatagramChannel):
    """A ``Multicast`` block: datagrams to ``IPv4_address``/``IPv6_address``:``Group``."""

    transport = "multicast"

    def _open(self) -> None:
        c = self.conf
        fam = family_of(c)
        group = c.address or ("::" if fam == socket.AF_INET6 else "0.0.0.0")
        tx = self._open_tx(fam)
        if fam == socket.AF_INET6:
            tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, c.ifindex6)
        else:
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                          socket.inet_aton(c.interface_address or "0.0.0.0"))
        tx.setblocking(False)
        self.dest = sockaddr(fam, group, c.port)

        rx = self._open_rx(fam, sockaddr(fam, None, c.port))
        if fam == socket.AF_INET6:
            mreq = socket.inet_pton(fam, group) + c.ifindex6.to_bytes(4, sys.byteorder)
            rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        else:
            mreq = socket.inet_aton(group) + socket.inet_aton(c.interface_address or "0.0.0.0")
            rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        self._watch_rx()
