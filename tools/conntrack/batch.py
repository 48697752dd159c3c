"""``-R FILE`` / ``--load-file FILE``: reading a batch file into argument vectors (§11).

The reference reads the file like ``fgets`` with a 10240-byte buffer; a line whose first
non-blank character is ``#`` (or that is blank) is skipped. Words are split on spaces,
TABs and newlines; ``"`` quotes (kept white space, ``\\`` escapes the next character
inside quotes). A word of 1024 bytes or more is ``Parameter too long!``; more than 253
words ``too many arguments``. Every line is parsed before anything runs; then every
command must be ``-I -A -U -D -F``.

Ours streams the file in blocks: a line longer than the reference's buffer (10239 bytes
before its newline; the reference cuts it into pieces parsed as lines of their own) is
refused with ``line N of FILE is longer than 10239 bytes``, so memory stays bounded
whatever the input (``-R /dev/zero`` stops after one buffer). Up to :data:`KEEP` parsed
lines are held for running; a longer file is copied to an anonymous temporary file while
it is checked and parsed again line by line as it runs (nothing runs before the whole
file has been checked, as in the reference).
"""
from __future__ import annotations

import os

from .errors import ParameterProblem
from .invocation import Batch, Command, Invocation, Table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

    from .parse import Parser

LINE_BUFFER = 10240
LINE_MAX = LINE_BUFFER - 1
"""The longest line accepted (bytes before the newline): what one ``fgets`` of the
reference reads."""
PARAM_BUFFER = 1024
MAX_ARGC = 255
READ_SIZE = 1 << 16
KEEP = 1000
"""Files of up to this many (non-skipped) lines are parsed once and held; longer ones are
parsed again as they run (memory bounded by :data:`LINE_MAX`, not by the file)."""

ALLOWED = frozenset({Command.CREATE, Command.ADD, Command.UPDATE, Command.DELETE,
                     Command.FLUSH})
_NAMES = {
    Command.LIST: "-L", Command.GET: "-G", Command.EVENT: "-E", Command.VERSION: "-V",
    Command.HELP: "-h", Command.EXP_LIST: "-L expect", Command.EXP_CREATE: "-C expect",
    Command.EXP_DELETE: "-D expect", Command.EXP_GET: "-G expect",
    Command.EXP_FLUSH: "-F expect", Command.EXP_EVENT: "-E expect", Command.COUNT: "-C",
    Command.EXP_COUNT: "-C expect", Command.STATS: "-S", Command.EXP_STATS: "-S expect",
}


def read_pieces(data: bytes) -> list[bytes]:
    """The successive results of ``fgets(buf, 10240, fp)`` (the reference's reading)."""
    out = []
    i, n = 0, len(data)
    while i < n:
        j = data.find(b"\n", i, i + LINE_BUFFER - 1)
        end = j + 1 if j >= 0 else min(n, i + LINE_BUFFER - 1)
        out.append(data[i:end])
        i = end
    return out


def read_lines(f: BinaryIO, name: str) -> Iterator[bytes]:
    """The lines of a file (with their newline), read in blocks; raises
    :class:`ParameterProblem` for a line longer than :data:`LINE_MAX` bytes (memory stays
    bounded by that) and for a read error."""
    buf = bytearray()
    number = 0
    while True:
        try:
            chunk = f.read(READ_SIZE)
        except OSError as e:
            raise ParameterProblem(f"Failed to read file {name}: {os.strerror(e.errno or 0)}") from None
        if not chunk:
            break
        buf += chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            number += 1
            if nl - start > LINE_MAX:
                raise _too_long(number, name)
            yield bytes(buf[start:nl + 1])
            start = nl + 1
        del buf[:start]
        if len(buf) > LINE_MAX:
            raise _too_long(number + 1, name)
    if buf:
        yield bytes(buf)


def _too_long(number: int, name: str) -> ParameterProblem:
    return ParameterProblem(f"line {number} of {name} is longer than {LINE_MAX} bytes")


def split_words(line: bytes) -> list[bytes]:
    """The reference's word splitter (``add_param_to_argv``) for one piece."""
    line = line.split(b"\0", 1)[0]
    if b'"' not in line:  # no quotes: words are the runs between spaces, TABs, newlines
        plain = [w for w in line.replace(b"\t", b" ").replace(b"\n", b" ").split(b" ") if w]
        for i, w in enumerate(plain):  # the checks in the order the loop below makes them
            if len(w) >= PARAM_BUFFER:
                raise ParameterProblem("Parameter too long!")
            if i + 2 >= MAX_ARGC:
                raise ParameterProblem("too many arguments")
        return plain
    words: list[bytes] = []
    param = bytearray()
    quote_open = escaped = False

    def add_param(ch: int) -> None:
        param.append(ch)
        if len(param) >= PARAM_BUFFER:
            raise ParameterProblem("Parameter too long!")

    def add_word() -> None:
        if len(words) + 1 + 1 >= MAX_ARGC:
            raise ParameterProblem("too many arguments")
        words.append(bytes(param))
        param.clear()

    for ch in line:
        if quote_open:
            if escaped:
                add_param(ch)
                escaped = False
                continue
            if ch == 0x5C:  # backslash
                escaped = True
                continue
            if ch == 0x22:  # closing quote ends the word (possibly empty)
                quote_open = False
                add_word()
                continue
            add_param(ch)
            continue
        if ch == 0x22:
            quote_open = True
            continue
        if ch in (0x20, 0x09, 0x0A):
            if param:
                add_word()
            continue
        add_param(ch)
    if param:
        add_word()
    return words


def line_argv(line: bytes, argv0: str) -> list[str] | None:
    """The argument vector (``argv0`` first) of one line, None for a skipped line."""
    stripped = line.lstrip(b" \t")
    if stripped[:1] in (b"\n", b"#"):
        return None
    return [argv0] + [os.fsdecode(w) for w in split_words(stripped)]


def line_argvs(data: bytes, argv0: str) -> Iterator[list[str]]:
    """Argument vectors of every non-skipped ``fgets`` piece of a file's content, split
    lazily: a line's splitting errors come after the errors of the lines before it."""
    for piece in read_pieces(data):
        argv = line_argv(piece, argv0)
        if argv is not None:
            yield argv


def command_text(command: Command | None, table: Table) -> str:
    """The name the reference prints in ``Cannot use command `TEXT' with --load-file``."""
    if command is None:
        return "unknown"
    return _NAMES.get(command, "unknown")


def parse_batch(parser: Parser, argv0: str, path: str,
                stdin: BinaryIO | None = None) -> Batch:
    """Read and parse a whole ``-R`` file; raises on the first problem (§11). The
    :class:`Batch` holds the invocations, or (more than :data:`KEEP` lines) parses the
    copy of the file again as it is iterated; ``Batch.close`` releases the copy."""
    name = "/dev/stdin" if path == "-" else path
    if path == "-" and stdin is not None:
        f, owned = stdin, False
    else:
        try:
            f, owned = open(name, "rb"), True
        except OSError:
            raise ParameterProblem(f"Failed to open file {name} for reading") from None
    kept: list[tuple[bytes, Invocation]] | None = []
    copy = None
    refused: Invocation | None = None
    try:
        for line in read_lines(f, name):
            argv = line_argv(line, argv0)
            if argv is None:
                continue
            inv = parser.parse(argv)
            if refused is None and inv.command not in ALLOWED:
                refused = inv
            if kept is not None:
                kept.append((line, inv))
                if len(kept) > KEEP:  # too many to hold: keep the lines on disk instead
                    import tempfile

                    copy = tempfile.TemporaryFile()
                    copy.writelines(_terminated(kept_line) for kept_line, _ in kept)
                    kept = None
            elif copy is not None:
                copy.write(_terminated(line))
        if refused is not None:
            raise ParameterProblem(f"Cannot use command `{command_text(refused.command, refused.table)}'"
                                   " with --load-file")
    except BaseException:
        if copy is not None:
            copy.close()
        raise
    finally:
        if owned:
            f.close()
    if kept is not None:
        return Batch(argv0, name, [inv for _, inv in kept])
    assert copy is not None
    copy.seek(0)
    return Batch(argv0, name, None, again=lambda: _parse_again(parser, argv0, copy, name),
                 close=copy.close)


def _terminated(line: bytes) -> bytes:
    return line if line.endswith(b"\n") else line + b"\n"


class _Silent:
    """Where the second parse of a file writes its warnings (already printed once)."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def _parse_again(parser: Parser, argv0: str, copy: BinaryIO, name: str) -> Iterator[Invocation]:
    """The invocations of a checked file, parsed again from its copy as they run."""
    again = type(parser)(stderr=_Silent(), label_file=parser.label_file,
                         protocols_file=parser.protocols_file, environ=parser.environ)
    copy.seek(0)
    for line in read_lines(copy, name):
        argv = line_argv(line, argv0)
        if argv is not None:
            yield again.parse(argv)
