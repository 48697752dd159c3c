"""Layer-4 protocol handlers of ``conntrack``: ``tcp udp udplite sctp dccp icmp icmpv6
gre`` and the fall-back ``unknown``.

A :class:`Handler` holds what ``-p NAME`` brings: its long options (name and the code
its parser switches on — several handlers share codes, and after ``-p A -p B`` an
option found in A's table is handed to B's parser with A's code, as in the reference),
the parser of those options, the option/command matrix with its tuple-pair rule (§5.2,
§5.3), the final check (which also adds the TCP window flags to the template), and
the lines of ``-h -p NAME``. :func:`find_handler` resolves a ``-p`` argument (§4.2).
"""
from __future__ import annotations

from ctnetlink.constants import ICMP_REPLY_TYPES, IPPROTO_ICMP, IPPROTO_ICMPV6, NO_ICMP_REPLY

from .errors import ParameterProblem
from .invocation import Command
from .libc import atoi, strncasecmp_prefix, ascii_lower, strtoul
from .netdb import getprotobyname

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .parse import LineState

# Column order of the protocol matrices (the other commands allow no protocol option).
_COLUMNS = (Command.LIST, Command.GET, Command.DELETE, Command.CREATE, Command.ADD,
            Command.UPDATE, Command.EVENT, Command.EXP_GET, Command.EXP_DELETE,
            Command.EXP_CREATE)
_SYM = {"o": 2, "R": 1, ".": 0, "T": 3}


def _matrix(rows: dict[str, str]) -> tuple[tuple[str, ...], dict[Command, tuple[int, ...]]]:
    """Rows "name: L G D I A U E Gx Dx Ix" -> (flag names in bit order, per-command row)."""
    names = tuple(rows)
    table: dict[Command, list[int]] = {c: [0] * len(names) for c in Command}
    for bit, name in enumerate(names):
        for col, sym in zip(_COLUMNS, rows[name].split()):
            table[col][bit] = _SYM[sym]
    return names, {c: tuple(v) for c, v in table.items()}


def opt_check(given: int, row: tuple[int, ...], names: tuple[str, ...],
              coupled: tuple[int, ...]) -> int | None:
    """``generic_opt_check``: raise for an illegal/missing option (bit order); return
    None when the row has no tuple-pair entry or a coupled pair is complete, else the
    index of the first partially given pair (-1 if none is given at all)."""
    special = False
    for bit, entry in enumerate(row):
        if not given & (1 << bit):
            if entry == 1:
                raise ParameterProblem(f"You need to supply the `--{names[bit]}' option for "
                                       "this command")
        elif entry == 0:
            raise ParameterProblem(f"Illegal option `--{names[bit]}' with this command")
        if entry == 3:
            special = True
    if not special:
        return None
    matching = -1
    for i, flags in enumerate(coupled):
        if given & flags == flags:
            return None
        if matching == -1 and given & flags:
            matching = i
    return matching


class Handler:
    """One protocol handler (see the module docstring)."""

    def __init__(self, name: str, protonum: int, options: tuple[tuple[str, int], ...],
                 matrix: dict[str, str], pair_messages: tuple[str, str] | None,
                 parse: Callable[[Handler, int, str, LineState], None],
                 help_lines: tuple[str, ...]) -> None:
        self.name = name
        self.protonum = protonum
        self.options = options
        self.flag_names, self.rows = _matrix(matrix)
        self.pair_messages = pair_messages
        self._parse = parse
        self.help_lines = help_lines
        # bits of the coupled pairs: original (bits 0,1) and reply (bits 2,3)
        self.coupled = (0b0011, 0b1100)

    def parse(self, code: int, arg: str, st: LineState) -> None:
        """Handle a protocol option given with ``code`` (possibly another handler's)."""
        self._parse(self, code, arg, st)

    def final_check(self, flags: int, command: Command | None, st: LineState) -> None:
        """The handler's check after parsing (§5.2/§5.3) and its template additions."""
        row = self.rows[command] if command is not None else (0,) * len(self.flag_names)
        partial = opt_check(flags, row, self.flag_names, self.coupled)
        if partial is not None and self.pair_messages is not None:
            raise ParameterProblem(self.pair_messages[1 if partial == 1 else 0])
        if self.name == "tcp":
            tcp = st.tcp()
            closing = tcp.state is not None and tcp.state >= 7
            f = 0x0E if closing else 0x0A
            tcp.flags_orig = (f, f)
            tcp.flags_reply = (f, f)
        elif self.name == "unknown" and st.reply_l3_set():
            st.reply().proto = st.template_proto()

    def __repr__(self) -> str:
        return f"<Handler {self.name} ({self.protonum})>"


# --- value conversions (no validation, as in the reference) ---------------------------
def port(arg: str) -> int:
    """``htons(atoi(arg))``: ports, ICMP ids."""
    return atoi(arg) & 0xFFFF


def vtag(arg: str) -> int:
    """SCTP verification tags: the reference stores ``htonl(atoi(arg))`` and the library
    converts once more, so the big-endian attribute carries the byte-swapped number
    (``--orig-vtag 5`` sends 0x05000000). The template holds that wire value."""
    return int.from_bytes((atoi(arg) & 0xFFFFFFFF).to_bytes(4, "little"), "big")


def key(arg: str) -> int:
    """GRE keys: ``strtoul(arg, NULL, 0)`` truncated to 16 bits."""
    return strtoul(arg, 0)[0] & 0xFFFF


# --- state tables -----------------------------------------------------------------------
TCP_STATES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
              "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2")
SCTP_STATES = ("NONE", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED",
               "SHUTDOWN_SENT", "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT")
DCCP_STATES = ("NONE", "REQUEST", "RESPOND", "PARTOPEN", "OPEN", "CLOSEREQ", "CLOSING",
               "TIMEWAIT", "IGNORE", "INVALID")


def _tcp_state(arg: str) -> int:
    if arg == "LISTEN":
        return 9
    if arg in TCP_STATES:
        return TCP_STATES.index(arg)
    raise ParameterProblem(f"unknown TCP state `{arg}'")


def _sctp_state(arg: str) -> int:
    if arg in SCTP_STATES:
        return SCTP_STATES.index(arg)
    # The reference crashes here (SIGSEGV); report what it meant to report.
    raise ParameterProblem(f"unknown SCTP state `{arg}'")


def _dccp_state(arg: str) -> int:
    if arg in DCCP_STATES:
        return DCCP_STATES.index(arg)
    raise ParameterProblem(f"Unknown DCCP state `{arg}'")


def _dccp_role(arg: str) -> int:
    if strncasecmp_prefix(arg, "client"):
        return 0
    if strncasecmp_prefix(arg, "server"):
        return 1
    raise ParameterProblem(f"Unknown DCCP role `{arg}'")


# --- parsers ---------------------------------------------------------------------------
def _ports_common(h: Handler, code: int, arg: str, st: LineState, base: str) -> bool:
    """Codes 1-6 shared by the port protocols (base '1' or chr(1)); True if handled."""
    k = code - ord(base)
    if not 0 <= k <= 5:
        return False
    p = port(arg)
    if k == 0:
        st.orig().sport = p
        st.orig().proto = h.protonum
    elif k == 1:
        st.orig().dport = p
        st.orig().proto = h.protonum
    elif k == 2:
        st.reply().sport = p
        st.reply().proto = h.protonum
    elif k == 3:
        st.reply().dport = p
        st.reply().proto = h.protonum
    elif k == 4:
        st.mask.sport = p
        st.mask.proto = h.protonum
    else:
        st.mask.dport = p
        st.mask.proto = h.protonum
    st.l4flags |= 1 << k
    return True


def _exp_port(st: LineState, arg: str, dst: bool, proto: int | None) -> None:
    """--tuple-port-*: the expected tuple's port; ``proto`` None = the 1.4.7 defect of
    tcp/sctp/dccp, which store ``port >> 8`` as the expected tuple's protocol."""
    p = port(arg)
    t = st.exp()
    if dst:
        t.dport = p
    else:
        t.sport = p
    t.proto = (p >> 8) if proto is None else proto


def _parse_tcp(h: Handler, code: int, arg: str, st: LineState) -> None:
    if _ports_common(h, code, arg, st, "1"):
        return
    if code == ord("7"):
        st.tcp().state = _tcp_state(arg)
        st.l4flags |= 1 << 6
    elif code in (ord("8"), ord("9")):
        _exp_port(st, arg, code == ord("9"), None)
        st.l4flags |= 1 << (7 if code == ord("8") else 8)


def _parse_udp(h: Handler, code: int, arg: str, st: LineState) -> None:
    if _ports_common(h, code, arg, st, "1"):
        return
    if code in (ord("7"), ord("8")):
        _exp_port(st, arg, code == ord("8"), h.protonum)
        st.l4flags |= 1 << (6 if code == ord("7") else 7)


def _parse_sctp(h: Handler, code: int, arg: str, st: LineState) -> None:
    if _ports_common(h, code, arg, st, "\x01"):
        return
    if code == 7:
        st.sctp().state = _sctp_state(arg)
        st.l4flags |= 1 << 6
    elif code in (8, 9):
        _exp_port(st, arg, code == 9, None)
        st.l4flags |= 1 << (code - 1)
    elif code == 10:
        st.sctp().vtag_orig = vtag(arg)
        st.l4flags |= 1 << 9
    elif code == 11:
        st.sctp().vtag_reply = vtag(arg)
        st.l4flags |= 1 << 10


def _parse_dccp(h: Handler, code: int, arg: str, st: LineState) -> None:
    if _ports_common(h, code, arg, st, "\x01"):
        return
    if code == 7:
        st.dccp().state = _dccp_state(arg)
        st.l4flags |= 1 << 6
    elif code in (8, 9):
        _exp_port(st, arg, code == 9, None)
        st.l4flags |= 1 << (code - 1)
    elif code == 10:
        st.dccp().role = _dccp_role(arg)
        st.l4flags |= 1 << 9


def _parse_gre(h: Handler, code: int, arg: str, st: LineState) -> None:
    k = code - ord("1")
    if not 0 <= k <= 7:
        return
    v = key(arg)
    if k < 6:
        t, attr = ((st.orig(), "sport"), (st.orig(), "dport"), (st.reply(), "sport"),
                   (st.reply(), "dport"), (st.mask, "sport"), (st.mask, "dport"))[k]
        setattr(t, attr, v)
        t.proto = h.protonum
    else:
        t = st.exp()
        setattr(t, "sport" if k == 6 else "dport", v)
        t.proto = h.protonum
    st.l4flags |= 1 << k


def icmp_reply_type(icmp_type: int, family: int | None) -> int:
    """The reply type libnetfilter_conntrack stores when the type is set: it looks the
    type up for the family known at that moment (255 = none, also without a family)."""
    proto = {2: IPPROTO_ICMP, 10: IPPROTO_ICMPV6}.get(family)  # type: ignore[arg-type]
    if proto is None:
        return NO_ICMP_REPLY
    return ICMP_REPLY_TYPES[proto].get(icmp_type, NO_ICMP_REPLY)


def _parse_icmp(h: Handler, code: int, arg: str, st: LineState) -> None:
    k = code - ord("1")
    if not 0 <= k <= 2:
        return
    o = st.orig()
    if k == 0:
        o.icmp_type = atoi(arg) & 0xFF
        st.icmp_reply_type = icmp_reply_type(o.icmp_type, o.family)
    elif k == 1:
        o.icmp_code = atoi(arg) & 0xFF
    else:
        o.icmp_id = port(arg)
    o.proto = h.protonum
    if st.reply_l3_set():
        st.reply().proto = h.protonum
    st.l4flags |= 1 << k


def _parse_none(h: Handler, code: int, arg: str, st: LineState) -> None:
    return None


# --- the handlers ---------------------------------------------------------------------
_PORT_HELP = (
    "  --orig-port-src\t\toriginal source port",
    "  --orig-port-dst\t\toriginal destination port",
    "  --reply-port-src\t\treply source port",
    "  --reply-port-dst\t\treply destination port",
    "  --mask-port-src\t\tmask source port",
    "  --mask-port-dst\t\tmask destination port",
    "  --tuple-port-src\t\texpectation tuple src port",
    "  --tuple-port-src\t\texpectation tuple dst port",
)
_PORT_ROWS = {
    "sport":          "o T o T T o o R R R",
    "dport":          "o T o T T o o R R R",
    "reply-port-src": "o T o T T o o R R .",
    "reply-port-dst": "o T o T T o o R R .",
    "mask-port-src":  ". . . . . . . . . R",
    "mask-port-dst":  ". . . . . . . . . R",
}
_STATE_ROW = "o o o R R o o . . ."
_TUPLE_PORT_ROWS = {
    "tuple-port-src": ". . . . . . . . . R",
    "tuple-port-dst": ". . . . . . . . . R",
}
_PAIR_PORTS = ("you have to specify `--sport' and `--dport'",
               "you have to specify `--reply-src-port' and `--reply-dst-port'")


def _chars(*pairs: tuple[str, str]) -> tuple[tuple[str, int], ...]:
    return tuple((name, ord(code)) for name, code in pairs)


TCP = Handler(
    "tcp", 6,
    _chars(("orig-port-src", "1"), ("sport", "1"), ("orig-port-dst", "2"), ("dport", "2"),
           ("reply-port-src", "3"), ("reply-port-dst", "4"), ("mask-port-src", "5"),
           ("mask-port-dst", "6"), ("state", "7"), ("tuple-port-src", "8"),
           ("tuple-port-dst", "9")),
    {**_PORT_ROWS, "state": _STATE_ROW, **_TUPLE_PORT_ROWS}, _PAIR_PORTS, _parse_tcp,
    _PORT_HELP + ("  --state\t\t\tTCP state, fe. ESTABLISHED",))

_UDP_OPTIONS = _chars(("orig-port-src", "1"), ("sport", "1"), ("orig-port-dst", "2"),
                      ("dport", "2"), ("reply-port-src", "3"), ("reply-port-dst", "4"),
                      ("mask-port-src", "5"), ("mask-port-dst", "6"),
                      ("tuple-port-src", "7"), ("tuple-port-dst", "8"))
UDP = Handler("udp", 17, _UDP_OPTIONS, {**_PORT_ROWS, **_TUPLE_PORT_ROWS}, _PAIR_PORTS,
              _parse_udp, _PORT_HELP)
UDPLITE = Handler(
    "udplite", 136,
    _chars(("orig-port-src", "1"), ("orig-port-dst", "2"), ("reply-port-src", "3"),
           ("reply-port-dst", "4"), ("mask-port-src", "5"), ("mask-port-dst", "6"),
           ("tuple-port-src", "7"), ("tuple-port-dst", "8"), ("sport", "1"), ("dport", "2")),
    {**_PORT_ROWS, **_TUPLE_PORT_ROWS}, _PAIR_PORTS, _parse_udp, _PORT_HELP)

SCTP = Handler(
    "sctp", 132,
    (("orig-port-src", 1), ("orig-port-dst", 2), ("reply-port-src", 3), ("reply-port-dst", 4),
     ("mask-port-src", 5), ("mask-port-dst", 6), ("state", 7), ("tuple-port-src", 8),
     ("tuple-port-dst", 9), ("orig-vtag", 10), ("reply-vtag", 11), ("sport", 1),
     ("dport", 2)),
    {**_PORT_ROWS, "state": _STATE_ROW, **_TUPLE_PORT_ROWS,
     "orig-vtag": ". o . R R o . . . R", "reply-vtag": ". o . R R o . . . R"},
    _PAIR_PORTS, _parse_sctp,
    _PORT_HELP + ("  --state\t\t\tSCTP state, fe. ESTABLISHED",
                  "  --orig-vtag\t\toriginal verification tag",
                  "  --reply-vtag\t\treply verification tag"))

DCCP = Handler(
    "dccp", 33,
    (("orig-port-src", 1), ("orig-port-dst", 2), ("reply-port-src", 3), ("reply-port-dst", 4),
     ("mask-port-src", 5), ("mask-port-dst", 6), ("state", 7), ("tuple-port-src", 8),
     ("tuple-port-dst", 9), ("sport", 1), ("dport", 2), ("role", 10)),
    {**_PORT_ROWS, "state": _STATE_ROW, **_TUPLE_PORT_ROWS, "role": ". . . R R . . . . R"},
    ("you have to specify `--sport' and `--dport'",
     "you have to specify `--reply-port-src' and `--report-port-dst'"),
    _parse_dccp, _PORT_HELP + ("  --state\t\t\tDCCP state, fe. RESPOND",))

GRE = Handler(
    "gre", 47,
    _chars(("orig-key-src", "1"), ("srckey", "1"), ("orig-key-dst", "2"), ("dstkey", "2"),
           ("reply-key-src", "3"), ("reply-key-dst", "4"), ("mask-key-src", "5"),
           ("mask-key-dst", "6"), ("tuple-key-src", "7"), ("tuple-key-dst", "8")),
    {"srckey": "o T o T T o o R R R", "dstkey": "o T o T T o o R R R",
     "reply-key-src": "o T o T T o o R R R", "reply-key-dst": "o T o T T o o R R R",
     "mask-key-src": ". . . . . . . . . R", "mask-key-dst": ". . . . . . . . . R",
     "tuple-key-src": ". . . . . . . . . R", "tuple-key-dst": ". . . . . . . . . R"},
    ("you have to specify `--srckey' and `--dstkey'",
     "you have to specify `--reply-src-key' and `--reply-dst-key'"),
    _parse_gre,
    ("  --orig-key-src\t\toriginal source key",
     "  --orig-key-dst\t\toriginal destination key",
     "  --reply-key-src\t\treply source key",
     "  --reply-key-dst\t\treply destination key",
     "  --mask-key-src\t\tmask source key",
     "  --mask-key-dst\t\tmask destination key",
     "  --tuple-key-src\t\texpectation tuple src key",
     "  --tuple-key-src\t\texpectation tuple dst key"))

_ICMP_ROWS = ("o R o R R o o . . .", "o R o R R o o . . .", "o o o o o o o . . .")
ICMP = Handler(
    "icmp", 1, _chars(("icmp-type", "1"), ("icmp-code", "2"), ("icmp-id", "3")),
    dict(zip(("icmp-type", "icmp-code", "icmp-id"), _ICMP_ROWS)), None, _parse_icmp,
    ("  --icmp-type\t\t\ticmp type", "  --icmp-code\t\t\ticmp code", "  --icmp-id\t\t\ticmp id"))
ICMPV6 = Handler(
    "icmpv6", 58, _chars(("icmpv6-type", "1"), ("icmpv6-code", "2"), ("icmpv6-id", "3")),
    dict(zip(("icmpv6-type", "icmpv6-code", "icmpv6-id"), _ICMP_ROWS)), None, _parse_icmp,
    ("  --icmpv6-type\t\t\ticmpv6 type", "  --icmpv6-code\t\t\ticmpv6 code",
     "  --icmpv6-id\t\t\ticmpv6 id"))

UNKNOWN = Handler("unknown", 0, (), {}, None, _parse_none, ("  no options (unsupported)",))

# Registration order of the reference (it only matters for lookups by name/number).
HANDLERS = (TCP, UDP, UDPLITE, SCTP, DCCP, ICMP, ICMPV6, GRE)
BY_NAME = {h.name: h for h in HANDLERS + (UNKNOWN,)}


def find_handler(arg: str, protocols_file: str | None = None) -> tuple[Handler, int] | None:
    """Resolve a ``-p`` argument to (handler, protocol number) or None (§4.2)."""
    lowered = ascii_lower(arg)
    for h in HANDLERS:
        if h.name == lowered:
            return h, h.protonum
    number = getprotobyname(arg, protocols_file)
    if number is not None:
        return UNKNOWN, number
    value, end = strtoul(arg, 0)
    if end == 0 or end != len(arg) or value > 255:
        return None
    for h in HANDLERS:
        if h.protonum == value:
            return h, value
    return UNKNOWN, value
