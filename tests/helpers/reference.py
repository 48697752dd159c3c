"""The reference ``conntrack`` (1.4.7) as an oracle: run it, parse what it prints, and
reduce both its listings and our :class:`~ctnetlink.model.Flow` objects to one
comparable "view" per entry.

A view is a plain dict holding what the reference tool can show about an entry
(``-o xml,labels,ktimestamp`` for most fields, ``-o extended,id`` for ICMP fields and
per-protocol state names, ``-o save`` for SCTP verification tags and status bits).
:func:`flow_view` computes the same dict from a Flow, so a test compares
``flow_view(ours) == reference_views(ns)[id]`` field by field.
"""
from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from typing import Any, Iterable

from ctnetlink.constants import (
    DCCP_STATE_NAMES, PORT_PROTOS, SCTP_STATE_NAMES, TCP_STATE_NAMES, Status,
)
from ctnetlink.model import Expect, Flow, Tuple

LABEL_FILE = "/etc/xtables/connlabel.conf"
FAMILY = {"ipv4": 2, "ipv6": 10}
SAVE_STATUS = (("EXPECTED", Status.EXPECTED), ("SEEN_REPLY", Status.SEEN_REPLY),
               ("ASSURED", Status.ASSURED), ("FIXED_TIMEOUT", Status.FIXED_TIMEOUT))
ICMP_PROTOS = (1, 58)
TIMEOUT_SLACK = 3
"""Seconds a timeout may tick down between our dump and the reference's listing."""


def bswap32(v: int) -> int:
    return int.from_bytes(v.to_bytes(4, "big"), "little")


def label_map(path: str = LABEL_FILE) -> dict[int, str]:
    """bit -> name from a connlabel.conf (the format of §4.10; first definition wins)."""
    out: dict[int, str] = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        bit, _, name = line.strip().partition(" ")
        try:
            b = int(bit, 0)
        except ValueError:
            continue
        name = name.strip()
        if b < 1024 and name and b not in out and name not in out.values():
            out[b] = name
    return out


# --- parsing the reference's flow listings ---------------------------------------------

def _ip(text: str) -> str:
    return str(ipaddress.ip_address(text))


def parse_xml(text: str) -> list[dict[str, Any]]:
    """``-o xml[,labels,ktimestamp]`` listing -> one dict per <flow>."""
    root = _xml_root(text, "conntrack")
    out = []
    for flow in root.iter("flow"):
        d: dict[str, Any] = {"event": flow.get("type")}
        for meta in flow.findall("meta"):
            direction = meta.get("direction")
            if direction in ("original", "reply"):
                side: dict[str, Any] = {}
                l3 = meta.find("layer3")
                l4 = meta.find("layer4")
                if l3 is not None:
                    side["family"] = int(l3.get("protonum"))
                    side["src"] = _ip(l3.findtext("src"))
                    side["dst"] = _ip(l3.findtext("dst"))
                if l4 is not None:
                    side["proto"] = int(l4.get("protonum"))
                    for k in ("sport", "dport"):
                        if l4.find(k) is not None:
                            side[k] = int(l4.findtext(k))
                    for k in ("srckey", "dstkey"):
                        if l4.find(k) is not None:
                            side[k] = int(l4.findtext(k), 16)
                if meta.find("zone") is not None:
                    side["zone"] = int(meta.findtext("zone"))
                c = meta.find("counters")
                if c is not None:
                    side["counters"] = (int(c.findtext("packets")), int(c.findtext("bytes")))
                d["orig" if direction == "original" else "reply"] = side
            else:
                for k in ("state", "secctx"):
                    if meta.find(k) is not None:
                        d[k] = meta.findtext(k)
                for k in ("timeout", "mark", "secmark", "zone", "use", "id", "deltatime"):
                    if meta.find(k) is not None:
                        d[k] = int(meta.findtext(k))
                d["assured"] = meta.find("assured") is not None
                d["unreplied"] = meta.find("unreplied") is not None
                lab = meta.find("labels")
                if lab is not None:
                    d["labels"] = tuple(x.text for x in lab.findall("label"))
                ts = meta.find("timestamp")
                if ts is not None:
                    d["timestamp"] = tuple(
                        int(ts.findtext(k)) if ts.find(k) is not None else None
                        for k in ("start", "stop"))
        if flow.find("helper") is not None:
            d["helper"] = flow.findtext("helper")
        out.append(d)
    return out


def _xml_root(text: str, tag: str) -> ET.Element:
    """The document element; ``-G``, ``-D`` and interrupted ``-E`` leave it unclosed or
    print bare ``<flow>`` lines."""
    body = text.strip()
    if body.startswith("<?xml"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
    body = body.replace(f"<{tag}>", "").replace(f"</{tag}>", "")
    return ET.fromstring(f"<{tag}>{body}</{tag}>")


_META_KEYS = {"mark", "secmark", "secctx", "zone", "delta-time", "helper", "use", "labels"}
_META_FLAGS = {"[ASSURED]", "[OFFLOAD]", "[HW_OFFLOAD]"}


def parse_extended(text: str) -> list[dict[str, Any]]:
    """``-o extended,id[,labels]`` lines -> dicts (``orig``/``reply`` sides, ``id``...)."""
    out = []
    for line in text.splitlines():
        tok = line.split()
        if not tok:
            continue
        d: dict[str, Any] = {"family": int(tok[1]), "proto": int(tok[3]), "flags": set()}
        i = 4
        if i < len(tok) and tok[i].isdigit():
            d["timeout"] = int(tok[i])
            i += 1
        if i < len(tok) and "=" not in tok[i] and not tok[i].startswith("["):
            d["state"] = tok[i]
            i += 1
        section = None
        for t in tok[i:]:
            if t.startswith("["):
                d["flags"].add(t)
                if t in _META_FLAGS:
                    section = "meta"
                continue
            key, eq, value = t.partition("=")
            if not eq:
                if key == "labels":
                    d["labels"] = ()
                continue
            if key == "src" and section in (None, "orig"):
                section = "orig" if section is None else "reply"
            if key in _META_KEYS:
                section = "meta"
            if section in ("orig", "reply") and key != "labels":
                d.setdefault(section, {})[key] = value
            elif key == "labels":
                d["labels"] = tuple(value.split(","))
            else:
                d[key] = value
        if "id" in d:
            d["id"] = int(d["id"])
        out.append(d)
    return out


def parse_save(text: str) -> list[dict[str, str]]:
    """``-o save`` lines -> {option: value} (``-u`` split into a set)."""
    out = []
    for line in text.splitlines():
        tok = line.split()
        if not tok:
            continue
        d: dict[str, Any] = {"cmd": tok[0]}
        i = 1
        while i < len(tok):
            d[tok[i]] = tok[i + 1] if i + 1 < len(tok) else ""
            i += 2
        if "-u" in d:
            d["-u"] = set(d["-u"].split(","))
        out.append(d)
    return out


def _l4(side: dict[str, Any], proto: int, ext_side: dict[str, str] | None) -> tuple:
    if proto == 47:
        return ("keys", side.get("srckey"), side.get("dstkey"))
    if proto in PORT_PROTOS:
        return ("ports", side.get("sport"), side.get("dport"))
    if proto in ICMP_PROTOS and ext_side is not None:
        return ("icmp", int(ext_side["type"]), int(ext_side["code"]), int(ext_side["id"]))
    return ()


def reference_views(ns, *args: str, labels: dict[int, str] | None = None) -> dict[int, dict[str, Any]]:
    """List the conntrack table with the reference tool (extra ``args`` are filters such
    as ``-m 7``) and return {entry id: view}."""
    xml = parse_xml(ns.conntrack("-L", *args, "-o", "xml,labels,ktimestamp").stdout)
    ext = {e["id"]: e for e in parse_extended(ns.conntrack("-L", *args, "-o", "extended,id").stdout)}
    save = parse_save(ns.conntrack("-L", *args, "-o", "save").stdout)
    views = {}
    assert len(xml) == len(save) == len(ext), "the table changed between the listings"
    for x, s in zip(xml, save):
        e = ext[x["id"]]
        assert (s["-s"], s["-d"]) == (x["orig"]["src"], x["orig"]["dst"]) or (
            _ip(s["-s"]), _ip(s["-d"])) == (x["orig"]["src"], x["orig"]["dst"]), \
            "dump order changed between the listings"
        proto = x["orig"]["proto"]
        view = {
            "id": x["id"],
            "family": x["orig"]["family"],
            "proto": proto,
            "counters": (x["orig"]["counters"], x["reply"]["counters"])
            if "counters" in x["orig"] else None,
            "state": e.get("state"),
            "timeout": x.get("timeout"),
            "mark": x.get("mark"),
            "secmark": x.get("secmark"),
            "secctx": x.get("secctx"),
            "zone": x.get("zone"),
            "use": x.get("use"),
            "assured": x["assured"],
            "unreplied": x["unreplied"],
            "status": frozenset(s.get("-u", set()) - {"UNSET"}),
            "timestamp": x.get("timestamp"),
            "helper": x.get("helper"),
            "labels": x.get("labels"),
            # the reference prints byte-swapped tags (see helpers.flows.bswap32)
            "vtags": (bswap32(int(s["--orig-vtag"])), bswap32(int(s["--reply-vtag"])))
            if "--orig-vtag" in s else None,
        }
        for side in ("orig", "reply"):
            xs = x[side]
            view[side] = (xs["src"], xs["dst"], _l4(xs, proto, e.get(side)), xs.get("zone"))
        views[view["id"]] = view
    return views


def flow_view(flow: Flow, labels: dict[int, str] | None = None) -> dict[str, Any]:
    """The reference's view of one of our Flows (see :func:`reference_views`)."""
    labels = label_map() if labels is None else labels
    proto = flow.orig.proto
    status = flow.status or 0
    state = None
    if flow.tcp is not None and flow.tcp.state is not None:
        state = TCP_STATE_NAMES[flow.tcp.state] if flow.tcp.state < 10 else "NONE"
    elif flow.sctp is not None and flow.sctp.state is not None:
        state = SCTP_STATE_NAMES[flow.sctp.state] if flow.sctp.state < 10 else "NONE"
    elif flow.dccp is not None and flow.dccp.state is not None:
        state = DCCP_STATE_NAMES[flow.dccp.state] if flow.dccp.state < 10 else "NONE"

    def side(t: Tuple) -> tuple:
        if proto == 47:
            l4: tuple = ("keys", t.sport or 0, t.dport or 0)
        elif proto in PORT_PROTOS:
            l4 = ("ports", t.sport or 0, t.dport or 0)  # the reference prints 0 when absent
        elif proto in ICMP_PROTOS:
            l4 = ("icmp", t.icmp_type, t.icmp_code, t.icmp_id)
        else:
            l4 = ()
        return (str(t.src), str(t.dst), l4, t.zone)

    counters = None
    if flow.counters_orig is not None:
        co, cr = flow.counters_orig, flow.counters_reply or flow.counters_orig
        counters = ((co.packets, co.bytes), (cr.packets, cr.bytes))
    ts = None
    if flow.timestamp is not None:
        ts = (flow.timestamp.start, flow.timestamp.stop)
    return {
        "id": flow.id,
        "family": flow.family,
        "proto": proto,
        "orig": side(flow.orig),
        "reply": side(flow.reply),
        "counters": counters,
        "state": state,
        "timeout": flow.timeout,
        "mark": flow.mark,
        "secmark": flow.secmark,
        "secctx": flow.secctx,
        "zone": flow.zone,
        "use": flow.use,
        "assured": bool(status & Status.ASSURED),
        "unreplied": flow.status is not None and not status & Status.SEEN_REPLY,
        "status": frozenset(name for name, bit in SAVE_STATUS if status & bit),
        "timestamp": ts,
        "helper": flow.helper,
        "labels": tuple(labels[b] for b in flow.label_bits if b in labels)
        if flow.labels else None,
        "vtags": (flow.sctp.vtag_orig, flow.sctp.vtag_reply) if flow.sctp is not None else None,
    }


def assert_views_equal(ours: dict[str, Any], ref: dict[str, Any], slack: int = TIMEOUT_SLACK) -> None:
    """Equal views, allowing the timeout to have ticked down by up to ``slack`` s."""
    a, b = dict(ours), dict(ref)
    ta, tb = a.pop("timeout"), b.pop("timeout")
    assert a == b
    assert (ta is None) == (tb is None) and (ta is None or abs(ta - tb) <= slack), (ta, tb)


def assert_same_table(flows: Iterable[Flow], ref: dict[int, dict[str, Any]],
                      labels: dict[int, str] | None = None) -> None:
    """Our dump and the reference's listing hold the same entries with the same fields."""
    ours = {f.id: flow_view(f, labels) for f in flows}
    assert sorted(ours) == sorted(ref)
    for fid, view in ours.items():
        assert_views_equal(view, ref[fid])


# --- expectations ---------------------------------------------------------------------

def parse_expect_xml(text: str) -> list[dict[str, Any]]:
    """``-L expect -o xml`` -> one dict per expectation."""
    out = []
    for flow in _xml_root(text, "expect").iter("flow"):
        l3, l4, meta = flow.find("layer3"), flow.find("layer4"), flow.find("meta")
        d: dict[str, Any] = {"family": int(l3.get("protonum")), "proto": int(l4.get("protonum"))}
        for part in ("expected", "mask", "master"):
            ports = l4.find(part)
            d[part] = (
                _ip(l3.find(part).findtext("src")), _ip(l3.find(part).findtext("dst")),
                int(ports.findtext("sport")) if ports is not None and ports.find("sport") is not None else None,
                int(ports.findtext("dport")) if ports is not None and ports.find("dport") is not None else None,
            )
        d["helper"] = meta.findtext("helper-name")
        for k in ("timeout", "class", "zone"):
            d[k] = int(meta.findtext(k)) if meta.find(k) is not None else None
        d["flags"] = frozenset(k for k in ("permanent", "inactive", "userspace")
                               if meta.find(k) is not None)
        out.append(d)
    return out


def expect_view(exp: Expect) -> dict[str, Any]:
    """What ``-L expect -o xml`` shows about one of our Expects."""
    def t(x: Tuple) -> tuple:
        return (str(x.src), str(x.dst), x.sport, x.dport)

    flags = exp.flags or 0
    return {
        "family": exp.family,
        "proto": exp.tuple.proto,
        "expected": t(exp.tuple),
        "mask": t(exp.mask),
        "master": t(exp.master),
        "helper": exp.helper,
        "timeout": exp.timeout,
        "class": exp.klass,
        "zone": exp.zone,
        "flags": frozenset(name for name, bit in (("permanent", 1), ("inactive", 2), ("userspace", 4))
                           if flags & bit),
    }


def assert_same_expectations(ours: Iterable[Expect], ref: list[dict[str, Any]],
                             slack: int = TIMEOUT_SLACK) -> None:
    def key(v: dict[str, Any]) -> tuple:
        return (v["family"], v["expected"], v["master"])

    a = sorted((expect_view(e) for e in ours), key=key)
    b = sorted((dict(v) for v in ref), key=key)
    assert [key(v) for v in a] == [key(v) for v in b]
    for va, vb in zip(a, b):
        ta, tb = va.pop("timeout"), vb.pop("timeout")
        assert va == vb
        assert abs(ta - tb) <= slack


# --- statistics ---------------------------------------------------------------------------

def parse_stats(text: str) -> dict[int, dict[str, int]]:
    """``-S`` / ``-S expect`` -> {cpu: {name: value}}."""
    out = {}
    for line in text.splitlines():
        if not line.startswith("cpu="):
            continue
        head, _, rest = line.partition("\t")
        cpu = int(head[4:].strip())
        out[cpu] = {k: int(v) for k, _, v in (t.partition("=") for t in rest.split())}
    return out


def parse_count(text: str) -> int:
    return int(text.strip())
