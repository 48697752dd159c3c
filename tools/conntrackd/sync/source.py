"""The sync machines on the daemon's caches (:mod:`..cache`): what to send, where to apply.

:class:`CacheSource` is the :class:`~.common.Source` of a node's internal caches: an
object reference is ``(cache, key)``; a message is rendered from the entry's key and
stored ctnetlink attributes straight to the sync message (:func:`.entries.render`,
code compiled per entry layout), typed NEW / UPD / DEL by the entry's status; queues
hold a cache reference on the entry (``hold`` / ``put``) so that a dead entry stays
until its DEL is out (FTFW: until it is acknowledged). :func:`apply` applies a
received :class:`~.common.CacheOp` to an external cache as conntrackd.md §6.6 says (NEW
replaces, UPDATE updates or adds, DELETE deletes), converting the sync payload straight to the cache's key and stored
attributes (:func:`.entries.entry_parts`, compiled per payload layout; the general
path :func:`..wire.ctsync.payload_flow_attrs` + :func:`..entry.split` for the rest).
"""
from __future__ import annotations

import struct
from itertools import groupby
from operator import itemgetter

from ..cache import META, NEW, STATUS_MASK, parse_expect
from ..entry import _attrs_by_shape, split
from ..wire.codec import SyncMessage, encode_message
from ..wire.ctsync import payload_flow_attrs
from .common import CacheOp
from .entries import entry_function, entry_parts
from .entries import layout as entry_layout
from .entries import render as render_entry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from ..cache import Cache, ExpectCache


class CacheSource:
    """The internal caches (conntrack, and expectations with ExpectationSync) as the
    source of a sync machine; ``window_tracking`` / ``commit_timeout`` are the sender
    options of the C daemon (``TCPWindowTracking``, ``CommitTimeout`` configured)."""

    def __init__(self, ct: Cache, exp: ExpectCache | None = None, *,
                 window_tracking: bool = False, commit_timeout: bool = False) -> None:
        self.ct = ct
        self.exp = exp
        self.window_tracking = window_tracking
        self.commit_timeout = commit_timeout

    def ref(self, cache: Cache, key: bytes) -> tuple:
        """The reference of an entry (what :meth:`..sync.common.Machine.enqueue` takes)."""
        return (cache, key)

    def render(self, ref: tuple, seq: int, flags: int) -> bytes | None:
        cache, key = ref
        value = cache.get(key)
        if value is None:
            return None
        status = value[0] & STATUS_MASK
        if cache.kind == "ct":
            return render_entry(key, value, status, seq, flags,
                                window_tracking=self.window_tracking,
                                commit_timeout=self.commit_timeout)
        msg = cache.message(key, value)
        from ctnetlink.decode import decode_expect

        exp = decode_expect(msg, 0, len(msg))
        return encode_message(SyncMessage(3 + status, flags, seq, exp),
                              commit_timeout=self.commit_timeout)

    def render_many(self, refs: list[tuple], seq: int, flags: int) -> list[bytes | None]:
        """:meth:`render` of each of ``refs`` in one loop, the first message numbered
        ``seq`` and each next one the following number (a gone or broken object, None,
        takes none)."""
        out: list[bytes | None] = []
        append = out.append
        wt, ct = self.window_tracking, self.commit_timeout
        from_bytes = int.from_bytes
        cache = get = None
        is_ct = False
        # the layout of the previous entry (runs of one layout are common), and the
        # senders of the layouts seen by (template id, value length)
        known: dict[int, list[tuple[int, int, Callable]]] = {}
        k0 = vlen = -1
        vmask = vexp = 0
        send = None
        for ref in refs:
            try:
                c, key = ref
                if c is not cache:
                    cache, get, is_ct = c, c.lookup, c.kind == "ct"
                value = get(key)
                if value is None:
                    append(None)
                    continue
                if not is_ct:
                    msg = self.render(ref, seq, flags)
                else:
                    if not (key[0] == k0 and len(value) == vlen
                            and from_bytes(value, "little") & vmask == vexp):
                        k0, vlen = key[0], len(value)
                        b = from_bytes(value, "little")
                        for vmask, vexp, send in known.get(k0 << 16 | vlen, ()):
                            if b & vmask == vexp:
                                break
                        else:
                            lay = entry_layout(key, value)
                            if lay is None:
                                k0, send = -1, None
                            else:
                                vmask, vexp = lay.vmask, lay.vexpected
                                send = lay.sender(wt, ct, key, value)
                                known.setdefault(k0 << 16 | vlen, []).append(
                                    (vmask, vexp, send))
                    msg = send(key, value, flags, seq) if send is not None else None
                    if msg is None:
                        msg = render_entry(key, value, value[0] & STATUS_MASK, seq, flags,
                                           window_tracking=wt, commit_timeout=ct)
            except Exception:  # a broken object is skipped (Machine._render)
                msg = None
            append(msg)
            if msg is not None:
                seq = (seq + 1) & 0xFFFFFFFF
        return out

    def refs(self) -> list[tuple]:
        out: list[tuple] = []
        for cache in (self.ct, self.exp):
            if cache is not None:
                out += [(cache, key) for key in cache.live_keys()]
        return out

    def hold(self, ref: tuple) -> None:
        ref[0].hold(ref[1])

    def release(self, ref: tuple) -> None:
        ref[0].put(ref[1])

    def hold_many(self, refs: list[tuple]) -> None:
        """:meth:`hold` of each of ``refs`` (distinct)."""
        for cache, group in groupby(refs, _CACHE):
            cache.hold_many(list(map(_KEY, group)))

    def release_many(self, refs: list[tuple]) -> None:
        """:meth:`release` of each of ``refs``."""
        for cache, group in groupby(refs, _CACHE):
            cache.put_many(list(map(_KEY, group)))


_CACHE = itemgetter(0)
_KEY = itemgetter(1)
_NLMSG = struct.Struct("=IHHIIBBH")


def apply(op: CacheOp, ct: Cache, exp: ExpectCache | None = None) -> bytes | None:
    """Apply a received state message to the external caches (conntrackd.md §6.6): NEW
    deletes an existing entry and adds the new one, UPDATE updates (or adds), DELETE
    deletes. Expectation messages need ``exp`` (ignored without). Returns the entry's
    cache key (None when ignored)."""
    if op.expect:
        if exp is None:
            return None
        from ctnetlink.encode import encode_expect

        e = op.obj
        body = encode_expect(e)
        msg = _NLMSG.pack(20 + len(body), 0x200, 0, 0, 0, e.family or 2, 0, 0) + body
        p = parse_expect(msg, 0, len(msg))
        cache = exp
    else:
        made = entry_parts(op.shape, op.values, ct.drop)
        if made is not None:  # the compiled path (sync/entries.py)
            key, flags, attrs, layout = made
            if op.op == "delete":
                ct.delete(key)
            elif op.op == "new":
                if key in ct:
                    ct.delete(key)
                ct.add_raw(key, flags, attrs)
            else:
                ct.update_force_raw(key, flags, attrs, layout)
            return key
        family, attrs = payload_flow_attrs(op.payload, shape=op.shape, values=op.values)
        p = split(family, _attrs_by_shape(attrs, 0, len(attrs)))
        cache = ct
    if op.op == "delete":
        cache.delete(p.key)
    elif op.op == "new":
        if p.key in cache:
            cache.delete(p.key)
        cache.add(p)
    else:
        cache.update_force(p)
    return p.key


_OPS = ("new", "update", "delete")
_NONE = object()


def apply_batch(items: list[tuple], ct: Cache) -> None:
    """:func:`apply` of every conntrack state message of a
    :class:`~.common.StateBatch` (``items``: ``(type, payload, shape, values)``), in one
    loop: the common cases (a compiled payload layout; an UPDATE or a NEW of an entry
    the cache does not have) are done inline, the rest by :func:`apply` and the cache's
    methods, with the same results and counters."""
    d = ct._d
    drop = ct.drop
    limit = ct.limit
    stamp = int(ct.clock())
    last_flags = head = None
    memos = _MEMOS.get(drop)
    if memos is None:
        memos = _MEMOS[drop] = {}
    added = 0
    last_shape = last_proto = last_fn = None  # the previous message's (most often the same)
    pi = None
    for mtype, body, shape, values in items:
        if shape is last_shape:
            if pi is None:
                made = None
            elif values[pi] == last_proto:
                made = last_fn(values, None) if last_fn is not None else None
            else:
                last_shape = None
        if shape is not last_shape:
            memo = memos.get(shape)
            if memo is None:
                ps = shape.slots.get(2)
                memo = memos[shape] = (ps.index if ps is not None else None, {})
            pi, byproto = memo
            made = None
            last_shape = shape
            last_fn = None
            if pi is not None:
                last_proto = proto = values[pi]
                fn = byproto.get(proto, _NONE)
                if fn is _NONE:
                    fn = entry_function(shape, proto, drop)
                    if fn is not None:
                        made = fn(values, None)  # compiles the layout on first use
                    fn = byproto[proto] = entry_function(shape, proto, drop)
                elif fn is not None:
                    made = fn(values, None)
                last_fn = fn
        if made is None:
            apply(CacheOp(_OPS[mtype], False, False, body, shape, values), ct)
        else:
            key, flags, attrs, layout = made
            if mtype == 2:
                ct.delete(key)
            elif key not in d and len(d) < limit:  # NEW or UPDATE of a new entry: add
                if flags != last_flags:
                    last_flags = flags
                    head = META.pack(NEW | flags, stamp, stamp)
                d[key] = head + attrs
                added += 1
            elif mtype == 1:
                ct.update_force_raw(key, flags, attrs, layout)
            else:
                if key in d:
                    ct.delete(key)
                ct.add_raw(key, flags, attrs)
    if added:
        ct.stats.add_ok += added
        ct.active += added


_MEMOS: dict[tuple, dict] = {}
"""Per dropped-types tuple: payload shape -> (protocol slot, entry function per
protocol)."""
