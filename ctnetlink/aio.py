"""asyncio variants of :meth:`Conntrack.dump` and :meth:`Conntrack.events`.

The sockets are non-blocking and watched with ``loop.add_reader``; decoding reuses the
sans-IO :class:`nfnl.message.DumpReader`, the shape decoder and (events) the
:class:`~ctnetlink.listen.Listener`, so results are the same objects the blocking client
yields.

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
from .client import _TABLES, EVENT_RCVBUF, Conntrack
from .errors import wrap
from .filters import Filter
from .listen import Listener
from .model import Event, Flow, Tuple


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.add_reader(fd, fut.set_result, None)
    try:
        await fut
    finally:
        loop.remove_reader(fd)


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
                await _readable(self.sock.fileno())
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
        family: int | None = None, resync: bool = False,
    ) -> AsyncIterator[Event]:
        """Like :meth:`Conntrack.events` (subscribed as soon as this is called); overruns
        are reported in ``Event.lost`` and, with ``resync``, repaired by a dump (see
        :mod:`ctnetlink.listen`). Use as ``async for ev in ct.events()``."""
        return self._events(Listener(groups, rcvbuf=rcvbuf, family=family, resync=resync,
                                     nonblocking=True))

    async def _events(self, listener: Listener) -> AsyncIterator[Event]:
        try:
            while True:
                got = listener.read_events()
                if not got:
                    await _readable(listener.fileno())
                    continue
                for ev in got:
                    yield ev
        finally:
            listener.close()
