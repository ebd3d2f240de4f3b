"""What the cyclic garbage collector finds: for tests that a hot path leaves no reference
cycles (each one waits for a collection, whose pause holds a busy worker's event loop)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["cyclic_garbage"]


@contextmanager
def cyclic_garbage() -> Iterator[list[object]]:
    """The objects that only the cyclic collector could free, of those made in the block
    (filled in when it ends; the collector is off meanwhile).

    >>> with cyclic_garbage() as found:
    ...     loop = []
    ...     loop.append(loop)
    ...     del loop
    >>> [type(o).__name__ for o in found]
    ['list']
    """
    found: list[object] = []
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
