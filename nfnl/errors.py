"""Exceptions of the netlink layer: one decode error type and one kernel error type."""
from __future__ import annotations

import errno as _errno
import os


class NetlinkDecodeError(ValueError):
    """Malformed netlink bytes: truncated header, bad length, bad nesting, bad value size."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} (at offset {offset})")
        self.offset = offset


class NetlinkError(OSError):
    """The kernel answered a request with NLMSG_ERROR carrying a negative errno.

    ``errno`` is positive (as in :class:`OSError`); ``request`` is the request message
    bytes that the error answers (when known) and ``ext_ack`` the extended-ack text.
    """

    def __init__(self, errno: int, request: bytes | None = None, ext_ack: str | None = None) -> None:
        super().__init__(errno, _strerror(errno))
        self.request = request
        self.ext_ack = ext_ack

    def __reduce__(self):  # keep pickling simple for multiprocessing users
        return (type(self), (self.errno, self.request, self.ext_ack))


class DumpInterrupted(NetlinkError):
    """A dump reply carried NLM_F_DUMP_INTR: the table changed while it was dumped."""

    def __init__(self) -> None:
        super().__init__(_errno.EINTR)


def _strerror(code: int) -> str:
    if code == 524:
        return "Unknown error 524"
    try:
        return os.strerror(code)
    except (ValueError, OverflowError):  # beyond a C int
        return f"Unknown error {code}"
