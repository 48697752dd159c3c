"""The generic codec on real kernel messages (``data/kernel_messages.json``, captured by
``tests/helpers/capture.py`` from this kernel; no root needed here).

Every message decodes with ``nfnl.message.decode_message`` and re-encodes byte for byte
with ``encode_message``; every value agrees with construct's interpreter running the
``ctnetlink.schema`` declarations (``nfnl.attrs.parse_interpreted``), which also rebuilds
the bytes exactly; the fixed headers agree with the construct declarations of
``nfnl.headers``. A first group of tests checks that the capture covers what it should.
"""
from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import construct as cs
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.kernel_data import (  # noqa: E402
    DATAGRAMS, DOC, MESSAGES, Msg, attr_set_of, register_ctnetlink, set_name_of,
)

from ctnetlink import _compiled as C  # noqa: E402
from nfnl import headers as H  # noqa: E402
from nfnl.attrs import build_interpreted, parse_interpreted  # noqa: E402
from nfnl.codec import AttrList, decode_attrs, encode_attrs  # noqa: E402
from nfnl.message import decode_datagram, decode_message, encode_message, iter_messages  # noqa: E402

register_ctnetlink()

NFNL = [m for m in MESSAGES if m.kind not in ("error", "done")]
BROKEN = [m for m in NFNL if m.scenario == "error-extack" and m.direction == "sent"]
"""The request that provoked the extended ack: CTA_TIMEOUT with 2 bytes instead of 4."""
WELL_FORMED = [m for m in NFNL if m not in BROKEN]


def walk(attrs: AttrList, path: tuple = ()):
    """(path of names, value) of every leaf."""
    for a in attrs:
        p = path + (a.name or a.type,)
        if isinstance(a.value, AttrList):
            yield from walk(a.value, p)
        else:
            yield p, a.value


def generic(m: Msg) -> AttrList:
    return decode_attrs(C.ATTRS, set_name_of(m), m.body)


# --- what the capture covers ------------------------------------------------------------

def leaves(kind: str, direction: str = "received") -> list[dict]:
    out = []
    for m in MESSAGES:
        if m.kind == kind and m.direction == direction:
            d: dict = {}
            for p, v in walk(generic(m)):
                d.setdefault(p, v)
            d["_msg"] = m
            out.append(d)
    return out


def test_capture_metadata() -> None:
    assert DOC["reference"].startswith("conntrack v1.4.7")
    assert DOC["generator"] == "tests/helpers/capture.py"
    assert len(DATAGRAMS) > 300 and len(MESSAGES) > 500


def test_capture_covers_protocols_families_and_fields() -> None:
    flows = leaves("flow")
    orig = ("CTA_TUPLE_ORIG", "CTA_TUPLE_PROTO", "CTA_PROTO_NUM")
    seen = {(f["_msg"].raw[16], f[orig]) for f in flows if orig in f}
    for fam in (2, 10):
        for proto in (6, 17, 136, 132, 33, 47, 200, 2):
            assert (fam, proto) in seen
    assert (2, 1) in seen and (10, 58) in seen
    keys = set().union(*flows)
    sent = set().union(*leaves("flow", "sent"))
    assert {("CTA_NAT_SRC", "CTA_NAT_V6_MINIP"),
            ("CTA_NAT_DST", "CTA_NAT_PROTO", "CTA_PROTONAT_PORT_MAX")} <= sent
    for path in [
        ("CTA_ZONE",),
        ("CTA_TUPLE_ORIG", "CTA_TUPLE_ZONE"), ("CTA_TUPLE_REPLY", "CTA_TUPLE_ZONE"),
        ("CTA_MARK",), ("CTA_LABELS",), ("CTA_COUNTERS_ORIG", "CTA_COUNTERS_PACKETS"),
        ("CTA_COUNTERS_REPLY", "CTA_COUNTERS_BYTES"), ("CTA_TIMESTAMP", "CTA_TIMESTAMP_START"),
        ("CTA_HELP", "CTA_HELP_NAME"), ("CTA_PROTOINFO", "CTA_PROTOINFO_TCP", "CTA_PROTOINFO_TCP_STATE"),
        ("CTA_PROTOINFO", "CTA_PROTOINFO_SCTP", "CTA_PROTOINFO_SCTP_VTAG_ORIGINAL"),
        ("CTA_TUPLE_ORIG", "CTA_TUPLE_PROTO", "CTA_PROTO_ICMP_TYPE"),
        ("CTA_TUPLE_ORIG", "CTA_TUPLE_PROTO", "CTA_PROTO_ICMPV6_ID"),
        ("CTA_TUPLE_ORIG", "CTA_TUPLE_IP", "CTA_IP_V6_SRC"), ("CTA_ID",), ("CTA_USE",),
        ("CTA_SYNPROXY", "CTA_SYNPROXY_ISN"),
    ]:
        assert path in keys, path
    # NAT both ways: reply tuples whose addresses differ from the reversed original
    snat = dnat = False
    for f in flows:
        o = f.get(("CTA_TUPLE_ORIG", "CTA_TUPLE_IP", "CTA_IP_V4_SRC"))
        r_dst = f.get(("CTA_TUPLE_REPLY", "CTA_TUPLE_IP", "CTA_IP_V4_DST"))
        d = f.get(("CTA_TUPLE_ORIG", "CTA_TUPLE_IP", "CTA_IP_V4_DST"))
        r_src = f.get(("CTA_TUPLE_REPLY", "CTA_TUPLE_IP", "CTA_IP_V4_SRC"))
        snat |= o is not None and r_dst != o
        dnat |= d is not None and r_src != d
    assert snat and dnat
    labels = [f[("CTA_LABELS",)] for f in flows if ("CTA_LABELS",) in f]
    assert any(int.from_bytes(b, "little") >> 127 for b in labels)


def test_capture_covers_expectations_events_stats_and_errors() -> None:
    exps = leaves("expect")
    fams = {e["_msg"].raw[16] for e in exps}
    assert fams == {2, 10}
    assert all(e[("CTA_EXPECT_HELP_NAME",)] == "ftp" for e in exps)
    ev = [m for m in MESSAGES if m.scenario == "events"]
    kinds = {(m.type, bool(m.flags & 0x400)) for m in ev}
    assert kinds >= {(0x100, True), (0x100, False), (0x102, False), (0x200, True), (0x202, False)}
    assert {m.kind for m in MESSAGES if m.scenario == "stats"} >= {"stats", "stats_cpu", "exp_stats"}
    errnos = {-int.from_bytes(m.raw[16:20], "little", signed=True)
              for m in MESSAGES if m.kind == "error"}
    assert errnos >= {0, 1, 2, 16, 17, 22, 28, 95}
    flags = {m.flags for m in MESSAGES if m.kind == "error"}
    assert 0x100 in flags and 0x200 in flags and 0 in flags  # capped, ack TLVs, full echo
    assert any(m.flags & 0x20 for m in MESSAGES)  # NLM_F_DUMP_FILTERED
    assert {m.direction for m in MESSAGES} == {"sent", "received"}


# --- decode -> encode is byte-exact --------------------------------------------------------

@pytest.mark.parametrize("buf", DATAGRAMS, ids=[f"{i:03d}" for i in range(len(DATAGRAMS))])
def test_datagram_round_trip(buf: bytes) -> None:
    msgs = decode_datagram(buf)
    assert msgs
    out = b"".join(encode_message(m) for m in msgs)
    assert out == buf
    offsets = [off for off, *_ in iter_messages(buf)]
    assert [m.raw for m in msgs] == [buf[o:o + len(m.raw)] for o, m in zip(offsets, msgs)]


@pytest.mark.parametrize("m", NFNL, ids=[m.name for m in NFNL])
def test_message_names_every_attribute(m: Msg) -> None:
    msg = decode_message(m.datagram, m.off)
    assert msg.family == m.raw[16] and msg.version == m.raw[17]
    assert msg.name is not None
    assert encode_message(msg) == m.raw
    for path, _ in walk(msg.attrs):
        assert all(isinstance(p, str) for p in path), path  # the schema knows everything


# --- agreement with construct's interpreter ----------------------------------------------------

def _norm(v):
    if isinstance(v, cs.Container):
        return tuple(x for k, x in v.items() if not k.startswith("_"))
    if isinstance(v, list):
        return [(k, f, _norm(x)) for k, f, x in v]
    return v


def _ours(attrs: AttrList) -> list:
    return [(a.name or a.type, a.flags, _ours(a.value) if isinstance(a.value, AttrList) else a.value)
            for a in attrs]


@pytest.mark.parametrize("m", WELL_FORMED, ids=[m.name for m in WELL_FORMED])
def test_generic_decoding_agrees_with_construct(m: Msg) -> None:
    aset = attr_set_of(m)
    theirs = parse_interpreted(aset, m.body)
    assert _ours(generic(m)) == _norm(theirs)
    assert build_interpreted(aset, theirs) == m.body
    assert encode_attrs(C.ATTRS, aset.name, generic(m)) == m.body


def test_odd_sized_value_is_kept_verbatim() -> None:
    (m,) = BROKEN
    attrs = generic(m)
    assert attrs.find("CTA_TIMEOUT").value == b"\0\1"  # construct cannot parse it at all
    with pytest.raises(cs.StreamError):
        parse_interpreted(attr_set_of(m), m.body)
    assert encode_attrs(C.ATTRS, "ctattr_type", attrs) == m.body


def test_value_types() -> None:
    """Addresses are ipaddress objects, strings str, integers int, TCP flags pairs."""
    kinds = {}
    for m in NFNL:
        for path, v in walk(generic(m)):
            kinds.setdefault(path[-1], set()).add(type(v))
    assert kinds["CTA_IP_V4_SRC"] == {ipaddress.IPv4Address}
    assert kinds["CTA_IP_V6_DST"] == {ipaddress.IPv6Address}
    assert kinds["CTA_HELP_NAME"] == {str} and kinds["CTA_EXPECT_HELP_NAME"] == {str}
    assert kinds["CTA_PROTOINFO_TCP_FLAGS_ORIGINAL"] == {tuple}
    assert kinds["CTA_LABELS"] == {bytes}
    assert kinds["CTA_TIMESTAMP_START"] == kinds["CTA_MARK"] == {int}


@pytest.mark.parametrize("m", MESSAGES, ids=[m.name for m in MESSAGES])
def test_headers_agree_with_construct(m: Msg) -> None:
    hdr = H.NlMsgHdr.parse(m.raw[:16])
    assert (hdr.nlmsg_len, hdr.nlmsg_type, hdr.nlmsg_flags, hdr.nlmsg_seq, hdr.nlmsg_pid) == (
        m.ln, m.type, m.flags, m.seq, m.pid)
    msg = decode_message(m.datagram, m.off)
    if m.kind in ("error", "done"):
        assert msg.family is None and msg.attrs is None
        return
    gen = H.NfGenMsg.parse(m.raw[16:20])
    assert (gen.nfgen_family, gen.version, gen.res_id) == (msg.family, msg.version, msg.res_id)


def test_expectation_stats_reply_decodes_as_expectation_stats() -> None:
    """The kernel answers IPCTNL_MSG_EXP_GET_STATS_CPU (0x0203) with messages of type
    0x0103 (``nfnl_msg_type(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_EXP_GET_STATS_CPU)`` in
    ctnetlink_exp_stat_fill_info), the number of IPCTNL_MSG_CT_GET_CTRZERO requests: a
    reply of that type is expectation statistics, not a conntrack entry."""
    replies = [m for m in MESSAGES if m.type == 0x103 and m.direction == "received"]
    assert replies
    for m in replies:
        msg = decode_message(m.datagram, m.off)
        assert [a.name for a in msg.attrs] == ["CTA_STATS_EXP_NEW", "CTA_STATS_EXP_CREATE",
                                               "CTA_STATS_EXP_DELETE"]
        assert encode_message(msg) == m.raw


def test_stats_replies_carry_the_cpu_in_res_id() -> None:
    cpus = [decode_message(m.datagram, m.off).res_id
            for m in MESSAGES if m.kind == "stats_cpu" and m.direction == "received"]
    assert cpus == list(range(len(cpus))) and cpus
