"""asyncio variants of :meth:`Conntrack.dump` and :meth:`Conntrack.events`.

The sockets are non-blocking and watched with ``loop.add_reader``; decoding reuses the
sans-IO :class:`nfnl.message.DumpReader` and the shape decoder, so results are the same
objects the blocking client yields.

>>> async def main():                                           # doctest: +SKIP
...     async with AsyncConntrack() as ct:
...         async for flow in ct.dump(family=socket.AF_INET):
...             print(flow)
"""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

from nfnl.constants import NLM_F_DUMP, NLM_F_REQUEST
from nfnl.errors import NetlinkError
from nfnl.message import DumpReader, build_nfnl
from nfnl.socket import NetlinkSocket

from . import constants as K
from .client import EVENT_RCVBUF, _TABLES, Conntrack, _SocketDrops
from .errors import wrap
from .filters import Filter
from .model import Event, Flow, Tuple


async def _readable(sock: NetlinkSocket) -> None:
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.add_reader(sock.fileno(), fut.set_result, None)
    try:
        await fut
    finally:
        loop.remove_reader(sock.fileno())


class AsyncConntrack:
    """An asyncio client for dumps and events (an async context manager)."""

    def __init__(self, sock: NetlinkSocket | None = None) -> None:
        self.sock = sock if sock is not None else NetlinkSocket(nonblocking=True)
        self.sock.setblocking(False)
        self._sync = Conntrack(self.sock)

    async def __aenter__(self) -> "AsyncConntrack":
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    async def dump(
        self, family: int = 0, *, mark: int | None = None, mark_mask: int | None = None,
        status: int | None = None, status_mask: int | None = None, zone: int | None = None,
        orig: Tuple | None = None, reply: Tuple | None = None, table: str = "conntrack",
    ) -> AsyncIterator[Flow]:
        """Like :meth:`Conntrack.dump` (kernel-side mark/status/zone filters and user-space
        re-check; tuple filters are applied in user space here)."""
        flt = None
        if any(v is not None for v in (mark, status, zone, orig, reply)):
            flt = Filter(family, mark, mark_mask, status, status_mask, zone, orig, reply)
        attrs = flt.attributes(cta_filter=bool(zone)) if flt is not None and table == "conntrack" else b""
        seq = self.sock.next_seq()
        msg = build_nfnl(_TABLES[table], NLM_F_REQUEST | NLM_F_DUMP, family, attrs, seq)
        reader = DumpReader(seq, msg)
        decode = self._sync._decoder.decode
        self.sock.send(msg)
        while not reader.done:
            buf = self.sock.recv()
            if buf is None:
                await _readable(self.sock)
                continue
            try:
                items = reader.feed(buf)
            except NetlinkError as e:
                raise wrap(e) from None
            for b, off, ln in items:
                flow = decode(b, off, ln)
                if flt is None or flt.matches(flow):
                    yield flow

    def events(
        self, groups: int = K.NL_GROUPS_CONNTRACK, *, rcvbuf: int | None = EVENT_RCVBUF,
        family: int | None = None,
    ) -> AsyncIterator[Event]:
        """Like :meth:`Conntrack.events` (subscribed as soon as this is called);
        overruns are reported in ``Event.lost``. Use as ``async for ev in ct.events()``."""
        sock = NetlinkSocket(groups=groups, rcvbuf=rcvbuf, nonblocking=True)
        return self._events(sock, _SocketDrops(sock), family)

    async def _events(self, sock: NetlinkSocket, drops: _SocketDrops,
                      family: int | None) -> AsyncIterator[Event]:
        decode = self._sync._event_decoders()
        lost = 0
        try:
            while True:
                before = sock.overruns
                buf = sock.recv()
                if buf is None:
                    if sock.overruns != before:
                        lost += drops.delta()
                        continue
                    await _readable(sock)
                    continue
                off = 0
                while off < len(buf):
                    ln = int.from_bytes(buf[off:off + 4], "little")
                    if ln < 16:
                        break
                    ev = decode(buf, off, family)
                    off += (ln + 3) & ~3
                    if ev is not None:
                        if lost:
                            ev.lost, lost = lost, 0
                        yield ev
        finally:
            sock.close()
