"""Replay recorded netlink conversations: a socket that answers with the kernel's recorded replies.

The user-facing side of :mod:`nfnl.fakekernel` (which holds the matching rules):
:class:`Replay` is a recorded conversation whose :meth:`Replay.socket` gives sockets;
:class:`ReplaySocket` is a real :class:`nfnl.socket.NetlinkSocket` over the fake kernel end
(``sock=``), so ``request``/``dump``/``batch`` run unchanged; :func:`install` makes every
``NetlinkSocket`` a program opens talk to a replay (it patches the ``socket`` module that
:mod:`nfnl.socket` uses); ``python -m nfnl.replay FILE.pcap -m MODULE ...`` runs a whole
program that way. :func:`describe` and :func:`conversation_diff` (from
:mod:`nfnl.conversation`) print and compare conversations the way humans read them (see
also :mod:`nfnl.pytest_plugin`). Messages are decoded with the schemas subsystems register
with :mod:`nfnl.registry`.
"""
from __future__ import annotations

import contextlib
import socket as _real_socket
import sys
from typing import Any, Iterator

from .constants import NETLINK_NETFILTER
from .conversation import (  # noqa: F401 - re-exported: the replay's public API
    Recording, conversation_diff, datagram_key, describe, describe_message, flag_names, load,
    message_key, type_name,
)
from .fakekernel import (  # noqa: F401 - re-exported
    Exchange, FakeKernel, FakeKernelSocket, ReplayExhausted, ReplayMismatch, env_replay,
)
from .registry import discover as ensure_schemas  # noqa: F401 - the former name of discover()
from .socket import NetlinkSocket

__all__ = ["Replay", "ReplaySocket", "ReplayMismatch", "ReplayExhausted", "Exchange",
           "FakeKernel", "FakeKernelSocket", "install", "uninstall", "installed", "env_replay",
           "Recording", "load", "describe", "describe_message", "conversation_diff",
           "message_key", "datagram_key", "flag_names", "type_name", "ensure_schemas", "main"]


class Replay(FakeKernel):
    """A recorded conversation served to replay sockets (matching rules, keywords and
    hooks: :class:`~nfnl.fakekernel.FakeKernel`)."""

    def socket(self, protocol: int = NETLINK_NETFILTER, groups: int = 0,
               **kw: Any) -> "ReplaySocket":
        """A :class:`ReplaySocket` on this replay (keywords as for ``NetlinkSocket``)."""
        return ReplaySocket(self, protocol, groups, **kw)


class ReplaySocket(NetlinkSocket):
    """A :class:`NetlinkSocket` whose kernel is a :class:`Replay` (or a recording to load).

    Usable wherever a ``NetlinkSocket`` is, e.g. ``Conntrack(sock=ReplaySocket("x.pcap"))``;
    ``replay`` is the :class:`Replay` it talks to.
    """

    def __init__(self, replay: FakeKernel | Recording, protocol: int = NETLINK_NETFILTER,
                 groups: int = 0, **kw: Any) -> None:
        self.replay = replay if isinstance(replay, FakeKernel) else Replay(replay)
        raw = self.replay.raw_socket(protocol)
        raw.bind((0, groups))
        kw.pop("sock", None)
        super().__init__(protocol, groups, sock=raw, **kw)  # type: ignore[arg-type]


# --- whole programs on a replay ------------------------------------------------------------------

class _SocketModule:
    """Stands in for the ``socket`` module inside :mod:`nfnl.socket`: AF_NETLINK sockets come
    from the replay, everything else from the real module."""

    def __init__(self, real: Any, replay: FakeKernel) -> None:
        self._real = real
        self.replay = replay

    def socket(self, family: int = -1, type: int = -1, proto: int = -1, fileno: Any = None) -> Any:
        if family == _real_socket.AF_NETLINK and fileno is None:
            return self.replay.raw_socket(NETLINK_NETFILTER if proto == -1 else proto)
        return self._real.socket(family, type, proto, fileno)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def install(recording: FakeKernel | Recording, **kw: Any) -> FakeKernel:
    """Make every :class:`NetlinkSocket` created from now on talk to a replay; returns it.

    Works for code that opens its own sockets (``Conntrack()``): it replaces the ``socket``
    module that :mod:`nfnl.socket` uses, so the sockets are genuine ``NetlinkSocket`` objects.
    Undo with :func:`uninstall` (installs nest). Keywords go to :class:`Replay`.
    """
    from . import socket as nsock

    replay = recording if isinstance(recording, FakeKernel) else Replay(recording, **kw)
    nsock._socket = _SocketModule(nsock._socket, replay)  # type: ignore[attr-defined]
    return replay


def uninstall() -> None:
    """Undo the latest :func:`install`."""
    from . import socket as nsock

    current = nsock._socket  # type: ignore[attr-defined]
    if isinstance(current, _SocketModule):
        nsock._socket = current._real  # type: ignore[attr-defined]


@contextlib.contextmanager
def installed(recording: FakeKernel | Recording, **kw: Any) -> Iterator[FakeKernel]:
    """``with installed("x.pcap") as replay:`` — :func:`install` for the block."""
    replay = install(recording, **kw)
    try:
        yield replay
    finally:
        uninstall()


def main(argv: list[str] | None = None) -> int:
    """``python -m nfnl.replay FILE.pcap (-m MODULE | SCRIPT) [ARGS...]``: run a program on a replay."""
    import runpy

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or (argv[1] == "-m" and len(argv) < 3):
        print(main.__doc__, file=sys.stderr)
        return 2
    install(argv[0])
    if argv[1] == "-m":
        sys.argv = [argv[2], *argv[3:]]
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv[1:]
        runpy.run_path(argv[1], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
