"""The connection label map (``/etc/xtables/connlabel.conf``): names ⇄ bit numbers.

Loaded like libnetfilter_conntrack's ``nfct_labelmap_new``: lines starting with ``#``
are comments; otherwise a bit number (``strtoul`` base 0, below 1024) and a name that,
trimmed of white space, consists only of letters, digits, space and ``-``. Invalid
lines, repeated bits and repeated names are ignored (the first wins). A file without
any valid label counts as a failure with errno 0 (``nfct_labelmap_new: Success``).
The path can be overridden with the ``PYCONNTRACK_CONNLABEL_CONF`` environment
variable (tests) or the ``path`` argument.
"""
from __future__ import annotations

import os

from .libc import strtoul

CONNLABEL_CONF = "/etc/xtables/connlabel.conf"
MAX_BITS = 1024
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 -")
_TRIM = " \t\n\v\f\r"


def default_path() -> str:
    return os.environ.get("PYCONNTRACK_CONNLABEL_CONF", CONNLABEL_CONF)


class LabelMapError(OSError):
    """The map could not be loaded; ``errno`` as ``perror`` would report it (0 = none)."""


class LabelMap:
    """Label names by bit number and bit numbers by name."""

    __slots__ = ("names", "bits")

    def __init__(self, names: dict[int, str]) -> None:
        self.names = dict(names)
        self.bits = {name: bit for bit, name in self.names.items()}

    def bit(self, name: str) -> int | None:
        """The bit of an exactly matching name, or None."""
        return self.bits.get(name)

    def name(self, bit: int) -> str | None:
        return self.names.get(bit)

    @classmethod
    def parse(cls, data: bytes) -> "LabelMap | None":
        """The map defined by a file's content, or None if it defines no label."""
        names: dict[int, str] = {}
        seen: set[str] = set()
        for piece in _pieces(data, 1024):
            line = piece.decode("utf-8", "surrogateescape")
            if line.startswith("#"):
                continue
            value, end = strtoul(line, 0)
            if end == 0 or value >= MAX_BITS:
                continue
            label = line[end:].strip(_TRIM)
            if not label or not set(label) <= _NAME_CHARS:
                continue
            if value in names or label in seen:
                continue
            names[value] = label
            seen.add(label)
        return cls(names) if names else None

    @classmethod
    def load(cls, path: str | None = None) -> "LabelMap":
        """Load a map; raises :class:`LabelMapError` as ``nfct_labelmap_new`` fails."""
        path = path or default_path()
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise LabelMapError(e.errno or 0, os.strerror(e.errno or 0)) from None
        result = cls.parse(data)
        if result is None:
            raise LabelMapError(0, os.strerror(0))
        return result

    def __repr__(self) -> str:
        return f"LabelMap({self.names!r})"


def _pieces(data: bytes, bufsize: int) -> list[bytes]:
    """What ``fgets(buf, bufsize, fp)`` returns line by line (long lines in pieces)."""
    out = []
    i, n = 0, len(data)
    while i < n:
        j = data.find(b"\n", i, i + bufsize - 1)
        end = j + 1 if j >= 0 else min(n, i + bufsize - 1)
        out.append(data[i:end])
        i = end
    return out


def strerror_text(err: OSError) -> str:
    """``perror``'s text for a load failure ("Success" for errno 0)."""
    code = err.errno or 0
    return "Success" if code == 0 else os.strerror(code)
