"""conntrackd.conf -> Config: values, defaults, diagnostics (no reference binary here;
tests/diff/test_conntrackd_diff_config.py compares every message with 1.4.7)."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from conntrack_tools.conntrackd import config as C

EXAMPLES = sorted(Path("/usr/share/doc/conntrackd/examples").rglob("conntrackd.conf"))


def err(text: str) -> C.ConfigError:
    with pytest.raises(C.ConfigError) as e:
        C.parse(text)
    return e.value


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_shipped_examples_load(path):
    cfg = C.load(str(path))
    assert cfg.general.unix.path == "/var/run/conntrackd.ctl"
    if path.parent.name == "stats":
        assert cfg.mode == "stats" and cfg.stats.logfile == C.DEFAULT_STATS_LOGFILE
        assert cfg.general.filter.protocols == (socket.IPPROTO_TCP,)
    else:
        assert cfg.mode == "sync" and cfg.sync.mode == path.parent.name
        assert cfg.sync.transport == "multicast" and len(cfg.sync.channels) == 1
        ch = cfg.sync.channels[0]
        assert (ch.address, ch.port, ch.interface, ch.checksum) == ("225.0.0.50", 3780, "eth2", True)


def test_defaults_of_the_reference():
    cfg = C.parse("Sync { }\n")
    g, s = cfg.general, cfg.sync
    assert (g.hashsize, g.hashlimit, g.lockfile, g.logfile, g.syslog_facility) == \
        (65536, 262144, "/var/lock/conntrackd.lock", None, None)
    assert (g.netlink_overrun_resync, g.event_iteration_limit, g.poll_secs, g.systemd) == \
        (30, 100, None, True)
    assert (g.scheduler.policy, g.unix.path, g.filter, g.commit_steps) == (None, "", None, 8192)
    assert (s.mode, s.mode_given, s.refresh_time, s.cache_timeout, s.commit_timeout,
            s.purge_timeout, s.resend_queue_size, s.ack_window_size, s.error_queue_length) == \
        ("ftfw", False, 60, 180, 0, 60, 131072, 300, 128)
    assert cfg.stats is None and cfg.helper is None and cfg.metrics is None
    assert C.parse("").mode is None and C.parse("").general == C.General()


def test_zero_means_default_and_last_assignment_wins():
    cfg = C.parse("General { HashSize 0 HashLimit 5 HashLimit 7 EventIterationLimit 0 "
                  "NetlinkOverrunResync 0 }\nSync { Mode ALARM { RefreshTime 0 CacheTimeout 9 } "
                  "PurgeTimeout 4 }\n")
    assert (cfg.general.hashsize, cfg.general.hashlimit) == (65536, 7)
    assert cfg.general.event_iteration_limit == 100 and cfg.general.netlink_overrun_resync == 30
    assert (cfg.sync.mode, cfg.sync.refresh_time, cfg.sync.cache_timeout,
            cfg.sync.purge_timeout) == ("alarm", 60, 9, 4)
    assert C.parse("General { NetlinkOverrunResync off }").general.netlink_overrun_resync == -1
    # 1.4.7 (observed with the daemon): `LogFile off` keeps a path set before it
    cfg = C.parse("General { LogFile /x LogFile off }\nStats { LogFile /y LogFile off }")
    assert (cfg.general.logfile, cfg.stats.logfile) == ("/x", "/y")


def test_every_setting_lands_in_the_config():
    text = """
    General {
        Systemd off  LogFile on  Syslog local3  LockFile /run/x.lock  PollSecs 15
        UNIX { Path /run/x.ctl }  SocketBufferSize 1000  SocketBufferSizeMaxGrown 2000
        NetlinkEventsReliable on  Scheduler { Type fifo Priority 5 }
        Filter From Kernelspace {
            Protocol Ignore { TCP UDP icmp }
            Address Accept { IPv4_address 10.0.0.1 IPv4_address 10.0.0.0/8 IPv6_address ::1
                             IPv6_address fe80::/10 }
            State Accept { ESTABLISHED CLOSED for TCP }
        }
    }
    Sync {
        Mode NOTRACK { DisableInternalCache on DisableExternalCache yes StartupResync on }
        TCP { IPv4_address 10.0.0.1 IPv4_Destination_Address 10.0.0.2 Port 3780
              Interface lo SndSocketBuffer 5 RcvSocketBuffer 6 Checksum off ErrorQueueLength 9 }
        TCP Default { IPv6_address ::1 Port 1 }
        Options { TCPWindowTracking on ExpectationSync { ftp sip } }
    }
    Helper { Setup on Type ftp inet tcp { QueueNum 3 QueueLen 10 Policy ftp { ExpectMax 2
             ExpectTimeout 30 } } }
    Metrics { Address ::1 Port 9100 Path /m }
    """
    cfg = C.parse(text)
    g = cfg.general
    assert (g.systemd, g.logfile, g.syslog_facility, g.lockfile, g.poll_secs) == \
        (False, C.DEFAULT_LOGFILE, 19 << 3, "/run/x.lock", 15)
    assert (g.unix.path, g.netlink_buffer_size, g.netlink_buffer_size_max_growth) == \
        ("/run/x.ctl", 1000, 2000)
    assert g.netlink_events_reliable and g.scheduler == C.Scheduler("FIFO", 5)
    f = g.filter
    assert f.kernelspace and f.protocol_policy == "ignore" and f.protocols == (6, 17, 1)
    assert f.address_policy == "accept" and f.ipv4_hosts == (bytes([10, 0, 0, 1]),)
    assert f.ipv4_networks == ((bytes([10, 0, 0, 0]), 8),)
    assert f.ipv6_hosts == (socket.inet_pton(socket.AF_INET6, "::1"),)
    assert f.ipv6_networks == ((socket.inet_pton(socket.AF_INET6, "fe80::"), 10),)
    assert f.state_policy == "accept" and f.tcp_states == (3, 8)
    s = cfg.sync
    assert (s.mode, s.disable_internal_cache, s.disable_external_cache, s.startup_resync) == \
        ("notrack", True, True, True)
    assert s.transport == "tcp" and s.default_channel == 1 and s.error_queue_length == 9
    a, b = s.channels
    assert (a.address, a.dest_address, a.port, a.interface, a.ifindex, a.sndbuf, a.rcvbuf,
            a.checksum, a.family) == ("10.0.0.1", "10.0.0.2", 3780, "lo",
                                      socket.if_nametoindex("lo"), 5, 6, False, 2)
    assert b.default and b.family == 10 and b.address == "::1"
    assert s.tcp_window_tracking and s.expectation_sync and s.expectation_helpers == ("ftp", "sip")
    h = cfg.helper
    assert h.setup and h.types == (C.HelperType("ftp", 2, 6, 3, 10,
                                                (C.HelperPolicy("ftp", 2, 30),)),)
    assert cfg.metrics == C.Metrics("::1", 9100, "/m")
    with pytest.raises(C.FrozenInstanceError):
        cfg.general.hashsize = 1  # type: ignore[misc]


@pytest.mark.parametrize("text, message", [
    ("General {\n HashSize abc\n}\n", "parsing config file in line (2), symbol 'abc': syntax error"),
    ("General {\n Foo 1\n}\n", "parsing config file in line (2), symbol 'Foo': syntax error"),
    ("general {\n}\n", "parsing config file in line (1), symbol 'general': syntax error"),
    ("General {\n Nice 10\n}\n", "parsing config file in line (2), symbol '10': syntax error"),
    ("Sync {\n UDP { Interface cafe }\n}\n",
     "parsing config file in line (2), symbol 'cafe': syntax error"),
    ("General {\n\n", "parsing config file in line (3), symbol '': syntax error"),
    ("Stats {\n NetlinkEventsReliable on\n}\n",
     "parsing config file in line (2), symbol 'NetlinkEventsReliable': syntax error"),
    ("Sync { Mode FTFW { RefreshTime 5 } }",
     "parsing config file in line (1), symbol 'RefreshTime': syntax error"),
    ("General { }\n# no newline", "parsing config file in line (2), symbol '#': syntax error"),
    ("Stats { } Sync { }", "cannot use both `Stats' and `Sync' clauses in conntrackd.conf"),
    ("Sync { Multicast { } UDP { } }",
     "cannot use `UDP' with other dedicated link protocols!"),
    ("Sync { " + "TCP { } " * 4 + "TCP { Port 1 } }",
     "too many dedicated links in the configuration file (Maximum: 4)"),
    ("General { Scheduler { Type idle } }", "unknown scheduler `idle'"),
    ("General { Scheduler { Priority 100 } }", "`Priority' must be [0, 99]\n"),
    ("General { PollSecs 0 }", "`PollSecs' clause must be > 0"),
    ("General { UNIX { Path /" + "x" * 107 + " } }", "Path is longer than 107 characters"),
    ("General { LogFile /" + "x" * 256 + " }", "LogFile path is longer than 256 characters"),
    ("General { LockFile /" + "x" * 256 + " }", "LockFile path is longer than 256 characters"),
    ("Stats { LogFile /" + "x" * 256 + " }", "stats LogFile path is longer than 256 characters"),
    ("Helper { Type ftp inet7 tcp { } }", "unknown layer 3 protocol"),
    ("Helper { Type ftp inet sctp { } }", "unknown layer 4 protocol"),
    ("Helper { Type ftp inet udp { } }", "Unknown `ftp' helper"),
    ("Helper { Type ftp inet tcp { Policy sip { ExpectMax 1 } } }",
     "Unknown policy `sip' in helper configuration"),
    ("Helper { Type ftp inet tcp { Policy ftp { } } }",
     "Helper policy configuration empty, fix your configuration file, please"),
    ("Helper { Type ftp inet tcp { Policy abcdefghijklmnopq { ExpectMax 1 } } }",
     "Helper Policy is longer than 16 characters"),
    ("Metrics { Port 0 }", "`Metrics': Port must be [1, 65535]"),
    ("Metrics { Address cafe }", "`Metrics': cafe is not a valid address"),
])
def test_fatal_diagnostics(text, message):
    e = err(text)
    assert (e.message, e.status, e.raw) == (message, 1, False)


@pytest.mark.parametrize("text, warnings", [
    ("Sync { Mode nack { } }", ["Now `nack' mode is called `ftfw'. Please, update your "
                                "conntrackd.conf file.\n"]),
    ("Sync { Mode PERSISTENT { } }", ["Now `persistent' mode is called `alarm'. Please, "
                                      "update your conntrackd.conf file."]),
    ("General { Nice -1 }", ["deprecated nice configuration, ignoring. The nice value can be "
                             "set externally with nice(1) and renice(1)."]),
    ("General { UNIX { Backlog 1 } }", ["deprecated unix backlog configuration, ignoring."]),
    ("Sync { Multicast { IPv6_interface ::1 } }", ["`IPv6_interface' not required, ignoring"]),
    ("Sync { UDP { Interface nosuchif0 } }", ["nosuchif0 is an invalid interface"]),
    ("Sync { UDP { IPv4_address 1.2.3.400 } }", ["1.2.3.400 is not a valid IPv4 address"]),
    ("Sync { Multicast { IPv6_address 1.2.3.4 } }", ["1.2.3.4 is not a valid IPv6 address"]),
    ("Sync { Multicast { IPv6_address ff02::1 IPv4_address 225.0.0.1 } }",
     ["your multicast address is IPv4 but is binded to an IPv6 interface? Surely, this is "
      "not what you want"]),
    ("General { Syslog foo }", ["'foo' is not a known syslog facility, ignoring"]),
    ("Stats { Syslog foo }", ["'foo' is not a known syslog facility, ignoring."]),
    ("General { Syslog local0 } Stats { Syslog local1 }",
     ["conflicting Syslog facility values, defaulting to General"]),
    ("General { Filter { Protocol Accept { nosuchproto } } }",
     ["getprotobyname() cannot find protocol `nosuchproto' in /etc/protocols"]),
    ("General { Filter { Address Ignore { IPv4_address 1.2.3.4/33 IPv6_address ::/129 "
     "IPv4_address 1.2.3.256 IPv6_address 1.2.3.4 IPv4_address 1.0.0.0/8 "
     "IPv4_address 1.0.0.0/8 } } }",
     ["1.2.3.4/33 is not a valid network, ignoring", "::/129 is not a valid network, ignoring",
      "1.2.3.256 is not a valid IPv4, ignoring", "1.2.3.4 is not a valid IPv6, ignoring",
      "netmask 1.0.0.0 is repeated in the ignore pool"]),
    ("Sync { Mode FTFW { CommitTimeout 5 DisableExternalCache on } }",
     ["`CommitTimeout' can't be combined with `DisableExternalCache', ignoring this option. "
      "Fix your configuration file."]),
])
def test_warnings(text, warnings):
    cfg = C.parse(text)
    assert [w for lvl, w in cfg.warnings if lvl == "warning"] == warnings


def test_commit_timeout_dropped_with_disabled_external_cache():
    assert C.parse("Sync { Mode NOTRACK { CommitTimeout 5 DisableExternalCache on } }") \
        .sync.commit_timeout == 0


def test_scanner_quirks():
    # a TAB belongs to a path; a lone high byte or NUL ends the file
    assert C.parse("General { LockFile /x.lock\t }").general.lockfile == "/x.lock\t"
    assert err("General { LockFile /x.lock\t}").message.endswith("symbol '': syntax error")
    assert C.parse("General {\tLockFile /x.lock\n}").general.lockfile == "/x.lock"
    assert C.parse(b"General { }\xff anything }").general == C.General()
    assert C.parse(b"General { }\x00 {").general == C.General()
    assert C.parse("General { LockFile /a#b }").general.lockfile == "/a#b"
    tok = C.Scanner("cafe 1234 12ab e 1.2.3.4/24 ::1/64 /p{ on NO |o ftfw Ftfw", lambda w: None)
    kinds = []
    while (t := tok.next()).kind != C.EOF:
        kinds.append((t.kind, t.text))
    assert kinds == [(C.IP, "cafe"), (C.NUMBER, "1234"), (C.IP, "12ab"), (C.IP, "e"),
                     (C.IP, "1.2.3.4/24"), (C.IP, "::1/64"), (C.PATH, "/p{"), (C.ON, "on"),
                     (C.OFF, "NO"), (C.OFF, "|o"), (C.FTFW, "ftfw"), (C.FTFW, "Ftfw")]


def test_numbers_are_atoi():
    assert C.atoi("4294967296") == 0 and C.atoi("4294967295") == -1
    assert C.atoi("99999999999999999999") == -1  # LONG_MAX, truncated to int
    assert C.parse("General { Scheduler { Priority 4294967296 } }").general.scheduler.priority == 0
    assert err("General { Scheduler { Priority 4294967295 } }").message.startswith("`Priority'")


def test_load_errors(tmp_path):
    e = None
    with pytest.raises(C.ConfigError) as e:
        C.load(str(tmp_path / "missing.conf"))
    assert e.value.message == f"can't open config file `{tmp_path}/missing.conf'"
    with pytest.raises(C.ConfigError) as e:
        C.load(str(tmp_path))
    assert (e.value.message, e.value.status, e.value.raw) == \
        ("input in flex scanner failed", 2, True)
