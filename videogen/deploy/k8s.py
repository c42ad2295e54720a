"""How a ``generate_video`` run is laid out on Kubernetes, and the names the run queue limits on.

Decision: inference runs in the Ray Serve application of the KubeRay ``RayService``
(``k8s/ray/rayservice.yaml``, GPU workers that autoscale with the queue), and a Dagster run is one
light pod per request that runs every op in its own process (``in_process_executor``):

* ``generate_frames`` is an HTTP client of the Serve app (``VIDEOGEN_SERVE_URL``): the run pod never
  imports torch, holds no GPU and loads no model, so it needs no GPU node, no GPU image and no
  per-model placement;
* one pod per op (``k8s_job_executor``) would add a pod start to every step and pickle the raw frames
  (up to ~700 MB) between pods through a shared volume, for no GPU saving any more.

GPU capacity is guarded by the Dagster concurrency pool of ``generate_frames``
(``videogen_generation``, ``pool=`` on the op; its limit = the requests the Serve app holds,
``max_replicas`` x ``max_ongoing_requests``: one generating and one waiting per replica), not by a run tag: validation, encoding and upload of one request overlap
the generation of the next.

The run tags (:func:`run_tags_for_job`) are what the run queue limits on (per-user fairness) plus the
model, for filtering runs in the UI. Their keys match ``sensors/job_requests.py`` and the
``tagConcurrencyLimits`` of ``k8s/helm/values.yaml`` and ``dagster_home/dagster.yaml``.
"""

from __future__ import annotations

# Run tags (see the module docstring). Tag values are at most 63 characters.
USER_TAG = "videogen/user"
MODEL_TAG = "videogen/model"
_TAG_VALUE_MAX = 63


def run_tags_for_job(user_id: object, model: object) -> dict[str, str]:
    """Tags the run queue limits on (the user) and the requested model, for any request, even one whose
    model is unknown (its run only rejects it, but it queues like the others)."""
    return {USER_TAG: str(user_id)[:_TAG_VALUE_MAX], MODEL_TAG: str(model)[:_TAG_VALUE_MAX]}
