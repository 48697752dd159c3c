"""Encoding :class:`Flow` / :class:`Expect` objects into ctnetlink request attributes.

Nothing about the wire is written here a second time: attribute numbers, payload
layouts and nesting come from the compiled schema (:mod:`ctnetlink._compiled`, derived
from the construct declarations of :mod:`ctnetlink.schema`, the decoder's source too),
the attribute order and what a request carries from the schema's ``REQUEST_ORDER``
(libnetfilter_conntrack's order, which the reference ``conntrack`` sends, so that our
requests equal its requests byte for byte), and where each value lives in the model
from :mod:`ctnetlink.fields`. This module only adds the rules that pick one of
several attributes carrying the same field (IPv4 or IPv6 address, ports or ICMP or
ICMPv6 fields, per :data:`~ctnetlink.constants.PROTOCOLS`) and the label encoding.

An :class:`Encoder` turns those tables into a plan once (on first use) and walks it
for every object. Only fields that are set are sent.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

from nfnl.codec import nla, nla_nest, nla_string, nla_u8, nla_u16, nla_u32, nla_u64
from nfnl.message import build_nfnl

from . import _compiled as C
from .constants import IPPROTO_ICMP, IPPROTO_ICMPV6, PORT_ATTR_PROTOS, PROTOINFO
from .fields import field_of
from .model import AF_INET6, Expect, Flow, Tuple

_NESTED = {name: child for rows in C.ATTRS.values() for name, kind, _f, child in rows.values()
           if kind == "nested"}
"""Nest attribute name -> the attribute set inside it."""
_BY_NAME = {set_name: {row[0]: (atype,) + row[1:] for atype, row in rows.items()}
            for set_name, rows in C.ATTRS.items()}


def attr_type(set_name: str, name: str) -> int:
    """The number of attribute ``name`` in ``set_name`` (from the compiled schema)."""
    return _BY_NAME[set_name][name][0]


CTA_FILTER = attr_type("ctattr_type", "CTA_FILTER")
CTA_MARK = attr_type("ctattr_type", "CTA_MARK")
CTA_MARK_MASK = attr_type("ctattr_type", "CTA_MARK_MASK")
CTA_STATUS = attr_type("ctattr_type", "CTA_STATUS")
CTA_STATUS_MASK = attr_type("ctattr_type", "CTA_STATUS_MASK")
CTA_ZONE = attr_type("ctattr_type", "CTA_ZONE")
CTA_TUPLE_ORIG = attr_type("ctattr_type", "CTA_TUPLE_ORIG")
CTA_TUPLE_REPLY = attr_type("ctattr_type", "CTA_TUPLE_REPLY")


def labels_bytes(labels: int, size: int | None = None) -> bytes:
    """A label bitmap as the kernel wants it: 32-bit host-order words."""
    if size is None:
        size = ((max(labels.bit_length() - 1, 0) // 32) + 1) * 4
    return labels.to_bytes(size, "little")


# --- which of several attributes for one field a request uses ---------------------------

_CHOICE = {
    "ipv4": "not {v6}",
    "ipv6": "{v6}",
    "CTA_PROTO_SRC_PORT": "{proto} in _PORTS",
    "CTA_PROTO_DST_PORT": "{proto} in _PORTS",
    "icmp": f"{{proto}} == {IPPROTO_ICMP}",
    "icmpv6": f"{{proto}} == {IPPROTO_ICMPV6}",
    "ctattr_protonat": "(natp is None or l4 in natp)",
}
"""Conditions (Python expressions) of attributes that share a model field with others,
by leaf kind (IPv4/IPv6 addresses, chosen by the family of the record), attribute name
(ports: by the tuple's protocol), ICMP family, or attribute set (NAT ports: the
reference sends them only for some protocols, with an empty nest for others)."""


def _choice(set_name: str, name: str, kind: str) -> str | None:
    if name.startswith("CTA_PROTO_ICMPV6_"):
        return _CHOICE["icmpv6"]
    if name.startswith("CTA_PROTO_ICMP_"):
        return _CHOICE["icmp"]
    return _CHOICE.get(kind) or _CHOICE.get(name) or _CHOICE.get(set_name)


_PUT = {"u8": "nla_u8", "u16": "nla_u16", "u32": "nla_u32", "u64": "nla_u64",
        "string": "nla_string"}


# --- the plan: the request order resolved against the schema and the model --------------

class _Leaf:
    """One attribute: its number, where the value is (``access``: a Flow/Expect
    storage slot name, a record field index, or ``labels``), when it is sent, how it
    is built (leaf kind and struct format)."""

    __slots__ = ("atype", "access", "when", "kind", "fmt")

    def __init__(self, atype: int, access: str | int, when: str | None, kind: str,
                 fmt: str | None) -> None:
        self.atype = atype
        self.access = access
        self.when = when
        self.kind = kind
        self.fmt = fmt


class _Nest:
    """A nest: of one record (``slot`` set: sent when the record is) or a group of
    attributes of the enclosing object (sent when one of its attributes is; with
    ``keep_empty`` also empty when a value is set but its condition fails). ``one_of``:
    CTA_PROTOINFO, holding the protocol info of the flow's protocol only, when not empty."""

    __slots__ = ("atype", "slot", "record", "children", "one_of", "keep_empty")

    def __init__(self, atype: int, slot: str | None, record: type | None,
                 children: list, one_of: bool, keep_empty: bool) -> None:
        self.atype = atype
        self.slot = slot
        self.record = record
        self.children = children
        self.one_of = one_of
        self.keep_empty = keep_empty


def _plan(order: Mapping[str, tuple[str, ...]], set_name: str, path: tuple[str, ...],
          root: type, record_slot: str | None) -> list:
    expect = root is Expect
    nodes: list = []
    for name in order[set_name]:
        atype, kind, fmt, child = _BY_NAME[set_name][name]
        p = path + (name,)
        if kind == "nested":
            slots = _slots_below(order, child, p, expect)
            own = None
            if len(slots) == 1:
                slot, cls = next(iter(slots.items()))
                if cls is not None and slot != record_slot:
                    own = (slot, cls)
            children = _plan(order, child, p, root, own[0] if own else record_slot)
            nodes.append(_Nest(atype, own[0] if own else None, own[1] if own else None,
                               children, one_of=child == "ctattr_protoinfo",
                               keep_empty=_choice(child, "", "") is not None))
            continue
        where = field_of(p, expect)
        if where is None:
            raise ValueError(f"{'/'.join(p)} is in the request order but not in the model")
        slot, cls, field = where
        if name in ("CTA_LABELS", "CTA_LABELS_MASK"):
            nodes.append(_Leaf(atype, name, None, "labels", None))
            continue
        if cls is None:
            access: str | int = root.__slots__[root._fields.index(slot)]
        else:
            access = cls._fields.index(field)
        nodes.append(_Leaf(atype, access, _choice(set_name, name, kind), kind, fmt))
    return nodes


def _slots_below(order: Mapping[str, tuple[str, ...]], set_name: str, path: tuple[str, ...],
                 expect: bool) -> dict[str, type | None]:
    """Model slot -> record class of the leaves under a nest (as sent)."""
    out: dict[str, type | None] = {}
    for name in order.get(set_name, ()):
        _t, kind, _f, child = _BY_NAME[set_name][name]
        if kind == "nested":
            out.update(_slots_below(order, child, path + (name,), expect))
        else:
            where = field_of(path + (name,), expect)
            if where is not None:
                out[where[0]] = where[1]
    return out


def _labels(f: Flow) -> bytes | None:
    return None if f.labels is None else labels_bytes(f.labels, f.labels_size)


def _labels_mask(f: Flow) -> bytes | None:
    if f.labels is None or f.labels_mask is None:
        return None
    return labels_bytes(f.labels_mask, len(labels_bytes(f.labels, f.labels_size)))


# --- the plan compiled to Python ----------------------------------------------------------

def _nla_addr(atype: int, v: Any) -> bytes:
    return nla(atype, v.packed)


def _nla_bytes(atype: int, v: Any) -> bytes:
    return nla(atype, bytes(v))


class _Source:
    """Builds the source of one encoding function from a plan."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ns: dict[str, Any] = {
            "nla": nla, "nla_nest": nla_nest, "nla_string": nla_string, "nla_u8": nla_u8,
            "nla_u16": nla_u16, "nla_u32": nla_u32, "nla_u64": nla_u64, "_PORTS": PORT_ATTR_PROTOS,
            "_PROTOINFO": PROTOINFO, "_labels": _labels, "_labels_mask": _labels_mask,
            "_nla_addr": _nla_addr, "_nla_bytes": _nla_bytes,
        }
        self.n = 0

    def var(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def put(self, leaf: _Leaf) -> str:
        if leaf.kind in _PUT:
            return _PUT[leaf.kind]
        if leaf.kind == "struct":
            import struct

            name = self.var("_st")
            self.ns[name] = struct.Struct(leaf.fmt)  # type: ignore[arg-type]
            self.ns[name + "_put"] = lambda t, v, st=self.ns[name]: nla(t, st.pack(*v))
            return name + "_put"
        if leaf.kind in ("ipv4", "ipv6"):
            return "_nla_addr"
        return "_nla_bytes"

    def record(self, rec: str, cls: type, ind: str) -> tuple[str, str]:
        """Emit the context of a record: (v6 variable, protocol variable)."""
        v6, proto = self.var("v6_"), self.var("p")
        if cls is Tuple:
            self.lines += [f"{ind}{v6} = (fam == {AF_INET6}) if fam else (({rec}[0] or {rec}[1]) "
                           f"is not None and ({rec}[0] or {rec}[1]).version == 6)",
                           f"{ind}{proto} = {rec}[2]"]
            return v6, proto
        addrs = [i for i, f in enumerate(cls._fields) if f.endswith("_ip")]
        if addrs:
            first = " or ".join(f"{rec}[{i}]" for i in addrs)
            self.lines.append(f"{ind}{v6} = ({first}) is not None and ({first}).version == 6")
        else:
            v6 = "False"
        return v6, "None"

    def nodes(self, nodes: list, obj: str, out: str, v6: str, proto: str, ind: str) -> None:
        for n in nodes:
            if type(n) is _Leaf:
                self.leaf(n, obj, out, v6, proto, ind)
            elif n.slot is not None:
                self.record_nest(n, obj, out, ind, guard_empty=False)
            elif n.one_of:
                inner = self.var("pi")
                self.lines.append(f"{ind}{inner} = []")
                self.lines.append(f"{ind}want = _PROTOINFO.get(l4) if l4 is not None else None")
                for c in n.children:
                    self.lines.append(f"{ind}if not {inner} and want in (None, {c.slot!r}):")
                    self.record_nest(c, obj, inner, ind + "    ", guard_empty=True)
                self.lines.append(f"{ind}if {inner}:")
                self.lines.append(f"{ind}    {out}.append(nla_nest({n.atype}, *{inner}))")
            else:
                inner = self.var("g")
                self.lines.append(f"{ind}{inner} = []")
                self.nodes(n.children, obj, inner, v6, proto, ind)
                self.lines.append(f"{ind}if {inner}:")
                self.lines.append(f"{ind}    {out}.append(nla_nest({n.atype}, *{inner}))")
                if n.keep_empty:
                    sets = " or ".join(f"{self.value(c, obj)} is not None"
                                       for c in n.children if type(c) is _Leaf)
                    self.lines.append(f"{ind}elif {sets}:")
                    self.lines.append(f"{ind}    {out}.append(nla_nest({n.atype}))")

    def record_nest(self, n: _Nest, obj: str, out: str, ind: str, guard_empty: bool) -> None:
        rec, inner = self.var("r"), self.var("n")
        self.lines.append(f"{ind}{rec} = {obj}.{n.slot}")
        self.lines.append(f"{ind}if {rec} is not None:")
        if n.record is Tuple and "_tuple" in self.ns:  # every tuple nest: one function
            self.lines.append(f"{ind}    {out}.append(nla_nest({n.atype}, _tuple({rec}, fam, None)))")
            return
        v6, proto = self.record(rec, n.record, ind + "    ")  # type: ignore[arg-type]
        self.lines.append(f"{ind}    {inner} = []")
        self.nodes(n.children, rec, inner, v6, proto, ind + "    ")
        if guard_empty:
            self.lines.append(f"{ind}    if {inner}:")
            self.lines.append(f"{ind}        {out}.append(nla_nest({n.atype}, *{inner}))")
        else:
            self.lines.append(f"{ind}    {out}.append(nla_nest({n.atype}, *{inner}))")

    def value(self, leaf: _Leaf, obj: str) -> str:
        if leaf.kind == "labels":
            return "_labels(o)" if leaf.access == "CTA_LABELS" else "_labels_mask(o)"
        if isinstance(leaf.access, int):
            return f"{obj}[{leaf.access}]"
        return f"{obj}.{leaf.access}"

    def leaf(self, leaf: _Leaf, obj: str, out: str, v6: str, proto: str, ind: str) -> None:
        cond = "v is not None"
        if leaf.when is not None:
            cond += " and " + leaf.when.format(v6=v6, proto=proto)
        put = "nla" if leaf.kind == "labels" else self.put(leaf)
        self.lines += [f"{ind}v = {self.value(leaf, obj)}",
                       f"{ind}if {cond}:",
                       f"{ind}    {out}.append({put}({leaf.atype}, v))"]


def _compile(plan: list, root: type, name: str,
             tuple_fn: Callable[..., bytes] | None) -> tuple[Callable[..., bytes], str]:
    """``plan`` as a function ``(obj, family, nat_port_protos) -> bytes`` and its source
    (tuple nests call ``tuple_fn``)."""
    src = _Source()
    if tuple_fn is not None:
        src.ns["_tuple"] = tuple_fn
    src.lines.append(f"def {name}(o, fam, natp):")
    src.lines.append("    out = []")
    if root is Tuple:
        v6, proto = src.record("o", Tuple, "    ")
        src.nodes(plan, "o", "out", v6, proto, "    ")
    else:
        if root is Flow:
            src.lines.append("    l4 = o.orig[2] if o.orig is not None else None")
        src.nodes(plan, "o", "out", "False", "None", "    ")
    src.lines.append("    return b''.join(out)")
    text = "\n".join(src.lines) + "\n"
    exec(compile(text, f"<ctnetlink.encode {name}>", "exec"), src.ns)  # noqa: S102 - generated from the schema tables
    return src.ns[name], text


class Encoder:
    """Encodes flows, expectations and tuples for one attribute order (attribute set
    name -> the attribute names sent, in order; default: the schema's
    ``REQUEST_ORDER``). The encoding functions are generated from the tables on first
    use; :meth:`source` shows them."""

    def __init__(self, order: Mapping[str, tuple[str, ...]] = C.REQUEST_ORDER) -> None:
        self.order = order
        self._fns: dict[str, tuple[Callable[..., bytes], str]] = {}

    def _fn(self, set_name: str) -> Callable[..., bytes]:
        got = self._fns.get(set_name)
        if got is None:
            if set_name == "ctattr_tuple":  # a bare tuple: the leaves read the record itself
                plan = _plan(self.order, set_name, ("CTA_TUPLE_ORIG",), Flow, "orig")
                got = _compile(plan, Tuple, "encode_tuple", None)
            else:
                root = Expect if set_name == "ctattr_expect" else Flow
                plan = _plan(self.order, set_name, (), root, None)
                got = _compile(plan, root, "encode_" + root.__name__.lower(),
                               self._fn("ctattr_tuple"))
            self._fns[set_name] = got
        return got[0]

    def source(self, set_name: str = "ctattr_type") -> str:
        """The generated source for ``ctattr_type`` (flows), ``ctattr_expect`` or
        ``ctattr_tuple``."""
        self._fn(set_name)
        return self._fns[set_name][1]

    def flow(self, flow: Flow, nat_port_protos: frozenset[int] | None = None) -> bytes:
        return self._fn("ctattr_type")(flow, flow.family, nat_port_protos)

    def expect(self, exp: Expect) -> bytes:
        return self._fn("ctattr_expect")(exp, exp.family, None)

    def tuple(self, t: Tuple, family: int | None = None) -> bytes:
        return self._fn("ctattr_tuple")(t, family, None)


REQUEST = Encoder()
"""The encoder of requests (libnetfilter_conntrack's attribute order)."""


def encode_tuple(t: Tuple, family: int | None = None) -> bytes:
    """The content of a CTA_TUPLE_* nest (IP nest, PROTO nest, zone)."""
    return REQUEST.tuple(t, family)


def encode_flow(flow: Flow, *, nat_port_protos: frozenset[int] | None = None) -> bytes:
    """The attributes of a conntrack request carrying ``flow`` (libnetfilter_conntrack order).

    ``nat_port_protos`` restricts the NAT port attributes to those layer-4 protocols
    (the reference tool leaves the port nest empty for others: pass
    :data:`~ctnetlink.constants.NAT_PORT_PROTOS` to do the same).
    """
    return REQUEST.flow(flow, nat_port_protos)


def encode_expect(exp: Expect) -> bytes:
    """The attributes of an expectation request (libnetfilter_conntrack order)."""
    return REQUEST.expect(exp)


def flow_message(mtype: int, flags: int, flow: Flow, seq: int = 0, family: int | None = None,
                 **kw) -> bytes:
    """A complete ctnetlink message carrying ``flow``."""
    fam = family if family is not None else (flow.family or 0)
    return build_nfnl(mtype, flags, fam, encode_flow(flow, **kw), seq)


# --- requests re-sent from dumped messages, without decoding ---------------------------

def _order_of(nest: str) -> tuple[str, ...] | None:
    """The attribute order :func:`encode_flow` writes inside nest ``nest`` ("" = top)."""
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
