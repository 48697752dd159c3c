"""The captured kernel messages (``tests/unit/data/kernel_messages.json``, written by
``tests/helpers/capture.py``) split into single messages with what the tests need to
know about each: scenario, direction, type, flags and which schema describes it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from nfnl.message import iter_messages

DATA = Path(__file__).resolve().parents[1] / "unit" / "data" / "kernel_messages.json"
HEADER_COPY = DATA.parent / "kernel_nfnetlink_conntrack.h"

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST = 1
FLOW_TYPES = {0x100, 0x101, 0x102, 0x103, 0x106, 0x107}
EXPECT_TYPES = {0x200, 0x201, 0x202}


@dataclass(frozen=True)
class Msg:
    scenario: str
    direction: str  # "sent" (our request) or "received" (from the kernel)
    datagram: bytes
    index: int  # position of the datagram in the file
    off: int
    ln: int
    type: int
    flags: int
    seq: int
    pid: int

    @property
    def raw(self) -> bytes:
        return self.datagram[self.off:self.off + self.ln]

    @property
    def body(self) -> bytes:
        """The attributes (after nlmsghdr and nfgenmsg)."""
        return self.raw[20:]

    @property
    def name(self) -> str:
        return f"{self.index:03d}-{self.scenario}-{self.direction[0]}-{self.off}"

    @cached_property
    def kind(self) -> str:
        """flow | expect | stats | stats_cpu | exp_stats | error | done."""
        t = self.type
        if t == NLMSG_ERROR:
            return "error"
        if t == NLMSG_DONE:
            return "done"
        if t == 0x103 and not self.flags & NLM_F_REQUEST:
            # the kernel answers IPCTNL_MSG_EXP_GET_STATS_CPU with type 0x0103
            # (nfnl_msg_type(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_EXP_GET_STATS_CPU))
            return "exp_stats"
        if t in FLOW_TYPES:
            return "flow"
        if t in EXPECT_TYPES:
            return "expect"
        return {0x104: "stats_cpu", 0x105: "stats", 0x203: "exp_stats"}[t]


def load() -> tuple[dict, list[bytes], list[Msg]]:
    """(file metadata, datagrams, messages)."""
    doc = json.loads(DATA.read_text())
    datagrams, messages = [], []
    for i, d in enumerate(doc["datagrams"]):
        buf = bytes.fromhex(d["hex"])
        datagrams.append(buf)
        for off, ln, mtype, flags, seq, pid in iter_messages(buf):
            messages.append(Msg(d["scenario"], d["direction"], buf, i, off, ln, mtype, flags,
                                seq, pid))
    return doc, datagrams, messages


def register_ctnetlink() -> None:
    """Load ctnetlink's registration (``nfnl.registry`` entry point) so that
    ``decode_message`` names attributes."""
    from nfnl.registry import discover, subsystem

    discover()
    assert subsystem("ctnetlink") is not None, "ctnetlink's nfnl.subsystems entry point"


def attr_set_of(msg: Msg):
    """The ``ctnetlink.schema`` AttrSet of a message's attributes."""
    from ctnetlink import schema as S

    return {"flow": S.CTA, "expect": S.CTA_EXPECT, "stats": S.CTA_STATS_GLOBAL,
            "stats_cpu": S.CTA_STATS_CPU, "exp_stats": S.CTA_STATS_EXP}[msg.kind]


def set_name_of(msg: Msg) -> str:
    return attr_set_of(msg).name


DOC, DATAGRAMS, MESSAGES = load()
