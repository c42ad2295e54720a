"""What the Dagster chart and dagster-k8s make of k8s/helm/values.yaml, rendered offline.

No Helm binary and no cluster here, so the parts of the chart's templates this project relies on are
mirrored in Python, each citing its template (chart 1.13.x, ``helm/dagster/templates``):

- ``configmap-instance.yaml``: the ``dagster.yaml`` blocks (run coordinator, concurrency, run
  monitoring, run retries, sensors, schedules, retention), validated by the tests with dagster's own
  schemas;
- ``helpers/instance/_run-launcher.tpl``: the ``K8sRunLauncher`` config;
- ``charts/dagster-user-deployments/templates/helpers/_helpers.tpl``
  (``dagsterUserDeployments.k8sContainerContext``): the container context the code location passes
  to its runs (``includeConfigInLaunchedRuns``).

The run pod is then built by dagster-k8s itself (``K8sContainerContext`` merges and
``construct_dagster_k8s_job``), in the order ``K8sRunLauncher`` uses.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml

from tests.deploy.kube import K8S_DIR, to_api_dict

VALUES_PATH = K8S_DIR / "helm" / "values.yaml"
SCHEMA_PATH = K8S_DIR / "helm" / "values.schema.json"
RELEASE = "videogen"
NAMESPACE = "videogen"
FULLNAME = f"{RELEASE}-dagster"  # dagster.fullname: release name + chart name
DAGSTER_HOME = "/opt/dagster/dagster_home"  # chart default global.dagsterHome
CODE_LOCATION_SERVICE_ACCOUNT = f"{FULLNAME}-user-deployments"


@cache
def values() -> dict[str, Any]:
    return yaml.safe_load(VALUES_PATH.read_text())


def user_deployment() -> dict[str, Any]:
    (deployment,) = values()["dagster-user-deployments"]["deployments"]
    return deployment


def user_code_image() -> str:
    image = user_deployment()["image"]
    return f"{image['repository']}:{image['tag']}"


def _camel_to_snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


# --- configmap-instance.yaml -----------------------------------------------------------------


def instance_config() -> dict[str, Any]:
    """The dagster.yaml blocks the chart renders from our values (configmap-instance.yaml)."""
    daemon = values()["dagsterDaemon"]
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    # helpers/instance/_run-coordinator.tpl: each key only when it is set (tag limits passed through
    # toYaml). With `concurrency` enabled the run limits live there instead (_concurrency.tpl fails
    # the render when both are set).
    coordinator_config = {
        name: queued[key]
        for key, name in (
            ("maxConcurrentRuns", "max_concurrent_runs"),
            ("tagConcurrencyLimits", "tag_concurrency_limits"),
            ("dequeueIntervalSeconds", "dequeue_interval_seconds"),
            ("dequeueUseThreads", "dequeue_use_threads"),
            ("dequeueNumWorkers", "dequeue_num_workers"),
        )
        if queued.get(key) not in (None, [])
    }
    monitoring = daemon["runMonitoring"]
    retries = daemon["runRetries"]
    rendered: dict[str, Any] = {
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": coordinator_config,
        },
        "run_monitoring": {
            "enabled": monitoring["enabled"],
            "start_timeout_seconds": monitoring["startTimeoutSeconds"],
            "cancel_timeout_seconds": monitoring["cancelTimeoutSeconds"],
            "max_resume_run_attempts": monitoring["maxResumeRunAttempts"],
            "poll_interval_seconds": monitoring["pollIntervalSeconds"],
            "free_slots_after_run_end_seconds": monitoring["freeSlotsAfterRunEndSeconds"],
        },
        "run_retries": {"enabled": retries["enabled"], **({"max_retries": retries["maxRetries"]} if retries.get("maxRetries") else {})},
        "sensors": {"use_threads": daemon["sensors"]["useThreads"], "num_workers": daemon["sensors"]["numWorkers"]},
        "schedules": {"use_threads": daemon["schedules"]["useThreads"], "num_workers": daemon["schedules"]["numWorkers"]},
        "telemetry": {"enabled": values()["telemetry"]["enabled"]},
        "python_logs": {
            "python_log_level": values()["pythonLogs"]["pythonLogLevel"],
            "managed_python_loggers": values()["pythonLogs"]["managedPythonLoggers"],
        },
    }
    concurrency = values().get("concurrency", {})
    if concurrency.get("enabled"):
        rendered["concurrency"] = concurrency_config(concurrency)
    retention = values()["retention"]
    if retention["enabled"]:
        rendered["retention"] = {
            "sensor": {"purge_after_days": retention["sensor"]["purgeAfterDays"]},
            "schedule": {"purge_after_days": retention["schedule"]["purgeAfterDays"]},
        }
    return rendered


def concurrency_config(concurrency: dict[str, Any]) -> dict[str, Any]:
    """helpers/instance/_concurrency.tpl (chart >= dagster-io/dagster#33194): ``pools`` and ``runs``
    with their keys in snake case, each only when set."""
    pools, runs = concurrency.get("pools", {}), concurrency.get("runs", {})
    rendered: dict[str, Any] = {}
    pool_block = {
        name: pools[key]
        for key, name in (("defaultLimit", "default_limit"), ("granularity", "granularity"),
                          ("opGranularityRunBuffer", "op_granularity_run_buffer"))
        if pools.get(key) is not None
    }
    if pool_block:
        rendered["pools"] = pool_block
    run_block: dict[str, Any] = {}
    if runs.get("maxConcurrentRuns") is not None:
        run_block["max_concurrent_runs"] = runs["maxConcurrentRuns"]
    if runs.get("tagConcurrencyLimits"):
        run_block["tag_concurrency_limits"] = [
            {"key": limit["key"], **({"value": limit["value"]} if limit.get("value") else {}), "limit": limit["limit"]}
            for limit in runs["tagConcurrencyLimits"]
        ]
    if run_block:
        rendered["runs"] = run_block
    return rendered


# --- helpers/instance/_run-launcher.tpl ------------------------------------------------------


def run_launcher_config() -> dict[str, Any]:
    """The ``run_launcher.config`` block of dagster.yaml for K8sRunLauncher."""
    launcher = values()["runLauncher"]["config"]["k8sRunLauncher"]
    config: dict[str, Any] = {
        "load_incluster_config": launcher["loadInclusterConfig"],
        "job_namespace": launcher.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": launcher["imagePullPolicy"],
        "service_account_name": FULLNAME,
        "dagster_home": DAGSTER_HOME,
        "instance_config_map": f"{FULLNAME}-instance",
        "postgres_password_secret": values()["global"]["postgresqlSecretName"],
        "env_config_maps": [f"{FULLNAME}-pipeline-env", *(m["name"] for m in launcher["envConfigMaps"])],
        "env_secrets": [s["name"] for s in launcher["envSecrets"]],
        "env_vars": list(launcher["envVars"]),
        "volume_mounts": list(launcher["volumeMounts"]),
        "volumes": list(launcher["volumes"]),
    }
    for key in ("labels", "resources", "securityContext", "schedulerName", "failPodOnRunFailure"):
        if launcher.get(key) is not None:
            config[_camel_to_snake(key)] = launcher[key]
    if launcher.get("runK8sConfig"):
        config["run_k8s_config"] = {_camel_to_snake(k): v for k, v in launcher["runK8sConfig"].items()}
    return config


# --- dagster-user-deployments: dagsterUserDeployments.k8sContainerContext --------------------


def code_location_container_context() -> dict[str, Any]:
    """The container context the code server passes to the runs it launches."""
    deployment = user_deployment()
    k8s: dict[str, Any] = {
        "image_pull_policy": deployment["image"]["pullPolicy"],
        "env_config_maps": [f"{FULLNAME}-{deployment['name']}-user-env", *(m["name"] for m in deployment.get("envConfigMaps", []))],
        "env_secrets": [s["name"] for s in deployment.get("envSecrets", [])],
        "namespace": NAMESPACE,
        "service_account_name": CODE_LOCATION_SERVICE_ACCOUNT,
    }
    for key in ("volumeMounts", "volumes", "labels", "resources"):
        if deployment.get(key):
            k8s[_camel_to_snake(key)] = deployment[key]
    return {"k8s": k8s}


# --- pods, built by dagster-k8s --------------------------------------------------------------


def _launcher_context():
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import UserDefinedDagsterK8sConfig

    config = run_launcher_config()
    return K8sContainerContext(
        image_pull_policy=config["image_pull_policy"],
        service_account_name=config["service_account_name"],
        env_config_maps=config["env_config_maps"],
        env_secrets=config["env_secrets"],
        env_vars=config["env_vars"],
        volume_mounts=config["volume_mounts"],
        volumes=config["volumes"],
        labels=config.get("labels"),
        namespace=config["job_namespace"],
        resources=config.get("resources"),
        security_context=config.get("security_context"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(config.get("run_k8s_config", {})),
    )


def run_container_context():
    """K8sContainerContext.create_for_run without run tags: launcher config, then code location's."""
    from dagster_k8s.container_context import K8sContainerContext

    return _launcher_context().merge(K8sContainerContext.create_from_config(code_location_container_context()))


def _job_config(image: str):
    from dagster_k8s.job import DagsterK8sJobConfig

    config = run_launcher_config()
    return DagsterK8sJobConfig(
        job_image=image,
        dagster_home=config["dagster_home"],
        instance_config_map=config["instance_config_map"],
        postgres_password_secret=config["postgres_password_secret"],
    )


def render_run_job(run_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """The Kubernetes Job K8sRunLauncher creates for a run (K8sRunLauncher._launch_k8s_job_with_args)."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import construct_dagster_k8s_job, get_user_defined_k8s_config

    context = run_container_context().merge(
        K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(run_tags or {}))
    )
    job = construct_dagster_k8s_job(
        job_config=_job_config(user_code_image()),
        args=["dagster", "api", "execute_run", "{}"],
        job_name="dagster-run-0123456789abcdef",
        pod_name="dagster-run-0123456789abcdef",
        component="run_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": "generate_video", "dagster/run-id": "0123456789abcdef"},
        env_vars=[{"name": "DAGSTER_RUN_JOB_NAME", "value": "generate_video"}],
    )
    return to_api_dict(job)
