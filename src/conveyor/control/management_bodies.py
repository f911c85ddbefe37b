"""Request bodies of the management API (docs/control-plane.md): pydantic models, camelCase on the wire."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from conveyor.registry.refs import MAX_VERSION
from conveyor.security.limits import DEFAULT_MAX_JSON_DEPTH, depth_over, too_deep
from conveyor.spec.units import MAX_REPLICAS


class Body(BaseModel):
    """camelCase on the wire; unknown fields refused so a typo (``dry_run``) is an error, not a no-op; nested
    no deeper than the default max_json_depth (the spec loader's limit for the same documents)."""

    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _not_too_deep(cls, data: Any) -> Any:
        if depth_over(data, DEFAULT_MAX_JSON_DEPTH):
            raise ValueError(too_deep("the body", DEFAULT_MAX_JSON_DEPTH).message)
        return data


class ApplyBody(Body):
    documents: list[dict[str, Any]] = Field(
        min_length=1,
        description="Resources (apiVersion, kind, metadata, spec), each validated before any applies.",
    )
    dry_run: bool = Field(default=False, description="Validate and report what would change; store nothing.")


class DiffBody(Body):
    documents: list[dict[str, Any]] = Field(
        min_length=1,
        description="Resources as for apply, validated and their model references resolved as apply does.",
    )


class ScaleBody(Body):
    replicas: int = Field(
        ge=0, le=MAX_REPLICAS, description="The fixed replica count of a deployment without autoscaling."
    )


class RollbackBody(Body):
    to_revision: int | None = Field(
        default=None,
        ge=1,
        le=MAX_VERSION,
        description="The revision to return to (default: the one before current).",
    )


class Report(BaseModel):
    """Gateway reports are read leniently (extra fields kept), so a newer gateway can report more."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class ReplicaLoad(Report):
    address: str
    admitted: bool
    in_flight: int = Field(ge=0)


class RouteLoad(Report):
    name: str
    version: str
    in_flight: int = Field(ge=0)
    held: int = Field(default=0, ge=0)
    replicas: list[ReplicaLoad] = Field(default_factory=list)


class GatewayReport(Report):
    gateway: str = Field(min_length=1, description="The gateway's id, stable while it runs.")
    url: str | None = None
    grpc_url: str | None = None
    epoch: str | None = Field(default=None, description="Epoch of the routing table the gateway applied.")
    generation: int = Field(default=0, ge=0, description="Generation of that table.")
    routes: list[RouteLoad] = Field(default_factory=list)


class TokenBody(Body):
    name: str = Field(
        min_length=1, max_length=128, description="A name for the token (the audit log's actor)."
    )
    role: str = Field(description="admin, deployer, viewer, predictor or gateway (docs/security.md).")
    models: str | None = Field(
        default=None, max_length=256, description="Predictor tokens: a glob of the models it may call."
    )
    expires_in_seconds: float | None = Field(default=None, gt=0, description="Seconds until it expires.")
    rate_limit: float | None = Field(
        default=None, gt=0, le=1_000_000, description="Requests per second it may make on a gateway."
    )
