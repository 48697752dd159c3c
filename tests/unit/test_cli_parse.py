"""Unit tests of the ``conntrack`` argument parser (no kernel, no reference binary).

Table-driven: each table row is a command line and what the parser must make of it —
the error text and exit status, the warnings, or fields of the resulting Invocation.
The expectations come from the behaviour of the reference tool (spec/conntrack-cli.md
and observations of conntrack 1.4.7).
"""
from __future__ import annotations

import io
import ipaddress
import os
from pathlib import Path

import pytest

try:
    from conntrack_tools.conntrack import batch, libc
    from conntrack_tools.conntrack.errors import CliError, format_error
    from conntrack_tools.conntrack.getopt import Getopt, LongOption
    from conntrack_tools.conntrack.invocation import Batch, Command, Invocation, OutputFlag, Table
    from conntrack_tools.conntrack.labels import LabelMap
    from conntrack_tools.conntrack.netdb import getprotobyname, getprotobynumber, parse_protocols
    from conntrack_tools.conntrack.parse import (
        Parser, parse_address, parse_command_line, runtime_checks, split_nat,
    )
    from conntrack_tools.conntrack.usage import help_for, help_text, version_text
except ModuleNotFoundError:  # source checkout without `pip install -e .`
    from tools.conntrack import batch, libc  # type: ignore[no-redef]
    from tools.conntrack.errors import CliError, format_error  # type: ignore[no-redef]
    from tools.conntrack.getopt import Getopt, LongOption  # type: ignore[no-redef]
    from tools.conntrack.invocation import (  # type: ignore[no-redef]
        Batch, Command, Invocation, OutputFlag, Table,
    )
    from tools.conntrack.labels import LabelMap  # type: ignore[no-redef]
    from tools.conntrack.netdb import (  # type: ignore[no-redef]
        getprotobyname, getprotobynumber, parse_protocols,
    )
    from tools.conntrack.parse import (  # type: ignore[no-redef]
        Parser, parse_address, parse_command_line, runtime_checks, split_nat,
    )
    from tools.conntrack.usage import help_for, help_text, version_text  # type: ignore[no-redef]

P = "conntrack v1.4.7 (conntrack-tools): "
TRY = "Try `conntrack -h' or 'conntrack --help' for more information.\n"
LABELS = b"0 eth0-in\n1 eth1-in\n2 web\n5 high\n"


@pytest.fixture
def label_file(tmp_path: Path) -> str:
    path = tmp_path / "connlabel.conf"
    path.write_bytes(LABELS)
    return str(path)


def parse(line: str | list[str], label_file: str | None = None, env: dict | None = None,
          stdin: bytes | None = None) -> tuple[Invocation | Batch | CliError, str]:
    """Parse a command line; returns (result or error, warnings written)."""
    argv = ["conntrack"] + (line.split() if isinstance(line, str) else line)
    err = io.StringIO()
    try:
        res = parse_command_line(argv, stderr=err, label_file=label_file or "/nonexistent/labels",
                                 environ=env or {}, stdin=io.BytesIO(stdin or b""))
        if isinstance(res, Invocation):
            runtime_checks(res)
        return res, err.getvalue()
    except CliError as e:
        return e, err.getvalue()


def ok(line: str | list[str], **kw) -> Invocation:
    res, _ = parse(line, **kw)
    assert isinstance(res, Invocation), res
    return res


def error_text(line: str | list[str], **kw) -> str:
    res, warnings = parse(line, **kw)
    assert isinstance(res, CliError), f"{line!r} parsed: {res!r}"
    return warnings + format_error(res)


# ---------------------------------------------------------------------------------------
# errors: exact stderr text and status

ERRORS = [
    # getopt
    ("-L -x", "unknown option `-x'", 2),
    ("-L -Xz", "unknown option `-L'", 2),       # argv[optind-1] inside a cluster
    ("-Xz", "unknown option `conntrack'", 2),
    ("-L -zs", "option `-zs' requires an argument", 2),
    ("-L --src", "option `--src' requires an argument", 2),
    ("--stats=x", "unknown option `--stats=x'", 2),
    ("--stat", "unknown option `--stat'", 2),     # ambiguous: stats / status
    ("-L --mask 1.1.1.1", "unknown option `--mask'", 2),
    ("-L --sport 10 -p tcp", "unknown option `--sport'", 2),
    ("-L -p tcp -p udp --sp 10", "unknown option `--sp'", 2),
    ("-L -p tcp -p tcp --sp 10", "unknown option `--sp'", 2),
    ("-R", "unknown option `-R'", 2),
    ("-L -R x", "unknown option `-R'", 2),
    ("-L --=", "unknown option `--='", 2),
    ("--orig-s 1.1.1.5", "Illegal option `--src' with this command", 2),
    # commands and tables
    ("-L -I", "Invalid commands combination", 2),
    ("-L -Cexpect", "Invalid commands combination", 2),
    ("-L -L foo", "unknown type `foo'", 2),
    ("-L expectx", "unknown type `expectx'", 2),
    ("-G dying", "Can't do that command with tables `dying' and `unconfirmed'", 2),
    ("-U expect", "Can't do --update on expectations", 2),
    ("-A expect", "Can't do --add on expectations", 2),
    ("-V u", "Can't do that command with tables `dying' and `unconfirmed'", 2),
    # addresses
    ("-L -s foo", "Invalid IP address `foo'", 2),
    ("-L -s ' 1.1.1.1'", None, 2),
    ("-L -s 1.1.1.1 -d ::1", "mismatched address family", 2),
    ("-L -f ipv6 -s 1.1.1.1/99", "mismatched address family", 2),
    ("-L -r 1.1.1.1/abc", "CIDR notation unavailable for `--reply-src'", 2),
    ("-L --mask-src 1.1.1.1/8", "CIDR notation unavailable for `--mask-src'", 2),
    ("-L -s 1.1.1.1/33", "Invalid netmask", 2),
    ("-L -s 1.1.1.1/99999999999999999999", "Invalid netmask", 2),
    ("-L -s ::1/129", "Invalid netmask", 2),
    # NAT
    ("-L -n [::1", "No closing ']' around IPv6 address", 2),
    ("-L -n []:80", "No IPv6 address specified", 2),
    ("-L -n 1.1.1.1:", "No port specified after `:'", 2),
    ("-L -n 1.1.1.1:65536", "Invalid port `65536'", 2),
    ("-L -n 1.1.1.1:+80", "Invalid port `+80'", 2),
    ("-L -n foo:abc", "Invalid port `abc'", 2),
    ("-L -n foo:80", "Invalid IP address `foo'", 2),
    ("-L -n [::1]", "Invalid IP address `[::1]'", 2),
    ("-L -n 1.1.1.1::", "Invalid IP address `1.1.1.1::'", 2),
    ("-L -n 1.1.1.1/8", "CIDR notation unavailable for `--src-nat'", 2),
    ("-L -j 1.1.1.1/8", "CIDR notation unavailable for `--any-nat'", 2),
    ("-L -n -j", "cannot specify `--src-nat' or `--dst-nat' with `--any-nat'", 2),
    # -p, -f
    ("-L -p foo", "`foo' unsupported protocol", 2),
    ("-L -p 256", "`256' unsupported protocol", 2),
    ("-L -p -10", "`-10' unsupported protocol", 2),
    ("-L -p 0x", "`0x' unsupported protocol", 2),
    ("-L -p unknown", "`unknown' unsupported protocol", 2),
    ("-L -f IPV4", "`IPV4' unsupported protocol", 2),
    # keyword lists
    ("-L -u ASSURED,FOO,BAR", "Bad parameter `FOO,BAR'", 2),
    ("-L -u ASSURED,", "Bad parameter `'", 2),
    ("-L -u ,ASSURED", "Bad parameter `,ASSURED'", 2),
    ("-L -u !", "Bad parameter `'", 2),
    ("-L -u !,ASSURED", "Bad parameter `,ASSURED'", 2),
    ("-L -u !UNREPLIED", "Bad parameter `UNREPLIED'", 2),
    ("-L -u unreplied", "Bad parameter `unreplied'", 2),
    ("-L -u !!ASSURED", "Bad parameter `!ASSURED'", 2),
    ("-E -e !NEW", "Bad parameter `!NEW'", 2),
    ("-E -e ,", "Bad parameter `,'", 2),
    ("-L -o foo", "Bad parameter `foo'", 2),
    ("-L -o xml,save,foo", "Bad parameter `foo'", 2),
    ("-L -o sa,x", "cannot combine save output with any other output type, use -o save only", 1),
    ("-L -o save,id -x", "cannot combine save output with any other output type, use -o save only",
     1),
    # protocol values
    ("-L -p tcp --state FOO", "unknown TCP state `FOO'", 2),
    ("-L -p tcp --state established", "unknown TCP state `established'", 2),
    ("-L -p dccp --state open", "Unknown DCCP state `open'", 2),
    ("-L -p dccp --role x", "Unknown DCCP role `x'", 2),
    ("-L -p dccp --role clientx", "Unknown DCCP role `clientx'", 2),
    # crash fixes (the reference dies with SIGSEGV)
    ("-L -p sctp --state FOO", "unknown SCTP state `FOO'", 2),
    ("-L -p dccp -p sctp --state OPEN", "unknown SCTP state `OPEN'", 2),
    ("-L --id", "option `--id' requires an argument", 2),
    ("-L --id 5", "Illegal option `--id' with this command", 2),
    # legality, in bit order, canonical names
    ("-L -t 5", "Illegal option `--timeout' with this command", 2),
    ("-L -e NEW -t 5", "Illegal option `--timeout' with this command", 2),
    ("-I -s 1.1.1.1 -d 2.2.2.2 -t 5", "You need to supply the `--protonum' option for this command",
     2),
    ("-G -s 10.0.0.0/8 -d 2.2.2.2 -p tcp", "Illegal option `--mask-src' with this command", 2),
    ("-s 1.1.1.1", "Illegal option `--src' with this command", 2),
    ("-z", "Illegal option `--zero' with this command", 2),
    ("-I expect", "You need to supply the `--src' option for this command", 2),
    ("-D -z", "Illegal option `--zero' with this command", 2),
    ("-h -s 1.1.1.1", "Illegal option `--src' with this command", 2),
    # tuple pairs
    ("-I -s 1.1.1.1 -p tcp -t 5", "you have to specify `--src' and `--dst'", 2),
    ("-I -s 1.1.1.1 -r 2.2.2.2 -p tcp -t 5", "you have to specify `--src' and `--dst'", 2),
    ("-I -q 1.1.1.1 -p tcp -t 5", "you have to specify `--reply-src' and `--reply-dst'", 2),
    ("-I -s 1.1.1.1 -d 2.2.2.2 -p tcp -t 5 --state LISTEN",
     "you have to specify `--sport' and `--dport'", 2),
    ("-I -s 1.1.1.1 -d 2.2.2.2 -p tcp --sport 1 --dport 2 --state LISTEN",
     "You need to supply the `--timeout' option for this command", 2),
    ("-I -s 1.1.1.1 -d 2.2.2.2 -p tcp -t 5 --sport 1 --dport 2",
     "You need to supply the `--state' option for this command", 2),
    ("-G -s 1.1.1.1 -d 2.2.2.2 -p tcp --reply-port-src 1",
     "you have to specify `--reply-src-port' and `--reply-dst-port'", 2),
    ("-G -s 1.1.1.1 -d 2.2.2.2 -p dccp --reply-port-src 1",
     "you have to specify `--reply-port-src' and `--report-port-dst'", 2),
    ("-G -s 1.1.1.1 -d 2.2.2.2 -p gre --reply-key-src 1",
     "you have to specify `--reply-src-key' and `--reply-dst-key'", 2),
    ("-G -s 1.1.1.1 -d 2.2.2.2 -p gre --srckey 1 --reply-key-src 1",
     "you have to specify `--srckey' and `--dstkey'", 2),
    ("-G -s 1.1.1.1 -d 2.2.2.2 -p icmp --icmp-type 8",
     "You need to supply the `--icmp-code' option for this command", 2),
    # another handler's option code goes to the last handler
    ("-G -s 1.1.1.1 -d 2.2.2.2 -p tcp -p icmp --sport 5",
     "You need to supply the `--icmp-code' option for this command", 2),
    ("-G -s 1.1.1.1 -d 2.2.2.2 -p icmp -p tcp --icmp-code 5",
     "you have to specify `--sport' and `--dport'", 2),
    ("-L -p tcp -p sctp --orig-vtag 5", "Illegal option `--orig-vtag' with this command", 2),
    # run-time checks
    ("-L -z -p tcp", "Can't use -z with filtering parameters", 2),
    ("-L -z --reply-zone 1", "Can't use -z with filtering parameters", 2),
    ("-L --mask-src 1.1.1.1 --mask-dst 1.1.1.1", "Can't use --mask-src without --src", 2),
    ("-E --mask-dst 1.1.1.1 -s 1.1.1.1", "Can't use --mask-dst without --dst", 2),
    # labels without a map
    ("-L -l foo", "nfct_labelmap_new: No such file or directory\n" + P + "unknown label 'foo'", 2),
    ("-U --label-del --label-add x",
     "nfct_labelmap_new: No such file or directory\nnfct_labelmap_new: No such file or directory\n"
     + P + "cannot use --label-add and --label-del at the same time", 1),
    # warnings before the error
    ("-L -u !S,X", "WARNING: ignoring SRC_NAT, use --src-nat instead\n" + P + "Bad parameter `X'", 2),
    ("-E -e d,s,foo", "WARNING: ignoring DST_NAT, use --dst-nat instead\n"
     "WARNING: ignoring SRC_NAT, use --src-nat instead\n" + P + "Bad parameter `foo'", 2),
    ("-L -a x -t 1", "WARNING: ignoring -a, deprecated option.\n" + P
     + "Illegal option `--timeout' with this command", 2),
]


def _split(line: str) -> list[str]:
    import shlex
    return shlex.split(line)


@pytest.mark.parametrize("line,message,status", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors(line: str, message: str | None, status: int) -> None:
    res, warnings = parse(_split(line))
    assert isinstance(res, CliError), res
    assert res.status == status
    if message is None:
        return
    text = warnings + format_error(res)
    if "\n" in message:
        expected = message + "\n"
    else:
        expected = P + message + "\n"
    if status == 2:
        expected += TRY
    assert text == expected


def test_format_error() -> None:
    res, _ = parse(["-L", "-x"])
    assert isinstance(res, CliError)
    assert res.text == P + "unknown option `-x'\n" + TRY
    res, _ = parse(["-L", "-o", "save,xml"])
    assert isinstance(res, CliError)
    assert res.text == P + ("cannot combine save output with any other output type, use -o save "
                            "only\n")


# ---------------------------------------------------------------------------------------
# successful parses: fields of the Invocation

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


def test_commands_and_tables() -> None:
    cases = {
        "-L": (Command.LIST, Table.CONNTRACK), "-L expect": (Command.EXP_LIST, Table.EXPECT),
        "-L ''": (Command.EXP_LIST, Table.EXPECT), "-L d": (Command.LIST, Table.DYING),
        "-L unconfirmed": (Command.LIST, Table.UNCONFIRMED), "-Lexpect": (Command.LIST,
                                                                          Table.CONNTRACK),
        "--dump=expect": (Command.LIST, Table.CONNTRACK), "-C e": (Command.EXP_COUNT, Table.EXPECT),
        "-Cexpect": (Command.COUNT, Table.CONNTRACK), "-S exp": (Command.EXP_STATS, Table.EXPECT),
        "-V expect": (Command.VERSION, Table.EXPECT), "-h c": (Command.HELP, Table.CONNTRACK),
        "-F expect": (Command.EXP_FLUSH, Table.EXPECT), "--count": (Command.COUNT, Table.CONNTRACK),
        "-L -- -p tcp": (Command.LIST, Table.CONNTRACK), "": (None, Table.CONNTRACK),
    }
    for line, (command, table) in cases.items():
        inv = ok(_split(line))
        assert (inv.command, inv.table) == (command, table), line
    assert ok("-L extra2 -s 1.1.1.1 more".split()[:1] + ["-s", "1.1.1.1", "more"]).command == \
        Command.LIST


def test_default_family() -> None:
    assert ok("-L").family == 0
    assert ok("-L -s ::1").family == 10
    assert ok("-L -f ipv6xyz").family == 10
    assert ok("-C").family == 2
    assert ok("-L expect").family == 2
    assert ok("-I -s 1.1.1.1 -d 2.2.2.2 -p 200 -t 5").family == 2
    assert ok("-U -g ::1").family == 10


def test_addresses_and_masks() -> None:
    inv = ok("-L -s 10.1.2.3/8")
    assert inv.template.orig.src == V4("10.1.2.3")
    assert inv.mask_src == V4("255.0.0.0")
    assert "mask-src" in inv.options
    inv = ok("-L -s 1.1.1.1/32 -d 1.2.3")
    assert inv.template.orig.src == V4("1.1.1.1") and inv.mask_src is None
    assert inv.template.orig.dst == V4("1.2.0.3")
    assert "mask-src" not in inv.options
    inv = ok("-L -s 1.1.1.1/0 --mask-src 255.255.0.0")
    assert inv.mask_src == V4("255.255.0.0")
    inv = ok("-L -d ::1/64")
    assert inv.mask_dst == V6("ffff:ffff:ffff:ffff::") and inv.family == 10
    inv = ok(["-L", "-r", "1.2.3.4 junk", "-q", "0x7f.1"])
    assert inv.template.reply.src == V4("1.2.3.4")
    assert inv.template.reply.dst == V4("127.0.0.1")
    assert ok("-L -s 1.1.1.1/4294967328").mask_src is None  # int truncation: /32


PARSED_ADDRESSES = [
    ("1", V4("0.0.0.1"), None), ("1.1.1", V4("1.1.0.1"), None), ("010.0.0.1", V4("8.0.0.1"), None),
    ("1.1.1.1/", V4("1.1.1.1"), 0), ("1.1.1.1/ 8", V4("1.1.1.1"), 8),
    ("1.1.1.1/8x", V4("1.1.1.1"), -2), ("1.1.1.1/-1", V4("1.1.1.1"), -2),
    ("::ffff:1.2.3.4", V6("::ffff:1.2.3.4"), None), ("::1/129", V6("::1"), -2),
    ("2001:db8::1/64" + "x" * 40, V6("2001:db8::1"), -2),
    ("fe80:0000:0000:0000:0000:0000:0000:0001/00064xyz", V6("fe80::1"), 64),  # 45-byte cut
    ("fe80:0000:0000:0000:0000:0000:0000:0001/0064xyz", V6("fe80::1"), -2),
]


@pytest.mark.parametrize("text,address,prefix", PARSED_ADDRESSES)
def test_parse_address(text: str, address, prefix) -> None:
    parsed = parse_address(text)
    assert parsed is not None
    assert (parsed.address, parsed.prefix) == (address, prefix)


@pytest.mark.parametrize("text", ["", " 1.1.1.1", "08", "0x", "1.1.1.1.", "4294967296",
                                  "1.2.3.256", "::ffff:1.2.3.4 x", "1::2::3", "[::1]", "::1%lo"])
def test_parse_address_invalid(text: str) -> None:
    assert parse_address(text) is None


NATS = [
    ("1.1.1.1", "1.1.1.1", None), ("1.1.1.1:80", "1.1.1.1", 80), ("[::1]:80", "::1", 80),
    ("x[::1]x:80", "::1", 80), ("[::1]", "[::1]", None), ("::1", "::1", None),
    ("1.1.1.1:080", "1.1.1.1", 80), ("1.1.1.1:0", "1.1.1.1", 0), ("[::1]/8:5", "::1", 5),
]


@pytest.mark.parametrize("text,address,port", NATS)
def test_split_nat(text: str, address: str, port: int | None) -> None:
    assert split_nat(text) == (address, port)


def test_nat_options() -> None:
    inv = ok("-I -s 1.1.1.2 -d 2.2.2.2 --dst-nat 3.3.3.3:80 -p udp --sport 10 --dport 20 -t 50")
    assert inv.template.nat_dst.min_ip == V4("3.3.3.3")
    assert (inv.template.nat_dst.min_port, inv.template.nat_dst.max_port) == (80, 80)
    assert inv.template.nat_src is None
    inv = ok("-L -j 1.1.1.1:5")
    assert inv.template.nat_src == inv.template.nat_dst
    assert {"any-nat"} <= inv.options
    inv = ok("-L --src-nat=1.1.1.1 -g")   # attached value discarded
    assert inv.template.nat_src is None and {"src-nat", "dst-nat"} <= inv.options
    inv = ok("-L -n1.1.1.1 -s ::1")
    assert inv.family == 10
    inv = ok("-L -n !x")                  # a word starting with '!' is not taken
    assert inv.template.nat_src is None


def test_protocols() -> None:
    inv = ok("-L -p TCP")
    assert (inv.protocol, inv.protonum, inv.template.orig.proto) == ("tcp", 6, 6)
    inv = ok("-L -p igmp")
    assert (inv.protocol, inv.protonum) == ("unknown", 2)
    inv = ok("-L -p ipv6-icmp")
    assert (inv.protocol, inv.protonum) == ("unknown", 58)
    inv = ok("-L -p 0x3a")
    assert (inv.protocol, inv.protonum) == ("icmpv6", 58)
    inv = ok("-L -p -18446744073709551610")
    assert (inv.protocol, inv.protonum) == ("tcp", 6)
    inv = ok("-L -p mptcp")
    assert (inv.protocol, inv.protonum, inv.template.orig.proto) == ("unknown", 262, 6)
    inv = ok("-L -p 200 -r 1.1.1.1")
    assert inv.template.reply.proto == 200   # the unknown handler's final check


def test_tcp_template() -> None:
    inv = ok("-I -s 1.1.1.1 -d 2.2.2.2 -p tcp --sport 10 --dport 20 --state ESTABLISHED "
             "-u SEEN_REPLY,ASSURED -t 50 -m 7 -w 3")
    t = inv.template
    assert (t.orig.sport, t.orig.dport, t.orig.proto) == (10, 20, 6)
    assert t.status == 6 and t.timeout == 50 and t.mark == 7 and t.zone == 3
    assert (t.tcp.state, t.tcp.flags_orig, t.tcp.flags_reply) == (3, (0x0A, 0x0A), (0x0A, 0x0A))
    assert inv.proto_options == {"sport", "dport", "state"}
    assert ok("-L -p tcp --state TIME_WAIT").template.tcp.flags_orig == (0x0E, 0x0E)
    assert ok("-L -p tcp --state LISTEN").template.tcp.state == 9
    assert ok("-L -p tcp").template.tcp.flags_reply == (0x0A, 0x0A)
    assert ok("-h -p tcp").template.tcp is None   # no final check for -h


def test_port_and_number_conversions() -> None:
    t = ok("-L -p tcp --sport 70000 --dport -1 --reply-port-src abc").template
    assert (t.orig.sport, t.orig.dport, t.reply.sport, t.reply.proto) == (4464, 65535, 0, 6)
    t = ok("-L -p gre --srckey 0x10 --dstkey 70000").template
    assert (t.orig.sport, t.orig.dport) == (16, 4464)
    inv = ok("-D -t abc -i 0x10 -m 0x100000000 -w 65537 --orig-zone 3 --reply-zone -1")
    t = inv.template
    assert (t.timeout, t.id, t.mark, t.zone, t.orig.zone, t.reply.zone) == (0, 16, 0, 1, 3, 65535)
    assert ok("-L -m 1/abc").mark == (1, 0)
    assert ok("-L -m 5/0xf0").mark_kernel == (5, 0xF0)
    assert ok("-L -m abc").mark == (0, 0xFFFFFFFF)
    assert ok("-L -c -1").template.secmark == 0xFFFFFFFF
    assert ok("-E -b -1").buffer_size == (1 << 64) - 1
    t = ok("-U -p sctp --orig-vtag -1 --reply-vtag 5 --state ESTABLISHED").template
    assert (t.sctp.vtag_orig, t.sctp.vtag_reply, t.sctp.state) == (0xFFFFFFFF, 0x05000000, 4)
    t = ok("-L -p dccp --state OPEN").template
    assert t.dccp.state == 4
    assert ok("-I -s 1.1.1.1 -d 2.2.2.2 -p dccp --sport 1 --dport 2 --state OPEN --role S -t 1"
              ).template.dccp.role == 1
    assert ok(["-I", "-s", "1.1.1.1", "-d", "2.2.2.2", "-p", "dccp", "--sport", "1", "--dport",
               "2", "--state", "OPEN", "-t", "1", "--role", ""]).template.dccp.role == 0


def test_status_and_mark_quirk() -> None:
    inv = ok(["-L", "-u", "SEEN_REPLY,!ASSURED"])
    assert (inv.status, inv.status_negated, inv.status_kernel) == (2, 4, (2, 4))
    inv = ok("-L -u UNREPLIED")
    assert (inv.status, inv.status_kernel) == (0, (0, 2))
    inv = ok(["-L", "-u", "ASSURED", "-u", "!SEEN_REPLY"])
    assert inv.status_kernel == (4, 6)
    inv = ok(["-L", "-u", "!SEEN_REPLY", "-u", "ASSURED"])
    assert inv.status_kernel == (4, 2)
    inv = ok("-L -u ASSURED -u EXPECTED")
    assert inv.status_kernel == (5, 4)
    inv = ok("-L -u a,se,un,f,e,o,h")
    assert inv.status == 0x4 | 0x2 | 0x400 | 0x1 | 0x4000 | 0x8000
    # 1.4.7: -u after -m replaces the mark value (not the kernel filter's)
    inv = ok("-U -s 1.1.1.1 -m 5 -u SEEN_REPLY")
    assert inv.mark == (2, 0xFFFFFFFF) and inv.mark_kernel == (5, 0xFFFFFFFF)
    assert inv.template.mark == 2
    assert ok("-U -u ASSURED -m 11").mark == (11, 0xFFFFFFFF)
    assert ok(["-U", "-m", "5", "-u", "!ASSURED"]).mark == (0, 0xFFFFFFFF)


def test_warnings_are_written_and_kept() -> None:
    res, warnings = parse("-L -u s -o d")
    assert isinstance(res, Invocation)
    assert warnings == ("WARNING: ignoring SRC_NAT, use --src-nat instead\n"
                        "WARNING: ignoring DST_NAT, use --dst-nat instead\n")
    assert res.warnings == warnings.splitlines()
    assert res.status_kernel == (0, 0)


def test_event_mask_and_output() -> None:
    assert ok("-E").event_groups == 0x7
    assert ok("-E -e NEW,DESTROY").event_groups == 0x5
    assert ok("-E -e UPDATES").event_groups == 0x2
    assert ok("-E -e s").event_groups == 0
    assert ok("-E expect").event_groups == 0x38
    inv = ok("-L -o e,t,i,k,u")
    assert inv.output == (OutputFlag.EXTENDED | OutputFlag.TIMESTAMP | OutputFlag.ID
                          | OutputFlag.KTIMESTAMP | OutputFlag.USERSPACE)
    assert ok("-L -o sa").output == OutputFlag.SAVE


def test_icmp_reply_type_depends_on_order() -> None:
    inv = ok("-I -p icmp --icmp-type 8 --icmp-code 0 -s 1.1.1.1 -d 2.2.2.2 -t 50")
    assert inv.icmp_reply_type == 255
    inv = ok("-I -s 1.1.1.1 -d 2.2.2.2 -p icmp --icmp-type 8 --icmp-code 0 -t 50")
    assert inv.icmp_reply_type == 0
    inv = ok("-I -s ::1 -d ::2 -p icmpv6 --icmpv6-type 139 --icmpv6-code 0 -t 5")
    assert inv.icmp_reply_type == 140
    inv = ok("-I -r 2.2.2.2 -q 1.1.1.3 -p icmp --icmp-type 8 --icmp-code 0 --icmp-id 5 -t 50")
    t = inv.template
    assert inv.icmp_reply_type == 255 and t.reply.proto == 1 and t.orig.icmp_id == 5
    assert t.orig.src is None


def test_expectation_tuple_and_mask() -> None:
    inv = ok("-I expect -s 1.1.1.1 -d 2.2.2.2 -p tcp --sport 1 --dport 21 -t 10 "
             "--tuple-src 3.3.3.3 --tuple-dst 4.4.4.4 --mask-src 255.255.255.255 "
             "--mask-dst 255.255.255.255 --tuple-port-src 10240 --tuple-port-dst 2 "
             "--mask-port-src 0 --mask-port-dst 65535")
    e = inv.exptuple
    assert (e.src, e.dst, e.sport, e.dport) == (V4("3.3.3.3"), V4("4.4.4.4"), 10240, 2)
    assert e.proto == 0   # 1.4.7 defect: port >> 8 of the last tuple port (2 >> 8)
    assert (inv.mask.sport, inv.mask.dport, inv.mask.proto) == (0, 65535, 6)
    assert inv.mask_src == V4("255.255.255.255")
    inv = ok("-I expect -s 1.1.1.1 -d 2.2.2.2 -p udp --sport 1 --dport 21 -t 10 "
             "--tuple-src 3.3.3.3 --tuple-dst 4.4.4.4/24 --mask-src 255.255.255.255 "
             "--tuple-port-src 1 --tuple-port-dst 2 --mask-port-src 0 --mask-port-dst 65535")
    assert inv.exptuple.proto == 17 and inv.mask_dst == V4("255.255.255.0")


def test_labels(label_file: str) -> None:
    inv = ok("-L -l web,high -l eth0-in", label_file=label_file)
    assert inv.labels == (1 << 2) | (1 << 5) | 1
    assert inv.label_map is not None and inv.label_map.name(2) == "web"
    inv = ok("-I -s 1.1.1.1 -d 2.2.2.2 -p 200 -t 5 --label-add web", label_file=label_file)
    assert inv.labels_add == 4 and inv.template.labels == 4
    inv = ok("-U --label-del", label_file=label_file)
    assert inv.labels_del_all and inv.labels_del is None
    inv = ok("-U --label-del=web", label_file=label_file)   # attached: delete all
    assert inv.labels_del_all
    inv = ok("-U --label-del high", label_file=label_file)
    assert inv.labels_del == 1 << 5
    assert ok("-L -o labels", label_file=label_file).label_map is not None
    assert error_text("-L -l Web", label_file=label_file) == P + "unknown label 'Web'\n" + TRY
    assert error_text(["-L", "-l", "web,"], label_file=label_file) == P + "unknown label ''\n" + TRY


LABEL_FILES = [
    (b"5web\n", {5: "web"}), (b"5 we_b\n", {}), (b"5 w b \n", {5: "w b"}),
    (b"0x10 web\n1 web\n", {16: "web"}), (b"1 web\n1 foo\n", {1: "web"}), (b"1024 web\n", {}),
    (b"1023 web\n", {1023: "web"}), (b"5 web\r\n", {5: "web"}), (b"\x0b5 web\n", {5: "web"}),
    (b"#1 web\n", {}), (b"-1 web\n", {}), (b"3 web\n\n4 high", {3: "web", 4: "high"}),
    (b"1 " + b"x" * 1030 + b"\n2 web\n", {1: "x" * 1021, 2: "web"}),  # fgets pieces
]


@pytest.mark.parametrize("data,names", LABEL_FILES)
def test_label_map_parsing(data: bytes, names: dict[int, str]) -> None:
    m = LabelMap.parse(data)
    assert (m.names if m is not None else {}) == names


def test_label_map_messages(tmp_path: Path) -> None:
    empty = tmp_path / "empty.conf"
    empty.write_bytes(b"# nothing\n")
    text = error_text("-L -l web", label_file=str(empty))
    assert text == "nfct_labelmap_new: Success\n" + P + "unknown label 'web'\n" + TRY
    res, warnings = parse("-L -o labels -o labels")
    assert isinstance(res, Invocation) and res.label_map is None
    assert warnings == "nfct_labelmap_new: No such file or directory\n" * 2
    text = error_text("-L -l web", label_file=str(tmp_path))
    assert text.startswith("nfct_labelmap_new: Is a directory\n")


# ---------------------------------------------------------------------------------------
# getopt emulation


def _getopt(argv: list[str], env_posix: bool = False) -> list[tuple[str, str | None]]:
    longopts = [LongOption("alpha", 1, ord("a")), LongOption("beta", 0, ord("b")),
                LongOption("bet", 2, ord("c")), LongOption("gamma", 2, ord("g")),
                LongOption("gam", 1, ord("g"))]
    g = Getopt(["prog"] + argv, ":a:bc::g::", longopts, posixly_correct=env_posix)
    out = []
    while (c := g.next()) != -1:
        out.append((chr(c), g.optarg))
    out.append(("end", " ".join(g.argv[g.optind:])))
    return out


GETOPT = [
    (["-a", "x", "y", "-b"], [("a", "x"), ("b", None), ("end", "y")]),
    (["y", "-ax", "z", "-bc"], [("a", "x"), ("b", None), ("c", None), ("end", "y z")]),
    (["-bcfoo"], [("b", None), ("c", "foo"), ("end", "")]),
    (["-c", "foo"], [("c", None), ("end", "foo")]),
    (["--alp=1", "--be"], [("a", "1"), ("?", None), ("end", "")]),   # --be: beta/bet ambiguous
    (["--beta"], [("b", None), ("end", "")]),
    (["--bet", "x"], [("c", None), ("end", "x")]),                   # exact match wins
    (["--ga", "x"], [("g", None), ("end", "x")]),   # gamma/gam differ only in has_arg: ambiguous?
    (["--alpha"], [(":", None), ("end", "")]),
    (["-a"], [(":", None), ("end", "")]),
    (["--beta=x"], [("?", None), ("end", "")]),
    (["-x"], [("?", None), ("end", "")]),
    (["-b", "--", "-a", "x"], [("b", None), ("end", "-a x")]),
    (["x", "--", "-b"], [("end", "x -b")]),
    (["-", "-b"], [("b", None), ("end", "-")]),
]


@pytest.mark.parametrize("argv,expected", GETOPT, ids=[" ".join(a) for a, _ in GETOPT])
def test_getopt(argv: list[str], expected) -> None:
    if argv == ["--ga", "x"]:
        # gamma (optional) and gam (required) have different has_arg: ambiguous
        expected = [("?", None), ("end", "x")]
    assert _getopt(argv) == expected


def test_getopt_posixly_correct() -> None:
    assert _getopt(["y", "-b"], env_posix=True) == [("end", "y -b")]
    assert _getopt(["-b", "y", "-b"], env_posix=True) == [("b", None), ("end", "y -b")]
    inv = ok("foo -L -t 1", env={"POSIXLY_CORRECT": "1"})
    assert inv.command is None


def test_getopt_table_extended_mid_scan() -> None:
    g = Getopt(["prog", "--zz", "--zz"], ":", [])
    assert g.next() == ord("?")
    g.longopts = [LongOption("zz", 0, 300)]
    assert g.next() == 300 and g.next() == -1


# ---------------------------------------------------------------------------------------
# C library conversions

STRTOUL = [("-1", 0, ((1 << 64) - 1, 2)), (" 0x1f", 0, (31, 5)), ("0x", 0, (0, 1)),
           ("08", 0, (0, 1)), ("010", 0, (8, 3)), ("", 0, (0, 0)), ("+", 0, (0, 0)),
           ("99999999999999999999999", 0, ((1 << 64) - 1, 23)), ("-18446744073709551610", 0, (6, 21)),
           ("12abc", 10, (12, 2)), ("0X1G", 0, (1, 3))]


@pytest.mark.parametrize("text,base,expected", STRTOUL)
def test_strtoul(text: str, base: int, expected) -> None:
    assert libc.strtoul(text, base) == expected


def test_atoi_atol_strtol() -> None:
    assert libc.atoi("70000") == 70000 and libc.atoi("4294967297") == 1
    assert libc.atoi(" -5x") == -5 and libc.atoi("abc") == 0
    assert libc.atol("99999999999999999999") == (1 << 63) - 1
    assert libc.strtol("4294967328", 10) == (4294967328, 10)


INET_ATON = [("1", 1), ("1.1.1", 0x01010001), ("0x7f.1", 0x7F000001), ("010.0.0.1", 0x08000001),
             ("1.2.3.4 junk", 0x01020304), ("4294967295", 0xFFFFFFFF), ("1.2.65535", 0x0102FFFF),
             ("1.2.3.4junk", None), ("4294967296", None), ("1.2.65536", None), ("", None),
             ("1.1.1.1.", None), (" 1.1.1.1", None), ("08", None), ("0x", None), ("1..2", None)]


@pytest.mark.parametrize("text,expected", INET_ATON)
def test_inet_aton(text: str, expected: int | None) -> None:
    assert libc.inet_aton(text) == expected


@pytest.mark.parametrize("text", ["::1", "1::", "::", "1:2:3:4:5:6:7:8", "::ffff:1.2.3.4",
                                  "1:2:3:4:5:6:1.2.3.4", "abcd::ef01:2345:6789:abcd:ef01",
                                  "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8"])
def test_inet_pton6_valid(text: str) -> None:
    assert libc.inet_pton6(text) == ipaddress.IPv6Address(text).packed


@pytest.mark.parametrize("text", ["1:2:3:4:5:6:7:8:9", "::01.2.3.4", "1:::2", ":1", "1::2::3",
                                  "12345::", "::ffff:1.2.3", "1:2:3:4:5:6:7:1.2.3.4", "1:", "",
                                  ":", "1.2.3.4", "::1 ", "1:2:3:4:5:6:7:8::"])
def test_inet_pton6_invalid(text: str) -> None:
    assert libc.inet_pton6(text) is None


def test_protocol_database(tmp_path: Path) -> None:
    assert getprotobyname("IGMP") == 2 and getprotobyname("igmp") == 2
    assert getprotobyname("Igmp") is None
    assert getprotobynumber(0) == "ip" and getprotobynumber(58) == "ipv6-icmp"
    missing = str(tmp_path / "no-protocols")
    assert getprotobyname("CPHB", missing) == 73          # embedded netbase table
    assert getprotobynumber(262, missing) == "mptcp"
    entries = parse_protocols("# c\nfoo 12 FOO bar # x\nbad x\n  baz\t13\n")
    assert entries == [("foo", 12, ("FOO", "bar")), ("baz", 13, ())]


# ---------------------------------------------------------------------------------------
# help and version


def test_help_text() -> None:
    text = help_text("/usr/sbin/conntrack")
    assert text.startswith("Command line interface for the connection tracking system. "
                           "Version 1.4.7\nUsage: /usr/sbin/conntrack [commands] [options]\n")
    assert "  -r, --reply-src ip\t\tSource addres from reply direction\n" in text
    assert text.endswith("  --mask-dst ip\t\t\tDestination mask address\n\n")
    assert help_for(ok("-h -p tcp")).endswith(
        "Proto `tcp' help:\n  --orig-port-src\t\toriginal source port\n"
        "  --orig-port-dst\t\toriginal destination port\n  --reply-port-src\t\treply source port\n"
        "  --reply-port-dst\t\treply destination port\n  --mask-port-src\t\tmask source port\n"
        "  --mask-port-dst\t\tmask destination port\n"
        "  --tuple-port-src\t\texpectation tuple src port\n"
        "  --tuple-port-src\t\texpectation tuple dst port\n"
        "  --state\t\t\tTCP state, fe. ESTABLISHED\n")
    assert help_for(ok("-h -p igmp")).endswith("Proto `igmp' help:\n  no options (unsupported)\n")
    assert help_for(ok("-h -p 200")).endswith("Proto `unknown' help:\n  no options (unsupported)\n")
    assert help_for(ok("-h -p 0")).endswith("Proto `ip' help:\n  no options (unsupported)\n")
    assert help_for(ok("-h -p tcp -p udp")).endswith("  --tuple-port-src\t\texpectation tuple "
                                                     "dst port\n")
    assert version_text() == "conntrack v1.4.7 (conntrack-tools)\n"


# ---------------------------------------------------------------------------------------
# -R files


def batch_result(data: bytes, tmp_path: Path, **kw) -> Batch | CliError:
    path = tmp_path / "batch.txt"
    path.write_bytes(data)
    res, _ = parse(["-R", str(path)], **kw)
    return res


SPLIT = [
    (b"-D -s 1.1.1.1\n", [b"-D", b"-s", b"1.1.1.1"]),
    (b'-D "-s" "1.1 .1.1"\n', [b"-D", b"-s", b"1.1 .1.1"]),
    (b'-D -s "1.1.\\"1.1"\n', [b"-D", b"-s", b'1.1."1.1']),
    (b"-D -s 1.1\\.1.1\n", [b"-D", b"-s", b"1.1\\.1.1"]),
    (b'-D -s ""\n', [b"-D", b"-s", b""]),
    (b'-D -s"1.1.1.1"x\n', [b"-D", b"-s1.1.1.1", b"x"]),
    (b'-D "unterminated\n', [b"-D", b"unterminated\n"]),
    (b"-D\t-s\x00 -X\n", [b"-D", b"-s"]),
    (b"\r\n", [b"\r"]),
]


@pytest.mark.parametrize("line,words", SPLIT)
def test_batch_word_splitting(line: bytes, words: list[bytes]) -> None:
    assert batch.split_words(line) == words


def test_batch_limits() -> None:
    assert batch.split_words(b"x" * 1023) == [b"x" * 1023]
    with pytest.raises(CliError, match="Parameter too long!"):
        batch.split_words(b"x" * 1024)
    assert len(batch.split_words(b" -z" * 253)) == 253
    with pytest.raises(CliError, match="too many arguments"):
        batch.split_words(b" -z" * 254)
    pieces = batch.read_pieces(b"a" * 10300 + b"\nb\n")
    assert [len(p) for p in pieces] == [10239, 62, 2]


def test_batch_parses_every_line_before_checking_commands(tmp_path: Path) -> None:
    res = batch_result(b"# comment\n\n\t-I -s 10.0.0.1 -d 10.0.0.2 -p tcp --sport 1 --dport 2 "
                       b"--state ESTABLISHED -t 300\n-D -s 10.0.0.1\n-F", tmp_path)
    assert isinstance(res, Batch)
    assert [inv.command for inv in res] == [Command.CREATE, Command.DELETE, Command.FLUSH]
    res = batch_result(b"-L\n-X\n", tmp_path)
    assert isinstance(res, CliError) and res.message == "unknown option `-X'"
    res = batch_result(b"-D\n-L expect\n", tmp_path)
    assert isinstance(res, CliError)
    assert res.message == "Cannot use command `-L expect' with --load-file"
    res = batch_result(b"-F\n  ", tmp_path)
    assert isinstance(res, CliError) and res.message == "Cannot use command `unknown' with --load-file"


def test_batch_state_leaks_between_lines(tmp_path: Path, label_file: str) -> None:
    res = batch_result(b"-D -p tcp -o xml\n-D -s 1.1.1.1\n-U -o id\n", tmp_path)
    assert isinstance(res, Batch)
    first, second, third = res.invocations
    assert second.protocol == "tcp" and second.protonum is None
    assert second.template.tcp.flags_orig == (0x0A, 0x0A)      # TCP final check again
    assert third.output == OutputFlag.XML | OutputFlag.ID
    res = batch_result(b"-D -o xml\n-D -o save\n", tmp_path)
    assert isinstance(res, CliError) and res.status == 1
    res = batch_result(b"-p tcp -D\n-D --sport 5\n", tmp_path)   # the option table is reset
    assert isinstance(res, CliError) and res.message == "unknown option `--sport'"
    res = batch_result(b"-D -o labels\n-D -l web\n", tmp_path, label_file=label_file)
    assert isinstance(res, Batch) and res.invocations[1].labels == 4


def test_batch_files_and_stdin(tmp_path: Path) -> None:
    res, _ = parse(["-R", "/nonexistent/x"])
    assert isinstance(res, CliError)
    assert res.text == P + "Failed to open file /nonexistent/x for reading\n" + TRY
    res, _ = parse(["-R", "-"], stdin=b"-F\n")
    assert isinstance(res, Batch) and res.path == "/dev/stdin"
    res, _ = parse(["-R"])      # no file: an unknown option
    assert isinstance(res, CliError) and res.message == "unknown option `-R'"
    res, _ = parse(["-L", "-R", "x"])
    assert isinstance(res, CliError) and res.message == "unknown option `-R'"


LONG = [  # (file content, the error or None when accepted)
    (b" " * 10237 + b"-F\n", None),                        # 10239 bytes before the newline
    (b" " * 10237 + b"-F", None),                           # the same without newline
    (b" " * 10238 + b"-F\n", "line 1 of {} is longer than 10239 bytes"),
    (b"-F\n# x\n\n" + b"#" * 10240 + b"\n-F\n", "line 4 of {} is longer than 10239 bytes"),
    (b"-F\n" + b"x" * 20000, "line 2 of {} is longer than 10239 bytes"),
    (b"-F\n-X\n" + b"x" * 20000, "unknown option `-X'"),  # errors in line order
]


@pytest.mark.parametrize("data,error", LONG, ids=["10239 bytes", "10239 bytes, no newline",
                                                  "10240 bytes", "after comments",
                                                  "last line", "earlier error"])
def test_batch_line_limit(tmp_path: Path, data: bytes, error: str | None) -> None:
    res = batch_result(data, tmp_path)
    if error is None:
        assert isinstance(res, Batch) and [inv.command for inv in res] == [Command.FLUSH]
    else:
        assert isinstance(res, CliError) and res.status == 2
        assert res.message == error.format(tmp_path / "batch.txt")


class Zeros(io.RawIOBase):
    """An endless stream of NUL bytes that fails the test once 1 MiB has been read."""

    def __init__(self) -> None:
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        assert self.given < 1 << 20, "the batch reader does not stop"
        b[:] = bytes(len(b))
        self.given += len(b)
        return len(b)


def test_batch_of_an_endless_file_stops_at_the_first_line() -> None:
    """(``-R /dev/zero`` as a real process under a memory limit: test_cli_files.py)"""
    zeros = Zeros()
    err = io.StringIO()
    with pytest.raises(CliError) as e:
        parse_command_line(["conntrack", "-R", "-"], stderr=err, stdin=zeros,
                           label_file="/nonexistent/labels", environ={})
    assert e.value.text == P + "line 1 of /dev/stdin is longer than 10239 bytes\n" + TRY
    assert zeros.given <= 2 * batch.READ_SIZE


def test_batch_read_error(tmp_path: Path) -> None:
    res, _ = parse(["-R", "/proc/self/mem"])  # reading offset 0 fails: EIO
    assert isinstance(res, CliError) and res.status == 2
    assert res.message == "Failed to read file /proc/self/mem: Input/output error"


BIG = "".join(f"-D -s 10.{i >> 8 & 255}.{i & 255}.1 -u SRC_NAT\n" for i in range(60)) + "-F\n"


def _held_and_again(tmp_path: Path, monkeypatch, data: bytes):
    held, held_err = batch_result_err(data, tmp_path)
    monkeypatch.setattr(batch, "KEEP", 0)
    again, again_err = batch_result_err(data, tmp_path)
    return held, held_err, again, again_err


def batch_result_err(data: bytes, tmp_path: Path):
    path = tmp_path / "batch.txt"
    path.write_bytes(data)
    return parse(["-R", str(path)])


def test_long_batch_parses_again_as_it_runs(tmp_path: Path, monkeypatch) -> None:
    """A file of more than KEEP lines: checked (warnings printed once), then parsed again
    from its copy, giving the same invocations; the copy is released by close()."""
    held, held_err, again, again_err = _held_and_again(tmp_path, monkeypatch, BIG.encode())
    assert isinstance(held, Batch) and isinstance(again, Batch)
    assert held_err == again_err == "WARNING: ignoring SRC_NAT, use --src-nat instead\n" * 60
    assert [repr(i) for i in again] == [repr(i) for i in held]
    assert [repr(i) for i in again] == [repr(i) for i in held]  # iterable again
    (tmp_path / "batch.txt").unlink()                           # runs from its own copy
    assert len(again.invocations) == 61
    again.close()
    held.close()


def test_long_batch_errors_before_anything_runs(tmp_path: Path, monkeypatch) -> None:
    for tail, message in ((b"-X\n", "unknown option `-X'"),
                          (b"-L\n", "Cannot use command `-L' with --load-file")):
        res, _ = _held_and_again(tmp_path, monkeypatch, BIG.encode() + tail)[2:]
        assert isinstance(res, CliError) and res.message == message


def test_long_batch_memory_does_not_grow_with_the_file(tmp_path: Path, monkeypatch) -> None:
    """Peak memory of checking and running (iterating) a batch: the same for 100 and for
    1000 lines once the lines are not held (KEEP = 10)."""
    import gc
    import tracemalloc

    monkeypatch.setattr(batch, "KEEP", 10)

    def peak(lines: int) -> int:
        path = tmp_path / f"b{lines}.txt"
        path.write_bytes(b"-D -s 10.0.0.1 -p tcp --sport 1 -m 5\n" * lines)
        gc.collect()
        tracemalloc.start()
        try:
            res, _ = parse(["-R", str(path)])
            assert isinstance(res, Batch)
            assert sum(1 for _ in res) == lines
            res.close()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(100), peak(1000)
    assert large < small + 64 * 1024, (small, large)


def test_parser_is_reusable_with_own_stream(tmp_path: Path) -> None:
    err = io.StringIO()
    parser = Parser(stderr=err, label_file=os.devnull, environ={})
    inv = parser.parse(["/usr/sbin/conntrack", "-L", "-u", "d"])
    assert inv.argv0 == "/usr/sbin/conntrack"
    assert err.getvalue() == "WARNING: ignoring DST_NAT, use --dst-nat instead\n"
