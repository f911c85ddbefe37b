"""The public Python API: register a model, load a version, predict with it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import InvalidInput
from conveyor.settings import Settings, get_settings

if TYPE_CHECKING:
    import numpy as np

    from conveyor.formats.signature import Signature
    from conveyor.registry import Registry, VersionInfo
    from conveyor.runtime import OnnxModel


def open_registry(settings: Settings | None = None) -> Registry:
    """The registry configured by ``settings`` (``CONVEYOR_HOME`` / ``CONVEYOR_DATABASE_URL``)."""
    from conveyor.registry import Registry

    return Registry.from_settings(settings or get_settings())


def register(
    name: str,
    model_or_path: Any,
    *,
    sample: Any = None,
    framework: str = "auto",
    aliases: list[str] | None = None,
    tags: Mapping[str, str] | None = None,
    description: str | None = None,
    parent_version: int | None = None,
    trust_pickle: bool = False,
    tolerance: float | None = None,
    settings: Settings | None = None,
    reference: Any = None,
) -> VersionInfo:
    """Convert ``model_or_path`` to ONNX (checking parity on ``sample``) and store it as a new version.

    ``model_or_path`` is a file (.onnx, .skops, .pt, a pickle with ``trust_pickle``) or an in-memory
    scikit-learn estimator, torch module or ONNX model. ``tolerance`` is the largest |diff| the parity check
    accepts (``settings.parity_tolerance`` by default). Returns the new version's record; its
    ``metadata["parity"]`` says what the conversion was checked on, or ``{"checked": False, "reason": ...}``.
    ``metadata["reference"]`` holds the input statistics drift is measured against, from ``reference`` (rows,
    or a .npy/.npz/.csv/.json file) or else ``sample``; or why there are none.
    """
    from conveyor.formats import import_model
    from conveyor.observe.reference import compute_reference, load_reference
    from conveyor.registry.refs import check_alias, check_name

    # A name or alias the registry would refuse is refused before the conversion, which can take seconds.
    check_name(name)
    for alias in aliases or []:
        check_alias(alias)
    settings = settings or get_settings()
    result = import_model(
        model_or_path,
        framework=framework,
        sample=sample,
        trust_pickle=trust_pickle,
        tolerance=settings.parity_tolerance if tolerance is None else tolerance,
    )
    metadata: dict[str, Any] = {"source": result.source}
    if result.parity is not None:
        metadata["parity"] = result.parity
    if isinstance(reference, str | Path):
        reference = load_reference(reference)
    rows, source = (reference, "reference") if reference is not None else (sample, "sample")
    metadata["reference"] = compute_reference(rows, result.signature, source=source)
    with open_registry(settings) as registry:
        return registry.register(
            name,
            result.onnx_bytes,
            signature=result.signature.to_dict(),
            framework=result.framework,
            description=description,
            tags=dict(tags or {}),
            aliases=list(aliases or []),
            parent_version=parent_version,
            created_by=settings.user,
            metadata=metadata,
        )


@dataclass(frozen=True)
class Model:
    """A loaded model version, ready to predict in this process."""

    name: str
    version: str | None
    session: OnnxModel

    @property
    def signature(self) -> Signature:
        return self.session.signature

    def predict(
        self, inputs: Mapping[str, Any] | np.ndarray | list[Any], outputs: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run the model. ``inputs`` maps input names to arrays (a bare array for one-input models);
        values are cast to the declared dtype when that loses no kind (float64 → float32)."""
        return self.session.predict(coerce_inputs(self.signature, inputs), outputs)


def coerce_inputs(signature: Signature, inputs: Mapping[str, Any] | np.ndarray | list[Any]) -> dict[str, Any]:
    """Turn user-friendly inputs into a name → array dict of the declared dtypes."""
    import numpy as np

    from conveyor.protocol.datatypes import numpy_dtype

    if not isinstance(inputs, Mapping):
        if len(signature.inputs) != 1:
            names = ", ".join(t.name for t in signature.inputs)
            raise InvalidInput(f"this model has several inputs ({names}); pass a dict of name -> array")
        inputs = {signature.inputs[0].name: inputs}
    specs = {t.name: t for t in signature.inputs}
    out: dict[str, Any] = {}
    for key, value in inputs.items():
        spec = specs.get(key)
        arr = np.asarray(value)
        if spec is not None and spec.datatype != "BYTES":
            want = numpy_dtype(spec.datatype)
            if arr.dtype != want:
                if not np.can_cast(arr.dtype, want, casting="same_kind"):
                    raise InvalidInput(
                        f"input {key!r}: expected {spec.datatype}, got numpy {arr.dtype} which does not "
                        f"convert safely"
                    )
                arr = arr.astype(want)
        out[key] = arr
    return out


def load(
    ref: str | Path, *, settings: Settings | None = None, trust_pickle: bool = False, sample: Any = None
) -> Model:
    """Load ``NAME``, ``NAME:VERSION``, ``NAME@ALIAS`` from the registry, or a model file path."""
    from conveyor.runtime import OnnxModel

    settings = settings or get_settings()
    path = Path(ref)
    if isinstance(ref, Path) or (path.suffix and path.exists()):
        from conveyor.formats import import_model

        result = import_model(
            path, sample=sample, trust_pickle=trust_pickle, tolerance=settings.parity_tolerance
        )
        session = OnnxModel(
            result.onnx_bytes,
            name=path.stem,
            version=None,
            intra_op_threads=settings.intra_op_threads,
            device=settings.device,
        )
        return Model(path.stem, None, session)
    with open_registry(settings) as registry:
        info = registry.resolve(str(ref))
        data = registry.artifact_bytes(info)
    session = OnnxModel(
        data,
        name=info.name,
        version=str(info.version),
        intra_op_threads=settings.intra_op_threads,
        device=settings.device,
    )
    return Model(info.name, str(info.version), session)
