"""The HA files in ``contrib/``: ``primary-backup.sh`` runs the reference's command
sequence (spec §10) with its settings overridable from the environment,
``conntrackd.conf`` parses the same, warning-free, for the 1.4.7 binary and ours, and
``keepalived.conf`` passes keepalived's own configuration test. The failover they are
for is tested in ``test_conntrackd_ha.py``."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.conntrackd_ref import CANT_CONNECT, our_diagnostics, reference_diagnostics  # noqa: E402
from helpers.netns import NetNS  # noqa: E402

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
SCRIPT = CONTRIB / "primary-backup.sh"

# spec §10: the commands of each transition, in order
SEQUENCES = {"primary": ["-c", "-f", "-R", "-B"], "backup": ["-s", "-t", "-n"], "fault": ["-t"]}


def fake_conntrackd(tmp_path: Path, fail: str = "") -> Path:
    """A CONNTRACKD_BIN that records its arguments and exits 1 for the option ``fail``."""
    path = tmp_path / "conntrackd"
    path.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/calls\n'
                    f'[ "$3" = "{fail}" ] && exit 1\nexit 0\n')
    path.chmod(0o755)
    return path


def run_script(tmp_path: Path, state: str, fail: str = "") -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
           "CONNTRACKD_BIN": str(fake_conntrackd(tmp_path, fail)),
           "CONNTRACKD_CONFIG": str(tmp_path / "node.conf"),
           "CONNTRACKD_LOCK": str(tmp_path / "node.lock")}
    return subprocess.run([str(SCRIPT), state], env=env, capture_output=True, text=True,
                          timeout=30)


def calls(tmp_path: Path) -> list[str]:
    try:
        return (tmp_path / "calls").read_text().splitlines()
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("state", sorted(SEQUENCES))
def test_script_runs_the_reference_sequence_with_overridden_settings(tmp_path, state):
    r = run_script(tmp_path, state)
    assert r.returncode == 0, r.stderr
    assert calls(tmp_path) == [f"-C {tmp_path}/node.conf {opt}" for opt in SEQUENCES[state]]


def test_script_continues_after_a_failed_command(tmp_path):
    r = run_script(tmp_path, "primary", fail="-c")
    assert r.returncode == 0
    assert calls(tmp_path) == [f"-C {tmp_path}/node.conf {opt}" for opt in SEQUENCES["primary"]]


def test_backup_starts_a_daemon_and_removes_a_stale_lock(tmp_path):
    (tmp_path / "node.lock").write_text("")
    r = run_script(tmp_path, "backup", fail="-s")
    assert r.returncode == 0
    assert not (tmp_path / "node.lock").exists()
    assert calls(tmp_path) == [f"-C {tmp_path}/node.conf {opt}" for opt in ["-s", "-d", "-t", "-n"]]


def test_unknown_state(tmp_path):
    r = run_script(tmp_path, "master")
    assert (r.returncode, r.stdout) == (1, "Usage: primary-backup.sh {primary|backup|fault}\n")
    assert calls(tmp_path) == []


def test_script_defaults_are_the_reference_ones():
    text = SCRIPT.read_text()
    for default in ("${CONNTRACKD_BIN:-/usr/sbin/conntrackd}",
                    "${CONNTRACKD_LOCK:-/var/lock/conntrack.lock}",
                    "${CONNTRACKD_CONFIG:-/etc/conntrackd/conntrackd.conf}"):
        assert default in text


@pytest.fixture
def namespace():
    """A namespace with the interfaces the contrib files name (eth0, eth1, eth2)."""
    ns = NetNS(prefix="ha-contrib")
    ns.create()
    try:
        ns.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        ns.run("ip", "link", "add", "eth2", "type", "veth", "peer", "name", "eth3")
        with ns.enter():
            yield ns
    finally:
        ns.delete()


def test_conntrackd_conf_is_read_alike_and_without_warnings(namespace, tmp_path):
    text = (CONTRIB / "conntrackd.conf").read_bytes().replace(
        b"/var/run/conntrackd.ctl", str(tmp_path / "no.ctl").encode())
    ref = reference_diagnostics(text, str(tmp_path))
    assert ref == (CANT_CONNECT, 1)
    assert our_diagnostics(text) == ref


def test_keepalived_conf_passes_keepalived_config_test(namespace):
    r = namespace.run("keepalived", "-t", "-f", str(CONTRIB / "keepalived.conf"), check=False)
    assert (r.returncode, r.stderr) == (0, "")
