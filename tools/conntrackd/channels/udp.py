"""UDP unicast channels, IPv4 and IPv6 (``UDP`` blocks, spec §5.2.2).

As conntrackd 1.4.7 (strace): the receiver sets ``SO_REUSEADDR`` and the optional
``SO_RCVBUFFORCE`` and binds ``IPv4_address:Port`` (IPv6: ``[IPv6_address]:Port`` with
the index of ``Interface`` as scope); the sender is unbound (an ephemeral source port),
sets ``SO_NO_CHECK`` (``Checksum off``) and the optional ``SO_SNDBUFFORCE``, and sends
to ``IPv4_Destination_Address:Port`` (IPv6 with the same scope). Both are non-blocking.
"""
from __future__ import annotations

import socket

from .base import DatagramChannel, family_of, sockaddr


class UDPChannel(DatagramChannel):
    """A ``UDP`` block: datagrams to the peer's address, received on our own."""

    transport = "udp"

    def _open(self) -> None:
        c = self.conf
        fam = family_of(c)
        scope = c.ifindex if fam == socket.AF_INET6 else 0
        self._open_tx(fam).setblocking(False)
        self.dest = sockaddr(fam, c.dest_address, c.port, scope)
        self._open_rx(fam, sockaddr(fam, c.address, c.port, scope))
        self._watch_rx()
