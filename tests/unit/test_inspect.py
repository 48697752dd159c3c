"""Generated code is inspectable: the printed source is the code that runs.

For every conntrack entry of the fixture corpus, the source a shape prints
(``Shape.source()``), executed in the builder's namespace, defines the same struct, header
check and builder (it builds an equal ``Flow``); every formatter's ``source`` (shape values
and Flow paths, text/xml/save/json) executed in its namespace prints the same line; and
``python -m ctnetlink.inspect`` / ``conntrack-fixture source`` print a whole compilable
module whose "it prints" lines are lines the reference ``conntrack`` printed.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ctnetlink.decode import Decoder
from ctnetlink.formats import Options
from ctnetlink.formats import json as json_format
from ctnetlink.formats import save as save_format
from ctnetlink.formats import text as text_format
from ctnetlink.formats import xml as xml_format
from ctnetlink.formats.text import event_type
from ctnetlink.inspect import formatter_source
from nfnl.message import iter_messages
from nfnl.pcap import RECEIVED, read_pcap

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
FORMATS = (text_format, xml_format, save_format, json_format)


def entries() -> list[tuple[bytes, int, int, int | None]]:
    """(datagram, offset, length, event type or None) of every received conntrack entry
    of the corpus."""
    out = []
    for pcap in sorted(FIXTURES.glob("*.pcap")):
        for p in read_pcap(pcap):
            if p.direction != RECEIVED:
                continue
            try:
                headers = list(iter_messages(p.data))
            except Exception:  # noqa: BLE001 - the corpus holds malformed recordings too
                continue
            for off, ln, mtype, flags, seq, _ in headers:
                if mtype in (0x100, 0x101, 0x102) and ln > 20:
                    out.append((p.data, off, ln, event_type(mtype, flags) if seq == 0 else None))
    return out


@pytest.fixture(scope="module")
def corpus():
    found = entries()
    assert len(found) > 300, "the fixture corpus is missing"
    decoder = Decoder(False)
    by_shape: dict[int, tuple] = {}
    for buf, off, ln, event in found:
        shape, values = decoder.values(buf, off, ln)
        by_shape.setdefault(id(shape), (shape, []))[1].append((buf, off, values, event))
    assert len(by_shape) >= 20
    return list(by_shape.values())


def test_a_shape_source_is_the_shape(corpus) -> None:
    for shape, msgs in corpus:
        src = shape.source()
        ns = dict(shape.build.__globals__)
        exec(compile(src, "<shape>", "exec"), ns)  # noqa: S102
        assert ns["STRUCT"].format == shape.struct.format
        assert (ns["MASK"], ns["EXPECTED"]) == (shape.mask, shape.expected)
        for buf, off, values, _ in msgs:
            body = int.from_bytes(buf[off + 20:off + 20 + shape.size], "little")
            assert body & ns["MASK"] == ns["EXPECTED"]
            again = ns["build"](ns["STRUCT"].unpack_from(buf, off + 20), buf[off + 16])
            assert repr(again) == repr(shape.build(values, buf[off + 16]))


def from_source(fn):
    """The function ``fn.source`` defines, executed in ``fn``'s namespace (cached)."""
    again = SOURCED.get(id(fn))
    if again is None or again[0] is not fn or again[1] != fn.source:
        ns = {**fn.__globals__, "_miss": missed}  # the variant must be in the source
        exec(compile(fn.source, "<formatter>", "exec"), ns)  # noqa: S102
        again = SOURCED[id(fn)] = (fn, fn.source, ns["fmt"])
    return again[2]


SOURCED: dict[int, tuple] = {}


def missed(*args):
    raise AssertionError("the printed source lacks a variant the formatter has compiled")


@pytest.mark.parametrize("mod", FORMATS, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_a_formatter_source_prints_what_the_formatter_prints(corpus, mod) -> None:
    # a fixed clock: `deltatime` counts from now, and two readings may straddle a second
    opts = Options(extended=True, id=True, clock=lambda: 1_800_000_000.0)
    compared = 0
    for shape, msgs in corpus:
        for buf, off, values, event in msgs:
            o = opts.replace(event=event)
            family = buf[off + 16]
            fmt = mod.compile_for_shape(shape, o)
            line = fmt(values, family)
            assert from_source(fmt)(values, family) == line
            flow = shape.build(values, family)
            dispatch = mod.flow_formatter(o)
            assert dispatch(flow) == line
            keys: list = []
            table = dispatch.signatures

            class Recording(dict):
                def get(self, key, default=None):
                    keys.append(key)
                    return table.get(key, default)

            ns = {**dispatch.__globals__, "_tab": Recording()}
            exec(compile(dispatch.source, "<dispatch>", "exec"), ns)  # noqa: S102
            assert ns["fmt"](flow) == line
            assert from_source(table[keys[-1]])(flow) == line
            compared += 1
    assert compared > 300


def run_inspect(*argv: str, tool: tuple[str, ...] = ("-m", "ctnetlink.inspect")) -> str:
    r = subprocess.run([sys.executable, *tool, *argv], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("name, output, flow", [
    ("list-extended", "extended", False),
    ("events-nat", "text", True),
    ("list-save", "save", False),
])
def test_inspect_prints_a_module_of_the_code_that_printed_the_fixture(name, output, flow) -> None:
    out = run_inspect(str(FIXTURES / f"{name}.pcap"), "-o", output, *(["--flow"] if flow else []))
    compile(out, f"<inspect {name}>", "exec")
    assert "\ndef build(v, family):\n" in out
    assert ("\ndef fmt(f):\n" if flow else "\ndef fmt(v, family):\n") in out
    printed = []
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line == "# it prints:":
            for x in lines[i + 1:]:
                if not x.startswith("#   "):
                    break
                printed.append(x[4:])
    recorded = json.loads((FIXTURES / f"{name}.json").read_text())["stdout"].splitlines()
    assert printed and set(printed) <= set(recorded)


def test_conntrack_fixture_source_is_the_same_command() -> None:
    pcap = str(FIXTURES / "list-nat.pcap")
    code = "import sys; from conntrack_tools.fixture.cli import main; sys.exit(main())"
    assert run_inspect("source", pcap, "-o", "xml", tool=("-c", code)) == \
        run_inspect(pcap, "-o", "xml")


def test_formatter_source_lists_every_generated_function() -> None:
    fmt = text_format.flow_formatter(Options(id=True))
    assert "def fmt(f):" in formatter_source(fmt) and "# names it uses:" in formatter_source(fmt)
