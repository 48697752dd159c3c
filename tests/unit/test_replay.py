"""nfnl.replay: recorded kernel replies served to our code, without root or a kernel."""
from __future__ import annotations

import errno
import selectors
import socket
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_replay_recordings import packets, recording, write_pcap  # noqa: E402

import nfnl.socket as nsock  # noqa: E402
from ctnetlink.client import Conntrack  # noqa: E402
from ctnetlink.errors import ConntrackError  # noqa: E402
from nfnl.codec import nla, nla_nest, nla_u32  # noqa: E402
from nfnl.errors import NetlinkError  # noqa: E402
from nfnl.message import NLMSGHDR, build_message, build_nfnl, iter_messages, set_seq  # noqa: E402
from nfnl.replay import (  # noqa: E402
    Replay, ReplayExhausted, ReplayMismatch, ReplaySocket, conversation_diff, describe, install,
    installed, uninstall,
)
from nfnl.socket import NetlinkSocket  # noqa: E402

CT_NEW, CT_GET, CT_DELETE = 0x100, 0x101, 0x102
REQ, ACK, DUMP = 0x1, 0x4, 0x300


def ack(seq: int, request: bytes, err: int = 0, pid: int = 4242) -> bytes:
    return build_message(2, 0x100 if not err else 0, struct.pack("=i", -err) + request[:16], seq, pid)


def changed_lines(diff: str) -> list[tuple[str, str]]:
    """(sign, text) of the -/+ lines of a unified diff (indentation stripped)."""
    out = []
    for line in diff.splitlines():
        line = line.strip()
        if line[:1] in "-+" and not line.startswith(("---", "+++")):
            out.append((line[0], line[1:].strip()))
    return out


def headers(data: bytes) -> list[tuple[int, int, int, int]]:
    return [(t, f, seq, pid) for _, _, t, f, seq, pid in iter_messages(data)]


# --- the reference tool's recordings, served to our client ---------------------------------------

def test_dump_of_a_reference_recording_yields_its_flows(tmp_path: Path) -> None:
    write_pcap("list", tmp_path / "list.pcap")
    with ReplaySocket(tmp_path / "list.pcap") as sock:
        flows = list(Conntrack(sock=sock).dump())
    assert sorted(str(f.orig.src) for f in flows) == ["192.0.2.1", "192.0.2.9", "2001:db8::1"]
    assert [f.zone for f in flows if f.family == socket.AF_INET6] == [3]
    assert conversation_diff(tmp_path / "list.pcap", sock.replay.played) == ""


def test_replies_carry_the_new_seq_and_our_portid() -> None:
    replay = Replay(recording("list"))
    sock = replay.socket()
    request = set_seq(recording("list")[0][1], 12345)
    sock.send(request)
    replies = [sock.recv(), sock.recv()]
    sock.setblocking(False)
    assert sock.recv() is None
    for data in replies:
        for _, _, seq, pid in headers(data):
            assert (seq, pid) == (12345, sock.portid)
    assert replay.sent == [request]


def test_the_echoed_request_header_of_an_error_is_rewritten_too() -> None:
    sock = Replay(recording("get_enoent")).socket()
    request = set_seq(recording("get_enoent")[0][1], 777, 99)
    sock.send(request)
    reply = sock.recv()
    assert reply is not None
    (t, _, seq, pid), = headers(reply)
    assert (t, seq, pid) == (2, 777, sock.portid)
    assert struct.unpack_from("=iIHHII", reply, 16) == (-errno.ENOENT, *NLMSGHDR.unpack(request[:16]))


def test_kernel_errors_surface_as_typed_exceptions() -> None:
    sock = Replay(recording("get_enoent")).socket()
    with pytest.raises(NetlinkError) as info:
        sock.request(set_seq(recording("get_enoent")[0][1], sock.next_seq()))
    assert info.value.errno == errno.ENOENT

    sock = Replay(recording("create_eexist")).socket()
    with pytest.raises(NetlinkError) as info:
        sock.request(set_seq(recording("create_eexist")[0][1], sock.next_seq()))
    assert info.value.errno == errno.EEXIST


def test_acks_the_reference_tool_never_read_are_completed() -> None:
    # conntrack -G reads the flow and stops: the kernel's ACK is not in the recording
    request = recording("get")[0][1]
    got: list[int] = []
    sock = Replay(recording("get")).socket()
    sock.request(set_seq(request, 5), on_data=lambda buf, off, ln: got.append(ln))
    assert got == [len(recording("get")[1][1])]

    bare = Replay(recording("get"), complete_acks=False).socket()
    with pytest.raises(ReplayExhausted, match="holds no more"):
        bare.request(set_seq(request, 5))


def test_count_and_stats_replies() -> None:
    ct = Conntrack(sock=Replay(recording("count")).socket())
    assert ct.count() == 4


# --- matching ---------------------------------------------------------------------------------

def test_a_diverging_request_raises_a_readable_mismatch() -> None:
    sock = Replay(recording("list")).socket()
    with pytest.raises(ReplayMismatch) as info:
        list(Conntrack(sock=sock).dump(family=socket.AF_INET))
    text = str(info.value)
    assert "sent:\n  IPCTNL_MSG_CT_GET flags=REQUEST|DUMP family=AF_INET" in text
    assert "recorded request #0 (unused)" in text
    assert "-IPCTNL_MSG_CT_GET flags=REQUEST|DUMP family=AF_UNSPEC" in text


def test_mismatch_shows_attribute_differences() -> None:
    sock = Replay(recording("get_enoent")).socket()
    sent = recording("get_enoent")[0][1]
    changed = sent.replace(bytes.fromhex("c0000207"), bytes.fromhex("c0000208"))  # 192.0.2.8
    with pytest.raises(ReplayMismatch) as info:
        sock.send(changed)
    assert changed_lines(str(info.value)) == [("-", "CTA_IP_V4_SRC = 192.0.2.7"),
                                              ("+", "CTA_IP_V4_SRC = 192.0.2.8")]


def two_exchanges() -> list[tuple[str, bytes]]:
    a = build_nfnl(CT_DELETE, REQ | ACK, 2, nla_u32(8, 1), seq=1)
    b = build_nfnl(CT_DELETE, REQ | ACK, 2, nla_u32(8, 2), seq=2)
    return [("sent", a), ("received", ack(1, a)), ("sent", b), ("received", ack(2, b, errno.ENOENT))]


def test_first_match_answers_requests_in_any_order_once_each() -> None:
    conv = two_exchanges()
    sock = Replay(conv).socket()
    with pytest.raises(NetlinkError):
        sock.request(set_seq(conv[2][1], 50))
    sock.request(set_seq(conv[0][1], 51))
    with pytest.raises(ReplayMismatch, match=r"#0 \(already used\)"):
        sock.request(set_seq(conv[0][1], 52))
    assert sock.replay.unused == []
    sock.replay.assert_complete()


def test_strict_replay_requires_the_recorded_order() -> None:
    conv = two_exchanges()
    sock = Replay(conv, strict=True).socket()
    with pytest.raises(ReplayMismatch, match="expected \\(next recorded request\\)"):
        sock.send(conv[2][1])
    sock.request(set_seq(conv[0][1], 9))
    with pytest.raises(ReplayMismatch) as info:
        sock.replay.assert_complete()
    assert "CTA_MARK = 2" in str(info.value)


def test_matching_ignores_padding_and_attribute_order() -> None:
    ordered = build_nfnl(CT_DELETE, REQ | ACK, 2, nla(8, b"\0\0\0\1") + nla(18, b"\0\3"), seq=1)
    sock = Replay([("sent", ordered), ("received", ack(1, ordered))]).socket()
    garbage_pad = nla(18, b"\0\3")[:-2] + b"\xaa\xbb"
    swapped = build_nfnl(CT_DELETE, REQ | ACK, 2, garbage_pad + nla(8, b"\0\0\0\1"), seq=77)
    sock.request(swapped)


def test_batches_are_matched_whole_and_renumbered() -> None:
    a = build_nfnl(CT_DELETE, REQ | ACK, 2, nla_u32(8, 1), seq=10)
    b = build_nfnl(CT_DELETE, REQ | ACK, 2, nla_u32(8, 2), seq=11)
    conv = [("sent", a + b), ("received", ack(10, a)), ("received", ack(11, b, errno.ENOENT))]
    sock = Replay(conv).socket()
    results = sock.batch([set_seq(a, 0), set_seq(b, 0)])
    assert results[0] is None and results[1].errno == errno.ENOENT


# --- events, selectors, lifetime ------------------------------------------------------------------

def test_events_go_to_sockets_bound_to_groups() -> None:
    replay = Replay(recording("events"))
    ct = Conntrack(sock=replay.socket())
    events = []
    with pytest.raises(ReplayExhausted):
        for ev in ct.events(sock=replay.socket(groups=0x7)):
            events.append((ev.type.name, str(ev.flow.orig.src), ev.flow.mark))
    assert events == [("NEW", "192.0.2.60", 0), ("UPDATE", "192.0.2.60", 9),
                      ("DESTROY", "192.0.2.60", 9)]


def test_events_after_add_membership_and_a_chosen_end() -> None:
    replay = Replay(packets("events"), exhausted=KeyboardInterrupt)
    plain = replay.socket()
    plain.setblocking(False)
    assert plain.recv() is None
    plain.add_membership(1)
    assert sum(1 for _ in iter(plain.recv, None)) == 3
    listener = replay.socket()
    listener.add_membership(3)
    for _ in range(3):
        listener.recv()
    with pytest.raises(KeyboardInterrupt):
        listener.recv()


def test_fileno_is_readable_while_replies_are_queued() -> None:
    sock = Replay(recording("list")).socket(nonblocking=True)
    sel = selectors.DefaultSelector()
    sel.register(sock.fileno(), selectors.EVENT_READ)
    assert sel.select(0) == []
    sock.send(recording("list")[0][1])
    assert len(sel.select(0)) == 1
    assert sock.recv() and sock.recv()
    assert sel.select(0) == []
    assert sock.recv() is None
    sel.close()
    sock.close()
    assert sock.closed


def test_received_datagrams_are_truncated_to_the_buffer() -> None:
    sock = Replay(recording("list")).socket()
    sock.send(recording("list")[0][1])
    assert len(sock.recv(100)) == 100


def test_a_pcap_with_other_netlink_protocols_serves_each_its_own() -> None:
    route = build_message(18, REQ | DUMP, b"\0" * 16, seq=3)
    conv = [("sent", route, 0), ("received", build_message(3, 2, b"\0" * 4, seq=3, pid=1), 0),
            *recording("count")]
    replay = Replay(conv)
    assert Conntrack(sock=replay.socket()).count() == 4
    rt = replay.socket(protocol=0)
    rt.send(route)
    assert headers(rt.recv())[0][0] == 3


# --- whole programs -------------------------------------------------------------------------------

def test_install_replays_sockets_that_code_opens_itself(tmp_path: Path) -> None:
    write_pcap("list", tmp_path / "list.pcap")
    real = nsock._socket
    with installed(tmp_path / "list.pcap") as replay:
        with Conntrack() as ct:
            assert isinstance(ct.sock, NetlinkSocket)
            assert len(list(ct.dump())) == 3
        assert len(replay.sent) == 1
    assert nsock._socket is real
    replay = install(Replay(recording("count")))
    try:
        assert Conntrack().count() == 4
    finally:
        uninstall()
    assert nsock._socket is real


def test_python_m_nfnl_replay_runs_a_program(tmp_path: Path) -> None:
    write_pcap("list", tmp_path / "list.pcap")
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent("""
        import sys
        from ctnetlink.client import Conntrack
        with Conntrack() as ct:
            print(sys.argv[1:], sorted(str(f.orig.src) for f in ct.dump()))
    """))
    out = subprocess.run([sys.executable, "-m", "nfnl.replay", str(tmp_path / "list.pcap"),
                          str(script), "-x"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "['-x'] ['192.0.2.1', '192.0.2.9', '2001:db8::1']\n"


# --- describing and comparing ---------------------------------------------------------------------

def test_describe_names_messages_flags_and_attributes() -> None:
    lines = describe(recording("create")[0][1])
    assert lines[0] == "IPCTNL_MSG_CT_NEW flags=REQUEST|ACK|EXCL|CREATE family=AF_INET version=0 res_id=0"
    assert "      CTA_IP_V4_SRC = 192.0.2.50" in lines
    assert describe(recording("create")[1][1]) == [
        "NLMSG_ERROR ACK flags=CAPPED for IPCTNL_MSG_CT_NEW flags=REQUEST|ACK|EXCL|CREATE"]
    assert describe(b"\x05\0\0\0") == ["undecodable datagram (truncated netlink header (at offset 0)): 05000000"]


def test_conversation_diff_ignores_seq_portid_time_and_packing() -> None:
    original = recording("list")
    renumbered = [(d, b"".join(set_seq(data[off:off + ln], 99, 7) for off, ln, *_ in iter_messages(data)))
                  for d, data in original]
    split = [renumbered[0]] + [("received", renumbered[1][1][off:off + ln])
                               for off, ln, *_ in iter_messages(renumbered[1][1])] + renumbered[2:]
    assert conversation_diff(original, split) == ""
    changed = [(d, data.replace(bytes.fromhex("c0000209"), bytes.fromhex("c000020a"))) for d, data in original]
    diff = conversation_diff(original, changed)
    assert sorted(changed_lines(diff)) == [
        ("+", "CTA_IP_V4_DST = 192.0.2.10"), ("+", "CTA_IP_V4_SRC = 192.0.2.10"),
        ("-", "CTA_IP_V4_DST = 192.0.2.9"), ("-", "CTA_IP_V4_SRC = 192.0.2.9")]
    assert conversation_diff(original, changed, requests_only=True) == ""
