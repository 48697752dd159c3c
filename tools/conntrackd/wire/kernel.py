"""What a received sync message becomes in the kernel: the C daemon's request objects.

The C receiver turns a message into a libnetfilter_conntrack object and sends it with
``nl_create_conntrack`` / ``nl_update_conntrack`` (commit, and injection with
``DisableExternalCache``) or ``nl_create_expect``. These functions build the same
requests as library objects for :class:`ctnetlink.client.Conntrack` (``create``,
``update``, ``create_expect``), from the Flow / Expect that
:func:`~.codec.decode_payload` gave: the reply tuple is the plain inversion of the
original one (the kernel applies the NAT requests itself), SNAT/DNAT become
``nat_src``/``nat_dst`` ranges of one address and port, the EXPECTED status bit is
cleared, and TCP flows get the window tracking flags of ``TCPWindowTracking``.
:data:`NAT_PORT_PROTOS` is the ``nat_port_protos`` argument of
:func:`ctnetlink.encode.encode_flow` that gives the C daemon's exact request bytes.
"""
from __future__ import annotations

from ctnetlink.model import Expect, Flow, NatRange, TcpInfo

from . import constants as K
from .codec import reply_tuple

IP_CT_TCP_FLAG_WINDOW_SCALE = 0x01
IP_CT_TCP_FLAG_SACK_PERM = 0x02
IP_CT_TCP_FLAG_CLOSE_INIT = 0x04
IP_CT_TCP_FLAG_BE_LIBERAL = 0x08
TCP_CONNTRACK_TIME_WAIT = 7
NAT_PORT_PROTOS = frozenset((6, 17))
"""libnetfilter_conntrack puts NAT ports in a request only for TCP and UDP."""
FALLBACK_TIMEOUT = 60
"""The commit timeout of an entry whose remaining lifetime ran out (1.4.7)."""


def commit_timeout(sent: int | None, elapsed: int, configured: int | None = None) -> int:
    """The timeout the C daemon gives a committed entry: ``CommitTimeout`` if configured,
    else the received TIMEOUT minus the seconds since the last update, 60 if negative
    (0 stays 0: the C daemon then sends no timeout and the kernel refuses the entry)."""
    if configured:
        return configured
    left = (sent or 0) - elapsed
    return FALLBACK_TIMEOUT if left < 0 else left


def _nat_range(addr, port: int | None) -> NatRange:
    return NatRange(min_ip=addr, min_port=port, max_port=port)


def _tcp(flow: Flow, window_tracking: bool) -> TcpInfo | None:
    tcp = flow.tcp
    if tcp is None or tcp.state is None:
        return tcp
    flags = IP_CT_TCP_FLAG_SACK_PERM | (IP_CT_TCP_FLAG_WINDOW_SCALE if window_tracking
                                        else IP_CT_TCP_FLAG_BE_LIBERAL)
    if tcp.state >= TCP_CONNTRACK_TIME_WAIT:
        flags |= IP_CT_TCP_FLAG_CLOSE_INIT
    return TcpInfo(state=tcp.state, wscale_orig=tcp.wscale_orig, wscale_reply=tcp.wscale_reply,
                   flags_orig=(flags, flags), flags_reply=(flags, flags))


def _nat(flow: Flow) -> tuple[NatRange | None, NatRange | None]:
    """The NAT requests a message carried, read back from the reply tuple it produced."""
    o, r = flow.orig, flow.reply
    if o is None or r is None:
        return None, None
    inv = reply_tuple(o)
    src_ip = r.dst if r.dst != inv.dst else None
    dst_ip = r.src if r.src != inv.src else None
    if o.proto in (1, 58):
        src_port = dst_port = None  # ICMP "ports" never travel as NAT requests
    else:
        src_port = r.dport if r.dport != inv.dport else None
        dst_port = r.sport if r.sport != inv.sport else None
    nat_src = _nat_range(src_ip, src_port) if src_ip is not None or src_port is not None else None
    nat_dst = _nat_range(dst_ip, dst_port) if dst_ip is not None or dst_port is not None else None
    return nat_src, nat_dst


def commit_flow(flow: Flow, *, timeout: int | None = None, window_tracking: bool = False) -> Flow:
    """The entry ``nl_create_conntrack`` asks the kernel to create for a received flow
    (commit, or a NEW injected with ``DisableExternalCache``)."""
    nat_src, nat_dst = _nat(flow)
    status = flow.status
    if status is not None:
        status &= ~K.IPS_EXPECTED
    return Flow(family=flow.family, orig=flow.orig.copy(zone=None), reply=reply_tuple(flow.orig),
                master=flow.master, status=status,
                timeout=timeout if timeout else None, mark=flow.mark, zone=flow.zone,
                tcp=_tcp(flow, window_tracking), sctp=flow.sctp, dccp=flow.dccp,
                helper=flow.helper, nat_src=nat_src, nat_dst=nat_dst,
                seq_adj_orig=flow.seq_adj_orig, seq_adj_reply=flow.seq_adj_reply,
                labels=flow.labels, labels_size=flow.labels_size, synproxy=flow.synproxy)


def update_flow(flow: Flow, *, timeout: int | None = None, window_tracking: bool = False) -> Flow:
    """The entry ``nl_update_conntrack`` sends for a received update: NAT requests, NAT
    status bits, helper and master removed (the kernel refuses to change them)."""
    f = commit_flow(flow, timeout=timeout, window_tracking=window_tracking)
    return f.copy(nat_src=None, nat_dst=None, helper=None, master=None,
                  status=None if flow.status is None else flow.status & ~K.IPS_NAT_MASK)


def commit_expect(exp: Expect, *, timeout: int | None = None) -> Expect:
    """The expectation ``nl_create_expect`` asks the kernel to create."""
    return exp.copy(timeout=timeout if timeout else exp.timeout)
