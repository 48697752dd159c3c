"""Differential test of the command-line parser against the reference ``conntrack`` 1.4.7.

Hundreds of bad and edge command lines (and ``-R`` files) are run through the reference
binary — inside a private network namespace, with ``/etc/xtables`` replaced by a
private tmpfs so that each case chooses its own label map — and through our parser
in-process. When the reference fails while parsing (exit 2, the exit-1 parse-time
messages) or prints help/version, stderr, stdout and the exit status must be equal byte
for byte. When the reference goes on to run the command, our parser must accept the
line too, and the warnings it printed must be exactly the beginning of the
reference's stderr. Needs root, ``ip`` and ``/usr/sbin/conntrack``.
"""
from __future__ import annotations

import base64
import io
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

try:
    from conntrack_tools.conntrack.errors import CliError, format_error
    from conntrack_tools.conntrack.invocation import Batch, Command
    from conntrack_tools.conntrack.parse import parse_command_line, runtime_checks
    from conntrack_tools.conntrack.protocols import BY_NAME
    from conntrack_tools.conntrack.usage import help_for, version_text
except ModuleNotFoundError:  # source checkout without `pip install -e .`
    from tools.conntrack.errors import CliError, format_error  # type: ignore[no-redef]
    from tools.conntrack.invocation import Batch, Command  # type: ignore[no-redef]
    from tools.conntrack.parse import parse_command_line, runtime_checks  # type: ignore[no-redef]
    from tools.conntrack.protocols import BY_NAME  # type: ignore[no-redef]
    from tools.conntrack.usage import help_for, version_text  # type: ignore[no-redef]

REFERENCE = "/usr/sbin/conntrack"

LABELS = b"0 eth0-in\n1 eth1-in\n2 web\n5 high\n"
NO_LABELS = None            # no connlabel.conf at all
EMPTY_LABELS = b"# no label defined here\n"
# exit-1 messages the reference prints while parsing
PARSE_TIME_EXIT1 = ("cannot combine save output", "cannot use --label-add and --label-del")

# ---------------------------------------------------------------------------------------
# cases


class Case:
    """One command line (or -R file) with its label map, stdin and environment."""

    def __init__(self, args: list[str], labels: bytes | None = LABELS, batch: bytes | None = None,
                 stdin: bytes | None = None, env: dict[str, str] | None = None,
                 tag: str = "") -> None:
        self.args = list(args)
        self.labels = labels
        self.batch = batch
        self.stdin = stdin
        self.env = env or {}
        self.tag = tag

    @property
    def key(self) -> tuple:
        return (tuple(self.args), self.labels, self.batch, self.stdin,
                tuple(sorted(self.env.items())))

    @property
    def id(self) -> str:
        text = " ".join(a if a and " " not in a else repr(a) for a in self.args)
        if self.batch is not None:
            text += " <<" + repr(self.batch[:60])[2:-1]
        if self.labels != LABELS:
            text += " [labels=" + ("none" if self.labels is None else "empty") + "]"
        if self.env:
            text += " [" + ",".join(self.env) + "]"
        return (self.tag + ": " if self.tag else "") + text[:150]


# sample arguments of the main options, by canonical name
OPTION_SAMPLES: dict[str, list[str]] = {
    "src": ["-s", "1.1.1.1"], "dst": ["-d", "2.2.2.2"], "reply-src": ["-r", "2.2.2.2"],
    "reply-dst": ["-q", "1.1.1.1"], "protonum": ["-p", "tcp"], "timeout": ["-t", "10"],
    "status": ["-u", "ASSURED"], "zero": ["-z"], "event-mask": ["-e", "NEW"],
    "tuple-src": ["--tuple-src", "3.3.3.3"], "tuple-dst": ["--tuple-dst", "4.4.4.4"],
    "mask-src": ["--mask-src", "255.255.255.0"], "mask-dst": ["--mask-dst", "255.255.0.0"],
    "nat-range": ["-a", "x"], "mark": ["-m", "1"], "id": ["-i", "5"], "family": ["-f", "ipv4"],
    "src-nat": ["-n"], "dst-nat": ["-g"], "output": ["-o", "xml"], "secmark": ["-c", "1"],
    "buffer-size": ["-b", "100000"], "any-nat": ["-j"], "zone": ["-w", "1"],
    "label": ["-l", "web"], "label-add": ["--label-add", "web"],
    "label-del": ["--label-del", "web"], "orig-zone": ["--orig-zone", "1"],
    "reply-zone": ["--reply-zone", "2"],
}

COMMANDS: dict[str, list[str]] = {
    "-L": ["-L"], "-L dying": ["-L", "dying"], "-L unconfirmed": ["-L", "unconfirmed"],
    "-G": ["-G"], "-D": ["-D"], "-I": ["-I"], "-A": ["-A"], "-U": ["-U"], "-E": ["-E"],
    "-F": ["-F"], "-C": ["-C"], "-S": ["-S"], "-V": ["-V"], "-h": ["-h"],
    "-L expect": ["-L", "expect"], "-G expect": ["-G", "expect"],
    "-D expect": ["-D", "expect"], "-I expect": ["-I", "expect"],
    "-F expect": ["-F", "expect"], "-E expect": ["-E", "expect"],
    "-C expect": ["-C", "expect"], "-S expect": ["-S", "expect"], "none": [],
}

# everything a command needs to pass the legality checks (with tcp)
COMPLETE: dict[str, list[str]] = {
    "-G": ["-s", "1.1.1.1", "-d", "2.2.2.2", "-p", "tcp", "--sport", "1", "--dport", "2"],
    "-I": ["-s", "1.1.1.1", "-d", "2.2.2.2", "-p", "tcp", "--sport", "1", "--dport", "2",
           "--state", "LISTEN", "-t", "10"],
    "-A": ["-s", "1.1.1.1", "-d", "2.2.2.2", "-p", "tcp", "--sport", "1", "--dport", "2",
           "--state", "LISTEN", "-t", "10"],
    "-G expect": ["-s", "1.1.1.1", "-d", "2.2.2.2", "-p", "udp", "--sport", "1", "--dport", "2",
                  "--reply-port-src", "2", "--reply-port-dst", "1"],
    "-D expect": ["-s", "1.1.1.1", "-d", "2.2.2.2", "-p", "udp", "--sport", "1", "--dport", "2",
                  "--reply-port-src", "2", "--reply-port-dst", "1"],
    "-I expect": ["-s", "1.1.1.1", "-d", "2.2.2.2", "-p", "udp", "--sport", "1", "--dport", "2",
                  "-t", "10", "--tuple-src", "3.3.3.3", "--tuple-dst", "4.4.4.4",
                  "--mask-src", "255.255.255.255", "--mask-dst", "255.255.255.255",
                  "--tuple-port-src", "5", "--tuple-port-dst", "6", "--mask-port-src", "0",
                  "--mask-port-dst", "65535"],
}


def no_hang(cmd: str, args: list[str]) -> list[str]:
    """Event monitors never end: give them a trailing option that fails after the
    legality check (``-E``: --mask-* without address; ``-E expect``: an illegal option
    of the last bit), so that everything before it is still compared."""
    if cmd == "-E":
        if "-d" in args or "--mask-dst" in args or "--dst" in args:
            return args + ["--mask-src", "255.0.0.0"]
        return args + ["--mask-dst", "255.0.0.0"]
    if cmd == "-E expect":
        return args + ["--reply-zone", "1"]
    return args


def legality_cases() -> Iterator[Case]:
    """Every command × every option: bare, and on top of a complete command line."""
    for cmd, cargs in COMMANDS.items():
        for name, oargs in OPTION_SAMPLES.items():
            if cmd == "-E" and name == "buffer-size":
                continue  # -b prints a NOTICE before the run-time check
            yield Case(no_hang(cmd, cargs + oargs), tag="legality")
            if cmd in COMPLETE:
                yield Case(no_hang(cmd, cargs + COMPLETE[cmd] + oargs), tag="legality+")
    # two options: the first violation in bit order wins
    names = list(OPTION_SAMPLES)
    for cmd in ("-L", "-G", "-F", "-S", "-E expect", "-L expect"):
        for a, b in zip(names, reversed(names)):
            if cmd == "-E" and "buffer-size" in (a, b):
                continue
            yield Case(no_hang(cmd, COMMANDS[cmd] + OPTION_SAMPLES[a] + OPTION_SAMPLES[b]),
                       tag="order")
    for name in names:  # no command: usage or "Illegal option"
        yield Case(OPTION_SAMPLES[name] + ["--reply-zone", "1"], tag="nocmd")
        yield Case(["-a", "1"] + OPTION_SAMPLES[name], tag="nocmd")
    yield Case([], tag="nocmd")
    yield Case(["foo"], tag="nocmd")
    yield Case(["-a", "x", "-a", "y"], tag="nocmd")


def pair_cases() -> Iterator[Case]:
    """The tuple-pair rule of the main matrix and of the port/key protocols."""
    addrs = [["-s", "1.1.1.1"], ["-d", "2.2.2.2"], ["-r", "2.2.2.2"], ["-q", "1.1.1.1"]]
    for cmd in ("-G", "-I", "-A"):
        for n in range(5):
            for combo in itertools.combinations(addrs, n):
                yield Case([cmd] + sum(combo, []) + ["-p", "200", "-t", "5"], tag="pair")
    ports = {
        "tcp": (["--sport", "1"], ["--dport", "2"], ["--reply-port-src", "2"],
                ["--reply-port-dst", "1"], ["--state", "LISTEN"]),
        "udp": (["--sport", "1"], ["--dport", "2"], ["--reply-port-src", "2"],
                ["--reply-port-dst", "1"]),
        "udplite": (["--sport", "1"], ["--dport", "2"], ["--reply-port-src", "2"],
                    ["--reply-port-dst", "1"]),
        "sctp": (["--sport", "1"], ["--dport", "2"], ["--reply-port-src", "2"],
                 ["--reply-port-dst", "1"], ["--state", "ESTABLISHED", "--orig-vtag", "1",
                                             "--reply-vtag", "2"]),
        "dccp": (["--sport", "1"], ["--dport", "2"], ["--reply-port-src", "2"],
                 ["--reply-port-dst", "1"], ["--state", "OPEN", "--role", "client"]),
        "gre": (["--srckey", "1"], ["--dstkey", "2"], ["--reply-key-src", "2"],
                ["--reply-key-dst", "1"]),
        "icmp": (["--icmp-type", "8"], ["--icmp-code", "0"], ["--icmp-id", "1"]),
        "icmpv6": (["--icmpv6-type", "128"], ["--icmpv6-code", "0"], ["--icmpv6-id", "1"]),
    }
    for proto, opts in ports.items():
        for cmd in ("-G", "-I", "-A", "-G expect", "-D expect"):
            for n in range(len(opts) + 1):
                for combo in itertools.combinations(opts, n):
                    args = cmd.split() + ["-s", "1.1.1.1", "-d", "2.2.2.2", "-p", proto]
                    if cmd in ("-I", "-A"):
                        args += ["-t", "5"]
                    yield Case(args + sum(combo, []), tag="proto-pair")


PROTO_SAMPLES: dict[str, list[list[str]]] = {
    "tcp": [["--sport", "1"], ["--dport", "2"], ["--reply-port-src", "2"],
            ["--reply-port-dst", "1"], ["--mask-port-src", "0"], ["--mask-port-dst", "1"],
            ["--state", "ESTABLISHED"], ["--tuple-port-src", "1"], ["--tuple-port-dst", "2"],
            ["--orig-port-src", "1"], ["--orig-port-dst", "2"]],
    "udp": [["--sport", "1"], ["--dport", "2"], ["--reply-port-src", "2"],
            ["--reply-port-dst", "1"], ["--mask-port-src", "0"], ["--mask-port-dst", "1"],
            ["--tuple-port-src", "1"], ["--tuple-port-dst", "2"]],
    "udplite": [["--sport", "1"], ["--dport", "2"], ["--mask-port-src", "0"],
                ["--tuple-port-dst", "2"], ["--reply-port-dst", "1"]],
    "sctp": [["--sport", "1"], ["--dport", "2"], ["--reply-port-src", "2"],
             ["--reply-port-dst", "1"], ["--mask-port-src", "0"], ["--mask-port-dst", "1"],
             ["--state", "ESTABLISHED"], ["--tuple-port-src", "1"], ["--tuple-port-dst", "2"],
             ["--orig-vtag", "5"], ["--reply-vtag", "6"]],
    "dccp": [["--sport", "1"], ["--dport", "2"], ["--reply-port-src", "2"],
             ["--reply-port-dst", "1"], ["--mask-port-src", "0"], ["--mask-port-dst", "1"],
             ["--state", "OPEN"], ["--tuple-port-src", "1"], ["--tuple-port-dst", "2"],
             ["--role", "server"]],
    "gre": [["--srckey", "1"], ["--dstkey", "2"], ["--reply-key-src", "2"],
            ["--reply-key-dst", "1"], ["--mask-key-src", "0"], ["--mask-key-dst", "1"],
            ["--tuple-key-src", "1"], ["--tuple-key-dst", "2"], ["--orig-key-src", "3"]],
    "icmp": [["--icmp-type", "8"], ["--icmp-code", "0"], ["--icmp-id", "1"]],
    "icmpv6": [["--icmpv6-type", "128"], ["--icmpv6-code", "0"], ["--icmpv6-id", "1"]],
    "200": [["--sport", "1"]],
}


def required_proto_args(proto: str, cmd: str) -> list[str]:
    """The protocol options ``cmd`` requires (from the matrices) plus a complete pair."""
    h = BY_NAME.get(proto, BY_NAME["unknown"])
    command = {"-L": Command.LIST, "-G": Command.GET, "-D": Command.DELETE,
               "-I": Command.CREATE, "-A": Command.ADD, "-U": Command.UPDATE,
               "-E": Command.EVENT, "-G expect": Command.EXP_GET,
               "-D expect": Command.EXP_DELETE, "-I expect": Command.EXP_CREATE}[cmd]
    row = h.rows[command]
    args: list[str] = []
    samples = {s[0][2:]: s for s in PROTO_SAMPLES.get(proto, [])}
    for bit, name in enumerate(h.flag_names):
        if row[bit] in (1, 3) and bit < 2 or row[bit] == 1:
            args += samples.get(name, [])
    return args


def protocol_matrix_cases() -> Iterator[Case]:
    """Every protocol option with every command that accepts -p, bare and complete."""
    base = {
        "-L": ["-L"], "-D": ["-D"], "-U": ["-U"], "-E": ["-E"],
        "-G": ["-G", "-s", "1.1.1.1", "-d", "2.2.2.2"],
        "-I": ["-I", "-s", "1.1.1.1", "-d", "2.2.2.2", "-t", "5"],
        "-A": ["-A", "-s", "1.1.1.1", "-d", "2.2.2.2", "-t", "5"],
        "-G expect": ["-G", "expect", "-s", "1.1.1.1", "-d", "2.2.2.2"],
        "-D expect": ["-D", "expect", "-s", "1.1.1.1", "-d", "2.2.2.2"],
        "-I expect": ["-I", "expect", "-s", "1.1.1.1", "-d", "2.2.2.2", "-t", "5",
                      "--tuple-src", "3.3.3.3", "--tuple-dst", "4.4.4.4",
                      "--mask-src", "255.255.255.255", "--mask-dst", "255.255.255.255"],
    }
    for proto, samples in PROTO_SAMPLES.items():
        for cmd, cargs in base.items():
            for sample in samples:
                yield Case(no_hang(cmd, cargs + ["-p", proto] + sample), tag="proto-matrix")
                full = cargs + ["-p", proto] + required_proto_args(proto, cmd) + sample
                yield Case(no_hang(cmd, full), tag="proto-matrix+")
            yield Case(no_hang(cmd, cargs + ["-p", proto]), tag="proto-matrix")
    for proto in ("tcp", "sctp", "icmp", "gre"):  # options not accepted by the table
        for cmd in ("-F", "-C", "-S", "-V", "-L expect", "-E expect", "-h"):
            yield Case(COMMANDS[cmd] + ["-p", proto] + PROTO_SAMPLES[proto][0], tag="proto-cmd")


def value_cases() -> Iterator[Case]:
    """Keyword lists, states, numbers, -p and -f forms."""
    for v in ["ASSURED", "assured", "a", "s", "S", "d", "D", "src_nat", "SRC_NATX", "dst_nat",
              "SEEN_REPLY,ASSURED", "ASSURED,FOO,BAR", "ASSURED,", ",ASSURED", "!", "!,ASSURED",
              "!UNREPLIED", "UNREPLIED", "unreplied", "UNREPLIEDXX", "UNREPLIED,ASSURED",
              "UNREPLIE", "!ASSURED", "!!ASSURED", "ASSURED!", "!s", "!S,X", "", ",", ",,",
              "a,se,un,f,e,o,h", "UNSET", "unset", "FIXED_TIMEOUT", "EXPECTED", "OFFLOAD",
              "HW_OFFLOAD", "hw", "HW_OFFLOADX", "o", "x", "ASSURED,!SEEN_REPLY", "s,d,foo",
              "SEEN_REPLY,,ASSURED", "!SEEN_REPLY,!", "ASSURED,!", " ASSURED", "ASSURED "]:
        yield Case(["-L", "-u", v], tag="status")
        yield Case(["-L", "-u", "ASSURED", "-u", v, "-t", "1"], tag="status")
    for v in ["NEW", "new", "n", "ALL", "a", "UPDATES", "u", "DESTROY", "des", "d", "D", "s",
              "NEW,foo", "!NEW", "", ",", "NEW,", ",NEW", "d,s,a,n,u,des,foo", "NEWX",
              "UPDATE", "UPDATESX", "all,new,updates,destroy,x"]:
        yield Case(["-E", "-e", v, "-t", "1"], tag="event-mask")
        yield Case(["-L", "-e", v], tag="event-mask")
    for v in ["xml", "XML", "x", "foo", "s", "sa", "save", "sa,x", "xml,save", "save,id",
              "SAVE,ID", "e,t,i,k,l,u", "", ",", "xml,", "xml,save,foo", "save,s",
              "labels", "labels,save", "save,labels", "userspace,save", "save,userspace",
              "ktimestamp,save", "timestamp,save", "extended,save", "d", "xmlx", "i,d",
              "save,save", "id,foo"]:
        yield Case(["-L", "-o", v, "-t", "1"], tag="output")
        yield Case(["-L", "-o", v, "-t", "1"], labels=NO_LABELS, tag="output")
    yield Case(["-L", "-o", "save", "-o", "id", "-t", "5"], tag="output")
    yield Case(["-L", "-o", "save", "-o", "userspace", "-t", "5"], tag="output")
    yield Case(["-L", "-o", "labels", "-o", "labels", "-t", "5"], labels=NO_LABELS, tag="output")
    for v in ["TCP", "Tcp", "igmp", "IGMP", "ipv6-icmp", " 6", "+6", "0x3a", "256", "255",
              "-10", "20foo", "6 ", "4294967302", "18446744073709551622",
              "-18446744073709551610", "010", "0x", "ip", "IP", "hopopt", "ICMP", "",
              "unknown", "0", "-0", "0x0", "1e1", "mptcp", "MPTCP", "CPHB", "rspf", "icmpv6",
              "ICMPv6", "udplite", "UDPLite", "gre47", "0377", "0400", "foo"]:
        yield Case(["-L", "-p", v, "-t", "1"], tag="proto")
        yield Case(["-h", "-p", v], tag="proto-help")
    for v in ["ipv4", "ipv6", "ipv4xyz", "IPV4", "", "ipv", "inet", "ipv6 ", " ipv4"]:
        yield Case(["-L", "-f", v, "-t", "1"], tag="family")
        yield Case(["-L", "-s", "1.1.1.1", "-f", v, "-t", "1"], tag="family")
    for st in ["NONE", "SYN_SENT", "ESTABLISHED", "LISTEN", "SYN_SENT2", "CLOSE", "established",
               "FOO", "", "TIME_WAIT "]:
        yield Case(["-L", "-p", "tcp", "--state", st, "-t", "1"], tag="tcp-state")
    for st in ["NONE", "CLOSED", "ESTABLISHED", "SHUTDOWN_ACK_SENT"]:
        yield Case(["-L", "-p", "sctp", "--state", st, "-t", "1"], tag="sctp-state")
    for st in ["NONE", "REQUEST", "OPEN", "INVALID", "IGNORE", "open", "FOO", "TIMEWAIT"]:
        yield Case(["-L", "-p", "dccp", "--state", st, "-t", "1"], tag="dccp-state")
    for role in ["client", "server", "c", "S", "", "CLIENT", "clientx", "x", "serv"]:
        yield Case(["-L", "-p", "dccp", "--role", role], tag="dccp-role")
    for opt in ["-t", "-m", "-i", "-c", "-w", "--orig-zone", "--reply-zone", "-b"]:
        for v in ["abc", "-1", "0x10", "99999999999999999999", "", "1/2", "1/abc"]:
            yield Case(["-L", opt, v, "-t", "1"], tag="numbers")


ADDRESSES = [
    "1.1.1.1", "1.1.1.1/", "1.1.1.1/ 8", "1.1.1.1/+8", "1.1.1.1/-0", "1.1.1.1/-1",
    "1.1.1.1/4294967328", "1.1.1.1/99999999999999999999", "1.1.1.1/33", "1.1.1.1/32",
    "1.1.1.1/0", "1.1.1.1/24", "::1/129", "::1/128", "::1/64", "::1/0", "1.1.1.1/abc",
    "foo/abc", "foo", "1.2.3.4 junk", "1.2.3.4\tjunk", "1.2.3.4junk", "0x7f.1", "4294967296",
    "4294967295", "1.2.3.256", "1.2.65536", "1.2.65535", "", "0", "1.1.1.1.", " 1.1.1.1",
    "08", "0x", "1.1.1.1/32/5", "1" * 52 + ".1.1.1", "1.1.1.1" + "a" * 60,
    "1.1.1.1" + " " * 45 + "x", "2001:db8::1/64" + "x" * 40,
    "1111:2222:3333:4444:5555:6666:7777:8888/128000000000",
    "1111:2222:3333:4444:5555:6666:7777:8888/12", "1111:2222:3333:4444:5555:6666:7777:8888/1x",
    "1111:2222:3333:4444:5555:6666:255.255.255.255/12", "::ffff:1.2.3.4", "::ffff:1.2.3.4 x",
    "::1%lo", "fe80::1/64", "1::2::3", ":::", "::", "1:2:3:4:5:6:7:8:9", "[::1]", "1.1.1",
    "010.0.0.1", "1.1.1.1 /8", "1.1.1.1/8 ", "2001:DB8::/32", "0xffffffff", "1.0xffffff",
    "1.2.3.4/08", "1.2.3.4/0x8", "1.1.1.1//8", "/8", "::ffff:01.2.3.4",
]


def address_cases() -> Iterator[Case]:
    """Address, CIDR and family forms for every address option."""
    for a in ADDRESSES:
        for opt in ("-s", "-d", "-r", "-q", "--mask-src", "--mask-dst"):
            yield Case(["-L", opt, a, "-t", "1"], tag="address")
        yield Case(["-I", "expect", "--tuple-src", a, "-t", "1", "-z"], tag="address")
        yield Case(["-L", "-f", "ipv6", "-s", a], tag="address")
        yield Case(["-L", "-s", "1.1.1.1", "-d", a, "-z"], tag="address")
    yield Case(["-L", "-s", "1.1.1.1", "-d", "::1"], tag="address")
    yield Case(["-L", "-d", "::1/200", "-s", "1.1.1.1"], tag="address")
    yield Case(["-L", "-f", "ipv6", "-r", "1.1.1.1/99"], tag="address")
    yield Case(["-L", "--mask-src", "::1", "-s", "1.1.1.1"], tag="address")
    yield Case(["-I", "expect", "-s", "1.1.1.1", "--tuple-src", "::1"], tag="address")


NATS = [
    "1.1.1.1", "1.1.1.1[", "x[::1]:80", "[::1]", "[::1", "[]:80", "[]", "[::1]:", "[::1]:abc",
    "[::1]x:80", "[1.1.1.1]:80", "foo:abc", "foo:80", "1.1.1.1:", "1.1.1.1:0", "1.1.1.1:65535",
    "1.1.1.1:65536", "1.1.1.1:+80", "1.1.1.1:080", "1.1.1.1:00000000000000000000000080",
    "1.1.1.1: 80", "1.1.1.1::", "1.1.1.1:80:80", "::1", "[::1]:80:90", "[::1]:8:", "", ":80",
    ":", "[", "]", "[a]:1", "1.1.1.1/8", "[::1]/8:5", "::1/8", "[::1/8]:5", "1.1.1.1/8:5",
    "[::1]:99999999999999999999", "1.1.1.1:-1", "[2001:db8::1]x:80", "a]b[c", "[::1]]:1",
    "1.1.1.1:8 0", "[fe80::1%lo]:1",
]


def nat_cases() -> Iterator[Case]:
    for n in NATS:
        for opt in ("-n", "-g", "-j", "--src-nat", "--dst-nat", "--any-nat"):
            yield Case(["-L", opt, n, "-t", "1"], tag="nat")
        yield Case(["-L", "-s", "1.1.1.1", "-n", n, "-t", "1"], tag="nat")
        yield Case(["-L", "-f", "ipv6", "-g", n, "-t", "1"], tag="nat")
    for args in (["-j", "1.1.1.1", "-n"], ["-n", "-j"], ["-j", "-g", "1.1.1.1"],
                 ["-n=1.1.1.1", "-s", "1.1.1.1"], ["-n1.1.1.1", "-s", "::1"],
                 ["--src-nat=foo"], ["-n", "-x"], ["-g", "!1.1.1.1"], ["-j", "-t", "1"],
                 ["-n", "1.1.1.1", "-g", "::1"], ["-s", "1.1.1.1", "-n", "::1/8"]):
        yield Case(["-L"] + args + ["-t", "1"], tag="nat")


def getopt_cases() -> Iterator[Case]:
    """Abbreviations, '=', clustering, missing arguments, '--', permutation."""
    main = ["dump", "create", "add", "delete", "update", "get", "flush", "event", "counter",
            "stats", "version", "help", "orig-src", "src", "orig-dst", "dst", "reply-src",
            "reply-dst", "protonum", "timeout", "status", "zero", "event-mask", "tuple-src",
            "tuple-dst", "mask-src", "mask-dst", "nat-range", "mark", "secmark", "id",
            "family", "src-nat", "dst-nat", "output", "buffer-size", "any-nat", "zone",
            "label", "label-add", "label-del", "orig-zone", "reply-zone"]
    prefixes = sorted({n[:k] for n in main for k in range(1, len(n) + 1)})
    for p in prefixes:
        if "id".startswith(p) and [n for n in main if n.startswith(p)] == ["id"]:
            yield Case(["-L", "--" + p + "=1"], tag="abbrev")  # separate word: crash
            continue
        yield Case(["-L", "--" + p, "1"], tag="abbrev")
    for proto in ("tcp", "sctp", "dccp", "gre", "icmp", "udp"):
        names = [o[0] for o in BY_NAME[proto].options]
        for p in sorted({n[:k] for n in names + main for k in range(1, len(n) + 1)}):
            if p.startswith(("dump", "cr", "ad", "del", "up", "g", "fl", "ev", "cou",
                             "ver", "h")) and p not in {n for n in names}:
                continue  # commands: covered above
            if [n for n in names + main if n.startswith(p)] == ["id"]:
                continue  # --id with a separate word crashes the reference
            yield Case(["-L", "-p", proto, "--" + p, "1", "-t", "1"], tag="abbrev-" + proto)
    for proto_set in (["tcp", "tcp"], ["tcp", "udp"], ["tcp", "sctp"], ["sctp", "dccp"],
                      ["dccp", "sctp"], ["udp", "udplite"], ["tcp", "icmp"], ["icmp", "tcp"],
                      ["gre", "tcp"], ["tcp", "200"], ["200", "tcp"], ["icmp", "icmpv6"]):
        pargs = sum((["-p", p] for p in proto_set), [])
        for opt in (["--sp", "1"], ["--sport", "1"], ["--state", "SYN_SENT"],
                    ["--state", "ESTABLISHED"], ["--state", "OPEN"], ["--orig-vtag", "1"],
                    ["--role", "x"], ["--icmp-type", "1"], ["--dport", "2"],
                    ["--reply-port-src", "3"], ["--srckey", "1"], ["--icmp-c", "1"]):
            if opt == ["--state", "OPEN"] and proto_set[-1] == "sctp":
                continue  # dccp's --state handed to the sctp parser: reference crash
            yield Case(["-G", "-s", "1.1.1.1", "-d", "2.2.2.2"] + pargs + opt, tag="multi-p")
            yield Case(["-I", "-s", "1.1.1.1", "-d", "2.2.2.2", "-t", "5"] + pargs + opt
                       + ["-z"], tag="multi-p")
    for name in main:
        yield Case(["-L", "--" + name + "=1"], tag="equals")
        yield Case(["-L", "--" + name + "="], tag="equals")
        yield Case(["-L", "--" + name], tag="missing")
        yield Case(["-L", "-t", "1", "--" + name], tag="missing")
    for ch in "LIUDGEFAhVsdrqptueazm[]{}ifongcbCSjwl<>()":
        yield Case(["-L", "-" + ch], tag="missing")
        yield Case(["-z", "-" + ch], tag="missing")
    for args in (["-L", "-Xz"], ["-Xz"], ["-L", "-zs"], ["-L", "-zs1.1.1.1", "-f"], ["-L", "-:"],
                 ["-L", "-W", "foo"], ["-L", "-[", "1.1.1.1"], ["-I", "-[", "1.1.1.1"],
                 ["-L", "-x"], ["-L", "-p", "tcp", "--sport"], ["-L", "-ptcp", "--sport=1"],
                 ["-L", "-s1.1.1.5", "-t", "1"], ["-L", "--=", "x"], ["-L", "--", "-t"],
                 ["-L", "--zzz"], ["-L", "-p", "tcp", "--even"], ["--load-file"],
                 ["--load-file=x"], ["-R"], ["-L", "-R", "x"], ["-L", "--load-file", "x"],
                 ["--stats=x"], ["--version=x"], ["--help=1"], ["--zero=1", "-L"],
                 ["-L", "--sport", "10", "-p", "tcp"], ["foo", "-L", "bar", "-X"],
                 ["-L", "foo", "-Xz"], ["a", "b", "-L", "c", "-t", "1"],
                 ["-L", "extra", "-p", "tcp"], ["-L", "-", "-t", "1"], ["-", "-L", "-t", "1"],
                 ["-L", "-zzz", "-t", "1"], ["-L", "-zt"], ["-L", "-zt1", "-Y"],
                 ["-zL", "-t", "1"], ["-zLexpect", "-t", "1"], ["-Lz", "-t", "1"],
                 ["-L", "-z-t", "1"], ["-L", "-ttt"], ["-L", "--mask"], ["-L", "--s", "x"],
                 ["-L", "--orig-s", "1.1.1.5", "-t", "1"], ["-L", "--proto", "tcp", "-t", "1"],
                 ["-L", "--sp", "10", "-p", "tcp"], ["-L", "-p", "tcp", "--sp=10", "-t", "1"],
                 ["-L", "-p", "tcp", "--sport=", "-t", "1"], ["-L", "---t", "1"],
                 ["-L", "-p", "tcp", "--state=x"], ["-L", "--tuple-", "1"],
                 ["-L", "--label-", "x"], ["-L", "--id", "-t", "1"], ["-L", "--id"],
                 ["-L", "--id=", "-t", "1"], ["-D", "--id=5", "-t"], ["-D", "-i5", "-x"],
                 ["-L", "--i", "5"], ["-L", "-p", "icmp", "--i", "5"]):
        yield Case(args, tag="getopt")
    for args in (["-L", "foo", "-t", "1"], ["foo", "-L", "-t", "1"], ["-L", "-t", "1"],
                 ["-t", "1", "x", "-L"], ["-L", "x", "-X"], ["x", "-X"]):
        yield Case(args, env={"POSIXLY_CORRECT": "1"}, tag="posix")


def table_cases() -> Iterator[Case]:
    """Command letters with table words (separate and attached) and combinations."""
    words = ["", "e", "exp", "expect", "expectx", "c", "conn", "conntrack", "conntrackx", "d",
             "dying", "u", "unconfirmed", "x", "E", "!x", "-z"]
    for letter in "LIUDGEFAhVCS":
        for w in words:
            args = ["-" + letter, w] if w != "-z" else ["-" + letter, "-z"]
            if letter == "E":
                args += ["-z"]
            if letter == "S" and w in ("", "e", "exp", "expect", "c", "conn", "conntrack"):
                args += ["-z"]
            yield Case(args, tag="table")
        yield Case(["-" + letter + "expect", "-z"], tag="table")
        yield Case(["-" + letter + "foo", "-z"], tag="table")
    for a, b in itertools.product("LIUDGEFAhVCS", repeat=2):
        yield Case(["-" + a, "-" + b], tag="commands")
    for args in (["-L", "-Lexpect"], ["-Lexpect", "-L"], ["-L", "-Cexpect"], ["-L", "-L", "foo"],
                 ["-Ldying", "-I"], ["-L", "-U", "expect"], ["-U", "expect", "-L"],
                 ["-L", "-U", "dying"], ["-L", "-A", "foo"], ["--dump=expect", "-t", "1"],
                 ["--du=foo", "-t", "1"], ["--count=expect", "-z"], ["--counter", "expect", "-z"],
                 ["--update", "expect"], ["--add=expect", "-z"], ["-G", "expect", "dying"],
                 ["-L", "expect", "-t", "1"], ["-L", "!", "-t", "1"], ["-S", "expect", "-t", "1"],
                 ["-V", "expect"], ["-V", "dying"], ["-h", "foo"], ["-h", "expect"]):
        yield Case(args, tag="table")


def label_cases() -> Iterator[Case]:
    files: list[bytes | None] = [
        LABELS, NO_LABELS, EMPTY_LABELS, b"5web\n", b"5 we_b\n", b"5 w b \n", b"0x10 web\n1 web\n",
        b"1 web\n1 foo\n", b"1024 web\n", b"1023 web\n", b"5 web\r\n", b"\x0b5 web\n",
        b"1 a\n2 a\n3 b\n", b"#1 web\n", b" 5 web # c\n", b"010 web\n8 eth0-in\n",
        b"1 " + b"x" * 1030 + b"\n2 web\n", b"-1 web\n2 eth0-in\n", b"3 web\n\n4 high",
        b"1 \xc3\xa9\n2 web\n",
    ]
    lists = ["web", "eth0-in", "web,high", "foo", "web,foo", "", ",", "web,", ",web", "WEB",
             "web ", "a", "b", "w b", "web # c", "we_b", "x" * 1021, "x" * 1022]
    for data in files:
        for v in lists:
            yield Case(["-L", "-l", v, "-t", "1"], labels=data, tag="labels")
        yield Case(["-L", "-o", "labels", "-t", "1"], labels=data, tag="labels")
        yield Case(["-U", "--label-del", "-t", "x", "-z"], labels=data, tag="labels")
    for data in (LABELS, NO_LABELS, EMPTY_LABELS):
        for args in (["-U", "--label-add", "web", "--label-del", "high"],
                     ["-U", "--label-del", "--label-add", "web"],
                     ["-U", "--label-del", "high", "--label-add", "foo"],
                     ["-I", "--label-add", "foo"], ["-I", "--label-add", "web,high,eth0-in"],
                     ["-U", "--label-del=web", "-z"], ["-U", "--label-del", "", "-z"],
                     ["-U", "--label-del", "!web", "-z"], ["-L", "-l", "web", "-l", "foo"],
                     ["-L", "-o", "labels", "-l", "foo"], ["-L", "-o", "labels,save", "-t", "1"],
                     ["-L", "-o", "save,labels"], ["-G", "-l", "web", "-o", "labels"],
                     ["-L", "--label-add", "web"], ["-L", "-l"], ["-U", "--label-del"] + ["-z"]):
            yield Case(args, labels=data, tag="labels")


def help_cases() -> Iterator[Case]:
    for proto in list(BY_NAME) + ["200", "igmp", "0", "ip", "2", "IGMP", "255", "ipv6-icmp",
                                  "mptcp", "TCP", "6", "0x11"]:
        if proto == "unknown":
            continue
        yield Case(["-h", "-p", proto], tag="help")
        yield Case(["-p", proto, "-h"], tag="help")
        yield Case(["--help", "-p", proto, "--sport", "1"], tag="help")
    for args in (["-h"], ["--help"], ["-h", "-p", "tcp", "-p", "udp"], ["-h", "-p", "igmp", "-p", "200"],
                 ["-V"], ["--version"], ["-V", "conntrack"], ["-h", "conntrack"], ["-a", "x"],
                 ["--reply-zone", "3"], ["-a", "1", "--reply-zone", "3"], ["-h", "-p", "tcp", "--state", "FOO"]):
        yield Case(args, tag="help")


def batch_cases() -> Iterator[Case]:
    """-R / --load-file files."""
    files = [
        b"-L\n", b"-D -s 10.0.0.1\n-X\n", b"-I expect\n", b"\r\n", b"-p tcp -D\n-D --sport 5\n",
        b"-D -o xml\n-D -o save\n", b"-D -o save\n-D -o xml\n", b"-D -p tcp -p udp\n-D --sp 1\n",
        b'-D "-s" "1.1.1.1"\n-L\n', b'-D -s "1.1.1.1\n-L\n', b'-D -s 1.1.1.1"\n-L\n',
        b'-D -s "1.1.\\"1.1"\n', b'-D -s "1.1\\.1.1"\n-L\n', b"-D -s 1.1\\.1.1\n", b'-D -s ""\n',
        b"# c\n   # c2\n\t\n\n-L\n", b"-D\n-L expect\n-S\n", b"-D -u s\n-L\n", b"x\n",
        b"-D -a 1\n-U -a 2\n-L\n", b"-D -l foo\n", b"-D -f ipv6\n-D -s 1.1.1.1\n-L\n",
        b"-I -s 1.1.1.1 -d 2.2.2.2 -p tcp --sport 1 --dport 2 -t 5\n",
        b"-D -p tcp\n-I -s 1.1.1.1 -d 2.2.2.2 -p 200 -t 5 --state LISTEN\n-L\n",
        b"-D -p tcp\n-D --sp 5\n-L\n", b"-D -p tcp\n-D -p tcp --sp 5\n-L\n", b"-D -h\n",
        b"-V\n-L\n", b"-G\n", b"-E expect\n", b"-C expect\n", b"-C\n", b"-S expect\n",
        b"-F expect\n", b"-D expect\n", b"-G expect\n", b"-L dying\n", b"-E\n", b"-h\n",
        b"-F\n-h\n", b"-F -o save\n-F\n", b"-D --mask-src 1.1.1.1\n-L\n", b"  ", b"-F\n  ",
        b"-F\n-G -s 1.1.1.1 -d 2.2.2.2 -p tcp --sport 1 --dport 2\n",
        b"-F\n-G expect -s 1.1.1.1 -d 2.2.2.2 -p udp --sport 1 --dport 2 --reply-port-src 1 "
        b"--reply-port-dst 2\n",
        b"-F\n-D expect -s 1.1.1.1 -d 2.2.2.2 -p udp --sport 1 --dport 2 --reply-port-src 1 "
        b"--reply-port-dst 2\n",
        b"-F\n-I expect -s 1.1.1.1 -d 2.2.2.2 -p udp --sport 1 --dport 2 -t 5 --tuple-src 1.1.1.1 "
        b"--tuple-dst 1.1.1.1 --mask-src 1.1.1.1 --mask-dst 1.1.1.1 --tuple-port-src 1 "
        b"--tuple-port-dst 2 --mask-port-src 1 --mask-port-dst 1\n",
        b"-F\n-L expect\n", b"-F\n-C expect\n", b"-F\n-S\n", b"-F\n-E expect\n-L\n",
        b"-D -s" + b"x" * 1021 + b"\n", b"-D -s" + b"x" * 1022 + b"\n",
        b"-D -s " + b"x" * 1023 + b"\n", b'-D -s "' + b"x" * 1023 + b'"\n',
        b'-D -s "' + b"x" * 1022 + b'"\n', b"-L\n-D -s " + b"x" * 1024 + b"\n",
        b"-D -s " + b"x" * 1024 + b"\n-X\n", b"-X\n-D -s " + b"x" * 1024 + b"\n",
        b"-D" + b" -z" * 252 + b"\n", b"-D" + b" -z" * 253 + b"\n",
        b"-L\n-D" + b" -z" * 253 + b"\n", b"-D" + b" -t 1" * 126 + b"\n",
        # the longest lines both accept (10239 bytes before the newline); longer ones the
        # reference cuts into pieces, ours refuses (test_differences.py)
        b" " * 10237 + b"-X\n", b"-D -s 1.1.1.1" + b" " * 10225 + b"x\n",
        b"-D -s 1.1.1.1" + b"a" * 10226 + b"\n", b"-F\n#" + b" " * 10238 + b"\n-X\n",
        b"-L\n-X\n", b"-D -o xml\n-D -o id\n-L\n", b"-D --label-add foo\n", b"-D --id 5\n-L\n",
        b"-D -s 1.1.1.1", b"-D\x00-X\n-L\n", b"\x00\n-F\n", b"-D -t 1\n-U -t\n",
        b"-D -u ASSURED\n-U -u foo\n", b'"-L"\n', b'"-L" "\n', b'-D "-s 1.1.1.1"\n',
        b'-D -s"1.1.1.1"x\n', b'""\n', b'-F ""\n', b'-F "\\\n', b"-D -o labels\n-L\n",
        b"-I -s 1.1.1.1 -d 2.2.2.2 -p tcp --sport 1 --dport 2 --state LISTEN -t 5\n-G\n",
        b"-F\n-L\n-G\n", b"-U --label-del --label-add web\n", b"-D -p sctp --orig-vtag 1\n",
        b"\t-F\n#x\n  #y\n-G\n", b"-F\r\n", b"-F\n\n\n-V\n",
    ]
    for data in files:
        yield Case(["-R", "@batch"], batch=data, tag="batch")
    yield Case(["--load-file", "@batch"], batch=b"-L\n", tag="batch")
    yield Case(["-R", "@batch", "-X"], batch=b"-F\n-L\n", tag="batch")
    yield Case(["-R", "/nonexistent/file"], tag="batch")
    yield Case(["--load-file", "/nonexistent/file", "x"], tag="batch")
    yield Case(["-R", "-"], stdin=b"-D -s 10.0.0.1\n-X\n", tag="batch")
    yield Case(["-R", "-"], stdin=b"-L\n", tag="batch")
    yield Case(["-R", "-"], stdin=b"-D -l foo\n", labels=NO_LABELS, tag="batch")
    yield Case(["-R", "@batch"], batch=b"-D -l foo\n", labels=NO_LABELS, tag="batch")
    yield Case(["-R", "@batch"], batch=b"-D -o labels\n-D -o labels\n-D -l x\n", labels=NO_LABELS,
               tag="batch")
    yield Case(["-R", "@batch"], batch=b"-D -o labels\n-D -l web\n-L\n", labels=LABELS, tag="batch")


SCTP_STATES = ("NONE", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED",
               "SHUTDOWN_SENT", "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT")


def reference_crashes(args: list[str], batch: bytes | None) -> bool:
    """The two known SIGSEGVs of the reference: ``--id`` without attached value and an
    unknown SCTP state reaching the SCTP parser (see test_reference_crashes_we_do_not)."""
    if batch is not None:
        return any(reference_crashes(line.decode().split(), None)
                   for line in batch.split(b"\n") if line.isascii())
    if any(a in ("--i", "--id") for a in args):
        return True
    protos = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-p"]
    if "--state" in args and protos and protos[-1] == "sctp":
        first = next((p for p in protos if p in ("tcp", "sctp", "dccp")), None)
        value = args[args.index("--state") + 1] if args.index("--state") + 1 < len(args) else ""
        return first in ("sctp", "dccp") and value not in SCTP_STATES
    return False


def all_cases() -> list[Case]:
    seen: set[tuple] = set()
    out = []
    for gen in (legality_cases, pair_cases, protocol_matrix_cases, value_cases, address_cases,
                nat_cases, getopt_cases, table_cases, label_cases, help_cases, batch_cases):
        for case in gen():
            if reference_crashes(case.args, case.batch):
                continue
            if case.key not in seen:
                seen.add(case.key)
                out.append(case)
    return out


CASES = all_cases()

# ---------------------------------------------------------------------------------------
# running the reference: one helper process inside a private network namespace and a
# private mount namespace (overlay on /etc, tmpfs on /etc/xtables)

_HELPER = r'''
import base64, json, os, subprocess, sys
lab = "/etc/xtables/connlabel.conf"
for line in sys.stdin:
    req = json.loads(line)
    if req["labels"] is None:
        try:
            os.unlink(lab)
        except FileNotFoundError:
            pass
    else:
        with open(lab, "wb") as f:
            f.write(base64.b64decode(req["labels"]))
    env = {k: v for k, v in os.environ.items() if k != "POSIXLY_CORRECT"}
    env.update(req["env"])
    args = [os.fsdecode(base64.b64decode(a)) for a in req["argv"]]
    trace = req.get("trace")
    if trace:
        args = ["strace", "-qq", "-o", trace, "-e", "trace=sendto", "-e", "verbose=none", "-xx",
                "-s", "65535", req["exe"]] + args[1:]
        req["exe"] = "/usr/bin/strace"
    try:
        p = subprocess.run(args, executable=req["exe"], input=base64.b64decode(req["stdin"]),
                           capture_output=True, env=env, timeout=req["timeout"])
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = "timeout", e.stdout or b"", e.stderr or b""
    sys.stdout.write(json.dumps({"rc": rc, "out": base64.b64encode(out).decode(),
                                 "err": base64.b64encode(err).decode()}) + "\n")
    sys.stdout.flush()
'''


class Result:
    __slots__ = ("rc", "out", "err")

    def __init__(self, rc: int | str | None, out: bytes, err: bytes) -> None:
        self.rc, self.out, self.err = rc, out, err

    def __repr__(self) -> str:
        return f"Result(rc={self.rc!r}, out={self.out[:300]!r}, err={self.err!r})"


class Reference:
    """The reference binary behind a helper process in a private namespace."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ns = f"clidiff-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        ov = workdir / "overlay"
        (ov / "up" / "xtables").mkdir(parents=True)
        (ov / "work").mkdir()
        setup = (f"mount -t overlay clidiff -o lowerdir=/etc,upperdir={ov}/up,workdir={ov}/work"
                 " /etc && mount -t tmpfs clidiff /etc/xtables && exec python3 -c \"$0\"")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, "sh", "-c", setup, _HELPER],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, argv: list[str], labels: bytes | None, stdin: bytes | None,
            env: dict[str, str], timeout: float = 3, trace: str | None = None) -> Result:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()
        req = {"argv": [b64(os.fsencode(a)) for a in ["conntrack"] + argv], "exe": REFERENCE,
               "labels": None if labels is None else b64(labels), "stdin": b64(stdin or b""),
               "env": env, "timeout": timeout, "trace": trace}
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        return Result(reply["rc"], base64.b64decode(reply["out"]), base64.b64decode(reply["err"]))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)
        subprocess.run(["ip", "netns", "del", self.ns], check=False)


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="cli-errors-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def reference(workdir: Path) -> Iterator[Reference]:
    ref = Reference(workdir)
    try:
        yield ref
    finally:
        ref.close()


# ---------------------------------------------------------------------------------------
# running our parser the way the command would


def run_ours(argv: list[str], label_file: str, stdin: bytes | None,
             env: dict[str, str]) -> Result:
    """Our parser in-process: rc None means "would go on to run the command"."""
    err = io.StringIO()
    out = ""
    rc: int | None
    try:
        res = parse_command_line(["conntrack"] + argv, stderr=err, stdin=io.BytesIO(stdin or b""),
                                 label_file=label_file, environ=env)
        if isinstance(res, Batch):
            rc = None
        else:
            runtime_checks(res)
            if res.command in (Command.HELP, None):
                out, rc = help_for(res), 0
            elif res.command == Command.VERSION:
                out, rc = version_text(), 0
            else:
                rc = None
    except CliError as e:
        err.write(format_error(e))
        rc = e.status
    return Result(rc, os.fsencode(out), os.fsencode(err.getvalue()))


def parse_time(ref: Result) -> bool:
    """Whether the reference stopped while parsing (or printed help/version)."""
    if ref.rc == 2:
        return True
    text = ref.err.decode("latin-1")
    return ref.rc == 1 and any(m in text for m in PARSE_TIME_EXIT1)


def materialize(case: Case, workdir: Path) -> tuple[list[str], str]:
    """Write the case's -R file and label file; return argv and our label file path."""
    argv = list(case.args)
    if case.batch is not None:
        path = workdir / "batch.txt"
        path.write_bytes(case.batch)
        argv = [str(path) if a == "@batch" else a for a in argv]
    label_file = workdir / "connlabel.conf"
    if case.labels is None:
        label_file.unlink(missing_ok=True)
    else:
        label_file.write_bytes(case.labels)
    return argv, str(label_file)


def check_case(case: Case, reference: Reference, workdir: Path) -> None:
    argv, label_file = materialize(case, workdir)
    ref = reference.run(argv, case.labels, case.stdin, case.env)
    ours = run_ours(argv, label_file, case.stdin, case.env)
    if ref.rc == -11:
        pytest.fail(f"reference crashed (SIGSEGV) — not a comparable case: {ours!r}")
    if parse_time(ref) or ours.rc is not None and ours.rc != 0:
        assert (ours.rc, ours.err) == (ref.rc, ref.err), f"argv={argv}"
        return
    if ours.rc == 0:  # help, version, usage
        assert (ours.rc, ours.err, ours.out) == (ref.rc, ref.err, ref.out), f"argv={argv}"
        return
    # the reference ran the command: our warnings must be the start of its stderr
    assert ours.rc is None, f"argv={argv} ref={ref!r}"
    assert ref.err.startswith(ours.err), f"argv={argv} ref={ref!r} ours={ours!r}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matches_reference(case: Case, reference: Reference, workdir: Path) -> None:
    check_case(case, reference, workdir)


def test_enough_cases() -> None:
    assert len(CASES) > 1500


# ---------------------------------------------------------------------------------------
# where the reference crashes we do what the user meant


CRASHES = [
    (["-D", "--id", "5", "-t", "1", "-z"], "Illegal option `--zero' with this command"),
    (["-L", "--id", "5"], "Illegal option `--id' with this command"),
    (["-L", "--i", "5"], "Illegal option `--id' with this command"),
    (["-L", "--id"], "option `--id' requires an argument"),
    (["-D", "-t", "1", "--id"], "option `--id' requires an argument"),
    (["-L", "-p", "sctp", "--state", "1"], "unknown SCTP state `1'"),
    (["-L", "-p", "dccp", "-p", "sctp", "--state", "SYN_SENT"], "unknown SCTP state `SYN_SENT'"),
    (["-L", "-p", "sctp", "--state", "FOO"], "unknown SCTP state `FOO'"),
    (["-L", "-p", "dccp", "-p", "sctp", "--state", "OPEN"], "unknown SCTP state `OPEN'"),
    (["-L", "-p", "sctp", "--state", "HEARTBEAT_SENT"], "unknown SCTP state `HEARTBEAT_SENT'"),
]


@pytest.mark.parametrize("args,message", CRASHES, ids=[" ".join(a) for a, _ in CRASHES])
def test_reference_crashes_we_do_not(args: list[str], message: str, reference: Reference,
                                     workdir: Path) -> None:
    ref = reference.run(args, LABELS, None, {})
    assert ref.rc == -11, ref
    ours = run_ours(args, str(workdir / "none.conf"), None, {})
    assert ours.rc == 2
    assert ours.err.decode().splitlines()[0] == f"conntrack v1.4.7 (conntrack-tools): {message}"


# ---------------------------------------------------------------------------------------
# the template: what the reference sends to the kernel for a command line must agree
# with the Invocation (fields the options set; tuples as given; kernel dump filters)

TEMPLATE_CASES = [
    "-I -s 1.1.1.1 -d 2.2.2.2 -p tcp --sport 10 --dport 20 --state ESTABLISHED "
    "-u SEEN_REPLY,ASSURED -t 50 -m 7 -w 3 --label-add web",
    "-I -s 1.1.1.9 -d 2.2.2.2 -p tcp --sport 10 --dport 20 --state TIME_WAIT -t 50 -m 5 -u ASSURED",
    "-I -r 2.2.2.2 -q 1.1.1.3 -p icmp --icmp-type 8 --icmp-code 0 --icmp-id 5 -t 50",
    "-I -s 1.1.1.4 -d 2.2.2.2 -p icmp --icmp-type 13 --icmp-code 0 -t 50 -g 1.1.1.1:5",
    "-I -p icmp --icmp-type 8 --icmp-code 0 -s 1.1.1.5 -d 2.2.2.2 -t 50",
    "-I -s 2001:db8::1 -d 2001:db8::2 -p icmpv6 --icmpv6-type 128 --icmpv6-code 0 "
    "--icmpv6-id 9 -t 50",
    "-I -s 1.1.1.2 -d 2.2.2.2 -g 3.3.3.3:80 -p udp --sport 10 --dport 20 -t 50 --orig-zone 4",
    "-I -s 1.1.1.2 -d 2.2.2.2 -n 9.9.9.9 -p sctp --sport 10 --dport 20 -t 50 "
    "--state ESTABLISHED --orig-vtag 5 --reply-vtag 6",
    "-I -s 1.1.1.4 -d 2.2.2.2 -p dccp --sport 10 --dport 20 -t 50 --state OPEN --role server",
    "-I -s 1.1.1.6 -d 2.2.2.2 -p gre --srckey 0x10 --dstkey 20 -t 50 --reply-zone 7",
    "-I -s 1.1.1.7 -d 2.2.2.2 -r 3.3.3.3 -q 1.1.1.7 -p udplite --sport 1 --dport 2 "
    "--reply-port-src 3 --reply-port-dst 1 -t 9 --label-add high,eth0-in",
    "-A -s ::1 -d ::2 -p 200 -t 9 -u EXPECTED,FIXED_TIMEOUT",
    "-I -s 1.1.1.8 -d 2.2.2.2 -p udp --sport 70000 --dport -1 -t 4294967301 -m 0x100000007",
    "-G -s 1.1.1.2 -d 2.2.2.2 -p udp --sport 10 --dport 20 -q 1.1.1.1 --reply-port-dst 5",
    "-G -s 1.1.1.2 -d 2.2.2.2 -p tcp --sport 10 --dport 20 --state SYN_SENT",
    "-G -s 1.1.1.2 -d 2.2.2.2 -p icmp --icmp-type 0 --icmp-code 1 --icmp-id 7",
    "-L -m 5 -u SEEN_REPLY", "-L -u ASSURED -u !SEEN_REPLY -m 0x10/0xf0",
    "-L -u !SEEN_REPLY -u ASSURED", "-L -u UNREPLIED", "-L -u s", "-L -m abc",
    "-L -u ASSURED -u EXPECTED -f ipv6", "-D -m 1/3 -u SEEN_REPLY -f ipv6",
]


def _requests(trace: str) -> list[bytes]:
    import re
    out = []
    for m in re.finditer(r'sendto\(\d+, "((?:\\x[0-9a-f]{2})*)"', trace):
        out.append(bytes.fromhex(m.group(1).replace("\\x", "")))
    return out


def _same_tuple(sent, ours, family: int) -> None:
    """Every field set in our tuple was sent with that value."""
    if ours is None:
        return
    assert sent is not None
    for name in ("src", "dst", "proto", "sport", "dport", "icmp_type", "icmp_code", "icmp_id",
                 "zone"):
        value = getattr(ours, name)
        if value is not None:
            assert getattr(sent, name) == value, name


@pytest.mark.parametrize("line", TEMPLATE_CASES)
def test_template_matches_reference_request(line: str, reference: Reference,
                                             workdir: Path) -> None:
    from ctnetlink.decode import decode_flow

    args = line.split()
    trace_path = workdir / "trace.txt"
    ref = reference.run(args, LABELS, None, {}, trace=str(trace_path))
    label_file = workdir / "template-labels.conf"
    label_file.write_bytes(LABELS)
    inv = parse_command_line(["conntrack"] + args, stderr=io.StringIO(),
                             label_file=str(label_file), environ={})
    assert not isinstance(inv, Batch)
    sent = [decode_flow(m) for m in _requests(trace_path.read_text())]
    assert sent, ref
    req = sent[0]
    t = inv.template
    if inv.command == Command.LIST:
        assert (req.mark, req.mark_mask) == (inv.mark_kernel or (None, None))
        assert (req.status, req.status_mask) == (inv.status_kernel or (None, None))
        assert req.family == inv.family
        return
    if inv.command == Command.DELETE:
        assert (req.mark, req.mark_mask) == (inv.mark_kernel or (None, None))
        assert req.status is None
        return
    assert req.family == inv.family
    _same_tuple(req.orig, t.orig, inv.family)
    _same_tuple(req.reply, t.reply, inv.family)
    assert req.status == (None if t.status is None else t.status | 0x8)
    assert (req.timeout, req.mark, req.zone) == (t.timeout, t.mark, t.zone)
    assert (req.tcp, req.sctp, req.dccp) == (t.tcp, t.sctp, t.dccp)
    assert req.labels == t.labels
    for ours, theirs in ((t.nat_src, req.nat_src), (t.nat_dst, req.nat_dst)):
        assert (ours is None) == (theirs is None)
        if ours is not None:
            assert theirs.min_ip == ours.min_ip
            if t.orig.proto in (6, 17):
                assert (theirs.min_port, theirs.max_port) == (ours.min_port, ours.max_port)
    if inv.icmp_reply_type is not None and inv.command in (Command.CREATE, Command.ADD):
        assert req.reply.icmp_type == inv.icmp_reply_type
