"""What a parsed ``conntrack`` command line means: :class:`Invocation` and its enums.

An :class:`Invocation` is the complete result of parsing one command line (or one line
of a ``-R`` file): the command and table, the command family, the request template (a
:class:`ctnetlink.model.Flow` holding only the fields the options set), the user-space
filter inputs, the expectation tuple and mask, output flags, event groups, buffer size
and label operations. It knows nothing about sockets; command execution reads it.
A ``-R`` file parses into a :class:`Batch` of invocations.
"""
from __future__ import annotations

import enum

from ctnetlink.model import Flow, Tuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from collections.abc import Callable, Iterator

    from .labels import LabelMap


class Command(enum.IntEnum):
    """The commands, numbered like the reference tool's command bits."""

    LIST = 0          # -L (also -L dying / -L unconfirmed, see Invocation.table)
    CREATE = 1        # -I
    UPDATE = 2        # -U
    DELETE = 3        # -D
    GET = 4           # -G
    FLUSH = 5         # -F
    EVENT = 6         # -E
    VERSION = 7       # -V
    HELP = 8          # -h
    EXP_LIST = 9      # -L expect
    EXP_CREATE = 10   # -I expect
    EXP_DELETE = 11   # -D expect
    EXP_GET = 12      # -G expect
    EXP_FLUSH = 13    # -F expect
    EXP_EVENT = 14    # -E expect
    COUNT = 15        # -C
    EXP_COUNT = 16    # -C expect
    STATS = 17        # -S
    EXP_STATS = 18    # -S expect
    ADD = 19          # -A

    @property
    def is_expect(self) -> bool:
        return self in _EXPECT_COMMANDS


_EXPECT_COMMANDS = frozenset({Command.EXP_LIST, Command.EXP_CREATE, Command.EXP_DELETE,
                              Command.EXP_GET, Command.EXP_FLUSH, Command.EXP_EVENT,
                              Command.EXP_COUNT, Command.EXP_STATS})


class Table(enum.IntEnum):
    """The optional table word after a command letter."""

    CONNTRACK = 0
    EXPECT = 1
    DYING = 2
    UNCONFIRMED = 3


class OutputFlag(enum.IntFlag):
    """``-o`` keywords (bit values of the reference tool)."""

    XML = 1 << 0
    EXTENDED = 1 << 1
    TIMESTAMP = 1 << 2
    ID = 1 << 3
    KTIMESTAMP = 1 << 4
    LABELS = 1 << 5
    USERSPACE = 1 << 6
    SAVE = 1 << 7
    JSON = 1 << 8     # ours: one JSON object per line (not in the reference)


class Invocation:
    """One parsed command line. Every attribute is documented in ``__init__``."""

    __slots__ = (
        "argv0", "command", "table", "family", "options", "proto_options", "protocol",
        "protonum", "template", "icmp_reply_type", "mask", "exptuple", "mark",
        "mark_kernel", "status", "status_negated", "status_kernel", "output",
        "event_mask", "buffer_size", "labels", "labels_add", "labels_del",
        "labels_del_all", "label_map", "warnings",
    )

    def __init__(self, argv0: str = "conntrack") -> None:
        #: ``argv[0]`` of the program (the help text's ``Usage:`` line uses it).
        self.argv0 = argv0
        #: The command, or None when the line gave no command (usage is printed).
        self.command: Command | None = None
        #: The table word; ``-L dying``/``-L unconfirmed`` have command LIST.
        self.table: Table = Table.CONNTRACK
        #: Command family: 0 (unset), 2 (AF_INET) or 10 (AF_INET6), after the default
        #: rule (commands other than -L -U -D -G -F -E use AF_INET when unset).
        self.family = 0
        #: Canonical names of the main options given (``"src"``, ``"mask-src"`` when
        #: implied by a CIDR prefix, ``"src-nat"`` even without address, ...). ``-a``
        #: never appears.
        self.options: frozenset[str] = frozenset()
        #: Canonical names of the protocol options the last handler accepted
        #: (``"sport"``, ``"state"``, ``"icmp-type"``, ...).
        self.proto_options: frozenset[str] = frozenset()
        #: The protocol handler in effect: ``tcp udp udplite sctp dccp icmp icmpv6 gre``
        #: or ``unknown``; None without -p (in -R files the previous line's handler
        #: stays in effect, as in the reference).
        self.protocol: str | None = None
        #: The layer-4 number of the last -p (None without -p).
        self.protonum: int | None = None
        #: The request/filter template: only fields set by options are not None.
        #: orig/reply tuples (addresses, proto, ports, icmp fields, per-direction zone),
        #: status (-u value set), timeout, mark (-m value, after the 1.4.7 -u quirk),
        #: secmark, id, zone, tcp/sctp/dccp info (TCP window flags for -p tcp),
        #: nat_src/nat_dst (-n/-g/-j address and port), labels (--label-add bits).
        self.template = Flow()
        #: Reply ICMP/ICMPv6 type derived when the type option was parsed (255 when
        #: the original family was unknown then, or the type has no reply type).
        self.icmp_reply_type: int | None = None
        #: Mask tuple: src/dst from --mask-src/--mask-dst or CIDR prefixes (also the
        #: user-space network filter masks), sport/dport/proto from --mask-port-*.
        self.mask = Tuple()
        #: Expected tuple of -I expect (--tuple-src/dst, --tuple-port-*), or None.
        self.exptuple: Tuple | None = None
        #: (value, mask) used by the user-space filter, -I/-A and -U, or None.
        self.mark: tuple[int, int] | None = None
        #: (value, mask) for the kernel dump filter (CTA_MARK/CTA_MARK_MASK), or None.
        self.mark_kernel: tuple[int, int] | None = None
        #: -u value set (None without -u) and negated set (``!NAME``, ``UNREPLIED``).
        self.status: int | None = None
        self.status_negated = 0
        #: (CTA_STATUS, CTA_STATUS_MASK) for the -L dump filter, or None without -u.
        self.status_kernel: tuple[int, int] | None = None
        #: -o flags (accumulated over all lines of a -R file).
        self.output = OutputFlag(0)
        #: -e bits (1 NEW, 2 UPDATES, 4 DESTROY) or None when -e was not given.
        self.event_mask: int | None = None
        #: -b value (atol, as size_t) or None.
        self.buffer_size: int | None = None
        #: -l filter bits (all must be set on an entry) or None.
        self.labels: int | None = None
        #: --label-add bits / --label-del bits, or None; labels_del_all for a bare
        #: --label-del.
        self.labels_add: int | None = None
        self.labels_del: int | None = None
        self.labels_del_all = False
        #: The label map if it was loaded (by -l, --label-add, --label-del, -o labels,
        #: or an earlier line of a -R file), else None.
        self.label_map: LabelMap | None = None
        #: Warning lines already written to the warning stream while parsing.
        self.warnings: list[str] = []

    # --- conveniences -----------------------------------------------------------------
    @property
    def mask_src(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        return self.mask.src

    @property
    def mask_dst(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        return self.mask.dst

    @property
    def event_groups(self) -> int:
        """The ``nl_groups`` bit mask to bind the event socket to (-E / -E expect)."""
        if self.command == Command.EXP_EVENT:
            return 0x38
        return 0x7 if self.event_mask is None else self.event_mask & 0x7

    def given(self, name: str) -> bool:
        """Whether the main option with this canonical name was given."""
        return name in self.options

    def __repr__(self) -> str:
        fields = []
        for name in self.__slots__:
            v = getattr(self, name)
            if v is None or v == () or v == frozenset() or v == [] or name == "label_map":
                continue
            fields.append(f"{name}={v!r}")
        return f"Invocation({', '.join(fields)})"


class Batch:
    """A parsed ``-R``/``--load-file`` file: the invocations in file order.

    A long file is not held in memory: ``again`` gives its invocations anew (parsing a
    copy of the checked file) each time the batch is iterated; ``close`` releases that
    copy (:meth:`close`; harmless for a held batch)."""

    __slots__ = ("argv0", "path", "_invocations", "_again", "_close")

    def __init__(self, argv0: str, path: str, invocations: list[Invocation] | None,
                 again: Callable[[], Iterator[Invocation]] | None = None,
                 close: Callable[[], None] | None = None) -> None:
        self.argv0 = argv0
        self.path = path
        self._invocations = invocations
        self._again = again
        self._close = close

    def __iter__(self) -> Iterator[Invocation]:
        if self._invocations is not None:
            return iter(self._invocations)
        assert self._again is not None
        return self._again()

    @property
    def invocations(self) -> list[Invocation]:
        """Every invocation at once (a held batch's list, else parsed now)."""
        return self._invocations if self._invocations is not None else list(self)

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def __repr__(self) -> str:
        held = f"{len(self._invocations)} lines" if self._invocations is not None else "on disk"
        return f"Batch({self.path!r}, {held})"
