"""Command lines that change the table: run by the reference and by us on identical tables.

For each case a small table is built (reference ``-R`` of ``-I`` lines; real traffic when
the case needs counters), the reference runs the command, the table is snapshotted
(``-L -o extended,labels`` and ``-L expect``, sorted, timeouts normalised); then the
table is rebuilt identically and ours runs. Outputs, exit status and the resulting
tables must be equal. Cases where ours deliberately differs (the 1.4.8 fixes of ``-U``,
the 1.4.7 ``-I expect`` protocol bug, a reference crash) assert what ours does instead
and that the reference still behaves as documented (docs/compatibility.md).
"""
from __future__ import annotations

import shlex
import socket

import pytest

from harness import Result, assert_same, sorted_lines

A4, B4 = "10.3.0.1", "10.3.0.2"
A6, B6 = "2001:db8:3::1", "2001:db8:3::2"
T = "-t 500"

TABLE = [
    f"-I -s {A4} -d {B4} -p tcp --sport 10 --dport 80 --state ESTABLISHED -u SEEN_REPLY,ASSURED {T} -m 7",
    f"-I -s {A4} -d {B4} -p tcp --sport 11 --dport 80 --state SYN_SENT {T}",
    f"-I -s {A4} -d {B4} -p tcp --sport 12 --dport 443 --state TIME_WAIT {T} -m 0x10",
    f"-I -s {A4} -d {B4} -p udp --sport 20 --dport 53 {T} -w 3",
    f"-I -s {A4} -d {B4} -p udp --sport 21 --dport 53 {T} --orig-zone 4",
    f"-I -s {A4} -d {B4} -p udplite --sport 22 --dport 53 {T} --reply-zone 5",
    f"-I -s {A4} -d {B4} -p icmp --icmp-type 8 --icmp-code 0 --icmp-id 9 {T}",
    f"-I -s {A4} -d {B4} -p sctp --sport 30 --dport 40 --state ESTABLISHED --orig-vtag 1 --reply-vtag 2 {T}",
    f"-I -s {A4} -d {B4} -p gre --srckey 1 --dstkey 2 {T} -m 0x10",
    f"-I -s {A4} -d {B4} -p 200 {T} -u SEEN_REPLY",
    f"-I -s {A4} -d {B4} -p tcp --sport 13 --dport 80 --state ESTABLISHED {T} --dst-nat 10.3.9.9:8080",
    f"-I -s {A4} -d {B4} -p udp --sport 23 --dport 53 {T} --src-nat 10.3.9.8",
    f"-I -s {A6} -d {B6} -p tcp --sport 10 --dport 80 --state ESTABLISHED -u SEEN_REPLY,ASSURED {T} -m 7",
    f"-I -s {A6} -d {B6} -p udp --sport 20 --dport 53 {T} -w 3",
    f"-I -s {A6} -d {B6} -p icmpv6 --icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 9 {T}",
    f"-I -s {A6} -d {B6} -p 2 {T} -m 0x10",
]
LABELLED = [
    f"-I -s {A4} -d {B4} -p tcp --sport 14 --dport 80 --state ESTABLISHED {T} --label-add web",
    f"-I -s {A6} -d {B6} -p udp --sport 24 --dport 53 {T} --label-add eth0-in,high",
]


class Case:
    def __init__(self, line: str, table: list[str] | None = None, labels: bool = True,
                 traffic: bool = False, stdin: bytes | None = None, tag: str = "") -> None:
        self.line = line
        self.args = shlex.split(line)
        self.table = TABLE if table is None else table
        self.labels = labels and table is None
        self.traffic = traffic
        self.stdin = stdin
        self.tag = tag

    @property
    def id(self) -> str:
        return (self.tag + ": " if self.tag else "") + self.line[:140]


def udp_traffic() -> None:
    """Two-way UDP on lo (entries with counters); the caller is inside the namespace."""
    for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        srv = socket.socket(fam, socket.SOCK_DGRAM)
        srv.bind((addr, 7000))
        cli = socket.socket(fam, socket.SOCK_DGRAM)
        cli.bind((addr, 7001))
        cli.sendto(b"x" * 10, (addr, 7000))
        _, peer = srv.recvfrom(100)
        srv.sendto(b"y" * 20, peer)
        cli.recvfrom(100)
        srv.close()
        cli.close()


def build(ns, runner, case: Case) -> None:
    runner.ref("-F")
    lines = [line for line in case.table if "--label-add" not in line]
    if lines:
        r = runner.ref("-R", "-", stdin=("\n".join(lines) + "\n").encode())
        assert r.status == 0 and not r.err, r.text()
    # the reference's -R crashes on a --label-add line after the first line: one by one
    for line in [line for line in case.table if "--label-add" in line] + \
            (LABELLED if case.labels else []):
        r = runner.ref(*shlex.split(line))
        assert r.status == 0, r.text()
    if case.traffic:
        with ns.enter():
            udp_traffic()


def snapshot(runner) -> list[str]:
    out = runner.ref("-L", "-o", "extended,labels")
    assert out.status == 0, out.text()
    return sorted_lines(out.out)


def run_both(ns, runner, case: Case) -> tuple[Result, list[str], Result, list[str]]:
    build(ns, runner, case)
    ref = runner.run("ref", case.args, case.stdin)
    ref_table = snapshot(runner)
    build(ns, runner, case)
    ours = runner.run("ours", case.args, case.stdin)
    our_table = snapshot(runner)
    return ref, ref_table, ours, our_table


def _unordered(args: list[str]) -> bool:
    return not any(a in ("-f", "-s", "-d", "-r", "-q") for a in args)


def cases():
    # --- -I / -A -----------------------------------------------------------------------
    empty: list[str] = []
    for line in [
        f"-I -s {A4} -d {B4} -p tcp --sport 1 --dport 2 --state ESTABLISHED {T}",
        f"-I -s {A4} -d {B4} -p tcp --sport 1 --dport 2 --state LISTEN {T} -u ASSURED",
        f"-I -s {A4} -d {B4} -p tcp --sport 1 --dport 2 --state TIME_WAIT {T} -m 5 -u SEEN_REPLY",
        f"-I -s {A4} -d {B4} -p tcp --sport 1 --dport 2 --state CLOSE {T} -u FIXED_TIMEOUT,ASSURED",
        f"-I -r {B4} -q {A4} -p tcp --reply-port-src 2 --reply-port-dst 1 --state SYN_RECV {T}",
        f"-I -s {A4} -d {B4} -r 10.3.0.3 -q {A4} -p tcp --sport 1 --dport 2 --reply-port-src 3 "
        f"--reply-port-dst 1 --state ESTABLISHED {T}",
        f"-I -s {A4} -d {B4} -q {A4} -p udp --sport 1 --dport 2 --reply-port-src 3 "
        f"--reply-port-dst 1 {T}",
        f"-I -s {A4} -d {B4} -g 10.3.9.9 -q {A4} -p udp --sport 1 --dport 2 --reply-port-src 3 "
        f"--reply-port-dst 1 {T}",
        f"-I -s {A4} -d {B4} -p udp --sport 1 --dport 2 --reply-port-src 3 --reply-port-dst 1 {T}",
        f"-I -s {A4} -d {B4} -r 10.3.0.7 -p udp --sport 1 --dport 2 {T}",
        f"-I -s {A4} -d {B4} -q {A4} -p tcp --sport 1 --dport 2 --state ESTABLISHED {T}",
        f"-I -s {A6} -d {B6} -q {A6} -p udp --sport 1 --dport 2 --reply-port-src 3 {T}",
        f"-I -d {B4} -r {B4} -q {A4} -p udp --reply-port-src 2 --reply-port-dst 1 {T}",
        f"-I -s {A4} -r {B4} -q {A4} -p icmp --icmp-type 8 --icmp-code 0 {T}",
        f"-I -s {A4} -d {B4} -p udp --sport 1 --dport 2 {T} -w 9 -m 0xffffffff",
        f"-I -s {A4} -d {B4} -p udp --sport 1 --dport 2 {T} --orig-zone 9",
        f"-I -s {A4} -d {B4} -p udp --sport 1 --dport 2 {T} --reply-zone 9",
        f"-I -s {A4} -d {B4} -p udp --sport 1 --dport 2 {T} --label-add web,high",
        f"-I -s {A4} -d {B4} -p udp --sport 1 --dport 2 {T} -g 10.3.9.1:99",
        f"-I -s {A4} -d {B4} -p udp --sport 1 --dport 2 {T} -n 10.3.9.1:99 -g 10.3.9.2",
        f"-I -s {A6} -d {B6} -p udp --sport 1 --dport 2 {T} -g [2001:db8:3::9]:99",
        f"-I -s {A6} -d {B6} -p tcp --sport 1 --dport 2 --state ESTABLISHED {T} -n 2001:db8:3::8",
        f"-I -s {A4} -d {B4} -p udplite --sport 1 --dport 2 {T} -u SEEN_REPLY",
        f"-I -s {A4} -d {B4} -p sctp --sport 1 --dport 2 --state COOKIE_WAIT --orig-vtag 7 "
        f"--reply-vtag 8 {T}",
        f"-I -s {A4} -d {B4} -p dccp --sport 1 --dport 2 --state REQUEST --role server {T}",
        f"-I -s {A4} -d {B4} -p gre --srckey 0x1234 --dstkey 9 {T}",
        f"-I -s {A4} -d {B4} -p gre --srckey 1 --dstkey 2 -r {B4} -q {A4} --reply-key-src 5 "
        f"--reply-key-dst 6 {T}",
        f"-I -s {A4} -d {B4} -p icmp --icmp-type 13 --icmp-code 0 --icmp-id 3 {T}",
        f"-I -s {A4} -d {B4} -p icmp --icmp-type 8 --icmp-code 0 {T} -g 10.3.9.3",
        f"-I -r {B4} -q {A4} -p icmp --icmp-type 8 --icmp-code 0 --icmp-id 5 {T}",
        f"-I -s {A6} -d {B6} -p icmpv6 --icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 4 {T}",
        f"-I -s {A6} -d {B6} -p icmpv6 --icmpv6-type 1 --icmpv6-code 0 {T}",
        f"-I -s {A6} -d {B6} -p 200 {T}",
        f"-I -s {A4} -d {B4} -p igmp {T} -m 3",
        f"-I -s {A4} -d {B4} -p 0x84 {T}",
        f"-A -s {A4} -d {B4} -p tcp --sport 1 --dport 2 --state ESTABLISHED {T}",
        f"--add -s {A6} -d {B6} -p udp --sport 1 --dport 2 -t 77 -w 1",
        f"-I -s {A4} -d {B4} -p udp --sport 1 --dport 2 -t 0",
        f"-I -s {A4} -d {B4} -p udp --sport 1 --dport 2 -t 4294967296",
    ]:
        yield Case(line, table=empty)
    # on the default table: existing entries
    yield Case(f"-A -s {A4} -d {B4} -p tcp --sport 10 --dport 80 --state CLOSE {T}")
    yield Case(f"-I -s {A4} -d {B4} -p tcp --sport 10 --dport 80 --state CLOSE {T}")
    yield Case(f"-I -s {A4} -d {B4} -p udp --sport 20 --dport 53 {T} -w 3")
    yield Case(f"-I -s {A4} -d {B4} -p udp --sport 20 --dport 53 {T}")  # zone 0: not a clash

    # --- -D ---------------------------------------------------------------------------------
    for f in ["", f"-s {A4}", f"-d {B6}", "-f ipv6", "-f ipv4", "-p tcp", "-p udp --dport 53",
              "-p tcp --state ESTABLISHED", "-p tcp --sport 11", "-m 7", "-m 0x10/0x10", "-u ASSURED",
              "-u SEEN_REPLY", "-u UNREPLIED", "-w 3", "-w 0", "--orig-zone 4", "--reply-zone 5",
              "-l web", "-l high", "-g", "-n", "-j", "-g 10.3.9.9:8080", "-n 10.3.9.8", "-p icmp",
              "-p icmpv6 --icmpv6-id 9", "-p gre --srckey 99", "-p 200", "-p 2", "-s 10.3.0.0/16",
              f"-s {A4} --mask-src 255.0.0.0 -p udp", "-d 2001:db8::/32", "-r 10.3.9.9",
              f"-q {A6}", "-t 1", "-p udp -t 1", "-p sctp --state ESTABLISHED",
              "-p tcp -m 7 -u ASSURED -f ipv6"]:
        yield Case(f"-D {f}".strip())
    for o in ("xml", "save", "extended", "id", "ktimestamp", "labels", "timestamp", "extended,id",
              "xml,id"):
        yield Case(f"-D -p tcp -o {o}")
    yield Case("-D -f ipv6 -o save")
    yield Case("-D -o xml")

    # --- -U (one matching entry, family given: 1.4.7 and 1.4.8 agree) ------------------------
    one = f"-s {A4} -p tcp --sport 10"
    for u in ["-m 9", "-m 0x100/0xf00", "-m 7", "-u ASSURED", "-u FIXED_TIMEOUT", "-t 900",
              "--label-add high", "--label-add eth0-in,eth1-in", "--label-del", "--label-del web",
              "-p tcp --state CLOSE_WAIT", "-m 3 -t 100 -u ASSURED", "-o save -m 1",
              "-o xml -m 1", "-o extended -m 1", "-o labels -m 1", "-o id,ktimestamp -m 1"]:
        yield Case(f"-U {one} {u}")
    yield Case(f"-U -s {A4} -p tcp --sport 14 --label-del web")
    yield Case(f"-U -s {A4} -p tcp --sport 14 --label-del")
    yield Case(f"-U -s {A4} -p tcp --sport 14 --label-add eth1-in")
    yield Case(f"-U -s {A6} -p udp --sport 24 --label-del high -o labels")
    yield Case(f"-U -s {A6} -p udp --sport 24 --label-add web")
    yield Case(f"-U -s {A6} -p tcp -m 1/1")
    yield Case(f"-U -f ipv6 -p icmpv6 -m 4")
    yield Case(f"-U -s {A4} -p gre -m 0 -o save")
    yield Case(f"-U -s {A4} -p 200 -m 2 -o xml")
    yield Case(f"-U -s {A4} -l web -m 2")
    yield Case(f"-U -s {A4} -p tcp -g -m 2")
    yield Case(f"-U -s 10.3.0.0/24 -p icmp -m 2")

    # --- -F, -L -z ---------------------------------------------------------------------------
    yield Case("-F")
    yield Case("-F -f ipv6")
    yield Case("-F conntrack")
    yield Case("-L -z", traffic=True)
    yield Case("-L -z -o save", traffic=True)
    yield Case("-L -z -f ipv6 -o xml", traffic=True)
    yield Case("-L -z -j", traffic=True)
    yield Case("-L -z -n", traffic=True)

    # --- -R batches ---------------------------------------------------------------------------
    # (-U lines only last: in the reference's -R, every -U applies the changes of the
    # file's last line; see test_differences.py)
    batch = (f"# comment\n\n\t-I -s {A4} -d {B4} -p tcp --sport 1 --dport 2 --state ESTABLISHED {T}\n"
             f"-I -s {A6} -d {B6} -p udp --sport 1 --dport 2 {T}\n"
             f"-D -p udp --dport 53\n-U -s {A4} -p tcp --sport 1 -m 5\n")
    yield Case("-R -", stdin=batch.encode())
    yield Case("-R -", stdin=f"-D -s {A4}\n-F\n".encode())
    yield Case("-R -", stdin=f"-I -s {A4} -d {B4} -p tcp --sport 10 --dport 80 --state CLOSE {T}\n"
                            "-D -p udp\n".encode(), tag="EEXIST stops")
    yield Case("-R -", stdin=f"-A -s {A4} -d {B4} -p tcp --sport 10 --dport 80 --state CLOSE {T}\n"
                            "-D -p udp\n".encode(), tag="-A existing")
    yield Case("-R -", stdin=b"-D -p udp\n-X\n", tag="parse error")
    yield Case("-R -", stdin=b"-D -p udp\n-L\n", tag="not allowed")
    yield Case("-R -", stdin=b"-D -p tcp -o save\n-D -p udp\n-D -p icmp\n", tag="-o leaks")
    yield Case("-R -", stdin=b"-D -p tcp\n-D -f ipv6\n", tag="-p leaks")
    yield Case("-R -", stdin=b"-D -p tcp --sport 12 -o xml\n-U -s 10.3.0.1 -p tcp --sport 11 -m 1\n")
    yield Case("-R -", stdin=b"-U -s 10.3.0.1 -p tcp --sport 11 -m 1\n-U -s 10.3.0.1 -p tcp --sport 11 -m 1\n")
    yield Case("-R -", stdin=f"-I -s {A4} -d {B4} -p tcp --sport 1 --dport 2 --state ESTABLISHED "
                            f"{T} --label-add web\n".encode(), tag="labels, one line")


CASES = list(cases())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_mutating(module_ns, case: Case) -> None:
    ns, runner = module_ns
    ref, ref_table, ours, our_table = run_both(ns, runner, case)
    assert_same(ref, ours, unordered=_unordered(case.args), ids=True)
    assert our_table == ref_table, "tables differ after the command"


def test_enough_cases() -> None:
    assert len(CASES) >= 120


BATCHES = [c for c in CASES if c.args[0] == "-R"]


@pytest.mark.parametrize("case", BATCHES, ids=[c.id for c in BATCHES])
def test_mutating_batch_not_held(module_ns, case: Case, monkeypatch) -> None:
    """The -R cases again, ours holding no parsed line (KEEP = 0, as for a file of more
    than KEEP lines): checked first, then parsed again from its copy as it runs."""
    from conntrack_tools.conntrack import batch

    monkeypatch.setattr(batch, "KEEP", 0)  # the forked child running ours inherits it
    ns, runner = module_ns
    ref, ref_table, ours, our_table = run_both(ns, runner, case)
    assert_same(ref, ours, unordered=_unordered(case.args), ids=True)
    assert our_table == ref_table, "tables differ after the command"
