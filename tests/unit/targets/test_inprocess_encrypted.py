"""An in-process replica (placement inprocess) over an encrypted artifact store: it decrypts the blob with the
gateway's artifact key and answers; without the key it is never loaded, and says why."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from pathlib import Path

import orjson

from conveyor.protocol.service import EncodedRequest
from conveyor.registry import LocalArtifactStore
from conveyor.security.encryption import cipher_from
from conveyor.settings import Settings
from conveyor.targets.inprocess import LoadedUpstream
from tests.fixtures.models import LOGREG_BODY
from tests.unit.targets.test_inprocess import spec

KEY = base64.b64encode(os.urandom(32)).decode()


def encrypted_blob(onnx: Path, root: Path) -> tuple[Path, str]:
    store = LocalArtifactStore(root, cipher_from(KEY, None))
    return store.location(store.put_file(onnx)[0]), hashlib.sha256(onnx.read_bytes()).hexdigest()


def load(path: Path, sha256: str, settings: Settings) -> LoadedUpstream:
    async def scenario() -> LoadedUpstream:
        done = asyncio.Event()
        upstream = LoadedUpstream(spec(path, sha256), done.set, settings=settings)
        async with asyncio.timeout(30):
            while not done.is_set() and upstream.problem is None:
                await asyncio.sleep(0.01)
        if upstream.problem is None:
            answer = await upstream.infer(EncodedRequest("clf", "1", LOGREG_BODY, None, "rid"))
            assert orjson.loads(answer.body)["model_version"] == "1"
        await upstream.close()
        return upstream

    return asyncio.run(scenario())


def test_an_encrypted_blob_is_decrypted_with_the_key_and_served(logreg_onnx: Path, tmp_path: Path) -> None:
    blob, sha256 = encrypted_blob(logreg_onnx, tmp_path)
    assert logreg_onnx.read_bytes() not in blob.read_bytes()
    assert load(blob, sha256, Settings(artifact_key=KEY)).problem is None


def test_without_the_key_the_replica_is_not_loaded_and_says_why(logreg_onnx: Path, tmp_path: Path) -> None:
    blob, sha256 = encrypted_blob(logreg_onnx, tmp_path)
    problem = load(blob, sha256, Settings()).problem
    assert (
        problem is not None
        and "is encrypted (artifact key" in problem
        and "no artifact key is set" in problem
    )
