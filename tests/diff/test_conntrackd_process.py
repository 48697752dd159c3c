"""Both daemons as processes, both clients (spec §4, §7, §8): the C conntrackd 1.4.7 and
ours run in one namespace with the same configuration (each with its own lock, log and
socket); every client request is sent by the C client and by ours to both daemons and
the four outputs are byte-compared after normalising the ``[active since Ns]`` ages and
the dump order (the reference prints in its hash order)."""
from __future__ import annotations

import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.cdaemon import CONNTRACKD, OURS, CDaemon  # noqa: E402
from helpers.ftp import enable_tracking  # noqa: E402
from helpers.netns import CONNTRACK, NetNS  # noqa: E402

ACTIVE = re.compile(r"\[active since -?\d+s\]")
CHANNEL = re.compile(r"(?m)^ *\d+ (Bytes sent|Pckts sent|Error send) +\d+ (Bytes recv|Pckts recv|Error recv)$")
QUEUED = re.compile(r"(current elements:\t\t|allocated queue nodes:\t\t) *\d+")

STATS = "Stats {\n\tLogFile @STATSLOG@\n}\n"
SYNC = """Sync {
\tMode FTFW { }
\tUDP {
\t\tIPv4_address 127.0.0.1
\t\tIPv4_Destination_Address 127.0.0.2
\t\tPort 3780
\t\tInterface lo
\t}
}
"""
REQUESTS = [("-i",), ("-i", "-x"), ("-s",), ("-s", "cache"), ("-s", "ct"), ("-s", "network"),
            ("-s", "link"), ("-s", "queue"), ("-s", "expect"), ("-e",), ("-i", "expect")]


def normal(text: str) -> str:
    text = QUEUED.sub(r"\1N", CHANNEL.sub(r"N \1 N \2", ACTIVE.sub("[active since Ns]", text)))
    if text.startswith(("tcp", "udp", "icmp", "<flow>", "gre")):
        text = "\n".join(sorted(text.splitlines())) + "\n"
    return text


@pytest.fixture(scope="module", params=["stats", "sync"])
def daemons(request) -> Iterator[tuple[str, NetNS, CDaemon, CDaemon]]:
    if os.geteuid() != 0:
        pytest.fail("the differential suite needs root (network namespaces)")
    section = STATS if request.param == "stats" else SYNC
    with NetNS("dcore") as ns:
        enable_tracking(ns)
        ns.sysctl("net.netfilter.nf_conntrack_acct", 1)
        ns.run(CONNTRACK, "-I", "-p", "tcp", "-s", "10.1.1.1", "-d", "10.2.2.2", "--sport", "10",
               "--dport", "20", "--state", "ESTABLISHED", "-t", "500", "-u", "ASSURED", "-m", "5")
        c = CDaemon(ns, section)
        ours = CDaemon(ns, section, program=OURS)
        try:
            c.start()
            ours.start()
            ns.run(CONNTRACK, "-I", "-p", "udp", "-s", "2001:db8::1", "-d", "2001:db8::2",
                   "--sport", "11", "--dport", "21", "-t", "500", "-w", "3")
            with ns.enter():
                a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                a.bind(("127.0.0.1", 7000))
                b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                b.sendto(b"ping", ("127.0.0.1", 7000))
                a.close()
                b.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if c.client("-s").stdout.split("traffic")[0] == ours.client("-s").stdout.split("traffic")[0]:
                    break
                time.sleep(0.05)
            yield request.param, ns, c, ours
        finally:
            c.close()
            ours.close()


@pytest.mark.parametrize("args", REQUESTS, ids=" ".join)
def test_both_clients_both_daemons(daemons, args) -> None:
    _, ns, c, ours = daemons
    outputs = {}
    for dname, d in (("C daemon", c), ("our daemon", ours)):
        for cname, prog in (("C client", (CONNTRACKD,)), ("our client", OURS)):
            r = d.client(*args, program=prog)
            outputs[(dname, cname)] = (r.returncode, normal(r.stdout), r.stderr)
    first = outputs[("C daemon", "C client")]
    for key, value in outputs.items():
        assert value == first, key


def test_runtime(daemons) -> None:
    mode, ns, c, ours = daemons
    a = c.client("-s", "runtime").stdout
    b = ours.client("-s", "runtime", program=OURS).stdout
    strip = re.compile(r"(events received:|events filtered:|daemon uptime:).*")
    assert strip.sub(r"\1", a) == strip.sub(r"\1", b)
