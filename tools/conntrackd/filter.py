"""The ``Filter`` of conntrackd.conf (spec §3.5, §6.11): in user space and as classic BPF.

:class:`FilterSpec` holds the three rule sets (protocols, addresses, TCP states), each
with its policy (accept or ignore). :func:`compile_filter` turns it into
``keep(parsed) -> bool`` over the daemon's split messages (:class:`.entry.Parsed`),
with the reference's semantics (checked against the 1.4.7 binary): a protocol set keeps
(accept) or drops (ignore) entries of the listed layer-4 protocols; an address set
matches when the original source or the reply source (the real end points) is a
listed host or inside a listed network *of the entry's family*, so an accept list of
IPv4 addresses drops every IPv6 entry; a state set tests only TCP entries that carry a
state. :func:`bpf_program` compiles the same rules into a classic BPF program for the
event socket (``Filter From Kernelspace``) using the kernel's netlink-attribute
lookups (``SKF_AD_NLATTR``, ``SKF_AD_NLATTR_NEST``), and :func:`attach` installs it
with ``SO_ATTACH_FILTER``: events the filter drops never reach user space.
"""
from __future__ import annotations

import ipaddress
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterable

    from .entry import Parsed

ACCEPT = True
IGNORE = False

TCP_STATES = {"SYN_SENT": 1, "SYN_RECV": 2, "ESTABLISHED": 3, "FIN_WAIT": 4, "CLOSE_WAIT": 5,
              "LAST_ACK": 6, "TIME_WAIT": 7, "CLOSE": 8, "CLOSED": 8, "LISTEN": 9}
IPPROTO_TCP = 6


class FilterSpec:
    """The configured filter: each set is ``None`` (not configured) or
    ``(accept: bool, items)``. Protocols are numbers, states TCP state numbers (or
    names), addresses :mod:`ipaddress` networks (a host is a /32 or /128)."""

    __slots__ = ("protocols", "addresses", "states", "kernelspace")

    def __init__(self, protocols: tuple[bool, Iterable[int]] | None = None,
                 addresses: tuple[bool, Iterable] | None = None,
                 states: tuple[bool, Iterable] | None = None, kernelspace: bool = False) -> None:
        self.protocols = None if protocols is None else (bool(protocols[0]),
                                                         frozenset(int(p) for p in protocols[1]))
        if addresses is not None:
            nets = []
            for a in addresses[1]:
                n = a if isinstance(a, (ipaddress.IPv4Network, ipaddress.IPv6Network)) \
                    else ipaddress.ip_network(str(a), strict=False)
                nets.append(n)
            self.addresses = (bool(addresses[0]), tuple(nets))
        else:
            self.addresses = None
        if states is not None:
            self.states = (bool(states[0]),
                           frozenset(TCP_STATES[s] if isinstance(s, str) else int(s) for s in states[1]))
        else:
            self.states = None
        self.kernelspace = bool(kernelspace)

    @property
    def empty(self) -> bool:
        return self.protocols is None and self.addresses is None and self.states is None

    def __repr__(self) -> str:
        return (f"FilterSpec(protocols={self.protocols!r}, addresses={self.addresses!r}, "
                f"states={self.states!r}, kernelspace={self.kernelspace})")


def from_config(cfg) -> FilterSpec | None:
    """A :class:`FilterSpec` from the ``general.filter`` of the daemon's Config (None when
    no Filter block was given). Networks are ``(packed address, prefix length)``; an
    IPv4 ``/0`` matches only its own address, as in the reference (whose 32-bit shift
    makes it an all-ones mask)."""
    if cfg is None or isinstance(cfg, FilterSpec):
        return cfg

    def policy(name: str) -> bool | None:
        v = getattr(cfg, name, None)
        return None if v is None else str(v).lower() == "accept"

    protocols = states = addresses = None
    p = policy("protocol_policy")
    if p is not None:
        protocols = (p, tuple(getattr(cfg, "protocols", ())))
    p = policy("state_policy")
    if p is not None:
        states = (p, tuple(getattr(cfg, "tcp_states", ())))
    p = policy("address_policy")
    if p is not None:
        nets = []
        for packed in getattr(cfg, "ipv4_hosts", ()):
            nets.append(ipaddress.ip_network(ipaddress.ip_address(bytes(packed))))
        for packed in getattr(cfg, "ipv6_hosts", ()):
            nets.append(ipaddress.ip_network(ipaddress.ip_address(bytes(packed))))
        for packed, plen in tuple(getattr(cfg, "ipv4_networks", ())) + tuple(getattr(cfg, "ipv6_networks", ())):
            addr = ipaddress.ip_address(bytes(packed))
            if addr.version == 4 and plen == 0:
                plen = 32
            nets.append(ipaddress.ip_network(f"{addr}/{plen}", strict=False))
        addresses = (p, nets)
    return FilterSpec(protocols=protocols, addresses=addresses, states=states,
                      kernelspace=bool(getattr(cfg, "kernelspace", False)))


def _split_nets(nets: Iterable) -> tuple[frozenset[bytes], list[tuple[int, int, int]]]:
    """(host address bytes, [(family, network int, mask int)])"""
    hosts: set[bytes] = set()
    out: list[tuple[int, int, int]] = []
    for n in nets:
        if n.prefixlen == n.max_prefixlen:
            hosts.add(n.network_address.packed)
        else:
            out.append((n.version, int(n.network_address), int(n.netmask)))
    return frozenset(hosts), out


def compile_filter(spec: FilterSpec | None) -> Callable[[Parsed], bool] | None:
    """``keep(parsed)`` for ``spec`` (None when nothing is filtered)."""
    if spec is None or spec.empty:
        return None
    pset = paccept = None
    if spec.protocols is not None:
        paccept, pset = spec.protocols
    states = spec.states
    addrs = spec.addresses
    hosts: frozenset[bytes] = frozenset()
    nets4: list[tuple[int, int]] = []
    nets6: list[tuple[int, int]] = []
    if addrs is not None:
        hosts, nets = _split_nets(addrs[1])
        nets4 = [(net, mask) for v, net, mask in nets if v == 4]
        nets6 = [(net, mask) for v, net, mask in nets if v == 6]
        aaccept = addrs[0]

    def keep(p: Parsed) -> bool:
        if pset is not None and (p.proto in pset) != paccept:
            return False
        if addrs is not None:
            src, rsrc = p.addresses()
            match = src in hosts or rsrc in hosts
            if not match:
                table = nets4 if p.family == 2 else nets6 if p.family == 10 else ()
                for a in (src, rsrc):
                    if a is not None and table:
                        v = int.from_bytes(a, "big")
                        if any(v & mask == net for net, mask in table):
                            match = True
                            break
            if match != aaccept:
                return False
        if states is not None and p.proto == IPPROTO_TCP:
            st = p.tcp_state()
            if st is not None and (st in states[1]) != states[0]:
                return False
        return True

    return keep


# --- classic BPF -----------------------------------------------------------------------

BPF_LD, BPF_LDX, BPF_ST, BPF_ALU, BPF_JMP, BPF_RET, BPF_MISC = 0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x07
BPF_W, BPF_H, BPF_B = 0x00, 0x08, 0x10
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM = 0x00, 0x20, 0x40, 0x60
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET = 0x00, 0x10, 0x20, 0x30, 0x40
BPF_AND = 0x50
BPF_K, BPF_X = 0x00, 0x08
BPF_TAX, BPF_TXA = 0x00, 0x80
SKF_AD_OFF = 0xFFFFF000  # -0x1000 as u32
SKF_AD_NLATTR = 12
SKF_AD_NLATTR_NEST = 16
SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27
ACCEPT_ALL = 0xFFFFFFFF
_INSN = struct.Struct("=HBBI")

# attribute types walked by the program
_CTA_TUPLE_ORIG, _CTA_TUPLE_REPLY, _CTA_PROTOINFO = 1, 2, 4
_CTA_TUPLE_IP, _CTA_TUPLE_PROTO = 1, 2
_CTA_PROTO_NUM = 1
_CTA_IP_V4_SRC, _CTA_IP_V6_SRC = 1, 3
_CTA_PROTOINFO_TCP, _CTA_PROTOINFO_TCP_STATE = 1, 1
NFNL_SUBSYS_CTNETLINK = 1
_NFGEN_FAMILY_OFF = 16
_ATTRS_OFF = 20


class _Asm:
    """A tiny assembler: instructions with symbolic jump targets, resolved at the end.
    Conditional jumps are always to the next instruction or over one ``ja`` (long
    jumps go through ``ja``, whose offset has 32 bits)."""

    def __init__(self) -> None:
        self.code: list[list] = []
        self.labels: dict[str, int] = {}
        self.n = 0

    def op(self, code: int, k: int = 0) -> None:
        self.code.append([code, 0, 0, k & 0xFFFFFFFF, None])

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def new_label(self) -> str:
        self.n += 1
        return f"L{self.n}"

    def ja(self, target: str) -> None:
        self.code.append([BPF_JMP | BPF_JA, 0, 0, 0, target])

    def jeq_goto(self, k: int, target: str) -> None:
        """if A == k goto target"""
        self.code.append([BPF_JMP | BPF_JEQ | BPF_K, 0, 1, k & 0xFFFFFFFF, None])
        self.ja(target)

    def jne_goto(self, k: int, target: str) -> None:
        """if A != k goto target"""
        self.code.append([BPF_JMP | BPF_JEQ | BPF_K, 1, 0, k & 0xFFFFFFFF, None])
        self.ja(target)

    def ret(self, k: int) -> None:
        self.op(BPF_RET | BPF_K, k)

    def assemble(self) -> list[tuple[int, int, int, int]]:
        out = []
        for i, (code, jt, jf, k, target) in enumerate(self.code):
            if target is not None:
                k = self.labels[target] - i - 1
                if k < 0:
                    raise ValueError("backward jump")
            out.append((code, jt, jf, k))
        return out


def _find(asm: _Asm, path: Iterable[int], missing: str) -> None:
    """A = offset of the attribute at ``path`` (top level, then nested), or goto missing."""
    path = list(path)
    asm.op(BPF_LD | BPF_IMM, _ATTRS_OFF)
    for depth, atype in enumerate(path):
        asm.op(BPF_LDX | BPF_IMM, atype)
        asm.op(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + (SKF_AD_NLATTR if depth == 0 else SKF_AD_NLATTR_NEST))
        asm.jeq_goto(0, missing)


def bpf_program(spec: FilterSpec) -> list[tuple[int, int, int, int]]:
    """The classic BPF program (``(code, jt, jf, k)`` instructions) of ``spec``.

    Messages that are not conntrack messages (expectations, errors) and conntrack
    messages missing an attribute a test needs pass; the tests and their policies are
    those of :func:`compile_filter`.
    """
    a = _Asm()
    a.op(BPF_LD | BPF_B | BPF_ABS, 5)             # high byte of nlmsg_type: the subsystem
    a.jne_goto(NFNL_SUBSYS_CTNETLINK, "accept")
    if spec.protocols is not None or spec.states is not None:
        # M[0] = layer-4 protocol (0 when absent)
        a.op(BPF_LD | BPF_IMM, 0)
        a.op(BPF_ST, 0)
        _find(a, (_CTA_TUPLE_ORIG, _CTA_TUPLE_PROTO, _CTA_PROTO_NUM), "proto_done")
        a.op(BPF_MISC | BPF_TAX)
        a.op(BPF_LD | BPF_B | BPF_IND, 4)
        a.op(BPF_ST, 0)
        a.label("proto_done")
    if spec.protocols is not None:
        accept, protos = spec.protocols
        a.op(BPF_LD | BPF_MEM, 0)
        for p in sorted(protos):
            a.jeq_goto(p, "proto_match")
        a.ja("accept_or_drop_proto_nomatch")
        a.label("proto_match")
        a.ja("addr" if accept else "drop")
        a.label("accept_or_drop_proto_nomatch")
        a.ja("drop" if accept else "addr")
    a.label("addr")
    if spec.addresses is not None:
        _addresses(a, spec.addresses)
    a.label("state")
    if spec.states is not None:
        accept, states = spec.states
        a.op(BPF_LD | BPF_MEM, 0)
        a.jne_goto(IPPROTO_TCP, "accept")
        _find(a, (_CTA_PROTOINFO, _CTA_PROTOINFO_TCP, _CTA_PROTOINFO_TCP_STATE), "accept")
        a.op(BPF_MISC | BPF_TAX)
        a.op(BPF_LD | BPF_B | BPF_IND, 4)
        for s in sorted(states):
            a.jeq_goto(s, "state_match")
        a.ja("drop" if accept else "accept")
        a.label("state_match")
        a.ja("accept" if accept else "drop")
    a.label("accept")
    a.ret(ACCEPT_ALL)
    a.label("drop")
    a.ret(0)
    return a.assemble()


def _addresses(a: _Asm, addresses: tuple[bool, tuple]) -> None:
    """Address test: M[1..4] original source, M[5..8] reply source (IPv4: M[1], M[5])."""
    accept, nets = addresses
    hit, miss = ("state", "drop") if accept else ("drop", "state")
    by_version = {4: [n for n in nets if n.version == 4], 6: [n for n in nets if n.version == 6]}
    a.op(BPF_LD | BPF_B | BPF_ABS, _NFGEN_FAMILY_OFF)
    a.jeq_goto(2, "addr4")
    a.jeq_goto(10, "addr6")
    a.ja("state")  # other families are not tested
    for version, fam_label, src_type, words in ((4, "addr4", _CTA_IP_V4_SRC, 1),
                                                (6, "addr6", _CTA_IP_V6_SRC, 4)):
        a.label(fam_label)
        lst = by_version[version]
        if not lst:
            a.ja(miss)  # nothing of this family listed: no match
            continue
        # load the two addresses; a missing tuple leaves the other address in its place
        for base, tup in ((1, _CTA_TUPLE_ORIG), (5, _CTA_TUPLE_REPLY)):
            skip = a.new_label()
            for w in range(words):
                a.op(BPF_LD | BPF_IMM, 0)
                a.op(BPF_ST, base + w)
            _find(a, (tup, _CTA_TUPLE_IP, src_type), skip)
            a.op(BPF_MISC | BPF_TAX)
            for w in range(words):
                a.op(BPF_LD | BPF_W | BPF_IND, 4 + 4 * w)
                a.op(BPF_ST, base + w)
            a.label(skip)
        for base in (1, 5):
            for n in lst:
                nxt = a.new_label()
                net = int(n.network_address)
                mask = int(n.netmask)
                for w in range(words):
                    shift = 32 * (words - 1 - w)
                    mw = (mask >> shift) & 0xFFFFFFFF
                    nw = (net >> shift) & 0xFFFFFFFF
                    if mw == 0:
                        continue
                    a.op(BPF_LD | BPF_MEM, base + w)
                    if mw != 0xFFFFFFFF:
                        a.op(BPF_ALU | BPF_AND | BPF_K, mw)
                    a.jne_goto(nw, nxt)
                a.ja(hit)
                a.label(nxt)
        a.ja(miss)


def pack_program(prog: list[tuple[int, int, int, int]]) -> bytes:
    return b"".join(_INSN.pack(*insn) for insn in prog)


def attach(sock, prog: list[tuple[int, int, int, int]]) -> None:
    """Attach a classic BPF program to ``sock`` (anything with ``fileno()``) with
    ``SO_ATTACH_FILTER``; raises OSError when the kernel refuses it."""
    import ctypes
    import socket as _socket

    code = pack_program(prog)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("=HxxxxxxQ", len(prog), ctypes.addressof(buf))
    s = _socket.socket(fileno=_os_dup(sock.fileno()))
    try:
        s.setsockopt(_socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    finally:
        s.close()


def _os_dup(fd: int) -> int:
    import os

    return os.dup(fd)
