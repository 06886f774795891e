"""Monitoring as code: the chart's alerting rules (files/prometheus-rules.yaml, the
PrometheusRule), its Grafana dashboard, docs/metrics.md and the metrics the code exports agree;
``promtool check rules`` accepts the rules."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from forensic_checkpoint.agent.metrics import AgentMetrics
from forensic_checkpoint.controller import metrics as operator_metrics
from forensic_checkpoint.controller.alerts.metrics import AlertMetrics
from forensic_checkpoint.controller.identity import signer
from forensic_checkpoint_dev import promql
from forensic_checkpoint_dev.cluster import binaries
from forensic_checkpoint_dev.deploy import CHART

from .chart import REPO, documents, one, template

RULES_FILE = CHART / "files" / "prometheus-rules.yaml"
DASHBOARD = CHART / "dashboards" / "forensic-checkpoint.json"
METRICS_DOC = REPO / "docs" / "metrics.md"
_METRIC = re.compile(r"\bforensic_[a-z0-9]+_[a-z0-9_]+")


def exported_series() -> set[str]:
    """Every series name the operator, the alert receiver and the agent export (counters with
    ``_total``, histograms with ``_bucket``/``_sum``/``_count``)."""
    agent = AgentMetrics()
    agent.watch_storage(lambda: ({}, 0))
    agent.watch_readiness(lambda: None)
    agent.watch_certificates(dict)
    registries = [agent.registry, CollectorRegistry()]
    AlertMetrics.create(registries[1])
    names: set[str] = set()
    # Every metric the operator's module defines, so that a new one cannot go unlisted here.
    operator = [m for m in vars(operator_metrics).values() if isinstance(m, MetricWrapperBase)]
    families = [f for r in registries for f in r.collect()]
    families += [f for c in [*operator, signer.DECISIONS] for f in c.collect()]
    for family in families:
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
    return names


def rule_file() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES_FILE.read_text())
    return loaded


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in rule_file()["groups"] for r in g["rules"] if "alert" in r]


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p["targets"]]


def test_every_metric_has_the_project_prefix() -> None:
    assert all(n.startswith("forensic_checkpoint_") for n in exported_series())


def test_rules_and_dashboard_use_only_exported_metrics() -> None:
    exported = exported_series()
    expressions = [r["expr"] for r in alert_rules()] + dashboard_expressions()
    assert len(expressions) > 15
    for expr in expressions:
        used = set(_METRIC.findall(expr))
        assert used, f"no forensic metric in {expr!r}"
        assert used <= exported, (expr, sorted(used - exported))


def test_documented_metrics_are_exported_and_exported_ones_documented() -> None:
    doc = METRICS_DOC.read_text()
    documented = set(re.findall(r"^\| `(forensic_[a-z0-9_]+)`", doc, flags=re.MULTILINE))
    exported = exported_series()
    assert documented <= exported, sorted(documented - exported)
    families = {n for n in exported if not n.endswith(("_bucket", "_sum", "_count"))}
    undocumented = {n for n in families if n not in documented and f"{n}_total" not in documented}
    assert not undocumented, sorted(undocumented)
    assert set(_METRIC.findall(doc)) <= exported, sorted(set(_METRIC.findall(doc)) - exported)


def test_documented_alerts_are_the_rule_files() -> None:
    """docs/metrics.md's alert table lists exactly the alerts of the rule file."""
    doc = METRICS_DOC.read_text()
    section = doc.split("## Alerts", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `(Forensic[A-Za-z]+)`", section, flags=re.MULTILINE)
    in_rules = [r["alert"] for r in alert_rules()]
    assert sorted(documented) == sorted(in_rules)
    assert len(set(in_rules)) == len(in_rules)
    assert "files/prometheus-rules.yaml" in section
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]


def test_prometheus_rule_template_carries_the_rule_file_and_extra_rules() -> None:
    assert not [d for d in documents(template()) if d["kind"] == "PrometheusRule"]
    extra = {"alert": "Mine", "expr": "up == 0", "labels": {"team": "sec"}}
    docs = documents(
        template(
            set_values=[
                "prometheusRule.enabled=true",
                "prometheusRule.labels.release=kube-prometheus",
                "prometheusRule.extraRules[0].alert=Mine",
                "prometheusRule.extraRules[0].expr=up == 0",
                "prometheusRule.extraRules[0].labels.team=sec",
            ]
        )
    )
    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    groups = rule["spec"]["groups"]
    assert groups[:-1] == rule_file()["groups"]
    assert groups[-1] == {"name": "forensic-checkpoint-extra", "rules": [extra]}


def test_grafana_dashboard_config_map() -> None:
    assert not [
        d
        for d in documents(template())
        if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]
    ]
    docs = documents(
        template(
            set_values=[
                "grafanaDashboard.enabled=true",
                "grafanaDashboard.namespace=monitoring",
            ]
        )
    )
    config_map = one(docs, "ConfigMap", "fc-forensic-checkpoint-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "monitoring"
    shipped = json.loads(config_map["data"]["forensic-checkpoint.json"])
    assert shipped == json.loads(DASHBOARD.read_text())


#: Expressions promtool refuses, and why; the Python check must refuse each too.
BROKEN = [
    "sum by (pod (forensic_checkpoint_agent_queue_depth)",  # unbalanced
    "rate(forensic_checkpoint_agent_captures_total)",  # instant vector for a range
    "sum(forensic_checkpoint_agent_queue_depth[5m])",  # range vector for an instant
    "increse(forensic_checkpoint_agent_captures_total[5m])",  # unknown function
    'forensic_checkpoint_agent_captures_total{outcome=~"("}',  # bad regex
    "forensic_checkpoint_agent_queue_depth[5x]",  # not a duration
    "forensic_checkpoint_agent_queue_depth and 1",  # set operator on a scalar
    "histogram_quantile(forensic_checkpoint_agent_queue_depth, 0.9)",
]


def test_python_promql_check_accepts_the_rules_and_dashboard() -> None:
    """The check that runs without promtool: every expression parses with the right type, and
    selects the metrics the regular expression above finds."""
    for expr in [r["expr"] for r in alert_rules()] + dashboard_expressions():
        assert promql.check(expr) in ("vector", "scalar"), expr
        assert promql.metric_names(expr) == set(_METRIC.findall(expr)), expr
    for rule in alert_rules():
        assert re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", rule.get("for", "0s")), rule


@pytest.mark.parametrize("expr", BROKEN)
def test_python_promql_check_refuses_broken_expressions(expr: str) -> None:
    with pytest.raises(promql.PromQLError):
        promql.check(expr)


def promtool() -> Path:
    tool = binaries.locate("promtool")
    # `make test` builds it (check-tools): its absence is a broken set-up, never a skip.
    assert os.access(tool, os.X_OK), f"{tool} is not built: run `make check-tools`"
    return tool


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    """The rule file, and the rules as the rendered PrometheusRule carries them."""
    docs = documents(template(set_values=["prometheusRule.enabled=true"]))
    rendered = tmp_path / "rendered-rules.yaml"
    rendered.write_text(yaml.safe_dump({"groups": one(docs, "PrometheusRule")["spec"]["groups"]}))
    for path in (RULES_FILE, rendered):
        result = subprocess.run(
            [str(promtool()), "check", "rules", "--lint=all", "--lint-fatal", str(path)],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout, result.stdout


@pytest.mark.parametrize("expr", BROKEN)
def test_promtool_refuses_what_the_python_check_refuses(tmp_path: Path, expr: str) -> None:
    """The checks are not vacuous, and the Python one agrees with promtool on these."""
    broken = rule_file()
    broken["groups"][0]["rules"][0]["expr"] = expr
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [str(promtool()), "check", "rules", str(path)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0, result.stdout


def test_helm_test_hook_checks_forensic_nodes_with_read_only_rights() -> None:
    docs = documents(template(include_tests=True))
    hooks = [d for d in docs if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    assert sorted(d["kind"] for d in hooks) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Pod",
        "ServiceAccount",
    ]
    pod = one(hooks, "Pod")
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["containers"][0]["args"] == ["nodes", "--require-ready"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    account = spec["serviceAccountName"]
    assert one(hooks, "ServiceAccount")["metadata"]["name"] == account
    binding = one(hooks, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": "forensic-checkpoint"}
    ]
    role = one(hooks, "ClusterRole", binding["roleRef"]["name"])
    assert role["rules"] == [
        {
            "apiGroups": ["forensic-checkpoint.dev"],
            "resources": ["forensicnodes"],
            "verbs": ["get", "list"],
        }
    ]
    # The ServiceAccount and its rights exist before the Pod runs, and go when it passed.
    for doc in hooks:
        annotations = doc["metadata"]["annotations"]
        assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
        if doc["kind"] != "Pod":
            assert int(annotations["helm.sh/hook-weight"]) < 0
    off = documents(template(set_values=["helmTest.enabled=false"], include_tests=True))
    # (The uninstall clean-up is a hook too, of pre-delete: test_uninstall_cleanup_render.py.)
    assert not [
        d for d in off if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
    ]
    deploy = documents((REPO / "deploy" / "forensic-checkpoint.yaml").read_text())
    assert not [d for d in deploy if "helm.sh/hook" in d["metadata"].get("annotations", {})]
