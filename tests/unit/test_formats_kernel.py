"""Replay of real kernel messages against the reference tool's output (no root needed).

``data/formats_kernel.json`` was recorded by ``tests/helpers/capture_formats.py`` (run it as root to re-record) in a private
network namespace: the conntrack table, expectations, statistics and events as raw
netlink messages, and what ``/usr/sbin/conntrack`` 1.4.7 printed for the same table with
each output option. Every entry is formatted through both paths (Flow objects and the
shape decoder's value tuples) and compared line by line; only the remaining-timeout
numbers and ``delta-time`` values are normalised (the two dumps ran a moment apart).
"""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("utc")

from ctnetlink.decode import Decoder, decode_expect
from ctnetlink.formats import expect as fexpect
from ctnetlink.formats import save, stats, text, xml
from ctnetlink.formats._engine import Options

DATA = Path(__file__).resolve().parent / "data" / "formats_kernel.json"
HDR = struct.Struct("=IHHII")


def messages(hexes):
    """(bytes, offset, length, type, flags) of every message in the recorded datagrams."""
    for h in hexes:
        buf = bytes.fromhex(h)
        off = 0
        while off + 16 <= len(buf):
            ln, mtype, flags, _seq, _pid = HDR.unpack_from(buf, off)
            if ln < 16:
                break
            if mtype >= 0x100:
                yield buf, off, ln, mtype, flags
            off += (ln + 3) & ~3


_TEXT_TIMEOUT = re.compile(r"^(\s*\[\w+\] )?((?:ipv4|ipv6|unknown) +\d+ )?(\S+ +\d+ )(\d+) ")


def normalize(line: str) -> str:
    line = re.sub(r" \[USERSPACE\] portid=\d+( progname=\S+)?$", "", line)
    line = re.sub(r"delta-time=\d+", "delta-time=D", line)
    line = re.sub(r"<deltatime>\d+</deltatime>", "<deltatime>D</deltatime>", line)
    line = re.sub(r"<timeout>\d+</timeout>", "<timeout>T</timeout>", line)
    line = re.sub(r"^(-[AUD] )-t \d+ ", r"\1-t T ", line)
    line = re.sub(r"^(\s*\[\w+\] )?\d+ proto=", r"\1T proto=", line)   # expectations
    if not line.startswith(("<", "-")) and "proto=" not in line:
        m = _TEXT_TIMEOUT.match(line)
        if m and (m.group(2) or not line.lstrip().startswith(("ipv4", "ipv6"))):
            line = line[:m.start(4)] + "T" + line[m.end(4):]
    return line


def options_for(opt: str, labels: dict, event: int | None = None) -> tuple[str, Options]:
    words = set(filter(None, opt.split(",")))
    kind = "xml" if "xml" in words else "save" if "save" in words else "text"
    return kind, Options(extended="extended" in words, id="id" in words,
                         ktimestamp="ktimestamp" in words,
                         labels=labels if "labels" in words else None, event=event,
                         clock=fixed_clock)


def fixed_clock() -> float:
    """delta-time is normalised anyway; a fixed clock keeps both paths in step."""
    return 1_795_000_000.0


def render(kind: str, buf: bytes, off: int, ln: int, opts: Options, dec: Decoder) -> str:
    mod = {"text": text, "xml": xml, "save": save}[kind]
    shape = dec.shape(buf, off, ln)
    values = shape.struct.unpack_from(buf, off + 20)
    fast = mod.compile_for_shape(shape, opts)(values, buf[off + 16])
    slow = mod.format_flow(dec.decode(buf, off, ln), opts)
    assert fast == slow
    return fast


def expected_lines(output: str, kind: str, closing: bool = True) -> list[str]:
    lines = output.splitlines()
    if kind == "xml" and lines:
        assert lines[0] == '<?xml version="1.0" encoding="utf-8"?>'
        assert lines[1] in ("<conntrack>", "<expect>")
        lines = lines[2:]
        if closing:
            assert lines[-1] in ("</conntrack>", "</expect>")
            lines = lines[:-1]
    return lines


def check_list(data: dict) -> int:
    labels = {int(k): v for k, v in data["labels"].items()}
    msgs = list(messages(data["list"]["messages"]))
    dec = Decoder()
    n = 0
    for opt, output in data["list"]["outputs"].items():
        kind, opts = options_for(opt, labels)
        want = expected_lines(output, kind)
        got = [render(kind, b, o, ln, opts, dec) for b, o, ln, _t, _f in msgs]
        assert len(got) == len(want), opt
        for g, w in zip(got, want):
            assert normalize(g) == normalize(w), f"-o {opt}"
            n += 1
    return n


def check_events(data: dict) -> int:
    labels = {int(k): v for k, v in data["labels"].items()}
    msgs = list(messages(data["events"]["datagrams"]))
    dec = Decoder()
    n = 0
    for opt, output in data["events"]["outputs"].items():
        want = expected_lines(output, "xml" if "xml" in opt else "text")
        got = []
        for b, o, ln, mtype, flags in msgs:
            kind, opts = options_for(opt, labels, text.event_type(mtype, flags))
            got.append(render(kind, b, o, ln, opts, dec))
        assert len(got) == len(want), opt
        for g, w in zip(got, want):
            assert normalize(g) == normalize(w), f"-E -o {opt}"
            n += 1
    return n


def check_expect(data: dict) -> int:
    n = 0
    e = data["expect"]
    for key, fam_msgs in (("", "messages4"), ("xml", "messages4"), ("ipv6", "messages6"),
                          ("ipv6,xml", "messages6")):
        exps = [decode_expect(b, o, ln) for b, o, ln, _t, _f in messages(e[fam_msgs])]
        is_xml = key.endswith("xml")
        want = expected_lines(e["outputs"][key], "xml" if is_xml else "text")
        got = [fexpect.format_expect_xml(x) if is_xml else fexpect.format_expect(x) for x in exps]
        assert [normalize(g) for g in got] == [normalize(w) for w in want]
        n += len(got)
    return n


def check_stats(data: dict) -> int:
    s = data["stats"]
    got = "".join(stats.format_cpu_stats(b, o) for b, o, _l, _t, _f in messages(s["messages"]))
    assert got == s["output"]
    got = "".join(stats.format_cpu_stats(b, o, expect=True)
                  for b, o, _l, _t, _f in messages(s["exp_messages"]))
    assert got == s["exp_output"]
    (b, o, _l, _t, _f), = messages(s["count_messages"])
    assert stats.count_line(stats.parse_global_entries(b, o)) == s["count_output"]
    assert "".join(stats.proc_stats_lines(s["proc"])) == s["proc_output"]
    return 4


def check_all(data: dict) -> None:
    assert check_list(data) > 0
    assert check_events(data) > 0
    assert check_expect(data) > 0
    check_stats(data)


@pytest.fixture(scope="module")
def data() -> dict:
    return json.loads(DATA.read_text())


def test_list_matches_reference(data):
    assert check_list(data) >= 28 * len(data["list"]["outputs"])


def test_events_match_reference(data):
    assert check_events(data) >= 7


def test_expectations_match_reference(data):
    assert check_expect(data) == 4


def test_stats_match_reference(data):
    check_stats(data)


def test_capture_covers_the_interesting_cases(data):
    out = data["list"]["outputs"][""]
    for needle in ("SYN_SENT2", "zone-orig=", "zone-reply=", "srckey=0x10", "unknown  200",
                   "icmpv6   58", "::ffff:1.2.3.4", "::1.2.3.4", "helper=ftp", "[ASSURED]",
                   "udplite  136", "sctp     132"):
        assert needle in out
    assert "labels=eth0-in,high" in data["list"]["outputs"]["labels"]
    assert re.search(r" labels$", data["list"]["outputs"]["labels"], re.M)
    assert " -g 3.3.3.3 " in data["list"]["outputs"]["save"]
    assert " -n 4.4.4.4 " in data["list"]["outputs"]["save"]
