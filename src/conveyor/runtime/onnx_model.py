"""One ONNX model in an ONNX Runtime session: its signature decided at load, input checks, prediction."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from conveyor.errors import InferenceFailed, InvalidInput
from conveyor.formats.signature import Signature, TensorSpec
from conveyor.protocol.datatypes import NUMPY_TO_V2, numpy_dtype, ort_to_v2
from conveyor.runtime.batching import BatchingConfig
from conveyor.runtime.observer import RequestObserver
from conveyor.runtime.providers import Device, choose, local_capabilities, parse_device, session_providers

Array = np.ndarray[Any, Any]
PLATFORM = "onnxruntime_onnx"


class _InputSpec:
    """What one input accepts, precomputed so each request costs a few comparisons."""

    __slots__ = ("dtype", "fixed", "is_bytes", "rank", "spec", "tail")

    def __init__(self, spec: TensorSpec) -> None:
        self.spec = spec
        self.is_bytes = spec.datatype == "BYTES"
        self.dtype = numpy_dtype(spec.datatype)
        self.rank = len(spec.shape)
        self.fixed = tuple((i, d) for i, d in enumerate(spec.shape) if d >= 0)
        # The common case, a free first dimension and fixed others ([-1, 20]): one tuple compare checks it.
        tail = spec.shape[1:]
        self.tail = tail if self.rank and spec.shape[0] < 0 and all(d >= 0 for d in tail) else None

    def check(self, arr: Array) -> None:
        ok = arr.dtype.kind in "OUS" if self.is_bytes else arr.dtype == self.dtype
        if not ok:
            s = self.spec
            raise InvalidInput(f"input {s.name!r}: expected datatype {s.datatype}, got {_v2_name(arr)}")
        shape = arr.shape
        if len(shape) == self.rank and self.tail is not None and shape[1:] == self.tail:
            return
        if len(shape) != self.rank or any(shape[i] != d for i, d in self.fixed):
            self._bad_shape(shape)

    def _bad_shape(self, shape: tuple[int, ...]) -> None:
        s = self.spec
        raise InvalidInput(f"input {s.name!r}: expected shape {list(s.shape)}, got {list(shape)}")


def _v2_name(arr: Array) -> str:
    return NUMPY_TO_V2.get(arr.dtype, f"numpy {arr.dtype}")


def _as_ort_strings(arr: Array, name: str) -> Array:
    """ONNX Runtime reads string tensors as ``str``; the protocol hands over ``bytes``."""
    if arr.dtype.kind == "U" or (arr.dtype.kind == "O" and all(isinstance(v, str) for v in arr.flat)):
        return arr
    try:
        items = [v.decode() if isinstance(v, bytes) else str(v) for v in arr.flat]
    except UnicodeDecodeError:
        raise InvalidInput(f"input {name!r}: BYTES elements must be UTF-8 text for this model") from None
    out = np.empty(arr.shape, dtype=object)
    out.reshape(-1)[:] = items
    return out


class OnnxModel:
    """An ONNX model ready to serve: one InferenceSession, its signature and checks computed once."""

    def __init__(
        self,
        onnx_bytes: bytes,
        *,
        name: str,
        version: str | None = None,
        intra_op_threads: int = 0,
        device: Device | str = "cpu",
        batching: BatchingConfig | None = None,
        allow_spinning: bool = False,
        io_binding: bool | None = None,
    ) -> None:
        """``device``: cpu, cuda[:N], tensorrt[:N] or auto (runtime/providers.py); a GPU that does not start
        is InvalidInput, never a silent CPU. ``io_binding``: feed inputs through an IOBinding (one copy to the
        device per call); None: on a GPU only."""
        self.name = name
        self.version = version
        self.batching = batching  # None: the serving DataPlane's default
        self.observer: RequestObserver | None = None
        """Told of each answered request by the serving DataPlane (drift, the inference log); None: nobody."""
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        if not allow_spinning:
            # Idle intra-op threads spin by default, burning the cores the server's event loop needs:
            # measured on 2 cores (docs/batching.md), server CPU per MLP request about halves without it.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        asked = parse_device(device) if isinstance(device, str) else device
        if asked.kind == "auto":
            asked = choose(asked, local_capabilities()).device
        if asked.is_gpu:
            _preload_gpu_libraries()
        try:
            self.session = ort.InferenceSession(
                onnx_bytes, sess_options=opts, providers=session_providers(asked)
            )
        except Exception as e:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, ...)
            raise InvalidInput(f"model {name!r} cannot be loaded by ONNX Runtime: {e}") from None
        self.providers: list[str] = self.session.get_providers()
        if self.providers[0] != asked.provider:
            # ONNX Runtime falls back to the CPU when a GPU provider fails to start (a missing CUDA library):
            # serving on the CPU what was asked to run on a GPU would be a silent 10x, so it is an error.
            raise InvalidInput(
                f"model {name!r}: {asked.provider} did not start on {asked} (ONNX Runtime's log above says "
                f"why); it would run on {self.providers[0]}"
            )
        self.device = asked
        self.provider = asked.provider
        """The execution provider that runs the model (shown in metadata and by ``conveyor describe``)."""
        self._binding_device = ("cuda", asked.index or 0) if asked.is_gpu else ("cpu", 0)
        self._bind = asked.is_gpu if io_binding is None else io_binding
        self.signature = Signature(
            inputs=tuple(_spec(a) for a in self.session.get_inputs()),
            outputs=tuple(_spec(a) for a in self.session.get_outputs()),
        )
        self.input_specs = {t.name: _InputSpec(t) for t in self.signature.inputs}
        self.output_names = [t.name for t in self.signature.outputs]
        self.output_datatypes = {t.name: t.datatype for t in self.signature.outputs}
        self._bytes_inputs = [t.name for t in self.signature.inputs if t.datatype == "BYTES"]
        self._shared_dims = _shared_symbolic_dims(self.session.get_inputs())
        # Rows of several requests can share one run only if every input and output has a dynamic first
        # dimension; a fixed batch size (or a scalar) means the model runs one request at a time.
        self.batchable = all(
            len(t.shape) >= 1 and t.shape[0] == -1 for t in (*self.signature.inputs, *self.signature.outputs)
        )

    def validate(self, inputs: Mapping[str, Array]) -> None:
        """InvalidInput naming the input that is missing, unexpected, or of the wrong datatype or shape."""
        specs = self.input_specs
        if len(inputs) == len(specs):  # one pass: each name looked up once, its checks decided at load
            for name, arr in inputs.items():
                spec = specs.get(name)
                if spec is None:
                    break
                spec.check(arr)
            else:
                if self._shared_dims:
                    self._check_shared_dims(inputs)
                return
        missing = [n for n in specs if n not in inputs]
        unexpected = [n for n in inputs if n not in specs]
        parts = []
        if missing:
            parts.append(f"missing input(s) {', '.join(map(repr, missing))}")
        if unexpected:
            parts.append(f"unexpected input(s) {', '.join(map(repr, unexpected))}")
        raise InvalidInput(f"{'; '.join(parts)}; model {self.name!r} takes {', '.join(map(repr, specs))}")

    def _check_shared_dims(self, inputs: Mapping[str, Array]) -> None:
        for dim, uses in self._shared_dims:
            sizes = {(n, axis): inputs[n].shape[axis] for n, axis in uses}
            if len(set(sizes.values())) > 1:
                got = ", ".join(f"{n!r} dim {axis} = {size}" for (n, axis), size in sizes.items())
                raise InvalidInput(f"inputs must agree on dimension {dim!r}: {got}")

    def check_outputs(self, outputs: Sequence[str] | None) -> list[str]:
        """The output names to compute; InvalidInput for a name the model does not have."""
        if outputs is None:
            return self.output_names
        for o in outputs:
            if o not in self.output_datatypes:
                raise InvalidInput(
                    f"unknown output {o!r}; model {self.name!r} has {', '.join(map(repr, self.output_names))}"
                )
        return list(outputs)

    def predict(self, inputs: Mapping[str, Array], outputs: Sequence[str] | None = None) -> dict[str, Array]:
        """Run the model (synchronously; ONNX Runtime releases the GIL while it computes)."""
        feeds, names = self.prepare(inputs, outputs)
        return dict(zip(names, self.run(feeds, names), strict=True))

    def prepare(
        self, inputs: Mapping[str, Array], outputs: Sequence[str] | None = None
    ) -> tuple[dict[str, Array], list[str]]:
        """Checked feeds and output names for ``run``; InvalidInput for anything wrong with this request."""
        self.validate(inputs)
        names = self.check_outputs(outputs)
        feeds = dict(inputs)
        for n in self._bytes_inputs:
            feeds[n] = _as_ort_strings(feeds[n], n)
        return feeds, names

    def run(self, feeds: Mapping[str, Array], names: list[str]) -> list[Array]:
        """One ONNX Runtime call on prepared feeds, its errors translated to Conveyor's."""
        try:
            results: list[Array] = (
                self._run_bound(feeds, names) if self._bind else self.session.run(names, feeds)
            )
        except ort_errors.InvalidArgument as e:
            # Checks only the graph can make (e.g. two inputs whose batch sizes must agree).
            raise InvalidInput(f"model {self.name!r} rejected the inputs: {e}") from None
        except Exception as e:
            raise InferenceFailed(f"model {self.name!r} failed: {e}") from None
        return results

    def _run_bound(self, feeds: Mapping[str, Array], names: list[str]) -> list[Array]:
        """The run through an IOBinding: each input copied to the device once, before the run (not by the
        graph's first node that needs it), the outputs left where they are made and copied back once."""
        kind, index = self._binding_device
        binding = self.session.io_binding()
        for name, arr in feeds.items():
            if arr.dtype.kind in "OUS":  # strings stay in host memory: no GPU kernel reads them
                binding.bind_cpu_input(name, arr)
            else:
                value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), kind, index)
                binding.bind_ortvalue_input(name, value)
        for name in names:
            binding.bind_output(name, kind, index)
        self.session.run_with_iobinding(binding)
        outputs: list[Array] = binding.copy_outputs_to_cpu()
        return outputs

    def metadata(self) -> dict[str, Any]:
        """Open Inference Protocol model metadata; ``parameters`` says what runs it (docs/gpu.md)."""
        return {
            "name": self.name,
            "versions": [self.version] if self.version is not None else [],
            "platform": PLATFORM,
            "inputs": [t.to_dict() for t in self.signature.inputs],
            "outputs": [t.to_dict() for t in self.signature.outputs],
            "parameters": {"execution_provider": self.provider, "device": str(self.device)},
        }


def _preload_gpu_libraries() -> None:
    """Load CUDA and cuDNN from NVIDIA's pip packages when they are installed there (the gpu extra's way,
    docs/gpu.md) before a session needs them; a system-wide CUDA needs nothing."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        # Absent packages: ONNX Runtime's own search (LD_LIBRARY_PATH) decides.
        with contextlib.suppress(Exception):
            preload()


def _shared_symbolic_dims(args: Sequence[Any]) -> list[tuple[str, list[tuple[str, int]]]]:
    """Named dynamic dimensions (``batch``) used by several inputs: the graph needs them equal."""
    uses: dict[str, list[tuple[str, int]]] = {}
    for arg in args:
        for axis, d in enumerate(arg.shape or []):
            if isinstance(d, str) and d:
                uses.setdefault(d, []).append((arg.name, axis))
    return [(d, u) for d, u in uses.items() if len(u) > 1]


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
    return TensorSpec(arg.name, ort_to_v2(arg.type), shape)
