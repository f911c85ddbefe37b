"""Tokens on the inference path of `conveyor up`: V2 REST (tritonclient.http, raw HTTP) and gRPC
(tritonclient.grpc) × {no token, malformed, unknown, expired, revoked, each role, a predictor of another
model} give exactly 401 / 403 / 200; a public deployment needs none; a revocation reaches the gateway within
a second; a token limited to 100 requests/s gets about that and 429 for the rest.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from tests.fixtures.models import build_logreg
from tests.fixtures.processes import ProcessGroup, conveyor_exe, free_port
from tests.fixtures.stack import UpStack

pytestmark = pytest.mark.timeout(240)
SPEC = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: clf
spec:
  model: clf:1
---
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: pub
spec:
  model: clf:1
  public: true
"""
BODY = json.dumps(
    {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
).encode()
X = np.array([[1, 2, 3, 4]], dtype=np.float32)
# what each caller gets from the private deployment: REST status, and gRPC code
REFUSED = {"none": 401, "malformed": 401, "unknown": 401, "expired": 401, "revoked": 401}
ROLES = {"admin": 200, "deployer": 200, "predictor": 200, "viewer": 403, "gateway": 403, "other-model": 403}
GRPC = {200: None, 401: "StatusCode.UNAUTHENTICATED", 403: "StatusCode.PERMISSION_DENIED"}


class Stack:
    def __init__(self, up: UpStack, grpc_port: int, tokens: dict[str, str | None]) -> None:
        self.up, self.grpc_port, self.tokens = up, grpc_port, tokens


def create(up: UpStack, name: str, *args: str) -> str:
    return up.cli("tokens", "create", name, *args).stdout.strip()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import os

    tmp = tmp_path_factory.mktemp("auth")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_HOME"] = str(tmp / "home")
    processes = ProcessGroup()
    up = UpStack(processes, env, tmp / "home")
    try:
        up.cli("models", "register", "clf", str(build_logreg(tmp / "clf.onnx")))
        (tmp / "spec.yaml").write_text(SPEC)
        grpc_port = free_port()
        up.start("-f", str(tmp / "spec.yaml"), "--grpc-port", str(grpc_port))
        roles = ("deployer", "predictor", "viewer", "gateway")
        tokens: dict[str, str | None] = {role: create(up, f"as-{role}", "--role", role) for role in roles}
        tokens["other-model"] = create(up, "other", "--role", "predictor", "--models", "iris*")
        tokens["admin"] = up.token
        tokens["none"] = None
        tokens["malformed"] = "not-a-token"
        tokens["unknown"] = "cvy_0123456789abcdef_" + "A" * 43
        tokens["expired"] = create(up, "short", "--role", "predictor", "--expires", "1s")
        tokens["revoked"] = create(up, "gone", "--role", "predictor")
        up.cli("tokens", "revoke", "gone")
        time.sleep(1.5)  # "short" has expired, and the gateway applied the revocation
        yield Stack(up, grpc_port, tokens)
    finally:
        up.stop()
        processes.stop_all()


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"authorization": f"Bearer {token}"}


def rest_status(stack: Stack, who: str, model: str = "clf") -> dict[str, int]:
    base = f"{stack.up.gateway_url}/v2/models/{model}"
    headers = {**bearer(stack.tokens[who]), "content-type": "application/json"}
    with httpx.Client(timeout=10, headers=headers) as http:
        return {
            "infer": http.post(f"{base}/infer", content=BODY).status_code,
            "metadata": http.get(base).status_code,
            "ready": http.get(f"{base}/ready").status_code,
        }


def grpc_code(stack: Stack, who: str) -> dict[str, str | None]:
    client = tg.InferenceServerClient(f"127.0.0.1:{stack.grpc_port}")
    headers = bearer(stack.tokens[who])
    x = tg.InferInput("input", [1, 4], "FP32")
    x.set_data_from_numpy(X)
    got: dict[str, str | None] = {}
    calls: dict[str, Callable[[], object]] = {
        "infer": lambda: client.infer("clf", [x], headers=headers),
        "metadata": lambda: client.get_model_metadata("clf", headers=headers),
        "ready": lambda: client.is_model_ready("clf", headers=headers),
    }
    try:
        for name, call in calls.items():
            try:
                call()
                got[name] = None
            except InferenceServerException as exc:
                got[name] = str(exc.status())
    finally:
        client.close()
    return got


@pytest.mark.parametrize("who", [*REFUSED, *ROLES])
def test_the_private_deployment_answers_each_caller_as_its_token_allows(stack: Stack, who: str) -> None:
    want = {**REFUSED, **ROLES}[who]
    assert rest_status(stack, who) == dict.fromkeys(("infer", "metadata", "ready"), want)
    assert grpc_code(stack, who) == dict.fromkeys(("infer", "metadata", "ready"), GRPC[want])


@pytest.mark.parametrize("who", ["none", "viewer", "other-model", "predictor"])
def test_a_public_deployment_answers_anyone(stack: Stack, who: str) -> None:
    assert rest_status(stack, who, "pub") == {"infer": 200, "metadata": 200, "ready": 200}


def test_tritonclient_http_with_a_bearer_header_gets_right_answers(stack: Stack) -> None:
    client = th.InferenceServerClient(stack.up.gateway_url.removeprefix("http://"))
    headers = bearer(stack.tokens["predictor"])
    x = th.InferInput("input", [1, 4], "FP32")
    x.set_data_from_numpy(X, binary_data=True)
    result = client.infer("clf", [x], headers=headers)
    public = client.infer("pub", [x])
    np.testing.assert_array_equal(result.as_numpy("label"), public.as_numpy("label"))
    with pytest.raises(InferenceServerException, match="authentication required"):
        client.infer("clf", [x])


def test_the_refusals_say_why_in_one_json_line(stack: Stack) -> None:
    url = f"{stack.up.gateway_url}/v2/models/clf/infer"
    none = httpx.post(url, content=BODY, headers={"content-type": "application/json"})
    assert none.status_code == 401 and none.headers["www-authenticate"] == 'Bearer realm="conveyor"'
    assert none.json() == {"error": "authentication required: send Authorization: Bearer <token>"}
    revoked = httpx.post(url, content=BODY, headers=bearer(stack.tokens["revoked"]))
    assert revoked.json() == {"error": "token 'gone' was revoked"}
    other = httpx.post(url, content=BODY, headers=bearer(stack.tokens["other-model"]))
    assert other.json() == {"error": "token 'other' may call only the models matching 'iris*', not 'clf'"}


def test_a_revoked_token_is_refused_by_the_gateway_within_a_second(stack: Stack) -> None:
    token = create(stack.up, "soon-gone", "--role", "predictor")
    url = f"{stack.up.gateway_url}/v2/models/clf/infer"
    headers = {**bearer(token), "content-type": "application/json"}
    deadline = time.monotonic() + 5  # a new token reaches the gateway like a revocation does
    while httpx.post(url, content=BODY, headers=headers).status_code != 200:
        assert time.monotonic() < deadline, "the new token never worked"
        time.sleep(0.05)
    stack.up.cli("tokens", "revoke", "soon-gone")
    revoked_at = time.monotonic()
    while (status := httpx.post(url, content=BODY, headers=headers).status_code) == 200:
        time.sleep(0.02)
    assert status == 401
    assert time.monotonic() - revoked_at < 1.0


def test_a_token_limited_to_100_per_second_gets_about_that_and_429_for_the_rest(stack: Stack) -> None:
    token = create(stack.up, "limited", "--role", "predictor", "--rate", "100")
    body = stack.up.home / "body.json"
    body.write_bytes(BODY)
    time.sleep(1.0)  # the gateway has the new token
    seconds = 4
    args = ["hey", "-z", f"{seconds}s", "-c", "8", "-t", "10", "-m", "POST", "-T", "application/json"]
    args += [
        "-H",
        f"Authorization: Bearer {token}",
        "-D",
        str(body),
        f"{stack.up.gateway_url}/v2/models/clf/infer",
    ]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60).stdout
    from tests.fixtures.stack import parse_hey

    result = parse_hey(out)
    ok, refused = result.statuses.get(200, 0), result.statuses.get(429, 0)
    assert set(result.statuses) <= {200, 429} and not result.errors, out
    # 100/s for the run, plus at most one second of burst at its start; a little less when the clients,
    # refused again before their Retry-After, are held to it (docs/batching.md, "Overload") and ask nothing
    assert 0.8 * 100 * seconds <= ok <= 100 * seconds + 100 + 10, out
    assert refused > 0, out


def test_the_cli_without_a_token_says_how_to_get_one_and_with_one_works(stack: Stack, tmp_path: Path) -> None:
    env = {**stack.up.env, "CONVEYOR_HOME": str(tmp_path / "elsewhere"), "CONVEYOR_URL": stack.up.api_url}
    cmd = [conveyor_exe(), "get", "deployments"]
    bare = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert bare.returncode == 11, bare.stderr
    assert bare.stderr.count("\n") == 1 and "needs a token: set CONVEYOR_TOKEN" in bare.stderr
    viewer = subprocess.run(
        cmd, env={**env, "CONVEYOR_TOKEN": str(stack.tokens["viewer"])}, capture_output=True, text=True
    )
    assert viewer.returncode == 0 and "clf" in viewer.stdout
    scale = [conveyor_exe(), "scale", "clf", "--replicas", "2"]
    denied = subprocess.run(
        scale, env={**env, "CONVEYOR_TOKEN": str(stack.tokens["viewer"])}, capture_output=True, text=True
    )
    assert denied.returncode == 12 and "(role viewer) may not change deployments" in denied.stderr
