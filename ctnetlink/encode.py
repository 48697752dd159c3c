"""Encoding :class:`Flow` / :class:`Expect` objects into ctnetlink request attributes.

The encoders are generated from the schema, not written by hand: ``python -m
nfnl.compile`` writes them to ``ctnetlink/_encoders.py`` (read it to see exactly what a
request carries) from the attribute tables, the schema's ``REQUEST_ORDER``
(libnetfilter_conntrack's attribute order, which the reference ``conntrack`` sends, so
that our requests equal its requests byte for byte) and the model map of
:mod:`ctnetlink.fields`, the tables the decoder uses too; see
:mod:`ctnetlink.encodegen`. This module imports them on first use and adds what the
command path needs without them: attribute numbers by name and the re-sending of dumped
entries by copying bytes (:func:`resend_plan`). Only fields that are set are sent.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

from nfnl.message import build_nfnl

from . import _compiled as C
from .model import Expect, Flow, Tuple


def attr_type(set_name: str, name: str) -> int:
    """The number of attribute ``name`` in ``set_name`` (from the compiled schema)."""
    for atype, row in C.ATTRS[set_name].items():
        if row[0] == name:
            return atype
    raise KeyError(f"{set_name} has no attribute {name}")


_TOP = {row[0]: atype for atype, row in C.ATTRS["ctattr_type"].items()}
CTA_FILTER = _TOP["CTA_FILTER"]
CTA_MARK = _TOP["CTA_MARK"]
CTA_MARK_MASK = _TOP["CTA_MARK_MASK"]
CTA_STATUS = _TOP["CTA_STATUS"]
CTA_STATUS_MASK = _TOP["CTA_STATUS_MASK"]
CTA_ZONE = _TOP["CTA_ZONE"]
CTA_TUPLE_ORIG = _TOP["CTA_TUPLE_ORIG"]
CTA_TUPLE_REPLY = _TOP["CTA_TUPLE_REPLY"]


_generated = None


def _encoders():
    """The generated request encoders (``ctnetlink/_encoders.py``), imported on first use."""
    global _generated
    if _generated is None:
        from . import _encoders

        _generated = _encoders
    return _generated


def encode_tuple(t: Tuple, family: int | None = None) -> bytes:
    """The content of a CTA_TUPLE_* nest (IP nest, PROTO nest, zone); the address
    attributes are IPv6 ones for ``family`` AF_INET6 (default: the tuple's family)."""
    return (_generated or _encoders()).encode_tuple(t, family, None)


def encode_flow(flow: Flow, *, nat_port_protos: frozenset[int] | None = None) -> bytes:
    """The attributes of a conntrack request carrying ``flow`` (libnetfilter_conntrack order).

    ``nat_port_protos`` restricts the NAT port attributes to those layer-4 protocols
    (the reference tool leaves the port nest empty for others: pass
    :data:`~ctnetlink.constants.NAT_PORT_PROTOS` to do the same).
    """
    return (_generated or _encoders()).encode_flow(flow, flow.family, nat_port_protos)


def encode_expect(exp: Expect) -> bytes:
    """The attributes of an expectation request (libnetfilter_conntrack order)."""
    return (_generated or _encoders()).encode_expect(exp, exp.family, None)


def flow_message(mtype: int, flags: int, flow: Flow, seq: int = 0, family: int | None = None,
                 **kw) -> bytes:
    """A complete ctnetlink message carrying ``flow``."""
    fam = family if family is not None else (flow.family or 0)
    return build_nfnl(mtype, flags, fam, encode_flow(flow, **kw), seq)


# --- requests re-sent from dumped messages, without decoding ---------------------------

_NESTED: dict[str, str] = {}


def _order_of(nest: str) -> tuple[str, ...] | None:
    """The attribute order :func:`encode_flow` writes inside nest ``nest`` ("" = top)."""
    if not _NESTED:
        _NESTED.update((row[0], row[3]) for rows in C.ATTRS.values() for row in rows.values()
                       if row[1] == "nested")
    set_name = "ctattr_type" if nest == "" else _NESTED.get(nest)
    return C.REQUEST_ORDER.get(set_name) if set_name is not None else None


def _plan_copy(nodes: list, key: str, out: list[tuple[int, int]], top: bool) -> bool:
    order = _order_of(key)
    if order is None:
        return False
    rank = {name: i for i, name in enumerate(order)}
    kept = [n for n in nodes if n[0] in rank]
    if not top and len(kept) != len(nodes):
        return False  # an inner attribute encode_flow would not send: lengths change
    for node in sorted(kept, key=lambda n: rank[n[0]]):
        name, start, end, children = node
        if children is None or _in_order(children, name):
            out.append((start, end))
            continue
        out.append((start, start + 4))  # the nest header: its length does not change
        if not _plan_copy(children, name, out, False):
            return False
    return True


def _in_order(children: list, key: str) -> bool:
    order = _order_of(key)
    if order is None:
        return False
    rank = {name: i for i, name in enumerate(order)}
    ranks = [rank.get(c[0]) for c in children]
    if None in ranks or ranks != sorted(ranks):
        return False
    return all(c[3] is None or _in_order(c[3], c[0]) for c in children)


def resend_plan(shape) -> Callable[[bytes, int], bytes] | None:
    """For messages of a decoder ``Shape`` (conntrack entries): a function
    ``(datagram, message offset) -> attributes`` giving exactly :func:`encode_flow` of
    the decoded entry (as ``-D`` re-sends it), by copying byte ranges instead of
    decoding and encoding. None when the shape holds something that cannot be copied
    (the caller then encodes the decoded Flow)."""
    cached = shape.cache.get("resend")
    if cached is not None or "resend" in shape.cache:
        return cached
    spans: list[tuple[int, int]] = []
    fn = None
    names = {n[0] for n in shape.tree}
    if "CTA_STATUS" in names and _plan_copy(shape.tree, "", spans, True):
        merged: list[list[int]] = []
        for a, b in spans:
            if merged and merged[-1][1] == a:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        parts = ", ".join(f"b[o + {20 + a}:o + {20 + b}]" for a, b in merged)
        src = f"def body(b, o):\n    return b''.join(({parts},))\n"
        ns: dict = {}
        exec(src, ns)  # noqa: S102 - generated from the shape's byte offsets
        fn = ns["body"]
    shape.cache["resend"] = fn
    return fn
