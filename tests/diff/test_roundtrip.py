"""``-o save`` read back by ``-R``, and ``-o json`` checked against the text formats.

Round trip: the rich table's ``-L -o save`` lines, fed to ``-R -`` of the reference and of
ours in a fresh namespace, must create the same table (listed by the reference), and
that table's own ``-o save`` listing must give back the lines that were saved (labels,
marks, helpers and counters are not saved, spec §11).

JSON: every line of our ``-L -o json`` (and ``-E -o json``) is valid against the
documented schema (``ctnetlink.formats.json.validate``), and rendering its values in the
reference's text layout gives the reference's own ``-o extended,id,labels`` line.
"""
from __future__ import annotations

import json
import time

import pytest

from harness import assert_same, normalize, same_output, sorted_lines


def _save_lines(data: bytes) -> list[str]:
    return sorted_lines(data)


@pytest.fixture(scope="module")
def saved(rich_session) -> bytes:
    """The rich table as ``-o save`` lines, without DCCP entries: this kernel has no DCCP
    tracker, so they carry no state and their ``-A -p dccp`` line (no ``--state``) is
    refused by both programs' parsers, which would stop the whole -R file."""
    _, runner, _ = rich_session
    ref, ours = runner.ref("-L", "-o", "save"), runner.ours("-L", "-o", "save")
    assert_same(ref, ours)
    return b"".join(line + b"\n" for line in ref.out.splitlines() if b" -p dccp" not in line)


def test_save_round_trip(saved: bytes, fresh) -> None:
    ns, runner = fresh
    ref = runner.ref("-R", "-", stdin=saved)
    ref_table = runner.ref("-L", "-o", "save")
    runner.ref("-F")
    ours = runner.ours("-R", "-", stdin=saved)
    our_table = runner.ref("-L", "-o", "save")
    assert_same(ref, ours)
    assert _save_lines(our_table.out) == _save_lines(ref_table.out)
    # what was saved comes back (timeouts aside)
    assert _save_lines(our_table.out) == _save_lines(saved)


def test_save_round_trip_per_family(rich, fresh) -> None:
    """``-L -f ipv6 -p tcp -o save | -R -``: only those come back."""
    ns, runner = fresh
    six = rich[1].ours("-L", "-f", "ipv6", "-p", "tcp", "-o", "save")
    assert six.status == 0 and six.out
    ours = runner.ours("-R", "-", stdin=six.out)
    assert ours.status == 0 and ours.out == ours.err == b""
    table = runner.ref("-L", "-o", "save")
    assert _save_lines(table.out) == _save_lines(six.out)


def test_save_round_trip_delete(saved: bytes, fresh) -> None:
    """``-D -o save`` prints ``-D`` lines; fed back with ``-A`` they re-create the entries."""
    ns, runner = fresh
    runner.ref("-R", "-", stdin=saved)
    before = runner.ref("-L", "-o", "save")
    deleted = runner.ours("-D", "-o", "save")
    assert deleted.status == 0
    lines = deleted.out.decode().splitlines()
    assert len(lines) == len(before.out.splitlines())
    assert all(line.startswith("-D -t ") for line in lines)
    again = "".join("-A" + line[2:] + "\n" for line in lines).encode()
    r = runner.ours("-R", "-", stdin=again)
    assert r.status == 0, r.text()
    after = runner.ref("-L", "-o", "save")
    assert _save_lines(after.out) == _save_lines(before.out)


# --- JSON ---------------------------------------------------------------------------------

def _tuple_text(t: dict, proto: str) -> str:
    out = f"src={t['src']} dst={t['dst']} " if "src" in t else ""
    if "sport" in t:
        out += f"sport={t['sport']} dport={t['dport']} "
    elif "srckey" in t:
        out += f"srckey={t['srckey']:#x} dstkey={t['dstkey']:#x} "
    elif "type" in t:
        out += f"type={t['type']} code={t['code']} id={t['id']} "
    return out


def json_to_text(obj: dict, now: int | None = None) -> str:
    """The reference's ``-o extended,id,labels`` line (§7.1) made from one JSON object."""
    now = int(time.time()) if now is None else now
    s = ""
    if "event" in obj:
        s += {"new": "    [NEW] ", "update": " [UPDATE] ", "destroy": "[DESTROY] "}[obj["event"]]
    if "l3proto" in obj:
        s += f"{obj['l3proto']:<8} {obj['l3protonum']} "
    if "l4proto" in obj:
        s += f"{obj['l4proto']:<8} {obj['l4protonum']} "
    if "timeout" in obj:
        s += f"{obj['timeout']} "
    if "state" in obj:
        s += f"{obj['state']} "
    status = obj.get("status")
    for d in ("orig", "reply"):
        t = obj.get(d)
        if t is None:
            continue
        s += _tuple_text(t, obj.get("l4proto", ""))
        if "zone" in t:
            s += f"zone-{d}={t['zone']} "
        if "packets" in t and d == "orig":
            s += f"packets={t['packets']} bytes={t['bytes']} "
        if d == "orig" and status is not None and "SEEN_REPLY" not in status:
            s += "[UNREPLIED] "
        if "packets" in t and d == "reply":
            s += f"packets={t['packets']} bytes={t['bytes']} "
    if status is not None:
        for flag in ("HW_OFFLOAD", "OFFLOAD", "ASSURED"):
            if flag in status:
                s += f"[{flag}] "
                break
    for key in ("mark", "secmark", "secctx", "zone"):
        if key in obj:
            s += f"{key}={obj[key]} "
    if "start_ns" in obj:
        end = obj["stop_ns"] // 10**9 if "stop_ns" in obj else now
        s += f"delta-time={end - obj['start_ns'] // 10**9} "
    if "helper" in obj:
        s += f"helper={obj['helper']} "
    if "use" in obj:
        s += f"use={obj['use']} "
    if "id" in obj:
        s += f"id={obj['id']} "
    if "labels" in obj:
        names = obj["labels"]["names"]
        s += ("labels=" + ",".join(names) + " ") if names else "labels "
    return s[:-1]


def test_json_listing(rich) -> None:
    from ctnetlink.formats.json import validate

    _, runner, _ = rich
    ours = runner.ours("-L", "-o", "json,labels")
    ref = runner.ref("-L", "-o", "extended,id,labels")
    assert ours.status == 0
    assert ours.err == ref.err
    objs = [json.loads(line) for line in ours.out.decode().splitlines()]
    for obj in objs:
        validate(obj)
    made = "\n".join(json_to_text(o) for o in objs) + "\n"
    assert same_output(ref.out, made.encode(), unordered=True), \
        (normalize(ref.out).text[:2000], made[:2000])


@pytest.mark.parametrize("args", [["-p", "tcp"], ["-f", "ipv6"], ["-g"], ["-w", "3"],
                                  ["-m", "0x10/0x10"]])
def test_json_filtered(rich, args) -> None:
    from ctnetlink.formats.json import validate

    _, runner, _ = rich
    ours = runner.ours("-L", "-o", "json", *args)
    ref = runner.ref("-L", "-o", "extended,id", *args)
    assert (ours.status, ours.err) == (ref.status, ref.err)
    objs = [json.loads(line) for line in ours.out.decode().splitlines()]
    for obj in objs:
        validate(obj)
    made = "".join(json_to_text(o) + "\n" for o in objs).encode()
    assert same_output(ref.out, made, unordered=True)


def test_json_get_and_delete(fresh) -> None:
    from ctnetlink.formats.json import validate

    ns, runner = fresh
    line = ["-s", "10.4.0.1", "-d", "10.4.0.2", "-p", "tcp", "--sport", "1", "--dport", "2"]
    runner.ref("-I", *line, "--state", "ESTABLISHED", "-t", "100", "-m", "3", check=True)
    ref = runner.ref("-G", *line, "-o", "extended,id")
    ours = runner.ours("-G", *line, "-o", "json")
    assert (ours.status, ours.err) == (ref.status, ref.err)
    obj = json.loads(ours.out)
    validate(obj)
    assert same_output(ref.out, (json_to_text(obj) + "\n").encode())
    deleted = runner.ours("-D", "-p", "tcp", "-o", "json")
    assert deleted.status == 0
    gone = json.loads(deleted.out)
    validate(gone)
    assert gone["id"] == obj["id"] and gone["mark"] == 3
