"""``conntrackd.conf`` -> a frozen :class:`Config`, read exactly as conntrackd 1.4.7 reads it.

The reference reads the file with a flex scanner and a bison grammar; this module
reproduces both: the scanner's tokens (longest match, rule order on ties, case rules,
``#`` comments that need a newline, paths that end only at a space, a quote or a newline,
hex-looking words that are addresses), the grammar (every section, block and keyword,
deprecated aliases), the semantic actions in the reference's order (warnings as they are
met, fatal errors where the reference exits), the line numbers of syntax errors and the
defaults filled in after parsing. A file the C daemon accepts is accepted with the same
warnings, one it rejects raises :class:`ConfigError` with the same message and exit
status. Interface names resolve (``if_nametoindex``) in the network namespace of the
calling thread, as the reference resolves them in its own.

Nothing here prints: warnings travel as ``(level, text)`` pairs in
:attr:`Config.warnings` (and in :attr:`ConfigError.warnings` for the ones met before a
fatal error); the program logs them. Extension (ours only): the top-level ``Metrics``
section (see :class:`Metrics`), which the C parser rejects as a syntax error.
"""
from __future__ import annotations

import os
import re
import socket

DEFAULT_CONFIG_PATH = "/etc/conntrackd/conntrackd.conf"
DEFAULT_LOCKFILE = "/var/lock/conntrackd.lock"
DEFAULT_LOGFILE = "/var/log/conntrackd.log"
DEFAULT_STATS_LOGFILE = "/var/log/conntrackd-stats.log"
FILENAME_MAXLEN = 256
"""Limit of LogFile/LockFile paths (longer: fatal; exactly 256: cut to 255 as snprintf does)."""
UNIX_PATH_MAX = 108
MULTICHANNEL_MAX = 4
HELPER_NAME_LEN = 16

AF_INET = 2
AF_INET6 = 10
IPPROTO_TCP = 6
IPPROTO_UDP = 17

LOG_DAEMON = 3 << 3
SYSLOG_FACILITIES = {"daemon": LOG_DAEMON, **{f"local{i}": (16 + i) << 3 for i in range(8)}}

TCP_STATES = {"SYN_SENT": 1, "SYN_RECV": 2, "ESTABLISHED": 3, "FIN_WAIT": 4,
              "CLOSE_WAIT": 5, "LAST_ACK": 6, "TIME_WAIT": 7, "CLOSE": 8, "LISTEN": 9}
"""Filter state keywords -> conntrack TCP state numbers (``CLOSED`` is ``CLOSE``)."""

HELPERS = {"amanda": (IPPROTO_UDP,), "dhcpv6": (IPPROTO_UDP,), "ftp": (IPPROTO_TCP,),
           "mdns": (IPPROTO_UDP,), "rpc": (IPPROTO_TCP, IPPROTO_UDP),
           "sane": (IPPROTO_TCP,), "slp": (IPPROTO_UDP,),
           "ssdp": (IPPROTO_TCP, IPPROTO_UDP), "tftp": (IPPROTO_UDP,), "tns": (IPPROTO_TCP,)}
"""User-space helpers the reference build ships (``ct_helper_NAME.so``) and their layer 4
protocols; each has one expectation policy named like the helper."""

METRICS_DEFAULT_PORT = 9466

Diagnostic = tuple  # (level, text): level is "warning" (or "ERROR" for fatal ones)


# --- the configuration -------------------------------------------------------------

class FrozenInstanceError(AttributeError):
    """Assignment to a field of a configuration object."""


class Record:
    """Base of the configuration classes: immutable, slotted records with the dataclass
    conveniences (keyword or positional construction with defaults, ``==``, ``hash``,
    ``repr``, :meth:`replace`). Declared like dataclasses (see :func:`record`), built
    without ``dataclasses`` so that ``conntrackd -s`` starts fast."""
    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _defaults: dict = {}
    _no_compare: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs) -> None:
        if len(args) > len(self._fields):
            raise TypeError(f"{type(self).__name__}() takes {len(self._fields)} arguments")
        values = dict(zip(self._fields, args))
        for k, v in kwargs.items():
            if k not in self._fields or k in values:
                raise TypeError(f"{type(self).__name__}() got an unexpected or repeated "
                                f"argument {k!r}")
            values[k] = v
        for name in self._fields:
            if name in values:
                v = values[name]
            elif name in self._defaults:
                v = self._defaults[name]
            else:
                raise TypeError(f"{type(self).__name__}() missing argument {name!r}")
            object.__setattr__(self, name, v)

    def __setattr__(self, name, value):
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name):
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def _key(self) -> tuple:
        return tuple(getattr(self, f) for f in self._fields if f not in self._no_compare)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({inner})"

    def replace(self, **changes):
        """A copy with some fields changed (``dataclasses.replace``)."""
        return type(self)(**{**{f: getattr(self, f) for f in self._fields}, **changes})

    def asdict(self) -> dict:
        """Fields as a dict (nested records stay records)."""
        return {f: getattr(self, f) for f in self._fields}


def record(cls):
    """Class decorator: annotated class attributes become the fields (in order) of a
    slotted :class:`Record`, their values the defaults."""
    fields = tuple(cls.__dict__.get("__annotations__", {}))
    ns = {k: v for k, v in cls.__dict__.items()
          if k not in fields and k not in ("__dict__", "__weakref__")}
    ns["__slots__"] = fields
    ns["_fields"] = fields
    ns["_defaults"] = {f: cls.__dict__[f] for f in fields if f in cls.__dict__}
    return type(cls.__name__, (Record,), ns)


@record
class Unix:
    """``UNIX { Path ... }``: the control socket; ``path == ""`` when none is configured
    (the reference then binds an unreachable autobound address)."""
    path: str = ""


@record
class Scheduler:
    """``Scheduler { Type ... Priority ... }``. ``policy`` is ``None`` when no ``Type`` was
    given: the daemon then uses SCHED_RR at priority 99 and ignores ``priority``."""
    policy: str | None = None  # "RR" or "FIFO"
    priority: int = 0


@record
class Filter:
    """``Filter [From Userspace|Kernelspace] { ... }``: the three filter sets.

    A policy is ``"accept"`` or ``"ignore"`` (the last one given for that set) or
    ``None`` when the set never appeared; the lists accumulate over every Filter block.
    Addresses are packed (4 or 16 bytes); networks are ``(packed, prefix length)`` as
    written (the reference computes ``/0`` masks with a 32-bit shift, which x86 turns
    into an all-ones mask)."""
    kernelspace: bool = False
    protocol_policy: str | None = None
    protocols: tuple[int, ...] = ()
    address_policy: str | None = None
    ipv4_hosts: tuple[bytes, ...] = ()
    ipv4_networks: tuple[tuple[bytes, int], ...] = ()
    ipv6_hosts: tuple[bytes, ...] = ()
    ipv6_networks: tuple[tuple[bytes, int], ...] = ()
    state_policy: str | None = None
    tcp_states: tuple[int, ...] = ()


@record
class Metrics:
    """Extension (ours only): ``Metrics { Address IP  Port N  Path /PATH }`` at top level
    serves Prometheus text exposition over HTTP. Defaults: 127.0.0.1, port 9466,
    ``/metrics``. The C daemon rejects the section (syntax error at ``Metrics``)."""
    address: str = "127.0.0.1"
    port: int = METRICS_DEFAULT_PORT
    path: str = "/metrics"


@record
class General:
    """The ``General`` section with every default of the reference applied."""
    hashsize: int = 65536
    hashlimit: int = 262144
    logfile: str | None = None
    syslog_facility: int | None = None
    lockfile: str = DEFAULT_LOCKFILE
    unix: Unix = Unix()
    netlink_buffer_size: int = 0
    netlink_buffer_size_max_growth: int = 0
    netlink_overrun_resync: int = 30
    """Seconds; -1 when ``NetlinkOverrunResync off``."""
    netlink_events_reliable: bool = False
    poll_secs: int | None = None
    """Polling mode every N seconds; ``None``: event mode."""
    event_iteration_limit: int = 100
    filter: Filter | None = None
    """``None`` when no Filter block was given."""
    scheduler: Scheduler = Scheduler()
    systemd: bool = True
    commit_steps: int = 8192


@record
class Channel:
    """One dedicated link (``Multicast``, ``UDP`` or ``TCP`` block), in file order.

    ``address`` is the multicast group (Multicast) or the local address the receiver
    binds (UDP/TCP); ``dest_address`` the peer (UDP/TCP); ``interface_address`` the
    Multicast ``IPv4_interface``. ``family`` is AF_INET/AF_INET6 or 0 when no address
    set it. ``port`` is ``Group`` (Multicast) or ``Port``. ``ifindex`` is the index of
    ``interface`` in the parsing namespace (0 when unknown); ``ifindex6`` is the
    Multicast IPv6 interface index the reference records (see spec §3.6.1)."""
    transport: str  # "multicast", "udp" or "tcp"
    default: bool = False
    interface: str = ""
    ifindex: int = 0
    ifindex6: int = 0
    family: int = 0
    address: str | None = None
    dest_address: str | None = None
    interface_address: str | None = None
    port: int = 0
    sndbuf: int = 0
    rcvbuf: int = 0
    checksum: bool = True


@record
class Sync:
    """The ``Sync`` section: mode, timers, channels, options.

    ``mode`` is the effective mode (``"ftfw"``, ``"alarm"``, ``"notrack"``); when no
    Mode block was given ``mode_given`` is False and the daemon warns and uses FTFW.
    ``default_channel`` indexes ``channels`` (the last ``Default`` one, else 0).
    ``expectation_helpers`` is ``None`` for ``ExpectationSync on`` (all helpers)."""
    mode: str = "ftfw"
    mode_given: bool = False
    refresh_time: int = 60
    cache_timeout: int = 180
    commit_timeout: int = 0
    purge_timeout: int = 60
    resend_queue_size: int = 131072
    ack_window_size: int = 300
    disable_internal_cache: bool = False
    disable_external_cache: bool = False
    startup_resync: bool = False
    transport: str | None = None
    channels: tuple[Channel, ...] = ()
    default_channel: int = 0
    error_queue_length: int = 128
    tcp_window_tracking: bool = False
    expectation_sync: bool = False
    expectation_helpers: tuple[str, ...] | None = None


@record
class Stats:
    """The ``Stats`` section (statistics mode): destroyed-flow log destinations."""
    logfile: str | None = None
    syslog_facility: int | None = None


@record
class HelperPolicy:
    name: str
    expect_max: int = 0
    expect_timeout: int = 0


@record
class HelperType:
    """``Type NAME inet|inet6 tcp|udp { QueueNum QueueLen Policy }``."""
    name: str
    l3proto: int
    l4proto: int
    queue_num: int = 0
    queue_len: int = 0
    policies: tuple[HelperPolicy, ...] = ()


@record
class Helper:
    """The ``Helper`` section (user-space helpers over NFQUEUE)."""
    setup: bool = False
    types: tuple[HelperType, ...] = ()


@record
class Config:
    """A parsed ``conntrackd.conf``: ``sync``/``stats``/``helper`` are ``None`` when the
    section is absent (no section at all: an idle daemon with only its UNIX socket)."""
    path: str = DEFAULT_CONFIG_PATH
    general: General = General()
    sync: Sync | None = None
    stats: Stats | None = None
    helper: Helper | None = None
    metrics: Metrics | None = None
    warnings: tuple[Diagnostic, ...] = ()
    _no_compare = ("warnings",)

    @property
    def mode(self) -> str | None:
        """``"sync"``, ``"stats"`` or ``None`` (helper-only or idle daemon)."""
        if self.sync is not None:
            return "sync"
        if self.stats is not None:
            return "stats"
        return None


class ConfigError(Exception):
    """A file the reference refuses: ``message`` as it logs it (an ERROR line) or, when
    ``raw``, as it prints it bare on stderr (flex's read failure), and its exit status."""

    def __init__(self, message: str, status: int = 1, *, raw: bool = False,
                 warnings: tuple[Diagnostic, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.raw = raw
        self.warnings = warnings


# --- C conversions --------------------------------------------------------------------

def atoi(text: str) -> int:
    """glibc ``atoi``: ``(int) strtol(text, NULL, 10)`` (saturates at the long range, then
    wraps to 32 bits)."""
    m = re.match(r"[ \t\n\r\f\v]*([-+]?[0-9]+)", text)
    if not m:
        return 0
    v = max(-(1 << 63), min((1 << 63) - 1, int(m.group(1))))
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _u32(v: int) -> int:
    return v & 0xFFFFFFFF


def _cstr(text: str) -> str:
    """A scanned text as the C string it becomes (cut at the first NUL)."""
    return text.split("\0", 1)[0]


def _fs(text: str) -> str:
    """Scanner text (one char per byte) -> a str for file-system use and messages."""
    return os.fsdecode(text.encode("latin-1"))


def inet_aton(text: str) -> bytes | None:
    try:
        return socket.inet_aton(text)
    except (OSError, ValueError):
        return None


def inet_pton6(text: str) -> bytes | None:
    try:
        return socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return None


def if_nametoindex(name: str) -> int:
    try:
        return socket.if_nametoindex(name)
    except (OSError, ValueError, UnicodeError):
        return 0


# --- the scanner ------------------------------------------------------------------------

KEYWORDS = {k: k for k in (
    "UNIX IPv4_address IPv6_address IPv4_Destination_Address IPv6_Destination_Address "
    "IPv4_interface IPv6_interface Interface Multicast UDP TCP HashSize RefreshTime "
    "CacheTimeout CommitTimeout HashLimit Path Backlog Group Port LogFile Syslog LockFile "
    "General Sync Stats NetlinkBufferSize NetlinkBufferSizeMaxGrowth Mode ResendQueueSize "
    "Checksum ACKWindowSize for SYN_SENT SYN_RECV ESTABLISHED FIN_WAIT CLOSE_WAIT LAST_ACK "
    "TIME_WAIT CLOSE LISTEN SndSocketBuffer RcvSocketBuffer Filter Protocol Address State "
    "Accept Ignore PurgeTimeout From Userspace Kernelspace EventIterationLimit Default "
    "PollSecs NetlinkOverrunResync Nice Scheduler Type Priority NetlinkEventsReliable "
    "DisableInternalCache DisableExternalCache Options TCPWindowTracking ExpectationSync "
    "ErrorQueueLength Helper QueueNum QueueLen Policy ExpectMax ExpectTimeout Systemd "
    "StartupResync Setup").split()}
KEYWORDS.update({"SocketBufferSize": "NetlinkBufferSize",
                 "SocketBufferSizeMaxGrown": "NetlinkBufferSizeMaxGrowth",
                 "SocketBufferSizeMaxGrowth": "NetlinkBufferSizeMaxGrowth",
                 "CLOSED": "CLOSE"})
_KW_MAXLEN = max(map(len, KEYWORDS))

ON, OFF, NUMBER, SIGNED, IP, PATH = "$on", "$off", "$number", "$signed", "$ip", "$path"
ALARM, FTFW, NOTRACK, STRING, CHAR, EOF = "$alarm", "$ftfw", "$notrack", "$string", "$char", "$eof"

_HEX = "[0-9a-fA-F]{1,4}"
_IP6_BASE = re.compile(rf"(?:{_HEX}:?){{0,7}}::(?:{_HEX}:?){{0,7}}|(?:{_HEX}:){{0,7}}{_HEX}")
_IP6_CHARS = re.compile(r"[0-9a-fA-F:]+")
_IP4 = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+(?:/[0-9]+)?")
_CIDR = re.compile(r"/[0-9]+")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")
_DIGITS = re.compile(r"[0-9]+")
_SIGNED = re.compile(r"[-+][0-9]+")
_PATHV = re.compile(r'/[^"\n ]*')
_COMMENT = re.compile(r"#[^\n]*(?=\n)")
_WS = re.compile(r"[ \t]+")


def _ci(word: str) -> re.Pattern:
    """flex ``[A|a][B|b]...``: each position also accepts a vertical bar."""
    return re.compile("".join(f"[{c.upper()}|{c.lower()}]" for c in word))


_TRUE = (_ci("yes"), _ci("on"))
_FALSE = (_ci("off"), _ci("no"))
_MODES = ((ALARM, _ci("alarm"), None),
          # the reference's pattern ends in [T|]: a lower-case final t is a STRING
          (ALARM, re.compile(_ci("persisten").pattern + "[T|]"),
           "Now `persistent' mode is called `alarm'. Please, update your conntrackd.conf file."),
          (FTFW, _ci("ftfw"), None),
          (FTFW, _ci("nack"), "Now `nack' mode is called `ftfw'. "
                              "Please, update your conntrackd.conf file.\n"),
          (NOTRACK, _ci("notrack"), None))


class Token:
    __slots__ = ("kind", "text", "line")

    def __init__(self, kind: str, text: str, line: int) -> None:
        self.kind, self.text, self.line = kind, text, line

    def __repr__(self) -> str:
        return f"Token({self.kind!r}, {self.text!r}, {self.line})"


class Scanner:
    """The reference's flex scanner over a file decoded as latin-1 (one char per byte)."""

    def __init__(self, text: str, warn) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.warn = warn

    def _ip6_len(self, pos: int) -> int:
        m = _IP6_CHARS.match(self.text, pos)
        if not m:
            return 0
        for end in range(min(m.end(), pos + 72), pos, -1):
            if _IP6_BASE.fullmatch(self.text, pos, end):
                c = _CIDR.match(self.text, end)
                return (c.end() if c else end) - pos
        return 0

    def next(self) -> Token:
        text, n = self.text, len(self.text)
        while True:
            pos = self.pos
            if pos >= n:
                return Token(EOF, "", self.line)
            ch = text[pos]
            if ch == "\n":
                self.line += 1
                self.pos += 1
                continue
            if ch == "\r":
                self.pos += 1
                continue
            m = _WS.match(text, pos)
            if m:
                self.pos = m.end()
                continue
            # candidates in the scanner's rule order: (length, kind, warning)
            best_len, best_kind, note = 1, CHAR, None
            cands = []
            w = _WORD.match(text, pos)
            if w:
                word = w.group()
                for ln in range(min(len(word), _KW_MAXLEN), 0, -1):
                    kw = KEYWORDS.get(word[:ln])
                    if kw is not None:
                        cands.append((ln, kw, None))
                        break
            for kind, pats in ((ON, _TRUE), (OFF, _FALSE)):
                for p in pats:
                    m = p.match(text, pos)
                    if m:
                        cands.append((m.end() - pos, kind, None))
                        break
            for kind, p in ((NUMBER, _DIGITS), (SIGNED, _SIGNED), (IP, _IP4)):
                m = p.match(text, pos)
                if m:
                    cands.append((m.end() - pos, kind, None))
            ln = self._ip6_len(pos)
            if ln:
                cands.append((ln, IP, None))
            m = _PATHV.match(text, pos)
            if m:
                cands.append((m.end() - pos, PATH, None))
            for kind, p, warning in _MODES:
                m = p.match(text, pos)
                if m:
                    cands.append((m.end() - pos, kind, warning))
            if w:
                cands.append((w.end() - pos, STRING, None))
            m = _COMMENT.match(text, pos)
            if m:
                cands.append((m.end() - pos, "#", None))
            for c in cands:  # longest match; the first rule listed wins a tie
                if c[0] > best_len or (c[0] == best_len and best_kind == CHAR):
                    best_len, best_kind, note = c
            self.pos = pos + best_len
            if best_kind == "#":
                continue
            if best_kind == CHAR and (ch == "\0" or ch >= "\x80"):
                # flex returns yytext[0], a signed char: bison takes <= 0 for end of file
                return Token(EOF, ch, self.line)
            if note is not None:
                self.warn(note)
            return Token(best_kind, text[pos:pos + best_len], self.line)


# --- the grammar ----------------------------------------------------------------------

class _Fatal(Exception):
    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class _ChannelDraft:
    __slots__ = Channel._fields

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, Channel._defaults.get(name, ""))

    def freeze(self) -> Channel:
        return Channel(**{name: getattr(self, name) for name in self.__slots__})


class Parser:
    """The reference's grammar as a recursive descent parser with one token of lookahead
    (read only when the grammar needs it, as bison does), running each rule's action
    where bison reduces it."""

    def __init__(self, text: str) -> None:
        self.warnings: list[Diagnostic] = []
        self.scanner = Scanner(text, self.warning)
        self.tok: Token | None = None
        # general
        self.g: dict = {}
        self.logfile = ""
        self.lockfile = ""
        self.syslog = -1
        self.unix_path = ""
        self.filter: dict | None = None
        self.filter_kernelspace = False
        self.sched_policy: str | None = None
        self.sched_prio = 0
        # sync
        self.sync_seen = False
        self.stats_seen = False
        self.helper_seen = False
        self.s: dict = {}
        self.modes: set[str] = set()
        self.channels: list[_ChannelDraft] = []
        self.current = _ChannelDraft()
        self.channel_type: str | None = None
        self.default_channel = 0
        self.expect: tuple[str, ...] | None = None
        self.expect_on = False
        # stats
        self.stats_logfile = ""
        self.stats_syslog = -1
        # helper
        self.helper_setup = False
        self.helper_types: list[HelperType] = []
        self.helper_stack: list[tuple[str, object]] = []
        self.metrics: dict | None = None

    # --- plumbing ---
    def warning(self, text: str) -> None:
        self.warnings.append(("warning", text))

    def peek(self) -> Token:
        if self.tok is None:
            self.tok = self.scanner.next()
        return self.tok

    def take(self) -> Token:
        tok = self.peek()
        self.tok = None
        return tok

    def syntax_error(self) -> _Fatal:
        tok = self.peek()
        symbol = _fs(_cstr(tok.text))
        return _Fatal(f"parsing config file in line ({self.scanner.line}), "
                      f"symbol '{symbol}': syntax error")

    def expect_kind(self, *kinds: str) -> Token:
        if self.peek().kind not in kinds:
            raise self.syntax_error()
        return self.take()

    def open_block(self) -> None:
        tok = self.peek()
        if tok.kind != CHAR or tok.text != "{":
            raise self.syntax_error()
        self.take()

    def at_close(self) -> bool:
        tok = self.peek()
        if tok.kind == CHAR and tok.text == "}":
            self.take()
            return True
        return False

    def value(self, *kinds: str) -> Token:
        return self.expect_kind(*kinds)

    def number(self) -> int:
        return atoi(self.value(NUMBER).text)

    def boolean(self) -> bool:
        return self.value(ON, OFF).kind == ON

    # --- top level ---
    def parse(self) -> None:
        while True:
            tok = self.peek()
            if tok.kind == EOF:
                return
            handler = {"General": self.general, "Sync": self.sync, "Stats": self.stats,
                       "Helper": self.helper}.get(tok.kind)
            if handler is None and tok.kind == STRING and tok.text == "Metrics":
                handler = self.metrics_section
            if handler is None:
                raise self.syntax_error()
            self.take()
            handler()

    # --- General ---
    def general(self) -> None:
        self.open_block()
        while not self.at_close():
            tok = self.peek()
            k = tok.kind
            if k in ("HashSize", "HashLimit", "NetlinkBufferSize", "NetlinkBufferSizeMaxGrowth",
                     "EventIterationLimit"):
                self.take()
                self.g[k] = self.number()
            elif k == "LogFile":
                self.take()
                v = self.value(ON, OFF, PATH)
                if v.kind == ON:
                    self.logfile = DEFAULT_LOGFILE
                elif v.kind == PATH:
                    self.logfile = self.file_path(v, "LogFile path")
            elif k == "Syslog":
                self.take()
                v = self.value(ON, OFF, STRING)
                if v.kind == ON:
                    self.syslog = LOG_DAEMON
                elif v.kind == OFF:
                    self.syslog = -1
                else:
                    self.syslog_facility(v.text, general=True)
            elif k == "LockFile":
                self.take()
                self.lockfile = self.file_path(self.value(PATH), "LockFile path")
            elif k == "UNIX":
                self.take()
                self.unix()
            elif k == "PollSecs":
                self.take()
                secs = self.number()
                self.g["PollSecs"] = secs
                if secs == 0:
                    raise _Fatal("`PollSecs' clause must be > 0")
            elif k == "Filter":
                self.take()
                self.filter_block()
            elif k == "NetlinkOverrunResync":
                self.take()
                v = self.value(ON, OFF, NUMBER)
                self.g[k] = 30 if v.kind == ON else -1 if v.kind == OFF else atoi(v.text)
            elif k == "NetlinkEventsReliable" or k == "Systemd":
                self.take()
                self.g[k] = self.boolean()
            elif k == "Nice":
                self.take()
                self.value(SIGNED)
                self.warning("deprecated nice configuration, ignoring. The nice value can "
                             "be set externally with nice(1) and renice(1).")
            elif k == "Scheduler":
                self.take()
                self.scheduler()
            else:
                raise self.syntax_error()

    def file_path(self, tok: Token, what: str) -> str:
        path = _cstr(tok.text)
        if len(path) > FILENAME_MAXLEN:
            raise _Fatal(f"{what} is longer than {FILENAME_MAXLEN} characters")
        return _fs(path[:FILENAME_MAXLEN - 1])

    def syslog_facility(self, name: str, *, general: bool) -> None:
        name = _cstr(name)
        fac = SYSLOG_FACILITIES.get(name)
        if fac is None:
            self.warning(f"'{_fs(name)}' is not a known syslog facility, ignoring"
                         + ("" if general else "."))
            return
        if general:
            self.syslog = fac
            other = self.stats_syslog
        else:
            self.stats_syslog = fac
            other = self.syslog
        if other != -1 and other != fac:
            self.warning("conflicting Syslog facility values, defaulting to General")

    def unix(self) -> None:
        self.open_block()
        while not self.at_close():
            k = self.peek().kind
            if k == "Path":
                self.take()
                path = _cstr(self.value(PATH).text)
                if len(path) > UNIX_PATH_MAX - 1:
                    raise _Fatal(f"Path is longer than {UNIX_PATH_MAX - 1} characters")
                self.unix_path = _fs(path)
            elif k == "Backlog":
                self.take()
                self.number()
                self.warning("deprecated unix backlog configuration, ignoring.")
            else:
                raise self.syntax_error()

    def scheduler(self) -> None:
        self.open_block()
        while not self.at_close():
            k = self.peek().kind
            if k == "Type":
                self.take()
                name = _cstr(self.value(STRING).text)
                if name.lower() == "rr":
                    self.sched_policy = "RR"
                elif name.lower() == "fifo":
                    self.sched_policy = "FIFO"
                else:
                    raise _Fatal(f"unknown scheduler `{_fs(name)}'")
            elif k == "Priority":
                self.take()
                prio = self.number()
                self.sched_prio = prio
                if prio < 0 or prio > 99:
                    raise _Fatal("`Priority' must be [0, 99]\n")
            else:
                raise self.syntax_error()

    # --- Filter ---
    def filter_block(self) -> None:
        kernelspace = False
        if self.peek().kind == "From":
            self.take()
            kernelspace = self.value("Userspace", "Kernelspace").kind == "Kernelspace"
        self.open_block()
        if self.filter is None:
            self.filter = {"protocol_policy": None, "protocols": [], "address_policy": None,
                           "ipv4_hosts": [], "ipv4_networks": [], "ipv6_hosts": [],
                           "ipv6_networks": [], "state_policy": None, "tcp_states": []}
        f = self.filter
        while not self.at_close():
            k = self.peek().kind
            if k not in ("Protocol", "Address", "State"):
                raise self.syntax_error()
            self.take()
            policy = "accept" if self.value("Accept", "Ignore").kind == "Accept" else "ignore"
            self.open_block()
            if k == "Protocol":
                while not self.at_close():
                    v = self.value(STRING, "TCP", "UDP")
                    if v.kind == "TCP":
                        f["protocols"].append(IPPROTO_TCP)
                    elif v.kind == "UDP":
                        f["protocols"].append(IPPROTO_UDP)
                    else:
                        proto = _getprotobyname(_cstr(v.text))
                        if proto is None:
                            self.warning("getprotobyname() cannot find protocol "
                                         f"`{_fs(_cstr(v.text))}' in /etc/protocols")
                        else:
                            f["protocols"].append(proto)
                f["protocol_policy"] = policy
            elif k == "Address":
                while not self.at_close():
                    which = self.value("IPv4_address", "IPv6_address").kind
                    ip = _cstr(self.value(IP).text)
                    if which == "IPv4_address":
                        self.filter_ipv4(ip, f)
                    else:
                        self.filter_ipv6(ip, f)
                f["address_policy"] = policy
            else:
                while not self.at_close():
                    while True:
                        k2 = self.peek().kind
                        if k2 in TCP_STATES:
                            self.take()
                            f["tcp_states"].append(TCP_STATES[k2])
                        elif k2 == "for":
                            self.take()
                            self.value("TCP")
                            break
                        else:
                            raise self.syntax_error()
                f["state_policy"] = policy
        self.filter_kernelspace = kernelspace

    def filter_ipv4(self, text: str, f: dict) -> None:
        addr, slash, rest = text.partition("/")
        cidr = 32
        if slash:
            cidr = atoi(rest)
            if _u32(cidr) > 32:
                self.warning(f"{addr}/{cidr} is not a valid network, ignoring")
                return
        packed = inet_aton(addr)
        if packed is None:
            self.warning(f"{addr} is not a valid IPv4, ignoring")
            return
        if slash and cidr < 32:
            net = (packed, cidr)
            if net in f["ipv4_networks"]:
                self.warning(f"netmask {addr} is repeated in the ignore pool")
            else:
                f["ipv4_networks"].append(net)
        elif packed not in f["ipv4_hosts"]:
            f["ipv4_hosts"].append(packed)

    def filter_ipv6(self, text: str, f: dict) -> None:
        addr, slash, rest = text.partition("/")
        cidr = 128
        if slash:
            cidr = atoi(rest)
            if _u32(cidr) > 128:
                self.warning(f"{addr}/{cidr} is not a valid network, ignoring")
                return
        packed = inet_pton6(addr)
        if packed is None:
            self.warning(f"{addr} is not a valid IPv6, ignoring")
            return
        if slash and cidr < 128:
            net = (packed, cidr)
            if net not in f["ipv6_networks"]:
                f["ipv6_networks"].append(net)
        elif packed not in f["ipv6_hosts"]:
            f["ipv6_hosts"].append(packed)

    # --- Sync ---
    def sync(self) -> None:
        self.open_block()
        while not self.at_close():
            k = self.peek().kind
            if k in ("RefreshTime", "CacheTimeout", "CommitTimeout", "PurgeTimeout"):
                self.take()
                self.s[k] = self.number()
            elif k == "Mode":
                self.take()
                self.mode_block()
            elif k in ("Multicast", "UDP", "TCP"):
                self.take()
                self.channel_block(k)
            elif k == "Options":
                self.take()
                self.options()
            else:
                raise self.syntax_error()
        if self.stats_seen:
            raise _Fatal("cannot use both `Stats' and `Sync' clauses in conntrackd.conf")
        self.sync_seen = True

    _MODE_KEYS = {
        FTFW: ("ResendQueueSize", "ACKWindowSize", "CommitTimeout", "PurgeTimeout",
               "DisableExternalCache", "StartupResync"),
        ALARM: ("RefreshTime", "CacheTimeout", "CommitTimeout", "PurgeTimeout"),
        NOTRACK: ("CommitTimeout", "PurgeTimeout", "DisableInternalCache",
                  "DisableExternalCache", "StartupResync"),
    }

    def mode_block(self) -> None:
        mode = self.value(FTFW, ALARM, NOTRACK).kind
        self.open_block()
        keys = self._MODE_KEYS[mode]
        while not self.at_close():
            k = self.peek().kind
            if k not in keys:
                raise self.syntax_error()
            self.take()
            if k.startswith(("Disable", "Startup")):
                self.s[k] = self.boolean()
            else:
                self.s[k] = self.number()
        self.modes.add(mode)

    def _max_links(self) -> None:
        if len(self.channels) >= MULTICHANNEL_MAX:
            raise _Fatal("too many dedicated links in the configuration file "
                         f"(Maximum: {MULTICHANNEL_MAX})")

    def channel_block(self, kind: str) -> None:
        default = False
        if self.peek().kind == "Default":
            self.take()
            default = True
        self.open_block()
        ch = self.current
        transport = kind.lower()
        while not self.at_close():
            k = self.peek().kind
            if kind == "Multicast":
                self.multicast_option(k, ch)
            else:
                self.unicast_option(kind, k, ch)
        if self.channel_type is not None and self.channel_type != transport:
            raise _Fatal(f"cannot use `{kind}' with other dedicated link protocols!")
        self.channel_type = transport
        ch.transport = transport
        ch.default = default
        if default:
            self.default_channel = len(self.channels)
        self.channels.append(ch)
        self.current = _ChannelDraft()

    def _common_channel_option(self, k: str, ch: _ChannelDraft) -> bool:
        if k in ("SndSocketBuffer", "RcvSocketBuffer"):
            self.take()
            v = self.number()
            self._max_links()
            if k == "SndSocketBuffer":
                ch.sndbuf = _u32(v)
            else:
                ch.rcvbuf = _u32(v)
            return True
        if k == "Checksum":
            self.take()
            v = self.boolean()
            self._max_links()
            ch.checksum = v
            return True
        return False

    def multicast_option(self, k: str, ch: _ChannelDraft) -> None:
        if self._common_channel_option(k, ch):
            return
        if k == "IPv4_address":
            self.take()
            ip = _cstr(self.value(IP).text)
            self._max_links()
            if inet_aton(ip) is None:
                self.warning(f"{ip} is not a valid IPv4 address")
                return
            ch.address = ip
            if ch.family == AF_INET6:
                self.warning("your multicast address is IPv4 but is binded to an IPv6 "
                             "interface? Surely, this is not what you want")
                return
            ch.family = AF_INET
        elif k == "IPv6_address":
            self.take()
            ip = _cstr(self.value(IP).text)
            self._max_links()
            if inet_pton6(ip) is None:
                self.warning(f"{ip} is not a valid IPv6 address")
                return
            ch.address = ip
            if ch.family == AF_INET:
                self.warning("your multicast address is IPv6 but is binded to an IPv4 "
                             "interface? Surely this is not what you want")
                return
            ch.family = AF_INET6
            if ch.interface and not ch.ifindex6:
                idx = if_nametoindex(ip)
                if not idx:
                    self.warning(f"{ip} is an invalid interface")
                    return
                ch.ifindex6 = idx
        elif k == "IPv4_interface":
            self.take()
            ip = _cstr(self.value(IP).text)
            self._max_links()
            if inet_aton(ip) is None:
                self.warning(f"{ip} is not a valid IPv4 address")
                return
            ch.interface_address = ip
            if ch.family == AF_INET6:
                self.warning("your multicast interface is IPv4 but is binded to an IPv6 "
                             "interface? Surely, this is not what you want")
                return
            ch.family = AF_INET
        elif k == "IPv6_interface":
            self.take()
            self.value(IP)
            self.warning("`IPv6_interface' not required, ignoring")
        elif k == "Interface":
            self.take()
            self.interface(ch, multicast=True)
        elif k == "Group":
            self.take()
            v = self.number()
            self._max_links()
            ch.port = v & 0xFFFF
        else:
            raise self.syntax_error()

    def interface(self, ch: _ChannelDraft, *, multicast: bool) -> None:
        name = _fs(_cstr(self.value(STRING).text))
        self._max_links()
        ch.interface = name[:16]
        idx = if_nametoindex(name)
        if not idx:
            self.warning(f"{name} is an invalid interface")
            return
        ch.ifindex = idx
        if multicast and ch.family == AF_INET6:
            ch.ifindex6 = idx

    def unicast_option(self, kind: str, k: str, ch: _ChannelDraft) -> None:
        if self._common_channel_option(k, ch):
            return
        if k in ("IPv4_address", "IPv4_Destination_Address"):
            self.take()
            ip = _cstr(self.value(IP).text)
            self._max_links()
            if inet_aton(ip) is None:
                self.warning(f"{ip} is not a valid IPv4 address")
                return
            if k == "IPv4_address":
                ch.address = ip
                ch.family = AF_INET
            else:
                ch.dest_address = ip
        elif k in ("IPv6_address", "IPv6_Destination_Address"):
            self.take()
            ip = _cstr(self.value(IP).text)
            self._max_links()
            if inet_pton6(ip) is None:
                self.warning(f"{ip} is not a valid IPv6 address")
                return
            if k == "IPv6_address":
                ch.address = ip
                ch.family = AF_INET6
            else:
                ch.dest_address = ip
        elif k == "Interface":
            self.take()
            self.interface(ch, multicast=False)
        elif k == "Port":
            self.take()
            v = self.number()
            self._max_links()
            ch.port = v & 0xFFFF
        elif k == "ErrorQueueLength" and kind == "TCP":
            self.take()
            v = self.number()
            self._max_links()
            self.s["ErrorQueueLength"] = v
        else:
            raise self.syntax_error()

    def options(self) -> None:
        self.open_block()
        while not self.at_close():
            k = self.peek().kind
            if k == "TCPWindowTracking":
                self.take()
                self.s[k] = self.boolean()
            elif k == "ExpectationSync":
                self.take()
                tok = self.peek()
                if tok.kind in (ON, OFF):
                    self.take()
                    self.expect_on = tok.kind == ON
                    self.expect = None
                elif tok.kind == CHAR and tok.text == "{":
                    self.take()
                    names: list[str] = []
                    while not self.at_close():
                        names.append(_fs(_cstr(self.value(STRING).text)))
                    self.expect_on = True
                    self.expect = tuple(names)
                else:
                    raise self.syntax_error()
            else:
                raise self.syntax_error()

    # --- Stats ---
    def stats(self) -> None:
        self.open_block()
        while not self.at_close():
            k = self.peek().kind
            if k == "LogFile":
                self.take()
                v = self.value(ON, OFF, PATH)
                if v.kind == ON:
                    self.stats_logfile = DEFAULT_STATS_LOGFILE
                elif v.kind == PATH:
                    self.stats_logfile = self.file_path(v, "stats LogFile path")
            elif k == "Syslog":
                self.take()
                v = self.value(ON, OFF, STRING)
                if v.kind == ON:
                    self.stats_syslog = LOG_DAEMON
                elif v.kind == OFF:
                    self.stats_syslog = -1
                else:
                    self.syslog_facility(v.text, general=False)
            else:
                raise self.syntax_error()
        if self.sync_seen:
            raise _Fatal("cannot use both `Stats' and `Sync' clauses in conntrackd.conf")
        self.stats_seen = True

    # --- Helper ---
    def helper(self) -> None:
        self.open_block()
        while not self.at_close():
            if self.peek().kind == "Setup":
                self.take()
                self.helper_setup = self.boolean()
            else:
                self.helper_type_line()
        self.helper_seen = True

    def helper_type_line(self) -> None:
        """``Type``, ``QueueNum``, ``QueueLen`` and ``Policy`` share one list, inside
        Helper and inside Type alike; their values go onto one global stack that the
        next ``Type`` to close takes in full (the reference's symbol stack)."""
        k = self.peek().kind
        if k == "Type":
            self.take()
            self.helper_type()
        elif k in ("QueueNum", "QueueLen"):
            self.take()
            self.helper_stack.append((k, self.number()))
        elif k == "Policy":
            self.take()
            pname = _fs(_cstr(self.value(STRING).text))
            self.open_block()
            leaf: dict | None = None
            while not self.at_close():
                k2 = self.value("ExpectMax", "ExpectTimeout").kind
                v = self.number()
                if leaf is None:
                    leaf = {"expect_max": 0, "expect_timeout": 0}
                leaf["expect_max" if k2 == "ExpectMax" else "expect_timeout"] = v
            if leaf is None:
                raise _Fatal("Helper policy configuration empty, fix your "
                             "configuration file, please")
            if len(pname) > HELPER_NAME_LEN:
                raise _Fatal(f"Helper Policy is longer than {HELPER_NAME_LEN} characters")
            self.helper_stack.append(("Policy", HelperPolicy(pname,
                                                             **leaf)))
        else:
            raise self.syntax_error()

    def helper_type(self) -> None:
        name = _fs(_cstr(self.value(STRING).text))
        l3 = _cstr(self.value(STRING).text)
        l4 = _cstr(self.value(STRING).text)
        self.open_block()
        while not self.at_close():
            self.helper_type_line()
        if l3 == "inet":
            l3proto = AF_INET
        elif l3 == "inet6":
            l3proto = AF_INET6
        else:
            raise _Fatal("unknown layer 3 protocol")
        if l4 == "tcp":
            l4proto = IPPROTO_TCP
        elif l4 == "udp":
            l4proto = IPPROTO_UDP
        else:
            raise _Fatal("unknown layer 4 protocol")
        if l4proto not in HELPERS.get(name, ()):
            raise _Fatal(f"Unknown `{name}' helper")
        queue_num = queue_len = 0
        policies: dict[str, HelperPolicy] = {}
        while self.helper_stack:
            kind, v = self.helper_stack.pop()
            if kind == "QueueNum":
                queue_num = v
            elif kind == "QueueLen":
                queue_len = v
            else:
                if v.name != name:
                    raise _Fatal(f"Unknown policy `{v.name}' in helper configuration")
                policies[v.name] = v
        self.helper_types.insert(0, HelperType(name, l3proto, l4proto, queue_num, queue_len,
                                               tuple(policies.values())))

    # --- Metrics (extension) ---
    def metrics_section(self) -> None:
        m = dict(self.metrics or {})
        self.open_block()
        while not self.at_close():
            k = self.peek().kind
            if k == "Address":
                self.take()
                ip = _cstr(self.value(IP).text)
                if inet_aton(ip) is None and inet_pton6(ip) is None:
                    raise _Fatal(f"`Metrics': {ip} is not a valid address")
                m["address"] = ip
            elif k == "Port":
                self.take()
                port = self.number()
                if not 0 < port < 65536:
                    raise _Fatal(f"`Metrics': Port must be [1, 65535]")
                m["port"] = port
            elif k == "Path":
                self.take()
                m["path"] = _fs(_cstr(self.value(PATH).text))
            else:
                raise self.syntax_error()
        self.metrics = m

    # --- result ---
    def result(self, path: str) -> Config:
        g = self.g
        flt = None
        if self.filter is not None:
            f = self.filter
            flt = Filter(kernelspace=self.filter_kernelspace,
                         protocol_policy=f["protocol_policy"], protocols=tuple(f["protocols"]),
                         address_policy=f["address_policy"],
                         ipv4_hosts=tuple(f["ipv4_hosts"]),
                         ipv4_networks=tuple(f["ipv4_networks"]),
                         ipv6_hosts=tuple(f["ipv6_hosts"]),
                         ipv6_networks=tuple(f["ipv6_networks"]),
                         state_policy=f["state_policy"], tcp_states=tuple(f["tcp_states"]))
        overrun = g.get("NetlinkOverrunResync", 0)
        general = General(
            hashsize=_u32(g.get("HashSize", 0)) or 65536,
            hashlimit=_u32(g.get("HashLimit", 0)) or 262144,
            logfile=self.logfile or None,
            syslog_facility=None if self.syslog == -1 else self.syslog,
            lockfile=self.lockfile or DEFAULT_LOCKFILE,
            unix=Unix(self.unix_path),
            netlink_buffer_size=_u32(g.get("NetlinkBufferSize", 0)),
            netlink_buffer_size_max_growth=_u32(g.get("NetlinkBufferSizeMaxGrowth", 0)),
            netlink_overrun_resync=overrun or 30,
            netlink_events_reliable=g.get("NetlinkEventsReliable", False),
            poll_secs=g.get("PollSecs"),
            event_iteration_limit=g.get("EventIterationLimit", 0) or 100,
            filter=flt,
            scheduler=Scheduler(self.sched_policy, self.sched_prio),
            systemd=g.get("Systemd", True),
        )
        sync = None
        s = self.s
        if self.sync_seen:
            mode = next((m for m in (FTFW, ALARM, NOTRACK) if m in self.modes), FTFW)
            sync = Sync(
                mode=mode[1:], mode_given=bool(self.modes),
                refresh_time=s.get("RefreshTime", 0) or 60,
                cache_timeout=s.get("CacheTimeout", 0) or 180,
                commit_timeout=s.get("CommitTimeout", 0),
                purge_timeout=_u32(s.get("PurgeTimeout", 0)) or 60,
                resend_queue_size=_u32(s.get("ResendQueueSize", 0)) or 131072,
                ack_window_size=_u32(s.get("ACKWindowSize", 0)) or 300,
                disable_internal_cache=s.get("DisableInternalCache", False),
                disable_external_cache=s.get("DisableExternalCache", False),
                startup_resync=s.get("StartupResync", False),
                transport=self.channel_type,
                channels=tuple(c.freeze() for c in self.channels),
                default_channel=self.default_channel,
                error_queue_length=s.get("ErrorQueueLength", 0) or 128,
                tcp_window_tracking=s.get("TCPWindowTracking", False),
                expectation_sync=self.expect_on,
                expectation_helpers=self.expect if self.expect_on else None,
            )
            if sync.commit_timeout and sync.disable_external_cache:
                self.warning("`CommitTimeout' can't be combined with `DisableExternalCache', "
                             "ignoring this option. Fix your configuration file.")
                sync = sync.replace(commit_timeout=0)
        stats = None
        if self.stats_seen:
            stats = Stats(self.stats_logfile or None,
                          None if self.stats_syslog == -1 else self.stats_syslog)
        helper = None
        if self.helper_seen:
            helper = Helper(self.helper_setup, tuple(self.helper_types))
        metrics = Metrics(**self.metrics) if self.metrics is not None else None
        return Config(path=path, general=general, sync=sync, stats=stats, helper=helper,
                      metrics=metrics, warnings=tuple(self.warnings))


_PROTO_CACHE: dict[str, int | None] = {}


def _getprotobyname(name: str) -> int | None:
    if name not in _PROTO_CACHE:
        try:
            _PROTO_CACHE[name] = socket.getprotobyname(name)
        except (OSError, UnicodeError, ValueError):
            _PROTO_CACHE[name] = None
    return _PROTO_CACHE[name]


# --- entry points -------------------------------------------------------------------------

def parse(data: str | bytes, filename: str = DEFAULT_CONFIG_PATH) -> Config:
    """Parse a configuration (bytes as read from the file, or text)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    parser = Parser(data.decode("latin-1"))
    try:
        parser.parse()
        return parser.result(filename)
    except _Fatal as e:
        raise ConfigError(e.message, e.status, warnings=tuple(parser.warnings)) from None


def load(path: str = DEFAULT_CONFIG_PATH) -> Config:
    """Read and parse ``path`` as the reference does (``can't open config file`` when it
    cannot be opened; a file that opens but cannot be read is flex's fatal error)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (OSError, ValueError):
        raise ConfigError(f"can't open config file `{path}'") from None
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read()
    except OSError:
        raise ConfigError("input in flex scanner failed", 2, raw=True) from None
    return parse(data, path)
