"""The one place that unpickles a model file, and only when the caller says they trust it.

It can also read which classes a pickle names without running it (its GLOBAL opcodes), so a pickle that
can never load elsewhere — a class defined in the saving script's ``__main__`` — is refused with advice
before anyone is asked to trust it.
"""

from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path
from typing import Any

from conveyor.errors import ConversionError
from conveyor.formats.parity import first_line

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"}
_MAX_OPS = 1_000_000  # a bound on the scan: model pickles name their classes in the first few thousand ops


def refuse_pickle(path: Path, advice: str = "") -> ConversionError:
    return ConversionError(
        f"{path.name} is a pickle: unpickling runs arbitrary code; pass --trust-pickle if you trust this file"
        + advice
    )


def load_pickle(path: Path, *, trust_pickle: bool) -> Any:
    """Unpickle a ``.pkl`` / ``.joblib`` file (joblib reads plain pickles too)."""
    stranded = main_classes(path)
    if stranded:
        raise ConversionError(
            f"{path.name} cannot be loaded by any program but the script that saved it: "
            f"{unimportable(stranded)}; define the class in an importable module and save again, "
            "or register the object through the Python API: conveyor.register(name, model, sample=...)"
        )
    if not trust_pickle:
        raise refuse_pickle(path)
    import joblib

    try:
        return joblib.load(path)
    except Exception as e:  # anything the pickled code raises, or a truncated / foreign file
        raise ConversionError(f"cannot unpickle {path.name}: {first_line(e)}") from e


def main_classes(path: Path) -> list[str]:
    """The classes the pickle in ``path`` takes from ``__main__`` (read, never run); [] when unreadable."""
    return sorted(name for module, name in pickled_globals(path) if module == "__main__")


def unimportable(classes: list[str]) -> str:
    names = ", ".join(f"__main__.{c}" for c in classes)
    return f"its class {names} was defined in the script that saved it, which no other program can import"


def pickled_globals(path: Path) -> set[tuple[str, str]]:
    """(module, name) of every global a pickle file names: a plain pickle, or the data.pkl of a torch zip."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                pkl = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
                data = z.read(pkl[0]) if pkl else b""
        else:
            data = path.read_bytes()
    except (OSError, zipfile.BadZipFile):
        return set()
    return _globals(data)


def _globals(data: bytes) -> set[tuple[str, str]]:
    # A partial stack machine: only strings and the memo matter, since STACK_GLOBAL (protocol 4+) takes its
    # module and name from the two values pushed before it, often fetched from the memo.
    found: set[tuple[str, str]] = set()
    pushed: list[Any] = []
    memo: dict[int, Any] = {}
    try:
        for count, (op, arg, _) in enumerate(pickletools.genops(data)):
            if count > _MAX_OPS:
                break
            if op.name == "GLOBAL" and isinstance(arg, str):
                module, _, name = arg.partition(" ")
                found.add((module, name))
            elif op.name == "STACK_GLOBAL" and len(pushed) >= 2:
                module, name = pushed[-2], pushed[-1]
                if isinstance(module, str) and isinstance(name, str):
                    found.add((module, name))
            elif op.name in _STRING_OPS:
                pushed.append(arg if isinstance(arg, str) else None)
            elif op.name == "MEMOIZE":
                memo[len(memo)] = pushed[-1] if pushed else None
            elif op.name in ("PUT", "BINPUT", "LONG_BINPUT") and isinstance(arg, int):
                memo[arg] = pushed[-1] if pushed else None
            elif op.name in ("GET", "BINGET", "LONG_BINGET") and isinstance(arg, int):
                pushed.append(memo.get(arg))
            elif op.name == "STOP":
                break
            else:
                pushed.append(None)
            del pushed[:-2]  # only the last two values are ever read
    except Exception:  # truncated or not a pickle at all: the loader reports it in its own words
        pass
    return found
