"""Keep Python's cyclic garbage collector out of the request path of a long-running server.

Measured with ``hey`` at c=32 on the tiny model (2 cores): full collections walking the large heap that
loading left behind (ONNX, numpy, sklearn objects) were the p99 — 20 ms with the default collector, 4 ms with
the startup heap frozen — and throughput rose about 15%. Requests allocate few cycles, so a larger first
generation costs little memory.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 5_000
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 50


def freeze_startup_heap() -> None:
    """Call once, after models are loaded and before serving: later collections skip everything alive now."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
