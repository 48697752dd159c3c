"""Without privileges (uid 65534, no capability) in the rich table's namespace: every
request is refused with EPERM and the multicast groups cannot be joined. The reference and
ours must print the same ``Operation failed: sorry, you must be root …`` lines, the same
``/proc`` fall-backs of ``-C`` and ``-S`` (data, then the error, exit 1), the same
``mnl_socket_bind`` / ``Can't open netlink socket`` of ``-E`` and ``Can't open handler`` of
``-E expect`` (spec §10.4).
"""
from __future__ import annotations

import shlex

import pytest

from harness import assert_same

TCP = "-s 10.1.0.1 -d 10.1.0.2 -p tcp --sport 1002 --dport 80"
CASES = [
    "-L", "-L -o xml", "-L -p tcp", "-L dying", "-L unconfirmed", "-L -z", "-F", "-F -f ipv6",
    "-C", "-S", "-E", "-E -e NEW", "-E -b 100000", "-E expect", "-C expect", "-L expect",
    "-S expect", "-F expect", f"-G {TCP}", f"-D {TCP}", f"-U {TCP} -m 1",
    f"-I {TCP} --state ESTABLISHED -t 10", f"-A {TCP} --state ESTABLISHED -t 10",
    "-G expect -s 1.1.1.1 -d 2.2.2.2 -p udp --sport 1 --dport 2 --reply-port-src 2 "
    "--reply-port-dst 1",
    "-D expect -s 1.1.1.1 -d 2.2.2.2 -p udp --sport 1 --dport 2 --reply-port-src 2 "
    "--reply-port-dst 1",
    "-I expect -s 1.1.1.1 -d 2.2.2.2 -p udp --sport 1 --dport 2 --tuple-src 1.1.1.1 "
    "--tuple-dst 2.2.2.2 --tuple-port-src 1 --tuple-port-dst 2 --mask-src 255.255.255.255 "
    "--mask-dst 255.255.255.255 --mask-port-src 0 --mask-port-dst 65535 -t 10",
    "-V", "-h", "-L -l web", "-R -",
]


@pytest.mark.parametrize("line", CASES)
def test_unprivileged(rich, line: str) -> None:
    _, runner, _ = rich
    args = shlex.split(line)
    stdin = b"-D -p tcp\n" if line == "-R -" else None
    ref = runner.run("ref", args, stdin, nobody=True)
    ours = runner.run("ours", args, stdin, nobody=True)
    assert_same(ref, ours)
