"""The conntrackd sync wire format (conntrack-tools 1.4.7), bit-exact.

``schema`` declares the layouts with construct (the single source of truth),
``_compiled`` holds the tables derived from them (``python -m nfnl.compile``),
``codec`` turns datagrams into :class:`~conntrack_tools.conntrackd.wire.codec.SyncMessage`
objects and back, and :class:`~ctnetlink.model.Flow` / :class:`~ctnetlink.model.Expect`
into message payloads and back, the way the C daemon does; ``kernel`` builds the
ctnetlink objects a received message becomes.
"""
