"""The state machine is the seed's, enforced in one place."""

from __future__ import annotations

import pytest

from connectra.errors import InvalidTransitionError
from connectra.jobs import ALLOWED_TRANSITIONS, FIRST_TIME, RETRY, JobStatus, check_transition

S = JobStatus

SEED_PATH = [
    (S.OPEN, S.IN_QUEUE),
    (S.IN_QUEUE, S.PROCESSING),
    (S.PROCESSING, S.COMPLETED),
    (S.PROCESSING, S.FAILED),
    (S.FAILED, S.RETRY_IN_QUEUED),
    (S.RETRY_IN_QUEUED, S.RETRYING),
    (S.RETRYING, S.COMPLETED),
    (S.RETRYING, S.FAILED),
]


@pytest.mark.parametrize(("current", "target"), SEED_PATH)
def test_every_transition_of_the_seed_is_allowed(current: JobStatus, target: JobStatus) -> None:
    check_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.OPEN, S.PROCESSING),
        (S.OPEN, S.COMPLETED),
        (S.COMPLETED, S.OPEN),
        (S.COMPLETED, S.FAILED),
        (S.FAILED, S.PROCESSING),
        (S.FAILED, S.COMPLETED),
        (S.IN_QUEUE, S.COMPLETED),
        (S.RETRY_IN_QUEUED, S.COMPLETED),
        (S.RETRYING, S.OPEN),
    ],
)
def test_a_transition_outside_the_machine_is_an_error(
    current: JobStatus, target: JobStatus
) -> None:
    with pytest.raises(InvalidTransitionError, match=f"{current} to {target}"):
        check_transition(current, target)


def test_completed_is_terminal() -> None:
    assert ALLOWED_TRANSITIONS[S.COMPLETED] == frozenset()


def test_every_state_has_a_row_in_the_table() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(JobStatus)


def test_runner_kinds_follow_the_seed() -> None:
    assert (FIRST_TIME.claims, FIRST_TIME.queued, FIRST_TIME.running) == (
        S.OPEN,
        S.IN_QUEUE,
        S.PROCESSING,
    )
    assert (RETRY.claims, RETRY.queued, RETRY.running) == (S.FAILED, S.RETRY_IN_QUEUED, S.RETRYING)
    # Shutdown hands jobs back to where the runner took them from.
    assert FIRST_TIME.handed_back is S.OPEN
    assert RETRY.handed_back is S.FAILED
