"""Several channels and the dedicated-link fail-over (spec §5.13).

:class:`MultiChannel` opens every channel of the ``Sync`` section (all of them
receive) and sends on the *current* one: the ``Default`` channel at first (the last one
marked, else the first). An RTNETLINK :class:`~.linkmon.LinkMonitor` watches the
interfaces; after each notification, when the current channel's interface is not both
UP and RUNNING, the first channel in configuration order on another interface that is
UP or RUNNING takes over (notice ``device `«ifname»' becomes dedicated link``), or the
daemon logs ``no dedicated links available!`` (error), again at each notification
while none is — the C daemon's ``interface_handler``/``interface_candidate``. The
integrator calls :meth:`MultiChannel.set_current` when a valid message arrives on a
channel, so that both peers converge on one link (the reference does it silently).
"""
from __future__ import annotations

import os
import socket
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

from .base import Channel, ChannelError, ErrorQueue
from .linkmon import IFF_RUNNING, IFF_UP, LinkMonitor, link_status
from .mcast import MulticastChannel
from .tcp import TCPChannel
from .udp import UDPChannel

TRANSPORTS: dict[str, type[Channel]] = {
    "multicast": MulticastChannel, "udp": UDPChannel, "tcp": TCPChannel,
}


def _nolog(level: str, message: str) -> None:
    pass


class MultiChannel:
    """The channels of one ``Sync`` section (see the module docstring).

    ``confs`` are :class:`~..config.Channel` records (anything with their attributes),
    ``default`` indexes the initial current channel, ``error_queue_length`` bounds the
    TCP error queue shared by the channels; ``clock`` paces TCP reconnects."""

    def __init__(self, confs: Iterable[Any], default: int = 0, *,
                 error_queue_length: int = 128,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.errorq = ErrorQueue(error_queue_length)
        self.channels: list[Channel] = []
        for i, conf in enumerate(confs):
            cls = TRANSPORTS[conf.transport]
            if cls is TCPChannel:
                self.channels.append(TCPChannel(conf, i, self.errorq, clock=clock))
            else:
                self.channels.append(cls(conf, i, self.errorq))
        self.current: Channel | None = \
            self.channels[default] if 0 <= default < len(self.channels) else \
            (self.channels[0] if self.channels else None)
        self.monitor: LinkMonitor | None = None
        self.log: Callable[[str, str], Any] = _nolog
        self.on_switch: Callable[[Channel], Any] | None = None
        """Called with the new current channel after a fail-over or :meth:`set_current`."""
        self.opened = False

    @classmethod
    def from_config(cls, sync: Any, clock: Callable[[], float] = time.monotonic) -> "MultiChannel":
        """The channels of a :class:`~..config.Sync` record."""
        return cls(sync.channels, sync.default_channel,
                   error_queue_length=sync.error_queue_length, clock=clock)

    @property
    def transport(self) -> str:
        return self.channels[0].transport if self.channels else ""

    def __len__(self) -> int:
        return len(self.channels)

    def __iter__(self):
        return iter(self.channels)

    def __getitem__(self, i: int) -> Channel:
        return self.channels[i]

    # --- life cycle -----------------------------------------------------------------
    def open(self, loop: Any, deliver: Callable[[Channel, bytes], Any], *,
             log: Callable[[str, str], Any] | None = None, iteration_limit: int = 100,
             on_error: Callable[[BaseException], Any] | None = None,
             monitor: bool = True,
             socket_factory: Callable[..., socket.socket] | None = None) -> None:
        """Open every channel and the interface watcher on ``loop``. On failure the
        reference's error line is logged, everything opened so far is closed and
        :class:`~.base.ChannelError` (with that line) is raised. ``socket_factory``
        replaces ``socket.socket`` for every channel socket, now and later."""
        self.log = log or _nolog
        if socket_factory is not None:
            for ch in self.channels:
                ch.make_socket = socket_factory
        if not self.channels:
            self._fail(f"can't open channel socket: {os.strerror(2)}")
        for ch in self.channels:
            try:
                ch.open(loop, deliver, iteration_limit=iteration_limit, on_error=on_error)
            except OSError as e:
                reason = e.strerror or os.strerror(e.errno or 0)
                self.close()
                self._fail(f"can't open channel socket: {reason}")
        if monitor:
            try:
                self.monitor = LinkMonitor(loop, self._links_changed)
            except OSError:
                self.close()
                self._fail("can't open interface watcher")
        self.opened = True

    def _fail(self, message: str) -> None:
        self.log("error", message)
        raise ChannelError(message)

    def close(self) -> None:
        for ch in self.channels:
            ch.close()
        if self.monitor is not None:
            self.monitor.close()
            self.monitor = None
        self.opened = False

    # --- output ---------------------------------------------------------------------
    @property
    def buffer_size(self) -> int:
        """The current channel's buffer (``MTU - 28``, TCP ``MTU - 40``): the size the
        protocol machine packs its datagrams to."""
        return self.current.buffer_size if self.current is not None else 0

    def send(self, data: bytes) -> None:
        """Messages (or packed datagrams of them) to the current channel's buffer."""
        if self.current is not None:
            self.current.send(data)

    def flush(self) -> None:
        """End of a transmit run: the current channel's buffer leaves."""
        if self.current is not None:
            self.current.flush()

    def send_all(self, datagrams: Iterable[bytes]) -> None:
        """:meth:`send` each of ``datagrams``, then :meth:`flush`."""
        cur = self.current
        if cur is None:
            return
        for d in datagrams:
            cur.send(d)
        cur.flush()

    # --- the current channel -------------------------------------------------------------
    def set_current(self, channel: Channel | int) -> None:
        """Make ``channel`` the sending one (a valid message arrived on it)."""
        ch = self.channels[channel] if isinstance(channel, int) else channel
        if ch is not self.current:
            self.current = ch
            if self.on_switch is not None:
                self.on_switch(ch)

    def flags(self, ch: Channel) -> int:
        """Interface flags of ``ch`` as the watcher knows them."""
        if self.monitor is None:
            return _sysfs_flags(ch.interface)
        return self.monitor.get(ch.ifindex)

    def _links_changed(self) -> None:
        cur = self.current
        if cur is None:
            return
        f = self.flags(cur)
        if f & IFF_UP and f & IFF_RUNNING:
            return
        for ch in self.channels:
            if ch.ifindex == cur.ifindex:
                continue
            if self.flags(ch) & (IFF_UP | IFF_RUNNING):
                self.set_current(ch)
                name = self.monitor.name(ch.ifindex) if self.monitor is not None else None
                self.log("notice", f"device `{name or ch.interface}' becomes dedicated link")
                return
        self.log("error", "no dedicated links available!")

    # --- figures ----------------------------------------------------------------------
    def status(self, ch: Channel) -> str:
        """``RUNNING``, ``NO-CARRIER`` or ``DOWN`` (``-s link``)."""
        return link_status(self.flags(ch))

    def channel_block(self) -> str:
        """The current channel's block of ``-s`` and ``-s network`` (spec §7.4)."""
        from .. import output as O

        ch = self.current
        if ch is None:
            return ""
        return O.channel_block(ch.transport, ch.interface, ch.stats.counters(), ch.tcp_state())

    def link_blocks(self) -> str:
        """``-s link``: every channel in configuration order (spec §7.7)."""
        from .. import output as O

        return "".join(
            O.link_block(ch.transport, ch.interface, self.status(ch),
                         "ACTIVE" if ch is self.current else "BACKUP", ch.stats.counters())
            for ch in self.channels)

    def as_dict(self) -> dict[str, Any]:
        """Every channel's figures (``-o json``, metrics)."""
        out = []
        for ch in self.channels:
            d: dict[str, Any] = {"index": ch.index, "transport": ch.transport,
                                 "device": ch.interface, "status": self.status(ch),
                                 "role": "ACTIVE" if ch is self.current else "BACKUP",
                                 "buffer_size": ch.buffer_size}
            d.update(ch.stats.as_dict())
            if ch.transport == "tcp":
                d["server"], d["client"] = ch.tcp_state()
            out.append(d)
        return {"channels": out, "errorq": {"current": len(self.errorq),
                                            "maximum": self.errorq.maximum,
                                            "enospc": self.errorq.enospc}}


def _sysfs_flags(ifname: str) -> int:
    """Flags without a watcher (tests, ``monitor=False``): sysfs ``flags`` and carrier."""
    try:
        with open(f"/sys/class/net/{ifname}/flags") as f:
            flags = int(f.read(), 16)
        with open(f"/sys/class/net/{ifname}/operstate") as f:
            if f.read().strip() in ("up", "unknown"):
                flags |= IFF_RUNNING
            else:
                flags &= ~IFF_RUNNING
    except (OSError, ValueError):
        return 0
    return flags
