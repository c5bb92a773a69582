"""The files under deploy/: Prometheus config, alert rules and their unit tests (promtool),
the Grafana dashboard, and the Kubernetes gateway.toml.

Metric names are checked against the table in ARCHITECTURE.md, the contract between the
gateway and everything that watches it. promtool comes from Debian's `prometheus` package,
which scripts/test installs: these tests fail, never skip, without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "privacy-gateway.json"

# Labels an alert annotation may template: all bounded, none names a device or a value.
ANNOTATION_LABELS = frozenset({"product", "kind", "sink", "region", "instance", "job", "damage"})


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path is not None, (
        "promtool not found: install Debian's `prometheus` package (scripts/test does)"
    )
    return path


def _run_promtool(*args: str, cwd: Path) -> None:
    proc = subprocess.run(
        [_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"


# -- metric names ---------------------------------------------------------------------------


def _architecture_metrics() -> frozenset[str]:
    """Series names the metrics table of ARCHITECTURE.md allows, plus Prometheus's `up`."""
    names = {"up"}
    for line in (REPO / "ARCHITECTURE.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`gateway_"):
            continue
        for name in re.findall(r"`(gateway_[a-z0-9_]+)`", cells[0]):
            names.add(name)
            if cells[1] == "histogram":
                names.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    assert len(names) > 15, "metrics table not found in ARCHITECTURE.md"
    return frozenset(names)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_IDENT = re.compile(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "atan2"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (function names, keywords, label
    names and Grafana variables are not metric names)."""
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _VARIABLE.sub(" ", text)
    return {
        m.group(1)
        for m in _IDENT.finditer(text)
        if m.group(2) is None and m.group(1).lower() not in _KEYWORDS
    }


def test_metric_names_parser() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, sink) (rate(gateway_sink_latency_seconds_bucket"
        '{product=~"$product", x="a b"}[$__rate_interval]))) / on (instance) group_left (le) '
        "(gateway_inflight_limit > 0) unless up offset 1h or vector(1e3) * 5"
    )
    assert metric_names(expr) == {
        "gateway_sink_latency_seconds_bucket",
        "gateway_inflight_limit",
        "up",
    }


# -- Prometheus -----------------------------------------------------------------------------


def test_promtool_check_config(tmp_path: Path) -> None:
    # From another directory: rule_files must resolve relative to prometheus.yml.
    _run_promtool("check", "config", str(PROMETHEUS / "prometheus.yml"), cwd=tmp_path)


def test_promtool_check_rules(tmp_path: Path) -> None:
    _run_promtool("check", "rules", str(PROMETHEUS / "alerts.yml"), cwd=tmp_path)


def test_promtool_test_rules(tmp_path: Path) -> None:
    _run_promtool("test", "rules", str(PROMETHEUS / "alerts_test.yml"), cwd=tmp_path)


def _yaml_exprs(text: str) -> Iterator[str]:
    """`expr:` values of a rules file: inline, or a block scalar (`|`, `>`)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if m is None:
            continue
        indent, rest = len(m.group(1)), m.group(2).strip()
        if rest and rest[0] not in "|>":
            yield rest.strip("'\"")
            continue
        block = []
        for nxt in lines[i + 1 :]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                break
            block.append(nxt.strip())
        yield " ".join(block).strip()


def _alert_names(text: str) -> list[str]:
    return re.findall(r"^\s*- alert:\s*(\w+)\s*$", text, flags=re.MULTILINE)


def test_alert_rules_use_only_architecture_metrics() -> None:
    allowed = _architecture_metrics()
    text = (PROMETHEUS / "alerts.yml").read_text()
    exprs = list(_yaml_exprs(text))
    assert len(exprs) == len(_alert_names(text)) >= 8
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert names <= allowed, f"{sorted(names - allowed)} not in ARCHITECTURE.md: {expr}"


def test_alerts_have_severity_and_annotations_without_device() -> None:
    text = (PROMETHEUS / "alerts.yml").read_text()
    blocks = re.split(r"^\s*- alert:", text, flags=re.MULTILINE)[1:]
    assert blocks
    for block in blocks:
        name = block.split()[0]
        assert re.search(r"^\s*severity:\s*(critical|warning|info)\s*$", block, re.M), name
        assert re.search(r"^\s*summary:", block, re.MULTILINE), name
        assert re.search(r"^\s*description:", block, re.MULTILINE), name
    templated = set(re.findall(r"\$labels\.(\w+)", text))
    assert templated <= ANNOTATION_LABELS, sorted(templated - ANNOTATION_LABELS)
    assert "device" not in " ".join(re.findall(r"\{\{[^}]*\}\}", text))


def test_every_alert_has_a_firing_test_and_some_do_not_fire() -> None:
    alerts = set(_alert_names((PROMETHEUS / "alerts.yml").read_text()))
    tests = (PROMETHEUS / "alerts_test.yml").read_text()
    firing = set(re.findall(r"alertname:\s*(\w+)\s*\n\s*exp_alerts:\s*\n\s*- exp_labels", tests))
    silent = set(re.findall(r"alertname:\s*(\w+)\s*\n\s*exp_alerts:\s*\[\]", tests))
    assert alerts - firing == set(), "alerts never shown firing"
    assert firing <= alerts
    assert silent, "no test shows an alert not firing"


# -- Grafana --------------------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard_exprs() -> list[str]:
    return [
        target["expr"]
        for panel in _panels(_dashboard()["panels"])
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def test_dashboard_parses() -> None:
    dash = _dashboard()
    assert dash["schemaVersion"] == 39
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["product"]["type"] == "query"
    assert variables["product"]["includeAll"] is True
    ids = [p["id"] for p in _panels(dash["panels"])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    exprs = _dashboard_exprs()
    assert len(exprs) >= 20
    assert any("histogram_quantile(0.99," in e for e in exprs)
    assert any("histogram_quantile(0.5," in e for e in exprs)


def test_dashboard_uses_only_architecture_metrics() -> None:
    allowed = _architecture_metrics()
    used: set[str] = set()
    for expr in _dashboard_exprs():
        names = metric_names(expr)
        assert names, expr
        assert names <= allowed, f"{sorted(names - allowed)} not in ARCHITECTURE.md: {expr}"
        used |= names
    # Every metric of the contract is on the dashboard somewhere.
    histogram_parts = {n for n in allowed if n.endswith(("_sum", "_count"))}
    assert allowed - used - histogram_parts - {"gateway_sink_latency_seconds"} == set()


def test_dashboard_exprs_are_valid_promql(tmp_path: Path) -> None:
    grafana_vars = {
        "$__rate_interval": "5m",
        "$__interval": "1m",
        "$__range": "1h",
        "$product": ".*",
    }
    rules = []
    for i, expr in enumerate(_dashboard_exprs()):
        for var, value in grafana_vars.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:panel_{i}", "expr": expr})
    # JSON is YAML: promtool parses every expression.
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    _run_promtool("check", "rules", str(path), cwd=tmp_path)


# -- Kubernetes -----------------------------------------------------------------------------


def test_kubernetes_gateway_toml_loads() -> None:
    from gateway.config import load_config

    config = load_config(DEPLOY / "kubernetes" / "gateway.toml")
    assert config.metrics_listen.endswith(":9108")
    assert config.workers == 1
    assert config.source.shared  # 3 replicas split the load
    assert config.source.group == "gateway"
    assert config.source.client_id == ""  # per replica: privacy-gateway-<pod name>
    assert config.state_dir == "/var/lib/privacy-gateway"


def test_kubernetes_master_key_only_from_a_secret() -> None:
    sts = (DEPLOY / "kubernetes" / "statefulset.yaml").read_text()
    m = re.search(r"- name: GATEWAY_MASTER_KEY\n\s*valueFrom:\n\s*secretKeyRef:", sts)
    assert m is not None, "GATEWAY_MASTER_KEY must come from a Secret"
    for name in ("statefulset.yaml", "kustomization.yaml", "gateway.toml"):
        text = (DEPLOY / "kubernetes" / name).read_text()
        assert not re.search(r"[0-9a-fA-F]{64}", text), f"{name}: key material?"
    toml = (DEPLOY / "kubernetes" / "gateway.toml").read_text()
    assert not re.search(r"^[^#]*master", toml, flags=re.MULTILINE | re.IGNORECASE)
