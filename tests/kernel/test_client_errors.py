"""Kernel errors map to typed exceptions, each a :class:`ConntrackError` carrying errno
and the request; the reference fails on the same requests with the same errno.

EPERM comes from forked children of the test (in the same namespace) that run as
``nobody`` or as root without CAP_NET_ADMIN; the reference runs under ``setpriv``.
"""
from __future__ import annotations

import errno
import pickle
import struct

import pytest
from helpers.flows import catalogue
from helpers.netns import CONNTRACK, run_in_child

from ctnetlink.client import Conntrack
from ctnetlink.constants import Status
from ctnetlink.errors import (
    Busy, ConntrackError, FlowExists, FlowNotFound, InvalidArgument, NoSpace, NotSupported,
    PermissionDenied, from_errno,
)
from ctnetlink.model import Flow, NatRange, Tuple
from nfnl.errors import NetlinkError

CASES = {c.name: c for c in catalogue(2)}
TCP = CASES["tcp"].flow.copy(labels=None)  # this namespace has no label extension
UDP = CASES["udp-dnat"].flow


def header(request: bytes) -> tuple[int, int, int, int, int]:
    return struct.unpack_from("=IHHII", request)


def check(exc: ConntrackError, cls: type, code: int, mtype: int) -> None:
    assert type(exc) is cls and isinstance(exc, ConntrackError)
    assert isinstance(exc, NetlinkError) and isinstance(exc, OSError)
    assert exc.errno == code and exc.strerror
    ln, t, *_ = header(exc.request)
    assert t == mtype and ln == len(exc.request)
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is cls and clone.errno == code and clone.request == exc.request


def ref_fails(ns, *args: str) -> str:
    r = ns.conntrack(*args, check=False)
    assert r.returncode != 0
    return r.stderr


def test_flow_exists(ns, ct) -> None:
    ct.create(TCP)
    with pytest.raises(FlowExists) as e:
        ct.create(TCP)
    check(e.value, FlowExists, errno.EEXIST, 0x100)
    assert header(e.value.request)[2] & 0x600 == 0x600  # CREATE|EXCL
    assert "Such conntrack exists" in ref_fails(ns, "-I", *CASES["tcp"].args)
    ct.create(TCP.copy(mark=3), exclusive=False)  # not an error: an update
    assert ct.get(TCP.orig).mark == 3


def test_flow_not_found(ns, ct) -> None:
    for op, mtype in ((lambda: ct.get(UDP.orig), 0x101), (lambda: ct.delete(UDP.orig), 0x102),
                      (lambda: ct.update(UDP.copy(mark=1)), 0x100)):
        with pytest.raises(FlowNotFound) as e:
            op()
        check(e.value, FlowNotFound, errno.ENOENT, mtype)
    assert "such conntrack doesn't exist" in ref_fails(
        ns, "-G", "-s", "10.1.0.1", "-d", "10.1.0.2", "-p", "udp", "--sport", "1003", "--dport", "53")


@pytest.mark.parametrize("flow,ref_args", [
    # no timeout
    (UDP.copy(timeout=None, nat_dst=None, reply=UDP.orig.reversed()), None),
    # only the reply tuple (a missing reply tuple is derived from the original one)
    (UDP.copy(orig=None, nat_dst=None), None),
    # zones in both directions
    (UDP.copy(orig=UDP.orig.replace(zone=3), reply=UDP.orig.reversed().replace(zone=4), nat_dst=None),
     ["-s", "10.1.0.1", "-d", "10.1.0.2", "-p", "udp", "--sport", "1003", "--dport", "53",
      "-t", "10", "--orig-zone", "3", "--reply-zone", "4"]),
    # different layer-4 protocols in the two tuples
    (UDP.copy(reply=Tuple(src="10.1.0.2", dst="10.1.0.1", proto=6, sport=53, dport=1003), nat_dst=None), None),
    # an ICMP reply type that answers no request type (the reference's 255, spec 12.4)
    (Flow(family=2, orig=Tuple(src="10.1.0.3", dst="10.1.0.2", proto=1, icmp_type=8, icmp_code=0, icmp_id=5),
          reply=Tuple(src="10.1.0.2", dst="10.1.0.3", proto=1, icmp_type=255, icmp_code=0, icmp_id=5),
          timeout=50),
     ["-r", "10.1.0.2", "-q", "10.1.0.3", "-p", "icmp", "--icmp-type", "8", "--icmp-code", "0",
      "--icmp-id", "5", "-t", "50"]),
], ids=["no-timeout", "reply-only", "two-zones", "two-protocols", "icmp-type"])
def test_invalid_argument(ns, ct, flow, ref_args) -> None:
    with pytest.raises(InvalidArgument) as e:
        ct.create(flow)
    check(e.value, InvalidArgument, errno.EINVAL, 0x100)
    if ref_args:
        assert "invalid parameters" in ref_fails(ns, "-I", *ref_args)
    assert ct.count() == 0


def test_not_supported_nat_change(ns, ct) -> None:
    ct.create(UDP)
    with pytest.raises(NotSupported) as e:
        ct.update(Flow(family=2, orig=UDP.orig, nat_src=NatRange(min_ip="10.1.0.77")))
    check(e.value, NotSupported, errno.EOPNOTSUPP, 0x100)


def test_no_space_for_labels(ns, ct, label_names) -> None:
    """Without a label user in the namespace entries lack the label extension."""
    ct.create(UDP)
    with pytest.raises(NoSpace) as e:
        ct.update(Flow(family=2, orig=UDP.orig, labels=1))
    check(e.value, NoSpace, errno.ENOSPC, 0x100)
    assert "No space left on device" in ns.conntrack(
        "-U", "-s", "10.1.0.1", "-p", "udp", "--sport", "1003", "--label-add", "web",
        check=False).stderr


def test_busy_when_clearing_seen_reply(ns, ct) -> None:
    ct.create(TCP)  # SEEN_REPLY|ASSURED|CONFIRMED
    with pytest.raises(Busy) as e:
        ct.update(Flow(family=2, orig=TCP.orig, status=int(Status.CONFIRMED)))
    check(e.value, Busy, errno.EBUSY, 0x100)


def _try_everything():
    results = {}
    with Conntrack() as c:
        for name, op in (("dump", lambda: list(c.dump())), ("count", c.count),
                         ("create", lambda: c.create(TCP)), ("flush", c.flush),
                         ("get", lambda: c.get(TCP.orig)), ("stats", c.stats),
                         ("dump_expect", lambda: list(c.dump_expect(0)))):
            try:
                op()
                results[name] = None
            except ConntrackError as e:
                results[name] = e
    return results


@pytest.mark.parametrize("privileges,setpriv", [
    ("nobody", ["--reuid=65534", "--regid=65534", "--clear-groups"]),
    ("no-net-admin", ["--inh-caps=-net_admin", "--bounding-set=-net_admin"]),
])
def test_permission_denied(ns, ct, privileges, setpriv) -> None:
    ct.create(UDP)
    results = run_in_child(_try_everything, privileges=privileges)
    assert set(results) == {"dump", "count", "create", "flush", "get", "stats", "dump_expect"}
    for name, exc in results.items():
        assert isinstance(exc, PermissionDenied), name
        assert exc.errno == errno.EPERM
    assert ct.count() == 1  # nothing was flushed
    r = ns.run("setpriv", *setpriv, CONNTRACK, "-L", check=False)
    assert r.returncode == 1 and "CAP_NET_ADMIN" in r.stderr


def test_error_classes() -> None:
    for code, cls in ((errno.EEXIST, FlowExists), (errno.ENOENT, FlowNotFound),
                      (errno.EPERM, PermissionDenied), (errno.EINVAL, InvalidArgument),
                      (errno.EOPNOTSUPP, NotSupported), (errno.EBUSY, Busy),
                      (errno.ENOSPC, NoSpace), (errno.EIO, ConntrackError)):
        e = from_errno(code, b"req")
        assert type(e) is cls and e.errno == code and e.request == b"req"
        assert issubclass(cls, ConntrackError)
