"""The transition table is the only truth: the docstring shows it, and the database obeys it."""

import pytest
import sqlalchemy as sa

import videogen.lifecycle.transitions as transitions_module
from videogen.db.schema import STATUSES
from videogen.lifecycle import JobRequest, JobStore
from videogen.lifecycle.transitions import TRANSITIONS, apply_transition, describe_transitions


def test_the_module_docstring_shows_the_table():
    assert describe_transitions() in transitions_module.__doc__


def test_every_transition_targets_and_leaves_known_statuses():
    for transition in TRANSITIONS.values():
        assert transition.target in STATUSES and set(transition.sources) <= set(STATUSES), transition
    # Final statuses are left only by a person's retry (failed, canceled) or never (succeeded, rejected).
    leaving = {source for t in TRANSITIONS.values() for source in t.sources}
    assert not {"succeeded", "rejected"} & leaving


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_a_transition_moves_exactly_from_its_sources(engine, name):
    store = JobStore(engine)
    transition = TRANSITIONS[name]
    for status in STATUSES:
        job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="p")).job_id
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE jobs SET status = :s WHERE id = :id"), {"s": status, "id": job_id})
            before = len(store.reads.events(job_id))
            moved = apply_transition(conn, job_id, name, stage="test", message="m", run_id="run-1")
        assert moved == (status in transition.sources), (name, status)
        row = store.reads.get(job_id)
        events = store.reads.events(job_id)
        if moved:
            assert row["status"] == transition.target and len(events) == before + 1
            assert (events[-1]["status"], events[-1]["stage"], events[-1]["run_id"]) == (transition.target, "test", "run-1")
        else:
            assert row["status"] == status and len(events) == before
