"""pipelines/pool_wait.py: a step blocked on a concurrency pool sleeps until its next claim check."""

import time
from types import SimpleNamespace

import pytest
from dagster._core.execution.plan.instance_concurrency_context import (
    InstanceConcurrencyContext,
)

import pipelines.generate_video  # noqa: F401 - the generation jobs' module applies the fix
from pipelines.pool_wait import DAGSTER_INTERVAL, seconds_to_next_pending_claim_check


def blocked(**due_in_s: float | None) -> SimpleNamespace:
    """The two fields the method reads: pending claims, and when each is next checked."""
    now = time.time()
    return SimpleNamespace(_pending_claims=set(due_in_s),
                           _pending_timeouts={k: now + s for k, s in due_in_s.items() if s is not None})


def test_the_generation_jobs_install_the_fix():
    assert InstanceConcurrencyContext.interval_to_next_pending_claim_check is seconds_to_next_pending_claim_check


def test_dagster_still_never_sleeps_for_a_claim_due_later():
    """If this fails, Dagster computes the interval itself now: pipelines/pool_wait.py can go."""
    assert DAGSTER_INTERVAL(blocked(generate_frames=5.0)) == 0


def test_a_blocked_step_sleeps_until_its_earliest_claim_check():
    assert 4.0 < seconds_to_next_pending_claim_check(blocked(generate_frames=5.0, other=9.0)) <= 5.0


@pytest.mark.parametrize("due_in_s", [{}, {"generate_frames": -1.0}, {"generate_frames": None},
                                      {"generate_frames": 5.0, "other": None}])
def test_no_sleep_when_a_check_is_due_or_not_scheduled_yet(due_in_s):
    assert seconds_to_next_pending_claim_check(blocked(**due_in_s)) == 0.0


def test_a_claim_refused_by_a_real_pool_sleeps_until_dagsters_next_check():
    """On Dagster's own context and storage: a step refused by a pool without a free slot waits for
    the claim's first check interval (1 s), not 0."""
    import dagster as dg
    from dagster._core.test_utils import create_run_for_test

    with dg.instance_for_test() as instance:
        instance.event_log_storage.set_concurrency_slots("videogen_generation", 0)
        with InstanceConcurrencyContext(instance, create_run_for_test(instance)) as context:
            assert context.claim("videogen_generation", "generate_frames") is False
            assert 0.5 < context.interval_to_next_pending_claim_check() <= 1.0
