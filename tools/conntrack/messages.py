"""The texts the reference prints for kernel errors (spec §10.3) and its summaries."""
from __future__ import annotations

import errno as E
import os

from .invocation import Command

_C = Command
# (errno, commands or None for any) -> text; first match wins, else strerror
_TABLE: tuple[tuple[int, frozenset | None, str], ...] = (
    (524, frozenset({_C.LIST}), "function not implemented"),
    (E.EINVAL, frozenset({_C.LIST, _C.CREATE, _C.UPDATE, _C.DELETE, _C.GET, _C.FLUSH,
                          _C.EVENT, _C.VERSION, _C.HELP, _C.EXP_LIST, _C.EXP_CREATE,
                          _C.EXP_DELETE, _C.EXP_GET, _C.EXP_FLUSH, _C.EXP_EVENT, _C.COUNT}),
     "invalid parameters"),
    (E.EEXIST, frozenset({_C.CREATE}), "Such conntrack exists, try -U to update"),
    (E.ENOENT, frozenset({_C.CREATE, _C.GET, _C.DELETE, _C.ADD}), "such conntrack doesn't exist"),
    (E.ENOMEM, frozenset({_C.CREATE, _C.GET, _C.ADD}), "not enough memory"),
    (E.EAFNOSUPPORT, frozenset({_C.GET}), "protocol not supported"),
    (E.ETIME, frozenset({_C.CREATE, _C.ADD}), "conntrack has expired"),
    (E.ENOENT, frozenset({_C.EXP_CREATE}), "master conntrack not found"),
    (E.EPERM, None, "sorry, you must be root or get CAP_NET_ADMIN capability to do this"),
)


def strerror(code: int) -> str:
    """glibc's wording (``Unknown error N`` for numbers it does not know)."""
    try:
        return os.strerror(code)
    except (ValueError, OverflowError):  # beyond a C int
        return f"Unknown error {code}"


def operation_failed(code: int, command: Command | None) -> str:
    """The text after ``Operation failed: `` for ``errno`` ``code`` in ``command``."""
    for err, commands, text in _TABLE:
        if err == code and (commands is None or command in commands):
            return text
    return strerror(code)


SUMMARY = {
    _C.LIST: "{n} flow entries have been shown.",
    _C.GET: "{n} flow entries have been shown.",
    _C.CREATE: "{n} flow entries have been created.",
    _C.ADD: "{n} flow entries have been added.",
    _C.UPDATE: "{n} flow entries have been updated.",
    _C.DELETE: "{n} flow entries have been deleted.",
    _C.EXP_LIST: "{n} expectations have been shown.",
    _C.EXP_DELETE: "{n} expectations have been shown.",
    _C.EVENT: "{n} flow events have been shown.",
    _C.EXP_EVENT: "{n} expectation events have been shown.",
}

ENOBUFS_WARNING = (
    "WARNING: We have hit ENOBUFS! We are losing events.\n"
    "This message means that the current netlink socket buffer size is too small.\n"
    "Please, check --buffer-size in conntrack(8) manpage.\n"
)
