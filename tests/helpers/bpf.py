"""A classic BPF interpreter for netlink socket filters (tests only).

Runs the instructions :func:`conntrack_tools.conntrackd.filter.bpf_program` produces on a
message, with the kernel's semantics for the loads the programs use: absolute and
indirect loads in network byte order, scratch memory, and the ancillary
``SKF_AD_NLATTR`` / ``SKF_AD_NLATTR_NEST`` lookups (``nla_find`` over the attributes
from offset A, type X, ignoring the NESTED/BYTEORDER flags; 0 when absent).
"""
from __future__ import annotations

import struct

from conntrack_tools.conntrackd.filter import SKF_AD_NLATTR, SKF_AD_NLATTR_NEST, SKF_AD_OFF


def _nla_find(data: bytes, start: int, end: int, atype: int) -> int:
    p = start
    while p + 4 <= end:
        ln, t = struct.unpack_from("=HH", data, p)
        if ln < 4 or p + ln > end:
            return 0
        if t & 0x3FFF == atype:
            return p
        p += (ln + 3) & ~3
    return 0


def run(prog: list[tuple[int, int, int, int]], data: bytes) -> int:
    """The program's return value for the packet ``data`` (0 = drop)."""
    a = x = 0
    mem = [0] * 16
    pc = 0
    n = len(data)
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        cls = code & 0x07
        if cls == 0x06:  # RET
            return k if code & 0x18 == 0 else a
        if cls == 0x00:  # LD
            size, mode = code & 0x18, code & 0xE0
            if mode == 0x00:
                a = k
            elif mode == 0x60:
                a = mem[k]
            elif mode == 0x20 and k >= SKF_AD_OFF:
                ad = k - SKF_AD_OFF
                if ad == SKF_AD_NLATTR:
                    a = 0 if n < 4 or a > n - 4 else _nla_find(data, a, n, x)
                elif ad == SKF_AD_NLATTR_NEST:
                    if n < 4 or a > n - 4:
                        a = 0
                    else:
                        ln = struct.unpack_from("=H", data, a)[0]
                        a = 0 if ln > n - a or ln < 4 else _nla_find(data, a + 4, a + ln, x)
                else:
                    raise ValueError(f"ancillary {ad}")
            else:
                off = k if mode == 0x20 else x + k
                width = {0x00: 4, 0x08: 2, 0x10: 1}[size]
                if off + width > n:
                    return 0
                a = int.from_bytes(data[off:off + width], "big")
        elif cls == 0x01:  # LDX
            x = k if code & 0xE0 == 0 else mem[k]
        elif cls == 0x02:
            mem[k] = a
        elif cls == 0x03:
            mem[k] = x
        elif cls == 0x04:  # ALU (only AND K is used)
            if code & 0xF0 == 0x50:
                a &= k
            else:
                raise ValueError(f"alu {code:#x}")
        elif cls == 0x05:  # JMP
            op = code & 0xF0
            if op == 0x00:
                pc += k
            else:
                v = x if code & 0x08 else k
                cond = {0x10: a == v, 0x20: a > v, 0x30: a >= v, 0x40: bool(a & v)}[op]
                pc += jt if cond else jf
        elif cls == 0x07:  # MISC
            if code & 0xF8 == 0x00:
                x = a
            else:
                a = x
        else:
            raise ValueError(f"opcode {code:#x}")
