"""Fast decoding of ctnetlink messages into :class:`Flow` / :class:`Expect` objects.

The kernel emits entries of a table in a handful of layouts ("shapes": the same
attributes in the same order with the same sizes). The first message of a shape is
walked attribute by attribute and compiled into one ``struct`` format covering the
whole message body (attribute headers included) plus a generated builder function;
every later message of that shape is decoded by a single ``unpack_from``, a check that
all attribute headers are the expected ones, and the builder. The per-attribute
formats come from the construct declarations in :mod:`ctnetlink.schema` (through
``_compiled``). Malformed input raises :class:`~nfnl.errors.NetlinkDecodeError`.
Generated code stays readable: every generated function carries its text in
``source``, and :meth:`Shape.source` prints a shape as a Python module
(``python -m ctnetlink.inspect FILE.pcap`` does so for the messages of a recording).
"""
from __future__ import annotations

import ipaddress
import struct
TYPE_CHECKING = False  # typing is not imported at run time: the CLI must start fast
if TYPE_CHECKING:
    from typing import Any, Callable

from nfnl.errors import NetlinkDecodeError

from . import _compiled as C
from .fields import field_of
from .model import Expect, Flow, Tuple, maker  # noqa: F401 - maker: for generated decoders

_HDR = struct.Struct("=HH")
_HDR_BE = struct.Struct(">I")
MAX_DEPTH = 8
MAX_SHAPES = 4096

class _IpCache(dict):
    """bytes -> address object, computed when missing (``cache[b]``: one subscript on the
    hot path); forgets everything past 200,000 entries."""

    __slots__ = ()

    def __missing__(self, b: bytes):
        if len(self) > 200_000:
            self.clear()
        if _make_ip is _ip_fast:  # _ip_fast inline (a new address in every new flow)
            if len(b) == 4:
                a = _new(_V4)
            else:
                a = _new(_V6)
                a._scope_id = None
            a._ip = _from_bytes(b, "big")
        else:
            a = _make_ip(b)
        self[b] = a
        return a


_ip_cache: dict[bytes, Any] = _IpCache()
_new = object.__new__
_V4 = ipaddress.IPv4Address
_V6 = ipaddress.IPv6Address
_from_bytes = int.from_bytes


def _ip_slow(b: bytes):
    return _V4(b) if len(b) == 4 else _V6(b)


def _ip_fast(b: bytes):
    # ipaddress objects are an int in a slot: build them without the validating
    # constructor (4 per entry on the hot path); checked against it on first use
    if len(b) == 4:
        a = _new(_V4)
    else:
        a = _new(_V6)
        a._scope_id = None
    a._ip = _from_bytes(b, "big")
    return a


def _ip_first(b: bytes):
    """The first address: choose the fast constructor if it builds what the validating
    one builds (not at import: the command line tools start faster)."""
    global _make_ip
    try:
        ok = (_ip_fast(b"\x01\x02\x03\x04") == _V4("1.2.3.4")
              and str(_ip_fast(bytes(range(16)))) == str(_V6(bytes(range(16))))
              and hash(_ip_fast(b"\x01\x02\x03\x04")) == hash(_V4("1.2.3.4")))
    except Exception:  # pragma: no cover - a future ipaddress layout
        ok = False
    _make_ip = _ip_fast if ok else _ip_slow
    return _make_ip(b)


_make_ip = _ip_first


def _ip(b: bytes):
    """bytes -> IPv4Address/IPv6Address, cached (addresses repeat across entries)."""
    a = _ip_cache.get(b)
    if a is None:
        if len(_ip_cache) > 200_000:
            _ip_cache.clear()
        a = _ip_cache[b] = _make_ip(b)
    return a


def _str(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf8", "replace")


def _labels(b: bytes) -> int:
    return int.from_bytes(b, "little")


def _host_int(b: bytes) -> int:
    return int.from_bytes(b, "little")


class Shape:
    """A compiled message layout: struct, header check and builder."""

    def matches(self, buf, off: int) -> bool:
        """Whether the message at ``off`` (header included) has this layout."""
        return _from_bytes(buf[off + 20:off + 20 + self.size], "little") & self.mask == self.expected

    def source(self) -> str:
        """This shape as Python source: the attribute tree (a comment), the body's struct
        format, the header check and the generated builder. It compiles; executed in
        ``self.build.__globals__`` it defines ``STRUCT``, ``MASK``, ``EXPECTED`` and a
        ``build(v, family)`` equal to :attr:`build`."""
        lines = [f"# ctnetlink.decode shape: {self.size}-byte message bodies holding "
                 "(offsets in the body)"]

        def tree(nodes: list, depth: int) -> None:
            for name, start, end, children in nodes:
                label = name if isinstance(name, str) else f"type {name} (unknown, kept raw)"
                lines.append(f"#   {'  ' * depth}{label} [{start}:{end}]")
                if children:
                    tree(children, depth + 1)

        tree(self.tree, 0)
        g = self.build.__globals__
        classes = sorted(k for k in set(self.build.__code__.co_names)
                         if k in g and isinstance(g[k], type))
        if classes:
            lines.append("# records are tuples built in field order (_tn = tuple.__new__), "
                         "the entry by assigning its slots:")
        for name in classes:
            cls = g[name]
            names = cls._fields if issubclass(cls, tuple) else cls.__slots__
            lines.append(f"#   {name} = {cls.__module__}.{cls.__name__}({', '.join(names)})")
        lines += [
            "# a body has this shape when int.from_bytes(body, 'little') & MASK == EXPECTED",
            "# (all its attribute headers are these); it decodes as",
            "# build(STRUCT.unpack(body), nfgen_family)",
            "import struct",
            "",
            f"STRUCT = struct.Struct({self.struct.format!r})",
            f"MASK = {self.mask:#x}",
            f"EXPECTED = {self.expected:#x}",
            "",
            "",
            self.build.source.rstrip("\n"),
        ]
        helpers = sorted(n for n in set(self.build.__code__.co_names)
                         if n in g and not isinstance(g[n], type))
        if helpers:
            lines += ["", "# helpers: " + ", ".join(
                f"{n} = {getattr(self.build.__globals__[n], '__qualname__', n)}"
                for n in helpers)]
        return "\n".join(lines) + "\n"

    __slots__ = ("struct", "mask", "expected", "build", "size", "leaves", "tree", "cache")

    def __init__(self, st: struct.Struct, mask: int, expected: int, build, leaves: dict,
                 tree: list | None = None) -> None:
        self.struct = st
        #: the message body read as a little-endian integer, masked with ``mask`` (the
        #: attribute header bytes), equals ``expected`` exactly for this layout
        self.mask = mask
        self.expected = expected
        self.build = build
        self.size = st.size
        self.leaves = leaves
        #: attribute tree ``[name or type, start, padded end, children]``, offsets from
        #: the message body (header + 20)
        self.tree = tree or []
        #: per-shape products of other modules (compiled formatters, request plans)
        self.cache: dict = {}


def _walk(buf, off: int, end: int, set_name: str | None, path: tuple, out: list, depth: int,
          tree: list | None = None, base: int = 0) -> None:
    """Append the layout entries of ``buf[off:end]`` to ``out``; with ``tree``, also the
    attribute tree ``[name or type, start, padded end, children or None]`` with offsets
    relative to ``base``."""
    if depth > MAX_DEPTH:
        raise NetlinkDecodeError("attributes nested too deeply", off)
    spec = C.ATTRS.get(set_name, {}) if set_name else {}
    while off < end:
        if end - off < 4:
            raise NetlinkDecodeError("truncated attribute header", off)
        ln, rtype = _HDR.unpack_from(buf, off)
        if ln < 4 or off + ln > end:
            raise NetlinkDecodeError(f"bad attribute length {ln}", off)
        atype = rtype & 0x3FFF
        padded = (ln + 3) & ~3
        if off + padded > end:
            padded = end - off  # tolerate a missing final pad only at the very end
        info = spec.get(atype)
        (hdr_word,) = _HDR_BE.unpack_from(buf, off)
        if info is None:
            out.append(("raw", path + (atype,), hdr_word, ln - 4, padded - ln))
            if tree is not None:
                tree.append([atype, off - base, off + padded - base, None])
        elif info[1] == "nested":
            out.append(("nest", path + (info[0],), hdr_word, 0, 0))
            children: list | None = None
            if tree is not None:
                children = []
                tree.append([info[0], off - base, off + padded - base, children])
            _walk(buf, off + 4, off + ln, info[3], path + (info[0],), out, depth + 1,
                  children, base)
            if padded > ln:
                out.append(("pad", None, None, 0, padded - ln))
        else:
            if tree is not None:
                tree.append([info[0], off - base, off + padded - base, None])
            name, kind, fmt, _ = info
            size = ln - 4
            if fmt is not None:
                want = struct.calcsize(fmt)
                if want != size:
                    raise NetlinkDecodeError(f"{name} has {size} bytes, expected {want}", off)
            out.append(("leaf", path + (name,), hdr_word, size, padded - ln, kind, fmt))
        off += padded


def compile_shape(buf, body: int, end: int, expect: bool) -> Shape:
    """Compile the layout of the message body ``buf[body:end]``.

    The struct unpacks only payloads (attribute headers are skipped); the headers are
    checked at once by masking the body read as one integer: ``Shape.matches``."""
    out: list = []
    tree: list = []
    root = "ctattr_expect" if expect else "ctattr_type"
    _walk(buf, body, end, root, (), out, 0, tree, body)
    fmt = [">"]
    leaves: dict[tuple, tuple[int, str, int]] = {}
    raws: list[tuple[int, int]] = []
    mask = bytearray(end - body)
    i = 0
    pos = 0
    for entry in out:
        kind0 = entry[0]
        if kind0 == "pad":
            fmt.append(f"{entry[4]}x")
            pos += entry[4]
            continue
        fmt.append("4x")  # the attribute header: checked through the mask
        mask[pos:pos + 4] = b"\xff\xff\xff\xff"
        pos += 4
        size, pad = entry[3], entry[4]
        if kind0 == "nest":
            continue
        if kind0 == "raw":
            if len(entry[1]) == 1:
                raws.append((entry[1][0], i))
            fmt.append(f"{size}s")
            i += 1
        else:
            kind, lfmt = entry[5], entry[6]
            if lfmt is None or kind in ("u16h", "u32h", "u64h"):
                fmt.append(f"{size}s")
                leaves[entry[1]] = (i, kind if lfmt is None else "hostint", 1)
                i += 1
            elif kind == "flag":
                leaves[entry[1]] = (i, "flag", 0)
            else:
                code = lfmt[1:] if lfmt[0] in "<>=!" else lfmt
                n = len(struct.unpack(">" + code, bytes(struct.calcsize(">" + code))))
                fmt.append(code)
                leaves[entry[1]] = (i, kind, n)
                i += n
        pos += size
        if pad:
            fmt.append(f"{pad}x")
            pos += pad
    st = struct.Struct("".join(fmt))
    if st.size != end - body or pos != end - body:
        raise NetlinkDecodeError("attribute layout does not cover the message", body)
    imask = int.from_bytes(mask, "little")
    expected = int.from_bytes(buf[body:end], "little") & imask
    build = _make_builder(leaves, raws, expect)
    sh = Shape(st, imask, expected, build, leaves, tree)
    sh.cache["raws"] = raws
    return sh


def _value_expr(kind: str, idx: int, n: int) -> str:
    if kind in ("ipv4", "ipv6"):
        return f"_ipm[v[{idx}]]"
    if kind == "string":
        return f"_str(v[{idx}])"
    if kind == "hostint":
        return f"_host_int(v[{idx}])"
    if kind == "flag":
        return "True"
    if kind == "struct":
        return "(" + ", ".join(f"v[{idx + k}]" for k in range(n)) + ",)"
    return f"v[{idx}]"


def _make_builder(leaves: dict, raws: list, expect: bool, event: type | None = None,
                  shape: Shape | None = None):
    """The source of ``build(v, family)`` for one shape, compiled: records are built as
    tuples (``tuple.__new__``), the root object by assigning every slot. With ``event``
    (the :class:`~ctnetlink.model.Event` class) and the ``shape``,
    ``build_event(data, type, portid)`` instead: for a datagram holding one message, the
    shape's check, unpacking and the flow built inside its event in one function (None
    when the message has another layout)."""
    root_cls = Expect if expect else Flow
    top: dict[str, str] = {}
    records: dict[str, tuple[type, dict[str, str]]] = {}
    unknown: list[str] = []
    for path, (idx, kind, n) in leaves.items():
        where = field_of(path, expect)
        if where is None:
            if len(path) == 1:
                unknown.append(f"({C_TYPE[path[0]]}, v[{idx}])" if path[0] in C_TYPE else "")
            continue
        slot, cls, fld = where
        expr = _value_expr(kind, idx, n)
        if slot == "labels" or slot == "labels_mask":
            top[slot] = f"_labels(v[{idx}])"
            if slot == "labels":
                top["labels_size"] = f"len(v[{idx}])"
            continue
        if cls is None:
            top[slot] = expr
        else:
            records.setdefault(slot, (cls, {}))[1][fld] = expr
    for atype, idx in raws:
        unknown.append(f"({atype}, v[{idx}])")
    unknown = [u for u in unknown if u]
    ns: dict[str, Any] = {"_ipm": _ip_cache, "_str": _str, "_labels": _labels,
                          "_host_int": _host_int, "_tn": tuple.__new__, "_new": object.__new__,
                          "_root": root_cls}
    lines = ["def build(v, family):"]
    for slot, (cls, fields) in records.items():
        ns[f"_{cls.__name__}"] = cls
        args = ", ".join(fields.get(s, "None") for s in cls._fields)
        top[slot] = f"_tn(_{cls.__name__}, ({args},))"
    if unknown:
        top["unknown"] = "(" + ", ".join(unknown) + ",)"
    top["family"] = "family"
    lines.append("    o = _new(_root)")
    for public, storage in zip(root_cls._fields, root_cls.__slots__):
        lines.append(f"    o.{storage} = {top.get(public, 'None')}")
    name = "build"
    if event is not None and shape is not None:
        name = "build_event"
        ns.update(_Event=event, _fb=_from_bytes, _unpack=shape.struct.unpack_from,
                  MASK=shape.mask, EXPECTED=shape.expected)
        given = {"type": "type", "flow": "None", "expect": "None", "portid": "portid",
                 "expect" if expect else "flow": "o"}
        lines[0:1] = ["def build_event(data, type, portid):",
                      f"    if _fb(data[20:{shape.size + 20}], 'little') & MASK != EXPECTED:",
                      "        return None",
                      "    v = _unpack(data, 20)",
                      "    family = data[16]"]
        lines.append("    e = _new(_Event)")
        lines += [f"    e.{s} = {given.get(s, 'None')}" for s in event.__slots__]
        lines.append("    return e")
    else:
        lines.append("    return o")
    src = "\n".join(lines) + "\n"
    exec(compile(src, f"<{root_cls.__name__} builder>", "exec"), ns)  # noqa: S102 - from the schema
    ns[name].source = src
    return ns[name]


def event_builder(shape: Shape, event: type):
    """``build_event(data, type, portid)`` of ``shape``, for a datagram ``data`` holding
    one message of the shape's length: the layout check, the unpacking, :attr:`Shape.build`
    and the ``event`` object around it in one generated function, None when the message
    has another layout (cached on the shape; its text is in ``.source``)."""
    fn = shape.cache.get("event-build")
    if fn is None:
        fn = shape.cache["event-build"] = _make_builder(
            shape.leaves, shape.cache.get("raws", []), _is_expect(shape), event, shape)
    return fn


def _is_expect(shape: Shape) -> bool:
    return shape.build.__globals__["_root"] is Expect


C_TYPE = {info[0]: t for t, info in C.ATTRS["ctattr_type"].items()}
C_TYPE.update({info[0]: t for t, info in C.ATTRS["ctattr_expect"].items()})


class Decoder:
    """Decodes messages of one kind (conntrack entries or expectations), caching shapes."""

    def __init__(self, expect: bool = False) -> None:
        self.expect = expect
        self._shapes: dict[int, list[Shape]] = {}

    @property
    def shapes(self) -> dict[int, list[Shape]]:
        """The compiled layouts by message length (for hot loops that inline the check of
        :meth:`decoder`: ``key & shape.mask == shape.expected``)."""
        return self._shapes

    def shape(self, buf, off: int, ln: int) -> Shape:
        """The (cached or newly compiled) layout of the message at ``buf[off:off+ln]``."""
        if ln < 20 or off < 0 or off + ln > len(buf):
            raise NetlinkDecodeError(f"bad netlink message length {ln}", off)
        cands = self._shapes.get(ln)
        if cands:
            key = _from_bytes(buf[off + 20:off + ln], "little")
            for sh in cands:
                if key & sh.mask == sh.expected:
                    return sh
        sh = compile_shape(buf, off + 20, off + ln, self.expect)
        if sum(len(c) for c in self._shapes.values()) > MAX_SHAPES:
            self._shapes.clear()
        self._shapes.setdefault(ln, []).append(sh)
        return sh

    def decode(self, buf, off: int, ln: int, family: int | None = None):
        """Decode the message at ``buf[off:off+ln]`` (header included)."""
        sh = self.shape(buf, off, ln)
        return sh.build(sh.struct.unpack_from(buf, off + 20),
                        buf[off + 16] if family is None else family)

    def values(self, buf, off: int, ln: int) -> tuple[Shape, tuple]:
        """(shape, raw values) of the message at ``buf[off:off+ln]`` without building
        the model object (formatters compiled per shape take the values directly)."""
        sh = self.shape(buf, off, ln)
        return sh, sh.struct.unpack_from(buf, off + 20)

    def decoder(self):
        """A fast ``decode(buf, off, ln)`` closure for loops over many messages."""
        shapes = self._shapes
        slow = self.decode
        fb = _from_bytes

        def decode(buf, off: int, ln: int):
            cands = shapes.get(ln)
            if cands is not None and off + ln <= len(buf):
                sh = cands[0]
                if fb(buf[off + 20:off + ln], "little") & sh.mask == sh.expected:
                    return sh.build(sh.struct.unpack_from(buf, off + 20), buf[off + 16])
            return slow(buf, off, ln)

        return decode


_flow_decoder = Decoder(False)
_expect_decoder = Decoder(True)


def _checked_length(msg: bytes | memoryview, off: int, ln: int | None) -> int:
    if off < 0 or len(msg) - off < 16:
        raise NetlinkDecodeError("truncated netlink header", off)
    if ln is None:
        (ln,) = struct.unpack_from("=I", msg, off)
    if ln < 20:
        raise NetlinkDecodeError(f"bad netlink message length {ln}", off)
    if ln > len(msg) - off:
        raise NetlinkDecodeError(f"bad netlink message length {ln}", off)
    return ln


def decode_flow(msg: bytes | memoryview, off: int = 0, ln: int | None = None) -> Flow:
    """Decode one conntrack message (nlmsghdr + nfgenmsg + attributes) into a Flow.

    Raises :class:`NetlinkDecodeError` for anything malformed."""
    return _flow_decoder.decode(msg, off, _checked_length(msg, off, ln))


def decode_expect(msg: bytes | memoryview, off: int = 0, ln: int | None = None) -> Expect:
    """Decode one expectation message into an Expect (see :func:`decode_flow`)."""
    return _expect_decoder.decode(msg, off, _checked_length(msg, off, ln))


__all__ = ["Decoder", "decode_flow", "decode_expect", "Tuple"]
