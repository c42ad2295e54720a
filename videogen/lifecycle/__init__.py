"""The request lifecycle over the ``jobs`` and ``job_events`` tables, split by who acts:

* :class:`JobSubmissions` (``submission``): a client inserts a request;
* :class:`JobReads` (``reads``): anyone reads jobs and their audit trail;
* :class:`JobQueue` (``queue``): the sensors launch pending rows and reconcile active ones;
* :class:`JobRuns` (``runs``): a run claims its job, reports progress and the outcome;
* :class:`JobActions` (``operator``): a person cancels or retries.

Every status change goes through :mod:`videogen.lifecycle.transitions`, whose table is the only
statement of which transitions exist. :class:`JobStore` bundles the five over one engine.
"""

from __future__ import annotations

import random

import sqlalchemy as sa

from videogen.lifecycle.operator import JobActions
from videogen.lifecycle.queue import JobQueue
from videogen.lifecycle.reads import JobPageReads, JobReads
from videogen.lifecycle.runs import JobRuns
from videogen.lifecycle.submission import Account, JobRequest, JobSubmissions, Submission
from videogen.lifecycle.transitions import TRANSITIONS, Transition

__all__ = ["Account", "JobActions", "JobPageReads", "JobQueue", "JobReads", "JobRequest", "JobRuns", "JobStore", "JobSubmissions",
           "Submission", "TRANSITIONS", "Transition", "random_seed", "run_key"]


class JobStore:
    """The five views of ``jobs`` over one engine; each method takes and releases its own connection."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.submissions = JobSubmissions(engine)
        self.reads = JobReads(engine)
        self.pages = JobPageReads(engine)
        self.queue = JobQueue(engine)
        self.runs = JobRuns(engine)
        self.operator = JobActions(engine)


def random_seed() -> int:
    return random.SystemRandom().randrange(0, 2**31)


def run_key(job_id: int, submission: int) -> str:
    """The sensor's run key: the job id, plus the submission number once a job was resubmitted."""
    return str(job_id) if submission == 0 else f"{job_id}-r{submission}"
