"""nfnl.pytest_plugin, exercised as users meet it: a pytest run (pytester) that loads the plugin
through its ``pytest11`` entry point, with recordings written next to the user's tests."""
from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_replay_recordings import write_pcap  # noqa: E402

pytest_plugins = ["pytester"]


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    (pytester.path / "fixtures").mkdir()
    for name in ("list", "count", "get_enoent", "events"):
        write_pcap(name, pytester.path / "fixtures" / f"{name}.pcap")
    return pytester


def test_the_plugin_is_an_installed_pytest11_entry_point(project: pytest.Pytester) -> None:
    eps = [e for e in importlib.metadata.entry_points(group="pytest11") if e.name == "nfnl"]
    assert [e.value for e in eps] == ["nfnl.pytest_plugin"]
    project.makepyfile("""
        def test_loaded(request):
            assert request.config.pluginmanager.has_plugin("nfnl")
    """)
    project.runpytest().assert_outcomes(passed=1)


def test_netlink_replay_serves_a_recording_to_a_socket(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import errno
        import pytest
        from ctnetlink.client import Conntrack
        from ctnetlink.model import Tuple

        def test_dump(netlink_replay):
            with netlink_replay("fixtures/list.pcap") as sock:
                flows = list(Conntrack(sock=sock).dump())
            assert sorted(str(f.orig.src) for f in flows) == ["192.0.2.1", "192.0.2.9", "2001:db8::1"]

        def test_count_by_absolute_path(netlink_replay, pytestconfig):
            sock = netlink_replay(pytestconfig.rootpath / "fixtures" / "count.pcap")
            assert Conntrack(sock=sock).count() == 4

        def test_events(netlink_replay):
            sock = netlink_replay("fixtures/events.pcap", groups=7, nonblocking=True)
            ct = Conntrack(sock=netlink_replay("fixtures/events.pcap"))
            seen = []
            for ev in ct.events(sock=sock):
                seen.append(ev.type.name)
                if len(seen) == 3:
                    break
            assert seen == ["NEW", "UPDATE", "DESTROY"]

        def test_divergence_is_reported(netlink_replay):
            from nfnl.replay import ReplayMismatch
            with pytest.raises(ReplayMismatch, match="closest recorded requests"):
                Conntrack(sock=netlink_replay("fixtures/list.pcap")).count()
    """)
    project.runpytest().assert_outcomes(passed=4)


def test_install_replays_code_that_opens_its_own_sockets(project: pytest.Pytester) -> None:
    (project.path / "tests").mkdir()
    (project.path / "tests" / "test_prog.py").write_text(
        "import nfnl.socket\n"
        "from ctnetlink.client import Conntrack\n"
        "from nfnl.pytest_plugin import assert_conversations_equal\n"
        "REAL = nfnl.socket._socket\n"
        "\n"
        "def count_flows():\n"
        "    with Conntrack() as ct:\n"
        "        return len(list(ct.dump()))\n"
        "\n"
        "def test_program(netlink_replay):\n"
        "    replay = netlink_replay.install('fixtures/list.pcap')\n"
        "    assert count_flows() == 3\n"
        "    assert_conversations_equal('fixtures/list.pcap', replay)\n"
        "    replay.assert_complete()\n"
        "\n"
        "def test_uninstalled_after_the_test():\n"
        "    assert nfnl.socket._socket is REAL\n")
    project.runpytest("tests").assert_outcomes(passed=2)


def test_assert_conversations_equal_prints_a_decoded_diff(project: pytest.Pytester) -> None:
    project.makepyfile("""
        from nfnl.pcap import read_pcap
        from nfnl.message import set_seq
        from nfnl.pytest_plugin import assert_conversations_equal

        def test_same_but_renumbered():
            packets = list(read_pcap("fixtures/count.pcap"))
            renumbered = [(p.direction, set_seq(p.data, 1, 2)) for p in packets]
            assert_conversations_equal("fixtures/count.pcap", renumbered)

        def test_different():
            a = list(read_pcap("fixtures/count.pcap"))
            b = [(p.direction, p.data.replace(bytes.fromhex("00000004"), bytes.fromhex("00000005")))
                 for p in a]
            assert_conversations_equal(a, b)

        def test_requests_only():
            assert_conversations_equal("fixtures/list.pcap", [list(read_pcap("fixtures/list.pcap"))[0]],
                                       requests_only=True)
    """)
    result = project.runpytest()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*netlink conversations differ (seq/portid/timestamps/padding ignored):*",
        "*-    CTA_STATS_GLOBAL_ENTRIES = 4",
        "*+    CTA_STATS_GLOBAL_ENTRIES = 5",
    ])


def test_a_missing_recording_names_the_places_tried(project: pytest.Pytester) -> None:
    project.makepyfile("""
        def test_missing(netlink_replay):
            netlink_replay("fixtures/nope.pcap")
    """)
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*FileNotFoundError: netlink recording 'fixtures/nope.pcap' not found (tried*"])
