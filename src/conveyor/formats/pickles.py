"""The one place that unpickles a model file, and only when the caller says they trust it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conveyor.errors import ConversionError
from conveyor.formats.parity import first_line


def refuse_pickle(path: Path) -> ConversionError:
    return ConversionError(
        f"{path.name} is a pickle: unpickling runs arbitrary code; pass --trust-pickle if you trust this file"
    )


def load_pickle(path: Path, *, trust_pickle: bool) -> Any:
    """Unpickle a ``.pkl`` / ``.joblib`` file (joblib reads plain pickles too)."""
    if not trust_pickle:
        raise refuse_pickle(path)
    import joblib

    try:
        return joblib.load(path)
    except Exception as e:  # anything the pickled code raises, or a truncated / foreign file
        raise ConversionError(f"cannot unpickle {path.name}: {first_line(e)}") from e
