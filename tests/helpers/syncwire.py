"""Checks shared by the sync wire tests: the fast codec against construct's interpreter,
and the sync fixture corpus (``fixtures/sync``) as plain data."""
from __future__ import annotations

import functools
import ipaddress
import json
import struct
from pathlib import Path

from conntrack_tools.conntrackd.wire import constants as K
from conntrack_tools.conntrackd.wire import schema as S
from conntrack_tools.conntrackd.wire.codec import attr_list, walk

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "sync"
SCENARIOS = ("ftfw-multicast", "notrack-udp", "alarm-multicast", "ftfw-udp6", "ftfw-tcp")


@functools.lru_cache(maxsize=None)
def sidecar(name: str) -> dict:
    return json.loads((CORPUS / f"{name}.json").read_text())


def streams(name: str) -> list[bytes]:
    """The sync bytes of a scenario: every UDP datagram, or for TCP each direction's
    stream cut after its last whole message."""
    sc = sidecar(name)
    if sc["transport"] != "tcp":
        return [bytes.fromhex(d["payload"]) for d in sc["datagrams"]]
    per: dict[tuple, bytes] = {}
    for d in sc["datagrams"]:
        key = (d["src"], d["sport"], d["dst"], d["dport"])
        per[key] = per.get(key, b"") + bytes.fromhex(d["payload"])
    out = []
    for data in per.values():
        off = 0
        while len(data) - off >= 8:
            (ln,) = struct.unpack_from(">H", data, off + 2)
            if ln == 0 or ln > len(data) - off:
                break
            off += ln
        out.append(data[:off])
    return out


def _interpreted_values(value):
    """construct's parse result in the fast path's form (tuples of raw values)."""
    if isinstance(value, dict):
        return tuple(_interpreted_values(v)[0] for v in value.values())
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return (value.packed,)
    if isinstance(value, str):
        return value
    return (value,)


def assert_interpreter_agrees(data: bytes) -> None:
    """Our framing and attribute values equal construct's on ``data``, and construct
    builds the same bytes back."""
    ours = list(walk(data))
    theirs = S.parse_interpreted(data)
    assert len(ours) == len(theirs)
    for m, t in zip(ours, theirs):
        assert (m.version, m.type, m.flags, m.seq, m.from_seq, m.to_seq) == (
            t["version"], t["type"], t["flags"], t["seq"], t["from"], t["to"])
        if m.type <= K.NET_T_STATE_MAX:
            fast = attr_list(m.payload, m.type >= 3)
            assert fast == [(n, _interpreted_values(v)) for n, v in t["attrs"]]
    assert S.build_interpreted(theirs) == data
