"""What a received sync message becomes in the kernel: the C daemon's request objects.

The C receiver turns a message into a libnetfilter_conntrack object and sends it with
``nl_create_conntrack`` / ``nl_update_conntrack`` (commit, and injection with
``DisableExternalCache``) or ``nl_create_expect``. These functions build the same
requests as library objects for :class:`ctnetlink.client.Conntrack` (``create``,
``update``, ``create_expect``), from the Flow / Expect that
:func:`~.codec.decode_payload` gave: the reply tuple is the plain inversion of the
original one (the kernel applies the NAT requests itself), SNAT/DNAT become
``nat_src``/``nat_dst`` ranges of one address and port, the EXPECTED status bit is
cleared, and TCP flows get the "be liberal" flag unless ``TCPWindowTracking`` is on.
:data:`NAT_PORT_PROTOS` is the ``nat_port_protos`` argument of
:func:`ctnetlink.encode.encode_flow` that gives the C daemon's exact request bytes.
"""
from __future__ import annotations

from ctnetlink.model import Expect, Flow, NatRange, TcpInfo, Tuple

from . import constants as K
from .codec import nat_attributes, reply_tuple, sender_reply_l4

IP_CT_TCP_FLAG_BE_LIBERAL = 0x08
NAT_PORT_PROTOS = frozenset((6, 17))
"""libnetfilter_conntrack puts NAT ports in a request only for TCP and UDP."""
LIBNFCT_PORT_PROTOS = frozenset((6, 17, 33, 132, 136, 47))
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
    if tcp is None or tcp.state is None or window_tracking:
        return tcp
    flags = IP_CT_TCP_FLAG_BE_LIBERAL
    return TcpInfo(state=tcp.state, wscale_orig=tcp.wscale_orig, wscale_reply=tcp.wscale_reply,
                   flags_orig=(flags, flags), flags_reply=(flags, flags))


def _nat(flow: Flow) -> tuple[NatRange | None, NatRange | None]:
    """The NAT requests of the attributes a message carried (SNAT_*/SPAT_PORT become
    ``nat_src``, DNAT_*/DPAT_PORT ``nat_dst``), read back from the decoded flow with the
    sender's own detection, so that exactly the attributes that travelled count (ICMP
    flows through a NAT table carry meaningless SPAT/DPAT values: the request then holds
    an empty port nest, as the C daemon's does)."""
    snat, dnat, spat, dpat = nat_attributes(flow)
    r = flow.reply
    reply_src, reply_dst = sender_reply_l4(r)
    nat_src = nat_dst = None
    if snat or spat:
        nat_src = _nat_range(r.dst if snat else None, reply_dst if spat else None)
    if dnat or dpat:
        nat_dst = _nat_range(r.src if dnat else None, reply_src if dpat else None)
    return nat_src, nat_dst


def _request_tuple(t: Tuple) -> Tuple:
    """libnetfilter_conntrack always sends ports (GRE keys) for the protocols that have
    them, zero when the message carried none."""
    if t.proto in LIBNFCT_PORT_PROTOS and (t.sport is None or t.dport is None):
        return t.replace(sport=t.sport or 0, dport=t.dport or 0, zone=None)
    return t.replace(zone=None) if t.zone is not None else t


def commit_flow(flow: Flow, *, timeout: int | None = None, window_tracking: bool = False) -> Flow:
    """The entry ``nl_create_conntrack`` asks the kernel to create for a received flow
    (commit, or a NEW injected with ``DisableExternalCache``).

    Not reproduced: without window tracking 1.4.7 writes the TCP flags into
    libnetfilter_conntrack's protocol-info union of every flow, which corrupts the first
    byte (host order) of an SCTP flow's original verification tag (see
    ``tests/unit/test_sync_wire_fixtures.py``)."""
    nat_src, nat_dst = _nat(flow)
    status = flow.status_bits
    if status is not None:
        status &= ~K.IPS_EXPECTED
    orig = _request_tuple(flow.orig)
    return Flow(family=flow.family, orig=orig, reply=reply_tuple(orig),
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
                  status=None if flow.status_bits is None else flow.status_bits & ~K.IPS_NAT_MASK)


def commit_expect(exp: Expect, *, timeout: int | None = None) -> Expect:
    """The expectation ``nl_create_expect`` asks the kernel to create: the three tuples,
    timeout, flags and helper (class, NAT part and function are not sent by 1.4.7)."""
    return Expect(family=exp.family, master=exp.master, tuple=exp.tuple, mask=exp.mask,
                  timeout=timeout if timeout else exp.timeout, flags=exp.flags,
                  helper=exp.helper)
