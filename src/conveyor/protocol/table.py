"""The routing table the control plane pushes to gateways (docs/control-plane.md): its types and wire format.

The control plane builds these types and sends ``to_doc()``; a gateway checks what it receives with
``parse_table``. A malformed table raises ``InvalidInput`` naming what is wrong, so the gateway can refuse it
and keep serving with the table it has. One module for both sides: the field names live here only. A
deployment in a rollout adds a *split*: how its bare-name requests divide between its stable and candidate
versions, and which are also sent to the other one to compare the answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.digests import check_digest
from conveyor.errors import InvalidInput
from conveyor.security.tokens import TokenRecord

INPROCESS = "inprocess:"
"""Address of a replica a gateway runs in its own process: ``inprocess:DEPLOYMENT/VERSION/TEMPLATE``."""
SCALED_TO_ZERO = "scaledToZero"
STARTING = "starting"
HOLD_REASONS = (SCALED_TO_ZERO, STARTING)


@dataclass(frozen=True, slots=True)
class Hold:
    """With no admitted replica, hold up to ``max_requests`` for up to ``timeout_s``: the version is scaled
    to zero (``reason`` ``scaledToZero``), or its first replicas are starting (``starting``)."""

    timeout_s: float
    max_requests: int
    reason: str = SCALED_TO_ZERO

    def to_doc(self) -> dict[str, Any]:
        return {"timeoutSeconds": self.timeout_s, "maxRequests": self.max_requests, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class InProcessLoad:
    """What a gateway loads into its own process for a replica with placement inprocess: the artifact as the
    control plane's store holds it, the digest its bytes must have, the name and version it is served as,
    and the batching and threads a replica process of the same template would get."""

    model_file: str
    sha256: str
    model: str
    version: str
    max_batch_size: int
    max_queue_delay_us: int
    max_queue_size: int
    request_timeout_ms: int
    intra_op_threads: int
    max_elements: int

    def to_doc(self) -> dict[str, Any]:
        return {key: getattr(self, name) for name, key in _LOAD_FIELDS.items()}


# field -> wire name; every one required (a gateway must never guess how to load a model)
_LOAD_FIELDS = {
    "model_file": "modelFile",
    "sha256": "sha256",
    "model": "model",
    "version": "version",
    "max_batch_size": "maxBatchSize",
    "max_queue_delay_us": "maxQueueDelayMicroseconds",
    "max_queue_size": "maxQueueSize",
    "request_timeout_ms": "requestTimeoutMilliseconds",
    "intra_op_threads": "intraOpThreads",
    "max_elements": "maxElements",
}
_LOAD_AT_LEAST_ONE = ("max_batch_size", "max_queue_size", "request_timeout_ms", "max_elements")


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    id: str
    address: str
    inprocess: InProcessLoad | None = None
    """Set exactly when ``address`` is ``inprocess:...``: the gateway loads the model itself."""

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id, "address": self.address}
        if self.inprocess is not None:  # absent otherwise: tables of process replicas are as they were
            doc["inprocess"] = self.inprocess.to_doc()
        return doc


@dataclass(frozen=True, slots=True)
class RouteSpec:
    name: str
    version: str
    deployment: str
    revision: int | None
    default: bool
    replicas: tuple[ReplicaSpec, ...]
    hold: Hold | None
    public: bool = False
    """The Deployment says ``public: true``: callers need no token."""

    def to_doc(self) -> dict[str, Any]:
        doc = {
            "name": self.name,
            "version": self.version,
            "deployment": self.deployment,
            "revision": self.revision,
            "default": self.default,
            "replicas": [r.to_doc() for r in self.replicas],
            "hold": None if self.hold is None else self.hold.to_doc(),
        }
        if self.public:
            doc["public"] = True
        return doc


@dataclass(frozen=True, slots=True)
class ABMatch:
    """An A/B test's routing: a request whose ``header`` equals ``header_value`` goes to the candidate; else
    its user id (the ``user_header`` header, else the ``cookie`` cookie) decides, by a hash (sticky)."""

    header: str | None = None
    header_value: str | None = None
    cookie: str | None = None
    user_header: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return {key: getattr(self, name) for name, key in _AB_FIELDS.items()}


_AB_FIELDS = {
    "header": "header",
    "header_value": "headerValue",
    "cookie": "cookie",
    "user_header": "userHeader",
}


@dataclass(frozen=True, slots=True)
class SplitSpec:
    """How the requests that name no version of ``name`` divide between two of its routed versions."""

    name: str
    """The routed model name (the deployment's name)."""
    stable: str
    candidate: str
    weight: float = 0.0
    """Percent of bare-name requests the candidate answers (with ``ab``: percent of users)."""
    mirror: float = 0.0
    """Percent of stable-answered requests also sent to the candidate and compared (shadow)."""
    compare: float = 0.0
    """Percent of candidate-answered requests also sent to stable and compared (a canary's comparison)."""
    tolerance: float = 1e-5
    """The largest absolute difference of two float outputs that still agree."""
    ab: ABMatch | None = None
    seed: str = ""
    """Salts the user hash (the rollout's id): one user keeps one variant within a rollout."""

    def to_doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stable": self.stable,
            "candidate": self.candidate,
            "weight": self.weight,
            "mirror": self.mirror,
            "compare": self.compare,
            "tolerance": self.tolerance,
            "ab": None if self.ab is None else self.ab.to_doc(),
            "seed": self.seed,
        }


@dataclass(frozen=True, slots=True)
class TableSnapshot:
    epoch: str
    generation: int
    routes: tuple[RouteSpec, ...]
    tokens: tuple[TokenRecord, ...] | None = None
    """The tokens a caller of a route that is not public must present (salted hashes); None (no ``tokens``
    in the document): the gateway asks for none, as before tokens existed."""
    splits: tuple[SplitSpec, ...] = ()
    """At most one per name; absent from the document when there is none."""

    def to_doc(self) -> dict[str, Any]:
        routes = [r.to_doc() for r in self.routes]
        doc: dict[str, Any] = {"epoch": self.epoch, "generation": self.generation, "routes": routes}
        if self.tokens is not None:
            doc["tokens"] = [t.to_doc() for t in self.tokens]
        if self.splits:
            doc["splits"] = [s.to_doc() for s in self.splits]
        return doc


def parse_table(doc: Any) -> TableSnapshot:
    """Check and convert a routing table document; ``InvalidInput`` says what is wrong with it."""
    if not isinstance(doc, dict):
        raise InvalidInput(f"routing table: the table must be an object, got {type(doc).__name__}")
    epoch = _field(doc, "epoch", str, "")
    generation = _field(doc, "generation", int, "")
    if generation < 0:
        raise InvalidInput(f"routing table: generation must not be negative, got {generation}")
    raw_routes = _field(doc, "routes", list, "")
    routes = tuple(_route(r, i) for i, r in enumerate(raw_routes))
    seen: set[tuple[str, str]] = set()
    defaults: set[str] = set()
    for r in routes:
        if (r.name, r.version) in seen:
            raise InvalidInput(f"routing table: it lists {r.name}:{r.version} twice")
        seen.add((r.name, r.version))
        if r.default:
            if r.name in defaults:
                raise InvalidInput(f"routing table: it marks more than one version of {r.name!r} as default")
            defaults.add(r.name)
    splits = _splits(_field(doc, "splits", list, "", default=[]), seen)
    raw_tokens = doc.get("tokens")
    if raw_tokens is None:
        return TableSnapshot(epoch, generation, routes, None, splits)
    if not isinstance(raw_tokens, list):
        raise InvalidInput("routing table: tokens must be a list")
    tokens = []
    for i, t in enumerate(raw_tokens):
        try:
            tokens.append(TokenRecord.from_doc(t))
        except InvalidInput as exc:
            raise InvalidInput(f"routing table: tokens[{i}]: {exc.message}") from None
    return TableSnapshot(epoch, generation, routes, tuple(tokens), splits)


def _splits(raw: list[Any], routed: set[tuple[str, str]]) -> tuple[SplitSpec, ...]:
    splits: dict[str, SplitSpec] = {}
    for i, doc in enumerate(raw):
        split = _split(doc, f"splits[{i}]", routed)
        if splits.setdefault(split.name, split) is not split:
            raise InvalidInput(f"routing table: it lists more than one split of {split.name!r}")
    return tuple(splits.values())


def _split(doc: Any, where: str, routed: set[tuple[str, str]]) -> SplitSpec:
    if not isinstance(doc, dict):
        raise InvalidInput(f"routing table: {where} must be an object")
    name = _field(doc, "name", str, where)
    versions = [_field(doc, key, str, where) for key in ("stable", "candidate")]
    for key, version in zip(("stable", "candidate"), versions, strict=True):
        if (name, version) not in routed:
            raise InvalidInput(f"routing table: {where}.{key} {name}:{version} is not a route of the table")
    if versions[0] == versions[1]:
        raise InvalidInput(
            f"routing table: {where} has the same stable and candidate version {versions[0]!r}"
        )
    weight, mirror, compare = (_percent(doc, key, where) for key in ("weight", "mirror", "compare"))
    tolerance = float(_field(doc, "tolerance", float, where, default=1e-5))
    if not 0.0 <= tolerance < float("inf"):
        raise InvalidInput(f"routing table: {where}.tolerance must be >= 0, got {tolerance!r}")
    raw_ab = doc.get("ab")
    ab = None if raw_ab is None else _ab(raw_ab, f"{where}.ab")
    seed = _field(doc, "seed", str, where, default="")
    return SplitSpec(name, versions[0], versions[1], weight, mirror, compare, tolerance, ab, seed)


def _percent(doc: dict[str, Any], key: str, where: str) -> float:
    value = float(_field(doc, key, float, where, default=0.0))
    if not 0.0 <= value <= 100.0:
        raise InvalidInput(f"routing table: {where}.{key} must be a percent from 0 to 100, got {value!r}")
    return value


def _ab(doc: Any, where: str) -> ABMatch:
    if not isinstance(doc, dict):
        raise InvalidInput(f"routing table: {where} must be an object or null")
    values = {name: _field(doc, key, str, where, default=None) for name, key in _AB_FIELDS.items()}
    if any(v == "" for v in values.values()):
        empty = next(key for name, key in _AB_FIELDS.items() if values[name] == "")
        raise InvalidInput(f"routing table: {where}.{empty} must not be empty")
    if (values["header"] is None) != (values["header_value"] is None):
        raise InvalidInput(f"routing table: {where} needs header and headerValue together")
    if values["header"] is None and values["cookie"] is None and values["user_header"] is None:
        raise InvalidInput(f"routing table: {where} needs at least one of header, cookie, userHeader")
    return ABMatch(**values)


def _route(doc: Any, i: int) -> RouteSpec:
    where = f"routes[{i}]"
    if not isinstance(doc, dict):
        raise InvalidInput(f"routing table: {where} must be an object")
    name = _field(doc, "name", str, where)
    version = _field(doc, "version", str, where)
    if not name or not version:
        raise InvalidInput(f"routing table: {where} needs a non-empty name and version")
    deployment = _field(doc, "deployment", str, where, default=name)
    revision = _field(doc, "revision", int, where, default=None)
    default = _field(doc, "default", bool, where, default=False)
    raw_replicas = _field(doc, "replicas", list, where, default=[])
    replicas = tuple(_replica(r, f"{where}.replicas[{j}]") for j, r in enumerate(raw_replicas))
    raw_hold = doc.get("hold")
    hold = None if raw_hold is None else _hold(raw_hold, f"{where}.hold")
    public = _field(doc, "public", bool, where, default=False)
    return RouteSpec(name, version, deployment, revision, default, replicas, hold, public)


def _replica(doc: Any, where: str) -> ReplicaSpec:
    if not isinstance(doc, dict):
        raise InvalidInput(f"routing table: {where} must be an object")
    address = _field(doc, "address", str, where)
    if not address:
        raise InvalidInput(f"routing table: {where} has an empty address")
    raw_load = doc.get("inprocess")
    load = None if raw_load is None else _load(raw_load, f"{where}.inprocess")
    if address.startswith(INPROCESS) != (load is not None):
        raise InvalidInput(
            f"routing table: {where} needs an inprocess load description exactly when its address is "
            f"{INPROCESS}..., got address {address!r}" + (" with one" if load is not None else " without")
        )
    return ReplicaSpec(_field(doc, "id", str, where, default=address), address, load)


def _load(doc: Any, where: str) -> InProcessLoad:
    if not isinstance(doc, dict):
        raise InvalidInput(f"routing table: {where} must be an object or null")
    values: dict[str, Any] = {}
    for name, key in _LOAD_FIELDS.items():
        kind = str if name in ("model_file", "sha256", "model", "version") else int
        value = _field(doc, key, kind, where)
        if kind is str and not value:
            raise InvalidInput(f"routing table: {where}.{key} must not be empty")
        least = 1 if name in _LOAD_AT_LEAST_ONE else 0
        if kind is int and value < least:
            raise InvalidInput(f"routing table: {where}.{key} must be >= {least}, got {value}")
        values[name] = value
    try:
        check_digest(values["sha256"])
    except InvalidInput as exc:
        raise InvalidInput(f"routing table: {where}.sha256: {exc.message}") from None
    return InProcessLoad(**values)


def _hold(doc: Any, where: str) -> Hold:
    if not isinstance(doc, dict):
        raise InvalidInput(f"routing table: {where} must be an object or null")
    timeout = _field(doc, "timeoutSeconds", float, where)
    max_requests = _field(doc, "maxRequests", int, where)
    if timeout <= 0 or max_requests < 0:
        raise InvalidInput(f"routing table: {where} needs timeoutSeconds > 0 and maxRequests >= 0")
    reason = _field(doc, "reason", str, where, default=SCALED_TO_ZERO)  # absent from older control planes
    if reason not in HOLD_REASONS:
        raise InvalidInput(f"routing table: {where}.reason must be one of {', '.join(HOLD_REASONS)}")
    return Hold(float(timeout), max_requests, reason)


_MISSING = object()


def _field(doc: dict[str, Any], key: str, kind: type[Any], where: str, default: Any = _MISSING) -> Any:
    path = f"{where}.{key}" if where else key
    value = doc.get(key, _MISSING)
    if value is _MISSING or (value is None and default is not _MISSING):
        if default is _MISSING:
            raise InvalidInput(f"routing table: {path} is missing")
        return default
    # bool is an int to Python, not to JSON; an integral number is a fine float.
    ok = isinstance(value, (int, float)) if kind is float else isinstance(value, kind)
    if isinstance(value, bool) and kind is not bool:
        ok = False
    if not ok:
        raise InvalidInput(f"routing table: {path} must be {kind.__name__}, got {value!r}")
    return value
