"""A table of a few thousand entries: many dump datagrams, many stdout blocks, batched -D.

Listings span dozens of netlink datagrams and of stdout buffer blocks, so this is where
batching, the per-family split of filtered dumps and the C library's block-wise flushing
(visible in a merged ``2>&1`` stream) show. Deletes of hundreds of entries are compared by
output and by the table left behind.
"""
from __future__ import annotations

import re
import shlex

import pytest

from harness import assert_same, sorted_lines

N = 1500


def lines() -> bytes:
    out = []
    for i in range(N):
        a, b = divmod(i, 250)
        out.append(f"-I -s 10.5.{a}.{b + 1} -d 10.6.0.1 -p udp --sport {1000 + i} --dport "
                   f"{53 + i % 7} -t 900 -m {i % 5}")
        if i % 3 == 0:
            out.append(f"-I -s 2001:db8:5::{i + 1:x} -d 2001:db8:6::1 -p tcp --sport {1000 + i} "
                       f"--dport {80 + i % 3} --state ESTABLISHED -t 900 -u SEEN_REPLY,ASSURED")
    return ("\n".join(out) + "\n").encode()


@pytest.fixture(scope="module")
def big(module_ns):
    ns, runner = module_ns
    data = lines()

    def build() -> None:
        runner.ref("-F")
        r = runner.ref("-R", "-", stdin=data)
        assert r.status == 0 and not r.err, r.text()

    build()
    return runner, build


READ = ["-L", "-L -o save", "-L -o xml", "-L -o extended,id", "-L -f ipv6", "-L -s 10.5.3.7",
        "-L -s 10.5.2.0/24", "-L -p udp --dport 55", "-L -m 3", "-L -m 3 -p udp --sport 1003",
        "-L -u ASSURED", "-L -p tcp --dport 81 -o save", "-C", "-L -d 10.6.0.1 -o xml"]
MERGED = ["-L", "-L -o xml", "-L -o save", "-L -f ipv6 -o xml", "-L -s 10.5.1.0/24"]
WRITE = ["-D -p udp --dport 55", "-D -f ipv6 -o save", "-D -s 10.5.0.0/16 -m 1 -o xml",
         "-D -p tcp", "-U -f ipv6 -p tcp --dport 80 -m 9", "-L -z -p udp"]


@pytest.mark.parametrize("line", READ)
def test_big_listing(big, line: str) -> None:
    runner, _ = big
    args = shlex.split(line)
    assert_same(runner.ref(*args), runner.ours(*args),
                unordered=not any(a in ("-f", "-s", "-d") for a in args))


@pytest.mark.parametrize("line", MERGED)
def test_big_merged(big, line: str) -> None:
    runner, _ = big
    args = shlex.split(line)
    assert_same(runner.run("ref", args, merge=True), runner.run("ours", args, merge=True))


@pytest.mark.parametrize("line", WRITE)
def test_big_change(big, line: str) -> None:
    runner, build = big
    args = shlex.split(line)
    build()
    ref = runner.run("ref", args)
    ref_table = sorted_lines(runner.ref("-L", "-o", "extended").out)
    build()
    ours = runner.run("ours", args)
    our_table = sorted_lines(runner.ref("-L", "-o", "extended").out)
    build()
    if args[0] == "-U":
        # 1.4.7 reads one datagram per request: the ACKs it leaves unread fill its socket
        # and after a few hundred entries it dies with ENOBUFS (docs/compatibility.md),
        # or, in one clean-clone CI run, with "Operation failed: Protocol error" (it took
        # a stale answer for its request's); ours updates and prints every entry
        assert ref.status == 1
        assert re.fullmatch(rb"(conntrack v1\.4\.7 \(conntrack-tools\): )?Operation failed: "
                            rb"[^\n]*(No buffer space available|Protocol error)\n", ref.err), \
            ref.err
        assert ours.status == 0 and ours.err == b"conntrack v1.4.7 (conntrack-tools): " \
                                               b"500 flow entries have been updated.\n"
        assert len(ours.out.splitlines()) == 500
        assert sum("mark=9 " in line for line in our_table) == 500
        assert 0 < sum("mark=9 " in line for line in ref_table) < 500
        return
    assert our_table == ref_table
    assert_same(ref, ours, unordered="-f" not in args and "-s" not in args, ids=True)
