"""Settings read from the environment (see ``env.example`` at the repository root).

One frozen dataclass, built by :func:`load_settings`, so that every component receives its
configuration explicitly instead of reading ``os.environ`` on its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATABASE_URL = "postgresql+psycopg2://videogen:videogen@127.0.0.1:55432/videogen"
DEFAULT_BUCKET = "jobs-outputs"


def _home() -> Path:
    return Path(os.environ.get("VIDEOGEN_HOME", Path.home() / ".cache" / "videogen")).expanduser()


def parse_seconds_list(raw: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"expected comma-separated seconds such as '5,15,45', got {raw!r}") from exc
    if not values or any(v < 0 for v in values):
        raise ValueError(f"expected non-negative comma-separated seconds such as '5,15,45', got {raw!r}")
    return values


def _bool(raw: str) -> bool:
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def normalize_database_url(url: str) -> str:
    """Accept ``postgres://`` and ``postgresql://`` URLs; SQLAlchemy gets the psycopg2 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    home: Path = field(default_factory=_home)
    model_cache: Path = field(default_factory=lambda: _home() / "models")
    # Storage
    storage_backend: str = "local"  # "local" or "s3"
    storage_root: Path = field(default_factory=lambda: _home() / "storage")
    bucket: str = DEFAULT_BUCKET
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    presign_expiry_s: int = 3600
    create_bucket: bool = False
    codec: str = "h264"
    # Generation
    device: str = "auto"  # "auto", "cpu" or "cuda"
    cpu_offload: bool = False
    vae_tiling: bool = False
    model_registry_path: str = ""
    # Lifecycle
    retry_delays_s: tuple[float, ...] = (5.0, 15.0, 45.0)
    heartbeat_timeout_s: float = 90.0
    retention_days: int = 30
    sensor_batch_size: int = 200


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    home = Path(env.get("VIDEOGEN_HOME", _home())).expanduser()
    return Settings(
        database_url=normalize_database_url(env.get("DATABASE_URL", DEFAULT_DATABASE_URL)),
        home=home,
        model_cache=Path(env.get("VIDEOGEN_MODEL_CACHE", home / "models")).expanduser(),
        storage_backend=env.get("VIDEOGEN_STORAGE_BACKEND", "local").lower(),
        storage_root=Path(env.get("VIDEOGEN_STORAGE_ROOT", home / "storage")).expanduser(),
        bucket=env.get("VIDEOGEN_BUCKET", DEFAULT_BUCKET),
        s3_endpoint_url=env.get("VIDEOGEN_S3_ENDPOINT_URL") or None,
        s3_region=env.get("AWS_DEFAULT_REGION", "us-east-1"),
        presign_expiry_s=int(env.get("VIDEOGEN_PRESIGN_EXPIRY_S", "3600")),
        create_bucket=_bool(env.get("VIDEOGEN_S3_CREATE_BUCKET", "0")),
        codec=env.get("VIDEOGEN_CODEC", "h264").lower() or "h264",
        device=env.get("VIDEOGEN_DEVICE", "auto").lower(),
        cpu_offload=_bool(env.get("VIDEOGEN_CPU_OFFLOAD", "0")),
        vae_tiling=_bool(env.get("VIDEOGEN_VAE_TILING", "0")),
        model_registry_path=env.get("VIDEOGEN_MODEL_REGISTRY", ""),
        retry_delays_s=parse_seconds_list(env.get("VIDEOGEN_RETRY_DELAYS_S", "5,15,45")),
        heartbeat_timeout_s=float(env.get("VIDEOGEN_HEARTBEAT_TIMEOUT_S", "90")),
        retention_days=int(env.get("VIDEOGEN_RETENTION_DAYS", "30")),
        sensor_batch_size=int(env.get("VIDEOGEN_SENSOR_BATCH_SIZE", "200")),
    )
