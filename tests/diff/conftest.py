"""Fixtures of the differential suite: the rich table (one namespace for the whole
session, read-only commands), fresh namespaces for commands that change the table, and
the label map both programs read.

The label map is not taken from the host: every child process (the reference and ours)
runs in a private mount namespace where a temporary directory is bind-mounted on
``/etc/xtables``, so ``/etc/xtables/connlabel.conf`` is the map written here for both
programs, whatever the host has (or lacks).
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import REFERENCE, Namespace, warm_up  # noqa: E402
from helpers.netns import NetNS  # noqa: E402

LABELS = "0 eth0-in\n1 eth1-in\n2 web\n5 high\n"
XTABLES = "/etc/xtables"


@pytest.fixture(scope="session")
def xtables() -> Iterator[str]:
    """A directory holding ``connlabel.conf``, shown to the children as /etc/xtables."""
    if os.geteuid() != 0:
        pytest.fail("the differential suite needs root (network namespaces)")
    if not os.path.exists(REFERENCE):
        pytest.fail(f"{REFERENCE} (conntrack-tools 1.4.7) is missing")
    created = not os.path.isdir(XTABLES)
    if created:  # a mount point for the bind mounts
        os.makedirs(XTABLES)
    d = tempfile.mkdtemp(prefix="pyct-diff-xtables-")
    Path(d, "connlabel.conf").write_text(LABELS)
    os.chmod(d, 0o755)
    warm_up()
    try:
        yield d
    finally:
        Path(d, "connlabel.conf").unlink()
        os.rmdir(d)
        if created:
            os.rmdir(XTABLES)


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="pyct-diff-"))
    yield d
    import shutil
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def rich_session(xtables: str, workdir: Path):
    """(NetNS, Namespace runner, RichTable) of the shared, read-only rich table."""
    import richtable

    with NetNS("pyct-rich") as ns:
        runner = Namespace(ns.path, cwd=str(workdir), xtables=xtables)
        rt = None
        try:
            rt = richtable.build(ns, runner)
            yield ns, runner, rt
        finally:
            if rt is not None:
                rt.close()
            runner.close()


@pytest.fixture
def rich(rich_session):
    """The rich table, its expectations younger than two minutes (the kernel gives the
    helpers' expectations five minutes, whatever -t said)."""
    import richtable

    ns, runner, rt = rich_session
    richtable.keep_expectations(rt, runner, max_age=120)
    return rich_session


@contextlib.contextmanager
def _fresh(xtables: str, workdir: Path):
    import richtable

    with NetNS("pyct-diff") as ns:
        richtable.prepare(ns)
        runner = Namespace(ns.path, cwd=str(workdir), xtables=xtables)
        try:
            yield ns, runner
        finally:
            runner.close()


@pytest.fixture
def fresh(xtables: str, workdir: Path):
    """A new empty namespace (the rich table's sysctls and ruleset) and its runner."""
    with _fresh(xtables, workdir) as pair:
        yield pair


@pytest.fixture(scope="module")
def module_ns(xtables: str, workdir: Path):
    """Like ``fresh``, shared by the tests of one module."""
    with _fresh(xtables, workdir) as pair:
        yield pair
