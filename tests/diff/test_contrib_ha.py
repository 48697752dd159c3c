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


def _notify_messages(namespace, program: list[str], config: Path, sock_path: Path) -> list[str]:
    """Start ``program -C config`` as systemd would for Type=notify (NOTIFY_SOCKET set),
    collect its notifications until READY=1, stop it with SIGTERM (as ``systemctl
    stop``) and collect the rest."""
    import signal
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(sock_path))
        s.settimeout(30)
        proc = subprocess.Popen(["ip", "netns", "exec", namespace.name, *program, "-C",
                                 str(config)], env={**os.environ, "NOTIFY_SOCKET": str(sock_path)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        msgs: list[str] = []
        try:
            while "READY=1" not in msgs:
                msgs += s.recv(4096).decode().split("\n")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        s.settimeout(0.5)
        try:
            while True:
                msgs += s.recv(4096).decode().split("\n")
        except TimeoutError:
            pass
    return [m for m in msgs if m]


@pytest.mark.parametrize("impl", ["c", "ours"])
def test_conntrackd_conf_gives_type_notify_its_ready(namespace, tmp_path, impl):
    """The unit's ``Type=notify`` with the contrib configuration (paths moved to a temp
    dir): the daemon says READY=1 once started and STOPPING=1 when stopped."""
    namespace.run("ip", "link", "set", "eth2", "up")
    namespace.run("ip", "addr", "add", "192.168.100.100/24", "dev", "eth2")
    text = (CONTRIB / "conntrackd.conf").read_text()
    text = (text.replace("/var/run/conntrackd.ctl", str(tmp_path / "ctl"))
            .replace("/var/lock/conntrack.lock", str(tmp_path / "lock"))
            .replace("LogFile on", f"LogFile {tmp_path}/log"))
    config = tmp_path / "conntrackd.conf"
    config.write_text(text)
    program = ["/usr/sbin/conntrackd"] if impl == "c" else [sys.executable, "-m",
                                                            "conntrack_tools.conntrackd"]
    msgs = _notify_messages(namespace, program, config, tmp_path / "notify")
    assert "READY=1" in msgs
    assert "STOPPING=1" in msgs[msgs.index("READY=1"):]
