"""``conntrack`` — the program: life cycle, messages and exit codes of conntrack 1.4.7.

As the reference: a netlink socket is opened before the arguments are looked at,
the command line is parsed (:mod:`.parse`), the command runs (:mod:`.commands`), a
summary line may follow on stderr, and the exit status is 0, 1 or 2. No Python
traceback ever reaches the user: unexpected failures end in one prefixed line and exit
status 1 (``CONNTRACK_DEBUG=1`` shows the traceback).

Ours only: ``--capture FILE.pcap`` (anywhere on the command line) records the whole
netlink conversation of the invocation as a LINKTYPE_NETLINK pcap. The files of
``--capture`` and of the library's ``NFNL_PCAP``/``NFNL_REPLAY`` variables are opened
before the first socket: a path that cannot be used is reported with its reason in the
reference's words for ``-R`` (``Failed to open file PATH for reading``), never as a
socket failure.
"""
from __future__ import annotations

import os
import signal
import sys

from .errors import PREFIX, CliError, OtherProblem, ParameterProblem
from .invocation import Batch, Command, Invocation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

IMPLEMENTATION = "pyconntrack"


def extract_capture(argv: list[str]) -> tuple[list[str], str | None]:
    """Remove ``--capture FILE`` / ``--capture=FILE`` (before any ``--``); the last one
    given counts. Raises :class:`ParameterProblem` for a ``--capture`` without its file."""
    out: list[str] = []
    path = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            out.extend(argv[i:])
            break
        if a == "--capture" and i > 0:
            if i + 1 == len(argv):
                raise ParameterProblem("option `--capture' requires an argument")
            path = argv[i + 1]
            i += 2
            continue
        if a.startswith("--capture=") and i > 0:
            path = a[len("--capture="):]
            i += 1
            continue
        out.append(a)
        i += 1
    return out, path


def _open_failed(variable: str | None, path: str, how: str, e: BaseException) -> CliError:
    """The error for a capture or replay file that cannot be used: ``--capture`` is a
    parameter problem (exit 2), a file named by a variable an other problem (exit 1)."""
    from .messages import strerror

    if isinstance(e, OSError):
        text = f"Failed to open file {path} for {how}: {strerror(e.errno or 0)}"
    else:  # not a capture file (nfnl.pcap.PcapError)
        text = f"Failed to read file {path}: {e}"
    if variable is None:
        return ParameterProblem(text)
    return OtherProblem(f"{variable}: {text}")


def open_recordings(capture: str | None) -> None:
    """Open the file of ``--capture`` (as ``NFNL_PCAP``), and the files ``NFNL_PCAP`` and
    ``NFNL_REPLAY`` name, before any socket; raises :class:`CliError` naming the file."""
    import errno

    from nfnl.socket import env_tap

    if capture is not None:
        if not capture:
            raise _open_failed(None, capture, "writing", OSError(errno.ENOENT, ""))
        os.environ["NFNL_PCAP"] = capture
    pcap = os.environ.get("NFNL_PCAP")
    if pcap:
        try:
            env_tap()
        except OSError as e:
            raise _open_failed(None if capture else "NFNL_PCAP", pcap, "writing", e) from None
    replay = os.environ.get("NFNL_REPLAY")
    if replay:
        from nfnl.replay import env_replay

        try:
            env_replay()
        except (OSError, ValueError) as e:  # ValueError: nfnl.pcap.PcapError
            raise _open_failed("NFNL_REPLAY", replay, "reading", e) from None


def _implementation_line() -> str:
    """``-V`` with ``CONNTRACK_IMPLEMENTATION`` set: which implementation this is."""
    try:
        from importlib.metadata import version

        ours = version("pyconntrack")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        ours = "unknown"
    return f"{IMPLEMENTATION} {ours} (pure-Python conntrack-tools)\n"


def _version(out) -> None:
    from .usage import version_text

    out.write(version_text())


def _summary(err: "TextIO", command: Command, n: int) -> None:
    from .messages import SUMMARY

    text = SUMMARY.get(command)
    if text is not None:
        err.write(PREFIX + text.format(n=n) + "\n")
        err.flush()


def run_invocation(inv: Invocation, ctx, *, batch: bool = False) -> int:
    """Run one parsed command; returns the exit status (raises CliError when fatal)."""
    from .commands import COMMANDS, ZERO_IS_FAILURE
    from .parse import runtime_checks
    from .usage import help_for

    cmd = inv.command
    if cmd is None or cmd == Command.HELP:
        ctx.out.write(help_for(inv))
        return 0
    if cmd == Command.VERSION:
        _version(ctx.out)
        return 0
    if not batch and cmd not in (Command.EVENT, Command.EXP_EVENT):
        runtime_checks(inv)
    n = COMMANDS[cmd](inv, ctx)
    if batch:
        return 0
    if cmd == Command.EXP_DELETE:
        _summary(ctx.err, cmd, 0)
        return 1
    _summary(ctx.err, cmd, n)
    if cmd in ZERO_IS_FAILURE and n == 0:
        return 1
    return 0


def run_batch(batch: Batch, ctx) -> int:
    try:
        for inv in batch:
            run_invocation(inv, ctx, batch=True)
    finally:
        batch.close()
    return 0


def main(argv: list[str] | None = None, *, stdout_fd: int | None = None,
         stderr: "TextIO | None" = None) -> int:
    """Run the program; returns the exit status (the console script exits with it)."""
    if argv is None:
        argv = sys.argv
    from .output import Stderr, Stdout

    # sys.stderr is None when the program started with descriptor 2 closed
    err = Stderr(stderr, closed=stderr is None and sys.stderr is None)
    out = Stdout(stdout_fd)
    ctx = None
    pcap_before = os.environ.get("NFNL_PCAP")
    try:
        argv, capture = extract_capture(list(argv))
        open_recordings(capture)
        from nfnl.socket import NetlinkSocket

        from .messages import strerror

        try:
            main_sock = NetlinkSocket()
        except OSError as e:
            err.write(f"mnl_socket_open: {strerror(e.errno or 0)}\n")
            err.write(PREFIX + "Can't open handler\n")
            return 1
        from .commands import Context
        from .parse import parse_command_line

        ctx = Context(main_sock, out, err)
        parsed = parse_command_line(argv, stderr=err)
        if isinstance(parsed, Batch):
            ctx.batch = True
            return run_batch(parsed, ctx)
        status = run_invocation(parsed, ctx)
        if parsed.command == Command.VERSION and os.environ.get("CONNTRACK_IMPLEMENTATION"):
            # after the reference's line, so that `conntrack -V | head -1` stays the same
            out.write(_implementation_line())
        return status
    except CliError as e:
        err.write(e.text)
        return e.status
    except BrokenPipeError:
        return 141
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # never a traceback for the user
        if os.environ.get("CONNTRACK_DEBUG"):
            raise
        err.write(PREFIX + f"internal error: {type(e).__name__}: {e}\n")
        return 1
    finally:
        try:
            out.finish()
        except BrokenPipeError:
            pass
        if ctx is not None:
            ctx.close()
        _close_capture(pcap_before)
        err.flush()


def _close_capture(before: str | None) -> None:
    """Close the capture file and give ``NFNL_PCAP`` back its value (``main`` may run
    again in the same process)."""
    if "nfnl.socket" in sys.modules:
        from nfnl.socket import close_env_tap

        close_env_tap()
    if before is None:
        os.environ.pop("NFNL_PCAP", None)
    else:
        os.environ["NFNL_PCAP"] = before


def program_name(argv0: str, name: str = "conntrack") -> str:
    """``argv[0]`` as the user most likely typed it (the ``Usage:`` line shows it).

    The kernel hands a script's interpreter the script's path, not the typed name: a
    console script found on PATH gets ``/usr/local/bin/conntrack`` where the C tool
    run as ``conntrack`` sees ``conntrack``. When a PATH lookup of the base name finds
    this very file, the base name is what was typed (almost always); ``python -m`` runs
    show the program name (``name``)."""
    base = os.path.basename(argv0)
    if base == "__main__.py":
        return name
    if os.sep in argv0:
        import shutil

        found = shutil.which(base)
        try:
            if found is not None and os.path.samefile(found, argv0):
                return base
        except OSError:
            pass
    return argv0


def console() -> None:
    """Entry point of the ``conntrack`` console script."""
    # die by SIGPIPE/SIGINT like the C tool (-E installs its own SIGINT/SIGTERM handler)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    status = main([program_name(sys.argv[0])] + sys.argv[1:])
    if sys.stdout is not None:  # None when started with fd 1 closed
        try:
            sys.stdout.flush()
        except OSError:
            pass
    os._exit(status) if status == 141 else sys.exit(status)


if __name__ == "__main__":
    console()
