"""``ctnetlink.decode`` (the shape-compiled fast decoder) on real kernel messages.

``decode_flow`` / ``decode_expect`` must agree field by field with the generic decoding
(``nfnl.codec.decode_attrs`` over the compiled schema), mapped to the model by an
independent table written out here; a shared, warmed-up shape cache must give the same
objects as a fresh decoder; and what ``ctnetlink.encode`` makes of a decoded entry must
decode back to the same request fields.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.kernel_data import MESSAGES, Msg  # noqa: E402

from ctnetlink import _compiled as C  # noqa: E402
from ctnetlink.decode import Decoder, decode_expect, decode_flow  # noqa: E402
from ctnetlink.encode import encode_expect, encode_flow  # noqa: E402
from ctnetlink.model import (  # noqa: E402
    Counters, DccpInfo, Expect, Flow, NatRange, SctpInfo, SeqAdj, Synproxy, TcpInfo, Timestamp,
    Tuple,
)
from nfnl.codec import AttrList, decode_attrs  # noqa: E402
from nfnl.errors import NetlinkDecodeError  # noqa: E402
from nfnl.message import build_nfnl  # noqa: E402

BROKEN = [m for m in MESSAGES if m.scenario == "error-extack" and m.direction == "sent"]
"""Our request with a 2-byte CTA_TIMEOUT (it provoked the extended ack)."""
FLOWS = [m for m in MESSAGES if m.kind == "flow" and m not in BROKEN]
EXPECTS = [m for m in MESSAGES if m.kind == "expect"]
DATA_FLOWS = [m for m in FLOWS if m.direction == "received"]

# --- the model, spelled out independently of ctnetlink.fields --------------------------

TUPLE = {
    "CTA_IP_V4_SRC": "src", "CTA_IP_V6_SRC": "src", "CTA_IP_V4_DST": "dst", "CTA_IP_V6_DST": "dst",
    "CTA_PROTO_NUM": "proto", "CTA_PROTO_SRC_PORT": "sport", "CTA_PROTO_DST_PORT": "dport",
    "CTA_PROTO_ICMP_ID": "icmp_id", "CTA_PROTO_ICMP_TYPE": "icmp_type",
    "CTA_PROTO_ICMP_CODE": "icmp_code", "CTA_PROTO_ICMPV6_ID": "icmp_id",
    "CTA_PROTO_ICMPV6_TYPE": "icmp_type", "CTA_PROTO_ICMPV6_CODE": "icmp_code",
    "CTA_TUPLE_ZONE": "zone",
}
RECORDS = {
    "CTA_TUPLE_ORIG": ("orig", Tuple, TUPLE), "CTA_TUPLE_REPLY": ("reply", Tuple, TUPLE),
    "CTA_TUPLE_MASTER": ("master", Tuple, TUPLE),
    "CTA_NAT_SRC": ("nat_src", NatRange, {
        "CTA_NAT_V4_MINIP": "min_ip", "CTA_NAT_V6_MINIP": "min_ip", "CTA_NAT_V4_MAXIP": "max_ip",
        "CTA_NAT_V6_MAXIP": "max_ip", "CTA_PROTONAT_PORT_MIN": "min_port",
        "CTA_PROTONAT_PORT_MAX": "max_port"}),
    "CTA_COUNTERS_ORIG": ("counters_orig", Counters, {
        "CTA_COUNTERS_PACKETS": "packets", "CTA_COUNTERS_BYTES": "bytes"}),
    "CTA_SEQ_ADJ_ORIG": ("seq_adj_orig", SeqAdj, {
        "CTA_SEQADJ_CORRECTION_POS": "correction_pos", "CTA_SEQADJ_OFFSET_BEFORE": "offset_before",
        "CTA_SEQADJ_OFFSET_AFTER": "offset_after"}),
    "CTA_TIMESTAMP": ("timestamp", Timestamp, {"CTA_TIMESTAMP_START": "start",
                                               "CTA_TIMESTAMP_STOP": "stop"}),
    "CTA_SYNPROXY": ("synproxy", Synproxy, {"CTA_SYNPROXY_ISN": "isn", "CTA_SYNPROXY_ITS": "its",
                                            "CTA_SYNPROXY_TSOFF": "tsoff"}),
    "CTA_PROTOINFO_TCP": ("tcp", TcpInfo, {
        "CTA_PROTOINFO_TCP_STATE": "state", "CTA_PROTOINFO_TCP_WSCALE_ORIGINAL": "wscale_orig",
        "CTA_PROTOINFO_TCP_WSCALE_REPLY": "wscale_reply",
        "CTA_PROTOINFO_TCP_FLAGS_ORIGINAL": "flags_orig",
        "CTA_PROTOINFO_TCP_FLAGS_REPLY": "flags_reply"}),
    "CTA_PROTOINFO_SCTP": ("sctp", SctpInfo, {
        "CTA_PROTOINFO_SCTP_STATE": "state", "CTA_PROTOINFO_SCTP_VTAG_ORIGINAL": "vtag_orig",
        "CTA_PROTOINFO_SCTP_VTAG_REPLY": "vtag_reply"}),
    "CTA_PROTOINFO_DCCP": ("dccp", DccpInfo, {
        "CTA_PROTOINFO_DCCP_STATE": "state", "CTA_PROTOINFO_DCCP_ROLE": "role",
        "CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ": "handshake_seq"}),
}
RECORDS["CTA_NAT_DST"] = ("nat_dst",) + RECORDS["CTA_NAT_SRC"][1:]
RECORDS["CTA_COUNTERS_REPLY"] = ("counters_reply",) + RECORDS["CTA_COUNTERS_ORIG"][1:]
RECORDS["CTA_SEQ_ADJ_REPLY"] = ("seq_adj_reply",) + RECORDS["CTA_SEQ_ADJ_ORIG"][1:]
SCALARS = {
    "CTA_STATUS": "status", "CTA_STATUS_MASK": "status_mask", "CTA_TIMEOUT": "timeout",
    "CTA_MARK": "mark", "CTA_MARK_MASK": "mark_mask", "CTA_SECMARK": "secmark", "CTA_USE": "use",
    "CTA_ID": "id", "CTA_ZONE": "zone", "CTA_TIMESTAMP_EVENT": "event_timestamp",
}
NOT_IN_THE_MODEL = {"CTA_FILTER"}  # a dump-request selector, not part of an entry


def _leaves(attrs: AttrList):
    for a in attrs:
        if isinstance(a.value, AttrList):
            yield from _leaves(a.value)
        else:
            yield a.name, a.value


def _record(cls, fields: dict, attrs: AttrList):
    return cls(**{fields[n]: v for n, v in _leaves(attrs) if n in fields})


def expected_flow(m: Msg) -> dict:
    out: dict = {"family": m.raw[16]}
    unknown = []
    for a in decode_attrs(C.ATTRS, "ctattr_type", m.body):
        if a.name is None:
            unknown.append((a.type, a.value))
        elif a.name in SCALARS:
            out[SCALARS[a.name]] = a.value
        elif a.name in RECORDS:
            slot, cls, fields = RECORDS[a.name]
            out[slot] = _record(cls, fields, a.value)
        elif a.name == "CTA_PROTOINFO":
            for inner in a.value:
                slot, cls, fields = RECORDS[inner.name]
                out[slot] = _record(cls, fields, inner.value)
        elif a.name == "CTA_HELP":
            for inner in a.value:
                out[{"CTA_HELP_NAME": "helper", "CTA_HELP_INFO": "helper_info"}[inner.name]] = inner.value
        elif a.name == "CTA_SECCTX":
            out["secctx"] = a.value.get("CTA_SECCTX_NAME")
        elif a.name in ("CTA_LABELS", "CTA_LABELS_MASK"):
            slot = "labels" if a.name == "CTA_LABELS" else "labels_mask"
            out[slot] = int.from_bytes(a.value, "little")  # 32-bit words, host order (x86)
            if slot == "labels":
                out["labels_size"] = len(a.value)
        else:
            assert a.name in NOT_IN_THE_MODEL, a.name
    if unknown:
        out["unknown"] = tuple(unknown)
    return out


def expected_expect(m: Msg) -> dict:
    out: dict = {"family": m.raw[16]}
    names = {"CTA_EXPECT_MASTER": "master", "CTA_EXPECT_TUPLE": "tuple", "CTA_EXPECT_MASK": "mask"}
    scalars = {"CTA_EXPECT_TIMEOUT": "timeout", "CTA_EXPECT_ID": "id",
               "CTA_EXPECT_HELP_NAME": "helper", "CTA_EXPECT_ZONE": "zone",
               "CTA_EXPECT_FLAGS": "flags", "CTA_EXPECT_CLASS": "klass", "CTA_EXPECT_FN": "fn"}
    for a in decode_attrs(C.ATTRS, "ctattr_expect", m.body):
        if a.name in names:
            out[names[a.name]] = _record(Tuple, TUPLE, a.value)
        elif a.name in scalars:
            out[scalars[a.name]] = a.value
        elif a.name == "CTA_EXPECT_NAT":
            for inner in a.value:
                if inner.name == "CTA_EXPECT_NAT_DIR":
                    out["nat_dir"] = inner.value
                else:
                    out["nat_tuple"] = _record(Tuple, TUPLE, inner.value)
        else:
            raise AssertionError(a)
    return out


def _ids(ms):
    return [m.name for m in ms]


@pytest.mark.parametrize("m", FLOWS, ids=_ids(FLOWS))
def test_decode_flow_agrees_with_generic_decoding(m: Msg) -> None:
    flow = decode_flow(m.raw)
    want = expected_flow(m)
    for slot in Flow._fields:
        assert getattr(flow, slot) == want.get(slot), slot
    assert flow == Flow(**want)


@pytest.mark.parametrize("m", EXPECTS, ids=_ids(EXPECTS))
def test_decode_expect_agrees_with_generic_decoding(m: Msg) -> None:
    exp = decode_expect(m.raw)
    want = expected_expect(m)
    for slot in Expect._fields:
        assert getattr(exp, slot) == want.get(slot), slot


def test_decode_flow_rejects_a_value_of_the_wrong_size() -> None:
    """Unlike the generic decoder (which keeps it verbatim), the model has no place for a
    2-byte timeout."""
    (m,) = BROKEN
    with pytest.raises(NetlinkDecodeError, match="CTA_TIMEOUT"):
        decode_flow(m.raw)


def test_decoding_inside_a_datagram_and_by_offset() -> None:
    for m in FLOWS:
        assert decode_flow(m.datagram, m.off) == decode_flow(m.raw)
        assert decode_flow(memoryview(m.datagram), m.off, m.ln) == decode_flow(m.raw)
    for m in EXPECTS:
        assert decode_expect(m.datagram, m.off, m.ln) == decode_expect(m.raw)


def test_shape_cache_gives_the_same_objects() -> None:
    """A warmed-up cache (many shapes of the same length), a fresh decoder per message
    and the fast ``decoder()`` closure all agree."""
    shared = Decoder(False)
    fast = shared.decoder()
    first = [shared.decode(m.datagram, m.off, m.ln) for m in FLOWS]
    for m, f in zip(FLOWS, first):
        assert Decoder(False).decode(m.datagram, m.off, m.ln) == f
        assert shared.decode(m.datagram, m.off, m.ln) == f
        assert fast(m.datagram, m.off, m.ln) == f
    lengths = {}
    for m in FLOWS:
        lengths.setdefault(m.ln, set()).add(m.raw[20:].hex()[:8])
    assert any(len(v) > 1 for v in lengths.values()), "no two layouts share a length"


@pytest.mark.parametrize("m", DATA_FLOWS, ids=_ids(DATA_FLOWS))
def test_encoding_a_decoded_entry_keeps_its_request_fields(m: Msg) -> None:
    flow = decode_flow(m.raw)
    request = build_nfnl(0x100, 0x5, flow.family, encode_flow(flow))
    again = decode_flow(request)
    reply_only = dict(use=None, id=None, counters_orig=None, counters_reply=None, timestamp=None,
                      secctx=None, helper_info=None, event_timestamp=None, unknown=None)
    assert again == flow.copy(**reply_only)


@pytest.mark.parametrize("m", [m for m in EXPECTS if m.direction == "received"],
                         ids=_ids([m for m in EXPECTS if m.direction == "received"]))
def test_encoding_a_decoded_expectation(m: Msg) -> None:
    exp = decode_expect(m.raw)
    again = decode_expect(build_nfnl(0x200, 0x5, exp.family, encode_expect(exp)))
    assert again == exp
