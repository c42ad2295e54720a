"""The one settings object: variables, defaults, validation messages, secrets, and the docs that list them."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest

from resources.generation import GenerationResource
from resources.jobs import JobsResource
from resources.spark import SparkSessionResource
from resources.storage import StorageResource
from videogen.config import (
    DEFAULT_DATABASE_URL,
    ConfigError,
    Settings,
    env_var,
    format_seconds_list,
    load_settings,
    setting_default,
)
from videogen.kpi.config import SparkConfig

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "s3cr3t-Pa55"


def test_defaults_without_any_variable():
    settings = load_settings({})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.home == Path.home() / ".cache" / "videogen"
    assert settings.model_cache == settings.home / "models"
    assert settings.storage_root == settings.home / "storage"
    assert (settings.storage_backend, settings.bucket, settings.s3_endpoint_url, settings.s3_region) == (
        "local", "jobs-outputs", None, "us-east-1")
    assert (settings.presign_expiry_s, settings.create_bucket, settings.codec) == (3600, False, "h264")
    assert (settings.device, settings.cpu_offload, settings.vae_tiling, settings.model_registry_path) == (
        "auto", False, False, "")
    assert settings.retry_delays_s == (5.0, 15.0, 45.0)
    assert (settings.heartbeat_timeout_s, settings.retention_days, settings.sensor_batch_size) == (90.0, 30, 200)
    assert (settings.sensor_wait_s, settings.sensor_poll_s, settings.orchestration_nice) == (4.0, 0.1, 10)
    assert settings.pipeline_cache_size == 1
    assert settings.serve_num_cpus == 2
    assert (settings.spark_master, settings.spark_app_name, settings.jdbc_jar) == (
        "local[*]", "videogen-kpis", "/usr/share/java/postgresql.jar")
    assert (settings.spark_jars, settings.spark_conf, settings.kpi_parquet_path, settings.s3a_endpoint) == (
        (), {}, None, None)
    assert not settings.model_fields_set
    assert hash(settings) == hash(load_settings({})) and settings == load_settings({})


def test_every_variable_is_read_under_its_name():
    settings = load_settings({
        "DATABASE_URL": "postgres://u:pw@db:5432/videogen",
        "VIDEOGEN_HOME": "/srv/videogen",
        "VIDEOGEN_STORAGE_BACKEND": "S3",
        "VIDEOGEN_BUCKET": "outputs",
        "VIDEOGEN_S3_ENDPOINT_URL": "http://minio:9000",
        "AWS_DEFAULT_REGION": "eu-west-3",
        "VIDEOGEN_PRESIGN_EXPIRY_S": "600",
        "VIDEOGEN_S3_CREATE_BUCKET": "1",
        "VIDEOGEN_CODEC": "HEVC",
        "VIDEOGEN_DEVICE": "cuda",
        "VIDEOGEN_CPU_OFFLOAD": "true",
        "VIDEOGEN_VAE_TILING": "yes",
        "VIDEOGEN_MODEL_REGISTRY": "/etc/videogen/models.json",
        "VIDEOGEN_PIPELINE_CACHE_SIZE": "2",
        "VIDEOGEN_RETRY_DELAYS_S": "1, 2.5 ,10",
        "VIDEOGEN_HEARTBEAT_TIMEOUT_S": "30",
        "VIDEOGEN_RETENTION_DAYS": "7",
        "VIDEOGEN_SENSOR_BATCH_SIZE": "50",
        "SPARK_MASTER": "spark://spark:7077",
        "VIDEOGEN_SPARK_JARS": "a.jar, b.jar,",
        "VIDEOGEN_SPARK_CONF": '{"spark.executor.instances": 4, "spark.eventLog.enabled": true}',
        "VIDEOGEN_KPI_PARQUET_PATH": "s3a://analytics/kpis",
        "UNRELATED": "ignored",
    })
    assert settings.database_url == "postgresql+psycopg2://u:pw@db:5432/videogen", "normalized for SQLAlchemy"
    # Derived defaults follow VIDEOGEN_HOME.
    assert (settings.model_cache, settings.storage_root) == (Path("/srv/videogen/models"), Path("/srv/videogen/storage"))
    assert (settings.storage_backend, settings.bucket, settings.s3_endpoint_url, settings.s3_region) == (
        "s3", "outputs", "http://minio:9000", "eu-west-3")
    assert (settings.presign_expiry_s, settings.create_bucket, settings.codec) == (600, True, "h265")
    assert (settings.device, settings.cpu_offload, settings.vae_tiling) == ("cuda", True, True)
    assert (settings.model_registry_path, settings.pipeline_cache_size) == ("/etc/videogen/models.json", 2)
    assert settings.retry_delays_s == (1.0, 2.5, 10.0)
    assert (settings.heartbeat_timeout_s, settings.retention_days, settings.sensor_batch_size) == (30.0, 7, 50)
    assert (settings.spark_master, settings.spark_jars) == ("spark://spark:7077", ("a.jar", "b.jar"))
    assert settings.spark_conf == {"spark.executor.instances": "4", "spark.eventLog.enabled": "true"}
    assert settings.kpi_parquet_path == "s3a://analytics/kpis"
    assert settings.is_set("spark_master") and not settings.is_set("spark_app_name")


def test_blank_values_and_explicit_paths():
    settings = load_settings({"VIDEOGEN_BUCKET": "  ", "VIDEOGEN_S3_ENDPOINT_URL": "", "VIDEOGEN_HOME": "/h",
                              "VIDEOGEN_MODEL_CACHE": "~/models"})
    assert settings.bucket == "jobs-outputs" and settings.s3_endpoint_url is None
    assert settings.model_cache == Path.home() / "models" and settings.storage_root == Path("/h/storage")


def test_load_settings_reads_os_environ_by_default_and_only_the_mapping_otherwise(monkeypatch):
    monkeypatch.setenv("VIDEOGEN_RETENTION_DAYS", "12")
    assert load_settings().retention_days == 12
    assert Settings().retention_days == 12
    assert load_settings({}).retention_days == setting_default("retention_days")
    assert Settings(retention_days=3).retention_days == 3, "keywords win over the environment"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VIDEOGEN_RETRY_DELAYS_S": "abc"},
         "VIDEOGEN_RETRY_DELAYS_S: expected non-negative comma-separated seconds such as '5,15,45', got 'abc'"),
        ({"VIDEOGEN_RETRY_DELAYS_S": "5,-1"}, "VIDEOGEN_RETRY_DELAYS_S: .* such as '5,15,45', got '5,-1'"),
        ({"VIDEOGEN_RETENTION_DAYS": "-1"}, "VIDEOGEN_RETENTION_DAYS: Input should be greater than or equal to 1, got '-1'"),
        ({"VIDEOGEN_RETENTION_DAYS": "thirty"}, "VIDEOGEN_RETENTION_DAYS: Input should be a valid integer.*got 'thirty'"),
        ({"VIDEOGEN_STORAGE_BACKEND": "gcs"}, "VIDEOGEN_STORAGE_BACKEND: Input should be 'local' or 's3', got 'gcs'"),
        ({"VIDEOGEN_CODEC": "av1"}, "VIDEOGEN_CODEC: unknown codec 'av1'; choose one of h264, h265"),
        ({"VIDEOGEN_DEVICE": "tpu"}, "VIDEOGEN_DEVICE: Input should be 'auto', 'cpu' or 'cuda', got 'tpu'"),
        ({"VIDEOGEN_CPU_OFFLOAD": "maybe"}, "VIDEOGEN_CPU_OFFLOAD: Input should be a valid boolean.*got 'maybe'"),
        ({"VIDEOGEN_HEARTBEAT_TIMEOUT_S": "0"}, "VIDEOGEN_HEARTBEAT_TIMEOUT_S: Input should be greater than 0"),
        ({"VIDEOGEN_SENSOR_BATCH_SIZE": "0"}, "VIDEOGEN_SENSOR_BATCH_SIZE: Input should be greater than or equal to 1"),
        ({"VIDEOGEN_SENSOR_WAIT_S": "-1"}, "VIDEOGEN_SENSOR_WAIT_S: Input should be greater than or equal to 0, got '-1'"),
        ({"VIDEOGEN_SENSOR_WAIT_S": "5"}, "VIDEOGEN_SENSOR_WAIT_S: Input should be less than 5, got '5'"),
        ({"VIDEOGEN_SENSOR_POLL_S": "0"}, "VIDEOGEN_SENSOR_POLL_S: Input should be greater than 0, got '0'"),
        ({"VIDEOGEN_ORCHESTRATION_NICE": "20"},
         "VIDEOGEN_ORCHESTRATION_NICE: Input should be less than or equal to 19, got '20'"),
        ({"VIDEOGEN_ORCHESTRATION_NICE": "-5"},
         "VIDEOGEN_ORCHESTRATION_NICE: Input should be greater than or equal to 0, got '-5'"),
        ({"VIDEOGEN_PIPELINE_CACHE_SIZE": "0"}, "VIDEOGEN_PIPELINE_CACHE_SIZE: Input should be greater than or equal to 1"),
        ({"VIDEOGEN_PRESIGN_EXPIRY_S": "999999"}, "VIDEOGEN_PRESIGN_EXPIRY_S: expires_s must be an integer from 1 to 604800"),
        ({"VIDEOGEN_BUCKET": "Jobs_Outputs"}, "VIDEOGEN_BUCKET: invalid bucket name 'Jobs_Outputs'"),
        ({"VIDEOGEN_SPARK_CONF": "[1, 2]"}, "VIDEOGEN_SPARK_CONF must be a JSON object"),
        ({"VIDEOGEN_SPARK_EXECUTOR_INSTANCES": "two"}, "VIDEOGEN_SPARK_EXECUTOR_INSTANCES: Input should be a valid integer"),
    ],
)
def test_invalid_values_are_named_with_what_is_expected(env, message):
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(env)
    assert len(caught.value.problems) == 1, caught.value.problems
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as caught:
        load_settings({"VIDEOGEN_RETENTION_DAYS": "-1", "VIDEOGEN_DEVICE": "tpu", "VIDEOGEN_STORAGE_BACKEND": "gcs"})
    assert [problem.split(":")[0] for problem in caught.value.problems] == [
        "VIDEOGEN_STORAGE_BACKEND", "VIDEOGEN_DEVICE", "VIDEOGEN_RETENTION_DAYS"]


def test_secrets_stay_out_of_repr_and_errors():
    url = f"postgresql://videogen:{PASSWORD}@db.internal:5432/videogen?sslmode=require"
    settings = load_settings({"DATABASE_URL": url, "VIDEOGEN_SPARK_CONF": f'{{"spark.hadoop.fs.s3a.secret.key": "{PASSWORD}"}}'})
    assert PASSWORD in settings.database_url
    for shown in (repr(settings), str(settings)):
        assert PASSWORD not in shown
        assert "videogen:***@db.internal:5432" in shown
    assert PASSWORD not in repr(load_settings({"DATABASE_URL": f"postgresql://db/videogen?password={PASSWORD}"}))
    # An error elsewhere never echoes the URL; a malformed VIDEOGEN_SPARK_CONF is not quoted either.
    for env in ({"DATABASE_URL": url, "VIDEOGEN_DEVICE": "tpu"},
                {"DATABASE_URL": url, "VIDEOGEN_SPARK_CONF": f'{{"spark.password": "{PASSWORD}"'}):
        with pytest.raises(ConfigError) as caught:
            load_settings(env)
        assert PASSWORD not in str(caught.value)


def test_setting_default_and_env_var():
    assert setting_default("retention_days") == 30 and env_var("retention_days") == "VIDEOGEN_RETENTION_DAYS"
    assert env_var("s3_region") == "AWS_DEFAULT_REGION" and env_var("database_url") == "DATABASE_URL"
    with pytest.raises(ValueError, match="follows other settings"):
        setting_default("model_cache")


def test_resource_and_config_defaults_are_the_settings_defaults():
    defaults = load_settings({})
    jobs = JobsResource(database_url="postgresql://u@h/db")
    assert jobs.retry_delays() == defaults.retry_delays_s and jobs.retry_delays_s == "5,15,45"
    assert jobs.heartbeat_timeout_s == defaults.heartbeat_timeout_s
    storage = StorageResource()
    assert (storage.backend, storage.bucket, storage.endpoint_url, storage.region) == (
        defaults.storage_backend, defaults.bucket, defaults.s3_endpoint_url, defaults.s3_region)
    assert (storage.create_bucket, storage.presign_expiry_s, storage.codec) == (
        defaults.create_bucket, defaults.presign_expiry_s, defaults.codec)
    generation = GenerationResource(model_cache="/models")
    assert (generation.device, generation.cpu_offload, generation.vae_tiling, generation.model_registry_path,
            generation.pipeline_cache_size) == (defaults.device, defaults.cpu_offload, defaults.vae_tiling,
                                                defaults.model_registry_path, defaults.pipeline_cache_size)
    assert SparkSessionResource().spark_config({}) == SparkConfig.from_settings(defaults) == SparkConfig()

    from pipelines.retention import RetentionConfig

    assert RetentionConfig().retention_days == defaults.retention_days


def test_the_from_env_builders_pass_the_environment(monkeypatch):
    from resources.generation import generation_from_env
    from resources.jobs import jobs_from_env
    from resources.spark import spark_from_env
    from resources.storage import storage_from_env

    monkeypatch.setenv("VIDEOGEN_RETRY_DELAYS_S", "1,2")
    monkeypatch.setenv("VIDEOGEN_CODEC", "h265")
    monkeypatch.setenv("VIDEOGEN_PIPELINE_CACHE_SIZE", "3")
    monkeypatch.setenv("SPARK_MASTER", "local[2]")
    monkeypatch.setenv("VIDEOGEN_SPARK_CONF", '{"spark.sql.shuffle.partitions": 8}')
    assert jobs_from_env().retry_delays_s == "1,2"
    assert storage_from_env().codec == "h265"
    assert generation_from_env().pipeline_cache_size == 3
    spark = spark_from_env()
    assert spark.master == "local[2]"
    # VIDEOGEN_SPARK_CONF may carry credentials: the resource holds an EnvVar, not the value.
    assert isinstance(spark.spark_conf_json, dg.EnvVar) and spark.spark_conf_json.env_var_name == "VIDEOGEN_SPARK_CONF"
    with pytest.raises(ConfigError, match="VIDEOGEN_RETENTION_DAYS"):
        monkeypatch.setenv("VIDEOGEN_RETENTION_DAYS", "0")
        jobs_from_env()


def _documented(text: str, pattern: str) -> dict[str, str]:
    return {match[0]: match[1] for match in re.findall(pattern, text, flags=re.MULTILINE)}


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple) and all(isinstance(v, float) for v in value):
        return format_seconds_list(value)
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value in (None, (), {}) else str(value)


def test_readme_and_env_example_list_every_variable_with_its_default():
    readme = _documented((REPO / "README.md").read_text(), r"^\| `([A-Z0-9_]+)` \| ([^|]*) \|")
    example = _documented((REPO / "env.example").read_text(), r"^#? ?([A-Z0-9_]+)=(.*)$")
    for name, field in Settings.model_fields.items():
        variable = field.validation_alias
        assert variable in readme, f"{variable} is missing from README's configuration table"
        assert variable in example, f"{variable} is missing from env.example"
        if field.default_factory is None and name != "database_url":
            shown = _shown(field.default)
            assert readme[variable].strip() == (f"`{shown}`" if shown else "–"), variable
            assert example[variable] == shown, variable
