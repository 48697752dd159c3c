"""The model against the kernel (private namespaces): the README's snippet as printed,
flows created from the original tuple alone (compared with what ``conntrack -I``
creates), names and enums read back, and ``Flow.key``/``merge``/``diff`` on the real
NEW/UPDATE/DESTROY events of a TCP connection.
"""
from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.ftp import enable_tracking
from helpers.netns import NetNS

import ctnetlink
from ctnetlink.enums import EventType, Group, SctpState, Status, TcpState
from ctnetlink.model import Flow, SctpInfo, Tuple
from nfnl.socket import NetlinkSocket

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_library_example() -> tuple[str, str]:
    """(code, printed output) of the first example of the README's library section."""
    text = README.read_text()
    section = text[text.index("## The library\n"):]
    section = section[:section.index("\n## ", 1)]
    code, printed = re.findall(r"^```(?:python)?\n(.*?)^```", section, re.M | re.S)[:2]
    return code, printed


def test_readme_example_runs_as_printed() -> None:
    code, printed = readme_library_example()
    assert "import ctnetlink" in code and "reply=" not in code
    with NetNS("model") as ns:
        out = ns.run(sys.executable, "-c", code)
    assert out.stdout == printed


# --- create from the original tuple alone ------------------------------------------------

V4 = ("10.7.0.1", "10.7.0.2")
V6 = ("2001:db8:7::1", "2001:db8:7::2")
CASES = [  # (name, address pair, our Flow fields, the reference's options)
    ("tcp", V4, dict(proto=6, sport=4000, dport=80), dict(tcp_state="ESTABLISHED"),
     ["-p", "tcp", "--sport", "4000", "--dport", "80", "--state", "ESTABLISHED"]),
    ("udp", V4, dict(proto=17, sport=53, dport=5353), {},
     ["-p", "udp", "--sport", "53", "--dport", "5353"]),
    ("icmp", V4, dict(proto=1, icmp_type=8, icmp_code=0, icmp_id=77), {},
     ["-p", "icmp", "--icmp-type", "8", "--icmp-code", "0", "--icmp-id", "77"]),
    ("sctp", V4, dict(proto=132, sport=5000, dport=5001),  # the kernel needs the tags too
     dict(sctp=SctpInfo(state="ESTABLISHED", vtag_orig=1 << 24, vtag_reply=2 << 24)),
     ["-p", "sctp", "--sport", "5000", "--dport", "5001", "--state", "ESTABLISHED",
      "--orig-vtag", "1", "--reply-vtag", "2"]),
    ("tcp6", V6, dict(proto=6, sport=4000, dport=443), dict(tcp_state="SYN_SENT"),
     ["-p", "tcp", "--sport", "4000", "--dport", "443", "--state", "SYN_SENT"]),
    ("udp6", V6, dict(proto=17, sport=1, dport=2), {},
     ["-p", "udp", "--sport", "1", "--dport", "2"]),
    ("icmpv6", V6, dict(proto=58, icmp_type=128, icmp_code=0, icmp_id=9), {},
     ["-p", "icmpv6", "--icmpv6-type", "128", "--icmpv6-code", "0", "--icmpv6-id", "9"]),
    ("sctp6", V6, dict(proto=132, sport=7, dport=8),
     dict(sctp=SctpInfo(state=SctpState.COOKIE_WAIT, vtag_orig=1 << 24, vtag_reply=2 << 24)),
     ["-p", "sctp", "--sport", "7", "--dport", "8", "--state", "COOKIE_WAIT",
      "--orig-vtag", "1", "--reply-vtag", "2"]),
]


@pytest.fixture(scope="module")
def shared_ns():
    """One namespace for the create cases (each leaves the table empty)."""
    with NetNS("model") as n:
        yield n


@pytest.mark.parametrize("name, addrs, fields, extra, ref_args", CASES, ids=[c[0] for c in CASES])
def test_create_from_the_original_tuple_alone(shared_ns, name, addrs, fields, extra,
                                              ref_args) -> None:
    src, dst = addrs
    orig = Tuple(src=src, dst=dst, **fields)
    with shared_ns.enter(), ctnetlink.Conntrack() as ct:
        shared_ns.conntrack("-I", "-s", src, "-d", dst, *ref_args, "-t", "100")
        theirs = ct.get(orig)
        ct.delete(orig)
        ct.create(Flow(orig=orig, timeout=100, **extra))
        ours = ct.get(orig)
        ct.delete(orig)
        assert ct.count() == 0
    assert ours.reply == theirs.reply == orig.reversed()
    assert ours.orig == theirs.orig == orig
    assert ours.status == theirs.status == Status.CONFIRMED
    assert ours.key == theirs.key == Flow(orig=orig).key
    assert ours.state == theirs.state
    if "tcp_state" in extra:
        assert ours.tcp_state is TcpState[extra["tcp_state"]]
    if "sctp" in extra:  # the reference's tags are byte-swapped (see protocols.vtag)
        assert ours.sctp == theirs.sctp == extra["sctp"]
        assert type(ours.sctp_state) is SctpState


def test_names_and_enums_read_back(ns, ct) -> None:
    orig = Tuple(src="10.8.0.1", dst="10.8.0.2", proto=6, sport=1, dport=2)
    ct.create(Flow(orig=orig, timeout=50, status=["ASSURED", "SEEN_REPLY"],
                   tcp_state=TcpState.TIME_WAIT))
    (flow,) = ct.dump()
    assert flow.status == Status.ASSURED | Status.SEEN_REPLY | Status.CONFIRMED
    assert type(flow.status) is Status and flow.status_bits == 0xE
    assert flow.tcp_state is TcpState.TIME_WAIT and flow.state_name == "TIME_WAIT"
    ct.update(flow.copy(tcp_state="CLOSE", timeout=20))
    assert ct.get(orig).tcp_state is TcpState.CLOSE
    with pytest.raises(ValueError, match="unknown TCP state 'CLOSED'"):
        ct.update(flow.copy(tcp_state="CLOSED"))


# --- identity and state tracking on real events -------------------------------------------

def _events_until(events, done, limit: int = 50) -> list:
    out = []
    for ev in events:
        out.append(ev)
        if done(ev) or len(out) >= limit:
            return out
    return out


def test_key_merge_and_diff_on_the_events_of_a_tcp_connection(ns, ct) -> None:
    enable_tracking(ns)
    sock = NetlinkSocket(groups=Group.CONNTRACK, rcvbuf=4 << 20)
    sock.settimeout(5.0)
    events = ct.events(sock=sock)
    srv = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(srv.getsockname())
    peer, _ = srv.accept()
    cli.sendall(b"ping")
    assert peer.recv(4) == b"ping"
    orig = Tuple(src="127.0.0.1", dst="127.0.0.1", proto=6, sport=cli.getsockname()[1],
                 dport=srv.getsockname()[1])

    opening = _events_until(events, lambda e: e.flow.tcp_state is TcpState.ESTABLISHED)
    assert [e.type for e in opening][0] is EventType.NEW
    assert {e.type for e in opening[1:]} == {EventType.UPDATE}
    view = opening[0].flow
    for e in opening[1:]:
        step = view.merge(e.flow)
        changes = view.diff(step)
        assert "tcp.state" in changes and changes["tcp.state"][1] is e.flow.tcp_state
        view = step
    now = ct.get(orig)
    assert view.key == now.key == Flow(orig=orig).key
    assert {e.flow.key for e in opening} == {now.key}
    # what the events do not carry (use, counters, mark 0, timestamps) or what ticks
    # (timeout) is all that may differ from the kernel's entry
    assert set(view.diff(now)) <= {"timeout", "use", "mark", "event_timestamp"}
    assert view.tcp == now.tcp and view.status == now.status

    cli.close()
    peer.close()
    srv.close()
    ct.flush()
    closing = _events_until(events, lambda e: e.type is EventType.DESTROY)
    assert closing[-1].type is EventType.DESTROY
    assert {e.flow.key for e in closing} == {now.key}
    final = view
    for e in closing:
        final = final.merge(e.flow)
    destroy = closing[-1].flow
    assert destroy.tcp == type(destroy.tcp)(state=destroy.tcp_state)  # the state alone
    assert final.tcp_state is destroy.tcp_state and final.tcp.wscale_orig is not None
    assert final.status == destroy.status and Status.DYING in final.status
    assert final.key == view.key
    sock.close()
