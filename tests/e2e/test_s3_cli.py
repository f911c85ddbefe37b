"""The CLI with CONVEYOR_ARTIFACTS_URL on a real S3-compatible server (moto over loopback HTTP): register,
serve and predict from an empty cache, backup, restore into a new home and bucket, a corrupt object refused.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import CliRunner
from tests.fixtures.processes import ProcessGroup, conveyor_exe, free_port, wait_http_ok
from tests.fixtures.s3 import s3_client

ROW = [[5.1, 3.5, 1.4, 0.2]]


@pytest.fixture
def s3_cli_env(cli_env: dict[str, str], s3_env: dict[str, str], s3_bucket: str) -> dict[str, str]:
    cli_env.update(s3_env)
    cli_env["CONVEYOR_ARTIFACTS_URL"] = f"s3://{s3_bucket}/conveyor"
    return cli_env


@pytest.mark.slow
def test_register_serve_backup_restore_with_artifacts_on_s3(
    s3_cli_env: dict[str, str],
    s3_server: str,
    s3_bucket: str,
    cli: CliRunner,
    iris_files: dict[str, Path],
    processes: ProcessGroup,
    tmp_path: Path,
) -> None:
    home = Path(s3_cli_env["CONVEYOR_HOME"])
    sha = json.loads(cli("models", "register", "iris", str(iris_files["skops"]), "--json").stdout)["sha256"]
    keys = [o["Key"] for o in s3_client(s3_server).list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == [f"conveyor/{sha[:2]}/{sha[2:]}"]
    assert not (home / "artifacts").exists()  # nothing in the local store: the object is the artifact
    shutil.rmtree(home / "cache")  # as on another machine: serve fetches it

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = processes.start([conveyor_exe(), "serve", "iris:1", "--port", str(port)], env=s3_cli_env)
    wait_http_ok(f"{url}/v2/health/ready", proc)
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ROW[0]}]}
    answer = httpx.post(f"{url}/v2/models/iris/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert (home / "cache" / "artifacts" / sha[:2] / sha[2:]).is_file()
    processes.stop(proc)

    archive = tmp_path / "registry.tar.gz"
    made = json.loads(cli("backup", str(archive), "--json").stdout)
    assert made["artifacts"] == 1
    s3_client(s3_server).create_bucket(Bucket=f"{s3_bucket}-restored")
    other = {
        **s3_cli_env,
        "CONVEYOR_HOME": str(tmp_path / "other"),
        "CONVEYOR_ARTIFACTS_URL": f"s3://{s3_bucket}-restored",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([conveyor_exe(), *args], env=other, capture_output=True, text=True, timeout=120)

    restored = run("restore", str(archive), "--json")
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout) == made
    listed = s3_client(s3_server).list_objects_v2(Bucket=f"{s3_bucket}-restored")
    keys = [o["Key"] for o in listed["Contents"]]
    assert keys == [f"{sha[:2]}/{sha[2:]}"]
    predicted = run("predict", "iris:1", "--data", json.dumps(ROW), "--json")
    assert predicted.returncode == 0, predicted.stderr
    here = cli("predict", "iris:1", "--data", json.dumps(ROW), "--json").stdout
    assert json.loads(predicted.stdout)["outputs"] == json.loads(here)["outputs"]

    # A corrupted object: refused at load (exit 5, data_loss), and the cache keeps nothing of it.
    s3_client(s3_server).put_object(Bucket=f"{s3_bucket}-restored", Key=keys[0], Body=b"not the model")
    shutil.rmtree(tmp_path / "other" / "cache")
    refused = run("predict", "iris:1", "--data", json.dumps(ROW))
    assert refused.returncode == 5, refused.stderr
    assert "is corrupt" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "other" / "cache" / "artifacts" / sha[:2] / sha[2:]).exists()
