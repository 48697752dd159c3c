"""The layout compiler behind the conntrack-entry formats (text, xml, save, json).

A format is declared once as a :class:`Layout`: an ordered list of rules
``(condition, template)``. A condition is a Python expression, evaluated at compile
time, over presence flags (``orig_zone`` = "the entry has an original-direction zone"),
output options (``opt_extended``) and the few values that decide the layout
(``family``, ``oproto``/``rproto`` = layer-4 number of each tuple, ``ofam``/``rfam`` =
layer-3 number of each tuple, 0 when the tuple is absent). A template is literal text
with ``{field:converter}`` placeholders; ``{$name}`` stands for one of the deciding
values and ``{:converter}`` for a converter that needs no field. For every combination
of present fields and deciding values met at run time (the "signature") the rules are
evaluated once and turned into the source of one Python function returning a single
f-string, cached by signature. The same rules compile against two inputs: a
:class:`~ctnetlink.model.Flow` (``f.orig.sport``) and the raw value tuple of a
:class:`~ctnetlink.decode.Shape` (``v[7]``), so no format exists twice. Every generated
function keeps its current text in ``source`` (``python -m ctnetlink.inspect`` prints
them; the names they use are in the function's ``__globals__``).
"""
from __future__ import annotations

import socket
import time

TYPE_CHECKING = False  # typing is not imported at run time: the CLI must start fast
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator, Mapping

from ..constants import (
    DCCP_STATE_NAMES, ICMP_PROTOS, L3_NAMES, L4_NAMES, PORT_PROTOS, SCTP_STATE_NAMES,
    STATUS_NAMES as _BIT_NAMES, TCP_STATE_NAMES,
)
from ..fields import FLOW_NESTS, FLOW_SCALARS, PROTOINFO_NESTS
from ..model import Flow

IP_FAMILIES = frozenset((2, 10))
GRE = 47
NS = 1_000_000_000
M64 = (1 << 64) - 1
MEMO_LIMIT = 1 << 20


# --- small shared helpers -------------------------------------------------------------

class Memo(dict):
    """A dict that computes missing values with ``fn`` (and forgets all when too big)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Any], Any], initial: Mapping | None = None) -> None:
        super().__init__(initial or ())
        self.fn = fn

    def __missing__(self, key: Any) -> Any:
        if len(self) > MEMO_LIMIT:
            self.clear()
        value = self[key] = self.fn(key)
        return value


def _ntoa4(b: bytes) -> str:
    return socket.inet_ntoa(b[:4].ljust(4, b"\0"))


def _ntop6(b: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6, b[:16].ljust(16, b"\0"))


class _Addr4Bytes(dict):
    """IPv4 address bytes -> dotted quad (``inet_ntoa``); other lengths use 4 bytes."""

    __slots__ = ()

    def __missing__(self, b: bytes) -> str:
        if len(self) > MEMO_LIMIT:
            self.clear()
        try:
            s = self[b] = _inet_ntoa(b)
        except OSError:
            s = self[b] = _ntoa4(b)
        return s


class _Addr6Bytes(dict):
    """IPv6 address bytes -> ``inet_ntop(AF_INET6)`` text (libc form, IPv4-mapped tails)."""

    __slots__ = ()

    def __missing__(self, b: bytes) -> str:
        if len(self) > MEMO_LIMIT:
            self.clear()
        try:
            s = self[b] = _inet_ntop(_AF_INET6, b)
        except (OSError, ValueError):
            s = self[b] = _ntop6(b)
        return s


_inet_ntoa = socket.inet_ntoa
_inet_ntop = socket.inet_ntop
_AF_INET6 = socket.AF_INET6
ADDR4_BYTES = _Addr4Bytes()
ADDR6_BYTES = _Addr6Bytes()
ADDR4_INT = Memo(lambda i: _ntoa4((i & 0xFFFFFFFF).to_bytes(4, "big")))
ADDR6_INT = Memo(lambda i: _ntop6((i & ((1 << 128) - 1)).to_bytes(16, "big")))
CSTRING = Memo(lambda b: b.split(b"\0", 1)[0].decode("utf8", "replace"))
"""NUL-terminated attribute bytes -> str (decoded like :mod:`ctnetlink.decode`)."""


def _names(table: tuple[str, ...], missing: str) -> Memo:
    return Memo(lambda v: missing, dict(enumerate(table)))


TCP_STATES = _names(TCP_STATE_NAMES, "NONE")
SCTP_STATES = _names(SCTP_STATE_NAMES, "NONE")
DCCP_STATES = _names(DCCP_STATE_NAMES, "NONE")


def l3_name(n: int | None) -> str:
    return L3_NAMES.get(n, "unknown") if n is not None else "unknown"


def l4_name(n: int | None) -> str:
    return L4_NAMES.get(n, "unknown") if n is not None else "unknown"


def label_bits(labels: int | bytes) -> list[int]:
    """The set bit numbers of a label bitmap (int, or the kernel's little-endian bytes)."""
    if isinstance(labels, (bytes, bytearray, memoryview)):
        labels = int.from_bytes(labels, "little")
    out = []
    bit = 0
    while labels:
        low = labels & -labels
        bit = low.bit_length() - 1
        out.append(bit)
        labels ^= low
    return out


def sec_usec(clock: Callable[[], float] | None = None) -> tuple[int, int]:
    """The current time (or ``clock()``) as whole seconds and microseconds."""
    if clock is None:
        ns = time.time_ns()
        return ns // 1_000_000_000, ns % 1_000_000_000 // 1000
    t = clock()
    sec = int(t)
    return sec, int((t - sec) * 1_000_000)


class LabelMap:
    """A connlabel map (bit number -> name), hashable by content.

    Built from any ``Mapping[int, str]``; the formats keep their label-text caches here.
    """

    __slots__ = ("names", "_key", "_memos")

    def __init__(self, names: Mapping[int, str]) -> None:
        self.names = dict(names)
        self._key = tuple(sorted(self.names.items()))
        self._memos: dict[str, Memo] = {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return f"LabelMap({self.names!r})"

    def named(self, labels: int | bytes) -> list[str]:
        """Names of the set bits that have one, in ascending bit order."""
        get = self.names.get
        return [n for n in (get(b) for b in label_bits(labels)) if n]

    def memo(self, kind: str, render: Callable[["LabelMap", int | bytes], str]) -> Memo:
        m = self._memos.get(kind)
        if m is None:
            m = self._memos[kind] = Memo(lambda raw: render(self, raw))
        return m


# --- options --------------------------------------------------------------------------

class Options:
    """What the ``-o`` list and the command ask for; immutable, hashable (keys the caches).

    ``extended`` (-o extended), ``id`` (-o id), ``ktimestamp`` (-o ktimestamp),
    ``timestamp`` (-o timestamp: XML ``<when>`` on event records), ``labels`` (the label
    map, or None when it is not loaded), ``event`` (1 NEW, 2 UPDATE, 3 DESTROY for event
    records, None otherwise), ``save_prefix`` (``-o save`` prefix, default from
    ``event``: ``-A``/``-U``/``-D``, ``-A`` without event), ``clock`` (returns the
    current time in seconds; used for ``delta-time`` and ``<when>``; default
    :func:`time.time`).
    """

    __slots__ = ("extended", "id", "ktimestamp", "timestamp", "labels", "event", "save_prefix",
                 "clock", "_key")
    extended: bool
    id: bool
    ktimestamp: bool
    timestamp: bool
    labels: LabelMap | None
    event: int | None
    save_prefix: str | None
    clock: Callable[[], float] | None

    def __init__(self, extended: bool = False, id: bool = False, ktimestamp: bool = False,
                 timestamp: bool = False, labels: LabelMap | Mapping[int, str] | None = None,
                 event: int | None = None, save_prefix: str | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        if labels is not None and not isinstance(labels, LabelMap):
            labels = LabelMap(labels)
        values = (bool(extended), bool(id), bool(ktimestamp), bool(timestamp), labels,
                  int(event) if event is not None else None, save_prefix, clock)
        for name, value in zip(self.__slots__, values):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_key", values)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Options is immutable; use replace()")

    def replace(self, **changes: Any) -> "Options":
        """A copy with some fields changed."""
        kw = dict(zip(self.__slots__[:-1], self._key))
        kw.update(changes)
        return Options(**kw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Options) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in zip(self.__slots__[:-1], self._key)
                         if v not in (False, None))
        return f"Options({body})"


DEFAULT = Options()


# --- fields ---------------------------------------------------------------------------

class Field:
    """A model field: ``slot`` of Flow and, for nested records, ``attr`` inside it.

    ``paths`` are the shape leaf paths carrying it (first present wins); ``default`` is
    what the reference prints when the value is needed but absent (None for a nest).
    """

    __slots__ = ("name", "slot", "attr", "paths", "default", "local", "storage", "index")

    def __init__(self, name: str, slot: str, attr: str | None,
                 paths: tuple[tuple[str, ...], ...], default: Any = 0,
                 record: type | None = None) -> None:
        self.name = name
        self.slot = slot
        self.attr = attr
        self.paths = paths
        self.default = default
        self.local = "n_" + slot
        #: where a Flow keeps the raw value: its slot (``_status`` for ``status``) and,
        #: inside a record (a tuple), the index of the field
        self.storage = Flow.__slots__[Flow._fields.index(slot)]
        self.index = record._fields.index(attr) if record is not None and attr else None


def _build_fields() -> dict[str, Field]:
    paths: dict[tuple[str, str | None], list[tuple[str, ...]]] = {}
    records: dict[str, type] = {}
    for path, slot in FLOW_SCALARS.items():
        paths.setdefault((slot, None), []).append(path)
    for nest, (slot, cls, sub) in FLOW_NESTS.items():
        records[slot] = cls
        for rel, attr in sub.items():
            paths.setdefault((slot, attr), []).append((nest,) + rel)
    for nest, (slot, cls, sub) in PROTOINFO_NESTS.items():
        records[slot] = cls
        for rel, attr in sub.items():
            paths.setdefault((slot, attr), []).append(("CTA_PROTOINFO", nest) + rel)
    out = {}
    for (slot, attr), ps in paths.items():
        name = slot if attr is None else f"{slot}.{attr}"
        default: Any = 0
        if slot in ("helper", "secctx"):
            default = ""
        out[name] = Field(name, slot, attr, tuple(ps), default, records.get(slot))
    for nest, (slot, _cls, _sub) in FLOW_NESTS.items():
        out[slot] = Field(slot, slot, None, ((nest,),), None)
    for nest, (slot, _cls, _sub) in PROTOINFO_NESTS.items():
        out[slot] = Field(slot, slot, None, (("CTA_PROTOINFO", nest),), None)
    return out


FIELDS = _build_fields()
NEST_SLOTS = frozenset(s for _n, (s, _c, _x) in FLOW_NESTS.items())


def flag_name(name: str) -> str:
    """The condition identifier for "field is present" (``orig.zone`` -> ``orig_zone``)."""
    return name.replace(".", "_")


# --- layouts --------------------------------------------------------------------------

def parse_template(tmpl: str) -> Iterator[tuple[str, str | None, str]]:
    """(literal, field or None, converter) pieces of ``"a={x:conv} b"``; ``{{`` is ``{``."""
    lit: list[str] = []
    i, n = 0, len(tmpl)
    while i < n:
        c = tmpl[i]
        if c in "{}" and i + 1 < n and tmpl[i + 1] == c:
            lit.append(c)
            i += 2
        elif c == "{":
            j = tmpl.index("}", i)
            name, _, spec = tmpl[i + 1:j].partition(":")
            yield "".join(lit), name, spec
            lit = []
            i = j + 1
        elif c == "}":
            raise ValueError(f"single '}}' in template {tmpl!r}")
        else:
            lit.append(c)
            i += 1
    if lit:
        yield "".join(lit), None, ""


class Layout:
    """An ordered rule list plus how the assembled text is finished.

    ``finish``: ``"strip"`` removes the final character (the trailing space of the
    conntrack text and save lines), ``"json"`` drops the comma after every ``{``,
    ``"none"`` keeps the text. ``valid`` is a condition: when false the compiled
    function returns None (e.g. ``-o save`` of a family it cannot print).
    ``derived`` names extra compile-time booleans: ``{name: condition}``.
    """

    def __init__(self, name: str, rules: Iterable[tuple[str, str]], finish: str = "none",
                 valid: str = "True", derived: Mapping[str, str] | None = None) -> None:
        self.name = name
        rules = list(rules)
        self.rules = [(cond, tmpl) for cond, tmpl in rules]
        # every condition in one code object (one compile() at import, not one each)
        self.conditions = compile("(" + "".join(f"({c}), " for c, _t in rules) + ")",
                                  f"<{name} rules>", "eval")
        self.finish = finish
        self.valid = compile(valid, f"<{name} valid>", "eval")
        self.derived = [(k, compile(c, f"<{name} derived>", "eval"))
                        for k, c in (derived or {}).items()]
        used: set[str] = set()
        flags = {flag_name(n): n for n in FIELDS}
        codes = [self.conditions, self.valid] + [c for _k, c in self.derived]
        for code in codes:
            for ident in code.co_names:
                if ident in flags:
                    used.add(flags[ident])
        for _s, tmpl in self.rules:
            for _lit, fname, spec in parse_template(tmpl):
                if fname is None:
                    continue
                if fname and not fname.startswith("$"):
                    if fname not in FIELDS:
                        raise ValueError(f"{name}: unknown field {fname!r}")
                    used.add(fname)
                conv = CONVERTERS.get(spec or "")
                if conv is None and spec not in ("", "x"):
                    raise ValueError(f"{name}: unknown converter {spec!r}")
                if conv is not None:
                    used.update(conv.deps)
        used.update(("orig", "reply", "orig.proto", "reply.proto"))
        self.used = tuple(sorted(used))


# --- compile-time context and converters -----------------------------------------------

class Expr:
    """A run-time value in the generated f-string: ``{src:spec}``."""

    __slots__ = ("src", "spec")

    def __init__(self, src: str, spec: str = "") -> None:
        if "'" in src or '"' in src or "\\" in src:
            raise ValueError(f"generated expression must not contain quotes: {src}")
        self.src = src
        self.spec = spec


class Ctx:
    """What a converter sees while one signature is compiled."""

    def __init__(self, backend: "Backend", env: dict[str, Any], opts: Options) -> None:
        self.backend = backend
        self.env = env
        self.opts = opts
        self.ns = backend.ns

    def has(self, name: str) -> bool:
        return bool(self.env[flag_name(name)])

    def raw(self, name: str) -> str:
        return self.backend.raw(name)

    def kind(self, name: str) -> str:
        """``flow`` for model values, else the shape leaf kind (``ipv4``, ``string``...)."""
        return self.backend.kind(name)

    def const(self, obj: Any, hint: str = "c") -> str:
        """Put ``obj`` in the generated code's namespace; returns its name."""
        for k, v in self.ns.items():
            if v is obj and k.startswith("_"):
                return k
        name = f"_{hint}{len(self.ns)}"
        self.ns[name] = obj
        return name

    @property
    def family(self) -> int:
        return self.env["family"]


class Converter:
    """``fn(ctx, field) -> literal str | Expr`` and the other fields it reads."""

    __slots__ = ("fn", "deps")

    def __init__(self, fn: Callable[[Ctx, str], Any], deps: tuple[str, ...] = ()) -> None:
        self.fn = fn
        self.deps = deps


CONVERTERS: dict[str, Converter] = {}


def converter(name: str, deps: tuple[str, ...] = ()):
    """Register ``fn(ctx, field_name) -> str (literal) | Expr`` as a converter."""
    def deco(fn):
        CONVERTERS[name] = Converter(fn, deps)
        return fn
    return deco


def _value(ctx: Ctx, fname: str, spec: str):
    """A placeholder without (or with the ``x``) converter: the number itself."""
    if fname.startswith("$"):
        v = ctx.env[fname[1:]]
        return format(v if v is not None else 0, spec)
    if not ctx.has(fname):
        return format(FIELDS[fname].default, spec)
    kind = ctx.kind(fname)
    if kind == "string":
        return Expr(f"{ctx.const(CSTRING, 'str')}[{ctx.raw(fname)}]")
    if spec:
        return Expr(ctx.raw(fname), spec)
    return int_expr(ctx, ctx.raw(fname), kind)


def int_expr(ctx: Ctx, raw: str, kind: str = "flow") -> Expr:
    """Decimal text of an integer. Plain f-string formatting: measured over a 100k-entry
    dump it beats string-table lookups, whose memory accesses miss the cache."""
    return Expr(raw)


def addr_expr(ctx: Ctx, fname: str) -> str | Expr:
    """Address text of the entry's family (``inet_ntoa`` / ``inet_ntop``)."""
    v6 = ctx.family == 10
    if not ctx.has(fname):
        return "::" if v6 else "0.0.0.0"
    raw = ctx.raw(fname)
    if ctx.kind(fname) == "flow":
        memo = ADDR6_INT if v6 else ADDR4_INT
        return Expr(f"{ctx.const(memo, 'a')}[{raw}._ip]")
    memo = ADDR6_BYTES if v6 else ADDR4_BYTES
    return Expr(f"{ctx.const(memo, 'a')}[{raw}]")


def str_expr(ctx: Ctx, fname: str) -> str | Expr:
    if not ctx.has(fname):
        return ""
    if ctx.kind(fname) == "flow":
        return Expr(ctx.raw(fname))
    return Expr(f"{ctx.const(CSTRING, 'str')}[{ctx.raw(fname)}]")


def memo_expr(ctx: Ctx, fname: str, memo: Mapping, default: Any = 0) -> str | Expr:
    """``memo[value]``: looked up at compile time when the field is absent."""
    if not ctx.has(fname):
        return memo[default]
    return Expr(f"{ctx.const(memo, 'm')}[{ctx.raw(fname)}]")


def labels_expr(ctx: Ctx, fname: str, kind: str,
                render: Callable[[LabelMap, int | bytes], str]) -> str | Expr:
    lm = ctx.opts.labels
    assert lm is not None
    memo = lm.memo(kind, render)
    if not ctx.has(fname):
        return memo[0]
    return Expr(f"{ctx.const(memo, 'l')}[{ctx.raw(fname)}]")


def now_expr(ctx: Ctx) -> str:
    """Source of the current time in whole seconds (``time(NULL)``)."""
    clock = ctx.opts.clock or time.time
    return f"int({ctx.const(clock, 'clock')}())"


converter("addr")(addr_expr)
converter("str")(str_expr)
converter("tcp_state")(lambda ctx, f: memo_expr(ctx, f, TCP_STATES))
converter("sctp_state")(lambda ctx, f: memo_expr(ctx, f, SCTP_STATES))
converter("dccp_state")(lambda ctx, f: memo_expr(ctx, f, DCCP_STATES))
converter("l3name")(lambda ctx, f: l3_name(ctx.env[f[1:]]))
converter("l4name")(lambda ctx, f: l4_name(ctx.env[f[1:]]))


# --- backends -------------------------------------------------------------------------

class Backend:
    ns: dict[str, Any]

    def raw(self, name: str) -> str:
        raise NotImplementedError

    def kind(self, name: str) -> str:
        raise NotImplementedError


class FlowBackend(Backend):
    """Values come from a Flow ``f``; nested records are read into ``n_<slot>`` locals."""

    def __init__(self) -> None:
        self.ns = {}
        self.locals: set[str] = set()

    def raw(self, name: str) -> str:
        f = FIELDS[name]
        if f.attr is None:
            return f"f.{f.storage}"
        self.locals.add(f.slot)
        return f"{f.local}[{f.index}]"

    def kind(self, name: str) -> str:
        return "flow"

    def prelude(self) -> str:
        return "".join(f"    n_{s} = f.{s}\n" for s in sorted(self.locals))


class ShapeBackend(Backend):
    """Values come from the tuple ``v`` unpacked with a Shape's struct."""

    def __init__(self, leaves: Mapping[tuple, tuple[int, str, int]]) -> None:
        self.ns = {}
        self.leaves = leaves
        self.where: dict[str, tuple[int, str]] = {}
        prefixes = {p[:k] for p in leaves for k in (1, 2)}
        self.present: dict[str, bool] = {}
        for name, f in FIELDS.items():
            if f.default is None:   # a nest: present if any leaf lies inside it
                self.present[name] = f.paths[0] in prefixes
                continue
            for p in f.paths:
                hit = leaves.get(p)
                if hit is not None:
                    self.where[name] = (hit[0], hit[1])
                    self.present[name] = True
                    break
            else:
                self.present[name] = False

    def raw(self, name: str) -> str:
        return f"v[{self.where[name][0]}]"

    def kind(self, name: str) -> str:
        return self.where[name][1]


# --- compiling ------------------------------------------------------------------------

def _env(layout: Layout, present: Mapping[str, bool], family: int | None,
         oproto: int | None, rproto: int | None, opts: Options) -> dict[str, Any]:
    env: dict[str, Any] = {flag_name(n): False for n in FIELDS}
    for n in layout.used:
        env[flag_name(n)] = bool(present.get(n))
    fam = family if family is not None else 0
    env.update(
        family=fam, oproto=oproto if oproto is not None else 0,
        rproto=rproto if rproto is not None else 0,
        ofam=fam if env["orig"] else 0, rfam=fam if env["reply"] else 0,
        opt_extended=opts.extended, opt_id=opts.id, opt_ktimestamp=opts.ktimestamp,
        opt_timestamp=opts.timestamp, opt_labels=opts.labels is not None,
        opt_event=opts.event, IP=IP_FAMILIES, PORTS=PORT_PROTOS, ICMPS=ICMP_PROTOS, GRE=GRE,
    )
    env["sfam"] = env["ofam"] or env["rfam"]
    for k, code in layout.derived:
        env[k] = eval(code, {}, env)  # noqa: S307 - conditions come from the layout tables
    return env


def _pieces(layout: Layout, ctx: Ctx) -> list[str | Expr] | None:
    env = ctx.env
    if not eval(layout.valid, {}, env):  # noqa: S307
        return None
    out: list[str | Expr] = []
    for (_src, tmpl), on in zip(layout.rules, eval(layout.conditions, {}, env)):  # noqa: S307
        if not on:
            continue
        for lit, fname, spec in parse_template(tmpl):
            if lit:
                out.append(lit)
            if fname is None:
                continue
            conv = CONVERTERS.get(spec or "")
            piece = conv.fn(ctx, fname) if conv is not None else _value(ctx, fname, spec or "")
            if piece is not None and piece != "":
                out.append(piece)
    # merge adjacent literals
    merged: list[str | Expr] = []
    for p in out:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        else:
            merged.append(p)
    if layout.finish == "json":
        merged = [p.replace("{,", "{") if isinstance(p, str) else p for p in merged]
    return merged


def _literal(s: str) -> str:
    return (s.replace("\\", "\\\\").replace("'", "\\'").replace("{", "{{").replace("}", "}}")
            .replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r"))


def _fstring(pieces: list[str | Expr], finish: str) -> str:
    strip_runtime = False
    if finish == "strip" and pieces:
        last = pieces[-1]
        if isinstance(last, str):
            pieces = pieces[:-1] + [last[:-1]] if last else pieces[:-1]
        else:
            strip_runtime = True
    parts = []
    for p in pieces:
        if isinstance(p, str):
            parts.append(_literal(p))
        else:
            parts.append("{" + p.src + (":" + p.spec if p.spec else "") + "}")
    src = "f'" + "".join(parts) + "'"
    return src + "[:-1]" if strip_runtime else src


def signature_body(layout: Layout, backend: Backend, present: Mapping[str, bool],
                   family: int | None, oproto: int | None, rproto: int | None,
                   opts: Options) -> str:
    """The return expression for one signature; constants land in ``backend.ns``."""
    env = _env(layout, present, family, oproto, rproto, opts)
    pieces = _pieces(layout, Ctx(backend, env, opts))
    return "None" if pieces is None else _fstring(pieces, layout.finish)


def compile_signature(layout: Layout, backend: Backend, present: Mapping[str, bool],
                      family: int | None, oproto: int | None, rproto: int | None,
                      opts: Options, argname: str) -> tuple[Callable, str]:
    """Compile one signature: returns the function and its source (for debugging)."""
    expr = signature_body(layout, backend, present, family, oproto, rproto, opts)
    prelude = backend.prelude() if isinstance(backend, FlowBackend) else ""
    src = f"def fmt({argname}):\n{prelude}    return {expr}\n"
    ns = dict(backend.ns)
    exec(compile(src, f"<{layout.name} format>", "exec"), ns)  # noqa: S102 - generated
    ns["fmt"].source = src
    return ns["fmt"], src


# --- the two entry points -------------------------------------------------------------

def _flow_family(f) -> int:
    for t in (f.orig, f.reply):
        if t is not None and t.family is not None:
            return t.family
    return 0


_FLOW_CACHE: dict[tuple[Layout, Options], Callable] = {}


def flow_formatter(layout: Layout, opts: Options = DEFAULT) -> Callable[[Any], Any]:
    """A function ``fmt(flow) -> str`` for ``layout`` under ``opts`` (cached)."""
    key = (layout, opts)
    fn = _FLOW_CACHE.get(key)
    if fn is not None:
        return fn
    names = layout.used
    locals_ = sorted({FIELDS[n].slot for n in names if FIELDS[n].attr is not None})
    lines = ["def fmt(f):"]
    lines += [f"    n_{s} = f.{s}" for s in locals_]
    lines.append("    fam = f.family")
    lines.append("    if fam is None:")
    lines.append("        fam = _family(f)")
    sig = ["fam",
           "(n_orig.proto if n_orig is not None else None)",
           "(n_reply.proto if n_reply is not None else None)"]
    for n in names:
        fd = FIELDS[n]
        if fd.attr is None:
            sig.append(f"f.{fd.storage} is not None")
        else:
            sig.append(f"(n_{fd.slot} is not None and n_{fd.slot}[{fd.index}] is not None)")
    lines.append("    k = (" + ", ".join(sig) + ",)")
    lines.append("    fn = _tab.get(k)")
    lines.append("    if fn is None:")
    lines.append("        fn = _build(k)")
    lines.append("    return fn(f)")
    tab: dict[tuple, Callable] = {}

    def build(k: tuple) -> Callable:
        present = dict(zip(names, k[3:]))
        fn, _src = compile_signature(layout, FlowBackend(), present, k[0], k[1], k[2], opts, "f")
        if len(tab) > 4096:
            tab.clear()
        tab[k] = fn
        return fn

    ns: dict[str, Any] = {"_tab": tab, "_build": build, "_family": _flow_family}
    src = "\n".join(lines) + "\n"
    exec(compile(src, f"<{layout.name} dispatch>", "exec"), ns)  # noqa: S102 - from the fields
    fn = ns["fmt"]
    fn.source = src  # type: ignore[attr-defined]
    fn.signatures = tab  # type: ignore[attr-defined]  # signature -> fn (each with .source)
    if len(_FLOW_CACHE) > 256:
        _FLOW_CACHE.clear()
    _FLOW_CACHE[key] = fn
    return fn


_SHAPE_CACHE: dict[tuple[int, Layout, Options], tuple[Any, Callable]] = {}
MAX_INLINE_VARIANTS = 8
"""Per shape, this many (family, protocol) variants are inlined in the one function;
further ones go through a table."""


def shape_formatter(layout: Layout, shape, opts: Options = DEFAULT) -> Callable[[tuple, int], Any]:
    """A function ``fmt(values, family) -> str`` for messages of ``shape`` (cached).

    ``values`` is ``shape.struct.unpack_from(buf, off + 20)``, ``family`` the message's
    ``nfgen_family``. The layout-deciding values (family, protocol of each tuple) are
    tested inline: each new combination recompiles the function's code in place (its
    identity stays the same, so callers may keep it).
    """
    key = (id(shape), layout, opts)
    hit = _SHAPE_CACHE.get(key)
    if hit is not None and hit[0] is shape:
        return hit[1]
    backend = ShapeBackend(shape.leaves)   # one namespace for all variants
    present = backend.present
    oproto = backend.where.get("orig.proto")
    rproto = backend.where.get("reply.proto")
    okey = f"v[{oproto[0]}]" if oproto else None
    rkey = f"v[{rproto[0]}]" if rproto else None
    variants: dict[tuple, str] = {}       # (family, oproto, rproto) -> return expression
    tab: dict[tuple, Callable] = {}       # overflow beyond MAX_INLINE_VARIANTS
    ns = backend.ns

    def source() -> str:
        lines = ["def fmt(v, family):"]
        for (fam, op, rp), expr in variants.items():
            cond = [f"family == {fam}"]
            if okey:
                cond.append(f"{okey} == {op}")
            if rkey:
                cond.append(f"{rkey} == {rp}")
            lines.append(f"    if {' and '.join(cond)}:")
            lines.append(f"        return {expr}")
        lines.append("    return _miss(v, family)")
        return "\n".join(lines) + "\n"

    def miss(v: tuple, family: int) -> Any:
        k = (family, v[oproto[0]] if oproto else None, v[rproto[0]] if rproto else None)
        if len(variants) < MAX_INLINE_VARIANTS:
            variants[k] = signature_body(layout, backend, present, *k, opts)
            scratch: dict[str, Any] = {}
            src = source()
            exec(compile(src, f"<{layout.name} format>", "exec"), ns, scratch)  # noqa: S102
            fmt.__code__ = scratch["fmt"].__code__
            fmt.source = src  # type: ignore[attr-defined]
            return fmt(v, family)
        fn = tab.get(k)
        if fn is None:
            if len(tab) > 4096:
                tab.clear()
            fn = tab[k] = compile_signature(layout, ShapeBackend(shape.leaves), present, *k,
                                            opts, "v")[0]
        return fn(v)

    ns["_miss"] = miss
    scratch: dict[str, Any] = {}
    src = source()
    exec(compile(src, f"<{layout.name} format>", "exec"), ns, scratch)  # noqa: S102 - generated
    fmt = scratch["fmt"]
    fmt.source = src  # type: ignore[attr-defined]
    fmt.variants = variants  # type: ignore[attr-defined]
    fmt.overflow = tab  # type: ignore[attr-defined]  # variants beyond the inline ones
    if len(_SHAPE_CACHE) > 16384:
        _SHAPE_CACHE.clear()
    _SHAPE_CACHE[key] = (shape, fmt)
    return fmt


def source_for(layout: Layout, flow, opts: Options = DEFAULT) -> str:
    """The generated source for ``flow``'s signature (debugging aid)."""
    present = {}
    for n in layout.used:
        fd = FIELDS[n]
        if fd.attr is None:
            present[n] = getattr(flow, fd.storage) is not None
        else:
            rec = getattr(flow, fd.slot)
            present[n] = rec is not None and rec[fd.index] is not None
    fam = flow.family if flow.family is not None else _flow_family(flow)
    op = flow.orig.proto if flow.orig is not None else None
    rp = flow.reply.proto if flow.reply is not None else None
    return compile_signature(layout, FlowBackend(), present, fam, op, rp, opts, "f")[1]


STATUS_NAMES = {1 << bit: name for bit, name in enumerate(_BIT_NAMES)}


def status_names(status: int) -> list[str]:
    """Names of the set status bits in bit order (``BIT<n>`` for unnamed bits)."""
    return [STATUS_NAMES.get(1 << b, f"BIT{b}") for b in label_bits(status)]
