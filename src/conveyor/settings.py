"""The one settings tree (environment prefix ``CONVEYOR_``); the only reader of ``os.environ``."""

from __future__ import annotations

import getpass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from conveyor.security.limits import DEFAULT_MAX_JSON_DEPTH


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (some containers)
        return "unknown"


class Settings(BaseSettings):
    """Conveyor configuration. Every field can be set as ``CONVEYOR_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore")

    home: Path = Field(
        default_factory=lambda: Path.home() / ".conveyor",
        description="Where the SQLite registry and the artifact store live (CONVEYOR_HOME).",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the registry database; SQLite under `home` when unset. "
        "PostgreSQL: postgresql+psycopg://user:pass@host:port/db",
    )
    user: str = Field(default_factory=_default_user, description="Recorded as `created_by` on new versions.")
    url: str = Field(
        default="http://127.0.0.1:8000",
        description="Management API of the control plane that `conveyor apply`, `get`, `describe`, ... use "
        "when --url is not given (CONVEYOR_URL).",
    )
    gateway_url: str | None = Field(
        default=None,
        description="Inference endpoint `conveyor predict` sends to when --url is not given "
        "(CONVEYOR_GATEWAY_URL); unset means predict in-process from the registry.",
    )
    debug: bool = Field(default=False, description="Show full tracebacks from the CLI (CONVEYOR_DEBUG=1).")
    log_repeat_interval_s: float = Field(
        default=10.0,
        description="Identical log lines (same logger, level and message template) within this interval are "
        "written once, then one line with their count: '... (N more in the last 10s)'.",
    )
    # -- logs (docs/observability.md, Logs) --
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Format of the lines server processes write to stderr: text for a terminal, json (the "
        "files' JSON lines) for a collector reading stderr, as in a container. The files are always JSON.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info",
        description="Lowest level written to the JSON-lines files (the terminal shows warnings and above).",
    )
    log_to_file: bool = Field(
        default=True,
        description="Server processes (control plane, gateway, replicas of conveyor up, conveyor serve) "
        "write JSON lines to log_dir, which `conveyor logs` reads.",
    )
    log_dir: Path | None = Field(
        default=None, description="Where the JSON-lines files are written; unset: `home`/logs."
    )
    log_file_max_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="A process's log file is rotated at this size (the current file becomes .1, .1 "
        "becomes .2, ...).",
    )
    log_file_backups: int = Field(
        default=3,
        ge=0,
        description="Rotated files kept per process: one process holds at most (backups + 1) * max bytes.",
    )
    access_log_sample: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="Share of inference requests that get an access log line (request id, model, version, "
        "status, latency, traceparent), decided where a request enters and followed by every hop. Requests "
        "answered 5xx are always logged, and so is a request whose traceparent header has the sampled flag "
        "(…-01). 1 logs every request (at a cost in throughput: docs/observability.md).",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OpenTelemetry collector's OTLP/HTTP URL, e.g. http://127.0.0.1:4318: each server "
        "process sends the span of every sampled request (access_log_sample, or a caller's sampled "
        "traceparent) to <url>/v1/traces (a URL already ending in /v1/traces is used as is). Unset: no "
        "export, and the OpenTelemetry packages are not imported. Needs pip install 'conveyor[otel]'.",
    )
    otlp_service_name: str = Field(
        default="conveyor",
        min_length=1,
        description="Prefix of the service.name each process reports to the collector: "
        "<name>-<component> (conveyor-gateway, conveyor-replica, conveyor-serve).",
    )
    max_body_bytes: int = Field(
        default=64 * 1024 * 1024, description="Largest inference request body the server accepts, in bytes."
    )
    body_budget_bytes: int = Field(
        default=256 * 1024 * 1024,
        description="Bytes of request bodies one server process (gateway or replica) holds at once, across "
        "all connections; a body that does not fit is refused with 503 + Retry-After before it is read.",
    )
    body_idle_timeout_s: float = Field(
        default=10.0,
        description="A request body with no new byte for this long is answered 408 and its connection "
        "closed.",
    )
    body_timeout_s: float = Field(
        default=60.0,
        description="A request body not complete this long after its headers is answered 408 and its "
        "connection closed (a body of max_body_bytes needs ~1.1 MB/s at the defaults).",
    )
    keep_alive_timeout_s: int = Field(
        default=75,
        ge=1,
        description="An idle connection (no byte since its last answer) is closed after this long. Keep it "
        "longer than the idle timeout of a load balancer in front (60 s on AWS's), so that it closes first.",
    )
    head_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A request head must be complete this long after its connection opened or after the "
        "first byte that followed the last answer, or the connection is closed (a stalled request line).",
    )
    max_elements: int = Field(
        default=16 * 1024 * 1024,
        description="Largest number of tensor elements one request may carry, across all inputs.",
    )
    max_json_depth: int = Field(
        default=DEFAULT_MAX_JSON_DEPTH,
        ge=4,
        description="Deepest nesting of lists and objects a JSON request body or a YAML spec may have; "
        "deeper is refused with 400 naming this limit (docs/security.md, Limits).",
    )
    max_connections_per_client: int = Field(
        default=256,
        ge=0,
        description="Open HTTP connections one client IP address may hold on a gateway or replica; a new one "
        "over it is answered 429 with Retry-After and closed. 0: no limit.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the V2 REST API and the management API (CORS), as a "
        "JSON list: CONVEYOR_CORS_ORIGINS='[\"https://app.example.com\"]'. Empty: CORS off (no "
        "Access-Control-* headers).",
    )
    intra_op_threads: int = Field(
        default=0, description="ONNX Runtime intra-op threads per session; 0 lets ONNX Runtime choose."
    )
    device: str = Field(
        default="cpu",
        description="What ONNX Runtime runs served models on: cpu, cuda[:N], tensorrt[:N] or auto (CUDA "
        "when this machine has it, else the CPU); a GPU that is missing is an error (docs/gpu.md). `conveyor "
        "serve --device` and a deployment's resources.gpu set it for their replicas.",
    )
    cuda_visible_devices: str | None = Field(
        default=None,
        validation_alias="CUDA_VISIBLE_DEVICES",
        description="CUDA's own variable (no CONVEYOR_ prefix): the GPUs this process may use. Replicas "
        "pinned to one GPU each get one entry of it (docs/gpu.md).",
    )
    parity_tolerance: float = Field(
        default=1e-4,
        description="Largest absolute difference allowed between a converted model and its original.",
    )

    # -- dynamic batching (per replica; a deployment may override each) --
    max_batch_size: int = Field(
        default=32,
        description="Most rows (first dimension, summed over requests) the batcher merges into one ONNX "
        "Runtime call; 1 turns merging off (requests still pass the bounded queue). See docs/batching.md.",
    )
    max_queue_delay_us: int = Field(
        default=500,
        description="Longest a request waits for others to join its batch, in microseconds; the batcher "
        "waits only while recent batches say more requests are coming, so a lone request never waits.",
    )
    max_queue_size: int = Field(
        default=256,
        description="Requests a model version may hold waiting; beyond it: 429 / RESOURCE_EXHAUSTED.",
    )
    request_timeout_ms: int = Field(
        default=30_000,
        description="A request still unanswered after this long fails with 504 / DEADLINE_EXCEEDED.",
    )
    # -- response cache (per served version; a deployment's spec.cache sets these for its replicas) --
    cache_max_entries: int = Field(
        default=0,
        ge=0,
        description="Answers each served version's response cache keeps (least recently used out first); "
        "0, the default: no cache. See docs/serving.md, Response cache.",
    )
    cache_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1,
        description="Bytes of answers each version's response cache may hold; an answer bigger than this "
        "is not stored.",
    )
    cache_ttl_s: float = Field(
        default=60.0, gt=0, description="Seconds a cached answer is served after it was computed."
    )
    # -- gateway --
    health_interval_s: float = Field(default=1.0, description="How often the gateway probes each replica.")
    eject_after_failures: int = Field(
        default=3, description="Consecutive failures (probes or requests) after which a replica is ejected."
    )
    channel_ping_after_ms: int = Field(
        default=250,
        ge=1,
        description="When requests are outstanding on a gateway-to-replica connection and nothing has come "
        "back on it for this long, the gateway pings the replica (its event loop answers at once, even "
        "while a long inference runs). See docs/operations.md, Hung replicas.",
    )
    channel_pong_timeout_ms: int = Field(
        default=1_000,
        ge=1,
        description="A replica that does not answer a ping within this long is hung: the gateway closes the "
        "connection, ejects the replica and retries its in-flight requests on another replica. Raise it "
        "for very large JSON bodies (decoding 64 MB of JSON can hold a replica's GIL for about a second).",
    )
    grpc_port: int | None = Field(default=None, description="Port of the V2 gRPC service; unset: no gRPC.")
    gateway_ready_when: Literal["all", "any"] = Field(
        default="all",
        description="When a control-plane gateway's /v2/health/ready answers 200: 'all' (strict, as Triton) "
        "once every deployment it routes has a ready replica or is scaled to zero; 'any' once at least one "
        "has, for gateways serving many deployments whose load balancer must not drop them while one "
        "starts or fails. See docs/serving.md, Readiness.",
    )
    # -- control plane (docs/control-plane.md) --
    replica_orphan_timeout_s: float = Field(
        default=300.0,
        description="A control-plane replica whose lease has not been refreshed for this long (no control "
        "plane came back) drains and exits.",
    )
    replica_start_timeout_s: float = Field(
        default=120.0, description="A replica not ready this long after its start is killed and replaced."
    )
    # -- the Ray target (docs/ray.md) --
    ray_address: str | None = Field(
        default=None,
        description="The Ray cluster that runs `target: ray` deployments, as `ray start` printed it "
        "(HOST:PORT of its head); needs the `ray` extra. Unset: `target: ray` is refused at apply. Ray "
        "reads its own RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH for a cluster with token authentication.",
    )
    ray_namespace: str = Field(
        default="conveyor",
        description="The Ray namespace of the replica actors (each a detached actor named "
        "conveyor-REPLICA_ID), where a restarted control plane finds them again by name.",
    )

    # -- security (docs/security.md) --
    token: str | None = Field(
        default=None,
        description="Bearer token the CLI sends to the management API and to gateways (CONVEYOR_TOKEN); "
        "unset: the admin token `conveyor up` wrote under the home, when talking to a loopback stack.",
    )
    tls_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate (chain) the gateway (REST and gRPC) and the management API serve TLS "
        "with; set together with tls_key_file. `conveyor certs dev` makes one for trying it.",
    )
    tls_key_file: Path | None = Field(default=None, description="PEM private key of tls_cert_file.")
    tls_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle the CLI and gateways verify servers' certificates with, instead of the "
        "system's trust store.",
    )
    # -- artifact signing and encryption (docs/security.md) --
    trusted_keys_dir: Path | None = Field(
        default=None,
        description="Directory whose *.pub files are the Ed25519 keys trusted to sign models; unset: "
        "`home`/keys, where `conveyor keys create` writes keypairs.",
    )
    require_signed_models: bool = Field(
        default=False,
        description="Require a verifying signature by a trusted key for every deployment's model version, "
        "as if each spec said requireSignedModels: true (checked at apply and at every replica start).",
    )
    artifact_key: str | None = Field(
        default=None,
        description="Base64 of 32 random bytes (`openssl rand -base64 32`): new artifacts are stored "
        "encrypted with AES-256-GCM under it and encrypted ones are read with it (CONVEYOR_ARTIFACT_KEY).",
        repr=False,
    )
    artifact_key_file: Path | None = Field(
        default=None,
        description="A file holding the artifact key (base64 of 32 bytes), instead of artifact_key.",
    )
    leader_lease_s: float = Field(
        default=6.0,
        ge=0.5,
        description="The leader lease of control planes sharing one registry database: only its holder acts "
        "(reconciles, runs rollouts, evaluates alerts); it renews every third of this, and another takes "
        "over within about 1.3 times this after the leader dies (docs/operations.md, Two control planes).",
    )
    artifacts_url: str | None = Field(
        default=None,
        description="Where artifacts are stored: s3://BUCKET[/PREFIX] for S3-compatible object storage "
        "(the `s3` extra; credentials from boto3's chain: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, "
        "~/.aws, an instance role), loaded through a verified cache under `home`/cache/artifacts; unset: "
        "`home`/artifacts (docs/operations.md, Artifacts on S3).",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="The S3 API endpoint for an S3-compatible server (MinIO, Ceph, moto): "
        "http://host:9000; unset: AWS's.",
    )
    s3_region: str | None = Field(
        default=None, description="The S3 region; unset: boto3's (AWS_DEFAULT_REGION, ~/.aws/config)."
    )
    artifact_cache_mb: int = Field(
        default=10240,
        ge=1,
        description="The most MiB the S3 artifact store's local cache (`home`/cache/artifacts) keeps: after "
        "each download or upload the artifacts used least recently are removed until it fits, never one "
        "used within artifact_cache_idle_s (docs/operations.md, Artifacts on S3).",
    )
    artifact_cache_idle_s: float = Field(
        default=600.0,
        ge=0,
        description="An artifact of the S3 store's cache used (loaded, downloaded, or named to a replica "
        "or gateway about to load it: the control plane does so for every deployed version every few "
        "seconds) within this many seconds is never evicted; the cache stays over artifact_cache_mb while "
        "only such artifacts are left.",
    )
    # -- metrics (docs/metrics.md) --
    metrics_enabled: bool = Field(
        default=True,
        description="Count every inference request (conveyor_requests_total and the request durations); "
        "false turns the per-request recording off. GET /metrics still answers.",
    )
    metrics_public: bool = Field(
        default=False,
        description="Serve a gateway's GET /metrics without a token; by default it needs a viewer (or "
        "higher) token, as the control plane's does.",
    )
    metrics_scrape_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="How often the control plane scrapes the metrics of its gateways and replicas into the "
        "stack's history (alerts, dashboard, describe).",
    )
    alert_webhooks: list[str] = Field(
        default_factory=list,
        description="URLs every alert notification is POSTed to (Alertmanager's webhook JSON), besides a "
        "rule's own webhooks; in the environment a JSON list: CONVEYOR_ALERT_WEBHOOKS='[\"http://...\"]'.",
    )

    @property
    def admin_token_file(self) -> Path:
        """Where `conveyor up` keeps the admin token it creates on first start (mode 0600)."""
        return self.home / "admin.token"

    @property
    def keys_dir(self) -> Path:
        """Where `conveyor keys create` writes keypairs (NAME.key, NAME.pub)."""
        return self.home / "keys"

    @property
    def effective_trusted_keys_dir(self) -> Path:
        return self.trusted_keys_dir if self.trusted_keys_dir is not None else self.keys_dir

    @property
    def effective_log_dir(self) -> Path:
        return self.log_dir if self.log_dir is not None else self.home / "logs"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def artifacts_cache_dir(self) -> Path:
        """The verified local copies of an S3 store's objects (what replicas load)."""
        return self.home / "cache" / "artifacts"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'registry.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process; pass the object down rather than calling this deep inside."""
    return Settings()
