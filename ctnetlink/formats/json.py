"""``conntrack -o json`` (ours, not in the reference): one JSON object per line.

Same values as the text formats, with stable names; a member is present only when the
kernel sent the value (schema: ``json_schema.json``; :func:`validate` checks an object
against it with the standard library only). Members, in output order:

``event`` "new"|"update"|"destroy" (events only); ``l3proto``/``l3protonum`` ("ipv4", 2);
``l4proto``/``l4protonum`` ("tcp", 6; "unknown" for protocols without a name);
``timeout`` seconds; ``state`` TCP/SCTP/DCCP state name (each protocol's own table);
``orig`` and ``reply`` objects: ``src``, ``dst`` (address strings, inet_ntop form),
``sport``/``dport`` (tcp, udp, udplite, sctp, dccp), ``srckey``/``dstkey`` (gre, as
numbers), ``type``/``code``/``id`` (icmp, icmpv6), ``zone``, ``packets``/``bytes``;
``status`` list of status flag names in bit order (``BIT<n>`` for unnamed bits);
``mark``, ``secmark``, ``secctx``, ``zone``; ``start_ns``/``stop_ns`` (CTA_TIMESTAMP, ns
since the epoch); ``helper``, ``use``, ``id``; ``labels`` {``names``: named set bits,
``bits``: all set bit numbers} when a label map is loaded; ``event_ns`` (kernel event
timestamp, recent kernels); ``portid``/``progname`` (events caused by a process's request:
the ``[USERSPACE]`` suffix of the text formats, added by ``conntrack -E``). Built by the same layout compiler as the other formats, so
the Flow and shape paths give identical text.
"""
from __future__ import annotations

import json as _json

TYPE_CHECKING = False  # typing is not imported at run time: the CLI must start fast
if TYPE_CHECKING:
    from typing import Any, Callable

from ..model import Flow
from . import _engine as E
from ._engine import Ctx, Expr, LabelMap, Memo, Options, converter

EVENT_NAMES = {1: "new", 2: "update", 3: "destroy"}
_STATUS = Memo(lambda s: _json.dumps(E.status_names(s), separators=(",", ":")))
_JSTR = Memo(lambda s: _json.dumps(s, ensure_ascii=False))
_JSTRB = Memo(lambda b: _JSTR[E.CSTRING[b]])


@converter("event_name")
def _event(ctx: Ctx, _f: Any) -> str:
    return EVENT_NAMES.get(ctx.opts.event, "")


@converter("json_status")
def _status(ctx: Ctx, f: str):
    return E.memo_expr(ctx, f, _STATUS)


@converter("jstr")
def _jstr(ctx: Ctx, f: str):
    if not ctx.has(f):
        return '""'
    memo = _JSTR if ctx.kind(f) == "flow" else _JSTRB
    return Expr(f"{ctx.const(memo, 'js')}[{ctx.raw(f)}]")


def labels_json(lm: LabelMap, raw: int | bytes) -> str:
    return _json.dumps({"names": lm.named(raw), "bits": E.label_bits(raw)},
                       separators=(",", ":"), ensure_ascii=False)


@converter("labels_json")
def _labels(ctx: Ctx, f: str):
    return E.labels_expr(ctx, f, "json", labels_json)


def _tuple(d: str, p: str) -> list[tuple[str, str]]:
    return [
        (d, f',"{d}":{{{{'),
        (f"{d} and family in IP", f',"src":"{{{d}.src:addr}}","dst":"{{{d}.dst:addr}}"'),
        (f"{d} and {p} in PORTS", f',"sport":{{{d}.sport}},"dport":{{{d}.dport}}'),
        (f"{d} and {p} == GRE", f',"srckey":{{{d}.sport}},"dstkey":{{{d}.dport}}'),
        (f"{d} and {p} in ICMPS",
         f',"type":{{{d}.icmp_type}},"code":{{{d}.icmp_code}},"id":{{{d}.icmp_id}}'),
        (f"{d} and {d}_zone", f',"zone":{{{d}.zone}}'),
        (f"{d} and counters_{d}_packets and counters_{d}_bytes",
         f',"packets":{{counters_{d}.packets}},"bytes":{{counters_{d}.bytes}}'),
        (d, "}}"),
    ]


LAYOUT = E.Layout("json", [
    ("True", "{{"),
    ("opt_event", ',"event":"{:event_name}"'),
    ("orig", ',"l3proto":"{$family:l3name}","l3protonum":{$family}'),
    ("orig and orig_proto", ',"l4proto":"{$oproto:l4name}","l4protonum":{$oproto}'),
    ("timeout", ',"timeout":{timeout}'),
    ("tcp_state", ',"state":"{tcp.state:tcp_state}"'),
    ("sctp_state and not tcp_state", ',"state":"{sctp.state:sctp_state}"'),
    ("dccp_state and not tcp_state and not sctp_state", ',"state":"{dccp.state:dccp_state}"'),
    *_tuple("orig", "oproto"),
    *_tuple("reply", "rproto"),
    ("status", ',"status":{status:json_status}'),
    ("mark", ',"mark":{mark}'),
    ("secmark", ',"secmark":{secmark}'),
    ("secctx", ',"secctx":{secctx:jstr}'),
    ("zone", ',"zone":{zone}'),
    ("timestamp_start", ',"start_ns":{timestamp.start}'),
    ("timestamp_stop", ',"stop_ns":{timestamp.stop}'),
    ("helper", ',"helper":{helper:jstr}'),
    ("use", ',"use":{use}'),
    ("id", ',"id":{id}'),
    ("opt_labels and labels", ',"labels":{labels:labels_json}'),
    ("event_timestamp", ',"event_ns":{event_timestamp}'),
    ("True", "}}"),
], finish="json")
"""The JSON object as rules: (condition, template), in output order."""


def flow_formatter(opts: Options = E.DEFAULT) -> Callable[[Flow], str]:
    """``fmt(flow) -> JSON text`` (one line, no newline) for ``opts``; cached."""
    return E.flow_formatter(LAYOUT, opts)


def format_flow(flow: Flow, opts: Options = E.DEFAULT) -> str:
    """The JSON object of ``flow`` as one line of text (no newline)."""
    return E.flow_formatter(LAYOUT, opts)(flow)


def compile_for_shape(shape: Any, opts: Options = E.DEFAULT) -> Callable[[tuple, int], str]:
    """``fmt(values, family) -> JSON text`` for messages of ``shape`` (see text.py)."""
    return E.shape_formatter(LAYOUT, shape, opts)


# --- schema and validation ------------------------------------------------------------

_SCHEMA: dict | None = None


def schema() -> dict:
    """The JSON-Schema-like description of one object (``json_schema.json``)."""
    global _SCHEMA
    if _SCHEMA is None:
        from importlib import resources

        text = resources.files(__package__).joinpath("json_schema.json").read_text("utf8")
        _SCHEMA = _json.loads(text)
    return _SCHEMA


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


def _check(obj: Any, sch: dict, where: str, defs: dict) -> None:
    if "$ref" in sch:
        sch = defs[sch["$ref"].rsplit("/", 1)[-1]]
    t = sch.get("type")
    if t == "integer":
        if not isinstance(obj, int) or isinstance(obj, bool):
            raise ValueError(f"{where}: expected integer, got {obj!r}")
        if "minimum" in sch and obj < sch["minimum"]:
            raise ValueError(f"{where}: {obj} < minimum {sch['minimum']}")
        if "maximum" in sch and obj > sch["maximum"]:
            raise ValueError(f"{where}: {obj} > maximum {sch['maximum']}")
    elif t is not None and not isinstance(obj, _TYPES[t]):
        raise ValueError(f"{where}: expected {t}, got {type(obj).__name__}")
    if "enum" in sch and obj not in sch["enum"]:
        raise ValueError(f"{where}: {obj!r} not one of {sch['enum']}")
    if t == "object":
        props = sch.get("properties", {})
        for name in sch.get("required", ()):
            if name not in obj:
                raise ValueError(f"{where}: missing {name!r}")
        for name, value in obj.items():
            if name not in props:
                if sch.get("additionalProperties", True) is False:
                    raise ValueError(f"{where}: unexpected member {name!r}")
                continue
            _check(value, props[name], f"{where}.{name}", defs)
    elif t == "array":
        for i, item in enumerate(obj):
            _check(item, sch.get("items", {}), f"{where}[{i}]", defs)


def validate(obj: Any) -> None:
    """Raise ValueError unless ``obj`` (a parsed line) matches the schema (stdlib only).

    Supports the subset the schema uses: type, properties, required,
    additionalProperties false, items, enum, minimum, maximum, ``$ref`` to ``$defs``.
    """
    sch = schema()
    _check(obj, sch, "$", sch.get("$defs", {}))


__all__ = ["LAYOUT", "EVENT_NAMES", "format_flow", "flow_formatter", "compile_for_shape",
           "schema", "validate"]
