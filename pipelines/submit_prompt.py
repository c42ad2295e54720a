"""Job ``submit_prompt``: an operator submits a new request from the Dagster launchpad.

The op only inserts a ``pending`` row (through the same code as ``videogen submit``); the
pending-jobs sensor then launches its ``generate_video`` run (``generate_film`` with a storyboard)
like for any other request.
"""


import dagster as dg
from pydantic import Field

from resources.generation import GenerationResource
from resources.jobs import JobsResource
from videogen.lifecycle import JobRequest


class SubmitPromptConfig(dg.Config):
    prompt: str = Field(description="What the video should show, e.g. 'a red fox running in snow'.")
    user_id: str = Field(default="operator", description="Who the job is for (credits and fairness are per user).")
    negative_prompt: str = Field(default="", description="What the video should not show.")
    model: str = Field(default="tiny", description="A model of the registry ('tiny' is the offline test model).")
    width: int | None = Field(default=None, description="Frame width in pixels (multiple of 32); empty = model default.")
    height: int | None = Field(default=None, description="Frame height in pixels (multiple of 32); empty = model default.")
    num_frames: int | None = Field(default=None, description="Number of frames (8k+1 for LTX); empty = model default.")
    fps: int | None = Field(default=None, description="Frames per second of the MP4; empty = model default.")
    steps: int | None = Field(default=None, description="Denoising steps; empty = model default.")
    guidance_scale: float | None = Field(default=None, description="Classifier-free guidance; empty = model default.")
    seed: int | None = Field(default=None, description="Random seed; empty = chosen and recorded.")
    quality_preset: str = Field(default="STANDARD", description="STANDARD, HD or ULTRA encoder settings.")
    priority: int = Field(default=0, description="Higher runs first in the run queue.")
    idempotency_key: str | None = Field(default=None, description="Resubmitting the same key returns the same job.")
    storyboard: str | None = Field(default=None, description=(
        'Makes a film (the prompt is its title): JSON such as {"scenes": [{"prompt": "a fox wakes", "duration_s": 3, '
        '"narration": "At dawn, the fox wakes.", "transition": "crossfade"}, {"prompt": "a fox runs", "duration_s": 4}], '
        '"voice": "slt", "music": "generated", "subtitles": "burned"}; empty = a clip.'))


@dg.op(description="Inserts the request into `jobs` (pending); rejected at once if invalid.")
def insert_job_request(
    context: dg.OpExecutionContext, config: SubmitPromptConfig, jobs: JobsResource, generation: GenerationResource
) -> int:
    fields = config.model_dump()
    submission = jobs.store().submissions.submit(JobRequest(**fields), registry=generation.registry())
    if submission.status == "rejected":
        raise dg.Failure(
            description=f"job {submission.job_id} rejected: {submission.error_message}",
            metadata={"job_id": submission.job_id, "error_code": submission.error_code or ""},
            allow_retries=False,
        )
    context.add_output_metadata({"job_id": submission.job_id, "created": submission.created})
    context.log.info(f"job {submission.job_id} is {submission.status}; the sensor will launch its run")
    return submission.job_id


@dg.job(description="Submit a new prompt from the launchpad (a row in `jobs`; the sensor does the rest).",
        tags={"team": "ml-platform"})
def submit_prompt() -> None:
    insert_job_request()


