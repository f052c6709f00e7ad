"""The state diagram of `docs/design/states.md` draws exactly the transitions the state machine
allows (`connectra.jobs.ALLOWED_TRANSITIONS`), and its table lists every state."""

from __future__ import annotations

import re
from pathlib import Path

from connectra.jobs import ALLOWED_TRANSITIONS, JobStatus

STATES_PAGE = Path(__file__).resolve().parents[2] / "docs" / "design" / "states.md"
ARROW = re.compile(r"^\s*(\w+) --> (\w+)")
ROW = re.compile(r"^\| `(\w+)` \|")


def page() -> str:
    """The page's text."""
    return STATES_PAGE.read_text()


def drawn_transitions() -> set[tuple[str, str]]:
    """The arrows of the page's mermaid diagram between two states (not from or to [*])."""
    diagram = page().split("```mermaid", 1)[1].split("```", 1)[0]
    return {(row[1], row[2]) for row in map(ARROW.match, diagram.splitlines()) if row}


def test_the_diagram_draws_every_allowed_transition_and_no_other() -> None:
    allowed = {(a.value, b.value) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets}
    assert drawn_transitions() == allowed


def test_the_table_lists_every_state_once() -> None:
    rows = [row.group(1) for row in map(ROW.match, page().splitlines()) if row]
    assert sorted(rows) == sorted(status.value for status in JobStatus)
