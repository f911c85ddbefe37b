"""The exported Prometheus rules: the file's shape, ``promtool check rules``, and ``promtool test rules`` on
series that make the error-rate alert fire after its ``for`` and not before."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conveyor.observe.alerts import rules_for
from conveyor.observe.export_prometheus import prometheus_rules, rules_yaml
from conveyor.spec.resources import DeploymentSpec

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus; make system-deps)"
)


def _rules_text() -> str:
    spec = DeploymentSpec.model_validate(
        {
            "model": "iris:1",
            "alerts": [{"name": "busy", "expr": "queue_depth", "threshold": 50, "labels": {"team": "ml"}}],
        }
    )
    return rules_yaml(prometheus_rules("iris", rules_for("iris", spec, [])))


def test_each_rule_keeps_its_for_labels_and_annotations() -> None:
    group = yaml.safe_load(_rules_text())["groups"][0]
    assert group["name"] == "conveyor-iris"
    rules = {r["alert"]: r for r in group["rules"]}
    assert list(rules) == ["error-rate", "p99-latency", "crash-loop", "drift", "busy"]
    error = rules["error-rate"]
    assert error["for"] == "2m" and error["labels"] == {"deployment": "iris", "severity": "critical"}
    assert error["expr"].endswith(") > 0.05")
    assert (
        error["annotations"]["summary"]
        == "{{ $value }} of the requests of version {{ $labels.version }} failed"
    )
    assert rules["crash-loop"]["for"] == "0s" and rules["crash-loop"]["expr"].endswith(" >= 3.0")
    assert rules["busy"]["labels"] == {"deployment": "iris", "severity": "warning", "team": "ml"}


@needs_promtool
def test_promtool_checks_the_exported_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(_rules_text())
    done = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 5 rules found" in done.stdout


GATEWAY = 'component="gateway",instance="gateway",model="iris",version="2",protocol="rest"'
LABELS = {"deployment": "iris", "severity": "critical", "model": "iris", "version": "2"}
UNIT_TESTS = {
    "rule_files": ["rules.yaml"],
    "evaluation_interval": "30s",
    "tests": [
        {
            "interval": "30s",
            # 2 requests/s succeed all along; from minute 5, 1 request/s fails too (a third of them).
            "input_series": [
                {"series": f'conveyor_requests_total{{{GATEWAY},code="200"}}', "values": "0+60x40"},
                {"series": f'conveyor_requests_total{{{GATEWAY},code="500"}}', "values": "0+0x10 30+30x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "error-rate", "exp_alerts": []},
                # failing since 5m30s: pending, not yet the 2m of its for
                {"eval_time": "7m", "alertname": "error-rate", "exp_alerts": []},
                # fired at 7m30s; by 11m the 5m window holds only the failing minutes: a third
                {
                    "eval_time": "11m",
                    "alertname": "error-rate",
                    "exp_alerts": [
                        {
                            "exp_labels": LABELS,
                            "exp_annotations": {
                                "expr": "error_rate(5m)",
                                "threshold": "> 0.05",
                                "value": "0.3333333333333333",
                                "summary": "0.3333333333333333 of the requests of version 2 failed",
                            },
                        }
                    ],
                },
                {"eval_time": "11m", "alertname": "p99-latency", "exp_alerts": []},
            ],
        }
    ],
}


@needs_promtool
def test_promtool_test_rules_fires_the_error_rate_alert_after_its_for_and_not_before(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(_rules_text())
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(UNIT_TESTS, sort_keys=False))
    done = subprocess.run(
        [str(PROMTOOL), "test", "rules", "tests.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
