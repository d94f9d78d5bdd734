"""Celery wiring: what a new pool process does before its first task."""

from __future__ import annotations

import gc

from newsletter.core.config import Settings


def test_a_pool_process_freezes_its_start_up_heap_and_still_collects_later_garbage(
    settings: Settings,
) -> None:
    from newsletter import tasks  # imported after the settings are exported

    gc.unfreeze()
    try:
        tasks.settle_process()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the modules' objects, out of the collector's walks

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        del a, b
        assert gc.collect() >= 2  # a cycle made afterwards is still collected
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
