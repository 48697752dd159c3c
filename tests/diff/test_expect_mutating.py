"""Commands that change the expectation table: ``-I expect``, ``-D expect``, ``-F expect``.

A namespace with the kernel's ftp helper holds FTP control connections for the whole
module: an IPv4 ``PORT`` session, an IPv6 ``EPSV`` session and a bare IPv4 control
connection (a master with the helper but no expectation yet). Before each run the
expectations are flushed and re-created exactly: each session repeats its command, so
the helper expects the same data connection again. The reference runs, the table is
listed (``-L expect`` for both families), the expectations are re-created, ours runs;
outputs and tables must agree.
"""
from __future__ import annotations

import shlex
import socket

import pytest

from harness import assert_same, sorted_lines
from richtable import TFTP_RRQ

MASK4 = "--mask-src 255.255.255.255 --mask-dst 255.255.255.255"
MASK6 = ("--mask-src ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
         "--mask-dst ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")


class Ftp:
    def __init__(self, ns) -> None:
        from helpers.ftp import FtpServer

        self.ns = ns
        with ns.enter():
            self.server = FtpServer(next_port=52000)
            self.v4 = self.server.session(socket.AF_INET, "PORT")
            self.v6 = self.server.session(socket.AF_INET6, "EPSV")
            self.bare_cli = socket.create_connection(("127.0.0.1", 21), timeout=5)
            self.bare_srv, _ = self.server.listeners[socket.AF_INET].accept()
            self.tftp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.tftp.bind(("127.0.0.1", 6901))

    @property
    def ports(self) -> dict[str, int]:
        return {"p4": self.v4.client_port, "p6": self.v6.client_port,
                "bare": self.bare_cli.getsockname()[1]}

    def reset(self) -> None:
        from ctnetlink.client import Conntrack
        from helpers.ftp import _say

        with self.ns.enter(), Conntrack() as ct:
            ct.flush_expect(socket.AF_INET)
            ct.flush_expect(socket.AF_INET6)
        hi, lo = divmod(self.v4.data_port, 256)
        _say(self.v4.client, self.v4.server, f"PORT 127,0,0,1,{hi},{lo}\r\n".encode())
        _say(self.v4.server, self.v4.client, b"200 PORT command successful\r\n")
        self.tftp.sendto(TFTP_RRQ, ("127.0.0.1", 69))
        _say(self.v6.client, self.v6.server, b"EPSV\r\n")
        _say(self.v6.server, self.v6.client,
             f"229 Entering Extended Passive Mode (|||{self.v6.data_port}|)\r\n".encode())

    def close(self) -> None:
        self.tftp.close()
        self.bare_cli.close()
        self.bare_srv.close()
        self.server.close()


@pytest.fixture(scope="module")
def ftp(module_ns):
    ns, runner = module_ns
    f = Ftp(ns)
    try:
        yield ns, runner, f
    finally:
        f.close()


def expectations(runner) -> list[str]:
    out = []
    for args in (["-L", "expect"], ["-L", "expect", "-f", "ipv6"]):
        r = runner.ref(*args)
        assert r.status == 0, r.text()
        out += sorted_lines(r.out)
    return out


def run_both(ftp_fixture, line: str):
    ns, runner, f = ftp_fixture
    args = shlex.split(line.format(**f.ports))
    f.reset()
    ref = runner.run("ref", args)
    ref_table = expectations(runner)
    f.reset()
    ours = runner.run("ours", args)
    our_table = expectations(runner)
    return ref, ref_table, ours, our_table


def create(src: str, master_port: str, tuple_ports: tuple[int, int], *, v6: bool = False,
           extra: str = "") -> str:
    mask = MASK6 if v6 else MASK4
    return (f"-I expect -s {src} -d {src} -p tcp --sport {{{master_port}}} --dport 21 "
            f"--tuple-src {src} --tuple-dst {src} --tuple-port-src {tuple_ports[0]} "
            f"--tuple-port-dst {tuple_ports[1]} {mask} --mask-port-src 0 --mask-port-dst 65535 "
            f"-t 100 {extra}").strip()


CASES = [
    "-F expect",
    "-F e",
    "-D expect -s 127.0.0.1 -d 127.0.0.1 -p tcp --sport 0 --dport 52000 --reply-port-src 0 "
    "--reply-port-dst 0",
    "-D expect -s ::1 -d ::1 -p tcp --sport 0 --dport 52001 --reply-port-src 0 --reply-port-dst 0",
    "-D expect -s 127.0.0.1 -d 127.0.0.1 -p tcp --sport 1 --dport 52000 --reply-port-src 0 "
    "--reply-port-dst 0",
    "-D expect -s 127.0.0.1 -d 127.0.0.1 -p udp --sport 0 --dport 52000 --reply-port-src 0 "
    "--reply-port-dst 0",
    create("127.0.0.1", "bare", (1600, 1700)),
    create("127.0.0.1", "bare", (1536, 1791)),
    create("127.0.0.1", "p4", (1600, 1700)),
    create("::1", "p6", (1600, 1700), v6=True),
    create("127.0.0.1", "bare", (1600, 1700)).replace(MASK4, "--mask-src 255.255.255.0 "
                                                      "--mask-dst 255.255.255.255"),
    create("127.0.0.1", "bare", (1600, 1700)).replace("--mask-port-src 0", "--mask-port-src 65535"),
    create("127.0.0.1", "bare", (1600, 1700)).replace("-t 100", "-t 0"),
    create("127.0.0.1", "bare", (1600, 1700)).replace("--tuple-src 127.0.0.1",
                                                      "--tuple-src 127.0.0.0/8"),
    "-D expect -s 127.0.0.1 -d 127.0.0.1 -p udp --sport 0 --dport 6901 --reply-port-src 0 "
    "--reply-port-dst 0",
    # (clashes with the helper's expectation: EEXIST, "File exists")
    "-I expect -s 127.0.0.1 -d 127.0.0.1 -p udp --sport 6901 --dport 69 --tuple-src 127.0.0.1 "
    f"--tuple-dst 127.0.0.1 --tuple-port-src 7000 --tuple-port-dst 6901 {MASK4} "
    "--mask-port-src 0 --mask-port-dst 65535 -t 100",
    "-I expect -s 127.0.0.1 -d 127.0.0.1 -p udp --sport 6901 --dport 69 --tuple-src 127.0.0.1 "
    f"--tuple-dst 127.0.0.1 --tuple-port-src 7000 --tuple-port-dst 6999 {MASK4} "
    "--mask-port-src 65535 --mask-port-dst 65535 -t 100",
    create("127.0.0.1", "p4", (1600, 1700)).replace("{p4}", "9"),  # master not found
    create("127.0.0.2", "bare", (1600, 1700)),                       # master not found
]


@pytest.mark.parametrize("line", CASES)
def test_expect_mutating(ftp, line: str) -> None:
    ref, ref_table, ours, our_table = run_both(ftp, line)
    assert_same(ref, ours)
    assert our_table == ref_table


def test_create_expect_sends_the_real_protocol(ftp) -> None:
    """1.4.7 stores ``port >> 8`` of the last ``--tuple-port-*`` option as the expected
    tuple's protocol for TCP (and SCTP/DCCP): ``--tuple-port-dst 2100`` gives protocol 8
    and the kernel creates an expectation for protocol 8 without ports (1700 gives 6 by
    luck). 1.4.8+git and ours send the -p protocol with the ports."""
    ref, ref_table, ours, our_table = run_both(ftp, create("127.0.0.1", "bare", (2000, 2100)))
    assert ref.status == ours.status == 0
    assert ref.out == ref.err == ours.out == ours.err == b""
    theirs = [line for line in ref_table if line not in our_table]
    mine = [line for line in our_table if line not in ref_table]
    assert len(theirs) == len(mine) == 1
    assert theirs[0].startswith("# proto=8 src=127.0.0.1 dst=127.0.0.1 mask-src=")
    assert mine[0].startswith("# proto=6 src=127.0.0.1 dst=127.0.0.1 sport=2000 dport=2100 ")


def test_enough_cases() -> None:
    assert len(CASES) >= 15
