"""The daemon's caches of conntrack entries and expectations (spec §6.1), compact.

A :class:`Cache` maps a compact key (:mod:`.entry`) to one ``bytes`` value: a 9-byte
header (status NEW/ALIVE/DEAD and flags, ``lifetime`` = when the entry was added,
``lastupdate``) followed by the entry's other ctnetlink attributes as the kernel sent
them, sorted by type. No Python object exists per entry beyond those two ``bytes``;
entries are decoded (into text, JSON or :class:`~ctnetlink.model.Flow`) only for
output and commit. The operations and counters are the reference's: add (``HashLimit``
-> "no space left in cache"), update (the attributes present in the update replace
the stored ones, the others stay), update-force, delete, mark dead (a dead entry
stays while someone holds a reference, e.g. a transmit queue), flush.
"""
from __future__ import annotations

import struct
import time
from itertools import repeat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterator

from . import entry as E

NEW = 0
ALIVE = 1
DEAD = 2
STATUS_MASK = 3
F_MIRRORED = 4
F_INET6 = 8
META = struct.Struct("=BII")
META_SIZE = META.size
_FLAGS_ONLY = struct.Struct("=B")

DEFAULT_HASHSIZE = 65536
DEFAULT_HASHLIMIT = 262144


class CacheStats:
    """The counters of ``-s`` / ``-s cache`` (cache.c ``struct cache_stats``)."""

    __slots__ = ("add_ok", "add_fail", "add_fail_enomem", "add_fail_enospc", "upd_ok",
                 "upd_fail", "upd_fail_enoent", "del_ok", "del_fail", "del_fail_enoent",
                 "flush", "commit_ok", "commit_fail")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class Cache:
    """One cache (``internal``, ``external`` or ``stats``) of conntrack entries.

    ``keep`` decides what is stored: attribute types in ``drop`` are never kept
    (counters and use always; the timeout in stats mode). ``clock`` returns seconds.
    """

    kind = "ct"

    def __init__(self, name: str, *, limit: int = DEFAULT_HASHLIMIT,
                 hashsize: int = DEFAULT_HASHSIZE, drop: tuple[int, ...] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.limit = limit or DEFAULT_HASHLIMIT
        self.hashsize = hashsize or DEFAULT_HASHSIZE
        self.drop = tuple(drop)
        self.clock = clock
        self.stats = CacheStats()
        self.active = 0
        self._d: dict[bytes, bytes] = {}
        #: extra references (e.g. a queued message) of the few entries that have some
        self._refs: dict[bytes, int] = {}
        #: the keys of the dead entries (they stay while held)
        self._dead: set[bytes] = set()

    # --- reading ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, key: bytes) -> bool:
        return key in self._d

    def __iter__(self) -> Iterator[bytes]:
        return iter(list(self._d))

    def get(self, key: bytes) -> bytes | None:
        """The stored value (header + attributes) of ``key``."""
        return self._d.get(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of every entry, dead ones included (a snapshot)."""
        return iter(list(self._d.items()))

    @property
    def lookup(self) -> Callable[[bytes], bytes | None]:
        """:meth:`get` as the table's own bound method (for loops over many keys)."""
        return self._d.get

    def live_keys(self) -> list[bytes]:
        """The keys of the entries that are not dead, in table order (a snapshot)."""
        if not self._dead:
            return list(self._d)
        return [k for k, v in self._d.items() if v[0] & STATUS_MASK != DEAD]

    def status(self, key: bytes) -> int | None:
        v = self._d.get(key)
        return None if v is None else v[0] & STATUS_MASK

    @property
    def objects(self) -> int:
        """Allocated objects (``-s cache`` "active objects")."""
        return len(self._d)

    # --- the stored form -------------------------------------------------------------------
    def _value(self, p: E.Parsed, status: int, lifetime: int, now: int) -> bytes:
        flags = status | (F_MIRRORED if p.mirrored else 0) | (F_INET6 if p.family == 10 else 0)
        attrs = p.attrs
        if self.drop:
            for t in self.drop:
                if t in attrs:
                    attrs = {k: v for k, v in attrs.items() if k not in self.drop}
                    break
        return META.pack(flags, lifetime, now) + E.join(attrs)

    # --- operations (§6.1) ---------------------------------------------------------------
    def add(self, p: E.Parsed) -> bool:
        """Insert a new entry (status NEW); False when the cache is full (or has it)."""
        if len(self._d) >= self.limit or p.key in self._d:
            self.stats.add_fail += 1
            if len(self._d) >= self.limit:
                self.stats.add_fail_enospc += 1
            return False
        now = int(self.clock())
        self._d[p.key] = self._value(p, NEW, now, now)
        self.stats.add_ok += 1
        self.active += 1
        return True

    def add_raw(self, key: bytes, flags: int, attrs: bytes) -> bool:
        """:meth:`add` of an entry already in the stored form: ``flags`` its F_MIRRORED /
        F_INET6 bits, ``attrs`` its stored attributes (sorted, without dropped types)."""
        d = self._d
        if len(d) >= self.limit or key in d:
            self.stats.add_fail += 1
            if len(d) >= self.limit:
                self.stats.add_fail_enospc += 1
            return False
        now = int(self.clock())
        d[key] = META.pack(NEW | flags, now, now) + attrs
        self.stats.add_ok += 1
        self.active += 1
        return True

    def update_force_raw(self, key: bytes, flags: int, attrs: bytes,
                         layout: tuple[int, int, int] | None = None) -> bool:
        """:meth:`update_force` of an entry in the stored form (see :meth:`add_raw`) that
        comes with a reply tuple (kept in ``attrs`` unless F_MIRRORED); ``layout`` is
        (length, mask, expected) of the top-level headers of ``attrs``: a stored entry
        with the same ones is replaced without splitting it (the update replaces every
        attribute it has)."""
        old = self._d.get(key)
        if old is None:
            return self.add_raw(key, flags, attrs)
        if old[0] & STATUS_MASK == DEAD:
            self._remove(key)
            return self.add_raw(key, flags, attrs)
        _, lifetime, _ = META.unpack_from(old)
        if not (layout is not None and len(old) - META_SIZE == layout[0]
                and int.from_bytes(old[META_SIZE:], "little") & layout[1] == layout[2]):
            merged = E.top_attrs(old, META_SIZE, len(old))
            merged.pop(E.CTA_TUPLE_REPLY, None)
            merged.update(E.top_attrs(attrs, 0, len(attrs)))
            for t in self.drop:
                merged.pop(t, None)
            attrs = E.join(merged)
        self._d[key] = META.pack(ALIVE | (flags & F_MIRRORED) | (old[0] & F_INET6), lifetime,
                                 int(self.clock())) + attrs
        self.stats.upd_ok += 1
        return True

    def update(self, p: E.Parsed) -> None:
        """Copy the attributes present in ``p`` over the stored entry (it must exist and
        not be dead); status ALIVE."""
        old = self._d[p.key]
        flags, lifetime, _ = META.unpack_from(old)
        attrs = E.top_attrs(old, META_SIZE, len(old))
        if p.reply is not None:  # the update decides how the reply tuple is kept
            attrs.pop(E.CTA_TUPLE_REPLY, None)
            mirrored = p.mirrored
        else:
            mirrored = bool(flags & F_MIRRORED)
        attrs.update(p.attrs)
        for t in self.drop:
            attrs.pop(t, None)
        flags = ALIVE | (F_MIRRORED if mirrored else 0) | (flags & F_INET6)
        self._d[p.key] = META.pack(flags, lifetime, int(self.clock())) + E.join(attrs)
        self.stats.upd_ok += 1

    def update_force(self, p: E.Parsed) -> bool:
        """Update the entry if it is cached and alive, else (drop a dead one and) add it.
        Returns whether the entry is now cached."""
        old = self._d.get(p.key)
        if old is not None:
            if old[0] & STATUS_MASK != DEAD:
                self.update(p)
                return True
            self._remove(p.key)
        return self.add(p)

    def delete(self, key: bytes) -> bool:
        """Remove an entry now (counted as destroyed unless it was dead already)."""
        v = self._d.get(key)
        if v is None:
            return False
        if v[0] & STATUS_MASK != DEAD:
            self.stats.del_ok += 1
            self.active -= 1
        self._remove(key)
        return True

    def mark_dead(self, key: bytes) -> bool:
        """Status DEAD (counted as destroyed); the entry goes when nobody holds it."""
        v = self._d.get(key)
        if v is None or v[0] & STATUS_MASK == DEAD:
            return False
        self.stats.del_ok += 1
        self.active -= 1
        if key in self._refs:
            self._d[key] = bytes(((v[0] & ~STATUS_MASK) | DEAD,)) + v[1:]
            self._dead.add(key)
        else:
            del self._d[key]
        return True

    def flush(self) -> int:
        """Remove every entry at once; returns how many were removed."""
        n = len(self._d)
        alive = sum(1 for v in self._d.values() if v[0] & STATUS_MASK != DEAD) \
            if self._refs else n
        self.stats.del_ok += alive
        self.active -= alive
        self._d.clear()
        self._refs.clear()
        self._dead.clear()
        self.stats.flush += 1
        return n

    def _remove(self, key: bytes) -> None:
        del self._d[key]
        self._refs.pop(key, None)
        self._dead.discard(key)

    # --- references (transmit queues) ------------------------------------------------------
    def hold(self, key: bytes) -> None:
        """Take a reference on a cached entry (a dead entry stays while held)."""
        if key in self._d:
            self._refs[key] = self._refs.get(key, 0) + 1

    def hold_many(self, keys: list[bytes]) -> None:
        """:meth:`hold` of every key of ``keys`` (distinct keys)."""
        d = self._d
        refs = self._refs
        if not refs:
            self._refs = dict.fromkeys(filter(d.__contains__, keys), 1)
            return
        if refs.keys().isdisjoint(keys):
            refs.update(dict.fromkeys(filter(d.__contains__, keys), 1))
            return
        get = refs.get
        for key in keys:
            if key in d:
                refs[key] = get(key, 0) + 1

    def put_many(self, keys: list[bytes]) -> None:
        """:meth:`put` of every key of ``keys`` (distinct keys)."""
        refs = self._refs
        counts = list(map(refs.pop, keys, repeat(None)))
        if counts.count(1) != len(counts):  # held more than once, or not held
            for key, n in zip(keys, counts):
                if n is not None and n > 1:
                    refs[key] = n - 1
        if self._dead:
            for key in self._dead.intersection(keys):
                if key not in refs:
                    self._put_dead(key)

    def _put_dead(self, key: bytes) -> None:
        """Nobody holds ``key`` any more: it goes if it is dead."""
        self._dead.discard(key)
        v = self._d.get(key)
        if v is not None and v[0] & STATUS_MASK == DEAD:
            del self._d[key]

    def put(self, key: bytes) -> None:
        """Drop a reference; a dead entry without references disappears."""
        n = self._refs.get(key)
        if n is None:
            return
        if n > 1:
            self._refs[key] = n - 1
            return
        del self._refs[key]
        v = self._d.get(key)
        if v is not None and v[0] & STATUS_MASK == DEAD:
            del self._d[key]
            self._dead.discard(key)

    # --- decoding for output and commit ----------------------------------------------------
    def message(self, key: bytes, value: bytes | None = None, mtype: int = 0x100) -> bytes:
        """The entry as a complete ctnetlink message (for decoders and formatters)."""
        if value is None:
            value = self._d[key]
        flags = value[0]
        return E.message(key, 10 if flags & F_INET6 else 2, value[META_SIZE:],
                         bool(flags & F_MIRRORED), mtype)

    def attrs(self, key: bytes, value: bytes | None = None) -> dict[int, bytes]:
        """The stored attributes of an entry (original and reply tuples included)."""
        msg = self.message(key, value)
        return E.top_attrs(msg, 20, len(msg))

    def flow(self, key: bytes):
        """The entry as a :class:`~ctnetlink.model.Flow`."""
        from ctnetlink.decode import decode_flow

        return decode_flow(self.message(key))

    @staticmethod
    def times(value: bytes) -> tuple[int, int]:
        """(lifetime, lastupdate) of a stored value."""
        _, lifetime, last = META.unpack_from(value)
        return lifetime, last


class ExpectCache(Cache):
    """A cache of expectations: the key is the raw master tuple, expected tuple, mask and
    zone; the value keeps every attribute (expectations are few)."""

    kind = "exp"

    def message(self, key: bytes, value: bytes | None = None, mtype: int = 0x200) -> bytes:
        if value is None:
            value = self._d[key]
        body = value[META_SIZE:]
        fam = 10 if value[0] & F_INET6 else 2
        return (struct.pack("=IHHII", 20 + len(body), mtype, 0, 0, 0)
                + struct.pack("=BBH", fam, 0, 0) + body)

    def expect(self, key: bytes):
        from ctnetlink.decode import decode_expect

        return decode_expect(self.message(key))


CTA_EXPECT_MASTER = 1
CTA_EXPECT_TUPLE = 2
CTA_EXPECT_MASK = 3
CTA_EXPECT_TIMEOUT = 4
CTA_EXPECT_ID = 5
CTA_EXPECT_ZONE = 7


def parse_expect(buf, off: int, ln: int, drop: tuple[int, ...] = ()) -> E.Parsed:
    """Split an expectation message for an :class:`ExpectCache`."""
    if ln < 20 or off + ln > len(buf):
        raise E.DecodeError(f"bad message length {ln}")
    family = buf[off + 16]
    attrs = E.top_attrs(buf, off + 20, off + ln)
    for t in drop:
        attrs.pop(t, None)
    master = attrs.get(CTA_EXPECT_MASTER)
    if master is None:
        raise E.DecodeError("no master tuple in expectation")
    key = b"".join(attrs.get(t, b"") for t in (CTA_EXPECT_MASTER, CTA_EXPECT_TUPLE,
                                               CTA_EXPECT_MASK, CTA_EXPECT_ZONE))
    return E.Parsed(key, family, attrs, master, None, False, None)
