"""pytest plugin (entry point ``pytest11: nfnl``): run code against recorded netlink conversations.

The ``netlink_replay`` fixture serves a recorded pcap instead of the kernel, without root::

    def test_dump(netlink_replay):
        with netlink_replay("fixtures/list.pcap") as sock:        # a ReplaySocket
            flows = list(Conntrack(sock=sock).dump())

    def test_program(netlink_replay):
        replay = netlink_replay.install("fixtures/list.pcap")     # every NetlinkSocket opened
        main(["-L"])                                              # until the test ends replays
        assert_conversations_equal("fixtures/list.pcap", replay.played)

Relative paths are looked up in the current directory, the test file's directory and the
rootdir. :func:`assert_conversations_equal` compares two conversations (pcap paths, Packets or
``(direction, bytes)`` lists) ignoring seq, portid, timestamps, padding and datagram packing,
and fails with a decoded unified diff. See :mod:`nfnl.replay` for the matching rules.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from .conversation import Recording, conversation_diff
from .fakekernel import FakeKernel
from .replay import Replay, ReplaySocket, install, uninstall

__all__ = ["assert_conversations_equal", "NetlinkReplay", "netlink_replay"]


def assert_conversations_equal(a: Recording | Replay, b: Recording | Replay, *,
                               ordered_attrs: bool = True, requests_only: bool = False) -> None:
    """Fail with a readable decoded diff unless ``a`` and ``b`` are equivalent conversations
    (a :class:`Replay` stands for what was played on it)."""
    __tracebackhide__ = True
    a = a.played if isinstance(a, FakeKernel) else a
    b = b.played if isinstance(b, FakeKernel) else b
    diff = conversation_diff(a, b, ordered_attrs=ordered_attrs, requests_only=requests_only)
    if diff:
        raise AssertionError("netlink conversations differ (seq/portid/timestamps/padding "
                             "ignored):\n" + diff)


class NetlinkReplay:
    """What the ``netlink_replay`` fixture returns; cleans up when the test ends."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._dirs = [Path.cwd(), Path(str(request.path)).parent, Path(request.config.rootpath)]
        self._sockets: list[ReplaySocket] = []
        self._installs = 0
        self.replays: list[Replay] = []

    def path(self, recording: str | os.PathLike[str]) -> Path:
        """Resolve a recording path (cwd, then the test's directory, then the rootdir)."""
        p = Path(recording)
        if p.is_absolute():
            return p
        for base in self._dirs:
            if (base / p).exists():
                return base / p
        tried = ", ".join(str(base / p) for base in self._dirs)
        raise FileNotFoundError(f"netlink recording {str(recording)!r} not found (tried {tried})")

    def replay(self, recording: Recording | Replay, **kw: Any) -> Replay:
        """A :class:`Replay` of ``recording`` (keywords: ``strict``, ``exhausted``)."""
        if isinstance(recording, Replay):
            return recording
        if isinstance(recording, (str, os.PathLike)):
            recording = self.path(recording)
        replay = Replay(recording, **kw)
        self.replays.append(replay)
        return replay

    def __call__(self, recording: Recording | Replay, *, groups: int = 0, strict: bool = False,
                 **sock_kw: Any) -> ReplaySocket:
        """A :class:`ReplaySocket` (a context manager) answering from ``recording``."""
        replay = self.replay(recording, strict=strict) if not isinstance(recording, Replay) else recording
        sock = ReplaySocket(replay, groups=groups, **sock_kw)
        self._sockets.append(sock)
        return sock

    def install(self, recording: Recording | Replay, **kw: Any) -> Replay:
        """Make every ``NetlinkSocket`` created until the test ends talk to the replay."""
        replay = install(self.replay(recording, **kw))
        self._installs += 1
        return replay

    def close(self) -> None:
        for _ in range(self._installs):
            uninstall()
        self._installs = 0
        for sock in self._sockets:
            if not sock.closed:
                sock.close()
        self._sockets.clear()


@pytest.fixture
def netlink_replay(request: pytest.FixtureRequest) -> Iterator[NetlinkReplay]:
    """Run code against a recorded netlink conversation instead of the kernel."""
    fixture = NetlinkReplay(request)
    try:
        yield fixture
    finally:
        fixture.close()
