"""record(): conntrack 1.4.7 under strace in a private network namespace, written to pcap.

Needs root, ``ip``, ``strace`` and ``conntrack``.  Every test gets its own namespace, so the host
conntrack table is never touched.
"""

import errno
import os
import re
import socket
import struct
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from nfnl.pcap import read_pcap

from conntrack_tools.fixture.strace import Recording, TracedDatagram, record


REF = "/usr/sbin/conntrack"  # the reference tool (ours may shadow `conntrack` on PATH)
NLMSG_ERROR, NLMSG_DONE = 2, 3
CT_NEW, CT_GET = 0x0100, 0x0101
F_REQUEST, F_MULTI, F_ACK, F_DUMP, F_EXCL, F_CREATE = 0x1, 0x2, 0x4, 0x300, 0x200, 0x400


def flow(src: str, sport: int) -> list[str]:
    return ["-s", src, "-d", "198.51.100.1", "-p", "tcp", "--sport", str(sport), "--dport", "80",
            "--state", "ESTABLISHED", "-t", "300"]


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"ctrec-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def in_ns(netns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], check=True,
                          capture_output=True, text=True)


def messages(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) of every nlmsghdr in a datagram."""
    out, pos = [], 0
    while pos < len(data):
        length, kind, flags, seq, _ = struct.unpack_from("=IHHII", data, pos)
        assert length >= 16 and pos + length <= len(data)
        out.append((kind, flags, seq, data[pos + 16:pos + length]))
        pos += (length + 3) & ~3
    return out


def assert_pcap_holds(path: Path, datagrams: list[TracedDatagram]) -> None:
    packets = list(read_pcap(path))
    assert [(p.direction, p.family, p.data) for p in packets] == [
        (d.direction, d.family, d.data) for d in datagrams]
    assert [p.ts_ns for p in packets] == [d.ts_ns // 1000 * 1000 for d in datagrams]


def test_list_records_the_dump_request_and_every_reply(netns: str, tmp_path: Path) -> None:
    sources = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    for i, src in enumerate(sources):
        in_ns(netns, REF, "-I", *flow(src, 1000 + i))
    before = time.time_ns()
    result = record([REF, "-L"], tmp_path / "list.pcap", netns)
    assert result.returncode == 0
    assert result.stderr == b"conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.\n"
    assert len(result.stdout.splitlines()) == 3
    assert_pcap_holds(tmp_path / "list.pcap", result.datagrams)

    request, *replies = result.datagrams
    assert request.direction == "sent" and {d.direction for d in replies} == {"received"}
    assert before < request.ts_ns <= replies[0].ts_ns
    [(kind, flags, seq, payload)] = messages(request.data)
    assert (kind, flags, payload) == (CT_GET, F_REQUEST | F_DUMP, bytes(4))  # AF_UNSPEC
    answer = [m for d in replies for m in messages(d.data)]
    assert [m[0] for m in answer] == [CT_NEW] * 3 + [NLMSG_DONE]
    assert {(m[1], m[2]) for m in answer} == {(F_MULTI, seq)}
    for src, (_, _, _, payload) in zip(sorted(sources), sorted(answer[:3], key=lambda m: m[3])):
        assert socket.inet_aton(src) in payload


def test_create_is_acked_and_a_duplicate_refused(netns: str, tmp_path: Path) -> None:
    argv = [REF, "-I", *flow("192.0.2.9", 999)]
    created = record(argv, tmp_path / "create.pcap", netns)
    assert (created.returncode, created.stderr) == (
        0, b"conntrack v1.4.7 (conntrack-tools): 1 flow entries have been created.\n")
    assert_pcap_holds(tmp_path / "create.pcap", created.datagrams)
    request, ack = created.datagrams
    [(kind, flags, seq, _)] = messages(request.data)
    assert (kind, flags) == (CT_NEW, F_REQUEST | F_ACK | F_EXCL | F_CREATE)
    [(kind, _, ack_seq, payload)] = messages(ack.data)
    assert (kind, ack_seq, struct.unpack_from("=i", payload)[0]) == (NLMSG_ERROR, seq, 0)

    again = record(argv, tmp_path / "again.pcap", netns)
    assert again.returncode == 1
    assert b"Operation failed: Such conntrack exists, try -U to update" in again.stderr
    [(kind, _, _, payload)] = messages(again.datagrams[1].data)
    assert (kind, struct.unpack_from("=i", payload)[0]) == (NLMSG_ERROR, -errno.EEXIST)
    assert payload[4:] == again.datagrams[0].data


def test_event_listener_is_stopped_with_sigint(netns: str, tmp_path: Path) -> None:
    with Recording([REF, "-E"], tmp_path / "events.pcap", netns) as rec:
        rec.wait_subscribed()
        in_ns(netns, REF, "-I", *flow("192.0.2.7", 7))
        rec.wait_until(lambda r: len(r.datagrams()) == 1)
        rec.wait_idle()  # the event has been printed; conntrack waits for the next one
        result = rec.stop()
    assert result.returncode == 0
    # the timeout counts down from 300 while a loaded machine gets to the event
    assert re.match(rb"    \[NEW\] tcp      6 (300|29\d) ESTABLISHED src=192\.0\.2\.7 ", result.stdout)
    assert result.stderr == b"conntrack v1.4.7 (conntrack-tools): 1 flow events have been shown.\n"
    [event] = result.datagrams
    [(kind, flags, seq, payload)] = messages(event.data)
    assert (event.direction, kind, flags, seq) == ("received", CT_NEW, F_EXCL | F_CREATE, 0)
    assert socket.inet_aton("192.0.2.7") in payload
    assert_pcap_holds(tmp_path / "events.pcap", result.datagrams)


def test_record_stops_on_condition_or_timeout(netns: str, tmp_path: Path) -> None:
    def subscribed(rec: Recording) -> bool:
        rec.wait_subscribed()
        rec.wait_idle()  # blocked in recvmsg: its SIGINT handler is in place
        return True

    for kwargs in ({"until": subscribed}, {"timeout": 3.0}):
        result = record([REF, "-E"], tmp_path / "idle.pcap", netns, **kwargs)
        assert result.returncode == 0, kwargs
        assert result.stderr.endswith(b"0 flow events have been shown.\n"), kwargs
        assert result.datagrams == [] and list(read_pcap(tmp_path / "idle.pcap")) == []
