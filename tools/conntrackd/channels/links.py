"""The figures of ``-s`` (channel block), ``-s network``, ``-s link``, ``-s queue`` and
``-s rsqueue`` from running channels and a sync protocol machine.

:class:`ChannelLinks` has the interface of :class:`~..syncmode.NoLinks` (what
:class:`~..syncmode.SyncMode` reads from ``mode.links``): the integrator sets
``mode.links = ChannelLinks(mode.settings, channels, machine)``. The machine is read
by duck typing (the replication package's machines): ``machine.stats`` has the receive
counters (``malformed``, ``bad_version``, ``bad_header``, ``bad_payload``,
``bad_type``, ``truncated``, ``bad_size``, ``lost``, ``before``),
``machine.queue_stats()`` returns ``(allocated nodes, [(queue, current, maximum, no
space errors), ...])`` without the channels' ``errorq`` (inserted here after
``txqueue``, where the reference lists it), ``machine.rsqueue_dump()`` the ``-s
rsqueue`` text (FTFW). Without a machine the protocol figures are zeros.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator

from .. import output as O
from .multi import MultiChannel

TXQUEUE_MAX = 2147483647


class ChannelLinks:
    """``mode.links`` backed by real channels (see the module docstring)."""

    def __init__(self, settings: Any, channels: MultiChannel, machine: Any = None) -> None:
        self.settings = settings
        self.channels = channels
        self.machine = machine

    def channel_block(self) -> str:
        return self.channels.channel_block()

    def link_blocks(self) -> str:
        return self.channels.link_blocks()

    def _stat(self, name: str) -> int:
        stats = getattr(self.machine, "stats", None)
        return int(getattr(stats, name, 0) or 0)

    def network_stats(self) -> str:
        g = self._stat
        return O.network_stats(g("malformed"), g("bad_version"), g("bad_header"),
                               g("bad_payload"), g("bad_type"), g("truncated"),
                               g("bad_size"), 0, g("lost"), g("before")) + self.channel_block()

    def message_tracking(self) -> str:
        return O.message_tracking(self._stat("malformed"), self._stat("lost"))

    def queues(self) -> tuple[int, list[tuple[str, int, int, int]]]:
        """(allocated queue nodes, queues in the order ``-s queue`` prints them)."""
        q = self.channels.errorq
        errorq = ("errorq", len(q), q.maximum, q.enospc)
        qs = getattr(self.machine, "queue_stats", None)
        if qs is None:
            queues = [("txqueue", 0, TXQUEUE_MAX, 0), errorq]
            if self.settings.mode == "ftfw":
                queues.append(("rsqueue", 0, self.settings.resend_queue_size, 0))
            return len(q), queues
        nodes, queues = qs()
        queues = list(queues)
        at = next((i + 1 for i, e in enumerate(queues) if e[0] == "txqueue"), 0)
        queues.insert(at, errorq)
        return nodes + len(q), queues

    def queue_stats(self) -> str:
        nodes, queues = self.queues()
        return O.queue_stats(nodes, queues)

    def rsqueue(self) -> str | None:
        if self.settings.mode != "ftfw":
            return None
        dump = getattr(self.machine, "rsqueue_dump", None)
        return dump() if dump is not None else "resent queue (len=0)\n"

    def metrics(self) -> Iterator[tuple[str, str, str, int, dict[str, str]]]:
        """Prometheus samples (each family contiguous): per channel and direction the
        bytes, packets and errors, which channel is active, and the error queue."""
        chans = list(self.channels)

        def labels(ch: Any, **extra: str) -> dict[str, str]:
            return dict({"channel": str(ch.index), "device": ch.interface,
                         "transport": ch.transport}, **extra)

        families = (
            ("conntrackd_channel_bytes_total", "Sync bytes moved by a channel.",
             "bytes_sent", "bytes_recv"),
            ("conntrackd_channel_packets_total",
             "Sync datagrams (TCP: send/recv calls) moved by a channel.",
             "packets_sent", "packets_recv"),
            ("conntrackd_channel_errors_total", "Failed sends or receives of a channel.",
             "errors_send", "errors_recv"),
        )
        for name, help, sent, recv in families:
            for ch in chans:
                yield (name, "counter", help, getattr(ch.stats, sent),
                       labels(ch, direction="sent"))
                yield (name, "counter", help, getattr(ch.stats, recv),
                       labels(ch, direction="received"))
        for ch in chans:
            yield ("conntrackd_channel_active", "gauge", "1 for the channel that sends.",
                   int(ch is self.channels.current), labels(ch))
        yield ("conntrackd_channel_error_queue", "gauge",
               "Buffers waiting to be re-sent (TCP errorq).", len(self.channels.errorq), {})
