"""One switch, ``VIDEOGEN_PROFILE``, selects local or production settings.

- ``local`` (the default): everything on one machine; every setting may fall back to its local
  default (project-local PostgreSQL, a storage folder, a model cache under ``VIDEOGEN_HOME``,
  Spark in local mode).
- ``production``: the Kubernetes deployment. Every setting that has a local fallback must be set
  explicitly to a non-local value; otherwise :func:`load_profile` raises
  :class:`ProductionConfigError` listing each problem and the variable that fixes it. A production
  pod never writes videos to a container's folder, reads the development database or generates in
  its own process (it has no GPU: generation is the RayService's Serve app) by accident.

Pure functions over an env mapping (pass ``os.environ``); messages never contain secret values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from videogen.config import DEFAULT_DATABASE_URL, Settings, env_var, load_settings, normalize_database_url

PROFILE_ENV_VAR = "VIDEOGEN_PROFILE"
LOCAL = "local"
PRODUCTION = "production"
PROFILES = (LOCAL, PRODUCTION)

# The variable the KPI code (videogen.config.Settings.spark_master) reads for the Spark master.
SPARK_MASTER_ENV_VAR = env_var("spark_master")
# Where generate_frames sends its requests (the Ray Serve app of k8s/ray/rayservice.yaml).
SERVE_URL_ENV_VAR = env_var("serve_url")

_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", ""}


class ProductionConfigError(ValueError):
    """The production profile is missing settings or would fall back to local ones."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(
            f"{PROFILE_ENV_VAR}={PRODUCTION} refuses to start with local fallbacks "
            f"({len(self.problems)} problem(s)):\n{lines}\n"
            f"See docs/kubernetes.md (Configuration) for every production variable."
        )


@dataclass(frozen=True)
class DeploymentProfile:
    """The selected profile and the settings it validated."""

    name: str
    settings: Settings

    @property
    def is_production(self) -> bool:
        return self.name == PRODUCTION


def profile_name(env: Mapping[str, str]) -> str:
    raw = env.get(PROFILE_ENV_VAR, "").strip().lower()
    if not raw:
        return LOCAL
    if raw not in PROFILES:
        raise ValueError(f"{PROFILE_ENV_VAR} must be one of {', '.join(PROFILES)}; got {raw!r}")
    return raw


def _database_problems(env: Mapping[str, str]) -> list[str]:
    raw = env.get("DATABASE_URL", "").strip()
    if not raw:
        return ["DATABASE_URL is not set: production needs the application database "
                "(it would otherwise fall back to the local development database 127.0.0.1:55432)."]
    url = normalize_database_url(raw)
    if url == DEFAULT_DATABASE_URL:
        return ["DATABASE_URL is the local development default: set the production database's URL "
                "(from the videogen-secrets Secret)."]
    host = (urlsplit(url).hostname or "").lower()
    if host in _LOOPBACK_HOSTS:
        # Only the host is shown: the URL carries the password.
        return [f"DATABASE_URL points at a loopback host ({host or 'none'}): inside a pod that is the pod "
                "itself, not the database server."]
    return []


def _storage_problems(env: Mapping[str, str], settings: Settings) -> list[str]:
    problems = []
    if settings.storage_backend != "s3":
        problems.append(
            f"VIDEOGEN_STORAGE_BACKEND is {settings.storage_backend!r}: production stores outputs in S3 "
            "(set VIDEOGEN_STORAGE_BACKEND=s3); a local folder inside a pod is lost with the pod."
        )
    if not env.get("VIDEOGEN_BUCKET", "").strip():
        problems.append("VIDEOGEN_BUCKET is not set: name the production bucket explicitly (e.g. jobs-outputs).")
    endpoint = env.get("VIDEOGEN_S3_ENDPOINT_URL", "").strip()
    if not endpoint:
        problems.append("VIDEOGEN_S3_ENDPOINT_URL is not set: give the S3 endpoint (MinIO/Ceph service URL, "
                        "or https://s3.<region>.amazonaws.com for AWS).")
    elif urlsplit(endpoint).scheme not in {"http", "https"}:
        problems.append(f"VIDEOGEN_S3_ENDPOINT_URL must be an http(s) URL, got {endpoint!r}.")
    return problems


def _model_cache_problems(env: Mapping[str, str]) -> list[str]:
    raw = env.get("VIDEOGEN_MODEL_CACHE", "").strip()
    if not raw:
        return ["VIDEOGEN_MODEL_CACHE is not set: production reads weights from the mounted model-cache "
                "volume (e.g. /models), never from a cache under VIDEOGEN_HOME inside the container."]
    if not PurePosixPath(raw).is_absolute() or raw.startswith("~"):
        return [f"VIDEOGEN_MODEL_CACHE must be an absolute path to the mounted volume (e.g. /models), got {raw!r}."]
    return []


def _spark_problems(settings: Settings) -> list[str]:
    if not settings.is_set("spark_master"):
        return [f"{SPARK_MASTER_ENV_VAR} is not set: production submits the KPI assets to a cluster "
                "(e.g. k8s://https://kubernetes.default.svc:443), never Spark in local mode."]
    master = settings.spark_master
    if master.startswith("local"):
        return [f"{SPARK_MASTER_ENV_VAR} is {master!r}: production runs Spark on a cluster, not in local mode."]
    if master.startswith("k8s://") and not settings.spark_image:
        return ["VIDEOGEN_SPARK_IMAGE is not set: Spark on Kubernetes needs the executor image "
                "(the Dockerfile's cpu target, which ships Java 17 and the JDBC driver)."]
    return []


def _serving_problems(settings: Settings) -> list[str]:
    url = (settings.serve_url or "").strip()
    if not url:
        return [f"{SERVE_URL_ENV_VAR} is not set: production generates in the Ray Serve app of the RayService "
                "(k8s/ray/rayservice.yaml), e.g. http://videogen-serve-svc.videogen.svc:8000; a run pod has no "
                "GPU and must not load models itself."]
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return [f"{SERVE_URL_ENV_VAR} must be an http(s) URL of the Serve app, got {url!r}."]
    if parts.hostname.lower() in _LOOPBACK_HOSTS:
        return [f"{SERVE_URL_ENV_VAR} points at a loopback host ({parts.hostname}): inside a pod that is the pod "
                "itself; use the RayService's serve Service (http://<name>-serve-svc.<namespace>.svc:8000)."]
    return []


def production_problems(env: Mapping[str, str]) -> list[str]:
    """Every reason the environment is not a complete production configuration (empty: it is)."""
    settings = load_settings(dict(env))
    return [
        *_database_problems(env),
        *_storage_problems(env, settings),
        *_model_cache_problems(env),
        *_spark_problems(settings),
        *_serving_problems(settings),
    ]


def load_profile(env: Mapping[str, str]) -> DeploymentProfile:
    """The profile ``VIDEOGEN_PROFILE`` selects, with validated settings.

    Raises :class:`ProductionConfigError` when the production profile is incomplete, and
    ``ValueError`` for an unknown profile name.
    """
    name = profile_name(env)
    if name == LOCAL:
        return DeploymentProfile(name=LOCAL, settings=load_settings(dict(env)))
    problems = production_problems(env)
    if problems:
        raise ProductionConfigError(problems)
    return DeploymentProfile(name=PRODUCTION, settings=load_settings(dict(env)))
