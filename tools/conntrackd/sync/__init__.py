"""The sync protocols of conntrackd as pure state machines (no sockets, no clock).

:mod:`.ftfw` (reliable, with acknowledgements), :mod:`.notrack` (best effort) and
:mod:`.alarm` (periodic refresh), on the shared parts of :mod:`.common`: datagrams and
clock ticks in, datagrams to send and :class:`~.common.CacheOp` / :class:`~.common.Log`
actions out. The daemon's loop owns the sockets (channels) and timers and calls
``receive``, ``enqueue``, ``tick`` and ``flush``; the caches provide the objects to send
through a :class:`~.common.Source`. Each module's docstring documents its API.
"""
