"""VIDEOGEN_PROFILE selects local or production settings; production refuses local fallbacks."""

from __future__ import annotations

import pytest

from videogen.config import DEFAULT_DATABASE_URL
from videogen.deploy.profile import (
    DeploymentProfile,
    ProductionConfigError,
    load_profile,
    production_problems,
)

SECRET_PASSWORD = "s3cr3t-Pa55"

PRODUCTION_ENV = {
    "VIDEOGEN_PROFILE": "production",
    "DATABASE_URL": f"postgresql://videogen:{SECRET_PASSWORD}@postgresql.databases.svc.cluster.local:5432/videogen",
    "VIDEOGEN_STORAGE_BACKEND": "s3",
    "VIDEOGEN_BUCKET": "jobs-outputs",
    "VIDEOGEN_S3_ENDPOINT_URL": "http://minio.videogen.svc.cluster.local:9000",
    "VIDEOGEN_MODEL_CACHE": "/models",
    "SPARK_MASTER": "k8s://https://kubernetes.default.svc:443",
    "VIDEOGEN_SPARK_IMAGE": "registry.example.com/videogen:0.1.0-cpu",
    "VIDEOGEN_SERVE_URL": "http://videogen-serve-svc.videogen.svc:8000",
}


def test_local_is_the_default_and_keeps_local_fallbacks():
    profile = load_profile({})
    assert profile == DeploymentProfile(name="local", settings=profile.settings)
    assert not profile.is_production
    assert profile.settings.storage_backend == "local"
    assert profile.settings.database_url == DEFAULT_DATABASE_URL


def test_a_complete_production_environment_loads():
    profile = load_profile(PRODUCTION_ENV)
    assert profile.is_production
    assert profile.settings.storage_backend == "s3"
    assert str(profile.settings.model_cache) == "/models"
    assert profile.settings.serve_url == PRODUCTION_ENV["VIDEOGEN_SERVE_URL"]


def test_production_with_nothing_set_lists_every_missing_setting():
    with pytest.raises(ProductionConfigError) as caught:
        load_profile({"VIDEOGEN_PROFILE": "production"})
    message = str(caught.value)
    assert message.startswith("VIDEOGEN_PROFILE=production refuses to start with local fallbacks")
    for variable in ("DATABASE_URL", "VIDEOGEN_STORAGE_BACKEND", "VIDEOGEN_BUCKET", "VIDEOGEN_S3_ENDPOINT_URL",
                     "VIDEOGEN_MODEL_CACHE", "SPARK_MASTER", "VIDEOGEN_SERVE_URL"):
        assert variable in message
    assert len(caught.value.problems) == 7


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"DATABASE_URL": DEFAULT_DATABASE_URL}, "local development default"),
        ({"DATABASE_URL": f"postgresql://videogen:{SECRET_PASSWORD}@localhost:5432/videogen"}, "loopback host (localhost)"),
        ({"VIDEOGEN_STORAGE_BACKEND": "local"}, "VIDEOGEN_STORAGE_BACKEND is 'local'"),
        ({"VIDEOGEN_S3_ENDPOINT_URL": "minio:9000"}, "must be an http(s) URL"),
        ({"VIDEOGEN_MODEL_CACHE": "models"}, "absolute path"),
        ({"VIDEOGEN_MODEL_CACHE": "~/.cache/videogen/models"}, "absolute path"),
        ({"SPARK_MASTER": "local[*]"}, "not in local mode"),
        ({"VIDEOGEN_SPARK_IMAGE": ""}, "VIDEOGEN_SPARK_IMAGE is not set"),
        ({"VIDEOGEN_SERVE_URL": ""}, "VIDEOGEN_SERVE_URL is not set: production generates in the Ray Serve app"),
        ({"VIDEOGEN_SERVE_URL": "videogen-serve-svc:8000"}, "VIDEOGEN_SERVE_URL must be an http(s) URL"),
        ({"VIDEOGEN_SERVE_URL": "grpc://videogen-serve-svc.videogen.svc:9000"}, "VIDEOGEN_SERVE_URL must be an http(s) URL"),
        ({"VIDEOGEN_SERVE_URL": "http://127.0.0.1:8700"}, "VIDEOGEN_SERVE_URL points at a loopback host (127.0.0.1)"),
        ({"VIDEOGEN_SERVE_URL": "http://localhost:8700"}, "loopback host (localhost)"),
    ],
)
def test_each_local_fallback_is_refused_with_a_clear_message(override, expected):
    env = {**PRODUCTION_ENV, **override}
    with pytest.raises(ProductionConfigError) as caught:
        load_profile(env)
    assert expected in str(caught.value)
    assert len(caught.value.problems) == 1


@pytest.mark.parametrize("missing", ["DATABASE_URL", "VIDEOGEN_MODEL_CACHE", "VIDEOGEN_S3_ENDPOINT_URL",
                                     "VIDEOGEN_SERVE_URL"])
def test_production_never_falls_back_silently(missing):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    assert any(missing in problem for problem in production_problems(env))


def test_messages_never_contain_secret_values():
    env = {**PRODUCTION_ENV, "DATABASE_URL": f"postgresql://videogen:{SECRET_PASSWORD}@127.0.0.1:5432/videogen",
           "VIDEOGEN_STORAGE_BACKEND": "local"}
    with pytest.raises(ProductionConfigError) as caught:
        load_profile(env)
    assert SECRET_PASSWORD not in str(caught.value)


def test_production_no_longer_needs_gpu_settings():
    """Dagster pods hold no GPU any more: the GPU image and node placement live in the RayService."""
    assert production_problems(PRODUCTION_ENV) == []
    assert not any(name.startswith("VIDEOGEN_GPU_") for name in PRODUCTION_ENV)


def test_an_unknown_profile_name_is_an_error():
    with pytest.raises(ValueError, match="VIDEOGEN_PROFILE must be one of local, production"):
        load_profile({"VIDEOGEN_PROFILE": "prod"})


def test_the_deploy_package_imports_no_heavy_library():
    """The sensor calls these functions on every tick: no dagster, torch, diffusers or pyspark."""
    import subprocess
    import sys

    code = (
        "import sys, videogen.deploy\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'dagster', 'torch', 'diffusers', 'pyspark', 'great_expectations', 'kubernetes'})\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == ""
