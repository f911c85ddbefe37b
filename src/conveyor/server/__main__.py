"""The replica process every target starts: the control plane's reconciler and ``conveyor serve --replicas N``
run it with ``--channel`` (the gateway's hop), and tests and benchmarks run it on an HTTP port.

python -m conveyor.server --model NAME[:VERSION]=FILE [--sha256 NAME[:VERSION]=HEX] [--model ...]
    [--port P] [--max-body-bytes N]
    [--grpc-port P] [--channel unix:PATH|tcp:HOST:PORT] [--parent-pid PID] [--lease FILE --orphan-after S]
    [--max-batch-size N] [--max-queue-delay-us N] [--max-queue-size N] [--request-timeout-ms N]
    [--monitor NAME[:VERSION]=FILE] [--replica-id ID] [--device cpu|cuda[:N]|tensorrt[:N]|auto]
    [--cache-max-entries N [--cache-max-bytes N] [--cache-ttl SECONDS]]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from conveyor import errors
from conveyor.digests import EXIT_DATA_LOSS, check_digest, read_artifact
from conveyor.observe import otlp
from conveyor.observe.logs import configure_logging
from conveyor.runtime import OnnxModel
from conveyor.security.encryption import ArtifactCipher, cipher_from
from conveyor.server.app import serve
from conveyor.server.channel import Lease, run_channel_replica
from conveyor.settings import Settings


def _digests(specs: list[str]) -> dict[str, str]:
    digests = {}
    for spec in specs:
        ref, sep, sha256 = spec.partition("=")
        if not sep or not ref:
            raise SystemExit(f"--sha256 wants NAME[:VERSION]=HEX, got {spec!r}")
        try:
            digests[ref] = check_digest(sha256)
        except errors.InvalidInput as e:
            raise SystemExit(f"--sha256 {ref}: {e}") from None
    return digests


def _model(
    spec: str, threads: int, device: str, digests: dict[str, str], cipher: ArtifactCipher | None
) -> OnnxModel:
    ref, sep, path = spec.partition("=")
    if not sep or not ref or not path:
        raise SystemExit(f"--model wants NAME[:VERSION]=FILE, got {spec!r}")
    name, _, version = ref.partition(":")
    try:
        data = read_artifact(ref, path, digests.pop(ref, None), cipher)
    except (errors.Unavailable, errors.IntegrityError) as e:
        _refuse(e.message)
    try:
        return OnnxModel(data, name=name, version=version or None, intra_op_threads=threads, device=device)
    except errors.InvalidInput as e:  # a model ONNX Runtime cannot load, a GPU that did not start
        raise SystemExit(f"error: {e.message}") from None


def _attach_monitors(models: list[OnnxModel], specs: list[str]) -> None:
    from conveyor.observe.monitoring import monitor_from, read_document

    served = {(m.name if m.version is None else f"{m.name}:{m.version}"): m for m in models}
    for spec in specs:
        ref, sep, path = spec.partition("=")
        model = served.get(ref)
        if not sep or model is None:
            raise SystemExit(f"--monitor wants NAME[:VERSION]=FILE of a --model, got {spec!r}")
        try:
            doc = read_document(path)
        except (OSError, ValueError) as e:
            raise SystemExit(f"--monitor {ref}: cannot read {path}: {e}") from None
        model.observer = monitor_from(doc, model.name, model.version or "")


def _on_a_gpu(settings: Settings) -> Settings:
    """On a GPU, the batching defaults that suit it for the fields neither a flag nor the environment set."""
    from conveyor.runtime.providers import gpu_batching, parse_device

    try:
        gpu = parse_device(settings.device).is_gpu
    except errors.InvalidInput as e:
        raise SystemExit(f"error: {e.message}") from None
    return settings.model_copy(update=gpu_batching(settings.model_fields_set)) if gpu else settings


def _refuse(message: str) -> NoReturn:
    """One line for the supervisor's log and a status it tells from a crash: restarting will not help."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_DATA_LOSS)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m conveyor.server", description=__doc__)
    ap.add_argument("--model", action="append", required=True, metavar="NAME[:VERSION]=FILE")
    ap.add_argument(
        "--sha256",
        action="append",
        default=[],
        metavar="NAME[:VERSION]=HEX",
        help=f"the digest that model's bytes must have; other bytes: exit {EXIT_DATA_LOSS} before serving",
    )
    ap.add_argument(
        "--monitor",
        action="append",
        default=[],
        metavar="NAME[:VERSION]=FILE",
        help="what to watch of that model: drift, the inference log (observe/monitoring.py)",
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--grpc-port", type=int, help="also serve V2 gRPC on this port (0: any free port)")
    ap.add_argument("--max-body-bytes", type=int)
    ap.add_argument("--max-elements", type=int)
    ap.add_argument("--intra-op-threads", type=int)
    ap.add_argument("--device", help="cpu, cuda[:N], tensorrt[:N] or auto (runtime/providers.py)")
    ap.add_argument("--max-batch-size", type=int, help="rows per merged ONNX Runtime call; 1: no merging")
    ap.add_argument("--max-queue-delay-us", type=int, help="longest wait for a batch to fill")
    ap.add_argument("--max-queue-size", type=int, help="waiting requests per model before 429")
    ap.add_argument("--request-timeout-ms", type=int, help="unanswered after this: 504")
    ap.add_argument(
        "--cache-max-entries",
        type=int,
        help="answers each served version's response cache keeps; 0 (the default): no cache",
    )
    ap.add_argument("--cache-max-bytes", type=int, help="bytes of answers each version's cache may hold")
    ap.add_argument("--cache-ttl", type=float, metavar="SECONDS", help="how long a cached answer is served")
    ap.add_argument("--log-level", default="warning")
    ap.add_argument(
        "--replica-id", help="the control plane's name for this replica: its log file is replica-ID.jsonl"
    )
    ap.add_argument("--channel", metavar="unix:PATH|tcp:HOST:PORT", help="serve the channel, not HTTP")
    ap.add_argument("--parent-pid", type=int, help="exit when this process (the supervisor) is gone")
    ap.add_argument("--lease", type=Path, help="exit when this file is not refreshed for --orphan-after")
    ap.add_argument("--orphan-after", type=float, default=300.0, help="seconds (with --lease)")
    args = ap.parse_args(argv)
    overrides: dict[str, Any] = {
        k: v
        for k, v in (
            ("max_body_bytes", args.max_body_bytes),
            ("max_elements", args.max_elements),
            ("intra_op_threads", args.intra_op_threads),
            ("device", args.device),
            ("max_batch_size", args.max_batch_size),
            ("max_queue_delay_us", args.max_queue_delay_us),
            ("max_queue_size", args.max_queue_size),
            ("request_timeout_ms", args.request_timeout_ms),
            ("cache_max_entries", args.cache_max_entries),
            ("cache_max_bytes", args.cache_max_bytes),
            ("cache_ttl_s", args.cache_ttl),
        )
        if v is not None
    }
    try:
        settings = Settings(**overrides)
    except ValidationError as e:  # a bound out of range, from a hand-written command line
        raise SystemExit(f"error: {e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}") from None
    settings = _on_a_gpu(settings)
    if args.replica_id:
        configure_logging(settings, args.log_level, component="replica", instance=args.replica_id)
    else:  # run by hand, a test or a benchmark: the terminal only
        configure_logging(settings, args.log_level)
    try:  # spans of sampled requests, when configured
        otlp.start(settings, "replica", args.replica_id)
    except errors.InvalidInput as e:
        _refuse(e.message)  # the otel extra is missing: restarting will not help
    digests = _digests(args.sha256)
    try:  # the artifact key comes through the environment, as every setting does
        cipher = cipher_from(settings.artifact_key, settings.artifact_key_file)
    except errors.InvalidInput as e:
        _refuse(e.message)
    models = [
        _model(spec, settings.intra_op_threads, settings.device, digests, cipher) for spec in args.model
    ]
    if digests:
        raise SystemExit(f"--sha256 for a model not given with --model: {', '.join(digests)}")
    _attach_monitors(models, args.monitor)

    def on_ready(url: str) -> None:
        print(f"conveyor replica listening on {url}", flush=True)

    if args.channel:
        lease = None if args.lease is None else Lease(args.lease, args.orphan_after)
        run_channel_replica(
            models, settings, args.channel, on_ready=on_ready, parent_pid=args.parent_pid, lease=lease
        )
        return

    def on_grpc_ready(address: str) -> None:
        print(f"conveyor replica gRPC listening on {address}", flush=True)

    serve(
        models,
        host=args.host,
        port=args.port,
        settings=settings,
        on_ready=on_ready,
        log_level=args.log_level,
        grpc_port=args.grpc_port,
        on_grpc_ready=on_grpc_ready,
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
