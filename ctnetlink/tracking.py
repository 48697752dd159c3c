"""Identity and state tracking of flows: :class:`FlowKey`, :class:`ExpectKey`, merge, diff.

A conntrack entry is found by the kernel through its original tuple in the zone of the
original direction; :func:`flow_key` makes that the hashable :class:`FlowKey` (what
:attr:`Flow.key <ctnetlink.model.Flow.key>` returns), the same for every copy of a flow
and for every NEW/UPDATE/DESTROY event of the connection: the key of a cache.
:func:`merge` applies an event, which carries only some attributes, to a known flow;
:func:`diff` lists the fields that differ. Loaded on first use (the command-line tools
do not need it).
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from .model import Expect, Flow, Tuple, _getters, _Record

_tnew = tuple.__new__


class FlowKey(_Record):
    """The identity of a conntrack entry: what the kernel looks it up by in the original
    direction. ``orig`` is the original tuple without its ``zone``; ``zone`` is the zone
    id of the original direction (``CTA_ZONE``, else the original tuple's
    ``CTA_TUPLE_ZONE``, else 0). See :func:`flow_key`."""

    __slots__ = ()
    _fields = ("family", "orig", "zone")
    family, orig, zone = _getters(_fields)
    __match_args__ = _fields
    family: int
    orig: Tuple
    zone: int

    def __new__(cls, *, family: int, orig: Tuple, zone: int = 0) -> FlowKey:
        if type(orig) is not Tuple:
            raise TypeError(f"FlowKey orig must be a Tuple, not {type(orig).__name__}")
        if orig[8] is not None:
            orig = _tnew(Tuple, orig[:8] + (None,))
        return _tnew(cls, (family, orig, zone))


class ExpectKey(_Record):
    """The identity of an expectation: family, expected tuple (without zone) and zone.
    See :func:`expect_key`."""

    __slots__ = ()
    _fields = ("family", "tuple", "zone")
    family, tuple, zone = _getters(_fields)
    __match_args__ = _fields
    family: int
    tuple: Tuple
    zone: int

    def __new__(cls, *, family: int, tuple: Tuple, zone: int = 0) -> ExpectKey:
        if type(tuple) is not Tuple:
            raise TypeError(f"ExpectKey tuple must be a Tuple, not {type(tuple).__name__}")
        if tuple[8] is not None:
            tuple = _tnew(Tuple, tuple[:8] + (None,))
        return _tnew(cls, (family, tuple, zone))


def flow_key(flow: Flow) -> FlowKey:
    """``flow.key``: family (of the message, else of the addresses), the original tuple
    without zone, and the zone of the original direction (0 without one). ValueError
    when the flow has no original tuple."""
    o = flow.orig
    if o is None:
        raise ValueError("a flow without an original tuple has no key")
    fam = flow.family
    if fam is None:
        fam = o.family or 0
    zone = flow.zone
    if zone is None:
        zone = o[8] if o[8] is not None else 0
    if o[8] is not None:
        o = _tnew(Tuple, o[:8] + (None,))
    return _tnew(FlowKey, (fam, o, zone))


def expect_key(exp: Expect) -> ExpectKey:
    """``exp.key``: family, expected tuple without zone, zone (0 without one).
    ValueError without an expected tuple."""
    t = exp.tuple
    if t is None:
        raise ValueError("an expectation without a tuple has no key")
    fam = exp.family
    if fam is None:
        fam = t.family or 0
    zone = exp.zone
    if zone is None:
        zone = t[8] if t[8] is not None else 0
    if t[8] is not None:
        t = _tnew(Tuple, t[:8] + (None,))
    return _tnew(ExpectKey, (fam, t, zone))


MERGED_RECORDS = frozenset(("tcp", "sctp", "dccp", "counters_orig", "counters_reply",
                            "timestamp", "seq_adj_orig", "seq_adj_reply", "synproxy"))
"""Records an update changes field by field (its unset fields keep the known values)."""


def merge(flow: Flow, update: Flow) -> Flow:
    """``flow.merge(update)``: a new Flow, ``flow`` with the fields of ``update`` applied.

    ``update`` is typically the flow of an event, which carries only some attributes
    (measured on the kernel): NEW and UPDATE events carry the tuples, id, status,
    timeout, the protocol info, helper, the mark when it is not 0 or changed, labels,
    sequence adjustment and synproxy when they changed, and the event timestamp; DESTROY
    events the tuples, id, status, timeout, the TCP state alone, and counters and
    start/stop timestamps when accounting and timestamps are on. None carries ``use``.
    Every field set in ``update`` replaces the flow's; in the records of
    :data:`MERGED_RECORDS` only the set fields do. ValueError when the keys differ."""
    if update.orig is not None and flow.orig is not None and flow_key(update) != flow_key(flow):
        raise ValueError("merge() of an update of another flow")
    new = flow.copy()
    for slot in flow.__slots__:
        v = getattr(update, slot)
        if v is None:
            continue
        old = getattr(flow, slot)
        if old is not None and slot in MERGED_RECORDS:
            v = _tnew(type(v), tuple(b if b is not None else a for a, b in zip(old, v)))
        setattr(new, slot, v)
    return new


def diff(flow: Flow, other: Flow) -> dict[str, tuple[Any, Any]]:
    """``flow.diff(other)``: the fields that differ, ``{name: (value in flow, value in
    other)}`` in field order.

    Names of fields inside records are dotted (``"tcp.state"``, ``"orig.sport"``,
    ``"counters_orig.packets"``); a missing record counts as one whose fields are all
    None. Values read as the fields do (enums for status and states)."""
    out: dict[str, tuple[Any, Any]] = {}
    for name in flow._fields:
        a, b = getattr(flow, name), getattr(other, name)
        if a == b:
            continue
        rec = a if isinstance(a, _Record) else b if isinstance(b, _Record) else None
        if rec is None or (a is not None and type(a) is not type(rec)) or \
                (b is not None and type(b) is not type(rec)):
            out[name] = (a, b)
            continue
        for f in rec._fields:
            x = getattr(a, f) if a is not None else None
            y = getattr(b, f) if b is not None else None
            if x != y:
                out[f"{name}.{f}"] = (x, y)
    return out
