"""UDP unicast channels, IPv4 and IPv6 (``UDP`` blocks, spec §5.2.2).

As conntrackd 1.4.7 (strace): the receiver sets ``SO_REUSEADDR`` and the optional
``SO_RCVBUFFORCE`` and binds ``IPv4_address:Port`` (IPv6: ``[IPv6_address]:Port`` with
the index of ``Interface`` as scope); the sender is unbound (an ephemeral source port),
sets ``SO_NO_CHECK`` (``Checksum off``) and the optional ``SO_SNDBUFFORCE``, and sends
to ``IPv4_Destination_Address:Port`` (IPv6 with the same scope). Both are non-blocking.
"""
from __future__ import annotations

import socket

from .base import SO_NO_CHECK, Channel, family_of, set_buffers, sockaddr


class UDPChannel(Channel):
    """A ``UDP`` block: datagrams to the peer's address, received on our own."""

    transport = "udp"

    def _open(self) -> None:
        c = self.conf
        fam = family_of(c)
        scope = c.ifindex if fam == socket.AF_INET6 else 0
        tx = self.make_socket(fam, socket.SOCK_DGRAM)
        self.tx = tx
        self._watched.append(tx)
        tx.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 0 if c.checksum else 1)
        self.sndbuf = set_buffers(tx, sndbuf=c.sndbuf) or \
            tx.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        tx.setblocking(False)
        self.dest = sockaddr(fam, c.dest_address, c.port, scope)

        rx = self.make_socket(fam, socket.SOCK_DGRAM)
        self.rx = rx
        self._watched.append(rx)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.rcvbuf = set_buffers(rx, rcvbuf=c.rcvbuf) or \
            rx.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        rx.bind(sockaddr(fam, c.address, c.port, scope))
        self._watched.remove(rx)
        self._watch(rx, self._readable)

    def _readable(self) -> None:
        self._read_datagrams(self.rx)

    def _send(self, data: bytes) -> bool:
        return self._sendto(self.tx, data, self.dest)
