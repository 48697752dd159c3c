"""Which options each command accepts or requires (§5.1), checked in bit order.

:data:`OPTION_NAMES` lists the canonical option names in the reference's bit order; the
matrix rows below are copied from the reference binary (``R`` required, ``o``
allowed, ``.`` illegal, ``T`` allowed under the tuple-pair rule). A line without a
command uses the reference's out-of-range row: every option is illegal except
``--reply-zone``. :func:`check_command_options` raises the first violation.
"""
from __future__ import annotations

from .errors import ParameterProblem
from .invocation import Command
from .protocols import opt_check

OPTION_NAMES = (
    "src", "dst", "reply-src", "reply-dst", "protonum", "timeout", "status", "zero",
    "event-mask", "tuple-src", "tuple-dst", "mask-src", "mask-dst", "nat-range", "mark", "id",
    "family", "src-nat", "dst-nat", "output", "secmark", "buffer-size", "any-nat", "zone",
    "label", "label-add", "label-del", "orig-zone", "reply-zone",
)
OPTION_BIT = {name: bit for bit, name in enumerate(OPTION_NAMES)}

#                          s d r q p t u z e [ ] { } a m i f n g o c b j w l < > ( )
_ROWS = {
    Command.LIST:         "o o o o o . o o . . . o o . o . o o o o o . o o o . . o o",
    Command.CREATE:       "T T T T R R o . . . . . . o o . . o o . . . . o . o . o o",
    Command.UPDATE:       "o o o o o o o . . . . o o . o o o o o o . . . . o o o . .",
    Command.DELETE:       "o o o o o o o . . . . o o . o o o o o o . . . o o . . o o",
    Command.GET:          "T T T T R . . . . . . . . . . o . . . o . . . . o . . . .",
    Command.FLUSH:        ". . . . . . . . . . . . . . . . o . . . . . . . . . . . .",
    Command.EVENT:        "o o o o o . . . o . . o o . o . o o o o o o o o o . . o o",
    Command.VERSION:      ". . . . . . . . . . . . . . . . . . . . . . . . . . . . .",
    Command.HELP:         ". . . . o . . . . . . . . . . . . . . . . . . . . . . . .",
    Command.EXP_LIST:     ". . . . . . . . . . . . . . . . o . . o . . . . . . . . .",
    Command.EXP_CREATE:   "R R o o R R o . . R R R R . . . . . . . . . . . . . . . .",
    Command.EXP_DELETE:   "R R o o R . . . . . . . . . . . . . . . . . . . . . . . .",
    Command.EXP_GET:      "R R o o R . . . . . . . . . . . . . . . . . . . . . . . .",
    Command.EXP_FLUSH:    ". . . . . . . . . . . . . . . . . . . . . . . . . . . . .",
    Command.EXP_EVENT:    ". . . . . . . . . . . . . . . . . . . o . . . . . . . . .",
    Command.COUNT:        ". . . . . . . . . . . . . . . . . . . . . . . . . . . . .",
    Command.EXP_COUNT:    ". . . . . . . . . . . . . . . . . . . . . . . . . . . . .",
    Command.STATS:        ". . . . . . . . . . . . . . . . . . . . . . . . . . . . .",
    Command.EXP_STATS:    ". . . . . . . . . . . . . . . . . . . . . . . . . . . . .",
    Command.ADD:          "T T T T R R o . . . . . . o o . . o o . . . . o . o . o o",
}
# No command: the reference reads past its table; only --reply-zone is not illegal.
_NO_COMMAND = ". . . . . . . . . . . . . . . . . . . . . . . . . . . . o"
_SYM = {"o": 2, "R": 1, ".": 0, "T": 3}
ROWS = {cmd: tuple(_SYM[s] for s in row.split()) for cmd, row in _ROWS.items()}
NO_COMMAND_ROW = tuple(_SYM[s] for s in _NO_COMMAND.split())

# The tuple pairs of the main matrix: (-s, -d) and (-r, -q).
_COUPLED = (0b0011, 0b1100)


def options_mask(names: frozenset[str] | set[str]) -> int:
    """The reference's option bits for a set of canonical names."""
    mask = 0
    for name in names:
        mask |= 1 << OPTION_BIT[name]
    return mask


def check_command_options(command: Command | None, names: frozenset[str] | set[str]) -> None:
    """Raise the first illegal/missing option and the tuple-pair error (§5.1, §5.3)."""
    row = ROWS[command] if command is not None else NO_COMMAND_ROW
    partial = opt_check(options_mask(names), row, OPTION_NAMES, _COUPLED)
    if partial is None:
        return
    if partial == 1:
        raise ParameterProblem("you have to specify `--reply-src' and `--reply-dst'")
    raise ParameterProblem("you have to specify `--src' and `--dst'")
