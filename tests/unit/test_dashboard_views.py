"""What the dashboard shows of jobs: filters from the query string, progress bars, actions
and counts."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest

from connectra.api.dashboard_views import about, counts_of, job_view, parse_filters, progress_bar
from connectra.jobs import JobStatus
from tests.unit.test_job_display import a_job, an_import

S = JobStatus


def test_filters_are_read_from_the_query_string_and_build_links() -> None:
    uuid = UUID(int=7)
    filters = parse_filters(
        {"status": "failed", "type": "noop", "queue": "bulk", "uuid": str(uuid), "after": "40"}
    )
    assert (filters.status, filters.job_type, filters.queue, filters.uuid, filters.after) == (
        S.FAILED, "noop", "bulk", uuid, 40,
    )  # fmt: skip
    assert filters.problems == ()
    assert filters.link(after=12) == f"/ui?status=failed&type=noop&queue=bulk&uuid={uuid}&after=12"
    assert filters.link(live=True) == f"/ui/live?status=failed&type=noop&queue=bulk&uuid={uuid}"
    assert parse_filters({"status": "", "queue": " "}).link() == "/ui"


@pytest.mark.parametrize(
    ("query", "problem"),
    [({"status": "done"}, "'done' is not a job state"),
     ({"queue": "a b"}, "invalid queue name"),
     ({"uuid": "<b>"}, "'<b>' is not a UUID"),
     ({"after": "-1"}, "page cursor")],
)  # fmt: skip
def test_a_refused_filter_is_named(query: dict[str, str], problem: str) -> None:
    [found] = parse_filters(query).problems
    assert problem in found


def test_an_import_bar_follows_its_checkpoint() -> None:
    bar = progress_bar(an_import(1200, 3, offset=1024, size=4096))
    assert bar is not None
    assert (bar.fraction, bar.percent, bar.tone) == (0.25, 25, "running")
    assert bar.label == "1,200 rows processed · 3 failed · 1.0 KiB of 4.0 KiB read"
    assert bar.short == "25% · 1,200 rows · 3 failed"


def test_a_completed_job_is_full_and_a_running_export_has_no_known_end() -> None:
    done = progress_bar(an_import(10, 0, offset=90, size=100, status=S.COMPLETED))
    assert done is not None
    assert done.fraction == 1.0
    export = a_job(job_type="export_csv_file", job_response={"number_records_processed": 5000})
    running = progress_bar(export)
    assert running is not None
    assert running.fraction is None
    assert running.label == "5,000 rows written"


def test_only_jobs_that_move_rows_have_a_bar() -> None:
    assert progress_bar(a_job(job_type="noop", status=S.COMPLETED)) is None
    assert progress_bar(a_job(status=S.FAILED_FINAL)) is None, "failed before any row"
    waiting = progress_bar(a_job(status=S.OPEN))
    assert waiting is not None
    assert (waiting.fraction, waiting.label, waiting.short) == (
        0.0,
        "waiting to run",
        "waiting to run",
    )
    starting = progress_bar(a_job(status=S.PROCESSING))
    assert starting is not None
    assert (starting.fraction, starting.short) == (None, "starting")
    reporting = progress_bar(a_job(job_type="mine", job_response={"number_records_processed": 1}))
    assert reporting is not None


@pytest.mark.parametrize(
    ("job_type", "status", "response", "cancel", "retry", "download"),
    [("noop", S.OPEN, {}, True, False, False),
     ("noop", S.PROCESSING, {}, True, False, False),
     ("noop", S.FAILED, {}, True, True, False),
     ("noop", S.FAILED_FINAL, {}, False, True, False),
     ("noop", S.ABORTED, {}, False, False, False),
     ("export_csv_file", S.COMPLETED, {"s3_key": "x.csv"}, False, False, True),
     ("export_csv_file", S.COMPLETED, {}, False, False, False),
     ("export_csv_file", S.COMPLETED, {"s3_key": "x.csv", "results_deleted_at": "2026-12-01"},
      False, False, False),
     ("insert_csv_file", S.COMPLETED, {"s3_key": "x.csv"}, False, False, False)],
)  # fmt: skip
def test_the_buttons_a_job_page_offers(
    job_type: str,
    status: JobStatus,
    response: dict[str, str],
    cancel: bool,
    retry: bool,
    download: bool,
) -> None:
    actions = job_view(a_job(job_type=job_type, status=status, job_response=response)).actions
    assert (actions.cancel, actions.retry, actions.download) == (cancel, retry, download)


def test_a_job_page_lists_errors_and_pretty_prints_data() -> None:
    response = {
        "runtime_errors": ["line 3: bad uuid", 7],
        "error": {"code": "ERR_X", "message": "broken", "details": {}},
    }
    view = job_view(
        a_job(
            data={"note": "<b>"},
            job_response=response,
            status=S.FAILED,
            run_after=datetime(2026, 12, 3, 12, 0, tzinfo=UTC),
            updated_at=datetime(2026, 12, 3, 11, 0, tzinfo=UTC),
            retry_interval=30,
            rescue_count=0,
        )
    )
    assert view.runtime_errors == ["line 3: bad uuid", "7"]
    assert view.error == {"code": "ERR_X", "message": "broken"}
    assert view.data_json == '{\n  "note": "<b>"\n}'
    assert "tries again after 2026-12-03 12:00:00 UTC" in view.notes[0]
    assert ("next retry", "2026-12-03 12:00:00 UTC") in view.fields


def test_counts_add_up_by_status_and_queue() -> None:
    counts = counts_of(
        {("open", "bulk"): 3, ("open", "default"): 2},
        {(S.COMPLETED, "default"): 1},
        {"completed": 1},
        cap=5,
    )
    assert counts.total(S.OPEN) == 5
    assert counts.total(S.ABORTED) == 0
    assert counts.queues() == ["bulk", "default"]
    assert counts.statuses() == [S.OPEN, S.COMPLETED]
    assert (counts.cell("bulk", S.COMPLETED), counts.queue_total("default")) == (0, 3)


def test_only_finished_states_are_capped_and_an_estimate_beyond_the_cap_is_shown() -> None:
    counts = counts_of(
        {("open", "bulk"): 50},
        {(S.COMPLETED, "bulk"): 10, (S.ABORTED, "bulk"): 10, (S.FAILED_FINAL, "bulk"): 4},
        {"completed": 1_234_567, "aborted": 8},
        cap=10,
    )
    assert not counts.capped(S.OPEN)
    assert (counts.capped(S.COMPLETED), counts.estimate(S.COMPLETED)) == (True, 1_234_567)
    assert (counts.capped(S.ABORTED), counts.estimate(S.ABORTED)) == (True, None), "stale"
    assert (counts.capped(S.FAILED_FINAL), counts.estimate(S.FAILED_FINAL)) == (False, None)


@pytest.mark.parametrize(
    ("count", "shown"),
    [(0, "0"), (99_999, "99,999"), (100_000, "100k"), (999_999, "999k"), (1_250_000, "1.2M")],
)
def test_big_counts_are_shown_short(count: int, shown: str) -> None:
    assert about(count) == shown
