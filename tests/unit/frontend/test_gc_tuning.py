"""Servers freeze what loading left on the heap, so full collections stop walking it mid-request."""

import gc

from conveyor.frontend.gc_tuning import GEN0_THRESHOLD, freeze_startup_heap


def test_freeze_moves_the_heap_out_of_collection_and_raises_gen0() -> None:
    before = gc.get_threshold()
    kept = [object() for _ in range(10)]
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > len(kept)
        assert gc.get_threshold()[0] == GEN0_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
