"""The sync transports of conntrackd: multicast, UDP and TCP channels, bytes in and out.

A channel knows nothing of the sync protocol beyond a message's ``len`` header field
(to pack the channel buffer and to cut a TCP stream into messages); the protocol
machines (:mod:`..sync`) know nothing of sockets. Modules: :mod:`.base` (counters, the
channel buffer, the receive loop, the error queue), :mod:`.mcast`, :mod:`.udp`,
:mod:`.tcp` (the transports, socket options as conntrackd 1.4.7 sets them),
:mod:`.linkmon` (RTNETLINK interface states), :mod:`.multi` (several channels, the
current one, fail-over), :mod:`.links` (the ``-s`` figures).

How the integrator plugs a protocol machine in::

    from .channels import MultiChannel, ChannelError, ChannelLinks

    channels = MultiChannel.from_config(config.sync, clock=loop.time)

    def deliver(channel, data):              # one datagram, or complete TCP messages
        for action in machine.receive(data, loop.time()):
            if isinstance(action, Heard):    # a valid DATA/CTL message: this link
                channels.set_current(channel)
            ...                              # cache operations, logs

    try:
        channels.open(loop, deliver, log=log, on_error=loop.on_error,
                      iteration_limit=config.general.event_iteration_limit)
    except ChannelError:                     # already logged in the reference's words
        raise InitError(...)
    machine.buffer_size = channels.buffer_size   # MTU - 28 (TCP: MTU - 40)

    # after each transmit run (the machine's flush packs like the channel buffer):
    channels.send_all(machine.flush(loop.time()))
    # or message by message: channels.send(msg) ...; channels.flush()

    mode.links = ChannelLinks(mode.settings, channels, machine)   # -s network/link/queue
    daemon.on_shutdown(channels.close)

``send`` appends to the current channel's buffer (a full buffer leaves as one
datagram; TCP: one ``send()``), ``flush`` sends what is left; re-packing the machine's
datagrams this way yields the same datagrams. ``channels.on_switch`` (optional) is
called with the new current channel after a fail-over (e.g. to resize the machine's
buffer when the links' MTUs differ). Every channel receives; ``deliver`` is called at
most ``EventIterationLimit`` times per wake-up and per socket; an exception in it goes
to ``on_error`` and the channel reads on. Counters: ``channel.stats``
(:class:`.base.ChannelStats`), ``channels.errorq`` (``-s queue``).
"""
from __future__ import annotations

from .base import Channel, ChannelError, ChannelStats, ErrorQueue
from .links import ChannelLinks
from .multi import TRANSPORTS, MultiChannel

__all__ = ["Channel", "ChannelError", "ChannelLinks", "ChannelStats", "ErrorQueue",
           "MultiChannel", "TRANSPORTS"]
