"""Settings read from the environment (see ``env.example`` at the repository root).

One typed, frozen object, :class:`Settings` (pydantic-settings), built by :func:`load_settings`, so
that every component receives its configuration explicitly instead of reading ``os.environ`` on its
own. Each field names its environment variable (``validation_alias``) and holds the one default of
that setting: the Dagster resources and configs take their own field defaults from here
(:func:`setting_default`), their ``*_from_env`` builders pass every value of a loaded ``Settings``.

Values are validated when loaded; an invalid one raises :class:`ConfigError`, whose message names
the variable and what it expects. Secrets (the password of ``DATABASE_URL``, the values of
``VIDEOGEN_SPARK_CONF``) never appear in an error message or in the repr.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql+psycopg2://videogen:videogen@127.0.0.1:55432/videogen"
DEFAULT_BUCKET = "jobs-outputs"
DEFAULT_CODEC = "h264"
DEFAULT_RETRY_DELAYS_S = (5.0, 15.0, 45.0)

StorageBackend = Literal["local", "s3"]
Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = get_args(Device)

# Fields whose values are never echoed in an error message (nor, for these, shown in full in a repr).
_SECRET_FIELDS = frozenset({"database_url", "spark_conf", "api_jwt_secret"})


class ConfigError(ValueError):
    """One or more environment variables hold invalid values; the message names each of them."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration: " + "; ".join(self.problems))


# --- value parsers (also used by the resources for their string-typed fields) ----------------------


def format_seconds_list(values: Sequence[float]) -> str:
    """``(5.0, 15.0, 45.0)`` → ``"5,15,45"``, the form :func:`parse_seconds_list` reads."""
    return ",".join(f"{value:g}" for value in values)


def parse_seconds_list(raw: str | Sequence[float]) -> tuple[float, ...]:
    """``"5,15,45"`` (or a sequence of numbers) → ``(5.0, 15.0, 45.0)``; at least one, none negative."""
    expected = f"expected non-negative comma-separated seconds such as '{format_seconds_list(DEFAULT_RETRY_DELAYS_S)}'"
    try:
        parts = raw.split(",") if isinstance(raw, str) else list(raw)
        values = tuple(float(part) for part in parts if not isinstance(part, str) or part.strip())
    except (TypeError, ValueError):
        raise ValueError(f"{expected}, got {raw!r}") from None
    if not values or any(not value >= 0 for value in values):  # `not >=` also refuses nan
        raise ValueError(f"{expected}, got {raw!r}")
    return values


def split_list(raw: str | None) -> tuple[str, ...]:
    """A comma-separated list (``VIDEOGEN_SPARK_JARS``); blanks dropped."""
    return tuple(part.strip() for part in (raw or "").split(",") if part.strip())


def parse_spark_conf(raw: str | None) -> dict[str, str]:
    """``VIDEOGEN_SPARK_CONF``: a JSON object; values become strings as Spark wants them.

    The messages never quote the value: it may carry credentials.
    """
    if not raw or not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        # exc.msg and the position only, not str(exc) with its excerpt of the document.
        raise ValueError(
            f"VIDEOGEN_SPARK_CONF must be a JSON object of Spark settings: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(parsed, dict):
        raise ValueError("VIDEOGEN_SPARK_CONF must be a JSON object, e.g. {\"spark.executor.memory\": \"4g\"}")
    return _spark_conf_strings(parsed)


def _spark_conf_strings(conf: Mapping[Any, Any]) -> dict[str, str]:
    return {str(key): ("true" if value else "false") if isinstance(value, bool) else str(value)
            for key, value in conf.items()}


def normalize_database_url(url: str) -> str:
    """Accept ``postgres://`` and ``postgresql://`` URLs; SQLAlchemy gets the psycopg2 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def redact_url(url: str) -> str:
    """The URL with its password (userinfo or ``?password=``) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
    query = parts.query
    if "password" in query.lower():
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


# --- the settings ---------------------------------------------------------------------------------


def _default_home() -> Path:
    return Path.home() / ".cache" / "videogen"


def _under_home(name: str):
    def factory(data: dict[str, Any]) -> Path:
        return data.get("home", _default_home()) / name

    return factory


# The environment load_settings() reads: os.environ unless a mapping was passed (see load_settings).
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("videogen_settings_environ", default=None)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping; a blank value counts as unset."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key: value for key, value in self._environ.items() if isinstance(value, str) and value.strip()}


def _var(name: str, description: str, **kwargs: Any) -> Any:
    return Field(validation_alias=name, description=description, **kwargs)


class Settings(BaseSettings):
    """Every setting of videogen, with its environment variable and its one default."""

    model_config = SettingsConfigDict(
        frozen=True,
        case_sensitive=True,
        enable_decoding=False,  # lists, tuples and dicts are parsed by the validators below, not as JSON
        validate_by_name=True,  # Settings(bucket=...) as well as the variable names
        validate_by_alias=True,
        hide_input_in_errors=True,
        extra="forbid",
    )

    database_url: str = _var("DATABASE_URL", "application database (jobs, job_events, KPI tables)",
                             default=DEFAULT_DATABASE_URL)
    home: Path = _var("VIDEOGEN_HOME", "local working folder", default_factory=_default_home)
    model_cache: Path = _var("VIDEOGEN_MODEL_CACHE", "model cache, loaded with local_files_only",
                             default_factory=_under_home("models"))
    # Storage
    storage_backend: StorageBackend = _var("VIDEOGEN_STORAGE_BACKEND", "local or s3", default="local")
    storage_root: Path = _var("VIDEOGEN_STORAGE_ROOT", "local backend: the folder that holds the bucket",
                              default_factory=_under_home("storage"))
    bucket: str = _var("VIDEOGEN_BUCKET", "bucket of job outputs; keys videos/<job id>/…",
                       default=DEFAULT_BUCKET)
    s3_endpoint_url: str | None = _var("VIDEOGEN_S3_ENDPOINT_URL", "S3 endpoint (MinIO, Ceph); unset: AWS",
                                       default=None)
    s3_region: str = _var("AWS_DEFAULT_REGION", "S3 region", default="us-east-1")
    presign_expiry_s: int = _var("VIDEOGEN_PRESIGN_EXPIRY_S", "lifetime of download links, seconds",
                                 default=3600)
    create_bucket: bool = _var("VIDEOGEN_S3_CREATE_BUCKET", "create a missing bucket (a dev MinIO)", default=False)
    codec: str = _var("VIDEOGEN_CODEC", "video codec: h264 or h265", default=DEFAULT_CODEC)
    # Generation
    device: Device = _var("VIDEOGEN_DEVICE", "auto (CUDA when present), cpu or cuda", default="auto")
    cpu_offload: bool = _var("VIDEOGEN_CPU_OFFLOAD", "offload idle sub-models to CPU (less GPU memory)", default=False)
    vae_tiling: bool = _var("VIDEOGEN_VAE_TILING", "decode the VAE in tiles (large frames on small GPUs)",
                            default=False)
    model_registry_path: str = _var("VIDEOGEN_MODEL_REGISTRY", "JSON file of extra model specs", default="")
    asr_model: str = _var("VIDEOGEN_ASR_MODEL", "speech recognition of audio prompts: pocketsphinx, tiny-whisper "
                          "or whisper:<directory or Hugging Face id>", default="pocketsphinx")
    voice_registry_path: str = _var("VIDEOGEN_VOICE_REGISTRY", "JSON file of extra narration voices (films)",
                                    default="")
    pipeline_cache_size: int = _var("VIDEOGEN_PIPELINE_CACHE_SIZE",
                                    "loaded pipelines a worker keeps (least recently used dropped)", default=1, ge=1)
    # Serving (Ray Serve): where generate_frames sends its requests; unset = generate in the run's process
    serve_url: str | None = _var("VIDEOGEN_SERVE_URL",
                                 "base URL of the Ray Serve generation app; unset: generate in the run's process",
                                 default=None)
    serve_port: int = _var("VIDEOGEN_SERVE_PORT", "port of the local Serve app started by videogen serve-models",
                           default=8700, ge=1, le=65535)
    # The replica's torch threads follow it. Two on a 2-core machine now that the orchestration runs
    # below it (VIDEOGEN_ORCHESTRATION_NICE): before, the daemon's session had an equal share of the
    # cores, and two threads sharing them with the run workers were slower than one.
    serve_num_cpus: int = _var("VIDEOGEN_SERVE_NUM_CPUS", "CPUs (and torch threads) of the local Serve replica",
                               default=2, ge=1)
    serve_max_models_per_replica: int = _var("VIDEOGEN_SERVE_MAX_MODELS_PER_REPLICA",
                                             "models a replica keeps loaded (least recently used unloaded)",
                                             default=2, ge=1)
    serve_max_ongoing_requests: int = _var("VIDEOGEN_SERVE_MAX_ONGOING_REQUESTS",
                                           "requests one replica holds: one generates (a GPU is never shared), "
                                           "the others wait in the replica to start the moment it ends",
                                           default=2, ge=1)
    serve_timeout_s: float = _var("VIDEOGEN_SERVE_TIMEOUT_S",
                                  "longest silence of the generation stream before the client gives up",
                                  default=600.0, gt=0)
    # HTTP API (videogen serve-api). Not VIDEOGEN_API_PORT/_HOST: Kubernetes sets those (as tcp://…) in every
    # pod of a namespace with a Service named videogen-api (docker-link variables).
    api_host: str = _var("VIDEOGEN_API_LISTEN_HOST", "address videogen serve-api listens on", default="127.0.0.1")
    api_port: int = _var("VIDEOGEN_API_LISTEN_PORT", "port of videogen serve-api", default=8800, ge=1, le=65535)
    api_jwt_secret: str | None = _var("VIDEOGEN_API_JWT_SECRET",
                                      "key signing access tokens (≥ 32 bytes); unset: one kept in VIDEOGEN_HOME",
                                      default=None, min_length=32)
    api_access_token_ttl_s: int = _var("VIDEOGEN_API_ACCESS_TOKEN_TTL_S", "lifetime of an access token, seconds",
                                       default=900, ge=1)
    api_refresh_token_ttl_s: int = _var("VIDEOGEN_API_REFRESH_TOKEN_TTL_S", "lifetime of a refresh token, seconds",
                                        default=86400, ge=1)
    api_rate_limit_per_s: int = _var("VIDEOGEN_API_RATE_LIMIT_PER_S", "API requests per user per second, all "
                                     "API processes together", default=20, ge=1)
    api_auth_attempts_per_min: int = _var("VIDEOGEN_API_AUTH_ATTEMPTS_PER_MIN", "log-in and sign-up attempts per "
                                          "client address (and log-ins per email) per minute", default=10, ge=1)
    api_max_active_jobs: int = _var("VIDEOGEN_API_MAX_ACTIVE_JOBS", "pending, queued or running jobs a user may "
                                    "have at once through the API", default=20, ge=1)
    api_db_connections: int = _var("VIDEOGEN_API_DB_CONNECTIONS", "database connections per API worker for the "
                                   "calls answered in one statement (submissions and job reads)", default=4, ge=1)
    api_request_metrics: bool = _var("VIDEOGEN_API_REQUEST_METRICS", "count and time every API request for "
                                     "/metrics (0 turns the middleware off, to measure what it costs)", default=True)
    webhook_allow_private: bool = _var("VIDEOGEN_WEBHOOK_ALLOW_PRIVATE", "let callback URLs reach loopback, "
                                       "link-local and private addresses (a test or on-premises setup)",
                                       default=False)
    # Lifecycle
    retry_delays_s: tuple[float, ...] = _var("VIDEOGEN_RETRY_DELAYS_S",
                                             "backoff before each retry of a transient failure, seconds",
                                             default=DEFAULT_RETRY_DELAYS_S)
    heartbeat_timeout_s: float = _var("VIDEOGEN_HEARTBEAT_TIMEOUT_S", "a running job silent this long is lost",
                                      default=90.0, gt=0)
    retention_days: int = _var("VIDEOGEN_RETENTION_DAYS", "outputs of jobs older than this are purged",
                               default=30, ge=1)
    sensor_batch_size: int = _var("VIDEOGEN_SENSOR_BATCH_SIZE", "new runs requested per sensor tick",
                                  default=200, ge=1)
    sensor_wait_s: float = _var("VIDEOGEN_SENSOR_WAIT_S", "how long a sensor tick that found nothing to launch "
                                "keeps watching for a pending row, seconds from the tick's start (below the "
                                "daemon's 5 s sensor loop; 0: return at once)", default=4.0, ge=0, lt=5)
    sensor_poll_s: float = _var("VIDEOGEN_SENSOR_POLL_S", "how often that watching tick looks for a pending row, "
                                "seconds", default=0.1, gt=0, le=5)
    # On one machine the daemon, its code server and the run workers compete for the cores with the
    # Serve replica (the generator) and the API; below them, they catch up when those are idle.
    orchestration_nice: int = _var("VIDEOGEN_ORCHESTRATION_NICE", "CPU niceness of the Dagster daemon's session (code "
                                   "server, run workers) when the main job or a benchmark starts it on one machine "
                                   "(0: as the generation service and the API; 19: lowest)", default=10, ge=0, le=19)
    # Output QA gates (videogen.qa)
    qa_black_max_s: float = _var("VIDEOGEN_QA_BLACK_MAX_S", "longest run of black frames an output may hold, seconds",
                                 default=1.0, gt=0)
    qa_frozen_max_s: float = _var("VIDEOGEN_QA_FROZEN_MAX_S", "longest run of identical frames an output may hold, "
                                  "seconds", default=2.0, gt=0)
    qa_loudness_lufs: float = _var("VIDEOGEN_QA_LOUDNESS_LUFS", "integrated loudness of a film's audio (EBU R128), LUFS",
                                   default=-16.0, ge=-70, le=0)
    qa_regenerate: bool = _var("VIDEOGEN_QA_REGENERATE", "an output with a black or frozen run is generated once "
                               "more with a new seed before the job fails", default=False)
    qa_loudness_tolerance_lu: float = _var("VIDEOGEN_QA_LOUDNESS_TOLERANCE_LU", "allowed distance from that "
                                           "loudness, LU", default=2.0, gt=0)
    # Spark (KPI assets)
    spark_master: str = _var("SPARK_MASTER", "local[*], spark://host:7077, yarn, k8s://https://…", default="local[*]")
    spark_app_name: str = _var("VIDEOGEN_SPARK_APP_NAME", "application name shown by the cluster",
                               default="videogen-kpis")
    jdbc_jar: str = _var("VIDEOGEN_JDBC_JAR", "PostgreSQL JDBC driver jar (path or URL)",
                         default="/usr/share/java/postgresql.jar")
    spark_jars: tuple[str, ...] = _var("VIDEOGEN_SPARK_JARS", "more jars, comma-separated (hadoop-aws for s3a://)",
                                       default=())
    spark_conf: dict[str, str] = _var("VIDEOGEN_SPARK_CONF", "JSON object of Spark settings, applied last",
                                      default_factory=dict)
    kpi_parquet_path: str | None = _var("VIDEOGEN_KPI_PARQUET_PATH", "Parquet copies of the KPI tables (local or s3a://)",
                                        default=None)
    s3a_endpoint: str | None = _var("VIDEOGEN_S3A_ENDPOINT", "S3-compatible endpoint for s3a:// paths", default=None)
    # Spark on Kubernetes (production profile, videogen.deploy.spark)
    spark_image: str | None = _var("VIDEOGEN_SPARK_IMAGE", "executor image (the Dockerfile's cpu target)", default=None)
    k8s_namespace: str | None = _var("VIDEOGEN_K8S_NAMESPACE", "namespace of the deployment", default=None)
    spark_namespace: str | None = _var("VIDEOGEN_SPARK_NAMESPACE", "namespace of the executors (unset: the deployment's)",
                                       default=None)
    spark_service_account: str = _var("VIDEOGEN_SPARK_SERVICE_ACCOUNT", "service account of driver and executors",
                                      default="spark")
    spark_executor_instances: int = _var("VIDEOGEN_SPARK_EXECUTOR_INSTANCES", "executors", default=2, ge=1)
    spark_executor_memory: str = _var("VIDEOGEN_SPARK_EXECUTOR_MEMORY", "memory per executor", default="2g")
    spark_executor_cores: int = _var("VIDEOGEN_SPARK_EXECUTOR_CORES", "cores per executor", default=1, ge=1)
    spark_driver_host: str | None = _var("VIDEOGEN_SPARK_DRIVER_HOST", "the run pod's IP (downward API)", default=None)
    spark_driver_pod_name: str | None = _var("VIDEOGEN_SPARK_DRIVER_POD_NAME", "the run pod's name (downward API)",
                                             default=None)
    s3_credentials_secret: str = _var("VIDEOGEN_S3_CREDENTIALS_SECRET", "Secret with the executors' AWS keys",
                                      default="videogen-s3")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            # `from None`: the pydantic error (and its inputs) is not chained into the traceback.
            raise ConfigError(list(_describe(exc))) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = _ENVIRON.get()
        return init_settings, _MappingEnvSource(settings_cls, os.environ if environ is None else environ)

    # -- validators --------------------------------------------------------------------------------

    @field_validator("*", mode="before")
    @classmethod
    def _clean(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        value = value.strip()
        return value.lower() if info.field_name in ("storage_backend", "device") else value

    @field_validator("database_url")
    @classmethod
    def _normalize_database_url(cls, value: str) -> str:
        return normalize_database_url(value)

    @field_validator("home", "model_cache", "storage_root")
    @classmethod
    def _expand_user(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("codec")
    @classmethod
    def _known_codec(cls, value: str) -> str:
        # Imported here: videogen.encoding imports videogen.storage, which imports this module.
        from videogen.encoding.presets import normalize_codec

        return normalize_codec(value).name  # "HEVC" → "h265"; unknown → ValueError naming the choices

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        from videogen.storage.base import validate_bucket_name  # videogen.storage imports this module

        return validate_bucket_name(value)

    @field_validator("presign_expiry_s")
    @classmethod
    def _presign_expiry(cls, value: int) -> int:
        from videogen.storage.base import validate_expiry  # 1 s to SigV4's 7 days

        return validate_expiry(value)

    @field_validator("retry_delays_s", mode="before")
    @classmethod
    def _seconds_list(cls, value: Any) -> Any:
        return parse_seconds_list(value)

    @field_validator("spark_jars", mode="before")
    @classmethod
    def _jar_list(cls, value: Any) -> Any:
        return split_list(value) if isinstance(value, str) else value

    @field_validator("spark_conf", mode="before")
    @classmethod
    def _spark_conf(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_spark_conf(value)
        return _spark_conf_strings(value) if isinstance(value, Mapping) else value

    # -- helpers -----------------------------------------------------------------------------------

    def is_set(self, name: str) -> bool:
        """Whether the setting was given (environment or keyword), rather than left at its default."""
        return name in self.model_fields_set

    def __hash__(self) -> int:  # hashable like the frozen dataclass it replaces, spark_conf included
        return hash(tuple(frozenset(v.items()) if isinstance(v, dict) else v for v in self.__dict__.values()))

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name == "database_url":
                value = redact_url(value)
            elif name == "spark_conf":
                value = {key: "***" for key in value}
            yield name, value


def env_var(name: str) -> str:
    """The environment variable of a :class:`Settings` field."""
    return Settings.model_fields[name].validation_alias  # type: ignore[return-value]


def setting_default(name: str) -> Any:
    """The one default of a :class:`Settings` field, for the Dagster resources' and configs' fields."""
    field = Settings.model_fields[name]
    if field.default_factory_takes_validated_data:
        raise ValueError(f"the default of {name} follows other settings; read it from a loaded Settings")
    return field.get_default(call_default_factory=True)


def _describe(exc: ValidationError) -> Iterator[str]:
    for error in exc.errors(include_url=False):
        if error["type"] == "default_factory_not_called":
            continue  # a derived default (model_cache under home) skipped because of another error
        key = str(error["loc"][0]) if error["loc"] else ""
        name = next((n for n, f in Settings.model_fields.items() if key in (n, f.validation_alias)), key)
        variable = env_var(name) if name in Settings.model_fields else key
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] != "value_error" and name not in _SECRET_FIELDS and "input" in error:
            message += f", got {error['input']!r}"
        yield message if message.startswith(variable) else f"{variable}: {message}"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The settings from ``env`` (default ``os.environ``); only that mapping is read.

    Raises :class:`ConfigError` naming each invalid variable.
    """
    token = _ENVIRON.set(os.environ if env is None else env)
    try:
        return Settings()
    finally:
        _ENVIRON.reset(token)
