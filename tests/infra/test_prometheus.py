"""The alerting rules and the scrape config, checked by promtool (Prometheus 2.42 from
Debian's ``prometheus`` package) rather than by reading them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.infra.tools import HERE, K8S, run, tool

RULES = K8S / "darkroom-alerts.yml"
UNIT_TESTS = HERE / "alerts.test.yml"


def alert_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_promtool_accepts_the_rules() -> None:
    done = run(tool("promtool"), "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in done.stdout


def test_the_alerts_pass_their_unit_tests() -> None:
    """alerts.test.yml: the first dead letter and the first exhausted webhook fire, a stuck
    pod beside a healthy one fires 15 minutes after its last record and not a minute before,
    and nothing fires when all is idle and healthy."""
    done = run(tool("promtool"), "test", "rules", UNIT_TESTS.name, cwd=HERE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_unit_tests_that_fire_it_and_keep_it_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(UNIT_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fired == alert_names(), alert_names() ^ fired
    assert quiet == alert_names(), alert_names() ^ quiet


def test_the_rules_fail_when_an_alert_misses_the_first_event(tmp_path: Path) -> None:
    """The unit tests can fail: the rules as they were before this issue (a stall summed per
    group, alerts that depend on a counter's first sample) do not pass them."""
    groups = yaml.safe_load(RULES.read_text())
    for rule in groups["groups"][0]["rules"]:
        if rule["alert"] == "DarkroomGroupStalled":
            rule["expr"] = (
                "sum by (group) (darkroom_consumer_lag) > 0"
                " unless sum by (group) (rate(darkroom_records_consumed_total[15m])) > 0"
            )
    rules = tmp_path / "infra" / "k8s" / RULES.name
    rules.parent.mkdir(parents=True)
    rules.write_text(yaml.safe_dump(groups))
    tests = tmp_path / "tests" / "infra" / UNIT_TESTS.name
    tests.parent.mkdir(parents=True)
    tests.write_text(UNIT_TESTS.read_text())
    done = run(tool("promtool"), "test", "rules", tests.name, cwd=tests.parent)
    assert done.returncode != 0
    assert "alertname: DarkroomGroupStalled" in done.stdout + done.stderr


def checkable(config: dict[str, Any], rules: Path) -> dict[str, Any]:
    """The config with what Debian's promtool cannot read stood in for: its build lacks
    ``kubernetes_sd_configs`` (so a static target takes the discovery's place; the
    relabelling is kept), and the rules are where this checkout has them."""
    config = {**config, "rule_files": [str(rules)]}
    jobs = []
    for job in config["scrape_configs"]:
        job = dict(job)
        assert [sd["role"] for sd in job.pop("kubernetes_sd_configs")] == ["pod"]
        job["static_configs"] = [{"targets": ["127.0.0.1:9464"]}]
        jobs.append(job)
    config["scrape_configs"] = jobs
    return config


def test_promtool_accepts_the_config_with_a_static_target_for_the_discovery(tmp_path: Path) -> None:
    config = yaml.safe_load((K8S / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/" + RULES.name]  # where the ConfigMap is mounted
    (manager,) = config["alerting"]["alertmanagers"]
    assert manager["static_configs"][0]["targets"], "alerts go to an Alertmanager"
    variant = tmp_path / "prometheus.yml"
    variant.write_text(yaml.safe_dump(checkable(config, RULES)))
    done = run(tool("promtool"), "check", "config", str(variant))
    assert done.returncode == 0, done.stdout + done.stderr
    broken = checkable(config, RULES)
    broken["alerting"]["alertmanagers"][0]["static_configs"] = "alertmanager:9093"
    variant.write_text(yaml.safe_dump(broken))
    assert run(tool("promtool"), "check", "config", str(variant)).returncode != 0  # the check reads it


def test_every_dashboard_query_is_promql_promtool_accepts(tmp_path: Path) -> None:
    import json

    dashboard = json.loads((K8S / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert exprs
    rules = {
        "groups": [{"name": "dashboard", "rules": [{"record": f"panel:{i}", "expr": e} for i, e in enumerate(exprs)]}]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = run(tool("promtool"), "check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
