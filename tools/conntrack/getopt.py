"""An exact emulation of glibc ``getopt_long()`` with ``opterr = 0``.

The option loop of ``conntrack`` drives a :class:`Getopt` one option at a time with
:meth:`Getopt.next`; between calls it may read and move :attr:`Getopt.optind` (the
optional *table* word of commands, the optional arguments of ``-n -g -j --label-del``)
and extend the long-option table (protocol options appear when ``-p`` is parsed).
Reproduced GNU behaviours: permutation of non-options (disabled by
``POSIXLY_CORRECT``), ``--``, clustered short options, attached and separate required
arguments, optional arguments only when attached, ``--name=value``, unambiguous
abbreviations (an exact match wins; several prefix matches that differ in argument
type or value are ambiguous), and the return values ``'?'`` (unknown option) and
``':'`` (missing argument, since the option string starts with ``:``). The argument
vector is permuted in place, as glibc does, because error messages quote
``argv[optind - 1]`` of the permuted vector.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

NO_ARGUMENT, REQUIRED_ARGUMENT, OPTIONAL_ARGUMENT = 0, 1, 2


class LongOption:
    """One ``struct option``: name, argument kind (0/1/2) and the value returned."""

    __slots__ = ("name", "has_arg", "val")

    def __init__(self, name: str, has_arg: int, val: int) -> None:
        self.name = name
        self.has_arg = has_arg
        self.val = val

    def __repr__(self) -> str:
        return f"LongOption({self.name!r}, {self.has_arg}, {self.val})"


class Getopt:
    """The state of one ``getopt_long`` scan over ``argv`` (``argv[0]`` = program).

    ``next()`` returns the option value (an ``int``: the character code of a short
    option or the ``val`` of a long one), ``ord('?')`` or ``ord(':')`` for errors, or
    ``-1`` at the end; :attr:`optarg` holds the argument (``None`` if there is none).
    """

    def __init__(self, argv: list[str], optstring: str, longopts: Sequence[LongOption],
                 posixly_correct: bool | None = None) -> None:
        self.argv = argv
        self.longopts = list(longopts)
        self.optind = 1
        self.optarg: str | None = None
        self.optopt = 0
        self._nextchar: str | None = None  # rest of the current clustered word
        self._first_nonopt = 1
        self._last_nonopt = 1
        if posixly_correct is None:
            posixly_correct = "POSIXLY_CORRECT" in os.environ
        if optstring[:1] == "-":
            self._ordering = "return_in_order"
            optstring = optstring[1:]
        elif optstring[:1] == "+":
            self._ordering = "require_order"
            optstring = optstring[1:]
        elif posixly_correct:
            self._ordering = "require_order"
        else:
            self._ordering = "permute"
        self._optstring = optstring

    # --- helpers ---------------------------------------------------------------------
    def _nonoption(self, i: int) -> bool:
        w = self.argv[i]
        return w[:1] != "-" or w == "-"

    def _exchange(self) -> None:
        a = self.argv
        bottom, middle, top = self._first_nonopt, self._last_nonopt, self.optind
        a[bottom:top] = a[middle:top] + a[bottom:middle]
        self._first_nonopt += self.optind - self._last_nonopt
        self._last_nonopt = self.optind

    # --- the scan ----------------------------------------------------------------------
    def next(self) -> int:
        """One call of ``getopt_long``."""
        argv = self.argv
        argc = len(argv)
        self.optarg = None
        if self.optind < 1:
            self.optind = 1
        if not self._nextchar:
            if self._last_nonopt > self.optind:
                self._last_nonopt = self.optind
            if self._first_nonopt > self.optind:
                self._first_nonopt = self.optind
            if self._ordering == "permute":
                if self._first_nonopt != self._last_nonopt and self._last_nonopt != self.optind:
                    self._exchange()
                elif self._last_nonopt != self.optind:
                    self._first_nonopt = self.optind
                while self.optind < argc and self._nonoption(self.optind):
                    self.optind += 1
                self._last_nonopt = self.optind
            if self.optind != argc and argv[self.optind] == "--":
                self.optind += 1
                if self._first_nonopt != self._last_nonopt and self._last_nonopt != self.optind:
                    self._exchange()
                elif self._first_nonopt == self._last_nonopt:
                    self._first_nonopt = self.optind
                self._last_nonopt = argc
                self.optind = argc
            if self.optind == argc:
                if self._first_nonopt != self._last_nonopt:
                    self.optind = self._first_nonopt
                return -1
            if self._nonoption(self.optind):
                if self._ordering == "require_order":
                    return -1
                self.optarg = argv[self.optind]
                self.optind += 1
                return 1
            word = argv[self.optind]
            if word[1] == "-":
                return self._long(word[2:])
            self._nextchar = word[1:]
        return self._short()

    def _short(self) -> int:
        assert self._nextchar
        c = self._nextchar[0]
        self._nextchar = self._nextchar[1:]
        if not self._nextchar:
            self.optind += 1
        pos = self._optstring.find(c)
        if pos < 0 or c == ":" or c == ";":
            self.optopt = ord(c)
            return ord("?")
        spec = self._optstring[pos + 1:pos + 3]
        if spec[:1] == ":":
            if spec == "::":
                if self._nextchar:
                    self.optarg = self._nextchar
                    self.optind += 1
                else:
                    self.optarg = None
                self._nextchar = None
            else:
                if self._nextchar:
                    self.optarg = self._nextchar
                    self.optind += 1
                elif self.optind == len(self.argv):
                    self.optopt = ord(c)
                    self._nextchar = None
                    return ord(":") if self._optstring[:1] == ":" else ord("?")
                else:
                    self.optarg = self.argv[self.optind]
                    self.optind += 1
                self._nextchar = None
        return ord(c)

    def _long(self, text: str) -> int:
        argv = self.argv
        eq = text.find("=")
        name = text if eq < 0 else text[:eq]
        found: LongOption | None = None
        for opt in self.longopts:
            if opt.name == name:
                found = opt
                break
        if found is None:
            ambiguous = False
            for opt in self.longopts:
                if opt.name.startswith(name):
                    if found is None:
                        found = opt
                    elif found.has_arg != opt.has_arg or found.val != opt.val:
                        ambiguous = True
            if ambiguous:
                self._nextchar = None
                self.optind += 1
                self.optopt = 0
                return ord("?")
        if found is None:
            self._nextchar = None
            self.optind += 1
            self.optopt = 0
            return ord("?")
        self.optind += 1
        self._nextchar = None
        if eq >= 0:
            if found.has_arg:
                self.optarg = text[eq + 1:]
            else:
                self.optopt = found.val
                return ord("?")
        elif found.has_arg == REQUIRED_ARGUMENT:
            if self.optind < len(argv):
                self.optarg = argv[self.optind]
                self.optind += 1
            else:
                self.optopt = found.val
                return ord(":") if self._optstring[:1] == ":" else ord("?")
        return found.val
