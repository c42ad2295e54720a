"""Production deployment on Kubernetes, as plain functions over a model spec and an env mapping.

- :mod:`.profile`: the one switch ``VIDEOGEN_PROFILE`` (``local`` | ``production``); production
  settings are validated and never fall back to local paths.
- :mod:`.k8s`: where each step of a generation run runs (only ``generate_frames`` holds a GPU),
  as ``k8s_job_executor`` run config, plus the run tags the run queue limits on.
- :mod:`.spark`: the Spark settings for the KPI assets on a Kubernetes cluster.

Nothing here imports Dagster, torch or pyspark: the sensor, the KPI resource and the tests call these
functions and pass the results on.
"""

from videogen.deploy.k8s import (
    GENERATION_STEP,
    GPU_COUNT_TAG,
    GPU_SLOT_TAG,
    MODEL_TAG,
    PIPELINE_STEPS,
    USER_TAG,
    GpuPlacement,
    run_config_for_model,
    run_tags_for_model,
)
from videogen.deploy.profile import (
    PROFILE_ENV_VAR,
    DeploymentProfile,
    ProductionConfigError,
    load_profile,
)
from videogen.deploy.spark import spark_conf_for_profile, spark_driver_k8s_config

__all__ = [
    "GENERATION_STEP",
    "GPU_COUNT_TAG",
    "GPU_SLOT_TAG",
    "MODEL_TAG",
    "PIPELINE_STEPS",
    "PROFILE_ENV_VAR",
    "USER_TAG",
    "DeploymentProfile",
    "GpuPlacement",
    "ProductionConfigError",
    "load_profile",
    "run_config_for_model",
    "run_tags_for_model",
    "spark_conf_for_profile",
    "spark_driver_k8s_config",
]
