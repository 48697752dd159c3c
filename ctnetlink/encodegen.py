"""Generating the request encoders from the schema (build time; not on the command path).

Nothing about the wire is written here a second time: attribute numbers, payload
layouts and nesting come from the attribute tables derived from the construct
declarations of :mod:`ctnetlink.schema` (the decoder's source too), the attribute order
and what a request carries from the schema's ``REQUEST_ORDER`` (libnetfilter_conntrack's
order, which the reference ``conntrack`` sends, so that our requests equal its requests
byte for byte), and where each value lives in the model from :mod:`ctnetlink.fields`.
This module adds only the rules that pick one of several attributes carrying the same
field (IPv4 or IPv6 address; ports, ICMP or ICMPv6 fields per
:data:`~ctnetlink.constants.PROTOCOLS`; NAT ports) and the label encoding.

The tables are resolved into a plan, and the plan is written out as Python source:
``python -m nfnl.compile`` writes the request encoders to ``ctnetlink/_encoders.py``
(:func:`compiled_source`; this module is an ``nfnl.compile`` entry point, checked by the
tests like the other generated modules), which
:mod:`ctnetlink.encode` imports on first use. :class:`Encoder` compiles the same source
at run time for another attribute order (the synthetic dump messages of
:mod:`ctnetlink.formats.synthetic`).
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

from .constants import IPPROTO_ICMP, IPPROTO_ICMPV6
from .fields import field_of
from .model import AF_INET6, Expect, Flow, Tuple

AttrTables = dict  # set name -> {type: (name, kind, fmt, child set)}
Order = dict  # set name -> attribute names, in order


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
        "string": "nla_string", "ipv4": "nla_addr", "ipv6": "nla_addr", "labels": "nla"}


# --- the plan: the request order resolved against the schema and the model --------------

class _Leaf:
    """One attribute: its number, where the value is (``access``: a Flow/Expect
    storage slot name, a record field index, or the label attribute name), when it is
    sent, how it is built (leaf kind and struct format)."""

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


class _Planner:
    def __init__(self, attrs: AttrTables, order: Mapping[str, tuple[str, ...]]) -> None:
        self.order = order
        self.by_name = {set_name: {row[0]: (atype,) + tuple(row[1:]) for atype, row in rows.items()}
                        for set_name, rows in attrs.items()}

    def plan(self, set_name: str, path: tuple[str, ...], root: type,
             record_slot: str | None) -> list:
        expect = root is Expect
        nodes: list = []
        for name in self.order[set_name]:
            atype, kind, fmt, child = self.by_name[set_name][name]
            p = path + (name,)
            if kind == "nested":
                slots = self.slots_below(child, p, expect)
                own = None
                if len(slots) == 1:
                    slot, cls = next(iter(slots.items()))
                    if cls is not None and slot != record_slot:
                        own = (slot, cls)
                children = self.plan(child, p, root, own[0] if own else record_slot)
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

    def slots_below(self, set_name: str, path: tuple[str, ...],
                    expect: bool) -> dict[str, type | None]:
        """Model slot -> record class of the leaves under a nest (as sent)."""
        out: dict[str, type | None] = {}
        for name in self.order.get(set_name, ()):
            _t, kind, _f, child = self.by_name[set_name][name]
            if kind == "nested":
                out.update(self.slots_below(child, path + (name,), expect))
            else:
                where = field_of(path + (name,), expect)
                if where is not None:
                    out[where[0]] = where[1]
        return out


# --- the plan written as Python ---------------------------------------------------------

class _Source:
    """The source of the encoding functions of one plan."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.structs: dict[str, str] = {}  # struct format -> module-level name
        self.n = 0

    def var(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def put(self, leaf: _Leaf) -> str:
        if leaf.kind in _PUT:
            return _PUT[leaf.kind]
        if leaf.kind == "struct":
            name = self.structs.get(leaf.fmt)  # type: ignore[arg-type]
            if name is None:
                name = self.structs[leaf.fmt] = f"_put_struct{len(self.structs)}"  # type: ignore[index]
            return name
        return "nla_bytes"

    def record(self, rec: str, cls: type, ind: str) -> tuple[str, str]:
        """Emit the context of a record: (v6 expression, protocol expression)."""
        if cls is Tuple:
            v6, proto = self.var("v6_"), self.var("p")
            self.lines += [f"{ind}{v6} = (fam == {AF_INET6}) if fam else (({rec}[0] or {rec}[1]) "
                           f"is not None and ({rec}[0] or {rec}[1]).version == 6)",
                           f"{ind}{proto} = {rec}[2]"]
            return v6, proto
        addrs = [i for i, f in enumerate(cls._fields) if f.endswith("_ip")]
        if not addrs:
            return "False", "None"
        v6 = self.var("v6_")
        first = " or ".join(f"{rec}[{i}]" for i in addrs)
        self.lines.append(f"{ind}{v6} = ({first}) is not None and ({first}).version == 6")
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
        if n.record is Tuple:  # every tuple nest: the one tuple function
            self.lines.append(f"{ind}    {out}.append(nla_nest({n.atype}, encode_tuple({rec}, fam, None)))")
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
            return "labels(o)" if leaf.access == "CTA_LABELS" else "labels_mask(o)"
        if isinstance(leaf.access, int):
            return f"{obj}[{leaf.access}]"
        return f"{obj}.{leaf.access}"

    def leaf(self, leaf: _Leaf, obj: str, out: str, v6: str, proto: str, ind: str) -> None:
        cond = "v is not None"
        if leaf.when is not None:
            cond += " and " + leaf.when.format(v6=v6, proto=proto)
        self.lines += [f"{ind}v = {self.value(leaf, obj)}",
                       f"{ind}if {cond}:",
                       f"{ind}    {out}.append({self.put(leaf)}({leaf.atype}, v))"]

    def function(self, plan: list, root: type, name: str, doc: str) -> None:
        self.lines.append("")
        self.lines.append("")
        self.lines.append(f"def {name}(o, fam, natp):")
        self.lines.append(f'    """{doc}"""')
        self.lines.append("    out = []")
        if root is Tuple:
            v6, proto = self.record("o", Tuple, "    ")
            self.nodes(plan, "o", "out", v6, proto, "    ")
        else:
            if root is Flow:
                self.lines.append("    l4 = o.orig[2] if o.orig is not None else None")
            self.nodes(plan, "o", "out", "False", "None", "    ")
        self.lines.append("    return b''.join(out)")


PRELUDE = '''# The request encoders of ctnetlink/schema.py's {what}, written by
# ctnetlink/encodegen.py: (object, family, NAT port protocols) -> attributes.
import struct

from nfnl.codec import nla, nla_nest, nla_string, nla_u8, nla_u16, nla_u32, nla_u64

from ctnetlink.constants import PORT_ATTR_PROTOS as _PORTS, PROTOINFO as _PROTOINFO


def labels_bytes(labels, size=None):
    """A label bitmap as the kernel wants it: 32-bit host-order words."""
    if size is None:
        size = ((max(labels.bit_length() - 1, 0) // 32) + 1) * 4
    return labels.to_bytes(size, "little")


def labels(f):
    return None if f.labels is None else labels_bytes(f.labels, f.labels_size)


def labels_mask(f):
    if f.labels is None or f.labels_mask is None:
        return None
    return labels_bytes(f.labels_mask, len(labels_bytes(f.labels, f.labels_size)))


def nla_addr(atype, v):
    return nla(atype, v.packed)


def nla_bytes(atype, v):
    return nla(atype, bytes(v))
'''


COMPILED_FILE = "_encoders.py"
"""Where ``python -m nfnl.compile`` writes :func:`compiled_source` (this module is an
``nfnl.compile`` entry point)."""


def compiled_source() -> str:
    """``ctnetlink/_encoders.py`` (after its header line): the request encoders of the
    schema's ``REQUEST_ORDER``."""
    from nfnl.attrs import attr_tables

    from . import schema

    return render_module(attr_tables(*schema.ROOTS), schema.request_order())


def render_module(attrs: AttrTables, order: Mapping[str, tuple[str, ...]],
                  what: str = "REQUEST_ORDER") -> str:
    """The source of a module with ``encode_tuple``, ``encode_flow`` and
    ``encode_expect`` for ``order`` over the attribute tables ``attrs``."""
    planner = _Planner(attrs, order)
    src = _Source()
    src.function(planner.plan("ctattr_tuple", ("CTA_TUPLE_ORIG",), Flow, "orig"), Tuple,
                 "encode_tuple", "The content of a CTA_TUPLE_* nest.")
    src.function(planner.plan("ctattr_type", (), Flow, None), Flow, "encode_flow",
                 "The attributes of a conntrack request carrying a Flow.")
    src.function(planner.plan("ctattr_expect", (), Expect, None), Expect, "encode_expect",
                 "The attributes of an expectation request.")
    structs = "".join(f"{name} = (lambda st: lambda t, v: nla(t, st.pack(*v)))"
                      f"(struct.Struct({fmt!r}))\n" for fmt, name in src.structs.items())
    return PRELUDE.format(what=what) + "\n\n" + structs + "\n".join(src.lines) + "\n"


class Encoder:
    """Encoders for another attribute order, compiled at run time (the request
    encoders are generated ahead of time into ``ctnetlink/_encoders.py``)."""

    def __init__(self, order: Mapping[str, tuple[str, ...]], attrs: AttrTables | None = None) -> None:
        if attrs is None:
            from . import _compiled

            attrs = _compiled.ATTRS
        self.source = render_module(attrs, order, "a run-time order")
        ns: dict[str, Any] = {}
        exec(compile(self.source, "<ctnetlink.encodegen>", "exec"), ns)  # noqa: S102 - generated from the schema tables
        self.encode_tuple: Callable[..., bytes] = ns["encode_tuple"]
        self._flow = ns["encode_flow"]
        self._expect = ns["encode_expect"]

    def flow(self, flow: Flow, nat_port_protos: frozenset[int] | None = None) -> bytes:
        return self._flow(flow, flow.family, nat_port_protos)

    def expect(self, exp: Expect) -> bytes:
        return self._expect(exp, exp.family, None)
