"""Cache entries straight to sync messages and back, compiled per shape (the bulk's hot paths).

The caches store a flow as a compact key and a value (:mod:`..entry`, :mod:`..cache`).
Between them and the sync wire, the general paths build the flow's ctnetlink message
and decode it again: render = :meth:`..cache.Cache.message` + :func:`..wire.ctsync.sync_message`,
receive = :func:`..wire.ctsync.payload_flow_attrs` + :func:`..entry.split` + the cache's
packing. The functions here do the same in one step per layout, with code generated
the first time a layout is seen, from the same declarations (nothing is written by
hand: the offsets come from the construct-derived shapes and the ctnetlink node plans):

* :func:`entry_parts` (receive): a sync payload's compiled shape (:mod:`..wire.shapes`),
  its protocol and its variant (what the values decide: ICMP reply type, helper name,
  labels; see ``ctsync._event_dispatch``) give the ctnetlink attributes the general path
  would store (``ctsync._commit_nodes`` with ``commit=False``). From them a function is
  generated that packs the cache key (template id and the original tuple's fields, the
  template learnt through :data:`..entry.TEMPLATES` exactly as :func:`..entry.split`
  does) and the stored attributes (sorted by type, the reply tuple left out when the
  values show it is the mirror of the original one) with one ``struct`` each.
* :func:`render` (send): an entry's layout (template id, stored attribute layout) gives
  the ctnetlink decoder's shape of the message :meth:`..cache.Cache.message` would
  build; its values are unpacked from the key and the value directly (two ``struct``
  calls) and handed to the same per-shape sync encoder :func:`~..wire.ctsync.sync_message`
  uses.

Each compiled layout is checked once against the general path on the entry or
message that taught it (a mismatch leaves the layout to the general path); the property
tests (``tests/unit/test_sync_entries.py``) compare both paths on arbitrary messages.
Both return None where the general path must run (master tuples, sequence adjustment,
unknown layouts, a full template table).
"""
from __future__ import annotations

import re
import struct

from ctnetlink.decode import NetlinkDecodeError, _flow_decoder
from ctnetlink.decode import compile_shape as ct_compile_shape

from .. import entry as E
from ..cache import F_INET6, F_MIRRORED, META_SIZE
from ..wire import ctsync
from ..wire.ctsync import _commit_nodes, _event_dispatch, _flatten, _Leaf, _Nest
from ..wire.flowenc import MAX_FORMATS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

_NONE = object()
_VARIANT_ARGS = "v, t, h, lb, ri, rd, rs"


# --- receive: sync payload -> (key, flags, stored attributes) -----------------------------

def _leaves(node) -> list:
    """The leaves of a node tree in encoding order."""
    if type(node) is _Leaf:
        return [node]
    out: list = []
    for c in node.children:
        out += _leaves(c)
    return out


def _evaluator(exprs: list[str], ns: dict) -> Callable:
    src = f"def f({_VARIANT_ARGS}):\n    return ({', '.join(exprs)},)\n"
    env = dict(ns)
    exec(src, env)  # noqa: S102 - expressions of the generated node plans
    return env["f"]


def _packed(nodes: list, ns: dict, args: tuple) -> bytes:
    """The bytes of ``nodes`` for the values ``args`` (as the general path packs them)."""
    fmt, exprs, _ = _flatten(nodes)
    if not exprs:
        return b""
    return struct.pack(">" + fmt, *_evaluator(exprs, ns)(*args))


def _top_layout(body: bytes) -> tuple[int, int, int]:
    """(length, mask, expected) of the top-level attribute headers of ``body``."""
    mask = bytearray(len(body))
    p = 0
    while p + 4 <= len(body):
        ln, _ = E._HH.unpack_from(body, p)
        mask[p:p + 4] = b"\xff\xff\xff\xff"
        p += (ln + 3) & ~3
    m = int.from_bytes(mask, "little")
    return len(body), m, int.from_bytes(body, "little") & m


def _compile_entry_variant(slots: dict, proto: int, drop: tuple, bits: int, ns: dict,
                           args: tuple) -> Callable | None:
    """The entry function of one variant, taught by the values ``args`` of its first
    message; None when the general path must run (no template, unexpected layout)."""
    nodes = _commit_nodes(slots, proto, False, bits & 0xFF, bits >> 8, False)
    orig, reply, rest = nodes[0], nodes[1], nodes[2:]
    if not (type(orig) is _Nest and orig.atype == 1 and type(reply) is _Nest
            and reply.atype == 2) or any(n.atype in (1, 2) for n in rest):
        return None
    ob = _packed([orig], ns, args)
    t = E.TEMPLATES.find(ob[4:], True)
    if t is None:
        return None
    oleaves = _leaves(orig)
    ovals = _evaluator([e for lf in oleaves for e in lf.exprs], ns)(*args)
    fields, i = [], 0
    for lf in oleaves:
        n = len(lf.exprs)
        fields.append(struct.pack(">" + lf.code, *ovals[i:i + n]))
        i += n
    if tuple(fields) != t.struct.unpack_from(ob, 4):
        return None  # the template cuts the tuple otherwise (never for valid layouts)
    # mirrored reply: the reply layout is the template's, and its fields the mirrored ones
    conds: list[str] | None = None
    rb = _packed([reply], ns, args)
    if t.mirror is not None and t.matches(rb[4:]) and t.nested:
        rleaves = _leaves(reply)
        if len(rleaves) == len(oleaves):
            conds = []
            for i, j in enumerate(t.mirror):
                r, o = rleaves[i], oleaves[j]
                if r.code == o.code and r.exprs == o.exprs:
                    continue  # the same expression: always equal
                if r.code == o.code and len(r.exprs) == 1:
                    conds.append(f"({r.exprs[0]}) == ({o.exprs[0]})")
                else:
                    ra, oa = ", ".join(r.exprs), ", ".join(o.exprs)
                    conds.append(f"_pack('>{r.code}', {ra}) == _pack('>{o.code}', {oa})")
    zone = [n for n in rest if type(n) is _Leaf and n.atype == E.CTA_ZONE]
    kfmt = ">B" + "".join(lf.code for lf in oleaves)
    kargs = [str(t.tid)] + [e for lf in oleaves for e in lf.exprs]
    env = {"_PK": struct.Struct(kfmt).pack, "_pack": struct.pack}
    env.update(ns)
    L = ["def ent(v, t=None, h=None, lb=None, ri=None, rd=0, rs=0):"]
    if zone and len(zone[0].exprs) == 1 and zone[0].code == "H":
        env["_PKZ"] = struct.Struct(kfmt + "H").pack
        L.append(f"    z = {zone[0].exprs[0]}")
        L.append(f"    key = _PKZ({', '.join(kargs)}, z) if z else _PK({', '.join(kargs)})")
    elif zone:
        return None
    else:
        L.append(f"    key = _PK({', '.join(kargs)})")
    family_flag = F_INET6 if 1 in slots else 0

    def body(mirrored: bool, name: str) -> str:
        keep = [n for n in rest if n.atype not in drop]
        if not mirrored and E.CTA_TUPLE_REPLY not in drop:
            keep.append(reply)
        keep.sort(key=lambda n: n.atype)
        fmt, exprs, _ = _flatten(keep)
        env["_PB" + name] = struct.Struct(">" + fmt).pack
        env["_L" + name] = _top_layout(_packed(keep, ns, args))
        flags = family_flag | (F_MIRRORED if mirrored else 0)
        return f"return key, {flags}, _PB{name}({', '.join(exprs)}), _L{name}"

    if conds is None:
        L.append("    " + body(False, "R"))
    elif not conds:
        L.append("    " + body(True, "M"))
    else:
        L.append(f"    if {' and '.join(conds)}:")
        L.append("        " + body(True, "M"))
        L.append("    " + body(False, "R"))
    exec("\n".join(L) + "\n", env)  # noqa: S102 - generated from the node plans
    fn = env["ent"]
    if fn(*args)[:3] != _general_parts(slots, proto, drop, bits, ns, args):
        return None
    return fn


def _general_parts(slots: dict, proto: int, drop: tuple, bits: int, ns: dict,
                   args: tuple) -> tuple | None:
    """(key, flags, stored attributes) by the general path (the check of a new variant)."""
    nodes = _commit_nodes(slots, proto, False, bits & 0xFF, bits >> 8, False)
    attrs = _packed(nodes, ns, args)
    p = E.split(10 if 1 in slots else 2, E._attrs_by_shape(attrs, 0, len(attrs)))
    for t in drop:
        p.attrs.pop(t, None)
    flags = (F_INET6 if p.family == 10 else 0) | (F_MIRRORED if p.mirrored else 0)
    return p.key, flags, E.join(p.attrs)


def _compile_entry(slots: dict, proto: int, drop: tuple, store: Callable) -> Callable | None:
    """``ent(values, None) -> (key, flags, attributes, layout) | None`` of a payload
    layout and protocol (the dispatch of ``ctsync.payload_flow_attrs``, other variants);
    where the values decide no variant, the variant itself once compiled (``store``)."""
    if any(a in slots for a in (8, 9, 10, 11, 16)) or not (0 in slots or 1 in slots):
        return None  # master tuple, sequence adjustment, no addresses: the general path
    variants: dict[int, Callable] = {}
    ns = {"_str": ctsync._str, "_le": ctsync._le, "_I4": ctsync.ICMP_REPLY,
          "_I6": ctsync.ICMPV6_REPLY, "R_SNAT": ctsync.R_SNAT, "R_DNAT": ctsync.R_DNAT,
          "R_SPAT": ctsync.R_SPAT, "R_DPAT": ctsync.R_DPAT, "R_RTYPE": ctsync.R_RTYPE,
          "R_TIMEOUT": ctsync.R_TIMEOUT}

    def make_variant(bits: int) -> Callable:
        def first(*args):
            fn = _compile_entry_variant(slots, proto, drop, bits, ns, args) or _no_entry
            if len(variants) >= MAX_FORMATS:
                variants.clear()
            variants[bits] = fn
            return fn(*args)
        return first

    if not ((proto in (1, 58) and 22 in slots) or 27 in slots or 28 in slots):
        bits = ctsync.R_TIMEOUT if 6 in slots else 0  # what _event_dispatch computes

        def first(v, t):
            fn = _compile_entry_variant(slots, proto, drop, bits, ns,
                                        (v, t, None, None, None, 0, 0)) or _no_entry
            store(fn)
            return fn(v, t)
        return first

    env = {"_V": variants.get, "_variant": make_variant}
    env.update(ns)
    exec(_event_dispatch(slots, proto), env)  # noqa: S102 - generated from the schema tables
    return env["req"]


def _no_entry(*args) -> None:
    return None


def entry_parts(shape, values, drop: tuple = ()) -> tuple | None:
    """(key, flags, attributes, layout) of the cache entry for a received sync conntrack
    payload of compiled ``shape`` and ``values``: the key and the stored attributes
    :func:`..entry.split` and :meth:`..cache.Cache.add` give for
    :func:`~..wire.ctsync.payload_flow_attrs` (types in ``drop`` left out), ``flags``
    the cache value's F_MIRRORED / F_INET6 bits, ``layout`` (length, mask, expected)
    of the attributes' top-level headers. None: take the general path."""
    ps = shape.slots.get(2)
    if ps is None:
        return None
    fn = entry_function(shape, values[ps.index], drop)
    if fn is None:
        return None
    return fn(values, None)


def entry_function(shape, proto: int, drop: tuple = ()) -> Callable | None:
    """The function :func:`entry_parts` calls for a payload layout and protocol (its
    first call compiles the layout and replaces it: look it up again after that); None
    for the general path."""
    cache = shape.cache
    k = ("entry", proto, drop)
    fn = cache.get(k, _NONE)
    if fn is _NONE:
        fn = cache[k] = _compile_entry(shape.slots, proto, drop,
                                       lambda f: cache.__setitem__(k, f))
    return fn


# --- send: cache entry -> sync message ---------------------------------------------------------

_CODE = re.compile(r"(\d*)([a-zA-Z?])")


def _values_format(fmt: str) -> str:
    """A struct format without its pad bytes (the values only, packed together)."""
    return ">" + "".join(n + c for n, c in _CODE.findall(fmt) if c != "x")


class _Layout:
    """A stored entry layout: the stored attributes' header check, the structs giving
    the ctnetlink decoder's values of the entry's message, the decoder's shape, the
    index of the protocol number among the values, and the sync encoders by (protocol,
    ``TCPWindowTracking``, ``CommitTimeout``). ``vmask`` / ``vexpected`` are the header
    check on the whole stored value (``int.from_bytes(value, "little")``); ``senders``
    the renderers of :meth:`sender`."""

    __slots__ = ("mask", "expected", "key", "body", "shape", "proto", "encoders", "vmask",
                 "vexpected", "senders")

    def __init__(self, mask: int, expected: int, key, body, shape, proto: int | None) -> None:
        self.mask = mask
        self.expected = expected
        self.key = key
        self.body = body
        self.shape = shape
        self.proto = proto
        self.encoders: dict = {}
        self.vmask = mask << (8 * META_SIZE)
        self.vexpected = expected << (8 * META_SIZE)
        self.senders: dict = {}

    def encoder(self, proto: int, wt: bool, ct: bool) -> Callable | None:
        """The shape's sync encoder (:func:`~..wire.ctsync.sync_message`'s, shared)."""
        sh = self.shape
        ck = ("sync", proto, wt, ct)
        fn = sh.cache.get(ck, _NONE)
        if fn is _NONE:
            fn = sh.cache[ck] = ctsync._compile(sh, proto, wt, ct)
        if len(self.encoders) >= MAX_FORMATS:
            self.encoders.clear()
        self.encoders[(proto, wt, ct)] = fn
        return fn

    def sender(self, wt: bool, ct: bool, key: bytes, value: bytes
               ) -> Callable[[bytes, bytes, int, int], bytes | None]:
        """``send(key, value, flags, seq)``: the sync message of an entry of this layout,
        typed by its status (:func:`render` without the layout lookup); None where the
        general path must run. Compiled for the protocol and the variant of the entry
        ``key`` / ``value`` (those of the first entry seen): other entries take the
        encoders of :meth:`encoder`."""
        fn = self.senders.get((wt, ct))
        if fn is None:
            fn = self.senders[(wt, ct)] = _compile_sender(self, wt, ct, key, value)
        return fn


def _compile_sender(lay: _Layout, wt: bool, ct: bool, key: bytes, value: bytes) -> Callable:
    encs: dict = {}

    def make(proto: int) -> Callable | None:
        if len(encs) >= MAX_FORMATS:
            encs.clear()
        fn = encs[proto] = lay.encoder(proto, wt, ct)
        return fn

    env = {"_K": lay.key, "_B": lay.body, "_E": encs.get, "_make": make, "_NONE": _NONE}
    src = (f"def send(key, value, flags, seq):\n"
           f"    v = _K(key, 1) + _B(value, {META_SIZE})\n"
           f"    p = v[{lay.proto}]\n"
           f"    e = _E(p, _NONE)\n"
           f"    if e is _NONE:\n        e = _make(p)\n"
           f"    if e is None:\n        return None\n"
           f"    return e(v, 16 | value[0] & 3, flags, seq)\n")
    exec(src, env)  # noqa: S102 - the layout's structs and encoders
    general = env["send"]
    # the protocol and variant of the example, packed in place
    v = lay.key(key, 1) + lay.body(value, META_SIZE)
    proto = v[lay.proto]
    bits_of = ctsync._bits_of(lay.shape, proto, wt, ct)
    bits = bits_of(v) if bits_of is not None else None
    nk = len(lay.key(key, 1))
    names = [f"_v{i}" for i in range(len(v))]
    head = [f"    ({''.join(n + ', ' for n in names[:nk])}) = _K(key, 1)",
            f"    ({''.join(n + ', ' for n in names[nk:])}) = _B(value, {META_SIZE})",
            f"    if _v{lay.proto} != {proto!r}:\n        return _other(key, value, flags, seq)",
            "    vt = 16 | value[0] & 3"]
    fused = ctsync._compile_fused(lay.shape, proto, wt, ct, "key, value, flags, seq", head,
                                  {"_K": lay.key, "_B": lay.body, "_other": general},
                                  () if bits is None else (bits,), len(v))
    return general if fused is None else fused


_LAYOUTS: dict[tuple[int, int], list[_Layout]] = {}
MAX_LAYOUTS = 2048


def _learn(key: bytes, value: bytes) -> _Layout | None:
    """The layout of an entry (None: the general path), checked on the entry."""
    tid = key[0]
    if tid == 0:
        return None
    msg = E.message(key, 10 if value[0] & F_INET6 else 2, value[META_SIZE:], False)
    try:
        sh, v = _flow_decoder.values(msg, 0, len(msg))
        orig = E.orig_tuple(key)
        osh = ct_compile_shape(orig, 0, len(orig), False)
        bsh = ct_compile_shape(value, META_SIZE, len(value), False)
    except (NetlinkDecodeError, struct.error):
        return None
    kst = struct.Struct(_values_format(osh.struct.format))
    leaf = sh.leaves.get(("CTA_TUPLE_ORIG", "CTA_TUPLE_PROTO", "CTA_PROTO_NUM"))
    if leaf is None or 1 + kst.size > len(key):
        return None
    if kst.unpack_from(key, 1) + bsh.struct.unpack_from(value, META_SIZE) != v:
        return None
    return _Layout(bsh.mask, bsh.expected, kst.unpack_from, bsh.struct.unpack_from, sh, leaf[0])


def layout(key: bytes, value: bytes) -> _Layout | None:
    """The compiled layout of a stored conntrack entry (learnt the first time it is
    seen); None where the general path must run."""
    k = (key[0], len(value))
    cands = _LAYOUTS.get(k)
    lay = None
    if cands is not None:
        b = int.from_bytes(value[META_SIZE:], "little")
        for c in cands:
            if b & c.mask == c.expected:
                lay = c
                break
    if lay is None and key[0]:
        lay = _learn(key, value)
        if sum(len(c) for c in _LAYOUTS.values()) >= MAX_LAYOUTS:
            _LAYOUTS.clear()
        if lay is None:  # remembered as such (its top-level headers), after the others
            _, mask, expected = _top_layout(value[META_SIZE:])
            _LAYOUTS.setdefault(k, []).append(_Layout(mask, expected, None, None, None, None))
        else:
            _LAYOUTS.setdefault(k, []).insert(0, lay)
    if lay is not None and lay.shape is not None:
        return lay
    return None


def render(key: bytes, value: bytes, mtype: int, seq: int, flags: int = 0, *,
           window_tracking: bool = False, commit_timeout: bool = False) -> bytes:
    """The sync message (type ``mtype`` 0-2) of a stored conntrack entry: equal to
    :func:`~..wire.ctsync.sync_message` of the entry's message without the mirrored
    reply tuple (what :class:`.source.CacheSource` sends)."""
    lay = layout(key, value)
    if lay is not None:
        v = lay.key(key, 1) + lay.body(value, META_SIZE)
        proto = v[lay.proto]
        fn = lay.encoders.get((proto, window_tracking, commit_timeout), _NONE)
        if fn is _NONE:
            fn = lay.encoder(proto, window_tracking, commit_timeout)
        if fn is not None:
            out = fn(v, 0x10 | mtype, flags, seq)
            if out is not None:
                return out
    return general(key, value, mtype, seq, flags, window_tracking=window_tracking,
                   commit_timeout=commit_timeout)


def general(key: bytes, value: bytes, mtype: int, seq: int, flags: int = 0, *,
            window_tracking: bool = False, commit_timeout: bool = False) -> bytes:
    """:func:`render` by the general path (the entry's ctnetlink message, then
    :func:`~..wire.ctsync.sync_message`)."""
    msg = E.message(key, 10 if value[0] & F_INET6 else 2, value[META_SIZE:], False)
    return ctsync.sync_message(msg, 0, len(msg), mtype, seq, flags,
                               window_tracking=window_tracking, commit_timeout=commit_timeout)
