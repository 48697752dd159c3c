"""A conntrack table with a bit of everything, built in a private network namespace.

:func:`build` fills a namespace with entries created by the reference tool (every
layer-4 protocol it knows, protocol numbers 200 and 2, IPv4 and IPv6, TCP in every
state, source and destination NAT, the three kinds of zone, marks, labels, status bits)
and with entries made by real traffic over ``lo``: UDP through an nftables NAT ruleset
(DNAT and SNAT, IPv4 and IPv6), UDP that a ruleset gives a mark, labels and a zone,
ICMP and ICMPv6 echo, and FTP control connections through the kernel's ``ftp`` helper
whose ``PORT``/``EPSV`` commands leave expectations behind (plus one expectation created
with ``-I expect``). Accounting and timestamps are on and every timeout is long, so the
table does not change while hundreds of command lines read it.
"""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

from helpers.ftp import FtpServer, Session
from helpers.netns import NetNS

LONG = 86400
TFTP_RRQ = b"\x00\x01boot.img\x00octet\x00"
SYSCTLS = {
    "net.netfilter.nf_conntrack_acct": 1,
    "net.netfilter.nf_conntrack_timestamp": 1,
    # every entry gets the event extension (the default, 2, gives it only to entries
    # created while a listener exists: later changes of older entries send no event)
    "net.netfilter.nf_conntrack_events": 1,
    "net.netfilter.nf_conntrack_udp_timeout": LONG,
    "net.netfilter.nf_conntrack_udp_timeout_stream": LONG,
    "net.netfilter.nf_conntrack_icmp_timeout": LONG,
    "net.netfilter.nf_conntrack_icmpv6_timeout": LONG,
    "net.netfilter.nf_conntrack_generic_timeout": LONG,
    "net.netfilter.nf_conntrack_tcp_timeout_unacknowledged": LONG,
    "net.ipv4.ping_group_range": "0 2147483647",
}

RULESET = """
table inet pyct_diff {
    ct helper ftp-standard {
        type "ftp" protocol tcp
    }
    ct helper tftp-standard {
        type "tftp" protocol udp
    }
    chain raw_out {
        type filter hook output priority raw; policy accept;
        udp dport 9005 ct zone set 7
        udp sport 9005 ct zone set 7
    }
    chain out {
        type filter hook output priority filter; policy accept;
        tcp dport 21 ct helper set "ftp-standard"
        udp dport 69 ct helper set "tftp-standard"
        udp dport 9003 ct label set 2
        udp dport 9003 ct label set 40
        udp dport 9004 ct mark set 0x42
        udp dport 9006 ct label set 40
    }
    chain pre {
        type filter hook prerouting priority filter; policy accept;
        meta mark 0x7fffffff ct label set 127
    }
}
table ip pyct_nat4 {
    chain out {
        type nat hook output priority -100; policy accept;
        ip daddr 127.0.0.5 udp dport 9000 dnat to 127.0.0.1:9001
    }
    chain post {
        type nat hook postrouting priority 100; policy accept;
        ip daddr 127.0.0.1 udp dport 9002 snat to 127.0.0.7
    }
}
table ip6 pyct_nat6 {
    chain out {
        type nat hook output priority -100; policy accept;
        ip6 daddr fd00::5 udp dport 9000 dnat to [fd00::1]:9001
    }
    chain post {
        type nat hook postrouting priority 100; policy accept;
        ip6 daddr fd00::1 udp dport 9002 snat to fd00::7
    }
}
"""

V4 = ("10.1.0.1", "10.1.0.2")
V6 = ("2001:db8:1::1", "2001:db8:1::2")
TCP_STATES = ("SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK",
              "TIME_WAIT", "CLOSE", "SYN_SENT2", "NONE")
SCTP_STATES = ("CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED", "SHUTDOWN_SENT",
               "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT")


def create_lines() -> list[str]:
    """``-I`` lines (for ``conntrack -R``) of the created part of the table."""
    t = f"-t {LONG}"
    lines = []
    for fam, (a, b) in ((4, V4), (6, V6)):
        n = 0
        for i, state in enumerate(TCP_STATES):
            status = {"ESTABLISHED": "-u SEEN_REPLY,ASSURED", "SYN_RECV": "-u SEEN_REPLY",
                      "FIN_WAIT": "-u ASSURED", "CLOSE": "-u FIXED_TIMEOUT"}.get(state, "")
            mark = f"-m {i * 3}" if i % 2 else ""
            lines.append(f"-I -s {a} -d {b} -p tcp --sport {1000 + i} --dport 80 "
                         f"--state {state} {status} {mark} {t}")
        lines += [
            f"-I -s {a} -d {b} -p udp --sport 2000 --dport 53 {t} -m 0x10",
            f"-I -s {a} -d {b} -p udp --sport 2001 --dport 53 {t} -w 3",
            f"-I -s {a} -d {b} -p udp --sport 2002 --dport 53 {t} -u SEEN_REPLY,ASSURED -m 4294967295",
            f"-I -s {a} -d {b} -p udplite --sport 2003 --dport 5000 {t} --orig-zone 4",
            f"-I -s {a} -d {b} -p udplite --sport 2004 --dport 5000 {t} --reply-zone 5 -u FIXED_TIMEOUT",
            f"-I -s {a} -d {b} -p dccp --sport 5 --dport 6 --state OPEN --role client {t}",
            f"-I -s {a} -d {b} -p gre --srckey 0x10 --dstkey 0x20 {t} -m 16",
            f"-I -s {a} -d {b} -p gre --srckey 7 --dstkey 65535 {t} -u SEEN_REPLY",
            f"-I -s {a} -d {b} -p 200 {t} -m 255",
            f"-I -s {a} -d {b} -p 2 {t} -w 10",
            f"-I -s {a} -d {b} -p tcp --sport 3000 --dport 443 --state ESTABLISHED {t} "
            f"-u SEEN_REPLY,ASSURED --label-add web",
            f"-I -s {a} -d {b} -p tcp --sport 3001 --dport 443 --state ESTABLISHED {t} "
            f"--label-add eth0-in,high -m 0xff00",
            f"-I -s {a} -d {b} -p udp --sport 3002 --dport 443 {t} --label-add eth1-in -w 3",
        ]
        for i, state in enumerate(SCTP_STATES):
            lines.append(f"-I -s {a} -d {b} -p sctp --sport {100 + i} --dport 200 --state {state} "
                         f"--orig-vtag {1234 + i} --reply-vtag {5678 + i} {t}")
        if fam == 4:
            lines += [
                f"-I -s {a} -d {b} -p icmp --icmp-type 8 --icmp-code 0 --icmp-id 77 {t}",
                f"-I -s {a} -d {b} -p icmp --icmp-type 13 --icmp-code 0 --icmp-id 78 {t} -m 5",
                f"-I -s {a} -d {b} -p tcp --sport 4000 --dport 80 --state ESTABLISHED {t} "
                f"-u SEEN_REPLY,ASSURED --dst-nat 10.9.9.9:8080",
                f"-I -s {a} -d {b} -p tcp --sport 4001 --dport 80 --state SYN_SENT {t} "
                f"--src-nat 10.9.9.8",
                f"-I -s {a} -d {b} -p udp --sport 4002 --dport 53 {t} --src-nat 10.9.9.7:999",
                f"-I -s {a} -d {b} -p udp --sport 4003 --dport 53 {t} --dst-nat 10.9.9.6",
                f"-I -s 10.2.0.1 -d 10.2.0.2 -r 10.2.0.3 -q 10.2.0.1 -p tcp --sport 1 --dport 2 "
                f"--reply-port-src 3 --reply-port-dst 1 --state ESTABLISHED {t}",
            ]
        else:
            lines += [
                f"-I -s {a} -d {b} -p icmpv6 --icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 77 {t}",
                f"-I -s {a} -d {b} -p icmpv6 --icmpv6-type 139 --icmpv6-code 0 --icmpv6-id 3 {t}",
                f"-I -s {a} -d {b} -p tcp --sport 4000 --dport 80 --state ESTABLISHED {t} "
                f"-u SEEN_REPLY,ASSURED --dst-nat [2001:db8:1::9]:8080",
                f"-I -s {a} -d {b} -p udp --sport 4002 --dport 53 {t} --src-nat 2001:db8:1::8",
            ]
    return [" ".join(line.split()) for line in lines]


@dataclass
class RichTable:
    ns: NetNS
    ftp: FtpServer | None = None
    sessions: list[Session] = field(default_factory=list)
    sockets: list[socket.socket] = field(default_factory=list)
    master: tuple[str, int] | None = None
    """(address, client port) of the FTP control connection with the ``-I expect`` one."""
    tftp: list[socket.socket] = field(default_factory=list)
    """TFTP clients whose read request left an expectation (UDP, IPv4 and IPv6)."""
    armed_at: float = 0.0
    """time.monotonic() of the last (re-)creation of the expectations."""

    def close(self) -> None:
        for s in self.sockets + self.tftp:
            s.close()
        if self.ftp is not None:
            self.ftp.close()


def _udp_exchange(family: int, src: str | None, dst: str, port: int, server_addr: str,
                  server_port: int, sockets: list[socket.socket], replies: int = 1) -> None:
    srv = socket.socket(family, socket.SOCK_DGRAM)
    srv.bind((server_addr, server_port))
    cli = socket.socket(family, socket.SOCK_DGRAM)
    if src is not None:
        cli.bind((src, 0))
    cli.settimeout(5)
    srv.settimeout(5)
    for i in range(replies + 1):
        cli.sendto(b"ping %d" % i, (dst, port))
        data, peer = srv.recvfrom(100)
        if i < replies:
            srv.sendto(b"pong " + data, peer)
            cli.recvfrom(100)
    sockets += [srv, cli]


def _ping(family: int, addr: str, ident_sockets: list[socket.socket]) -> None:
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    s = socket.socket(family, socket.SOCK_DGRAM, proto)
    s.settimeout(5)
    typ = 8 if family == socket.AF_INET else 128
    s.sendto(bytes([typ, 0, 0, 0, 0, 0, 0, 1]) + b"abcdefgh", (addr, 0))
    s.recv(100)
    ident_sockets.append(s)


def traffic(rt: RichTable) -> None:
    """Real packets over lo (the caller's thread must be inside the namespace)."""
    socks = rt.sockets
    v4, v6 = socket.AF_INET, socket.AF_INET6
    # DNAT and SNAT through the nftables NAT tables
    _udp_exchange(v4, None, "127.0.0.5", 9000, "127.0.0.1", 9001, socks, replies=2)
    _udp_exchange(v4, "127.0.0.1", "127.0.0.1", 9002, "127.0.0.1", 9002, socks)
    _udp_exchange(v6, None, "fd00::5", 9000, "fd00::1", 9001, socks)
    _udp_exchange(v6, "fd00::2", "fd00::1", 9002, "fd00::1", 9002, socks)
    # labels (one named, one unnamed bit), a mark and a zone from the ruleset
    _udp_exchange(v4, None, "127.0.0.1", 9003, "127.0.0.1", 9003, socks)
    _udp_exchange(v6, None, "::1", 9004, "::1", 9004, socks, replies=0)
    _udp_exchange(v4, None, "127.0.0.1", 9005, "127.0.0.1", 9005, socks)
    _udp_exchange(v4, None, "127.0.0.1", 9006, "127.0.0.1", 9006, socks)
    _ping(v4, "127.0.0.1", socks)
    _ping(v6, "::1", socks)
    # FTP: the helper expects a data connection for each PORT / EPSV
    rt.ftp = FtpServer()
    rt.sessions.append(rt.ftp.session(v4, "PORT"))
    rt.sessions.append(rt.ftp.session(v6, "EPSV"))
    rt.sessions.append(rt.ftp.session(v4, "PASV"))
    # TFTP read requests: the tftp helper expects the server's answer (UDP expectations)
    for fam, addr in ((v4, "127.0.0.1"), (v6, "::1")):
        c = socket.socket(fam, socket.SOCK_DGRAM)
        c.bind((addr, 6900))
        c.sendto(TFTP_RRQ, (addr, 69))
        rt.tftp.append(c)
    # a control connection without any command: master of the -I expect expectation
    cli = socket.create_connection(("127.0.0.1", 21), timeout=5)
    srv, _ = rt.ftp.listeners[v4].accept()
    socks += [cli, srv]
    rt.master = ("127.0.0.1", cli.getsockname()[1])


def prepare(ns: NetNS) -> None:
    """Sysctls, addresses and the ruleset (helper, labels, zone, mark, NAT)."""
    for key, value in SYSCTLS.items():
        ns.sysctl(key, value)
    for addr in ("fd00::1", "fd00::2", "fd00::5", "fd00::7"):
        ns.run("ip", "addr", "add", f"{addr}/128", "dev", "lo", "nodad")
    ns.nft(RULESET)


def build(ns: NetNS, runner) -> RichTable:
    """Fill ``ns`` (``runner``: a :class:`harness.Namespace` for it)."""
    prepare(ns)
    rt = RichTable(ns)
    # (the reference's -R crashes on a --label-add line that is not the first line)
    lines = create_lines()
    batch = "\n".join(line for line in lines if "--label-add" not in line) + "\n"
    r = runner.ref("-R", "-", stdin=batch.encode(), check=True)
    assert r.err == b"", r.text()
    for line in lines:
        if "--label-add" in line:
            runner.ref(*line.split(), check=True)
    with ns.enter():
        traffic(rt)
    runner.ref(*user_expectation(rt), check=True)
    settle(rt)
    rt.armed_at = time.monotonic()
    return rt


def keep_expectations(rt: RichTable, runner, max_age: float) -> None:
    """Re-create the expectations when they are older than ``max_age`` seconds."""
    if time.monotonic() - rt.armed_at > max_age:
        rearm(rt, runner)


def settle(rt: RichTable, timeout: float = 10) -> None:
    """Wait until the FTP control connections are quiet: the last delayed ACK has passed,
    so every port-21 entry is back at the established timeout and its counters stay."""
    from ctnetlink.client import Conntrack

    deadline = time.monotonic() + timeout
    with rt.ns.enter(), Conntrack() as ct:
        while True:
            flows = [f for f in ct.dump() if f.orig is not None and f.orig.proto == 6
                     and f.orig.dport == 21]
            if len(flows) == len(rt.sessions) + 1 and all(f.timeout > LONG for f in flows):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"FTP control connections still busy: {flows}")
            time.sleep(0.01)


def user_expectation(rt: RichTable) -> list[str]:
    """``-I expect`` of an expectation on the bare control connection (the expected
    tuple's ports satisfy the 1.4.7 bug: the last ``--tuple-port-*`` gives the protocol,
    ``1700 >> 8 == 6``, see spec §3.12)."""
    addr, port = rt.master
    return ["-I", "expect", "-s", addr, "-d", addr, "-p", "tcp", "--sport", str(port),
            "--dport", "21", "--tuple-src", addr, "--tuple-dst", addr,
            "--tuple-port-src", "1600", "--tuple-port-dst", "1700", "--mask-src",
            "255.255.255.255", "--mask-dst", "255.255.255.255", "--mask-port-src", "0",
            "--mask-port-dst", "65535", "-t", str(LONG)]


def rearm(rt: RichTable, runner) -> None:
    """Renew the expectations (the kernel gives every expectation of the ftp helper five
    minutes, whatever ``-t`` says): repeat each session's PORT/EPSV/PASV command on its
    control connection and re-create the ``-I expect`` one."""
    from helpers.ftp import _say

    addr = rt.master[0]
    runner.ref("-D", "expect", "-s", addr, "-d", addr, "-p", "tcp", "--sport", "1600",
               "--dport", "1700", "--reply-port-src", "1700", "--reply-port-dst", "1600")
    runner.ref(*user_expectation(rt), check=True)

    for c in rt.tftp:
        c.sendto(TFTP_RRQ, (c.getsockname()[0], 69))
    for s in rt.sessions:
        hi, lo = divmod(s.data_port, 256)
        if s.mode == "PORT":
            _say(s.client, s.server, f"PORT 127,0,0,1,{hi},{lo}\r\n".encode())
            _say(s.server, s.client, b"200 PORT command successful\r\n")
        elif s.mode == "EPSV":
            _say(s.client, s.server, b"EPSV\r\n")
            _say(s.server, s.client, f"229 Entering Extended Passive Mode (|||{s.data_port}|)\r\n"
                 .encode())
        elif s.mode == "PASV":
            _say(s.client, s.server, b"PASV\r\n")
            _say(s.server, s.client,
                 f"227 Entering Passive Mode (127,0,0,1,{hi},{lo})\r\n".encode())
    settle(rt)
    rt.armed_at = time.monotonic()
