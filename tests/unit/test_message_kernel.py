"""Netlink framing and error replies on the captured kernel traffic.

``iter_messages`` tiles every datagram exactly; ``parse_error`` reads every NLMSG_ERROR
the kernel sent (ACKs, full and capped echoes of the request, extended-ack attributes)
in agreement with construct's ``NlMsgErr``; ``DumpReader`` reassembles the captured dumps.
"""
from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.kernel_data import DATAGRAMS, MESSAGES, Msg  # noqa: E402

from nfnl import headers as H  # noqa: E402
from nfnl.attrs import parse_interpreted  # noqa: E402
from nfnl.codec import AttrList  # noqa: E402
from nfnl.errors import NetlinkError  # noqa: E402
from nfnl.message import DumpReader, iter_messages, parse_error  # noqa: E402

ERRORS = [m for m in MESSAGES if m.kind == "error"]
ERRNO_OF_SCENARIO = {
    "error-enoent": errno.ENOENT, "error-eexist": errno.EEXIST, "error-einval": errno.EINVAL,
    "error-eperm": errno.EPERM, "error-eopnotsupp": errno.EOPNOTSUPP,
    "error-enospc": errno.ENOSPC, "error-ebusy": errno.EBUSY, "error-capped": errno.ENOENT,
    "error-extack": errno.ERANGE,
}


def request_for(m: Msg) -> Msg:
    """The request we sent that ``m`` answers (same scenario and sequence number)."""
    (req,) = [r for r in MESSAGES if r.direction == "sent" and r.scenario == m.scenario
              and r.seq == m.seq]
    return req


@pytest.mark.parametrize("buf", DATAGRAMS, ids=[f"{i:03d}" for i in range(len(DATAGRAMS))])
def test_messages_tile_the_datagram(buf: bytes) -> None:
    pos = 0
    for off, ln, *_ in iter_messages(buf):
        assert off == pos and ln >= 16
        pos = off + ((ln + 3) & ~3)
    assert pos == len(buf)


@pytest.mark.parametrize("m", ERRORS, ids=[m.name for m in ERRORS])
def test_error_replies(m: Msg) -> None:
    err = parse_error(m.datagram, m.off, m.ln, m.flags)
    c = H.NlMsgErr.parse(m.raw[16:36])
    assert err.errno == -c.error
    assert err.request_header == (c.msg.nlmsg_len, c.msg.nlmsg_type, c.msg.nlmsg_flags,
                                  c.msg.nlmsg_seq, c.msg.nlmsg_pid)
    req = request_for(m)
    assert err.request_header[:4] == (req.ln, req.type, req.flags, req.seq)
    if err.errno == 0:
        assert m.flags & 0x100 and err.request == req.raw[:16]  # ACKs are capped
    else:
        assert err.errno == ERRNO_OF_SCENARIO[m.scenario]
        if m.flags & 0x100:  # NETLINK_CAP_ACK
            assert err.request == req.raw[:16] and m.ln == 36
        else:
            assert err.request == req.raw  # the whole request is echoed
        assert str(NetlinkError(err.errno, err.request, err.message))


def test_extended_ack() -> None:
    (m,) = [m for m in ERRORS if m.flags & 0x200]
    err = parse_error(m.datagram, m.off, m.ln, m.flags)
    assert err.message == "Attribute failed policy validation"
    assert err.ext_ack.get("NLMSGERR_ATTR_OFFS") == 36  # CTA_TIMEOUT in the request
    req = request_for(m)
    assert req.raw[36:40] == bytes.fromhex("06000700")  # nla_len 6, CTA_TIMEOUT
    tlv = m.raw[16 + 4 + len(req.raw):]
    theirs = parse_interpreted(H.NLMSGERR_ATTRS, tlv)
    ours = [(a.name, a.flags, a.value) for a in err.ext_ack]
    assert ours == theirs
    assert isinstance(err.ext_ack, AttrList)


def test_acks_and_errors_are_all_there() -> None:
    codes = [parse_error(m.datagram, m.off, m.ln, m.flags).errno for m in ERRORS]
    assert codes.count(0) > 50
    assert set(codes) - {0} == set(ERRNO_OF_SCENARIO.values())


def test_dump_reader_reassembles_the_captured_dumps() -> None:
    scenarios = {m.scenario for m in MESSAGES if m.scenario.startswith("dump")}
    assert len(scenarios) >= 7
    for sc in scenarios:
        reqs = [m for m in MESSAGES if m.scenario == sc and m.direction == "sent"]
        for req in reqs:
            reader = DumpReader(req.seq, req.raw)
            got = []
            for buf in dict.fromkeys(m.datagram for m in MESSAGES
                                     if m.scenario == sc and m.direction == "received"
                                     and m.seq == req.seq):
                assert not reader.done
                got += reader.feed(buf)
            assert reader.done and not reader.interrupted
            want = [m for m in MESSAGES if m.scenario == sc and m.seq == req.seq
                    and m.direction == "received" and m.type >= 0x10]
            assert [(off, ln) for _, off, ln in got] == [(m.off, m.ln) for m in want]
