"""`conveyor validate` end to end: real `conveyor serve` processes driven through the gates. A good candidate
passes all three (exit 0, the verdict on the version, an HTML report that renders in Chromium with its charts
and no console errors); planted faults fail their gate with exit 6 and one error line: an accuracy drop
(regression), a delay (performance), a memory leak (stability, on an endpoint started by the test and
validated with --url); bad input is one line and exit 2 or 3 before any server starts.

One CONVEYOR_HOME for the module (the models are registered once); short measurement windows."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import conveyor
from conveyor.runtime import OnnxModel
from conveyor.settings import Settings
from tests.fixtures.models import build_logreg
from tests.fixtures.processes import REPO, ProcessGroup, conveyor_exe, output_of
from tests.fixtures.rollout_models import STABLE_SEED, build_different, build_good, build_slow

CHROMIUM = Path("/usr/bin/chromium")
# Chromium as the machine allows it: no sandbox as root, and nothing that reaches out to the network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]
FAST = """\
performance: {seconds: 1, concurrency: 2}
stability: {seconds: 2}
"""
ONLY_REGRESSION = "performance: {enabled: false}\nstability: {enabled: false}\n"
ONLY_PERFORMANCE = (
    "regression: {enabled: false}\nstability: {enabled: false}\nperformance: {seconds: 1, concurrency: 1}\n"
)
ONLY_STABILITY = (
    "regression: {enabled: false}\nperformance: {enabled: false}\n"
    "stability: {seconds: 3, maxRssGrowthMb: 16}\n"
)


class Home:
    """A CONVEYOR_HOME with clf:1 (the stable model), clf:2 (the same answers), clf:3 (other answers),
    clf:4 (the same answers, slower), the rows and the stable model's own answers as labels."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        self.env.update(CONVEYOR_HOME=str(root / "home"), COLUMNS="200")
        x = np.random.default_rng(3).normal(size=(120, 4)).astype(np.float32)
        stable = build_logreg(root / "stable.onnx", seed=STABLE_SEED)
        labels = OnnxModel(stable.read_bytes(), name="stable").predict({"input": x})["label"]
        np.save(root / "x.npy", x)
        np.save(root / "y.npy", labels)
        settings = Settings(home=root / "home")  # registered in this process: four CLI starts saved
        for model in (
            stable,
            build_good(root / "good.onnx"),
            build_different(root / "different.onnx"),
            build_slow(root / "slow.onnx", extra_ms=60),
        ):
            conveyor.register("clf", model, framework="onnx", settings=settings)

    def file(self, name: str, text: str) -> str:
        (self.root / name).write_text(text)
        return str(self.root / name)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [conveyor_exe(), *args], env=self.env, capture_output=True, text=True, timeout=240
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"conveyor {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def validate(self, ref: str, *args: str) -> subprocess.CompletedProcess[str]:
        data = ("--dataset", str(self.root / "x.npy"), "--labels", str(self.root / "y.npy"))
        return self.cli("validate", ref, *data, *args, check=False)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return Home(tmp_path_factory.mktemp("validate"))


@pytest.fixture(scope="module")
def good_run(home: Home) -> tuple[subprocess.CompletedProcess[str], Path]:
    report = home.root / "good.html"
    gates = home.file("fast.yaml", FAST)
    run = home.validate("clf:2", "--baseline", "clf:1", "--gates", gates, "--report", str(report), "--json")
    return run, report


def one_error_line(run: subprocess.CompletedProcess[str]) -> str:
    [line] = run.stderr.strip().splitlines()
    return line


@pytest.mark.slow  # three conveyor serve processes and a soak: about 30 s on 2 busy cores
def test_a_good_candidate_passes_every_gate_and_the_verdict_is_stored(
    home: Home, good_run: tuple[subprocess.CompletedProcess[str], Path]
) -> None:
    run, report = good_run
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert (result["version"], result["baseline"], result["passed"]) == ("clf:2", "clf:1", True)
    assert [g["gate"] for g in result["gates"]] == ["regression", "performance", "stability"]
    assert all(g["passed"] for g in result["gates"])
    regression = result["gates"][0]["numbers"]
    assert regression["quality"]["accuracy"] == 1.0 and regression["drift_vs_baseline"]["max_abs_diff"] == 0
    perf = result["gates"][1]["numbers"]
    assert perf["candidate"]["requests"] > 0 and perf["baseline"]["p50_ms"] > 0
    stability = result["gates"][2]["numbers"]
    assert stability["load"]["errors"] == 0 and len(stability["rss"]) >= 4
    assert result["report"] == str(report) and report.exists()

    shown = json.loads(home.cli("models", "show", "clf:2", "--json").stdout)
    assert shown["tags"]["validated"] == "true"
    assert shown["validation"]["passed"] and shown["validation"]["baseline"] == "clf:1"
    text = home.cli("models", "show", "clf:2").stdout
    assert re.search(r"validated  passed .* against clf:1; report .*good\.html", text)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make system-deps)")
def test_the_report_renders_offline_in_chromium_with_its_charts(
    good_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    playwright = pytest.importorskip(
        "playwright.sync_api", reason="pip playwright is not installed (dev extra)"
    )
    _, report = good_run
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri())
            assert "passed" in page.title()
            assert page.locator(".verdict").inner_text() == "PASSED"
            for chart in ("latency", "drift", "compare", "memory"):
                svg = page.locator(f'svg[data-chart="{chart}"]')
                assert svg.count() == 1 and svg.bounding_box()["height"] > 50, chart  # type: ignore[index]
            assert page.locator('svg[data-chart="latency"] rect.bar').count() > 0
            assert page.locator('svg[data-chart="compare"] rect[data-series="baseline"]').count() >= 3
            assert page.locator('svg[data-chart="memory"] path').count() == 1
            page.screenshot(path=str(report.with_suffix(".png")), full_page=True)
            assert errors == [] and requests == [report.as_uri()]  # nothing fetched: it opens offline
        finally:
            browser.close()


@pytest.mark.slow
def test_a_planted_accuracy_drop_fails_regression_with_exit_6(home: Home) -> None:
    run = home.validate("clf:3", "--baseline", "clf:1", "--gates", home.file("reg.yaml", ONLY_REGRESSION))
    assert run.returncode == 6, run.stdout + run.stderr
    assert (
        one_error_line(run)
        == "error: validation of clf:3 failed: regression: accuracy drop 1 > 0.01 (vs baseline)"
    )
    assert re.search(
        r"regression\s+│ accuracy drop \(vs baseline\)\s+│ 1\s+│ -\s+│ ≤ 0.01\s+│ fail", run.stdout
    )
    assert "stored on clf:3 (tag validated=false)" in run.stdout
    shown = json.loads(home.cli("models", "show", "clf:3", "--json").stdout)
    assert shown["tags"]["validated"] == "false" and not shown["validation"]["passed"]


@pytest.mark.slow
def test_a_planted_delay_fails_performance_against_the_baseline(home: Home) -> None:
    gates = home.file("perf.yaml", ONLY_PERFORMANCE)
    run = home.validate("clf:4", "--baseline", "clf:1", "--gates", gates, "--json")
    assert run.returncode == 6, run.stdout + run.stderr
    [gate] = json.loads(run.stdout)["gates"]
    assert gate["gate"] == "performance" and not gate["passed"]
    failed = {c["name"] for c in gate["checks"] if not c["passed"]}
    assert "p50" in failed, gate
    numbers = gate["numbers"]
    assert numbers["candidate"]["p50_ms"] > 2 * numbers["baseline"]["p50_ms"]
    assert one_error_line(run).startswith("error: validation of clf:4 failed: performance: p50 ")


@pytest.fixture
def leaky_url(home: Home, processes: ProcessGroup) -> Iterator[str]:
    """clf:1 served by `conveyor serve` with a planted leak (tests/fixtures/leaky_serve.py)."""
    script = str(REPO / "tests" / "fixtures" / "leaky_serve.py")
    env = {**home.env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    proc = processes.start([sys.executable, script, "serve", "clf:1", "--port", "0"], env=env)
    deadline = time.monotonic() + 120
    while not (found := re.search(r"listening on (http://\S+)", output_of(proc))):
        assert proc.poll() is None and time.monotonic() < deadline, output_of(proc)
        time.sleep(0.1)
    yield found.group(1)


@pytest.mark.slow
def test_a_leaking_server_fails_stability_validated_by_url(home: Home, leaky_url: str) -> None:
    gates = home.file("soak.yaml", ONLY_STABILITY)
    data = ("--dataset", str(home.root / "x.npy"))
    run = home.cli("validate", "clf:1", "--url", leaky_url, *data, "--gates", gates, "--json", check=False)
    assert run.returncode == 6, run.stdout + run.stderr
    [gate] = json.loads(run.stdout)["gates"]
    assert gate["gate"] == "stability" and not gate["passed"]
    growth = next(c for c in gate["checks"] if c["name"] == "resident memory growth")
    assert growth["value"] > 16 and not growth["passed"]
    assert gate["numbers"]["load"]["errors"] == 0  # it answers: only its memory gives it away
    assert one_error_line(run).startswith(
        "error: validation of clf:1 failed: stability: resident memory growth "
    )


@pytest.mark.slow  # six conveyor processes
def test_bad_input_is_one_line_and_no_server_starts(home: Home) -> None:
    bad_gates = home.file("bad.yaml", "performance:\n  maxP99: 5\n")
    cases: list[tuple[tuple[str, ...], int, str]] = [
        (("clf:1", "--labels", str(home.root / "y.npy")), 2, "--labels needs --dataset"),
        (("clf:9",), 3, "version clf:9 not found"),
        (("clf:1", "--gates", bad_gates), 2, f"gates file {bad_gates}:2: performance.maxP99: unknown field"),
        (("clf:1", "--soak", "0s"), 2, "--soak must be above zero and at most 1h, got '0s'"),
        (("clf:1",), 2, "no rows to validate clf:1 on: give --dataset"),
        (("clf:1", "--baseline", "clf:1", "--dataset", str(home.root / "x.npy")), 2, "is clf:1 itself"),
    ]
    for args, code, message in cases:
        run: Any = home.cli("validate", *args, check=False)
        assert run.returncode == code, (args, run.stderr)
        assert message in one_error_line(run), (args, run.stderr)
