"""``EventReader`` fed captured datagrams (no kernel): the recorded ``conntrack -E``
fixtures give the datagrams the reference received and the lines it printed; the reader's
events, formatted by our formatters, must say the same. Also raw events, keys, losses,
malformed input, and the resynchronisation steps on hand-made dumps.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from ctnetlink.events import EventReader, RawEvent, destroy_message, event_type
from ctnetlink.formats import Options
from ctnetlink.formats import expect as xfmt
from ctnetlink.formats import text
from ctnetlink.model import EventType
from nfnl.pcap import read_pcap

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PLAIN = ["events-nat", "events-traffic", "events-create-update-delete", "events-new-only",
         "events-family-filter", "events-expect"]


def recording(name: str) -> tuple[dict, list[bytes]]:
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    received = [p.data for p in read_pcap(FIXTURES / f"{name}.pcap") if p.direction == "received"]
    return meta, received


def reader_for(meta: dict) -> EventReader:
    cmd = meta["command"]
    return EventReader(family=10 if "ipv6" in cmd else None)


def line_of(ev) -> str:
    if ev.expect is not None:
        return xfmt.format_expect(ev.expect, int(ev.type))
    return text.flow_formatter(Options(event=int(ev.type)))(ev.flow)


@pytest.mark.parametrize("name", PLAIN)
def test_events_of_a_recording_print_as_the_reference_did(name: str) -> None:
    meta, received = recording(name)
    reader = reader_for(meta)
    events = [ev for data in received for ev in reader.feed(data)]
    expected = meta["stdout"].splitlines()
    assert len(events) == len(expected) > 0
    for ev, want in zip(events, expected):
        body, _, user = want.partition(" [USERSPACE] ")
        assert line_of(ev) == body
        if ev.flow is not None:  # (-E expect prints no [USERSPACE] suffix)
            assert ev.portid == (int(user.split()[0].split("=")[1]) if user else 0)
        assert ev.lost is None and not ev.resync
    assert reader.malformed == 0


@pytest.mark.parametrize("name", PLAIN)
def test_raw_events_decode_to_the_same_events(name: str) -> None:
    meta, received = recording(name)
    decoded = [ev for data in received for ev in reader_for(meta).feed(data)]
    raws = [r for data in received for r in reader_for(meta).feed_raw(data)]
    assert [r.decode() for r in raws] == decoded
    for r in raws:
        assert r.message == r.buf[r.off:r.off + r.len] and len(r.attrs) == r.len - 20
        assert event_type(*struct.unpack_from("=HH", r.message, 4)) is r.type
        assert (r.key is None) == r.expect


@pytest.mark.parametrize("name", PLAIN)
def test_batches_give_what_datagrams_give(name: str) -> None:
    """feed_many/feed_raw_many (the listener's batch path, with its inline decoding) equal
    feed/feed_raw of each datagram, with malformed ones, losses and selection mixed in."""
    meta, received = recording(name)
    bad = [received[0][:17], received[0][:40], b"\0" * 3]
    mixed = [d for data in received for d in (data, *bad)] * 2
    for make in (lambda: reader_for(meta), lambda: EventReader(types=[EventType.NEW])):
        one, many = make(), make()
        want = []
        for i, data in enumerate(mixed):
            if i == 5:
                one.overrun(4)
            want += one.feed(data)
        many.overrun(0)
        got = many.feed_many(mixed[:5])
        many.overrun(4)
        got += many.feed_many(mixed[5:])
        assert got == want and many.malformed == one.malformed > 0
        one, many = make(), make()
        assert many.feed_raw_many(mixed) == [r for d in mixed for r in one.feed_raw(d)]
        assert many.malformed == one.malformed


def test_keys_follow_one_flow_through_new_update_destroy() -> None:
    _, received = recording("events-create-update-delete")
    raws = [r for data in received for r in EventReader().feed_raw(data)]
    assert [r.type for r in raws] == [EventType.NEW, EventType.UPDATE, EventType.DESTROY]
    assert len({r.key for r in raws}) == 1
    flow = raws[0].decode().flow
    gone = destroy_message(raws[0].key)
    (synthetic,) = EventReader().feed(gone)
    assert synthetic.type is EventType.DESTROY
    assert (synthetic.flow.family, synthetic.flow.orig, synthetic.flow.zone) == (
        flow.family, flow.orig, flow.zone)


def _messages(name: str) -> list[bytes]:
    """The event messages of a recording, one per item."""
    _, received = recording(name)
    return [r.message for data in received for r in EventReader().feed_raw(data)]


def test_several_messages_in_one_datagram() -> None:
    msgs = _messages("events-nat")
    one = EventReader().feed(b"".join(msgs))
    apart = [ev for m in msgs for ev in EventReader().feed(m)]
    assert one == apart and len(one) == len(msgs)


def test_losses_go_on_the_next_event_only() -> None:
    msgs = _messages("events-nat")
    reader = EventReader()
    reader.feed(msgs[0])
    reader.overrun(7)
    reader.overrun(3)
    first, second = reader.feed(msgs[1]), reader.feed(msgs[2])
    assert first[0].lost == 10 and second[0].lost is None
    reader.overrun(2)
    (raw,) = reader.feed_raw(msgs[3])
    assert raw.lost == 2 and reader.lost == 0


def test_family_and_type_selection() -> None:
    msgs = _messages("events-nat")
    both = b"".join(msgs)
    v6 = EventReader(family=10).feed(both)
    assert v6 and {ev.flow.family for ev in v6} == {10}
    new = EventReader(types=[EventType.NEW]).feed(both)
    assert [ev.type for ev in new] == [EventType.NEW] * 3


@pytest.mark.parametrize("cut", [3, 17, 21, 60])
def test_malformed_input_is_counted_not_raised(cut: int) -> None:
    msgs = _messages("events-nat")
    reader = EventReader()
    bad = bytearray(msgs[0])
    if cut == 60:  # an attribute length running past the message
        struct.pack_into("=H", bad, 20, 0xFFF0)
        assert reader.feed(bytes(bad)) == []
    else:
        assert reader.feed(msgs[0][:cut]) == []
    assert reader.malformed == (0 if cut < 16 else 1)
    assert len(reader.feed(msgs[1])) == 1  # and it goes on


def test_not_events_are_ignored() -> None:
    done = struct.pack("=IHHII", 20, 3, 2, 1, 0) + b"\0" * 4  # NLMSG_DONE
    stats = struct.pack("=IHHII", 20, 0x104, 0, 1, 0) + b"\0" * 4
    assert EventReader().feed(done + stats) == []


# --- resynchronisation steps (the Listener runs them around a real dump) ----------------------

def _as_dump(msgs: list[bytes]) -> list[tuple[bytes, int, int]]:
    """Dump-reply items for the entries of ``msgs`` (IPCTNL_MSG_CT_NEW | NLM_F_MULTI)."""
    items = []
    for m in msgs:
        d = bytearray(m)
        struct.pack_into("=HH", d, 4, 0x100, 0x2)
        items.append((bytes(d), 0, len(d)))
    return items


def test_resync_announces_the_dump_and_buries_the_vanished() -> None:
    msgs = _messages("events-nat")
    reader = EventReader(track=True)
    news = [m for m in msgs if reader.feed_raw(m)[0].type is EventType.NEW]
    assert len(news) == 3 and len(reader.alive) == 3
    keys = [RawEvent(EventType.NEW, m, 0, len(m), m[16]).key for m in news]
    reader.overrun(5)
    reader.begin_resync()
    # the dump shows the first flow (still alive) and a new one; the others vanished
    other = bytearray(news[0])
    # another source port: orig nest, ip nest, src, dst, proto nest, protonum, sport header
    struct.pack_into(">H", other, 20 + 4 + 4 + 8 + 8 + 4 + 8 + 4, 41999)
    shown = reader.feed_dump(_as_dump([news[0], bytes(other)]))
    gone = reader.end_resync()
    assert [(ev.type, ev.resync) for ev in shown] == [(EventType.UPDATE, True), (EventType.NEW, True)]
    assert shown[0].lost == 5 and shown[1].lost is None
    assert {(ev.type, ev.resync) for ev in gone} == {(EventType.DESTROY, True)}
    assert sorted((ev.flow.family, str(ev.flow.orig.dst)) for ev in gone) == [
        (2, "10.0.0.53"), (10, "fd00::80")]
    assert keys[0] in reader.alive and len(reader.alive) == 2
    assert not reader.resyncing


def test_resync_raw_and_errors() -> None:
    msgs = _messages("events-nat")
    reader = EventReader(track=True)
    for m in msgs:
        reader.feed(m)
    reader.begin_resync()
    assert reader.feed_dump(_as_dump([]), raw=True) == []
    gone = reader.end_resync(raw=True)
    assert len(gone) == 3 and all(isinstance(r, RawEvent) and r.resync for r in gone)
    assert {r.decode().type for r in gone} == {EventType.DESTROY} and not reader.alive
    with pytest.raises(ValueError):
        reader.end_resync()
    with pytest.raises(ValueError):
        EventReader().begin_resync()
