"""``conntrackd`` — the program: command line, client requests, exit codes (1.4.7).

The command line is read as the reference reads it (spec §2.1): each word's *second*
character is its option letter, ``-c -i -e -F -R`` take an optional ``ct``/``expect``
(prefix match; a word matching neither is left for the next round), ``-f`` and ``-s``
an optional keyword (prefix match in the reference's order; anything else is fatal),
``-x`` turns a preceding dump into XML, the last client command wins, ``-v``/``-h``
answer at once, an unknown letter prints the usage and ``Unknown option`` (exit 0 as
in 1.4.7). Then the configuration is parsed completely (warnings, errors with line
numbers) and either one request goes to the control socket (client mode) or the daemon
starts (:mod:`.daemon`, console or ``-d``).

Deliberate differences, for safety (docs/conntrackd.md): ``-C`` as the last word is an
error (exit 1, as 1.4.8) where 1.4.7 goes on with the default configuration and may
start a daemon the user did not ask for; likewise an empty ``-C ''`` is refused
(``can't open config file```') instead of silently meaning the default file. No
Python traceback reaches the user (``CONNTRACKD_DEBUG=1`` shows it).
"""
from __future__ import annotations

import os
import sys

from . import control
from .config import DEFAULT_CONFIG_PATH
from .log import Logger

PATH_MAX = 4096
VERSION = "1.4.7"
IMPLEMENTATION = "pyconntrack"

USAGE = """Connection tracking userspace daemon v{version}
Usage: {prog} [commands] [options]

General commands:
  -d, run in daemon mode
  -C [configfile], configuration file path
  -v, display conntrackd version
  -h, display this help information

Client mode commands:
  -c [ct|expect], commit external cache to conntrack table
  -f [internal|external], flush internal and external cache
  -F [ct|expect], flush kernel conntrack table
  -i [ct|expect], display content of the internal cache
  -e [ct|expect], display the content of the external cache
  -k, kill conntrack daemon
  -s  [network|cache|runtime|link|rsqueue|queue|ct|expect], dump statistics
  -R [ct|expect], resync with kernel conntrack table
  -n, request resync with other node (only FT-FW and NOTRACK modes)
  -B, force a bulk send to other replica firewalls
  -x, dump cache in XML format (requires -i or -e)
  -t, reset the kernel timeout (see PurgeTimeout clause)

"""

VERSION_TEXT = ("Connection tracking userspace daemon v{version}. Licensed under GPLv2.\n"
                "(C) 2006-2009 Pablo Neira Ayuso <pablo@netfilter.org>\n")

# -s keywords in the reference's matching order
STATS_TOPICS = (("network", control.STATS_NETWORK), ("cache", control.STATS_CACHE),
                ("runtime", control.STATS_RUNTIME), ("multicast", control.STATS_LINK),
                ("link", control.STATS_LINK), ("rsqueue", control.STATS_RSQUEUE),
                ("process", control.STATS_PROCESS), ("queue", control.STATS_QUEUE),
                ("ct", control.STATS), ("expect", control.EXP_STATS))
# option -> (ct, expect, default) of set_action_by_table
TABLE_ACTIONS = {
    "c": (control.CT_COMMIT, control.EXP_COMMIT, control.ALL_COMMIT),
    "i": (control.CT_DUMP_INTERNAL, control.EXP_DUMP_INTERNAL, control.CT_DUMP_INTERNAL),
    "e": (control.CT_DUMP_EXTERNAL, control.EXP_DUMP_EXTERNAL, control.CT_DUMP_EXTERNAL),
    "F": (control.CT_FLUSH_MASTER, control.EXP_FLUSH_MASTER, control.ALL_FLUSH_MASTER),
    "R": (control.CT_RESYNC_MASTER, control.EXP_RESYNC_MASTER, control.ALL_RESYNC_MASTER),
}
SIMPLE_ACTIONS = {"B": control.SEND_BULK, "t": control.RESET_TIMERS, "k": control.KILL,
                  "n": control.REQUEST_DUMP}
XML = {control.CT_DUMP_INTERNAL: control.CT_DUMP_INT_XML,
       control.CT_DUMP_EXTERNAL: control.CT_DUMP_EXT_XML,
       control.EXP_DUMP_INTERNAL: control.EXP_DUMP_INT_XML,
       control.EXP_DUMP_EXTERNAL: control.EXP_DUMP_EXT_XML}

DAEMON, REQUEST = "daemon", "request"


class Exit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Invocation:
    """The parsed command line."""
    __slots__ = ("type", "action", "config_file", "config_given")

    def __init__(self) -> None:
        self.type: str | None = None
        self.action = -1
        self.config_file = ""
        self.config_given = False


def _prefix(word: str, keyword: str) -> bool:
    """``strncmp(keyword, word, strlen(word)) == 0``."""
    return keyword.startswith(word)


def _environ_first_char() -> str:
    """The byte after the last argument's NUL: the first byte of the environment."""
    try:
        with open("/proc/self/environ", "rb") as f:
            b = f.read(1)
    except OSError:
        return ""
    return b.decode("latin-1")


def option_letter(argv: list[str], i: int) -> str:
    """``argv[i][1]`` as C reads it: an empty word reads on into the next string."""
    word = argv[i]
    if len(word) >= 2:
        return word[1]
    if len(word) == 1:
        return ""
    if i + 1 < len(argv):
        return argv[i + 1][:1]
    return _environ_first_char()


class CommandLine:
    """The reference's argument loop; writes usage and messages, raises :class:`Exit`."""

    def __init__(self, argv: list[str], log: Logger, out) -> None:
        self.argv = argv
        self.log = log
        self.out = out

    def usage(self) -> None:
        self.out.write(USAGE.format(version=VERSION, prog=self.argv[0]))
        self.out.flush()

    def invalid(self) -> Exit:
        self.usage()
        self.log.error("Invalid parameters")
        return Exit(1)

    def set_mode(self, inv: Invocation, want: str) -> None:
        if inv.type is None:
            inv.type = want
        elif inv.type != want:
            raise self.invalid()

    def parse(self) -> Invocation:
        argv = self.argv
        argc = len(argv)
        inv = Invocation()
        i = 1
        while i < argc:
            c = option_letter(argv, i)
            nxt = argv[i + 1] if i + 1 < argc else None
            has_arg = nxt is not None and not nxt.startswith("-")
            if c == "d":
                self.set_mode(inv, DAEMON)
            elif c in TABLE_ACTIONS:
                self.set_mode(inv, REQUEST)
                ct, exp, dfl = TABLE_ACTIONS[c]
                if has_arg:
                    if _prefix(nxt, "ct"):
                        inv.action = ct
                        i += 1
                    elif _prefix(nxt, "expect"):
                        inv.action = exp
                        i += 1
                else:
                    inv.action = dfl
            elif c == "C":
                i += 1
                if i < argc:
                    path = argv[i]
                    if len(os.fsencode(path)) > PATH_MAX:
                        self.log.warning("Path to config file to long. Cutting it down to "
                                         f"{PATH_MAX} characters")
                    inv.config_file = os.fsdecode(os.fsencode(path)[:PATH_MAX - 1])
                    inv.config_given = True
                else:
                    self.usage()
                    self.log.error("Missing config filename")
                    raise Exit(1)  # 1.4.7 went on with the default file (see docstring)
            elif c == "f":
                self.set_mode(inv, REQUEST)
                if has_arg:
                    if _prefix(nxt, "internal"):
                        inv.action = control.CT_FLUSH_INT_CACHE
                    elif _prefix(nxt, "external"):
                        inv.action = control.CT_FLUSH_EXT_CACHE
                    else:
                        self.log.error(f"unknown parameter `{nxt}' for option `-f'")
                        raise Exit(1)
                    i += 1
                else:
                    inv.action = control.ALL_FLUSH_CACHE
            elif c in SIMPLE_ACTIONS:
                self.set_mode(inv, REQUEST)
                inv.action = SIMPLE_ACTIONS[c]
            elif c == "s":
                self.set_mode(inv, REQUEST)
                if has_arg:
                    for name, code in STATS_TOPICS:
                        if _prefix(nxt, name):
                            if name == "multicast":
                                self.log.warning("use `link' instead of `multicast' as "
                                                 "parameter.")
                            inv.action = code
                            break
                    else:
                        self.log.error(f"unknown parameter `{nxt}' for option `-s'")
                        raise Exit(1)
                    i += 1
                else:
                    inv.action = control.STATS
            elif c == "x":
                if inv.action in XML:
                    inv.action = XML[inv.action]
                else:
                    raise self.invalid()
            elif c == "v":
                self.out.write(VERSION_TEXT.format(version=VERSION))
                if os.environ.get("CONNTRACK_IMPLEMENTATION"):
                    self.out.write(_implementation_line())
                self.out.flush()
                raise Exit(0)
            elif c == "h":
                self.usage()
                raise Exit(0)
            else:
                self.usage()
                self.log.error(f"Unknown option: {argv[i]}")
                raise Exit(0)
            i += 1
        return inv


def _implementation_line() -> str:
    try:
        from importlib.metadata import version

        ours = version("pyconntrack")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        ours = "unknown"
    return f"{IMPLEMENTATION} {ours} (pure-Python conntrack-tools)\n"


def run(argv: list[str], log: Logger | None = None) -> int:
    """The whole program; returns the exit status."""
    log = log or Logger()
    out = sys.stdout
    try:
        inv = CommandLine(argv, log, out).parse()
    except Exit as e:
        return e.status
    path = inv.config_file if inv.config_given else DEFAULT_CONFIG_PATH
    os.umask(0o177)
    from .config import ConfigError, load

    if inv.config_given and not path:
        log.error("can't open config file `'")
        return 1
    try:
        cfg = load(path)
    except ConfigError as e:
        log.diagnostics(e.warnings)
        if e.raw:
            sys.stderr.write(e.message + "\n")
            sys.stderr.flush()
        elif e.message.startswith("can't open config file"):
            log.error(e.message)
        else:
            log.error(e.message)
        return e.status
    log.diagnostics(cfg.warnings)
    if inv.type == REQUEST:
        return client(cfg.general.unix.path, inv.action, log)
    from .daemon import Daemon

    return Daemon(cfg, log, daemon_mode=inv.type == DAEMON).start()


def client(path: str, code: int, log: Logger) -> int:
    """Client mode: one request, the reply copied to stdout."""
    out = sys.stdout.buffer if sys.stdout is not None else None

    def write(data: bytes) -> None:
        if out is not None:
            try:
                out.write(data)
                out.flush()
            except (OSError, ValueError):
                pass

    try:
        control.request(path, code, write)
    except control.ConnectError:
        log.error("can't connect: is conntrackd running? appropriate permissions?")
        return 1
    return 0


def console() -> None:
    """Entry point of the ``conntrackd`` console script."""
    from conntrack_tools.conntrack.main import program_name

    argv = [program_name(sys.argv[0], "conntrackd")] + sys.argv[1:]
    try:
        status = run(argv)
    except KeyboardInterrupt:
        status = 130
    except Exception as e:  # noqa: BLE001 - no traceback reaches the user
        if os.environ.get("CONNTRACKD_DEBUG"):
            raise
        Logger().error(f"internal error: {type(e).__name__}: {e}")
        status = 1
    try:
        sys.stdout.flush()
    except (OSError, ValueError, AttributeError):
        pass
    sys.exit(status)


if __name__ == "__main__":
    console()
