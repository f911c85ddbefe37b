"""The lean reference reads both bodies the bench sends: V2 JSON and V2 with binary tensor data."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

# bench modules import each other flat; appended, so nothing of the suite is shadowed
sys.path.append(str(Path(__file__).resolve().parents[3] / "bench"))

import wire

BENCH = Path(__file__).resolve().parents[3] / "bench"

_spec = importlib.util.spec_from_file_location("lean_app", BENCH / "peers" / "lean" / "app.py")
assert _spec is not None and _spec.loader is not None
lean_app = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lean_app)


def test_binary_body_is_read_as_the_tensor_it_carries() -> None:
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) / 7
    body = wire.encode(wire.V2_BINARY, "input", x)
    header_length = wire.headers(wire.V2_BINARY, body)["inference-header-content-length"]
    feeds = lean_app.binary_feeds(body, header_length)
    assert feeds["input"].dtype == np.float32 and np.array_equal(feeds["input"], x)
    # a JSON body sent to the binary app (no header length) is still read
    assert np.array_equal(lean_app.binary_feeds(wire.encode(wire.V2, "input", x), None)["input"], x)


def test_strong_options_run_on_one_thread_without_spinning() -> None:
    opts = lean_app.strong_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
