"""Every example line of the spec's sections 7–9, reproduced from hand-built objects.

Each conntrack example is also pushed through the shape path (encoded as a kernel
message, decoded by ``Decoder.shape``) and must give the same text.
"""
from __future__ import annotations


import pytest

pytestmark = pytest.mark.usefixtures("utc")

from ctnetlink.decode import Decoder
from ctnetlink.formats import Options
from ctnetlink.formats import expect as fexpect
from ctnetlink.formats import save, stats, text, xml
from ctnetlink.formats.synthetic import kernel_message
from ctnetlink.model import (
    Counters, Expect, Flow, SctpInfo, TcpInfo, Timestamp, Tuple,
)

NOW = 1795625488          # the spec's examples: start 16:51:26 UTC + delta-time 2
START = 1795625486_069811069
LABELS = {0: "eth0-in", 1: "eth1-in", 2: "web", 5: "high"}
CONFIRMED, SEEN_REPLY, ASSURED = 0x8, 0x2, 0x4
ESTABLISHED_ASSURED = CONFIRMED | SEEN_REPLY | ASSURED


def clock() -> float:
    return NOW + 0.25


def T(src, dst, proto, sport=None, dport=None, **kw) -> Tuple:
    return Tuple(src=src, dst=dst, proto=proto, sport=sport, dport=dport, **kw)


def pair(src, dst, proto, sport=None, dport=None, *, rsrc=None, rdst=None, rsport=None,
         rdport=None, **kw) -> dict:
    """orig and reply tuples; the reply swaps unless told otherwise."""
    fam = 10 if ":" in src else 2
    orig = T(src, dst, proto, sport, dport)
    reply = T(rsrc or dst, rdst or src, proto, rsport if rsport is not None else dport,
              rdport if rdport is not None else sport)
    return dict(family=fam, orig=orig, reply=reply, **kw)


def icmp(src, dst, proto, typ, rtyp, code, ident, **kw) -> dict:
    fam = 10 if ":" in src else 2
    return dict(family=fam, orig=T(src, dst, proto, icmp_type=typ, icmp_code=code, icmp_id=ident),
                reply=T(dst, src, proto, icmp_type=rtyp, icmp_code=code, icmp_id=ident), **kw)


def acct(**kw) -> dict:
    return dict(counters_orig=Counters(packets=0, bytes=0), counters_reply=Counters(packets=0, bytes=0),
                timestamp=Timestamp(start=START), **kw)


def tcp(state: int) -> TcpInfo:
    return TcpInfo(state=state)


def both_paths(mod, flow: Flow, opts: Options) -> str:
    """The line from the Flow; asserts the shape path prints the same."""
    line = mod.format_flow(flow, opts)
    msg = kernel_message(flow)
    shape = Decoder().shape(msg, 0, len(msg))
    fast = mod.compile_for_shape(shape, opts)(shape.struct.unpack_from(msg, 20), msg[16])
    assert fast == line
    return line


PLAIN = Options(clock=clock)

TEXT_EXAMPLES = [
    (Flow(**pair("1.1.1.1", "2.2.2.2", 6, 10, 20), status=ESTABLISHED_ASSURED, timeout=49,
          mark=0, use=1, tcp=tcp(3)),
     "tcp      6 49 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=10 dport=20 src=2.2.2.2 dst=1.1.1.1 sport=20 dport=10 [ASSURED] mark=0 use=1"),
    (Flow(**pair("1.1.1.1", "2.2.2.2", 6, 10, 20), **acct(), status=ESTABLISHED_ASSURED,
          timeout=497, mark=16, use=1, tcp=tcp(3), id=293997597),
     "tcp      6 497 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=10 dport=20 packets=0 bytes=0 src=2.2.2.2 dst=1.1.1.1 sport=20 dport=10 packets=0 bytes=0 [ASSURED] mark=16 delta-time=2 use=1"),
    (Flow(**pair("2001:db8::1", "2001:db8::2", 17, 10, 20), **acct(), status=CONFIRMED,
          timeout=497, mark=0, zone=9, use=1, id=2102985433),
     "udp      17 497 src=2001:db8::1 dst=2001:db8::2 sport=10 dport=20 packets=0 bytes=0 [UNREPLIED] src=2001:db8::2 dst=2001:db8::1 sport=20 dport=10 packets=0 bytes=0 mark=0 zone=9 delta-time=2 use=1"),
    (Flow(family=2, orig=T("10.9.9.1", "10.9.9.2", 17, 1, 2),
          reply=T("10.9.9.2", "10.9.9.1", 17, 2, 1, zone=5),
          **acct(timeout=299, status=CONFIRMED, mark=0, use=1)),
     "udp      17 299 src=10.9.9.1 dst=10.9.9.2 sport=1 dport=2 packets=0 bytes=0 [UNREPLIED] src=10.9.9.2 dst=10.9.9.1 sport=2 dport=1 zone-reply=5 packets=0 bytes=0 mark=0 delta-time=2 use=1"),
    (Flow(family=2, orig=T("10.9.9.3", "10.9.9.2", 17, 1, 2, zone=6),
          reply=T("10.9.9.2", "10.9.9.3", 17, 2, 1),
          **acct(timeout=299, status=CONFIRMED, mark=0, use=1)),
     "udp      17 299 src=10.9.9.3 dst=10.9.9.2 sport=1 dport=2 zone-orig=6 packets=0 bytes=0 [UNREPLIED] src=10.9.9.2 dst=10.9.9.3 sport=2 dport=1 packets=0 bytes=0 mark=0 delta-time=2 use=1"),
    (Flow(**pair("1.1.1.1", "2.2.2.2", 6, 10, 20, rsrc="3.3.3.3", rsport=80),
          status=CONFIRMED | SEEN_REPLY | 0x120, timeout=6, mark=0, use=1, tcp=tcp(9)),
     "tcp      6 6 SYN_SENT2 src=1.1.1.1 dst=2.2.2.2 sport=10 dport=20 src=3.3.3.3 dst=1.1.1.1 sport=80 dport=10 mark=0 use=1"),
    (Flow(**pair("1.1.1.2", "2.2.2.2", 17, 10, 20, rdst="4.4.4.4"), status=CONFIRMED | 0x90,
          timeout=499, mark=7, zone=3, use=1),
     "udp      17 499 src=1.1.1.2 dst=2.2.2.2 sport=10 dport=20 [UNREPLIED] src=2.2.2.2 dst=4.4.4.4 sport=20 dport=10 mark=7 zone=3 use=1"),
    (Flow(**icmp("127.0.0.1", "127.0.0.1", 1, 8, 0, 0, 4660), counters_orig=Counters(packets=1, bytes=36),
          counters_reply=Counters(packets=1, bytes=36), timestamp=Timestamp(start=NOW * 10**9),
          status=CONFIRMED | SEEN_REPLY, timeout=29, mark=0, use=1),
     "icmp     1 29 src=127.0.0.1 dst=127.0.0.1 type=8 code=0 id=4660 packets=1 bytes=36 src=127.0.0.1 dst=127.0.0.1 type=0 code=0 id=4660 packets=1 bytes=36 mark=0 delta-time=0 use=1"),
    (Flow(**icmp("2001::5", "2001::6", 58, 139, 140, 0, 3), counters_orig=Counters(packets=0, bytes=0),
          counters_reply=Counters(packets=0, bytes=0), timestamp=Timestamp(start=NOW * 10**9 + 5),
          status=CONFIRMED, timeout=49, mark=0, use=1),
     "icmpv6   58 49 src=2001::5 dst=2001::6 type=139 code=0 id=3 packets=0 bytes=0 [UNREPLIED] src=2001::6 dst=2001::5 type=140 code=0 id=3 packets=0 bytes=0 mark=0 delta-time=0 use=1"),
    (Flow(**pair("1.1.1.1", "2.2.2.2", 132, 100, 200), status=CONFIRMED, timeout=499, mark=0,
          use=1, sctp=SctpInfo(state=4, vtag_orig=1234, vtag_reply=5678), id=1159813196),
     "sctp     132 499 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=100 dport=200 [UNREPLIED] src=2.2.2.2 dst=1.1.1.1 sport=200 dport=100 mark=0 use=1"),
    (Flow(**pair("1.1.1.1", "2.2.2.2", 47, 16, 32), status=CONFIRMED, timeout=499, mark=0, use=1),
     "gre      47 499 src=1.1.1.1 dst=2.2.2.2 srckey=0x10 dstkey=0x20 [UNREPLIED] src=2.2.2.2 dst=1.1.1.1 srckey=0x20 dstkey=0x10 mark=0 use=1"),
    (Flow(**pair("1.1.1.1", "2.2.2.2", 33), status=CONFIRMED, timeout=499, mark=0, use=1),
     "dccp     33 499 src=1.1.1.1 dst=2.2.2.2 sport=0 dport=0 [UNREPLIED] src=2.2.2.2 dst=1.1.1.1 sport=0 dport=0 mark=0 use=1"),
    (Flow(**pair("127.0.0.1", "127.0.0.1", 6, 57634, 21), counters_orig=Counters(packets=5, bytes=291),
          counters_reply=Counters(packets=4, bytes=232), timestamp=Timestamp(start=(NOW - 1) * 10**9),
          status=ESTABLISHED_ASSURED | 0x2000, timeout=431998, mark=0, use=1, tcp=tcp(3),
          helper="ftp"),
     "tcp      6 431998 ESTABLISHED src=127.0.0.1 dst=127.0.0.1 sport=57634 dport=21 packets=5 bytes=291 src=127.0.0.1 dst=127.0.0.1 sport=21 dport=57634 packets=4 bytes=232 [ASSURED] mark=0 delta-time=1 helper=ftp use=1"),
]

LABEL_EXAMPLES = [
    (Flow(**pair("1.1.1.2", "2.2.2.2", 6, 10, 20), counters_orig=Counters(packets=0, bytes=0),
          counters_reply=Counters(packets=0, bytes=0), timestamp=Timestamp(start=NOW * 10**9), status=CONFIRMED,
          timeout=499, mark=0, use=1, tcp=tcp(3), labels=(1 << 0) | (1 << 5)),
     "tcp      6 499 ESTABLISHED src=1.1.1.2 dst=2.2.2.2 sport=10 dport=20 packets=0 bytes=0 [UNREPLIED] src=2.2.2.2 dst=1.1.1.2 sport=20 dport=10 packets=0 bytes=0 mark=0 delta-time=0 use=1 labels=eth0-in,high"),
    (Flow(**pair("127.0.0.1", "127.0.0.1", 17, 55410, 6671), counters_orig=Counters(packets=1, bytes=31),
          counters_reply=Counters(packets=1, bytes=32), timestamp=Timestamp(start=NOW * 10**9),
          status=CONFIRMED | SEEN_REPLY, timeout=29, mark=0, use=1, labels=1 << 10),
     "udp      17 29 src=127.0.0.1 dst=127.0.0.1 sport=55410 dport=6671 packets=1 bytes=31 src=127.0.0.1 dst=127.0.0.1 sport=6671 dport=55410 packets=1 bytes=32 mark=0 delta-time=0 use=1 labels"),
]


@pytest.mark.parametrize("flow,line", TEXT_EXAMPLES)
def test_text_examples(flow, line):
    assert both_paths(text, flow, PLAIN) == line


@pytest.mark.parametrize("flow,line", LABEL_EXAMPLES)
def test_text_labels(flow, line):
    assert both_paths(text, flow, Options(labels=LABELS, clock=clock)) == line
    # without a map no labels field at all
    assert both_paths(text, flow, PLAIN) == line.rsplit(" labels", 1)[0]


def test_extended_id():
    opts = Options(extended=True, id=True, clock=clock)
    assert both_paths(text, TEXT_EXAMPLES[1][0], opts) == (
        "ipv4     2 tcp      6 497 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=10 dport=20 packets=0 bytes=0 src=2.2.2.2 dst=1.1.1.1 sport=20 dport=10 packets=0 bytes=0 [ASSURED] mark=16 delta-time=2 use=1 id=293997597")
    assert both_paths(text, TEXT_EXAMPLES[2][0], opts) == (
        "ipv6     10 udp      17 497 src=2001:db8::1 dst=2001:db8::2 sport=10 dport=20 packets=0 bytes=0 [UNREPLIED] src=2001:db8::2 dst=2001:db8::1 sport=20 dport=10 packets=0 bytes=0 mark=0 zone=9 delta-time=2 use=1 id=2102985433")


def test_ktimestamp():
    assert both_paths(text, TEXT_EXAMPLES[1][0], Options(ktimestamp=True, clock=clock)) == (
        "tcp      6 497 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=10 dport=20 packets=0 bytes=0 src=2.2.2.2 dst=1.1.1.1 sport=20 dport=10 packets=0 bytes=0 [ASSURED] mark=16 delta-time=2 [start=Wed Nov 25 16:51:26 2026] use=1")
    ftp = TEXT_EXAMPLES[12][0].copy(timestamp=Timestamp(start=1795625896 * 10**9 + 123), id=991127028)
    ftp.orig, ftp.reply = ftp.orig.replace(sport=46886), ftp.reply.replace(dport=46886)
    ftp.counters_orig, ftp.counters_reply = Counters(packets=6, bytes=351), Counters(packets=5, bytes=292)
    opts = Options(extended=True, id=True, ktimestamp=True, clock=lambda: 1795625898.0)
    assert both_paths(text, ftp, opts) == (
        "ipv4     2 tcp      6 431998 ESTABLISHED src=127.0.0.1 dst=127.0.0.1 sport=46886 dport=21 packets=6 bytes=351 src=127.0.0.1 dst=127.0.0.1 sport=21 dport=46886 packets=5 bytes=292 [ASSURED] mark=0 delta-time=2 [start=Wed Nov 25 16:58:16 2026] helper=ftp use=1 id=991127028")


def test_offload_replaces_assured():
    f = TEXT_EXAMPLES[0][0]
    assert "[OFFLOAD] mark" in both_paths(text, f.copy(status=f.status | 0x4000), PLAIN)
    assert "[HW_OFFLOAD] mark" in both_paths(text, f.copy(status=f.status | 0xC000), PLAIN)


def test_section_3_1_list_examples():
    lines = [
        (Flow(**icmp("1.1.1.1", "2.2.2.2", 1, 8, 0, 0, 1226), status=CONFIRMED, timeout=28,
              mark=0, use=1),
         "icmp     1 28 src=1.1.1.1 dst=2.2.2.2 type=8 code=0 id=1226 [UNREPLIED] src=2.2.2.2 dst=1.1.1.1 type=0 code=0 id=1226 mark=0 use=1"),
        (Flow(**pair("1.1.1.1", "224.0.0.22", 2), status=CONFIRMED, timeout=29, mark=0, use=1),
         "unknown  2 29 src=1.1.1.1 dst=224.0.0.22 [UNREPLIED] src=224.0.0.22 dst=1.1.1.1 mark=0 use=1"),
        (Flow(**pair("1.1.1.1", "2.2.2.2", 200), status=CONFIRMED, timeout=29, mark=0, use=1),
         "unknown  200 29 src=1.1.1.1 dst=2.2.2.2 [UNREPLIED] src=2.2.2.2 dst=1.1.1.1 mark=0 use=1"),
        (Flow(**pair("2001:db8::1", "2001:db8::2", 6, 10, 20), status=CONFIRMED, timeout=99,
              mark=0, use=1, tcp=tcp(1)),
         "tcp      6 99 SYN_SENT src=2001:db8::1 dst=2001:db8::2 sport=10 dport=20 [UNREPLIED] src=2001:db8::2 dst=2001:db8::1 sport=20 dport=10 mark=0 use=1"),
    ]
    for flow, line in lines:
        assert both_paths(text, flow, PLAIN) == line


def test_state_out_of_range_prints_none():
    f = TEXT_EXAMPLES[0][0].copy(tcp=tcp(12))
    assert " NONE src=" in both_paths(text, f, PLAIN)


# --- §7.2 XML ---------------------------------------------------------------------------

XML_SCTP = '<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>1.1.1.1</src><dst>2.2.2.2</dst></layer3><layer4 protonum="132" protoname="sctp"><sport>100</sport><dport>200</dport></layer4></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>2.2.2.2</src><dst>1.1.1.1</dst></layer3><layer4 protonum="132" protoname="sctp"><sport>200</sport><dport>100</dport></layer4></meta><meta direction="independent"><state>FIN_WAIT</state><timeout>499</timeout><mark>0</mark><use>1</use><id>1159813196</id><unreplied/></meta></flow>'
XML_ICMPV6 = '<flow><meta direction="original"><layer3 protonum="10" protoname="ipv6"><src>2001:db8::1</src><dst>2001:db8::2</dst></layer3><layer4 protonum="58" protoname="icmpv6"></layer4></meta><meta direction="reply"><layer3 protonum="10" protoname="ipv6"><src>2001:db8::2</src><dst>2001:db8::1</dst></layer3><layer4 protonum="58" protoname="icmpv6"></layer4></meta><meta direction="independent"><timeout>499</timeout><mark>0</mark><use>1</use><id>3102878515</id><unreplied/></meta></flow>'
XML_TCP_KTS = '<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>1.1.1.1</src><dst>2.2.2.2</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>10</sport><dport>20</dport></layer4><counters><packets>0</packets><bytes>0</bytes></counters></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>2.2.2.2</src><dst>1.1.1.1</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>20</sport><dport>10</dport></layer4><counters><packets>0</packets><bytes>0</bytes></counters></meta><meta direction="independent"><state>ESTABLISHED</state><timeout>497</timeout><mark>16</mark><use>1</use><id>293997597</id><assured/><timestamp><start>1795625486069811069</start></timestamp><deltatime>2</deltatime></meta></flow>'
XML_ZONE = '<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>10.9.9.3</src><dst>10.9.9.2</dst></layer3><layer4 protonum="17" protoname="udp"><sport>1</sport><dport>2</dport></layer4><zone>6</zone><counters><packets>0</packets><bytes>0</bytes></counters></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>10.9.9.2</src><dst>10.9.9.3</dst></layer3><layer4 protonum="17" protoname="udp"><sport>2</sport><dport>1</dport></layer4><counters><packets>0</packets><bytes>0</bytes></counters></meta><meta direction="independent"><timeout>299</timeout><mark>0</mark><use>1</use><id>2836132216</id><unreplied/><deltatime>0</deltatime></meta></flow>'


def test_xml_examples():
    assert both_paths(xml, TEXT_EXAMPLES[9][0], PLAIN) == XML_SCTP
    v6 = Flow(**icmp("2001:db8::1", "2001:db8::2", 58, 128, 129, 0, 77), status=CONFIRMED,
              timeout=499, mark=0, use=1, id=3102878515)
    assert both_paths(xml, v6, PLAIN) == XML_ICMPV6
    assert both_paths(xml, TEXT_EXAMPLES[1][0], Options(ktimestamp=True, clock=clock)) == XML_TCP_KTS
    zoned = TEXT_EXAMPLES[4][0].copy(id=2836132216, timestamp=Timestamp(start=NOW * 10**9))
    assert both_paths(xml, zoned, PLAIN) == XML_ZONE
    assert xml.PROLOGUE + XML_SCTP + "\n" + xml.CLOSING == (
        '<?xml version="1.0" encoding="utf-8"?>\n<conntrack>\n' + XML_SCTP + "\n</conntrack>\n")


def test_xml_elided_examples():
    labelled = Flow(**pair("127.0.0.1", "127.0.0.1", 17, 1, 2), status=CONFIRMED | SEEN_REPLY,
                    timeout=29, mark=66, use=1, id=203315968, labels=1 << 2,
                    timestamp=Timestamp(start=(NOW - 1) * 10**9))
    assert both_paths(xml, labelled, Options(labels=LABELS, clock=clock)).endswith(
        '<meta direction="independent"><timeout>29</timeout><mark>66</mark><labels><label>web</label></labels><use>1</use><id>203315968</id><deltatime>1</deltatime></meta></flow>')
    nolabel = labelled.copy(labels=1 << 10)
    assert "<mark>66</mark><labels></labels><use>" in both_paths(
        xml, nolabel, Options(labels=LABELS, clock=clock))
    ftp = TEXT_EXAMPLES[12][0].copy(id=991127028, timestamp=Timestamp(start=(NOW - 2) * 10**9))
    assert both_paths(xml, ftp, PLAIN).endswith(
        '<meta direction="independent"><state>ESTABLISHED</state><timeout>431998</timeout><mark>0</mark><use>1</use><id>991127028</id><assured/><deltatime>2</deltatime></meta><helper>ftp</helper></flow>')


# --- §7.3 save ----------------------------------------------------------------------

def _save_flows():
    return [
        (TEXT_EXAMPLES[5][0].copy(timeout=499),
         "-A -t 499 -u SEEN_REPLY -s 1.1.1.1 -d 2.2.2.2 -g 3.3.3.3 -q 1.1.1.1 -p tcp --sport 10 --dport 20 --reply-port-src 80 --reply-port-dst 10 --state SYN_SENT2"),
        (TEXT_EXAMPLES[6][0],
         "-A -t 499 -u UNSET -w 3 -s 1.1.1.2 -d 2.2.2.2 -r 2.2.2.2 -n 4.4.4.4 -p udp --sport 10 --dport 20 --reply-port-src 20 --reply-port-dst 10"),
        (Flow(family=2, orig=T("1.1.1.5", "2.2.2.2", 6, 10, 20, zone=4),
              reply=T("2.2.2.2", "1.1.1.5", 6, 20, 10), status=CONFIRMED, timeout=499,
              tcp=tcp(3)),
         "-A -t 499 -u UNSET --orig-zone 4 -s 1.1.1.5 -d 2.2.2.2 -r 2.2.2.2 -q 1.1.1.5 -p tcp --sport 10 --dport 20 --reply-port-src 20 --reply-port-dst 10 --state ESTABLISHED"),
        (Flow(**pair("2001:db8::1", "2001:db8::2", 6, 10, 20, rsrc="2001:db8::3", rsport=8080),
              status=ESTABLISHED_ASSURED | 0x120, timeout=499, tcp=tcp(3)),
         "-A -t 499 -u SEEN_REPLY,ASSURED -s 2001:db8::1 -d 2001:db8::2 -g 2001:db8::3 -q 2001:db8::1 -p tcp --sport 10 --dport 20 --reply-port-src 8080 --reply-port-dst 10 --state ESTABLISHED"),
        # vtags as the kernel holds them after `-I --orig-vtag 1234 --reply-vtag 5678`
        (TEXT_EXAMPLES[9][0].copy(sctp=SctpInfo(state=4, vtag_orig=0xD2040000, vtag_reply=0x2E160000)),
         "-A -t 499 -u UNSET -s 1.1.1.1 -d 2.2.2.2 -r 2.2.2.2 -q 1.1.1.1 -p sctp --sport 100 --dport 200 --reply-port-src 200 --reply-port-dst 100 --state ESTABLISHED --orig-vtag 1234 --reply-vtag 5678"),
        (TEXT_EXAMPLES[10][0],
         "-A -t 499 -u UNSET -s 1.1.1.1 -d 2.2.2.2 -r 2.2.2.2 -q 1.1.1.1 -p gre --srckey 16 --dstkey 32 --reply-key-src 32 --reply-key-dst 16"),
        (TEXT_EXAMPLES[11][0], "-A -t 499 -u UNSET -s 1.1.1.1 -d 2.2.2.2 -r 2.2.2.2 -q 1.1.1.1 -p dccp"),
        (Flow(**icmp("1.1.1.1", "2.2.2.2", 1, 8, 0, 0, 1226), status=CONFIRMED | SEEN_REPLY,
              timeout=499, zone=10),
         "-A -t 499 -u SEEN_REPLY -w 10 -s 1.1.1.1 -d 2.2.2.2 -r 2.2.2.2 -q 1.1.1.1 -p icmp --icmp-type 8 --icmp-code 0 --icmp-id 1226"),
        (Flow(**pair("2001::9", "2001::2", 200), status=CONFIRMED, timeout=499, zone=10),
         "-A -t 499 -u UNSET -w 10 -s 2001::9 -d 2001::2 -r 2001::2 -q 2001::9 -p 200"),
        (Flow(**pair("0.0.0.0", "224.0.0.22", 2), status=CONFIRMED, timeout=499, zone=10),
         "-A -t 499 -u UNSET -w 10 -s 0.0.0.0 -d 224.0.0.22 -r 224.0.0.22 -q 0.0.0.0 -p 2"),
        (Flow(**icmp("2001:db8::1", "2001:db8::2", 58, 128, 129, 0, 77), status=CONFIRMED,
              timeout=499),
         "-A -t 499 -u UNSET -s 2001:db8::1 -d 2001:db8::2 -r 2001:db8::2 -q 2001:db8::1 -p icmpv6 --icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 77"),
    ]


def test_save_examples():
    for flow, line in _save_flows():
        assert both_paths(save, flow, PLAIN) == line


def test_save_status_bits_and_prefixes():
    f = TEXT_EXAMPLES[0][0].copy(status=0x407)
    assert " -u EXPECTED,SEEN_REPLY,ASSURED,FIXED_TIMEOUT " in save.format_flow(f)
    assert save.format_flow(f, Options(event=2)).startswith("-U -t 49 ")
    assert save.format_flow(f, Options(event=3)).startswith("-D -t 49 ")
    assert save.format_flow(f, Options(save_prefix="-D")).startswith("-D -t 49 ")
    assert save.format_flow(f.copy(family=7)) is None
    assert save.unsupported_warning(7) == "WARNING: unsupported l3proto 7, skipping.\n"


def test_save_sctp_unnamed_states():
    f = TEXT_EXAMPLES[9][0]
    assert "--state (null)" in save.format_flow(f.copy(sctp=SctpInfo(state=8)))
    assert "--state SHUTDOWN_ACK_SENT" in save.format_flow(f.copy(sctp=SctpInfo(state=7)))


# --- §8 events ----------------------------------------------------------------------

EV_TCP = Flow(**pair("1.1.1.1", "2.2.2.2", 6, 10, 20), status=CONFIRMED | SEEN_REPLY,
              timeout=500, mark=3, tcp=tcp(3), id=1257931788)


def test_event_lines():
    line = text.format_flow(EV_TCP, Options(event=1)) + text.userspace_suffix(13723)
    assert line == "    [NEW] tcp      6 500 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=10 dport=20 src=2.2.2.2 dst=1.1.1.1 sport=20 dport=10 mark=3 [USERSPACE] portid=13723"
    upd = EV_TCP.copy(timeout=499, mark=5)
    assert text.format_flow(upd, Options(event=2)) + text.userspace_suffix(2757391744) == (
        " [UPDATE] tcp      6 499 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=10 dport=20 src=2.2.2.2 dst=1.1.1.1 sport=20 dport=10 mark=5 [USERSPACE] portid=2757391744")
    ts = NOW * 10**9
    dead = upd.copy(counters_orig=Counters(packets=0, bytes=0), counters_reply=Counters(packets=0, bytes=0),
                    timestamp=Timestamp(start=ts, stop=ts))
    assert text.format_flow(dead, Options(event=3)) + text.userspace_suffix(4043062265, "conntrack") == (
        "[DESTROY] tcp      6 499 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=10 dport=20 packets=0 bytes=0 src=2.2.2.2 dst=1.1.1.1 sport=20 dport=10 packets=0 bytes=0 mark=5 delta-time=0 [USERSPACE] portid=4043062265 progname=conntrack")
    dead2 = dead.copy(timestamp=Timestamp(start=1795625585 * 10**9 + 7, stop=1795625585 * 10**9 + 9))
    assert text.format_flow(dead2, Options(event=3, ktimestamp=True)) == (
        "[DESTROY] tcp      6 499 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=10 dport=20 packets=0 bytes=0 src=2.2.2.2 dst=1.1.1.1 sport=20 dport=10 packets=0 bytes=0 mark=5 delta-time=0 [start=Wed Nov 25 16:53:05 2026] [stop=Wed Nov 25 16:53:05 2026]")
    assert both_paths(text, EV_TCP, Options(event=1, extended=True, id=True)) + text.userspace_suffix(13878, "conntrack") == (
        "    [NEW] ipv4     2 tcp      6 500 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=10 dport=20 src=2.2.2.2 dst=1.1.1.1 sport=20 dport=10 mark=3 id=1257931788 [USERSPACE] portid=13878 progname=conntrack")
    udp = Flow(**pair("127.0.0.1", "127.0.0.1", 17, 46770, 6666), status=CONFIRMED, timeout=30)
    assert text.format_flow(udp, Options(event=1)) == (
        "    [NEW] udp      17 30 src=127.0.0.1 dst=127.0.0.1 sport=46770 dport=6666 [UNREPLIED] src=127.0.0.1 dst=127.0.0.1 sport=6666 dport=46770")


def test_event_timestamp_prefixes():
    assert text.timestamp_prefix(1795625573, 412006) == "[1795625573.412006]\t"
    assert text.timestamp_prefix(12, 5) == "[00000012.000005]\t"
    assert text.timestamp_prefix_ns(1795625573_412006999) == "[1795625573.412006]\t"
    assert text.timestamp_prefix_now(lambda: 1795625573.5) == "[1795625573.500000]\t"
    assert fexpect.timestamp_prefix(1795625690, 1366) == "[1795625690.1366  ]\t"
    assert fexpect.timestamp_prefix(12, 5) == "[12      .5     ]\t"


def test_event_save_and_xml():
    assert save.format_flow(EV_TCP, Options(event=1)) + text.userspace_suffix(14015, "conntrack") == (
        "-A -t 500 -u SEEN_REPLY -s 1.1.1.1 -d 2.2.2.2 -r 2.2.2.2 -q 1.1.1.1 -p tcp --sport 10 --dport 20 --reply-port-src 20 --reply-port-dst 10 --state ESTABLISHED [USERSPACE] portid=14015 progname=conntrack")
    new = EV_TCP.copy(id=3358852759)
    assert xml.format_flow(new, Options(event=1)) == (
        '<flow type="new"><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>1.1.1.1</src><dst>2.2.2.2</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>10</sport><dport>20</dport></layer4></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>2.2.2.2</src><dst>1.1.1.1</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>20</sport><dport>10</dport></layer4></meta><meta direction="independent"><state>ESTABLISHED</state><timeout>500</timeout><mark>3</mark><id>3358852759</id></meta></flow>')
    v6 = Flow(**pair("::1", "::1", 17, 44825, 6667), status=CONFIRMED, timeout=30, id=881324813)
    when_clock = lambda: 1795625584.0  # noqa: E731 - Wed 16:53:04 UTC
    assert both_paths(xml, v6, Options(event=1, timestamp=True, clock=when_clock)) == (
        '<flow type="new"><meta direction="original"><layer3 protonum="10" protoname="ipv6"><src>::1</src><dst>::1</dst></layer3><layer4 protonum="17" protoname="udp"><sport>44825</sport><dport>6667</dport></layer4></meta><meta direction="reply"><layer3 protonum="10" protoname="ipv6"><src>::1</src><dst>::1</dst></layer3><layer4 protonum="17" protoname="udp"><sport>6667</sport><dport>44825</dport></layer4></meta><meta direction="independent"><timeout>30</timeout><id>881324813</id><unreplied/></meta><when><hour>16</hour><min>53</min><sec>04</sec><wday>4</wday><day>25</day><month>11</month><year>2026</year></when></flow>')
    assert xml.format_flow(v6, Options(timestamp=True)).count("<when>") == 0


def test_clip():
    assert text.clip("x" * 5000) == "x" * 4095
    assert text.clip("x" * 1023, text.EVENT_BUFFER) == "x" * 1023
    assert text.clip("x" * 1024, text.EVENT_BUFFER) == "x" * 1023


# --- §9 expectations and statistics ------------------------------------------------

def _ftp_expect(master_sport: int, v6: bool = False, **kw) -> Expect:
    lo = "::1" if v6 else "127.0.0.1"
    full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" if v6 else "255.255.255.255"
    return Expect(family=10 if v6 else 2, tuple=T(lo, lo, 6, 0, 51210),
                  mask=T(full, full, 6, 0, 65535), master=T(lo, lo, 6, master_sport, 21),
                  helper="ftp", klass=0, **kw)


def test_expect_lines():
    assert fexpect.format_expect(_ftp_expect(46886, timeout=298)) == (
        "298 proto=6 src=127.0.0.1 dst=127.0.0.1 sport=0 dport=51210 mask-src=255.255.255.255 mask-dst=255.255.255.255 sport=0 dport=65535 master-src=127.0.0.1 master-dst=127.0.0.1 sport=46886 dport=21 class=0 helper=ftp")
    assert fexpect.format_expect(_ftp_expect(40512, v6=True, timeout=299)) == (
        "299 proto=6 src=::1 dst=::1 sport=0 dport=51210 mask-src=ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff mask-dst=ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff sport=0 dport=65535 master-src=::1 master-dst=::1 sport=40512 dport=21 class=0 helper=ftp")
    assert fexpect.timestamp_prefix(1795625685, 338750) + fexpect.format_expect(
        _ftp_expect(47758, timeout=296)) == (
        "[1795625685.338750]\t296 proto=6 src=127.0.0.1 dst=127.0.0.1 sport=0 dport=51210 mask-src=255.255.255.255 mask-dst=255.255.255.255 sport=0 dport=65535 master-src=127.0.0.1 master-dst=127.0.0.1 sport=47758 dport=21 class=0 helper=ftp")
    ev = _ftp_expect(47758, timeout=300)
    ev.tuple = ev.tuple.replace(sport=1700, dport=1701)
    tail = "300 proto=6 src=127.0.0.1 dst=127.0.0.1 sport=1700 dport=1701 mask-src=255.255.255.255 mask-dst=255.255.255.255 sport=0 dport=65535 master-src=127.0.0.1 master-dst=127.0.0.1 sport=47758 dport=21 class=0 helper=ftp"
    assert fexpect.format_expect(ev, event=1) == "    [NEW] " + tail
    assert fexpect.format_expect(ev, event=3) == "[DESTROY] " + tail


def test_expect_flags_zone_and_no_helper():
    e = _ftp_expect(1, timeout=5, zone=3, flags=0x7)
    e.helper = None
    assert fexpect.format_expect(e).endswith(" dport=21 zone=3 PERMANENT,INACTIVE,USERSPACE class=0")
    x = fexpect.format_expect_xml(e)
    assert x.endswith("<meta><timeout>5</timeout><class>0</class><zone>3</zone><permanent/><inactive/><userspace/></meta></flow>")


def test_expect_xml():
    assert xml.EXPECT_PROLOGUE + fexpect.format_expect_xml(_ftp_expect(46886, timeout=298)) + "\n" + xml.EXPECT_CLOSING == (
        '<?xml version="1.0" encoding="utf-8"?>\n<expect>\n'
        '<flow><layer3 protonum="2" protoname="ipv4"><expected><src>127.0.0.1</src><dst>127.0.0.1</dst></expected><mask><src>255.255.255.255</src><dst>255.255.255.255</dst></mask><master><src>127.0.0.1</src><dst>127.0.0.1</dst></master></layer3><layer4 protonum="6" protoname="tcp"><expected><sport>0</sport><dport>51210</dport></expected><mask><sport>0</sport><dport>65535</dport></mask><master><sport>46886</sport><dport>21</dport></master></layer4><meta><helper-name>ftp</helper-name><timeout>298</timeout><class>0</class></meta></flow>\n'
        "</expect>\n")
    assert fexpect.format_expect_xml(_ftp_expect(1), event=2).startswith('<flow type="update"><layer3')


def test_stats_lines():
    names = ["found", "invalid", "insert", "insert_failed", "drop", "early_drop", "error",
             "search_restart", "clash_resolve", "chaintoolong"]
    vals = dict(zip(names, [0, 0, 4, 0, 0, 0, 0, 0, 0, 0]))
    assert stats.cpu_line(0, vals.items()) == "cpu=0   \tfound=0 invalid=0 insert=4 insert_failed=0 drop=0 early_drop=0 error=0 search_restart=0 clash_resolve=0 chaintoolong=0 \n"
    assert stats.format_stats_values(0, {1: 0, 2: 0, 3: 0}, expect=True) == "cpu=0   \texpect_new=0 expect_create=0 expect_delete=0 \n"
    assert stats.format_stats_values(1, {8: 2, 2: 0, 16: 9, 20: 1}) == "cpu=1   \tfound=0 insert=2 unknown1=9 \n"
    proc = ("entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n"
            "00000007  00000000 00000000 00000000 00000000 00000000 00000000 00000000 0000001f 00000000 00000000 00000000 00000000  00000000 00000006 00000005 00000000\n")
    assert stats.proc_stats_lines(proc) == ["cpu=0   \tentries=7 clashres=0 found=0 new=0 invalid=0 ignore=0 delete=0 chainlength=0 insert=31 insert_failed=0 drop=0 early_drop=0 icmp_error=0 expect_new=0 expect_create=6 expect_delete=5 search_restart=0 \n"]
    assert stats.count_line(3) == "3\n"
    assert stats.count_line(0xFFFFFFFF) == "-1\n"


def test_stats_bad_attribute_length():
    import struct as st
    body = st.pack("=HH", 6, 2) + b"\0\0\0\0"
    msg = st.pack("=IHHII", 16 + 4 + len(body), 0x104, 0, 0, 0) + bytes(4) + body
    with pytest.raises(stats.StatsAttrError, match="mnl_attr_validate: Numerical result out of range"):
        stats.parse_cpu_stats(msg)
