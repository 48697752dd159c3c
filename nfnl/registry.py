"""Subsystem registry: what generic netlink tooling knows about the subsystems it serves.

``nfnl`` frames netlink and nfnetlink messages but knows no subsystem. A subsystem
(ctnetlink, conntrackd's sync protocol, nfqueue one day) describes itself with a
:class:`Subsystem`: its message types with their names and body attribute sets, the
attribute tables :mod:`nfnl.compile` derived from its construct schema, resolvers for
message types whose body depends on the content, and the names the scapy layer gives
its classes. It registers it with :func:`register`, typically at the import of a small
registration module (``ctnetlink/registry.py``). The generic tools —
:func:`nfnl.message.decode_message`, replay matching and descriptions
(:mod:`nfnl.conversation`), :mod:`nfnl.scapy_layer`, the pytest plugin,
``conntrack-fixture show`` — look subsystems up here and never import one by name.

Discovery: a subsystem is known once its registration module has been imported. Tools
that may run before that (``python -m nfnl.replay``, the pytest plugin, the scapy layer)
call :func:`discover`, and a lookup of an unknown message type does so once by itself:
it imports every module listed in the ``nfnl.subsystems`` entry-point group of the
installed distributions, e.g. in ``pyproject.toml``::

    [project.entry-points."nfnl.subsystems"]
    ctnetlink = "ctnetlink.registry"

(the construct schemas behind the tables are listed separately, in the ``nfnl.compile``
group: see :mod:`nfnl.compile`).
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: the CLI must start fast
if TYPE_CHECKING:
    from typing import Callable, Iterable, Mapping

    AttrTables = Mapping[str, Mapping[int, tuple]]
    Resolver = Callable[[bytes | memoryview, int, int], tuple[str, str]]

from .constants import NETLINK_NETFILTER

ENTRY_POINT_GROUP = "nfnl.subsystems"


class Subsystem:
    """A subsystem's description for generic tooling.

    ``name``: a short unique name (``"ctnetlink"``). ``protocol``: the netlink protocol
    its messages travel on (12, NETLINK_NETFILTER), or None for a wire format that is
    not netlink (its tables and schema are still shared). ``attrs``: the attribute
    tables ``{set name: {type: (name, kind, fmt, child set)}}`` (``_compiled.ATTRS``).
    ``messages``: ``{nlmsg_type: (message name, body set name)}``. ``resolvers``:
    ``{nlmsg_type: resolver(buf, off, ln) -> (message name, body set name)}`` for types
    the kernel uses for two bodies. ``structs``: ``{set name: {type: field names}}`` of
    fixed-struct leaves (``struct nf_ct_tcp_flags`` -> ``("flags", "mask")``).
    ``body_names``: ``{body set name: short name}`` the scapy layer names body layers
    with (``ctattr_type`` -> ``CTA``).
    """

    __slots__ = ("name", "protocol", "attrs", "messages", "resolvers", "structs", "body_names")

    def __init__(self, name: str, *, attrs: AttrTables,
                 messages: Mapping[int, tuple[str, str]] | None = None,
                 protocol: int | None = NETLINK_NETFILTER,
                 resolvers: Mapping[int, Resolver] | None = None,
                 structs: Mapping[str, Mapping[int, tuple[str, ...]]] | None = None,
                 body_names: Mapping[str, str] | None = None) -> None:
        messages = messages or {}
        for mtype, (_, set_name) in messages.items():
            if set_name not in attrs:
                raise ValueError(f"{name}: message type {mtype:#x} has body set {set_name!r}, "
                                 "which is not among its attribute tables")
        self.name = name
        self.protocol = protocol
        self.attrs = attrs
        self.messages = dict(messages)
        self.resolvers = dict(resolvers or {})
        self.structs = structs or {}
        self.body_names = dict(body_names or {})

    def __repr__(self) -> str:
        return (f"Subsystem({self.name!r}, protocol={self.protocol}, "
                f"{len(self.messages)} message types, {len(self.attrs)} attribute sets)")


class MessageSpec:
    """How to decode one message type: its name, the attribute tables, the body set name,
    the resolver picking (name, set) by content (or None) and the owning subsystem."""

    __slots__ = ("name", "attrs", "set_name", "resolver", "subsystem")

    def __init__(self, name: str, attrs: AttrTables, set_name: str,
                 resolver: Resolver | None, subsystem: Subsystem) -> None:
        self.name = name
        self.attrs = attrs
        self.set_name = set_name
        self.resolver = resolver
        self.subsystem = subsystem

    def body(self, buf: bytes | memoryview, off: int, ln: int) -> tuple[str, str]:
        """(message name, body set name) of the message at ``buf[off:off+ln]``."""
        if self.resolver is not None:
            return self.resolver(buf, off, ln)
        return self.name, self.set_name

    def __repr__(self) -> str:
        return f"MessageSpec({self.name!r}, {self.set_name!r}, {self.subsystem.name!r})"


_SUBSYSTEMS: dict[str, Subsystem] = {}
_MESSAGES: dict[tuple[int | None, int], MessageSpec] = {}
_discovered = False


def register(sub: Subsystem) -> Subsystem:
    """Make ``sub`` known to the generic tools; returns it. Registering a subsystem of the
    same name again replaces it; a message type already claimed by another subsystem on
    the same protocol is refused (ValueError)."""
    for mtype in sub.messages:
        old = _MESSAGES.get((sub.protocol, mtype))
        if old is not None and old.subsystem.name != sub.name:
            raise ValueError(f"{sub.name}: message type {mtype:#x} is already registered by "
                             f"{old.subsystem.name}")
    previous = _SUBSYSTEMS.get(sub.name)
    if previous is not None:
        for mtype in previous.messages:
            _MESSAGES.pop((previous.protocol, mtype), None)
    _SUBSYSTEMS[sub.name] = sub
    for mtype, (name, set_name) in sub.messages.items():
        _MESSAGES[(sub.protocol, mtype)] = MessageSpec(name, sub.attrs, set_name,
                                                       sub.resolvers.get(mtype), sub)
    return sub


def unregister(name: str) -> Subsystem | None:
    """Forget the subsystem ``name`` (tests); returns it, or None if it was not known."""
    sub = _SUBSYSTEMS.pop(name, None)
    if sub is not None:
        for mtype in sub.messages:
            _MESSAGES.pop((sub.protocol, mtype), None)
    return sub


def discover() -> list[Subsystem]:
    """Import the registration modules of the ``nfnl.subsystems`` entry points (once per
    process) and return every registered subsystem. A module that fails to import is
    reported with a warning and skipped: one broken plugin must not break the tools."""
    global _discovered
    if not _discovered:
        _discovered = True
        import importlib
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                importlib.import_module(ep.module)
            except Exception as e:  # noqa: BLE001 - any failure of a third-party module
                import warnings

                warnings.warn(f"nfnl.registry: cannot load subsystem {ep.name!r} "
                              f"({ep.value}): {type(e).__name__}: {e}", RuntimeWarning,
                              stacklevel=2)
    return subsystems()


def subsystems() -> list[Subsystem]:
    """The registered subsystems, in registration order (no discovery)."""
    return list(_SUBSYSTEMS.values())


def subsystem(name: str) -> Subsystem | None:
    """The subsystem registered as ``name`` (after discovery), or None."""
    sub = _SUBSYSTEMS.get(name)
    if sub is None and not _discovered:
        discover()
        sub = _SUBSYSTEMS.get(name)
    return sub


def message(mtype: int, protocol: int | None = NETLINK_NETFILTER) -> MessageSpec | None:
    """The spec of message type ``mtype`` on ``protocol``, or None. An unknown type
    triggers :func:`discover` once."""
    spec = _MESSAGES.get((protocol, mtype))
    if spec is None and not _discovered:
        discover()
        spec = _MESSAGES.get((protocol, mtype))
    return spec


def message_names(protocol: int | None = NETLINK_NETFILTER) -> dict[int, str]:
    """``{nlmsg_type: name}`` of every registered message type on ``protocol``."""
    discover()
    return {mtype: spec.name for (proto, mtype), spec in sorted(
        _MESSAGES.items(), key=lambda kv: kv[0][1]) if proto == protocol}


def tables_for(set_name: str) -> AttrTables | None:
    """The attribute tables of the subsystem declaring the set ``set_name`` (what
    :func:`nfnl.codec.decode_attrs` takes to decode that set, nests included), or None."""
    for sub in discover():
        if set_name in sub.attrs:
            return sub.attrs
    return None


def iter_attr_tables() -> Iterable[tuple[Subsystem, str, Mapping[int, tuple]]]:
    """(subsystem, set name, rows) of every registered attribute set."""
    for sub in discover():
        for set_name, rows in sub.attrs.items():
            yield sub, set_name, rows
