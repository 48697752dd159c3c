"""Expectations in sync mode (``ExpectationSync``), reference vs ours: expectations the
kernel's FTP helper creates for connections the internal cache knows appear in
``-i expect`` (plain and XML) and ``-s expect`` exactly as the C conntrackd 1.4.7 shows
them; the helper-name list filters them."""
from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conntrack_tools.conntrackd import handlers as H  # noqa: E402
from conntrack_tools.conntrackd.kernel import KernelSettings  # noqa: E402
from conntrack_tools.conntrackd.syncmode import SyncMode, SyncSettings  # noqa: E402
from helpers.cdaemon import CDaemon  # noqa: E402
from helpers.ftp import FtpServer, enable_ftp_helper, enable_tracking  # noqa: E402
from helpers.netns import NetNS  # noqa: E402
from helpers.ourdaemon import Daemon  # noqa: E402

SYNC = """Sync {
\tMode FTFW { }
\tUDP {
\t\tIPv4_address 127.0.0.1
\t\tIPv4_Destination_Address 127.0.0.2
\t\tPort 3780
\t\tInterface lo
\t}
\tOptions { ExpectationSync { %s } }
}
"""
ACTIVE = re.compile(rb"\[active since -?\d+s\]")
CHANNEL = re.compile(rb"(?m)^ *\d+ (Bytes sent|Pckts sent|Error send) +\d+ ")


def lines(b: bytes) -> list[bytes]:
    return sorted(ACTIVE.sub(b"[active since Ns]", b).splitlines())


@pytest.fixture(scope="module", params=["ftp", "sip"])
def pair(request) -> Iterator[tuple]:
    if os.geteuid() != 0:
        pytest.fail("the differential suite needs root (network namespaces)")
    helpers = request.param
    with NetNS("dcore") as ns:
        enable_tracking(ns)
        enable_ftp_helper(ns)
        c = CDaemon(ns, SYNC % helpers).start()
        ours = ftp = None
        try:
            channel = SimpleNamespace(transport="udp", interface="lo", default=True)
            ours = Daemon(ns, SyncMode(SyncSettings(channels=(channel,), expectation_sync=True,
                                                    expectation_helpers=(helpers,))),
                          KernelSettings(expectations=True))
            with ns.enter():
                ftp = FtpServer()
            with ns.enter():
                ftp.session(socket.AF_INET, "PORT")
                ftp.session(socket.AF_INET, "PASV")
                ftp.session(socket.AF_INET6, "EPSV")
            ours.settle(0.5)
            yield helpers, c, ours
        finally:
            if ftp is not None:
                ftp.close()
            c.close()
            if ours is not None:
                ours.close()


def test_expectation_dumps_and_stats(pair) -> None:
    helpers, c, ours = pair
    for code in (H.EXP_DUMP_INTERNAL, H.EXP_DUMP_INT_XML, H.CT_DUMP_INTERNAL):
        assert lines(ours.request(code)) == lines(c.request(code)), code
    got = ours.request(H.EXP_DUMP_INTERNAL)
    assert got.count(b"helper=ftp") == (3 if helpers == "ftp" else 0)
    mine, theirs = ours.request(H.EXP_STATS), c.request(H.EXP_STATS)
    assert CHANNEL.sub(b"N", mine) == CHANNEL.sub(b"N", theirs)
    assert b"cache internal:\ncurrent active connections:\t" in mine
