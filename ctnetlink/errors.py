"""Typed conntrack errors: one base class carrying errno, one subclass per common cause."""
from __future__ import annotations

import errno as E

from nfnl.errors import NetlinkError


class ConntrackError(NetlinkError):
    """A ctnetlink request failed; ``errno`` is positive, ``request`` the message sent."""


class FlowExists(ConntrackError):
    """EEXIST: an entry with this tuple already exists."""


class FlowNotFound(ConntrackError):
    """ENOENT: no such entry (or, for expectations, no such master)."""


class PermissionDenied(ConntrackError):
    """EPERM: CAP_NET_ADMIN is needed."""


class InvalidArgument(ConntrackError):
    """EINVAL: the kernel rejected the attributes."""


class NotSupported(ConntrackError):
    """EOPNOTSUPP / ENOTSUPP (524) / EAFNOSUPPORT."""


class Expired(ConntrackError):
    """ETIME: the entry expired while being created."""


class OutOfMemory(ConntrackError):
    """ENOMEM."""


class Busy(ConntrackError):
    """EBUSY / EAGAIN: try again."""


class NoSpace(ConntrackError):
    """ENOSPC: e.g. labels on an entry created without the label extension."""


_BY_ERRNO: dict[int, type[ConntrackError]] = {
    E.EEXIST: FlowExists,
    E.ENOENT: FlowNotFound,
    E.EPERM: PermissionDenied,
    E.EACCES: PermissionDenied,
    E.EINVAL: InvalidArgument,
    E.EOPNOTSUPP: NotSupported,
    524: NotSupported,
    E.EAFNOSUPPORT: NotSupported,
    E.EPROTONOSUPPORT: NotSupported,
    E.ETIME: Expired,
    E.ENOMEM: OutOfMemory,
    E.EBUSY: Busy,
    E.EAGAIN: Busy,
    E.ENOSPC: NoSpace,
}


def from_errno(code: int, request: bytes | None = None, ext_ack: str | None = None) -> ConntrackError:
    """The most specific :class:`ConntrackError` subclass for ``code``."""
    return _BY_ERRNO.get(code, ConntrackError)(code, request, ext_ack)


def wrap(err: NetlinkError) -> ConntrackError:
    if isinstance(err, ConntrackError):
        return err
    return from_errno(err.errno, err.request, err.ext_ack)
