"""What the data plane tells of each answered request to whoever watches a model (observe/monitoring.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]


class RequestObserver:
    """Sees the inputs and outputs of every answered request of one model, on the request path: it must
    return at once (count, and copy or queue a sample), leaving the heavy work to scrape time or a thread."""

    def observe(self, request_id: str, inputs: Mapping[str, Array], outputs: Mapping[str, Array]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop whatever the observer runs (a writer thread); called when its model stops serving."""
