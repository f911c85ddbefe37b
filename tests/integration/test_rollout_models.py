"""The flaky rollout candidate behind a real replica: about a fifth of its answers are JSON 500s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import orjson
import pytest

from tests.fixtures.models import LOGREG_BODY, build_logreg
from tests.fixtures.replica import running_replica
from tests.fixtures.rollout_models import build_flaky

REQUESTS = 400


@pytest.fixture(scope="module")
def stable(models_dir: Path) -> ort.InferenceSession:
    path = build_logreg(models_dir / "rollout-stable.onnx", seed=0)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def url(models_dir: Path) -> Iterator[str]:
    path = build_flaky(models_dir / "rollout-flaky.onnx", error_share=0.2)
    with running_replica({"flaky:2": path}) as base:
        yield base


def test_a_fifth_of_the_flaky_models_answers_are_500_with_a_json_error(
    url: str, stable: ort.InferenceSession
) -> None:
    x = np.asarray(orjson.loads(LOGREG_BODY)["inputs"][0]["data"], np.float32).reshape(2, 4)
    label, proba = stable.run(None, {"input": x})
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(REQUESTS):  # one at a time: the batcher merges nothing, each request is one draw
            r = client.post("/v2/models/flaky/infer", content=LOGREG_BODY)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 200:
                outputs = {o["name"]: o["data"] for o in r.json()["outputs"]}
                np.testing.assert_array_equal(outputs["label"], label)
                np.testing.assert_allclose(outputs["probabilities"], proba.ravel(), rtol=0, atol=1e-6)
            else:
                assert r.status_code == 500, r.text
                assert r.headers["content-type"] == "application/json"
                error = r.json()["error"]
                assert "model 'flaky' failed" in error and "Reshape" in error, error
    assert set(statuses) == {200, 500}, statuses
    # 400 draws at 20%: a standard deviation of 2%, so 12%..28% is four of them either side
    assert 0.12 <= statuses[500] / REQUESTS <= 0.28, statuses
