"""Checks shared by the sync wire tests: the fast codec against construct's interpreter,
the sync fixture corpus (``fixtures/sync``) as plain data, and a hypothesis strategy of
flows as the C sender can describe them."""
from __future__ import annotations

import functools
import ipaddress
import json
import struct
from pathlib import Path

from hypothesis import strategies as st

from conntrack_tools.conntrackd.wire import constants as K
from conntrack_tools.conntrackd.wire import schema as S
from conntrack_tools.conntrackd.wire.codec import attr_list, reply_tuple, walk
from ctnetlink.model import DccpInfo, Flow, SctpInfo, SeqAdj, Synproxy, TcpInfo, Tuple

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


# --- random flows ---------------------------------------------------------------------------

addr4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
addr6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
u8, u16, u32 = st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1)


@st.composite
def flows(draw) -> Flow:
    v6 = draw(st.booleans())
    addr = addr6 if v6 else addr4
    proto = draw(st.sampled_from([6, 17, 1 if not v6 else 58, 132, 33, 47, 136]))
    src, dst = draw(addr), draw(addr)
    kw = {}
    if proto in (1, 58):
        itype = draw(st.sampled_from([8, 0, 13] if proto == 1 else [128, 129]))
        orig = Tuple(src=src, dst=dst, proto=proto, icmp_type=itype, icmp_code=0,
                     icmp_id=draw(u16))
    elif proto in (47, 136):
        orig = Tuple(src=src, dst=dst, proto=proto)
    else:
        orig = Tuple(src=src, dst=dst, proto=proto, sport=draw(u16), dport=draw(u16))
    if proto == 6:
        kw["tcp"] = TcpInfo(state=draw(st.integers(0, 9)))
    elif proto == 132:
        kw["sctp"] = SctpInfo(state=draw(u8), vtag_orig=draw(u32), vtag_reply=draw(u32))
    elif proto == 33:
        kw["dccp"] = DccpInfo(state=draw(u8), role=draw(u8))
    reply = reply_tuple(orig)
    status = draw(u32) & ~(K.IPS_SRC_NAT_DONE | K.IPS_DST_NAT_DONE)
    if orig.proto not in (1, 58, 47, 136) and draw(st.booleans()):
        reply = reply.replace(dst=draw(addr), dport=draw(u16))
        status |= K.IPS_SRC_NAT_DONE
    if orig.proto not in (1, 58, 47, 136) and draw(st.booleans()):
        reply = reply.replace(src=draw(addr), sport=draw(u16))
        status |= K.IPS_DST_NAT_DONE
    if draw(st.booleans()):
        kw["master"] = Tuple(src=draw(addr), dst=draw(addr), proto=6, sport=draw(u16),
                             dport=draw(u16))
    if draw(st.booleans()):
        kw["seq_adj_orig"] = SeqAdj(correction_pos=draw(u32), offset_before=draw(u32),
                                    offset_after=draw(u32))
        kw["seq_adj_reply"] = SeqAdj(correction_pos=draw(u32), offset_before=draw(u32),
                                     offset_after=draw(u32))
    if draw(st.booleans()):
        kw["labels"] = draw(st.integers(1, 2**128 - 1))
        kw["labels_size"] = 16
    return Flow(family=10 if v6 else 2, orig=orig, reply=reply, status=status,
                timeout=draw(st.none() | u32), mark=draw(st.none() | u32),
                zone=draw(st.none() | u16), helper=draw(st.none() | st.sampled_from(["ftp", "sip"])),
                synproxy=draw(st.none() | st.builds(Synproxy, isn=u32, its=u32, tsoff=u32)), **kw)


