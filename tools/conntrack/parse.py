"""The option loop of ``conntrack``: one command line (or ``-R`` line) → :class:`Invocation`.

:class:`Parser` keeps the state the reference keeps across the lines of a ``-R`` file
(``-o`` flags, the last protocol handler, the label map, the option offset counter) and
parses one argument vector at a time with :meth:`Parser.parse`, exactly in the
reference's order: options are validated as they are read (addresses, numbers,
keyword lists, protocol options), then the default family, the ``--any-nat``
conflict, the legality matrix with its tuple-pair rule and the protocol's final check.
Warnings go to the warning stream when the reference prints them; errors are raised as
:class:`~.errors.CliError`. The command-specific checks the reference makes only when
it runs a command (``-z`` with filters, ``--mask-*`` without address) are in
:func:`runtime_checks`.
"""
from __future__ import annotations

import ipaddress
import os
import sys

from ctnetlink.model import DccpInfo, Flow, NatRange, SctpInfo, TcpInfo, Tuple

from .errors import OtherProblem, ParameterProblem
from .getopt import Getopt, LongOption
from .invocation import Command, Invocation, OutputFlag, Table
from .labels import LabelMap, LabelMapError, strerror_text
from .legality import check_command_options
from .libc import atol, inet_aton, inet_pton6, strncasecmp_prefix, strtol, strtoul, to_int32
from .protocols import Handler, find_handler

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import BinaryIO, TextIO

    from .invocation import Batch

OPTSTRING = ":L::I::U::D::G::E::F::A::hVs:d:r:q:p:t:u:e:a:z[:]:{:}:m:i:f:o:n::g::c:b:C::Sj::w:l:<:>::(:):"

# The reference's long option table, in its order (order decides abbreviations).
MAIN_OPTIONS = tuple(LongOption(n, a, ord(v)) for n, a, v in (
    ("dump", 2, "L"), ("create", 2, "I"), ("add", 2, "A"), ("delete", 2, "D"),
    ("update", 2, "U"), ("get", 2, "G"), ("flush", 2, "F"), ("event", 2, "E"),
    ("counter", 2, "C"), ("stats", 0, "S"), ("version", 0, "V"), ("help", 0, "h"),
    ("orig-src", 1, "s"), ("src", 1, "s"), ("orig-dst", 1, "d"), ("dst", 1, "d"),
    ("reply-src", 1, "r"), ("reply-dst", 1, "q"), ("protonum", 1, "p"), ("timeout", 1, "t"),
    ("status", 1, "u"), ("zero", 0, "z"), ("event-mask", 1, "e"), ("tuple-src", 1, "["),
    ("tuple-dst", 1, "]"), ("mask-src", 1, "{"), ("mask-dst", 1, "}"), ("nat-range", 1, "a"),
    ("mark", 1, "m"), ("secmark", 1, "c"), ("id", 2, "i"), ("family", 1, "f"),
    ("src-nat", 2, "n"), ("dst-nat", 2, "g"), ("output", 1, "o"), ("buffer-size", 1, "b"),
    ("any-nat", 2, "j"), ("zone", 1, "w"), ("label", 1, "l"), ("label-add", 1, "<"),
    ("label-del", 2, ">"), ("orig-zone", 1, "("), ("reply-zone", 1, ")"),
))
OPTION_OFFSET = 256

# short option -> canonical option name (§5.1)
_OPT_NAME = {
    "s": "src", "d": "dst", "r": "reply-src", "q": "reply-dst", "p": "protonum",
    "t": "timeout", "u": "status", "z": "zero", "e": "event-mask", "[": "tuple-src",
    "]": "tuple-dst", "{": "mask-src", "}": "mask-dst", "m": "mark", "i": "id",
    "f": "family", "n": "src-nat", "g": "dst-nat", "o": "output", "c": "secmark",
    "b": "buffer-size", "j": "any-nat", "w": "zone", "l": "label", "<": "label-add",
    ">": "label-del", "(": "orig-zone", ")": "reply-zone",
}

# command letter -> (conntrack-table command, expect-table command)
_CMD = {
    "L": (Command.LIST, Command.EXP_LIST), "I": (Command.CREATE, Command.EXP_CREATE),
    "D": (Command.DELETE, Command.EXP_DELETE), "G": (Command.GET, Command.EXP_GET),
    "F": (Command.FLUSH, Command.EXP_FLUSH), "E": (Command.EVENT, Command.EXP_EVENT),
    "V": (Command.VERSION, Command.VERSION), "h": (Command.HELP, Command.HELP),
    "C": (Command.COUNT, Command.EXP_COUNT), "S": (Command.STATS, Command.EXP_STATS),
    "U": (Command.UPDATE, None), "A": (Command.ADD, None),
}
_LONG_CMD_NAME = {"U": "update", "A": "add"}

STATUS_KEYWORDS = (("ASSURED", 1 << 2), ("SEEN_REPLY", 1 << 1), ("UNSET", 0),
                   ("FIXED_TIMEOUT", 1 << 10), ("EXPECTED", 1 << 0), ("OFFLOAD", 1 << 14),
                   ("HW_OFFLOAD", 1 << 15))
EVENT_KEYWORDS = (("ALL", 0x7), ("NEW", 0x1), ("UPDATES", 0x2), ("DESTROY", 0x4))
OUTPUT_KEYWORDS = (("xml", OutputFlag.XML), ("extended", OutputFlag.EXTENDED),
                   ("timestamp", OutputFlag.TIMESTAMP), ("id", OutputFlag.ID),
                   ("ktimestamp", OutputFlag.KTIMESTAMP), ("labels", OutputFlag.LABELS),
                   ("userspace", OutputFlag.USERSPACE), ("save", OutputFlag.SAVE),
                   ("json", OutputFlag.JSON))
_NOT_WITH_SAVE = (OutputFlag.XML | OutputFlag.EXTENDED | OutputFlag.TIMESTAMP | OutputFlag.ID
                  | OutputFlag.KTIMESTAMP | OutputFlag.LABELS)
# ours: the rule of -o save for -o json. JSON always carries what extended, id, ktimestamp
# and timestamp add to text lines, so they (and the other formats) are refused; labels
# (loads the label map: label names) and userspace remain, as userspace does with save
_NOT_WITH_JSON = (OutputFlag.XML | OutputFlag.SAVE | OutputFlag.EXTENDED | OutputFlag.TIMESTAMP
                  | OutputFlag.ID | OutputFlag.KTIMESTAMP)

WARN_SRC_NAT = "WARNING: ignoring SRC_NAT, use --src-nat instead"
WARN_DST_NAT = "WARNING: ignoring DST_NAT, use --dst-nat instead"
WARN_NAT_RANGE = "WARNING: ignoring -a, deprecated option."

AF_INET, AF_INET6 = 2, 10


class Draft:
    """A mutable stand-in for one immutable model record (a :class:`Tuple`, ``TcpInfo``
    ...) while options fill it in; :meth:`freeze` makes the record."""

    __slots__ = ("_cls", "_values")

    def __init__(self, cls: type) -> None:
        object.__setattr__(self, "_cls", cls)
        object.__setattr__(self, "_values", dict.fromkeys(cls._fields))

    def __getattr__(self, name: str):
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        return getattr(self.freeze(), name)  # derived properties (Tuple.family ...)

    def __setattr__(self, name: str, value) -> None:
        if name not in self._values:
            raise AttributeError(f"{self._cls.__name__} has no field {name!r}")
        self._values[name] = value

    def freeze(self):
        return self._cls(**self._values)


class LineState:
    """The objects one line's options fill: the template, the expectation tuple and
    mask, and the protocol option flags. Protocol handlers write through it; tuples and
    protocol infos are :class:`Draft` objects until :meth:`finish`."""

    __slots__ = ("template", "mask", "exptuple", "l4flags", "icmp_reply_type", "drafts")

    def __init__(self) -> None:
        self.template = Flow()
        self.mask = Draft(Tuple)
        self.exptuple: Draft | None = None
        self.l4flags = 0
        self.icmp_reply_type: int | None = None
        #: template field -> the draft of its record
        self.drafts: dict[str, Draft] = {}

    def _draft(self, field: str, cls: type) -> Draft:
        d = self.drafts.get(field)
        if d is None:
            d = self.drafts[field] = Draft(cls)
        return d

    def orig(self) -> Draft:
        return self._draft("orig", Tuple)

    def reply(self) -> Draft:
        return self._draft("reply", Tuple)

    def exp(self) -> Draft:
        if self.exptuple is None:
            self.exptuple = Draft(Tuple)
        return self.exptuple

    def tcp(self) -> Draft:
        return self._draft("tcp", TcpInfo)

    def sctp(self) -> Draft:
        return self._draft("sctp", SctpInfo)

    def dccp(self) -> Draft:
        return self._draft("dccp", DccpInfo)

    def reply_l3_set(self) -> bool:
        r = self.drafts.get("reply")
        return r is not None and (r.src is not None or r.dst is not None)

    def template_proto(self) -> int | None:
        o = self.drafts.get("orig")
        return o.proto if o is not None else None

    def finish(self) -> None:
        """Turn the drafts into the template's records."""
        for field, d in self.drafts.items():
            setattr(self.template, field, d.freeze())


# --- addresses ---------------------------------------------------------------------------
class ParsedAddress:
    """Result of the reference's ``parse_addr``: family, address and prefix status."""

    __slots__ = ("family", "address", "prefix")

    def __init__(self, family: int, address: ipaddress.IPv4Address | ipaddress.IPv6Address,
                 prefix: int | None) -> None:
        self.family = family
        self.address = address
        #: None: no "/"; -2: invalid prefix; else the prefix length.
        self.prefix = prefix


def parse_address(arg: str) -> ParsedAddress | None:
    """§4.1 steps 1-3 and 6: the first 45 bytes, ``/prefix``, inet_aton then inet_pton."""
    text = _cut_bytes(arg, 45)
    prefix: int | None = None
    slash = text.find("/")
    if slash >= 0:
        tail = text[slash + 1:]
        value, end = strtol(tail, 10)
        prefix = to_int32(value)
        if prefix < 0 or end != len(tail):
            prefix = -2
        text = text[:slash]
    v4 = inet_aton(text)
    if v4 is not None:
        if prefix is not None and prefix > 32:
            prefix = -2
        return ParsedAddress(AF_INET, ipaddress.IPv4Address(v4), prefix)
    v6 = inet_pton6(text)
    if v6 is not None:
        if prefix is not None and prefix > 128:
            prefix = -2
        return ParsedAddress(AF_INET6, ipaddress.IPv6Address(v6), prefix)
    return None


def _cut_bytes(text: str, n: int) -> str:
    raw = os.fsencode(text)
    return text if len(raw) <= n else os.fsdecode(raw[:n])


def prefix_mask(family: int, bits: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    width = 32 if family == AF_INET else 128
    value = ((1 << bits) - 1) << (width - bits) if bits else 0
    return ipaddress.IPv4Address(value) if family == AF_INET else ipaddress.IPv6Address(value)


def split_nat(arg: str) -> tuple[str, int | None]:
    """§4.4: ``ADDR[:PORT]`` / ``[V6ADDR]:PORT`` → (address text, port or None)."""
    port_text: str | None = None
    addr = arg
    if "[" in arg:
        start = arg.index("[") + 1
        close = arg.find("]", start)
        if close < 0:
            raise ParameterProblem("No closing ']' around IPv6 address")
        if close == start:
            raise ParameterProblem("No IPv6 address specified")
        colon = arg.find(":", close)
        if colon >= 0:
            addr, port_text = arg[start:close], arg[colon + 1:]
    elif arg.count(":") == 1:
        addr, port_text = arg.split(":")
    if port_text is None:
        return addr, None
    if port_text == "":
        raise ParameterProblem("No port specified after `:'")
    if not all("0" <= ch <= "9" for ch in port_text) or strtoul(port_text, 10)[0] > 65535:
        raise ParameterProblem(f"Invalid port `{port_text}'")
    return addr, strtoul(port_text, 10)[0]


# --- keyword lists -----------------------------------------------------------------------
def parse_keywords(arg: str, table: tuple[tuple[str, int], ...], warn: "_Warn") -> int:
    """``parse_parameter`` for -e and -o: comma-separated case-insensitive prefixes."""
    value = 0
    rest = arg
    while True:
        comma = rest.find(",")
        token = rest if comma < 0 else rest[:comma]
        if token == "":
            raise ParameterProblem(f"Bad parameter `{rest}'")
        bits = _keyword(token, table, warn)
        if bits is None:
            raise ParameterProblem(f"Bad parameter `{rest}'")
        value |= bits
        if comma < 0:
            return value
        rest = rest[comma + 1:]


def _keyword(token: str, table: tuple[tuple[str, int], ...], warn: "_Warn") -> int | None:
    if strncasecmp_prefix(token, "SRC_NAT"):
        warn(WARN_SRC_NAT)
        return 0
    if strncasecmp_prefix(token, "DST_NAT"):
        warn(WARN_DST_NAT)
        return 0
    for name, bits in table:
        if strncasecmp_prefix(token, name):
            return int(bits)
    return None


def parse_status(arg: str, warn: "_Warn") -> tuple[int, int]:
    """-u LIST → (value bits, negated bits) (§4.7)."""
    value = negated = 0
    rest = arg
    while True:
        comma = rest.find(",")
        if comma != 0 and rest[:1] == "!":
            negate = True
            rest = rest[1:]
            comma = rest.find(",")
        else:
            negate = False
        token = rest if comma < 0 else rest[:comma]
        if token == "":
            raise ParameterProblem(f"Bad parameter `{rest}'")
        if rest.startswith("UNREPLIED"):
            if negate:
                raise ParameterProblem(f"Bad parameter `{rest}'")
            negated |= 1 << 1
        else:
            bits = _keyword(token, STATUS_KEYWORDS, warn)
            if bits is None:
                raise ParameterProblem(f"Bad parameter `{rest}'")
            if negate:
                negated |= bits
            else:
                value |= bits
        if comma < 0:
            return value, negated
        rest = rest[comma + 1:]


class _Warn:
    """Writes warning lines to the stream at once and remembers them."""

    def __init__(self, stream: TextIO, store: list[str]) -> None:
        self.stream = stream
        self.store = store

    def __call__(self, line: str) -> None:
        self.store.append(line)
        self.stream.write(line + "\n")
        self.stream.flush()


# --- the parser --------------------------------------------------------------------------
class Parser:
    """Parses command lines; state kept across the lines of a ``-R`` file."""

    def __init__(self, *, stderr: TextIO | None = None, label_file: str | None = None,
                 protocols_file: str | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.stderr = stderr if stderr is not None else sys.stderr
        self.label_file = label_file
        self.protocols_file = protocols_file
        self.environ = os.environ if environ is None else environ
        # state that leaks between -R lines, as in the reference
        self.output = OutputFlag(0)
        self.handler: Handler | None = None
        self.label_map: LabelMap | None = None
        self.option_offset = 0

    # -- helpers ---------------------------------------------------------------------------
    def _labelmap_init(self, warn: _Warn) -> None:
        if self.label_map is not None:
            return
        try:
            self.label_map = LabelMap.load(self.label_file)
        except LabelMapError as e:
            warn(f"nfct_labelmap_new: {strerror_text(e)}")

    def _labels(self, arg: str) -> int:
        bits = 0
        for name in arg.split(","):
            bit = self.label_map.bit(name) if self.label_map is not None else None
            if bit is None:
                raise ParameterProblem(f"unknown label '{name}'")
            bits |= 1 << bit
        return bits

    # -- one line --------------------------------------------------------------------------
    def parse(self, argv: list[str]) -> Invocation:
        """Parse ``argv`` (``argv[0]`` = program name) into an :class:`Invocation`."""
        argv = list(argv)
        inv = Invocation(argv[0] if argv else "conntrack")
        warn = _Warn(self.stderr, inv.warnings)
        st = LineState()
        tmpl = st.template
        longopts = list(MAIN_OPTIONS)
        g = Getopt(argv, OPTSTRING, longopts,
                   posixly_correct="POSIXLY_CORRECT" in self.environ)
        command: Command | None = None
        table = Table.CONNTRACK
        options: set[str] = set()
        family = 0
        status = 0
        status_kernel_mask = 0
        protonum: int | None = None

        def set_family(new: int) -> None:
            nonlocal family
            if family == 0:
                family = new
            elif family != new:
                raise ParameterProblem("mismatched address family")

        def optional_arg() -> str | None:
            # get_optional_arg(): an attached argument is ignored; else the next word
            # if it does not start with '-' or '!'.
            if g.optarg is not None:
                return None
            if g.optind < len(argv) and argv[g.optind][:1] not in ("-", "!"):
                word = argv[g.optind]
                g.optind += 1
                return word
            return None

        def check_type() -> Table:
            word = optional_arg()
            if word is None:
                return Table.CONNTRACK
            for t, keyword in ((Table.EXPECT, "expect"), (Table.CONNTRACK, "conntrack"),
                               (Table.DYING, "dying"), (Table.UNCONFIRMED, "unconfirmed")):
                if keyword.startswith(word):
                    return t
            raise ParameterProblem(f"unknown type `{word}'")

        def add_command(new: Command) -> None:
            nonlocal command
            if command is not None:
                raise ParameterProblem("Invalid commands combination")
            command = new

        def address(opt: str, arg: str, cidr_ok: bool) -> ParsedAddress:
            parsed = parse_address(arg)
            if parsed is None:
                raise ParameterProblem(f"Invalid IP address `{arg}'")
            set_family(parsed.family)
            if parsed.prefix is not None:
                if not cidr_ok:
                    raise ParameterProblem(f"CIDR notation unavailable for `--{opt}'")
                if parsed.prefix == -2:
                    raise ParameterProblem("Invalid netmask")
            return parsed

        while True:
            c = g.next()
            if c == -1:
                break
            if c >= OPTION_OFFSET:
                # a protocol option: the last handler parses it with the option's code
                # (its table's offset is a multiple of 256, so the low byte is the code)
                assert self.handler is not None and g.optarg is not None
                self.handler.parse(c & 0xFF, g.optarg, st)
                continue
            ch = chr(c)
            arg = g.optarg
            if ch in _CMD:
                t = check_type()
                if t in (Table.DYING, Table.UNCONFIRMED):
                    if ch != "L":
                        raise ParameterProblem("Can't do that command with tables `dying' "
                                               "and `unconfirmed'")
                    add_command(Command.LIST)
                    table = t
                    continue
                new = _CMD[ch][t]
                if new is None:
                    raise ParameterProblem(f"Can't do --{_LONG_CMD_NAME[ch]} on expectations")
                add_command(new)
                table = t
            elif ch in "sdrq[]{}":
                name = _OPT_NAME[ch]
                options.add(name)
                assert arg is not None
                parsed = address(name, arg, ch in "sd[]")
                full = 32 if parsed.family == AF_INET else 128
                if ch == "s":
                    st.orig().src = parsed.address
                elif ch == "d":
                    st.orig().dst = parsed.address
                elif ch == "r":
                    st.reply().src = parsed.address
                elif ch == "q":
                    st.reply().dst = parsed.address
                elif ch == "[":
                    st.exp().src = parsed.address
                elif ch == "]":
                    st.exp().dst = parsed.address
                elif ch == "{":
                    st.mask.src = parsed.address
                else:
                    st.mask.dst = parsed.address
                if parsed.prefix is not None and parsed.prefix != full:
                    m = prefix_mask(parsed.family, parsed.prefix)
                    if ch in "s[":
                        st.mask.src = m
                        options.add("mask-src")
                    else:
                        st.mask.dst = m
                        options.add("mask-dst")
            elif ch == "p":
                options.add("protonum")
                assert arg is not None
                found = find_handler(arg, self.protocols_file)
                if found is None:
                    raise ParameterProblem(f"`{arg}' unsupported protocol")
                h, protonum = found
                self.option_offset += OPTION_OFFSET
                longopts.extend(LongOption(name, 1, code + self.option_offset)
                                for name, code in h.options)
                g.longopts = longopts
                self.handler = h
                st.orig().proto = protonum & 0xFF
            elif ch == "t":
                options.add("timeout")
                tmpl.timeout = atol(arg or "") & 0xFFFFFFFF
            elif ch == "u":
                options.add("status")
                v, n = parse_status(arg or "", warn)
                status |= v
                status_kernel_mask |= n
                if status_kernel_mask == 0:
                    status_kernel_mask = status
                inv.status_negated |= n
                tmpl.status = status
                if inv.mark is not None:
                    inv.mark = (status, inv.mark[1])  # the 1.4.7 quirk
            elif ch == "e":
                options.add("event-mask")
                inv.event_mask = (inv.event_mask or 0) | parse_keywords(arg or "",
                                                                         EVENT_KEYWORDS, warn)
            elif ch == "z":
                options.add("zero")
            elif ch == "a":
                warn(WARN_NAT_RANGE)
            elif ch == "m":
                options.add("mark")
                text = arg or ""
                value, end = strtoul(text, 0)
                mask = (strtoul(text[end + 1:], 0)[0] if text[end:end + 1] == "/"
                        else 0xFFFFFFFF)
                inv.mark = (value & 0xFFFFFFFF, mask & 0xFFFFFFFF)
                inv.mark_kernel = inv.mark
            elif ch == "c":
                options.add("secmark")
                tmpl.secmark = strtoul(arg or "", 0)[0] & 0xFFFFFFFF
            elif ch == "i":
                options.add("id")
                if arg is None:
                    # `--id N` as two words: the reference passes NULL to strtoul and
                    # crashes; we take the next word as the argument.
                    if g.optind >= len(argv):
                        raise ParameterProblem("option `--id' requires an argument")
                    arg = argv[g.optind]
                    g.optind += 1
                tmpl.id = strtoul(arg, 0)[0] & 0xFFFFFFFF
            elif ch == "f":
                options.add("family")
                assert arg is not None
                if arg.startswith("ipv4"):
                    set_family(AF_INET)
                elif arg.startswith("ipv6"):
                    set_family(AF_INET6)
                else:
                    raise ParameterProblem(f"`{arg}' unsupported protocol")
            elif ch in "ngj":
                name = _OPT_NAME[ch]
                options.add(name)
                word = optional_arg()
                if word is not None:
                    addr_text, nat_port = split_nat(word)
                    parsed = address(name, addr_text, False)
                    nat = NatRange(min_ip=parsed.address, min_port=nat_port, max_port=nat_port)
                    if ch in "nj":
                        tmpl.nat_src = nat
                    if ch in "gj":
                        tmpl.nat_dst = nat
            elif ch == "o":
                options.add("output")
                self.output |= parse_keywords(arg or "", OUTPUT_KEYWORDS, warn)
                if self.output & OutputFlag.LABELS:
                    self._labelmap_init(warn)
                if self.output & OutputFlag.SAVE and self.output & _NOT_WITH_SAVE:
                    raise OtherProblem("cannot combine save output with any other output "
                                       "type, use -o save only")
                if self.output & OutputFlag.JSON and self.output & _NOT_WITH_JSON:
                    raise OtherProblem("cannot combine json output with any other output "
                                       "type, use -o json only")
            elif ch == "b":
                options.add("buffer-size")
                inv.buffer_size = atol(arg or "") & 0xFFFFFFFFFFFFFFFF
            elif ch in "w()":
                options.add(_OPT_NAME[ch])
                zone = strtoul(arg or "", 0)[0] & 0xFFFF
                if ch == "w":
                    tmpl.zone = zone
                elif ch == "(":
                    st.orig().zone = zone
                else:
                    st.reply().zone = zone
            elif ch in "l<>":
                options.add(_OPT_NAME[ch])
                self._labelmap_init(warn)
                if "label-add" in options and "label-del" in options:
                    raise OtherProblem("cannot use --label-add and --label-del at the same time")
                if ch == ">":
                    word = optional_arg()
                    if word is None:
                        inv.labels_del_all = True
                        continue
                    arg = word
                bits = self._labels(arg or "")
                if ch == "l":
                    inv.labels = (inv.labels or 0) | bits
                elif ch == "<":
                    inv.labels_add = (inv.labels_add or 0) | bits
                else:
                    inv.labels_del = (inv.labels_del or 0) | bits
            elif ch == "?":
                raise ParameterProblem(f"unknown option `{argv[g.optind - 1]}'")
            elif ch == ":":
                raise ParameterProblem(f"option `{argv[g.optind - 1]}' requires an argument")
            else:  # pragma: no cover - every character of OPTSTRING is handled above
                raise ParameterProblem(f"unknown option `{argv[g.optind - 1]}'")

        # default family (§2.6)
        if family == 0 and command not in (None, Command.LIST, Command.UPDATE, Command.DELETE,
                                           Command.GET, Command.FLUSH, Command.EVENT):
            family = AF_INET
        if "any-nat" in options and ("src-nat" in options or "dst-nat" in options):
            raise ParameterProblem("cannot specify `--src-nat' or `--dst-nat' with `--any-nat'")
        check_command_options(command, options)
        if command != Command.HELP and self.handler is not None:
            self.handler.final_check(st.l4flags, command, st)

        inv.command = command
        inv.table = table
        inv.family = family
        inv.options = frozenset(options)
        h = self.handler
        inv.protocol = h.name if h is not None else None
        inv.protonum = protonum
        if h is not None:
            inv.proto_options = frozenset(name for bit, name in enumerate(h.flag_names)
                                          if st.l4flags & (1 << bit))
        st.finish()
        inv.template = tmpl
        inv.icmp_reply_type = st.icmp_reply_type
        inv.mask = st.mask.freeze()
        inv.exptuple = st.exptuple.freeze() if st.exptuple is not None else None
        if "status" in options:
            inv.status = status
            inv.status_kernel = (status, status_kernel_mask)
        if inv.mark is not None:
            tmpl.mark = inv.mark[0]
        if inv.labels_add is not None:
            tmpl.labels = inv.labels_add
        inv.output = self.output
        inv.label_map = self.label_map
        return inv


# names used in runtime_checks: options that make -L -z illegal
_FILTERS = frozenset({"protonum", "src", "dst", "reply-src", "reply-dst", "mark", "secmark",
                      "status", "id", "zone", "label", "orig-zone", "reply-zone"})


def runtime_checks(inv: Invocation) -> None:
    """The checks the reference makes when it starts running the command (after the
    socket is set up and, for -E, after the ``-b`` NOTICE): ``-z`` with filters and
    ``--mask-src``/``--mask-dst`` without ``-s``/``-d``. Not made for ``-R`` lines."""
    listing = inv.command == Command.LIST and inv.table == Table.CONNTRACK
    if listing and "zero" in inv.options and inv.options & _FILTERS:
        raise ParameterProblem("Can't use -z with filtering parameters")
    if listing or inv.command in (Command.DELETE, Command.UPDATE, Command.EVENT):
        if "mask-src" in inv.options and "src" not in inv.options:
            raise ParameterProblem("Can't use --mask-src without --src")
        if "mask-dst" in inv.options and "dst" not in inv.options:
            raise ParameterProblem("Can't use --mask-dst without --dst")


def parse_command_line(argv: list[str], *, stderr: TextIO | None = None,
                       stdin: BinaryIO | None = None, label_file: str | None = None,
                       protocols_file: str | None = None,
                       environ: Mapping[str, str] | None = None) -> Invocation | Batch:
    """Parse a complete ``conntrack`` command line (``argv[0]`` = program name).

    ``-R FILE``/``--load-file FILE`` as the first argument (with a file argument) gives a
    :class:`Batch` (every line parsed, commands checked); anything else one
    :class:`Invocation`. Warnings are written to ``stderr`` (default ``sys.stderr``)
    as they happen; problems raise :class:`~.errors.CliError`. The run-time checks of
    :func:`runtime_checks` are not made here.
    """
    parser = Parser(stderr=stderr, label_file=label_file, protocols_file=protocols_file,
                    environ=environ)
    if len(argv) > 2 and argv[1] in ("-R", "--load-file"):
        from .batch import parse_batch
        return parse_batch(parser, argv[0], argv[2], stdin)
    return parser.parse(argv)
