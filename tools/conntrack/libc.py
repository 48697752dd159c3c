"""C library conversions with glibc semantics, as the reference ``conntrack`` uses them.

``strtoul``/``strtol`` (base 0/10, leading white space, sign, ``0x``/octal prefixes,
wrap-around of negative values, ``ULONG_MAX`` on overflow), ``atoi``/``atol`` (their
truncation to C ``int``/``long``), ``inet_aton`` (the legacy forms ``1``, ``1.1.1``,
``0x7f.1``, octal, junk after white space) and ``inet_pton(AF_INET6)``. Every function
works on ``str`` (command-line words as Python decodes them) and looks only at ASCII,
as glibc does in the C locale; all results are plain ``int``.
"""
from __future__ import annotations

ULONG_MAX = (1 << 64) - 1
LONG_MAX = (1 << 63) - 1
LONG_MIN = -(1 << 63)

C_SPACE = " \t\n\v\f\r"
_DIGITS = {c: i for i, c in enumerate("0123456789abcdefghijklmnopqrstuvwxyz")}
_DIGITS.update({c.upper(): i for c, i in list(_DIGITS.items())})


def ascii_lower(s: str) -> str:
    """``tolower`` of every character in the C locale (only A-Z change)."""
    return s.translate(_LOWER)


_LOWER = {ord(c): ord(c) + 32 for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def strncasecmp_prefix(text: str, keyword: str) -> bool:
    """``strncasecmp(text, keyword, strlen(text)) == 0``: text is a case-insensitive
    prefix of keyword (the empty text matches everything)."""
    return len(text) <= len(keyword) and ascii_lower(keyword[:len(text)]) == ascii_lower(text)


def _scan(s: str, base: int) -> tuple[int, int, bool, int]:
    """Shared part of strtoul/strtol: returns (magnitude, end index, any digits, sign)."""
    i, n = 0, len(s)
    while i < n and s[i] in C_SPACE:
        i += 1
    sign = 1
    if i < n and s[i] in "+-":
        sign = -1 if s[i] == "-" else 1
        i += 1
    if base == 0:
        if s.startswith(("0x", "0X"), i) and i + 2 < n and _DIGITS.get(s[i + 2], 99) < 16:
            base, i = 16, i + 2
        elif i < n and s[i] == "0":
            base = 8
        else:
            base = 10
    elif base == 16 and s.startswith(("0x", "0X"), i) and i + 2 < n and _DIGITS.get(s[i + 2], 99) < 16:
        i += 2
    start, value = i, 0
    while i < n:
        d = _DIGITS.get(s[i], 99)
        if d >= base:
            break
        value = value * base + d
        i += 1
    return value, i, i > start, sign


def strtoul(s: str, base: int = 0) -> tuple[int, int]:
    """``strtoul(s, &end, base)`` on a 64-bit system: (value, end index).

    No digits: (0, 0). Overflow: ULONG_MAX. A minus sign negates modulo 2**64.
    """
    value, end, ok, sign = _scan(s, base)
    if not ok:
        return 0, 0
    if value > ULONG_MAX:
        return ULONG_MAX, end
    if sign < 0:
        value = (-value) & ULONG_MAX
    return value, end


def strtol(s: str, base: int = 10) -> tuple[int, int]:
    """``strtol(s, &end, base)`` on a 64-bit system: (value, end index), saturating."""
    value, end, ok, sign = _scan(s, base)
    if not ok:
        return 0, 0
    value *= sign
    return max(LONG_MIN, min(LONG_MAX, value)), end


def atol(s: str) -> int:
    """``atol(s)`` (= ``strtol(s, NULL, 10)``)."""
    return strtol(s, 10)[0]


def atoi(s: str) -> int:
    """``atoi(s)``: ``(int) strtol(s, NULL, 10)``, i.e. the long truncated to 32 bits."""
    return to_int32(strtol(s, 10)[0])


def to_int32(v: int) -> int:
    """C conversion of an integer to a signed 32-bit ``int``."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def inet_aton(s: str) -> int | None:
    """glibc ``inet_aton``: the address as a host-order 32-bit integer, or None."""
    parts: list[int] = []
    i, n = 0, len(s)
    while True:
        if i >= n or not "0" <= s[i] <= "9":
            return None
        value, end, _ok, _sign = _scan_unsigned_c(s, i)
        if value is None or value > 0xFFFFFFFF:
            return None
        i = end
        if i < n and s[i] == ".":
            if len(parts) > 2 or value > 0xFF:
                return None
            parts.append(value)
            i += 1
        else:
            break
    if i < n and s[i] not in C_SPACE:
        return None
    limit = (0xFFFFFFFF, 0xFFFFFF, 0xFFFF, 0xFF)[len(parts)]
    if value > limit:
        return None
    result = 0
    for k, p in enumerate(parts):
        result |= p << (24 - 8 * k)
    return result | value


def _scan_unsigned_c(s: str, i: int) -> tuple[int | None, int, bool, int]:
    """strtoul(s + i, &end, 0) for a part that starts with a digit (inet_aton)."""
    value, end, ok, sign = _scan(s[i:], 0)
    if value > ULONG_MAX:
        return None, i + end, ok, sign
    return value, i + end, ok, sign


def _inet_pton4(s: str) -> bytes | None:
    """glibc's strict dotted-quad parser used inside IPv6 addresses."""
    octets: list[int] = []
    saw_digit = False
    cur = 0
    for ch in s:
        if "0" <= ch <= "9":
            new = cur * 10 + (ord(ch) - 48)
            if saw_digit and cur == 0:
                return None
            if new > 255:
                return None
            cur = new
            if not saw_digit:
                if len(octets) + 1 > 4:
                    return None
                saw_digit = True
        elif ch == "." and saw_digit:
            if len(octets) + 1 == 4:
                return None
            octets.append(cur)
            cur = 0
            saw_digit = False
        else:
            return None
    if not saw_digit and not octets:
        return None
    if saw_digit:
        octets.append(cur)
    else:
        return None
    if len(octets) < 4:
        return None
    return bytes(octets)


def inet_pton6(s: str) -> bytes | None:
    """glibc ``inet_pton(AF_INET6, s)``: 16 bytes, or None."""
    out = bytearray()
    colonp: int | None = None
    i, n = 0, len(s)
    if n == 0:
        return None
    if s[0] == ":":
        if n < 2 or s[1] != ":":
            return None
        i = 1
    curtok = i
    xdigits = 0
    val = 0
    while i < n:
        ch = s[i]
        i += 1
        d = _DIGITS.get(ch, 99)
        if d < 16:
            if xdigits == 4:
                return None
            val = (val << 4) | d
            xdigits += 1
            continue
        if ch == ":":
            curtok = i
            if xdigits == 0:
                if colonp is not None:
                    return None
                colonp = len(out)
                continue
            if i == n:
                return None
            if len(out) + 2 > 16:
                return None
            out += bytes(((val >> 8) & 0xFF, val & 0xFF))
            xdigits = 0
            val = 0
            continue
        if ch == "." and len(out) + 4 <= 16:
            v4 = _inet_pton4(s[curtok:])
            if v4 is not None:
                out += v4
                xdigits = 0
                break
        return None
    else:
        if xdigits > 0:
            if len(out) + 2 > 16:
                return None
            out += bytes(((val >> 8) & 0xFF, val & 0xFF))
    if colonp is not None:
        if len(out) == 16:
            return None
        tail = out[colonp:]
        out = out[:colonp] + bytes(16 - len(out)) + tail
    if len(out) != 16:
        return None
    return bytes(out)
