"""Ray Serve application ``videogen``: text-to-video with the models kept loaded between requests.

One deployment, ``TextToVideo`` (FastAPI ingress), thin over :mod:`videogen.generation.service`:

* ``POST /generate`` streams the events of :mod:`videogen.generation.protocol` (progress for every
  denoising step, then the frames); a client that disconnects cancels the denoising within one step.
* Pipelines load through the model registry with ``serve.multiplexed``: up to
  ``max_models_per_replica`` models stay loaded per replica, the least recently used is unloaded.
* One generation at a time per replica (a GPU is never shared): ``max_ongoing_requests`` (default 2)
  is how many requests a replica holds, the one generating and the rest waiting inside the replica
  for its generation slot, so that the next one starts the moment the last ends. Waiting in Serve's
  router instead costs a gap per request: it retries a full replica with backoff up to 0.5 s.
  Replica resources come from the registry's ``resources`` (GPU count).
* ``GET /health`` for readiness, ``GET /stats`` for the replica's loads and recent requests,
  ``GET /metrics`` for the replica's Prometheus metrics (:mod:`videogen.generation.metrics`; through the
  Serve HTTP proxy one scrape hits one replica). With ``metrics_port`` each replica also serves them on
  that port of its pod, which the PodMonitor k8s/monitoring/podmonitor.yaml scrapes in Kubernetes.

``build_app(args)`` is the application builder named by ``serve run serving.app:build_app`` and a
KubeRay RayService's ``import_path``; every arg defaults to the environment's settings.
"""


import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from ray import serve

from videogen.config import load_settings
from videogen.errors import JobCanceledError
from videogen.generation import service
from videogen.generation.generate import GenerationParams
from videogen.generation.protocol import event_line
from videogen.generation.registry import ModelRegistry

APP_NAME = "videogen"
DEPLOYMENT_NAME = "TextToVideo"

# Serve's replica logger: its lines carry the request's id (X-Request-ID) in the replica's JSON log.
logger = logging.getLogger("ray.serve")

api = FastAPI(title="videogen generation service", description="Warm text-to-video generation (Ray Serve).")


class GenerateBody(BaseModel):
    model: str = Field(description="registered model name; also the multiplexed model id")
    prompt: str
    negative_prompt: str = ""
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    num_frames: int = Field(gt=0)
    fps: int = Field(gt=0)
    steps: int = Field(gt=0)
    guidance_scale: float = Field(ge=0)
    seed: int = Field(ge=0)
    request_id: str = ""


# Defined before the deployment: @serve.deployment serializes the class as this module stands then.
def _retrieve(task: asyncio.Task) -> None:
    """Read a finished task's outcome, so that one whose client left is not logged as 'never retrieved'."""
    if not task.cancelled():
        task.exception()


# JSON log lines like every videogen process; each request's lines carry its request_id, which
# generate_frames sets to job-<job id>-run-<run id> (X-Request-ID).
@serve.deployment(name=DEPLOYMENT_NAME, max_ongoing_requests=2, health_check_period_s=5,
                  logging_config={"encoding": "JSON"})
@serve.ingress(api)
class TextToVideo:
    def __init__(self, *, model_cache: str, registry_path: str, device: str, cpu_offload: bool, vae_tiling: bool,
                 max_models_per_replica: int, metrics_port: int = 0) -> None:
        self.registry = ModelRegistry.from_file(registry_path)
        self.stats = service.ReplicaStats()
        self.stats.metrics.declare_models(self.registry.names())
        if metrics_port:
            self.stats.metrics.serve(metrics_port)
        # The replica's one generation slot (see the module's docstring and _generate).
        self._generation_slot = asyncio.Lock()
        self._model_cache = Path(model_cache)
        self._device, self._cpu_offload, self._vae_tiling = device, cpu_offload, vae_tiling

        async def load_model(model_id: str) -> service.LoadedPipeline:
            return await asyncio.to_thread(service.load, model_id, self._load_pipeline, self.stats)

        # Built per instance so that the number of models kept is configuration, not a constant.
        self._pipeline_for = serve.multiplexed(max_num_models_per_replica=max_models_per_replica)(load_model)

    def _load_pipeline(self, model: str) -> Any:
        from videogen.generation.loader import load_pipeline

        spec = self.registry.get(model)
        if spec is None:  # checked before loading; kept for a registry edited under a running replica
            raise KeyError(model)
        return load_pipeline(spec, model_cache=self._model_cache, device=self._device,
                             cpu_offload=self._cpu_offload, vae_tiling=self._vae_tiling)

    @api.get("/health")
    def health(self) -> dict[str, str]:
        return {"status": "ok", "replica": self.stats.replica}

    @api.get("/stats")
    def replica_stats(self) -> dict[str, Any]:
        return self.stats.to_json()

    @api.get("/metrics")
    def metrics(self) -> Response:
        body, content_type = self.stats.metrics.exposition()
        return Response(content=body, media_type=content_type)

    @api.post("/generate")
    async def generate(self, body: GenerateBody, request: Request) -> Any:
        if self.registry.get(body.model) is None:
            return JSONResponse(status_code=404, content={
                "detail": f"model {body.model!r} is not registered; available: {', '.join(self.registry.names())}"})
        params = GenerationParams(**body.model_dump(exclude={"model", "request_id"}))
        record = service.RequestRecord(request_id=body.request_id, model=body.model, total_steps=body.steps)
        return StreamingResponse(self._events(body.model, params, record), media_type="application/x-ndjson")

    async def _events(self, model: str, params: GenerationParams, record: service.RequestRecord):
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[bytes] = asyncio.Queue()
        cancel = threading.Event()
        failed = False
        self.stats.request_started(record)

        def emit(step: int, total: int) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event_line("progress", step=step, total=total))

        # The work is a task of its own, which holds the replica's generation slot until its denoising
        # thread has returned. A client that leaves cancels this generator, and Starlette may cancel
        # its clean-up again; never the task, so the slot is not given to the next request while
        # this one's thread still runs on the GPU.
        task = asyncio.ensure_future(self._generate(model, params, record, events, emit, cancel))
        task.add_done_callback(_retrieve)
        try:
            while not task.done() or not events.empty():
                getter = asyncio.ensure_future(events.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            video = task.result()
            frames = video.frames
            yield event_line("frames", shape=list(frames.shape), dtype=str(frames.dtype), nbytes=frames.nbytes,
                             seconds=round(video.seconds, 6))
            yield frames.tobytes()
        except JobCanceledError:
            return
        except Exception as error:  # noqa: BLE001 - every failure becomes an event the client can act on
            failed = True
            yield event_line("error", **service.error_fields(error))
        finally:
            # A client that disconnects cancels this generator: stop the denoising (the task sees
            # `cancel` within one step, or before it starts) and wait for it if Starlette lets us.
            try:
                cancel.set()
                if not task.done():
                    await asyncio.shield(asyncio.wait({task}))
            finally:
                self.stats.request_finished(record, failed=failed)

    async def _generate(self, model: str, params: GenerationParams, record: service.RequestRecord,
                        events: asyncio.Queue[bytes], emit: Any, cancel: threading.Event) -> Any:
        """Wait for the replica's generation slot, load the model (under the slot too: a load next to
        a running generation could run the GPU out of memory, or evict the model it uses), generate.
        The slot is released once the pipeline call returns: the frames are in host memory, and the
        next request starts while they stream out."""
        if self._generation_slot.locked():
            logger.info("waiting for the replica's generation slot (another generation is running)")
        with self.stats.metrics.waiting.track_inprogress():
            await self._generation_slot.acquire()
        try:
            if cancel.is_set():
                raise JobCanceledError("the client left before the generation started")
            loaded = await self._pipeline_for(model)
            if cancel.is_set():
                raise JobCanceledError("the client left while the model loaded")
            events.put_nowait(event_line("started", replica=self.stats.replica, model_loads=self.stats.model_loads[model]))
            return await asyncio.to_thread(service.run_generation, loaded, params, record, emit=emit, cancel=cancel)
        finally:
            self._generation_slot.release()


def build_app(args: dict[str, Any] | None = None) -> serve.Application:
    """The ``videogen`` application; ``args`` override the environment's settings:
    model_cache, registry_path, device, cpu_offload, vae_tiling, max_models_per_replica,
    max_ongoing_requests, num_replicas, num_gpus, num_cpus, metrics_port (each replica serves its
    Prometheus metrics on this port too; 0, the default, only on the ingress's ``GET /metrics``). ``registry_revision`` is accepted and
    ignored: bumping it in a RayService's serveConfigV2 makes Serve restart the replicas so that they
    read an edited registry."""
    args = dict(args or {})
    args.pop("registry_revision", None)
    settings = load_settings()
    registry = ModelRegistry.from_file(args.get("registry_path", settings.model_registry_path))
    # A replica may load any registered model: it needs what the most demanding one needs.
    gpus = max((spec.resources.gpu_count for spec in registry.specs()), default=0)
    num_gpus = float(args.get("num_gpus", gpus if settings.device != "cpu" and _cuda_visible() else 0))
    deployment = TextToVideo.options(
        max_ongoing_requests=int(args.get("max_ongoing_requests", settings.serve_max_ongoing_requests)),
        num_replicas=args.get("num_replicas", 1),
        # Ray gives an actor as many torch/OpenMP threads as CPUs it reserves (OMP_NUM_THREADS): by
        # default the replica reserves the whole local instance (VIDEOGEN_SERVE_NUM_CPUS).
        ray_actor_options={"num_gpus": num_gpus, "num_cpus": float(args.get("num_cpus", settings.serve_num_cpus))},
    )
    return deployment.bind(
        model_cache=str(args.get("model_cache", settings.model_cache)),
        registry_path=str(args.get("registry_path", settings.model_registry_path) or ""),
        device=str(args.get("device", settings.device)),
        cpu_offload=bool(args.get("cpu_offload", settings.cpu_offload)),
        vae_tiling=bool(args.get("vae_tiling", settings.vae_tiling)),
        max_models_per_replica=int(args.get("max_models_per_replica", settings.serve_max_models_per_replica)),
        metrics_port=int(args.get("metrics_port", 0)),
    )


def _cuda_visible() -> bool:
    import ray

    return bool(ray.is_initialized() and ray.cluster_resources().get("GPU", 0))
