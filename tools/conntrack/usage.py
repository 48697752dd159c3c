"""The texts of ``conntrack -h`` (usage, with the protocol's help after ``-p``) and
``conntrack -V``, exactly as the reference prints them on stdout."""
from __future__ import annotations

from .errors import PROGNAME, VERSION
from .netdb import getprotobynumber
from .protocols import BY_NAME

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .invocation import Invocation

_USAGE = """\
Command line interface for the connection tracking system. Version {version}
Usage: {argv0} [commands] [options]

Commands:
  -L [table] [options]\t\tList conntrack or expectation table
  -G [table] parameters\t\tGet conntrack or expectation
  -D [table] parameters\t\tDelete conntrack or expectation
  -I [table] parameters\t\tCreate a conntrack or expectation
  -U [table] parameters\t\tUpdate a conntrack
  -E [table] [options]\t\tShow events
  -F [table]\t\t\tFlush table
  -C [table]\t\t\tShow counter
  -S\t\t\t\tShow statistics

Tables: conntrack, expect, dying, unconfirmed

Conntrack parameters and options:
  -n, --src-nat ip\t\t\tsource NAT ip
  -g, --dst-nat ip\t\t\tdestination NAT ip
  -j, --any-nat ip\t\t\tsource or destination NAT ip
  -m, --mark mark\t\t\tSet mark
  -c, --secmark secmark\t\t\tSet selinux secmark
  -e, --event-mask eventmask\t\tEvent mask, eg. NEW,DESTROY
  -z, --zero \t\t\t\tZero counters while listing
  -o, --output type[,...]\t\tOutput format, eg. xml
  -l, --label label[,...]\t\tconntrack labels

Expectation parameters and options:
  --tuple-src ip\tSource address in expect tuple
  --tuple-dst ip\tDestination address in expect tuple

Updating parameters and options:
  --label-add label\tAdd label
  --label-del label\tDelete label

Common parameters and options:
  -s, --src, --orig-src ip\t\tSource address from original direction
  -d, --dst, --orig-dst ip\t\tDestination address from original direction
  -r, --reply-src ip\t\tSource addres from reply direction
  -q, --reply-dst ip\t\tDestination address from reply direction
  -p, --protonum proto\t\tLayer 4 Protocol, eg. 'tcp'
  -f, --family proto\t\tLayer 3 Protocol, eg. 'ipv6'
  -t, --timeout timeout\t\tSet timeout
  -u, --status status\t\tSet status, eg. ASSURED
  -w, --zone value\t\tSet conntrack zone
  --orig-zone value\t\tSet zone for original direction
  --reply-zone value\t\tSet zone for reply direction
  -b, --buffer-size\t\tNetlink socket buffer size
  --mask-src ip\t\t\tSource mask address
  --mask-dst ip\t\t\tDestination mask address

"""


def help_text(argv0: str, protocol: str | None = None, protonum: int | None = None,
              protocols_file: str | None = None) -> str:
    """The ``-h`` output; with a protocol handler the ``Proto `NAME' help:`` part."""
    text = _USAGE.format(version=VERSION, argv0=argv0)
    if protocol is None:
        return text
    handler = BY_NAME[protocol]
    name = handler.name
    if name == "unknown":
        name = (getprotobynumber(protonum, protocols_file) if protonum is not None
                else None) or "unknown"
    return text + f"Proto `{name}' help:\n" + "".join(line + "\n" for line in handler.help_lines)


def help_for(inv: Invocation, protocols_file: str | None = None) -> str:
    """The ``-h`` output of a parsed invocation (also used when no command was given)."""
    return help_text(inv.argv0, inv.protocol, inv.protonum, protocols_file)


def version_text() -> str:
    """The ``-V`` output."""
    return f"{PROGNAME} v{VERSION} (conntrack-tools)\n"
