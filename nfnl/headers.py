"""Construct declarations of the fixed netlink/nfnetlink headers.

``struct nlmsghdr`` and ``struct nlmsgerr`` are in host byte order, ``struct nfgenmsg``
carries a big-endian ``res_id``. This is nfnl's schema module: :func:`compiled_tables`
derives the ``struct`` formats the runtime uses (``python -m nfnl.compile`` writes them to
``nfnl/_compiled.py``).
"""
from __future__ import annotations

import construct as cs

from .attrs import Attr, AttrSet, Binary, String, attr_tables, struct_format

NlMsgHdr = cs.Struct(
    "nlmsg_len" / cs.Int32un,
    "nlmsg_type" / cs.Int16un,
    "nlmsg_flags" / cs.Int16un,
    "nlmsg_seq" / cs.Int32un,
    "nlmsg_pid" / cs.Int32un,
)

NfGenMsg = cs.Struct(
    "nfgen_family" / cs.Int8ub,
    "version" / cs.Int8ub,
    "res_id" / cs.Int16ub,
)

NlMsgErr = cs.Struct(
    "error" / cs.Int32sn,
    "msg" / NlMsgHdr,
)
"""``struct nlmsgerr``: negative errno (0 = ACK) and the header of the request it answers;
the rest of the request (or, with NLM_F_CAPPED, nothing) and extended-ack TLVs follow."""

NlMsgDone = cs.Struct("status" / cs.Int32sn)

NLMSGERR_ATTRS = AttrSet("nlmsgerr_attrs", [
    Attr(1, "NLMSGERR_ATTR_MSG", String),
    Attr(2, "NLMSGERR_ATTR_OFFS", cs.Int32un),
    Attr(3, "NLMSGERR_ATTR_COOKIE", Binary),
    Attr(4, "NLMSGERR_ATTR_POLICY", Binary),
    Attr(5, "NLMSGERR_ATTR_MISS_TYPE", cs.Int32un),
    Attr(6, "NLMSGERR_ATTR_MISS_NEST", cs.Int32un),
])

HEADERS = {
    "NLMSGHDR": NlMsgHdr,
    "NFGENMSG": NfGenMsg,
    "NLMSGERR": NlMsgErr,
    "NLMSGDONE": NlMsgDone,
}


def compiled_tables() -> dict[str, object]:
    """What ``python -m nfnl.compile`` writes to ``nfnl/_compiled.py``."""
    return {**{name + "_FMT": struct_format(decl) for name, decl in HEADERS.items()},
            "ATTRS": attr_tables(NLMSGERR_ATTRS)}
