"""Fixtures of the kernel tests: every test runs in its own network namespace.

``ns`` creates a namespace with a unique name, moves the test's thread into it (our
library's sockets are therefore opened there) and deletes it afterwards; the reference
tool runs inside it through ``ip netns exec``. The host's conntrack table is never read
or written.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
pytest.register_assert_rewrite("helpers")

from helpers.ftp import FtpServer, enable_ftp_helper, enable_labels, enable_tracking  # noqa: E402
from helpers.netns import NetNS, current_netns  # noqa: E402
from helpers.reference import LABEL_FILE, label_map  # noqa: E402

from ctnetlink.client import Conntrack  # noqa: E402

HOST_NETNS = current_netns()


@pytest.fixture
def ns() -> Iterator[NetNS]:
    """A fresh private namespace that the test's thread is inside of."""
    if os.geteuid() != 0:
        pytest.fail("the kernel tests need root (network namespaces)")
    with NetNS() as n:
        with n.enter():
            assert current_netns() != HOST_NETNS
            yield n
    assert current_netns() == HOST_NETNS


SOCKET_TIMEOUT = 30.0
"""No answer within this time fails the test instead of hanging the suite."""


@pytest.fixture
def ct(ns: NetNS) -> Iterator[Conntrack]:
    """Our client, connected to the test's namespace."""
    with Conntrack() as c:
        c.sock.settimeout(SOCKET_TIMEOUT)
        yield c


@pytest.fixture
def tracking(ns: NetNS) -> NetNS:
    """Packets of the namespace are tracked (a ruleset with a ``ct`` expression)."""
    enable_tracking(ns)
    return ns


@pytest.fixture
def acct(ns: NetNS) -> NetNS:
    """Counters and timestamps for entries created from now on."""
    ns.sysctl("net.netfilter.nf_conntrack_acct", 1)
    ns.sysctl("net.netfilter.nf_conntrack_timestamp", 1)
    return ns


DEFAULT_LABELS = "0 eth0-in\n1 eth1-in\n2 web\n5 high\n"


@pytest.fixture(scope="session")
def label_names() -> Iterator[dict[int, str]]:
    """The reference's label map; written (and removed afterwards) if the system has none."""
    path = Path(LABEL_FILE)
    created = not path.exists()
    if created:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DEFAULT_LABELS)
    try:
        names = label_map()
        assert len(names) >= 3, f"{path} names fewer than three labels"
        yield names
    finally:
        if created:
            path.unlink()


@pytest.fixture
def labels(ns: NetNS, label_names: dict[int, str]) -> dict[int, str]:
    """Entries get the label extension; returns the reference's label map."""
    enable_labels(ns)
    return label_names


@pytest.fixture
def ftp(ns: NetNS) -> Iterator[FtpServer]:
    """The kernel's FTP helper on port 21 and a server on 127.0.0.1:21 and [::1]:21."""
    enable_ftp_helper(ns)
    server = FtpServer()
    try:
        yield server
    finally:
        server.close()
