"""Signed models from the CLI: `conveyor keys create/list`, `conveyor models sign`, what `models show/list`
say, and `requireSignedModels` under `conveyor up` with an encrypted artifact store: apply refuses an unsigned
version, one signed by an untrusted key and a tampered signature (one line each); a signed one deploys and
its replica, reading the encrypted blob with the key from its environment, answers."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import conveyor
from conveyor.security import signing
from conveyor.settings import Settings
from tests.e2e.conftest import CliRunner
from tests.e2e.test_up_under_load import BODY
from tests.fixtures.homes import copy_home, register
from tests.fixtures.models import build_logreg
from tests.fixtures.processes import ProcessGroup
from tests.fixtures.stack import UpStack

KEY = base64.b64encode(os.urandom(32)).decode()
SPEC = """apiVersion: conveyor.dev/v1
kind: Deployment
metadata: {{name: clf}}
spec: {{model: "{model}", replicas: 1, requireSignedModels: true}}
"""


def test_a_key_created_signs_a_version_and_show_and_list_say_by_which_key(
    cli: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    home = Path(cli_env["CONVEYOR_HOME"])
    created = json.loads(cli("keys", "create", "alice", "--json").stdout)
    assert stat.S_IMODE((home / "keys" / "alice.key").stat().st_mode) == 0o600
    listed = json.loads(cli("keys", "list", "--json").stdout)
    assert listed == [{"name": "alice", "key_id": created["key_id"], "private": True, "trusted": True}]
    cli("models", "register", "clf", str(build_logreg(tmp_path / "clf.onnx")))
    assert "Signed clf:1 with key alice" in cli("models", "sign", "clf:1").stdout
    assert "  signed     alice\n" in cli("models", "show", "clf:1").stdout
    [version] = json.loads(cli("models", "list", "clf", "--json").stdout)
    assert version["signatures"] == [
        {"key_id": created["key_id"], "key": "alice", "verifies": True, "signed_by": version["created_by"]}
    ]
    (home / "keys" / "alice.pub").rename(tmp_path / "alice.pub")  # no longer trusted here
    assert "  signed     alice untrusted\n" not in cli("models", "show", "clf:1").stdout
    assert f"  signed     {created['key_id']} untrusted\n" in cli("models", "show", "clf:1").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "create", "a/b"], "error: invalid key name 'a/b'"),
        (["models", "sign", "clf:1"], "error: say which key to sign with (--key NAME)"),
        (["models", "sign", "clf:1", "--key", "nobody"], "error: signing key 'nobody' not found"),
    ],
)
def test_signing_mistakes_are_one_line(cli: CliRunner, args: list[str], message: str) -> None:
    out = cli(*args, check=False)
    assert out.returncode != 0 and out.stdout == ""
    assert out.stderr.strip().startswith(message) and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_an_encrypted_artifact_needs_its_key_and_a_changed_byte_is_refused(
    cli: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    cli_env["CONVEYOR_ARTIFACT_KEY"] = KEY
    onnx = build_logreg(tmp_path / "clf.onnx")
    cli("models", "register", "clf", str(onnx))
    [blob] = (Path(cli_env["CONVEYOR_HOME"]) / "artifacts").glob("*/*")
    assert onnx.read_bytes() not in blob.read_bytes()
    assert "answered by clf:1" in cli("predict", "clf:1", "--data", "[[0.1, 0.2, 0.3, 0.4]]").stderr
    del cli_env["CONVEYOR_ARTIFACT_KEY"]
    out = cli("predict", "clf:1", "--data", "[[0.1, 0.2, 0.3, 0.4]]", check=False)
    assert out.returncode == 5 and "is encrypted (artifact key" in out.stderr, out.stderr
    cli_env["CONVEYOR_ARTIFACT_KEY"] = KEY
    data = bytearray(blob.read_bytes())
    data[100] ^= 1
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    out = cli("predict", "clf:1", "--data", "[[0.1, 0.2, 0.3, 0.4]]", check=False)
    assert out.returncode == 5 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith(f"error: model clf:1: artifact {blob.parent.name}"), out.stderr
    assert "is corrupt: its encrypted bytes do not authenticate" in out.stderr


@pytest.fixture(scope="module")
def encrypted_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with clf:1..3 (seeds 0, 1, 2), unsigned, encrypted with KEY; registered in-process (setup)."""
    d = tmp_path_factory.mktemp("signed")
    for seed in (0, 1, 2):
        register(d / "home", "clf", build_logreg(d / f"clf{seed}.onnx", seed=seed), artifact_key=KEY)
    return d / "home"


@pytest.fixture
def signed_stack(cli_env: dict[str, str], encrypted_home: Path, processes: ProcessGroup) -> Iterator[UpStack]:
    env = {**cli_env, "CONVEYOR_ARTIFACT_KEY": KEY, "CONVEYOR_REPLICA_ORPHAN_TIMEOUT_S": "60"}
    up = UpStack(processes, env, copy_home(encrypted_home, env))
    try:
        yield up
    finally:
        up.stop()


def spec(tmp_path: Path, model: str) -> str:
    path = tmp_path / f"{model.replace(':', '-')}.yaml"
    path.write_text(SPEC.format(model=model))
    return str(path)


@pytest.mark.timeout(240)
def test_require_signed_models_refuses_all_but_a_trusted_signature(
    signed_stack: UpStack, tmp_path: Path
) -> None:
    stack = signed_stack
    signing.create_keypair(stack.home / "keys", "ci")  # as `conveyor keys create ci` does
    stack.start()

    def refused(model: str) -> str:
        out = stack.cli("apply", "-f", spec(tmp_path, model), check=False)
        assert out.returncode != 0, out.stdout
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        return lines[0]

    assert refused("clf:1") == (
        "error: deployment 'clf': model clf:1 is not signed (requireSignedModels; sign it: "
        "conveyor models sign clf:1)"
    )
    # Signed with a key this control plane does not trust (not in its keys directory).
    settings = Settings(home=stack.home, artifact_key=KEY)
    other = signing.create_keypair(tmp_path / "elsewhere", "theirs")
    with conveyor.open_registry(settings) as registry:
        theirs = signing.load_private_key(tmp_path / "elsewhere", "theirs")
        registry.sign_version(registry.resolve("clf:2"), theirs)
    assert refused("clf:2") == (
        f"error: deployment 'clf': model clf:2 is signed only by untrusted key(s) {other.key_id} "
        "(requireSignedModels)"
    )
    # A trusted key's signature of another version, copied onto clf:3: it does not verify for clf:3.
    with conveyor.open_registry(settings) as registry:
        registry.sign_version(registry.resolve("clf:1"), signing.load_private_key(stack.home / "keys", "ci"))
        [good] = registry.signatures.of_version("clf", 1)
        registry.signatures.add("clf", 3, good.signed)
    assert refused("clf:3").startswith("error: deployment 'clf': model clf:3: the signature by key ci (")

    out = stack.cli("apply", "-f", spec(tmp_path, "clf:1"), "--wait", "--timeout", "60")
    assert "rolled out: 1/1 replicas of clf:1" in out.stdout, out.stdout
    # The replica decrypted the blob with the key from its environment (the CLI sends the stack's token).
    answer = stack.cli("predict", "clf", "--url", stack.gateway_url, "--data", BODY.decode(), "--json")
    assert json.loads(answer.stdout)["model_version"] == "1", answer.stdout


@pytest.mark.timeout(240)
def test_a_version_deployed_before_the_policy_is_not_loaded_after_and_signing_it_heals(
    signed_stack: UpStack, tmp_path: Path
) -> None:
    stack = signed_stack
    plain = tmp_path / "plain.yaml"
    plain.write_text(SPEC.format(model="clf:1").replace(", requireSignedModels: true", ""))
    stack.start("-f", str(plain), "--wait")
    stack.stop()
    stack.env["CONVEYOR_REQUIRE_SIGNED_MODELS"] = "1"
    stack.start()

    def described() -> str:
        return stack.cli("describe", "deployment", "clf").stdout

    def problem_shown() -> bool:  # what describe prints, polled through the API (a CLI start costs seconds)
        d = stack.api("/deployments/clf")
        kinds = {e["kind"] for e in d["events"]}
        return "is not signed" in (d.get("problem") or "") and "InvalidDeployment" in kinds

    stack.wait(problem_shown, what="the problem shown")
    text = described()
    assert "cannot run: model clf:1 is not signed (requireSignedModels" in " ".join(text.split()), text
    assert "InvalidDeployment" in text, text
    assert json.loads(stack.cli("get", "replicas", "--json").stdout)["replicas"] == [], (
        "none of clf:1 started"
    )

    signing.create_keypair(stack.home / "keys", "ci")
    stack.cli("models", "sign", "clf:1")

    def running() -> bool:  # what `get deployments` shows as 1/1, polled through the API
        counts = stack.api("/deployments/clf")["replicas"]
        return bool(counts["ready"] == counts["desired"] == 1)

    stack.wait(running, timeout=60, what="clf:1 running")
    assert "1/1" in stack.cli("get", "deployments").stdout
    assert "cannot run" not in described()
