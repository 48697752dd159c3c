"""Pre-encoded batched requests: ``Conntrack.create_raw_many`` / ``delete_raw_many`` /
``send_many`` (what the daemon's commit sends), in a private namespace.

Requests are the attributes ``ctnetlink.encode.encode_flow`` gives (with the reply
tuple and a timeout, nothing is added); more than one datagram's worth, so results of
several datagrams are stitched together; failures come back by index with the kernel's
errno, successes are absent; a create request doubles as the delete request of its
entry.
"""
from __future__ import annotations

import errno
from typing import Iterator

import pytest
from helpers.netns import NetNS

from ctnetlink.client import Conntrack
from ctnetlink.encode import encode_flow
from ctnetlink.errors import FlowExists
from ctnetlink.model import Flow, Tuple

N = 700


@pytest.fixture
def ct() -> Iterator[Conntrack]:
    with NetNS("commit") as ns, ns.enter(), Conntrack(rcvbuf=8 << 20) as c:
        yield c


def requests(n: int = N, family: int = 2, start: int = 0) -> list[tuple[int, bytes]]:
    out = []
    for i in range(start, start + n):
        if family == 2:
            a, b = f"10.40.{i // 250}.{i % 250 + 1}", "10.41.0.1"
        else:
            a, b = f"2001:db8:40::{i + 1:x}", "2001:db8:41::1"
        o = Tuple(src=a, dst=b, proto=6 if i % 2 else 17, sport=3000 + i, dport=443)
        f = Flow(family=family, orig=o, reply=o.reversed(), timeout=300, mark=i,
                 status=0x8)  # CONFIRMED: the kernel refuses to change that bit
        out.append((family, encode_flow(f)))
    return out


def test_create_many_across_datagrams(ct: Conntrack) -> None:
    reqs = requests() + requests(50, family=10)
    assert ct.create_raw_many(reqs) == {}
    flows = list(ct.dump())
    assert len(flows) == len(reqs)
    assert sorted(f.mark for f in flows) == sorted(list(range(N)) + list(range(50)))
    assert {f.orig.family for f in flows} == {2, 10}


def test_failures_by_index(ct: Conntrack) -> None:
    reqs = requests()
    assert ct.create_raw_many(reqs[::3]) == {}
    errors = ct.create_raw_many(reqs)
    assert sorted(errors) == list(range(0, N, 3))  # the existing ones, in every datagram
    assert all(isinstance(e, FlowExists) and e.errno == errno.EEXIST for e in errors.values())
    assert ct.count() == N
    # not exclusive: an existing entry is updated instead
    assert ct.create_raw_many(reqs, exclusive=False) == {}


def test_delete_with_create_requests(ct: Conntrack) -> None:
    reqs = requests(300)
    assert ct.create_raw_many(reqs[:200]) == {}
    errors = ct.delete_raw_many(reqs)
    assert sorted(errors) == list(range(200, 300))
    assert {e.errno for e in errors.values()} == {errno.ENOENT}
    assert ct.count() == 0


def test_one_request_per_datagram_limit(ct: Conntrack) -> None:
    reqs = requests(40)
    assert ct.send_many(0x100, 0x1 | 0x400 | 0x200, reqs, max_msgs=7) == {}
    assert ct.count() == 40
    errors = ct.send_many(0x100, 0x1 | 0x400 | 0x200, reqs, max_msgs=7)
    assert sorted(errors) == list(range(40))
