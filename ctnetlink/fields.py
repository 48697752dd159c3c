"""Where each attribute lands in the model: attribute path -> (object slot, field).

One table for conntrack entries and one for expectations, shared by the decoder
(:mod:`ctnetlink.decode`), the encoder generator (:mod:`ctnetlink.encodegen`) and the
formats (:mod:`ctnetlink.formats._engine`).
"""
from __future__ import annotations

from .model import (
    Counters, DccpInfo, Expect, Flow, NatRange, SctpInfo, SeqAdj, Synproxy, TcpInfo,
    Timestamp, Tuple,
)

# tuple-relative paths -> Tuple field
TUPLE_FIELDS: dict[tuple[str, ...], str] = {
    ("CTA_TUPLE_IP", "CTA_IP_V4_SRC"): "src",
    ("CTA_TUPLE_IP", "CTA_IP_V4_DST"): "dst",
    ("CTA_TUPLE_IP", "CTA_IP_V6_SRC"): "src",
    ("CTA_TUPLE_IP", "CTA_IP_V6_DST"): "dst",
    ("CTA_TUPLE_PROTO", "CTA_PROTO_NUM"): "proto",
    ("CTA_TUPLE_PROTO", "CTA_PROTO_SRC_PORT"): "sport",
    ("CTA_TUPLE_PROTO", "CTA_PROTO_DST_PORT"): "dport",
    ("CTA_TUPLE_PROTO", "CTA_PROTO_ICMP_ID"): "icmp_id",
    ("CTA_TUPLE_PROTO", "CTA_PROTO_ICMP_TYPE"): "icmp_type",
    ("CTA_TUPLE_PROTO", "CTA_PROTO_ICMP_CODE"): "icmp_code",
    ("CTA_TUPLE_PROTO", "CTA_PROTO_ICMPV6_ID"): "icmp_id",
    ("CTA_TUPLE_PROTO", "CTA_PROTO_ICMPV6_TYPE"): "icmp_type",
    ("CTA_TUPLE_PROTO", "CTA_PROTO_ICMPV6_CODE"): "icmp_code",
    ("CTA_TUPLE_ZONE",): "zone",
}

# top-level nest -> (Flow slot, record class, {relative path: field})
_NAT = {
    ("CTA_NAT_V4_MINIP",): "min_ip", ("CTA_NAT_V4_MAXIP",): "max_ip",
    ("CTA_NAT_V6_MINIP",): "min_ip", ("CTA_NAT_V6_MAXIP",): "max_ip",
    ("CTA_NAT_PROTO", "CTA_PROTONAT_PORT_MIN"): "min_port",
    ("CTA_NAT_PROTO", "CTA_PROTONAT_PORT_MAX"): "max_port",
}
_COUNTERS = {("CTA_COUNTERS_PACKETS",): "packets", ("CTA_COUNTERS_BYTES",): "bytes",
             ("CTA_COUNTERS32_PACKETS",): "packets", ("CTA_COUNTERS32_BYTES",): "bytes"}
_SEQADJ = {("CTA_SEQADJ_CORRECTION_POS",): "correction_pos",
           ("CTA_SEQADJ_OFFSET_BEFORE",): "offset_before",
           ("CTA_SEQADJ_OFFSET_AFTER",): "offset_after"}

FLOW_NESTS: dict[str, tuple[str, type, dict[tuple[str, ...], str]]] = {
    "CTA_TUPLE_ORIG": ("orig", Tuple, TUPLE_FIELDS),
    "CTA_TUPLE_REPLY": ("reply", Tuple, TUPLE_FIELDS),
    "CTA_TUPLE_MASTER": ("master", Tuple, TUPLE_FIELDS),
    "CTA_NAT_SRC": ("nat_src", NatRange, _NAT),
    "CTA_NAT_DST": ("nat_dst", NatRange, _NAT),
    "CTA_COUNTERS_ORIG": ("counters_orig", Counters, _COUNTERS),
    "CTA_COUNTERS_REPLY": ("counters_reply", Counters, _COUNTERS),
    "CTA_SEQ_ADJ_ORIG": ("seq_adj_orig", SeqAdj, _SEQADJ),
    "CTA_SEQ_ADJ_REPLY": ("seq_adj_reply", SeqAdj, _SEQADJ),
    "CTA_TIMESTAMP": ("timestamp", Timestamp, {("CTA_TIMESTAMP_START",): "start",
                                               ("CTA_TIMESTAMP_STOP",): "stop"}),
    "CTA_SYNPROXY": ("synproxy", Synproxy, {("CTA_SYNPROXY_ISN",): "isn",
                                            ("CTA_SYNPROXY_ITS",): "its",
                                            ("CTA_SYNPROXY_TSOFF",): "tsoff"}),
}

# CTA_PROTOINFO's inner nests each map to their own Flow slot
PROTOINFO_NESTS: dict[str, tuple[str, type, dict[tuple[str, ...], str]]] = {
    "CTA_PROTOINFO_TCP": ("tcp", TcpInfo, {
        ("CTA_PROTOINFO_TCP_STATE",): "state",
        ("CTA_PROTOINFO_TCP_WSCALE_ORIGINAL",): "wscale_orig",
        ("CTA_PROTOINFO_TCP_WSCALE_REPLY",): "wscale_reply",
        ("CTA_PROTOINFO_TCP_FLAGS_ORIGINAL",): "flags_orig",
        ("CTA_PROTOINFO_TCP_FLAGS_REPLY",): "flags_reply",
    }),
    "CTA_PROTOINFO_SCTP": ("sctp", SctpInfo, {
        ("CTA_PROTOINFO_SCTP_STATE",): "state",
        ("CTA_PROTOINFO_SCTP_VTAG_ORIGINAL",): "vtag_orig",
        ("CTA_PROTOINFO_SCTP_VTAG_REPLY",): "vtag_reply",
    }),
    "CTA_PROTOINFO_DCCP": ("dccp", DccpInfo, {
        ("CTA_PROTOINFO_DCCP_STATE",): "state",
        ("CTA_PROTOINFO_DCCP_ROLE",): "role",
        ("CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ",): "handshake_seq",
    }),
}

FLOW_SCALARS: dict[tuple[str, ...], str] = {
    ("CTA_STATUS",): "status",
    ("CTA_STATUS_MASK",): "status_mask",
    ("CTA_TIMEOUT",): "timeout",
    ("CTA_MARK",): "mark",
    ("CTA_MARK_MASK",): "mark_mask",
    ("CTA_SECMARK",): "secmark",
    ("CTA_USE",): "use",
    ("CTA_ID",): "id",
    ("CTA_ZONE",): "zone",
    ("CTA_HELP", "CTA_HELP_NAME"): "helper",
    ("CTA_HELP", "CTA_HELP_INFO"): "helper_info",
    ("CTA_SECCTX", "CTA_SECCTX_NAME"): "secctx",
    ("CTA_LABELS",): "labels",
    ("CTA_LABELS_MASK",): "labels_mask",
    ("CTA_TIMESTAMP_EVENT",): "event_timestamp",
}

EXPECT_NESTS: dict[str, tuple[str, type, dict[tuple[str, ...], str]]] = {
    "CTA_EXPECT_MASTER": ("master", Tuple, TUPLE_FIELDS),
    "CTA_EXPECT_TUPLE": ("tuple", Tuple, TUPLE_FIELDS),
    "CTA_EXPECT_MASK": ("mask", Tuple, TUPLE_FIELDS),
}

EXPECT_SCALARS: dict[tuple[str, ...], str] = {
    ("CTA_EXPECT_TIMEOUT",): "timeout",
    ("CTA_EXPECT_ID",): "id",
    ("CTA_EXPECT_HELP_NAME",): "helper",
    ("CTA_EXPECT_ZONE",): "zone",
    ("CTA_EXPECT_FLAGS",): "flags",
    ("CTA_EXPECT_CLASS",): "klass",
    ("CTA_EXPECT_FN",): "fn",
    ("CTA_EXPECT_NAT", "CTA_EXPECT_NAT_DIR"): "nat_dir",
}
EXPECT_NAT_TUPLE = ("CTA_EXPECT_NAT", "CTA_EXPECT_NAT_TUPLE")


def field_of(path: tuple[str, ...], expect: bool = False) -> tuple[str, type | None, str | None] | None:
    """(model slot, record class or None, field in the record or None) of a leaf path."""
    if expect:
        if path in EXPECT_SCALARS:
            return EXPECT_SCALARS[path], None, None
        if path[:2] == EXPECT_NAT_TUPLE and path[2:] in TUPLE_FIELDS:
            return "nat_tuple", Tuple, TUPLE_FIELDS[path[2:]]
        nest = EXPECT_NESTS.get(path[0])
    else:
        if path in FLOW_SCALARS:
            return FLOW_SCALARS[path], None, None
        if path[0] == "CTA_PROTOINFO" and len(path) == 3:
            nest = PROTOINFO_NESTS.get(path[1])
            path = path[1:]
        else:
            nest = FLOW_NESTS.get(path[0])
    if nest is None:
        return None
    slot, cls, fields = nest
    f = fields.get(path[1:])
    if f is None:
        return None
    return slot, cls, f


ROOT_CLASS = {False: Flow, True: Expect}
