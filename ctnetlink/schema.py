"""The ctnetlink schema: every ``CTA_*`` / ``CTA_EXPECT_*`` attribute, declared with construct.

One :class:`~nfnl.attrs.AttrSet` per kernel ``enum ctattr_*``, named after it, with the
kernel's constant names; payloads use the declarations of :mod:`nfnl.attrs`. Message
bodies are mapped to their top-level set in :data:`MESSAGES`. :func:`compiled_tables`
derives the tables the runtime uses; ``python -m nfnl.compile`` (which finds this module
through the ``nfnl.compile`` entry point) writes them to ``ctnetlink/_compiled.py``.
"""
from __future__ import annotations

import construct as cs

from nfnl.attrs import (
    IPv4, IPv6, U8, U16, U32, U64, Attr, AttrSet, Binary, String, U32Host, attr_tables, set_names,
    struct_fields,
)

from .constants import (
    IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_GET_CTRZERO, IPCTNL_MSG_CT_GET_DYING,
    IPCTNL_MSG_CT_GET_STATS, IPCTNL_MSG_CT_GET_STATS_CPU, IPCTNL_MSG_CT_GET_UNCONFIRMED,
    IPCTNL_MSG_CT_NEW, IPCTNL_MSG_EXP_DELETE, IPCTNL_MSG_EXP_GET, IPCTNL_MSG_EXP_GET_STATS_CPU,
    IPCTNL_MSG_EXP_NEW,
)

TcpFlags = cs.Struct("flags" / cs.Int8ub, "mask" / cs.Int8ub)
"""``struct nf_ct_tcp_flags``: the flag bits and which of them to change."""

CTA_IP = AttrSet("ctattr_ip", [
    Attr(1, "CTA_IP_V4_SRC", IPv4),
    Attr(2, "CTA_IP_V4_DST", IPv4),
    Attr(3, "CTA_IP_V6_SRC", IPv6),
    Attr(4, "CTA_IP_V6_DST", IPv6),
])

CTA_PROTO = AttrSet("ctattr_l4proto", [
    Attr(1, "CTA_PROTO_NUM", U8),
    Attr(2, "CTA_PROTO_SRC_PORT", U16),
    Attr(3, "CTA_PROTO_DST_PORT", U16),
    Attr(4, "CTA_PROTO_ICMP_ID", U16),
    Attr(5, "CTA_PROTO_ICMP_TYPE", U8),
    Attr(6, "CTA_PROTO_ICMP_CODE", U8),
    Attr(7, "CTA_PROTO_ICMPV6_ID", U16),
    Attr(8, "CTA_PROTO_ICMPV6_TYPE", U8),
    Attr(9, "CTA_PROTO_ICMPV6_CODE", U8),
])

CTA_TUPLE = AttrSet("ctattr_tuple", [
    Attr(1, "CTA_TUPLE_IP", CTA_IP),
    Attr(2, "CTA_TUPLE_PROTO", CTA_PROTO),
    Attr(3, "CTA_TUPLE_ZONE", U16),
])

CTA_PROTOINFO_TCP = AttrSet("ctattr_protoinfo_tcp", [
    Attr(1, "CTA_PROTOINFO_TCP_STATE", U8),
    Attr(2, "CTA_PROTOINFO_TCP_WSCALE_ORIGINAL", U8),
    Attr(3, "CTA_PROTOINFO_TCP_WSCALE_REPLY", U8),
    Attr(4, "CTA_PROTOINFO_TCP_FLAGS_ORIGINAL", TcpFlags),
    Attr(5, "CTA_PROTOINFO_TCP_FLAGS_REPLY", TcpFlags),
])

CTA_PROTOINFO_DCCP = AttrSet("ctattr_protoinfo_dccp", [
    Attr(1, "CTA_PROTOINFO_DCCP_STATE", U8),
    Attr(2, "CTA_PROTOINFO_DCCP_ROLE", U8),
    Attr(3, "CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ", U64),
    Attr(4, "CTA_PROTOINFO_DCCP_PAD", Binary),
])

CTA_PROTOINFO_SCTP = AttrSet("ctattr_protoinfo_sctp", [
    Attr(1, "CTA_PROTOINFO_SCTP_STATE", U8),
    Attr(2, "CTA_PROTOINFO_SCTP_VTAG_ORIGINAL", U32),
    Attr(3, "CTA_PROTOINFO_SCTP_VTAG_REPLY", U32),
])

CTA_PROTOINFO = AttrSet("ctattr_protoinfo", [
    Attr(1, "CTA_PROTOINFO_TCP", CTA_PROTOINFO_TCP),
    Attr(2, "CTA_PROTOINFO_DCCP", CTA_PROTOINFO_DCCP),
    Attr(3, "CTA_PROTOINFO_SCTP", CTA_PROTOINFO_SCTP),
])

CTA_COUNTERS = AttrSet("ctattr_counters", [
    Attr(1, "CTA_COUNTERS_PACKETS", U64),
    Attr(2, "CTA_COUNTERS_BYTES", U64),
    Attr(3, "CTA_COUNTERS32_PACKETS", U32),
    Attr(4, "CTA_COUNTERS32_BYTES", U32),
    Attr(5, "CTA_COUNTERS_PAD", Binary),
])

CTA_TIMESTAMP = AttrSet("ctattr_tstamp", [
    Attr(1, "CTA_TIMESTAMP_START", U64),
    Attr(2, "CTA_TIMESTAMP_STOP", U64),
    Attr(3, "CTA_TIMESTAMP_PAD", Binary),
])

CTA_PROTONAT = AttrSet("ctattr_protonat", [
    Attr(1, "CTA_PROTONAT_PORT_MIN", U16),
    Attr(2, "CTA_PROTONAT_PORT_MAX", U16),
])

CTA_NAT = AttrSet("ctattr_nat", [
    Attr(1, "CTA_NAT_V4_MINIP", IPv4),
    Attr(2, "CTA_NAT_V4_MAXIP", IPv4),
    Attr(3, "CTA_NAT_PROTO", CTA_PROTONAT),
    Attr(4, "CTA_NAT_V6_MINIP", IPv6),
    Attr(5, "CTA_NAT_V6_MAXIP", IPv6),
])

CTA_SEQADJ = AttrSet("ctattr_seqadj", [
    Attr(1, "CTA_SEQADJ_CORRECTION_POS", U32),
    Attr(2, "CTA_SEQADJ_OFFSET_BEFORE", U32),
    Attr(3, "CTA_SEQADJ_OFFSET_AFTER", U32),
])

CTA_HELP = AttrSet("ctattr_help", [
    Attr(1, "CTA_HELP_NAME", String),
    Attr(2, "CTA_HELP_INFO", Binary),
])

CTA_SECCTX = AttrSet("ctattr_secctx", [
    Attr(1, "CTA_SECCTX_NAME", String),
])

CTA_SYNPROXY = AttrSet("ctattr_synproxy", [
    Attr(1, "CTA_SYNPROXY_ISN", U32),
    Attr(2, "CTA_SYNPROXY_ITS", U32),
    Attr(3, "CTA_SYNPROXY_TSOFF", U32),
])

CTA_FILTER = AttrSet("ctattr_filter", [
    Attr(1, "CTA_FILTER_ORIG_FLAGS", U32Host),
    Attr(2, "CTA_FILTER_REPLY_FLAGS", U32Host),
])

CTA = AttrSet("ctattr_type", [
    Attr(1, "CTA_TUPLE_ORIG", CTA_TUPLE),
    Attr(2, "CTA_TUPLE_REPLY", CTA_TUPLE),
    Attr(3, "CTA_STATUS", U32),
    Attr(4, "CTA_PROTOINFO", CTA_PROTOINFO),
    Attr(5, "CTA_HELP", CTA_HELP),
    Attr(6, "CTA_NAT_SRC", CTA_NAT),
    Attr(7, "CTA_TIMEOUT", U32),
    Attr(8, "CTA_MARK", U32),
    Attr(9, "CTA_COUNTERS_ORIG", CTA_COUNTERS),
    Attr(10, "CTA_COUNTERS_REPLY", CTA_COUNTERS),
    Attr(11, "CTA_USE", U32),
    Attr(12, "CTA_ID", U32),
    Attr(13, "CTA_NAT_DST", CTA_NAT),
    Attr(14, "CTA_TUPLE_MASTER", CTA_TUPLE),
    Attr(15, "CTA_SEQ_ADJ_ORIG", CTA_SEQADJ),
    Attr(16, "CTA_SEQ_ADJ_REPLY", CTA_SEQADJ),
    Attr(17, "CTA_SECMARK", U32),
    Attr(18, "CTA_ZONE", U16),
    Attr(19, "CTA_SECCTX", CTA_SECCTX),
    Attr(20, "CTA_TIMESTAMP", CTA_TIMESTAMP),
    Attr(21, "CTA_MARK_MASK", U32),
    Attr(22, "CTA_LABELS", Binary),
    Attr(23, "CTA_LABELS_MASK", Binary),
    Attr(24, "CTA_SYNPROXY", CTA_SYNPROXY),
    Attr(25, "CTA_FILTER", CTA_FILTER),
    Attr(26, "CTA_STATUS_MASK", U32),
    Attr(27, "CTA_TIMESTAMP_EVENT", U64),
])

CTA_EXPECT_NAT = AttrSet("ctattr_expect_nat", [
    Attr(1, "CTA_EXPECT_NAT_DIR", U32),
    Attr(2, "CTA_EXPECT_NAT_TUPLE", CTA_TUPLE),
])

CTA_EXPECT = AttrSet("ctattr_expect", [
    Attr(1, "CTA_EXPECT_MASTER", CTA_TUPLE),
    Attr(2, "CTA_EXPECT_TUPLE", CTA_TUPLE),
    Attr(3, "CTA_EXPECT_MASK", CTA_TUPLE),
    Attr(4, "CTA_EXPECT_TIMEOUT", U32),
    Attr(5, "CTA_EXPECT_ID", U32),
    Attr(6, "CTA_EXPECT_HELP_NAME", String),
    Attr(7, "CTA_EXPECT_ZONE", U16),
    Attr(8, "CTA_EXPECT_FLAGS", U32),
    Attr(9, "CTA_EXPECT_CLASS", U32),
    Attr(10, "CTA_EXPECT_NAT", CTA_EXPECT_NAT),
    Attr(11, "CTA_EXPECT_FN", String),
])

CTA_STATS_CPU = AttrSet("ctattr_stats_cpu", [
    Attr(1, "CTA_STATS_SEARCHED", U32),
    Attr(2, "CTA_STATS_FOUND", U32),
    Attr(3, "CTA_STATS_NEW", U32),
    Attr(4, "CTA_STATS_INVALID", U32),
    Attr(5, "CTA_STATS_IGNORE", U32),
    Attr(6, "CTA_STATS_DELETE", U32),
    Attr(7, "CTA_STATS_DELETE_LIST", U32),
    Attr(8, "CTA_STATS_INSERT", U32),
    Attr(9, "CTA_STATS_INSERT_FAILED", U32),
    Attr(10, "CTA_STATS_DROP", U32),
    Attr(11, "CTA_STATS_EARLY_DROP", U32),
    Attr(12, "CTA_STATS_ERROR", U32),
    Attr(13, "CTA_STATS_SEARCH_RESTART", U32),
    Attr(14, "CTA_STATS_CLASH_RESOLVE", U32),
    Attr(15, "CTA_STATS_CHAIN_TOOLONG", U32),
])

CTA_STATS_GLOBAL = AttrSet("ctattr_stats_global", [
    Attr(1, "CTA_STATS_GLOBAL_ENTRIES", U32),
    Attr(2, "CTA_STATS_GLOBAL_MAX_ENTRIES", U32),
])

CTA_STATS_EXP = AttrSet("ctattr_expect_stats", [
    Attr(1, "CTA_STATS_EXP_NEW", U32),
    Attr(2, "CTA_STATS_EXP_CREATE", U32),
    Attr(3, "CTA_STATS_EXP_DELETE", U32),
])

MESSAGES: dict[int, tuple[str, AttrSet]] = {
    IPCTNL_MSG_CT_NEW: ("IPCTNL_MSG_CT_NEW", CTA),
    IPCTNL_MSG_CT_GET: ("IPCTNL_MSG_CT_GET", CTA),
    IPCTNL_MSG_CT_DELETE: ("IPCTNL_MSG_CT_DELETE", CTA),
    IPCTNL_MSG_CT_GET_CTRZERO: ("IPCTNL_MSG_CT_GET_CTRZERO", CTA),
    IPCTNL_MSG_CT_GET_STATS_CPU: ("IPCTNL_MSG_CT_GET_STATS_CPU", CTA_STATS_CPU),
    IPCTNL_MSG_CT_GET_STATS: ("IPCTNL_MSG_CT_GET_STATS", CTA_STATS_GLOBAL),
    IPCTNL_MSG_CT_GET_DYING: ("IPCTNL_MSG_CT_GET_DYING", CTA),
    IPCTNL_MSG_CT_GET_UNCONFIRMED: ("IPCTNL_MSG_CT_GET_UNCONFIRMED", CTA),
    IPCTNL_MSG_EXP_NEW: ("IPCTNL_MSG_EXP_NEW", CTA_EXPECT),
    IPCTNL_MSG_EXP_GET: ("IPCTNL_MSG_EXP_GET", CTA_EXPECT),
    IPCTNL_MSG_EXP_DELETE: ("IPCTNL_MSG_EXP_DELETE", CTA_EXPECT),
    IPCTNL_MSG_EXP_GET_STATS_CPU: ("IPCTNL_MSG_EXP_GET_STATS_CPU", CTA_STATS_EXP),
}

ROOTS = (CTA, CTA_EXPECT, CTA_STATS_CPU, CTA_STATS_GLOBAL, CTA_STATS_EXP)

REQUEST_ORDER: dict[AttrSet, tuple[Attr, ...]] = {
    CTA: tuple(CTA.by_name[n] for n in (
        "CTA_TUPLE_ORIG", "CTA_TUPLE_REPLY", "CTA_TUPLE_MASTER", "CTA_STATUS", "CTA_TIMEOUT",
        "CTA_MARK", "CTA_SECMARK", "CTA_PROTOINFO", "CTA_NAT_SRC", "CTA_NAT_DST",
        "CTA_SEQ_ADJ_ORIG", "CTA_SEQ_ADJ_REPLY", "CTA_HELP", "CTA_ZONE", "CTA_LABELS",
        "CTA_LABELS_MASK", "CTA_SYNPROXY")),
    CTA_TUPLE: tuple(CTA_TUPLE),
    CTA_IP: tuple(CTA_IP),
    CTA_PROTO: tuple(CTA_PROTO.by_name[n] for n in (
        "CTA_PROTO_NUM", "CTA_PROTO_SRC_PORT", "CTA_PROTO_DST_PORT",
        "CTA_PROTO_ICMP_CODE", "CTA_PROTO_ICMP_TYPE", "CTA_PROTO_ICMP_ID",
        "CTA_PROTO_ICMPV6_CODE", "CTA_PROTO_ICMPV6_TYPE", "CTA_PROTO_ICMPV6_ID")),
    CTA_PROTOINFO: tuple(CTA_PROTOINFO),
    CTA_PROTOINFO_TCP: tuple(CTA_PROTOINFO_TCP.by_name[n] for n in (
        "CTA_PROTOINFO_TCP_STATE", "CTA_PROTOINFO_TCP_FLAGS_ORIGINAL",
        "CTA_PROTOINFO_TCP_FLAGS_REPLY", "CTA_PROTOINFO_TCP_WSCALE_ORIGINAL",
        "CTA_PROTOINFO_TCP_WSCALE_REPLY")),
    CTA_PROTOINFO_SCTP: tuple(CTA_PROTOINFO_SCTP),
    CTA_PROTOINFO_DCCP: tuple(CTA_PROTOINFO_DCCP.by_name[n] for n in (
        "CTA_PROTOINFO_DCCP_STATE", "CTA_PROTOINFO_DCCP_ROLE",
        "CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ")),
    CTA_NAT: tuple(CTA_NAT.by_name[n] for n in (
        "CTA_NAT_V4_MINIP", "CTA_NAT_V4_MAXIP", "CTA_NAT_V6_MINIP", "CTA_NAT_V6_MAXIP",
        "CTA_NAT_PROTO")),
    CTA_PROTONAT: tuple(CTA_PROTONAT),
    CTA_SEQADJ: tuple(CTA_SEQADJ),
    CTA_HELP: (CTA_HELP.by_name["CTA_HELP_NAME"],),
    CTA_SYNPROXY: tuple(CTA_SYNPROXY),
    CTA_EXPECT: tuple(CTA_EXPECT.by_name[n] for n in (
        "CTA_EXPECT_TUPLE", "CTA_EXPECT_MASTER", "CTA_EXPECT_MASK", "CTA_EXPECT_TIMEOUT",
        "CTA_EXPECT_ID", "CTA_EXPECT_ZONE", "CTA_EXPECT_FLAGS", "CTA_EXPECT_HELP_NAME",
        "CTA_EXPECT_CLASS", "CTA_EXPECT_NAT", "CTA_EXPECT_FN")),
    CTA_EXPECT_NAT: tuple(CTA_EXPECT_NAT),
}
"""What a request carries, per attribute set, in the order libnetfilter_conntrack
writes it (``nfct_nlmsg_build``; expectations: ``nfexp_nlmsg_build``), which the
reference tool sends: our requests equal its requests byte for byte. Attributes not
listed (counters, use, id, timestamps, security context...) are never sent. Sets not
listed here are not part of requests."""


def compiled_tables() -> dict[str, object]:
    """What ``python -m nfnl.compile`` writes to ``ctnetlink/_compiled.py``: the attribute
    tables, the message bodies, the field names of struct leaves, the short names of
    the body sets (``ctattr_type`` -> ``CTA``) and the request order."""
    return {
        "ATTRS": attr_tables(*ROOTS),
        "MESSAGES": {mtype: (name, aset.name) for mtype, (name, aset) in MESSAGES.items()},
        "STRUCTS": struct_fields(*ROOTS),
        "BODY_NAMES": set_names(globals(), ROOTS),
        "REQUEST_ORDER": request_order(),
    }


def request_order() -> dict[str, tuple[str, ...]]:
    """:data:`REQUEST_ORDER` by set and attribute names."""
    return {aset.name: tuple(a.name for a in attrs) for aset, attrs in REQUEST_ORDER.items()}
