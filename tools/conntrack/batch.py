"""``-R FILE`` / ``--load-file FILE``: reading a batch file into argument vectors (§11).

The file is read like ``fgets`` with a 10240-byte buffer (a longer line is handled in
pieces); a piece whose first non-blank character is a newline or ``#`` is skipped.
Words are split on spaces, TABs and newlines; ``"`` quotes (kept white space, ``\\``
escapes the next character inside quotes). A word of 1024 bytes or more is
``Parameter too long!``; more than 253 words ``too many arguments``. Every line is
parsed before anything runs; then every command must be ``-I -A -U -D -F``.
"""
from __future__ import annotations

import os

from .errors import ParameterProblem
from .invocation import Batch, Command, Table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

    from .parse import Parser

LINE_BUFFER = 10240
PARAM_BUFFER = 1024
MAX_ARGC = 255

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
    """The successive results of ``fgets(buf, 10240, fp)``."""
    out = []
    i, n = 0, len(data)
    while i < n:
        j = data.find(b"\n", i, i + LINE_BUFFER - 1)
        end = j + 1 if j >= 0 else min(n, i + LINE_BUFFER - 1)
        out.append(data[i:end])
        i = end
    return out


def split_words(line: bytes) -> list[bytes]:
    """The reference's word splitter (``add_param_to_argv``) for one piece."""
    line = line.split(b"\0", 1)[0]
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


def line_argvs(data: bytes, argv0: str) -> Iterator[list[str]]:
    """Argument vectors (``argv0`` first) of every non-skipped piece of a file, split
    lazily: a line's splitting errors come after the errors of the lines before it."""
    for piece in read_pieces(data):
        stripped = piece.lstrip(b" \t")
        if stripped[:1] in (b"\n", b"#"):
            continue
        yield [argv0] + [os.fsdecode(w) for w in split_words(stripped)]


def command_text(command: Command | None, table: Table) -> str:
    """The name the reference prints in ``Cannot use command `TEXT' with --load-file``."""
    if command is None:
        return "unknown"
    return _NAMES.get(command, "unknown")


def parse_batch(parser: Parser, argv0: str, path: str,
                stdin: BinaryIO | None = None) -> Batch:
    """Read and parse a whole ``-R`` file; raises on the first problem (§11)."""
    name = "/dev/stdin" if path == "-" else path
    try:
        if path == "-" and stdin is not None:
            data = stdin.read()
        else:
            with open(name, "rb") as f:
                data = f.read()
    except OSError:
        raise ParameterProblem(f"Failed to open file {name} for reading") from None
    invocations = [parser.parse(argv) for argv in line_argvs(data, argv0)]
    for inv in invocations:
        if inv.command not in ALLOWED:
            raise ParameterProblem(f"Cannot use command `{command_text(inv.command, inv.table)}'"
                                   " with --load-file")
    return Batch(argv0, name, invocations)
