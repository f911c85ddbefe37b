"""The InferenceService: V2 protocol, ONNX format, the spec's scaling and resources, per KServe's CRD."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from conveyor.k8s import Options, inference_service
from tests.unit.k8s.specs import S3, SHA, kserve_validator, served


@pytest.mark.parametrize(
    "spec",
    [
        {"replicas": 2, "resources": {"threads": 2}},
        {"autoscaling": {"minReplicas": 0, "maxReplicas": 5, "scaleToZero": True, "targetInFlight": 3}},
        {"replicas": 1, "batching": {"requestTimeoutMilliseconds": 2500}},
    ],
)
def test_the_inference_service_validates_against_kserves_crd_schema(spec: dict[str, Any]) -> None:
    isvc = inference_service(served(**spec), Options(namespace="ml"))
    kserve_validator().validate(isvc)


def test_it_asks_for_the_v2_protocol_and_the_onnx_format_with_the_specs_resources() -> None:
    isvc = inference_service(served(replicas=2, resources={"threads": 2}), Options())
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["kind"] == "InferenceService"
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert model["protocolVersion"] == "v2"
    assert model["modelFormat"] == {"name": "onnx"}
    assert model["resources"]["requests"]["cpu"] == "2"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 2)
    assert isvc["metadata"]["annotations"]["conveyor.dev/sha256"] == SHA


def test_autoscaling_maps_to_kserves_concurrency_target_and_scale_to_zero_to_min_zero() -> None:
    spec: dict[str, Any] = {
        "autoscaling": {"minReplicas": 0, "maxReplicas": 5, "scaleToZero": True, "targetInFlight": 3}
    }
    predictor = inference_service(served(**spec), Options())["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (0, 5)
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("concurrency", 3)


def test_the_storage_uri_is_the_one_given_else_beside_the_s3_store_else_a_placeholder() -> None:
    def uri(options: Options, given: str | None = None) -> str:
        return str(inference_service(served(), options, given)["spec"]["predictor"]["model"]["storageUri"])

    assert uri(Options(), "gs://bucket/iris/3") == "gs://bucket/iris/3"
    assert uri(Options(artifacts=S3)) == "s3://models/conveyor/kserve/iris/3"
    assert uri(Options()) == "s3://CHANGE-ME/kserve/iris/3"


def test_the_strict_schema_refuses_a_field_kserve_does_not_know() -> None:
    isvc = inference_service(served(), Options())
    isvc["spec"]["predictor"]["model"]["sha256"] = SHA
    with pytest.raises(jsonschema.ValidationError, match="sha256"):
        kserve_validator().validate(isvc)
