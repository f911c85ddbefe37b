"""The dashboard's rollout panel in a real Chromium against a real `conveyor up`: it appears when an apply
starts a rollout, shows the plan with the current step, the split and the events, and keeps the outcome on
the page once the rollout is aborted; no console errors (the CSP refuses style attributes: the split's bar
must not use them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_dashboard_browser import CHROMIUM, _console_errors, _keep, browser
from tests.e2e.test_rollout_cli_up import spec
from tests.fixtures.processes import ProcessGroup
from tests.fixtures.stack import UpStack, versions_stack

__all__ = ["browser"]  # the Chromium fixture of the dashboard's browser tests
pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make system-deps)"),
]


@pytest.fixture
def stack(cli_env: dict[str, str], processes: ProcessGroup, tmp_path: Path) -> Iterator[UpStack]:
    yield from versions_stack(processes, cli_env, tmp_path)


def test_the_deployment_view_shows_its_rollout_until_and_after_it_ends(
    stack: UpStack, browser: Any, tmp_path: Path
) -> None:
    first, second = tmp_path / "v1.yaml", tmp_path / "v2.yaml"
    first.write_text(spec("clf:1"))
    second.write_text(spec("clf:2"))
    stack.start("-f", str(first))
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors = _console_errors(page)
    page.goto(f"{stack.api_url}/ui/#token={stack.token}&deployment=clf")
    page.wait_for_selector('tr[data-deployment="clf"]', timeout=30_000)
    assert page.locator("#rollout-section").is_hidden()  # no rollout yet

    stack.cli("apply", "-f", str(second))
    page.wait_for_selector('[data-rollout="1"]', timeout=30_000)
    panel = page.locator("#rollout")
    assert "Rollout 1 · canary · clf:1 → clf:2" in panel.inner_text()
    assert [s.strip() for s in page.locator(".steps li").all_inner_texts()] == ["10%", "50%", "100%"]
    assert page.locator(".step.current").inner_text().strip() == "10%"
    stack.wait(  # 100% stable until the candidate has a ready replica
        lambda: "clf:1 90% · clf:2 10%" in page.locator(".traffic").inner_text(), what="the split", timeout=60
    )
    assert "candidate starting" not in page.locator("#deployments").inner_text()
    widths = page.eval_on_selector_all(".split span", "spans => spans.map(s => s.style.width)")
    assert widths == ["90%", "10%"]
    assert "Started" in panel.locator("table").inner_text()
    _keep(page, tmp_path, "dashboard-rollout.png")

    stack.cli("rollout", "abort", "clf")
    page.wait_for_selector("#rollout .phase.rolled_back", timeout=30_000)
    assert page.locator(".step.current").count() == 0
    assert "aborted by" in panel.inner_text()
    assert "clf:1 100% · clf:2 0%" in page.locator(".traffic").inner_text()
    assert errors == []
