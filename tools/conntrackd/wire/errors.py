"""The one error type of the sync wire codec."""
from __future__ import annotations


class SyncDecodeError(ValueError):
    """Received bytes the C daemon would refuse; ``reason`` is one of
    :data:`~.constants.REASONS` (the receive counter it counts in), ``offset`` where."""

    def __init__(self, reason: str, detail: str, offset: int = 0) -> None:
        super().__init__(f"{reason}: {detail} (at offset {offset})")
        self.reason = reason
        self.detail = detail
        self.offset = offset
