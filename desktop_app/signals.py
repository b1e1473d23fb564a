"""Connecting and disconnecting a component's (signal, slot) pairs from one list.

A view lists its connections once (``[(document.mask_changed, self._on_mask_changed), ...]``)
and both connects and detaches through that list, so a new connection cannot be forgotten in
``detach()``. Works for Qt signals and psygnal signals alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Connection = tuple[Any, Callable[..., Any]]  # (signal, slot)
#: What disconnecting a slot that is no longer connected raises: psygnal ValueError, Qt RuntimeError.
NOT_CONNECTED: tuple[type[Exception], ...] = (ValueError, RuntimeError)


def connect_all(connections: Iterable[Connection]) -> None:
    for signal, slot in connections:
        signal.connect(slot)


def disconnect_all(connections: Iterable[Connection], ignore: tuple[type[Exception], ...] = NOT_CONNECTED) -> None:
    """Disconnect every pair; a pair already disconnected (``ignore`` raised) is skipped."""
    for signal, slot in connections:
        try:
            signal.disconnect(slot)
        except ignore:
            pass
