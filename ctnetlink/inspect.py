"""The code ctnetlink generates at run time, printed: shape decoders and output formatters.

The hot paths run code generated from the schema tables: :mod:`ctnetlink.decode` compiles
one struct format and one builder per message layout ("shape"), and the output formats
(:mod:`ctnetlink.formats`) compile one formatter per shape and options. Every generated
function keeps its text in ``source``; this module collects it for the messages of a
recording, exactly as ``conntrack`` would generate it::

    python -m ctnetlink.inspect FILE.pcap [-o FORMAT[,extended,id,ktimestamp,timestamp]]
                                [--flow]

prints, for each distinct shape among the received conntrack and expectation messages,
the shape's source (attribute tree, struct, header check, builder) and the source of the
chosen format's formatter (``--flow``: the one formatting ``Flow`` objects instead of raw
shape values), followed by the lines it prints as comments. The whole output is one
compilable Python module; the names the code uses live in each function's
``__globals__``. ``conntrack-fixture source FILE.pcap`` runs the same.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Iterable, Iterator

from nfnl.errors import NetlinkDecodeError
from nfnl.message import iter_messages
from nfnl.pcap import RECEIVED, Packet, read_pcap

from .decode import Decoder, Shape
from .formats import Options
from .formats import json as json_format
from .formats import save as save_format
from .formats import text as text_format
from .formats import xml as xml_format
from .formats.text import event_type

FORMATS = {"text": text_format, "xml": xml_format, "save": save_format, "json": json_format}
FLAGS = ("extended", "id", "ktimestamp", "timestamp")
_CT, _EXP = 1, 2  # nfnetlink subsystems: conntrack entries, expectations
_ENTRY_TYPES = {0, 1, 2, 3, 6, 7}  # NEW GET DELETE GET_CTRZERO GET_DYING GET_UNCONFIRMED
EVENT_NAMES = {None: "dump/get reply", 1: "NEW event", 2: "UPDATE event", 3: "DESTROY event"}


def _short(value: Any) -> str:
    if isinstance(value, dict):
        fn = getattr(value, "fn", None)
        what = f" of {getattr(fn, '__qualname__', fn)}" if fn is not None else ""
        return f"{type(value).__name__}{what} (a table, {len(value)} entries so far)"
    if callable(value):
        name = getattr(value, "__qualname__", type(value).__name__)
        return f"<{getattr(value, '__module__', '') or ''}.{name}>".replace("<.", "<")
    text = repr(value)
    return text if len(text) <= 70 else text[:67] + "..."


def names_used(fn: Callable[..., Any]) -> str:
    """Comment lines giving the global names ``fn``'s code uses (constants, caches and
    helpers the generator put in its namespace)."""
    g = fn.__globals__
    rows = [f"#   {n} = {_short(g[n])}" for n in sorted(set(fn.__code__.co_names))
            if n in g and not n.startswith("__")]
    return "\n".join(["# names it uses:", *rows]) + "\n" if rows else ""


def formatter_source(fn: Callable[..., Any]) -> str:
    """The current source of a generated formatter, each function followed by the names
    it uses: a shape formatter's one function (with every variant met so far inlined)
    and its overflow variants, or a Flow formatter's dispatcher and the function of every
    signature met so far."""
    fns = [fn, *getattr(fn, "overflow", {}).values(), *getattr(fn, "signatures", {}).values()]
    return "\n".join(f.source.rstrip("\n") + "\n\n" + names_used(f)  # type: ignore[attr-defined]
                     for f in fns)


def parse_output(spec: str) -> tuple[str, Options]:
    """``"xml,extended,id"`` -> ("xml", Options(extended=True, id=True)) (``-o`` words)."""
    words = [w for w in spec.split(",") if w]
    fmt = "text"
    flags: dict[str, bool] = {}
    for w in words:
        if w in FORMATS:
            fmt = w
        elif w in FLAGS:
            flags[w] = True
        else:
            raise ValueError(f"unknown output word {w!r} (formats: {', '.join(FORMATS)}; "
                             f"flags: {', '.join(FLAGS)})")
    return fmt, Options(**flags)


class _Seen:
    __slots__ = ("kind", "shape", "event", "first", "count", "lines", "fmt", "values")

    def __init__(self, kind: int, shape: Shape, event: int | None, first: str) -> None:
        self.kind = kind
        self.shape = shape
        self.event = event
        self.first = first
        self.count = 0
        self.lines: list[str] = []
        self.fmt: Callable[..., Any] | None = None
        self.values: list[tuple] = []


def sources(packets: Iterable[Packet], output: str = "text", opts: Options | None = None,
            flow: bool = False) -> Iterator[str]:
    """The generated code for the received conntrack/expectation messages of ``packets``,
    one text block per distinct (shape, event type); see the module docstring."""
    opts = opts or Options()
    mod = FORMATS[output]
    decoders = {_CT: Decoder(False), _EXP: Decoder(True)}
    seen: dict[tuple[int, int, int | None], _Seen] = {}
    bad: list[str] = []
    for n, p in enumerate(packets, 1):
        if p.direction != RECEIVED:
            continue
        try:
            headers = list(iter_messages(p.data))
        except NetlinkDecodeError as e:
            bad.append(f"packet #{n}: {e}")
            continue
        for m, (off, ln, mtype, flags, seq, _pid) in enumerate(headers, 1):
            kind = mtype >> 8
            if kind not in decoders or mtype & 0xFF not in _ENTRY_TYPES or ln <= 20:
                continue
            if kind == _EXP and mtype & 0xFF > 2:
                continue
            try:
                shape, values = decoders[kind].values(p.data, off, ln)
            except NetlinkDecodeError as e:
                bad.append(f"packet #{n} message {m}: {e}")
                continue
            event = event_type(mtype, flags) if seq == 0 else None
            entry = seen.get((kind, id(shape), event))
            if entry is None:
                entry = seen[(kind, id(shape), event)] = _Seen(
                    kind, shape, event, f"packet #{n} message {m}")
            entry.count += 1
            family = p.data[off + 16]
            if kind == _EXP:
                continue
            o = opts if event is None else opts.replace(event=event)
            if flow:
                entry.fmt = entry.fmt or mod.flow_formatter(o)
                line = entry.fmt(shape.build(values, family))
            else:
                entry.fmt = entry.fmt or mod.compile_for_shape(shape, o)
                line = entry.fmt(values, family)
            if line is not None and len(entry.lines) < 3:
                entry.lines.append(line)
    for i, e in enumerate(seen.values(), 1):
        what = "conntrack entry" if e.kind == _CT else "expectation"
        out = [f"# {'=' * 86}",
               f"# shape {i}: {what}, {EVENT_NAMES[e.event]}, {e.count} message(s), first: "
               f"{e.first}",
               f"# {'=' * 86}",
               e.shape.source()]
        if e.kind == _EXP:
            out.append("# (expectations are formatted by ctnetlink.formats.expect: no "
                       "generated code)\n")
        elif e.fmt is not None:
            o = opts if e.event is None else opts.replace(event=e.event)
            path = "Flow objects" if flow else "raw shape values"
            out.append(f"# --- {output} formatter for {path}, {o!r} ---")
            out.append(formatter_source(e.fmt))
            out.append("# it prints:" if e.lines else "# it prints nothing for this shape")
            out += [f"#   {line}" for line in e.lines]
            out.append("")
        yield "\n".join(out)
    if bad:
        yield "\n".join(f"# undecodable: {b}" for b in bad) + "\n"
    if not seen:
        yield "# no received conntrack or expectation message in this recording\n"




def main(argv: list[str] | None = None, prog: str = "python -m ctnetlink.inspect") -> int:
    """Print :func:`sources` of a pcap (see the module docstring)."""
    import argparse

    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("file", help="a LINKTYPE_NETLINK capture (pcap or pcapng)")
    ap.add_argument("-o", "--output", default="text",
                    help="format and flags as for conntrack -o (default text)")
    ap.add_argument("--flow", action="store_true",
                    help="the formatter of Flow objects instead of raw shape values")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        fmt, opts = parse_output(args.output)
        packets = list(read_pcap(args.file))
    except (ValueError, OSError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    try:
        for block in sources(packets, fmt, opts, flow=args.flow):
            sys.stdout.write(block + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
        return 141
    return 0


if __name__ == "__main__":
    sys.exit(main())
