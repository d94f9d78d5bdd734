"""The garbage collector's settings for a process that sends: one place for the pool and the tick's senders."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# A 1,000-recipient chunk allocates a few hundred thousand objects, almost none of them in
# cycles; at the default first threshold (700) the collector runs hundreds of times a chunk.
# At 10,000 it ran ~6.3 -> 2.6 ms a chunk (benchmarks/chunk_cost.py, round 3b); garbage in
# cycles is still collected, only in larger steps.
FIRST_GENERATION = 10_000


def settle_heap() -> None:
    """After start-up: collect once, move what is left into the permanent generation (the
    modules' objects, never garbage: later collections don't walk them), and collect the
    young generation in larger steps."""
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(FIRST_GENERATION, second, third)


@contextmanager
def loading() -> Iterator[None]:
    """Around a command's start-up (its imports, its settings): no collections, and what it
    loaded frozen afterwards. Loading makes ~100k objects that live as long as the process and
    almost no garbage, yet the collector walked them ~230 times: ~0.1 s of the tick's ~0.8 s of
    imports (round 3c); and the first young collection once the collector is back walked them
    all once more (~40 ms, on the tick's way to its first request). Frozen, later collections
    skip them; the collector's state is restored. A failed start-up freezes nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.freeze()  # the young generation's count starts again at 0: no collection follows
    finally:
        if enabled:
            gc.enable()
