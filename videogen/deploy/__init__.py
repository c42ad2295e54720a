"""Production deployment on Kubernetes, as plain functions over an env mapping.

- :mod:`.profile`: the one switch ``VIDEOGEN_PROFILE`` (``local`` | ``production``); production
  settings are validated and never fall back to local paths or in-process generation.
- :mod:`.k8s`: how a generation run is laid out on the cluster (one light run pod per request,
  inference in the KubeRay RayService), plus the run tags the run queue limits on.
- :mod:`.spark`: the Spark settings for the KPI assets on a Kubernetes cluster.

Nothing here imports Dagster, torch or pyspark: the sensor, the KPI resource and the tests call these
functions and pass the results on.
"""

from videogen.deploy.k8s import MODEL_TAG, USER_TAG, run_tags_for_job
from videogen.deploy.profile import (
    PROFILE_ENV_VAR,
    DeploymentProfile,
    ProductionConfigError,
    load_profile,
)
from videogen.deploy.spark import spark_conf_for_profile, spark_driver_k8s_config

__all__ = [
    "MODEL_TAG",
    "PROFILE_ENV_VAR",
    "USER_TAG",
    "DeploymentProfile",
    "ProductionConfigError",
    "load_profile",
    "run_tags_for_job",
    "spark_conf_for_profile",
    "spark_driver_k8s_config",
]
