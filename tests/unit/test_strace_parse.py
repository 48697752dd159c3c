"""Reading netlink datagrams back out of strace output.

The ``data/strace_*.txt`` files are real traces of conntrack 1.4.7 (Debian 12, strace 6.1,
kernel 6.18), made in a private network namespace with ``record()`` (so with ``STRACE_ARGS``):

* ``strace_create.txt``: ``conntrack -I -s 192.0.2.1 -d 198.51.100.1 -p tcp --sport 1000
  --dport 80 --state ESTABLISHED -u ASSURED -t 300`` -> NLMSG_ERROR ack (error 0)
* ``strace_exists.txt``: the same command again -> NLMSG_ERROR -EEXIST, exit status 1
* ``strace_list.txt``: ``conntrack -L`` over 60 entries -> five receive buffers
* ``strace_events.txt``: ``sh -c 'conntrack -E -p udp & sleep 0.3; conntrack -I -s 203.0.113.1
  -d 203.0.113.2 -p udp --sport 53 --dport 53 -t 30; conntrack -D -p udp; sleep 0.3;
  kill -INT $!; wait'``: four processes, interleaved ``<unfinished ...>``/``<... resumed>``
  lines, a receive interrupted by SIGINT (ERESTARTSYS).
"""

import errno
import random
import struct
from pathlib import Path

import pytest

try:
    from conntrack_tools.fixture.strace import (StraceParseError, StraceParser,
                                                TracedDatagram, parse_strace)
except ModuleNotFoundError:  # source checkout without `pip install -e .`
    from tools.fixture.strace import (StraceParseError, StraceParser,  # type: ignore[no-redef]
                                      TracedDatagram, parse_strace)

DATA = Path(__file__).parent / "data"
NLMSG_ERROR, NLMSG_DONE = 2, 3
CT_NEW, CT_GET, CT_DELETE = 0x0100, 0x0101, 0x0102
F_REQUEST, F_MULTI, F_ACK, F_DUMP, F_EXCL, F_CREATE = 0x1, 0x2, 0x4, 0x300, 0x200, 0x400


def messages(data: bytes) -> list[tuple[int, int, int, int, bytes]]:
    """(type, flags, seq, portid, payload) of every nlmsghdr in a datagram."""
    out, pos = [], 0
    while pos < len(data):
        length, kind, flags, seq, portid = struct.unpack_from("=IHHII", data, pos)
        assert length >= 16 and pos + length <= len(data)
        out.append((kind, flags, seq, portid, data[pos + 16:pos + length]))
        pos += (length + 3) & ~3
    return out


def trace(name: str) -> str:
    return (DATA / name).read_text()


def test_create_is_one_request_and_an_ack() -> None:
    sent, ack = parse_strace(trace("strace_create.txt"))
    assert (sent.pid, sent.fd, sent.family, sent.direction) == (9411, 3, 12, "sent")
    assert (ack.pid, ack.fd, ack.family, ack.direction) == (9411, 3, 12, "received")
    [(kind, flags, seq, portid, _)] = messages(sent.data)
    assert (kind, flags, portid) == (CT_NEW, F_REQUEST | F_ACK | F_EXCL | F_CREATE, 0)
    [(kind, _, ack_seq, _, payload)] = messages(ack.data)
    assert kind == NLMSG_ERROR and ack_seq == seq
    assert struct.unpack_from("=i", payload)[0] == 0
    assert payload[4:20] == sent.data[:16]  # the ack echoes the request header
    # sends are stamped at syscall entry, receives at exit (entry + duration)
    assert sent.ts_ns == 1795630706_523918419
    assert ack.ts_ns == 1795630706_524206196 + 18164


def test_exists_is_an_error_reply_quoting_the_request() -> None:
    sent, reply = parse_strace(trace("strace_exists.txt"))
    [(kind, _, _, _, payload)] = messages(reply.data)
    assert kind == NLMSG_ERROR
    assert struct.unpack_from("=i", payload)[0] == -errno.EEXIST
    assert payload[4:] == sent.data  # not capped: the whole request comes back


def test_list_dump_over_many_receive_buffers() -> None:
    datagrams = parse_strace(trace("strace_list.txt"))
    assert [(d.direction, len(d.data)) for d in datagrams] == [
        ("sent", 20), ("received", 3600), ("received", 4080), ("received", 4080),
        ("received", 2640), ("received", 20)]
    [(kind, flags, seq, _, _)] = messages(datagrams[0].data)
    assert (kind, flags) == (CT_GET, F_REQUEST | F_DUMP)
    replies = [m for d in datagrams[1:] for m in messages(d.data)]
    assert [m[0] for m in replies] == [CT_NEW] * 60 + [NLMSG_DONE]
    assert {(m[1], m[2], m[3]) for m in replies} == {(F_MULTI, seq, 9480)}
    stamps = [d.ts_ns for d in datagrams]
    assert stamps == sorted(stamps)


def test_interleaved_processes_and_resumed_calls() -> None:
    datagrams = parse_strace(trace("strace_events.txt"))
    by_pid: dict[int, list[TracedDatagram]] = {}
    for d in datagrams:
        by_pid.setdefault(d.pid, []).append(d)
    events, create, delete = by_pid[9486], by_pid[9488], by_pid[9489]
    # conntrack -E: two events on its second socket; the SIGINTed receive carries nothing
    assert [(d.fd, d.direction) for d in events] == [(4, "received")] * 2
    assert [messages(d.data)[0][:2] for d in events] == [
        (CT_NEW, F_EXCL | F_CREATE), (CT_DELETE, 0)]
    assert events[0].ts_ns == 1795630706_809768487 + 304828184  # entry of the unfinished call
    assert [d.direction for d in create] == ["sent", "received"]
    # conntrack -D: dump on fd 3, delete on fd 4 in the middle of it, then the rest of the dump
    assert [(d.fd, d.direction) for d in delete] == [
        (3, "sent"), (3, "received"), (3, "received"), (3, "received"), (4, "sent"),
        (4, "received"), (3, "received"), (3, "received")]
    assert messages(delete[-1].data)[0][0] == NLMSG_DONE
    assert set(by_pid) == {9486, 9488, 9489}  # sh and sleep never touch netlink


@pytest.mark.parametrize("name", ["strace_events.txt", "strace_list.txt"])
def test_incremental_feeding_matches_whole_parse(name: str) -> None:
    text, rng = trace(name), random.Random(7)
    parser, got, pos = StraceParser(), [], 0
    while pos < len(text):
        step = rng.randint(1, 700)
        got += parser.feed(text[pos:pos + step])
        pos += step
    assert got + parser.close() == parse_strace(text)


def test_subscription_and_idle_receive_are_visible_while_feeding() -> None:
    lines = trace("strace_events.txt").splitlines(keepends=True)
    parser = StraceParser()
    bind = next(i for i, line in enumerate(lines) if "nl_groups=0x000007" in line)
    parser.feed("".join(lines[:bind]))
    assert not parser.subscribed()
    parser.feed(lines[bind])
    assert parser.subscribed() and not parser.receiving()
    parser.feed(lines[bind + 1])  # recvmsg(4, ... <unfinished ...>
    assert parser.receiving()
    partial = StraceParser()
    partial.feed("".join(lines[:bind + 1]) + "9486  1795630706.809768487 recvmsg(4, ")
    assert partial.receiving()


# -- formats the conntrack traces do not exercise ------------------------------------------

SOCKET = "1  1.000000 socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_NETFILTER) = 3 <0.000001>\n"


def dump(data: bytes) -> str:
    rows = []
    for off in range(0, len(data), 16):
        chunk = data[off:off + 16]
        left, right = chunk[:8].hex(" "), chunk[8:].hex(" ")
        hexes = f"{left:<23}  {right:<23}"
        rows.append(f" | {off:05x}  {hexes}  {'.' * len(chunk):<16} |\n")
    return "".join(rows)


def test_iovec_buffers_are_concatenated_and_peeks_skipped() -> None:
    first, second = bytes(range(16)), bytes(range(16, 36))
    text = (SOCKET
            + "1  2.000000 sendmsg(3, 0x7ffd, 0) = 36 <0.000002>\n"
            + " * 16 bytes in buffer 0\n" + dump(first)
            + " * 20 bytes in buffer 1\n" + dump(second)
            + "1  3.000000 recvmsg(3, 0x7ffd, MSG_PEEK|MSG_TRUNC) = 36 <0.000001>\n"
            + " * 36 bytes in buffer 0\n" + dump(first + second)
            + "1  4.000000 recvfrom(3, \"\\x01\", 8192, 0, NULL, NULL) = 36 <0.000500>\n"
            + dump(first + second))
    assert parse_strace(text) == [
        TracedDatagram(1, 3, 12, 2_000_000_000, "sent", first + second),
        TracedDatagram(1, 3, 12, 4_000_500_000, "received", first + second)]


def test_failed_calls_closed_and_reused_fds() -> None:
    text = (SOCKET
            + "1  2.0 sendto(3, \"\", 20, 0, NULL, 0) = -1 ENOBUFS (No buffer space available)\n"
            + "1  3.0 close(3) = 0\n"
            + "1  4.0 socket(AF_INET, SOCK_DGRAM, IPPROTO_IP) = 3\n"
            + "1  5.0 sendto(3, \"\\x41\", 1, 0, NULL, 0) = 1\n" + dump(b"A")
            + "1  6.0 socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE) = 4\n"
            + "1  7.0 dup2(4, 9) = 9\n"
            + "1  8.0 sendto(9, \"\\x42\", 1, 0, NULL, 0) = 1\n" + dump(b"B"))
    assert parse_strace(text) == [TracedDatagram(1, 9, 0, 8_000_000_000, "sent", b"B")]


def test_fd_tables_follow_threads_forks_and_exec() -> None:
    text = (SOCKET  # close-on-exec
            + "1  1.1 socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER) = 4\n"
            + "[pid     1] 1.2 clone(child_stack=0x1, flags=CLONE_FILES|CLONE_THREAD) = 2\n"
            + "[pid     2] 1.3 socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER) = 5\n"
            + "[pid     1] 1.4 sendto(5, \"\\x01\", 1, 0, NULL, 0) = 1\n" + dump(b"\x01")
            + "[pid     1] 1.5 fork() = 3\n"
            + "[pid     1] 1.6 close(5) = 0\n"
            + "[pid     3] 1.7 sendto(5, \"\\x02\", 1, 0, NULL, 0) = 1\n" + dump(b"\x02")
            + "[pid     3] 1.8 execve(\"\\x2f\", [], 0x1 /* 0 vars */) = 0\n"
            + "[pid     3] 1.9 sendto(3, \"\\x03\", 1, 0, NULL, 0) = 1\n" + dump(b"\x03")
            + "[pid     3] 2.0 sendto(4, \"\\x04\", 1, 0, NULL, 0) = 1\n" + dump(b"\x04"))
    assert [(d.pid, d.fd, d.data) for d in parse_strace(text)] == [
        (1, 5, b"\x01"), (3, 5, b"\x02"), (3, 4, b"\x04")]


def test_missing_or_garbled_dumps_are_errors() -> None:
    with pytest.raises(StraceParseError, match="read=all"):
        parse_strace(SOCKET + "1  2.0 sendto(3, \"\", 20, 0, NULL, 0) = 20\n1  3.0 close(3) = 0\n")
    skipped = dump(bytes(32)).splitlines(keepends=True)[1]
    with pytest.raises(StraceParseError, match="offset"):
        parse_strace(SOCKET + "1  2.0 sendto(3, \"\", 32, 0, NULL, 0) = 32\n" + skipped)
