"""Odd error codes in NLMSG_ERROR replies (crafted with nfnl.replay, no kernel): the kernel
sends ``-errno``; a positive code and ``INT_MIN`` (which has no positive counterpart) are
read as libmnl reads them, so the library raises a NetlinkError with a defined errno and
``conntrack`` prints what the reference prints (checked against /usr/sbin/conntrack with
the same codes in tests/diff/test_kernel_error_codes.py)."""
from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import tempfile

import pytest

from nfnl.errors import NetlinkError
from nfnl.message import build_message, build_nfnl, parse_error
from nfnl.pcap import PcapWriter
from nfnl.replay import installed
from nfnl.socket import NetlinkSocket

CT_DELETE, REQUEST_ACK = 0x102, 0x5
INT_MIN = -(1 << 31)
PREFIX = "conntrack v1.4.7 (conntrack-tools): "
FLUSHED = PREFIX + "connection tracking table has been emptied.\n"

# NLMSG_ERROR code -> (errno and strerror of the NetlinkError, what -F prints after
# "Operation failed: ")
CODES = {
    -22: (22, "Invalid argument", "invalid parameters"),
    7: (7, "Argument list too long", "Argument list too long"),
    -7: (7, "Argument list too long", "Argument list too long"),
    INT_MIN: (INT_MIN, "Unknown error -2147483648", "Unknown error -2147483648"),
    (1 << 31) - 1: ((1 << 31) - 1, "Unknown error 2147483647", "Unknown error 2147483647"),
    -4095: (4095, "Unknown error 4095", "Unknown error 4095"),
}


def flush_conversation(code: int) -> list[tuple[str, bytes]]:
    """What ``conntrack -F`` sends, answered with ``code``."""
    request = build_nfnl(CT_DELETE, REQUEST_ACK, 0, b"", seq=1)
    reply = build_message(2, 0, struct.pack("=i", code) + request[:16], seq=1, pid=99)
    return [("sent", request), ("received", reply)]


@pytest.mark.parametrize("code", CODES)
def test_parse_error(code: int) -> None:
    reply = flush_conversation(code)[1][1]
    assert parse_error(reply, 0, len(reply), 0).errno == CODES[code][0]


@pytest.mark.parametrize("code", CODES)
def test_library_raises_a_netlink_error(code: int) -> None:
    request, _ = flush_conversation(code)
    with installed(flush_conversation(code)), NetlinkSocket() as sock:
        with pytest.raises(NetlinkError) as e:
            sock.request(request[1])
    assert (e.value.errno, e.value.strerror) == CODES[code][:2]


@pytest.mark.parametrize("code", CODES)
def test_conntrack_prints_the_reference_text(code: int) -> None:
    from conntrack_tools.conntrack.main import main

    err = io.StringIO()
    with installed(flush_conversation(code)), tempfile.TemporaryFile() as out:
        status = main(["conntrack", "-F"], stdout_fd=out.fileno(), stderr=err)
    assert (status, err.getvalue()) == (1, FLUSHED + PREFIX + f"Operation failed: {CODES[code][2]}\n")


def test_through_nfnl_replay(tmp_path) -> None:
    """The same with NFNL_REPLAY=FILE.pcap and the real start-up path."""
    pcap = tmp_path / "intmin.pcap"
    with PcapWriter(str(pcap)) as w:
        for direction, data in flush_conversation(INT_MIN):
            w.write(data, direction)
    r = subprocess.run([sys.executable, "-m", "conntrack_tools.conntrack", "-F"],
                       env={**os.environ, "NFNL_REPLAY": str(pcap)}, capture_output=True,
                       timeout=60)
    assert (r.returncode, r.stdout) == (1, b"")
    assert r.stderr.decode() == FLUSHED + PREFIX + "Operation failed: Unknown error -2147483648\n"
