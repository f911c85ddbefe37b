"""Open Inference Protocol gRPC messages and service, generated from ``inference.proto`` by ``make proto``.

Loaded into a private descriptor pool: other packages (``tritonclient.grpc``, KServe) register the same
``inference.*`` names in protobuf's default pool, and two definitions of one name there fail at import.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
SERVICE_NAME = "inference.GRPCInferenceService"


@contextmanager
def _default_pool(pool: descriptor_pool.DescriptorPool) -> Iterator[None]:
    # Generated modules register themselves in ``descriptor_pool.Default()`` at import; point it at ours
    # for that one import instead of hand-editing generated code.
    original = descriptor_pool.Default
    descriptor_pool.Default = lambda: pool
    try:
        yield
    finally:
        descriptor_pool.Default = original


with _default_pool(POOL):
    from conveyor.protocol.grpc import inference_pb2 as pb
    from conveyor.protocol.grpc import inference_pb2_grpc as pb_grpc

__all__ = ["POOL", "SERVICE_NAME", "pb", "pb_grpc"]
