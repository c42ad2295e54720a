"""Monitoring (k8s/monitoring/, docs/operations.md) checked with Prometheus's and Alertmanager's own tools.

- ``promtool check rules`` and ``promtool test rules`` (unit tests: every alert fires on some series
  and stays quiet on others; a rules file with a broken threshold fails them);
- ``amtool check-config`` and ``amtool config routes test`` (storage → email, critical → pager,
  warning → chat), secrets only by file;
- every PromQL expression of every dashboard panel parses (``promtool check rules`` on a rule file
  made of them);
- every metric name used by the rules and the dashboards is one the code exports (the API's metrics
  and the platform collector's families, listed in-process over a real PostgreSQL database);
- the generated PrometheusRule and dashboards ConfigMap are in sync with their sources, the
  ServiceMonitor scrapes the API's Service, the PodMonitor the port on which every Ray GPU worker's
  generation replica serves its metrics, every runbook link points at a section of the doc.

The tools come from Debian's ``prometheus`` and ``prometheus-alertmanager`` packages (installed by
scripts/bootstrap.sh); a missing tool fails these tests, it does not skip them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.kube import K8S_DIR, REPO_ROOT, load_documents

MONITORING = K8S_DIR / "monitoring"
RULES = MONITORING / "rules.yaml"
RULES_TEST = MONITORING / "rules_test.yaml"
ALERTMANAGER = MONITORING / "alertmanager.yml"
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))
OPERATIONS_DOC = REPO_ROOT / "docs" / "operations.md"
RUNBOOK_PREFIX = "https://git.example.com/videogen/videogen/-/blob/main/docs/operations.md#"
EXPECTED_ALERTS = {
    "APIDown", "APIHighErrorRate", "WorkerQueueBacklog", "StorageUsageThreshold", "GenerationErrorRate",
    "GenerationP95TooSlow", "GenerationModelThrashing", "JobStuckWithoutHeartbeat", "DagsterDaemonDown", "KpiAssetCheckFailed", "KpiCheckFailed", "KpiTableStale",
}
# Series Prometheus itself makes for every target.
PROMETHEUS_SERIES = {"up"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed: it comes with Debian's prometheus / prometheus-alertmanager "
                    f"packages (scripts/bootstrap.sh installs them; apt-get install prometheus prometheus-alertmanager)")
    return path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)


def rule_groups() -> list[dict[str, Any]]:
    return yaml.safe_load(RULES.read_text())["groups"]


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def dashboard_exprs() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) of every target of every panel."""
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                found.append((path.name, panel["title"], target["expr"]))
    return found


# --- promtool -----------------------------------------------------------------------------------


def test_promtool_checks_the_rules():
    result = run(tool("promtool"), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in rule_groups())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass():
    result = run(tool("promtool"), "test", "rules", RULES_TEST.name, cwd=MONITORING)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("old", "new"),
    [('status_class="5xx"}[5m])) / sum(rate(videogen_api_requests_total[5m])) > 0.05',
      'status_class="5xx"}[5m])) / sum(rate(videogen_api_requests_total[5m])) > 0.5'),  # would not fire
     ('sum(max by (status, model) (videogen_jobs{status=~"pending|queued"})) > 20',
      'sum(videogen_jobs{status=~"pending|queued"}) > 20'),  # adds replicas up: fires when it must not
     ("expr: vector(1099511627776)", "expr: vector(2099511627776)")],  # another capacity: 43 %, no alert
    ids=["api-threshold", "backlog-sums-replicas", "bucket-capacity"],
)
def test_the_unit_tests_catch_a_broken_rule(tmp_path, old, new):
    text = RULES.read_text()
    assert old in text
    (tmp_path / "rules.yaml").write_text(text.replace(old, new))
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    result = run(tool("promtool"), "test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_fires_and_one_that_stays_quiet():
    fired: dict[str, int] = {}
    quiet: dict[str, int] = {}
    for case in yaml.safe_load(RULES_TEST.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            counter = fired if check["exp_alerts"] else quiet
            counter[check["alertname"]] = counter.get(check["alertname"], 0) + 1
    names = {rule["alert"] for rule in alerts()}
    assert names == EXPECTED_ALERTS
    assert sorted(names - set(fired)) == [] and sorted(names - set(quiet)) == []


def test_every_alert_has_for_severity_summary_and_runbook():
    for rule in alerts():
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name}: no `for:`"
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert len(rule["annotations"]["summary"]) > 40, f"{name}: the summary must say what to do"
        assert rule["annotations"]["runbook_url"].startswith(RUNBOOK_PREFIX), name
    storage = [r for r in alerts() if r["labels"].get("category") == "storage"]
    assert [r["alert"] for r in storage] == ["StorageUsageThreshold"]


def github_anchor(heading: str) -> str:
    """The id GitHub (and GitLab) give a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_every_runbook_link_points_at_a_section_of_the_operations_doc():
    doc = OPERATIONS_DOC.read_text()
    anchors = {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", doc, re.MULTILINE)}
    for rule in alerts():
        anchor = rule["annotations"]["runbook_url"].removeprefix(RUNBOOK_PREFIX)
        assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in docs/operations.md"
        section = doc.split(f"### {rule['alert']}\n", 1)[1].split("\n### ", 1)[0]
        for part in ("**Means:**", "**First three things to check:**", "1. ", "2. ", "3. ", "**Resolve:**"):
            assert part in section, f"{rule['alert']}: the runbook lacks {part!r}"
    assert github_anchor("APIHighErrorRate") == "apihigherrorrate"


# --- amtool -------------------------------------------------------------------------------------


def test_amtool_checks_the_alertmanager_config():
    result = run(tool("amtool"), "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [(["severity=critical", "alertname=APIDown"], "pager"),
     (["severity=warning", "alertname=KpiTableStale"], "chat"),
     (["severity=warning", "category=storage", "alertname=StorageUsageThreshold"], "storage-email"),
     (["severity=critical", "category=storage"], "storage-email")],
)
def test_alerts_are_routed_by_category_then_severity(labels, receiver):
    result = run(tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_every_alert_of_the_rules_reaches_the_receiver_of_its_labels():
    expected = {"critical": "pager", "warning": "chat"}
    for rule in alerts():
        labels = [f"alertname={rule['alert']}"] + [f"{k}={v}" for k, v in rule["labels"].items()]
        result = run(tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
        want = "storage-email" if rule["labels"].get("category") == "storage" else expected[rule["labels"]["severity"]]
        assert result.stdout.strip() == want, rule["alert"]


def test_alertmanager_secrets_are_files_never_values():
    config = yaml.safe_load(ALERTMANAGER.read_text())
    secret_keys = {"routing_key", "service_key", "api_url", "auth_password", "smtp_auth_password", "auth_secret",
                   "password", "bearer_token", "url"}

    def walk(node: Any, path: str) -> list[str]:
        if isinstance(node, dict):
            return [p for k, v in node.items() for p in ([f"{path}.{k}"] if k in secret_keys else []) + walk(v, f"{path}.{k}")]
        if isinstance(node, list):
            return [p for i, v in enumerate(node) for p in walk(v, f"{path}[{i}]")]
        return []

    assert walk(config, "") == []
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["pager"]["pagerduty_configs"][0]["routing_key_file"].startswith("/etc/alertmanager/secrets/")
    assert receivers["chat"]["slack_configs"][0]["api_url_file"].startswith("/etc/alertmanager/secrets/")
    assert receivers["storage-email"]["email_configs"][0]["auth_password_file"].startswith("/etc/alertmanager/secrets/")


# --- dashboards ---------------------------------------------------------------------------------


def check_exprs_with_promtool(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": expr} for i, expr in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-exprs.yaml"
    path.write_text(yaml.safe_dump(rules))
    return run(tool("promtool"), "check", "rules", str(path))


def test_every_dashboard_expression_parses(tmp_path):
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    result = check_exprs_with_promtool([expr for _, _, expr in exprs], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # ...and promtool does reject a broken one.
    broken = check_exprs_with_promtool(["sum by (le (rate(videogen_api_requests_total[5m]))"], tmp_path)
    assert broken.returncode != 0


def test_dashboards_cover_the_operations_views():
    titles = {json.loads(p.read_text())["title"] for p in DASHBOARDS}
    assert titles == {"videogen: platform overview", "videogen: API", "videogen: generation workers", "videogen: KPIs"}
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    overview = json.loads((MONITORING / "dashboards" / "platform-overview.json").read_text())
    panel_titles = " ".join(p["title"].lower() for p in overview["panels"])
    for view in ("waiting", "throughput", "success rate", "percentiles", "credits", "gpu hours"):
        assert view in panel_titles, view
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}", (path.name, panel["title"])


def test_grafana_provisioning_points_at_the_dashboards():
    provider = yaml.safe_load((MONITORING / "grafana-provisioning" / "dashboards" / "videogen.yaml").read_text())
    assert provider["apiVersion"] == 1
    [entry] = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"].startswith("/")


def test_generated_files_are_in_sync():
    from videogen.devtools.monitoring import CONFIGMAP_PATH, PROMETHEUS_RULE_PATH, dashboards_configmap, prometheus_rule

    hint = "run `python -m videogen.devtools.monitoring`"
    assert CONFIGMAP_PATH.read_text() == dashboards_configmap(), hint
    assert PROMETHEUS_RULE_PATH.read_text() == prometheus_rule(), hint
    [configmap] = load_documents(CONFIGMAP_PATH)
    assert sorted(configmap["data"]) == [p.name for p in DASHBOARDS]
    assert all(json.loads(configmap["data"][p.name]) == json.loads(p.read_text()) for p in DASHBOARDS)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"


# --- Prometheus Operator objects ----------------------------------------------------------------


def test_prometheusrule_holds_exactly_the_groups_of_the_rule_file():
    [rule] = load_documents(MONITORING / "prometheusrule.yaml")
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["metadata"]["namespace"] == "videogen"
    assert set(rule["spec"]) == {"groups"}
    assert rule["spec"]["groups"] == rule_groups()


def test_servicemonitor_scrapes_the_api_service():
    from tests.deploy.test_api import api_objects, selects, the

    [monitor] = load_documents(MONITORING / "servicemonitor.yaml")
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    service = the(api_objects(), "Service")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # The job label Prometheus gives the series is the Service's name: what APIDown looks for.
    assert "jobLabel" not in monitor["spec"]
    assert 'up{job="' + service["metadata"]["name"] + '"}' in RULES.read_text()


def test_podmonitor_scrapes_the_replica_metrics_port_of_every_gpu_worker():
    from tests.deploy.test_api import selects
    from tests.deploy.test_rayservice import application, gpu_group, head_template, ray_container, rayservice

    [monitor] = load_documents(MONITORING / "podmonitor.yaml")
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [rayservice()["metadata"]["namespace"]]
    selector = monitor["spec"]["selector"]["matchLabels"]
    worker = gpu_group()["template"]
    assert selects(selector, worker["metadata"]["labels"])
    assert not selects(selector, head_template()["metadata"]["labels"])  # the head runs no replica
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    ports = {p["name"]: p["containerPort"] for p in ray_container(worker)["ports"]}
    # The named port is the one on which build_app's replicas serve their registry.
    assert ports[endpoint["port"]] == application()["args"]["metrics_port"] != ports["serve"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}


# --- metric names -------------------------------------------------------------------------------

PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (not functions, label names, keywords or numbers)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end():].lstrip()
        if following.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word) or match.start() > 0 and text[match.start() - 1].isdigit():
            continue  # a duration or the exponent of a number
        names.add(word)
    return names


def test_metric_name_extraction():
    assert metric_names('histogram_quantile(0.95, max by (model, le) (rate(a_bucket{x="y"}[30m]))) > 3e2 and '
                        'on() max by (model) (b_count) >= 5') == {"a_bucket", "b_count"}
    assert metric_names('time() - max by (table) (c) > 26 * 3600') == {"c"}


def exported_series_names(engine) -> set[str]:
    """Every series name a scrape can carry: the API's metrics and the platform collector's families
    (collected over a real, migrated database), a generation replica's metrics (its own registry; the
    GPU memory gauges only exist on a replica that initialized CUDA), by family type."""
    from prometheus_client import REGISTRY

    import api.metrics  # noqa: F401  (registers the API's metrics in the default registry)
    from videogen.generation.metrics import GPU_MEMORY_BYTES, GPU_MEMORY_PEAK_BYTES, GenerationMetrics
    from videogen.metrics.platform import PlatformCollector

    families = [f for f in REGISTRY.collect() if f.name.startswith("videogen_")]
    families += list(PlatformCollector(engine, heartbeat_timeout_s=60, cache_s=0).collect())
    families += [f for f in GenerationMetrics().registry.collect()]
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    return {family.name + suffix for family in families for suffix in suffixes[family.type]} | {
        GPU_MEMORY_BYTES, GPU_MEMORY_PEAK_BYTES}


def test_every_metric_used_by_rules_and_dashboards_is_exported(engine):
    exported = exported_series_names(engine)
    assert {"videogen_api_requests_total", "videogen_jobs", "videogen_generation_duration_seconds_bucket",
            "videogen_bucket_used_bytes", "videogen_kpi_table_last_computed_timestamp_seconds",
            "videogen_generation_denoising_steps_total", "videogen_generation_model_load_seconds_bucket",
            "videogen_generation_requests_in_flight"} <= exported
    recorded = {rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule}
    known = exported | recorded | PROMETHEUS_SERIES
    used = {("rules.yaml", rule.get("alert") or rule["record"], name)
            for group in rule_groups() for rule in group["rules"] for name in metric_names(str(rule["expr"]))}
    used |= {(file, title, name) for file, title, expr in dashboard_exprs() for name in metric_names(expr)}
    assert sorted(u for u in used if u[2] not in known) == []
    assert len({name for _, _, name in used}) >= 15
