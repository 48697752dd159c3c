"""conntrackd's sync channels without a kernel: the channel buffer's packing and
flushing (spec §5.2.4), TCP stream framing, the error queue and the TCP send path on
scripted sockets, the RTNETLINK table, fail-over and the ``-s`` figures."""
from __future__ import annotations

import errno
import socket
import struct
from types import SimpleNamespace

import pytest
from hypothesis import given, settings, strategies as st

from conntrack_tools.conntrackd import output as O
from conntrack_tools.conntrackd.channels import ChannelLinks, ErrorQueue, MultiChannel
from conntrack_tools.conntrackd.channels import base, linkmon, multi, tcp


def msg(n: int, seq: int = 0, mtype: int = 0, flags: int = 0) -> bytes:
    """A sync message of ``n`` bytes (header + zero payload)."""
    return struct.pack(">BBHI", 0x10 | mtype, flags, n, seq) + bytes(n - 8)


def ack(seq: int = 0) -> bytes:
    return struct.pack(">BBHIII", 0x1A, 0x08, 16, seq, 1, 2)


def conf(transport: str = "udp", interface: str = "eth0", **kw) -> SimpleNamespace:
    d = dict(transport=transport, interface=interface, default=False, ifindex=0, ifindex6=0,
             family=socket.AF_INET, address="10.0.0.1", dest_address="10.0.0.2",
             interface_address=None, port=3780, sndbuf=0, rcvbuf=0, checksum=True)
    d.update(kw)
    return SimpleNamespace(**d)


class Recorder(base.Channel):
    """A datagram channel whose sends are recorded (``fail``: they fail)."""

    transport = "udp"

    def __init__(self, size: int = 1472, fail: bool = False) -> None:
        super().__init__(conf())
        self.buffer_size = size
        self.sent: list[bytes] = []
        self.fail = fail

    def _send(self, data: bytes) -> bool:
        if self.fail:
            self.stats.errors_send += 1
            return False
        self.sent.append(data)
        return True


def reference_pack(messages: list[bytes], size: int) -> list[bytes]:
    """The C ``channel_send`` rule, message by message, then ``channel_flush``."""
    out, cur = [], b""
    for m in messages:
        if len(cur) + len(m) < size:
            cur += m
        else:
            out.append(cur)
            cur = m
    if cur:
        out.append(cur)
    return out


# --- the channel buffer ---------------------------------------------------------------

def test_messages_are_packed_while_strictly_smaller_than_the_buffer():
    ch = Recorder(size=100)
    for i in range(4):
        ch.send(msg(30, i))
    assert [len(d) for d in ch.sent] == [90]
    assert ch.buffered == 30
    ch.flush()
    assert [len(d) for d in ch.sent] == [90, 30]
    ch.flush()  # nothing left: nothing sent
    assert len(ch.sent) == 2


def test_a_buffer_filled_exactly_to_its_size_leaves_first():
    ch = Recorder(size=100)
    ch.send(msg(50))
    ch.send(msg(50))  # 50 + 50 is not < 100
    assert [len(d) for d in ch.sent] == [50]
    ch.flush()
    assert [len(d) for d in ch.sent] == [50, 50]


def test_reference_bulk_sizes():
    """A bulk of 45 messages in one transmit run fills 1472-byte buffers (MTU 1500)."""
    ch = Recorder(size=1472)
    for i in range(45):
        ch.send(msg(76, i))
    ch.flush()
    assert [len(d) for d in ch.sent] == [19 * 76, 19 * 76, 7 * 76]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(8, 700), min_size=1, max_size=60), st.integers(200, 1500))
def test_repacking_packed_datagrams_gives_the_same_datagrams(sizes, size):
    messages = [msg(n, i) for i, n in enumerate(sizes) if n < size]
    if not messages:
        return
    expected = reference_pack(messages, size)
    by_message = Recorder(size)
    for m in messages:
        by_message.send(m)
    by_message.flush()
    assert by_message.sent == expected
    # the protocol machine hands datagrams already packed: the same datagrams leave
    repacked = Recorder(size)
    for d in expected:
        repacked.send(d)
    repacked.flush()
    assert repacked.sent == expected
    # one big chunk of every message is cut at message boundaries
    chunk = Recorder(size)
    chunk.send(b"".join(messages))
    chunk.flush()
    assert chunk.sent == expected


def test_a_message_larger_than_the_buffer_leaves_alone():
    """The C sender would spin forever (spec §12.2 #8); ours sends it on its own."""
    ch = Recorder(size=100)
    ch.send(msg(40, 1))
    ch.send(msg(150, 2))
    ch.send(msg(40, 3))
    ch.flush()
    assert [len(d) for d in ch.sent] == [40, 150, 40]


def test_failed_datagram_sends_are_counted_and_dropped():
    ch = Recorder(size=100, fail=True)
    for i in range(5):
        ch.send(msg(60, i))
    ch.flush()
    assert ch.stats.errors_send == 5 and ch.sent == [] and ch.buffered == 0


class FailingSocket:
    def __init__(self, err: int) -> None:
        self.err = err

    def sendto(self, data, addr):
        raise OSError(self.err, "boom")


@pytest.mark.parametrize("err", [errno.EAGAIN, errno.ENOBUFS, errno.ENETUNREACH, errno.EPERM])
def test_sendto_errors_are_one_send_error_each(err):
    ch = Recorder()
    assert ch._sendto(FailingSocket(err), b"x" * 8, ("10.0.0.2", 1)) is False
    assert ch.stats.counters() == (0, 0, 0, 0, 1, 0)


# --- receiving ---------------------------------------------------------------------------

class ScriptedSocket:
    """recv_into() plays a script: bytes, or an exception to raise."""

    def __init__(self, script) -> None:
        self.script = list(script)
        self.reads = 0

    def fileno(self) -> int:
        return 99

    def recv_into(self, view):
        self.reads += 1
        if not self.script:
            raise BlockingIOError
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        view[:len(item)] = item
        return len(item)


def test_datagrams_read_at_most_event_iteration_limit_per_wakeup():
    ch = Recorder()
    got = []
    ch.deliver = lambda c, d: got.append(d)
    ch.limit = 3
    sock = ScriptedSocket([msg(8, i) for i in range(7)])
    ch._read_datagrams(sock)
    assert len(got) == 3 and sock.reads == 3
    ch._read_datagrams(sock)
    ch._read_datagrams(sock)
    ch._read_datagrams(sock)
    assert got == [msg(8, i) for i in range(7)]
    assert ch.stats.packets_recv == 7 and ch.stats.bytes_recv == 56 and ch.stats.errors_recv == 0


def test_receive_errors_are_counted_except_eagain_and_never_raise():
    ch = Recorder()
    ch.deliver = lambda c, d: None
    ch._read_datagrams(ScriptedSocket([BlockingIOError()]))
    ch._read_datagrams(ScriptedSocket([OSError(errno.ECONNREFUSED, "refused")]))
    assert ch.stats.errors_recv == 1


def test_a_failing_consumer_goes_to_on_error_and_reading_goes_on():
    ch = Recorder()
    seen, errors = [], []

    def deliver(c, d):
        seen.append(d)
        if len(seen) == 1:
            raise ValueError("bad datagram")

    ch.deliver = deliver
    ch.on_error = errors.append
    ch._read_datagrams(ScriptedSocket([msg(8, 1), msg(8, 2)]))
    assert len(seen) == 2 and isinstance(errors[0], ValueError)


# --- TCP stream framing ----------------------------------------------------------------

@pytest.mark.parametrize("data,expected", [
    (msg(20) + msg(8), (28, 28)),                       # complete messages
    (msg(20) + msg(30)[:12], (20, 20)),                  # a message cut in its body
    (msg(20) + msg(30)[:5], (20, 20)),                   # cut in its header
    (msg(20)[:3], (0, 0)),
    (b"", (0, 0)),
    (msg(20) + b"\x10\x00\x00\x00" + bytes(8), (32, 32)),  # len 0: all to the pipeline
    (msg(20) + b"\x10\x00\x00\x04" + bytes(8), (32, 32)),  # len 4 < header
    (msg(8) + struct.pack(">BBHIII", 0x1A, 8, 12, 0, 0, 0), (24, 24)),  # ACK, len 12 < 16
    (msg(8) + struct.pack(">BBHI", 0x1A, 0x10, 12, 0) + bytes(4), (20, 20)),  # ALIVE, 12
    (msg(8) + ack() + msg(12), (36, 36)),
    (b"garbage!" * 4, (0, 0)),                           # 'ga' = len 24897 > 32: kept
])
def test_frame(data, expected):
    assert tcp.frame(data, len(data)) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(8, 300), min_size=1, max_size=20), st.data())
def test_a_stream_cut_anywhere_delivers_every_message_once(sizes, data):
    stream = b"".join(msg(n, i) for i, n in enumerate(sizes))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    ch = tcp.TCPChannel(conf("tcp"))
    got = []
    ch.deliver = lambda c, d: got.append(d)
    ch.conn = ScriptedSocket([stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)]) if b > a])
    for _ in range(30):
        ch._readable()
    assert b"".join(got) == stream
    for d in got:  # every delivery is whole messages
        assert tcp.frame(d, len(d)) == (len(d), len(d))


def test_a_peer_that_disconnects_mid_message_leaves_nothing_behind():
    ch = tcp.TCPChannel(conf("tcp"))
    got = []
    ch.deliver = lambda c, d: got.append(d)
    ch.conn = ScriptedSocket([msg(40)[:25], b""])
    ch._unwatch = lambda s: None
    ch._readable()
    ch._readable()
    assert got == [] and ch.conn is None and ch._pending == 0
    assert ch.stats.packets_recv == 2 and ch.stats.bytes_recv == 25  # EOF counts, as in C
    ch.conn = ScriptedSocket([msg(16, 7)])
    ch._readable()
    assert got == [msg(16, 7)]


def test_garbage_on_the_stream_goes_to_the_pipeline_once_and_is_not_kept():
    ch = tcp.TCPChannel(conf("tcp"))
    got = []
    ch.deliver = lambda c, d: got.append(d)
    junk = b"\x10\x00\x00\x00" + b"\xff" * 60
    ch.conn = ScriptedSocket([junk, msg(8, 1)])
    ch._readable()
    assert got == [junk, msg(8, 1)] and ch._pending == 0


# --- TCP send path ---------------------------------------------------------------------

class FakeClient:
    """A scripted client socket: ``connects`` are connect_ex() results, ``sends``
    either byte counts (None: all) or exceptions."""

    def __init__(self, connects=(), sends=()) -> None:
        self.connects = list(connects)
        self.sends = list(sends)
        self.out = b""
        self.connect_calls = 0

    def connect_ex(self, addr):
        self.connect_calls += 1
        return self.connects.pop(0) if self.connects else 0

    def send(self, data, flags=0):
        item = self.sends.pop(0) if self.sends else None
        if isinstance(item, BaseException):
            raise item
        n = len(data) if item is None else item
        self.out += data[:n]
        return n

    def fileno(self):
        return -1


def tcp_channel(client: FakeClient, connected: bool, qlen: int = 128):
    clock = SimpleNamespace(now=100.0)
    q = ErrorQueue(qlen)
    ch = tcp.TCPChannel(conf("tcp"), errorq=q, clock=lambda: clock.now)
    ch.buffer_size = 1460
    ch.client = client
    ch.connected = connected
    fresh = []

    def new_client():  # EPIPE: a fresh socket (its connect still in progress)
        ch.client = FakeClient(connects=[errno.EINPROGRESS])
        fresh.append(ch.client)
        ch.connected = False

    ch._new_client = new_client
    return ch, clock, q, fresh


def test_tcp_disconnected_sends_queue_in_errorq_and_are_delivered_first_once_connected():
    cl = FakeClient(connects=[errno.ECONNREFUSED, errno.EINPROGRESS, 0])
    ch, clock, q, _ = tcp_channel(cl, connected=False)
    ch.send(msg(8, 1)); ch.flush()       # connect refused: 1 error
    assert (len(q), ch.stats.errors_send, cl.connect_calls) == (1, 1, 1)
    clock.now += 0.5
    ch.send(msg(8, 2)); ch.flush()       # within the second: no connect, not counted
    assert (len(q), ch.stats.errors_send, cl.connect_calls) == (2, 1, 1)
    clock.now += 0.6
    ch.send(msg(8, 3)); ch.flush()       # EINPROGRESS: not counted
    assert (len(q), ch.stats.errors_send, cl.connect_calls) == (3, 1, 2)
    clock.now += 1.0
    ch.send(msg(8, 4)); ch.flush()       # connected: the queue first, in order
    assert cl.out == msg(8, 1) + msg(8, 2) + msg(8, 3) + msg(8, 4)
    assert len(q) == 0 and ch.connected
    assert ch.stats.packets_sent == 4 and ch.stats.bytes_sent == 32
    assert ch.tcp_state() == ("disconnected", "connected")


def test_tcp_epipe_counts_one_error_and_recreates_the_socket():
    cl = FakeClient(sends=[None, OSError(errno.EPIPE, "Broken pipe")])
    ch, clock, q, fresh = tcp_channel(cl, connected=True)
    ch.send(msg(8, 1)); ch.flush()
    ch.send(msg(8, 2)); ch.flush()
    assert cl.out == msg(8, 1)
    assert ch.stats.errors_send == 1 and len(fresh) == 1 and not ch.connected
    assert list(q.items) == [msg(8, 2)]
    clock.now += 1.0
    fresh[0].connects = [0]
    ch.flush()  # the queue is retried at the next flush
    assert fresh[0].out == msg(8, 2) and len(q) == 0


def test_tcp_partial_send_keeps_the_rest_in_front_of_everything():
    cl = FakeClient(sends=[5, BlockingIOError(), BlockingIOError(), None, None])
    ch, clock, q, _ = tcp_channel(cl, connected=True)
    ch.send(msg(20, 1)); ch.flush()       # 5 bytes leave, 15 wait
    assert cl.out == msg(20, 1)[:5] and ch._tail == msg(20, 1)[5:]
    ch.send(msg(20, 2)); ch.flush()       # the rest would block (twice): the new one queues
    assert ch._tail is not None and list(q.items) == [msg(20, 2)]
    ch.flush()                            # rest, then the queue
    assert cl.out == msg(20, 1) + msg(20, 2) and ch._tail is None and len(q) == 0
    assert ch.stats.errors_send == 2 and ch.stats.packets_sent == 3


def test_tcp_reset_drops_a_partial_rest():
    cl = FakeClient(sends=[5, OSError(errno.ECONNRESET, "reset")])
    ch, clock, q, fresh = tcp_channel(cl, connected=True)
    ch.send(msg(20, 1)); ch.flush()
    ch.flush()  # sending the rest fails with a reset: the rest is gone with the connection
    assert ch._tail is None and len(fresh) == 1 and ch.resets == 1


def test_error_queue_drops_the_oldest_and_counts_no_space():
    q = ErrorQueue(3)
    for i in range(5):
        q.add(bytes([i]))
    assert list(q.items) == [b"\x02", b"\x03", b"\x04"] and q.enospc == 2
    empty = ErrorQueue(0)
    empty.add(b"x")
    assert len(empty) == 0 and empty.enospc == 1


# --- RTNETLINK table -------------------------------------------------------------------

def link_msg(mtype: int, index: int, flags: int, seq: int = 0, name: str = "") -> bytes:
    body = linkmon.IFINFOMSG.pack(0, 1, index, flags, 0)
    body += struct.pack("=HH", 4 + 4, 16) + b"\x01\x02\x03\x04"  # IFLA_MTU-like filler
    if name:
        raw = name.encode() + b"\0"
        body += struct.pack("=HH", 4 + len(raw), linkmon.IFLA_IFNAME) + raw.ljust((len(raw) + 3) & ~3, b"\0")
    return struct.pack("=IHHII", 16 + len(body), mtype, 0, seq, 0) + body


class FakeRtnl:
    def __init__(self, replies) -> None:
        self.replies = list(replies)
        self.sent = []
        self.overruns = 0
        self.closed = False

    def next_seq(self):
        return 7

    def send(self, data):
        self.sent.append(data)

    def recv(self):
        return self.replies.pop(0) if self.replies else None

    def setblocking(self, flag):
        pass

    def close(self):
        self.closed = True


def test_link_monitor_dumps_then_follows_notifications():
    done = struct.pack("=IHHIIi", 20, linkmon.NLMSG_DONE, 2, 7, 0, 0)
    sock = FakeRtnl([link_msg(16, 2, 0x1043, 7, "sync0") + link_msg(16, 3, 0x1003, 7), done])
    changes = []
    mon = linkmon.LinkMonitor(None, lambda: changes.append(1), sock=sock)
    ln, mtype, flags = struct.unpack_from("=IHH", sock.sent[0])
    assert (mtype, flags) == (linkmon.RTM_GETLINK, 0x301)
    assert mon.get(2) == 0x1043 and mon.get(3) == 0x1003 and mon.get(9) == 0
    assert mon.name(2) == "sync0" and mon.name(3) is None
    assert [linkmon.link_status(mon.get(i)) for i in (2, 3, 9)] == ["RUNNING", "NO-CARRIER", "DOWN"]
    sock.replies = [link_msg(16, 2, 0x1002) + link_msg(17, 3, 0), b"\x01\x02"]
    mon._readable()
    assert mon.get(2) == 0x1002 and mon.get(3) == 0 and changes == [1, 1]  # per datagram


# --- fail-over -----------------------------------------------------------------------

def multichannel(n: int = 3, default: int = 0):
    mc = MultiChannel([conf("multicast", f"eth{i}") for i in range(n)], default)
    for i, ch in enumerate(mc):
        ch.ifindex = 10 + i
    flags = {10 + i: 0x1043 for i in range(n)}
    mc.monitor = SimpleNamespace(get=lambda idx: flags.get(idx, 0), close=lambda: None,
                                 name=lambda idx: f"eth{idx - 10}")
    logs = []
    mc.log = lambda level, m: logs.append((level, m))
    return mc, flags, logs


def test_failover_takes_the_first_other_usable_link_in_configuration_order():
    mc, flags, logs = multichannel(3, default=1)
    switched = []
    mc.on_switch = switched.append
    assert mc.current is mc[1]
    mc._links_changed()  # everything up: nothing happens
    assert mc.current is mc[1] and logs == []
    flags[11] = 0x1002   # admin down
    mc._links_changed()
    assert mc.current is mc[0] and logs == [("notice", "device `eth0' becomes dedicated link")]
    assert switched == [mc[0]]
    flags[11] = 0x1043   # back: no switch back
    mc._links_changed()
    assert mc.current is mc[0]
    flags[10] = 0x1003   # up without carrier: not good enough for the current one
    mc._links_changed()
    assert mc.current is mc[1]


def test_failover_candidate_needs_up_or_running_and_logs_when_none():
    mc, flags, logs = multichannel(2)
    flags[10] = 0
    flags[11] = 0x1003   # UP, no carrier: a candidate (UP or RUNNING)
    mc._links_changed()
    assert mc.current is mc[1]
    flags[11] = 0
    mc._links_changed()
    mc._links_changed()
    assert mc.current is mc[1]
    assert logs[1:] == [("error", "no dedicated links available!")] * 2


def test_link_and_channel_blocks_show_every_channel_and_the_active_one():
    mc, flags, logs = multichannel(2)
    flags[11] = 0x1002
    mc[0].stats.bytes_sent, mc[0].stats.packets_sent = 32, 2
    mc[1].stats.bytes_recv, mc[1].stats.packets_recv = 24, 3
    assert mc.link_blocks() == (
        "multicast traffic device=eth0 status=RUNNING role=ACTIVE:\n"
        "                  32 Bytes sent                    0 Bytes recv\n"
        "                   2 Pckts sent                    0 Pckts recv\n"
        "                   0 Error send                    0 Error recv\n\n"
        "multicast traffic device=eth1 status=DOWN role=BACKUP:\n"
        "                   0 Bytes sent                   24 Bytes recv\n"
        "                   0 Pckts sent                    3 Pckts recv\n"
        "                   0 Error send                    0 Error recv\n\n")
    mc.set_current(1)
    assert mc.channel_block().startswith("multicast traffic (active device=eth1):\n"
                                         "                   0 Bytes sent                   24 Bytes recv\n")


def test_tcp_channel_block_has_the_connection_states():
    mc = MultiChannel([conf("tcp", "eth0")])
    ch = mc[0]
    ch.conn = object()
    assert mc.channel_block().splitlines()[0] == \
        "TCP traffic (active device=eth0) server=connected client=disconnected:"


def test_open_without_channels_fails_like_the_reference():
    mc = MultiChannel([])
    logs = []
    with pytest.raises(base.ChannelError, match="can't open channel socket: No such file or directory"):
        mc.open(None, lambda c, d: None, log=lambda level, m: logs.append((level, m)))
    assert logs == [("error", "can't open channel socket: No such file or directory")]


def test_open_without_interface_fails_with_success():
    mc = MultiChannel([conf("udp", "")])
    with pytest.raises(base.ChannelError) as e:
        mc.open(None, lambda c, d: None)
    assert str(e.value) == "can't open channel socket: Success"


# --- -s figures -------------------------------------------------------------------------

class FakeMachine:
    def __init__(self) -> None:
        self.stats = SimpleNamespace(malformed=7, bad_version=1, bad_header=2, bad_payload=1,
                                     bad_type=0, truncated=2, bad_size=1, lost=6, before=1)

    def queue_stats(self):
        return 1, [("txqueue", 0, 2147483647, 0), ("rsqueue", 3, 131072, 0)]

    def rsqueue_dump(self):
        return "resent queue (len=1)\ncontrol -> seq:5 flags:8\n"


def test_links_feed_network_queue_and_tracking_figures():
    mc, flags, logs = multichannel(1)
    mc.errorq.add(b"x")
    settings_ = SimpleNamespace(mode="ftfw", resend_queue_size=131072)
    links = ChannelLinks(settings_, mc, FakeMachine())
    text = links.network_stats()
    assert text.startswith(O.network_stats(7, 1, 2, 1, 0, 2, 1, 0, 6, 1))
    assert text.endswith(mc.channel_block())
    assert links.message_tracking() == O.message_tracking(7, 6)
    assert links.queue_stats() == O.queue_stats(2, [
        ("txqueue", 0, 2147483647, 0), ("errorq", 1, 128, 0), ("rsqueue", 3, 131072, 0)])
    assert links.rsqueue().startswith("resent queue (len=1)")
    bare = ChannelLinks(SimpleNamespace(mode="alarm", resend_queue_size=5), mc)
    assert bare.queue_stats() == O.queue_stats(1, [("txqueue", 0, 2147483647, 0),
                                                   ("errorq", 1, 128, 0)])
    assert bare.rsqueue() is None and "Malformed messages:\t                   0" in bare.network_stats()


def test_metrics_families_are_contiguous():
    from conntrack_tools.conntrackd.metrics import _Out

    mc, flags, logs = multichannel(2)
    mc[1].stats.errors_send = 4
    out = _Out()
    for sample in ChannelLinks(SimpleNamespace(mode="ftfw", resend_queue_size=1), mc).metrics():
        out.metric(*sample)
    names = [ln.split("{")[0].split(" ")[0] for ln in out.lines if not ln.startswith("#")]
    seen = []
    for n in names:
        if not seen or seen[-1] != n:
            assert n not in seen
            seen.append(n)
    assert 'conntrackd_channel_errors_total{channel="1",device="eth1",transport="multicast",' \
           'direction="sent"} 4' in out.lines
    assert 'conntrackd_channel_active{channel="0",device="eth0",transport="multicast"} 1' in out.lines


def test_transports_table():
    assert set(multi.TRANSPORTS) == {"multicast", "udp", "tcp"}


def test_channel_links_plug_into_the_sync_mode():
    """``mode.links = ChannelLinks(...)``: the sync mode's -s replies carry the figures."""
    from conntrack_tools.conntrackd import handlers as H
    from conntrack_tools.conntrackd.metrics import render
    from conntrack_tools.conntrackd.syncmode import SyncMode, SyncSettings

    mc, flags, logs = multichannel(2)
    mc[0].stats.bytes_sent = 1234
    mode = SyncMode(SyncSettings(mode="ftfw", channels=[c.conf for c in mc]))
    mode.links = ChannelLinks(mode.settings, mc, FakeMachine())

    def reply(code: int) -> str:
        return b"".join(mode.handle(code)).decode()

    assert reply(H.STATS_LINK) == mc.link_blocks()
    assert reply(H.STATS_NETWORK) == mode.links.network_stats()
    assert "1234 Bytes sent" in reply(H.STATS_NETWORK)
    assert reply(H.STATS_QUEUE).startswith("allocated queue nodes:\t\t           1\n")
    assert reply(H.STATS_RSQUEUE).startswith("resent queue (len=1)")
    stats = reply(H.STATS)
    assert "multicast traffic (active device=eth0):\n                1234 Bytes sent" in stats
    assert stats.endswith(O.message_tracking(7, 6))
    assert 'conntrackd_channel_bytes_total{channel="0",device="eth0",transport="multicast",' \
           'direction="sent"} 1234' in render(mode)
