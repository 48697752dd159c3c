"""Failures to get resources, as the reference reports them (spec §10): no file
descriptor left for a netlink socket (``RLIMIT_NOFILE``), and the ``/proc`` files behind
the fall-backs of ``-C`` and ``-S`` missing or empty (run without privileges, so that the
netlink request fails first). Against the rich table, which none of these change.
"""
from __future__ import annotations

import shlex

import pytest

from harness import assert_same

EXPECT_TUPLE = ("-s 127.0.0.1 -d 127.0.0.1 -p udp --sport 1 --dport 2 --reply-port-src 2 "
                "--reply-port-dst 1")
NOFILE = [  # one descriptor: the main socket; the next socket cannot be opened
    "-E", "-E -o xml", "-E expect", "-L expect", "-C expect", "-F expect", f"-G expect {EXPECT_TUPLE}",
    f"-D expect {EXPECT_TUPLE}", "-D", "-D -s 10.99.0.1", "-U -s 10.99.0.1 -m 1", "-S expect",
    "-L", "-C", "-S", "-V",
]
COUNT = "/proc/sys/net/netfilter/nf_conntrack_count"
UNPRIVILEGED = [
    ("-C", {"hide": ("/proc/sys/net/netfilter",)}),
    ("-C", {"binds": (("/dev/null", COUNT),)}),
    ("-C", {"hide": ("/proc",)}),
    ("-S", {"hide": ("/proc",)}),
    ("-S expect", {"hide": ("/proc",)}),
    ("-C expect", {"hide": ("/proc",)}),
    ("-L", {"hide": ("/proc",)}),
]


@pytest.mark.parametrize("line", NOFILE)
def test_no_descriptor_left(rich, line: str) -> None:
    _, runner, _ = rich
    args = shlex.split(line)
    ref = runner.run("ref", args, nofile=4)
    ours = runner.run("ours", args, nofile=4)
    assert_same(ref, ours)


@pytest.mark.parametrize("line,kw", UNPRIVILEGED,
                         ids=[f"{line} {sorted(kw.items())}" for line, kw in UNPRIVILEGED])
def test_proc_fallbacks_fail(rich, line: str, kw: dict) -> None:
    _, runner, _ = rich
    args = shlex.split(line)
    ref = runner.run("ref", args, nobody=True, **kw)
    ours = runner.run("ours", args, nobody=True, **kw)
    assert_same(ref, ours)
