"""The reconciler on a home whose disk fills up while it runs: the state file and the events cannot be
written, yet it keeps reconciling, says so once, and catches up when space is freed (docs/operations.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from pathlib import Path

import pytest

import conveyor
from conveyor.control.reconciler import Reconciler
from conveyor.registry import Registry
from conveyor.settings import Settings
from tests.fixtures.models import build_logreg
from tests.fixtures.small_fs import SmallFs, small_fs
from tests.integration.test_reconciler import apply, run_with_reconciler, until

__all__ = ["small_fs"]  # the fixture, imported to be found by pytest


def test_a_full_disk_while_running_is_a_warning_and_the_state_catches_up_after(
    small_fs: SmallFs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=small_fs.root / "home", replica_start_timeout_s=60.0)
    conveyor.register("clf", build_logreg(tmp_path / "clf.onnx", seed=0), settings=settings)
    registry = Registry.from_settings(settings)
    apply(registry, "clf:1", 1)
    state = settings.home / "run" / "replicas.json"

    async def scenario(reconciler: Reconciler) -> None:
        await reconciler.start()
        await until(lambda: reconciler.replica_counts("clf")["ready"] == 1)
        (victim,) = reconciler.replicas("clf")
        small_fs.fill(leave_kib=0)
        os.kill(victim["pid"], signal.SIGKILL)  # its replacement must be recorded: a write on a full disk
        await until(lambda: victim["id"] not in {r["id"] for r in reconciler.replicas()})
        await asyncio.sleep(1.0)  # several reconcile steps on the full disk
        assert victim["id"] in state.read_text()  # the last state written, intact
        small_fs.free()
        await until(lambda: reconciler.replica_counts("clf")["ready"] == 1)

        def recorded() -> set[str]:
            return {r["id"] for r in json.loads(state.read_text())["replicas"]}

        # Saved again: the file lists what runs now (a replica started on the full disk may have died of it
        # and been replaced meanwhile), not the victim.
        await until(lambda: recorded() == {r["id"] for r in reconciler.replicas("clf")})
        assert victim["id"] not in recorded()
        replacement = await until(
            lambda: next((r for r in reconciler.replicas("clf") if r["state"] == "ready"), None)
        )
        # The event writer outlived the events it could not store: the next one is stored.
        os.kill(replacement["pid"], signal.SIGKILL)
        await until(
            lambda: any(replacement["id"] in e.message for e in registry.deployments.events("clf")), 10
        )

    with caplog.at_level(logging.WARNING, logger="conveyor.control"):
        run_with_reconciler(registry, settings, scenario)
    registry.close()
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert not [r for r in caplog.records if "reconcile step failed" in r.getMessage()]
    messages = [r.getMessage() for r in caplog.records]
    # One warning when saving starts failing and one when it works again, not one per reconcile step (the
    # disk may give a page back meanwhile, e.g. when a log is removed: then a second episode).
    failed = [m for m in messages if "replicas.json" in m and "disk full" in m]
    recovered = [m for m in messages if "replica state saved again" in m]
    assert 1 <= len(failed) <= 3 and len(recovered) == len(failed), messages
    assert not list(state.parent.glob("*.tmp*"))
