"""``Conntrack``: the client API over a netlink socket.

Verbs that read like the domain — :meth:`~Conntrack.dump`, :meth:`~Conntrack.get`,
:meth:`~Conntrack.create`, :meth:`~Conntrack.update`, :meth:`~Conntrack.delete`,
:meth:`~Conntrack.flush`, :meth:`~Conntrack.count`, :meth:`~Conntrack.stats`,
:meth:`~Conntrack.events` — and the same for expectations. Kernel errors raise the typed
exceptions of :mod:`ctnetlink.errors`. Nothing here prints or exits.
"""
from __future__ import annotations

import errno as E
import struct
TYPE_CHECKING = False  # typing is not imported at run time: the CLI must start fast
if TYPE_CHECKING:
    from typing import Callable, Iterable, Iterator, Sequence

    from .enums import EventType
    from .listen import Listener

from nfnl.constants import (
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR,
)
from nfnl.errors import NetlinkError
from nfnl.message import NFGENMSG, build_nfnl, iter_messages, parse_error
from nfnl.socket import EVENT_RCVBUF, NetlinkSocket

from . import constants as K
from .decode import Decoder
from .encode import encode_expect, encode_flow, encode_tuple
from .errors import ConntrackError, wrap
from .filters import Filter
from .model import AF_INET, CpuStats, Event, Expect, Flow, Tuple

from nfnl.codec import nla_nest


_U32 = struct.Struct(">I")
_REQ = struct.Struct("=IHHIIBBH")  # nlmsghdr + nfgenmsg of a request
_TABLES = {"conntrack": K.IPCTNL_MSG_CT_GET, "dying": K.IPCTNL_MSG_CT_GET_DYING,
           "unconfirmed": K.IPCTNL_MSG_CT_GET_UNCONFIRMED}


def _raise(err: NetlinkError) -> None:
    raise wrap(err) from None


class Conntrack:
    """A connection to the kernel's conntrack tables (a context manager).

    >>> with Conntrack() as ct:                                # doctest: +SKIP
    ...     for flow in ct.dump(family=socket.AF_INET):
    ...         print(flow.orig.src, flow.orig.dport, flow.tcp_state)
    """

    def __init__(self, sock: NetlinkSocket | None = None, *, rcvbuf: int | None = None) -> None:
        self.sock = sock if sock is not None else NetlinkSocket(rcvbuf=rcvbuf)
        self._decoder = Decoder(False)
        self._exp_decoder = Decoder(True)
        self._cta_filter_ok: bool | None = None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Conntrack":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- helpers ------------------------------------------------------------------
    def _msg(self, mtype: int, flags: int, family: int, attrs: bytes = b"") -> bytes:
        return build_nfnl(mtype, flags, family, attrs, self.sock.next_seq())

    def _request(self, msg: bytes, on_data=None) -> None:
        try:
            self.sock.request(msg, on_data=on_data)
        except NetlinkError as e:
            _raise(e)

    # --- conntrack table ------------------------------------------------------------
    def dump_raw(
        self, family: int = 0, *, filter: Filter | None = None, table: str = "conntrack",
        zero: bool = False, pipeline: bool = True,
    ) -> Iterator[tuple[bytes, int, int]]:
        """Yield (datagram, offset, length) of every entry message of a dump.

        With a :class:`Filter` using ``CTA_FILTER`` on a kernel that rejects it, the
        dump is retried without (callers must then filter in user space, see
        :meth:`dump`). ``zero`` uses ``GET_CTRZERO`` (read and reset counters); ``pipeline``
        reads the next datagrams in a helper thread while the caller decodes (see
        :meth:`NetlinkSocket.dump`).
        """
        for items in self.dump_batches(family, filter=filter, table=table, zero=zero,
                                       pipeline=pipeline):
            yield from items

    def dump_batches(
        self, family: int = 0, *, filter: Filter | None = None, table: str = "conntrack",
        zero: bool = False, pipeline: bool = True,
    ) -> Iterator[list[tuple[bytes, int, int]]]:
        """Like :meth:`dump_raw`, one list per received datagram."""
        mtype = K.IPCTNL_MSG_CT_GET_CTRZERO if zero else _TABLES[table]
        use_filter = filter is not None and filter.uses_cta_filter and self._cta_filter_ok is not False
        if use_filter and not family and (filter.orig is not None or filter.reply is not None):
            # the kernel parses filter tuples only for one layer-3 family: dump each
            # (IPv4 entries then come before IPv6 ones instead of in hash order)
            fams = {t.family for t in (filter.orig, filter.reply) if t is not None} - {None}
            if fams:
                fam = fams.pop()
                yield from self.dump_batches(fam, filter=filter.copy(family=fam), table=table,
                                             zero=zero, pipeline=pipeline)
                return
            yield from self._dump_families(filter, table, zero, pipeline)
            return
        attrs = filter.attributes(cta_filter=use_filter) if filter is not None and table == "conntrack" else b""
        msg = self._msg(mtype, NLM_F_REQUEST | NLM_F_DUMP, family, attrs)
        try:
            yield from self.sock.dump_batches(msg, pipeline=pipeline)
            if use_filter:
                self._cta_filter_ok = True
        except NetlinkError as e:
            if use_filter and self._cta_filter_ok is None and e.errno in (E.EINVAL, E.EOPNOTSUPP):
                self._cta_filter_ok = False
                yield from self.dump_batches(family, filter=filter, table=table, zero=zero,
                                             pipeline=pipeline)
                return
            _raise(e)

    def _dump_families(self, filter: Filter, table: str, zero: bool,
                       pipeline: bool) -> Iterator[list[tuple[bytes, int, int]]]:
        """IPv4 then IPv6 filtered dumps; the IPv6 one runs meanwhile on a second socket
        in a thread (the kernel walks the table for each, on two cores at once) and its
        (filtered, small) result is kept until the IPv4 part has been consumed."""
        import queue
        import threading

        q: queue.SimpleQueue = queue.SimpleQueue()
        other = Conntrack(NetlinkSocket(rcvbuf=4 << 20))
        other._cta_filter_ok = self._cta_filter_ok

        def run() -> None:
            try:
                for items in other.dump_batches(10, filter=filter.copy(family=10), table=table,
                                                zero=zero, pipeline=False):
                    q.put(items)
                q.put(None)
            except BaseException as e:
                q.put(e)

        t = threading.Thread(target=run, name="ctnetlink-dump6", daemon=True)
        t.start()
        try:
            yield from self.dump_batches(2, filter=filter.copy(family=2), table=table, zero=zero,
                                         pipeline=pipeline)
            while True:
                items = q.get()
                if items is None:
                    break
                if isinstance(items, BaseException):
                    raise items
                if other._cta_filter_ok is False:
                    self._cta_filter_ok = False  # results unfiltered: callers must check
                yield items
        finally:
            t.join()
            other.close()

    @property
    def kernel_filters_tuples(self) -> bool | None:
        """Whether the kernel accepted CTA_FILTER (None until a filtered dump ran)."""
        return self._cta_filter_ok

    def dump(
        self, family: int = 0, *, mark: int | None = None, mark_mask: int | None = None,
        status: int | None = None, status_mask: int | None = None, zone: int | None = None,
        orig: Tuple | None = None, reply: Tuple | None = None, filter: Filter | None = None,
        match: Callable[[Flow], bool] | None = None, table: str = "conntrack", zero: bool = False,
    ) -> Iterator[Flow]:
        """Iterate over the entries of a table (``conntrack``, ``dying``, ``unconfirmed``).

        Selection happens in the kernel where it can (family, mark/mask, status/mask and,
        with ``CTA_FILTER``, zone and tuple fields) and is re-checked in user space, so
        the result does not depend on the kernel's filter support. ``match`` is an extra
        user-space predicate.
        """
        if filter is None and any(v is not None for v in (mark, status, zone, orig, reply)):
            filter = Filter(family, mark, mark_mask, status, status_mask, zone, orig, reply)
        decode = self._decoder.decoder()
        check = filter.matches if filter is not None else None
        for buf, off, ln in self.dump_raw(family, filter=filter, table=table, zero=zero):
            flow = decode(buf, off, ln)
            if check is not None and not check(flow):
                continue
            if match is not None and not match(flow):
                continue
            yield flow

    def get(self, flow: Flow | Tuple, family: int | None = None, zone: int | None = None) -> Flow:
        """Fetch one entry by its original tuple (or a Flow carrying orig/reply tuples)."""
        if isinstance(flow, Tuple):
            flow = Flow(orig=flow, zone=zone)
        fam = family or flow.family or _family_of(flow)
        probe = Flow(family=fam, orig=flow.orig, reply=flow.reply if flow.orig is None else None,
                     zone=flow.zone if zone is None else zone)
        out: list[Flow] = []
        msg = self._msg(K.IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_ACK, fam, encode_flow(probe))
        self._request(msg, on_data=lambda b, o, n: out.append(self._decoder.decode(b, o, n)))
        if not out:
            raise wrap(NetlinkError(E.ENOENT, msg))
        return out[0]

    def create(self, flow: Flow, *, exclusive: bool = True) -> None:
        """Create an entry (``exclusive=False`` updates an existing one instead of EEXIST).

        Without a reply tuple, the reply is derived from the original one as
        ``conntrack -I`` derives it (:meth:`Tuple.reversed`): ``Flow(orig=..., timeout=...)``
        is enough. A status is sent with CONFIRMED added, as by the reference tool (the
        kernel refuses to change that bit)."""
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | (NLM_F_EXCL if exclusive else 0)
        self._request(self._flow_msg(K.IPCTNL_MSG_CT_NEW, flags, _confirmed(_with_reply(flow))))

    def update(self, flow: Flow) -> None:
        """Change an existing entry (selected by its tuple; timeout, mark, status, labels…).

        Status bits can only be added; CONFIRMED is always part of a status update
        (the kernel refuses to change it), as the reference tool sends it."""
        self._request(self._flow_msg(K.IPCTNL_MSG_CT_NEW, NLM_F_REQUEST | NLM_F_ACK,
                                     _confirmed(flow)))

    def delete(self, flow: Flow | Tuple) -> None:
        """Delete one entry, selected by its original (or reply) tuple and zone."""
        if isinstance(flow, Tuple):
            flow = Flow(orig=flow)
        self._request(self._flow_msg(K.IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK,
                                     _delete_key(flow)))

    def _flow_msg(self, mtype: int, flags: int, flow: Flow) -> bytes:
        fam = flow.family or _family_of(flow)
        return self._msg(mtype, flags, fam, encode_flow(flow))

    def delete_many(self, flows: Iterable[Flow], *, key_only: bool = True) -> list[ConntrackError | None]:
        """Delete many entries with batched requests; one result per flow (None = deleted)."""
        msgs = (build_nfnl(K.IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK,
                           f.family or _family_of(f), encode_flow(_delete_key(f) if key_only else f))
                for f in flows)
        return [None if r is None else wrap(r) for r in self.sock.batch(msgs)]

    def update_many(self, flows: Iterable[Flow]) -> list[ConntrackError | None]:
        """Update many entries with batched requests; one result per flow."""
        msgs = (build_nfnl(K.IPCTNL_MSG_CT_NEW, NLM_F_REQUEST | NLM_F_ACK,
                           f.family or _family_of(f), encode_flow(_confirmed(f))) for f in flows)
        return [None if r is None else wrap(r) for r in self.sock.batch(msgs)]

    def create_many(self, flows: Iterable[Flow], *, exclusive: bool = True) -> list[ConntrackError | None]:
        """Create many entries with batched requests; one result per flow (reply tuples
        derived as by :meth:`create`)."""
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | (NLM_F_EXCL if exclusive else 0)
        msgs = (build_nfnl(K.IPCTNL_MSG_CT_NEW, flags, f.family or _family_of(f),
                           encode_flow(_confirmed(_with_reply(f)))) for f in flows)
        return [None if r is None else wrap(r) for r in self.sock.batch(msgs)]

    def send_many(self, mtype: int, flags: int, requests: Sequence[tuple[int, bytes]], *,
                  max_bytes: int = 1 << 16, max_msgs: int = 256) -> dict[int, ConntrackError]:
        """Send pre-encoded requests (``(family, attributes)`` pairs, e.g. built by a
        generated encoder) of one type, packed into as few datagrams as fit; returns
        the failures by index (an empty dict: every request succeeded).

        Only the last message of each datagram asks for an ACK: the kernel reports the
        others' errors anyway and answers in order, so one receive per datagram usually
        ends it. The kernel handles a datagram inside ``send`` (the work is done when it
        returns); at most ``max_msgs`` requests share one, so that their error replies fit
        the receive buffer."""
        sock = self.sock
        pack = _REQ.pack
        next_seq = sock.next_seq
        ack_flags = flags | NLM_F_ACK
        plain = flags & ~NLM_F_ACK
        errors: dict[int, ConntrackError] = {}
        n = len(requests)
        i = 0
        while i < n:
            parts = []
            size = 0
            first = i
            base = -1
            limit = 2 * max_msgs
            while i < n and len(parts) < limit:
                family, attrs = requests[i]
                ln = 20 + len(attrs)
                if parts and size + ln > max_bytes:
                    break
                seq = next_seq()
                if base < 0:
                    base = seq
                parts.append(pack(ln, mtype, plain, seq, 0, family, 0, 0))
                pad = -ln & 3
                parts.append(attrs + bytes(pad) if pad else attrs)
                size += ln + pad
                i += 1
            last = i - 1
            # the last message asks for the ACK (its header is the second to last part)
            parts[-2] = pack(20 + len(requests[last][1]), mtype, ack_flags,
                             _REQ.unpack(parts[-2])[3], 0, requests[last][0], 0, 0)
            sock.send(b"".join(parts))
            last_seq = (base + (last - first)) & 0xFFFFFFFF
            done = False
            while not done:
                buf = sock.recv()
                if buf is None:  # ENOBUFS: replies were lost, waiting would hang
                    raise wrap(NetlinkError(E.ENOBUFS))
                for roff, mlen, rtype, rflags, rseq, _ in iter_messages(buf):
                    if rtype != NLMSG_ERROR:
                        continue
                    k = (rseq - base) & 0xFFFFFFFF
                    if k > last - first:
                        continue  # not ours (a stale reply)
                    err = parse_error(buf, roff, mlen, rflags)
                    if err.errno:
                        errors[first + k] = wrap(NetlinkError(err.errno, b"", err.message))
                    if rseq == last_seq:
                        done = True
        return errors

    def create_raw_many(self, requests: Sequence[tuple[int, bytes]], *,
                        exclusive: bool = True) -> dict[int, ConntrackError]:
        """Create entries from pre-encoded ``(family, attributes)`` requests (the status,
        reply tuple and timeout must be in the attributes: nothing is added); failures
        by index. See :meth:`send_many`."""
        flags = NLM_F_REQUEST | NLM_F_CREATE | (NLM_F_EXCL if exclusive else 0)
        return self.send_many(K.IPCTNL_MSG_CT_NEW, flags, requests)

    def delete_raw_many(self, requests: Sequence[tuple[int, bytes]]) -> dict[int, ConntrackError]:
        """Delete the entries selected by pre-encoded requests (their ``CTA_TUPLE_ORIG``
        and ``CTA_ZONE``: a create request of the entry will do, the kernel ignores the
        rest); failures by index."""
        return self.send_many(K.IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST, requests)

    def flush(self, family: int = 0, *, mark: int | None = None, mark_mask: int | None = None) -> None:
        """Delete all entries (of a family, or matching mark/mask).

        The kernel honours the family only in an nfnetlink version 1 header (the
        reference tool sends version 0 and so flushes every family)."""
        attrs = Filter(family, mark, mark_mask).attributes() if mark is not None else b""
        self._request(build_nfnl(K.IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, family, attrs,
                                 self.sock.next_seq(), version=1 if family else 0))

    def count(self) -> int:
        """Number of entries (``CTA_STATS_GLOBAL_ENTRIES``)."""
        return self.global_stats()["entries"]

    def global_stats(self) -> dict[str, int]:
        """``{"entries": N, "max_entries": M}`` from ``IPCTNL_MSG_CT_GET_STATS``."""
        out: dict[str, int] = {}

        def on_data(buf: bytes, off: int, ln: int) -> None:
            for t, v in _u32_attrs(buf, off, ln):
                out[{1: "entries", 2: "max_entries"}.get(t, str(t))] = v

        self._request(self._msg(K.IPCTNL_MSG_CT_GET_STATS, NLM_F_REQUEST, 0), on_data)
        return out

    def stats(self) -> list[CpuStats]:
        """Per-CPU statistics (``IPCTNL_MSG_CT_GET_STATS_CPU``)."""
        return self._cpu_stats(K.IPCTNL_MSG_CT_GET_STATS_CPU, K.STATS_CPU_NAMES)

    def _cpu_stats(self, mtype: int, names: dict[int, str]) -> list[CpuStats]:
        out = []
        try:
            for buf, off, ln in self.sock.dump(self._msg(mtype, NLM_F_REQUEST | NLM_F_DUMP, 0)):
                cpu = NFGENMSG.unpack_from(buf, off + 16)[2]
                values = {names.get(t, f"unknown{t}"): v for t, v in _u32_attrs(buf, off, ln)}
                out.append(CpuStats(cpu=cpu, values=values))
        except NetlinkError as e:
            _raise(e)
        return out

    # --- events -----------------------------------------------------------------------
    def listen(
        self, groups: int = K.NL_GROUPS_CONNTRACK, *, family: int | None = None,
        types: Iterable[EventType] | None = None, rcvbuf: int | None = EVENT_RCVBUF,
        resync: bool = False, on_overrun: Callable[[int], None] | None = None,
        sock: NetlinkSocket | None = None, nonblocking: bool = False,
    ) -> Listener:
        """A :class:`~ctnetlink.listen.Listener` on the multicast ``groups``: bound now,
        with ``fileno()`` and non-blocking ``read_events()`` for a ``selectors``/asyncio
        loop, or iterated (blocking). ``resync=True`` repairs overruns with a dump."""
        from .listen import Listener

        return Listener(groups, family=family, types=types, rcvbuf=rcvbuf, resync=resync,
                        on_overrun=on_overrun, sock=sock, nonblocking=nonblocking)

    def events(
        self, groups: int = K.NL_GROUPS_CONNTRACK, *, rcvbuf: int | None = EVENT_RCVBUF,
        family: int | None = None, on_overrun: Callable[[int], None] | None = None,
        sock: NetlinkSocket | None = None, resync: bool = False,
    ) -> Iterator[Event]:
        """Iterate over conntrack/expectation events of the chosen multicast groups.

        A separate socket is bound to ``groups`` with a large receive buffer as soon as
        this is called (events from then on are kept for the iterator). When the
        kernel drops events (``ENOBUFS``) ``on_overrun(lost)`` is called with the number
        of lost messages (from the socket's drop counter) and the next event carries it
        in ``Event.lost``; with ``resync=True`` a dump then brings the consumer's view
        back in line with the table (see :mod:`ctnetlink.listen`). The iterator ends
        when the socket is closed; closing the iterator closes a socket it opened.
        """
        return self.listen(groups, rcvbuf=rcvbuf, family=family, on_overrun=on_overrun,
                           sock=sock, resync=resync).events(close=True)

    # --- expectations -------------------------------------------------------------------
    def dump_expect(self, family: int = AF_INET) -> Iterator[Expect]:
        """Iterate over expectations of a family (0 = all)."""
        decode = self._exp_decoder.decode
        msg = self._msg(K.IPCTNL_MSG_EXP_GET, NLM_F_REQUEST | NLM_F_DUMP, family)
        try:
            for buf, off, ln in self.sock.dump(msg):
                yield decode(buf, off, ln)
        except NetlinkError as e:
            _raise(e)

    def get_expect(self, tuple: Tuple, family: int | None = None, *, as_master: bool = True) -> Expect:
        """Fetch an expectation by its expected tuple (sent as ``CTA_EXPECT_MASTER`` like
        the reference tool, or as ``CTA_EXPECT_TUPLE`` with ``as_master=False``)."""
        fam = family or tuple.family or AF_INET
        attrs = nla_nest(1 if as_master else 2, encode_tuple(tuple, fam))
        out: list[Expect] = []
        msg = self._msg(K.IPCTNL_MSG_EXP_GET, NLM_F_REQUEST | NLM_F_ACK, fam, attrs)
        self._request(msg, on_data=lambda b, o, n: out.append(self._exp_decoder.decode(b, o, n)))
        if not out:
            raise wrap(NetlinkError(E.ENOENT, msg))
        return out[0]

    def create_expect(self, exp: Expect) -> None:
        fam = exp.family or (exp.tuple.family if exp.tuple else None) or AF_INET
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        self._request(self._msg(K.IPCTNL_MSG_EXP_NEW, flags, fam, encode_expect(exp)))

    def delete_expect(self, exp: Expect | Tuple) -> None:
        """Delete an expectation selected by its expected tuple (and id, if given), or by
        id alone (looked up first), or every expectation of ``helper`` when only the
        helper is given. Anything else is a ValueError: the kernel would flush all."""
        if isinstance(exp, Tuple):
            exp = Expect(tuple=exp)
        if exp.tuple is None and exp.id is not None:
            found = next((e for e in self.dump_expect(0) if e.id == exp.id), None)
            if found is None:
                raise wrap(NetlinkError(E.ENOENT))
            exp = found
        if exp.tuple is not None:
            fam = exp.family or exp.tuple.family or AF_INET
            key = Expect(family=fam, tuple=exp.tuple, id=exp.id)
        elif exp.helper is not None:
            fam = exp.family or 0
            key = Expect(family=fam, helper=exp.helper)
        else:
            raise ValueError("delete_expect needs a tuple, an id or a helper name")
        self._request(self._msg(K.IPCTNL_MSG_EXP_DELETE, NLM_F_REQUEST | NLM_F_ACK, fam,
                                encode_expect(key)))

    def flush_expect(self, family: int = AF_INET) -> None:
        """Delete the expectations of a family (0 = all)."""
        self._request(build_nfnl(K.IPCTNL_MSG_EXP_DELETE, NLM_F_REQUEST | NLM_F_ACK, family, b"",
                                 self.sock.next_seq(), version=1 if family else 0))

    def count_expect(self, family: int = AF_INET) -> int:
        return sum(1 for _ in self.dump_expect(family))

    def expect_stats(self) -> list[CpuStats]:
        return self._cpu_stats(K.IPCTNL_MSG_EXP_GET_STATS_CPU, K.STATS_EXP_NAMES)


def _family_of(flow: Flow) -> int:
    for t in (flow.orig, flow.reply, flow.master):
        if t is not None and t.family is not None:
            return t.family
    return AF_INET


def _with_reply(flow: Flow) -> Flow:
    """``flow`` with the reply tuple derived from the original one when it has none."""
    if flow.reply is not None or flow.orig is None:
        return flow
    return flow.copy(reply=flow.orig.reversed())


def _confirmed(flow: Flow) -> Flow:
    if flow.status_bits is None or flow.status_bits & K.IPS_CONFIRMED:
        return flow
    return flow.copy(status=flow.status_bits | K.IPS_CONFIRMED)


def _delete_key(flow: Flow) -> Flow:
    """The attributes that identify an entry for deletion: a tuple (+ zone)."""
    if flow.orig is not None:
        return Flow(family=flow.family, orig=flow.orig, zone=flow.zone)
    return Flow(family=flow.family, reply=flow.reply, zone=flow.zone)


def _u32_attrs(buf: bytes, off: int, ln: int) -> Iterator[tuple[int, int]]:
    p = off + 20
    end = off + ln
    while p + 4 <= end:
        alen, atype = struct.unpack_from("=HH", buf, p)
        if alen < 4 or p + alen > end:
            break
        if alen == 8:
            yield atype & 0x3FFF, _U32.unpack_from(buf, p + 4)[0]
        p += (alen + 3) & ~3
