"""Read-only command lines against the rich table: the reference and ours, byte for byte.

Every case runs ``/usr/sbin/conntrack ARGS`` and then our command with the same
arguments in the namespace of the session's rich table (:mod:`richtable`) and requires
the same exit status, stdout and stderr, up to the remaining timeouts and
``delta-time`` values (allowed to differ by a few seconds, see
:func:`harness.same_output`). Listings that our kernel-side pre-filter splits into one
dump per family (filters without a family: IPv4 lines come before IPv6 lines, see
docs/compatibility.md) are compared as sorted line sets.

Commands whose failure leaves the table unchanged (EEXIST, ENOENT, EINVAL, ...) are here
too; commands that change it are in test_mutating.py.
"""
from __future__ import annotations

import shlex

import pytest

from harness import assert_same

V4A, V4B = "10.1.0.1", "10.1.0.2"
V6A, V6B = "2001:db8:1::1", "2001:db8:1::2"

OUTPUTS = ["", "extended", "xml", "save", "id", "ktimestamp", "labels", "timestamp",
           "userspace", "extended,id", "xml,ktimestamp", "xml,labels", "xml,id,extended",
           "extended,ktimestamp,labels,id", "xml,ktimestamp,labels,timestamp", "EXT,I",
           "Xml", "ext -o id", "sa", "S", "d,extended", "labels,ktimestamp"]

FILTERS = [
    # addresses, CIDR, masks
    f"-s {V4A}", f"-d {V4B}", f"-s {V6A}", f"-d {V6B}", "-s 127.0.0.1", "-d 127.0.0.5",
    "-s 10.1.0.0/16", f"-s 10.1.0.0/24 -d {V4B}", "-s 2001:db8::/32", "-d 2001:db8:1::/64",
    f"-s {V4A} --mask-src 255.255.0.0", f"-d {V4B} --mask-dst 255.0.0.0", "-d 10.0.0.0/8",
    "-s 0.0.0.0/0", "-s ::/0", f"-s {V4A}/32", f"-s {V6A}/128", "-s 10.2.0.1 -d 10.2.0.2",
    f"-r {V4B}", f"-q {V4A}", "-r 10.9.9.9", "-q 10.9.9.8", "-r 127.0.0.1 -q 127.0.0.7",
    f"-r {V6B} -q {V6A}", "-r 10.2.0.3", "-q fd00::7", "-s fd00::5",
    f"-s {V4A} -d {V4B} -r {V4B} -q {V4A}", "-s 10.1.0", "-s 0x0a010001",
    # protocols and their fields
    "-p tcp", "-p udp", "-p udplite", "-p sctp", "-p dccp", "-p icmp", "-p icmpv6",
    "-p gre", "-p 200", "-p 2", "-p igmp", "-p ipv6-icmp", "-p 6", "-p 0x11", "-p TCP",
    "-p tcp --sport 1002", "-p tcp --dport 80", "-p tcp --dport 21", "-p udp --dport 53",
    "-p udp --sport 2000 --dport 53", "-p tcp --reply-port-src 8080",
    "-p tcp --reply-port-dst 1000", "-p udp --reply-port-src 999",
    "-p tcp --orig-port-src 1003", "-p udplite --sport 2003",
    "-p sctp --sport 103 --dport 200", "-p dccp --sport 5", "-p dccp --state OPEN",
    "-p icmp --icmp-type 8", "-p icmp --icmp-type 13 --icmp-code 0", "-p icmp --icmp-id 78",
    "-p icmpv6 --icmpv6-type 128", "-p icmpv6 --icmpv6-id 3", "-p icmpv6 --icmpv6-code 0",
    "-p gre --srckey 0x99", "-p gre --dstkey 0x20 --reply-key-src 5",
    *[f"-p tcp --state {s}" for s in ("SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
                                      "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE",
                                      "SYN_SENT2", "LISTEN", "NONE")],
    *[f"-p sctp --state {s}" for s in ("NONE", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED",
                                       "ESTABLISHED", "SHUTDOWN_SENT", "SHUTDOWN_RECD",
                                       "SHUTDOWN_ACK_SENT")],
    # marks and status
    "-m 16", "-m 0x10/0xf0", "-m 0", "-m 4294967295", "-m 0xff00/0xff00", "-m 5 -u SEEN_REPLY",
    "-m 16/0xff -u SEEN_REPLY", "-m abc", "-m 1/abc", "-m 66",
    "-u ASSURED", "-u SEEN_REPLY", "-u UNREPLIED", "-u !ASSURED", "-u FIXED_TIMEOUT",
    "-u EXPECTED", "-u ASSURED,SEEN_REPLY", "-u SEEN_REPLY,!ASSURED", "-u OFFLOAD",
    "-u HW_OFFLOAD", "-u UNREPLIED -u ASSURED", "-u !SEEN_REPLY -u ASSURED", "-u assured",
    "-u UNREPLIEDxx", "-u ASSURED -m 3",
    # zones, labels, secmark
    "-w 3", "-w 0", "-w 7", "-w 10", "--zone=abc", "-w 65539", "--orig-zone 4", "--orig-zone 0",
    "--reply-zone 5", "--reply-zone 0", "-w 3 --orig-zone 0", "-l web", "-l eth0-in,high",
    "-l high -l eth0-in", "-l eth1-in", "-l web -w 3", "-c 5", "-c abc",
    # NAT filters
    "-n", "-g", "-j", "-n -g", "-n 10.9.9.8", "-g 10.9.9.9", "-g 10.9.9.9:8080", "-g 10.9.9.9:80",
    "-n 127.0.0.7", "-g 127.0.0.1:9001", "-j 10.9.9.7:999", "-j 10.9.9.7", "-n 10.9.9.7:999",
    "-n [2001:db8:1::8]", "-g [2001:db8:1::9]:8080", "-g [fd00::1]:9001", "-n fd00::7",
    "-j 10.9.9.6", "-g 0.0.0.0:8080", "--src-nat=10.9.9.8", "-n1.2.3.4",
    # families and combinations
    "-f ipv4", "-f ipv6", "-f ipv6 -p tcp", "-f ipv4 -p udp --dport 53", "-f ipv6 -m 0xff00/0xff00",
    "-f ipv4 -u ASSURED", f"-s {V4A} -p tcp --state ESTABLISHED -u ASSURED",
    "-p tcp -m 0x10/0xf0 -f ipv6", "-p udp -w 3 -l eth1-in", "-p tcp -g -u ASSURED",
    "-p sctp -f ipv6 --state CLOSED", "-s 127.0.0.1 -p udp -g", "-p udp -n -f ipv6",
    "-p tcp --dport 21 -u ASSURED -m 0", "-f ipv6 -s ::1",
]


def listing_cases():
    for o in OUTPUTS:
        opt = f" -o {o}" if o else ""
        yield f"-L{opt}"
        yield f"-L -f ipv6{opt}"
    for o in ("", "xml", "save", "extended,id"):
        for table in ("dying", "unconfirmed"):
            yield f"-L {table}" + (f" -o {o}" if o else "")
    yield "-L dying -s 10.0.0.0/8"
    yield "-L unconfirmed -p tcp"
    yield "-L conntrack"
    yield "-L c -f ipv4"
    yield "--dump"
    for f in FILTERS:
        yield f"-L {f}"
    for f in ("-p tcp", f"-s {V4A}", "-w 3", "-g", "-l web", "-u ASSURED", "-m 16",
              "-p icmp", "-p sctp", "-p gre", "-p 200", "-f ipv6 -p tcp", "-n", "-p udp --dport 9003"):
        for o in ("extended", "xml", "save", "id,ktimestamp", "labels", "xml,labels"):
            yield f"-L {f} -o {o}"


def get_cases():
    tcp = f"-s {V4A} -d {V4B} -p tcp --sport 1002 --dport 80"
    for o in ("", " -o xml", " -o extended", " -o save", " -o id", " -o ktimestamp",
              " -o labels", " -o xml,ktimestamp,labels", " -o timestamp"):
        yield f"-G {tcp}{o}"
    yield f"-G -s {V6A} -d {V6B} -p tcp --sport 1002 --dport 80"
    yield f"-G -s {V4A} -d {V4B} -p tcp --sport 3000 --dport 443"
    yield f"-G -s {V4A} -d {V4B} -p tcp --sport 3000 --dport 443 -o labels"
    yield f"-G -s {V4A} -d {V4B} -p tcp --sport 3000 --dport 443 -l web"
    yield f"-G -s {V4A} -d {V4B} -p tcp --sport 3000 --dport 443 -l high"
    yield f"-G -s {V4A} -d {V4B} -p tcp --sport 3000 --dport 443 -i 1"
    yield f"-G -s {V4A} -d {V4B} -p tcp --sport 3000 --dport 443 --state SYN_SENT"
    yield f"-G -s {V4A} -d {V4B} -p udp --sport 2000 --dport 53"
    yield f"-G -s {V4A} -d {V4B} -p udp --sport 2001 --dport 53"  # zone 3: not in zone 0
    yield f"-G -s {V4A} -d {V4B} -p udp --sport 2001 --dport 53 -o xml"
    yield f"-G -s {V4A} -d {V4B} -p udplite --sport 2004 --dport 5000"
    yield f"-G -s {V4A} -d {V4B} -p sctp --sport 103 --dport 200 -o save"
    yield f"-G -s {V4A} -d {V4B} -p sctp --sport 103 --dport 200 --orig-vtag 1 -o xml"
    yield f"-G -s {V4A} -d {V4B} -p dccp --sport 5 --dport 6"
    yield f"-G -s {V4A} -d {V4B} -p gre --srckey 0x10 --dstkey 0x20"
    yield f"-G -s {V4A} -d {V4B} -p gre --srckey 7 --dstkey 65535 -o save"
    yield f"-G -s {V4A} -d {V4B} -p icmp --icmp-type 8 --icmp-code 0 --icmp-id 77"
    yield f"-G -s {V4A} -d {V4B} -p icmp --icmp-type 13 --icmp-code 0 --icmp-id 78 -o xml"
    yield f"-G -s {V4A} -d {V4B} -p icmp --icmp-type 8 --icmp-code 0"
    yield f"-G -s {V6A} -d {V6B} -p icmpv6 --icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 77"
    yield f"-G -s {V4A} -d {V4B} -p 200"
    yield f"-G -s {V6A} -d {V6B} -p 200 -o extended"
    yield f"-G -s {V4A} -d {V4B} -p 2"
    yield f"-G -s {V4A} -d {V4B} -p tcp --sport 4000 --dport 80 -o save"
    yield f"-G -s {V4A} -d {V4B} -p tcp --sport 4001 --dport 80 -o save"
    yield f"-G -s {V4A} -d {V4B} -p udp --sport 4002 --dport 53 -o xml"
    yield f"-G -s {V6A} -d {V6B} -p tcp --sport 4000 --dport 80 -o save"
    yield "-G -s 10.2.0.1 -d 10.2.0.2 -p tcp --sport 1 --dport 2"
    yield "-G -s 10.2.0.1 -d 10.2.0.2 -r 10.2.0.3 -q 10.2.0.1 -p tcp --sport 1 --dport 2"
    yield f"-G -s {V4A} -d {V4B} -p tcp --sport 9 --dport 9"           # ENOENT
    yield f"-G -s {V4A} -d {V4B} -p tcp --sport 9 --dport 9 -o xml"
    yield f"-G -r {V4B} -q {V4A} -p tcp --reply-port-src 80 --reply-port-dst 1002"  # no orig
    yield f"-G -s {V4A} -d {V4B} -p udp --sport 2000 --dport 53 -r {V4B} -q {V4A} --reply-port-src 53 --reply-port-dst 2000"
    yield f"-G -s {V4A} -d {V4B} -p udp --sport 2000 --dport 53 -r {V4B} -q {V4A} --reply-port-src 5 --reply-port-dst 2000"
    yield "-G -s 127.0.0.1 -d 127.0.0.5 -p udp --sport 1 --dport 9000"


def stats_cases():
    yield from ("-C", "-C conntrack", "-Cexpect", "-C expect", "-S", "-S expect", "-S conntrack",
                "--stats", "--count", "--counter expect")


EXPECT_CASES = [
    "-L expect", "-L expect -o xml", "-L expect -o timestamp", "-L expect -o xml,timestamp",
    "-L expect -o extended,id,save,labels,ktimestamp", "-L expect -f ipv6",
    "-L expect -f ipv6 -o xml", "-L expect -f ipv4", "-L e", "-L exp -o userspace",
    "-G expect -s 127.0.0.1 -d 127.0.0.1 -p tcp --sport 0 --dport 50000 "
    "--reply-port-src 0 --reply-port-dst 0",
    "-G expect -s 127.0.0.1 -d 127.0.0.1 -p tcp --sport 1600 --dport 1700 "
    "--reply-port-src 0 --reply-port-dst 0",
    "-G expect -s 127.0.0.1 -d 127.0.0.1 -p tcp --sport 1600 --dport 1700 "
    "--reply-port-src 0 --reply-port-dst 0 -o xml",
    "-G expect -s ::1 -d ::1 -p tcp --sport 0 --dport 50001 --reply-port-src 0 "
    "--reply-port-dst 0",
    "-G expect -s 127.0.0.1 -d 127.0.0.1 -p tcp --sport 1 --dport 2 --reply-port-src 2 "
    "--reply-port-dst 1",
    "-G expect -s 127.0.0.1 -d 127.0.0.1 -p udp --sport 1 --dport 2 --reply-port-src 2 "
    "--reply-port-dst 1",
    "-D expect -s 127.0.0.1 -d 127.0.0.1 -p udp --sport 1 --dport 2 --reply-port-src 2 "
    "--reply-port-dst 1",
    "-G expect -s 127.0.0.1 -d 127.0.0.1 -p udp --sport 0 --dport 6900 --reply-port-src 0 "
    "--reply-port-dst 0",
    "-G expect -s ::1 -d ::1 -p udp --sport 0 --dport 6900 --reply-port-src 0 "
    "--reply-port-dst 0 -o xml",
    "-L expect -o xml -f ipv6", "-C expect", "-S expect",
]


def help_cases():
    yield from ("", "-h", "--help", "-V", "--version", "-V expect", "-h -p tcp", "-h -p udp",
                "-h -p udplite", "-h -p sctp", "-h -p dccp", "-h -p gre", "-h -p icmp",
                "-h -p icmpv6", "-h -p 200", "-h -p igmp", "-h -p 2", "-h -p tcp --sport 1",
                "--reply-zone 3", "-a x", "-hexpect")


def runtime_error_cases():
    # EEXIST, 1.4.7's silent -A, EINVAL from the kernel and the library, EBUSY, ENOENT
    tcp = f"-s {V4A} -d {V4B} -p tcp --sport 1002 --dport 80 --state ESTABLISHED -t 50"
    yield f"-I {tcp}"
    yield f"-A {tcp}"
    yield f"--create {tcp} -u ASSURED"
    yield f"-I -s {V6A} -d {V6B} -p udp --sport 2000 --dport 53 -t 50"
    yield f"-I -s {V4A} -d {V4B} -p tcp --sport 9 --dport 9 --state ESTABLISHED -t 50 --orig-zone 4 --reply-zone 5"
    yield f"-A -s {V4A} -d {V4B} -p tcp --sport 9 --dport 9 --state ESTABLISHED -t 50 --orig-zone 4 --reply-zone 5"
    yield f"-I -p icmp --icmp-type 8 --icmp-code 0 -s {V4A} -d {V4B} -t 50"
    yield f"-I -p icmp --icmp-type 3 --icmp-code 0 -s {V4A} -d {V4B} -t 50"
    yield f"-I -s {V4A} -d {V4B} -p udp --sport 9 --dport 9 -t 50 -u EXPECTED"
    yield f"-I -s {V4A} -d {V4B} -p udp --sport 9 --dport 9 -t 50 -u SEEN_REPLY,EXPECTED"
    yield f"-I -s {V4A} -d {V4B} -p udp --sport 9 --dport 9 -t 50 -n 10.1.0.1 -g 10.1.0.1 -u EXPECTED"
    yield "-L -u UNSET"
    yield "-L -u s"
    yield "-L -u d -o xml"
    yield "-L -u D,!S"
    yield "-L -z -p tcp"
    yield "-L -z --mask-src 1.2.3.4 -s 1.1.1.1"
    yield "-L --mask-src 255.0.0.0"
    yield "-L --mask-dst ::"
    yield "-D --mask-src 255.0.0.0"
    yield "-U --mask-dst 255.0.0.0 -t 5"
    yield "-D -s 10.7.7.7"
    yield "-D -s 10.7.7.7 -o xml"
    yield "-D -p tcp --dport 9 -f ipv6"
    yield "-D -m 123456"
    yield "-D -i 1"
    yield "-D -l high -p udp"
    yield "-D -g 10.1.0.1"
    yield "-U -s 10.7.7.7 -m 1"
    yield "-U -f ipv6 -p tcp --dport 9 -m 1"
    yield "-U -s 10.2.0.1 -i 1 -m 1"
    yield "-U -l high -p udp -m 1"
    yield "-F expect -f ipv6 -s 1.1.1.1"
    yield "-I expect -s 127.0.0.1 -d 127.0.0.1 -p tcp --sport 9 --dport 21 --tuple-src 127.0.0.1 " \
          "--tuple-dst 127.0.0.1 --tuple-port-src 1536 --tuple-port-dst 1700 --mask-src 255.255.255.255 " \
          "--mask-dst 255.255.255.255 --mask-port-src 0 --mask-port-dst 65535 -t 50"
    yield f"-I expect -s {V4A} -d {V4B} -p tcp --sport 1002 --dport 80 --tuple-src {V4A} " \
          f"--tuple-dst {V4B} --tuple-port-src 1536 --tuple-port-dst 1700 --mask-src 255.255.255.255 " \
          "--mask-dst 255.255.255.255 --mask-port-src 0 --mask-port-dst 65535 -t 50"
    yield f"-I expect -s {V4A} -d {V4B} -p udp --sport 2000 --dport 53 --tuple-src {V4A} " \
          f"--tuple-dst {V4B} --tuple-port-src 1 --tuple-port-dst 2 --mask-src 255.255.255.255 " \
          "--mask-dst 255.255.255.255 --mask-port-src 0 --mask-port-dst 65535 -t 50"
    yield "-D expect -s 127.0.0.1 -d 127.0.0.1 -p tcp --sport 7 --dport 7 --reply-port-src 7 " \
          "--reply-port-dst 7"
    yield "-G expect -s 10.9.9.9 -d 10.9.9.9 -p sctp --sport 7 --dport 7 --reply-port-src 7 " \
          "--reply-port-dst 7"


def _filtered(args: list[str]) -> bool:
    """Whether our kernel-side pre-filter may split the dump by family."""
    fixed = {"-f", "-s", "-d", "-r", "-q", "--mask-src", "--mask-dst"}
    return not any(a in fixed or a.startswith("-f") for a in args) and len(args) > 1


READONLY = [*listing_cases(), *get_cases(), *stats_cases(), *help_cases(),
            *runtime_error_cases()]


def _run(rich, line: str) -> None:
    _, runner, _ = rich
    args = shlex.split(line)
    ref = runner.ref(*args)
    ours = runner.ours(*args)
    assert_same(ref, ours, unordered=_filtered(args))


@pytest.mark.parametrize("line", READONLY)
def test_readonly(rich, line: str) -> None:
    _run(rich, line)


@pytest.mark.parametrize("line", EXPECT_CASES)
def test_expectations(rich, line: str) -> None:
    _run(rich, line)


def test_enough_cases() -> None:
    assert len(READONLY) + len(EXPECT_CASES) >= 400
